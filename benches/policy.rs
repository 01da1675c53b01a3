//! Network-restriction lookups with 10 and 10,000 rules in one run (the lookup must not grow
//! with the policy), IPv4, IPv4-mapped and IPv6 destinations, beside a naive linear scan.
//!
//! Both policy sizes use the same prefix lengths, because the lookup probes one hash set per
//! prefix length in use: the `all_lengths` group shows the bound when every IPv4 length is used.
//!
//! Run: `cargo bench -p ippin-benches --bench policy`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ippin_policy::{NetworkRestrictions, canonical_ip, canonical_net};

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn v4_cidr(rng: &mut Rng, len: u32) -> String {
    let bits = (rng.next() as u32) & u32::MAX.checked_shl(32 - len).unwrap_or(0);
    format!("{}/{len}", Ipv4Addr::from(bits))
}

fn v6_cidr(rng: &mut Rng, len: u32) -> String {
    let raw = (0x2001_0db8u128 << 96) | (u128::from(rng.next()) << 32) | u128::from(rng.next());
    let bits = raw & u128::MAX.checked_shl(128 - len).unwrap_or(0);
    format!("{}/{len}", Ipv6Addr::from(bits))
}

/// A policy text with `n` rules in total, using the given prefix lengths in turn.
fn policy(n: usize, v4_lens: &[u32], v6_lens: &[u32], seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    for i in 0..n {
        let cidr = if i % 2 == 0 {
            v4_cidr(&mut rng, v4_lens[(i / 2) % v4_lens.len()])
        } else {
            v6_cidr(&mut rng, v6_lens[(i / 2) % v6_lens.len()])
        };
        if i % 5 == 4 {
            deny.push(cidr);
        } else {
            allow.push(cidr);
        }
    }
    let mut text = String::from("kind: network_restrictions\nversion: v4\nspec:\n  allow:\n");
    for c in allow {
        text.push_str(&format!("  - cidr: '{c}'\n"));
    }
    text.push_str("  deny:\n");
    for c in deny {
        text.push_str(&format!("  - cidr: '{c}'\n"));
    }
    text
}

/// 256 destinations: half inside the policy's rules (their network addresses), half random.
fn probes(p: &NetworkRestrictions, v6: bool, mapped: bool, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng(seed);
    let rules: Vec<IpAddr> = p
        .allow_rules()
        .iter()
        .chain(p.deny_rules())
        .map(|n| n.network())
        .filter(|ip| ip.is_ipv6() == v6)
        .collect();
    (0..256)
        .map(|i| {
            let ip = if i % 2 == 0 && !rules.is_empty() {
                rules[(rng.next() as usize) % rules.len()]
            } else if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | u128::from(rng.next()),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            };
            match ip {
                IpAddr::V4(v4) if mapped => IpAddr::V6(v4.to_ipv6_mapped()),
                other => other,
            }
        })
        .collect()
}

/// The reference every lookup is compared with: scan every rule.
fn naive(p: &NetworkRestrictions, dst: IpAddr) -> bool {
    let dst = canonical_ip(dst);
    p.allow_rules()
        .iter()
        .any(|n| canonical_net(*n).contains(&dst))
        && !p
            .deny_rules()
            .iter()
            .any(|n| canonical_net(*n).contains(&dst))
}

fn lookups(c: &mut Criterion) {
    let v4_lens = [16, 20, 24, 28, 32];
    let v6_lens = [48, 56, 64, 128];
    let sizes = [10usize, 10_000];
    let policies: Vec<(usize, NetworkRestrictions)> = sizes
        .iter()
        .map(|&n| {
            let text = policy(n, &v4_lens, &v6_lens, 0x5eed + n as u64);
            (
                n,
                NetworkRestrictions::parse("bench.yaml", &text).expect("bench policy"),
            )
        })
        .collect();

    for (name, v6, mapped) in [
        ("ipv4", false, false),
        ("ipv4_mapped", false, true),
        ("ipv6", true, false),
    ] {
        let mut group = c.benchmark_group(format!("netrestrict_{name}"));
        group.throughput(Throughput::Elements(256));
        for (n, p) in &policies {
            let dsts = probes(p, v6, mapped, 0xd57);
            for d in &dsts {
                assert_eq!(p.decide(*d).is_allowed(), naive(p, *d), "{d}");
            }
            group.bench_with_input(BenchmarkId::new("ippin", n), &dsts, |b, dsts| {
                b.iter(|| {
                    dsts.iter()
                        .filter(|d| p.decide(black_box(**d)).is_allowed())
                        .count()
                })
            });
            group.bench_with_input(BenchmarkId::new("naive_scan", n), &dsts, |b, dsts| {
                b.iter(|| dsts.iter().filter(|d| naive(p, black_box(**d))).count())
            });
        }
        group.finish();
    }

    // The bound: every IPv4 prefix length in use.
    let all: Vec<u32> = (0..=32).collect();
    let mut group = c.benchmark_group("netrestrict_all_lengths");
    group.throughput(Throughput::Elements(256));
    for n in [66usize, 10_000] {
        let text = policy(n, &all, &v6_lens, 0xa11 + n as u64);
        let p = NetworkRestrictions::parse("bench.yaml", &text).expect("bench policy");
        let dsts = probes(&p, false, false, 0xd58);
        group.bench_with_input(BenchmarkId::new("ippin", n), &dsts, |b, dsts| {
            b.iter(|| {
                dsts.iter()
                    .filter(|d| p.decide(black_box(**d)).is_allowed())
                    .count()
            })
        });
    }
    group.finish();
}

/// Reading the policy file itself (not on the lookup path): 10 and 10,000 rules.
fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("netrestrict_parse");
    for n in [10usize, 10_000] {
        let text = policy(
            n,
            &[16, 20, 24, 28, 32],
            &[48, 56, 64, 128],
            0x5eed + n as u64,
        );
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("ippin", n), &text, |b, text| {
            b.iter(|| {
                NetworkRestrictions::parse("bench.yaml", black_box(text)).map(|p| p.has_policy())
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookups, parsing
}
criterion_main!(benches);
