//! Network restrictions: parsing, the decision table, and audit events.

use std::net::IpAddr;

use ipnet::IpNet;
use ippin_policy::{Error, NetDecision, NetOperation, NetworkEvent, NetworkRestrictions};

const POLICY: &str = include_str!("../data/network_restrictions.yaml");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn decision_table() {
    let p = NetworkRestrictions::parse("nr.yaml", POLICY).unwrap();
    assert_eq!(p.allow_rules().len(), 3);
    assert_eq!(p.deny_rules().len(), 3);
    let denied = |m: Option<&str>| NetDecision::Denied {
        matched: m.map(net),
    };
    let table = [
        ("10.9.9.9", NetDecision::Allowed),
        ("::ffff:10.9.9.9", NetDecision::Allowed), // IPv4 rule matches mapped
        ("10.1.9.9", denied(Some("10.1.0.0/16"))),
        ("::ffff:10.1.9.9", denied(Some("10.1.0.0/16"))),
        ("10.1.2.3", denied(Some("10.1.2.3/32"))), // most specific deny reported
        ("192.0.2.7", NetDecision::Allowed),
        ("192.0.2.8", denied(None)),
        ("11.0.0.1", denied(None)),   // deny by default
        ("::10.9.9.9", denied(None)), // IPv4-compatible is IPv6, no IPv6 rule covers it
        ("2001:db8::1", NetDecision::Allowed),
        ("2001:db8:bad::1", denied(Some("2001:db8:bad::/48"))),
        ("2001:db9::1", denied(None)),
    ];
    for (dst, want) in table {
        assert_eq!(p.decide(ip(dst)), want, "{dst}");
    }
}

#[test]
fn ipv6_rules_never_match_ipv4() {
    let p = NetworkRestrictions::from_rules(&[net("::/0")], &[]).unwrap();
    assert!(p.decide(ip("2001:db8::1")).is_allowed());
    assert!(!p.decide(ip("192.0.2.1")).is_allowed());
    assert!(!p.decide(ip("::ffff:192.0.2.1")).is_allowed());
    let p =
        NetworkRestrictions::from_rules(&[net("0.0.0.0/0"), net("::/0")], &[net("::/0")]).unwrap();
    assert!(p.decide(ip("192.0.2.1")).is_allowed());
    assert!(p.decide(ip("::ffff:192.0.2.1")).is_allowed());
    assert!(!p.decide(ip("2001:db8::1")).is_allowed());
}

#[test]
fn no_policy_and_empty_policy() {
    let all = NetworkRestrictions::allow_all();
    assert!(!all.has_policy());
    for dst in ["1.2.3.4", "::1", "::ffff:1.2.3.4"] {
        assert_eq!(all.decide(ip(dst)), NetDecision::Allowed);
    }
    let empty = NetworkRestrictions::parse(
        "nr.yaml",
        "kind: network_restrictions\nversion: v4\nspec:\n  allow: []\n",
    )
    .unwrap();
    assert!(empty.has_policy());
    assert_eq!(
        empty.decide(ip("1.2.3.4")),
        NetDecision::Denied { matched: None }
    );
    let bare =
        NetworkRestrictions::parse("nr.yaml", "kind: network_restrictions\nversion: v4\n").unwrap();
    assert_eq!(
        bare.decide(ip("::1")),
        NetDecision::Denied { matched: None }
    );
}

#[test]
fn bad_entries_refuse_the_whole_policy() {
    let head =
        "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 10.0.0.0/8\n  deny:\n";
    let table = [
        (
            "  - cidr: 10.0.0.1/8\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0.1/8`: host bits set (the network is `10.0.0.0/8`)",
        ),
        (
            "  - cidr: 10.0.0.0/33\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0.0/33`: prefix 33: above 32",
        ),
        (
            "  - cidr: 2001:db8::/129\n",
            "nr.yaml:7: spec.deny[0].cidr: `2001:db8::/129`: prefix 129: above 128",
        ),
        (
            "  - cidr: 10.0.0.0/08\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0.0/08`: prefix \"08\": leading zeros not allowed",
        ),
        (
            "  - cidr: 010.0.0.0/8\n",
            "nr.yaml:7: spec.deny[0].cidr: `010.0.0.0/8`: \"010.0.0.0\" is not an IP address",
        ),
        (
            "  - cidr: 10.0.0.0/+8\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0.0/+8`: prefix \"+8\": expected a decimal number",
        ),
        (
            "  - cidr: 10.0.0.0/\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0.0/`: prefix \"\": expected a decimal number",
        ),
        (
            "  - cidr: 10.0.0/8\n",
            "nr.yaml:7: spec.deny[0].cidr: `10.0.0/8`: \"10.0.0\" is not an IP address",
        ),
        (
            "  - cidr: fe80::1%eth0\n",
            "nr.yaml:7: spec.deny[0].cidr: `fe80::1%eth0`: \"fe80::1%eth0\" is not an IP address",
        ),
        (
            "  - cidr: ::ffff:10.0.0.0/104\n",
            "nr.yaml:7: spec.deny[0].cidr: `::ffff:10.0.0.0/104`: IPv4-mapped IPv6 network; write the IPv4 form `10.0.0.0/8`, which also matches mapped destinations",
        ),
        (
            "  - cidr: 10.0.0.0/8\n    ports: [22]\n",
            "nr.yaml:8: spec.deny[0].ports: unknown field (expected `cidr`)",
        ),
        (
            "  - 10.0.0.0/8\n",
            "nr.yaml:7: spec.deny[0]: expected a mapping, found string \"10.0.0.0/8\"",
        ),
        (
            "  - cidr: 167772160\n",
            "nr.yaml:7: spec.deny[0].cidr: expected a string, found integer 167772160",
        ),
        (
            "  - {}\n",
            "nr.yaml:7: spec.deny[0].cidr: required field is missing",
        ),
    ];
    for (tail, want) in table {
        let text = format!("{head}{tail}");
        assert_eq!(
            NetworkRestrictions::parse("nr.yaml", &text)
                .unwrap_err()
                .to_string(),
            want,
            "{tail}"
        );
    }
    let e = NetworkRestrictions::parse(
        "nr.yaml",
        "kind: network_restrictions\nversion: v4\nspec:\n  allowed: []\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "nr.yaml:4: spec.allowed: unknown field (expected `allow` and `deny`)"
    );
    for (k, v) in [
        ("network_restrictions", "v3"),
        ("network_restriction", "v4"),
        ("role", "v7"),
    ] {
        let text = format!("kind: {k}\nversion: {v}\n");
        assert!(
            matches!(
                NetworkRestrictions::parse("nr.yaml", &text),
                Err(Error::Unsupported { .. })
            ),
            "{k} {v}"
        );
    }
    assert!(NetworkRestrictions::parse("nr.yaml", "").is_err());
    assert!(NetworkRestrictions::parse("nr.yaml", &format!("{POLICY}---\n{POLICY}")).is_err());
    assert!(NetworkRestrictions::from_rules(&[net("10.0.0.1/8")], &[]).is_err());
}

#[test]
fn events() {
    let p = NetworkRestrictions::parse("nr.yaml", POLICY).unwrap();
    let src = "[::ffff:10.0.0.5]:40000".parse().unwrap();
    let dst = "[::ffff:10.1.2.3]:443".parse().unwrap();
    let ev = NetworkEvent::new(
        "alice@example.com",
        "root",
        "e9a4bd34",
        src,
        dst,
        NetOperation::Connect,
        &p.decide(ip("::ffff:10.1.2.3")),
    );
    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "code": "T4002I", "event": "session.network", "user": "alice@example.com",
            "login": "root", "sid": "e9a4bd34", "src_addr": "10.0.0.5", "dst_addr": "10.1.2.3",
            "dst_port": 443, "version": 4, "operation": 0, "action": 1
        })
    );
    let dst6 = "[2001:db8::1]:53".parse().unwrap();
    let ev = NetworkEvent::new(
        "a",
        "b",
        "c",
        src,
        dst6,
        NetOperation::Send,
        &p.decide(ip("2001:db8::1")),
    );
    let json = serde_json::to_value(&ev).unwrap();
    assert_eq!(
        (
            json["version"].as_u64(),
            json["operation"].as_u64(),
            json["action"].as_u64()
        ),
        (Some(6), Some(1), Some(0))
    );
}

#[test]
fn destinations_are_decided_as_the_kernel_routes_them() {
    use ippin_policy::{embedded_ipv4, kernel_destination};
    let p = NetworkRestrictions::from_rules(
        &["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        &["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
    )
    .unwrap();
    // Every spelling of "this host" that connect() turns into loopback, and every IPv6 form
    // that carries packets to an IPv4 loopback address, is denied like loopback itself.
    for dst in [
        "127.0.0.1",
        "0.0.0.0",
        "::",
        "::1",
        "::ffff:0.0.0.0",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ] {
        assert!(!p.decide(ip(dst)).is_allowed(), "{dst} was allowed");
    }
    for dst in [
        "192.0.2.1",
        "2001:db8::1",
        "64:ff9b::192.0.2.1",
        "2002:c000:201::1",
    ] {
        assert!(p.decide(ip(dst)).is_allowed(), "{dst} was denied");
    }
    assert_eq!(kernel_destination(ip("0.0.0.0")), ip("127.0.0.1"));
    assert_eq!(kernel_destination(ip("::")), ip("::1"));
    assert_eq!(kernel_destination(ip("::ffff:0.0.0.0")), ip("127.0.0.1"));
    assert_eq!(kernel_destination(ip("0.0.0.1")), ip("0.0.0.1"));
    assert_eq!(embedded_ipv4(ip("::1")), None);
    assert_eq!(embedded_ipv4(ip("::")), None);
    assert_eq!(embedded_ipv4(ip("::ffff:1.2.3.4")), None);
    assert_eq!(
        embedded_ipv4(ip("::1.2.3.4")),
        Some("1.2.3.4".parse().unwrap())
    );
    assert_eq!(
        embedded_ipv4(ip("2002:102:304::")),
        Some("1.2.3.4".parse().unwrap())
    );
    // Teredo: the client's address is stored inverted in the low 32 bits.
    assert_eq!(
        embedded_ipv4(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
        Some("192.0.2.45".parse().unwrap())
    );
    // No policy: everything allowed, whatever the form.
    assert!(
        NetworkRestrictions::allow_all()
            .decide(ip("0.0.0.0"))
            .is_allowed()
    );
}

/// Killed mutants (docs/testing.md): the rule bound counts allow and deny rules together and
/// is inclusive.
#[test]
fn rule_bound_is_inclusive_and_counts_both_lists() {
    use ippin_policy::MAX_NETWORK_RULES;
    assert_eq!(MAX_NETWORK_RULES, 100_000);
    let many: Vec<IpNet> = (0..=MAX_NETWORK_RULES)
        .map(|i| {
            let i = u32::try_from(i).unwrap();
            IpNet::from(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 | i), 32).unwrap())
        })
        .collect();
    let (at, over) = (&many[..MAX_NETWORK_RULES], &many[..]);
    let p = NetworkRestrictions::from_rules(at, &[]).unwrap();
    assert_eq!(p.allow_rules().len(), MAX_NETWORK_RULES);
    NetworkRestrictions::from_rules(&[], at).unwrap();
    NetworkRestrictions::from_rules(&at[..1], &at[1..]).unwrap();
    for (allow, deny) in [(over, &[][..]), (&[][..], over), (&over[..2], &over[2..])] {
        let e = NetworkRestrictions::from_rules(allow, deny).unwrap_err();
        assert!(e.to_string().contains("more than 100000 rules"), "{e}");
    }
}
