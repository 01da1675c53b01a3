//! PROXY v2 over UDP: one datagram, one whole header.
//!
//! A datagram is read in one piece, so there is no "read more": a header
//! cut short is an error ([`DatagramError::Truncated`]), never
//! [`Error::Incomplete`]. Only v2 can travel in a datagram, and only with a
//! DGRAM transport: PROXY headers of family UDP4 (0x12) or UDP6 (0x22), and
//! LOCAL headers (family UNSPEC, UDP4 or UDP6; their addresses are
//! ignored). Nothing is kept between datagrams.
//!
//! **A datagram's source address is not authenticated**: anyone who can
//! send to the socket can write any source, a trusted load balancer's
//! included. Observations from datagrams are therefore untrusted unless the
//! policy says the network drops forged sources
//! ([`ListenerPolicy::with_verified_datagram_sources`]).

use std::fmt;
use std::net::SocketAddr;

use crate::{
    Addresses, Detection, Error, Header, ListenerPolicy, Observed, ParseConfig, ProxyMode, Refusal,
    V2Builder, detect, parse_with,
};

/// Why a datagram does not start with a header a datagram may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The datagram starts with a v1 header (or `PROXY`, or a prefix of
    /// it): v1 has no UDP form.
    #[error("a PROXY v1 header in a datagram: only v2 can be carried over UDP")]
    V1Header,
    /// A v2 header whose transport nibble is STREAM (TCP4, TCP6, UNIX
    /// stream).
    #[error(
        "v2 header with STREAM family {family:#04x} in a datagram: only DGRAM families are accepted"
    )]
    StreamFamily {
        /// The family/transport byte.
        family: u8,
    },
    /// A v2 header with a family other than UDP4/UDP6 (PROXY UNSPEC, UNIX
    /// datagram).
    #[error(
        "v2 header with family {family:#04x} in a datagram: only UDP4 (0x12) and UDP6 (0x22) are accepted"
    )]
    UnsupportedFamily {
        /// The family/transport byte.
        family: u8,
    },
    /// The datagram ends inside the header.
    #[error("the datagram ({len} bytes) ends inside the PROXY header{}", match .needed {
        Some(n) => format!(" ({n} more bytes were needed)"),
        None => String::new(),
    })]
    Truncated {
        /// The datagram's length.
        len: usize,
        /// How many more bytes the header needed, when known.
        needed: Option<usize>,
    },
    /// The header is malformed (never [`Error::Incomplete`]).
    #[error("invalid PROXY header in a datagram: {0}")]
    Invalid(Error),
}

impl DatagramError {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            DatagramError::V1Header => "v1_header",
            DatagramError::StreamFamily { .. } => "stream_family",
            DatagramError::UnsupportedFamily { .. } => "unsupported_family",
            DatagramError::Truncated { .. } => "truncated_header",
            DatagramError::Invalid(_) => "invalid_header",
        }
    }
}

/// Checks the command/family pair of a v2 header for datagram use.
fn check_family(ver_cmd: u8, family: u8) -> Result<(), DatagramError> {
    if family & 0x0F == 0x1 {
        return Err(DatagramError::StreamFamily { family });
    }
    let local = ver_cmd & 0x0F == 0;
    match family {
        0x12 | 0x22 => Ok(()),
        0x00 if local => Ok(()),
        _ => Err(DatagramError::UnsupportedFamily { family }),
    }
}

/// Parses the PROXY v2 header at the start of one whole datagram with the
/// default [`ParseConfig`]; returns it with the payload offset.
///
/// ```
/// use ippin_proxy_protocol::{Addresses, Command, DatagramError, V2Builder, parse_datagram};
///
/// let datagram = V2Builder::new(Command::Proxy)
///     .addresses(Addresses::udp("198.51.100.7:5353".parse()?, "203.0.113.10:53".parse()?)?)?
///     .encode_datagram(b"query")?;
/// let (header, offset) = parse_datagram(&datagram)?;
/// assert_eq!(header.source(), Some("198.51.100.7:5353".parse()?));
/// assert_eq!(&datagram[offset..], b"query");
///
/// // A header cut short is an error, not "read more".
/// assert!(matches!(parse_datagram(&datagram[..20]), Err(DatagramError::Truncated { .. })));
/// // v1 has no UDP form.
/// assert_eq!(parse_datagram(b"PROXY UNKNOWN\r\n").unwrap_err(), DatagramError::V1Header);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The [`DatagramError`]; an empty datagram is [`DatagramError::Truncated`].
pub fn parse_datagram(datagram: &[u8]) -> Result<(Header<'_>, usize), DatagramError> {
    parse_datagram_with(datagram, &ParseConfig::default())
}

/// [`parse_datagram`] with these parser settings (the header size cap).
///
/// # Errors
/// As [`parse_datagram`].
pub fn parse_datagram_with<'a>(
    datagram: &'a [u8],
    cfg: &ParseConfig,
) -> Result<(Header<'a>, usize), DatagramError> {
    if datagram.first() == Some(&b'P') && detect(datagram) != Detection::NotHeader {
        return Err(DatagramError::V1Header);
    }
    match parse_with(datagram, cfg) {
        Ok((header, used)) => match header {
            Header::V2(h) => {
                let ver_cmd = h.as_bytes().get(12).copied().unwrap_or(0);
                check_family(ver_cmd, h.family_byte())?;
                Ok((header, used))
            }
            // Not reached: v1 was refused above.
            _ => Err(DatagramError::V1Header),
        },
        Err(Error::Incomplete { needed }) => {
            // The parser checked the bytes that are there: when the family
            // byte is among them, its verdict is the more precise one.
            if let (Some(&ver_cmd), Some(&family)) = (datagram.get(12), datagram.get(13)) {
                check_family(ver_cmd, family)?;
            }
            Err(DatagramError::Truncated {
                len: datagram.len(),
                needed,
            })
        }
        Err(e) => Err(DatagramError::Invalid(e)),
    }
}

/// Why one datagram is refused by a [`ListenerPolicy`]. Each has a stable
/// [`code`](DatagramRefusal::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramRefusal {
    /// The listener policy's own refusal, as for a TCP connection:
    /// `header_required`, `header_forbidden`, `untrusted_proxy`,
    /// `duplicate_header`.
    Policy(Refusal),
    /// The datagram starts with a header a datagram may not carry.
    Header(DatagramError),
    /// The datagram filled the whole receive buffer of `capacity` bytes,
    /// so the kernel may have cut it without telling (a UDP receive does not
    /// say): refused rather than handed on shortened
    /// (`ProxyUdpSocket::recv_from`, feature `tokio`).
    FilledBuffer {
        /// The receive buffer's size.
        capacity: usize,
    },
}

impl DatagramRefusal {
    /// A stable, machine-readable reason code (the [`Refusal`]'s or the
    /// [`DatagramError`]'s).
    pub fn code(&self) -> &'static str {
        match self {
            DatagramRefusal::Policy(r) => r.code(),
            DatagramRefusal::Header(e) => e.code(),
            DatagramRefusal::FilledBuffer { .. } => "datagram_fills_buffer",
        }
    }
}

impl fmt::Display for DatagramRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramRefusal::Policy(r) => write!(f, "{r}"),
            DatagramRefusal::Header(e) => write!(f, "{}: {e}", e.code()),
            DatagramRefusal::FilledBuffer { capacity } => write!(
                f,
                "datagram_fills_buffer: the datagram filled the {capacity}-byte receive \
                 buffer and may have been cut"
            ),
        }
    }
}

impl std::error::Error for DatagramRefusal {}

/// A datagram that passed the listener policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramAccept<'a> {
    /// The client address and whether it may be trusted.
    pub observed: Observed,
    /// The header, when there was one.
    pub header: Option<Header<'a>>,
    /// Where the payload starts (0 without a header).
    pub payload_offset: usize,
}

impl ListenerPolicy {
    /// Decides one whole datagram from socket peer `peer`, with the rules of
    /// [`decide`](Self::decide) and [`step`](Self::step) (see the decision
    /// table on [`ListenerPolicy`]), and no state kept between datagrams:
    ///
    /// * no header: mode on refuses `header_required`; otherwise the peer,
    ///   trusted;
    /// * anything that is, or begins, a header: mode off refuses
    ///   `header_forbidden`, an untrusted peer `untrusted_proxy` (both
    ///   before parsing); then the header must pass [`parse_datagram_with`]
    ///   (a truncated header is refused, never awaited);
    /// * a payload that itself begins, or is a prefix of, a header is
    ///   refused `duplicate_header`;
    /// * unless [`datagram_sources_verified`](Self::datagram_sources_verified),
    ///   the observation is then made untrusted (port 0): a datagram's source,
    ///   a trusted proxy's included, is whatever its sender wrote.
    ///
    /// # Errors
    /// The [`DatagramRefusal`]; the caller drops this datagram and goes on.
    pub fn decide_datagram<'a>(
        &self,
        peer: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<DatagramAccept<'a>, DatagramRefusal> {
        if datagram.is_empty() || detect(datagram) == Detection::NotHeader {
            let observed = self
                .decide(peer, None, datagram)
                .map_err(DatagramRefusal::Policy)?;
            return Ok(DatagramAccept {
                observed: self.unverified(observed),
                header: None,
                payload_offset: 0,
            });
        }
        if self.mode == ProxyMode::Off {
            return Err(DatagramRefusal::Policy(Refusal::HeaderForbidden));
        }
        if !self.is_trusted_proxy(peer.ip()) {
            return Err(DatagramRefusal::Policy(Refusal::UntrustedProxy {
                peer: peer.ip().to_canonical(),
            }));
        }
        let (header, offset) =
            parse_datagram_with(datagram, &self.parse).map_err(DatagramRefusal::Header)?;
        let payload = datagram.get(offset..).unwrap_or_default();
        let observed = self
            .decide_any(peer, Some(&header), payload)
            .map_err(DatagramRefusal::Policy)?;
        Ok(DatagramAccept {
            observed: self.unverified(observed),
            header: Some(header),
            payload_offset: offset,
        })
    }

    /// `observed`, untrusted (port 0) unless datagram sources are verified.
    fn unverified(&self, observed: Observed) -> Observed {
        if self.datagram_sources_verified || !observed.trusted {
            return observed;
        }
        Observed::new(
            SocketAddr::new(observed.addr.ip(), 0),
            observed.provenance,
            false,
        )
    }
}

impl Addresses {
    /// UDP addresses from a source and a destination of the same IP family:
    /// [`Addresses::Udp4`] or [`Addresses::Udp6`].
    ///
    /// # Errors
    /// [`Error::Encode`] when one is IPv4 and the other IPv6.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Result<Addresses, Error> {
        match (src, dst) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => Ok(Addresses::Udp4 { src, dst }),
            (SocketAddr::V6(src), SocketAddr::V6(dst)) => Ok(Addresses::Udp6 { src, dst }),
            _ => Err(Error::Encode {
                reason: "source and destination must both be IPv4 or both IPv6",
            }),
        }
    }
}

impl V2Builder {
    /// The header followed by `payload`: one datagram for a receiver that
    /// expects PROXY v2 over UDP. The header must be one
    /// [`parse_datagram`] accepts: PROXY with [`Addresses::Udp4`] or
    /// [`Addresses::Udp6`] (see [`Addresses::udp`]), or LOCAL.
    ///
    /// # Errors
    /// As [`encode`](Self::encode), and [`Error::Encode`] for a PROXY
    /// header without UDP addresses.
    pub fn encode_datagram(&self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = self.encode()?;
        let ver_cmd = out.get(12).copied().unwrap_or(0);
        let family = out.get(13).copied().unwrap_or(0);
        if check_family(ver_cmd, family).is_err() {
            return Err(Error::Encode {
                reason: "a datagram carries PROXY headers with UDP4/UDP6 addresses, or LOCAL",
            });
        }
        out.extend_from_slice(payload);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;
    use crate::V2_SIGNATURE;

    fn udp4() -> Vec<u8> {
        V2Builder::new(Command::Proxy)
            .addresses(
                Addresses::udp(
                    "198.51.100.7:5353".parse().unwrap(),
                    "203.0.113.10:53".parse().unwrap(),
                )
                .unwrap(),
            )
            .unwrap()
            .encode()
            .unwrap()
    }

    /// A hand-written UDP6 header: ::1 port 1 -> ::2 port 2.
    fn udp6_vector() -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x21, 0x22, 0x00, 36]);
        let mut a = [0u8; 16];
        a[15] = 1;
        v.extend_from_slice(&a);
        a[15] = 2;
        v.extend_from_slice(&a);
        v.extend_from_slice(&[0, 1, 0, 2]);
        v
    }

    #[test]
    fn udp4_vector_and_payload_offset() {
        let mut d = V2_SIGNATURE.to_vec();
        d.extend_from_slice(&[0x21, 0x12, 0x00, 12, 198, 51, 100, 7, 203, 0, 113, 10]);
        d.extend_from_slice(&[0x14, 0xE9, 0x00, 0x35]);
        assert_eq!(d, udp4());
        d.extend_from_slice(b"payload");
        let (h, off) = parse_datagram(&d).unwrap();
        assert_eq!(off, 28);
        assert_eq!(&d[off..], b"payload");
        assert_eq!(h.source(), Some("198.51.100.7:5353".parse().unwrap()));
        assert_eq!(h.destination(), Some("203.0.113.10:53".parse().unwrap()));
        assert!(matches!(h.addresses(), Addresses::Udp4 { .. }));
    }

    #[test]
    fn parses_udp6_vector() {
        let d = udp6_vector();
        let (h, off) = parse_datagram(&d).unwrap();
        assert_eq!(off, 52);
        assert_eq!(h.source(), Some("[::1]:1".parse().unwrap()));
        assert_eq!(h.destination(), Some("[::2]:2".parse().unwrap()));
    }

    #[test]
    fn every_truncation_is_an_error_never_incomplete() {
        for full in [
            udp4(),
            udp6_vector(),
            V2Builder::new(Command::Local).encode().unwrap(),
        ] {
            for cut in 0..full.len() {
                match parse_datagram(&full[..cut]) {
                    Err(DatagramError::Truncated { len, .. }) => assert_eq!(len, cut),
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
            assert!(parse_datagram(&full).is_ok());
        }
    }

    #[test]
    fn local_is_accepted_with_unspec_and_udp_families() {
        for family in [0x00u8, 0x12, 0x22] {
            let mut d = V2_SIGNATURE.to_vec();
            let block = crate::v2::block_len(family).unwrap();
            d.extend_from_slice(&[0x20, family]);
            d.extend_from_slice(&block.to_be_bytes());
            d.resize(d.len() + usize::from(block), 7);
            d.extend_from_slice(b"x");
            let (h, off) = parse_datagram(&d).unwrap();
            assert_eq!(h.command(), Command::Local);
            assert_eq!(h.addresses(), Addresses::Unspec);
            assert_eq!(&d[off..], b"x");
        }
    }

    #[test]
    fn stream_and_other_families_are_refused() {
        for (cmd, family, want) in [
            (0x21u8, 0x11u8, DatagramError::StreamFamily { family: 0x11 }),
            (0x21, 0x21, DatagramError::StreamFamily { family: 0x21 }),
            (0x21, 0x31, DatagramError::StreamFamily { family: 0x31 }),
            (0x20, 0x11, DatagramError::StreamFamily { family: 0x11 }),
            (
                0x21,
                0x00,
                DatagramError::UnsupportedFamily { family: 0x00 },
            ),
            (
                0x21,
                0x32,
                DatagramError::UnsupportedFamily { family: 0x32 },
            ),
            (
                0x20,
                0x32,
                DatagramError::UnsupportedFamily { family: 0x32 },
            ),
        ] {
            let block = crate::v2::block_len(family).unwrap();
            let mut d = V2_SIGNATURE.to_vec();
            d.extend_from_slice(&[cmd, family]);
            d.extend_from_slice(&block.to_be_bytes());
            d.resize(d.len() + usize::from(block), 0);
            assert_eq!(
                parse_datagram(&d).unwrap_err(),
                want,
                "{cmd:#x} {family:#x}"
            );
            // Also when the datagram stops right after the family byte.
            assert_eq!(parse_datagram(&d[..14]).unwrap_err(), want);
        }
    }

    #[test]
    fn v1_and_garbage() {
        assert_eq!(
            parse_datagram(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nx").unwrap_err(),
            DatagramError::V1Header
        );
        assert_eq!(parse_datagram(b"PRO").unwrap_err(), DatagramError::V1Header);
        assert!(matches!(
            parse_datagram(b"hello"),
            Err(DatagramError::Invalid(Error::NotProxyHeader { .. }))
        ));
        let mut bad_crc = V2Builder::new(Command::Proxy)
            .addresses(
                Addresses::udp("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap()).unwrap(),
            )
            .unwrap()
            .crc32c()
            .unwrap()
            .encode()
            .unwrap();
        assert!(parse_datagram(&bad_crc).is_ok());
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(matches!(
            parse_datagram(&bad_crc),
            Err(DatagramError::Invalid(Error::Crc32cMismatch { .. }))
        ));
    }

    #[test]
    fn header_size_cap_applies() {
        let d = udp4();
        assert!(matches!(
            parse_datagram_with(&d, &ParseConfig::with_max_header_len(20)),
            Err(DatagramError::Invalid(Error::TooLong { .. }))
        ));
    }

    #[test]
    fn encode_datagram_refuses_stream_and_mixed_families() {
        let tcp = V2Builder::new(Command::Proxy)
            .addresses(Addresses::Tcp4 {
                src: "1.2.3.4:1".parse().unwrap(),
                dst: "5.6.7.8:2".parse().unwrap(),
            })
            .unwrap();
        assert!(matches!(
            tcp.encode_datagram(b"x"),
            Err(Error::Encode { .. })
        ));
        assert!(matches!(
            V2Builder::new(Command::Proxy).encode_datagram(b"x"),
            Err(Error::Encode { .. })
        ));
        assert!(Addresses::udp("1.2.3.4:1".parse().unwrap(), "[::1]:2".parse().unwrap()).is_err());
        let local = V2Builder::new(Command::Local)
            .encode_datagram(b"hc")
            .unwrap();
        let (h, off) = parse_datagram(&local).unwrap();
        assert_eq!((h.command(), &local[off..]), (Command::Local, &b"hc"[..]));
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn good() -> Vec<u8> {
        let mut d = udp4();
        d.extend_from_slice(b"data");
        d
    }

    #[test]
    fn policy_mode_on() {
        let unverified = ListenerPolicy::new(ProxyMode::On)
            .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let g = good();
        // A datagram's source is not authenticated: without the network's word, the
        // header's client is not trusted, even from a listed proxy.
        let seen = unverified.decide_datagram(peer("10.0.0.1:9"), &g).unwrap();
        assert_eq!(seen.observed.addr, peer("198.51.100.7:0"));
        assert!(!seen.observed.trusted);
        let p = unverified.with_verified_datagram_sources(true);
        let ok = p.decide_datagram(peer("10.0.0.1:9"), &g).unwrap();
        assert_eq!(ok.observed.addr, peer("198.51.100.7:5353"));
        assert!(ok.observed.trusted);
        assert_eq!(ok.payload_offset, 28);
        assert_eq!(
            p.decide_datagram(peer("192.0.2.1:9"), &good()).unwrap_err(),
            DatagramRefusal::Policy(Refusal::UntrustedProxy {
                peer: "192.0.2.1".parse().unwrap()
            })
        );
        assert_eq!(
            p.decide_datagram(peer("10.0.0.1:9"), b"data").unwrap_err(),
            DatagramRefusal::Policy(Refusal::HeaderRequired)
        );
        assert_eq!(
            p.decide_datagram(peer("10.0.0.1:9"), b"").unwrap_err(),
            DatagramRefusal::Policy(Refusal::HeaderRequired)
        );
        assert_eq!(
            p.decide_datagram(peer("10.0.0.1:9"), &g[..27])
                .unwrap_err()
                .code(),
            "truncated_header"
        );
        let mut dup = udp4();
        dup.extend_from_slice(&udp4());
        assert_eq!(
            p.decide_datagram(peer("10.0.0.1:9"), &dup).unwrap_err(),
            DatagramRefusal::Policy(Refusal::DuplicateHeader)
        );
        let local = V2Builder::new(Command::Local)
            .encode_datagram(b"x")
            .unwrap();
        let l = p.decide_datagram(peer("10.0.0.1:9"), &local).unwrap();
        assert!(!l.observed.trusted);
        assert_eq!(l.observed.addr, peer("10.0.0.1:0"));
        // Mode on with no list trusts nobody.
        assert!(matches!(
            ListenerPolicy::new(ProxyMode::On).decide_datagram(peer("10.0.0.1:9"), &good()),
            Err(DatagramRefusal::Policy(Refusal::UntrustedProxy { .. }))
        ));
    }

    #[test]
    fn policy_mode_off_and_unspecified() {
        let off = ListenerPolicy::new(ProxyMode::Off);
        assert_eq!(
            off.decide_datagram(peer("10.0.0.1:9"), &good())
                .unwrap_err(),
            DatagramRefusal::Policy(Refusal::HeaderForbidden)
        );
        assert_eq!(
            off.decide_datagram(peer("10.0.0.1:9"), b"PROXY x")
                .unwrap_err(),
            DatagramRefusal::Policy(Refusal::HeaderForbidden)
        );
        let plain = off.decide_datagram(peer("10.0.0.1:9"), b"data").unwrap();
        assert_eq!(plain.observed.addr, peer("10.0.0.1:0"));
        assert!(!plain.observed.trusted);
        assert_eq!(plain.payload_offset, 0);
        let verified = off
            .clone()
            .with_verified_datagram_sources(true)
            .decide_datagram(peer("10.0.0.1:9"), b"data")
            .unwrap();
        assert_eq!(verified.observed.addr, peer("10.0.0.1:9"));
        assert!(verified.observed.trusted);

        let un = ListenerPolicy::new(ProxyMode::Unspecified);
        let g = good();
        let a = un.decide_datagram(peer("192.0.2.1:9"), &g).unwrap();
        assert_eq!(a.observed.addr, peer("198.51.100.7:0"));
        assert!(!a.observed.trusted);
        assert_eq!(
            un.decide_datagram(peer("192.0.2.1:9"), &V2_SIGNATURE[..5])
                .unwrap_err(),
            DatagramRefusal::Header(DatagramError::Truncated {
                len: 5,
                needed: Some(11)
            })
        );
    }
}
