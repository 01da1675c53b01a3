//! Runs one parser on one benchmark input N times, for instruction counts
//! under valgrind (load-independent, unlike wall-clock time on a busy
//! machine): `scripts/proxy-instructions`, docs/benchmarks.md. The parsers,
//! floors and inputs are the bench's own (`../proxy_peers.rs`).
//!
//! `cargo run --release -p ippin-benches --example proxy_instructions -- <ippin|ppp|proxy-header|proxy-protocol-rs|ppp-eager|proxy-header-eager|floor|none> <input> <N>`

use std::hint::black_box;
use std::net::IpAddr;

#[path = "../proxy_peers.rs"]
mod peers;

use peers::{
    floor_v1, floor_v2, inputs, ippin, ppp, ppp_eager, proxy_header, proxy_header_eager,
    proxy_protocol_rs,
};

/// The v1 floor as a parser-shaped function (the line length as the first octet).
fn floor_v1_ip(buf: &[u8]) -> Option<IpAddr> {
    floor_v1(buf).map(|n| IpAddr::from([n as u8, 0, 0, 0]))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, input, n) = match args.as_slice() {
        [_, w, i, n] => (
            if w == "floor" && i.starts_with("v1") {
                "floor_v1".to_string()
            } else {
                w.clone()
            },
            inputs()
                .into_iter()
                .find(|(name, _)| name == i)
                .map(|(_, input)| input)
                .expect("an input: v1_tcp4, v1_tcp6, v2_tcp4 or v2_tcp6_tlvs"),
            n.parse::<usize>().expect("N"),
        ),
        _ => panic!(
            "usage: instructions <ippin|ppp|proxy-header|proxy-protocol-rs|ppp-eager|proxy-header-eager|floor|none> <input> <N>"
        ),
    };
    let f: fn(&[u8]) -> Option<IpAddr> = match which.as_str() {
        "ippin" => ippin,
        "ppp" => ppp,
        "proxy-header" => proxy_header,
        "proxy-protocol-rs" => proxy_protocol_rs,
        "ppp-eager" => ppp_eager,
        "proxy-header-eager" => proxy_header_eager,
        "floor" => floor_v2,
        "floor_v1" => floor_v1_ip,
        // The harness alone: a baseline to subtract.
        _ => |buf: &[u8]| buf.first().map(|&b| IpAddr::from([b, 0, 0, 0])),
    };
    assert!(f(&input).is_some());
    for _ in 0..n {
        black_box(f(black_box(&input)));
    }
}
