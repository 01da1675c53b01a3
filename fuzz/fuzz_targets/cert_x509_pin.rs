#![no_main]
//! X.509 pin extraction: no panic, and the fast path agrees with the full
//! decoder (same answer whenever x509-cert decodes the certificate; never
//! an error where the full decoder succeeds; never a success where the full
//! decoder fails for a pin reason).

use ippin_cert::x509::{client_identity, pin, pin_fast, pinned_ip, pinned_ip_fast};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let full = pin(der);
    let fast = pin_fast(der);
    match (&full, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("full decoded {a:?} but fast failed: {e}"),
        (Err(e), Ok(_)) => assert_eq!(e.code(), "der", "fast succeeded where full failed: {e}"),
        (Err(a), Err(b)) => {
            if a.code() != "der" {
                assert_eq!(a.code(), b.code());
            }
        }
    }
    if let Ok(Some(net)) = &fast {
        // a pin is always canonical: never IPv4-mapped, host bits zero, never /0
        assert_eq!(net.addr(), net.addr().to_canonical());
        assert_eq!(*net, net.trunc());
        assert!(net.prefix_len() > 0);
    }
    // The one-address readers are the same readers, with a network refused rather than read
    // as "unpinned".
    for (net_reader, one_reader) in [(&full, pinned_ip(der)), (&fast, pinned_ip_fast(der))] {
        match (net_reader, one_reader) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some(n)), Ok(Some(a))) => {
                assert_eq!(n.prefix_len(), n.max_prefix_len());
                assert_eq!(n.addr(), a);
            }
            (Ok(Some(n)), Err(e)) => {
                assert!(n.prefix_len() < n.max_prefix_len());
                assert_eq!(e.code(), "pin_is_network");
            }
            (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
            other => panic!("{other:?}"),
        }
    }
    if let Ok(id) = client_identity(der) {
        assert_eq!(Ok(id.pin), full.map_err(|_| ()));
    }
});
