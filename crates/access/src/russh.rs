//! The SSH decision table for a russh server (feature `russh`).
//!
//! A russh [`Handler`](::russh::server::Handler) calls [`certificate`] from
//! `auth_openssh_certificate`: it runs [`ssh::authorize`](crate::ssh::authorize) against the
//! connection's observed address and a [`UserDirectory`](crate::UserDirectory), records the
//! `ssh.auth.allowed` or `ssh.auth.denied` event to the [`SshAudit`] sink, and returns the
//! [`Auth`] to answer with the [`Authorized`] user (or the [`SshDenial`]). The audit is fail
//! closed: an allowed authentication whose line cannot be recorded is refused
//! (`audit_unavailable`). The other methods (`auth_password`, `auth_publickey`,
//! `auth_keyboard_interactive`) answer with [`other_method`], which refuses them with
//! `not_a_certificate`, audited.
//!
//! ```no_run
//! use ippin_access::russh::{Connection, certificate};
//! use ippin_access::ssh::{AuthContext, Authorized, CertIdentity, SshAudit};
//! use ippin_access::UserDirectory;
//! use ippin_cert::ssh_key::{Certificate, Fingerprint};
//! use russh::server::Auth;
//!
//! struct Handler {
//!     conn: Connection, // the session id and the observed address (PROXY stage)
//!     trusted_cas: Vec<Fingerprint>,
//!     users: Box<dyn UserDirectory>,
//!     audit: Box<SshAudit>,
//!     user: Option<Authorized>,
//! }
//!
//! impl russh::server::Handler for Handler {
//!     type Error = russh::Error;
//!
//!     async fn auth_openssh_certificate(
//!         &mut self,
//!         user: &str,
//!         cert: &Certificate,
//!     ) -> Result<Auth, Self::Error> {
//!         let ctx = AuthContext {
//!             identity: CertIdentity::IppinKeyId,
//!             trusted_cas: &self.trusted_cas,
//!             users: self.users.as_ref(),
//!             honours_force_command: false,
//!         };
//!         let now = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
//!         let decided = certificate(&ctx, &self.conn, self.audit.as_ref(), user, cert, now);
//!         self.user = decided.outcome.ok();
//!         Ok(decided.auth)
//!     }
//! }
//! ```
//!
//! # On stock russh
//!
//! This module uses only the API of russh 0.65 as published. The ippin server builds on a
//! russh with two local changes; a server on stock russh gets the same decisions for every
//! certificate that reaches its handler, and loses this:
//!
//! - **Certificates outside their validity window, or whose CA signature does not verify,
//!   never reach the handler.** Stock russh refuses them itself, before any `Handler` method
//!   is called: the client gets a plain failure, and nothing is audited (no `expired`,
//!   `not_yet_valid` or `bad_ca_signature` line), so the application cannot tell the user to
//!   log in again. The table still checks the window and the signature, so nothing is
//!   accepted that russh would refuse.
//! - **No reason for the user with the refusal.** Stock russh sends its one userauth banner
//!   before any authentication request, so it cannot say why a request was refused. The
//!   reason can only travel in a disconnect message after the failure reply
//!   ([`client_message`] gives a safe text for it), and the OpenSSH client does not show that
//!   message when the refused certificate was its last identity: it prints `Permission denied
//!   (publickey)`. The audit line has the reason either way.

use std::net::SocketAddr;

use ::russh::server::Auth;
use ::russh::{MethodKind, MethodSet};
use ippin_cert::ssh_key::Certificate;
use ippin_policy::ObservedAddr;

use crate::ssh::{
    AuthContext, AuthRecord, Authorized, SshAudit, SshAuditEvent, SshDenial, SshDenyReason,
    authorize,
};

/// What the handler knows about its connection, for the decision and its audit lines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connection {
    /// An id of this connection, written in every audit line of it.
    pub session_id: String,
    /// The TCP peer, when known (behind a proxy it differs from the observed address).
    pub peer: Option<SocketAddr>,
    /// The observed client address (the PROXY stage's answer).
    pub observed: ObservedAddr,
}

impl Connection {
    /// A connection seen at `observed` (`peer` the TCP peer, when known).
    pub fn new(
        session_id: impl Into<String>,
        peer: Option<SocketAddr>,
        observed: ObservedAddr,
    ) -> Connection {
        Connection {
            session_id: session_id.into(),
            peer,
            observed,
        }
    }

    fn record(&self, user: &str, cert: Option<&Certificate>) -> AuthRecord {
        AuthRecord::attempt(&self.session_id, user, cert, self.peer, &self.observed)
    }
}

/// The answer to one certificate authentication.
#[derive(Debug)]
#[non_exhaustive]
pub struct CertDecision {
    /// What to return from `auth_openssh_certificate`: [`Auth::Accept`] only when `outcome`
    /// is `Ok` and its audit line was recorded.
    pub auth: Auth,
    /// The authenticated user, or why not.
    pub outcome: Result<Authorized, SshDenial>,
}

/// Decides a certificate authentication and audits it; see the module docs.
///
/// `now` is the current time in Unix seconds. The denial line is recorded whatever the sink
/// answers (a denial stands anyway); the allowed line must be recorded, or the answer is a
/// refusal with [`SshDenyReason::AuditUnavailable`] (its own denial line is then attempted).
pub fn certificate(
    ctx: &AuthContext<'_>,
    conn: &Connection,
    audit: &SshAudit,
    user: &str,
    cert: &Certificate,
    now: u64,
) -> CertDecision {
    match authorize(ctx, user, cert, &conn.observed, now) {
        Ok(who) => {
            let mut rec = conn.record(user, Some(cert));
            rec.event = "ssh.auth.allowed";
            rec.user = who.user.clone();
            rec.login = who.login.clone();
            rec.pinned = who.pinned.clone();
            rec.roles = who.roles.clone();
            if audit.record(SshAuditEvent::AuthAllowed(rec)) {
                return CertDecision {
                    auth: Auth::Accept,
                    outcome: Ok(who),
                };
            }
            // Fail closed: no access that the audit log does not show.
            deny(
                conn,
                audit,
                user,
                Some(cert),
                SshDenial {
                    reason: SshDenyReason::AuditUnavailable,
                    message: "the audit log cannot be written, so nobody is let in; tell the \
                              operator"
                        .to_owned(),
                    pinned: who.pinned,
                    roles: who.roles,
                },
            )
        }
        Err(denial) => deny(conn, audit, user, Some(cert), denial),
    }
}

/// Refuses an authentication by another method than a certificate (`method`: `password`,
/// `publickey`, `keyboard-interactive`) with `not_a_certificate`, audited; the answer asks
/// the client for a public key (a certificate).
pub fn other_method(conn: &Connection, audit: &SshAudit, user: &str, method: &str) -> CertDecision {
    deny(
        conn,
        audit,
        user,
        None,
        SshDenial {
            reason: SshDenyReason::NotACertificate,
            message: format!("{method} authentication is not accepted here; use a certificate"),
            pinned: Vec::new(),
            roles: Vec::new(),
        },
    )
}

/// The refusal to answer: try again with a public key (a certificate), no partial success.
pub fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}

/// The text to tell the user why `denial` refused them (for a disconnect message, or a
/// banner where the russh in use can send one), or `None` when the user is not told
/// ([`SshDenyReason::tells_user`]). One line, `refused (CODE): MESSAGE` cut to
/// [`MAX_MESSAGE`] characters, then every control and bidirectional formatting character
/// written as its `\u{..}` escape (the message can contain the client's user name).
pub fn client_message(denial: &SshDenial) -> Option<String> {
    if !denial.reason.tells_user() {
        return None;
    }
    let text = format!("refused ({}): {}", denial.reason.code(), denial.message);
    let mut out = String::new();
    for c in text.chars().take(MAX_MESSAGE) {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The most characters of the text [`client_message`] starts from.
pub const MAX_MESSAGE: usize = 1024;

/// The characters that reorder the text around them (Trojan Source, CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

fn deny(
    conn: &Connection,
    audit: &SshAudit,
    user: &str,
    cert: Option<&Certificate>,
    denial: SshDenial,
) -> CertDecision {
    let mut rec = conn.record(user, cert);
    rec.pinned = denial.pinned.clone();
    rec.roles = denial.roles.clone();
    rec.reason = Some(denial.reason.code().to_owned());
    rec.message = Some(denial.message.clone());
    // A denial stands whether or not its line could be written.
    let _ = audit.record(SshAuditEvent::AuthDenied(rec));
    CertDecision {
        auth: reject(),
        outcome: Err(denial),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use ippin_cert::getrandom::SysRng;
    use ippin_cert::rand_core::UnwrapErr;
    use ippin_cert::ssh::{SshCa, SshCertRequest};
    use ippin_cert::ssh_key::{Fingerprint, HashAlg};
    use ippin_policy::{DenyReason, Provenance};

    use super::*;
    use crate::ssh::CertIdentity;
    use crate::users::User;

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        ca: SshCa,
        trusted: Vec<Fingerprint>,
        users: HashMap<String, User>,
    }

    fn fixture() -> Fixture {
        let ca = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).unwrap();
        let trusted = vec![ca.public_key().fingerprint(HashAlg::Sha256)];
        let users = HashMap::from([("alice".to_owned(), User::new(true, vec!["ops".into()]))]);
        Fixture { ca, trusted, users }
    }

    fn issue(f: &Fixture, pin: &str) -> Certificate {
        let key = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).unwrap();
        let req = SshCertRequest::builder(key.public_key().key_data().clone())
            .key_id("alice@ippin/5")
            .serial(5)
            .principal("alice")
            .validity(NOW - 60, NOW + 3600)
            .pinned_ip(pin.parse().unwrap());
        f.ca.issue(&req.build().unwrap(), &mut UnwrapErr(SysRng))
            .unwrap()
    }

    fn conn(ip: &str) -> Connection {
        let observed = ObservedAddr::new(
            format!("{ip}:40000").parse().unwrap(),
            Provenance::ProxyV2,
            true,
        );
        Connection::new("s1", Some("10.0.0.1:5000".parse().unwrap()), observed)
    }

    /// A sink that keeps the events and answers `ok`.
    struct Sink {
        events: Mutex<Vec<SshAuditEvent>>,
        ok: bool,
    }

    impl crate::audit::AuditSink<SshAuditEvent> for Sink {
        fn record(&self, event: SshAuditEvent) -> bool {
            self.events.lock().unwrap().push(event);
            self.ok
        }
    }

    fn sink(ok: bool) -> Sink {
        Sink {
            events: Mutex::new(Vec::new()),
            ok,
        }
    }

    #[test]
    fn the_pinned_address_is_accepted_and_audited() {
        let f = fixture();
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: false,
        };
        let audit = sink(true);
        let d = certificate(
            &ctx,
            &conn("192.0.2.7"),
            &audit,
            "alice",
            &issue(&f, "192.0.2.7"),
            NOW,
        );
        assert_eq!(d.auth, Auth::Accept);
        let who = d.outcome.unwrap();
        assert_eq!(who.user, "alice");
        let events = audit.events.lock().unwrap();
        let [SshAuditEvent::AuthAllowed(rec)] = &events[..] else {
            panic!("one allowed line, got {events:?}");
        };
        assert_eq!(rec.event, "ssh.auth.allowed");
        assert_eq!(rec.observed, "192.0.2.7:40000");
        assert_eq!(rec.peer.as_deref(), Some("10.0.0.1:5000"));
        assert_eq!(rec.pinned, vec!["192.0.2.7/32".to_owned()]);
        assert_eq!(rec.roles, vec!["ops".to_owned()]);
    }

    #[test]
    fn another_address_is_refused_with_the_reason_and_audited() {
        let f = fixture();
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: false,
        };
        let audit = sink(true);
        let d = certificate(
            &ctx,
            &conn("198.51.100.9"),
            &audit,
            "alice",
            &issue(&f, "192.0.2.7"),
            NOW,
        );
        assert_eq!(d.auth, reject());
        let denial = d.outcome.unwrap_err();
        assert_eq!(
            denial.reason,
            SshDenyReason::Pin(DenyReason::PinnedIpMismatch)
        );
        let events = audit.events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name(), "ssh.auth.denied");
        assert_eq!(events[0].reason(), Some("pinned_ip_mismatch"));
        let message = client_message(&denial).unwrap();
        assert!(
            message.starts_with("refused (pinned_ip_mismatch): "),
            "{message}"
        );
    }

    #[test]
    fn an_allowed_line_that_cannot_be_recorded_refuses() {
        let f = fixture();
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &f.trusted,
            users: &f.users,
            honours_force_command: false,
        };
        let audit = sink(false);
        let d = certificate(
            &ctx,
            &conn("192.0.2.7"),
            &audit,
            "alice",
            &issue(&f, "192.0.2.7"),
            NOW,
        );
        assert_ne!(d.auth, Auth::Accept);
        assert_eq!(
            d.outcome.unwrap_err().reason,
            SshDenyReason::AuditUnavailable
        );
        let events = audit.events.lock().unwrap();
        assert_eq!(events.len(), 2, "the allowed line tried, then the denial");
        assert_eq!(events[1].reason(), Some("audit_unavailable"));
    }

    #[test]
    fn other_methods_are_refused_and_audited() {
        let audit = sink(true);
        let d = other_method(&conn("192.0.2.7"), &audit, "alice", "password");
        assert_eq!(d.auth, reject());
        assert_eq!(
            d.outcome.unwrap_err().reason,
            SshDenyReason::NotACertificate
        );
        assert_eq!(
            audit.events.lock().unwrap()[0].reason(),
            Some("not_a_certificate")
        );
    }

    #[test]
    fn client_messages_are_one_bounded_printable_line() {
        let denial = SshDenial {
            reason: SshDenyReason::UnknownUser,
            message: "user `\u{1b}[2J\u{202e}x\r\n` is unknown".to_owned(),
            pinned: Vec::new(),
            roles: Vec::new(),
        };
        let m = client_message(&denial).unwrap();
        assert!(
            !m.chars().any(|c| c.is_control() || is_bidi_control(c)),
            "{m:?}"
        );
        assert!(m.contains("\\u{1b}[2J\\u{202e}x\\u{d}\\u{a}"), "{m}");
        let long = SshDenial {
            message: "x".repeat(5000),
            ..denial.clone()
        };
        assert_eq!(client_message(&long).unwrap().chars().count(), MAX_MESSAGE);
        // Reasons the user cannot act on are not told.
        let other = SshDenial {
            reason: SshDenyReason::UntrustedCa,
            ..denial
        };
        assert_eq!(client_message(&other), None);
    }
}
