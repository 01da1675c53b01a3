//! The audit log: one JSON object per line, appended and flushed before the
//! event's effect is released.
//!
//! Fail closed: [`Audit::record`] returns an error when the line cannot be
//! written, and the callers then refuse what they were about to allow (no
//! certificate is returned, no access is served). A security tool that
//! cannot say what it did must not do it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ippin_policy::ObservedAddr;
use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// Certificates were issued at login.
    LoginIssued {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Whether it was trusted.
        trusted: bool,
        /// The pinned IP, if any.
        pinned: Option<String>,
        /// Certificate expiry (RFC 3339).
        expires: String,
    },
    /// A login was refused.
    LoginRefused {
        /// The user named in the request ("" if none could be read).
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Reason code.
        reason: String,
    },
    /// Certificates were renewed on the `tls` listener.
    RenewIssued {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The pinned IP carried over, if any.
        pinned: Option<String>,
        /// Certificate expiry (RFC 3339).
        expires: String,
    },
    /// A renewal was refused.
    RenewRefused {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Reason code.
        reason: String,
    },
    /// Access on the `tls` listener was allowed after the pin check.
    AccessAllowed {
        /// The user from the client certificate.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The certificate's pin, as read.
        pinned: Option<String>,
    },
    /// Access was denied.
    AccessDenied {
        /// The user from the client certificate ("" when unreadable).
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The certificate's pin, as read.
        pinned: Option<String>,
        /// Reason code.
        reason: String,
        /// The message sent to the client.
        message: String,
    },
    /// The TLS handshake failed or timed out (for the `tls` listener: no
    /// client certificate, or one that does not chain to the CA).
    TlsRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// `tls_handshake_failed`, `tls_handshake_timeout` or `tls_handshake_shed`
        /// (the handshake stage was full and this was its oldest connection).
        reason: String,
        /// rustls's description.
        detail: String,
    },
    /// A user name got locked, or a client address throttled, by failed
    /// logins (`crate::lockout`); each refused attempt is a `login_refused`.
    LoginLocked {
        /// The user name of the failure that locked (any name: unknown names
        /// lock too).
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// `user_locked` (the name) or `peer_throttled` (the address).
        reason: String,
        /// The failures that lock.
        failures: u32,
        /// End of the lock (RFC 3339).
        until: String,
    },
    /// A login connection was closed at once: its client address holds
    /// `login_limits.max_connections_per_peer` connections already.
    ConnectionRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// The observed client address ("" when refused before the PROXY stage).
        observed: String,
        /// `too_many_connections`.
        reason: String,
        /// The limit.
        limit: usize,
    },
    /// A connection was refused before TLS, at the PROXY stage.
    ProxyRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// Reason code from the PROXY layer.
        reason: String,
    },
    /// A `forward` listener relays a connection to its upstream behind a
    /// signed PROXY v2 header (docs/propagation.md).
    Forwarded {
        /// The TCP peer.
        peer: String,
        /// The observed client address the header vouches for.
        observed: String,
        /// How the front observed it.
        provenance: String,
        /// The upstream it connected to.
        upstream: String,
        /// The audience signed for.
        audience: String,
    },
    /// A `forward` listener did not forward (untrusted client address,
    /// upstream unreachable, signing failed).
    ForwardRefused {
        /// The TCP peer.
        peer: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The configured upstream.
        upstream: String,
        /// Reason code.
        reason: String,
        /// What happened.
        detail: String,
    },
    /// A relayed connection ended.
    ForwardClosed {
        /// The observed client address.
        observed: String,
        /// The upstream.
        upstream: String,
        /// Bytes from the client to the upstream.
        bytes_up: u64,
        /// Bytes from the upstream to the client.
        bytes_down: u64,
    },
    /// An event of an `ssh` listener, whole under `ssh` (its own `event` names it:
    /// `ssh.auth.allowed`, `ssh.auth.denied`, `ssh.exec`, `session.network`,
    /// `ssh.proxy_refused`; see docs/ssh.md).
    Ssh {
        /// The SSH service's event.
        ssh: serde_json::Value,
    },
}

impl AuditEvent {
    /// Formats `observed` as `ip:port` (`[v6]:port`), port 0 when untrusted.
    pub fn addr(observed: &ObservedAddr) -> String {
        observed.socket_addr().to_string()
    }

    /// Formats a TCP peer.
    pub fn peer(peer: SocketAddr) -> String {
        peer.to_string()
    }
}

/// The audit line could not be written; the action it records must not happen.
#[derive(Debug, thiserror::Error)]
#[error("audit log {file}: cannot write: {source}")]
pub struct AuditError {
    /// The log file ("(memory)" for the in-memory sink).
    pub file: PathBuf,
    /// The operating-system error.
    pub source: std::io::Error,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    cluster: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

enum Sink {
    File(File),
    Memory(Vec<String>),
}

/// The audit sink shared by all listeners (cheap to clone).
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Mutex<Sink>>,
    file: PathBuf,
    cluster: Arc<str>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("file", &self.file).finish()
    }
}

impl Audit {
    /// Opens (creates, appends to) the audit log at `path`, mode 0600.
    pub fn open(path: &Path, cluster: &str) -> Result<Audit, AuditError> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path).map_err(|source| AuditError {
            file: path.to_path_buf(),
            source,
        })?;
        Ok(Audit {
            inner: Arc::new(Mutex::new(Sink::File(file))),
            file: path.to_path_buf(),
            cluster: cluster.into(),
        })
    }

    /// An in-memory sink (tests, and the demo's summary).
    pub fn memory(cluster: &str) -> Audit {
        Audit {
            inner: Arc::new(Mutex::new(Sink::Memory(Vec::new()))),
            file: PathBuf::from("(memory)"),
            cluster: cluster.into(),
        }
    }

    /// Appends one event at `now`. The line is written with one `write_all`
    /// and flushed; an error means the action must be refused.
    pub fn record(&self, now: SystemTime, event: &AuditEvent) -> Result<(), AuditError> {
        let line = Line {
            time: humantime::format_rfc3339_millis(now).to_string(),
            cluster: &self.cluster,
            event,
        };
        let mut text = serde_json::to_string(&line).map_err(|e| AuditError {
            file: self.file.clone(),
            source: std::io::Error::other(e),
        })?;
        tracing::info!(target: "ippin::audit", "{text}");
        text.push('\n');
        let mut sink = self.inner.lock().map_err(|_| AuditError {
            file: self.file.clone(),
            source: std::io::Error::other("audit lock poisoned"),
        })?;
        match &mut *sink {
            Sink::File(f) => f
                .write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .map_err(|source| AuditError {
                    file: self.file.clone(),
                    source,
                }),
            Sink::Memory(lines) => {
                lines.push(text);
                Ok(())
            }
        }
    }

    /// The lines recorded by an in-memory sink (empty for a file sink).
    pub fn memory_lines(&self) -> Vec<String> {
        match self.inner.lock().as_deref() {
            Ok(Sink::Memory(lines)) => lines.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ippin_policy::Provenance;
    use std::time::Duration;

    fn event() -> AuditEvent {
        let o = ObservedAddr::new("127.0.0.2:5555".parse().unwrap(), Provenance::Direct, true);
        AuditEvent::AccessDenied {
            user: "alice".into(),
            observed: AuditEvent::addr(&o),
            provenance: o.provenance().as_str().into(),
            pinned: Some("127.0.0.1".into()),
            reason: "pinned_ip_mismatch".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn file_sink_writes_one_json_object_per_line() {
        let dir = ippin_test_support::temp_dir();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, "local").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        audit.record(t, &event()).unwrap();
        audit
            .record(
                t,
                &AuditEvent::ProxyRefused {
                    listener: "tls".into(),
                    peer: "127.0.0.4:1000".into(),
                    reason: "untrusted_proxy".into(),
                },
            )
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "access_denied");
        assert_eq!(lines[0]["observed"], "127.0.0.2:5555");
        assert_eq!(lines[0]["reason"], "pinned_ip_mismatch");
        assert_eq!(lines[0]["cluster"], "local");
        assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(lines[1]["event"], "proxy_refused");
        assert_eq!(lines[1]["peer"], "127.0.0.4:1000");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_failure_is_an_error() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let audit = Audit::open(Path::new("/dev/full"), "local").unwrap();
        let err = audit.record(SystemTime::now(), &event()).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn unopenable_log_is_an_error() {
        let err = Audit::open(Path::new("/nonexistent-dir/x/audit.log"), "c").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir"));
    }
}
