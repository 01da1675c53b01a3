//! The signed-block decoder (TLV 0xE7, version 3: grant + MAC, bound to the front → inner connection) never
//! panics, and what it accepts re-encodes to the same bytes (the block,
//! and the grant inside it on its own). The same bytes as a whole
//! connection prefix go through the header-sequence decision of a listener
//! with propagation: no panic, and a signed observation is never made up
//! (no input here carries a grant signed by the fuzz CA's front, nor a MAC
//! under a key agreed with the fuzz inner's static key).
#![no_main]

use std::sync::OnceLock;

use ippin::propagation::{SeqStep, step};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_policy::Provenance;
use ippin_propagation::wire::{DOMAIN_GRANT, decode_grant};
use ippin_propagation::{SecretKey, TrustAnchor, Verifier, decode};
use ippin_proxy_protocol as pp;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let ca = ippin_cert::x509::X509Ca::generate_p256(
            "fuzz CA",
            NOW - 10,
            NOW + 10,
            &mut UnwrapErr(SysRng),
        )
        .expect("CA");
        let anchor = TrustAnchor::from_der(ca.cert_der()).expect("anchor");
        // The seeds' grants name this key and audience (see the
        // `fuzz_seeds_hold_v3_blocks` test in the server crate), so inputs
        // get past the cheap checks to the certificate, signature and
        // validity checks. The CA is fresh: no seed certificate chains to it.
        Verifier::new(
            anchor,
            SecretKey::from_bytes([0x5e; 32]),
            "inner-tls",
            30,
            64,
        )
        .with_grant_cache_capacity(8)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = decode(data) {
        assert_eq!(block.encode().expect("re-encode"), data);
        assert_eq!(decode_grant(block.grant_bytes), Ok(block.grant));
        assert!(block.grant.transcript().starts_with(DOMAIN_GRANT));
    }
    if let Ok(grant) = decode_grant(data) {
        assert_eq!(grant.encode().expect("re-encode"), data);
    }
    let policy = pp::ListenerPolicy::new(pp::ProxyMode::On);
    // The seeds are bound to this connection (127.0.0.1:1 → 127.0.0.1:4443),
    // so inputs derived from them get past the connection check.
    let peer = "127.0.0.1:1".parse().expect("addr");
    let local = "127.0.0.1:4443".parse().expect("addr");
    let v = verifier();
    if let SeqStep::Accept { observed, consumed } = step(&policy, v, peer, local, data, true, NOW) {
        assert!(consumed <= data.len());
        assert_ne!(observed.provenance(), Provenance::SignedPropagation);
    }
    // Nothing the fuzzer writes is a verified grant.
    assert_eq!(v.grant_cache_len(), 0);
});
