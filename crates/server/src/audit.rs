//! The server's audit log: its event vocabulary ([`AuditEvent`]) written to
//! `ippin-access`'s JSON-lines [`AuditLog`] (capped, summarised, reopened on
//! `SIGHUP`, mode 0600), each line naming the TCP peer of the connection
//! being served ([`CONNECTION_PEER`]).
//!
//! Fail closed: [`Audit::record`] returns an error when the line cannot be
//! written, and the callers then refuse what they were about to allow (no
//! certificate is returned, no access is served). A security tool that
//! cannot say what it did must not do it. The bounds on what an attacker can
//! put in a line and the summariser are the library's (`ippin_access::audit::log`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

pub use ippin_access::audit::log::{
    Admit, AuditError, AuditLog, MAX_FIELD_BYTES, MAX_FIELDS, MAX_ITEMS, MAX_LINE_BYTES,
    SUMMARY_CAPACITY, SUMMARY_FIRST_LINES, SUMMARY_WINDOW, Summariser, SummaryKey, Suppressed,
    cap_field,
};
use ippin_policy::ObservedAddr;
use serde::Serialize;

tokio::task_local! {
    /// The TCP peer of the connection being served. The server's accept loop sets it for
    /// each connection's task, so every line written while serving that connection names
    /// who connected (`peer`), whatever the observed address says: behind a proxy, or when
    /// the observation is a client's claim (an untrusted PROXY header), the two differ.
    pub static CONNECTION_PEER: SocketAddr;

    /// The server's address of the connection being served (its socket's local address),
    /// set with [`CONNECTION_PEER`]: a session's `SSH_CONNECTION` names it.
    pub static CONNECTION_LOCAL: SocketAddr;
}

/// The audit sink shared by all listeners (cheap to clone): the library's
/// [`AuditLog`], with the TCP peer of the connection being served.
#[derive(Clone, Debug)]
pub struct Audit(AuditLog);

impl Audit {
    /// Opens (creates, appends to) the audit log at `path`, mode 0600.
    pub fn open(path: &Path, cluster: &str) -> Result<Audit, AuditError> {
        AuditLog::open(path, cluster).map(Audit)
    }

    /// [`Audit::open`] with its own summariser settings.
    pub fn open_with(path: &Path, cluster: &str, summary: Summariser) -> Result<Audit, AuditError> {
        AuditLog::open_with(path, cluster, summary).map(Audit)
    }

    /// An in-memory sink (tests, and the demo's summary).
    pub fn memory(cluster: &str) -> Audit {
        Audit(AuditLog::memory(cluster))
    }

    /// Appends one event at `now` ([`AuditLog::record`]), naming the TCP peer of the
    /// connection being served when there is one ([`CONNECTION_PEER`]).
    pub fn record(&self, now: SystemTime, event: &AuditEvent) -> Result<(), AuditError> {
        let peer = CONNECTION_PEER.try_with(|p| *p).ok();
        self.0.record(now, event, peer)
    }

    /// [`AuditLog::flush_summaries`].
    pub fn flush_summaries(&self, now: SystemTime, all: bool) -> Result<(), AuditError> {
        self.0.flush_summaries(now, all)
    }

    /// [`AuditLog::reopen`].
    pub fn reopen(&self) -> Result<(), AuditError> {
        self.0.reopen()
    }

    /// [`AuditLog::memory_lines`].
    pub fn memory_lines(&self) -> Vec<String> {
        self.0.memory_lines()
    }
}

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
        /// The cloud private endpoint the pin is bound to (the one the login came through).
        #[serde(skip_serializing_if = "Option::is_none")]
        pinned_endpoint: Option<String>,
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
        /// The cloud private endpoint the client came through, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
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
        /// The cloud private endpoint the pin is bound to, carried over.
        #[serde(skip_serializing_if = "Option::is_none")]
        pinned_endpoint: Option<String>,
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
        /// The cloud private endpoint the client came through, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Reason code.
        reason: String,
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
        /// The refusal in words: for a cloud endpoint refused by `allowed_endpoints`, the
        /// endpoint ID the header named.
        detail: String,
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
    /// A change through the admin API (`admin_changed`): who, from where, what.
    AdminChanged {
        /// The administrator (certificate's user).
        user: String,
        /// The certificate's key id.
        key_id: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// `requested` / `requested_delete` (written before the change is made: a change the
        /// log cannot hold is not made), then `created`, `updated` or `deleted`.
        action: String,
        /// The resource kind.
        kind: String,
        /// The resource name.
        name: String,
        /// The store's revision after the change (0 when requested).
        revision: i64,
    },
    /// An admin API request refused (`admin_refused`).
    AdminRefused {
        /// The certificate's user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Reason code (`not_admin`, `bad_document`, `unknown_kind`, `already_exists`,
        /// `body_too_large`, `backend_unavailable`, …).
        reason: String,
    },
    /// An event of an `ssh` listener, whole under `ssh` (its own `event` names it:
    /// `ssh.auth.allowed`, `ssh.auth.denied`, `ssh.exec`, `session.network`,
    /// `ssh.proxy_refused`; see docs/ssh.md).
    Ssh {
        /// The SSH service's event.
        ssh: serde_json::Value,
    },
    /// Refusals of one kind from one client that were counted rather than written
    /// (`audit.suppressed`, [`Summariser`]).
    #[serde(untagged)]
    Suppressed(Suppressed),
    /// An access decision on the `tls` listener (`access_allowed`,
    /// `access_denied`): `ippin-access`'s event, with its own `event` name.
    #[serde(untagged)]
    Tls(ippin_access::tls::TlsEvent),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ippin_access::audit::log::line_text;
    use ippin_access::tls::TlsEvent;
    use ippin_policy::Provenance;
    use std::collections::HashMap;
    use std::time::Duration;

    fn event() -> AuditEvent {
        let o = ObservedAddr::new("127.0.0.2:5555".parse().unwrap(), Provenance::Direct, true);
        AuditEvent::Tls(TlsEvent::AccessDenied {
            serial: None,
            user: "alice".into(),
            observed: AuditEvent::addr(&o),
            provenance: o.provenance().as_str().into(),
            endpoint: None,
            pinned: Some("127.0.0.1".into()),
            reason: "pinned_ip_mismatch".into(),
            message: "m".into(),
        })
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
                    detail: String::new(),
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

    fn refused(user: &str, ip: &str, reason: &str) -> AuditEvent {
        AuditEvent::LoginRefused {
            user: user.into(),
            observed: format!("{ip}:4000"),
            provenance: "direct".into(),
            endpoint: None,
            reason: reason.into(),
        }
    }

    fn lines(audit: &Audit) -> Vec<serde_json::Value> {
        audit
            .memory_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn long_fields_are_cut_on_a_char_boundary_and_marked() {
        assert_eq!(cap_field("alice"), "alice");
        let exact = "a".repeat(MAX_FIELD_BYTES);
        assert_eq!(cap_field(&exact), exact);
        let long = "é".repeat(MAX_FIELD_BYTES); // 2 bytes each
        let c = cap_field(&long);
        let (kept, marker) = c.split_once('…').unwrap();
        assert_eq!(kept.len(), MAX_FIELD_BYTES);
        assert_eq!(marker, format!("[+{} bytes]", long.len() - MAX_FIELD_BYTES));
        let odd = format!("a{}", "é".repeat(MAX_FIELD_BYTES));
        let c = cap_field(&odd);
        let (kept, marker) = c.split_once('…').unwrap();
        assert_eq!(
            kept.len(),
            MAX_FIELD_BYTES - 1,
            "cut before a split character"
        );
        assert_eq!(marker, format!("[+{} bytes]", odd.len() - kept.len()));
    }

    #[test]
    fn a_100_kb_user_name_gives_a_bounded_line() {
        let audit = Audit::memory("c");
        let huge = "A".repeat(100 * 1024);
        audit
            .record(
                SystemTime::now(),
                &refused(&huge, "127.0.0.1", "bad_credentials"),
            )
            .unwrap();
        let text = &audit.memory_lines()[0];
        assert!(text.len() < 1024, "{}", text.len());
        assert!(
            text.contains(r#""cluster":"c","event":"login_refused","observed""#),
            "time, cluster, event, then the fields in order: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(v["user"].as_str().unwrap().ends_with("…[+102144 bytes]"));
        // Inside an SSH event too, lists included.
        let ssh = serde_json::json!({
            "event": "ssh.auth.denied", "user": huge, "observed": "127.0.0.9:1",
            "reason": "unknown_user", "pinned": vec!["x".repeat(5000); 1000],
        });
        audit
            .record(SystemTime::now(), &AuditEvent::Ssh { ssh })
            .unwrap();
        let text = &audit.memory_lines()[1];
        assert!(text.len() < MAX_LINE_BYTES, "{}", text.len());
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["ssh"]["pinned"].as_array().unwrap().len(), MAX_ITEMS + 1);
    }

    #[test]
    fn a_burst_of_refusals_from_one_peer_is_summarised() {
        let audit = Audit::memory("c");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..100 {
            let t = t0 + Duration::from_millis(i * 10);
            audit
                .record(t, &refused("mallory", "198.51.100.7", "bad_credentials"))
                .unwrap();
            // Another peer and another reason have windows of their own.
            if i < 3 {
                audit
                    .record(t, &refused("x", "198.51.100.8", "bad_credentials"))
                    .unwrap();
                audit
                    .record(t, &refused("x", "198.51.100.7", "unknown_user"))
                    .unwrap();
            }
            // Grants are never summarised.
            audit.record(t, &event_allowed()).unwrap();
        }
        let l = lines(&audit);
        let refusals = |ip: &str, reason: &str| {
            l.iter()
                .filter(|v| {
                    v["event"] == "login_refused"
                        && v["observed"].as_str().unwrap().starts_with(ip)
                        && v["reason"] == reason
                })
                .count()
        };
        assert_eq!(refusals("198.51.100.7", "bad_credentials"), 5);
        assert_eq!(refusals("198.51.100.8", "bad_credentials"), 3);
        assert_eq!(refusals("198.51.100.7", "unknown_user"), 3);
        assert_eq!(
            l.iter().filter(|v| v["event"] == "access_allowed").count(),
            100
        );
        assert!(!l.iter().any(|v| v["event"] == "audit.suppressed"));
        // The window ends: the next event (any) writes the summary first.
        let later = t0 + SUMMARY_WINDOW + Duration::from_secs(1);
        audit.record(later, &event_allowed()).unwrap();
        let l = lines(&audit);
        let s: Vec<_> = l
            .iter()
            .filter(|v| v["event"] == "audit.suppressed")
            .collect();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0]["count"], 95);
        assert_eq!(s[0]["peer"], "198.51.100.7");
        assert_eq!(s[0]["kind"], "login_refused");
        assert_eq!(s[0]["reason"], "bad_credentials");
        assert_eq!(s[0]["window_secs"], 60);
        assert_eq!(s[0]["window_start"], "2023-11-14T22:13:20.000Z");
        assert_eq!(l.last().unwrap()["event"], "access_allowed");
        // A new window writes again.
        audit
            .record(
                later,
                &refused("mallory", "198.51.100.7", "bad_credentials"),
            )
            .unwrap();
        assert_eq!(lines(&audit).last().unwrap()["event"], "login_refused");
    }

    fn event_allowed() -> AuditEvent {
        AuditEvent::Tls(TlsEvent::AccessAllowed {
            serial: None,
            user: "alice".into(),
            observed: "198.51.100.7:1".into(),
            provenance: "direct".into(),
            endpoint: None,
            pinned: None,
        })
    }

    #[test]
    fn summaries_keep_the_identity_and_the_client_behind_a_balancer() {
        let key = |v: serde_json::Value| SummaryKey::of(&v).expect("a refusal");
        // Two stolen certificates refused from one address: two windows, so the second is
        // written however many times the first was used.
        let alice = key(
            serde_json::json!({"event": "access_denied", "user": "alice",
            "observed": "192.0.2.9:5000", "reason": "pinned_ip_mismatch"}),
        );
        let carol = key(
            serde_json::json!({"event": "access_denied", "user": "carol",
            "observed": "192.0.2.9:5000", "reason": "pinned_ip_mismatch"}),
        );
        assert_ne!(alice, carol);
        assert_eq!(alice.user, "alice");
        // SSH: the key id too.
        let ssh = key(
            serde_json::json!({"event": "ssh", "ssh": {"event": "ssh.auth.denied",
            "user": "bob", "key_id": "bob@ippin/7", "observed": "192.0.2.9:5000",
            "reason": "expired"}}),
        );
        assert_eq!(
            (ssh.user.as_str(), ssh.key_id.as_str()),
            ("", "bob@ippin/7")
        );
        // Names the client chose are never part of the key: a login's user name, the SSH user
        // name, a key id the CA did not sign. Varying them keeps one window.
        for (user, reason) in [
            ("x1", "untrusted_ca"),
            ("x2", "untrusted_ca"),
            ("x3", "bad_ca_signature"),
        ] {
            let k = key(
                serde_json::json!({"event": "ssh", "ssh": {"event": "ssh.auth.denied",
                "user": user, "key_id": user, "observed": "192.0.2.9:5000", "reason": reason}}),
            );
            assert_eq!((k.user.as_str(), k.key_id.as_str()), ("", ""), "{user}");
        }
        let login = |user: &str| {
            key(serde_json::json!({"event": "login_refused", "user": user,
            "observed": "192.0.2.9:5000", "reason": "peer_throttled"}))
        };
        assert_eq!(login("a"), login("b"));
        // "alice stolen" with no key id is not "alice" with key id "stolen".
        let tls = key(
            serde_json::json!({"event": "access_denied", "user": "alice stolen",
            "observed": "192.0.2.9:5000", "reason": "expired"}),
        );
        assert_eq!(
            (tls.user.as_str(), tls.key_id.as_str()),
            ("alice stolen", "")
        );
        // IPv6 clients count per /64.
        let v6 = |a: &str| {
            key(serde_json::json!({"event": "login_refused", "user": "",
            "observed": a, "reason": "bad_credentials"}))
        };
        assert_eq!(v6("[2001:db8:1:2::5]:9").peer, "2001:db8:1:2::/64");
        assert_eq!(v6("[2001:db8:1:2::5]:9"), v6("[2001:db8:1:2:ffff::1]:9"));
        // Behind a load balancer: the client the balancer names, not the balancer.
        let behind = |client: &str| {
            key(
                serde_json::json!({"event": "tls_refused", "peer": "10.0.0.1:4000",
                "observed": client, "reason": "tls_handshake_failed"}),
            )
        };
        assert_eq!(behind("198.51.100.7:5000").peer, "198.51.100.7");
        assert_ne!(behind("198.51.100.7:5000"), behind("198.51.100.8:5000"));
        // An untrusted observation (port 0) is the client's claim: the TCP peer counts.
        assert_eq!(behind("198.51.100.7:0").peer, "10.0.0.1");
        // The connection's TCP peer, added to a line that has none, also keys SSH refusals.
        let ssh = key(serde_json::json!({"event": "ssh", "peer": "10.0.0.9:4000",
            "ssh": {"event": "ssh.auth.denied", "user": "bob", "observed": "198.51.100.7:0",
            "reason": "untrusted_client_ip"}}));
        assert_eq!(ssh.peer, "10.0.0.9");
    }

    #[test]
    fn lines_written_while_serving_a_connection_name_its_tcp_peer() {
        let event = AuditEvent::LoginRefused {
            user: "mallory".into(),
            observed: "198.51.100.99:0".into(),
            provenance: "proxy_v1".into(),
            endpoint: None,
            reason: "bad_credentials".into(),
        };
        let peer: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        let (text, key) = line_text("t", "c", &event, Some(peer)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["peer"], "127.0.0.5:40000");
        assert_eq!(v["observed"], "198.51.100.99:0");
        // The claimed address does not key the summary: the TCP peer does.
        assert_eq!(key.unwrap().peer, "127.0.0.5");
        // A line that has its own `peer` keeps it.
        let own = AuditEvent::ProxyRefused {
            listener: "tls".into(),
            peer: "10.0.0.1:1".into(),
            reason: "timeout".into(),
            detail: String::new(),
        };
        let (text, _) = line_text("t", "c", &own, Some(peer)).unwrap();
        assert!(text.contains("\"peer\":\"10.0.0.1:1\""), "{text}");
    }

    #[test]
    fn one_client_cannot_fill_the_table() {
        let mut s = Summariser::new(Duration::from_secs(60), 1, 4096);
        let t = SystemTime::UNIX_EPOCH;
        // One client refused with 10,000 verified identities: its windows stop at its share,
        // then its refusals are counted per (event, reason) without the identity.
        for i in 0..10_000 {
            let k = SummaryKey {
                peer: "192.0.2.9".into(),
                kind: "access_denied".into(),
                reason: "pinned_ip_mismatch".into(),
                user: format!("u{i}"),
                key_id: String::new(),
            };
            s.admit(t, k);
        }
        assert_eq!(
            s.len(),
            ippin_access::audit::log::SUMMARY_WINDOWS_PER_CLIENT + 1
        );
        let ended = s.ended(t, true);
        let coarse: u64 = ended
            .iter()
            .filter(|e| e.user.is_empty())
            .map(|e| e.count)
            .sum();
        assert_eq!(
            coarse,
            10_000 - 32 - 1,
            "every refusal past the share is counted"
        );
    }

    #[test]
    fn hidden_characters_are_written_as_text() {
        let event = AuditEvent::LoginRefused {
            user: "a\u{9b}2J\u{202e}b\u{7f}c\u{2028}".into(),
            observed: "198.51.100.99:0".into(),
            provenance: "direct".into(),
            endpoint: None,
            reason: "bad_credentials".into(),
        };
        let (text, _) = line_text("t", "c", &event, None).unwrap();
        for raw in ['\u{9b}', '\u{202e}', '\u{7f}', '\u{2028}'] {
            assert!(!text.contains(raw), "{raw:?} raw in {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["user"], "a\\u{009b}2J\\u{202e}b\\u{007f}c\\u{2028}");
    }

    #[test]
    fn a_full_summariser_writes_lines_rather_than_dropping_them() {
        let mut s = Summariser::new(Duration::from_secs(60), 1, 2);
        let t = SystemTime::UNIX_EPOCH;
        let key = |p: &str| SummaryKey {
            peer: p.into(),
            kind: "login_refused".into(),
            reason: "r".into(),
            user: String::new(),
            key_id: String::new(),
        };
        assert_eq!(s.admit(t, key("a")), Admit::Write);
        assert_eq!(s.admit(t, key("b")), Admit::Write);
        assert_eq!(s.admit(t, key("a")), Admit::Suppress);
        // Full: a third peer is written every time.
        for _ in 0..10 {
            assert_eq!(s.admit(t, key("c")), Admit::Write);
        }
        assert_eq!(s.len(), 2);
        let ended = s.ended(t, true);
        assert_eq!(
            ended.len(),
            1,
            "only windows that suppressed something: {ended:?}"
        );
        assert!(s.is_empty());
    }

    #[test]
    fn reopen_sends_new_lines_to_a_fresh_file_at_the_path() {
        let dir = ippin_test_support::temp_dir();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, "c").unwrap();
        audit.record(SystemTime::now(), &event()).unwrap();
        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        audit.record(SystemTime::now(), &event()).unwrap();
        audit.reopen().unwrap();
        audit.record(SystemTime::now(), &event_allowed()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            2
        );
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 1);
        assert!(fresh.contains("access_allowed"));
    }

    fn any_event() -> impl proptest::strategy::Strategy<Value = AuditEvent> {
        use proptest::prelude::*;
        let s = || ".{0,600}|[\\PC\\u{0}-\\u{1f}\"\\\\]{0,3000}";
        prop_oneof![
            (s(), s(), s(), s()).prop_map(|(user, observed, provenance, reason)| {
                AuditEvent::LoginRefused {
                    user,
                    observed,
                    provenance,
                    endpoint: None,
                    reason,
                }
            }),
            (s(), s(), s(), s(), s(), proptest::option::of(s())).prop_map(
                |(user, observed, provenance, reason, message, pinned)| {
                    AuditEvent::Tls(TlsEvent::AccessDenied {
                        serial: None,
                        user,
                        observed,
                        provenance,
                        endpoint: None,
                        pinned,
                        reason,
                        message,
                    })
                }
            ),
            (s(), s(), s(), s(), s(), s()).prop_map(
                |(listener, peer, observed, provenance, reason, detail)| {
                    AuditEvent::TlsRefused {
                        listener,
                        peer,
                        observed,
                        provenance,
                        reason,
                        detail,
                    }
                }
            ),
            (s(), s(), proptest::collection::vec(s(), 0..40)).prop_map(|(user, reason, pinned)| {
                AuditEvent::Ssh {
                    ssh: serde_json::json!({
                        "event": "ssh.auth.denied", "user": user, "observed": "127.0.0.1:2",
                        "reason": reason, "pinned": pinned,
                    }),
                }
            }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the strings, a line is one JSON object of at most MAX_LINE_BYTES, every
        /// string in it at most MAX_FIELD_BYTES plus the marker.
        #[test]
        fn no_line_exceeds_the_bound(event in any_event()) {
            let (text, _) = line_text("2023-11-14T22:13:20.000Z", "c", &event, None).unwrap();
            proptest::prop_assert!(text.len() <= MAX_LINE_BYTES, "{}", text.len());
            proptest::prop_assert!(!text.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
                match v {
                    serde_json::Value::String(s) => out.push(s.clone()),
                    serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                    serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            strings(&v, &mut all);
            for s in all {
                proptest::prop_assert!(s.len() <= MAX_FIELD_BYTES + "…[+18446744073709551615 bytes]".len());
            }
        }

        /// Every refusal is either written or counted in exactly one summary: written +
        /// suppressed == recorded, per key, whatever the sequence of peers, reasons and times.
        #[test]
        fn summariser_counts_add_up(
            seq in proptest::collection::vec((0u8..4, 0u8..3, 0u64..200), 0..300),
            first in 0u32..4,
            capacity in 0usize..6,
        ) {
            let window = Duration::from_secs(30);
            let mut s = Summariser::new(window, first, capacity);
            let mut recorded: HashMap<SummaryKey, u64> = HashMap::new();
            let mut accounted: HashMap<SummaryKey, u64> = HashMap::new();
            let mut t = SystemTime::UNIX_EPOCH;
            let count_ended = |ended: Vec<Suppressed>, acc: &mut HashMap<SummaryKey, u64>| {
                for e in ended {
                    let Suppressed { peer, kind, reason, user, key_id, count, .. } = e;
                    *acc.entry(SummaryKey { peer, kind, reason, user, key_id }).or_default() += count;
                }
            };
            for (peer, reason, step) in seq {
                t += Duration::from_secs(step);
                let key = SummaryKey {
                    peer: format!("10.0.0.{peer}"),
                    kind: "login_refused".into(),
                    reason: format!("r{reason}"),
                    user: String::new(),
                    key_id: String::new(),
                };
                count_ended(s.ended(t, false), &mut accounted);
                *recorded.entry(key.clone()).or_default() += 1;
                if s.admit(t, key.clone()) == Admit::Write {
                    *accounted.entry(key).or_default() += 1;
                }
                proptest::prop_assert!(s.len() <= capacity);
            }
            count_ended(s.ended(t, true), &mut accounted);
            proptest::prop_assert_eq!(recorded, accounted);
            proptest::prop_assert!(s.is_empty());
        }
    }

    #[test]
    fn unopenable_log_is_an_error() {
        let err = Audit::open(Path::new("/nonexistent-dir/x/audit.log"), "c").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir"));
    }
}
