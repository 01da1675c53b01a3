//! X-Forwarded-For and Forwarded parsers in both modes: no panic, canonical results, the
//! untrusted peer is never overridden by a header.
#![no_main]

use std::net::SocketAddr;

use ippin_policy::{
    ForwardedMode, Provenance, canonical_ip, client_from_forwarded, client_from_x_forwarded_for,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let lines: Vec<&str> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n').collect()
    };
    let peer: SocketAddr = if selector & 4 == 0 {
        "10.0.0.1:4000".parse().unwrap()
    } else {
        "192.0.2.1:4000".parse().unwrap()
    };
    let mode = if selector & 1 == 0 {
        ForwardedMode::CompatibleStrict
    } else {
        ForwardedMode::TrustedProxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ])
    };
    let result = if selector & 2 == 0 {
        client_from_x_forwarded_for(&lines, peer, &mode)
    } else {
        client_from_forwarded(&lines, peer, &mode)
    };
    if let Ok(o) = result {
        assert_eq!(canonical_ip(o.ip()), o.ip());
        assert!(o.is_trusted() || o.port() == 0);
        if matches!(mode, ForwardedMode::TrustedProxies(_)) && selector & 4 != 0 {
            assert_eq!(o.socket_addr(), peer);
            assert_eq!(o.provenance(), Provenance::Direct);
        }
    }
});
