//! The tokio adapter: a thin shell that feeds [`ListenerPolicy::step`]
//! from an `AsyncRead`, under a deadline, and hands on the stream without
//! losing a byte; and [`HeaderSlots`], the bound on connections in the
//! header stage at once, which [`accept_bounded`] applies.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{Header, ListenerPolicy, Observed, OwnedHeader, Refusal, Step};

/// The default deadline for the header: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that passed the listener policy.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted<S> {
    /// The client address and whether it may be trusted.
    pub observed: Observed,
    /// The header, when there was one.
    pub header: Option<OwnedHeader>,
    /// The stream, positioned right after the header: bytes read past the
    /// header are replayed first.
    pub stream: PrefixedStream<S>,
}

/// Reads the PROXY header (if any) off `stream` and applies `policy`.
///
/// * Reads at most [`ListenerPolicy::buffer_limit`] bytes before deciding,
///   in whatever segments the peer sends (one byte at a time works).
/// * Never writes to the peer.
/// * Gives up after `timeout` ([`DEFAULT_TIMEOUT`] is a sensible value)
///   with [`Refusal::Timeout`].
/// * Waits for the client's first bytes in every mode: they show whether a
///   header is there, which mode off must refuse and mode on must require.
///   A client that waits for the server to speak first is therefore refused
///   with [`Refusal::Timeout`] (SSH and TLS clients speak first). After a
///   header, it likewise waits for the first application bytes, to refuse
///   a second header (see [`ListenerPolicy::step`]).
///
/// # Errors
/// The [`Refusal`]; the caller closes the connection.
pub async fn accept<S: AsyncRead + Unpin>(
    stream: S,
    peer: SocketAddr,
    policy: &ListenerPolicy,
    timeout: Duration,
) -> Result<Accepted<S>, Refusal> {
    read_header(stream, peer, policy, Instant::now().checked_add(timeout)).await
}

/// [`accept`] with a deadline (`None`: far enough to be never).
async fn read_header<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    policy: &ListenerPolicy,
    deadline: Option<Instant>,
) -> Result<Accepted<S>, Refusal> {
    let limit = policy.buffer_limit();
    let mut buf: Vec<u8> = Vec::with_capacity(limit.min(512));
    let read = async {
        let mut chunk = [0u8; 1024];
        let mut eof = false;
        loop {
            match policy.step(peer, &buf, eof) {
                Step::NeedMore => {
                    let room = limit.saturating_sub(buf.len()).min(chunk.len());
                    if eof || room == 0 {
                        return Err(Refusal::Closed {
                            received: buf.len(),
                        });
                    }
                    let into = chunk.get_mut(..room).unwrap_or_default();
                    let n = stream.read(into).await.map_err(|e| Refusal::Io(e.kind()))?;
                    match into.get(..n) {
                        Some(got) if n > 0 => buf.extend_from_slice(got),
                        _ => eof = true,
                    }
                }
                Step::Accept {
                    observed,
                    header,
                    consumed,
                } => return Ok((observed, header.map(Header::into_owned), consumed)),
                Step::Refuse(refusal) => return Err(refusal),
            }
        }
    };
    let (observed, header, consumed) = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| Refusal::Timeout)??,
        None => read.await?,
    };
    buf.drain(..consumed.min(buf.len()));
    Ok(Accepted {
        observed,
        header,
        stream: PrefixedStream::new(buf, stream),
    })
}

/// The default bound on connections in the header stage at once, for
/// [`HeaderSlots`] and the listener: 1024.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// The bound on connections in the PROXY header stage at once, shared by
/// every connection of a listener (clone it: clones share the bound).
///
/// A connection takes a slot before its first read and gives it back when
/// its header is decided (accepted, refused or timed out). A connection that
/// finds every slot taken waits, and **the wait counts against its header
/// timeout**: one that waited 4 s of a 5 s timeout has 1 s left for its
/// header, and one whose deadline passes while it waits is refused with
/// [`AcceptError::NoSlot`]. So stalled peers hold at most `limit` slots for at
/// most one timeout each, and no connection is held longer than its timeout.
///
/// ```
/// use ippin_proxy_protocol::HeaderSlots;
///
/// let slots = HeaderSlots::new(2);
/// assert_eq!(slots.limit(), 2);
/// assert_eq!(slots.in_use(), 0);
/// // A limit of 0 would admit nobody: it is taken as 1.
/// assert_eq!(HeaderSlots::new(0).limit(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct HeaderSlots {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl HeaderSlots {
    /// A bound of `limit` connections, at least 1 and at most
    /// [`tokio::sync::Semaphore::MAX_PERMITS`].
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        HeaderSlots {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many connections are in the header stage now.
    pub fn in_use(&self) -> usize {
        self.limit
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Waits for a slot until `deadline`; `None` when it passed first.
    async fn take(&self, deadline: Option<Instant>) -> Option<OwnedSemaphorePermit> {
        let acquire = self.semaphore.clone().acquire_owned();
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, acquire).await.ok()?,
            None => acquire.await,
        };
        // The semaphore is never closed: an error cannot happen, and would
        // refuse the connection rather than let it past the bound.
        permit.ok()
    }
}

impl Default for HeaderSlots {
    /// [`DEFAULT_MAX_PENDING`] slots.
    fn default() -> Self {
        HeaderSlots::new(DEFAULT_MAX_PENDING)
    }
}

/// Why a bounded accept gave no connection. Each has a stable
/// [`code`](AcceptError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The listener policy refused the connection, or its header did not
    /// arrive before the deadline ([`Refusal::Timeout`]).
    #[error("{peer}: {refusal}")]
    Refused {
        /// The socket peer.
        peer: SocketAddr,
        /// Why.
        refusal: Refusal,
    },
    /// The deadline passed while the connection waited for a header slot:
    /// every slot was held by other connections for its whole timeout.
    #[error("{peer}: header_slots_full: no header slot freed within {waited:?}")]
    NoSlot {
        /// The socket peer.
        peer: SocketAddr,
        /// How long it waited, from the call (with [`accept_bounded`], its
        /// whole timeout).
        waited: Duration,
    },
    /// Accepting a TCP connection failed (for example, too many open
    /// files). The listener goes on accepting after a short pause.
    #[error("accept_failed: accepting a connection failed: {0}")]
    Accept(io::ErrorKind),
    /// The listener's accepting task ended (it does not, short of a bug):
    /// no more connections will come.
    #[error("listener_stopped: the listener stopped accepting")]
    Stopped,
}

impl AcceptError {
    /// A stable, machine-readable reason code: the [`Refusal`]'s code for
    /// [`Refused`](AcceptError::Refused), `header_slots_full` for
    /// [`NoSlot`](AcceptError::NoSlot), `accept_failed` for
    /// [`Accept`](AcceptError::Accept), `listener_stopped` for
    /// [`Stopped`](AcceptError::Stopped).
    pub fn code(&self) -> &'static str {
        match self {
            AcceptError::Refused { refusal, .. } => refusal.code(),
            AcceptError::NoSlot { .. } => "header_slots_full",
            AcceptError::Accept(_) => "accept_failed",
            AcceptError::Stopped => "listener_stopped",
        }
    }

    /// The policy's refusal, when that is what this is.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            AcceptError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }

    /// Whether the connection ran out of time: its header did not arrive
    /// in time ([`Refusal::Timeout`]) or no slot freed in time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            AcceptError::NoSlot { .. }
                | AcceptError::Refused {
                    refusal: Refusal::Timeout,
                    ..
                }
        )
    }
}

/// [`accept`] under a bound on headers in flight: takes one of `slots`
/// first, and `timeout` covers the wait for the slot and the header
/// together, counted from this call (make it right after the TCP accept).
///
/// # Errors
/// [`AcceptError::NoSlot`] when the timeout passes before a slot frees;
/// [`AcceptError::Refused`] with the [`Refusal`] otherwise (a header that
/// does not arrive in the time left is [`Refusal::Timeout`]).
pub async fn accept_bounded<S: AsyncRead + Unpin>(
    stream: S,
    peer: SocketAddr,
    policy: &ListenerPolicy,
    timeout: Duration,
    slots: &HeaderSlots,
) -> Result<Accepted<S>, AcceptError> {
    let start = Instant::now();
    accept_bounded_until(stream, peer, policy, start.checked_add(timeout), slots).await
}

/// [`accept_bounded`] with the deadline given (`None`: no deadline), for a
/// caller that accepted the connection earlier: the wait for a slot and the
/// header must both be done by `deadline`.
///
/// # Errors
/// As [`accept_bounded`].
pub async fn accept_bounded_until<S: AsyncRead + Unpin>(
    stream: S,
    peer: SocketAddr,
    policy: &ListenerPolicy,
    deadline: Option<Instant>,
    slots: &HeaderSlots,
) -> Result<Accepted<S>, AcceptError> {
    let start = Instant::now();
    // Refused whatever it sends: no slot taken, nothing read.
    if let Some(refusal) = policy.refusal_before_reading(peer) {
        return Err(AcceptError::Refused { peer, refusal });
    }
    let Some(_slot) = slots.take(deadline).await else {
        return Err(AcceptError::NoSlot {
            peer,
            waited: start.elapsed(),
        });
    };
    read_header(stream, peer, policy, deadline)
        .await
        .map_err(|refusal| AcceptError::Refused { peer, refusal })
}

/// A stream that first yields buffered bytes, then reads from the inner
/// stream. Writes go straight to the inner stream.
#[derive(Debug)]
pub struct PrefixedStream<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> PrefixedStream<S> {
    /// A stream that yields `prefix`, then `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        PrefixedStream {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The buffered bytes not yet read.
    pub fn buffered(&self) -> &[u8] {
        self.prefix.get(self.pos..).unwrap_or_default()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream (reading from it directly skips the buffered
    /// bytes).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The unread buffered bytes and the inner stream.
    pub fn into_parts(mut self) -> (Vec<u8>, S) {
        self.prefix.drain(..self.pos.min(self.prefix.len()));
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pending = this.prefix.get(this.pos..).unwrap_or_default();
        if !pending.is_empty() {
            let n = pending.len().min(out.remaining());
            out.put_slice(pending.get(..n).unwrap_or_default());
            this.pos += n;
            if this.pos >= this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
