//! Prefix pins: `pin_source_ip_prefix`, narrowest-wins, containment against an integer
//! reference, issue and renewal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ippin_policy::{
    CertPin, Decision, DenyReason, ObservedAddr, PinPrefix, PinRequirement, Provenance, RoleSet,
    check_pin, parse_roles, pin_for_issue, pins_for_renewal,
};
use proptest::prelude::*;

fn seen(ip: IpAddr) -> ObservedAddr {
    ObservedAddr::new(SocketAddr::new(ip, 4000), Provenance::Direct, true)
}

fn code(d: &Decision) -> Option<&'static str> {
    d.denial().map(|d| d.reason.code())
}

fn role(name: &str, options: &str) -> String {
    format!("kind: role\nversion: v7\nmetadata:\n  name: {name}\nspec:\n  options:\n{options}---\n")
}

#[test]
fn the_option_parses_strictly() {
    let ok = parse_roles(
        "r.yaml",
        &role(
            "v6",
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 24, ipv6: 64}\n",
        ),
    )
    .unwrap();
    assert_eq!(ok[0].pin_prefix, Some(PinPrefix::new(24, 64).unwrap()));
    // a key left out keeps that family's default
    let only6 = parse_roles(
        "r.yaml",
        &role(
            "v6",
            "    pin_source_ip: true\n    pin_source_ip_prefix:\n      ipv6: 56\n",
        ),
    )
    .unwrap();
    assert_eq!(only6[0].pin_prefix, Some(PinPrefix::new(32, 56).unwrap()));
    // the option's order in the mapping does not matter
    let before = parse_roles(
        "r.yaml",
        &role(
            "v6",
            "    pin_source_ip_prefix: {ipv6: 64}\n    pin_source_ip: true\n",
        ),
    )
    .unwrap();
    assert_eq!(before[0].pin_prefix, Some(PinPrefix::new(32, 64).unwrap()));

    for (options, needle) in [
        (
            "    pin_source_ip_prefix: {ipv6: 64}\n",
            "only allowed with",
        ),
        (
            "    pin_source_ip: false\n    pin_source_ip_prefix: {ipv6: 64}\n",
            "only allowed with",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 0}\n",
            "from 32 to 128",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 0}\n",
            "from 8 to 32",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 7}\n",
            "from 8 to 32",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 31}\n",
            "from 32 to 128",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 33}\n",
            "from 8 to 32",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 129}\n",
            "from 32 to 128",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 300}\n",
            "from 32 to 128",
        ),
        // one spelling only: YAML 1.1 readers take 024 as octal 20
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: -64}\n",
            "plain decimal",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 024}\n",
            "plain decimal",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: +24}\n",
            "plain decimal",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 0x18}\n",
            "plain decimal",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 0o30}\n",
            "plain decimal",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: '64'}\n",
            "an integer",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 64.0}\n",
            "an integer",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ip6: 64}\n",
            "unknown key",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: 64\n",
            "a mapping",
        ),
        (
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv6: 64, ipv6: 48}\n",
            "",
        ),
    ] {
        let err = parse_roles("r.yaml", &role("x", options)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{options:?}: {text}");
    }
}

#[test]
fn narrowest_prefix_wins_across_roles() {
    let text = [
        role(
            "wide",
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 16, ipv6: 48}\n",
        ),
        role(
            "mid",
            "    pin_source_ip: true\n    pin_source_ip_prefix: {ipv4: 24, ipv6: 40}\n",
        ),
        role("exact", "    pin_source_ip: true\n"),
        role("none", "    pin_source_ip: false\n"),
    ]
    .concat();
    let set = RoleSet::new(parse_roles("r.yaml", &text).unwrap()).unwrap();
    let req = |names: &[&str]| set.select(names).unwrap().pin_requirement();
    assert_eq!(req(&["none"]), PinRequirement::NotRequired);
    assert_eq!(
        req(&["wide", "none"]),
        PinRequirement::Required(PinPrefix::new(16, 48).unwrap())
    );
    // per family: the longest length of each
    assert_eq!(
        req(&["wide", "mid"]),
        PinRequirement::Required(PinPrefix::new(24, 48).unwrap())
    );
    // a pinning role without a prefix is exact, and exact is the narrowest
    assert_eq!(
        req(&["wide", "exact"]),
        PinRequirement::Required(PinPrefix::EXACT)
    );
    assert!(set.select(&["mid", "none"]).unwrap().requires_pin());
}

#[test]
fn a_role_requirement_is_met_only_by_a_pin_no_wider_than_its_prefix() {
    let p64 = PinRequirement::Required(PinPrefix::new(32, 64).unwrap());
    let inside: IpAddr = "2001:db8:1:2::99".parse().unwrap();
    let nets = |s: &[&str]| CertPin::Nets(s.iter().map(|n| n.parse().unwrap()).collect());
    // exactly the prefix, narrower, one host: allowed from inside
    for pin in [
        nets(&["2001:db8:1:2::/64"]),
        nets(&["2001:db8:1:2::/96"]),
        nets(&["2001:db8:1:2::99/128"]),
        CertPin::Ip(inside),
    ] {
        assert_eq!(code(&check_pin(p64, &pin, &seen(inside))), None, "{pin:?}");
    }
    // wider than the role's prefix, or several networks: too wide, even from inside
    for pin in [
        nets(&["2001:db8:1::/48"]),
        nets(&["2001:db8:1:2::/63"]),
        nets(&["2001:db8:1:2::/64", "2001:db8:1:3::/64"]),
    ] {
        let d = check_pin(p64, &pin, &seen(inside));
        assert_eq!(code(&d), Some("pin_too_wide"), "{pin:?}");
        let message = &d.denial().unwrap().message;
        assert!(message.contains("/64 for IPv6"), "{message}");
    }
    // the IPv4 side of the same role is still exact
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(
        code(&check_pin(p64, &nets(&["192.0.2.0/24"]), &seen(v4))),
        Some("pin_too_wide")
    );
    // a bool `true` means one address: a prefix pin never meets it
    assert_eq!(
        code(&check_pin(
            true,
            &nets(&["2001:db8:1:2::/64"]),
            &seen(inside)
        )),
        Some("pin_too_wide")
    );
    // outside the pin: mismatch; no pin: missing
    let outside: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(
        code(&check_pin(
            p64,
            &nets(&["2001:db8:1:2::/64"]),
            &seen(outside)
        )),
        Some("pinned_ip_mismatch")
    );
    assert_eq!(
        code(&check_pin(p64, &CertPin::None, &seen(inside))),
        Some("pinned_ip_missing")
    );
}

#[test]
fn issue_and_renewal_keep_the_prefix() {
    let p = PinPrefix::new(24, 64).unwrap();
    let v6 = seen("2001:db8:7:8:aaaa:bbbb:cccc:dddd".parse().unwrap());
    assert_eq!(
        pin_for_issue(p, Some(&v6)).unwrap(),
        Some("2001:db8:7:8::/64".parse().unwrap())
    );
    // an IPv4-mapped client is IPv4, so the IPv4 length applies
    let mapped = seen("::ffff:198.51.100.77".parse().unwrap());
    let issued = pin_for_issue(p, Some(&mapped)).unwrap().unwrap();
    assert_eq!(issued, "198.51.100.0/24".parse::<IpNet>().unwrap());
    // untrusted: never issued
    let untrusted = ObservedAddr::new(
        "[2001:db8:7:8::1]:4000".parse().unwrap(),
        Provenance::Direct,
        false,
    );
    assert_eq!(
        pin_for_issue(p, Some(&untrusted)).unwrap_err().reason,
        DenyReason::UntrustedClientIp
    );

    // renewal from another address inside the prefix keeps the prefix as issued
    let pin6: IpNet = "2001:db8:7:8::/64".parse().unwrap();
    let other = seen("2001:db8:7:8::5".parse().unwrap());
    let renewed = pins_for_renewal(&CertPin::Nets(vec![pin6]), None, p, &other).unwrap();
    assert_eq!(renewed.pinned, Some(pin6));
    // the roles no longer pin: still kept
    assert_eq!(
        pins_for_renewal(&CertPin::Nets(vec![pin6]), None, false, &other)
            .unwrap()
            .pinned,
        Some(pin6)
    );
    // the role narrowed to exact since login: refused, log in again
    let err = pins_for_renewal(&CertPin::Nets(vec![pin6]), None, true, &other).unwrap_err();
    assert_eq!(err.reason, DenyReason::PinTooWide);
    // outside the prefix: refused
    let err = pins_for_renewal(
        &CertPin::Nets(vec![pin6]),
        None,
        p,
        &seen("2001:db8:7:9::5".parse().unwrap()),
    )
    .unwrap_err();
    assert_eq!(err.reason, DenyReason::PinnedIpMismatch);
}

/// The reference: `ip` is in `addr/len` when their top `len` bits agree.
fn contains_v4(addr: u32, len: u8, ip: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    addr & mask == ip & mask
}

fn contains_v6(addr: u128, len: u8, ip: u128) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    addr & mask == ip & mask
}

/// Addresses near `base` (sharing a random number of top bits) so containment is often true.
fn near_v4() -> impl Strategy<Value = (u32, u8, u32)> {
    (any::<u32>(), 1u8..=32, any::<u32>(), 0u32..=32).prop_map(|(a, len, noise, keep)| {
        let keep_mask = if keep == 0 {
            0
        } else {
            u32::MAX << (32 - keep)
        };
        (a, len, (a & keep_mask) | (noise & !keep_mask))
    })
}

fn near_v6() -> impl Strategy<Value = (u128, u8, u128)> {
    (any::<u128>(), 1u8..=128, any::<u128>(), 0u32..=128).prop_map(|(a, len, noise, keep)| {
        let keep_mask = if keep == 0 {
            0
        } else {
            u128::MAX << (128 - keep)
        };
        (a, len, (a & keep_mask) | (noise & !keep_mask))
    })
}

/// The reference list of IPv6 addresses pinned alone: IPv4-compatible (but `::`, `::1`),
/// SIIT's IPv4-translated `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
/// 6to4 `2002::/16`, Teredo `2001::/32`, link-local `fe80::/10`.
fn always_alone(a: u128) -> bool {
    (a >> 32 == 0 && a > 1)
        || a >> 32 == 0xffff_0000
        || a >> 32 == 0x0064_ff9b_0000_0000_0000_0000
        || a >> 80 == 0x0064_ff9b_0001
        || a >> 112 == 0x2002
        || a >> 96 == 0x2001_0000
        || a & (0xffc0 << 112) == 0xfe80 << 112
}

/// IPv4 link-local clients are pinned alone too, and no IPv4 network pin reaches into
/// 169.254.0.0/16 (every host of every link): a /16 or /8 pin there would hold a thief on
/// any link of the server.
#[test]
fn ipv4_link_local_clients_are_pinned_alone() {
    for len in [8u8, 12, 16, 24, 32] {
        let p = PinPrefix::new(len, 64).unwrap();
        for client in ["169.254.7.9", "169.254.0.1", "169.254.255.254"] {
            let ip: IpAddr = client.parse().unwrap();
            assert_eq!(p.network(ip), IpNet::from(ip), "/{len} {client}");
            let mapped: IpAddr = format!("::ffff:{client}").parse().unwrap();
            assert_eq!(p.network(mapped), IpNet::from(ip), "/{len} mapped {client}");
        }
        // A network that reaches into the range is neither issued nor admitted.
        let wide: IpNet = "169.254.0.0/16".parse().unwrap();
        assert!(!p.admits(&CertPin::Nets(vec![wide])), "/{len}");
        assert_eq!(
            code(&check_pin(
                p,
                &CertPin::Nets(vec![wide]),
                &seen("169.254.7.9".parse().unwrap())
            )),
            Some("pin_too_wide"),
            "/{len}"
        );
    }
    // Around it, but not reaching it, the prefix holds; reaching it (a /8 around 169.1.2.3
    // holds 169.254.0.0/16), one address.
    let p = PinPrefix::new(16, 64).unwrap();
    assert_eq!(
        p.network("169.253.1.2".parse().unwrap()).to_string(),
        "169.253.0.0/16"
    );
    let p = PinPrefix::new(8, 64).unwrap();
    assert_eq!(
        p.network("169.1.2.3".parse().unwrap()).to_string(),
        "169.1.2.3/32"
    );
    assert_eq!(
        p.network("170.1.2.3".parse().unwrap()).to_string(),
        "170.0.0.0/8"
    );
}

#[test]
fn translated_tunnelled_and_link_local_clients_are_pinned_alone() {
    let p = PinPrefix::new(24, 64).unwrap();
    for client in [
        "64:ff9b::c000:205",
        "64:ff9b:1:2::c000:205",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2002:c000:205::1",
        "::192.0.2.5",
        "::ffff:0:192.0.2.5",
        "fe80::1",
        "febf::1",
    ] {
        let ip: IpAddr = client.parse().unwrap();
        let issued = p.network(ip);
        assert_eq!(issued, IpNet::from(ip), "{client}");
        // and a network pin in these ranges does not meet a /64 requirement (`::/64`, the
        // network of `::1`, is an ordinary network: its address `::` embeds nothing)
        if client == "::192.0.2.5" || client == "::ffff:0:192.0.2.5" {
            continue;
        }
        let wide = IpNet::new(ip, 64).unwrap().trunc();
        assert_eq!(
            code(&check_pin(p, &CertPin::Nets(vec![wide]), &seen(ip))),
            Some("pin_too_wide"),
            "{client}"
        );
    }
    // ordinary ones get the prefix, ::1 included (the loopback, not IPv4-compatible)
    for (client, want) in [
        ("::1", "::/64"),
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
        ("fec0::1", "fec0::/64"),
        ("fd00:1:2:3::4", "fd00:1:2:3::/64"),
    ] {
        let ip: IpAddr = client.parse().unwrap();
        assert_eq!(p.network(ip).to_string(), want, "{client}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The pin check's containment is the integer reference, for IPv4 networks (with the
    /// requirement met: the role's prefix equals the pin's).
    #[test]
    fn containment_v4_matches_the_integer_reference((a, len, ip) in near_v4()) {
        let net = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
        let pin = CertPin::Nets(vec![IpNet::V4(net)]);
        let d = check_pin(false, &pin, &seen(IpAddr::V4(Ipv4Addr::from(ip))));
        prop_assert_eq!(d.is_allow(), contains_v4(a, len, ip), "{} {:?}", net, d);
        let Ok(req) = PinPrefix::new(len, 128) else {
            prop_assert!(len < PinPrefix::MIN_IPV4);
            return Ok(());
        };
        // the requirement of exactly this prefix is met by this pin, unless it reaches into
        // link-local 169.254.0.0/16 (then only one address meets it)
        let d = check_pin(req, &pin, &seen(IpAddr::V4(Ipv4Addr::from(ip))));
        let reaches = len < 32 && contains_v4(0xa9fe_0000, len.min(16), a);
        prop_assert_eq!(d.is_allow(), contains_v4(a, len, ip) && !reaches, "{} {:?}", net, d);
        // and the issued network holds the client, host bits zero, as the reference masks
        // (one address when that network would reach into link-local 169.254.0.0/16)
        let issued = req.network(IpAddr::V4(Ipv4Addr::from(ip)));
        let IpNet::V4(issued) = issued else { panic!("{issued}") };
        let len = if contains_v4(0xa9fe_0000, len.min(16), ip) { 32 } else { len };
        prop_assert_eq!(issued.prefix_len(), len);
        prop_assert!(contains_v4(u32::from(issued.network()), len, ip));
        prop_assert_eq!(u32::from(issued.network()) & !u32::from(issued.netmask()), 0);
    }

    #[test]
    fn containment_v6_matches_the_integer_reference((a, len, ip) in near_v6()) {
        let net = Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc();
        let observed = IpAddr::V6(Ipv6Addr::from(ip));
        let canonical_v4 = Ipv6Addr::from(ip).to_ipv4_mapped().is_some();
        let pin = CertPin::Nets(vec![IpNet::V6(net)]);
        let d = check_pin(false, &pin, &seen(observed));
        if !canonical_v4 && Ipv6Addr::from(a).to_ipv4_mapped().is_none() {
            prop_assert_eq!(d.is_allow(), contains_v6(a, len, ip), "{} {:?}", net, d);
        }
        let Ok(req) = PinPrefix::new(32, len) else {
            prop_assert!(len < PinPrefix::MIN_IPV6);
            return Ok(());
        };
        if !canonical_v4 && !always_alone(ip) {
            let issued = req.network(observed);
            let IpNet::V6(issued) = issued else { panic!("{issued}") };
            prop_assert_eq!(issued.prefix_len(), len);
            prop_assert!(contains_v6(u128::from(issued.network()), len, ip));
            prop_assert_eq!(u128::from(issued.network()) & !u128::from(issued.netmask()), 0);
        }
    }

    /// Narrowest wins: the requirement of a set of roles is, per family, the longest length
    /// among the pinning roles; and a pin meets it exactly when it is no wider.
    #[test]
    fn narrowest_wins_against_a_reference(
        roles in proptest::collection::vec((any::<bool>(), proptest::option::of((8u8..=32, 32u8..=128))), 1..6),
        pin_len in 1u8..=128,
    ) {
        let built: Vec<_> = roles
            .iter()
            .enumerate()
            .map(|(i, (pins, prefix))| {
                let mut r = ippin_policy::Role::new(format!("r{i}"), ippin_policy::RoleVersion::V7, *pins);
                if let Some((v4, v6)) = prefix {
                    r = r.with_pin_prefix(PinPrefix::new(*v4, *v6).unwrap());
                }
                r
            })
            .collect();
        let names: Vec<String> = built.iter().map(|r| r.name.clone()).collect();
        let set = RoleSet::new(built).unwrap();
        let got = set.select(&names).unwrap().pin_requirement();
        let pinning: Vec<(u8, u8)> = roles
            .iter()
            .filter(|(pins, _)| *pins)
            .map(|(_, p)| p.unwrap_or((32, 128)))
            .collect();
        let want = if pinning.is_empty() {
            PinRequirement::NotRequired
        } else {
            let v4 = pinning.iter().map(|p| p.0).max().unwrap();
            let v6 = pinning.iter().map(|p| p.1).max().unwrap();
            PinRequirement::Required(PinPrefix::new(v4, v6).unwrap())
        };
        prop_assert_eq!(got, want);
        // a v6 pin of pin_len from inside: allowed iff not required or no wider
        let client: IpAddr = "2001:db8::1".parse().unwrap();
        let pin = CertPin::Nets(vec![IpNet::new(client, pin_len).unwrap().trunc()]);
        let d = check_pin(got, &pin, &seen(client));
        let ok = match want.prefix() {
            None => true,
            Some(p) => pin_len >= p.ipv6(),
        };
        prop_assert_eq!(d.is_allow(), ok, "{:?}", d);
        if !ok {
            prop_assert_eq!(code(&d), Some("pin_too_wide"));
        }
    }
}

/// Issue and check agree: the network issued to any client meets the requirement it was
/// issued under, also where the prefix's network around an ordinary address would reach
/// into a translator's or tunnel's range (then the client is pinned alone). Before, a
/// client at `64:ff9b:0:0:1::1` with /64 got `64:ff9b::/64`, which its own check refused.
#[test]
fn a_network_that_reaches_a_translators_range_is_not_issued() {
    for (v6, client) in [
        (64, "64:ff9b:0:0:1::1"),
        (32, "64:ff9b:2::1"),
        (48, "64:ff9b:1:2::1"),
        (32, "2001:0:1::1"),
        (32, "2001:1::1"),
        (32, "2002:1::1"),
        (32, "fe80::1"),
        (32, "fe81::1"),
        (64, "fe80::1"),
    ] {
        let p = PinPrefix::new(24, v6).unwrap();
        let ip: IpAddr = client.parse().unwrap();
        let issued = p.network(ip);
        let pin = CertPin::Nets(vec![issued]);
        let d = check_pin(p, &pin, &seen(ip));
        assert!(d.is_allow(), "/{v6} {client}: issued {issued}, {d:?}");
        if (v6, client) != (32, "2001:1::1") {
            assert_eq!(issued, IpNet::from(ip), "/{v6} {client}");
        }
    }
    // `2001:1::/32` is beside Teredo's `2001::/32`, not in it: an ordinary network.
    let p = PinPrefix::new(24, 32).unwrap();
    assert_eq!(
        p.network("2001:1::1".parse().unwrap()).to_string(),
        "2001:1::/32"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// For every IPv4 client and prefix length (often near link-local): the pin issued is
    /// admitted by the same requirement and holds the client.
    #[test]
    fn every_issued_v4_pin_meets_its_own_requirement(a in any::<u32>(), len in 8u8..=32, near in any::<bool>()) {
        let ip = Ipv4Addr::from(if near { 0xa900_0000 | (a & 0x00ff_ffff) } else { a });
        let p = PinPrefix::new(len, 128).unwrap();
        let issued = p.network(IpAddr::V4(ip));
        let d = check_pin(p, &CertPin::Nets(vec![issued]), &seen(IpAddr::V4(ip)));
        prop_assert!(d.is_allow(), "{} /{}: issued {}, {:?}", ip, len, issued, d);
    }

    /// For every IPv6 client and prefix length: the pin issued is admitted by the same
    /// requirement and holds the client.
    #[test]
    fn every_issued_v6_pin_meets_its_own_requirement(a in any::<u128>(), len in 32u8..=128, keep in 0u32..=40) {
        // Often near the special ranges: their top bits, the rest random.
        let specials = [0x0064_ff9b_u128 << 96, 0x2001 << 112, 0x2002 << 112, 0xfe80 << 112, 0];
        let base = specials[(a % 5) as usize];
        let mask = u128::MAX.checked_shl(128 - keep.min(128)).unwrap_or(0);
        let ip = Ipv6Addr::from((base & mask) | (a.rotate_left(17) & !mask));
        let p = PinPrefix::new(32, len).unwrap();
        let issued = p.network(IpAddr::V6(ip));
        let d = check_pin(p, &CertPin::Nets(vec![issued]), &seen(IpAddr::V6(ip)));
        prop_assert!(d.is_allow(), "{} /{}: issued {}, {:?}", ip, len, issued, d);
    }
}
