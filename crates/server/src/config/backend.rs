//! `backend:`: where a fleet of nodes keeps what they share (docs/fleet.md). Plain data,
//! checked strictly; the server's `fleet` module takes it as it is.
//!
//! ```yaml
//! backend:
//!   kind: etcd
//!   endpoints: [127.0.0.1:2379]    # IP:PORT, or http://IP:PORT, https://IP:PORT
//!   prefix: /ippin/                # every key of this cluster starts with it
//!   # timeout: 2s                  each call to etcd, connection included
//!   # tls:                         https to etcd, client certificate authentication
//!   #   ca: etcd-ca.pem
//!   #   cert: ippin-etcd.pem
//!   #   key: ippin-etcd.key
//!   #   server_name: etcd.internal (default: the endpoint's IP)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The most endpoints listed.
pub const MAX_ENDPOINTS: usize = 16;
/// The longest key prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 128;
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/ippin/";
/// The default time bound of one call to etcd.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A checked `backend:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// etcd's client endpoints, tried in order.
    pub endpoints: Vec<SocketAddr>,
    /// The key prefix (starts and ends with `/`).
    pub prefix: String,
    /// The time bound of one call.
    pub timeout: Duration,
    /// TLS to etcd (`None`: plain http).
    pub tls: Option<BackendTls>,
}

/// `backend.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// The CA bundle that signed etcd's certificates (PEM).
    pub ca: PathBuf,
    /// This node's client certificate (PEM), for etcd's client certificate authentication.
    pub cert: Option<PathBuf>,
    /// Its private key (PKCS#8 PEM, mode 0600).
    pub key: Option<PathBuf>,
    /// The name checked in etcd's certificate (default: the endpoint's IP address).
    pub server_name: Option<String>,
}

/// `backend:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    kind: String,
    endpoints: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    timeout: Option<super::YamlDuration>,
    #[serde(default)]
    tls: Option<RawBackendTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTls {
    ca: PathBuf,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
}

impl RawBackend {
    /// Checks the section; relative paths are resolved with `resolve`. The error is the
    /// field (below `backend.`) and what is wrong.
    pub(super) fn check(
        self,
        resolve: impl Fn(PathBuf) -> PathBuf,
    ) -> Result<BackendConfig, (String, String)> {
        if self.kind != "etcd" {
            return Err((
                "kind".into(),
                format!(
                    "unknown backend kind `{}`: the only one is `etcd`",
                    self.kind.escape_default()
                ),
            ));
        }
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err((
                "endpoints".into(),
                format!("list 1 to {MAX_ENDPOINTS} endpoints"),
            ));
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (i, e) in self.endpoints.iter().enumerate() {
            let (scheme, rest) = match e.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, e.as_str()),
            };
            let addr: SocketAddr = rest.parse().map_err(|_| {
                (
                    format!("endpoints[{i}]"),
                    format!(
                        "`{}`: write IP:PORT (or http://IP:PORT, https://IP:PORT); host names \
                         are not resolved",
                        e.escape_default()
                    ),
                )
            })?;
            match (scheme, self.tls.is_some()) {
                (None, _) | (Some("http"), false) | (Some("https"), true) => {}
                (Some("https"), false) => {
                    return Err((
                        format!("endpoints[{i}]"),
                        "https needs `backend.tls` (at least its `ca`)".into(),
                    ));
                }
                (Some("http"), true) => {
                    return Err((
                        format!("endpoints[{i}]"),
                        "http with `backend.tls`: every endpoint uses TLS when it is set".into(),
                    ));
                }
                (Some(other), _) => {
                    return Err((
                        format!("endpoints[{i}]"),
                        format!("unknown scheme `{}`", other.escape_default()),
                    ));
                }
            }
            if self.tls.is_none() && !addr.ip().to_canonical().is_loopback() {
                // In clear text anyone on the path reads the users' hashes and writes roles.
                return Err((
                    format!("endpoints[{i}]"),
                    format!(
                        "{addr} in clear text: etcd off this host needs `backend.tls` (its CA, \
                         and a client certificate)"
                    ),
                ));
            }
            if !addr.ip().to_canonical().is_loopback()
                && self.tls.as_ref().is_some_and(|t| t.cert.is_none())
            {
                // An etcd that takes clients with no certificate takes anyone who reaches it
                // (ippin has no other way to log in to etcd): an SSH forward of any user, a
                // process of a session. Off this host, it must ask for one.
                return Err((
                    format!("endpoints[{i}]"),
                    format!(
                        "{addr}: etcd off this host must ask for a client certificate \
                         (`backend.tls.cert` and `key`, and etcd's --client-cert-auth); \
                         one that takes any client takes every user who can reach it"
                    ),
                ));
            }
            if endpoints.contains(&addr) {
                return Err((format!("endpoints[{i}]"), format!("{addr} is listed twice")));
            }
            endpoints.push(addr);
        }
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        check_prefix(&prefix).map_err(|m| ("prefix".to_owned(), m))?;
        let tls = match self.tls {
            None => None,
            Some(t) => {
                if t.cert.is_some() != t.key.is_some() {
                    return Err((
                        "tls".into(),
                        "give both `cert` and `key` (client certificate), or neither".into(),
                    ));
                }
                if let Some(name) = &t.server_name
                    && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
                {
                    return Err((
                        "tls.server_name".into(),
                        format!(
                            "`{}` is not a DNS name or IP address",
                            name.escape_default()
                        ),
                    ));
                }
                Some(BackendTls {
                    ca: resolve(t.ca),
                    cert: t.cert.map(&resolve),
                    key: t.key.map(&resolve),
                    server_name: t.server_name,
                })
            }
        };
        Ok(BackendConfig {
            endpoints,
            prefix,
            timeout: self.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            tls,
        })
    }
}

/// A key prefix: starts and ends with `/`, at most [`MAX_PREFIX_BYTES`], printable ASCII
/// without spaces, no empty segment (`//`) and no `.`/`..` segment.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = prefix.len() >= 2
        && prefix.len() <= MAX_PREFIX_BYTES
        && prefix.starts_with('/')
        && prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic())
        && prefix[1..prefix.len() - 1]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}`: write a key prefix like `/ippin/` (starts and ends with `/`, at most \
             {MAX_PREFIX_BYTES} printable bytes, no empty, `.` or `..` segment)",
            prefix.escape_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> Result<BackendConfig, (String, String)> {
        let r: RawBackend =
            serde_yaml_ng::from_str(yaml).map_err(|e| ("yaml".into(), e.to_string()))?;
        r.check(|p| PathBuf::from("/etc/ippin").join(p))
    }

    #[test]
    fn defaults_and_forms() {
        let b = raw("kind: etcd\nendpoints: [127.0.0.1:2379, 'http://[::1]:2379']\n").unwrap();
        assert_eq!(b.prefix, "/ippin/");
        assert_eq!(b.timeout, DEFAULT_TIMEOUT);
        assert_eq!(b.endpoints.len(), 2);
        assert!(b.tls.is_none());
        let b = raw(
            "kind: etcd\nendpoints: ['https://10.0.0.1:2379']\nprefix: /prod/ippin/\ntls: {ca: ca.pem, cert: c.pem, key: c.key, server_name: etcd.internal}\n",
        )
        .unwrap();
        let tls = b.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/ippin/ca.pem"));
        assert_eq!(tls.key, Some(PathBuf::from("/etc/ippin/c.key")));
        assert_eq!(b.prefix, "/prod/ippin/");
    }

    #[test]
    fn refusals_name_the_field() {
        for (yaml, field) in [
            ("kind: consul\nendpoints: [127.0.0.1:1]\n", "kind"),
            ("kind: etcd\nendpoints: []\n", "endpoints"),
            ("kind: etcd\nendpoints: [localhost:2379]\n", "endpoints[0]"),
            (
                "kind: etcd\nendpoints: ['https://127.0.0.1:1']\n",
                "endpoints[0]",
            ),
            (
                "kind: etcd\nendpoints: ['ftp://127.0.0.1:1']\n",
                "endpoints[0]",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1, 127.0.0.1:1]\n",
                "endpoints[1]",
            ),
            ("kind: etcd\nendpoints: [10.0.0.1:2379]\n", "endpoints[0]"),
            // Off this host, etcd must ask for a client certificate.
            (
                "kind: etcd\nendpoints: ['https://10.0.0.1:2379']\ntls: {ca: a}\n",
                "endpoints[0]",
            ),
            (
                "kind: etcd\nendpoints: ['https://127.0.0.1:1', 'https://[::ffff:10.0.0.1]:2379']\ntls: {ca: a}\n",
                "endpoints[1]",
            ),
            (
                "kind: etcd\nendpoints: ['http://127.0.0.1:1']\ntls: {ca: a}\n",
                "endpoints[0]",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\nprefix: ippin\n",
                "prefix",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\nprefix: /a//b/\n",
                "prefix",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\nprefix: /a/../\n",
                "prefix",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\nprefix: '/a b/'\n",
                "prefix",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\ntls: {ca: a, cert: b}\n",
                "tls",
            ),
            (
                "kind: etcd\nendpoints: [127.0.0.1:1]\ntls: {ca: a, server_name: 'a b'}\n",
                "tls.server_name",
            ),
        ] {
            let (f, m) = raw(yaml).unwrap_err();
            assert_eq!(f, field, "{yaml}: {m}");
        }
        assert!(raw("kind: etcd\nendpoints: [127.0.0.1:1]\nbogus: 1\n").is_err());
    }
}
