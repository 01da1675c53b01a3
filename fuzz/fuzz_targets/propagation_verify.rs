//! Arbitrary bytes into the inner's verifier (`ippin-propagation`), with a
//! fixed static key, audience and connection: no panic, and nothing is
//! accepted that was not signed. The verifier trusts a CA made fresh at
//! start, so no input can carry a grant it signed; the seeds are genuine
//! signed blocks for this inner and connection (from another CA), so
//! inputs derived from them reach the certificate and MAC checks.
#![no_main]

use std::sync::OnceLock;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_propagation::{Link, SecretKey, TrustAnchor, Verifier, address_block_for};
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
        Verifier::new(anchor, SecretKey::from_bytes([0x5e; 32]), "inner-tls", 30, 64)
            .with_grant_cache_capacity(8)
    })
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    // The seeds are bound to this connection and these addresses.
    let link = Link {
        front: "127.0.0.1:1".parse().expect("addr"),
        inner: "127.0.0.1:4443".parse().expect("addr"),
    };
    let client = "127.0.0.1:40001".parse().expect("addr");
    let reached = "127.0.0.1:4000".parse().expect("addr");
    // The whole input as the TLV value, under the header's addresses.
    let sent = address_block_for(client, reached);
    assert!(v.verify_block(&sent, data, link, NOW).is_err());
    // The input split into the header's addresses and the TLV value.
    if let Some((&n, rest)) = data.split_first() {
        let at = usize::from(n).min(rest.len());
        let (sent, value) = rest.split_at(at);
        assert!(v.verify_block(sent, value, link, NOW).is_err());
    }
    // Nothing the fuzzer writes is a verified grant.
    assert_eq!(v.grant_cache_len(), 0);
});
