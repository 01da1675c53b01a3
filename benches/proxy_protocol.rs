//! PROXY header parsing, side by side: ippin-proxy-protocol, ppp, proxy-header,
//! proxy-protocol-rs.
//!
//! One operation = parse the header at the start of the buffer (the SSH
//! banner that follows stays untouched) and read the source IP, through
//! each crate's general entry point (v1/v2 auto-detected). ippin validates
//! every v2 TLV (and would verify a CRC32C) before returning; the peers
//! look at TLVs only when asked. For v2, `ppp-eager` and
//! `proxy-header-eager` are those two asked for every TLV before returning.
//!
//! Each group also times a floor (`floor_v1`, `floor_v2` below): the least
//! work any parser must do, so ippin can be reported as a multiple of it.
//!
//! Run: `cargo bench -p ippin-benches --bench proxy_protocol`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "proxy_peers.rs"]
mod peers;

use peers::{
    floor_v1, floor_v2, inputs, ippin, ppp, ppp_eager, proxy_header, proxy_header_eager,
    proxy_protocol_rs,
};

fn bench(c: &mut Criterion) {
    for (name, input) in inputs() {
        // All four must read the same source, or the comparison is moot.
        let want = ippin(&input);
        assert!(want.is_some(), "{name}");
        assert_eq!(ppp(&input), want, "{name}");
        assert_eq!(proxy_header(&input), want, "{name}");
        assert_eq!(proxy_protocol_rs(&input), want, "{name}");
        // The floors find the same line end / source.
        let used = ippin_proxy_protocol::parse(&input).unwrap().1;
        let v1 = name.starts_with("v1");
        if v1 {
            assert_eq!(floor_v1(&input), Some(used), "{name}");
        } else {
            assert_eq!(floor_v2(&input), want, "{name}");
            assert_eq!(ppp_eager(&input), want, "{name}");
            assert_eq!(proxy_header_eager(&input), want, "{name}");
        }
        let mut group = c.benchmark_group(format!("proxy_protocol/{name}"));
        if v1 {
            group.bench_function("floor", |b| b.iter(|| floor_v1(black_box(&input))));
        } else {
            group.bench_function("floor", |b| b.iter(|| floor_v2(black_box(&input))));
        }
        group.bench_function("ippin", |b| b.iter(|| ippin(black_box(&input))));
        group.bench_function("ppp", |b| b.iter(|| ppp(black_box(&input))));
        group.bench_function("proxy-header", |b| {
            b.iter(|| proxy_header(black_box(&input)))
        });
        group.bench_function("proxy-protocol-rs", |b| {
            b.iter(|| proxy_protocol_rs(black_box(&input)))
        });
        if !v1 {
            // The two lazy peers made to read every TLV before returning.
            group.bench_function("ppp-eager", |b| b.iter(|| ppp_eager(black_box(&input))));
            group.bench_function("proxy-header-eager", |b| {
                b.iter(|| proxy_header_eager(black_box(&input)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60);
    targets = bench
}
criterion_main!(benches);
