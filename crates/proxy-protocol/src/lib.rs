//! Strict, sans-IO PROXY protocol v1/v2 parsing and encoding, and the
//! listener policy that turns a header into a trusted (or not) client
//! address.
//!
//! ```
//! use ippin_proxy_protocol::{parse, Command};
//!
//! let input = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\nSSH-2.0-OpenSSH_9.2p1\r\n";
//! let (header, used) = parse(input)?;
//! assert_eq!(header.version(), 1);
//! assert_eq!(header.command(), Command::Proxy);
//! assert_eq!(header.source(), Some("198.51.100.7:51234".parse()?));
//! // The rest goes to the application untouched.
//! assert_eq!(&input[used..], b"SSH-2.0-OpenSSH_9.2p1\r\n");
//!
//! // Half a header is "incomplete", not "invalid".
//! assert!(parse(&input[..20]).unwrap_err().is_incomplete());
//! // A `+` sign in a port is invalid.
//! assert!(!parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n").unwrap_err().is_incomplete());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Public API
//!
//! * [`parse`], [`parse_with`] (with a [`ParseConfig`]), [`parse_exact`]
//!   read v1 and v2 headers exactly per HAProxy's specification
//!   (`doc/proxy-protocol.txt` in the HAProxy sources), without allocating;
//!   the [`Header`] ([`V1Header`], [`V2Header`]) borrows the input and
//!   [`Header::into_owned`] gives an [`OwnedHeader`]. v2 TLVs ([`Tlvs`],
//!   [`Tlv`], [`SslTlv`], [`SslSubTlvs`], [`SslSubTlv`] and the `PP2_*`
//!   type constants) are all validated before a header is returned, CRC32C
//!   included ([`Crc32cStatus`]). Errors are one [`Error`] enum;
//!   [`Error::is_incomplete`] tells "read more" from "invalid".
//! * Cloud load-balancer TLVs: [`aws_vpce_id`], [`azure_link_id`],
//!   [`gcp_psc_connection_id`] and [`endpoint_ids`] read the endpoint IDs
//!   ([`AwsVpceId`], [`AzureLinkId`], [`GcpPscConnectionId`],
//!   [`EndpointId`]) strictly, or say what is wrong ([`CloudTlvError`]);
//!   [`V2Builder::endpoint_id`] writes them.
//! * [`detect`] and [`starts_with_header`] classify the first bytes of a
//!   stream ([`Detection`]).
//! * [`V1Builder`] and [`V2Builder`] encode; [`encode_ssl_sub_tlvs`] builds
//!   an SSL TLV's body.
//! * [`ListenerPolicy`] ([`ProxyMode`], trusted proxies, [`ParseConfig`])
//!   decides, from the socket peer and what was parsed, the [`Observed`]
//!   client address, its [`Provenance`] and whether it may be trusted, or a
//!   [`Refusal`] with a stable code; its [`step`](ListenerPolicy::step)
//!   ([`Step`]) is the sans-IO reader an I/O adapter drives.
//! * PROXY v2 over UDP: [`parse_datagram`] ([`parse_datagram_with`]) reads
//!   the whole header one datagram must carry (PROXY UDP4/UDP6 or LOCAL; a
//!   truncated header is an error, never "read more") and returns the
//!   payload offset, or a [`DatagramError`];
//!   [`ListenerPolicy::decide_datagram`] applies the listener policy to one
//!   datagram ([`DatagramAccept`], [`DatagramRefusal`]);
//!   [`Addresses::udp`] and [`V2Builder::encode_datagram`] build datagrams
//!   for senders. See the example below.
//! * Feature `tokio`: `accept` reads the header off any tokio
//!   `AsyncRead + AsyncWrite` stream under a deadline (`DEFAULT_TIMEOUT`)
//!   and returns `Accepted`: the observation, the header and a
//!   `PrefixedStream` that replays bytes read past the header;
//!   `ProxyUdpSocket` wraps a tokio `UdpSocket` and applies the policy to
//!   each datagram (`ReceivedDatagram`, `RecvError`). (Plain names here, so
//!   that these docs build without the feature too.)
//!   `accept_bounded` does the same under `HeaderSlots`, a bound on
//!   connections in the header stage at once; the wait for a slot counts
//!   against the header timeout (`AcceptError::NoSlot` when it runs out).
//! * Feature `listener`: `ProxyListener` owns a tokio `TcpListener`, runs
//!   each connection's header stage in its own task under that bound and
//!   the deadline (`ListenerOptions`), and yields accepted connections and
//!   typed refusals, so a server needs no accept loop of its own:
//!
//! ```
//! # #[cfg(feature = "listener")]
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use ippin_proxy_protocol::{ListenerOptions, ListenerPolicy, ProxyListener, ProxyMode};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let policy = ListenerPolicy::new(ProxyMode::On)
//!     .with_trusted_proxies(vec!["127.0.0.0/8".parse()?]);
//! let mut listener = ProxyListener::bind("127.0.0.1:0", policy, ListenerOptions::default()).await?;
//!
//! // A load balancer on loopback relays a client.
//! let mut lb = tokio::net::TcpStream::connect(listener.local_addr()).await?;
//! lb.write_all(b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\nhello").await?;
//!
//! let accepted = listener.accept().await?;
//! assert_eq!(accepted.observed.addr, "198.51.100.7:51234".parse()?);
//! assert!(accepted.observed.trusted);
//! let mut stream = accepted.stream;
//! let mut app = [0u8; 5];
//! stream.read_exact(&mut app).await?;
//! assert_eq!(&app, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # PROXY v2 over UDP
//!
//! ```
//! use ippin_proxy_protocol::{
//!     Addresses, Command, DatagramError, DatagramRefusal, ListenerPolicy, ProxyMode, Refusal,
//!     V2Builder,
//! };
//!
//! // The proxy's side: the header, then the client's payload.
//! let datagram = V2Builder::new(Command::Proxy)
//!     .addresses(Addresses::udp("198.51.100.7:5353".parse()?, "203.0.113.10:53".parse()?)?)?
//!     .encode_datagram(b"query")?;
//!
//! // The server's side: one decision per datagram, nothing kept. A datagram's
//! // source is not authenticated: its client is trusted only where the network
//! // drops forged sources, and the policy says so.
//! let unverified = ListenerPolicy::new(ProxyMode::On)
//!     .with_trusted_proxies(vec!["10.0.0.0/8".parse()?]);
//! let claim = unverified.decide_datagram("10.0.0.2:40000".parse()?, &datagram)?;
//! assert!(!claim.observed.trusted);
//! let policy = unverified.with_verified_datagram_sources(true);
//! let ok = policy.decide_datagram("10.0.0.2:40000".parse()?, &datagram)?;
//! assert_eq!(ok.observed.addr, "198.51.100.7:5353".parse()?);
//! assert!(ok.observed.trusted);
//! assert_eq!(&datagram[ok.payload_offset..], b"query");
//!
//! // A header cut short is refused, never awaited.
//! assert!(matches!(
//!     policy.decide_datagram("10.0.0.2:40000".parse()?, &datagram[..20]),
//!     Err(DatagramRefusal::Header(DatagramError::Truncated { len: 20, .. }))
//! ));
//! // So is a header from outside the trusted proxies.
//! assert!(matches!(
//!     policy.decide_datagram("192.0.2.1:40000".parse()?, &datagram),
//!     Err(DatagramRefusal::Policy(Refusal::UntrustedProxy { .. }))
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `tokio` | off     | `accept`, `Accepted`, `PrefixedStream`, `DEFAULT_TIMEOUT`, `accept_bounded`, `HeaderSlots`, `AcceptError`, `ProxyUdpSocket`, `ReceivedDatagram`, `RecvError`; pulls in `tokio` with only `io-util`, `time`, `net` and `sync` |
//! | `listener` | off  | `ProxyListener`, `ListenerOptions` (implies `tokio`); adds tokio's `rt` |
//!
//! Without features the crate has no I/O and no runtime: it depends on
//! `crc32c`, `ipnet` and `thiserror` only.
//!
//! # What is accepted
//!
//! Strictly what the specification allows: v1 lines of at most 107 bytes
//! with canonical addresses and ports (no sign, no leading zero), v2 headers
//! with a known version, command and family, an address block long enough
//! for the family, well-formed TLVs and a matching CRC32C when one is sent.
//! Every public enum and growing struct is `#[non_exhaustive]`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod cloud;
mod datagram;
mod error;
mod header;
mod policy;
mod tlv;
mod v1;
mod v2;

#[cfg(feature = "tokio")]
mod tokio_io;
#[cfg(feature = "listener")]
mod tokio_listener;
#[cfg(feature = "tokio")]
mod tokio_udp;

pub use builder::{V1Builder, V2Builder};
pub use cloud::{
    AwsVpceId, AzureLinkId, CloudTlvError, CloudTlvProblem, EndpointId, GcpPscConnectionId,
    PP2_SUBTYPE_AWS_VPCE_ID, PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID, PP2_TYPE_AWS,
    PP2_TYPE_AZURE, PP2_TYPE_GCP, aws_vpce_id, azure_link_id, endpoint_ids, gcp_psc_connection_id,
};
pub use datagram::{
    DatagramAccept, DatagramError, DatagramRefusal, parse_datagram, parse_datagram_with,
};
pub use error::Error;
pub use header::{
    Addresses, Command, Crc32cStatus, Header, OwnedHeader, UNIX_ADDR_LEN, V1Header, V2Header,
};
pub use header::{FIXED_LEN as V2_FIXED_LEN, SIGNATURE as V2_SIGNATURE};
pub use policy::{ListenerPolicy, Observed, Provenance, ProxyMode, Refusal, Step};
pub use tlv::{
    MAX_AUTHORITY_LEN, MAX_UNIQUE_ID_LEN, PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL, PP2_SUBTYPE_SSL_CIPHER, PP2_SUBTYPE_SSL_CLIENT_CERT, PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_GROUP, PP2_SUBTYPE_SSL_KEY_ALG, PP2_SUBTYPE_SSL_SIG_ALG,
    PP2_SUBTYPE_SSL_SIG_SCHEME, PP2_SUBTYPE_SSL_VERSION, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C, PP2_TYPE_MAX_CUSTOM, PP2_TYPE_MIN_CUSTOM, PP2_TYPE_NETNS, PP2_TYPE_NOOP,
    PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID, SslSubTlv, SslSubTlvs, SslTlv, Tlv, Tlvs,
    encode_ssl_sub_tlvs,
};
pub use v1::MAX_V1_LEN;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio_io::{
    AcceptError, Accepted, DEFAULT_MAX_PENDING, DEFAULT_TIMEOUT, HeaderSlots, PrefixedStream,
    accept, accept_bounded, accept_bounded_until,
};
#[cfg(feature = "listener")]
#[cfg_attr(docsrs, doc(cfg(feature = "listener")))]
pub use tokio_listener::{ListenerOptions, ProxyListener};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio_udp::{ProxyUdpSocket, ReceivedDatagram, RecvError};

/// The default cap on a header's size: 4 KiB.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// Parser settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseConfig {
    /// The longest v2 header accepted, fixed part included. A v2 header
    /// announcing more is refused as soon as its 16 fixed bytes are in,
    /// before waiting for the rest. (A v1 line is never longer than
    /// [`MAX_V1_LEN`].)
    pub max_header_len: usize,
}

impl ParseConfig {
    /// Settings with this header size cap (see
    /// [`max_header_len`](Self::max_header_len)); the rest as [`Default`].
    ///
    /// ```
    /// use ippin_proxy_protocol::ParseConfig;
    /// assert_eq!(ParseConfig::with_max_header_len(512).max_header_len, 512);
    /// ```
    pub fn with_max_header_len(max_header_len: usize) -> Self {
        ParseConfig {
            max_header_len,
            ..ParseConfig::default()
        }
    }
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            max_header_len: DEFAULT_MAX_HEADER_LEN,
        }
    }
}

/// Parses a v1 or v2 header at the start of `buf` with the default
/// [`ParseConfig`]; returns it with the number of bytes it takes.
///
/// # Errors
/// [`Error::Incomplete`] when `buf` is a valid beginning of a header;
/// another variant when it can never become one.
#[inline]
pub fn parse(buf: &[u8]) -> Result<(Header<'_>, usize), Error> {
    parse_with(buf, &ParseConfig::default())
}

/// Parses a v1 or v2 header at the start of `buf`; returns it with the
/// number of bytes it takes. The bytes after it are not looked at.
///
/// # Errors
/// [`Error::Incomplete`] when `buf` is a valid beginning of a header;
/// another variant when it can never become one.
#[inline]
pub fn parse_with<'a>(buf: &'a [u8], cfg: &ParseConfig) -> Result<(Header<'a>, usize), Error> {
    match buf.first() {
        Some(b'P') => v1::parse(buf),
        Some(0x0D) => v2::parse(buf, cfg.max_header_len),
        Some(&byte) => Err(Error::NotProxyHeader { offset: 0, byte }),
        None => Err(Error::Incomplete { needed: Some(1) }),
    }
}

/// Parses `buf` as exactly one header, nothing after it.
///
/// # Errors
/// As [`parse`], and [`Error::TrailingBytes`] when bytes follow the header.
pub fn parse_exact(buf: &[u8]) -> Result<Header<'_>, Error> {
    let (header, used) = parse(buf)?;
    match buf.len() - used {
        0 => Ok(header),
        count => Err(Error::TrailingBytes { count }),
    }
}

/// What the first bytes of a stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detection {
    /// They begin a PROXY header attempt: `PROXY` (v1) or the 12-byte v2
    /// signature. (Whether the header is valid is for [`parse`] to say.)
    Header,
    /// They cannot begin a PROXY header.
    NotHeader,
    /// Too few bytes to tell: they are a proper prefix of `PROXY` or of the
    /// v2 signature (or empty).
    NeedMore,
}

/// Classifies the first bytes of a stream, as the spec tells a receiver to
/// tell v1 from v2 from neither.
pub fn detect(buf: &[u8]) -> Detection {
    fn against(buf: &[u8], want: &[u8]) -> Detection {
        let n = buf.len().min(want.len());
        if buf.get(..n) != want.get(..n) {
            Detection::NotHeader
        } else if n == want.len() {
            Detection::Header
        } else {
            Detection::NeedMore
        }
    }
    match buf.first() {
        None => Detection::NeedMore,
        Some(b'P') => against(buf, b"PROXY"),
        Some(0x0D) => against(buf, &v2::SIGNATURE),
        Some(_) => Detection::NotHeader,
    }
}

/// Whether `buf` begins, or could still begin, a PROXY header (v1 `PROXY`
/// or the v2 signature, or a proper prefix of either). Empty input is
/// `false`: nothing has arrived that could be a header.
///
/// Used to refuse a second header after the first ("duplicate PROXY
/// header").
pub fn starts_with_header(buf: &[u8]) -> bool {
    !buf.is_empty() && detect(buf) != Detection::NotHeader
}

/// The README's examples, compiled and run as doctests (so that they stay true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
