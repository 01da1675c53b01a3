//! The etcd gateway decoders (`ippin_access::fleet`) on arbitrary bytes: every response
//! decoder never panics, and the watch stream decoder never holds more than its bound and
//! gives the same messages (or refuses) whatever the chunking.
#![no_main]

use ippin_access::fleet::{
    DeleteRangeResponse, HeaderResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    MessageSplitter, PutResponse, RangeResponse, TxnResponse, WatchResponse, WatchStream,
};
use libfuzzer_sys::fuzz_target;

/// Feeds `input` in pieces whose sizes come from `sizes` (cycled); the messages, or the
/// error that stopped the stream.
fn run(max: usize, input: &[u8], sizes: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
    let mut s = MessageSplitter::with_max_message(max);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes.get(i % sizes.len().max(1)).map_or(rest.len(), |&s| usize::from(s) + 1);
        i += 1;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let got = s.push(piece).map_err(drop)?;
        assert!(s.pending() <= max);
        for m in &got {
            // Only the framing: the bytes inside are checked by the JSON decoder.
            assert!(m.len() <= max && m.first() == Some(&b'{'));
            assert!(matches!(m.last(), Some(b'}' | b']')));
        }
        out.extend(got);
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let _ = RangeResponse::decode(data);
    let _ = PutResponse::decode(data);
    let _ = DeleteRangeResponse::decode(data);
    let _ = TxnResponse::decode(data);
    let _ = HeaderResponse::decode(data);
    let _ = LeaseGrantResponse::decode(data);
    let _ = LeaseKeepAliveResponse::decode(data);
    let _ = WatchResponse::decode(data);

    let [cap, nsizes, rest @ ..] = data else {
        return;
    };
    let (sizes, input) = rest.split_at(usize::from(*nsizes % 8).min(rest.len()));
    let max = 2 + usize::from(*cap) * 4;
    let chunked = run(max, input, sizes);
    let whole = run(max, input, &[]);
    assert_eq!(chunked, whole);
    let mut watch = WatchStream::with_max_message(max);
    let _ = watch.push(input);
    let _ = watch.finish();
});
