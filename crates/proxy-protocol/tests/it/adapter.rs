//! The tokio adapter: split headers, no lost byte, bounded reads, deadline,
//! nothing written to the peer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ippin_proxy_protocol::{
    DEFAULT_TIMEOUT, Error, ListenerPolicy, Provenance, ProxyMode, Refusal, accept,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::vectors::{tcp4_block, tlv, v2};

const V1: &[u8] = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n";

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

/// Yields `data` at most `chunk` bytes per read, then either EOF or, with
/// `endless`, the filler byte forever. Counts what it handed out.
#[derive(Debug)]
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    endless: Option<u8>,
    served: usize,
}

impl Trickle {
    fn new(data: &[u8], chunk: usize) -> Self {
        Trickle {
            data: data.to_vec(),
            pos: 0,
            chunk,
            endless: None,
            served: 0,
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(out.remaining());
        let end = (self.pos + n).min(self.data.len());
        let this = &mut *self;
        if this.pos < end {
            out.put_slice(&this.data[this.pos..end]);
            this.served += end - this.pos;
            this.pos = end;
        } else if let Some(fill) = this.endless {
            out.put_slice(&vec![fill; n]);
            this.served += n;
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all<S: AsyncRead + Unpin>(mut s: S) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

fn app_data() -> Vec<u8> {
    let mut app = b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec();
    app.extend((0..5000u32).map(|i| (i % 251) as u8));
    app
}

#[tokio::test]
async fn any_segmentation_loses_no_byte() {
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    let v2h = {
        let mut body = tcp4_block();
        body.extend(tlv(0x05, b"id-1"));
        v2(0x21, 0x11, &body)
    };
    for header in [V1, &v2h[..]] {
        let mut input = header.to_vec();
        input.extend(app_data());
        for chunk in [1, 2, 3, 13, 100, 10_000] {
            let a = accept(
                Trickle::new(&input, chunk),
                peer(),
                &policy,
                DEFAULT_TIMEOUT,
            )
            .await
            .unwrap();
            assert_eq!(a.observed.addr, "198.51.100.7:51234".parse().unwrap());
            assert!(a.observed.trusted);
            let h = a.header.unwrap();
            assert_eq!(h.header_len(), header.len());
            assert_eq!(read_all(a.stream).await, app_data(), "chunk {chunk}");
        }
    }
}

#[tokio::test]
async fn no_header_in_mode_off_keeps_every_byte() {
    let policy = ListenerPolicy::new(ProxyMode::Off);
    let a = accept(
        Trickle::new(&app_data(), 1),
        peer(),
        &policy,
        DEFAULT_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(a.observed.provenance, Provenance::Direct);
    assert!(a.header.is_none());
    assert_eq!(read_all(a.stream).await, app_data());
}

#[tokio::test]
async fn reads_are_bounded() {
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    // A v1 line that never ends.
    let mut t = Trickle::new(b"PROXY UNKNOWN ", 1);
    t.endless = Some(b'a');
    let mut t = Box::pin(t);
    let r = accept(&mut t, peer(), &policy, DEFAULT_TIMEOUT).await;
    assert_eq!(r.unwrap_err(), Refusal::InvalidHeader(Error::V1TooLong));
    assert!(t.served <= 107, "{}", t.served);
    // A v2 header announcing more than the cap: refused after 16 bytes.
    let mut fixed = v2(0x21, 0x11, &tcp4_block())[..14].to_vec();
    fixed.extend_from_slice(&60_000u16.to_be_bytes());
    let mut t = Trickle::new(&fixed, 1);
    t.endless = Some(0);
    let mut t = Box::pin(t);
    let r = accept(&mut t, peer(), &policy, DEFAULT_TIMEOUT).await;
    assert!(matches!(
        r.unwrap_err(),
        Refusal::InvalidHeader(Error::TooLong { .. })
    ));
    assert_eq!(t.served, 16);
    // Data past a header in big reads stays within the buffer limit.
    let mut t = Trickle::new(V1, 10_000);
    t.endless = Some(b'S');
    let mut t = Box::pin(t);
    let a = accept(&mut t, peer(), &policy, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(a.stream.buffered().len() + V1.len() <= policy.buffer_limit());
}

#[tokio::test(start_paused = true)]
async fn silent_or_stalled_peers_time_out() {
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    for sent in [&b""[..], b"PROXY TCP4 198.51", V1, &V1[..V1.len() - 1]] {
        let (client, server) = tokio::io::duplex(1024);
        let mut client = client;
        client.write_all(sent).await.unwrap();
        let r = accept(server, peer(), &policy, Duration::from_secs(3)).await;
        assert_eq!(r.unwrap_err(), Refusal::Timeout, "{sent:?}");
        drop(client);
    }
}

#[tokio::test]
async fn duplicate_header_in_a_later_segment_is_refused() {
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    let (mut client, server) = tokio::io::duplex(1024);
    let task = tokio::spawn(async move {
        client.write_all(V1).await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(b"PRO").await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(b"XY TCP4").await.unwrap();
        client
    });
    let r = accept(server, peer(), &policy, DEFAULT_TIMEOUT).await;
    assert_eq!(r.unwrap_err(), Refusal::DuplicateHeader);
    drop(task.await.unwrap());
}

#[tokio::test]
async fn nothing_is_written_to_the_peer() {
    for mode in [ProxyMode::On, ProxyMode::Off, ProxyMode::Unspecified] {
        let policy = ListenerPolicy::new(mode);
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(V1).await.unwrap();
        client.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let r = accept(server, peer(), &policy, DEFAULT_TIMEOUT).await;
        // Whatever the decision, the server side is dropped here ...
        drop(r);
        // ... and the client reads end of stream with no byte from us.
        assert!(read_all(&mut client).await.is_empty(), "{mode:?}");
    }
}

#[tokio::test]
async fn real_tcp_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        for b in V1 {
            s.write_all(&[*b]).await.unwrap();
        }
        s.write_all(b"hello").await.unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        reply
    });
    let (sock, peer) = listener.accept().await.unwrap();
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    let a = accept(sock, peer, &policy, DEFAULT_TIMEOUT).await.unwrap();
    assert_eq!(a.observed.addr, "198.51.100.7:51234".parse().unwrap());
    let mut stream = a.stream;
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    stream.write_all(b"bye").await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    assert_eq!(client.await.unwrap(), b"bye");
}
