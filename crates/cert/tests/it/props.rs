//! Property tests: the fast path agrees with the full decoder on mutated
//! certificates; source-address text round trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use ipnet::IpNet;
use ippin_cert::ssh::SourceAddress;
// The readers that return the pin with its endpoint: the two must agree on both.
use ippin_cert::x509::{Profile, pin_at as pinned_ip, pin_fast_at as pinned_ip_fast};
use proptest::prelude::*;

fn bases() -> &'static Vec<Vec<u8>> {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        let ca = crate::x509::ca();
        vec![
            crate::x509::client(&ca, Some("192.0.2.10"), Some("192.0.2.10"), Profile::Both),
            crate::x509::client(&ca, Some("2001:db8::7"), None, Profile::Ippin),
            crate::x509::client(&ca, Some("10.0.0.1"), Some("10.0.0.2"), Profile::Teleport),
            crate::x509::client(&ca, None, None, Profile::Ippin),
            crate::prefix::client_net(&ca, "2001:db8:1:2::/64", Profile::Ippin),
            crate::x509::client_bound(&ca, "10.0.0.5", "vpce-0123456789abcdef0"),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut der: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = der.len().max(1);
        match *m {
            Mutation::Set(i, b) => {
                if let Some(x) = der.get_mut(i % n) {
                    *x = b;
                }
            }
            Mutation::Insert(i, b) => der.insert(i % (der.len() + 1), b),
            Mutation::Remove(i) => {
                if !der.is_empty() {
                    der.remove(i % n);
                }
            }
            Mutation::Truncate(i) => der.truncate(i % n),
        }
    }
    der
}

/// The agreement contract between the fast path and the full decoder.
pub(crate) fn check_agreement(der: &[u8]) {
    let full = pinned_ip(der);
    let fast = pinned_ip_fast(der);
    match (&full, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("full decoded {a:?} but fast failed: {e}"),
        (Err(e), Ok(_)) => assert_eq!(
            e.code(),
            "der",
            "fast succeeded where full failed for a pin reason: {e}"
        ),
        (Err(a), Err(b)) => {
            if a.code() != "der" {
                assert_eq!(a.code(), b.code(), "{a} / {b}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_with_full_decode(which in 0usize..6, muts in proptest::collection::vec(mutation(), 1..4)) {
        let der = apply(bases()[which].clone(), &muts);
        check_agreement(&der);
    }
}

fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 1u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), l)
            .unwrap()
            .trunc()),
        (any::<u128>(), 1u8..=128).prop_map(|(a, l)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), l)
            .unwrap()
            .trunc()),
    ]
    .prop_filter("IPv4-mapped networks are refused", |n| match n {
        IpNet::V6(v6) => v6.addr().to_ipv4_mapped().is_none(),
        IpNet::V4(_) => true,
    })
}

proptest! {
    #[test]
    fn source_address_format_parse_round_trip(nets in proptest::collection::vec(net(), 1..6)) {
        let list = SourceAddress::from_nets(nets.clone()).unwrap();
        let text = list.to_string();
        let again = SourceAddress::parse(&text).unwrap();
        prop_assert_eq!(again.nets(), nets.as_slice());
        for n in &nets {
            prop_assert!(again.matches(n.addr()));
        }
    }

    #[test]
    fn zero_prefix_is_refused_in_any_list(nets in proptest::collection::vec(net(), 0..4), at in 0usize..4, v6 in any::<bool>()) {
        let mut nets = nets;
        let zero: IpNet = if v6 { "::/0" } else { "0.0.0.0/0" }.parse().unwrap();
        nets.insert(at.min(nets.len()), zero);
        prop_assert!(SourceAddress::from_nets(nets.clone()).is_err());
        let text = nets.iter().map(|n| format!("{}/{}", n.addr(), n.prefix_len())).collect::<Vec<_>>().join(",");
        prop_assert_eq!(SourceAddress::parse(&text).unwrap_err().code(), "source_address_malformed");
    }

    #[test]
    fn source_address_parse_is_stable(s in "[0-9a-fA-F.:/,]{0,60}") {
        if let Ok(list) = SourceAddress::parse(&s) {
            let again = SourceAddress::parse(&list.to_string()).unwrap();
            prop_assert_eq!(again, list);
        }
    }
}

/// Pieces a hostile or buggy CA might put together.
fn ext_pool() -> Vec<Vec<u8>> {
    use crate::x509::{ext, printable};
    vec![
        ext("1.3.9999.1.9", None, &printable("10.0.0.1")),
        ext("1.3.9999.1.9", None, &printable("10.0.0.2")),
        ext("1.3.9999.1.9", Some(true), &printable("10.0.0.1")),
        ext("1.3.9999.1.9", Some(false), &printable("2001:db8::1")),
        ext("1.3.9999.1.9", None, &printable("::ffff:10.0.0.1")),
        ext("1.3.9999.1.9.1", None, &printable("10.0.0.1")),
        ext(
            "1.3.9999.1.9",
            None,
            &[0x0c, 0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'1'],
        ),
        ext("2.5.29.19", Some(true), &[0x30, 0x00]),
        ext("2.5.29.37", None, &[0x30, 0x00]),
        ext("1.2.3.4", None, &[0x05, 0x00]),
        // the pin's OID padded with 0x80
        [
            &[
                0x30u8, 0x14, 0x06, 0x06, 0x2b, 0x80, 0xce, 0x0f, 0x01, 0x09, 0x04, 0x0a,
            ][..],
            &printable("10.0.0.1"),
        ]
        .concat(),
    ]
}

fn rdn_pool() -> Vec<Vec<u8>> {
    use crate::x509::attr;
    vec![
        attr("1.3.9999.2.15", 0x13, b"10.0.0.1"),
        attr("1.3.9999.2.15", 0x0c, b"10.0.0.2"),
        attr("1.3.9999.1.9", 0x13, b"10.0.0.1"),
        attr("1.3.9999.2.15", 0x16, b"10.0.0.1"),
        attr("2.5.4.10", 0x0c, b"dev"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Certificates assembled from hostile pieces (versions, unique IDs,
    /// duplicate/critical/padded extensions, Teleport attributes): the two
    /// readers keep their agreement contract on every one.
    #[test]
    fn fast_path_agrees_on_assembled_certificates(
        version in 0usize..6,
        uids in 0usize..4,
        exts in proptest::option::of(proptest::collection::vec(0usize..11, 0..5)),
        rdns in proptest::collection::vec(0usize..5, 0..3),
    ) {
        static CA: OnceLock<ippin_cert::x509::X509Ca> = OnceLock::new();
        let ca = CA.get_or_init(crate::x509::ca);
        let versions: [Option<&[u8]>; 6] = [
            None,
            Some(&[0xa0, 0x03, 0x02, 0x01, 0x00]),
            Some(&[0xa0, 0x03, 0x02, 0x01, 0x01]),
            Some(&[0xa0, 0x03, 0x02, 0x01, 0x02]),
            Some(&[0xa0, 0x03, 0x02, 0x01, 0x03]),
            Some(&[0xa0, 0x04, 0x02, 0x02, 0x00, 0x02]),
        ];
        let uid_sets: [Vec<Vec<u8>>; 4] = [
            vec![],
            vec![vec![0x81, 0x02, 0x00, 0xab]],
            vec![vec![0x82, 0x02, 0x00, 0xab]],
            vec![vec![0x81, 0x02, 0x00, 0xab], vec![0x82, 0x02, 0x00, 0xcd]],
        ];
        let (ep, rp) = (ext_pool(), rdn_pool());
        let exts: Option<Vec<Vec<u8>>> = exts.map(|e| e.iter().map(|i| ep[*i].clone()).collect());
        let rdns: Vec<Vec<u8>> = rdns.iter().map(|i| rp[*i].clone()).collect();
        let der = crate::x509::shaped(ca, versions[version], &uid_sets[uids], &rdns, exts.as_deref());
        check_agreement(&der);
    }
}
