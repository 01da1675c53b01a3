//! A stream that can be cut from outside the task that owns it (feature `tokio`).
//!
//! For example, `russh::server::run_stream` moves the stream into a task of its own, and a
//! disconnect request through its `Handle` is only acted on once the key exchange is done:
//! a peer that sends its identification string (or nothing) and stalls would keep its socket
//! for as long as it likes. [`Cut::cut`] makes every later read and write of the
//! [`CutStream`] fail, and wakes a read or a write that is waiting (a peer that stops
//! reading leaves a write waiting for room), so the session ends and the socket is closed
//! whatever stage the peer stalled in.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The switch shared by a [`CutStream`] and whoever may cut it.
#[derive(Debug, Default)]
pub struct Cut {
    cut: AtomicBool,
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Cut {
    /// Cuts the stream: its reads and writes fail from now on, and a read or write that is
    /// waiting is woken to find it so.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for slot in [&self.reader, &self.writer] {
            if let Ok(mut w) = slot.lock()
                && let Some(w) = w.take()
            {
                w.wake();
            }
        }
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Stores `cx`'s waker in `slot`; `Err` when the stream is (or was meanwhile) cut.
    fn register(&self, slot: &Mutex<Option<Waker>>, cx: &Context<'_>) -> io::Result<()> {
        if self.is_cut() {
            return Err(aborted());
        }
        if let Ok(mut w) = slot.lock() {
            *w = Some(cx.waker().clone());
        }
        // Cut between the check and the registration: the waker may have been taken
        // before it was stored, so look again.
        if self.is_cut() {
            return Err(aborted());
        }
        Ok(())
    }
}

/// A stream that fails once its [`Cut`] is cut.
#[derive(Debug)]
pub struct CutStream<S> {
    inner: S,
    cut: Arc<Cut>,
}

impl<S> CutStream<S> {
    /// Wraps `inner`; returns it with its switch.
    pub fn new(inner: S) -> (CutStream<S>, Arc<Cut>) {
        let cut = Arc::new(Cut::default());
        (
            CutStream {
                inner,
                cut: cut.clone(),
            },
            cut,
        )
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "cut by the server")
}

impl<S: AsyncRead + Unpin> AsyncRead for CutStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.cut.register(&self.cut.reader, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CutStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.cut.register(&self.cut.writer, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.cut.register(&self.cut.writer, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that stops reading leaves a write waiting for room: cut, it fails at once
    /// instead of waiting for ever.
    #[tokio::test]
    async fn a_waiting_write_fails_once_cut() {
        let (a, _b) = tokio::io::duplex(8);
        let (mut s, cut) = CutStream::new(a);
        let writer = tokio::spawn(async move {
            let r = s.write_all(&[0u8; 64]).await;
            r.map_err(|e| e.kind())
        });
        // The 8-byte pipe is full and nobody reads `_b`: the write waits.
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        cut.cut();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the waiting write was not woken by the cut")
            .unwrap();
        assert_eq!(r, Err(io::ErrorKind::ConnectionAborted));
    }

    #[tokio::test]
    async fn a_waiting_read_fails_once_cut_and_so_does_every_later_use() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut s, cut) = CutStream::new(a);
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let r = s.read(&mut buf).await;
            (r.map_err(|e| e.kind()), s)
        });
        tokio::task::yield_now().await;
        cut.cut();
        let (r, mut s) = reader.await.unwrap();
        assert_eq!(r, Err(io::ErrorKind::ConnectionAborted));
        assert_eq!(
            s.write_all(b"x").await.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionAborted)
        );
        // The peer's data is never read once cut.
        b.write_all(b"more").await.unwrap();
        let mut buf = [0u8; 8];
        assert!(s.read(&mut buf).await.is_err());
    }
}
