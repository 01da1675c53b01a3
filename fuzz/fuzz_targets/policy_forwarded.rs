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
    // Bits 3-4: how many proxies append (1 to 4).
    let hops = usize::from((selector >> 3) & 3) + 1;
    let mode = if selector & 1 == 0 {
        ForwardedMode::EveryPeerIsAProxy
    } else {
        ForwardedMode::TrustedProxies {
            proxies: vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
            hops,
        }
    };
    let result = if selector & 2 == 0 {
        client_from_x_forwarded_for(&lines, peer, &mode)
    } else {
        client_from_forwarded(&lines, peer, &mode)
    };
    if let Ok(o) = result {
        assert_eq!(canonical_ip(o.ip()), o.ip());
        assert!(o.is_trusted() || o.port() == 0);
        let proxies = matches!(mode, ForwardedMode::TrustedProxies { .. });
        if proxies && selector & 4 != 0 {
            assert_eq!(o.socket_addr(), peer);
            assert_eq!(o.provenance(), Provenance::Direct);
        }
        // A trusted peer (or every peer, in strict mode) that sends no header names no client.
        if lines.is_empty() && (selector & 4 == 0 || !proxies) {
            assert!(!o.is_trusted());
        }
        // Entries the client writes in front never change what is believed once the chain
        // is at least `hops` long: prefix one and compare.
        if proxies && selector & 2 == 0 && !lines.is_empty() {
            let mut prefixed = lines.clone();
            let first = format!("203.0.113.66, {}", lines[0]);
            prefixed[0] = &first;
            let entries = lines.iter().map(|l| l.split(',').count()).sum::<usize>();
            if entries >= hops
                && let Ok(again) = client_from_x_forwarded_for(&prefixed, peer, &mode)
            {
                assert_eq!(again, o);
            }
        }
    }
});
