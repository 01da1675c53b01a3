//! What the PROXY bench (`proxy_protocol.rs`) and the instruction counter
//! (`examples/proxy_instructions.rs`) share: the inputs, each parser read
//! through its general entry point, and the floors. Included by both with
//! `#[path]`, so the two measure exactly the same functions.

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};

const SSH: &[u8] = b"SSH-2.0-OpenSSH_9.2p1\r\n";

pub(crate) fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let sig = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let with_ssh = |mut v: Vec<u8>| {
        v.extend_from_slice(SSH);
        v
    };
    // v2 TCP4 198.51.100.7:51234 -> 203.0.113.10:443, no TLVs.
    let mut v2_tcp4 = sig.to_vec();
    v2_tcp4.extend_from_slice(&[0x21, 0x11, 0x00, 12, 198, 51, 100, 7, 203, 0, 113, 10]);
    v2_tcp4.extend_from_slice(&51234u16.to_be_bytes());
    v2_tcp4.extend_from_slice(&443u16.to_be_bytes());
    // v2 TCP6 with AUTHORITY "example.com" and a 16-byte UNIQUE_ID.
    let src: Ipv6Addr = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let mut body = src.octets().to_vec();
    body.extend_from_slice(&dst.octets());
    body.extend_from_slice(&51234u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    body.extend_from_slice(&[0x02, 0x00, 11]);
    body.extend_from_slice(b"example.com");
    body.extend_from_slice(&[0x05, 0x00, 16]);
    body.extend_from_slice(&[0xAB; 16]);
    let mut v2_tcp6 = sig.to_vec();
    v2_tcp6.extend_from_slice(&[0x21, 0x21]);
    v2_tcp6.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    v2_tcp6.extend_from_slice(&body);
    vec![
        (
            "v1_tcp4",
            with_ssh(b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n".to_vec()),
        ),
        (
            "v1_tcp6",
            with_ssh(
                b"PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::10 51234 443\r\n".to_vec(),
            ),
        ),
        ("v2_tcp4", with_ssh(v2_tcp4)),
        ("v2_tcp6_tlvs", with_ssh(v2_tcp6)),
    ]
}

#[inline]
pub(crate) fn ippin(buf: &[u8]) -> Option<IpAddr> {
    let (header, _used) = ippin_proxy_protocol::parse(buf).ok()?;
    header.source().map(|s| s.ip())
}

#[inline]
pub(crate) fn ppp(buf: &[u8]) -> Option<IpAddr> {
    use ppp::{HeaderResult, v1, v2};
    match HeaderResult::parse(buf) {
        HeaderResult::V1(Ok(h)) => match h.addresses {
            v1::Addresses::Tcp4(a) => Some(a.source_address.into()),
            v1::Addresses::Tcp6(a) => Some(a.source_address.into()),
            v1::Addresses::Unknown => None,
        },
        HeaderResult::V2(Ok(h)) => match h.addresses {
            v2::Addresses::IPv4(a) => Some(a.source_address.into()),
            v2::Addresses::IPv6(a) => Some(a.source_address.into()),
            _ => None,
        },
        _ => None,
    }
}

#[inline]
pub(crate) fn proxy_header(buf: &[u8]) -> Option<IpAddr> {
    use proxy_header::{ParseConfig, ProxyHeader};
    let (header, _used) = ProxyHeader::parse(buf, ParseConfig::default()).ok()?;
    header.proxied_address().map(|a| a.source.ip())
}

/// `ppp` made to validate what ippin validates before returning, as far as
/// its API can: every TLV read through its iterator (bounds only: `ppp`
/// decodes no value and verifies no CRC32C). For v2 inputs.
#[inline]
pub(crate) fn ppp_eager(buf: &[u8]) -> Option<IpAddr> {
    use ppp::{HeaderResult, v2};
    let HeaderResult::V2(Ok(h)) = HeaderResult::parse(buf) else {
        return None;
    };
    for tlv in h.tlvs() {
        black_box(tlv.ok()?);
    }
    match h.addresses {
        v2::Addresses::IPv4(a) => Some(a.source_address.into()),
        v2::Addresses::IPv6(a) => Some(a.source_address.into()),
        _ => None,
    }
}

/// `proxy-header` made to validate every TLV before returning, through its
/// iterator (bounds, and each known type's value decoded: AUTHORITY as
/// UTF-8; no CRC32C check, no repeat check). For v2 inputs.
#[inline]
pub(crate) fn proxy_header_eager(buf: &[u8]) -> Option<IpAddr> {
    use proxy_header::{ParseConfig, ProxyHeader};
    let (header, _used) = ProxyHeader::parse(buf, ParseConfig::default()).ok()?;
    for tlv in header.tlvs() {
        black_box(tlv.ok()?);
    }
    header.proxied_address().map(|a| a.source.ip())
}

#[inline]
pub(crate) fn proxy_protocol_rs(buf: &[u8]) -> Option<IpAddr> {
    let (header, _used) = proxy_protocol_rs::parse(buf).ok()?;
    header.source_ip()
}

/// The v2 floor: the 12-byte signature compared, then the addresses and ports
/// loaded with no validation at all (version, command, family, length and TLVs
/// unread; only the bounds check safe code needs). Not a parser: the least any
/// parser must do to return the source.
#[inline]
pub(crate) fn floor_v2(buf: &[u8]) -> Option<IpAddr> {
    const SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
    let (head, rest) = buf.split_first_chunk::<16>()?;
    if head[..12] != SIG {
        return None;
    }
    if head[13] >> 4 == 2 {
        let b = rest.first_chunk::<36>()?;
        let src = Ipv6Addr::from(*b.first_chunk::<16>()?);
        black_box(Ipv6Addr::from(*b[16..].first_chunk::<16>()?));
        black_box((&b[32..34], &b[34..36]));
        Some(src.into())
    } else {
        let b = rest.first_chunk::<12>()?;
        let src = std::net::Ipv4Addr::from(*b.first_chunk::<4>()?);
        black_box(std::net::Ipv4Addr::from(*b[4..].first_chunk::<4>()?));
        black_box((&b[8..10], &b[10..12]));
        Some(src.into())
    }
}

/// The v1 floor: one pass over the line's bytes (at most 107, the longest
/// line) that does nothing but find `\r\n`, eight bytes at a time. Returns
/// the line's length.
#[inline]
pub(crate) fn floor_v1(buf: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let line = buf.get(..buf.len().min(107))?;
    // The first LF, a word at a time (the lowest flagged byte is exact);
    // the line ends there if a CR precedes it.
    let end = |i: usize| (i > 0 && line.get(i - 1) == Some(&b'\r')).then_some(i + 1);
    let mut words = line.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        let x = w ^ (ONES * u64::from(b'\n'));
        let lf = x.wrapping_sub(ONES) & !x & (ONES << 7);
        if lf != 0 {
            return end(base + lf.trailing_zeros() as usize / 8);
        }
        base += 8;
    }
    let tail = words.remainder();
    end(base + tail.iter().position(|&b| b == b'\n')?)
}
