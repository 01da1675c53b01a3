//! PROXY v2 over UDP through real sockets: a Python 3 sender on loopback
//! sends datagrams whose headers ippin's encoder made (as hex on its argv)
//! to a `ProxyUdpSocket`; malformed and untrusted datagrams are refused one
//! by one while the next good one is still accepted.

use std::net::SocketAddr;
use std::process::Command as Process;
use std::time::Duration;

use ippin_proxy_protocol::{
    Addresses, Command, DatagramError, DatagramRefusal, ListenerPolicy, Provenance, ProxyMode,
    ProxyUdpSocket, ReceivedDatagram, RecvError, Refusal, V1Builder, V2Builder,
};
use ippin_test_support::peer;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(10);

/// Sends each datagram (hex) from a UDP socket bound to `from`:0 to `to`
/// (same IP family), in order, and exits.
const SENDER: &str = r#"
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in src else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for h in sys.argv[4:]:
    s.sendto(bytes.fromhex(h), (dst, port))
s.close()
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn send(from: &str, to: SocketAddr, datagrams: &[Vec<u8>]) {
    let out = Process::new(peer("python3"))
        .arg("-c")
        .arg(SENDER)
        .arg(from)
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .args(datagrams.iter().map(|d| hex(d)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn next(socket: &ProxyUdpSocket, buf: &mut [u8]) -> Result<ReceivedDatagram, RecvError> {
    tokio::time::timeout(WAIT, socket.recv_from(buf))
        .await
        .expect("no datagram in time")
}

fn udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    V2Builder::new(Command::Proxy)
        .addresses(Addresses::udp(src.parse().unwrap(), dst.parse().unwrap()).unwrap())
        .unwrap()
        .encode_datagram(payload)
        .unwrap()
}

fn refusal(r: Result<ReceivedDatagram, RecvError>) -> DatagramRefusal {
    match r {
        Err(RecvError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn python_sender_round_trip_and_refusals() {
    // Loopback: only this host can send to the socket, so the sources are what they say.
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()])
        .with_verified_datagram_sources(true);
    let socket = ProxyUdpSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), policy);
    let to = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 65535];

    let good4 = udp("198.51.100.7:5353", "203.0.113.10:53", b"one");
    let good6 = udp("[2001:db8::7]:4433", "[2001:db8::1]:443", b"two");
    let mut tcp4 = V2Builder::new(Command::Proxy)
        .addresses(Addresses::Tcp4 {
            src: "198.51.100.8:1".parse().unwrap(),
            dst: "203.0.113.10:53".parse().unwrap(),
        })
        .unwrap()
        .encode()
        .unwrap();
    tcp4.extend_from_slice(b"stream");
    let mut v1 = V1Builder::new()
        .addresses(Addresses::Tcp4 {
            src: "198.51.100.9:1".parse().unwrap(),
            dst: "203.0.113.10:53".parse().unwrap(),
        })
        .unwrap()
        .encode()
        .unwrap();
    v1.extend_from_slice(b"v1");
    let local = V2Builder::new(Command::Local)
        .encode_datagram(b"health")
        .unwrap();
    let last = udp("198.51.100.10:10", "203.0.113.10:53", b"last");

    send(
        "127.0.0.1",
        to,
        &[
            good4.clone(),
            good4[..20].to_vec(),
            v1,
            tcp4,
            good6,
            b"no header".to_vec(),
            local,
            last.clone(),
        ],
    );

    let a = next(&socket, &mut buf).await.unwrap();
    assert_eq!(a.observed.addr, "198.51.100.7:5353".parse().unwrap());
    assert!(a.observed.trusted);
    assert_eq!(a.observed.provenance, Provenance::ProxyV2);
    assert_eq!(&buf[a.payload.clone()], b"one");
    assert_eq!(
        a.peer.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(a.header.as_ref().unwrap().as_bytes(), &good4[..28]);

    assert!(matches!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Header(DatagramError::Truncated { len: 20, .. })
    ));
    assert_eq!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Header(DatagramError::V1Header)
    );
    assert_eq!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Header(DatagramError::StreamFamily { family: 0x11 })
    );

    let b = next(&socket, &mut buf).await.unwrap();
    assert_eq!(b.observed.addr, "[2001:db8::7]:4433".parse().unwrap());
    assert!(b.observed.trusted);
    assert_eq!(&buf[b.payload.clone()], b"two");

    assert_eq!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Policy(Refusal::HeaderRequired)
    );

    let l = next(&socket, &mut buf).await.unwrap();
    assert_eq!(l.observed.provenance, Provenance::Local);
    assert!(!l.observed.trusted);
    assert_eq!(&buf[l.payload.clone()], b"health");

    let c = next(&socket, &mut buf).await.unwrap();
    assert_eq!(c.observed.addr, "198.51.100.10:10".parse().unwrap());
    assert_eq!(&buf[c.payload.clone()], b"last");

    // An untrusted sender (127.0.0.2 is outside 127.0.0.1/32) is refused,
    // and the trusted one that follows is accepted.
    send("127.0.0.2", to, std::slice::from_ref(&good4));
    match next(&socket, &mut buf).await {
        Err(RecvError::Refused { peer, refusal }) => {
            assert_eq!(peer.ip(), "127.0.0.2".parse::<std::net::IpAddr>().unwrap());
            assert_eq!(
                refusal,
                DatagramRefusal::Policy(Refusal::UntrustedProxy {
                    peer: "127.0.0.2".parse().unwrap()
                })
            );
        }
        other => panic!("expected untrusted_proxy, got {other:?}"),
    }
    send("127.0.0.1", to, &[last]);
    let d = next(&socket, &mut buf).await.unwrap();
    assert_eq!(d.observed.addr, "198.51.100.10:10".parse().unwrap());
    assert_eq!(&buf[d.payload], b"last");
}

#[tokio::test]
async fn modes_off_and_unspecified_over_real_sockets() {
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65535];
    let good = udp("198.51.100.7:5353", "203.0.113.10:53", b"x");

    let off = ProxyUdpSocket::new(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        ListenerPolicy::new(ProxyMode::Off).with_verified_datagram_sources(true),
    );
    let to = off.local_addr().unwrap();
    sender.send_to(&good, to).await.unwrap();
    sender.send_to(b"plain", to).await.unwrap();
    assert_eq!(
        refusal(next(&off, &mut buf).await),
        DatagramRefusal::Policy(Refusal::HeaderForbidden)
    );
    let p = next(&off, &mut buf).await.unwrap();
    assert_eq!(p.observed.addr, sender.local_addr().unwrap());
    assert!(p.observed.trusted);
    assert_eq!(&buf[p.payload], b"plain");

    let un = ProxyUdpSocket::new(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        ListenerPolicy::new(ProxyMode::Unspecified),
    );
    sender
        .send_to(&good, un.local_addr().unwrap())
        .await
        .unwrap();
    let u = next(&un, &mut buf).await.unwrap();
    assert_eq!(u.observed.addr, "198.51.100.7:0".parse().unwrap());
    assert!(!u.observed.trusted);
    assert_eq!(&buf[u.payload], b"x");
}

#[tokio::test]
async fn python_sender_over_ipv6_loopback() {
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["::1/128".parse().unwrap()])
        .with_verified_datagram_sources(true);
    let socket = ProxyUdpSocket::new(UdpSocket::bind("[::1]:0").await.unwrap(), policy);
    let to = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 65535];
    let good = udp("198.51.100.7:5353", "203.0.113.10:53", b"six");
    let mut dup = good.clone();
    dup.truncate(28);
    dup.extend_from_slice(&good);
    send("::1", to, &[dup, good[..27].to_vec(), good]);
    assert_eq!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Policy(Refusal::DuplicateHeader)
    );
    assert!(matches!(
        refusal(next(&socket, &mut buf).await),
        DatagramRefusal::Header(DatagramError::Truncated { len: 27, .. })
    ));
    let a = next(&socket, &mut buf).await.unwrap();
    assert_eq!(a.peer.ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(a.observed.addr, "198.51.100.7:5353".parse().unwrap());
    assert!(a.observed.trusted);
    assert_eq!(&buf[a.payload], b"six");
}

/// A datagram that fills the receive buffer may have been cut by the kernel without a
/// word: refused (`datagram_fills_buffer`), never handed on shortened; one byte shorter
/// than the buffer is whole and accepted; the socket goes on.
#[tokio::test]
async fn a_datagram_that_fills_the_buffer_is_refused_not_cut() {
    // Loopback: only this host can send to the socket, so the sources are what they say.
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()])
        .with_verified_datagram_sources(true);
    let socket = ProxyUdpSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), policy);
    let to = socket.local_addr().unwrap();
    let header_len = udp("198.51.100.7:5353", "203.0.113.10:53", b"").len();
    let mut buf = vec![0u8; 64];
    let longer = udp("198.51.100.7:1", "203.0.113.10:53", &[b'a'; 100]);
    let exact = udp(
        "198.51.100.7:2",
        "203.0.113.10:53",
        &vec![b'b'; 64 - header_len],
    );
    let whole = udp(
        "198.51.100.7:3",
        "203.0.113.10:53",
        &vec![b'c'; 63 - header_len],
    );
    send("127.0.0.1", to, &[longer, exact, whole]);
    for _ in 0..2 {
        let r = refusal(next(&socket, &mut buf).await);
        assert_eq!(r, DatagramRefusal::FilledBuffer { capacity: 64 });
        assert_eq!(r.code(), "datagram_fills_buffer");
    }
    let d = next(&socket, &mut buf).await.unwrap();
    assert_eq!(d.observed.addr, "198.51.100.7:3".parse().unwrap());
    assert_eq!(&buf[d.payload], &vec![b'c'; 63 - header_len][..]);
}
