//! Decision tables for the pin check, issue and renewal.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ippin_policy::{
    CertPin, Decision, DenyReason, LOG_IN_AGAIN, ObservedAddr, Provenance, RenewalPins, check_pin,
    pin_for_issue, pins_for_renewal,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn seen(addr: &str, trusted: bool) -> ObservedAddr {
    let a: SocketAddr = addr.parse().unwrap();
    ObservedAddr::new(a, Provenance::ProxyV2, trusted)
}

/// `None` means allow; `Some(code)` means deny with that code.
fn outcome(d: &Decision) -> Option<&'static str> {
    match d {
        Decision::Allow => None,
        Decision::Deny(denial) => {
            assert!(
                denial.message.ends_with(LOG_IN_AGAIN),
                "message must tell the user to log in again: {}",
                denial.message
            );
            Some(denial.reason.code())
        }
        _ => unreachable!("no other decision"),
    }
}

#[test]
fn check_pin_table() {
    use CertPin as P;
    let pin4 = P::Ip(ip("203.0.113.9"));
    let pin4_mapped = P::Ip(ip("::ffff:203.0.113.9"));
    let pin6 = P::Ip(ip("2001:db8::9"));
    let nets = P::Nets(vec![net("10.0.0.0/8"), net("2001:db8:1::/48")]);
    let mapped_net = P::Nets(vec![net("::ffff:10.0.0.0/104")]);
    let all_mapped = P::Nets(vec![net("::ffff:0:0/96")]);
    let wide6 = P::Nets(vec![net("::/0")]);
    // The CA's way round `/0`: two halves that cover every IPv4 address.
    let halves = P::Nets(vec![net("0.0.0.0/1"), net("128.0.0.0/1")]);
    let two_hosts = P::Nets(vec![net("198.51.100.7/32"), net("198.51.100.8/32")]);
    let host32 = P::Nets(vec![net("198.51.100.7/32")]);
    let host128 = P::Nets(vec![net("2001:db8::7/128")]);
    let mapped128 = P::Nets(vec![net("::ffff:198.51.100.7/128")]);
    let invalid = P::Invalid("extension is not an OCTET STRING".into());
    let empty = P::Nets(vec![]);

    #[rustfmt::skip]
    let table: Vec<(bool, &CertPin, ObservedAddr, Option<&str>)> = vec![
        // unreadable pins: always denied
        (false, &invalid, seen("203.0.113.9:1", true), Some("invalid_pin")),
        (true, &invalid, seen("203.0.113.9:1", true), Some("invalid_pin")),
        (false, &invalid, seen("203.0.113.9:1", false), Some("invalid_pin")),
        (false, &empty, seen("203.0.113.9:1", true), Some("invalid_pin")),
        // no pin
        (false, &P::None, seen("203.0.113.9:1", true), None),
        (false, &P::None, seen("203.0.113.9:1", false), None),
        (true, &P::None, seen("203.0.113.9:1", true), Some("pinned_ip_missing")),
        (true, &P::None, seen("203.0.113.9:1", false), Some("pinned_ip_missing")),
        // pinned: checked whether or not the roles require it now
        (true, &pin4, seen("203.0.113.9:1", true), None),
        (false, &pin4, seen("203.0.113.9:1", true), None),
        (false, &pin4, seen("203.0.113.10:1", true), Some("pinned_ip_mismatch")),
        (true, &pin4, seen("203.0.113.10:1", true), Some("pinned_ip_mismatch")),
        (false, &pin4, seen("203.0.113.9:1", false), Some("untrusted_client_ip")),
        (true, &pin4, seen("203.0.113.9:0", true), Some("untrusted_client_ip")),
        // mapped and unmapped forms
        (true, &pin4, seen("[::ffff:203.0.113.9]:1", true), None),
        (true, &pin4_mapped, seen("203.0.113.9:1", true), None),
        (true, &pin4_mapped, seen("[::ffff:203.0.113.9]:1", true), None),
        (true, &pin4, seen("[::203.0.113.9]:1", true), Some("pinned_ip_mismatch")),
        (true, &pin6, seen("[2001:db8::9]:1", true), None),
        (true, &pin6, seen("[2001:db8::a]:1", true), Some("pinned_ip_mismatch")),
        (true, &pin6, seen("203.0.113.9:1", true), Some("pinned_ip_mismatch")),
        // networks
        (false, &nets, seen("10.1.2.3:1", true), None),
        (false, &nets, seen("[::ffff:10.1.2.3]:1", true), None),
        (false, &nets, seen("[2001:db8:1::77]:1", true), None),
        (false, &nets, seen("11.0.0.1:1", true), Some("pinned_ip_mismatch")),
        (false, &nets, seen("[::10.1.2.3]:1", true), Some("pinned_ip_mismatch")),
        (false, &nets, seen("10.1.2.3:1", false), Some("untrusted_client_ip")),
        // IPv6 networks in the mapped range match IPv4 addresses (decided: canonical nets)
        (false, &mapped_net, seen("10.9.9.9:1", true), None),
        (false, &mapped_net, seen("11.9.9.9:1", true), Some("pinned_ip_mismatch")),
        (false, &all_mapped, seen("192.0.2.1:1", true), None),
        (false, &all_mapped, seen("[2001:db8::1]:1", true), Some("pinned_ip_mismatch")),
        // a wider IPv6 network does not match IPv4 addresses
        (false, &wide6, seen("192.0.2.1:1", true), Some("pinned_ip_mismatch")),
        (false, &wide6, seen("[2001:db8::1]:1", true), None),
        // a role that requires a pin needs a single-host pin, wherever the client is
        (true, &nets, seen("10.1.2.3:1", true), Some("pin_too_wide")),
        (true, &mapped_net, seen("10.9.9.9:1", true), Some("pin_too_wide")),
        (true, &wide6, seen("[2001:db8::1]:1", true), Some("pin_too_wide")),
        (true, &halves, seen("198.51.100.7:1", true), Some("pin_too_wide")),
        (false, &halves, seen("198.51.100.7:1", true), None),
        (true, &two_hosts, seen("198.51.100.7:1", true), Some("pin_too_wide")),
        (true, &host32, seen("198.51.100.7:1", true), None),
        (true, &host32, seen("198.51.100.8:1", true), Some("pinned_ip_mismatch")),
        (true, &host128, seen("[2001:db8::7]:1", true), None),
        (true, &mapped128, seen("198.51.100.7:1", true), None),
    ];
    for (i, (requires, pin, observed, want)) in table.iter().enumerate() {
        let got = check_pin(*requires, pin, observed);
        assert_eq!(
            outcome(&got),
            *want,
            "row {i}: requires={requires} pin={pin:?} observed={observed:?}"
        );
    }
}

#[test]
fn denial_messages_name_observed_and_pinned() {
    let d = check_pin(
        false,
        &CertPin::Ip(ip("203.0.113.9")),
        &seen("198.51.100.4:1", true),
    );
    let denial = d.denial().unwrap();
    assert_eq!(denial.reason, DenyReason::PinnedIpMismatch);
    assert!(
        denial.message.contains("198.51.100.4"),
        "{}",
        denial.message
    );
    assert!(denial.message.contains("203.0.113.9"), "{}", denial.message);

    let d = check_pin(
        true,
        &CertPin::Ip(ip("203.0.113.9")),
        &seen("198.51.100.4:1", false),
    );
    let denial = d.denial().unwrap();
    assert!(denial.message.contains("198.51.100.4") && denial.message.contains("203.0.113.9"));
    assert!(denial.message.contains("proxy_v2"), "{}", denial.message);
}

#[test]
fn pin_for_issue_table() {
    let trusted = seen("[::ffff:198.51.100.4]:5000", true);
    let untrusted = seen("198.51.100.4:5000", false);
    let port0 = seen("198.51.100.4:0", true);
    assert_eq!(pin_for_issue(false, Some(&trusted)), Ok(None));
    assert_eq!(pin_for_issue(false, Some(&untrusted)), Ok(None));
    assert_eq!(pin_for_issue(false, None), Ok(None));
    assert_eq!(
        pin_for_issue(true, Some(&trusted)),
        Ok(Some(net("198.51.100.4/32")))
    );
    for observed in [Some(&untrusted), Some(&port0), None] {
        let err = pin_for_issue(true, observed).unwrap_err();
        assert_eq!(err.reason.code(), "untrusted_client_ip");
        assert!(err.message.ends_with(LOG_IN_AGAIN));
    }
}

#[test]
fn renewal_keeps_pins_whatever_happens() {
    let pinned = Some(net("203.0.113.9/32"));
    let presented = CertPin::Ip(ip("203.0.113.9"));
    let login = Some(ip("203.0.113.9"));
    let here = seen("203.0.113.9:1", true);
    let mapped_here = seen("[::ffff:203.0.113.9]:1", true);
    // role set changed after issue: no longer requires a pin; the pin is kept
    for requires_now in [false, true] {
        for observed in [&here, &mapped_here] {
            assert_eq!(
                pins_for_renewal(&presented, login, requires_now, observed),
                Ok(RenewalPins {
                    pinned,
                    login_ip: login,
                    endpoint: None,
                })
            );
        }
    }
    // presented pins in mapped form come back canonical
    assert_eq!(
        pins_for_renewal(
            &CertPin::Nets(vec![net("::ffff:203.0.113.9/128")]),
            Some(ip("::ffff:10.0.0.1")),
            false,
            &here
        ),
        Ok(RenewalPins {
            pinned,
            login_ip: Some(ip("10.0.0.1")),
            endpoint: None,
        })
    );
    // the pin does not move to the renewal's address
    let err =
        pins_for_renewal(&presented, login, false, &seen("198.51.100.1:1", true)).unwrap_err();
    assert_eq!(err.reason.code(), "pinned_ip_mismatch");
    let err =
        pins_for_renewal(&presented, login, false, &seen("203.0.113.9:1", false)).unwrap_err();
    assert_eq!(err.reason.code(), "untrusted_client_ip");
    // unpinned certificate, roles still do not require a pin: stays unpinned, login IP kept
    assert_eq!(
        pins_for_renewal(
            &CertPin::None,
            Some(ip("10.0.0.1")),
            false,
            &seen("198.51.100.1:1", true)
        ),
        Ok(RenewalPins {
            pinned: None,
            login_ip: Some(ip("10.0.0.1")),
            endpoint: None,
        })
    );
    // unpinned certificate, roles now require a pin: refused, log in again
    let err = pins_for_renewal(&CertPin::None, login, true, &here).unwrap_err();
    assert_eq!(err.reason.code(), "pinned_ip_missing");
    assert!(err.message.contains("renewal"), "{}", err.message);
    assert!(err.message.ends_with(LOG_IN_AGAIN));
    // a pin that cannot be carried over as issued is refused, never dropped: unreadable,
    // several networks, an empty list; whatever the roles say now
    for requires_now in [false, true] {
        for pin in [
            CertPin::Invalid("garbage".into()),
            CertPin::Nets(vec![net("203.0.113.9/32"), net("198.51.100.0/24")]),
            CertPin::Nets(vec![]),
        ] {
            let err = pins_for_renewal(&pin, login, requires_now, &here).unwrap_err();
            assert_eq!(err.reason.code(), "invalid_pin", "{pin:?}");
            assert!(err.message.ends_with(LOG_IN_AGAIN));
        }
    }
}

#[test]
fn every_provenance_mapped_and_unmapped() {
    let provenances = [
        Provenance::Direct,
        Provenance::ProxyV1,
        Provenance::ProxyV2,
        Provenance::SignedPropagation,
        Provenance::ForwardedHeader,
    ];
    let pin = CertPin::Ip(ip("203.0.113.9"));
    // LOCAL is never trusted, whatever the caller says: it neither pins nor satisfies one.
    let local = ObservedAddr::new(
        "203.0.113.9:7".parse().unwrap(),
        Provenance::ProxyLocal,
        true,
    );
    assert_eq!(
        outcome(&check_pin(true, &pin, &local)),
        Some("untrusted_client_ip")
    );
    assert!(pin_for_issue(true, Some(&local)).is_err());
    for p in provenances {
        for addr in ["203.0.113.9:7", "[::ffff:203.0.113.9]:7"] {
            let a: SocketAddr = addr.parse().unwrap();
            let trusted = ObservedAddr::new(a, p, true);
            let untrusted = ObservedAddr::new(a, p, false);
            assert_eq!(
                outcome(&check_pin(true, &pin, &trusted)),
                None,
                "{p} {addr}"
            );
            assert_eq!(
                outcome(&check_pin(true, &pin, &untrusted)),
                Some("untrusted_client_ip"),
                "{p} {addr}"
            );
            assert_eq!(
                pin_for_issue(true, Some(&trusted)),
                Ok(Some(net("203.0.113.9/32"))),
                "{p} {addr}"
            );
            assert_eq!(
                pin_for_issue(true, Some(&untrusted)).unwrap_err().reason,
                DenyReason::UntrustedClientIp
            );
            let d = check_pin(false, &pin, &untrusted);
            assert!(
                d.denial().unwrap().message.contains(p.as_str()),
                "{p}: message names the provenance"
            );
        }
        for addr in [
            "203.0.113.10:7",
            "[::ffff:203.0.113.10]:7",
            "[::203.0.113.9]:7",
        ] {
            let o = ObservedAddr::new(addr.parse().unwrap(), p, true);
            assert_eq!(
                outcome(&check_pin(false, &pin, &o)),
                Some("pinned_ip_mismatch"),
                "{p} {addr}"
            );
        }
    }
}

#[test]
fn long_pins_are_summarised_in_messages() {
    let nets: Vec<IpNet> = (0..100u8).map(|i| net(&format!("10.{i}.0.0/16"))).collect();
    let d = check_pin(false, &CertPin::Nets(nets), &seen("192.0.2.1:1", true));
    let denial = d.denial().unwrap();
    assert_eq!(denial.reason, DenyReason::PinnedIpMismatch);
    assert!(
        denial.message.contains("10.7.0.0/16, ... (100 networks)"),
        "{}",
        denial.message
    );
    assert!(!denial.message.contains("10.8.0.0/16"));
    let d = check_pin(
        false,
        &CertPin::Invalid("bad\nline".into()),
        &seen("192.0.2.1:1", true),
    );
    assert!(
        d.denial().unwrap().message.contains(r#"("bad\nline")"#),
        "{:?}",
        d
    );
}

/// Killed mutants (docs/testing.md): `is_pinned` says whether any pin, readable or not, is
/// there; only `None` is unpinned.
#[test]
fn is_pinned_for_every_kind_of_pin() {
    assert!(!CertPin::None.is_pinned());
    assert!(CertPin::Ip(ip("192.0.2.1")).is_pinned());
    assert!(CertPin::Nets(vec![net("10.0.0.0/8")]).is_pinned());
    assert!(CertPin::Nets(vec![]).is_pinned());
    assert!(CertPin::Invalid("bad".into()).is_pinned());
}

/// Killed mutants (docs/testing.md): the pin as the denial messages show it. Networks are
/// separated by `, `; up to 8 are listed, then the count.
#[test]
fn pins_and_denials_display_exactly() {
    assert_eq!(CertPin::None.to_string(), "no pin");
    assert_eq!(CertPin::Ip(ip("::ffff:192.0.2.1")).to_string(), "192.0.2.1");
    assert_eq!(
        CertPin::Nets(vec![net("10.0.0.0/8"), net("2001:db8::/32")]).to_string(),
        "10.0.0.0/8, 2001:db8::/32"
    );
    let nets = |n: u8| CertPin::Nets((0..n).map(|i| net(&format!("10.{i}.0.0/16"))).collect());
    let eight = nets(8).to_string();
    assert_eq!(eight.matches(", ").count(), 7, "{eight}");
    assert!(eight.ends_with("10.7.0.0/16"), "{eight}");
    let nine = nets(9).to_string();
    assert!(nine.ends_with("10.7.0.0/16, ... (9 networks)"), "{nine}");
    assert!(!nine.contains("10.8.0.0"), "{nine}");
    assert_eq!(
        CertPin::Invalid("x".repeat(200)).to_string(),
        format!("unreadable pin ({:?})", "x".repeat(120))
    );
    for reason in [
        DenyReason::PinnedIpMissing,
        DenyReason::PinnedIpMismatch,
        DenyReason::UntrustedClientIp,
        DenyReason::InvalidPin,
        DenyReason::PinTooWide,
        DenyReason::RoleMappingFailed,
    ] {
        assert_eq!(reason.to_string(), reason.code());
    }
    let Decision::Deny(denial) = check_pin(true, &CertPin::None, &seen("192.0.2.1:5", true)) else {
        panic!("allowed");
    };
    assert_eq!(
        denial.to_string(),
        format!("pinned_ip_missing: {}", denial.message)
    );
    assert!(denial.to_string().ends_with(LOG_IN_AGAIN));
}

/// A pin bound to a private endpoint holds only through it: the same address through
/// another endpoint, through none, or a bound pin read as unbound (`check_pin`) is refused
/// `pinned_endpoint_mismatch`; the address rules come first; an endpoint without a pin is
/// `invalid_pin`; renewal keeps the endpoint and refuses another one.
#[test]
fn a_pin_bound_to_an_endpoint_holds_only_through_it() {
    use ippin_policy::{Endpoint, check_pin_at, pins_for_renewal_at};
    let e1 = Endpoint::parse("vpce-0123456789abcdef0").unwrap();
    let e2 = Endpoint::parse("azure:7").unwrap();
    let pin = CertPin::Ip(ip("10.0.0.5"));
    let direct = seen("10.0.0.5:4000", true);
    let via = |e: Endpoint| direct.with_endpoint(e);
    let rows: [(Option<&Endpoint>, ObservedAddr, Option<&str>); 7] = [
        (Some(&e1), via(e1), None),
        (Some(&e1), via(e2), Some("pinned_endpoint_mismatch")),
        (Some(&e1), direct, Some("pinned_endpoint_mismatch")),
        (None, via(e1), Some("pinned_endpoint_mismatch")),
        (None, direct, None),
        // The address is checked first: another address is a mismatch of the address.
        (
            Some(&e1),
            seen("10.0.0.6:4000", true).with_endpoint(e1),
            Some("pinned_ip_mismatch"),
        ),
        (
            Some(&e1),
            seen("10.0.0.5:4000", false).with_endpoint(e1),
            Some("untrusted_client_ip"),
        ),
    ];
    for (bound, observed, want) in rows {
        let got = check_pin_at(true, &pin, bound, &observed);
        assert_eq!(outcome(&got), want, "{bound:?} {observed}");
    }
    // `check_pin` is the unbound case.
    assert_eq!(
        outcome(&check_pin(true, &pin, &via(e1))),
        Some("pinned_endpoint_mismatch")
    );
    assert_eq!(outcome(&check_pin(false, &CertPin::None, &via(e1))), None);
    // An endpoint without a pin is unreadable, not unpinned.
    assert_eq!(
        outcome(&check_pin_at(false, &CertPin::None, Some(&e1), &via(e1))),
        Some("invalid_pin")
    );
    // The message says both endpoints.
    let d = check_pin_at(true, &pin, Some(&e1), &via(e2));
    let m = &d.denial().unwrap().message;
    assert!(
        m.contains("vpce-0123456789abcdef0") && m.contains("azure:7"),
        "{m}"
    );
    // Renewal keeps the endpoint, through it only.
    let kept = pins_for_renewal_at(&pin, Some(&e1), None, true, &via(e1)).unwrap();
    assert_eq!(kept.endpoint, Some(e1));
    assert_eq!(kept.pinned, Some(net("10.0.0.5/32")));
    for observed in [via(e2), direct] {
        let e = pins_for_renewal_at(&pin, Some(&e1), None, true, &observed).unwrap_err();
        assert_eq!(e.reason, DenyReason::PinnedEndpointMismatch);
    }
    assert_eq!(
        pins_for_renewal(&pin, None, true, &via(e1))
            .unwrap_err()
            .reason
            .code(),
        "pinned_endpoint_mismatch"
    );
    // Names: lowercase letters, digits, `-` and `:`, 1 to 32 bytes.
    for bad in ["", "VPCE-1", "vpce 1", "a".repeat(33).as_str(), "vpce-é"] {
        assert!(Endpoint::parse(bad).is_none(), "{bad:?}");
    }
    assert_eq!(
        Endpoint::parse("gcp:18446744073709551615")
            .unwrap()
            .to_string(),
        "gcp:18446744073709551615"
    );
}

proptest::proptest! {
    /// With endpoints, the decision is the address decision and then equal endpoints: for any
    /// pin, observation and pair of endpoints.
    #[test]
    fn the_endpoint_check_follows_the_address_check(
        host in 0u8..4, seen_host in 0u8..4, trusted: bool, required: bool,
        bound in proptest::option::of(0u8..3), through in proptest::option::of(0u8..3),
    ) {
        use ippin_policy::{Endpoint, check_pin_at};
        let name = |n: u8| Endpoint::parse(&format!("gcp:{n}")).unwrap();
        let pin = CertPin::Ip(ip(&format!("10.0.0.{host}")));
        let mut observed = seen(&format!("10.0.0.{seen_host}:4000"), trusted);
        if let Some(t) = through {
            observed = observed.with_endpoint(name(t));
        }
        let bound = bound.map(name);
        let address = check_pin(required, &pin, &seen(&format!("10.0.0.{seen_host}:4000"), trusted));
        let got = check_pin_at(required, &pin, bound.as_ref(), &observed);
        if !address.is_allow() {
            proptest::prop_assert_eq!(outcome(&got), outcome(&address));
        } else if bound == observed.endpoint() {
            proptest::prop_assert!(got.is_allow());
        } else {
            proptest::prop_assert_eq!(outcome(&got), Some("pinned_endpoint_mismatch"));
        }
    }
}
