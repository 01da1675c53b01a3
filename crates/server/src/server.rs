//! The listeners: `login` (HTTPS) and `tls` (mutual TLS), both behind the
//! PROXY-aware accept path, both writing the audit log.
//!
//! Entry points: [`start`] binds every listener of a [`Config`] and returns
//! a [`Running`] server with the bound addresses; [`serve_command`] is
//! `ippin serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ipnet::IpNet;
use ippin_policy::{CertPin, Denial, ObservedAddr};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::Outcome;
use crate::audit::AuditEvent;
use crate::ca::{CaError, IssueRequest, Issued};
use crate::config::{Config, ConfigError, ListenerConfig, ListenerKind, ProxyModeSetting};
use crate::http::{self, Body};
use crate::listen::bounded_accept;
pub use crate::listen::{MAX_CONNECTIONS, MAX_PENDING};
use crate::observe::observe;
pub use crate::state::{Clock, MAX_CONCURRENT_HASHES, MAX_HANDSHAKES, ServerError, State};

/// Time allowed for the TLS handshake after the PROXY stage.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reason code sent when the audit log cannot be written (fail closed).
pub const AUDIT_UNAVAILABLE: &str = "audit_unavailable";

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The listeners in configuration order, with their bound addresses.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// The shared state (audit sink, configuration).
    pub state: Arc<State>,
    /// How network restrictions hold the SSH sessions' processes, for the start line.
    pub enforcement: Arc<crate::ssh::session::Enforcement>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The bound address of the `index`-th listener of the configuration.
    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        self.listeners.get(index).map(|(_, a)| *a)
    }

    /// The bound address of the first listener of `kind`.
    pub fn first(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// Stops accepting (connections in flight are dropped with their tasks).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn tls_error(file: &Path, message: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

fn load_server_identity(
    config: &Config,
) -> Result<
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
    ServerError,
> {
    use rustls_pki_types::pem::PemObject;
    let cert_path = &config.server_tls.cert;
    let key_path = &config.server_tls.key;
    let cert_text = config.read_public("server_tls.cert", cert_path)?;
    let key_text = config.read_private("server_tls.key", key_path)?;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(tls_error(cert_path, "no CERTIFICATE block"));
    }
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| tls_error(key_path, e))?;
    Ok((chain, key))
}

fn server_configs(
    state: &State,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>), ServerError> {
    crate::install_crypto_provider();
    let (chain, key) = load_server_identity(&state.config)?;
    let cert_path = &state.config.server_tls.cert;
    let mut login = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| tls_error(cert_path, e))?;
    login.alpn_protocols = vec![b"http/1.1".to_vec()];

    // `ippin-access`'s mutual-TLS configuration: client certificates from the cluster CA
    // required, no session resumption (a resumed session would skip their checks).
    let ca = rustls_pki_types::CertificateDer::from(state.ca.x509_cert_der());
    let mut access =
        ippin_access::rustls::server_config(&[ca], chain, key).map_err(|e| match e {
            ippin_access::rustls::TlsConfigError::ClientCa(_) => {
                tls_error(&state.config.ca.tls_cert, e)
            }
            _ => tls_error(cert_path, e),
        })?;
    access.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(login), Arc::new(access)))
}

/// Warnings about the configuration that `serve` prints at start.
pub fn startup_warnings(config: &Config) -> Vec<String> {
    startup_warnings_with(config, &crate::host::local_networks())
}

/// [`startup_warnings`] with this host's addresses given (`local`).
///
/// Beyond the mode warnings: a listener whose trusted proxies contain an address of this host
/// is named. Any forwarding service on this host (this server's `ssh` listeners, sshd with
/// `AllowTcpForwarding`, another ippin process) makes connections from those addresses with
/// bytes its user chooses: a PROXY or forwarded header from there would be believed. This
/// server refuses forwards into its own listeners; it cannot see the other services.
pub fn startup_warnings_with(config: &Config, local: &[IpNet]) -> Vec<String> {
    let mut out = Vec::new();
    // (A configuration holding password hashes that group or others may read is refused
    // by `Config::load`.)
    // etcd on this host without client certificates: every local process (users of the
    // host's own sshd, other services) can write the fleet's users and roles. The sessions
    // are kept from its port; the rest of the host is not.
    if let Some(b) = &config.backend
        && b.tls.as_ref().is_none_or(|t| t.cert.is_none())
    {
        out.push(format!(
            "WARNING: etcd ({}) is reached without a client certificate: any process of this \
             host that can connect to it can write the fleet's users, roles and network \
             restrictions (ippin's sessions are kept from it; other local users and services \
             are not). Give etcd --client-cert-auth and `backend.tls.cert`/`key`.",
            b.endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (i, l) in config.listeners.iter().enumerate() {
        if l.proxy_protocol == ProxyModeSetting::Unspecified {
            out.push(format!(
                "WARNING: listener {i} ({} on {}) has no `proxy_protocol` setting: it is \
                 UNSPECIFIED, so it accepts PROXY headers from anyone but trusts no client \
                 address it sees; pinned users are refused there (untrusted_client_ip). \
                 Set `proxy_protocol: on` (behind a load balancer) or `off` (direct clients).",
                l.kind, l.listen
            ));
        }
        if l.trust_every_peer {
            out.push(format!(
                "WARNING: listener {i} ({} on {}) has `danger_trust_every_peer: true`: any \
                 peer that can reach it may state the client address of its connection; \
                 make sure only your proxies can",
                l.kind, l.listen
            ));
        }
        let overlap: Vec<String> = match &l.trusted_proxies {
            Some(nets) => crate::host::overlapping(nets, local)
                .iter()
                .map(ToString::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if !overlap.is_empty() {
            out.push(format!(
                "WARNING: listener {i} ({} on {}) trusts {}, which holds addresses of this \
                 host: any forwarding service here (ippin's `ssh` listeners and the processes \
                 of its sessions, sshd with AllowTcpForwarding, another ippin) connects from \
                 them with bytes its user chooses, PROXY headers included. ippin refuses \
                 forwards into its own listeners, and with network_restrictions its sessions' \
                 processes cannot reach them (eBPF); make sure no other service on this host forwards for users, deny \
                 this listener and any proxy that trusts this host in every \
                 `network_restrictions`, or give the proxies addresses of their own",
                l.kind,
                l.listen,
                overlap.join(", ")
            ));
        }
    }
    out
}

/// Loads everything `config` names and binds all listeners.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    let Some(backend) = config.backend.clone() else {
        let state = State::load(config)?;
        return start_with(Arc::new(state)).await;
    };
    // A node of a fleet: the files seed the store (keys it lacks), then the store is read
    // whole at one revision; a node that cannot read it, or finds a document that does not
    // validate, does not start (it never serves with no roles).
    let fleet = crate::fleet::Fleet::new(&config)?;
    let seeded = fleet.seed(&config).await?;
    if seeded > 0 {
        tracing::warn!("{seeded} resources written to the store from the files (keys it lacked)");
    }
    let mirror = fleet.snapshot(true, None).await?;
    // A policy deleted from the store (by another client) while this node was down: it
    // does not start unrestricted when its configuration says there are restrictions.
    if mirror.restrictions().is_none()
        && let Some(path) = &config.network_restrictions
    {
        return Err(crate::fleet::FleetError::NoPolicy(path.display().to_string()).into());
    }
    let restrictions = Arc::new(
        crate::ssh::LiveRestrictions::from_document(
            format!("etcd:{}network_restrictions", backend.prefix),
            mirror.restrictions(),
        )
        .map_err(|e| ServerError::Ssh(crate::ssh::SshError::NetworkRestrictions(Box::new(e))))?,
    );
    let ca = crate::ca::Ca::load_config(&config)?;
    let audit = crate::audit::Audit::open(&config.audit_log, &config.cluster_name)
        .map_err(|e| config.file_error("audit_log", e))?;
    let mut state = State::with_directory(config, mirror.directory(), ca, audit);
    state.directory.set_locks(fleet.locks(&mirror));
    let fleet = Arc::new(fleet);
    state.fleet = Some(fleet.clone());
    let state = Arc::new(state);
    tracing::warn!(
        revision = mirror.revision,
        "fleet: state read from etcd at revision {}; watching {}",
        mirror.revision,
        backend.prefix
    );
    let follow = fleet.spawn(mirror, state.directory.clone(), restrictions.clone());
    let mut running = start_inner(state, Some(restrictions)).await?;
    running.tasks.extend(follow);
    Ok(running)
}

/// Binds the listeners of `state.config` and spawns their accept loops.
pub async fn start_with(state: Arc<State>) -> Result<Running, ServerError> {
    start_inner(state, None).await
}

/// [`start_with`]; `restrictions`: a fleet's policy, which replaces the file's.
async fn start_inner(
    state: Arc<State>,
    restrictions: Option<Arc<crate::ssh::LiveRestrictions>>,
) -> Result<Running, ServerError> {
    let (login_tls, access_tls) = server_configs(&state)?;
    let mut listeners = Vec::new();
    // A policy file that cannot be used names the configuration's field and line too.
    let mut ssh = crate::ssh::wiring::SshParts::load_with(&state.config, restrictions).map_err(
        |e| match e {
            crate::ssh::SshError::NetworkRestrictions(r) => {
                ServerError::Config(state.config.file_error("network_restrictions", r))
            }
            other => other.into(),
        },
    )?;
    let mut tasks = std::mem::take(&mut ssh.tasks);
    // Every socket is bound before any service is made: the SSH service refuses forwards
    // into any of them (`own_listener`), so it needs all their bound addresses.
    let mut sockets = Vec::with_capacity(state.config.listeners.len());
    for lcfg in state.config.listeners.clone() {
        let socket = TcpListener::bind(lcfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                kind: lcfg.kind,
                addr: lcfg.listen,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| ServerError::Bind {
            kind: lcfg.kind,
            addr: lcfg.listen,
            source,
        })?;
        sockets.push((lcfg, socket, bound));
    }
    // Forwards may not reach the server's own listeners, nor etcd on this host (a PROXY
    // header written from this host would be believed by a listener that trusts it; etcd in
    // clear text on loopback takes writes from any local client).
    let local_now = crate::host::local_networks();
    ssh.own_listeners = sockets.iter().map(|(_, _, bound)| *bound).collect();
    ssh.own_listeners
        .extend(crate::ssh::wiring::local_backend_endpoints(
            &state.config,
            &local_now,
        ));
    // Nor may the sessions' processes.
    if let crate::ssh::session::Enforcement::Kernel(enforcer) = ssh.enforcement.as_ref() {
        let mut local = local_now;
        enforcer
            .protect(&ssh.own_listeners, &local)
            .map_err(|e| ServerError::Enforcement(e.to_string()))?;
        // Every few seconds: the host's addresses again (an interface that came up makes a
        // listener on an unspecified address reachable through it), and events the kernel or
        // a full queue dropped, which the audit log must show.
        let (enforcer, own, state) = (enforcer.clone(), ssh.own_listeners.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lost_seen = 0;
            loop {
                tick.tick().await;
                let now = crate::host::local_networks();
                if now != local {
                    match enforcer.protect(&own, &now) {
                        Ok(()) => local = now,
                        Err(e) => tracing::error!("protecting the listeners from sessions: {e}"),
                    }
                }
                let lost = enforcer.lost_events();
                if lost > lost_seen {
                    let ssh = serde_json::json!({
                        "event": "session.network.lost",
                        "lost": lost - lost_seen,
                        "lost_total": lost,
                    });
                    if state.audit(&AuditEvent::Ssh { ssh }) {
                        lost_seen = lost;
                    }
                }
            }
        }));
    }
    for (i, (lcfg, socket, bound)) in sockets.into_iter().enumerate() {
        // Files a listener names are read here: errors name the field and its line.
        let in_field = |field: String| {
            let config = &state.config;
            move |e: ServerError| match e {
                ServerError::Config(c @ ConfigError::Invalid { .. }) => ServerError::Config(c),
                other => ServerError::Config(config.file_error(&field, other)),
            }
        };
        let ca_field = match lcfg
            .propagation
            .as_ref()
            .and_then(|p| p.trusted_ca.as_ref())
        {
            Some(_) => format!("listeners[{i}].propagation.trusted_ca"),
            None => "ca.tls_cert".to_owned(),
        };
        let signed = crate::propagation::serve::arm(&state, &lcfg).map_err(in_field(ca_field))?;
        let acceptor = TlsAcceptor::from(match lcfg.kind {
            ListenerKind::Login => login_tls.clone(),
            ListenerKind::Tls => access_tls.clone(),
            ListenerKind::Ssh => {
                let service = ssh_service(&state, &ssh)?;
                if lcfg.propagation.is_some() {
                    listeners.push((lcfg.kind, bound));
                    let st = state.clone();
                    let serve =
                        crate::propagation::serve::ssh_loop(service, socket, lcfg, st, signed);
                    tasks.push(tokio::spawn(serve));
                    continue;
                }
                let policy = crate::accept::listener_policy(&lcfg);
                let timeout = lcfg.header_timeout;
                listeners.push((lcfg.kind, bound));
                tasks.push(tokio::spawn(async move {
                    service.serve_listener(socket, policy, timeout).await;
                }));
                continue;
            }
            ListenerKind::Forward => {
                let target = crate::propagation::serve::forward_target(&lcfg)
                    .map_err(in_field(format!("listeners[{i}].forward")))?;
                listeners.push((lcfg.kind, bound));
                let st = state.clone();
                let serve =
                    crate::propagation::serve::forward_loop(socket, lcfg, target, st, signed);
                tasks.push(tokio::spawn(serve));
                continue;
            }
        });
        listeners.push((lcfg.kind, bound));
        let state = state.clone();
        tasks.push(tokio::spawn(accept_loop(
            socket, lcfg, acceptor, state, signed,
        )));
    }
    Ok(Running {
        listeners,
        state,
        enforcement: ssh.enforcement.clone(),
        tasks,
    })
}

/// The SSH service of an `ssh` listener: the server's SSH CA, users and roles, host key,
/// network restrictions, audit log (fail closed: an event that cannot be written refuses
/// what it records).
fn ssh_service(
    state: &Arc<State>,
    ssh: &crate::ssh::wiring::SshParts,
) -> Result<crate::ssh::SshService, ServerError> {
    let st = state.clone();
    let audit = Arc::new(move |e: crate::ssh::SshAuditEvent| {
        let ssh = serde_json::to_value(&e).unwrap_or_default();
        st.audit(&AuditEvent::Ssh { ssh })
    });
    Ok(crate::ssh::wiring::service_with(
        state,
        Some(ssh.host_key.clone()),
        ssh.dial_policy.clone(),
        audit,
        ssh.own_listeners.clone(),
        ssh.enforcement.clone(),
    )?)
}

async fn accept_loop(
    socket: TcpListener,
    lcfg: ListenerConfig,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    signed: Option<crate::propagation::serve::Armed>,
) {
    // The listener's PROXY policy and verifier, made once (its trusted proxies and
    // endpoints are not copied for each connection).
    let observing = Arc::new(crate::observe::Observing::new(&lcfg, signed));
    let lcfg = Arc::new(lcfg);
    let listen = lcfg.listen;
    let handshakes = Arc::new(crate::shed::Shedder::new(state.max_handshakes));
    bounded_accept(socket, listen, move |tcp, peer, pending_slot, slots| {
        let (lcfg, acceptor, state) = (lcfg.clone(), acceptor.clone(), state.clone());
        let (handshakes, observing) = (handshakes.clone(), observing.clone());
        async move {
            let stage = Stages {
                pending_slot,
                handshakes,
                slots,
                observing,
            };
            handle_connection(tcp, peer, lcfg, acceptor, state, stage).await;
        }
    })
    .await;
}

/// A TLS connection's places in its listener's three bounded stages.
struct Stages {
    /// Held during the PROXY stage.
    pending_slot: tokio::sync::OwnedSemaphorePermit,
    /// Entered for the TLS handshake (oldest shed first when full).
    handshakes: Arc<crate::shed::Shedder>,
    /// One is taken once the handshake is done.
    slots: Arc<tokio::sync::Semaphore>,
    /// The listener's PROXY policy and verifier.
    observing: Arc<crate::observe::Observing>,
}

async fn handle_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    lcfg: Arc<ListenerConfig>,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    stage: Stages,
) {
    let _ = tcp.set_nodelay(true);
    // Only signed propagation names the local address (`observe`): no
    // `getsockname` for the others.
    let local = match lcfg.propagation.is_some().then(|| tcp.local_addr()) {
        Some(Err(_)) => return,
        Some(Ok(local)) => Some(local),
        None => None,
    };
    // Login listeners: at most `max_connections_per_peer` per client address,
    // counted from here when the peer is the client (crate::login_guard).
    let is_login = lcfg.kind == ListenerKind::Login;
    let key = is_login
        .then(|| crate::login_guard::key_at_accept(&lcfg, peer))
        .flatten();
    let mut _peer_slot = match key.map(|k| state.login_guard.enter(k)) {
        Some(None) => return too_many_connections(&state, &lcfg, peer, None),
        Some(slot) => slot,
        None => None,
    };
    let (observed, stream) = match observe(tcp, peer, local, &lcfg, &stage.observing).await {
        Ok(x) => x,
        Err(refused) => {
            tracing::info!(
                "{} listener: refused {peer}: {}",
                lcfg.kind,
                refused.message
            );
            state.audit(&AuditEvent::ProxyRefused {
                listener: lcfg.kind.as_str().into(),
                peer: AuditEvent::peer(peer),
                reason: refused.code.into(),
                detail: refused.message,
            });
            return;
        }
    };
    if is_login && key.is_none() {
        // Deferred to here: the client address a trusted header names.
        if let Some(k) = crate::login_guard::key_after_proxy(&lcfg, &observed, peer) {
            match state.login_guard.enter(k) {
                Some(slot) => _peer_slot = Some(slot),
                None => return too_many_connections(&state, &lcfg, peer, Some(&observed)),
            }
        }
    }
    // `tls` listeners: at most MAX_TLS_PER_PEER per client (the trusted observed client,
    // else the TCP peer), held until the answer.
    let _tls_place = if lcfg.kind == ListenerKind::Tls {
        let client = ippin_access::lockout::throttle_key(&observed, peer);
        match state.tls_peers.take(client) {
            Some(place) => Some(place),
            None => {
                tracing::info!("tls listener: refused {peer}: too many connections");
                state.audit(&AuditEvent::ConnectionRefused {
                    listener: lcfg.kind.as_str().into(),
                    peer: AuditEvent::peer(peer),
                    observed: AuditEvent::addr(&observed),
                    reason: crate::login_guard::TOO_MANY_CONNECTIONS.into(),
                    limit: crate::state::MAX_TLS_PER_PEER,
                });
                return;
            }
        }
    } else {
        None
    };
    // Past the PROXY stage: trade the pending slot for a place in the
    // handshake stage, which never waits (the oldest handshake is shed when
    // it is full). The TLS and HTTP stages are boxed so that the task of a
    // connection still waiting for its header stays small.
    let ticket = stage.handshakes.enter();
    drop(stage.pending_slot);
    Box::pin(tls_stage(
        stream,
        peer,
        observed,
        lcfg,
        acceptor,
        state,
        ticket,
        stage.slots,
    ))
    .await;
}

/// Refuses (closes) a login connection whose client address already holds
/// `max_connections_per_peer` connections; audited.
fn too_many_connections(
    state: &State,
    lcfg: &ListenerConfig,
    peer: SocketAddr,
    observed: Option<&ObservedAddr>,
) {
    tracing::info!(
        "{} listener: refused {peer}: {}",
        lcfg.kind,
        crate::login_guard::TOO_MANY_CONNECTIONS
    );
    state.audit(&AuditEvent::ConnectionRefused {
        listener: lcfg.kind.as_str().into(),
        peer: AuditEvent::peer(peer),
        observed: observed.map(AuditEvent::addr).unwrap_or_default(),
        reason: crate::login_guard::TOO_MANY_CONNECTIONS.into(),
        limit: state.login_guard.limits().max_connections_per_peer,
    });
}

#[allow(clippy::too_many_arguments)]
async fn tls_stage(
    stream: ippin_proxy_protocol::PrefixedStream<TcpStream>,
    peer: SocketAddr,
    observed: ObservedAddr,
    lcfg: Arc<ListenerConfig>,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    mut ticket: crate::shed::Ticket,
    slots: Arc<tokio::sync::Semaphore>,
) {
    let shed = || {
        (
            "tls_handshake_shed",
            "the handshake stage was full and this was its oldest connection".to_owned(),
        )
    };
    let began = std::time::Instant::now();
    let handshake = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => Some(r),
        () = ticket.evicted() => None,
    };
    let (reason, detail) = match handshake {
        Some(Ok(Ok(tls))) => {
            if let Some(m) = &state.metrics {
                m.handshake(began.elapsed());
            }
            // Done: wait for an established slot, still sheddable while waiting.
            let slot = tokio::select! {
                s = slots.acquire_owned() => s.ok(),
                () = ticket.evicted() => None,
            };
            drop(ticket);
            if let Some(_slot) = slot {
                serve_tls(tls, peer, observed, lcfg, state).await;
                return;
            }
            shed()
        }
        Some(Ok(Err(e))) => ("tls_handshake_failed", e.to_string()),
        Some(Err(_)) => ("tls_handshake_timeout", format!("{HANDSHAKE_TIMEOUT:?}")),
        None => shed(),
    };
    tracing::info!(
        "{} listener: TLS with {peer}: {reason}: {detail}",
        lcfg.kind
    );
    state.audit(&AuditEvent::TlsRefused {
        listener: lcfg.kind.as_str().into(),
        peer: AuditEvent::peer(peer),
        observed: AuditEvent::addr(&observed),
        provenance: observed.provenance().as_str().into(),
        reason: reason.into(),
        detail,
    });
}

async fn serve_tls<S>(
    tls: tokio_rustls::server::TlsStream<S>,
    peer: SocketAddr,
    observed: ObservedAddr,
    lcfg: Arc<ListenerConfig>,
    state: Arc<State>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match lcfg.kind {
        ListenerKind::Login => {
            http::serve_one(tls, move |req| {
                let (state, lcfg) = (state.clone(), lcfg.clone());
                async move { login_route(&state, &lcfg, peer, observed, req).await }
            })
            .await;
        }
        ListenerKind::Tls => {
            let der = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .unwrap_or_default();
            let began = std::time::Instant::now();
            let verdict = Arc::new(access_verdict(&state, &der, &observed));
            if let Some(m) = &state.metrics {
                m.decision(began.elapsed());
            }
            let der = Arc::new(der);
            http::serve_one(tls, move |req| {
                let (state, verdict, der) = (state.clone(), verdict.clone(), der.clone());
                async move { access_route(&state, &verdict, &der, observed, req).await }
            })
            .await;
        }
        // `ssh` listeners never reach TLS: `start_with` serves them with `crate::ssh`.
        // nor do `forward` listeners (`crate::propagation::serve`).
        ListenerKind::Ssh | ListenerKind::Forward => {}
    }
}

// ---- login ---------------------------------------------------------------

/// `POST /v1/login` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// SSH public key, OpenSSH text.
    pub ssh_public_key: String,
    /// TLS public key, SPKI PEM.
    pub tls_public_key: String,
}

/// `POST /v1/renew` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// New SSH public key, OpenSSH text.
    pub ssh_public_key: String,
    /// New TLS public key, SPKI PEM.
    pub tls_public_key: String,
}

/// The 200 body of login and renewal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertResponse {
    /// OpenSSH certificate text.
    pub ssh_certificate: String,
    /// X.509 certificate, PEM.
    pub tls_certificate: String,
    /// The pin, or null: the address alone, or `network/len` for a prefix pin.
    pub pinned_ip: Option<String>,
    /// Expiry, RFC 3339.
    pub expires: String,
}

impl CertResponse {
    fn from_issued(i: Issued) -> CertResponse {
        CertResponse {
            ssh_certificate: i.ssh_certificate,
            tls_certificate: i.tls_certificate,
            pinned_ip: i.pinned.map(pin_text),
            expires: rfc3339(i.expires),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 to the second, rounded UP: a client that waits until the
/// time it is told is never refused again by the same lock.
fn rfc3339_ceil(t: SystemTime) -> String {
    let part = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let up = if part == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::from(1_000_000_000 - part))
    };
    rfc3339(t.checked_add(up).unwrap_or(t))
}

fn not_found() -> Response<Body> {
    http::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn login_route(
    state: &State,
    lcfg: &ListenerConfig,
    peer: SocketAddr,
    observed: ObservedAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    // A connection from a proxy whose forwarded headers this listener believes.
    let from_l7_proxy = lcfg.trust_x_forwarded_for && forwarded_mode(lcfg).believes(observed.ip());
    if req.method() == Method::GET
        && let Some(resp) =
            crate::fleet_http::health_route(state, peer, &observed, from_l7_proxy, req.uri().path())
    {
        return resp;
    }
    if req.method() != Method::POST || req.uri().path() != "/v1/login" {
        return not_found();
    }
    let observed = if lcfg.trust_x_forwarded_for {
        match forwarded_client(lcfg, &observed, req.headers()) {
            Ok(o) => o,
            Err(message) => {
                state.audit(&login_refused(&observed, "", "bad_forwarded_header"));
                return http::error(StatusCode::BAD_REQUEST, "bad_forwarded_header", &message);
            }
        }
    } else {
        observed
    };
    let timeout = state.login_guard.limits().body_timeout;
    let body: LoginRequest = match http::read_json_within(req, timeout).await {
        Ok(b) => b,
        Err(refusal) => {
            state.audit(&login_refused(&observed, "", refusal.code));
            return refusal.into_response();
        }
    };
    let throttle_key = crate::login_guard::throttle_key(&observed, peer);
    login(state, &observed, throttle_key, body).await
}

/// How a listener reads forwarded headers. Every peer a proxy (`danger_trust_every_peer`):
/// the existing system's strict mode, one header line with one value. Otherwise the named
/// proxies (the configuration guarantees a list; without one, nobody would be a proxy).
fn forwarded_mode(lcfg: &ListenerConfig) -> ippin_policy::ForwardedMode {
    if lcfg.trust_every_peer {
        ippin_policy::ForwardedMode::EveryPeerIsAProxy
    } else {
        ippin_policy::ForwardedMode::TrustedProxies {
            proxies: lcfg.trusted_proxies.clone().unwrap_or_default(),
            hops: lcfg.forwarded_hops,
        }
    }
}

/// The client address from `X-Forwarded-For` / `Forwarded`, decided by
/// `ippin-policy`; the connection's address when neither header is present.
fn forwarded_client(
    lcfg: &ListenerConfig,
    conn: &ObservedAddr,
    headers: &hyper::HeaderMap,
) -> Result<ObservedAddr, String> {
    let mode = forwarded_mode(lcfg);
    // `ippin-access` decides: a client's own headers are not read (nor converted); an
    // untrusted connection, or a client a PROXY header named, vouches for nobody; both
    // headers at once are refused; a trusted proxy that names no client is not one
    // (untrusted, like a PROXY `LOCAL` header).
    let values = |name: &'static str| headers.get_all(name).iter().map(|v| v.as_bytes());
    ippin_access::observed::from_forwarded_values(
        conn,
        values("x-forwarded-for"),
        values("forwarded"),
        &mode,
    )
    .map_err(|e| e.0)
}

/// The login decision and issuance, after the body was read: lockout and
/// throttle (`crate::lockout`, failures counted under `peer`), password,
/// roles, pin (from `ippin-policy`), certificates, audit.
pub async fn login(
    state: &State,
    observed: &ObservedAddr,
    peer: std::net::IpAddr,
    body: LoginRequest,
) -> Response<Body> {
    let refused = |user: &str, reason: &str| login_refused(observed, user, reason);
    // Before the password is checked: a locked name is refused whatever the
    // password (a right one is not even looked at, so the answer cannot
    // tell), and names that no user has are locked the same way.
    // Locked on every node of a fleet (the store's leased `lockouts/` key): refused before
    // the password is looked at, like a lock of this node.
    if let Some(until) = state.directory.locked_until(&body.user, state.now()) {
        state.audit(&refused(&body.user, "user_locked"));
        return throttled(
            state,
            &crate::lockout::Refusal::UserLocked {
                until,
                max_failures: state.login_guard.limits().max_failures,
            },
        );
    }
    // A place to check a password, waited for at most HASH_SLOT_WAIT, before anything is
    // counted: a login that cannot be checked in time (every place taken, by a flood of
    // attempts from many addresses) is answered `login_busy` and costs its user nothing,
    // rather than counting as a failure of their name that was never checked.
    let slot = match tokio::time::timeout(HASH_SLOT_WAIT, state.hash_slots.clone().acquire_owned())
        .await
    {
        Ok(Ok(slot)) => slot,
        _ => {
            state.audit(&refused(&body.user, "login_busy"));
            return http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "login_busy",
                "too many logins are being checked at once; nothing was counted: try again \
                 in a moment",
            );
        }
    };
    let attempt = match state.login_guard.begin(&body.user, peer, state.now()) {
        Ok(a) => a,
        Err(refusal) => {
            state.audit(&refused(&body.user, refusal.code()));
            return throttled(state, &refusal);
        }
    };
    // One version of the users for the whole login: a password changed meanwhile (a fleet's
    // store) cannot pair the old hash with the new user, or the other way round.
    let directory = state.directory.get();
    let ok = if body.password.len() <= crate::users::MAX_PASSWORD_BYTES {
        check_password(state, &directory, &body.user, &body.password, slot).await
    } else {
        // No password this long is ever right, but the failure costs what any other does (a
        // hash against the decoy), so that failures, which fill the lockout tables, cannot be
        // bought cheaply (found in review).
        let _ = check_password(state, &directory, "", "", slot).await;
        false
    };
    let user = match directory.user(&body.user) {
        Some(u) if ok => {
            state.login_guard.succeeded(attempt, &body.user, peer);
            if let Some(fleet) = &state.fleet
                && state.directory.has_failures(&body.user)
            {
                fleet.record_success(&body.user);
            }
            u.clone()
        }
        _ => {
            let failed = state
                .login_guard
                .failed(attempt, &body.user, peer, state.now());
            if let Some(fleet) = &state.fleet {
                fleet.record_failure(
                    &body.user,
                    failed
                        .user_lock_began
                        .then_some(failed.user_locked_until)
                        .flatten(),
                    state.now(),
                );
            }
            state.audit(&refused(&body.user, "bad_credentials"));
            let locked = |reason: &str, until: SystemTime, failures: u32| AuditEvent::LoginLocked {
                user: body.user.clone(),
                observed: AuditEvent::addr(observed),
                provenance: observed.provenance().as_str().into(),
                reason: reason.into(),
                failures,
                until: rfc3339_ceil(until),
            };
            let limits = state.login_guard.limits();
            if let (true, Some(until)) = (failed.user_lock_began, failed.user_locked_until) {
                state.audit(&locked("user_locked", until, limits.max_failures));
            }
            if let Some(until) = failed.peer_throttle_began {
                state.audit(&locked("peer_throttled", until, limits.peer_max_failures));
            }
            if let Some(until) = failed.user_locked_until {
                return throttled(
                    state,
                    &crate::lockout::Refusal::UserLocked {
                        until,
                        max_failures: limits.max_failures,
                    },
                );
            }
            return http::error(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "unknown user or wrong password",
            );
        }
    };
    login_issue(state, &directory, observed, &user, body)
}

/// How long a login waits for a place to check its password (`MAX_CONCURRENT_HASHES` at
/// once) before it is answered `login_busy`, uncounted.
pub const HASH_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `password` is `user`'s, checked in the place `slot` (given back when done). An
/// unknown name is checked against a stand-in user's hash (`Directory::stand_in_hash`), else
/// the decoy, so that both cost the same; its answer is always `false`.
async fn check_password(
    state: &State,
    directory: &crate::directory::Directory,
    user: &str,
    password: &str,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let known = directory.user(user).is_some();
    // Picked for every name, known or not, so that picking it costs both alike (it grows
    // with the number of users).
    let stand_in = directory.stand_in_hash(user, &state.decoy_key);
    let hash = match directory.user(user) {
        Some(u) => u.password_hash.clone(),
        None => stand_in.map_or_else(|| state.decoy_hash.clone(), str::to_owned),
    };
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let ok = crate::users::verify_password(&hash, &password);
        drop(slot);
        ok && known
    })
    .await
    .unwrap_or(false)
}

/// The `429` of a login refused before its password was checked: `{error,
/// message, locked_until}` and `Retry-After`.
fn throttled(state: &State, refusal: &crate::lockout::Refusal) -> Response<Body> {
    use crate::lockout::Refusal;
    let until = refusal.until();
    let when = until.map(rfc3339_ceil).unwrap_or_default();
    let message = match refusal {
        Refusal::UserLocked { max_failures, .. } => format!(
            "this account is locked until {when} after {max_failures} failed logins; \
             try again then"
        ),
        Refusal::PeerThrottled { .. } => format!(
            "too many failed logins from your address: refused until {when}; try again then"
        ),
        _ => "too many accounts are locked at once: logins of other names are refused \
              for now; try again later"
            .to_owned(),
    };
    let mut resp = http::json(
        StatusCode::TOO_MANY_REQUESTS,
        &LockedBody {
            error: refusal.code(),
            message: &message,
            locked_until: until.map(rfc3339_ceil),
        },
    );
    let wait = until
        .and_then(|u| u.duration_since(state.now()).ok())
        .map_or(60, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&wait.to_string()) {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    resp
}

/// The body of a `429` login refusal.
#[derive(Debug, Serialize)]
struct LockedBody<'a> {
    error: &'a str,
    message: &'a str,
    /// RFC 3339; null for `login_busy`.
    locked_until: Option<String>,
}

/// The `login_refused` audit event for `user` seen at `observed`.
fn login_refused(observed: &ObservedAddr, user: &str, reason: &str) -> AuditEvent {
    AuditEvent::LoginRefused {
        user: user.to_owned(),
        observed: AuditEvent::addr(observed),
        provenance: observed.provenance().as_str().into(),
        endpoint: observed.endpoint().map(|e| e.as_str().to_owned()),
        reason: reason.to_owned(),
    }
}

/// Roles, pin and issuance for `user`, whose password was right.
fn login_issue(
    state: &State,
    directory: &crate::directory::Directory,
    observed: &ObservedAddr,
    user: &crate::config::UserConfig,
    body: LoginRequest,
) -> Response<Body> {
    let refused = |user: &str, reason: &str| login_refused(observed, user, reason);
    let Some((requires_pin, roles)) = directory.requires_pin(&user.name) else {
        state.audit(&refused(&user.name, "role_mapping_failed"));
        return http::error(
            StatusCode::FORBIDDEN,
            "role_mapping_failed",
            "your roles are not defined on this server",
        );
    };
    let pinned = match ippin_policy::pin_for_issue(requires_pin, Some(observed)) {
        Ok(p) => p,
        Err(denial) => {
            state.audit(&refused(&user.name, denial.reason.code()));
            return deny(&denial);
        }
    };
    let login_ip = observed.is_trusted().then(|| observed.ip());
    let Some(logins) = directory.logins_of(&roles) else {
        state.audit(&refused(&user.name, "role_mapping_failed"));
        return http::error(
            StatusCode::FORBIDDEN,
            "role_mapping_failed",
            "your roles are not defined on this server",
        );
    };
    issue_and_answer(
        state,
        &IssueRequest {
            user: &user.name,
            roles: &roles,
            logins: &logins,
            ssh_public_key: &body.ssh_public_key,
            tls_public_key: &body.tls_public_key,
            pinned,
            // A pin issued through a private endpoint holds only through it.
            pinned_endpoint: pinned.and(observed.endpoint()),
            login_ip,
            now: state.now(),
            ttl: state.config.cert_ttl,
            session: None,
        },
        |issued| AuditEvent::LoginIssued {
            user: user.name.clone(),
            observed: AuditEvent::addr(observed),
            provenance: observed.provenance().as_str().into(),
            trusted: observed.is_trusted(),
            pinned: issued.pinned.map(pin_text),
            pinned_endpoint: issued.pinned_endpoint.map(|e| e.to_string()),
            expires: rfc3339(issued.expires),
        },
        |reason| refused(&user.name, reason),
    )
}

/// A pin as the audit log and the certificates write it: the address alone for one
/// address, `network/len` for a prefix pin.
fn pin_text(net: ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn deny(denial: &Denial) -> Response<Body> {
    http::error(StatusCode::FORBIDDEN, denial.reason.code(), &denial.message)
}

/// Issues, audits (fail closed), answers.
fn issue_and_answer(
    state: &State,
    req: &IssueRequest<'_>,
    issued_event: impl FnOnce(&Issued) -> AuditEvent,
    refused_event: impl FnOnce(&str) -> AuditEvent,
) -> Response<Body> {
    let issued = match state.ca.issue(req) {
        Ok(i) => i,
        Err(CaError::BadKey { field, message }) => {
            state.audit(&refused_event("bad_public_key"));
            return http::error(
                StatusCode::BAD_REQUEST,
                "bad_public_key",
                &format!("{field}: {message}"),
            );
        }
        Err(e) => {
            tracing::error!("issuance failed: {e}");
            state.audit(&refused_event("issue_failed"));
            return http::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "issue_failed",
                "the certificates could not be issued",
            );
        }
    };
    if !state.audit(&issued_event(&issued)) {
        return audit_unavailable();
    }
    http::json(StatusCode::OK, &CertResponse::from_issued(issued))
}

fn audit_unavailable() -> Response<Body> {
    http::error(
        StatusCode::SERVICE_UNAVAILABLE,
        AUDIT_UNAVAILABLE,
        "the audit log cannot be written, so nothing is served; tell the operator",
    )
}

// ---- tls access ------------------------------------------------------------

pub use ippin_access::tls::{TlsAccess as Access, TlsVerdict as AccessVerdict};

/// The pin check for a verified client certificate `der` seen at
/// `observed`, with the user's CURRENT roles from the configuration:
/// `ippin-access`'s mutual-TLS decision, its audit line written to this
/// server's log; a failure to write it turns the verdict into
/// [`Access::AuditUnavailable`].
pub fn access_verdict(state: &State, der: &[u8], observed: &ObservedAddr) -> AccessVerdict {
    let users = |name: &str| {
        state
            .requires_pin(name)
            .map(|(pin, roles)| ippin_access::User::new(false, roles).with_pin_requirement(pin))
    };
    let sink = |event: ippin_access::tls::TlsEvent| state.audit(&AuditEvent::Tls(event));
    let now = state
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ippin_access::tls::check(&state.identities, der, &users, observed, now, &sink)
}

/// `GET /whoami` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Whoami {
    /// The user.
    pub user: String,
    /// Current roles.
    pub roles: Vec<String>,
    /// Observed client address (`ip:port`, port 0 when untrusted).
    pub observed: String,
    /// How it was observed.
    pub via: String,
    /// The certificate's pin, or null.
    pub pinned: Option<String>,
}

async fn access_route(
    state: &State,
    verdict: &AccessVerdict,
    der: &[u8],
    observed: ObservedAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    match &verdict.access {
        Access::Allow => {}
        Access::Deny { reason, message } => {
            return http::error(StatusCode::FORBIDDEN, reason.code(), message);
        }
        // Audit unavailable, or an outcome this server does not know: refused.
        _ => return audit_unavailable(),
    }
    if req.uri().path().starts_with("/v1/admin/") || req.uri().path() == "/v1/admin" {
        return crate::fleet_http::admin_route(state, verdict, der, &observed, req).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/whoami") => http::json(
            StatusCode::OK,
            &Whoami {
                user: verdict.user.clone(),
                roles: verdict.roles.clone(),
                observed: AuditEvent::addr(&observed),
                via: observed.provenance().as_str().into(),
                pinned: ippin_access::pin::pin_text(&verdict.pin),
            },
        ),
        (&Method::POST, "/v1/renew") => {
            let body: RenewRequest = match http::read_json_within(req, http::BODY_TIMEOUT).await {
                Ok(b) => b,
                Err(refusal) => {
                    // Audited as every other refused renewal (a body that is not JSON,
                    // too large, too slow), under the certificate's user.
                    state.audit(&AuditEvent::RenewRefused {
                        user: verdict.user.clone(),
                        observed: AuditEvent::addr(&observed),
                        provenance: observed.provenance().as_str().into(),
                        endpoint: observed.endpoint().map(|e| e.as_str().to_owned()),
                        reason: refusal.code.to_owned(),
                    });
                    return refusal.into_response();
                }
            };
            renew(state, &Presented::from(verdict), &observed, body)
        }
        _ => not_found(),
    }
}

/// What renewal reads of the presented certificate and its user: the
/// fields of the access verdict that allowed the connection.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The user.
    pub user: String,
    /// The user's current roles.
    pub roles: Vec<String>,
    /// What those roles required of the pin when the connection was allowed.
    pub pin_requirement: ippin_policy::PinRequirement,
    /// The certificate's pin.
    pub pin: CertPin,
    /// The private endpoint the pin is bound to, if any.
    pub pinned_endpoint: Option<ippin_policy::Endpoint>,
    /// The login IP the certificate records.
    pub login_ip: Option<std::net::IpAddr>,
    /// The certificate's `(not_before, not_after)`, Unix seconds: `not_before` is the
    /// start of the login's validity, kept through renewals.
    pub validity: Option<(u64, u64)>,
}

impl From<&AccessVerdict> for Presented {
    fn from(v: &AccessVerdict) -> Presented {
        Presented {
            user: v.user.clone(),
            roles: v.roles.clone(),
            pin_requirement: v.pin_requirement,
            pin: v.pin.clone(),
            pinned_endpoint: v.pinned_endpoint,
            login_ip: v.login_ip,
            validity: v.validity,
        }
    }
}

/// Renewal: the pins of the presented certificate are kept (decided by
/// `ippin-policy`'s `pins_for_renewal`), the roles are the current ones.
pub fn renew(
    state: &State,
    verdict: &Presented,
    observed: &ObservedAddr,
    body: RenewRequest,
) -> Response<Body> {
    let refused = |reason: &str| AuditEvent::RenewRefused {
        user: verdict.user.clone(),
        observed: AuditEvent::addr(observed),
        provenance: observed.provenance().as_str().into(),
        endpoint: observed.endpoint().map(|e| e.as_str().to_owned()),
        reason: reason.to_owned(),
    };
    // One login lasts `max_session_ttl` through renewals (`ippin_policy::renewal_validity`):
    // the renewed certificates keep the presented one's start (a login's, 60 s before it),
    // and past that start plus `max_session_ttl` renewal asks for a login.
    let now = state.now();
    let now_unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let at = |secs: u64| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    // The handshake checked the certificate's validity; the request may have come up to the
    // head and body timeouts later: one that expired meanwhile renews nothing.
    if verdict
        .validity
        .is_some_and(|(_, not_after)| now_unix > not_after)
    {
        state.audit(&refused("expired"));
        return http::error(
            StatusCode::FORBIDDEN,
            "expired",
            "your certificate expired during this request; log in again (`ippin login`)",
        );
    }
    let window = verdict.validity.and_then(|(not_before, _)| {
        let (start, end) = ippin_policy::renewal_validity(
            not_before,
            now_unix,
            state.config.cert_ttl.as_secs(),
            state.config.max_session_ttl.as_secs(),
        )?;
        Some((at(start)?, at(end)?))
    });
    let Some(window) = window else {
        state.audit(&refused("login_too_old"));
        let since = verdict
            .validity
            .and_then(|(not_before, _)| at(not_before))
            .map_or_else(String::new, |t| {
                format!(" (its certificates have been valid since {})", rfc3339(t))
            });
        return http::error(
            StatusCode::FORBIDDEN,
            "login_too_old",
            &format!(
                "your login is older than this server renews{since}: max_session_ttl is {}; \
                 log in again (`ippin login`)",
                humantime::format_duration(state.config.max_session_ttl)
            ),
        );
    };
    // The user and roles NOW (a fleet's store may have changed them since the connection's
    // access decision): a user removed meanwhile renews nothing, and the pin requirement
    // and the logins are today's.
    let directory = state.directory.get();
    let Some((requires_pin, roles)) = directory.requires_pin(&verdict.user) else {
        state.audit(&refused("role_mapping_failed"));
        return http::error(
            StatusCode::FORBIDDEN,
            "role_mapping_failed",
            "your user or roles are not defined on this server any more; log in again \
             (`ippin login`)",
        );
    };
    let pins = match ippin_policy::pins_for_renewal_at(
        &verdict.pin,
        verdict.pinned_endpoint.as_ref(),
        verdict.login_ip,
        requires_pin.strictest(verdict.pin_requirement),
        observed,
    ) {
        Ok(p) => p,
        Err(denial) => {
            state.audit(&refused(denial.reason.code()));
            return deny(&denial);
        }
    };
    // The logins of the roles now, not the presented certificate's principals.
    let Some(logins) = directory.logins_of(&roles) else {
        state.audit(&refused("role_mapping_failed"));
        return http::error(
            StatusCode::FORBIDDEN,
            "role_mapping_failed",
            "your roles are not defined on this server; log in again (`ippin login`)",
        );
    };
    issue_and_answer(
        state,
        &IssueRequest {
            user: &verdict.user,
            roles: &roles,
            logins: &logins,
            ssh_public_key: &body.ssh_public_key,
            tls_public_key: &body.tls_public_key,
            pinned: pins.pinned,
            pinned_endpoint: pins.endpoint,
            login_ip: pins.login_ip,
            now,
            ttl: state.config.cert_ttl,
            session: Some(window),
        },
        |issued| AuditEvent::RenewIssued {
            user: verdict.user.clone(),
            observed: AuditEvent::addr(observed),
            provenance: observed.provenance().as_str().into(),
            pinned: issued.pinned.map(pin_text),
            pinned_endpoint: issued.pinned_endpoint.map(|e| e.to_string()),
            expires: rfc3339(issued.expires),
        },
        refused,
    )
}

// ---- serve -------------------------------------------------------------------

/// `ippin serve --config FILE`: runs until Ctrl-C / SIGTERM.
pub async fn serve_command(path: &Path) -> Outcome {
    // SIGHUP is taken first thing: its default action ends the process, and a reload sent
    // while the server starts (systemd takes `reload` as soon as it has exec'd; the start
    // may wait on etcd for long) would otherwise stop it, as a clean exit that is not
    // restarted. One received meanwhile is handled once the audit log is open.
    #[cfg(unix)]
    let hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            return Outcome::fail(
                1,
                format!("error: cannot install the SIGHUP handler: {e}\n"),
            );
        }
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(1, format!("error: {e}\n")),
    };
    for w in startup_warnings(&config) {
        tracing::warn!("{w}");
        eprintln!("{w}");
    }
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(1, format!("error: {e}\n")),
    };
    // Log rotation: SIGHUP reopens the audit log at its path (crate::audit).
    let audit_tasks = audit_tasks(
        &running.state,
        #[cfg(unix)]
        hup,
    );
    if running
        .listeners
        .iter()
        .any(|(kind, _)| *kind == ListenerKind::Ssh)
    {
        let line = format!("sessions: {}", running.enforcement.describe());
        tracing::warn!("{line}");
        println!("{line}");
    }
    for (kind, addr) in &running.listeners {
        println!("listening: {kind} on {addr}");
    }
    wait_for_stop().await;
    for t in audit_tasks {
        t.abort();
    }
    // The refusals counted but not yet reported are written before exiting.
    if let Err(e) = running
        .state
        .audit
        .flush_summaries(running.state.now(), true)
    {
        tracing::error!("{e}");
    }
    // The sessions end with the server, wherever their cgroups are: under a parent outside
    // the service's own cgroup (a configuration without `sessions.cgroup_parent`), systemd's
    // stop would not reach them.
    if let crate::ssh::session::Enforcement::Kernel(enforcer) = &*running.enforcement {
        let (ended, stuck) = enforcer.end_sessions();
        if ended + stuck > 0 {
            let line = format!("stopping: {ended} sessions ended, {stuck} could not be");
            tracing::warn!("{line}");
            println!("{line}");
        }
    }
    running.shutdown();
    Outcome::ok("stopped\n")
}

/// The audit log's tasks in `serve`: reopen on `SIGHUP`; write the `audit.suppressed`
/// lines of ended windows every second (not only at the next event).
fn audit_tasks(
    state: &Arc<State>,
    #[cfg(unix)] mut hup: tokio::signal::unix::Signal,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    #[cfg(unix)]
    {
        let audit = state.audit.clone();
        tasks.push(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match audit.reopen() {
                    Ok(()) => tracing::info!("SIGHUP: audit log reopened"),
                    Err(e) => tracing::error!("SIGHUP: {e}; still writing to the old file"),
                }
            }
        }));
    }
    let s = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = s.audit.flush_summaries(s.now(), false) {
                tracing::error!("{e}");
            }
        }
    }));
    tasks
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use ippin_policy::Provenance;

    /// A state over a fresh CA with alice (pinned-ip) and bob (dev); no
    /// sockets: the handlers are called directly.
    fn state(dir: &Path) -> State {
        let mut users = String::new();
        for (name, role) in [("alice", "pinned-ip"), ("bob", "dev")] {
            let hash = crate::users::hash_password_light(&format!("{name}-pw")).unwrap();
            users.push_str(&format!(
                "  - {{name: {name}, password_hash: \"{hash}\", roles: [{role}]}}\n"
            ));
        }
        let text = format!(
            "cluster_name: t\nca: {{ssh_key: ca/ssh_user_ca, tls_cert: ca/tls_ca.pem, tls_key: ca/tls_ca.key}}\n\
             server_tls: {{cert: server.pem, key: server.key}}\nroles: [roles.yaml]\nusers:\n{users}\
             audit_log: audit.log\nlisteners:\n  - {{kind: login, listen: 127.0.0.1:0, proxy_protocol: off}}\n"
        );
        let path = crate::ca::init_at(dir, SystemTime::now(), &text).unwrap();
        State::load(Config::load(&path).unwrap()).unwrap()
    }

    /// An unknown name's password is checked against a real user's hash (the same cost as
    /// that user's), and never matches, even when it is that user's password; every user's
    /// hash stands in for some names.
    #[tokio::test]
    async fn an_unknown_name_costs_a_real_users_check_and_never_matches() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let directory = s.directory.get();
        let mut stood_in = std::collections::BTreeSet::new();
        for i in 0..64 {
            let name = format!("nobody{i}");
            let hash = directory.stand_in_hash(&name, &s.decoy_key).unwrap();
            assert_eq!(directory.stand_in_hash(&name, &s.decoy_key), Some(hash));
            let owner = ["alice", "bob"]
                .into_iter()
                .find(|u| directory.user(u).unwrap().password_hash == hash)
                .expect("a user's hash");
            stood_in.insert(owner);
            let pw = format!("{owner}-pw");
            let slot = s.hash_slots.clone().acquire_owned().await.unwrap();
            assert!(
                !check_password(&s, &directory, &name, &pw, slot).await,
                "{name}"
            );
        }
        assert_eq!(stood_in.len(), 2, "{stood_in:?}");
        let slot = s.hash_slots.clone().acquire_owned().await.unwrap();
        assert!(check_password(&s, &directory, "alice", "alice-pw", slot).await);
        // The same stand-ins from the same CA (every node of a cluster, every restart).
        assert_eq!(s.decoy_key, s.ca.stand_in_key());
        let again = State::load(s.config.clone()).unwrap();
        assert_eq!(again.decoy_key, s.decoy_key);
    }

    fn request(user: &str) -> LoginRequest {
        let mut rng = crate::rng();
        let ssh = ippin_cert::ssh_key::PrivateKey::random(
            &mut rng,
            ippin_cert::ssh_key::Algorithm::Ed25519,
        )
        .unwrap();
        let (_, spki) = ippin_cert::x509::generate_key_pair_p256(&mut rng).unwrap();
        LoginRequest {
            user: user.into(),
            password: format!("{user}-pw"),
            ssh_public_key: ssh.public_key().to_openssh().unwrap(),
            tls_public_key: spki,
        }
    }

    async fn answer(resp: Response<Body>) -> (u16, serde_json::Value) {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn seen(addr: &str, provenance: Provenance, trusted: bool) -> ObservedAddr {
        ObservedAddr::new(addr.parse().unwrap(), provenance, trusted)
    }

    #[tokio::test]
    async fn login_pins_the_canonical_trusted_address() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("[::ffff:127.0.0.5]:4000", Provenance::ProxyV2, true);
        let (status, body) = answer(login(&s, &o, o.ip(), request("alice")).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["pinned_ip"], "127.0.0.5");
        let der = crate::ca::pem_to_der(body["tls_certificate"].as_str().unwrap(), "CERTIFICATE")
            .unwrap();
        let id = ippin_cert::x509::client_identity(&der).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.roles, vec!["pinned-ip".to_owned()]);
        assert_eq!(id.login_ip, Some("127.0.0.5".parse().unwrap()));
    }

    /// Every place to check a password taken (a flood from many addresses): a login waits
    /// at most HASH_SLOT_WAIT, is answered `login_busy`, and counts nothing, so the user's
    /// own retries cannot lock their name; once a place is free, the right password works.
    #[tokio::test(start_paused = true)]
    async fn a_login_that_cannot_be_checked_in_time_is_busy_and_counts_nothing() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.5:4000", Provenance::Direct, true);
        let held = s
            .hash_slots
            .clone()
            .acquire_many_owned(crate::state::MAX_CONCURRENT_HASHES as u32)
            .await
            .unwrap();
        let max = s.login_guard.limits().max_failures;
        for _ in 0..=max {
            let mut wrong = request("alice");
            wrong.password = "wrong".into();
            let (status, body) = answer(login(&s, &o, o.ip(), wrong).await).await;
            assert_eq!((status, body["error"].as_str()), (503, Some("login_busy")));
        }
        drop(held);
        let (status, body) = answer(login(&s, &o, o.ip(), request("alice")).await).await;
        assert_eq!(status, 200, "{body}");
    }

    #[tokio::test]
    async fn untrusted_logins_pin_nobody() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.5:4000", Provenance::ProxyV1, false);
        let (status, body) = answer(login(&s, &o, o.ip(), request("alice")).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("untrusted_client_ip"))
        );
        // An unpinned user gets certificates, without a pin or a login IP.
        let (status, body) = answer(login(&s, &o, o.ip(), request("bob")).await).await;
        assert_eq!(status, 200);
        assert!(body["pinned_ip"].is_null());
        let der = crate::ca::pem_to_der(body["tls_certificate"].as_str().unwrap(), "CERTIFICATE")
            .unwrap();
        assert_eq!(
            ippin_cert::x509::client_identity(&der).unwrap().login_ip,
            None
        );
        let events: Vec<serde_json::Value> = std::fs::read_to_string(&s.config.audit_log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events[0]["event"], "login_refused");
        assert_eq!(events[0]["reason"], "untrusted_client_ip");
        assert_eq!(events[0]["observed"], "127.0.0.5:0");
        assert_eq!(events[1]["event"], "login_issued");
        assert_eq!(events[1]["trusted"], false);
    }

    /// A clock the test moves.
    fn manual_clock(s: &mut State) -> Arc<std::sync::Mutex<SystemTime>> {
        let now = Arc::new(std::sync::Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let read = now.clone();
        s.clock = Arc::new(move || *read.lock().unwrap());
        now
    }

    fn with_password(user: &str, password: &str) -> LoginRequest {
        LoginRequest {
            password: password.into(),
            ..request(user)
        }
    }

    /// Five wrong passwords lock a name for 20 minutes (default limits),
    /// the fifth answer says until when, the right password is then refused
    /// with the very same answer, another user still logs in, a name that no
    /// user has locks the same way, and the lock ends on the server's clock.
    #[tokio::test]
    async fn five_failures_lock_a_name_until_the_clock_passes_the_lock() {
        let dir = ippin_test_support::temp_dir();
        let mut s = state(dir.path());
        let clock = manual_clock(&mut s);
        let o = seen("127.0.0.5:4000", Provenance::Direct, true);
        let t0 = *clock.lock().unwrap();
        let until = rfc3339(t0 + Duration::from_secs(20 * 60));
        for name in ["alice", "zed"] {
            for _ in 0..4 {
                let (status, body) =
                    answer(login(&s, &o, o.ip(), with_password(name, "bad")).await).await;
                assert_eq!(
                    (status, body["error"].as_str()),
                    (401, Some("bad_credentials"))
                );
            }
            let (status, fifth) =
                answer(login(&s, &o, o.ip(), with_password(name, "bad")).await).await;
            assert_eq!(
                (status, fifth["error"].as_str()),
                (429, Some("user_locked")),
                "{fifth}"
            );
            assert_eq!(fifth["locked_until"], until.as_str());
            let message = fifth["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("locked until {until} after 5 failed logins")),
                "{message}"
            );
            // Right (for alice) or wrong: the same answer, byte for byte.
            let right = answer(login(&s, &o, o.ip(), request(name)).await).await;
            let wrong = answer(login(&s, &o, o.ip(), with_password(name, "bad")).await).await;
            assert_eq!(right, (429, fifth.clone()));
            assert_eq!(wrong, (429, fifth));
        }
        let (status, _) = answer(login(&s, &o, o.ip(), request("bob")).await).await;
        assert_eq!(status, 200, "bob is not locked");
        *clock.lock().unwrap() = t0 + Duration::from_secs(20 * 60) - Duration::from_secs(1);
        let (status, _) = answer(login(&s, &o, o.ip(), request("alice")).await).await;
        assert_eq!(status, 429, "still locked a second before the end");
        *clock.lock().unwrap() = t0 + Duration::from_secs(20 * 60);
        let (status, body) = answer(login(&s, &o, o.ip(), request("alice")).await).await;
        assert_eq!(status, 200, "{body}");
        let events: Vec<serde_json::Value> = std::fs::read_to_string(&s.config.audit_log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let locks: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "login_locked")
            .collect();
        assert_eq!(locks.len(), 2, "{events:?}");
        assert_eq!(locks[0]["user"], "alice");
        assert_eq!(locks[1]["user"], "zed");
        assert_eq!(locks[0]["until"], until.as_str());
        assert!(
            events
                .iter()
                .any(|e| e["reason"] == "user_locked" && e["event"] == "login_refused")
        );
    }

    /// A success clears the count: four failures, a success, four more do
    /// not lock.
    #[tokio::test]
    async fn a_successful_login_resets_the_failure_count() {
        let dir = ippin_test_support::temp_dir();
        let mut s = state(dir.path());
        let _clock = manual_clock(&mut s);
        let o = seen("127.0.0.5:4000", Provenance::Direct, true);
        for round in 0..2 {
            for _ in 0..4 {
                let (status, _) =
                    answer(login(&s, &o, o.ip(), with_password("bob", "bad")).await).await;
                assert_eq!(status, 401, "round {round}");
            }
            let (status, _) = answer(login(&s, &o, o.ip(), request("bob")).await).await;
            assert_eq!(status, 200, "round {round}");
        }
    }

    /// One address that fails `peer_max_failures` times is throttled for
    /// every name; another address is not.
    #[tokio::test]
    async fn a_failing_address_is_throttled_for_every_name() {
        let dir = ippin_test_support::temp_dir();
        let mut s = state(dir.path());
        let _clock = manual_clock(&mut s);
        let o = seen("127.0.0.5:4000", Provenance::Direct, true);
        for i in 0..30 {
            let (status, _) =
                answer(login(&s, &o, o.ip(), with_password(&format!("n{i}"), "bad")).await).await;
            assert_eq!(status, 401);
        }
        let (status, body) = answer(login(&s, &o, o.ip(), request("bob")).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("peer_throttled")),
            "{body}"
        );
        assert!(body["locked_until"].is_string());
        let other = seen("127.0.0.6:4000", Provenance::Direct, true);
        let (status, _) = answer(login(&s, &other, other.ip(), request("bob")).await).await;
        assert_eq!(status, 200);
    }

    fn verdict(user: &str, roles: &[&str], requires_pin: bool, pin: CertPin) -> Presented {
        Presented {
            user: user.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            pin_requirement: requires_pin.into(),
            pin,
            pinned_endpoint: None,
            login_ip: Some("127.0.0.7".parse().unwrap()),
            // A login ten minutes ago, its certificate valid for an hour.
            validity: Some((unix_now() - 660, unix_now() + 3000)),
        }
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A renewal keeps the login's start and ends no later than start + max_session_ttl
    /// (24 h by default); past that, or with no validity read, it is refused
    /// `login_too_old`, audited, and asks for a login.
    #[tokio::test]
    async fn one_login_lasts_max_session_ttl_through_renewals() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.7:4000", Provenance::Direct, true);
        let max = s.config.max_session_ttl.as_secs();
        assert_eq!(max, 24 * 3600);
        let ttl = s.config.cert_ttl.as_secs();
        let validity_of = |body: &serde_json::Value| {
            let pem = body["tls_certificate"].as_str().unwrap();
            let der = crate::ca::pem_to_der(pem, "CERTIFICATE").unwrap();
            let id = ippin_cert::x509::client_identity(&der).unwrap();
            let ssh = ippin_cert::ssh::parse_certificate(body["ssh_certificate"].as_str().unwrap())
                .unwrap();
            // Both end at the same second: X.509's notAfter is inclusive, OpenSSH's
            // valid_before is not.
            assert_eq!(ssh.valid_after(), id.not_before);
            assert_eq!(ssh.valid_before(), id.not_after + 1);
            (id.not_before, ssh.valid_before())
        };
        // Logged in an hour ago: the renewed certificates start where the login's did, and
        // last cert_ttl from now.
        let mut v = verdict("bob", &["dev"], false, CertPin::None);
        let start = unix_now() - 3600;
        v.validity = Some((start, start + ttl));
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(status, 200, "{body}");
        let (nb, na) = validity_of(&body);
        assert_eq!(nb, start);
        assert!(na.abs_diff(unix_now() + ttl) <= 5, "{na}");
        // Near the end of the login: the certificates end with it, not cert_ttl from now.
        let start = unix_now() - max + 600;
        v.validity = Some((start, unix_now() + 60));
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(validity_of(&body), (start, start + max));
        // Past it (and with no validity read): refused.
        for validity in [Some((unix_now() - max - 1, unix_now() + 60)), None] {
            v.validity = validity;
            let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (403, Some("login_too_old")),
                "{body}"
            );
            assert!(
                body["message"].as_str().unwrap().contains("log in again"),
                "{body}"
            );
        }
        let audit = std::fs::read_to_string(&s.config.audit_log).unwrap();
        assert!(audit.contains("\"login_too_old\""), "{audit}");
    }

    /// A certificate that expired after the handshake (the request dribbled in up to the
    /// head and body timeouts) renews nothing: `expired`, audited, "log in again".
    #[tokio::test]
    async fn a_certificate_that_expired_during_the_request_renews_nothing() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.7:4000", Provenance::Direct, true);
        let mut v = verdict("bob", &["dev"], false, CertPin::None);
        v.validity = Some((unix_now() - 3600, unix_now() - 2));
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("expired")),
            "{body}"
        );
        assert!(body["message"].as_str().unwrap().contains("log in again"));
        let audit = std::fs::read_to_string(&s.config.audit_log).unwrap();
        assert!(audit.contains("\"expired\""), "{audit}");
        // Still valid: renewed.
        v.validity = Some((unix_now() - 3600, unix_now() + 60));
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(status, 200, "{body}");
    }

    /// The admin API asks again, once a request's body is read, whether the certificate is
    /// still valid and the user still an admin: the head and body may take their timeouts,
    /// during which a certificate expires or an admin is removed.
    #[tokio::test]
    async fn the_admin_api_asks_again_for_the_certificate_and_the_roles() {
        use crate::fleet_http::admin_now;
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let roles = ippin_policy::RoleSet::new(
            ippin_policy::parse_roles(
                "r",
                "kind: role\nversion: v7\nmetadata:\n  name: ops\nspec:\n  options:\n    admin: true\n",
            )
            .unwrap(),
        )
        .unwrap();
        let admin = |roles_of_carol: &[&str]| crate::config::UserConfig {
            name: "carol".into(),
            password_hash: "$argon2id$x".into(),
            roles: roles_of_carol.iter().map(|r| (*r).to_owned()).collect(),
        };
        s.directory.set(crate::directory::Directory::new(
            roles.clone(),
            vec![admin(&["ops"])],
            1,
        ));
        let valid = Some((unix_now() - 60, unix_now() + 600));
        // Allowed: the write it allows is held to carol's user and role as read, at the
        // directory's revision.
        let guard = admin_now(&s, "carol", valid).unwrap();
        assert_eq!(guard.since, 1);
        assert_eq!(
            guard.keys,
            [
                crate::fleet::store::Key::User("carol".into()),
                crate::fleet::store::Key::Role("ops".into())
            ]
        );
        for expired in [Some((unix_now() - 600, unix_now() - 1)), None] {
            assert_eq!(admin_now(&s, "carol", expired).unwrap_err().0, "expired");
        }
        // Demoted meanwhile, or removed.
        s.directory.set(crate::directory::Directory::new(
            roles.clone(),
            vec![admin(&[])],
            2,
        ));
        assert_eq!(admin_now(&s, "carol", valid).unwrap_err().0, "not_admin");
        s.directory
            .set(crate::directory::Directory::new(roles, Vec::new(), 3));
        assert_eq!(admin_now(&s, "carol", valid).unwrap_err().0, "not_admin");
    }

    fn renew_body() -> RenewRequest {
        let r = request("x");
        RenewRequest {
            ssh_public_key: r.ssh_public_key,
            tls_public_key: r.tls_public_key,
        }
    }

    #[tokio::test]
    async fn renewal_keeps_a_pin_the_roles_no_longer_require() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.7:4000", Provenance::Direct, true);
        // bob's roles do not pin now, but his certificate is pinned: kept.
        let v = verdict(
            "bob",
            &["dev"],
            false,
            CertPin::Ip("127.0.0.7".parse().unwrap()),
        );
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["pinned_ip"], "127.0.0.7");
        let ssh =
            ippin_cert::ssh::parse_certificate(body["ssh_certificate"].as_str().unwrap()).unwrap();
        assert_eq!(
            ssh.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("127.0.0.7/32")
        );
    }

    #[tokio::test]
    async fn renewal_never_adds_or_drops_a_pin_silently() {
        let dir = ippin_test_support::temp_dir();
        let s = state(dir.path());
        let o = seen("127.0.0.7:4000", Provenance::Direct, true);
        // Roles now require a pin, the certificate has none: log in again.
        let v = verdict("alice", &["pinned-ip"], true, CertPin::None);
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("pinned_ip_missing"))
        );
        // An unreadable pin is never carried over.
        let v = verdict(
            "alice",
            &["pinned-ip"],
            true,
            CertPin::Invalid("two pins".into()),
        );
        let (status, body) = answer(renew(&s, &v, &o, renew_body())).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("invalid_pin")));
        // From an untrusted observation, a pinned certificate is not renewed.
        let u = seen("127.0.0.7:4000", Provenance::ProxyV2, false);
        let v = verdict(
            "alice",
            &["pinned-ip"],
            true,
            CertPin::Ip("127.0.0.7".parse().unwrap()),
        );
        let (status, body) = answer(renew(&s, &v, &u, renew_body())).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("untrusted_client_ip"))
        );
    }
}
