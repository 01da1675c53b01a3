#![no_main]
//! X.509 pin extraction: no panic, and the fast path agrees with the full
//! decoder (same answer whenever x509-cert decodes the certificate; never
//! an error where the full decoder succeeds; never a success where the full
//! decoder fails for a pin reason).

use ippin_cert::x509::{client_identity, pinned_ip, pinned_ip_fast};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let full = pinned_ip(der);
    let fast = pinned_ip_fast(der);
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
    if let Ok(Some(ip)) = &fast {
        // a pin is always the canonical address (never IPv4-mapped)
        assert_eq!(*ip, ip.to_canonical());
    }
    if let Ok(id) = client_identity(der) {
        assert_eq!(Ok(id.pinned_ip), full.map_err(|_| ()));
    }
});
