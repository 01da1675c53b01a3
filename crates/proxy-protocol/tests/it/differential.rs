//! Differential tests against `ppp`, `proxy-header` and `proxy-protocol-rs`.
//!
//! Where all four accept, they agree on the bytes used and the source (proptest below).
//! Every input where we deliberately differ is a row of [`differences`], asserted outcome by
//! outcome for every parser; the table is also in docs/proxy-protocol.md.
//!
//! `proxy-protocol-rs` 0.8 (`proxy_protocol_rs::parse`) against the spec and ippin:
//!
//! * it accepts what we refuse: `+` and leading zeros in v1 ports (it uses `u16::from_str`);
//!   AUTHORITY and NETNS values that are not UTF-8 (decoded lossily); repeated TLVs of one
//!   type (the last wins); and, on a LOCAL header that carries an address block, anything
//!   after it: it reads the TLVs from the start of the block, drops whatever fails to parse,
//!   so a bad CRC32C, malformed or leftover TLV bytes there go unchecked;
//! * it refuses what we accept: a v1 `PROXY UNKNOWN` line whose (ignored) rest is not UTF-8;
//! * where it agrees with us against `ppp` or `proxy-header`: one space after `PROXY`, the
//!   protocol word, the 107-byte line, a lone LF, `UNKNOWN` with fields, LOCAL addresses not
//!   exposed, CRC32C, TLVs filling the length, UNIQUE_ID's 128 bytes, PROXY with UNSPEC, a
//!   length shorter than the address block.

use std::net::SocketAddr;

use ippin_proxy_protocol::{Addresses, Command, Tlv, V1Builder, V2Builder, parse};
use ppp::PartialResult;
use proptest::prelude::*;

/// What a parser made of an input, reduced to what can be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted: the source it exposes (None: no address) and bytes used.
    Accept(Option<SocketAddr>, usize),
    Incomplete,
    Reject,
}

pub(crate) fn ours(input: &[u8]) -> Outcome {
    match parse(input) {
        Ok((h, used)) => Outcome::Accept(h.source(), used),
        Err(e) if e.is_incomplete() => Outcome::Incomplete,
        Err(_) => Outcome::Reject,
    }
}

pub(crate) fn ppp(input: &[u8]) -> Outcome {
    use ppp::{HeaderResult, v1, v2};
    let r = HeaderResult::parse(input);
    if r.is_incomplete() {
        return Outcome::Incomplete;
    }
    match r {
        HeaderResult::V1(Ok(h)) => {
            let src = match h.addresses {
                v1::Addresses::Unknown => None,
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
            };
            Outcome::Accept(src, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            let src = match h.addresses {
                v2::Addresses::IPv4(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                v2::Addresses::IPv6(a) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                _ => None,
            };
            Outcome::Accept(src, h.len())
        }
        _ => Outcome::Reject,
    }
}

pub(crate) fn pprs(input: &[u8]) -> Outcome {
    use proxy_protocol_rs::ParseError;
    match proxy_protocol_rs::parse(input) {
        Ok((h, used)) => Outcome::Accept(h.source_inet(), used),
        Err(ParseError::Incomplete) => Outcome::Incomplete,
        Err(_) => Outcome::Reject,
    }
}

pub(crate) fn proxy_header(input: &[u8]) -> Outcome {
    use proxy_header::{Error, ParseConfig, ProxyHeader};
    match ProxyHeader::parse(input, ParseConfig::default()) {
        Ok((h, used)) => Outcome::Accept(h.proxied_address().map(|a| a.source), used),
        Err(Error::BufferTooShort) => Outcome::Incomplete,
        Err(_) => Outcome::Reject,
    }
}

use crate::vectors::{V1_VALID, tcp4_block, tlv, v2, v2_valid};
use Outcome::{Accept, Incomplete, Reject};

fn src(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// One input on which we deliberately differ from a peer crate.
pub(crate) struct Difference {
    pub(crate) input: Vec<u8>,
    pub(crate) ours: Outcome,
    pub(crate) ppp: Outcome,
    pub(crate) proxy_header: Outcome,
    /// `proxy-protocol-rs`.
    pub(crate) pprs: Outcome,
    /// The spec's reason, paraphrased (docs/proxy-protocol.md lists them).
    pub(crate) why: &'static str,
}

fn with(tail: &[u8]) -> Vec<u8> {
    let mut body = tcp4_block();
    body.extend_from_slice(tail);
    v2(0x21, 0x11, &body)
}

/// Every input where we deliberately differ, with what each parser does.
/// Keep in step with the table in docs/proxy-protocol.md.
pub(crate) fn differences() -> Vec<Difference> {
    let s = src("198.51.100.7:51234");
    let d = |input: &[u8], ours, ppp, proxy_header, pprs, why| Difference {
        input: input.to_vec(),
        ours,
        ppp,
        proxy_header,
        pprs,
        why,
    };
    let local = |tail: &[u8]| {
        let mut body = tcp4_block();
        body.extend_from_slice(tail);
        v2(0x20, 0x11, &body)
    };
    vec![
        d(b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n", Reject, Accept(src("1.2.3.4:80"), 36), Accept(src("1.2.3.4:80"), 36), Accept(src("1.2.3.4:80"), 36),
          "ports are decimal digits only"),
        d(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n", Reject, Reject, Accept(src("1.2.3.4:80"), 36), Accept(src("1.2.3.4:80"), 36),
          "no leading zeros in ports (octal confusion)"),
        d(b"PROXYxTCP4 1.2.3.4 5.6.7.8 80 443\r\n", Reject, Reject, Accept(src("1.2.3.4:80"), 35), Reject,
          "exactly one space after PROXY"),
        d(b"PROXY UNKNOWNJUNK\r\n", Reject, Reject, Accept(None, 19), Reject,
          "the protocol is TCP4, TCP6 or UNKNOWN, followed by a space or CRLF"),
        d(b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n",
          Reject, Reject, Accept(None, 108), Reject,
          "a line is at most 107 bytes with its CRLF"),
        d(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n", Reject, Reject, Incomplete, Incomplete,
          "a lone LF never ends the line"),
        d(b"PROXY UNKNOWN a b c d e\r\n", Accept(None, 25), Incomplete, Accept(None, 25), Accept(None, 25),
          "after UNKNOWN the rest of the line is ignored"),
        d(&v2(0x20, 0x11, &tcp4_block()), Accept(None, 28), Accept(s, 28), Accept(None, 28), Accept(None, 28),
          "LOCAL: use the real endpoints, ignore the address block"),
        d(&with(&tlv(0x03, &[1, 2, 3, 4])), Reject, Accept(s, 35), Accept(s, 35), Reject,
          "a CRC32C that does not match makes the header invalid"),
        d(&with(&[0x04, 0x00]), Reject, Accept(s, 30), Accept(s, 30), Reject,
          "TLVs fill the length exactly; leftover bytes are not a TLV"),
        d(&with(&[0x02, 0x00, 0x09, b'a']), Reject, Accept(s, 32), Accept(s, 32), Reject,
          "a TLV may not run past the header"),
        d(&with(&tlv(0x05, &[0; 129])), Reject, Accept(s, 160), Accept(s, 160), Reject,
          "UNIQUE_ID is at most 128 bytes"),
        d(&with(&tlv(0x02, b"\xff\xfe")), Reject, Accept(s, 33), Accept(s, 33), Accept(s, 33),
          "AUTHORITY is UTF-8"),
        d(&with(&[tlv(0x02, b"a"), tlv(0x02, b"b")].concat()), Reject, Accept(s, 36), Accept(s, 36), Accept(s, 36),
          "(our choice) a type that describes the connection once may not repeat"),
        d(&v2(0x21, 0x00, &tcp4_block()), Reject, Accept(None, 28), Accept(None, 28), Reject,
          "(our choice) after the address block only TLVs; UNSPEC has no address block"),
        d(&v2(0x21, 0x11, &tcp4_block()[..8]), Reject, Reject, Incomplete, Reject,
          "a length shorter than the address block is invalid, never incomplete"),
        // Rows where proxy-protocol-rs is the one that differs.
        d(&with(&tlv(0x30, b"\xff\xfe")), Reject, Accept(s, 33), Accept(s, 33), Accept(s, 33),
          "NETNS is US-ASCII (ours: UTF-8); proxy-protocol-rs decodes it lossily"),
        d(&local(&tlv(0x03, &[1, 2, 3, 4])), Reject, Accept(s, 35), Accept(None, 35), Accept(None, 35),
          "LOCAL: the TLVs after the address block are still checked, CRC32C included"),
        d(&local(&[0x04, 0x00]), Reject, Accept(s, 30), Accept(None, 30), Accept(None, 30),
          "LOCAL: TLVs fill the length exactly there too"),
        d(b"PROXY UNKNOWN \xff\r\n", Accept(None, 17), Reject, Accept(None, 17), Reject,
          "after UNKNOWN the rest of the line is ignored, whatever its bytes"),
    ]
}

#[test]
fn documented_differences_hold() {
    for (i, d) in differences().iter().enumerate() {
        let got = (
            ours(&d.input),
            ppp(&d.input),
            proxy_header(&d.input),
            pprs(&d.input),
        );
        assert_eq!(
            got,
            (d.ours, d.ppp, d.proxy_header, d.pprs),
            "difference {i} ({}): {:?}",
            d.why,
            String::from_utf8_lossy(&d.input)
        );
        assert!(
            got.0 != got.1 || got.0 != got.2 || got.0 != got.3,
            "difference {i} is no difference"
        );
    }
}

fn check_agreement(input: &[u8]) -> Result<(), TestCaseError> {
    let (o, p, h, r) = (ours(input), ppp(input), proxy_header(input), pprs(input));
    if let (Accept(os, ou), Accept(ps, pu), Accept(hs, hu), Accept(rs, ru)) = (o, p, h, r) {
        prop_assert_eq!(ou, pu, "bytes used, ours vs ppp: {:02x?}", input);
        prop_assert_eq!(ou, hu, "bytes used, ours vs proxy-header: {:02x?}", input);
        prop_assert_eq!(
            ou,
            ru,
            "bytes used, ours vs proxy-protocol-rs: {:02x?}",
            input
        );
        prop_assert_eq!(os, hs, "source, ours vs proxy-header: {:02x?}", input);
        prop_assert_eq!(os, rs, "source, ours vs proxy-protocol-rs: {:02x?}", input);
        // ppp exposes the address block of LOCAL headers (documented).
        let local = input.first() == Some(&0x0D) && input.get(12) == Some(&0x20);
        if !local {
            prop_assert_eq!(os, ps, "source, ours vs ppp: {:02x?}", input);
        }
    }
    Ok(())
}

#[test]
fn all_agree_on_the_valid_vectors() {
    for &(line, _) in V1_VALID.iter() {
        let (o, p, h, r) = (ours(line), ppp(line), proxy_header(line), pprs(line));
        assert_eq!((o, o, o), (p, h, r), "{:?}", String::from_utf8_lossy(line));
    }
    for (h, _) in v2_valid() {
        check_agreement(&h).unwrap();
    }
}

fn v4() -> impl Strategy<Value = std::net::SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| std::net::SocketAddrV4::new(ip.into(), port))
}

fn v6() -> impl Strategy<Value = std::net::SocketAddrV6> {
    (any::<u128>(), any::<u16>())
        .prop_map(|(ip, port)| std::net::SocketAddrV6::new(ip.into(), port, 0, 0))
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let addrs = prop_oneof![
        Just(Addresses::Unspec),
        (v4(), v4()).prop_map(|(src, dst)| Addresses::Tcp4 { src, dst }),
        (v6(), v6()).prop_map(|(src, dst)| Addresses::Tcp6 { src, dst }),
    ];
    (
        addrs,
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(a, pick, value)| {
            if pick % 3 == 0 {
                return V1Builder::new().addresses(a).unwrap().encode().unwrap();
            }
            let command = if pick % 7 == 0 {
                Command::Local
            } else {
                Command::Proxy
            };
            let a = if command == Command::Local {
                Addresses::Unspec
            } else {
                a
            };
            let mut b = V2Builder::new(command).addresses(a).unwrap();
            b = match pick % 5 {
                0 => b.tlv(Tlv::Noop(&value)).unwrap(),
                1 => b.tlv(Tlv::Alpn(&value)).unwrap(),
                2 => b
                    .tlv(Tlv::Custom {
                        kind: 0xE5,
                        value: &value,
                    })
                    .unwrap(),
                3 => b.crc32c().unwrap(),
                _ => b,
            };
            b.encode().unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Where all four accept, they agree on the bytes used and the source.
    #[test]
    fn all_agree_where_all_accept(h in header(), at in any::<usize>(), xor in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut input = h.clone();
        input.extend_from_slice(&tail);
        check_agreement(&input)?;
        // One corrupted byte: whatever all accept, they still agree on.
        let i = at % h.len();
        input[i] ^= xor;
        check_agreement(&input)?;
        // Truncations.
        check_agreement(&h[..at % h.len()])?;
    }
}
