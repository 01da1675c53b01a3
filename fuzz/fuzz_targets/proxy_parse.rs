//! The PROXY header parser never panics; an accepted header re-encodes and
//! re-parses to the same header (but one that repeats a cloud endpoint TLV,
//! which the builder refuses to write).
#![no_main]

use ippin_proxy_protocol::{Command, Tlv, V1Builder, V2Builder, parse, parse_exact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((h, used)) = parse(data) else {
        return;
    };
    assert_eq!(used, h.header_len());
    assert_eq!(&data[..used], h.as_bytes());
    // One byte less is always incomplete.
    assert!(parse(&data[..used - 1]).unwrap_err().is_incomplete());
    let bytes = if h.version() == 1 {
        V1Builder::new().addresses(h.addresses()).unwrap().encode().unwrap()
    } else {
        match V2Builder::from_header(&h) {
            Ok(b) => b.encode().unwrap(),
            Err(e) => {
                // The one refusal: a cloud endpoint TLV repeated.
                let repeated = [0xE0u8, 0xEA, 0xEE]
                    .iter()
                    .any(|k| h.tlvs().filter(|t| t.kind() == *k).count() > 1);
                assert!(repeated, "{e}");
                assert!(ippin_proxy_protocol::endpoint_ids(h.tlvs()).is_err());
                return;
            }
        }
    };
    let again = parse_exact(&bytes).expect("a re-encoded header parses");
    assert_eq!(again.version(), h.version());
    assert_eq!(again.command(), h.command());
    assert_eq!(again.addresses(), h.addresses());
    assert_eq!(again.source(), h.source());
    assert_eq!(again.crc32c(), h.crc32c());
    let a: Vec<Tlv<'_>> = h.tlvs().collect();
    let b: Vec<Tlv<'_>> = again.tlvs().collect();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        match (x, y) {
            (Tlv::Crc32c(_), Tlv::Crc32c(_)) => {}
            _ => assert_eq!(x, y),
        }
    }
    // A canonical header (PROXY, or LOCAL without addresses) re-encodes to
    // the same bytes, except for v1 text forms and CRC32C values.
    if h.version() == 2 && (h.command() == Command::Proxy || h.as_bytes()[13] == 0) {
        assert_eq!(bytes, h.as_bytes());
    }
});
