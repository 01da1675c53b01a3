//! The configuration of propagation: a `forward` listener's `forward:`
//! section and any listener's `propagation:` section. The configuration
//! reads them with the rest of the listener and calls [`check_listener`].
//! Plain data: the rules it checks (audiences, key files, bounds) are
//! `ippin-propagation`'s; the propagation feature takes these sections as
//! they are.
//!
//! ```yaml
//! listeners:
//!   - kind: forward                # the front
//!     listen: 127.0.0.1:4000
//!     proxy_protocol: on           # governs what the front itself accepts
//!     forward:
//!       upstream: 127.0.0.1:4443   # host:port of the inner listener
//!       audience: inner-tls        # the inner listener's propagation.audience
//!       cert: proxy-front.pem      # `ippin ca issue-proxy` writes these
//!       key: proxy-front.key
//!       upstream_key: inner-tls.propkey.pub  # the inner's public key
//!       # grant_lifetime: 10m      a new grant every half (at most 1h)
//!   - kind: tls                    # an inner listener
//!     listen: 127.0.0.1:4443
//!     proxy_protocol: off          # unsigned headers: refused here
//!     propagation:
//!       audience: inner-tls        # this listener's name in signed headers (one listener each)
//!       key: inner-tls.propkey     # `ippin ca propagation-key` writes it
//!       window: 30s                # freshness window (default 30s, at most 1h)
//!       # trusted_ca: ca/tls_ca.pem   default: the cluster X.509 CA
//!       # replay_capacity: 65536     front->inner 4-tuples remembered (never "full")
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use ippin_propagation::key::{PublicKey, SecretKey};
use ippin_propagation::sign::audience_ok;
use ippin_propagation::verify::DEFAULT_REPLAY_CAPACITY;

use super::{ListenerKind, ProxyModeSetting};

/// The largest freshness window.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// A front's default grant lifetime (a new grant every half of it).
pub const DEFAULT_GRANT_LIFETIME: Duration = Duration::from_secs(600);

/// The longest grant lifetime.
pub const MAX_GRANT_LIFETIME: Duration =
    Duration::from_secs(ippin_propagation::sign::MAX_GRANT_LIFETIME);

/// The shortest grant lifetime.
pub const MIN_GRANT_LIFETIME: Duration = Duration::from_secs(2);

/// The largest replay state (4-tuples).
pub const MAX_REPLAY_CAPACITY: usize = 10_000_000;

/// A `forward` listener's target and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The upstream listener, `host:port`.
    pub upstream: String,
    /// The upstream's audience (its `propagation.audience`).
    pub audience: String,
    /// The front's certificate (PEM, from `ippin ca issue-proxy`).
    pub cert: PathBuf,
    /// The front's Ed25519 key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The file of the upstream's static X25519 public key (`NAME.propkey.pub`).
    pub upstream_key: PathBuf,
    /// That key, read when the configuration loads.
    pub upstream_public: PublicKey,
    /// How long each grant the front signs is valid.
    pub grant_lifetime: Duration,
}

/// A listener's acceptance of signed headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationConfig {
    /// This listener's name in signed headers.
    pub audience: String,
    /// The file of this listener's static X25519 secret key (`NAME.propkey`).
    pub key: PathBuf,
    /// That key, read when the configuration loads.
    pub secret: SecretKey,
    /// How far a header's timestamp may be from now.
    pub window: Duration,
    /// The CA fronts' certificates must chain to (`None`: the cluster CA).
    pub trusted_ca: Option<PathBuf>,
    /// How many front → inner connection 4-tuples the replay state
    /// remembers (see [`ippin_propagation::replay`]).
    pub replay_capacity: usize,
}

/// The YAML shape of `forward:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    upstream: String,
    audience: String,
    cert: PathBuf,
    key: PathBuf,
    upstream_key: PathBuf,
    #[serde(default)]
    grant_lifetime: Option<String>,
}

/// The YAML shape of `propagation:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPropagation {
    audience: String,
    key: PathBuf,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    trusted_ca: Option<PathBuf>,
    #[serde(default)]
    replay_capacity: Option<usize>,
}

/// Reads a key file (bounded) and parses it; the message names the file.
fn read_key<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, ippin_propagation::Error>,
) -> Result<T, String> {
    let text = crate::files::read_public(path, 64 * 1024).map_err(|e| e.to_string())?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`read_key`] for a secret key: refused when group or others may access it.
fn read_secret_key<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, ippin_propagation::Error>,
) -> Result<T, String> {
    let text = crate::files::read_private(path, 64 * 1024).map_err(|e| e.to_string())?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn check_upstream(upstream: &str) -> Result<(), String> {
    let ok = upstream
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}`: expected `host:port` (`127.0.0.1:4443`, `[::1]:4443`, `inner.example:4443`)",
            upstream.escape_default()
        ))
    }
}

fn audience(field: &'static str, a: &str) -> Result<(), (&'static str, String)> {
    if audience_ok(a) {
        Ok(())
    } else {
        Err((
            field,
            format!(
                "`{}`: use 1 to 255 printable ASCII characters, no spaces",
                a.escape_default()
            ),
        ))
    }
}

/// The propagation settings of one listener, checked; `resolve` makes
/// paths relative to the configuration file. Errors name the field
/// (relative to the listener) and what is wrong.
///
/// # Errors
/// `(field, message)`.
#[allow(clippy::type_complexity)]
pub fn check_listener(
    kind: ListenerKind,
    mode: ProxyModeSetting,
    forward: Option<RawForward>,
    propagation: Option<RawPropagation>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<(Option<ForwardConfig>, Option<PropagationConfig>), (&'static str, String)> {
    let forward = match (kind, forward) {
        (ListenerKind::Forward, None) => {
            return Err((
                "forward",
                "a `forward` listener needs `forward: {upstream, audience, cert, key, upstream_key}`".into(),
            ));
        }
        (ListenerKind::Forward, Some(f)) => {
            if mode == ProxyModeSetting::Unspecified {
                return Err((
                    "proxy_protocol",
                    "a `forward` listener vouches for its clients' addresses: set \
                     `proxy_protocol: on` (behind a load balancer) or `off` (direct clients)"
                        .into(),
                ));
            }
            check_upstream(&f.upstream).map_err(|m| ("forward.upstream", m))?;
            audience("forward.audience", &f.audience)?;
            let grant_lifetime = match &f.grant_lifetime {
                None => DEFAULT_GRANT_LIFETIME,
                Some(text) => humantime::parse_duration(text).map_err(|e| {
                    (
                        "forward.grant_lifetime",
                        format!("duration `{text}`: {e} (write it as `10m`)"),
                    )
                })?,
            };
            if grant_lifetime < MIN_GRANT_LIFETIME || grant_lifetime > MAX_GRANT_LIFETIME {
                return Err((
                    "forward.grant_lifetime",
                    format!(
                        "{}s: use {}s to {}s",
                        grant_lifetime.as_secs(),
                        MIN_GRANT_LIFETIME.as_secs(),
                        MAX_GRANT_LIFETIME.as_secs()
                    ),
                ));
            }
            let upstream_key = resolve(f.upstream_key);
            let upstream_public = read_key(&upstream_key, PublicKey::from_pem)
                .map_err(|m| ("forward.upstream_key", m))?;
            Some(ForwardConfig {
                upstream: f.upstream,
                audience: f.audience,
                cert: resolve(f.cert),
                key: resolve(f.key),
                upstream_key,
                upstream_public,
                grant_lifetime,
            })
        }
        (_, Some(_)) => {
            return Err((
                "forward",
                format!("only a `forward` listener has a `forward` section, not a `{kind}` one"),
            ));
        }
        (_, None) => None,
    };
    let propagation = match propagation {
        None => None,
        Some(p) => {
            audience("propagation.audience", &p.audience)?;
            let window = match &p.window {
                None => Duration::from_secs(30),
                Some(text) => humantime::parse_duration(text).map_err(|e| {
                    (
                        "propagation.window",
                        format!("duration `{text}`: {e} (write it as `30s`)"),
                    )
                })?,
            };
            if window.as_secs() == 0 || window > MAX_WINDOW {
                return Err((
                    "propagation.window",
                    format!("{}s: use 1s to {}s", window.as_secs(), MAX_WINDOW.as_secs()),
                ));
            }
            let replay_capacity = p.replay_capacity.unwrap_or(DEFAULT_REPLAY_CAPACITY);
            if replay_capacity == 0 || replay_capacity > MAX_REPLAY_CAPACITY {
                return Err((
                    "propagation.replay_capacity",
                    format!("{replay_capacity}: use 1 to {MAX_REPLAY_CAPACITY}"),
                ));
            }
            let key = resolve(p.key);
            let secret =
                read_secret_key(&key, SecretKey::from_pem).map_err(|m| ("propagation.key", m))?;
            Some(PropagationConfig {
                audience: p.audience,
                key,
                secret,
                window,
                trusted_ca: p.trusted_ca.map(resolve),
                replay_capacity,
            })
        }
    };
    Ok((forward, propagation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_fwd(upstream: &str, audience: &str) -> RawForward {
        RawForward {
            upstream: upstream.into(),
            audience: audience.into(),
            cert: "proxy.pem".into(),
            key: "proxy.key".into(),
            upstream_key: "inner.propkey.pub".into(),
            grant_lifetime: None,
        }
    }

    fn raw_prop(window: Option<&str>, cap: Option<usize>) -> RawPropagation {
        RawPropagation {
            audience: "inner".into(),
            key: "inner.propkey".into(),
            window: window.map(Into::into),
            trusted_ca: None,
            replay_capacity: cap,
        }
    }

    /// A folder with `inner.propkey` and `inner.propkey.pub`, and a
    /// resolver relative to it.
    fn base() -> impl Fn(PathBuf) -> PathBuf {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR
            .get_or_init(|| {
                let d = tempfile::tempdir().unwrap();
                let s = SecretKey::from_bytes([3; 32]);
                crate::files::replace(
                    &d.path().join("inner.propkey"),
                    s.to_pem().as_bytes(),
                    0o600,
                )
                .unwrap();
                std::fs::write(d.path().join("inner.propkey.pub"), s.public_key().to_pem())
                    .unwrap();
                std::fs::write(d.path().join("junk"), "hello").unwrap();
                d
            })
            .path()
            .to_path_buf();
        move |p: PathBuf| dir.join(p)
    }

    #[test]
    fn forward_sections_are_checked() {
        let on = ProxyModeSetting::On;
        let (f, p) = check_listener(
            ListenerKind::Forward,
            on,
            Some(raw_fwd("[::1]:4443", "inner")),
            None,
            &base(),
        )
        .unwrap();
        let f = f.unwrap();
        assert_eq!(f.cert, base()(PathBuf::from("proxy.pem")));
        assert_eq!(
            f.upstream_public,
            SecretKey::from_bytes([3; 32]).public_key()
        );
        // Missing, malformed, or the secret file where the public one belongs.
        for bad in ["missing.pub", "junk", "inner.propkey"] {
            let mut raw = raw_fwd("a:1", "x");
            raw.upstream_key = bad.into();
            let e =
                check_listener(ListenerKind::Forward, on, Some(raw), None, &base()).unwrap_err();
            assert_eq!(e.0, "forward.upstream_key", "{bad}");
            assert!(e.1.contains(bad), "{bad}: {}", e.1);
        }
        assert_eq!(f.grant_lifetime, DEFAULT_GRANT_LIFETIME);
        for (text, ok) in [
            ("1h", true),
            ("2s", true),
            ("1s", false),
            ("2h", false),
            ("x", false),
        ] {
            let mut raw = raw_fwd("a:1", "x");
            raw.grant_lifetime = Some(text.into());
            let r = check_listener(ListenerKind::Forward, on, Some(raw), None, &base());
            match r {
                Ok(_) => assert!(ok, "{text}"),
                Err((field, _)) => {
                    assert!(!ok, "{text}");
                    assert_eq!(field, "forward.grant_lifetime");
                }
            }
        }
        assert!(p.is_none());
        let err =
            |k, m, f: Option<RawForward>| check_listener(k, m, f, None, &base()).unwrap_err().0;
        assert_eq!(err(ListenerKind::Forward, on, None), "forward");
        assert_eq!(
            err(ListenerKind::Tls, on, Some(raw_fwd("a:1", "x"))),
            "forward"
        );
        assert_eq!(
            err(
                ListenerKind::Forward,
                ProxyModeSetting::Unspecified,
                Some(raw_fwd("a:1", "x"))
            ),
            "proxy_protocol"
        );
        for bad in ["inner", ":443", "inner:0", "inner:http", ""] {
            assert_eq!(
                err(ListenerKind::Forward, on, Some(raw_fwd(bad, "x"))),
                "forward.upstream",
                "{bad}"
            );
        }
        assert_eq!(
            err(ListenerKind::Forward, on, Some(raw_fwd("a:1", "in ner"))),
            "forward.audience"
        );
    }

    #[test]
    fn propagation_sections_are_checked() {
        let go = |p| {
            check_listener(
                ListenerKind::Tls,
                ProxyModeSetting::Off,
                None,
                Some(p),
                &base(),
            )
        };
        let p = go(raw_prop(None, None)).unwrap().1.unwrap();
        assert_eq!(p.window, Duration::from_secs(30));
        assert_eq!(
            p.secret.public_key(),
            SecretKey::from_bytes([3; 32]).public_key()
        );
        for bad in ["missing", "junk", "inner.propkey.pub"] {
            let mut raw = raw_prop(None, None);
            raw.key = bad.into();
            let e = go(raw).unwrap_err();
            assert_eq!(e.0, "propagation.key", "{bad}");
            assert!(e.1.contains(bad), "{bad}: {}", e.1);
        }
        assert_eq!(p.replay_capacity, DEFAULT_REPLAY_CAPACITY);
        assert_eq!(
            go(raw_prop(Some("2h"), None)).unwrap_err().0,
            "propagation.window"
        );
        assert_eq!(
            go(raw_prop(Some("soon"), None)).unwrap_err().0,
            "propagation.window"
        );
        assert_eq!(
            go(raw_prop(None, Some(0))).unwrap_err().0,
            "propagation.replay_capacity"
        );
    }
}
