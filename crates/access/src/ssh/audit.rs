//! Audit events of an SSH service, and the sink they go to.
//!
//! The events serialise to one JSON object each (a JSON line in the audit log), each with an
//! `event` field naming its kind. The network event is the policy crate's `session.network`
//! event (code `T4002I`), field for field.

use std::net::SocketAddr;

use ippin_policy::NetworkEvent;
use serde::Serialize;

use crate::audit::AuditSink;

/// Where an SSH service sends its audit events: an [`AuditSink`] of [`SshAuditEvent`].
///
/// The contract is [`AuditSink`]'s (fail closed): when the line of an allowed authentication
/// cannot be written, the authentication is refused (`audit_unavailable`); when the line of
/// an outbound connection cannot be written, the connection is not made (or is closed before
/// any byte is relayed) and the channel open fails.
pub type SshAudit = dyn AuditSink<SshAuditEvent>;

/// One audit event of the SSH service. Each record carries its own `event` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum SshAuditEvent {
    /// A user authenticated with a certificate that passed every check (`ssh.auth.allowed`).
    AuthAllowed(AuthRecord),
    /// An authentication attempt was refused (`ssh.auth.denied`).
    AuthDenied(AuthRecord),
    /// A built-in command ran (`ssh.exec`).
    Exec(ExecRecord),
    /// A process of an OS login started, ended, or was refused (`ssh.session.start`,
    /// `ssh.session.end`, `ssh.session.refused`).
    Session(SessionRecord),
    /// An outbound connection made for a session (`direct-tcpip`), denied or observed: the
    /// policy crate's `session.network` event (code `T4002I`).
    Network(NetworkEvent),
    /// A connection was closed before SSH started, at the PROXY protocol stage
    /// (`ssh.proxy_refused`).
    ProxyRefused(ProxyRefusedRecord),
    /// A connection that had not authenticated yet was closed to make room for a newer one
    /// (`ssh.shed`): the unauthenticated stage was full and it was the oldest there.
    Shed(ShedRecord),
    /// An authenticated connection was ended because it no longer passes
    /// ([`crate::ssh::Authorized::recheck`]: its certificate expired, its user is gone, its
    /// login or its pin no longer allowed): `ssh.connection.ended`, with the reason.
    Ended(AuthRecord),
}

impl SshAuditEvent {
    /// The event name (`ssh.auth.allowed`, `ssh.auth.denied`, `ssh.exec`,
    /// `session.network`, `ssh.proxy_refused`, `ssh.shed`, `ssh.connection.ended`, the
    /// session's).
    pub fn name(&self) -> &'static str {
        match self {
            SshAuditEvent::AuthAllowed(r)
            | SshAuditEvent::AuthDenied(r)
            | SshAuditEvent::Ended(r) => r.event,
            SshAuditEvent::Exec(r) => r.event,
            SshAuditEvent::Session(r) => r.event,
            SshAuditEvent::Network(n) => n.event,
            SshAuditEvent::ProxyRefused(r) => r.event,
            SshAuditEvent::Shed(r) => r.event,
        }
    }

    /// The stable reason code of an authentication denial, a PROXY refusal or a shed
    /// connection.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SshAuditEvent::AuthDenied(r) | SshAuditEvent::Ended(r) => r.reason.as_deref(),
            SshAuditEvent::ProxyRefused(r) => Some(&r.reason),
            SshAuditEvent::Shed(r) => Some(&r.reason),
            SshAuditEvent::Session(r) => r.reason.as_deref(),
            _ => None,
        }
    }

    /// The session id the event belongs to, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            SshAuditEvent::AuthAllowed(r)
            | SshAuditEvent::AuthDenied(r)
            | SshAuditEvent::Ended(r) => Some(&r.session_id),
            SshAuditEvent::Exec(r) => Some(&r.session_id),
            SshAuditEvent::Session(r) => Some(&r.session_id),
            SshAuditEvent::Network(r) => Some(&r.session_id),
            SshAuditEvent::ProxyRefused(_) | SshAuditEvent::Shed(_) => None,
        }
    }
}

/// An authentication decision, or the end of an authenticated connection that no longer
/// passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthRecord {
    /// `ssh.auth.allowed`, `ssh.auth.denied` or `ssh.connection.ended`.
    pub event: &'static str,
    /// The connection's session id.
    pub session_id: String,
    /// The user name the client asked for; in `ssh.auth.allowed`, the ippin user the
    /// certificate belongs to (`Authorized::user`), which differs from the name asked for
    /// when that is an OS login (then in `login`).
    pub user: String,
    /// The OS login of an allowed session (`Authorized::login`); absent for a session of the
    /// built-ins and in denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The certificate's key id, when a certificate was presented.
    pub key_id: Option<String>,
    /// The certificate's serial, when a certificate was presented.
    pub serial: Option<u64>,
    /// The TCP peer that connected (`ip:port`), when the service knows it: beside the
    /// observed address, which behind a proxy (or as a client's untrusted claim) differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The observed client address (`ip:port`, port 0 when untrusted).
    pub observed: String,
    /// How the address was learned (`direct`, `proxy_v1`, `proxy_v2`).
    pub provenance: String,
    /// Whether the observed address is trusted.
    pub trusted: bool,
    /// The cloud private endpoint the client came through (`vpce-…`, `azure:N`, `gcp:N`),
    /// when it did: behind one, the address is the consumer's own, which another consumer
    /// may use too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The certificate's pin (the `source-address` networks); empty when unpinned.
    pub pinned: Vec<String>,
    /// The user's roles, when known.
    pub roles: Vec<String>,
    /// The stable reason code of a denial; `None` when allowed.
    pub reason: Option<String>,
    /// The message for the user (denials only).
    pub message: Option<String>,
}

impl AuthRecord {
    /// A `ssh.auth.denied` record of an attempt by `user` with `cert` (when one was
    /// presented) on the connection `session_id` from TCP `peer`, observed at `observed`;
    /// pins, roles, reason and message empty, for the caller to fill in (or to turn into
    /// `ssh.auth.allowed`).
    pub fn attempt(
        session_id: &str,
        user: &str,
        cert: Option<&ippin_cert::ssh_key::Certificate>,
        peer: Option<SocketAddr>,
        observed: &ippin_policy::ObservedAddr,
    ) -> AuthRecord {
        AuthRecord {
            event: "ssh.auth.denied",
            session_id: session_id.to_owned(),
            user: user.to_owned(),
            login: None,
            key_id: cert.map(|c| c.key_id().to_owned()),
            serial: cert.map(|c| c.serial()),
            peer: peer.map(|p| p.to_string()),
            observed: observed.socket_addr().to_string(),
            provenance: observed.provenance().as_str().to_owned(),
            trusted: observed.is_trusted(),
            endpoint: observed.endpoint().map(|e| e.to_string()),
            pinned: Vec::new(),
            roles: Vec::new(),
            reason: None,
            message: None,
        }
    }
}

/// A built-in command run in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecRecord {
    /// Always `ssh.exec`.
    pub event: &'static str,
    /// The connection's session id.
    pub session_id: String,
    /// The authenticated user.
    pub user: String,
    /// The command line run (lossy UTF-8, at most 1 KiB).
    pub command: String,
    /// The exit status returned.
    pub status: u32,
}

/// A session's process: started, ended or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionRecord {
    /// `ssh.session.start`, `ssh.session.end` or `ssh.session.refused`.
    pub event: &'static str,
    /// The connection's session id.
    pub session_id: String,
    /// The authenticated ippin user.
    pub user: String,
    /// The OS login the process runs as.
    pub login: String,
    /// `shell`, `exec` or `subsystem`.
    pub kind: &'static str,
    /// The command line (lossy UTF-8, at most 1 KiB); the subsystem's name for a subsystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What the client asked for when a certificate's `force-command` replaced it (lossy
    /// UTF-8, at most 1 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_command: Option<String>,
    /// Whether the process has a terminal.
    pub tty: bool,
    /// The process id (start and end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The session cgroup's id, when the session is restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// The exit status (end, when the process exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    /// The signal that ended it (end, when it was killed): `TERM`, `KILL`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The stable reason of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the user was told, for a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl SessionRecord {
    /// A record of `event` for `user`'s process as `login`, of `kind`; the other fields
    /// empty.
    pub fn new(
        event: &'static str,
        session_id: &str,
        user: &str,
        login: &str,
        kind: &'static str,
    ) -> Self {
        SessionRecord {
            event,
            session_id: session_id.to_owned(),
            user: user.to_owned(),
            login: login.to_owned(),
            kind,
            command: None,
            original_command: None,
            tty: false,
            pid: None,
            cgroup_id: None,
            status: None,
            signal: None,
            reason: None,
            message: None,
        }
    }
}

/// A connection shed from the unauthenticated stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShedRecord {
    /// Always `ssh.shed`.
    pub event: &'static str,
    /// The observed client address.
    pub observed: String,
    /// `ssh_unauthenticated_shed`.
    pub reason: String,
}

/// A connection refused at the PROXY protocol stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyRefusedRecord {
    /// Always `ssh.proxy_refused`.
    pub event: &'static str,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The refusal's stable reason code.
    pub reason: String,
    /// The refusal in words: for a cloud endpoint refused by the allow-list, the endpoint
    /// ID the header named.
    pub detail: String,
}
