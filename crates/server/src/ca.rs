//! The `Ca` bundle (SSH user CA + X.509 CA) used by login and renewal, and
//! `ippin ca init`.

use std::net::IpAddr;

use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ippin_cert as cert;

use crate::config::{CaPaths, Config, ConfigError, MAX_CONFIG_BYTES};
use crate::files::FileError;

/// Errors of certificate issuance and CA files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A CA or identity file could not be read or written.
    #[error(transparent)]
    File(#[from] ConfigError),
    /// A CA file holds something the certificate library refused.
    #[error("{file}: {message}")]
    Material {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A public key in a request is not acceptable.
    #[error("{field}: {message}")]
    BadKey {
        /// `ssh_public_key` or `tls_public_key`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The certificate library refused to issue.
    #[error("cannot issue the {what} certificate: {message}")]
    Issue {
        /// `ssh` or `x509`.
        what: &'static str,
        /// The library's error.
        message: String,
    },
    /// `ca init` would overwrite an existing configuration.
    #[error("{0}: already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

/// What to issue: identity, public keys, pins and validity.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The user (SSH principal, X.509 CN).
    pub user: &'a str,
    /// The user's current roles.
    pub roles: &'a [String],
    /// The OS logins those roles allow now (`ippin_policy::UserRoles::logins`): SSH
    /// principals besides the user's name. The key id stays `USER@ippin/SERIAL`, which is what
    /// names the user ([`ippin_access::ssh::CertIdentity`]).
    pub logins: &'a [String],
    /// The client's SSH public key, OpenSSH text.
    pub ssh_public_key: &'a str,
    /// The client's TLS public key, SPKI PEM.
    pub tls_public_key: &'a str,
    /// The pin, decided by `ippin-policy`: one address (`/32`, `/128`) or the network of a
    /// role's `pin_source_ip_prefix`.
    pub pinned: Option<IpNet>,
    /// The private endpoint the pin is bound to: the one the login came through (a listener
    /// with `allowed_endpoints`), or the presented certificate's at a renewal.
    pub pinned_endpoint: Option<ippin_policy::Endpoint>,
    /// The IP the login was observed from, when known.
    pub login_ip: Option<IpAddr>,
    /// The time of issuance.
    pub now: SystemTime,
    /// Lifetime.
    pub ttl: Duration,
    /// For a renewal, the certificates' validity `(not_before, not_after)`, from
    /// `ippin_policy::renewal_validity` (the presented certificate's start, one login's
    /// bound). `None` (a login): from 60 s before `now` (clock skew) to `now + ttl`.
    pub session: Option<(SystemTime, SystemTime)>,
}

/// The issued certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// OpenSSH certificate text (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub ssh_certificate: String,
    /// X.509 client certificate, PEM.
    pub tls_certificate: String,
    /// The pin written into both.
    pub pinned: Option<IpNet>,
    /// The private endpoint the pin is bound to in both.
    pub pinned_endpoint: Option<ippin_policy::Endpoint>,
    /// End of validity.
    pub expires: SystemTime,
}

/// The SSH user CA and the X.509 CA.
pub struct Ca {
    ssh: cert::ssh::SshCa,
    x509: cert::x509::X509Ca,
    x509_cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ca {
    /// A secret every node of a cluster derives alike, across restarts, from the SSH CA's
    /// private key (HMAC-SHA-256 of a fixed label): the key that picks the stand-in user an
    /// unknown login name is checked against (`Directory::stand_in_hash`), so that one name
    /// gets the same stand-in on every node and after every restart.
    pub fn stand_in_key(&self) -> [u8; 32] {
        let secret = self.ssh.to_openssh().unwrap_or_default();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, b"ippin stand-in user v1");
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Loads the CA files at `paths`. The private keys must not be accessible by group or
    /// others ([`crate::files::read_private`]); errors name the file and the field.
    pub fn load(paths: &CaPaths) -> Result<Ca, CaError> {
        Ca::load_with(paths, |field, e| ConfigError::Invalid {
            file: PathBuf::from("(configuration)"),
            line: 0,
            field: field.to_owned(),
            message: e.to_string(),
        })
    }

    /// Loads the CA files named by `config`; errors name the configuration file, the
    /// field's line, the field, and the CA file with what is wrong with it.
    pub fn load_config(config: &Config) -> Result<Ca, CaError> {
        Ca::load_with(&config.ca, |field, e| config.file_error(field, e))
    }

    fn load_with(
        paths: &CaPaths,
        error: impl Fn(&str, FileError) -> ConfigError,
    ) -> Result<Ca, CaError> {
        let private = |field: &str, path: &Path| {
            crate::files::read_private(path, MAX_CONFIG_BYTES).map_err(|e| error(field, e))
        };
        let ssh_text = private("ca.ssh_key", &paths.ssh_key)?;
        let ssh = cert::ssh::SshCa::from_openssh(&ssh_text).map_err(|e| CaError::Material {
            file: paths.ssh_key.clone(),
            message: e.to_string(),
        })?;
        let cert_pem = crate::files::read_public(&paths.tls_cert, MAX_CONFIG_BYTES)
            .map_err(|e| error("ca.tls_cert", e))?;
        let key_pem = private("ca.tls_key", &paths.tls_key)?;
        let x509 =
            cert::x509::X509Ca::from_pem(&cert_pem, &key_pem).map_err(|e| CaError::Material {
                file: paths.tls_cert.clone(),
                // The pair is checked together: name the key file too.
                message: format!("{e} (with the key in {})", paths.tls_key.display()),
            })?;
        Ok(Ca {
            ssh,
            x509,
            x509_cert_pem: cert_pem,
        })
    }

    /// The X.509 CA certificate, PEM.
    pub fn x509_cert_pem(&self) -> &str {
        &self.x509_cert_pem
    }

    /// The X.509 CA certificate, DER.
    pub fn x509_cert_der(&self) -> Vec<u8> {
        self.x509.cert_der().to_vec()
    }

    /// The SSH CA's public key, OpenSSH text.
    pub fn ssh_public_key(&self) -> String {
        self.ssh.public_key().to_openssh().unwrap_or_default()
    }

    /// Issues the SSH and X.509 certificates for `req`. The pins come from
    /// the caller, which got them from `ippin-policy`.
    pub fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued, CaError> {
        let mut rng = crate::rng();
        let (not_before, expires) = match req.session {
            None => (
                unix(req.now).saturating_sub(60),
                req.now.checked_add(req.ttl).ok_or_else(|| CaError::Issue {
                    what: "validity",
                    message: format!("{:?} from now is past what the clock can say", req.ttl),
                })?,
            ),
            Some((start, end)) => (unix(start), end),
        };
        let not_after = unix(expires);
        let serial = random_serial();

        let ssh_key =
            // Bounded, and no certificate nested in it (`ssh-key` would recurse into one
            // without limit before `check_subject_key` could refuse it).
            cert::ssh::parse_public_key(req.ssh_public_key).map_err(|e| {
                CaError::BadKey {
                    field: "ssh_public_key",
                    message: e.to_string(),
                }
            })?;
        // A certificate relabelled as a key reads as one: refused here as the client's
        // error (the request builder refuses it too).
        cert::ssh::check_subject_key(ssh_key.key_data()).map_err(|e| CaError::BadKey {
            field: "ssh_public_key",
            message: e.to_string(),
        })?;
        let mut ssh_req = cert::ssh::SshCertRequest::builder(ssh_key.key_data().clone())
            .key_id(format!("{}@ippin/{serial}", req.user))
            .serial(serial)
            .principal(ippin_access::ssh::builtins_principal(req.user))
            .validity(not_before, not_after);
        // The logins the roles allow; the user's own name only when it is one of them (an
        // sshd trusting this CA lets a principal in as the account it names).
        let mut logins: Vec<&str> = req.logins.iter().map(String::as_str).collect();
        logins.sort_unstable();
        logins.dedup();
        for login in logins {
            ssh_req = ssh_req.principal(login);
        }
        if let Some(net) = req.pinned {
            ssh_req = ssh_req.pinned_network(net);
            if let Some(e) = req.pinned_endpoint {
                ssh_req = ssh_req.pinned_endpoint(e.as_str());
            }
        }
        if let Some(ip) = req.login_ip {
            ssh_req = ssh_req.login_ip(ip);
        }
        let ssh_req = ssh_req.build().map_err(|e| CaError::Issue {
            what: "ssh",
            message: e.to_string(),
        })?;
        let ssh_cert = self
            .ssh
            .issue(&ssh_req, &mut rng)
            .map_err(|e| CaError::Issue {
                what: "ssh",
                message: e.to_string(),
            })?;
        let ssh_certificate = ssh_cert.to_openssh().map_err(|e| CaError::Issue {
            what: "ssh",
            message: e.to_string(),
        })?;

        let spki_der =
            cert::x509::spki_der_from_pem(req.tls_public_key).map_err(|e| CaError::BadKey {
                field: "tls_public_key",
                message: e.to_string(),
            })?;
        // The same end for both: OpenSSH's `valid_before` is the first second the SSH
        // certificate is not valid; X.509's `notAfter` the last second it is (RFC 5280
        // §4.1.2.5, inclusive).
        let mut x509_req = cert::x509::ClientCertRequest::builder(req.user, spki_der)
            .validity(not_before, not_after.saturating_sub(1))
            .serial(serial);
        for role in req.roles {
            x509_req = x509_req.role(role.as_str());
        }
        if let Some(net) = req.pinned {
            x509_req = x509_req.pinned_network(net);
            if let Some(e) = req.pinned_endpoint {
                x509_req = x509_req.pinned_endpoint(e.as_str());
            }
        }
        if let Some(ip) = req.login_ip {
            x509_req = x509_req.login_ip(ip);
        }
        let x509_req = x509_req.build().map_err(|e| CaError::Issue {
            what: "x509",
            message: e.to_string(),
        })?;
        let der = self
            .x509
            .issue_client(&x509_req, &mut rng)
            .map_err(|e| CaError::Issue {
                what: "x509",
                message: e.to_string(),
            })?;
        Ok(Issued {
            ssh_certificate,
            tls_certificate: der_to_pem(&der, "CERTIFICATE"),
            pinned: x509_req.pin(),
            pinned_endpoint: req.pinned_endpoint.filter(|_| x509_req.pin().is_some()),
            expires,
        })
    }
}

fn random_serial() -> u64 {
    let mut b = [0u8; 8];
    // getrandom failing is not recoverable for a CA; fall back to the clock
    // only so that serials still differ (they are not a security property).
    if cert::getrandom::fill(&mut b).is_err() {
        return unix(SystemTime::now());
    }
    u64::from_be_bytes(b) >> 1
}

/// One-block PEM helpers ([`crate::files`]).
pub use crate::files::{der_to_pem, pem_to_der};

/// The role file `ca init` writes: `pinned-ip` pins, `dev` does not.
pub const ROLES_YAML: &str = "\
kind: role
version: v7
metadata:
  name: pinned-ip
spec:
  options:
    pin_source_ip: true
---
kind: role
version: v7
metadata:
  name: dev
spec:
  options:
    pin_source_ip: false
";

/// The configuration `ca init` writes (users are added with `user add`).
pub const CONFIG_YAML: &str = "\
cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca        # OpenSSH private key of the SSH user CA
  tls_cert: ca/tls_ca.pem        # X.509 CA: clients trust it, client certificates chain to it
  tls_key: ca/tls_ca.key
server_tls: {cert: server.pem, key: server.key}   # the listeners' own TLS identity, from the CA
roles: [roles.yaml]              # files of role documents
users: []                        # ippin user add --config ippin.yaml NAME --role pinned-ip
cert_ttl: 8h
audit_log: audit.log
ssh_host_key: ssh_host_ed25519_key   # the SSH listeners' host key (kept across restarts)
# max_session_ttl: 24h           # one login through renewals (at least cert_ttl, at most 366d)
# ssh_recheck_interval: 2s       # SSH connections whose certificate or user no longer passes end
# network_restrictions: network_restrictions.yaml   # where sessions may connect (absent = anywhere)
# audit_network_observed: false  # also audit allowed outbound connections
listeners:
  - kind: login
    listen: 127.0.0.1:3080
    proxy_protocol: off          # on | off; absent = unspecified (never trusted)
    header_timeout: 5s
    trust_x_forwarded_for: false
  - kind: tls
    listen: 127.0.0.1:3443
    proxy_protocol: off
    header_timeout: 5s
  - kind: ssh
    listen: 127.0.0.1:3022
    proxy_protocol: off
    header_timeout: 5s
";

/// The names the listeners' certificate is valid for.
const SERVER_DNS: &[&str] = &["localhost"];

fn server_ips() -> Vec<IpAddr> {
    ["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CaError> {
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
        .and_then(|mut f| f.write_all(contents))
        .map_err(|source| {
            CaError::File(ConfigError::Io {
                file: path.to_path_buf(),
                action: "write",
                source,
            })
        })
}

/// `ippin ca init DIR`: SSH user CA (Ed25519), X.509 CA (P-256), the
/// listeners' TLS identity, `roles.yaml` and `ippin.yaml`. Returns the path
/// of the configuration. Refuses to overwrite an existing one.
pub fn init(dir: &Path) -> Result<PathBuf, CaError> {
    init_at(dir, SystemTime::now(), CONFIG_YAML)
}

/// [`init`] with the time and the configuration text given.
pub fn init_at(dir: &Path, now: SystemTime, config_yaml: &str) -> Result<PathBuf, CaError> {
    let config = dir.join("ippin.yaml");
    if config.exists() {
        return Err(CaError::Exists(config));
    }
    let ca_dir = dir.join("ca");
    // Folders created here, missing parents included, are the owner's alone (0700, less what
    // the umask takes away, never more): the roles, the
    // restrictions and the certificates the operator adds beside the keys are private too.
    // A folder that exists already keeps its mode (the operator's choice).
    {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for folder in [dir, ca_dir.as_path()] {
            builder.create(folder).map_err(|source| {
                CaError::File(ConfigError::Io {
                    file: folder.to_path_buf(),
                    action: "create",
                    source,
                })
            })?;
        }
    }
    let material = |e: &dyn std::fmt::Display, file: &Path| CaError::Material {
        file: file.to_path_buf(),
        message: e.to_string(),
    };
    let mut rng = crate::rng();
    let ssh_path = ca_dir.join("ssh_user_ca");
    let ssh = cert::ssh::SshCa::generate_ed25519(&mut rng).map_err(|e| material(&e, &ssh_path))?;
    let ssh_text = ssh.to_openssh().map_err(|e| material(&e, &ssh_path))?;
    write_file(&ssh_path, ssh_text.as_bytes(), true)?;
    let ssh_pub = ssh
        .public_key()
        .to_openssh()
        .map_err(|e| material(&e, &ssh_path))?;
    write_file(
        &ca_dir.join("ssh_user_ca.pub"),
        format!("{ssh_pub}\n").as_bytes(),
        false,
    )?;

    let start = unix(now).saturating_sub(3600);
    let ten_years = 10 * 365 * 24 * 3600;
    let tls_path = ca_dir.join("tls_ca.pem");
    let x509 =
        cert::x509::X509Ca::generate_p256("ippin local CA", start, start + ten_years, &mut rng)
            .map_err(|e| material(&e, &tls_path))?;
    write_file(&tls_path, x509.cert_pem().as_bytes(), false)?;
    let x509_key = x509.key_pem().map_err(|e| material(&e, &tls_path))?;
    write_file(&ca_dir.join("tls_ca.key"), x509_key.as_bytes(), true)?;

    let server_path = dir.join("server.pem");
    let (server_key_pem, server_spki_pem) =
        cert::x509::generate_key_pair_p256(&mut rng).map_err(|e| material(&e, &server_path))?;
    let spki =
        cert::x509::spki_der_from_pem(&server_spki_pem).map_err(|e| material(&e, &server_path))?;
    let server_req = cert::x509::ServerCertRequest::new(
        SERVER_DNS.iter().map(|s| (*s).to_owned()).collect(),
        server_ips(),
        spki,
        start,
        start + 2 * 365 * 24 * 3600,
        random_serial().max(1),
    )
    .map_err(|e| material(&e, &server_path))?;
    let server_der = x509
        .issue_server(&server_req, &mut rng)
        .map_err(|e| material(&e, &server_path))?;
    write_file(
        &server_path,
        der_to_pem(&server_der, "CERTIFICATE").as_bytes(),
        false,
    )?;
    write_file(&dir.join("server.key"), server_key_pem.as_bytes(), true)?;
    write_file(&dir.join("roles.yaml"), ROLES_YAML.as_bytes(), false)?;
    let host_key_path = dir.join("ssh_host_ed25519_key");
    let host_key = crate::files::generate_host_key().map_err(|e| material(&e, &host_key_path))?;
    let host_key_text = host_key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| material(&e, &host_key_path))?;
    write_file(&host_key_path, host_key_text.as_bytes(), true)?;
    let host_pub = host_key
        .public_key()
        .to_openssh()
        .map_err(|e| material(&e, &host_key_path))?;
    write_file(
        &dir.join("ssh_host_ed25519_key.pub"),
        format!("{host_pub}\n").as_bytes(),
        false,
    )?;
    // The users' password hashes go into it (`ippin user add`): the owner's alone.
    write_file(&config, config_yaml.as_bytes(), true)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_strictness() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = der_to_pem(&der, "CERTIFICATE");
        assert_eq!(pem_to_der(&pem, "CERTIFICATE"), Some(der.clone()));
        assert_eq!(pem_to_der(&pem, "PUBLIC KEY"), None);
        assert_eq!(pem_to_der(&format!("{pem}{pem}"), "CERTIFICATE"), None);
        assert_eq!(pem_to_der("garbage", "CERTIFICATE"), None);
    }

    /// The folders `ca init` creates are the owner's alone under the usual umask; one that
    /// exists keeps its mode.
    #[test]
    fn init_creates_private_folders() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("etc").join("ippin");
        init(&dir).unwrap();
        for folder in [dir.clone(), dir.join("ca")] {
            let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", folder.display());
        }
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
        init(&shared).unwrap();
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
    }

    /// The CA of a `ca init` folder (kept while the first value lives), and a user's SSH
    /// public key (OpenSSH text) and TLS public key (SPKI PEM).
    fn ca_and_keys() -> (tempfile::TempDir, Ca, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::load(&init(dir.path()).unwrap()).unwrap();
        let ca = Ca::load_config(&config).unwrap();
        let mut rng = crate::rng();
        let key =
            cert::ssh_key::PrivateKey::random(&mut rng, cert::ssh_key::Algorithm::Ed25519).unwrap();
        let (_, spki) = cert::x509::generate_key_pair_p256(&mut rng).unwrap();
        (dir, ca, key.public_key().to_openssh().unwrap(), spki)
    }

    /// A request for carol, no roles, no logins, no pin, a minute from now.
    fn carol<'a>(ssh_public_key: &'a str, tls_public_key: &'a str) -> IssueRequest<'a> {
        IssueRequest {
            user: "carol",
            roles: &[],
            logins: &[],
            ssh_public_key,
            tls_public_key,
            pinned: None,
            pinned_endpoint: None,
            login_ip: None,
            now: SystemTime::now(),
            ttl: Duration::from_secs(60),
            session: None,
        }
    }

    /// The principals are the user's name and then the logins, the user's name once even when
    /// a role also allows it as a login; the key id names the user with the serial.
    #[test]
    fn logins_become_principals_besides_the_user() {
        let (_dir, ca, ssh_public_key, spki) = ca_and_keys();
        let roles = ["dev".to_owned()];
        let issue = |logins: &[String]| {
            let issued = ca
                .issue(&IssueRequest {
                    roles: &roles,
                    logins,
                    ..carol(&ssh_public_key, &spki)
                })
                .unwrap();
            cert::ssh_key::Certificate::from_openssh(issued.ssh_certificate.trim()).unwrap()
        };
        let logins = ["carol".to_owned(), "deploy".to_owned(), "root".to_owned()];
        let c = issue(&logins);
        assert_eq!(
            c.valid_principals(),
            ["ippin:carol", "carol", "deploy", "root"]
        );
        assert_eq!(c.key_id(), format!("carol@ippin/{}", c.serial()));
        // Her own name is a principal only as one of her logins.
        assert_eq!(issue(&[]).valid_principals(), ["ippin:carol"]);
        let twice = ["deploy".to_owned(), "deploy".to_owned()];
        assert_eq!(issue(&twice).valid_principals(), ["ippin:carol", "deploy"]);
    }

    /// A certificate is never signed as the user's key: `ssh-ed25519 <certificate blob>`
    /// reads as a public key, and signing it would put the old certificate's bytes, read as
    /// fields of the requester's choosing, under the CA's signature.
    #[test]
    fn a_certificate_offered_as_the_ssh_key_is_the_clients_error() {
        let (_dir, ca, ssh_public_key, spki) = ca_and_keys();
        let issue = |key: &str| ca.issue(&carol(key, &spki));
        let issued = issue(&ssh_public_key).unwrap();
        let blob = issued.ssh_certificate.split_whitespace().nth(1).unwrap();
        match issue(&format!("ssh-ed25519 {blob}")) {
            Err(CaError::BadKey { field, message }) => {
                assert_eq!(field, "ssh_public_key");
                assert!(message.contains("a certificate"), "{message}");
            }
            other => panic!("{:?}", other.map(|i| i.ssh_certificate)),
        }
    }

    /// The SSH service takes a certificate blob only as its canonical encoding (russh,
    /// patch 3): bytes after it, or left inside its `source-address` option, which the
    /// lenient decoder skips and the signature check never sees, are refused, as sshd
    /// refuses them.
    #[test]
    fn the_ssh_service_takes_only_canonical_certificate_blobs() {
        use russh::keys::PublicKeyOrCertificate;
        let (_dir, ca, ssh_public_key, spki) = ca_and_keys();
        let roles = ["dev".to_owned()];
        let issued = ca
            .issue(&IssueRequest {
                roles: &roles,
                pinned: Some("127.0.0.1/32".parse().unwrap()),
                pinned_endpoint: None,
                ..carol(&ssh_public_key, &spki)
            })
            .unwrap();
        let cert = cert::ssh_key::Certificate::from_openssh(issued.ssh_certificate.trim()).unwrap();
        let blob = cert.to_bytes().unwrap();
        assert_eq!(
            PublicKeyOrCertificate::decode_certificate(&blob).unwrap(),
            cert
        );
        // A byte after the certificate.
        let mut after = blob.clone();
        after.push(0);
        assert!(PublicKeyOrCertificate::decode_certificate(&after).is_err());
        // Three bytes inside the option's value, after its inner string (the lengths of
        // the value and of the critical options grown to hold them).
        let name = b"source-address";
        let p = blob.windows(name.len()).position(|w| w == name).unwrap();
        let be = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap()) as usize;
        let (outer, data, inner) = (p - 8, p + name.len(), p + name.len() + 4);
        let end = inner + 4 + be(inner);
        let mut inside = blob[..end].to_vec();
        inside.extend_from_slice(b"xyz");
        inside.extend_from_slice(&blob[end..]);
        inside[outer..outer + 4]
            .copy_from_slice(&u32::try_from(be(outer) + 3).unwrap().to_be_bytes());
        inside[data..data + 4].copy_from_slice(&u32::try_from(be(data) + 3).unwrap().to_be_bytes());
        // The lenient decoder takes it, with the same values as the signed certificate.
        let lenient = cert::ssh_key::Certificate::from_bytes(&inside).unwrap();
        assert_eq!(lenient.critical_options(), cert.critical_options());
        assert!(PublicKeyOrCertificate::decode_certificate(&inside).is_err());
    }
}
