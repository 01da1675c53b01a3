//! The SSH service: OpenSSH user certificates from our CA, with `source-address` and the
//! roles' pin enforced against the *observed* client address, built-in commands, and
//! `direct-tcpip` forwarding through a [`DialPolicy`].
//!
//! The service runs [russh](https://docs.rs/russh)'s server on a stream that the caller has
//! already accepted: the PROXY-aware accept path runs first, so the SSH banner is never sent
//! before a PROXY header is complete, and the address it observed is what the pin is checked
//! against.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ippin::ssh::{AllowAll, SshService, SshSettings, SshUser};
//! use ippin_policy::{ObservedAddr, Provenance};
//!
//! # async fn run(ca: ssh_key::PublicKey) -> Result<(), Box<dyn std::error::Error>> {
//! let service = SshService::new(SshSettings::new(
//!     vec![ca],
//!     Arc::new(|name: &str| {
//!         (name == "alice").then(|| SshUser::new(true, vec!["pinned-ip".to_owned()]))
//!     }),
//!     // `true`: the event was recorded (the audit is fail-closed).
//!     Arc::new(|event| {
//!         println!("{}", serde_json::to_string(&event).unwrap_or_default());
//!         true
//!     }),
//! ))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stream, peer) = listener.accept().await?;
//! service.handle(stream, ObservedAddr::new(peer, Provenance::Direct, true)).await?;
//! # Ok(()) }
//! ```
//!
//! The decision table is in `ippin_access::ssh::decide`'s documentation and in `docs/ssh.md`.

pub mod client;
pub mod exec;
mod handler;
/// The refusal banner, for the client's test that reads it back (`crate::openssh`).
#[cfg(test)]
pub(crate) use handler::refusal_banner;
pub mod session;
pub(crate) mod text;
pub mod wiring;

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ippin_policy::ObservedAddr;
use ippin_proxy_protocol as pp;
use russh::{MethodKind, MethodSet, SshId};
use ssh_key::{PrivateKey, PublicKey};
use tokio::io::{AsyncRead, AsyncWrite};

pub use handler::{MAX_FORWARDS_PER_CONNECTION, NO_SHELL};
pub use ippin_access::audit::AuditSink;
pub use ippin_access::cut;
pub use ippin_access::egress::{AllowAll, DialPolicy, denial_text, dial, live};
pub use ippin_access::egress::{LiveRestrictions, ReloadError};
pub use ippin_access::ssh::{
    Authorized, SshDenial, SshDenyReason, SshUser, UserDirectory, audit, authorize,
};
pub use ippin_access::ssh::{SshAudit, SshAuditEvent};

/// The most authenticated SSH sessions one service (listener) holds at once; one more is
/// refused at authentication (`sessions_full`) rather than queued.
pub const MAX_CONNECTIONS: usize = 1024;

/// The most authenticated connections one ippin user holds at once on one service: one more
/// is refused at authentication (`sessions_full`), so that one user (or one stolen
/// certificate) cannot take every place, or every terminal of the host, from the others.
pub const MAX_CONNECTIONS_PER_USER: usize = 32;

/// The most port forwards (`direct-tcpip` channels) one ippin user has open at once on one
/// service, over all their connections. Each forward may hold up to
/// [`CHANNEL_BUFFER`] packets of at most [`MAX_PACKET`] bytes the destination has not taken
/// yet, so one user's forwards hold at most 128 × 8 × 32 KiB = 32 MiB of the server's memory.
pub const MAX_FORWARDS_PER_USER: usize = 128;

/// The longest data packet a client may send on a channel (announced as the channel's maximum
/// packet size; a longer one ends the connection).
pub const MAX_PACKET: u32 = 32 * 1024;

/// The packets one channel queues for its consumer before the connection stops reading.
pub const CHANNEL_BUFFER: usize = 8;

/// One place among a user's [`MAX_CONNECTIONS_PER_USER`] (or, for forwards,
/// [`MAX_FORWARDS_PER_USER`]); given back when dropped.
pub(crate) type UserSlot = ippin_access::lockout::NamedPlace;

/// The most connections one service holds at once between the SSH banner and a successful
/// authentication. When full, the connection that has been there longest is closed to make
/// room (`crate::shed`): clients that connect and stall (the `LoginGraceTime` /
/// `MaxStartups` problem of sshd) cannot lock real users out.
pub const MAX_UNAUTHENTICATED: usize = 2048;

/// The most connections one client address (an IPv4 address, an IPv6 /64: the lockout's
/// `peer_key`) holds between the SSH banner and a successful authentication. One more is
/// closed at once (`ssh_peer_unauthenticated_full`): a single client opening connections
/// that stall cannot make the service shed everyone else's logins (`MAX_UNAUTHENTICATED`).
/// The client is the observed address when trusted (behind a load balancer, the client it
/// names), else the TCP peer.
pub const MAX_UNAUTHENTICATED_PER_PEER: usize = 64;

/// The identification string the service sends.
pub const SERVER_ID: &str = "SSH-2.0-ippin";

/// Why the SSH service could not start or a session ended in error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// No host key was given and none could be generated.
    #[error("host key: cannot generate an Ed25519 key: {0}")]
    HostKey(String),
    /// No trusted user CA: nobody could ever log in.
    #[error("no trusted SSH user CA configured: every certificate would be refused")]
    NoTrustedCa,
    /// A trusted CA public key cannot be read.
    #[error("trusted SSH user CA: {0}")]
    TrustedCa(String),
    /// The configured host key file cannot be read or is not an unencrypted OpenSSH
    /// private key.
    #[error("ssh_host_key `{path}`: {message}")]
    HostKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The `network_restrictions` policy cannot be loaded (the error names file, line and
    /// field): the server refuses to start rather than run without it.
    #[error("{0}")]
    NetworkRestrictions(Box<ReloadError>),
    /// The `SIGHUP` handler for reloading the network restrictions cannot be installed.
    #[error("network restrictions: cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    /// The in-process client ([`client::SshClient`]) failed.
    #[error("ssh client: {0}")]
    Client(String),
    /// The SSH session failed (protocol error, I/O error, timeout).
    #[error("ssh session from {observed}: {source}")]
    Session {
        /// The observed client address.
        observed: String,
        /// What russh reported.
        source: russh::Error,
    },
}

impl From<ReloadError> for SshError {
    fn from(e: ReloadError) -> SshError {
        SshError::NetworkRestrictions(Box::new(e))
    }
}

/// The shortest [`SshSettings::recheck_interval`].
pub const MIN_RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Everything the SSH service needs, as plain values.
pub struct SshSettings {
    /// The user CAs whose certificates are accepted (`TrustedUserCAKeys`).
    pub trusted_user_cas: Vec<PublicKey>,
    /// Users and their roles.
    pub users: Arc<dyn UserDirectory>,
    /// Where audit events go.
    pub audit: Arc<SshAudit>,
    /// The host key; an Ed25519 key is generated when `None`.
    pub host_key: Option<PrivateKey>,
    /// The policy every outbound `direct-tcpip` dial goes through. Default: [`AllowAll`].
    pub dial_policy: Arc<dyn DialPolicy>,
    /// Whether allowed outbound connections are audited too (`session.network`, action 0).
    /// Denied ones always are.
    pub audit_observed_connections: bool,
    /// The server's own listening sockets (bound addresses). A `direct-tcpip` forward to
    /// one of them is refused `own_listener`, whatever `dial_policy` says. Default: none;
    /// a server sets every listener it bound, of every kind.
    pub own_listeners: Vec<std::net::SocketAddr>,
    /// How long every rejected authentication takes, so timing does not tell why.
    /// Default: 1 s.
    pub auth_rejection_time: Duration,
    /// How long a client has to authenticate (OpenSSH's `LoginGraceTime`). Default: 60 s.
    pub login_grace_time: Duration,
    /// How often an authenticated connection is checked again
    /// ([`ippin_access::ssh::Authorized::recheck`]: its certificate's validity, its user,
    /// login and pin requirement in the directory now). One that no longer passes is ended
    /// (audited `ssh.connection.ended` with the reason), and with it every process of its
    /// sessions. Default: 2 s; at least [`MIN_RECHECK_INTERVAL`] (less is taken as that).
    pub recheck_interval: Duration,
    /// The most connections not yet authenticated; the oldest is shed beyond it. Default:
    /// [`MAX_UNAUTHENTICATED`].
    pub max_unauthenticated: usize,
    /// The most authenticated sessions at once. Default: [`MAX_CONNECTIONS`].
    pub max_sessions: usize,
    /// How the processes of OS logins run: enforcement of the network restrictions, the
    /// sftp server, the names in `T4002I` events. Default: no enforcement configured.
    pub session: session::SessionSettings,
}

impl SshSettings {
    /// Settings with the defaults: generated host key, all destinations allowed, 1 s
    /// rejection time, 60 s login grace time.
    pub fn new(
        trusted_user_cas: Vec<PublicKey>,
        users: Arc<dyn UserDirectory>,
        audit: Arc<SshAudit>,
    ) -> SshSettings {
        SshSettings {
            trusted_user_cas,
            users,
            audit,
            host_key: None,
            dial_policy: Arc::new(AllowAll),
            audit_observed_connections: false,
            own_listeners: Vec::new(),
            auth_rejection_time: Duration::from_secs(1),
            login_grace_time: Duration::from_secs(60),
            recheck_interval: Duration::from_secs(2),
            max_unauthenticated: MAX_UNAUTHENTICATED,
            max_sessions: MAX_CONNECTIONS,
            session: session::SessionSettings::default(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) trusted_cas: Vec<ssh_key::Fingerprint>,
    pub(crate) users: Arc<dyn UserDirectory>,
    pub(crate) audit: Arc<SshAudit>,
    pub(crate) dial_policy: Arc<dyn DialPolicy>,
    pub(crate) audit_observed_connections: bool,
    pub(crate) own_listeners: Vec<std::net::SocketAddr>,
    /// Places for authenticated sessions.
    pub(crate) sessions: Arc<tokio::sync::Semaphore>,
    /// Authenticated connections per ippin user ([`MAX_CONNECTIONS_PER_USER`]).
    pub(crate) per_user: ippin_access::lockout::NamedPlaces,
    /// Open forwards per ippin user ([`MAX_FORWARDS_PER_USER`]).
    pub(crate) forwards_per_user: ippin_access::lockout::NamedPlaces,
    /// Connections not yet authenticated, shed oldest first.
    pub(crate) unauthenticated: Arc<crate::shed::Shedder>,
    /// Connections not yet authenticated, per client ([`MAX_UNAUTHENTICATED_PER_PEER`]).
    unauthenticated_per_peer: ippin_access::lockout::PeerPlaces,
    /// How sessions of OS logins run.
    pub(crate) session: session::SessionSettings,
    /// How often an open forward's destination is put to `dial_policy` again.
    pub(crate) recheck_interval: Duration,
}

/// The SSH service. Cheap to clone; one per `ssh` listener.
#[derive(Clone)]
pub struct SshService {
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    host_public_key: PublicKey,
    login_grace_time: Duration,
    recheck_interval: Duration,
}

impl std::fmt::Debug for SshService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshService")
            .field(
                "host_key",
                &self.host_public_key.fingerprint(Default::default()),
            )
            .field("trusted_user_cas", &self.shared.trusted_cas.len())
            .finish_non_exhaustive()
    }
}

impl SshService {
    /// Builds the service; generates an Ed25519 host key when none is given.
    ///
    /// # Errors
    /// [`SshError::NoTrustedCa`] with no trusted CA, [`SshError::HostKey`] when the system
    /// random generator fails.
    pub fn new(settings: SshSettings) -> Result<SshService, SshError> {
        if settings.trusted_user_cas.is_empty() {
            return Err(SshError::NoTrustedCa);
        }
        let host_key = match settings.host_key {
            Some(k) => k,
            None => generate_host_key()?,
        };
        let host_public_key = host_key.public_key().clone();
        let config = russh::server::Config {
            server_id: SshId::Standard(SERVER_ID.into()),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: settings.auth_rejection_time,
            // OpenSSH clients open with a `none` probe; answering it at once costs nothing.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![host_key],
            max_auth_attempts: 6,
            // A connected session may idle (an open forward); dead peers are found by
            // keepalives.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            // What a client sends on a channel is queued for its consumer (a forward's
            // destination, a process's input): at most CHANNEL_BUFFER packets of at most
            // MAX_PACKET bytes per channel, after which the connection stops reading; data
            // beyond the window or over MAX_PACKET ends the connection (russh change 5).
            maximum_packet_size: MAX_PACKET,
            channel_buffer_size: CHANNEL_BUFFER,
            ..Default::default()
        };
        Ok(SshService {
            shared: Arc::new(Shared {
                trusted_cas: settings
                    .trusted_user_cas
                    .iter()
                    .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256))
                    .collect(),
                users: settings.users,
                audit: settings.audit,
                dial_policy: settings.dial_policy,
                audit_observed_connections: settings.audit_observed_connections,
                own_listeners: settings.own_listeners,
                sessions: Arc::new(tokio::sync::Semaphore::new(settings.max_sessions)),
                per_user: ippin_access::lockout::NamedPlaces::new(MAX_CONNECTIONS_PER_USER),
                forwards_per_user: ippin_access::lockout::NamedPlaces::new(MAX_FORWARDS_PER_USER),
                unauthenticated: Arc::new(crate::shed::Shedder::new(settings.max_unauthenticated)),
                unauthenticated_per_peer: ippin_access::lockout::PeerPlaces::new(
                    MAX_UNAUTHENTICATED_PER_PEER,
                ),
                session: settings.session,
                recheck_interval: settings.recheck_interval.max(MIN_RECHECK_INTERVAL),
            }),
            config: Arc::new(config),
            host_public_key,
            login_grace_time: settings.login_grace_time,
            // (A zero period would panic in `tokio::time::interval`.)
            recheck_interval: settings.recheck_interval.max(MIN_RECHECK_INTERVAL),
        })
    }

    /// The host public key clients see (for `known_hosts`).
    pub fn host_public_key(&self) -> &PublicKey {
        &self.host_public_key
    }

    /// Runs one SSH connection on an already-accepted `stream` (after the PROXY stage), for
    /// a client observed at `observed`. Returns when the connection ends.
    ///
    /// A client that has not authenticated within the login grace time is disconnected.
    ///
    /// # Errors
    /// [`SshError::Session`] when the session fails (a client that goes away is not an error).
    pub async fn handle<S>(&self, stream: S, observed: ObservedAddr) -> Result<(), SshError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handle_slot = Arc::new(OnceLock::new());
        let authenticated = Arc::new(AtomicBool::new(false));
        let auth_done = Arc::new(tokio::sync::Notify::new());
        let admitted = Arc::new(OnceLock::new());
        // Known when the server's accept loop serves this connection; the handler runs in
        // russh's own task, where the task-local is not set.
        let peer = crate::audit::CONNECTION_PEER.try_with(|p| *p).ok();
        // The client's place among its connections not yet authenticated: the observed
        // address when trusted, else the TCP peer. Left once authenticated.
        let client = match peer {
            Some(p) => ippin_access::lockout::throttle_key(&observed, p),
            None if observed.is_trusted() => ippin_access::lockout::trusted_key(&observed),
            // No TCP peer known (a caller outside the server's accept loops) and an
            // unchecked claim: all such connections share one place count.
            None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let Some(peer_place) = self.shared.unauthenticated_per_peer.take(client) else {
            let _ = self
                .shared
                .audit
                .record(SshAuditEvent::Shed(audit::ShedRecord {
                    event: "ssh.shed",
                    observed: observed.to_string(),
                    reason: "ssh_peer_unauthenticated_full".to_owned(),
                }));
            return Ok(());
        };
        let mut _peer_place = Some(peer_place);
        // A place among the connections not yet authenticated: the oldest is shed when
        // they are too many. Left once authenticated.
        let mut ticket = Some(self.shared.unauthenticated.enter());
        let handler = handler::Connection {
            peer,
            shared: self.shared.clone(),
            observed,
            session_id: new_session_id(),
            handle: handle_slot.clone(),
            authenticated: authenticated.clone(),
            auth_done: auth_done.clone(),
            admitted: admitted.clone(),
            session_slot: None,
            user_slot: None,
            authorized: None,
            forwards: Arc::new(AtomicUsize::new(0)),
            ended: Arc::default(),
            refusal_banner: None,
            local: crate::audit::CONNECTION_LOCAL.try_with(|p| *p).ok(),
            sessions: session::Sessions::default(),
        };
        let session_error = |source: russh::Error| SshError::Session {
            observed: observed.to_string(),
            source,
        };
        let shed = |shared: &Shared| {
            let _ = shared.audit.record(SshAuditEvent::Shed(audit::ShedRecord {
                event: "ssh.shed",
                observed: observed.to_string(),
                reason: "ssh_unauthenticated_shed".to_owned(),
            }));
        };
        let (stream, cut) = cut::CutStream::new(stream);
        let grace = tokio::time::sleep(self.login_grace_time);
        tokio::pin!(grace);
        let running = tokio::select! {
            r = russh::server::run_stream(self.config.clone(), stream, handler) => r,
            _ = &mut grace => return Ok(()),
            () = evicted(&mut ticket) => {
                shed(&self.shared);
                return Ok(());
            }
        };
        let running = match running {
            Ok(r) => r,
            Err(e) if is_client_gone(&e) => return Ok(()),
            Err(e) => return Err(session_error(e)),
        };
        let handle = running.handle();
        let _ = handle_slot.set(handle.clone());
        tokio::pin!(running);
        let mut recheck = tokio::time::interval(self.recheck_interval);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let waiting = ticket.is_some();
            tokio::select! {
                r = &mut running => break r,
                // Once in: checked again every `recheck_interval`; a connection whose
                // certificate expired, or whose user, login or pin the directory no longer
                // allows, is ended with every process of its sessions.
                _ = recheck.tick() => {
                    let Some((who, allowed)) = admitted.get() else { continue };
                    let Some((code, message)) = session::recheck(&self.shared, who) else {
                        continue;
                    };
                    let mut rec: audit::AuthRecord = allowed.clone();
                    rec.event = "ssh.connection.ended";
                    rec.reason = Some(code.to_owned());
                    rec.message = Some(message.clone());
                    // Ended whether or not the line can be written: this ends access.
                    let _ = self.shared.audit.record(SshAuditEvent::Ended(rec));
                    break end_session(
                        &handle,
                        running.as_mut(),
                        &cut,
                        russh::Disconnect::ByApplication,
                        &format!("ippin: connection ended ({code}): {message}"),
                    )
                    .await;
                }
                () = auth_done.notified(), if waiting => {
                    ticket = None;
                    _peer_place = None;
                }
                () = evicted(&mut ticket), if waiting => {
                    shed(&self.shared);
                    break end_session(
                        &handle,
                        running.as_mut(),
                        &cut,
                        russh::Disconnect::TooManyConnections,
                        "ippin: too many connections are authenticating; try again",
                    )
                    .await;
                }
                _ = &mut grace, if waiting && !authenticated.load(std::sync::atomic::Ordering::SeqCst) => {
                    break end_session(
                        &handle,
                        running.as_mut(),
                        &cut,
                        russh::Disconnect::ByApplication,
                        "ippin: authentication took too long",
                    )
                    .await;
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_client_gone(&e) => Ok(()),
            Err(e) => Err(session_error(e)),
        }
    }
}

/// How long a session told to disconnect may take to close by itself before its stream is cut.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Ends a session the service wants gone: asks it to disconnect with `message` (which the
/// client prints, once the key exchange is done), cuts its stream when it has not ended
/// within [`DISCONNECT_GRACE`] (before the key exchange russh does not act on the request),
/// and aborts its task when that has not ended it within another grace either (a task that
/// waits in a write to a peer that stopped reading): the handler, which owns the session's
/// processes, is then dropped, and they end with it.
async fn end_session(
    handle: &russh::server::Handle,
    mut running: std::pin::Pin<&mut russh::server::RunningSession<handler::Connection>>,
    cut: &cut::Cut,
    reason: russh::Disconnect,
    message: &str,
) -> Result<(), russh::Error> {
    let _ = tokio::time::timeout(
        DISCONNECT_GRACE,
        handle.disconnect(reason, message.to_owned(), "en".to_owned()),
    )
    .await;
    match tokio::time::timeout(DISCONNECT_GRACE, running.as_mut()).await {
        Ok(r) => r,
        Err(_) => {
            cut.cut();
            match tokio::time::timeout(DISCONNECT_GRACE, running.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    running.abort();
                    let _ = running.await;
                    Ok(())
                }
            }
        }
    }
}

/// Resolves when `ticket`'s connection is shed; never when there is no ticket.
async fn evicted(ticket: &mut Option<crate::shed::Ticket>) {
    match ticket {
        Some(t) => t.evicted().await,
        None => std::future::pending().await,
    }
}

impl SshService {
    /// Serves an `ssh` listener: accepts connections, runs the PROXY stage with `policy`
    /// (at most one header, within `header_timeout`) and hands each connection to
    /// [`SshService::handle`] with the address that stage observed. The SSH banner is only
    /// sent after the PROXY stage has finished. Refusals at the PROXY stage are audited
    /// ([`SshAuditEvent::ProxyRefused`]). Runs until the task is dropped.
    ///
    /// At most `crate::listen::MAX_PENDING` connections are in the PROXY stage at once
    /// (further ones wait in the kernel's backlog); then [`SshService::handle`] sheds the
    /// oldest unauthenticated connection beyond [`MAX_UNAUTHENTICATED`] and refuses an
    /// authentication beyond [`MAX_CONNECTIONS`] sessions.
    pub async fn serve_listener(
        &self,
        listener: tokio::net::TcpListener,
        policy: pp::ListenerPolicy,
        header_timeout: Duration,
    ) {
        let policy = Arc::new(policy);
        let listen = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        // The server's shared accept loop bounds the PROXY stage (`MAX_PENDING`, each for at
        // most `header_timeout`); past it, [`SshService::handle`] bounds the rest
        // (unauthenticated connections shed oldest first, authenticated sessions counted), so
        // the loop's established-connection slots are not used here.
        crate::listen::bounded_accept(listener, listen, move |stream, peer, pending, _slots| {
            let service = self.clone();
            let policy = policy.clone();
            async move {
                let accepted = pp::accept(stream, peer, &policy, header_timeout).await;
                drop(pending);
                match accepted {
                    Ok(accepted) => {
                        let observed = observed_from_proxy(&accepted.observed);
                        let _ = service.handle(accepted.stream, observed).await;
                    }
                    Err(refusal) => {
                        // Refused either way.
                        let _ = service.shared.audit.record(SshAuditEvent::ProxyRefused(
                            audit::ProxyRefusedRecord {
                                event: "ssh.proxy_refused",
                                peer,
                                reason: refusal.code().to_owned(),
                                detail: refusal.to_string(),
                            },
                        ));
                    }
                }
            }
        })
        .await;
    }
}

/// The PROXY stage's observation in the policy crate's type: `ippin-access`'s one mapping.
pub fn observed_from_proxy(o: &pp::Observed) -> ObservedAddr {
    ippin_access::observed::from_proxy(o)
}

/// Errors that only say the client went away or gave up.
fn is_client_gone(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::ConnectionTimeout
    )
}

pub(crate) fn generate_host_key() -> Result<PrivateKey, SshError> {
    crate::files::generate_host_key().map_err(|e| SshError::HostKey(e.0))
}

/// A random session id in the UUID text form (version 4 layout).
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the ids only have to be distinct within this process.
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u128;
        b = n.to_be_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    )
}

#[cfg(test)]
mod user_slot_tests {
    use super::*;

    /// One user holds at most `MAX_CONNECTIONS_PER_USER` places; another user is not
    /// affected; a place given back can be taken again, and no record is left behind.
    #[test]
    fn a_user_holds_at_most_their_share_of_connections() {
        let counts = ippin_access::lockout::NamedPlaces::new(MAX_CONNECTIONS_PER_USER);
        let mut held: Vec<UserSlot> = (0..MAX_CONNECTIONS_PER_USER)
            .map(|_| counts.take("bob").expect("a place"))
            .collect();
        assert!(counts.take("bob").is_none());
        let alice = counts.take("alice").expect("alice is not bob");
        drop(held.pop());
        let again = counts.take("bob").expect("a place given back");
        assert!(counts.take("bob").is_none());
        drop(again);
        drop(held);
        drop(alice);
        assert_eq!(
            counts.held("alice"),
            0,
            "a user with no connection holds none"
        );
    }

    /// Forwards are counted per user over all their connections, apart from connections.
    #[test]
    fn a_user_holds_at_most_their_share_of_forwards() {
        let forwards = ippin_access::lockout::NamedPlaces::new(MAX_FORWARDS_PER_USER);
        let held: Vec<UserSlot> = (0..MAX_FORWARDS_PER_USER)
            .map(|_| forwards.take("bob").unwrap())
            .collect();
        assert!(forwards.take("bob").is_none());
        assert!(forwards.take("alice").is_some());
        let connections = ippin_access::lockout::NamedPlaces::new(MAX_CONNECTIONS_PER_USER);
        assert!(connections.take("bob").is_some());
        drop(held);
        assert!(forwards.take("bob").is_some());
        // What one user's forwards may hold that their destinations have not taken.
        assert!(MAX_FORWARDS_PER_USER * CHANNEL_BUFFER * MAX_PACKET as usize <= 32 << 20);
    }
}
