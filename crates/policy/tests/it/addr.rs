//! The observed address: canonical form, trust, port 0, provenance names.

use std::net::{IpAddr, SocketAddr};

use ippin_policy::{ObservedAddr, Provenance, canonical_ip};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn canonical_forms() {
    let table = [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::ffff:0.0.0.0", "0.0.0.0"),
        ("::192.0.2.1", "::192.0.2.1"), // IPv4-compatible stays IPv6
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::1", "2001:db8::1"),
        ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"), // NAT64 is not mapped
        ("::ffff:0:192.0.2.1", "::ffff:0:c000:201"), // IPv4-translated is not mapped
    ];
    for (input, want) in table {
        assert_eq!(canonical_ip(ip(input)), ip(want), "{input}");
    }
}

#[test]
fn every_provenance_has_a_stable_name() {
    let table = [
        (Provenance::Direct, "direct"),
        (Provenance::ProxyV1, "proxy_v1"),
        (Provenance::ProxyV2, "proxy_v2"),
        (Provenance::SignedPropagation, "signed_propagation"),
        (Provenance::ForwardedHeader, "forwarded"),
    ];
    for (p, name) in table {
        assert_eq!(p.as_str(), name);
        assert_eq!(p.to_string(), name);
        let seen = ObservedAddr::new("[::ffff:198.51.100.2]:4000".parse().unwrap(), p, true);
        assert_eq!(seen.provenance(), p);
        assert_eq!(seen.ip(), ip("198.51.100.2"));
        assert!(seen.is_trusted());
    }
    // A LOCAL header names no client: asked to trust it, the observation refuses.
    let local = ObservedAddr::new(
        "198.51.100.2:4000".parse().unwrap(),
        Provenance::ProxyLocal,
        true,
    );
    assert_eq!(Provenance::ProxyLocal.as_str(), "proxy_local");
    assert_eq!(local.provenance(), Provenance::ProxyLocal);
    assert!(!local.is_trusted());
    assert_eq!(local.port(), 0);
}

#[test]
fn trust_and_port_zero() {
    let addr: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
    let trusted = ObservedAddr::new(addr, Provenance::Direct, true);
    assert!(trusted.is_trusted());
    assert_eq!(trusted.port(), 443);
    assert_eq!(trusted.socket_addr(), addr);

    let untrusted = ObservedAddr::new(addr, Provenance::ProxyV2, false);
    assert!(!untrusted.is_trusted());
    assert_eq!(
        untrusted.port(),
        0,
        "untrusted uses the compatible port-0 form"
    );
    assert_eq!(untrusted.ip(), addr.ip());

    let port_zero = ObservedAddr::new("192.0.2.1:0".parse().unwrap(), Provenance::ProxyV1, true);
    assert!(!port_zero.is_trusted(), "port 0 is never trusted");

    let via_fn = ObservedAddr::untrusted(ip("::ffff:192.0.2.1"), Provenance::ForwardedHeader);
    assert_eq!(via_fn.ip(), ip("192.0.2.1"));
    assert_eq!(via_fn.port(), 0);
    assert!(!via_fn.is_trusted());

    let unknown = ObservedAddr::unknown(Provenance::ForwardedHeader);
    assert!(!unknown.is_trusted());
    assert!(ip("0.0.0.0") == unknown.ip());
}
