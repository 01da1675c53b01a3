//! The cost of one `connect(2)` to a loopback listener from a process in a restricted session
//! (the eBPF program decides it: allowed by a 3-rule policy) against the same connect from
//! outside any session, in one run; and the time from a policy change to enforcement
//! (`Enforcer::set_policy` returns when the maps hold the new policy: the next connect is
//! decided by it).
//!
//! Needs root, cgroup v2 and eBPF (as the ippin-restrict tests); without them it says why
//! and measures nothing. The bench process itself is moved into the session for the
//! restricted measurement, and back to its own cgroup afterwards.
//!
//! Run: `cargo bench -p ippin-benches --bench restrict`

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ippin_policy::NetworkRestrictions;
use ippin_restrict::{Enforcer, EnforcerConfig, Session};

/// A loopback listener whose connections are accepted and dropped on a thread, so that the
/// backlog never fills.
fn listener() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    addr
}

fn policy(deny: &str) -> NetworkRestrictions {
    NetworkRestrictions::from_rules(
        &["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        &[deny.parse().unwrap()],
    )
    .expect("policy")
}

/// This process's own cgroup v2 directory (from `/proc/self/cgroup`).
fn own_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::/"))?;
    Some(ippin_restrict::cgroup2_mount().ok()?.join(rel))
}

/// Moves this process back to `home` when dropped, before the session ends (ending a
/// session kills what is in it).
struct Inside<'s> {
    home: PathBuf,
    _session: &'s Session,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.home.join("cgroup.procs"),
            std::process::id().to_string(),
        );
    }
}

fn bench(c: &mut Criterion) {
    let addr = listener();
    let parent = match ippin_restrict::cgroup2_mount() {
        Ok(m) => m.join(format!("ippin-bench-{}", std::process::id())),
        Err(e) => return eprintln!("restrict bench skipped: {e}"),
    };
    if let Err(e) = std::fs::create_dir(&parent) {
        return eprintln!("restrict bench skipped: {}: {e}", parent.display());
    }
    let mut run = || -> Result<(), String> {
        let enforcer = Enforcer::new(
            &EnforcerConfig::default().parent(&parent),
            &policy("127.0.0.3/32"),
        )
        .map_err(|e| e.to_string())?;
        let home = own_cgroup().ok_or("no cgroup v2 line in /proc/self/cgroup")?;

        let mut g = c.benchmark_group("connect_loopback");
        g.bench_function("unrestricted", |b| {
            b.iter(|| drop(black_box(TcpStream::connect(addr).expect("connect"))))
        });
        let session = enforcer.session("bench").map_err(|e| e.to_string())?;
        {
            session
                .placement()
                .place_current_process()
                .map_err(|e| e.to_string())?;
            let _inside = Inside {
                home: home.clone(),
                _session: &session,
            };
            g.bench_function("restricted_allowed", |b| {
                b.iter(|| drop(black_box(TcpStream::connect(addr).expect("connect"))))
            });
        }
        g.finish();

        let (a, b) = (policy("127.0.0.3/32"), policy("127.0.0.4/32"));
        let mut flip = false;
        c.bench_function("set_policy_3_rules", |bch| {
            bch.iter(|| {
                flip = !flip;
                enforcer
                    .set_policy(if flip { &a } else { &b })
                    .expect("set_policy")
            })
        });
        session.end().map_err(|e| e.to_string())
    };
    if let Err(e) = run() {
        eprintln!("restrict bench skipped: {e}");
    }
    let _ = std::fs::remove_dir(&parent);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
