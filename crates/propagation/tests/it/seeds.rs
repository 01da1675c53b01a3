//! The `propagation_verify` fuzz target's seeds
//! (`fuzz/corpus/propagation_verify/seed-*`) are version-4 signed blocks (one with an endpoint)
//! for the fuzz target's inner (key `[0x5e; 32]`, audience `inner-tls`)
//! bound to its connection (127.0.0.1:1 → 127.0.0.1:4443), so that fuzz
//! inputs derived from them reach the certificate and MAC checks. They
//! were signed by a CA the fuzz target does not trust.

use ippin_propagation::{SecretKey, decode, wire};

#[test]
fn fuzz_seeds_hold_v4_blocks_for_the_fuzz_inner() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/propagation_verify");
    let fuzz_inner = SecretKey::from_bytes([0x5e; 32]).public_key();
    let tcp4 = wire::FAMILY_TCP4;
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Only the committed seeds: a fuzz run adds its own inputs beside them.
        if !name.starts_with("seed-") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let block = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(block.grant.inner_key, fuzz_inner.0, "{name}");
        assert_eq!(block.grant.audience, b"inner-tls", "{name}");
        assert_eq!(
            block.connection,
            [tcp4, 127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0x11, 0x5b],
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 2, "{seen} seeds");
}
