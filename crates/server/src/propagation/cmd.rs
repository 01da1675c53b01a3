//! `ippin ca issue-proxy`: a front's identity from the cluster X.509 CA;
//! `ippin ca propagation-key`: an inner listener's static X25519 key pair.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::net::unix;
use super::{PROXY_CN_PREFIX, issue_proxy_identity};
use crate::Outcome;
use crate::config::{Config, MAX_CONFIG_BYTES, check_name, read_bounded};

/// The default lifetime of a front's certificate.
pub const DEFAULT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    opts.open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Issues `proxy-NAME.pem` and `proxy-NAME.key` (in `out`, or next to the
/// configuration) with the configuration's X.509 CA, valid for `ttl` from
/// `now`; returns the two paths.
///
/// # Errors
/// A readable message: bad name, unreadable CA, existing files.
pub fn issue_proxy_files(
    config: &Path,
    name: &str,
    out: Option<&Path>,
    ttl: Duration,
    now: SystemTime,
) -> Result<(PathBuf, PathBuf), String> {
    check_name(name)?;
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let cert_pem = read_bounded(&cfg.ca.tls_cert, MAX_CONFIG_BYTES).map_err(|e| e.to_string())?;
    // The CA's private key: the owner's alone, as every private key the server reads.
    let key_pem =
        crate::files::read_private(&cfg.ca.tls_key, MAX_CONFIG_BYTES).map_err(|e| e.to_string())?;
    let ca = ippin_cert::x509::X509Ca::from_pem(&cert_pem, &key_pem)
        .map_err(|e| format!("{}: {e}", cfg.ca.tls_cert.display()))?;
    let start = unix(now).saturating_sub(60);
    let mut serial = [0u8; 8];
    ippin_cert::getrandom::fill(&mut serial).map_err(|e| e.to_string())?;
    let id = issue_proxy_identity(
        &ca,
        name,
        start,
        start.saturating_add(ttl.as_secs()),
        u64::from_be_bytes(serial) >> 1,
        &mut crate::rng(),
    )
    .map_err(|e| e.to_string())?;
    let dir = out
        .map(Path::to_path_buf)
        .or_else(|| config.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let cert = dir.join(format!("proxy-{name}.pem"));
    let key = dir.join(format!("proxy-{name}.key"));
    for p in [&cert, &key] {
        if p.exists() {
            return Err(format!(
                "{}: already exists; refusing to overwrite it",
                p.display()
            ));
        }
    }
    write_new(&key, &id.key_pem, true)?;
    write_new(&cert, &id.cert_pem, false)?;
    Ok((cert, key))
}

/// `ippin ca issue-proxy --config FILE NAME [--out DIR] [--ttl 90d]`.
pub fn issue_proxy_command(config: &Path, name: &str, out: Option<&Path>, ttl: &str) -> Outcome {
    let ttl = match humantime::parse_duration(ttl) {
        Ok(t) if !t.is_zero() => t,
        _ => {
            return Outcome::fail(
                2,
                format!("error: --ttl `{ttl}`: write it as `90d` or `12h`\n"),
            );
        }
    };
    match issue_proxy_files(config, name, out, ttl, SystemTime::now()) {
        Ok((cert, key)) => Outcome::ok(format!(
            "issued {PROXY_CN_PREFIX}{name} (role proxy)\n  certificate: {}\n  key:         {}\n\
             use them in a `kind: forward` listener:\n    forward: {{upstream: HOST:PORT, \
             audience: NAME, cert: {}, key: {}}}\n",
            cert.display(),
            key.display(),
            cert.display(),
            key.display()
        )),
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
}

/// Writes `AUDIENCE.propkey` (mode 0600) and `AUDIENCE.propkey.pub` in
/// `out` with a fresh X25519 key; returns the two paths. Refuses to
/// overwrite either.
///
/// # Errors
/// A readable message: bad audience, existing files, write errors.
pub fn write_propagation_key(audience: &str, out: &Path) -> Result<(PathBuf, PathBuf), String> {
    if !super::sign::audience_ok(audience) {
        return Err(format!(
            "--audience `{}`: use 1 to 255 printable ASCII characters, no spaces",
            audience.escape_default()
        ));
    }
    if audience.contains(['/', '\\']) || audience.starts_with('.') {
        return Err(format!(
            "--audience `{audience}`: it names the files; no `/`, `\\` or leading `.`"
        ));
    }
    let secret_path = out.join(format!("{audience}.propkey"));
    let public_path = out.join(format!("{audience}.propkey.pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(format!(
                "{}: already exists; refusing to overwrite it",
                p.display()
            ));
        }
    }
    let mut bytes = [0u8; 32];
    ippin_cert::getrandom::fill(&mut bytes).map_err(|e| format!("randomness: {e}"))?;
    let secret = super::SecretKey::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    write_new(&secret_path, &secret.to_pem(), true)?;
    write_new(&public_path, &secret.public_key().to_pem(), false)?;
    Ok((secret_path, public_path))
}

/// `ippin ca propagation-key --audience NAME [--out DIR]`.
pub fn propagation_key_command(audience: &str, out: &Path) -> Outcome {
    match write_propagation_key(audience, out) {
        Ok((secret, public)) => Outcome::ok(format!(
            "created the propagation key of `{audience}`\n  secret (keep on the inner host): {}\n  \
             public (give to the fronts):      {}\nuse them as:\n  inner listener: \
             propagation: {{audience: {audience}, key: {}}}\n  front listener: forward: \
             {{..., audience: {audience}, upstream_key: {}}}\n",
            secret.display(),
            public.display(),
            secret.display(),
            public.display()
        )),
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_key_files_pair_up_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = write_propagation_key("inner-tls", dir.path()).unwrap();
        assert_eq!(secret, dir.path().join("inner-tls.propkey"));
        assert_eq!(public, dir.path().join("inner-tls.propkey.pub"));
        let s =
            super::super::SecretKey::from_pem(&std::fs::read_to_string(&secret).unwrap()).unwrap();
        let p =
            super::super::PublicKey::from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
        assert_eq!(s.public_key(), p);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_propagation_key("inner-tls", dir.path()).unwrap_err();
        assert!(again.contains("already exists"), "{again}");
        // Two runs give two different keys.
        let (_, public2) = write_propagation_key("other", dir.path()).unwrap();
        assert_ne!(
            std::fs::read_to_string(&public).unwrap(),
            std::fs::read_to_string(&public2).unwrap()
        );
        for bad in ["", "a b", "../x", ".hidden", "a/b"] {
            assert!(write_propagation_key(bad, dir.path()).is_err(), "{bad}");
        }
    }
}
