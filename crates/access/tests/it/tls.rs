//! The mutual-TLS decision, row by row, and its fail-closed audit.

use std::collections::HashMap;
use std::sync::Mutex;

use ippin_access::observed::{ObservedAddr, Provenance};
use ippin_access::tls::{self, IdentityCache, TlsAccess, TlsDenyReason, TlsEvent};
use ippin_access::{CertPin, User};

use crate::fixtures::{Issuer, NOW, patched, patched_last};

fn users() -> HashMap<String, User> {
    HashMap::from([
        (
            "alice".to_owned(),
            User::new(true, vec!["pinned-ip".into()]),
        ),
        ("bob".to_owned(), User::new(false, vec!["dev".into()])),
    ])
}

fn seen(addr: &str, trusted: bool) -> ObservedAddr {
    ObservedAddr::new(addr.parse().unwrap(), Provenance::ProxyV2, trusted)
}

fn code(access: &TlsAccess) -> &'static str {
    access.code()
}

#[test]
fn the_table_row_by_row() {
    let issuer = Issuer::new();
    let pinned = issuer.client("alice", Some("192.0.2.7".parse().unwrap()));
    let unpinned_alice = issuer.client("alice", None);
    let bob = issuer.client("bob", None);
    let bob_pinned = issuer.client("bob", Some("192.0.2.7".parse().unwrap()));
    let carol = issuer.client("carol", Some("192.0.2.7".parse().unwrap()));
    let broken_pin = patched(&pinned, b"192.0.2.7", b"192.0.2.x");
    // The subject's (the last) CN attribute type (2.5.4.3) turned into OU (2.5.4.11): no user.
    let no_cn = patched_last(
        &bob,
        &[0x06, 0x03, 0x55, 0x04, 0x03],
        &[0x06, 0x03, 0x55, 0x04, 0x0b],
    );
    let users = users();
    let here = seen("192.0.2.7:5000", true);
    let there = seen("198.51.100.1:5000", true);
    let untrusted = seen("192.0.2.7:5000", false);
    let mapped = seen("[::ffff:192.0.2.7]:5000", true);
    let rows: &[(&str, &[u8], ObservedAddr, &str)] = &[
        ("pinned, from its address", &pinned, here, "allow"),
        ("pinned, mapped spelling", &pinned, mapped, "allow"),
        ("pinned, elsewhere", &pinned, there, "pinned_ip_mismatch"),
        (
            "pinned, untrusted observation",
            &pinned,
            untrusted,
            "untrusted_client_ip",
        ),
        (
            "role requires a pin, none",
            &unpinned_alice,
            here,
            "pinned_ip_missing",
        ),
        ("no pin required, none", &bob, there, "allow"),
        ("no pin required, untrusted", &bob, untrusted, "allow"),
        (
            "a pin is enforced whatever the roles",
            &bob_pinned,
            there,
            "pinned_ip_mismatch",
        ),
        ("unknown user", &carol, here, "unknown_user"),
        ("unreadable pin", &broken_pin, here, "invalid_pin"),
        ("no user, pin readable", &no_cn, here, "invalid_identity"),
        // Nothing reads, so the pin does not either: invalid, never "unpinned".
        (
            "not a certificate",
            b"\x30\x03\x02\x01\x00",
            here,
            "invalid_pin",
        ),
    ];
    // The validity window, checked again after TLS (a resumed session skips TLS's check).
    for (when, want) in [
        (NOW + 3601, "expired"),
        (NOW - 61, "not_yet_valid"),
        (NOW + 3600, "allow"),
    ] {
        let v = tls::decide_der(&pinned, &users, &here, when);
        assert_eq!(v.access.code(), want, "at {when}");
    }
    for (what, der, observed, want) in rows {
        let v = tls::decide_der(der, &users, observed, NOW);
        assert_eq!(code(&v.access), *want, "{what}");
        // The cached path decides the same.
        let cache = IdentityCache::new(4);
        let sink = |_: TlsEvent| true;
        let c = tls::check(&cache, der, &users, observed, NOW, &sink);
        assert_eq!(c, v, "{what}: cached and audited path agrees");
    }
    // What the verdict carries.
    let v = tls::decide_der(&pinned, &users, &here, NOW);
    assert_eq!(v.user, "alice");
    assert_eq!(v.roles, vec!["pinned-ip".to_owned()]);
    assert!(v.pin_requirement.is_required());
    assert_eq!(v.pin, CertPin::Ip("192.0.2.7".parse().unwrap()));
    let bad = tls::decide_der(&broken_pin, &users, &here, NOW);
    assert!(
        matches!(bad.pin, CertPin::Invalid(_)),
        "never `None`: {:?}",
        bad.pin
    );
    match &tls::decide_der(&pinned, &users, &there, NOW).access {
        TlsAccess::Deny { reason, message } => {
            assert_eq!(
                *reason,
                TlsDenyReason::Pin(ippin_policy::DenyReason::PinnedIpMismatch)
            );
            assert!(message.contains("log in again"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_removed_user_is_refused_at_once() {
    let issuer = Issuer::new();
    let bob = issuer.client("bob", None);
    let mut users = users();
    let here = seen("192.0.2.7:5000", true);
    assert!(
        tls::decide_der(&bob, &users, &here, NOW)
            .access
            .is_allowed()
    );
    users.remove("bob");
    assert_eq!(
        tls::decide_der(&bob, &users, &here, NOW).access.code(),
        "unknown_user"
    );
}

#[test]
fn audit_is_fail_closed_and_names_the_decision() {
    let issuer = Issuer::new();
    let pinned = issuer.client("alice", Some("192.0.2.7".parse().unwrap()));
    let users = users();
    let cache = IdentityCache::default();
    let here = seen("192.0.2.7:5000", true);
    let there = seen("198.51.100.1:5000", true);
    let lines = Mutex::new(Vec::new());
    let sink = |e: TlsEvent| {
        lines
            .lock()
            .unwrap()
            .push(serde_json::to_value(&e).unwrap());
        true
    };
    assert!(
        tls::check(&cache, &pinned, &users, &here, NOW, &sink)
            .access
            .is_allowed()
    );
    assert!(
        !tls::check(&cache, &pinned, &users, &there, NOW, &sink)
            .access
            .is_allowed()
    );
    let lines = lines.into_inner().unwrap();
    assert_eq!(lines[0]["event"], "access_allowed");
    assert_eq!(lines[0]["user"], "alice");
    assert_eq!(lines[0]["observed"], "192.0.2.7:5000");
    assert_eq!(lines[0]["provenance"], "proxy_v2");
    assert_eq!(lines[0]["pinned"], "192.0.2.7");
    assert_eq!(lines[1]["event"], "access_denied");
    assert_eq!(lines[1]["reason"], "pinned_ip_mismatch");
    // A sink that cannot record: refused, even what would have been allowed.
    let broken = |_: TlsEvent| false;
    let v = tls::check(&cache, &pinned, &users, &here, NOW, &broken);
    assert_eq!(v.access, TlsAccess::AuditUnavailable);
    assert_eq!(v.access.code(), "audit_unavailable");
}

#[test]
fn codes_display_and_audit_text() {
    for r in [
        TlsDenyReason::InvalidIdentity,
        TlsDenyReason::UnknownUser,
        TlsDenyReason::Pin(ippin_policy::DenyReason::PinnedIpMismatch),
        TlsDenyReason::UnknownDecision,
        TlsDenyReason::NoClientCertificate,
    ] {
        assert_eq!(r.to_string(), r.code());
    }
    let ip = "192.0.2.7".parse().unwrap();
    assert_eq!(
        ippin_access::pin::pin_strings(&CertPin::Ip(ip)),
        vec!["192.0.2.7".to_owned()]
    );
    assert_eq!(
        ippin_access::pin::pin_text(&CertPin::Ip(ip)).as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(ippin_access::pin::pin_text(&CertPin::None), None);
    let net = "10.0.0.0/8".parse().unwrap();
    assert_eq!(
        ippin_access::pin::pin_strings(&CertPin::Nets(vec![net])),
        vec!["10.0.0.0/8".to_owned()]
    );
    assert!(ippin_access::pin::pin_strings(&CertPin::Invalid("x".into())).is_empty());
}

/// Prefix pins: a role's `pin_source_ip_prefix` lets a network pin through, from inside it
/// only; a role that wants one address refuses the same certificate as too wide.
#[test]
fn network_pins_follow_the_roles_prefix() {
    use ippin_policy::{PinPrefix, PinRequirement};
    let issuer = Issuer::new();
    let der = issuer.client_net("carol", "2001:db8:1:2::/64".parse().unwrap());
    let prefix64 = PinRequirement::Required(PinPrefix::new(32, 64).unwrap());
    let mut users: HashMap<String, User> = HashMap::new();
    users.insert(
        "carol".into(),
        User::new(true, vec!["v6".into()]).with_pin_requirement(prefix64),
    );
    let inside = seen("[2001:db8:1:2:aaaa::1]:5000", true);
    let also_inside = seen("[2001:db8:1:2::ffff]:5000", true);
    let outside = seen("[2001:db8:1:3::1]:5000", true);
    let untrusted = seen("[2001:db8:1:2::1]:5000", false);
    for (observed, want) in [
        (&inside, "allow"),
        (&also_inside, "allow"),
        (&outside, "pinned_ip_mismatch"),
        (&untrusted, "untrusted_client_ip"),
    ] {
        let v = tls::decide_der(&der, &users, observed, NOW);
        assert_eq!(v.access.code(), want, "{observed:?}");
        assert_eq!(
            v.pin,
            CertPin::Nets(vec!["2001:db8:1:2::/64".parse().unwrap()])
        );
    }
    // the same certificate for a user whose roles pin one address: too wide
    users.insert("carol".into(), User::new(true, vec!["exact".into()]));
    let v = tls::decide_der(&der, &users, &inside, NOW);
    assert_eq!(v.access.code(), "pin_too_wide");
    // and for a user whose roles pin nothing: still enforced as a pin
    users.insert("carol".into(), User::new(false, vec!["dev".into()]));
    assert_eq!(
        tls::decide_der(&der, &users, &inside, NOW).access.code(),
        "allow"
    );
    assert_eq!(
        tls::decide_der(&der, &users, &outside, NOW).access.code(),
        "pinned_ip_mismatch"
    );
}

/// Access comes from roles: a directory that answers a user without any (a
/// `User::new(false, vec![])` for every name, say) lets nobody in.
#[test]
fn a_user_without_roles_is_refused_as_unknown() {
    let issuer = Issuer::new();
    let dave = issuer.client("dave", None);
    let users = HashMap::from([("dave".to_owned(), User::new(false, vec![]))]);
    let v = tls::decide_der(&dave, &users, &seen("192.0.2.7:5000", true), NOW);
    assert_eq!(code(&v.access), "unknown_user");
    let users = HashMap::from([("dave".to_owned(), User::new(false, vec!["dev".into()]))]);
    let v = tls::decide_der(&dave, &users, &seen("192.0.2.7:5000", true), NOW);
    assert_eq!(code(&v.access), "allow");
}

/// A certificate whose pin is bound to a private endpoint is allowed only through it (and
/// the cached path agrees); the pin readers that cannot carry the endpoint read it as an
/// invalid pin, never as an unbound one.
#[test]
fn a_pin_bound_to_an_endpoint_holds_only_through_it() {
    use ippin_policy::Endpoint;
    let issuer = Issuer::new();
    let bound = issuer.client_bound(
        "alice",
        "10.0.0.5".parse().unwrap(),
        "vpce-0123456789abcdef0",
    );
    let users = users();
    let e1 = Endpoint::parse("vpce-0123456789abcdef0").unwrap();
    let e2 = Endpoint::parse("gcp:9").unwrap();
    let direct = seen("10.0.0.5:5000", true);
    for (observed, want) in [
        (direct.with_endpoint(e1), "allow"),
        (direct.with_endpoint(e2), "pinned_endpoint_mismatch"),
        (direct, "pinned_endpoint_mismatch"),
        (
            seen("10.0.0.6:5000", true).with_endpoint(e1),
            "pinned_ip_mismatch",
        ),
    ] {
        let v = tls::decide_der(&bound, &users, &observed, NOW);
        assert_eq!(code(&v.access), want, "{observed}");
        assert_eq!(v.pinned_endpoint, Some(e1));
        let cache = IdentityCache::new(4);
        let c = tls::check(&cache, &bound, &users, &observed, NOW, &|_: TlsEvent| true);
        assert_eq!(c, v, "{observed}: cached and audited path agrees");
    }
    // The readers of the pin alone.
    assert!(matches!(
        ippin_access::pin::x509_pin(&bound),
        CertPin::Invalid(_)
    ));
    assert_eq!(
        ippin_access::pin::x509_pin_at(&bound),
        (CertPin::Ip("10.0.0.5".parse().unwrap()), Some(e1))
    );
    // An unbound certificate through an endpoint: refused too (the address alone says
    // nothing there).
    let plain = issuer.client("alice", Some("10.0.0.5".parse().unwrap()));
    let v = tls::decide_der(&plain, &users, &direct.with_endpoint(e1), NOW);
    assert_eq!(code(&v.access), "pinned_endpoint_mismatch");
    assert_eq!(ippin_access::pin::x509_pin_at(&plain).1, None);
}
