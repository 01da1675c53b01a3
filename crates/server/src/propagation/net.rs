//! The I/O around the sans-IO core: reading a header sequence off a
//! socket under a deadline, and the front's relay (dial the upstream,
//! write the signed header, copy bytes both ways).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ippin_policy::ObservedAddr;
use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Error, GrantSchedule, Link, Verifier, WriteHeader};
use crate::accept::Refused;
use crate::config::ListenerConfig;
use ippin_access::signed::{SeqStep, buffer_limit, step};

/// How long a front waits for its upstream to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a relayed connection may stay silent both ways before the
/// front closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Unix seconds of `t` (0 before the epoch).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the header sequence of a listener with propagation enabled (see
/// `ippin_access::signed::step`) from `stream`, a connection from `peer` to `local`,
/// within `timeout`; `now` is read when
/// the sequence is decided. Reads at most [`buffer_limit`] bytes; never
/// writes.
///
/// # Errors
/// [`Refused`] with the reason code; the caller closes the connection.
pub async fn accept_propagated<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &pp::ListenerPolicy,
    verifier: &Verifier,
    timeout: Duration,
    now: impl Fn() -> u64,
) -> Result<(ObservedAddr, pp::PrefixedStream<S>), Refused> {
    let limit = buffer_limit(listener);
    let mut buf: Vec<u8> = Vec::with_capacity(limit.min(4096));
    let read = async {
        let mut chunk = [0u8; 2048];
        let mut eof = false;
        loop {
            match step(listener, verifier, peer, local, &buf, eof, now()) {
                SeqStep::NeedMore => {
                    let room = limit.saturating_sub(buf.len()).min(chunk.len());
                    if eof || room == 0 {
                        return Err(Refused::new(
                            "connection_closed",
                            format!("connection_closed: {} bytes and no decision", buf.len()),
                        ));
                    }
                    let into = chunk.get_mut(..room).unwrap_or_default();
                    let n = stream.read(into).await.map_err(|e| {
                        Refused::new(
                            "io_error",
                            format!("io_error: reading the PROXY headers: {e}"),
                        )
                    })?;
                    match into.get(..n) {
                        Some(got) if n > 0 => buf.extend_from_slice(got),
                        _ => eof = true,
                    }
                }
                SeqStep::Accept { observed, consumed } => return Ok((observed, consumed)),
                SeqStep::Refuse { code, message } => return Err(Refused::new(code, message)),
                // A step this server does not know refuses (fail closed).
                _ => return Err(Refused::new("unknown_step", "unknown_step: refused")),
            }
        }
    };
    let (observed, consumed) = tokio::time::timeout(timeout, read).await.map_err(|_| {
        Refused::new(
            "timeout",
            "timeout: the PROXY headers did not arrive in time",
        )
    })??;
    buf.drain(..consumed.min(buf.len()));
    Ok((observed, pp::PrefixedStream::new(buf, stream)))
}

/// A front's forwarding target, identity and current grant.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    /// The upstream, `host:port`.
    pub upstream: String,
    /// The grants for the upstream (its key and audience, the front's identity).
    pub grants: Arc<GrantSchedule>,
}

/// Why a forward did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The observed client address is not trusted: a front never vouches
    /// for an address it could not trust itself.
    #[error("untrusted_client_ip: the client address {0} is not trusted here; not forwarded")]
    Untrusted(String),
    /// The upstream could not be reached.
    #[error("upstream_unreachable: {upstream}: {message}")]
    Upstream {
        /// The upstream.
        upstream: String,
        /// What happened.
        message: String,
    },
    /// The header could not be signed.
    #[error("sign_failed: {0}")]
    Sign(String),
}

impl ForwardError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ForwardError::Untrusted(_) => "untrusted_client_ip",
            ForwardError::Upstream { .. } => "upstream_unreachable",
            ForwardError::Sign(_) => "sign_failed",
        }
    }
}

/// A connection to the upstream and the bytes to send on it first (the
/// signed header, then the client's bytes already read). Nothing has been
/// written yet: the caller records the relay in its audit log first, and
/// writes [`Dialed::send_first`] only once that succeeded (fail closed: the
/// upstream never sees a header or a byte the log does not show).
#[derive(Debug)]
pub struct Dialed {
    /// The upstream connection.
    pub stream: TcpStream,
    /// Its address.
    pub upstream: SocketAddr,
    /// The signed header followed by the client's early bytes, not yet sent.
    first: Vec<u8>,
}

impl Dialed {
    /// Writes the signed header and the early bytes.
    ///
    /// # Errors
    /// The upstream connection failed.
    pub async fn send_first(&mut self) -> std::io::Result<()> {
        let first = std::mem::take(&mut self.first);
        self.stream.write_all(&first).await
    }
}

/// Dials `target.upstream` and signs the header for `observed` (reached at
/// `local`), bound to the connection just made (its local and peer address);
/// the header and the client's bytes already read (`early`) are returned
/// unsent, for [`Dialed::send_first`] after the caller's audit line. The
/// header's timestamp is read from `now` once the connection is up, so
/// headers on one 4-tuple carry non-decreasing timestamps.
///
/// # Errors
/// [`ForwardError`].
pub async fn dial_and_sign(
    target: &ForwardTarget,
    observed: &ObservedAddr,
    local: SocketAddr,
    early: &[u8],
    now: impl Fn() -> u64,
) -> Result<Dialed, ForwardError> {
    if !observed.is_trusted() {
        return Err(ForwardError::Untrusted(observed.socket_addr().to_string()));
    }
    let upstream_err = |message: String| ForwardError::Upstream {
        upstream: target.upstream.clone(),
        message,
    };
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(target.upstream.as_str()),
    )
    .await
    .map_err(|_| upstream_err("connect timed out".into()))?
    .map_err(|e| upstream_err(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let upstream = stream
        .peer_addr()
        .map_err(|e| upstream_err(e.to_string()))?;
    let front = stream
        .local_addr()
        .map_err(|e| upstream_err(e.to_string()))?;
    let now = now();
    let mut nonce = [0u8; 16];
    ippin_cert::getrandom::fill(&mut nonce).map_err(|e| ForwardError::Sign(e.to_string()))?;
    let grant = target
        .grants
        .grant_at(now, || {
            let mut ephemeral = [0u8; 32];
            ippin_cert::getrandom::fill(&mut ephemeral)
                .map_err(|e| Error::Grant(format!("randomness: {e}")))?;
            Ok(ephemeral)
        })
        .map_err(|e| ForwardError::Sign(e.to_string()))?;
    let link = Link {
        front,
        inner: upstream,
    };
    let mut first = grant
        // The endpoint the client came through (a front listener with `allowed_endpoints`)
        // travels with its address: the inner binds pins to it.
        .header_via(
            observed.socket_addr(),
            local,
            observed
                .endpoint()
                .as_ref()
                .map(ippin_policy::Endpoint::as_str),
            link,
            now,
            nonce,
        )
        .map_err(|e| ForwardError::Sign(e.to_string()))?;
    first.extend_from_slice(early);
    Ok(Dialed {
        stream,
        upstream,
        first,
    })
}

/// Copies bytes both ways until both sides close or nothing moves in
/// either direction for [`IDLE_TIMEOUT`]; returns the bytes sent (client →
/// upstream, upstream → client). Memory is bounded by tokio's fixed copy
/// buffers.
pub async fn relay<A, B>(client: &mut A, upstream: &mut B) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    relay_with_idle(client, upstream, IDLE_TIMEOUT).await
}

/// [`relay`] with another idle timeout.
pub async fn relay_with_idle<A, B>(client: &mut A, upstream: &mut B, idle: Duration) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let mut client = Idle::new(client, last.clone(), idle);
    let mut upstream = Idle::new(upstream, last, idle);
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    copied.unwrap_or((client.read_total, upstream.read_total))
}

/// A stream whose reads fail once neither it nor its partner (sharing
/// `last`) has read anything for `idle`; counts the bytes read.
struct Idle<'a, S> {
    inner: &'a mut S,
    idle: Duration,
    last: Arc<std::sync::Mutex<tokio::time::Instant>>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    read_total: u64,
}

impl<'a, S> Idle<'a, S> {
    fn new(
        inner: &'a mut S,
        last: Arc<std::sync::Mutex<tokio::time::Instant>>,
        idle: Duration,
    ) -> Self {
        Idle {
            inner,
            idle,
            last,
            sleep: Box::pin(tokio::time::sleep(idle)),
            read_total: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let n = buf.filled().len().saturating_sub(before);
                this.read_total = this.read_total.saturating_add(n as u64);
                let now = tokio::time::Instant::now();
                if let Ok(mut last) = this.last.lock() {
                    *last = now;
                }
                this.sleep.as_mut().reset(now + this.idle);
                Poll::Ready(r)
            }
            Poll::Pending => loop {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // This side is silent; the connection is idle only if the
                // other side has been silent as long.
                let last = this
                    .last
                    .lock()
                    .map_or_else(|_| tokio::time::Instant::now(), |l| *l);
                let deadline = last + this.idle;
                if deadline <= tokio::time::Instant::now() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle timeout",
                    )));
                }
                this.sleep.as_mut().reset(deadline);
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// The PROXY stage of a listener with `propagation`: the header sequence
/// with signed headers (see `ippin_access::signed::step`).
///
/// # Errors
/// [`Refused`] with the reason code (`propagation_unavailable` when the
/// listener was not armed).
pub async fn accept_listener<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    lcfg: &ListenerConfig,
    policy: &pp::ListenerPolicy,
    signed: Option<&super::runtime::Armed>,
) -> Result<(ObservedAddr, ippin_proxy_protocol::PrefixedStream<S>), Refused>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let armed = signed
        .filter(|_| lcfg.propagation.is_some())
        .ok_or_else(|| {
            Refused::new(
                "propagation_unavailable",
                "propagation_unavailable: this listener's verifier is not set up",
            )
        })?;
    let clock = armed.clock.clone();
    accept_propagated(
        stream,
        peer,
        local,
        policy,
        &armed.verifier,
        lcfg.header_timeout,
        move || unix(clock()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-way stream keeps the relay open past the idle timeout (the
    /// silent side alone is not idleness); silence both ways ends it. On the
    /// paused clock (in-memory streams): the times are exact, not the machine's.
    #[tokio::test(start_paused = true)]
    async fn idle_means_silent_both_ways() {
        let (mut client, mut client_far) = tokio::io::duplex(1024);
        let (mut upstream, mut upstream_far) = tokio::io::duplex(1024);
        let idle = Duration::from_millis(150);
        let relay =
            tokio::spawn(async move { relay_with_idle(&mut client, &mut upstream, idle).await });
        // The upstream talks for 4 idle periods; the client never does.
        for _ in 0..12 {
            upstream_far.write_all(b"tick").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut got = vec![0u8; 48];
        client_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..8], b"ticktick");
        assert!(!relay.is_finished(), "a one-way stream was cut as idle");
        // Now nothing moves: the relay ends on its own (bounded wait).
        let (up, down) = tokio::time::timeout(Duration::from_secs(10), relay)
            .await
            .expect("the idle relay ended")
            .unwrap();
        assert_eq!((up, down), (0, 48));
    }
}
