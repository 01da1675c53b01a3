//! The client's reading of an ippin SSH refusal (`ippin_access::ssh::refusal`) on arbitrary
//! stderr bytes: no panic; the answer does not depend on how the stream is cut into chunks
//! (the first byte chooses the cut); a line read as a refusal starts with the prefix and its
//! code reads back.
#![no_main]

use ippin_access::ssh::SshDenyReason;
use ippin_access::ssh::refusal::{REFUSAL_PREFIX, RefusalScan, parse_refusal_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    if let Some(reason) = parse_refusal_line(stream) {
        assert!(stream.starts_with(REFUSAL_PREFIX.as_bytes()));
        assert_eq!(SshDenyReason::from_code(reason.code()), Some(reason));
    }
    let mut whole = RefusalScan::new();
    whole.push(stream);
    let at = usize::from(cut).min(stream.len());
    let mut split = RefusalScan::new();
    split.push(&stream[..at]);
    split.push(&stream[at..]);
    assert_eq!(whole.finish(), split.finish());
});
