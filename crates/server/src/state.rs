//! What the listeners share: the loaded configuration, roles, CAs, audit
//! sink, clock and login limits ([`State`]), and the errors of loading and
//! starting them ([`ServerError`]). Below the listeners (`server`, the SSH
//! wiring, the propagation listeners), which all take it; it imports none of
//! them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::{Audit, AuditEvent};
use crate::ca::{Ca, CaError};
use crate::config::{Config, ConfigError, ListenerKind};

/// The most connections one TLS listener (`tls`, `login`) holds at once in
/// the TLS handshake (after the PROXY stage, before the handshake is done
/// and a [`MAX_CONNECTIONS`](crate::listen::MAX_CONNECTIONS) slot is free). When full, the connection that
/// has been there longest is closed to make room ([`crate::shed`]), so
/// stalled handshakes cannot lock real clients out; `State::max_handshakes`
/// sets it per server.
pub const MAX_HANDSHAKES: usize = 4096;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration or a file it names is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// CA material is wrong.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The listeners' TLS identity is not usable.
    #[error("{file}: {message}")]
    Tls {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The fleet's store cannot be used.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The SSH service cannot start.
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    /// The server's own listeners cannot be put out of reach of the sessions' processes
    /// (kernel enforcement is in force but its map refused them).
    #[error("network restrictions: the listeners cannot be protected from sessions: {0}")]
    Enforcement(String),
    /// A listener cannot bind.
    #[error("listener {kind} on {addr}: {source}")]
    Bind {
        /// The listener kind.
        kind: ListenerKind,
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where the server reads the time (the only clock read in ippin).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Everything the handlers share.
pub struct State {
    /// The loaded configuration.
    pub config: Config,
    /// The roles and users in force (from the files, or a fleet's store), and the fleet's
    /// lockouts.
    pub directory: Arc<crate::directory::LiveDirectory>,
    /// The fleet's store, when the configuration has a `backend:`.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The counters and histograms of `/metrics` (`None` only if they could not be made).
    pub metrics: Option<crate::metrics::Metrics>,
    /// The CAs.
    pub ca: Ca,
    /// The audit sink.
    pub audit: Audit,
    /// The clock.
    pub clock: Clock,
    /// Decoded client-certificate identities (`ippin_access::tls`).
    pub identities: ippin_access::tls::IdentityCache,
    /// The most connections per TLS listener in the handshake stage
    /// ([`MAX_HANDSHAKES`] unless changed before the server starts).
    pub max_handshakes: usize,
    pub(crate) decoy_hash: String,
    /// Picks the stand-in user whose hash an unknown name's password is checked against
    /// (`Directory::stand_in_hash`): secret, and the same on every node and after restarts
    /// (`Ca::stand_in_key`), so a name's cost does not change from one to the other.
    pub(crate) decoy_key: [u8; 32],
    /// Bounds concurrent argon2 verifications (each takes 19 MiB and a core
    /// for tens of ms): memory stays bounded under a login flood.
    pub(crate) hash_slots: Arc<tokio::sync::Semaphore>,
    /// Lockout, per-peer throttle and connection counts of the login
    /// listeners (`login_limits`), shared by all of them.
    pub(crate) login_guard: crate::login_guard::LoginGuard,
    /// Connections per client address of the `tls` listeners ([`MAX_TLS_PER_PEER`]).
    pub(crate) tls_peers: ippin_access::lockout::PeerPlaces,
}

/// The most password verifications running at once.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// The most connections one client address (an IPv4 address, an IPv6 /64) holds at once on
/// the `tls` listeners, from the PROXY stage to the answer: one client (or one stolen
/// certificate, used where its pin refuses it) cannot take every handshake and established
/// place from the others. Higher than the login listeners' `max_connections_per_peer`, for
/// the many clients behind one NAT that use their certificates at once.
pub const MAX_TLS_PER_PEER: usize = 64;

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Loads roles, CA and audit log for `config`, with the system clock.
    pub fn load(config: Config) -> Result<State, ServerError> {
        let roles = crate::config::load_roles(&config.roles)?;
        let ca = Ca::load_config(&config)?;
        let audit = Audit::open(&config.audit_log, &config.cluster_name)
            .map_err(|e| config.file_error("audit_log", e))?;
        Ok(State::new(config, roles, ca, audit))
    }

    /// Assembles a state from its parts, with the system clock; the users are the
    /// configuration's.
    pub fn new(config: Config, roles: ippin_policy::RoleSet, ca: Ca, audit: Audit) -> State {
        let directory = crate::directory::Directory::new(roles, config.users.clone(), 0);
        State::with_directory(config, directory, ca, audit)
    }

    /// Assembles a state whose roles and users are `directory` (a fleet's snapshot).
    pub fn with_directory(
        config: Config,
        directory: crate::directory::Directory,
        ca: Ca,
        audit: Audit,
    ) -> State {
        // The decoy costs what a real user's hash costs (a fleet's users are the store's).
        let decoy_hash = crate::users::decoy_hash(
            directory
                .some_hash()
                .or(config.users.first().map(|u| u.password_hash.as_str())),
        );
        let login_guard = crate::login_guard::LoginGuard::new(&config.login_limits);
        let decoy_key = ca.stand_in_key();
        State {
            config,
            directory: Arc::new(crate::directory::LiveDirectory::new(directory)),
            fleet: None,
            metrics: crate::metrics::Metrics::new()
                .map_err(|e| tracing::error!("metrics: {e}; /metrics stays empty"))
                .ok(),
            ca,
            audit,
            clock: Arc::new(SystemTime::now),
            identities: ippin_access::tls::IdentityCache::default(),
            max_handshakes: MAX_HANDSHAKES,
            decoy_hash,
            decoy_key,
            hash_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES)),
            login_guard,
            tls_peers: ippin_access::lockout::PeerPlaces::new(MAX_TLS_PER_PEER),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Whether the user's CURRENT roles (from the directory in force) require a
    /// pin; `None` when the user is unknown or a role is missing.
    pub(crate) fn requires_pin(
        &self,
        user: &str,
    ) -> Option<(ippin_policy::PinRequirement, Vec<String>)> {
        self.directory.get().requires_pin(user)
    }

    /// Records `event`; on failure logs it and returns false (fail closed).
    pub(crate) fn audit(&self, event: &AuditEvent) -> bool {
        if let Some(m) = &self.metrics {
            m.observe(event);
        }
        match self.audit.record(self.now(), event) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}; refusing the action it records");
                false
            }
        }
    }
}
