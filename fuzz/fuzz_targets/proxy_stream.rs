//! The sans-IO stream reader (`ListenerPolicy::step`, which the tokio
//! adapter drives) fed arbitrary bytes in arbitrary segments: it never
//! panics, never asks to buffer past its limit, and decides the same
//! whatever the segmentation.
#![no_main]

use std::net::SocketAddr;

use ippin_proxy_protocol::{ListenerPolicy, ParseConfig, ProxyMode, Step};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Decision {
    Accept(ippin_proxy_protocol::Observed, Option<Vec<u8>>, usize),
    Refuse(ippin_proxy_protocol::Refusal),
}

/// Feeds `input` in segments whose sizes come from `sizes` (cycled), the
/// way a reader would: never past the buffer limit.
fn run(policy: &ListenerPolicy, peer: SocketAddr, input: &[u8], sizes: &[u8]) -> (Decision, usize) {
    let limit = policy.buffer_limit();
    let mut have = 0usize;
    let mut i = 0usize;
    loop {
        let eof = have == input.len();
        match policy.step(peer, &input[..have], eof) {
            Step::NeedMore => {
                assert!(!eof, "NeedMore at end of input");
                assert!(have < limit, "NeedMore with {have} bytes buffered, limit {limit}");
                let size = sizes.get(i % sizes.len().max(1)).map_or(usize::MAX, |&s| usize::from(s) + 1);
                i += 1;
                have = have.saturating_add(size).min(input.len()).min(limit);
            }
            Step::Accept { observed, header, consumed } => {
                assert!(consumed <= have);
                assert_eq!(header.map_or(0, |h| h.header_len()), consumed);
                if !observed.trusted {
                    assert_eq!(observed.addr.port(), 0);
                }
                return (Decision::Accept(observed, header.map(|h| h.as_bytes().to_vec()), consumed), have);
            }
            Step::Refuse(r) => return (Decision::Refuse(r), have),
            // `Step` is `#[non_exhaustive]`: a step this target does not know is a finding.
            _ => panic!("a Step this target does not handle"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, flags, cap, nsizes, rest @ ..] = data else {
        return;
    };
    let (sizes, input) = rest.split_at(usize::from(*nsizes % 8).min(rest.len()));
    let mut policy = ListenerPolicy::new(match mode % 3 {
        0 => ProxyMode::On,
        1 => ProxyMode::Off,
        _ => ProxyMode::Unspecified,
    })
    .with_parse_config(ParseConfig::with_max_header_len(16 + usize::from(*cap) * 8));
    policy.trusted_proxies = (flags & 1 == 1).then(|| vec!["127.0.0.0/8".parse().unwrap()]);
    let peer: SocketAddr = if flags & 2 == 0 { "127.0.0.1:4000" } else { "[2001:db8::1]:4000" }.parse().unwrap();
    let (chunked, _) = run(&policy, peer, input, sizes);
    let (whole, _) = run(&policy, peer, input, &[]);
    assert_eq!(chunked, whole);
});
