//! The tokio UDP helper: each datagram received goes through
//! [`ListenerPolicy::decide_datagram`]; nothing is kept between datagrams.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use tokio::net::UdpSocket;

use crate::{DatagramRefusal, ListenerPolicy, Observed, OwnedHeader};

/// A `tokio::net::UdpSocket` whose datagrams may carry a PROXY v2 header,
/// with the rules of a [`ListenerPolicy`] applied to each one.
///
/// ```
/// use ippin_proxy_protocol::{Addresses, Command, ListenerPolicy, ProxyMode, ProxyUdpSocket, V2Builder};
/// use tokio::net::UdpSocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Loopback, for this example only: no other host can forge a 127.0.0.1 source, but
/// // every process on this one can send from it, so trusting it trusts them all. In a
/// // deployment, trust your proxies' own addresses, on a network that drops spoofed
/// // sources, never an address of this host (see `with_verified_datagram_sources`).
/// let policy = ListenerPolicy::new(ProxyMode::On)
///     .with_trusted_proxies(vec!["127.0.0.1/32".parse()?])
///     .with_verified_datagram_sources(true);
/// let socket = ProxyUdpSocket::new(UdpSocket::bind("127.0.0.1:0").await?, policy);
///
/// // A proxy on 127.0.0.1 relays a client's datagram.
/// let proxy = UdpSocket::bind("127.0.0.1:0").await?;
/// let datagram = V2Builder::new(Command::Proxy)
///     .addresses(Addresses::udp("198.51.100.7:5353".parse()?, "203.0.113.10:53".parse()?)?)?
///     .encode_datagram(b"query")?;
/// proxy.send_to(&datagram, socket.local_addr()?).await?;
///
/// let mut buf = vec![0u8; 65536];
/// let got = socket.recv_from(&mut buf).await?;
/// assert_eq!(got.observed.addr, "198.51.100.7:5353".parse()?);
/// assert!(got.observed.trusted);
/// assert_eq!(&buf[got.payload.clone()], b"query");
/// assert_eq!(got.peer, proxy.local_addr()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ProxyUdpSocket {
    socket: UdpSocket,
    policy: ListenerPolicy,
}

/// A datagram that passed the listener policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedDatagram {
    /// The client address and whether it may be trusted.
    pub observed: Observed,
    /// Where the payload is in the caller's buffer (after the header).
    pub payload: Range<usize>,
    /// The socket peer: the proxy when there was a header.
    pub peer: SocketAddr,
    /// The header, when there was one.
    pub header: Option<OwnedHeader>,
}

/// Why [`ProxyUdpSocket::recv_from`] returned no datagram.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// This datagram was refused and dropped; the socket is fine: receive
    /// the next one.
    Refused {
        /// The socket peer that sent it.
        peer: SocketAddr,
        /// Why.
        refusal: DatagramRefusal,
    },
    /// Receiving failed.
    Io(io::Error),
}

impl RecvError {
    /// Whether only this datagram was refused (the caller goes on
    /// receiving).
    pub fn is_refused(&self) -> bool {
        matches!(self, RecvError::Refused { .. })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Refused { peer, refusal } => {
                write!(f, "datagram from {peer} refused: {refusal}")
            }
            RecvError::Io(e) => write!(f, "receiving a datagram failed: {e}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Refused { refusal, .. } => Some(refusal),
            RecvError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        RecvError::Io(e)
    }
}

impl ProxyUdpSocket {
    /// Wraps `socket`; each datagram is decided by `policy`.
    pub fn new(socket: UdpSocket, policy: ListenerPolicy) -> Self {
        ProxyUdpSocket { socket, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &ListenerPolicy {
        &self.policy
    }

    /// The socket (to send replies: they go to the socket peer, without a
    /// header).
    pub fn get_ref(&self) -> &UdpSocket {
        &self.socket
    }

    /// The socket.
    pub fn into_inner(self) -> UdpSocket {
        self.socket
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// As `UdpSocket::local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives one datagram into `buf` and applies the policy (see
    /// [`ListenerPolicy::decide_datagram`]).
    ///
    /// Give a buffer of 65536 bytes (one more than the largest UDP payload):
    /// the kernel cuts a datagram longer than `buf` without telling, so a
    /// datagram that fills `buf` exactly is refused
    /// ([`DatagramRefusal::FilledBuffer`], `datagram_fills_buffer`) rather
    /// than handed on with its payload possibly shortened.
    ///
    /// # Errors
    /// [`RecvError::Refused`] for a datagram the policy refuses (dropped;
    /// call again for the next one: any sender can cause one, so a server
    /// loop must not end on it), [`RecvError::Io`] when receiving fails.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<ReceivedDatagram, RecvError> {
        let (n, peer) = self.socket.recv_from(buf).await?;
        if n >= buf.len() {
            let refusal = DatagramRefusal::FilledBuffer {
                capacity: buf.len(),
            };
            return Err(RecvError::Refused { peer, refusal });
        }
        let datagram = buf.get(..n).unwrap_or_default();
        match self.policy.decide_datagram(peer, datagram) {
            Ok(accept) => Ok(ReceivedDatagram {
                observed: accept.observed,
                payload: accept.payload_offset.min(n)..n,
                peer,
                header: accept.header.map(crate::Header::into_owned),
            }),
            Err(refusal) => Err(RecvError::Refused { peer, refusal }),
        }
    }
}
