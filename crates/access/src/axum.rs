//! axum: a PROXY-aware listener and extractors of the observed address and the pin verdict
//! (feature `axum`).
//!
//! [`ObservedListener`] is an [`axum::serve::Listener`]. Each connection it accepts goes
//! through its own stages, concurrently with the others, on a task of its own: the PROXY
//! stage ([`tokio::accept`](crate::tokio::accept): at most one header, bounded in bytes by
//! the policy and in time by [`Limits::proxy_timeout`]), then, when the listener has one, a
//! TLS handshake ([`Handshake`], bounded by [`Limits::handshake_timeout`]) and the mutual-TLS
//! pin check of the client certificate ([`tls::check`](crate::tls::check), audited fail
//! closed). `accept` yields only connections that passed, with a [`Client`]: the TCP peer,
//! the observed address and the verdict. One slow client never holds up the others; at most
//! [`Limits::max_pending`] connections are in their stages at once, and a connection beyond
//! that makes the oldest one go (`stage_shed`): a flood of stalled connections is shed
//! oldest first while real clients, whose stages last milliseconds, get through. Refused connections are closed without a byte written, counted
//! ([`ObservedListener::stats`]) and reported to [`ObservedListener::on_refused`].
//!
//! Serve the router with `into_make_service_with_connect_info::<Client>()`; handlers then
//! take [`Observed`] (the observed address), [`Verified`] (an allowed pin verdict, or the
//! request is refused with the reason) or `ConnectInfo<Client>` (everything).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use axum::{Router, routing::get};
//! use ippin_access::axum::{Client, Limits, Observed, ObservedListener};
//! use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
//!
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let policy = ListenerPolicy::new(ProxyMode::On)
//!     .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
//! let listener = ObservedListener::new(tcp, policy, Limits::default());
//! let app = Router::new().route(
//!     "/",
//!     get(|Observed(seen): Observed| async move { format!("you are {}\n", seen.socket_addr()) }),
//! );
//! axum::serve(listener, app.into_make_service_with_connect_info::<Client>()).await
//! # }
//! ```
//!
//! # Mutual TLS
//!
//! [`ObservedListener::with_mtls`] adds a handshake of yours (for example a
//! `tokio_rustls::TlsAcceptor` whose configuration asks for client certificates) and the
//! users and audit sink of the pin check; this crate does not pick a TLS stack for you. The
//! verdict is made when the connection is accepted, with the address the PROXY stage
//! observed, and its event recorded then. Keep-alive and HTTP/2 carry many requests on one
//! connection, so it is made again while the connection is in use, whatever the handlers
//! take: the stream the listener yields ([`Checked`]) decides again at a read or write at
//! least [`Limits::recheck_interval`] (1 s) after the last decision, and closes a connection
//! whose certificate expired, whose user was removed or whose roles now require a pin it
//! lacks, recording the denial. [`Verified`] also makes it again for every request, and
//! answers a denial with its reason. A connection the pin check refuses (or, with mutual TLS, one without
//! a client certificate) is closed, fail closed, and reported to
//! [`ObservedListener::on_refused`] with its reason. An application that wants to answer such
//! a connection with the reason calls [`ObservedListener::serve_denied`]; it must then take
//! [`Verified`] in every handler that may only serve allowed clients.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::axum::extract::FromRequestParts;
use ::axum::extract::connect_info::{ConnectInfo, Connected};
use ::axum::http::StatusCode;
use ::axum::http::request::Parts;
use ::axum::response::{IntoResponse, Response};
use ::axum::serve::{IncomingStream, Listener};
use ::tokio::io::{AsyncRead, AsyncWrite};
use ::tokio::net::{TcpListener, TcpStream};
use ::tokio::task::JoinSet;
use ippin_policy::{ObservedAddr, Provenance};
use ippin_proxy_protocol::ListenerPolicy;
use serde::Serialize;

use crate::audit::AuditSink;
use crate::tls::{IdentityCache, TlsAccess, TlsEvent, TlsVerdict};
use crate::tokio::PrefixedStream;
use crate::users::UserDirectory;

/// The bounds of the per-connection stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most connections in their stages at once (default 1024); one more makes the one
    /// that has been there longest go (`stage_shed`), oldest first, so that stalled
    /// connections cannot lock real clients out.
    pub max_pending: usize,
    /// The time the PROXY header may take (default 5 s).
    pub proxy_timeout: Duration,
    /// The time the TLS handshake may take (default 10 s).
    pub handshake_timeout: Duration,
    /// How often an allowed mutual-TLS connection's pin check is made again while it is in
    /// use (default 1 s, at most [`MAX_RECHECK_INTERVAL`]): at a read or a write at least this
    /// long after the last check, the connection's certificate is decided again with the clock
    /// and the users of the moment, and a connection that no longer passes (expired, user
    /// removed, a pin now required…) is closed, its denial recorded. This holds whatever the
    /// handlers take (except on a listener that [serves denied
    /// connections](ObservedListener::serve_denied), whose handlers answer through
    /// [`Verified`]); [`Verified`] decides again for every request on top of it.
    pub recheck_interval: Duration,
    /// The most connections one client holds at once, in their stages or served (default
    /// [`DEFAULT_MAX_PER_CLIENT`]), counted under [`crate::lockout::throttle_key`]: the
    /// trusted observed client (behind a balancer, the client it names), else the TCP peer.
    /// One more is closed at once (`too_many_connections`). Once served, a connection is
    /// hyper's and axum's, which set no timeout of their own ([`Limits::idle_timeout`] ends
    /// a silent one, not one that trickles a byte at a time): this keeps one client (a stolen certificate's holder, or anyone on a listener without mutual
    /// TLS) from holding every descriptor of the process. The connections of a peer in the
    /// policy's `trusted_proxies` that send no PROXY header are not counted: behind an L7
    /// proxy (nginx, say, in front of an axum service), list it there, or every client behind
    /// it would share its 64 places.
    pub max_per_client: usize,
    /// How long a served connection may stay silent (default [`DEFAULT_IDLE_TIMEOUT`]; `None`:
    /// forever): once no byte has been read or written for this long while the server
    /// waits on the client (a request head that stopped half-way, an idle keep-alive, a
    /// client that stopped reading its response), reads and writes fail with
    /// [`io::ErrorKind::TimedOut`] and hyper closes the connection. Checked at the timer's
    /// tick: a silent connection goes between one and two timeouts after its last byte.
    /// axum's `serve` gives hyper no timer, so hyper's own header timeout never runs; this
    /// is the bound on a slow or idle connection. A handler that computes for longer than
    /// this while its client waits in silence (a long poll) needs a longer timeout or
    /// `None`. Each byte moved restarts the count, so a client that trickles a byte per
    /// period keeps its connection: [`Limits::max_per_client`] bounds how many it keeps.
    pub idle_timeout: Option<Duration>,
}

/// The default [`Limits::idle_timeout`]: two minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The default [`Limits::max_per_client`].
pub const DEFAULT_MAX_PER_CLIENT: usize = 64;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pending: 1024,
            proxy_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(1),
            max_per_client: DEFAULT_MAX_PER_CLIENT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

impl Limits {
    /// These limits with `max_pending` connections in their stages at most (at least 1).
    pub fn with_max_pending(mut self, max_pending: usize) -> Limits {
        self.max_pending = max_pending.max(1);
        self
    }

    /// These limits with at most `max` connections per client (at least 1).
    pub fn with_max_per_client(mut self, max: usize) -> Limits {
        self.max_per_client = max.max(1);
        self
    }

    /// These limits with this idle timeout for served connections (`None`: none; at least
    /// 1 ms, at most a day).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.idle_timeout = timeout.map(clamp_idle);
        self
    }

    /// These limits with this PROXY header timeout.
    pub fn with_proxy_timeout(mut self, timeout: Duration) -> Limits {
        self.proxy_timeout = timeout;
        self
    }

    /// These limits with this TLS handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Limits {
        self.handshake_timeout = timeout;
        self
    }

    /// These limits with this interval between an open connection's pin checks (at most
    /// [`MAX_RECHECK_INTERVAL`]; zero checks at every read and write).
    pub fn with_recheck_interval(mut self, interval: Duration) -> Limits {
        self.recheck_interval = interval.min(MAX_RECHECK_INTERVAL);
        self
    }
}

/// An idle timeout the clock and the timer can hold.
fn clamp_idle(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_millis(1), Duration::from_secs(86_400))
}

/// The longest interval between an open connection's pin checks ([`Limits::recheck_interval`]
/// is cut to it).
pub const MAX_RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// A connection the listener yields: the handshake's stream, whose reads and writes fail once
/// the connection's certificate no longer passes the pin check (see
/// [`Limits::recheck_interval`]); without mutual TLS, or for a connection served denied, the
/// stream as it is.
pub struct Checked<Io> {
    io: Io,
    /// The allowed connection's certificate, its observed address, and when to decide again.
    recheck: Option<(Recheck, ObservedAddr)>,
    interval: Duration,
    next: std::time::Instant,
    ended: bool,
    /// The idle bound: its length, the timer (made at the first wait), whether a byte moved
    /// since the timer was set, and whether it ran out.
    idle: Option<Duration>,
    idle_timer: Option<std::pin::Pin<Box<::tokio::time::Sleep>>>,
    moved: bool,
    timed_out: bool,
    /// The client's place among its connections, given back when the connection closes.
    _place: Option<crate::lockout::PeerPlace>,
}

impl<Io> std::fmt::Debug for Checked<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("rechecked", &self.recheck.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<Io> Checked<Io> {
    /// The stream inside.
    pub fn get_ref(&self) -> &Io {
        &self.io
    }

    /// Whether the connection may go on: decides again when due; a denial is recorded once.
    fn still_allowed(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let Some((r, observed)) = &self.recheck else {
            return true;
        };
        let now = std::time::Instant::now();
        if now < self.next {
            return true;
        }
        self.next = now + self.interval;
        let identity = r.pin.cache.get_or_decode(&r.der);
        let verdict = crate::tls::decide(
            identity.as_deref(),
            &r.der,
            r.pin.users.as_ref(),
            observed,
            unix_now(),
        );
        if !verdict.access.is_allowed() {
            // Ended whether or not the line can be written: this ends access.
            let _ = crate::tls::audit(verdict, observed, r.pin.audit.as_ref());
            self.ended = true;
        }
        !self.ended
    }
}

impl<Io> Checked<Io> {
    /// Whether the connection has been silent for its idle timeout, called when the stream
    /// inside is not ready; registers the timer's wake-up otherwise.
    fn idle_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let Some(limit) = self.idle else {
            return false;
        };
        if self.timed_out {
            return true;
        }
        let timer = self
            .idle_timer
            .get_or_insert_with(|| Box::pin(::tokio::time::sleep(limit)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if !std::mem::take(&mut self.moved) {
                self.timed_out = true;
                return true;
            }
            // Bytes moved since the timer was set: count again from now.
            timer.as_mut().reset(::tokio::time::Instant::now() + limit);
        }
    }
}

fn idle_too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the connection was silent for longer than its idle timeout",
    )
}

impl<Io> Checked<Io> {
    /// A write's result, with the idle bound applied: bytes written restart the count, a
    /// write that waits past the timeout fails.
    fn written(
        &mut self,
        polled: std::task::Poll<io::Result<usize>>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<usize>> {
        match polled {
            std::task::Poll::Pending if self.idle_expired(cx) => {
                std::task::Poll::Ready(Err(idle_too_long()))
            }
            std::task::Poll::Ready(Ok(n)) if n > 0 => {
                self.moved = true;
                std::task::Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

fn no_longer_allowed() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the connection's certificate no longer passes the pin check",
    )
}

impl<Io: AsyncRead + Unpin> AsyncRead for Checked<Io> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ::tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.still_allowed() {
            return std::task::Poll::Ready(Err(no_longer_allowed()));
        }
        if this.timed_out {
            return std::task::Poll::Ready(Err(idle_too_long()));
        }
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            std::task::Poll::Pending if this.idle_expired(cx) => {
                std::task::Poll::Ready(Err(idle_too_long()))
            }
            std::task::Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.moved = true;
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Checked<Io> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.still_allowed() {
            return std::task::Poll::Ready(Err(no_longer_allowed()));
        }
        if this.timed_out {
            return std::task::Poll::Ready(Err(idle_too_long()));
        }
        let polled = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.written(polled, cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.still_allowed() {
            return std::task::Poll::Ready(Err(no_longer_allowed()));
        }
        if this.timed_out {
            return std::task::Poll::Ready(Err(idle_too_long()));
        }
        let polled = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.written(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.io).poll_flush(cx) {
            std::task::Poll::Pending if this.idle_expired(cx) => {
                std::task::Poll::Ready(Err(idle_too_long()))
            }
            other => other,
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        // A TLS stream writes its `close_notify` here: a client that reads nothing holds it.
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.io).poll_shutdown(cx) {
            std::task::Poll::Pending if this.idle_expired(cx) => {
                std::task::Poll::Ready(Err(idle_too_long()))
            }
            other => other,
        }
    }
}

/// The stage after the PROXY header: a TLS handshake, say.
pub trait Handshake: Send + Sync + 'static {
    /// The stream the application reads and writes.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs the handshake on `stream` (the connection after its PROXY header) and returns the
    /// stream with the client certificate (DER) the handshake verified, if any.
    ///
    /// The certificate must be one your TLS stack verified (chain, signature, validity) for
    /// this connection: the pin check trusts it.
    fn handshake(
        &self,
        stream: PrefixedStream<TcpStream>,
    ) -> impl Future<Output = io::Result<(Self::Io, Option<Vec<u8>>)>> + Send;
}

/// No handshake: the application gets the stream after the PROXY header, and there is no
/// client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = PrefixedStream<TcpStream>;

    async fn handshake(
        &self,
        stream: PrefixedStream<TcpStream>,
    ) -> io::Result<(Self::Io, Option<Vec<u8>>)> {
        Ok((stream, None))
    }
}

/// What the listener learned about a connection: the address of axum's `ConnectInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Client {
    /// The TCP peer (a load balancer, behind one).
    pub peer: SocketAddr,
    /// The observed client address.
    pub observed: ObservedAddr,
    /// The pin verdict of the client certificate **when the connection was accepted**;
    /// `None` without mutual TLS or without a certificate. Do not make access decisions from
    /// it: [`Verified`] decides again on every request; read the verdict through it.
    pub verdict: Option<TlsVerdict>,
    /// An allowed connection's certificate and the listener's users and audit sink, for
    /// [`Verified`] to decide again.
    recheck: Option<Recheck>,
}

impl<'a, H: Handshake> Connected<IncomingStream<'a, ObservedListener<H>>> for Client {
    fn connect_info(stream: IncomingStream<'a, ObservedListener<H>>) -> Client {
        stream.remote_addr().clone()
    }
}

/// A connection closed in its stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Refusal {
    /// Always `connection.refused`.
    pub event: &'static str,
    /// The TCP peer (for `stage_failed`, the listener's own address: a task that failed
    /// no longer tells whose connection it had).
    pub peer: SocketAddr,
    /// The stable reason code: the PROXY stage's, `handshake_failed`, `handshake_timeout`,
    /// `stage_shed`, `stage_full`, `stage_failed`, or the pin check's (`pinned_ip_mismatch`,
    /// `no_client_certificate`, `audit_unavailable`, …) unless the listener serves denied
    /// connections.
    pub reason: &'static str,
    /// A readable explanation.
    pub message: String,
    /// Whether the pin check refused it (rather than a stage).
    #[serde(skip)]
    pub pin_check: bool,
}

impl Refusal {
    fn new(peer: SocketAddr, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            event: "connection.refused",
            pin_check: false,
            peer,
            reason,
            message: message.into(),
        }
    }
}

/// Counts of what the listener did, since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted from the socket.
    pub accepted: u64,
    /// Connections that passed their stages and were handed to axum.
    pub served: u64,
    /// Connections refused at the PROXY stage.
    pub proxy_refused: u64,
    /// Connections whose handshake failed or timed out.
    pub handshake_failed: u64,
    /// Connections told to go to make room for a newer one (oldest first), because
    /// [`Limits::max_pending`] were in their stages.
    pub shed: u64,
    /// Connections closed at once because twice [`Limits::max_pending`] stage tasks were
    /// still running (shed tasks that had not ended yet).
    pub stage_full: u64,
    /// Connections the pin check refused (closed unless the listener serves them).
    pub denied: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    served: AtomicU64,
    proxy_refused: AtomicU64,
    handshake_failed: AtomicU64,
    shed: AtomicU64,
    stage_full: AtomicU64,
    denied: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The pin check of a listener with mutual TLS.
struct PinCheck {
    cache: IdentityCache,
    users: Arc<dyn UserDirectory>,
    audit: Arc<dyn AuditSink<TlsEvent>>,
}

/// What [`Verified`] needs to decide again on every request of a connection: its client
/// certificate and the listener's users and audit sink.
#[derive(Clone)]
struct Recheck {
    der: Arc<[u8]>,
    pin: Arc<PinCheck>,
}

impl std::fmt::Debug for Recheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recheck")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Recheck {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der && Arc::ptr_eq(&self.pin, &other.pin)
    }
}

impl Eq for Recheck {}

struct Shared<H> {
    policy: ListenerPolicy,
    limits: Limits,
    handshake: H,
    pin: Option<Arc<PinCheck>>,
    /// Whether connections the pin check refused are served (for handlers that answer with
    /// the reason); by default they are closed.
    serve_denied: bool,
    /// Each client's connections ([`Limits::max_per_client`]).
    places: crate::lockout::PeerPlaces,
}

type OnRefused = Box<dyn Fn(&Refusal) + Send + Sync>;

/// What a connection's stages end with: the connection to serve, or why it was closed.
type Staged<H> = Result<(Checked<<H as Handshake>::Io>, Client), Refusal>;

/// A PROXY-aware [`Listener`] for `axum::serve`; see the module docs.
pub struct ObservedListener<H: Handshake = Plain> {
    tcp: TcpListener,
    shared: Arc<Shared<H>>,
    /// Oldest-first room in the stages: a newcomer never waits, the connection that has been
    /// in its stages longest is told to go (`stage_shed`).
    shedder: Arc<crate::shed::Shedder>,
    pending: JoinSet<Staged<H>>,
    counters: Arc<Counters>,
    on_refused: Option<OnRefused>,
}

impl<H: Handshake> std::fmt::Debug for ObservedListener<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedListener")
            .field("tcp", &self.tcp)
            .field("policy", &self.shared.policy)
            .field("limits", &self.shared.limits)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ObservedListener<Plain> {
    /// A listener on `tcp` that reads PROXY headers as `policy` says, without TLS.
    pub fn new(tcp: TcpListener, policy: ListenerPolicy, limits: Limits) -> ObservedListener {
        ObservedListener {
            tcp,
            shared: Arc::new(Shared {
                policy,
                limits,
                handshake: Plain,
                pin: None,
                serve_denied: false,
                places: crate::lockout::PeerPlaces::new(limits.max_per_client),
            }),
            shedder: Arc::new(crate::shed::Shedder::new(limits.max_pending)),
            pending: JoinSet::new(),
            counters: Arc::default(),
            on_refused: None,
        }
    }

    /// This listener with mutual TLS: `handshake` after the PROXY header, then the pin check
    /// of the client certificate with `users` now, its event recorded to `audit` (fail
    /// closed: a verdict that cannot be recorded is `audit_unavailable`).
    pub fn with_mtls<H: Handshake>(
        self,
        handshake: H,
        users: Arc<dyn UserDirectory>,
        audit: Arc<dyn AuditSink<TlsEvent>>,
    ) -> ObservedListener<H> {
        let Shared {
            policy,
            limits,
            places,
            ..
        } = match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared,
            Err(shared) => Shared {
                policy: shared.policy.clone(),
                limits: shared.limits,
                handshake: Plain,
                pin: None,
                serve_denied: false,
                places: shared.places.clone(),
            },
        };
        ObservedListener {
            tcp: self.tcp,
            shared: Arc::new(Shared {
                policy,
                limits,
                handshake,
                pin: Some(Arc::new(PinCheck {
                    cache: IdentityCache::default(),
                    users,
                    audit,
                })),
                serve_denied: false,
                places,
            }),
            shedder: self.shedder,
            pending: JoinSet::new(),
            counters: self.counters,
            on_refused: self.on_refused,
        }
    }
}

impl<H: Handshake> ObservedListener<H> {
    /// Serves the connections the pin check refused (and, with mutual TLS, those without a
    /// client certificate) instead of closing them, so that a handler can answer with the
    /// reason. Every handler, the fallback included, must then take [`Verified`] unless it
    /// may serve anyone. Call it before serving; it has no effect on a listener without
    /// mutual TLS.
    pub fn serve_denied(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared)
            && shared.pin.is_some()
        {
            shared.serve_denied = true;
        }
        self
    }

    /// Calls `f` with every refused connection (on the accept loop: keep it short).
    pub fn on_refused(mut self, f: impl Fn(&Refusal) + Send + Sync + 'static) -> Self {
        self.on_refused = Some(Box::new(f));
        self
    }

    /// A handle on the listener's counts, readable while axum owns the listener.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.counters.clone())
    }

    fn refused(&self, refusal: &Refusal) {
        if let Some(f) = &self.on_refused {
            f(refusal);
        }
    }

    /// What a finished stage task gives: a connection to serve, or nothing.
    fn finished(
        &mut self,
        done: Result<Staged<H>, ::tokio::task::JoinError>,
    ) -> Option<(Checked<H::Io>, Client)> {
        match done {
            Ok(Ok(conn)) => {
                bump(&self.counters.served);
                return Some(conn);
            }
            Ok(Err(refusal)) => {
                match refusal.reason {
                    "handshake_failed" | "handshake_timeout" => {
                        bump(&self.counters.handshake_failed);
                    }
                    "stage_shed" => bump(&self.counters.shed),
                    _ if refusal.pin_check => bump(&self.counters.denied),
                    _ => bump(&self.counters.proxy_refused),
                }
                self.refused(&refusal);
            }
            Err(e) => {
                // A stage that panicked (a handshake of the user's): the connection is gone.
                bump(&self.counters.handshake_failed);
                let peer = self.tcp.local_addr().unwrap_or(([0, 0, 0, 0], 0).into());
                self.refused(&Refusal::new(
                    peer,
                    "stage_failed",
                    format!("a connection's stage failed: {e}"),
                ));
            }
        }
        None
    }
}

/// The counts of an [`ObservedListener`], shared with it.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Counters>);

impl StatsHandle {
    /// The counts now.
    pub fn get(&self) -> Stats {
        let c = &self.0;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            served: c.served.load(Ordering::Relaxed),
            proxy_refused: c.proxy_refused.load(Ordering::Relaxed),
            handshake_failed: c.handshake_failed.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            stage_full: c.stage_full.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
        }
    }
}

/// The stages of one connection, on its own task.
async fn stages<H: Handshake>(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<H>>,
) -> Staged<H> {
    let (observed, stream) =
        crate::tokio::accept(tcp, peer, &shared.policy, shared.limits.proxy_timeout)
            .await
            .map_err(|r| Refusal::new(peer, r.code, r.message))?;
    // A listed proxy's own connections (no PROXY header: an L7 proxy that pools its
    // connections to this service, or its health checks) are many clients': not counted as
    // one.
    let proxy_itself = observed.provenance() == Provenance::Direct
        && shared.policy.trusted_proxies.as_ref().is_some_and(|nets| {
            let ip = peer.ip().to_canonical();
            nets.iter()
                .any(|n| ippin_policy::canonical_net(*n).contains(&ip))
        });
    let place = if proxy_itself {
        None
    } else {
        let key = crate::lockout::throttle_key(&observed, peer);
        let Some(place) = shared.places.take(key) else {
            return Err(Refusal::new(
                peer,
                "too_many_connections",
                format!(
                    "{key} holds {} connections already",
                    shared.limits.max_per_client
                ),
            ));
        };
        Some(place)
    };
    let handshake = shared.handshake.handshake(stream);
    let (io, der) = match ::tokio::time::timeout(shared.limits.handshake_timeout, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return Err(Refusal::new(
                peer,
                "handshake_failed",
                format!("the handshake failed: {e}"),
            ));
        }
        Err(_) => {
            return Err(Refusal::new(
                peer,
                "handshake_timeout",
                format!(
                    "the handshake took longer than {:?}",
                    shared.limits.handshake_timeout
                ),
            ));
        }
    };
    let mut recheck = None;
    let verdict = match (&shared.pin, der) {
        (Some(pin), Some(der)) => {
            let verdict = crate::tls::check(
                &pin.cache,
                &der,
                pin.users.as_ref(),
                &observed,
                unix_now(),
                pin.audit.as_ref(),
            );
            if verdict.access.is_allowed() {
                recheck = Some(Recheck {
                    der: der.into(),
                    pin: pin.clone(),
                });
            }
            Some(verdict)
        }
        (Some(pin), None) if !shared.serve_denied => Some(crate::tls::audit(
            crate::tls::without_certificate(),
            &observed,
            pin.audit.as_ref(),
        )),
        _ => None,
    };
    // Refused connections are closed unless the application asked to answer them.
    if let (Some(_), Some(v)) = (&shared.pin, &verdict)
        && !shared.serve_denied
        && !v.access.is_allowed()
    {
        let message = match &v.access {
            TlsAccess::Deny { message, .. } => message.clone(),
            _ => "the verdict could not be recorded".to_owned(),
        };
        let mut refusal = Refusal::new(peer, v.access.code(), message);
        refusal.pin_check = true;
        return Err(refusal);
    }
    // (The field is public: clamped here too, so that no interval overflows the clock.)
    let interval = shared.limits.recheck_interval.min(MAX_RECHECK_INTERVAL);
    let io = Checked {
        io,
        // A listener that serves denied connections leaves the answer to `Verified`, which
        // gives the reason; its handlers must take it (see `serve_denied`).
        recheck: recheck
            .clone()
            .filter(|_| !shared.serve_denied)
            .map(|r| (r, observed)),
        interval,
        next: std::time::Instant::now() + interval,
        ended: false,
        idle: shared.limits.idle_timeout.map(clamp_idle),
        idle_timer: None,
        moved: false,
        timed_out: false,
        _place: place,
    };
    Ok((
        io,
        Client {
            peer,
            observed,
            verdict,
            recheck,
        },
    ))
}

fn unix_now() -> u64 {
    std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl<H: Handshake> Listener for ObservedListener<H> {
    type Io = Checked<H::Io>;
    type Addr = Client;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            ::tokio::select! {
                // Finished stages first: a connection ready to serve is not kept waiting.
                biased;
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Some(conn) = self.finished(done) {
                        return conn;
                    }
                }
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        bump(&self.counters.accepted);
                        // The shedder keeps `max_pending` live: a newcomer makes the oldest
                        // go, so stalled connections cannot lock real clients out. Shed
                        // tasks end at once; the hard bound below only holds if they lag.
                        if self.pending.len() >= self.shared.limits.max_pending.saturating_mul(2) {
                            bump(&self.counters.stage_full);
                            drop(tcp);
                            self.refused(&Refusal::new(
                                peer,
                                "stage_full",
                                format!(
                                    "{} connections are in their stages already",
                                    self.pending.len()
                                ),
                            ));
                        } else {
                            let mut ticket = self.shedder.enter();
                            let shared = self.shared.clone();
                            self.pending.spawn(async move {
                                ::tokio::select! {
                                    done = stages(tcp, peer, shared) => done,
                                    () = ticket.evicted() => Err(Refusal::new(
                                        peer,
                                        "stage_shed",
                                        "a newer connection took its place in the stages (oldest first)",
                                    )),
                                }
                            });
                        }
                    }
                    // A connection that went away before it was accepted.
                    Err(e) if is_connection_error(&e) => {}
                    // Out of file descriptors, say: wait a moment (as axum's own listener
                    // does), still finishing stages meanwhile.
                    Err(_) => {
                        let pause = ::tokio::time::sleep(Duration::from_secs(1));
                        ::tokio::pin!(pause);
                        loop {
                            ::tokio::select! {
                                biased;
                                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                                    if let Some(conn) = self.finished(done) {
                                        return conn;
                                    }
                                }
                                () = &mut pause => break,
                            }
                        }
                    }
                },
            }
        }
    }

    /// The local address, as a [`Client`] whose peer and observed address are both the
    /// local address (untrusted, no verdict): axum's `Listener` gives the two the same type.
    fn local_addr(&self) -> io::Result<Client> {
        let local = self.tcp.local_addr()?;
        Ok(Client {
            peer: local,
            observed: ObservedAddr::new(local, Provenance::Direct, false),
            verdict: None,
            recheck: None,
        })
    }
}

/// The observed client address of the request's connection.
///
/// The address is what the PROXY stage observed, trusted or not: check
/// [`ObservedAddr::is_trusted`] before you rely on it (an untrusted one has port 0), or take
/// [`Verified`], whose pin check requires a trusted address.
///
/// Needs the router served with `into_make_service_with_connect_info::<Client>()` over an
/// [`ObservedListener`]; without it the request is refused with 500 (`no_observed_address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed(pub ObservedAddr);

impl<S: Send + Sync> FromRequestParts<S> for Observed {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        client(parts).map(|c| Observed(c.observed))
    }
}

/// The client a request names through an L7 proxy in front of this service: its
/// `X-Forwarded-For` and `Forwarded` header lines, **every line of each, in order** (a proxy
/// that appends adds its own line after the client's, as HAProxy's `option forwardfor` does:
/// `headers.get("x-forwarded-for")` would read the client's forged line as the proxy's), read
/// by [`crate::observed::from_forwarded`] for the request's connection `conn` under `mode`.
///
/// The connection must be the proxy's: the answer is `conn` itself when it is not trusted,
/// when it came from a PROXY header (a client's headers are its own claims), when the mode
/// does not take its peer for a proxy, and when the proxy named no header. Note that
/// [`Observed`] alone is the proxy's address behind an L7 proxy: a pin issued from it would
/// pin every user to the proxy.
///
/// ```
/// use ippin_access::axum::forwarded_client;
/// use ippin_policy::{ForwardedMode, ObservedAddr};
/// let proxy = ObservedAddr::socket_peer("10.0.0.5:4000".parse().unwrap());
/// let mode = ForwardedMode::trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
/// let mut headers = axum::http::HeaderMap::new();
/// headers.append("x-forwarded-for", "198.51.100.7".parse().unwrap()); // the client's own
/// headers.append("x-forwarded-for", "203.0.113.9".parse().unwrap()); // the proxy's
/// let client = forwarded_client(&proxy, &headers, &mode).unwrap();
/// assert_eq!(client.ip().to_string(), "203.0.113.9");
/// // A peer that is not a proxy is the client: its headers are not read, whatever bytes.
/// let direct = ObservedAddr::socket_peer("192.0.2.8:4000".parse().unwrap());
/// let mut junk = axum::http::HeaderMap::new();
/// junk.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xff").unwrap());
/// assert_eq!(forwarded_client(&direct, &junk, &mode).unwrap(), direct);
/// ```
///
/// Behind an L7 proxy, also list it in the [`ObservedListener`]'s policy `trusted_proxies`:
/// the per-client connection limit ([`Limits::max_per_client`]) then does not count its
/// pooled connections as one client's.
///
/// # Errors
/// [`crate::observed::ForwardedError`] for a header the client must fix (answer 400): a value
/// that is not visible ASCII, both kinds at once from a proxy, or a chain the policy refuses.
pub fn forwarded_client(
    conn: &ObservedAddr,
    headers: &::axum::http::HeaderMap,
    mode: &ippin_policy::ForwardedMode,
) -> Result<ObservedAddr, crate::observed::ForwardedError> {
    let values = |name: &'static str| headers.get_all(name).iter().map(|v| v.as_bytes());
    crate::observed::from_forwarded_values(
        conn,
        values("x-forwarded-for"),
        values("forwarded"),
        mode,
    )
}

/// An allowed pin verdict for the request: the handler runs only for a client whose
/// certificate passed the mutual-TLS check when the connection was accepted **and passes it
/// again now**. Otherwise the request is refused: 401 `no_client_certificate` without a
/// certificate, 403 with the verdict's reason code and message for a denial
/// (`pinned_ip_mismatch`, `expired`, `unknown_user`, …), 503 `audit_unavailable` when the
/// verdict could not be recorded.
///
/// HTTP/1.1 keep-alive and HTTP/2 serve many requests on one connection, for as long as the
/// client keeps it open. So the decision is made again for every request that takes
/// `Verified`, with the clock and the user directory of the moment (the certificate decoded
/// once, from the listener's identity cache): a certificate that expired, a user removed or
/// left without roles, a role that now requires a pin the certificate lacks, each refuses the
/// next request on a connection that was allowed. A denial found then is recorded to the
/// audit sink (fail closed: 503 when it cannot be); an allow is not recorded again (the
/// connection's allow was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The observed client address.
    pub observed: ObservedAddr,
    /// The verdict (its access is [`TlsAccess::Allow`]).
    pub verdict: TlsVerdict,
}

impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let c = client(parts)?;
        let Some(verdict) = c.verdict else {
            return Err(Rejection::new(
                StatusCode::UNAUTHORIZED,
                "no_client_certificate",
                "this service needs a client certificate",
            ));
        };
        let verdict = match (&verdict.access, &c.recheck) {
            (TlsAccess::Allow, Some(r)) => {
                let identity = r.pin.cache.get_or_decode(&r.der);
                let now = crate::tls::decide(
                    identity.as_deref(),
                    &r.der,
                    r.pin.users.as_ref(),
                    &c.observed,
                    unix_now(),
                );
                if now.access.is_allowed() {
                    now
                } else {
                    crate::tls::audit(now, &c.observed, r.pin.audit.as_ref())
                }
            }
            _ => verdict,
        };
        match &verdict.access {
            TlsAccess::Allow => Ok(Verified {
                observed: c.observed,
                verdict,
            }),
            TlsAccess::Deny { reason, message } => Err(Rejection::new(
                StatusCode::FORBIDDEN,
                reason.code(),
                message.clone(),
            )),
            TlsAccess::AuditUnavailable => Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so nobody is let in; tell the operator",
            )),
        }
    }
}

fn client(parts: &Parts) -> Result<Client, Rejection> {
    parts
        .extensions
        .get::<ConnectInfo<Client>>()
        .map(|c| c.0.clone())
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_observed_address",
                "the service is not served through an ObservedListener with ConnectInfo<Client>",
            )
        })
}

/// A refused request: the status, and a body `refused (CODE): MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable reason code.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (
            self.status,
            format!("refused ({}): {}\n", self.code, self.message),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ::tokio::time::timeout;
    use ippin_cert::getrandom::SysRng;
    use ippin_cert::rand_core::UnwrapErr;
    use ippin_cert::x509::{ClientCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem};
    use ippin_policy::DenyReason;

    use super::*;
    use crate::tls::TlsDenyReason;

    const LONG: Duration = Duration::from_secs(60);

    fn policy() -> ListenerPolicy {
        ListenerPolicy::new(ippin_proxy_protocol::ProxyMode::On)
            .with_trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()])
    }

    async fn listener(limits: Limits) -> (ObservedListener, SocketAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        (ObservedListener::new(tcp, policy(), limits), addr)
    }

    /// A connection with a PROXY v1 header for `client`, then `then` (at least a byte: the
    /// stage waits for what follows the header, to refuse a second one).
    async fn proxied(addr: SocketAddr, client: &str, then: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 443\r\n");
        s.write_all(header.as_bytes()).await.unwrap();
        s.write_all(then).await.unwrap();
        s
    }

    /// Whether the listener closed `s` (end of stream or reset), within a bound.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(timeout(LONG, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
    }

    #[::tokio::test]
    async fn a_stalled_client_does_not_hold_up_the_next() {
        let (mut l, addr) = listener(Limits::default().with_proxy_timeout(LONG)).await;
        let _stalled = TcpStream::connect(addr).await.unwrap();
        let _good = proxied(addr, "192.0.2.7", b"hello").await;
        // Inline, the stalled client's header read would hold accept for a minute.
        let (mut io, client) = timeout(Duration::from_secs(10), l.accept())
            .await
            .expect("the second client is served while the first stalls");
        assert_eq!(client.observed.socket_addr().to_string(), "192.0.2.7:40000");
        assert_eq!(client.observed.provenance(), Provenance::ProxyV1);
        assert!(client.observed.is_trusted());
        assert_eq!(client.verdict, None);
        let mut b = [0u8; 5];
        io.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello", "bytes after the header reach the application");
        let stats = l.stats().get();
        assert_eq!((stats.accepted, stats.served), (2, 1));
    }

    /// One client holds at most `max_per_client` connections, served ones included (hyper
    /// sets no timeout on them): one more is closed at once; another client is served; a
    /// place is given back when its connection closes.
    #[::tokio::test]
    async fn one_client_holds_at_most_its_share_of_connections() {
        let (l, addr) = listener(Limits::default().with_max_per_client(2)).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let mut l = l.on_refused(move |r| keep.lock().unwrap().push(r.reason));
        let _a = proxied(addr, "192.0.2.7", b"x").await;
        let (first, _) = timeout(LONG, l.accept()).await.unwrap();
        let _b = proxied(addr, "192.0.2.7", b"x").await;
        let (_second, _) = timeout(LONG, l.accept()).await.unwrap();
        let mut third = proxied(addr, "192.0.2.7", b"x").await;
        let _other = proxied(addr, "192.0.2.8", b"x").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert_eq!(client.observed.ip().to_string(), "192.0.2.8");
        assert!(
            closed(&mut third).await,
            "the third of one client is closed"
        );
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            &["too_many_connections".to_owned()]
        );
        // The first closes: its place is free again.
        drop(first);
        let _again = proxied(addr, "192.0.2.7", b"x").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert_eq!(client.observed.ip().to_string(), "192.0.2.7");

        // Without PROXY headers, a peer in `trusted_proxies` (an L7 proxy pooling its
        // connections) is many clients: not counted; another peer is.
        for (proxies, served) in [(Some("127.0.0.0/8"), 4), (None, 2)] {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            let mut policy = ListenerPolicy::new(ippin_proxy_protocol::ProxyMode::Off);
            policy.trusted_proxies = proxies.map(|p| vec![p.parse().unwrap()]);
            let refused = Arc::new(Mutex::new(Vec::new()));
            let keep = refused.clone();
            let mut l =
                ObservedListener::new(tcp, policy, Limits::default().with_max_per_client(2))
                    .on_refused(move |r| keep.lock().unwrap().push(r.reason));
            let mut streams = Vec::new();
            for _ in 0..4 {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET").await.unwrap();
                streams.push(s);
            }
            let mut kept = Vec::new();
            for _ in 0..served {
                kept.push(timeout(LONG, l.accept()).await.expect("served"));
            }
            // The others are refused (the accept loop reports them), none served.
            let deadline = ::tokio::time::Instant::now() + LONG;
            while refused.lock().unwrap().len() < 4 - served {
                assert!(::tokio::time::Instant::now() < deadline, "{proxies:?}");
                if let Ok(extra) = timeout(Duration::from_millis(50), l.accept()).await {
                    panic!("{proxies:?}: one more served: {:?}", extra.1.observed);
                }
            }
            assert!(
                refused
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|r| *r == "too_many_connections")
            );
            drop(kept);
        }
    }

    #[::tokio::test]
    async fn refusals_are_closed_counted_and_reported() {
        let (l, addr) = listener(Limits::default()).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let mut l = l.on_refused(move |r| keep.lock().unwrap().push(r.reason));
        let mut bare = TcpStream::connect(addr).await.unwrap();
        bare.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _good = proxied(addr, "192.0.2.7", b"GET").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert_eq!(client.observed.ip().to_string(), "192.0.2.7");
        assert!(closed(&mut bare).await);
        assert_eq!(l.stats().get().proxy_refused, 1);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].is_empty());
    }

    #[::tokio::test]
    async fn beyond_the_bound_the_oldest_connection_goes() {
        let limits = Limits::default()
            .with_max_pending(1)
            .with_proxy_timeout(LONG);
        let (mut l, addr) = listener(limits).await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        // Let the first one enter its stages before the second arrives.
        assert!(
            timeout(Duration::from_millis(200), l.accept())
                .await
                .is_err()
        );
        let _newer = TcpStream::connect(addr).await.unwrap();
        // Drive the accept loop a while: nothing is served.
        assert!(
            timeout(Duration::from_millis(500), l.accept())
                .await
                .is_err()
        );
        assert!(closed(&mut stalled).await, "the oldest is shed");
        let stats = l.stats().get();
        assert_eq!((stats.accepted, stats.shed, stats.served), (2, 1, 0));
        // A real client behind the stalled ones still gets through.
        let _real = proxied(addr, "192.0.2.7", b"GET").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert_eq!(client.observed.ip().to_string(), "192.0.2.7");
    }

    /// A handshake that "verified" this certificate.
    struct Fixed(Vec<u8>);

    impl Handshake for Fixed {
        type Io = PrefixedStream<TcpStream>;

        async fn handshake(
            &self,
            stream: PrefixedStream<TcpStream>,
        ) -> io::Result<(Self::Io, Option<Vec<u8>>)> {
            Ok((stream, Some(self.0.clone())))
        }
    }

    fn alice_pinned_to(ip: &str) -> Vec<u8> {
        let mut rng = UnwrapErr(SysRng);
        let ca = X509Ca::generate_p256("test CA", 1, 4_000_000_000, &mut rng).unwrap();
        let (_, spki) = generate_key_pair_p256(&mut rng).unwrap();
        let req = ClientCertRequest::builder("alice", spki_der_from_pem(&spki).unwrap())
            .validity(1, 4_000_000_000)
            .serial(1)
            .role("ops")
            .pinned_ip(ip.parse().unwrap())
            .build()
            .unwrap();
        ca.issue_client(&req, &mut rng).unwrap()
    }

    async fn mtls_verdicts(record: bool, from: &[&str]) -> (Vec<TlsVerdict>, Vec<TlsEvent>) {
        let (l, addr) = listener(Limits::default()).await;
        let users: HashMap<String, crate::User> = HashMap::from([(
            "alice".to_owned(),
            crate::User::new(true, vec!["ops".into()]),
        )]);
        let events = Arc::new(Mutex::new(Vec::new()));
        let keep = events.clone();
        let audit = move |e: TlsEvent| {
            keep.lock().unwrap().push(e);
            record
        };
        let mut l = l
            .with_mtls(
                Fixed(alice_pinned_to("192.0.2.7")),
                Arc::new(users),
                Arc::new(audit),
            )
            .serve_denied();
        let mut verdicts = Vec::new();
        for ip in from {
            let _c = proxied(addr, ip, b"GET").await;
            let (_, client) = timeout(LONG, l.accept()).await.unwrap();
            verdicts.push(client.verdict.expect("a certificate gives a verdict"));
        }
        let events = events.lock().unwrap().clone();
        (verdicts, events)
    }

    #[::tokio::test]
    async fn the_certificate_is_checked_against_the_observed_address() {
        let (v, events) = mtls_verdicts(true, &["192.0.2.7", "198.51.100.9"]).await;
        assert_eq!(v[0].access, TlsAccess::Allow);
        assert!(matches!(
            v[1].access,
            TlsAccess::Deny {
                reason: TlsDenyReason::Pin(DenyReason::PinnedIpMismatch),
                ..
            }
        ));
        assert_eq!(events.len(), 2, "each verdict is audited");
        assert!(
            matches!(events[1], TlsEvent::AccessDenied { ref reason, .. } if reason == "pinned_ip_mismatch")
        );
    }

    /// A connection allowed at accept serves many requests (keep-alive, HTTP/2): `Verified`
    /// decides again for each, with the directory of the moment, and records a denial.
    #[::tokio::test]
    async fn verified_decides_again_on_every_request_of_a_connection() {
        let (l, addr) = listener(Limits::default()).await;
        let alice: Arc<Mutex<Option<crate::User>>> = Arc::new(Mutex::new(Some(crate::User::new(
            false,
            vec!["ops".into()],
        ))));
        let directory = alice.clone();
        let users = move |name: &str| {
            (name == "alice")
                .then(|| directory.lock().unwrap().clone())
                .flatten()
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let keep = events.clone();
        let mut l = l.with_mtls(
            Fixed(alice_pinned_to("192.0.2.7")),
            Arc::new(users),
            Arc::new(move |e: TlsEvent| {
                keep.lock().unwrap().push(e);
                true
            }),
        );
        let _c = proxied(addr, "192.0.2.7", b"GET").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert!(client.verdict.as_ref().unwrap().access.is_allowed());
        assert_eq!(events.lock().unwrap().len(), 1, "the connection's allow");

        // The first request and the next, while nothing changed: allowed, not audited again.
        for _ in 0..2 {
            let ok = verified(Some(client.clone())).await.unwrap();
            assert_eq!(ok.verdict.roles, vec!["ops".to_owned()]);
        }
        assert_eq!(events.lock().unwrap().len(), 1);

        // The roles change: the verdict of now is the one a handler gets.
        *alice.lock().unwrap() = Some(crate::User::new(true, vec!["ops".into(), "pinned".into()]));
        let ok = verified(Some(client.clone())).await.unwrap();
        assert_eq!(ok.verdict.roles.len(), 2);
        assert!(ok.verdict.pin_requirement.is_required());

        // The user is removed, or left without roles: the next request on the same
        // connection is refused, and the denial recorded.
        for now in [None, Some(crate::User::new(false, vec![]))] {
            *alice.lock().unwrap() = now;
            let r = verified(Some(client.clone())).await.unwrap_err();
            assert_eq!((r.status, r.code), (StatusCode::FORBIDDEN, "unknown_user"));
            assert!(r.message.contains("log in again"), "{}", r.message);
        }
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 3);
        assert!(
            matches!(&events[2], TlsEvent::AccessDenied { reason, .. } if reason == "unknown_user")
        );
    }

    /// A keep-alive connection served by axum to a handler that takes no `Verified`: once the
    /// user is removed, the connection is closed at its next request (the listener's own
    /// recheck), and the denial recorded.
    #[::tokio::test]
    async fn an_allowed_connection_is_closed_once_its_certificate_no_longer_passes() {
        use ::axum::{Router, routing::get};
        let (l, addr) = listener(Limits::default().with_recheck_interval(Duration::ZERO)).await;
        let present = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = present.clone();
        let users = move |name: &str| {
            (name == "alice" && flag.load(Ordering::SeqCst))
                .then(|| crate::User::new(false, vec!["ops".into()]))
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let keep = events.clone();
        let l = l.with_mtls(
            Fixed(alice_pinned_to("192.0.2.7")),
            Arc::new(users),
            Arc::new(move |e: TlsEvent| {
                keep.lock().unwrap().push(e);
                true
            }),
        );
        let app = Router::new().route(
            "/",
            get(|Observed(seen): Observed| async move { format!("you are {}", seen.ip()) }),
        );
        let server = ::tokio::spawn(async move {
            ::axum::serve(l, app.into_make_service_with_connect_info::<Client>()).await
        });
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut c = proxied(addr, "192.0.2.7", request).await;
        // The answer to the first request, the connection kept open.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("you are 192.0.2.7") {
            let n = timeout(LONG, c.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        // The user is removed: the next request on the same connection gets no answer.
        present.store(false, Ordering::SeqCst);
        c.write_all(request).await.unwrap();
        let mut rest = Vec::new();
        let _ = timeout(LONG, c.read_to_end(&mut rest)).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&rest).contains("you are"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
        let events = events.lock().unwrap();
        assert!(
            matches!(events.last(), Some(TlsEvent::AccessDenied { reason, .. }) if reason == "unknown_user"),
            "{events:?}"
        );
        server.abort();
    }

    /// A served connection silent for its idle timeout is closed: a request head that stops
    /// half-way, and an idle keep-alive after an answer; one that keeps talking stays open
    /// for several timeouts.
    #[::tokio::test]
    async fn a_silent_served_connection_is_closed_and_a_busy_one_is_not() {
        use ::axum::{Router, routing::get};
        let idle = Duration::from_millis(700);
        let (l, addr) = listener(Limits::default().with_idle_timeout(Some(idle))).await;
        let app = Router::new().route("/", get(|| async { "hello" }));
        let server = ::tokio::spawn(async move {
            ::axum::serve(l, app.into_make_service_with_connect_info::<Client>()).await
        });
        // Half a request head, then nothing.
        let mut half = proxied(addr, "192.0.2.7", b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        // A keep-alive connection that asks again as soon as it has its answer.
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut busy = proxied(addr, "192.0.2.8", request).await;
        let started = std::time::Instant::now();
        let mut answers = 0;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while started.elapsed() < idle * 4 {
            while !String::from_utf8_lossy(&got).contains("hello") {
                let n = timeout(LONG, busy.read(&mut buf)).await.unwrap().unwrap();
                assert!(
                    n > 0,
                    "a busy connection was closed after {answers} answers"
                );
                got.extend_from_slice(&buf[..n]);
            }
            got.clear();
            answers += 1;
            if started.elapsed() < idle * 4 {
                busy.write_all(request).await.unwrap();
            }
        }
        assert!(answers > 1);
        // Both silent connections go (the half head's within a bound, not at once).
        assert!(closed(&mut half).await, "a half request head was kept");
        assert!(closed(&mut busy).await, "an idle keep-alive was kept");
        server.abort();
    }

    /// A denial found on a later request that cannot be recorded refuses with 503.
    #[::tokio::test]
    async fn a_later_denial_that_cannot_be_recorded_is_unavailable() {
        let (l, addr) = listener(Limits::default()).await;
        let present = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = present.clone();
        let users = move |name: &str| {
            (name == "alice" && flag.load(Ordering::SeqCst))
                .then(|| crate::User::new(true, vec!["ops".into()]))
        };
        let mut l = l.with_mtls(
            Fixed(alice_pinned_to("192.0.2.7")),
            Arc::new(users),
            // Records the connection's allow, then nothing.
            Arc::new(|e: TlsEvent| matches!(e, TlsEvent::AccessAllowed { .. })),
        );
        let _c = proxied(addr, "192.0.2.7", b"GET").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert!(verified(Some(client.clone())).await.is_ok());
        present.store(false, Ordering::SeqCst);
        let r = verified(Some(client)).await.unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable")
        );
    }

    /// By default a connection the pin check refuses is closed: `accept` never yields it, and
    /// it is reported with its reason.
    #[::tokio::test]
    async fn refused_connections_are_closed_by_default() {
        let (l, addr) = listener(Limits::default()).await;
        let users: HashMap<String, crate::User> = HashMap::from([(
            "alice".to_owned(),
            crate::User::new(true, vec!["ops".into()]),
        )]);
        let refused = Arc::new(Mutex::new(Vec::new()));
        let keep = refused.clone();
        let mut l = l
            .with_mtls(
                Fixed(alice_pinned_to("192.0.2.7")),
                Arc::new(users),
                Arc::new(|_: TlsEvent| true),
            )
            .on_refused(move |r| keep.lock().unwrap().push(r.reason));
        let _denied = proxied(addr, "198.51.100.9", b"GET").await;
        let _allowed = proxied(addr, "192.0.2.7", b"GET").await;
        let (_, client) = timeout(LONG, l.accept()).await.unwrap();
        assert_eq!(client.observed.ip().to_string(), "192.0.2.7");
        assert!(client.verdict.unwrap().access.is_allowed());
        // The denied connection's task may finish after the allowed one's: let the accept
        // loop take it (it yields nothing, so this times out).
        for _ in 0..20 {
            if !refused.lock().unwrap().is_empty() {
                break;
            }
            let _ = timeout(Duration::from_millis(100), l.accept()).await;
        }
        assert_eq!(*refused.lock().unwrap(), vec!["pinned_ip_mismatch"]);
    }

    #[::tokio::test]
    async fn a_verdict_that_cannot_be_recorded_refuses() {
        let (v, _) = mtls_verdicts(false, &["192.0.2.7"]).await;
        assert_eq!(v[0].access, TlsAccess::AuditUnavailable);
    }

    fn parts(client: Option<Client>) -> Parts {
        let (mut parts, ()) = ::axum::http::Request::new(()).into_parts();
        if let Some(c) = client {
            parts.extensions.insert(ConnectInfo(c));
        }
        parts
    }

    fn client_with(access: Option<TlsAccess>) -> Client {
        let observed = ObservedAddr::new(
            "192.0.2.7:40000".parse().unwrap(),
            Provenance::ProxyV2,
            true,
        );
        Client {
            peer: "10.0.0.1:5000".parse().unwrap(),
            observed,
            verdict: access.map(|access| TlsVerdict {
                user: "alice".into(),
                roles: vec!["ops".into()],
                pin_requirement: true.into(),
                pin: ippin_policy::CertPin::Ip("192.0.2.7".parse().unwrap()),
                pinned_endpoint: None,
                login_ip: None,
                validity: None,
                serial: None,
                access,
            }),
            recheck: None,
        }
    }

    async fn verified(client: Option<Client>) -> Result<Verified, Rejection> {
        Verified::from_request_parts(&mut parts(client), &()).await
    }

    #[::tokio::test]
    async fn verified_needs_an_allowed_verdict() {
        let ok = verified(Some(client_with(Some(TlsAccess::Allow))))
            .await
            .unwrap();
        assert_eq!(ok.verdict.user, "alice");
        assert_eq!(ok.observed.ip().to_string(), "192.0.2.7");

        let deny = TlsAccess::Deny {
            reason: TlsDenyReason::Pin(DenyReason::PinnedIpMismatch),
            message: "not from here".into(),
        };
        let r = verified(Some(client_with(Some(deny)))).await.unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::FORBIDDEN, "pinned_ip_mismatch")
        );
        assert_eq!(r.message, "not from here");

        let r = verified(Some(client_with(Some(TlsAccess::AuditUnavailable))))
            .await
            .unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable")
        );

        let r = verified(Some(client_with(None))).await.unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::UNAUTHORIZED, "no_client_certificate")
        );

        let r = verified(None).await.unwrap_err();
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[::tokio::test]
    async fn observed_comes_from_the_connection() {
        let seen = Observed::from_request_parts(&mut parts(Some(client_with(None))), &())
            .await
            .unwrap();
        assert_eq!(seen.0.socket_addr().to_string(), "192.0.2.7:40000");
        assert!(
            Observed::from_request_parts(&mut parts(None), &())
                .await
                .is_err()
        );
    }

    #[test]
    fn a_rejection_answers_with_its_status_and_reason() {
        let r = Rejection::new(StatusCode::FORBIDDEN, "pinned_ip_mismatch", "log in again");
        let resp = r.into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
}
