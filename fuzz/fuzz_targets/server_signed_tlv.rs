//! The signed-TLV decoder (TLV 0xE7) never panics, and what it accepts
//! re-encodes to the same bytes. The same bytes as a whole connection
//! prefix go through the header-sequence decision of a listener with
//! propagation: no panic, and a signed observation is never made up (no
//! input here carries a signature by the fuzz CA's front).
#![no_main]

use std::sync::OnceLock;

use ippin::propagation::{SeqStep, TrustAnchor, Verifier, decode, step};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_policy::Provenance;
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
        Verifier::new(anchor, "inner", 30, 64)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = decode(data) {
        assert_eq!(block.encode().expect("re-encode"), data);
        let t = block.transcript();
        assert!(t.starts_with(ippin::propagation::wire::DOMAIN));
    }
    let policy = pp::ListenerPolicy::new(pp::ProxyMode::On);
    let peer = "127.0.0.1:1".parse().expect("addr");
    if let SeqStep::Accept { observed, consumed } = step(&policy, verifier(), peer, data, true, NOW)
    {
        assert!(consumed <= data.len());
        assert_ne!(observed.provenance(), Provenance::SignedPropagation);
    }
});
