//! Network-restrictions YAML: no panic; a parsed policy treats an IPv4 destination and its
//! IPv4-mapped form alike, and never allows a destination whose address the kernel connects
//! to (`kernel_destination`: the unspecified address is loopback) a deny rule covers.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use ippin_policy::{NetworkRestrictions, kernel_destination};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = NetworkRestrictions::parse("fuzz.yaml", text) else {
        return;
    };
    let mut probes: Vec<IpAddr> = Vec::new();
    for chunk in data.chunks(4).take(16) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        probes.push(IpAddr::V4(Ipv4Addr::from(b)));
    }
    for net in policy
        .allow_rules()
        .iter()
        .chain(policy.deny_rules())
        .take(64)
    {
        probes.push(net.network());
    }
    for dst in probes {
        let d = policy.decide(dst);
        if let IpAddr::V4(v4) = dst {
            assert_eq!(policy.decide(IpAddr::V6(v4.to_ipv6_mapped())), d);
        }
        // Decided on where the kernel connects: `0.0.0.0` is loopback, whatever a deny rule
        // holding 0.0.0.0 says (the fuzz target found it asserted the written address).
        let reached = kernel_destination(dst);
        if policy.deny_rules().iter().any(|n| n.contains(&reached)) {
            assert!(!d.is_allowed(), "{dst} reaches {reached}, denied");
        }
    }
});
