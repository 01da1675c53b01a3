//! The tokio adapter: a thin shell that feeds [`ListenerPolicy::step`]
//! from an `AsyncRead`, under a deadline, and hands on the stream without
//! losing a byte.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

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
    mut stream: S,
    peer: SocketAddr,
    policy: &ListenerPolicy,
    timeout: Duration,
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
    let (observed, header, consumed) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Refusal::Timeout)??;
    buf.drain(..consumed.min(buf.len()));
    Ok(Accepted {
        observed,
        header,
        stream: PrefixedStream::new(buf, stream),
    })
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
