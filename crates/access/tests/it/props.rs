//! The mutual-TLS decision against a naive reference, on generated pins, addresses, trust and
//! roles (real certificates, so the extraction is part of what is tested).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use ippin_access::observed::{ObservedAddr, Provenance};
use ippin_access::{User, tls};
use proptest::prelude::*;

use crate::fixtures::{Issuer, NOW};

fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(Issuer::new)
}

/// A small address space so that pin and observation often meet, in both families and the
/// mapped spelling.
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..3).prop_map(|d| IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))),
        (0u16..3).prop_map(|d| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, d))),
        (0u8..3).prop_map(|d| IpAddr::V6(Ipv4Addr::new(192, 0, 2, d).to_ipv6_mapped())),
    ]
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The rules written out plainly.
fn reference(
    known: bool,
    requires_pin: bool,
    pin: Option<IpAddr>,
    seen: IpAddr,
    trusted: bool,
    port: u16,
) -> &'static str {
    if !known {
        return "unknown_user";
    }
    let trusted = trusted && port != 0;
    match pin {
        None if requires_pin => "pinned_ip_missing",
        None => "allow",
        Some(_) if !trusted => "untrusted_client_ip",
        Some(p) if canonical(p) != canonical(seen) => "pinned_ip_mismatch",
        Some(_) => "allow",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn decide_matches_the_reference(
        known in any::<bool>(),
        requires_pin in any::<bool>(),
        pin in proptest::option::of(ip()),
        seen in ip(),
        trusted in any::<bool>(),
        port in prop_oneof![Just(0u16), 1u16..],
        provenance in prop_oneof![
            Just(Provenance::Direct), Just(Provenance::ProxyV1), Just(Provenance::ProxyV2),
            Just(Provenance::ForwardedHeader), Just(Provenance::SignedPropagation),
        ],
    ) {
        // The issuer writes canonical pins: a mapped one is written as IPv4.
        let der = issuer().client("u", pin.map(canonical));
        let mut users = HashMap::new();
        if known {
            users.insert("u".to_owned(), User::new(requires_pin, vec!["r".into()]));
        }
        let observed = ObservedAddr::new(SocketAddr::new(seen, port), provenance, trusted);
        let got = tls::decide_der(&der, &users, &observed, NOW);
        prop_assert_eq!(got.access.code(), reference(known, requires_pin, pin, seen, trusted, port));
    }

    #[test]
    fn local_never_satisfies_a_pin(seen in ip(), port in 1u16..) {
        let der = issuer().client("u", Some(canonical(seen)));
        let users = HashMap::from([("u".to_owned(), User::new(true, vec!["r".into()]))]);
        let observed = ObservedAddr::new(SocketAddr::new(seen, port), Provenance::ProxyLocal, true);
        prop_assert_eq!(tls::decide_der(&der, &users, &observed, NOW).access.code(), "untrusted_client_ip");
    }
}
