//! Runs one parser on one benchmark input N times, for instruction counts
//! under valgrind (load-independent, unlike wall-clock time on a busy
//! machine). See docs/benchmarks.md.
//!
//! `cargo run --release --example instructions -- <ippin|ppp|proxy-header|proxy-protocol-rs|floor|none> <input> <N>`

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};

fn inputs(name: &str) -> Vec<u8> {
    let sig = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let mut out = match name {
        "v1_tcp4" => b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n".to_vec(),
        "v1_tcp6" => b"PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::10 51234 443\r\n".to_vec(),
        "v2_tcp4" => {
            let mut v = sig.to_vec();
            v.extend_from_slice(&[
                0x21, 0x11, 0x00, 12, 198, 51, 100, 7, 203, 0, 113, 10, 0xC8, 0x22, 0x01, 0xBB,
            ]);
            v
        }
        _ => {
            let src: Ipv6Addr = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();
            let dst: Ipv6Addr = "2001:db8::10".parse().unwrap();
            let mut body = src.octets().to_vec();
            body.extend_from_slice(&dst.octets());
            body.extend_from_slice(&[0xC8, 0x22, 0x01, 0xBB, 0x02, 0x00, 11]);
            body.extend_from_slice(b"example.com");
            body.extend_from_slice(&[0x05, 0x00, 16]);
            body.extend_from_slice(&[0xAB; 16]);
            let mut v = sig.to_vec();
            v.extend_from_slice(&[0x21, 0x21, 0x00, body.len() as u8]);
            v.extend_from_slice(&body);
            v
        }
    };
    out.extend_from_slice(b"SSH-2.0-OpenSSH_9.2p1\r\n");
    out
}

fn ippin(buf: &[u8]) -> Option<IpAddr> {
    let (h, _) = ippin_proxy_protocol::parse(buf).ok()?;
    h.source().map(|s| s.ip())
}

fn ppp(buf: &[u8]) -> Option<IpAddr> {
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

fn proxy_header(buf: &[u8]) -> Option<IpAddr> {
    let (h, _) =
        proxy_header::ProxyHeader::parse(buf, proxy_header::ParseConfig::default()).ok()?;
    h.proxied_address().map(|a| a.source.ip())
}

fn proxy_protocol_rs(buf: &[u8]) -> Option<IpAddr> {
    let (h, _) = proxy_protocol_rs::parse(buf).ok()?;
    h.source_ip()
}

/// The v2 floor, as in `benches/proxy_protocol.rs`: the signature compared,
/// the addresses and ports loaded, nothing validated.
fn floor_v2(buf: &[u8]) -> Option<IpAddr> {
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

/// The v1 floor, as in `benches/proxy_protocol.rs`: one pass that finds
/// `\r\n`, eight bytes at a time (the line length, as the first octet).
fn floor_v1(buf: &[u8]) -> Option<IpAddr> {
    floor_v1_len(buf).map(|n| IpAddr::from([n as u8, 0, 0, 0]))
}

#[inline(always)]
fn floor_v1_len(buf: &[u8]) -> Option<usize> {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, input, n) = match args.as_slice() {
        [_, w, i, n] => (
            if w == "floor" && i.starts_with("v1") {
                "floor_v1".to_string()
            } else {
                w.clone()
            },
            inputs(i),
            n.parse::<usize>().expect("N"),
        ),
        _ => panic!(
            "usage: instructions <ippin|ppp|proxy-header|proxy-protocol-rs|floor|none> <input> <N>"
        ),
    };
    let f: fn(&[u8]) -> Option<IpAddr> = match which.as_str() {
        "ippin" => ippin,
        "ppp" => ppp,
        "proxy-header" => proxy_header,
        "proxy-protocol-rs" => proxy_protocol_rs,
        "floor" => floor_v2,
        "floor_v1" => floor_v1,
        // The harness alone: a baseline to subtract.
        _ => |buf: &[u8]| buf.first().map(|&b| IpAddr::from([b, 0, 0, 0])),
    };
    assert!(f(&input).is_some());
    for _ in 0..n {
        black_box(f(black_box(&input)));
    }
}
