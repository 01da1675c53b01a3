//! X-Forwarded-For and RFC 7239 Forwarded, both modes.

use std::net::SocketAddr;

use ipnet::IpNet;
use ippin_policy::{
    Error, ForwardedMode, MAX_FORWARDED_BYTES, MAX_FORWARDED_HOPS, ObservedAddr, Provenance,
    client_from_forwarded, client_from_x_forwarded_for,
};

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What an outcome looks like in a table: `Ok("ip port provenance trusted")` or `Err(())`.
fn show(r: Result<ObservedAddr, Error>) -> Result<String, String> {
    match r {
        Ok(o) => Ok(format!(
            "{} {} {} {}",
            o.ip(),
            o.port(),
            o.provenance(),
            o.is_trusted()
        )),
        Err(e @ Error::Forwarded { .. }) => Err(e.to_string()),
        Err(other) => panic!("unexpected error kind {other:?}"),
    }
}

/// Up to three proxies in front (the chains below have up to two trusted entries).
fn proxies() -> ForwardedMode {
    ForwardedMode::TrustedProxies {
        proxies: vec![
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ],
        hops: 3,
    }
}

const PEER: &str = "10.1.1.1:40000";

#[test]
fn xff_compatible_strict() {
    let m = ForwardedMode::EveryPeerIsAProxy;
    let ok: [(&[&str], &str); 8] = [
        // every peer is a proxy in this mode: no header names no client
        (&[], "10.1.1.1 0 forwarded false"),
        (&["198.51.100.7"], "198.51.100.7 40000 forwarded true"),
        (&["  198.51.100.7\t"], "198.51.100.7 40000 forwarded true"),
        (&["198.51.100.7:5555"], "198.51.100.7 5555 forwarded true"),
        (&["[2001:db8::7]:5555"], "2001:db8::7 5555 forwarded true"),
        (&["2001:db8::7"], "2001:db8::7 40000 forwarded true"),
        (
            &["[::ffff:198.51.100.7]:5555"],
            "198.51.100.7 5555 forwarded true",
        ),
        (&["198.51.100.7:0"], "198.51.100.7 0 forwarded false"),
    ];
    for (lines, want) in ok {
        assert_eq!(
            show(client_from_x_forwarded_for(lines, peer(PEER), &m)),
            Ok(want.to_string()),
            "{lines:?}"
        );
    }
    let bad: [&[&str]; 16] = [
        &["198.51.100.7", "198.51.100.8"],
        &["198.51.100.7, 198.51.100.8"],
        &["198.51.100.7,"],
        &[""],
        &["unknown"],
        &["_hidden"],
        &["198.51.100.7:+80"],
        &["198.51.100.7:65536"],
        &["198.51.100.7:"],
        &["198.051.100.7"],
        &["[2001:db8::7"],
        &["[2001:db8::7]x"],
        &["fe80::1%eth0"],
        &["198.51.100.7 198.51.100.8"],
        &["[198.51.100.7]:80"],
        &["example.com"],
    ];
    for lines in bad {
        assert!(
            show(client_from_x_forwarded_for(lines, peer(PEER), &m)).is_err(),
            "{lines:?}"
        );
    }
    let e = show(client_from_x_forwarded_for(
        &["198.51.100.7:+80"],
        peer(PEER),
        &m,
    ))
    .unwrap_err();
    assert!(e.starts_with("X-Forwarded-For header: port \"+80\""), "{e}");
}

#[test]
fn xff_trusted_proxies() {
    let m = proxies();
    let ok: [(&[&str], &str, &str); 14] = [
        // untrusted peer: headers are not believed
        (
            &["198.51.100.7"],
            "203.0.113.1:999",
            "203.0.113.1 999 direct true",
        ),
        (
            &["10.9.9.9"],
            "203.0.113.1:999",
            "203.0.113.1 999 direct true",
        ),
        // trusted peer, no header: a proxy named no client; its own address is untrusted
        (&[], PEER, "10.1.1.1 0 forwarded false"),
        // the rightmost untrusted entry is the client, never the leftmost
        (
            &["6.6.6.6, 198.51.100.7"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["6.6.6.6, 198.51.100.7, 10.2.2.2"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["6.6.6.6", "198.51.100.7,10.2.2.2"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["198.51.100.7", "10.2.2.2", "[2001:db8:ffff::1]:80"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        // mapped hops are matched by the IPv4 trusted network
        (
            &["198.51.100.7, ::ffff:10.2.2.2"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["198.51.100.7"],
            "[::ffff:10.1.1.1]:40000",
            "198.51.100.7 40000 forwarded true",
        ),
        // unknown before any untrusted IP: untrusted observation without address
        (
            &["198.51.100.7, unknown, 10.2.2.2"],
            PEER,
            "0.0.0.0 0 forwarded false",
        ),
        // unknown left of the client is not reached
        (
            &["unknown, 198.51.100.7"],
            PEER,
            "198.51.100.7 40000 forwarded true",
        ),
        // every entry trusted and fewer than `hops`: the chain names no client
        (&["10.3.3.3, 10.2.2.2"], PEER, "10.3.3.3 0 forwarded false"),
        // the entry at depth `hops` is the client, even inside the trusted networks
        (
            &["198.51.100.7, 10.4.4.4, 10.3.3.3, 10.2.2.2"],
            PEER,
            "10.4.4.4 40000 forwarded true",
        ),
        (
            &["[2001:db8::7]:443"],
            PEER,
            "2001:db8::7 443 forwarded true",
        ),
    ];
    for (lines, p, want) in ok {
        assert_eq!(
            show(client_from_x_forwarded_for(lines, peer(p), &m)),
            Ok(want.to_string()),
            "{lines:?} {p}"
        );
    }
    // a peer that is not a proxy is the client: its headers are not parsed either, so junk
    // nobody would believe does not get a direct client refused (both kinds of header)
    for lines in [
        &["junk"][..],
        &["198.51.100.7,,10.2.2.2"],
        &["_hidden"],
        &[&"1.2.3.4, ".repeat(40)],
    ] {
        assert_eq!(
            show(client_from_x_forwarded_for(
                lines,
                peer("203.0.113.1:999"),
                &m
            )),
            Ok("203.0.113.1 999 direct true".to_owned()),
            "{lines:?}"
        );
        assert_eq!(
            show(client_from_forwarded(lines, peer("203.0.113.1:999"), &m)),
            Ok("203.0.113.1 999 direct true".to_owned()),
            "{lines:?}"
        );
    }
    // a malformed entry anywhere is an error
    for lines in [
        &["junk, 198.51.100.7"][..],
        &["198.51.100.7,,10.2.2.2"],
        &["198.51.100.7", ""],
        &["_hidden"],
    ] {
        assert!(
            show(client_from_x_forwarded_for(lines, peer(PEER), &m)).is_err(),
            "{lines:?}"
        );
    }
}

#[test]
fn forwarded_compatible_strict() {
    let m = ForwardedMode::EveryPeerIsAProxy;
    let ok: [(&str, &str); 7] = [
        ("for=198.51.100.7", "198.51.100.7 40000 forwarded true"),
        (
            "For=\"198.51.100.7:8080\"",
            "198.51.100.7 8080 forwarded true",
        ),
        (
            "for=\"[2001:db8::7]:4711\"",
            "2001:db8::7 4711 forwarded true",
        ),
        (
            "for=\"[2001:db8::7]\";proto=https;by=10.0.0.1",
            "2001:db8::7 40000 forwarded true",
        ),
        (
            "  proto=http ; for=198.51.100.7 ;host=example.com",
            "198.51.100.7 40000 forwarded true",
        ),
        (
            "for=\"198.51.100.7:_port\"",
            "198.51.100.7 40000 forwarded true",
        ),
        (
            "for=\"\\1\\98.51.100.7\"",
            "198.51.100.7 40000 forwarded true",
        ),
    ];
    for (line, want) in ok {
        assert_eq!(
            show(client_from_forwarded(&[line], peer(PEER), &m)),
            Ok(want.to_string()),
            "{line}"
        );
    }
    let bad = [
        "for=198.51.100.7, for=198.51.100.8",
        "for=unknown",
        "for=_hidden",
        "proto=https",
        "for=2001:db8::7",
        "for=\"2001:db8::7\"",
        "for=198.51.100.7;for=198.51.100.8",
        "for=\"198.51.100.7",
        "for=198.51.100.7,",
        "for=",
        "for 198.51.100.7",
        "for=198.51.100.7 x",
        "for=\"198.51.100.7:99999\"",
        "",
    ];
    for line in bad {
        assert!(
            show(client_from_forwarded(&[line], peer(PEER), &m)).is_err(),
            "{line:?}"
        );
    }
    assert!(
        show(client_from_forwarded(
            &["for=1.2.3.4", "for=1.2.3.5"],
            peer(PEER),
            &m
        ))
        .is_err()
    );
}

#[test]
fn forwarded_trusted_proxies() {
    let m = proxies();
    let ok: [(&[&str], &str); 8] = [
        (
            &["for=6.6.6.6, for=198.51.100.7;by=10.2.2.2, for=10.2.2.2"],
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["for=6.6.6.6", "for=\"[2001:db8::7]:4711\""],
            "2001:db8::7 4711 forwarded true",
        ),
        (
            &["for=198.51.100.7, for=unknown"],
            "0.0.0.0 0 forwarded false",
        ),
        (
            &["for=198.51.100.7, for=_hidden;proto=http"],
            "0.0.0.0 0 forwarded false",
        ),
        (
            &["for=198.51.100.7, proto=http"],
            "0.0.0.0 0 forwarded false",
        ),
        (
            &["for=_hidden, for=198.51.100.7"],
            "198.51.100.7 40000 forwarded true",
        ),
        (
            &["for=\"[::ffff:198.51.100.7]:1\""],
            "198.51.100.7 1 forwarded true",
        ),
        (&["for=10.3.3.3,for=10.2.2.2"], "10.3.3.3 0 forwarded false"),
    ];
    for (lines, want) in ok {
        assert_eq!(
            show(client_from_forwarded(lines, peer(PEER), &m)),
            Ok(want.to_string()),
            "{lines:?}"
        );
    }
    assert_eq!(
        show(client_from_forwarded(
            &["for=198.51.100.7"],
            peer("192.0.2.1:5"),
            &m
        )),
        Ok("192.0.2.1 5 direct true".to_string())
    );
    for lines in [
        &["for=x, for=198.51.100.7"][..],
        &["for=198.51.100.7,,for=1.2.3.4"],
        &["for=\"[::1\""],
    ] {
        assert!(
            show(client_from_forwarded(lines, peer(PEER), &m)).is_err(),
            "{lines:?}"
        );
    }
}

#[test]
fn bounded() {
    let m = proxies();
    let hops = vec!["10.2.2.2"; MAX_FORWARDED_HOPS + 1].join(",");
    let e = show(client_from_x_forwarded_for(&[&hops], peer(PEER), &m)).unwrap_err();
    assert!(e.contains("hops"), "{e}");
    let fhops = vec!["for=10.2.2.2"; MAX_FORWARDED_HOPS + 1].join(",");
    assert!(
        show(client_from_forwarded(&[&fhops], peer(PEER), &m))
            .unwrap_err()
            .contains("hops")
    );
    let ok = vec!["10.2.2.2"; MAX_FORWARDED_HOPS].join(",");
    assert!(show(client_from_x_forwarded_for(&[&ok], peer(PEER), &m)).is_ok());
    let long = " ".repeat(MAX_FORWARDED_BYTES) + "1.2.3.4";
    assert!(
        show(client_from_x_forwarded_for(&[&long], peer(PEER), &m))
            .unwrap_err()
            .contains("bytes")
    );
    let lines = vec!["10.2.2.2"; MAX_FORWARDED_HOPS + 1];
    assert!(show(client_from_x_forwarded_for(&lines, peer(PEER), &m)).is_err());
}

#[test]
fn provenance_is_forwarded_only_when_a_header_was_believed() {
    let o = client_from_x_forwarded_for(&["198.51.100.7"], peer(PEER), &proxies()).unwrap();
    assert_eq!(o.provenance(), Provenance::ForwardedHeader);
    let o =
        client_from_x_forwarded_for(&["198.51.100.7"], peer("203.0.113.1:1"), &proxies()).unwrap();
    assert_eq!(o.provenance(), Provenance::Direct);
}

#[test]
fn one_hop_reads_only_the_entry_the_proxy_wrote() {
    let m = ForwardedMode::trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
    // A client inside the trusted network prefixes an address it wants to be seen as: the
    // proxy appends the client's own address, and that is what is believed.
    let o = client_from_x_forwarded_for(&["198.51.100.7, 10.5.5.5"], peer(PEER), &m).unwrap();
    assert_eq!(o.ip().to_string(), "10.5.5.5");
    assert!(o.is_trusted());
    let o = client_from_forwarded(&["for=198.51.100.7, for=10.5.5.5"], peer(PEER), &m).unwrap();
    assert_eq!(o.ip().to_string(), "10.5.5.5");
    // The same with several lines.
    let o = client_from_x_forwarded_for(&["198.51.100.7", "10.5.5.5"], peer(PEER), &m).unwrap();
    assert_eq!(o.ip().to_string(), "10.5.5.5");
    // A trusted proxy that sends no header is not a client.
    let o = client_from_x_forwarded_for(&[], peer(PEER), &m).unwrap();
    assert!(!o.is_trusted());
    assert_eq!(o.port(), 0);
    // Compatible strict: every peer is a proxy, so no header names no client.
    let o =
        client_from_x_forwarded_for(&[], peer(PEER), &ForwardedMode::EveryPeerIsAProxy).unwrap();
    assert!(!o.is_trusted());
    let o = client_from_forwarded(&[], peer(PEER), &ForwardedMode::EveryPeerIsAProxy).unwrap();
    assert!(!o.is_trusted());
}

/// Edges of the parsers that cargo-mutants found untested (docs/testing.md), each with the
/// reference outcome written out.
#[test]
fn parser_edges_found_by_mutation_testing() {
    let strict = ForwardedMode::EveryPeerIsAProxy;
    let m = proxies();
    // The byte bound is 8 KiB, inclusive.
    assert_eq!(MAX_FORWARDED_BYTES, 8192);
    let at_bound = " ".repeat(MAX_FORWARDED_BYTES - 7) + "1.2.3.4";
    assert_eq!(
        show(client_from_x_forwarded_for(
            &[&at_bound],
            peer(PEER),
            &strict
        )),
        Ok("1.2.3.4 40000 forwarded true".to_owned())
    );
    let fwd_at_bound = " ".repeat(MAX_FORWARDED_BYTES - 11) + "for=1.2.3.4";
    assert_eq!(
        show(client_from_forwarded(&[&fwd_at_bound], peer(PEER), &strict)),
        Ok("1.2.3.4 40000 forwarded true".to_owned())
    );
    // A port is 1 to 5 digits: six, even with leading zeros, or none, are refused.
    for entry in [
        "198.51.100.7:000080",
        "[2001:db8::7]:000080",
        "198.51.100.7:",
    ] {
        let e = show(client_from_x_forwarded_for(&[entry], peer(PEER), &strict)).unwrap_err();
        assert!(e.contains("1 to 5 digits"), "{entry}: {e}");
    }
    // A bracketed IPv6 address without a port.
    assert_eq!(
        show(client_from_x_forwarded_for(
            &["[2001:db8::7]"],
            peer(PEER),
            &strict
        )),
        Ok("2001:db8::7 40000 forwarded true".to_owned())
    );
    // Obfuscated identifiers (RFC 7239 6.3): `_` then letters, digits, `.`, `_`, `-`. They
    // name no client: untrusted where `unknown` is allowed, refused in strict mode.
    for obf in ["_a.b", "_a_b", "_a-b", "_9"] {
        assert_eq!(
            show(client_from_forwarded(
                &[&format!("for=198.51.100.7, for={obf}")],
                peer(PEER),
                &m
            )),
            Ok("0.0.0.0 0 forwarded false".to_owned()),
            "{obf}"
        );
        assert_eq!(
            show(client_from_forwarded(
                &[&format!("for=\"198.51.100.7:{obf}\"")],
                peer(PEER),
                &m
            )),
            Ok("198.51.100.7 40000 forwarded true".to_owned()),
            "port {obf}"
        );
        assert!(
            show(client_from_forwarded(
                &[&format!("for={obf}")],
                peer(PEER),
                &strict
            ))
            .is_err(),
            "{obf}"
        );
    }
    // `_` alone, or with another token character, is no identifier and no address.
    for bad in ["_", "_a!b", "_a*b", "_a+b"] {
        let e = show(client_from_forwarded(
            &[&format!("for=198.51.100.7, for={bad}")],
            peer(PEER),
            &m,
        ))
        .unwrap_err();
        assert!(e.contains("not an IPv4 address"), "{bad}: {e}");
    }
    // Quoted strings: tab, space and visible ASCII, escaped or not; no control character, no
    // non-ASCII, escaped or not.
    for ok in [
        "for=198.51.100.7;by=\"a\tb c\"",
        "for=198.51.100.7;by=\"\\\t\\ \\a\"",
    ] {
        assert_eq!(
            show(client_from_forwarded(&[ok], peer(PEER), &strict)),
            Ok("198.51.100.7 40000 forwarded true".to_owned()),
            "{ok:?}"
        );
    }
    for bad in [
        "for=198.51.100.7;by=\"a\u{1}\"",
        "for=198.51.100.7;by=\"\u{e9}\"",
        "for=198.51.100.7;by=\"\\\u{1}\"",
        "for=198.51.100.7;by=\"\\\u{e9}\"",
        "for=198.51.100.7;by=\"\u{7f}\"",
    ] {
        assert!(
            show(client_from_forwarded(&[bad], peer(PEER), &strict)).is_err(),
            "{bad:?}"
        );
    }
}
