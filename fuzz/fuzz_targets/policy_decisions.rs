//! The pin check and the network decision on arbitrary pins, observations, requirements and
//! rules: no panic; a pin-requiring role is allowed only through one network no wider than its
//! prefix (a single host when the prefix is exact), containing the address;
//! no destination is decided otherwise than the address the kernel connects to; one login's
//! renewals stay within its bound.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use ippin_policy::{
    CertPin, NetworkRestrictions, ObservedAddr, PinPrefix, PinRequirement, Provenance,
    canonical_ip, canonical_net, check_pin, check_pin_at, embedded_ipv4, kernel_destination,
    pin_for_issue, pins_for_renewal_at,
};
use libfuzzer_sys::fuzz_target;

fn ip(b: &[u8]) -> IpAddr {
    let mut x = [0u8; 16];
    for (d, s) in x.iter_mut().zip(b) {
        *d = *s;
    }
    match b.first().map(|f| f % 4) {
        Some(0) => IpAddr::from([x[1], x[2], x[3], x[4]]),
        Some(1) => IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(x) & 0xffff_ffff | 0xffff_0000_0000)),
        _ => IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(x))),
    }
}

fn net(b: &[u8]) -> Option<IpNet> {
    let a = ip(b.get(1..)?);
    let len = *b.first()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    IpNet::new(a, len % (max + 1)).ok().map(|n| n.trunc())
}

/// One login's bound through renewals: the start kept, the end never past start + max nor
/// past now + ttl, `None` exactly from start + max on.
fn renewal(head: &[u8]) {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(head.iter().skip(i * 4).take(4)) {
            *d = *s;
        }
        // Small values and values near the top of u64 alike.
        let v = u64::from_le_bytes(b);
        if head.get(i).is_some_and(|f| f & 1 == 1) { u64::MAX - v } else { v }
    };
    let (start, now, ttl, max) = (word(0), word(1), word(2), word(3));
    match ippin_policy::renewal_validity(start, now, ttl, max) {
        Some((nb, na)) => {
            assert_eq!(nb, start);
            let end = start.checked_add(max).expect("an end that fits");
            assert!(now < end);
            assert!(na <= end && na <= now.saturating_add(ttl));
            assert!(na == end || na == now.saturating_add(ttl));
        }
        None => assert!(start.checked_add(max).is_none_or(|end| now >= end)),
    }
}

/// Issue and renewal: a pin only when required, for a trusted client, holding its address and
/// passing the access check it was issued under; a renewal allowed exactly when access is, a
/// pin that is not one network never renewed.
fn issue_and_renew(req: PinRequirement, pin: &CertPin, seen: &ObservedAddr) {
    match pin_for_issue(req, Some(seen)) {
        Ok(None) => assert!(!req.is_required()),
        Ok(Some(net)) => {
            assert!(req.is_required() && seen.is_trusted() && seen.port() != 0);
            assert!(canonical_net(net).contains(&canonical_ip(seen.ip())), "{net} {seen:?}");
            let issued = CertPin::Nets(vec![net]);
            assert!(check_pin_at(req, &issued, seen.endpoint().as_ref(), seen).is_allow());
        }
        Err(_) => assert!(req.is_required()),
    }
    let renewed = pins_for_renewal_at(pin, None, None, req, seen);
    match pin {
        CertPin::None | CertPin::Ip(_) => {
            assert_eq!(renewed.is_ok(), check_pin_at(req, pin, None, seen).is_allow());
        }
        CertPin::Nets(n) if n.len() == 1 => {
            let access = check_pin_at(req, pin, None, seen).is_allow();
            match renewed {
                Ok(r) => {
                    assert!(access);
                    assert_eq!(r.pinned, Some(canonical_net(n[0])));
                }
                Err(_) => assert!(!access),
            }
        }
        _ => assert!(renewed.is_err()),
    }
}

fuzz_target!(|data: &[u8]| {
    renewal(data.get(..16).unwrap_or_default());
    let mut chunks = data.chunks(18);
    let Some(head) = chunks.next() else { return };
    let flags = head.first().copied().unwrap_or(0);
    let observed_ip = ip(head.get(1..).unwrap_or_default());
    let nets: Vec<IpNet> = chunks.by_ref().take(4).filter_map(net).collect();
    let requires = flags & 1 != 0;
    let pin = if flags & 2 != 0 { CertPin::Ip(ip(&[flags])) } else { CertPin::Nets(nets.clone()) };
    let seen = ObservedAddr::new(SocketAddr::new(observed_ip, 5000), Provenance::ProxyV2, flags & 4 != 0);
    // A prefix requirement from two more bytes of the head (flag 8), else the bool form.
    let prefix = (flags & 8 != 0)
        .then(|| {
            let v4 = head.get(17).copied().unwrap_or(32) % 33;
            let v6 = head.get(16).copied().unwrap_or(128) % 129;
            PinPrefix::new(v4, v6).ok()
        })
        .flatten();
    let req = match prefix.filter(|_| requires) {
        Some(p) => PinRequirement::Required(p),
        None => PinRequirement::from(requires),
    };
    issue_and_renew(req, &pin, &seen);
    if let Some(p) = prefix.filter(|_| requires) {
        // Issue and check agree: the pin issued to this client under `p` is admitted by
        // `p` from the client's own (trusted) address.
        let issued = p.network(observed_ip);
        let trusted = ObservedAddr::new(SocketAddr::new(observed_ip, 5000), Provenance::ProxyV2, true);
        let own = check_pin(PinRequirement::Required(p), &CertPin::Nets(vec![issued]), &trusted);
        assert!(own.is_allow(), "{observed_ip} issued {issued} under {p:?}: {own:?}");
        let d = check_pin(PinRequirement::Required(p), &pin, &seen);
        // Exact is the narrowest requirement: what it allows, every prefix allows.
        if check_pin(true, &pin, &seen).is_allow() {
            assert!(d.is_allow(), "exact allowed but {p:?} refused {pin:?}: {d:?}");
        }
        if d.is_allow() {
            assert!(seen.is_trusted());
            assert!(p.admits(&pin), "{pin:?} {p:?}");
            assert!(pin.matches(observed_ip));
            if let CertPin::Nets(n) = &pin {
                assert_eq!(n.len(), 1);
                let one = canonical_net(n[0]);
                assert!(one.prefix_len() >= p.len_for(one.network()));
                assert!(one.contains(&canonical_ip(observed_ip)));
            }
        }
        return;
    }
    let d = check_pin(requires, &pin, &seen);
    if d.is_allow() && requires {
        assert!(pin.is_single_host(), "{pin:?}");
        assert!(pin.matches(observed_ip));
        let host = match &pin {
            CertPin::Ip(p) => canonical_ip(*p),
            CertPin::Nets(n) => canonical_ip(n[0].network()),
            _ => unreachable!(),
        };
        assert_eq!(host, canonical_ip(observed_ip));
    }
    if d.is_allow() {
        assert!(seen.is_trusted() || !pin.is_pinned());
    }
    // Rules: the first half of the remaining nets allow, the rest deny.
    let rules: Vec<IpNet> = chunks.take(8).filter_map(net).filter(|n| {
        !matches!(n, IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some())
    }).collect();
    let (allow, deny) = rules.split_at(rules.len() / 2);
    let Ok(p) = NetworkRestrictions::from_rules(allow, deny) else { return };
    let got = p.decide(observed_ip);
    let reached = kernel_destination(observed_ip);
    assert_eq!(p.decide(reached), got);
    if got.is_allowed() {
        let covers = |n: &IpNet| canonical_net(*n).contains(&reached);
        assert!(allow.iter().any(covers), "{observed_ip} allowed by no rule");
        assert!(!deny.iter().any(covers), "{observed_ip} allowed through a deny rule");
        if let Some(v4) = embedded_ipv4(reached) {
            assert!(p.decide(IpAddr::V4(v4)).is_allowed());
        }
    }
});
