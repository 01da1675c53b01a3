//! PROXY v2 over UDP: the datagram parser and the datagram decision on
//! arbitrary bytes, and a round trip through the datagram encoder.
//!
//! Raw input: `parse_datagram` never panics, accepts only what the stream
//! parser accepts with a DGRAM family (UDP4, UDP6, or LOCAL), never asks for
//! more bytes, and each refusal is the one the bytes call for.
//! `decide_datagram` with each mode and a trusted or untrusted peer agrees
//! with those rules (peers also as IPv4-mapped IPv6): a header is refused
//! before parsing in mode off or from an untrusted peer, an accepted payload
//! never begins a second header, and no other refusal appears.
//! Structured: addresses and a payload from the input, encoded with
//! `encode_datagram`, parse back to the same source and payload.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ippin_proxy_protocol::{
    Addresses, Command, DatagramError, DatagramRefusal, Detection, Error, Header,
    ListenerPolicy, ProxyMode, Refusal, V2Builder, detect, parse, parse_datagram,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_datagram(data);
    match &parsed {
        Ok((header, used)) => {
            assert!(*used <= data.len());
            let Header::V2(h) = header else {
                panic!("a datagram header is v2: {header:?}");
            };
            let family = h.family_byte();
            let local = h.command() == Command::Local;
            assert!(
                matches!(family, 0x12 | 0x22) || (local && family == 0x00),
                "family {family:#04x} accepted"
            );
            assert_eq!(parse(data).ok(), Some((*header, *used)), "the stream parser agrees");
        }
        Err(DatagramError::Invalid(e)) => {
            assert!(!matches!(e, Error::Incomplete { .. }), "never incomplete");
            assert_eq!(parse(data).err().as_ref(), Some(e), "the stream parser's error");
        }
        Err(DatagramError::Truncated { len, .. }) => assert_eq!(*len, data.len()),
        Err(DatagramError::V1Header) => {
            assert!(data.first() == Some(&b'P') && detect(data) != Detection::NotHeader);
        }
        Err(DatagramError::StreamFamily { family }) => {
            assert_eq!(family & 0x0F, 0x1);
            assert_eq!(data.get(13), Some(family));
        }
        Err(DatagramError::UnsupportedFamily { family }) => {
            assert_eq!(data.get(13), Some(family));
            assert!(!matches!(family, 0x12 | 0x22));
        }
        Err(other) => panic!("a datagram error this target does not know: {other:?}"),
    }

    // The trusted proxy also as an IPv4-mapped IPv6 peer (a dual-stack socket's form):
    // trusted the same.
    let trusted: [SocketAddr; 2] = [
        "10.0.0.5:40000".parse().unwrap(),
        "[::ffff:10.0.0.5]:40000".parse().unwrap(),
    ];
    let others: [SocketAddr; 2] = [
        "192.0.2.9:40000".parse().unwrap(),
        "[2001:db8::9]:40000".parse().unwrap(),
    ];
    for mode in [ProxyMode::On, ProxyMode::Off, ProxyMode::Unspecified] {
        let policy = ListenerPolicy::new(mode)
            .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
        for peer in trusted.into_iter().chain(others) {
            let trusted_peer = trusted.contains(&peer);
            let decided = policy.decide_datagram(peer, data);
            let begins_header = !data.is_empty() && detect(data) != Detection::NotHeader;
            match decided {
                Ok(accept) => {
                    // Datagram sources are not verified by default: never trusted.
                    assert!(!accept.observed.trusted);
                    assert!(accept.payload_offset <= data.len());
                    let payload = &data[accept.payload_offset..];
                    assert!(
                        payload.is_empty() || detect(payload) == Detection::NotHeader,
                        "a payload that begins a header is refused"
                    );
                    match accept.header {
                        Some(h) => {
                            assert!(begins_header);
                            assert_ne!(mode, ProxyMode::Off);
                            assert!(trusted_peer);
                            assert_eq!(parsed.as_ref().ok(), Some(&(h, accept.payload_offset)));
                        }
                        None => {
                            assert!(!begins_header);
                            assert_ne!(mode, ProxyMode::On, "mode on requires a header");
                            assert_eq!(accept.observed.addr.ip(), peer.ip().to_canonical());
                        }
                    }
                    if mode == ProxyMode::Unspecified && accept.header.is_some() {
                        assert!(!accept.observed.trusted, "unspecified: never trusted");
                        assert_eq!(accept.observed.addr.port(), 0);
                    }
                }
                Err(DatagramRefusal::Policy(Refusal::HeaderForbidden)) => {
                    assert!(begins_header && mode == ProxyMode::Off);
                }
                Err(DatagramRefusal::Policy(Refusal::UntrustedProxy { peer: named })) => {
                    assert!(begins_header && !trusted_peer && mode != ProxyMode::Off);
                    assert_eq!(named, peer.ip().to_canonical());
                }
                Err(DatagramRefusal::Policy(Refusal::HeaderRequired)) => {
                    assert!(!begins_header && mode == ProxyMode::On);
                }
                Err(DatagramRefusal::Policy(Refusal::DuplicateHeader)) => {
                    let (_, offset) = parsed.as_ref().expect("the first header parsed");
                    let payload = &data[*offset..];
                    assert!(!payload.is_empty() && detect(payload) != Detection::NotHeader);
                    assert!(trusted_peer && mode != ProxyMode::Off);
                }
                Err(DatagramRefusal::Header(e)) => {
                    assert!(begins_header && trusted_peer && mode != ProxyMode::Off);
                    assert_eq!(parsed.as_ref().err(), Some(&e));
                }
                Err(other) => panic!("a refusal this target does not expect: {other:?}"),
            }
        }
    }

    // Structured round trip: 4 or 16 + 16 address bytes, two ports, the rest payload.
    let v6 = data.first().is_some_and(|b| b & 1 == 1);
    let need = if v6 { 1 + 32 + 4 } else { 1 + 8 + 4 };
    if data.len() < need {
        return;
    }
    let port = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    let (src, dst): (SocketAddr, SocketAddr) = if v6 {
        let a: [u8; 16] = data[1..17].try_into().unwrap();
        let b: [u8; 16] = data[17..33].try_into().unwrap();
        (
            (Ipv6Addr::from(a), port(33)).into(),
            (Ipv6Addr::from(b), port(35)).into(),
        )
    } else {
        let a: [u8; 4] = data[1..5].try_into().unwrap();
        let b: [u8; 4] = data[5..9].try_into().unwrap();
        (
            (Ipv4Addr::from(a), port(9)).into(),
            (Ipv4Addr::from(b), port(11)).into(),
        )
    };
    let payload = &data[need..];
    let datagram = V2Builder::new(Command::Proxy)
        .addresses(Addresses::udp(src, dst).unwrap())
        .unwrap()
        .encode_datagram(payload)
        .unwrap();
    let (header, offset) = parse_datagram(&datagram).expect("the encoder's datagram parses");
    assert_eq!(header.source(), Some(src));
    assert_eq!(header.destination(), Some(dst));
    assert_eq!(&datagram[offset..], payload);
});
