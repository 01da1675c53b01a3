//! PROXY v2 over UDP, sans-IO: no panic on arbitrary datagrams, and
//! `parse_datagram(encode_datagram(h, payload)) == (h, payload)`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ippin_proxy_protocol::{
    Addresses, Command, DatagramError, ListenerPolicy, ProxyMode, V2_SIGNATURE, V2Builder,
    parse_datagram,
};
use proptest::prelude::*;

fn v4() -> impl Strategy<Value = SocketAddr> {
    (any::<u32>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
}

fn v6() -> impl Strategy<Value = SocketAddr> {
    (any::<u128>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)))
}

fn pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![(v4(), v4()), (v6(), v6())]
}

/// Arbitrary bytes, and arbitrary bytes behind the v2 signature (so that
/// the parser gets past the first byte).
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|tail| {
            let mut d = V2_SIGNATURE.to_vec();
            d.extend_from_slice(&tail);
            d
        }),
        (
            0u8..=0x33,
            0u8..=0x33,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(cmd, fam, len, tail)| {
                let mut d = V2_SIGNATURE.to_vec();
                d.extend_from_slice(&[0x20 | (cmd & 1), fam, 0, len]);
                d.extend_from_slice(&tail);
                d
            }),
    ]
}

proptest! {
    #[test]
    fn no_panic_on_arbitrary_datagrams(d in datagram(), port in any::<u16>()) {
        match parse_datagram(&d) {
            Ok((h, off)) => {
                prop_assert!(off <= d.len());
                prop_assert_eq!(h.version(), 2);
                let udp_or_unspec = matches!(
                    h.addresses(),
                    Addresses::Udp4 { .. } | Addresses::Udp6 { .. } | Addresses::Unspec
                );
                prop_assert!(udp_or_unspec);
            }
            Err(DatagramError::Invalid(e)) => prop_assert!(!e.is_incomplete()),
            Err(_) => {}
        }
        let peer = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
        for mode in [ProxyMode::On, ProxyMode::Off, ProxyMode::Unspecified] {
            let policy = ListenerPolicy::new(mode).with_trusted_proxies(crate::any_peer());
            if let Ok(a) = policy.decide_datagram(peer, &d) {
                prop_assert!(a.payload_offset <= d.len());
                prop_assert_eq!(a.header.is_some(), a.payload_offset > 0);
            }
        }
    }

    #[test]
    fn encode_then_parse_round_trips(
        (src, dst) in pair(),
        local in any::<bool>(),
        crc in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = if local {
            V2Builder::new(Command::Local)
        } else {
            V2Builder::new(Command::Proxy).addresses(Addresses::udp(src, dst).unwrap()).unwrap()
        };
        if crc {
            b = b.crc32c().unwrap();
        }
        let d = b.encode_datagram(&payload).unwrap();
        let (h, off) = parse_datagram(&d).unwrap();
        prop_assert_eq!(&d[off..], &payload[..]);
        if local {
            prop_assert_eq!(h.command(), Command::Local);
            prop_assert_eq!(h.source(), None);
        } else {
            prop_assert_eq!(h.command(), Command::Proxy);
            prop_assert_eq!(h.source(), Some(src));
            prop_assert_eq!(h.destination(), Some(dst));
        }
        // Every cut inside the header is "truncated", never accepted.
        for cut in 0..off {
            let truncated = matches!(parse_datagram(&d[..cut]), Err(DatagramError::Truncated { .. }));
            prop_assert!(truncated, "cut at {}", cut);
        }
    }
}
