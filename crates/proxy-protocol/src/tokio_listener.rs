//! The owned listener: a `TcpListener` that runs the header stage of each
//! connection in its own task, under [`HeaderSlots`], and hands over the
//! connections that passed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::tokio_io::{DEFAULT_MAX_PENDING, DEFAULT_TIMEOUT, accept_bounded_until};
use crate::{AcceptError, Accepted, HeaderSlots, ListenerPolicy};

/// How many decided connections wait in the hand-over queue for
/// [`ProxyListener::accept`]; more wait in their tasks (still counted by
/// [`ListenerOptions::max_held`]).
const QUEUE: usize = 64;

/// The pause after a failed TCP accept (out of file descriptors, say), so a
/// persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The bounds and the deadline of a [`ProxyListener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerOptions {
    /// The most connections in the header stage at once (see
    /// [`HeaderSlots`]; at least 1). Default [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// The most connections the listener holds at once before handing them
    /// over: waiting for a header slot, in the header stage, or decided and
    /// not yet taken by [`ProxyListener::accept`]. At this many it stops
    /// accepting, and the kernel's backlog holds the next ones (their
    /// timeout starts when they are accepted). At least `max_pending`;
    /// default 4 × [`DEFAULT_MAX_PENDING`].
    pub max_held: usize,
    /// The deadline for a connection's header, counted from its TCP accept;
    /// the wait for a header slot counts against it. Default
    /// [`DEFAULT_TIMEOUT`].
    pub header_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            max_pending: DEFAULT_MAX_PENDING,
            max_held: DEFAULT_MAX_PENDING.saturating_mul(4),
            header_timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ListenerOptions {
    /// These options with [`max_pending`](Self::max_pending) set.
    pub fn with_max_pending(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// These options with [`max_held`](Self::max_held) set.
    pub fn with_max_held(mut self, max_held: usize) -> Self {
        self.max_held = max_held;
        self
    }

    /// These options with [`header_timeout`](Self::header_timeout) set.
    pub fn with_header_timeout(mut self, header_timeout: Duration) -> Self {
        self.header_timeout = header_timeout;
        self
    }
}

/// A TCP listener that reads each connection's PROXY header (or its
/// absence) under a [`ListenerPolicy`], a bound on headers in flight and a
/// deadline, and yields the connections that passed, with their observed
/// client address.
///
/// A task accepts TCP connections as they come and starts the header stage
/// of each in a task of its own, so a slow or silent peer never delays
/// another's accept: connections come out of [`accept`](Self::accept) in
/// the order their headers were decided, not the order they connected.
/// Refusals come out too, as [`AcceptError`]s: log them and go on.
///
/// Dropping the listener stops the accepting and closes every connection
/// not handed over yet. It must be created inside a tokio runtime.
///
/// ```no_run
/// use ippin_proxy_protocol::{ListenerOptions, ListenerPolicy, ProxyListener, ProxyMode};
///
/// # async fn serve() -> std::io::Result<()> {
/// let policy = ListenerPolicy::new(ProxyMode::On)
///     .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
/// let mut listener = ProxyListener::bind("0.0.0.0:2222", policy, ListenerOptions::default()).await?;
/// loop {
///     match listener.accept().await {
///         Ok(accepted) => {
///             let client = accepted.observed.addr;
///             let stream = accepted.stream; // AsyncRead + AsyncWrite, nothing lost
///             tokio::spawn(async move { /* serve `stream` for `client` */ drop((client, stream)) });
///         }
///         Err(refused) => eprintln!("refused: {refused} ({})", refused.code()),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ProxyListener {
    ready: mpsc::Receiver<Result<Accepted<TcpStream>, AcceptError>>,
    local: SocketAddr,
    slots: HeaderSlots,
    acceptor: JoinHandle<()>,
    unreported: Arc<AtomicU64>,
}

impl ProxyListener {
    /// Binds a TCP listener to `addr` and starts accepting on it.
    ///
    /// # Errors
    /// Binding fails, or there is no tokio runtime.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        policy: ListenerPolicy,
        options: ListenerOptions,
    ) -> io::Result<Self> {
        Self::from_tcp(TcpListener::bind(addr).await?, policy, options)
    }

    /// Starts accepting on `listener`.
    ///
    /// # Errors
    /// Its local address cannot be read, or there is no tokio runtime.
    pub fn from_tcp(
        listener: TcpListener,
        policy: ListenerPolicy,
        options: ListenerOptions,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let local = listener.local_addr()?;
        let slots = HeaderSlots::new(options.max_pending);
        let held = options
            .max_held
            .clamp(slots.limit(), Semaphore::MAX_PERMITS);
        let (tx, ready) = mpsc::channel(QUEUE);
        let unreported = Arc::new(AtomicU64::new(0));
        let acceptor = runtime.spawn(run(
            listener,
            Arc::new(policy),
            options.header_timeout,
            slots.clone(),
            Arc::new(Semaphore::new(held)),
            (tx, unreported.clone()),
        ));
        Ok(ProxyListener {
            ready,
            local,
            slots,
            acceptor,
            unreported,
        })
    }

    /// The next connection whose header stage ended: accepted, with its
    /// observation, header and stream, or refused.
    ///
    /// Cancel-safe: dropping the future loses no connection.
    ///
    /// # Errors
    /// Why a connection was refused ([`AcceptError::Refused`],
    /// [`AcceptError::NoSlot`]), or that a TCP accept failed
    /// ([`AcceptError::Accept`]); the listener goes on either way. These
    /// reports take a place in the hand-over queue only when there is room
    /// (a flood of refused connections must not make accepted ones wait
    /// behind it): when it is full they are dropped, and counted in
    /// [`unreported_refusals`](Self::unreported_refusals).
    /// [`AcceptError::Stopped`] if its accepting task ended.
    ///
    /// A refusal is one client's, not the listener's: a server loop goes on after it
    /// (`?` on every error would let any client stop the server with one bad header):
    ///
    /// ```no_run
    /// # async fn serve(mut listener: ippin_proxy_protocol::ProxyListener) {
    /// use ippin_proxy_protocol::AcceptError;
    /// loop {
    ///     match listener.accept().await {
    ///         Ok(accepted) => { /* serve accepted.stream for accepted.observed */ }
    ///         Err(AcceptError::Stopped) => break,
    ///         Err(refused) => eprintln!("{refused}"), // counted, logged, and on to the next
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn accept(&mut self) -> Result<Accepted<TcpStream>, AcceptError> {
        self.ready.recv().await.unwrap_or(Err(AcceptError::Stopped))
    }

    /// How many refusals (and failed TCP accepts) were dropped because the
    /// hand-over queue was full: a flood an auditor should hear of even when
    /// its single reports were not delivered.
    pub fn unreported_refusals(&self) -> u64 {
        self.unreported.load(Ordering::Relaxed)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The bound on headers in flight, to read how many are in use.
    pub fn header_slots(&self) -> &HeaderSlots {
        &self.slots
    }
}

impl Drop for ProxyListener {
    fn drop(&mut self) {
        // Its `JoinSet` goes with it: every connection still in the header
        // stage, or waiting to be handed over, is closed.
        self.acceptor.abort();
    }
}

/// The accepting task.
async fn run(
    listener: TcpListener,
    policy: Arc<ListenerPolicy>,
    timeout: Duration,
    slots: HeaderSlots,
    held: Arc<Semaphore>,
    (tx, unreported): (
        mpsc::Sender<Result<Accepted<TcpStream>, AcceptError>>,
        Arc<AtomicU64>,
    ),
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(hold) = held.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Reported when there is room, never waited for.
                if tx.try_send(Err(AcceptError::Accept(e.kind()))).is_err() {
                    unreported.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // The deadline starts at the TCP accept, before any wait for a slot.
        let deadline = Instant::now().checked_add(timeout);
        let (policy, slots, tx) = (policy.clone(), slots.clone(), tx.clone());
        let unreported = unreported.clone();
        connections.spawn(async move {
            let decided = accept_bounded_until(tcp, peer, &policy, deadline, &slots).await;
            // The header slot is back by now; `hold` counts the connection
            // until it is handed over (or the listener is gone). A refusal is
            // only a report: it never waits for room, so refused connections
            // cannot hold the queue or the held places against accepted ones.
            match decided {
                Ok(accepted) => {
                    let _ = tx.send(Ok(accepted)).await;
                }
                Err(refused) => {
                    if tx.try_send(Err(refused)).is_err() {
                        unreported.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            drop(hold);
        });
    }
}
