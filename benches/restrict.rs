//! What kernel enforcement of a session's network restrictions costs (`ippin-restrict`), in
//! one run and side by side: one `connect(2)` (or send) from a socket of a restricted
//! session against the same call from an unrestricted socket; and the time from a policy
//! change (`Enforcer::set_policy`) to its enforcement.
//!
//! # Where the sockets come from
//!
//! The kernel runs the programs of the cgroup a socket was *created* in (not of the calling
//! thread). So this one process makes its sockets in three cgroups, moving itself into each
//! for the moment of `socket(2)` and back to its own cgroup afterwards:
//!
//! - `plain`: `<cgroup2>/ippin-bench-<pid>/plain/p`, a cgroup with no program attached, at
//!   the same depth as the sessions (the unrestricted case);
//! - `small`: a session of an [`Enforcer`] whose policy has 2 allow rules (`127.0.0.0/8`,
//!   `::1/128`) and 1 deny rule (`127.0.0.3/32`);
//! - `random`: a session of a second [`Enforcer`] whose policy has 1,000 allow and 1,000 deny
//!   rules: the small policy's 3 and pseudo-random others outside `127.0.0.0/8`, half IPv4
//!   (/16–/32), half IPv6 (/32–/128): a large policy whose rules are spread out.
//! - `random20k`: the same with 10,000 allow and 10,000 deny rules (a third enforcer): a
//!   lookup walks a path that grows with the logarithm of the number of rules.
//! - `crowded`: a session of a fourth [`Enforcer`], also 1,000 allow and 1,000 deny rules, but
//!   25 of the allow rules lie on the path of `127.0.0.1` (`127.0.0.0/8`, `127.0.0.0/9`, …,
//!   `127.0.0.1/32`) and 24 deny rules beside it (its sibling at each length /9–/32), so
//!   that a lookup of `127.0.0.1` walks the longest path an IPv4 key can have in the LPM
//!   tries (the program looks up the deny trie, then the allow trie). The worst case.
//!
//! The calls are then made from the same thread, alternating between the three sockets in a
//! rotating order, so that load on the machine falls on all of them alike.
//!
//! # The cases
//!
//! - **TCP connect, allowed**: a fresh socket connects to a loopback listener (a thread
//!   accepts and drops). Includes the whole loopback handshake, which dominates; one call
//!   per sample.
//! - **UDP connect, allowed**: `connect(2)` of a UDP socket to `127.0.0.1` (the same socket
//!   reconnected each time): the `connect4` hook and a route lookup, no packet. This isolates
//!   the program's cost best. 16 calls per sample.
//! - **UDP sendto, unconnected, allowed**: 16 bytes to a bound loopback socket that is never
//!   read (its buffer fills, later datagrams are dropped on delivery): the `sendmsg4` hook
//!   runs on every send. 16 calls per sample.
//! - **Refused before any packet**: a TCP and a UDP connect to `127.0.0.3` from the
//!   `small` and `crowded` sessions, which the program denies (`EPERM`, and one event
//!   through the ring buffer); beside them an unrestricted TCP connect to
//!   `255.255.255.255`, which the kernel refuses after its route lookup (`ENETUNREACH`),
//!   also before any packet. Not the same work: shown to say what a refused call costs,
//!   not as a ratio. 16 calls per sample.
//!
//! Each case prints the median, the 10th and 90th percentiles per call, the ratio of the
//! medians to `plain`, and the median of the per-sample ratios (each sample of a session
//! divided by the `plain` sample taken next to it).
//!
//! Then, while the kernel's BPF run-time statistics are on (`BPF_ENABLE_STATS`, only for
//! this part, off again after it), the programs' own time per run as the kernel
//! measures it (`run_time_ns / run_cnt`).
//!
//! # Policy change to enforcement
//!
//! A plain loop (not criterion), with this process inside the session so that each
//! `TcpStream::connect` is decided by it: 60 times, `set_policy(deny)` (the same policy plus
//! `127.0.0.1/32` denied) then connects to the listener until one fails with `EPERM`; then
//! `set_policy(allow)` and connects until one succeeds. Timed from the call to `set_policy`
//! to the end of the first refused (or succeeding) connect; the bench also counts the
//! connects needed (1 when `set_policy` has returned with the maps updated). For the small
//! policy, the `crowded` one (a one-rule change of 2,000 rules), and a full replacement of
//! it (two 2,000-rule policies sharing only the 49 rules near `127.0.0.1`).
//!
//! # Running
//!
//! `cargo bench -p ippin-benches --bench restrict` (about 25 s). Under `cargo test --benches`
//! each case runs a few times only, as a check. Needs root, cgroup v2 and eBPF (as the
//! ippin-restrict tests); without them it prints why and measures nothing. IPv6 (`connect6`)
//! is not measured.

use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ippin_policy::NetworkRestrictions;
use ippin_restrict::{Enforcer, EnforcerConfig, Session};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, connect, sendto, socket,
};

/// Allowed by every policy here (the listener's address).
const ALLOWED: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Denied by every policy here.
const DENIED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Calls per sample in the batched cases.
const BATCH: u32 = 16;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        println!("restrict bench: measures nothing: needs root (euid is {euid})");
        return ExitCode::SUCCESS;
    }
    let dirs = match Dirs::make() {
        Ok(d) => d,
        Err(why) => {
            println!("restrict bench: measures nothing: {why}");
            return ExitCode::SUCCESS;
        }
    };
    let setup = || -> Result<Vec<Restricted>, String> {
        let policies = [
            small_policy(&[]),
            large_policy(0x5eed, false, 1_000, &[]),
            large_policy(0x5eed, false, 10_000, &[]),
            large_policy(0x5eed, true, 1_000, &[]),
        ];
        let mut all = Vec::new();
        for (policy, parent) in policies.iter().zip(&dirs.parents) {
            let before = program_ids();
            let enforcer = Enforcer::new(&EnforcerConfig::default().parent(parent), policy)
                .map_err(|e| e.to_string())?;
            let ids = program_ids().difference(&before).copied().collect();
            let session = enforcer.session("bench").map_err(|e| e.to_string())?;
            all.push(Restricted {
                enforcer,
                session,
                ids,
            });
        }
        Ok(all)
    };
    let setup = match setup() {
        Ok(s) => s,
        Err(why) => {
            println!("restrict bench: measures nothing: enforcement cannot be set up: {why}");
            return ExitCode::SUCCESS;
        }
    };
    let result = run(&dirs, &setup, full);
    // The sessions end (and the process is home again) before their cgroups are removed.
    drop(setup);
    drop(dirs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("restrict bench: failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One enforcer (one policy: `small`, `random`, `random20k`, `crowded`), its session, and
/// the ids of its programs.
struct Restricted {
    // Declared first: the session ends before its enforcer goes.
    session: Session,
    enforcer: Enforcer,
    ids: HashSet<u32>,
}

/// The bench's cgroups: `<cgroup2>/ippin-bench-<pid>/{plain/p,small,random,...}`;
/// removed when dropped (after the sessions in them ended).
struct Dirs {
    top: PathBuf,
    plain: PathBuf,
    /// The enforcers' parents.
    parents: [PathBuf; 4],
    /// This process's own cgroup's `cgroup.procs`, where it returns.
    home: PathBuf,
}

impl Dirs {
    fn make() -> Result<Dirs, String> {
        let mount = ippin_restrict::cgroup2_mount().map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::/"))
            .ok_or("no cgroup v2 line in /proc/self/cgroup")?;
        let top = mount.join(format!("ippin-bench-{}", std::process::id()));
        let d = Dirs {
            plain: top.join("plain").join("p"),
            parents: ["small", "random", "random20k", "crowded"].map(|n| top.join(n)),
            home: mount.join(rel).join("cgroup.procs"),
            top,
        };
        for p in [&d.top, &d.plain].into_iter().chain(&d.parents) {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(d)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let parent_of_plain = self.top.join("plain");
        let dirs = [&self.plain, &parent_of_plain]
            .into_iter()
            .chain(&self.parents);
        for p in dirs.chain([&self.top]) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(p).is_err() && p.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// This process inside another cgroup until dropped (also on a panic): then home again.
struct Inside<'h> {
    home: &'h Path,
}

impl<'h> Inside<'h> {
    fn enter(procs: &Path, home: &'h Path) -> io::Result<Inside<'h>> {
        std::fs::write(procs, std::process::id().to_string())?;
        Ok(Inside { home })
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home, std::process::id().to_string());
    }
}

fn small_policy(extra_deny: &[&str]) -> NetworkRestrictions {
    let allow: Vec<_> = ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|s| s.parse().expect("net"))
        .collect();
    let deny: Vec<_> = ["127.0.0.3/32"]
        .iter()
        .chain(extra_deny)
        .map(|s| s.parse().expect("net"))
        .collect();
    NetworkRestrictions::from_rules(&allow, &deny).expect("small policy")
}

/// `each` allow and `each` deny rules (plus `extra_deny`). `crowded`: 25 allow rules on the
/// path of `127.0.0.1`, 24 deny rules beside it; else the small policy's 3 rules. The rest
/// pseudo-random (from `seed`) outside `127.0.0.0/8`, half IPv4 (/16–/32), half IPv6
/// (/32–/128 under `2000::/3`).
fn large_policy(seed: u64, crowded: bool, each: usize, extra_deny: &[&str]) -> NetworkRestrictions {
    let one = u32::from(ALLOWED);
    let mask = |len: u32| if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let (mut allow, mut deny): (Vec<String>, Vec<String>) = if crowded {
        let allow = (8..=32)
            .map(|len| format!("{}/{len}", Ipv4Addr::from(one & mask(len))))
            .collect();
        let deny = (9..=32)
            .map(|len| {
                let sibling = (one ^ (1 << (32 - len))) & mask(len);
                format!("{}/{len}", Ipv4Addr::from(sibling))
            })
            .collect();
        (allow, deny)
    } else {
        let allow = ["127.0.0.0/8", "::1/128"].map(String::from).to_vec();
        (allow, vec![format!("{DENIED}/32")])
    };
    let mut seen: HashSet<String> = allow.iter().chain(&deny).cloned().collect();
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for list in [&mut allow, &mut deny] {
        while list.len() < each {
            let r = next();
            let net = if r & 1 == 0 {
                let len = 16 + (r >> 8) as u32 % 17;
                let addr = (r >> 32) as u32 & mask(len);
                if !(1..=223).contains(&(addr >> 24)) || addr >> 24 == 127 {
                    continue;
                }
                format!("{}/{len}", Ipv4Addr::from(addr))
            } else {
                let len = 32 + (r >> 8) as u32 % 97;
                let hi = (u128::from(next()) << 64) | u128::from(next());
                let bits = (hi >> 3) | (1 << 125); // inside 2000::/3
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                format!("{}/{len}", Ipv6Addr::from(bits & m))
            };
            if seen.insert(net.clone()) {
                list.push(net);
            }
        }
    }
    let parse = |l: &[String]| -> Vec<_> { l.iter().map(|s| s.parse().expect("net")).collect() };
    let extra: Vec<String> = extra_deny.iter().map(|s| s.to_string()).collect();
    deny.extend(extra);
    NetworkRestrictions::from_rules(&parse(&allow), &parse(&deny)).expect("large policy")
}

/// A loopback TCP listener whose connections are accepted and dropped on a thread.
fn tcp_listener() -> io::Result<u16> {
    let l = TcpListener::bind((ALLOWED, 0))?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    Ok(port)
}

fn sock_addr(ip: Ipv4Addr, port: u16) -> SockaddrIn {
    SockaddrIn::from(SocketAddrV4::new(ip, port))
}

fn new_socket(ty: SockType) -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// `n` sockets of type `ty` made inside the cgroup whose `cgroup.procs` is `procs`.
fn sockets_in(procs: &Path, home: &Path, ty: SockType, n: usize) -> io::Result<Vec<OwnedFd>> {
    let _inside = Inside::enter(procs, home)?;
    (0..n).map(|_| new_socket(ty)).collect()
}

/// Per-case samples (nanoseconds per call), in the order they were taken.
struct Samples {
    names: Vec<&'static str>,
    ns: Vec<Vec<f64>>,
}

impl Samples {
    fn new(names: &[&'static str]) -> Samples {
        Samples {
            names: names.to_vec(),
            ns: vec![Vec::new(); names.len()],
        }
    }

    fn print(&self, title: &str, ratios: bool) {
        println!("\n{title}");
        println!(
            "  {:<44} {:>10} {:>10} {:>10} {:>9} {:>12}",
            "case", "median ns", "p10", "p90", "ratio", "paired ratio"
        );
        let base = median(&self.ns[0]);
        for (i, name) in self.names.iter().enumerate() {
            let (m, p10, p90) = (
                median(&self.ns[i]),
                pct(&self.ns[i], 0.10),
                pct(&self.ns[i], 0.90),
            );
            let (r, pr) = if ratios && i > 0 {
                let paired: Vec<f64> = self.ns[i]
                    .iter()
                    .zip(&self.ns[0])
                    .map(|(a, b)| a / b)
                    .collect();
                (
                    format!("{:.3}", m / base),
                    format!("{:.3}", median(&paired)),
                )
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "  {name:<44} {m:>10.0} {p10:>10.0} {p90:>10.0} {r:>9} {pr:>12}  (n = {})",
                self.ns[i].len()
            );
        }
    }
}

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    pct(v, 0.5)
}

fn dur_pct(v: &[Duration], q: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(((s.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Runs `ops` in turn, `passes` times, starting each pass one case later, timing `batch`
/// calls of each; a call's error is the bench's error.
fn interleaved(
    s: &mut Samples,
    passes: usize,
    batch: u32,
    ops: &mut [&mut dyn FnMut() -> Result<(), String>],
) -> Result<(), String> {
    let k = ops.len();
    for pass in 0..passes {
        for j in 0..k {
            let i = (pass + j) % k;
            let t = Instant::now();
            for _ in 0..batch {
                ops[i]()?;
            }
            s.ns[i].push(t.elapsed().as_nanos() as f64 / f64::from(batch));
        }
    }
    Ok(())
}

fn expect_ok(r: nix::Result<()>, what: &str) -> Result<(), String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn expect_errno(r: nix::Result<()>, want: Errno, what: &str) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("{what}: {e}, expected {want}")),
        Ok(()) => Err(format!("{what}: succeeded, expected {want}")),
    }
}

fn run(d: &Dirs, s: &[Restricted], full: bool) -> Result<(), String> {
    let err = |e: io::Error| e.to_string();
    let port = tcp_listener().map_err(err)?;
    let sink = UdpSocket::bind((ALLOWED, 0)).map_err(err)?;
    let uport = sink.local_addr().map_err(err)?.port();
    let mut procs = vec![d.plain.join("cgroup.procs")];
    for r in s {
        procs.push(
            r.session
                .path()
                .ok_or("session ended")?
                .join("cgroup.procs"),
        );
    }
    let home = d.home.as_path();
    let names = [
        "plain (no program)",
        "small policy (3 rules)",
        "random policy (2,000 rules)",
        "random policy (20,000 rules)",
        "crowded policy (2,000 rules)",
    ];
    let k = names.len();
    println!(
        "restrict bench ({}); load average: {}",
        if full {
            "full run"
        } else {
            "test mode: a few calls each"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // TCP connect, allowed: fresh sockets per call, made per round in each cgroup.
    let (rounds, per_round) = if full { (60, 50) } else { (1, 2) };
    let mut tcp = Samples::new(&names);
    let target = sock_addr(ALLOWED, port);
    for round in 0..rounds {
        let socks: Vec<Vec<OwnedFd>> = procs
            .iter()
            .map(|p| sockets_in(p, home, SockType::Stream, per_round))
            .collect::<io::Result<_>>()
            .map_err(err)?;
        #[allow(clippy::needless_range_loop)] // `n` indexes every cgroup's sockets in turn
        for n in 0..per_round {
            for j in 0..k {
                let i = (round + n + j) % k;
                let fd = &socks[i][n];
                let t = Instant::now();
                let r = connect(fd.as_raw_fd(), &target);
                tcp.ns[i].push(t.elapsed().as_nanos() as f64);
                expect_ok(r, "tcp connect")?;
            }
        }
        // The round's sockets close here (the listener's thread closed its ends).
        drop(socks);
    }
    tcp.print(
        "TCP connect to a loopback listener, allowed (one call per sample, handshake included)",
        true,
    );

    // UDP connect and sendto, allowed: one socket per cgroup, reused.
    let passes = if full { 4000 } else { 2 };
    let udp: Vec<OwnedFd> = procs
        .iter()
        .map(|p| sockets_in(p, home, SockType::Datagram, 1).map(|mut v| v.remove(0)))
        .collect::<io::Result<_>>()
        .map_err(err)?;
    let to = sock_addr(ALLOWED, uport);
    let mut c = Samples::new(&names);
    {
        let op = |i: usize| {
            let fd = udp[i].as_raw_fd();
            move || expect_ok(connect(fd, &to), "udp connect")
        };
        let mut ops: Vec<_> = (0..k).map(op).collect();
        let mut ops: Vec<&mut dyn FnMut() -> Result<(), String>> =
            ops.iter_mut().map(|f| f as _).collect();
        interleaved(&mut c, passes, BATCH, &mut ops)?;
    }
    c.print(
        "UDP connect to 127.0.0.1, allowed (no packet; 16 calls per sample)",
        true,
    );

    let send: Vec<OwnedFd> = procs
        .iter()
        .map(|p| sockets_in(p, home, SockType::Datagram, 1).map(|mut v| v.remove(0)))
        .collect::<io::Result<_>>()
        .map_err(err)?;
    let mut u = Samples::new(&names);
    {
        let op = |i: usize| {
            let fd = send[i].as_raw_fd();
            move || {
                sendto(fd, &[0u8; 16], &to, MsgFlags::empty())
                    .map(drop)
                    .map_err(|e| format!("udp sendto: {e}"))
            }
        };
        let mut ops: Vec<_> = (0..k).map(op).collect();
        let mut ops: Vec<&mut dyn FnMut() -> Result<(), String>> =
            ops.iter_mut().map(|f| f as _).collect();
        interleaved(&mut u, passes, BATCH, &mut ops)?;
    }
    u.print(
        "UDP sendto, unconnected, 16 bytes to 127.0.0.1, allowed (16 calls per sample)",
        true,
    );

    // Refused before any packet.
    let refused_names = [
        "plain: TCP to 255.255.255.255 (ENETUNREACH)",
        "small: TCP to 127.0.0.3 (EPERM)",
        "crowded: TCP to 127.0.0.3 (EPERM)",
        "small: UDP to 127.0.0.3 (EPERM)",
        "crowded: UDP to 127.0.0.3 (EPERM)",
    ];
    let tcp1: Vec<OwnedFd> = procs
        .iter()
        .map(|p| sockets_in(p, home, SockType::Stream, 1).map(|mut v| v.remove(0)))
        .collect::<io::Result<_>>()
        .map_err(err)?;
    let mut r = Samples::new(&refused_names);
    {
        let bcast = sock_addr(Ipv4Addr::BROADCAST, port);
        let denied = sock_addr(DENIED, port);
        let f0 = tcp1[0].as_raw_fd();
        let mut a = || expect_errno(connect(f0, &bcast), Errno::ENETUNREACH, "tcp broadcast");
        let op = |fd: i32, what: &'static str| {
            move || expect_errno(connect(fd, &denied), Errno::EPERM, what)
        };
        let mut b = op(tcp1[1].as_raw_fd(), "tcp denied");
        let mut cc = op(tcp1[4].as_raw_fd(), "tcp denied");
        let mut dd = op(udp[1].as_raw_fd(), "udp denied");
        let mut e = op(udp[4].as_raw_fd(), "udp denied");
        interleaved(
            &mut r,
            (passes / 4).max(1),
            BATCH,
            &mut [&mut a, &mut b, &mut cc, &mut dd, &mut e],
        )?;
    }
    r.print(
        "Refused before any packet (16 calls per sample; not the same work: no ratio)",
        false,
    );

    program_stats(s, &udp, &send, to, full)?;

    // Policy change to enforcement.
    let trials = if full { 60 } else { 2 };
    let listener = SocketAddr::from((ALLOWED, port));
    let deny_one = ["127.0.0.1/32"];
    println!(
        "\nPolicy change to enforcement ({trials} changes each way; from the call to set_policy \
         to the end of the first connect that the new policy decides)"
    );
    let cases: [(
        &str,
        &Enforcer,
        &Path,
        NetworkRestrictions,
        NetworkRestrictions,
    ); 3] = [
        (
            "small policy, 1 rule changes",
            &s[0].enforcer,
            &procs[1],
            small_policy(&[]),
            small_policy(&deny_one),
        ),
        (
            "crowded policy (2,000 rules), 1 rule changes",
            &s[3].enforcer,
            &procs[4],
            large_policy(0x5eed, true, 1_000, &[]),
            large_policy(0x5eed, true, 1_000, &deny_one),
        ),
        (
            "crowded policy replaced (all but 49 of 2,000 rules change)",
            &s[3].enforcer,
            &procs[4],
            large_policy(0x5eed, true, 1_000, &[]),
            large_policy(0xfeed, true, 1_000, &deny_one),
        ),
    ];
    for (label, enforcer, procs, allow, deny) in cases {
        let _inside = Inside::enter(procs, home).map_err(err)?;
        enforcer.set_policy(&allow).map_err(|e| e.to_string())?;
        let mut times: [Vec<Duration>; 4] = Default::default();
        let mut most_tries = 0;
        for _ in 0..trials {
            for (k, (policy, want_denied)) in
                [(&deny, true), (&allow, false)].into_iter().enumerate()
            {
                let t0 = Instant::now();
                enforcer.set_policy(policy).map_err(|e| e.to_string())?;
                let set = t0.elapsed();
                let mut tries = 0;
                loop {
                    tries += 1;
                    let denied = match TcpStream::connect(listener) {
                        Ok(_) => false,
                        Err(e) if e.kind() == ErrorKind::PermissionDenied => true,
                        Err(e) => return Err(format!("{label}: connect: {e}")),
                    };
                    if denied == want_denied {
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(5) {
                        return Err(format!("{label}: not enforced after 5 s"));
                    }
                }
                times[2 * k].push(set);
                times[2 * k + 1].push(t0.elapsed());
                most_tries = most_tries.max(tries);
            }
        }
        let show = |v: &[Duration]| {
            format!(
                "median {:>8.1} µs, max {:>8.1} µs",
                dur_pct(v, 0.5).as_secs_f64() * 1e6,
                dur_pct(v, 1.0).as_secs_f64() * 1e6
            )
        };
        println!("  {label}:");
        println!(
            "    to deny:  set_policy {}; enforced {}",
            show(&times[0]),
            show(&times[1])
        );
        println!(
            "    to allow: set_policy {}; enforced {}",
            show(&times[2]),
            show(&times[3])
        );
        println!("    connects needed at most: {most_tries}");
        // Leave the enforcer with its original policy.
        enforcer.set_policy(&allow).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The ids of the BPF programs loaded on the machine now.
fn program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

/// (total run time, run count) of the program named `name` among `ids`: `None` when not
/// exactly one (another process loading programs at the same time).
fn prog_stats(ids: &HashSet<u32>, name: &str) -> Option<(Duration, u64)> {
    let found: Vec<_> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()) && p.name_as_str() == Some(name))
        .map(|p| (p.run_time(), p.run_count()))
        .collect();
    (found.len() == 1).then(|| found[0])
}

/// One call whose program run is counted.
type Call<'a> = dyn Fn() -> nix::Result<()> + 'a;

/// The programs' own time per run, from the kernel's statistics (on only here).
fn program_stats(
    s: &[Restricted],
    udp: &[OwnedFd],
    send: &[OwnedFd],
    to: SockaddrIn,
    full: bool,
) -> Result<(), String> {
    let _stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => {
            println!("\nBPF run-time statistics unavailable: {e}");
            return Ok(());
        }
    };
    let n = if full { 50_000 } else { 4 };
    let denied = sock_addr(DENIED, to.port());
    println!("\nThe programs' own time per run (kernel BPF statistics, {n} runs each)");
    let labels = ["small", "random", "random20k", "crowded"];
    for (i, (label, r)) in labels.into_iter().zip(s).enumerate() {
        let i = i + 1;
        let ids = &r.ids;
        let cases: [(&str, &str, &Call); 3] = [
            ("connect4, allowed", "ippin_connect4", &|| {
                connect(udp[i].as_raw_fd(), &to)
            }),
            (
                "connect4, denied",
                "ippin_connect4",
                &|| match connect(udp[i].as_raw_fd(), &denied) {
                    Err(Errno::EPERM) => Ok(()),
                    Err(e) => Err(e),
                    Ok(()) => Err(Errno::EINVAL),
                },
            ),
            ("sendmsg4, allowed", "ippin_sendmsg4", &|| {
                sendto(send[i].as_raw_fd(), &[0u8; 16], &to, MsgFlags::empty()).map(drop)
            }),
        ];
        for (what, prog, f) in cases {
            let Some((t0, c0)) = prog_stats(ids, prog) else {
                println!("  {label}: {prog} not found alone among the programs loaded; skipped");
                continue;
            };
            for _ in 0..n {
                f().map_err(|e| format!("{label} {what}: {e}"))?;
            }
            let (t1, c1) = prog_stats(ids, prog).ok_or("program gone")?;
            let runs = c1.saturating_sub(c0).max(1);
            println!(
                "  {label:<9} {what:<18} {:>7.1} ns per run ({} runs counted)",
                (t1 - t0).as_nanos() as f64 / runs as f64,
                c1 - c0
            );
        }
    }
    Ok(())
}
