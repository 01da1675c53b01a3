//! Handshake throughput, side by side on one machine: PROXY v2 header +
//! mutual TLS + pin check through `ippin serve`, against plain rustls
//! mutual TLS ([`crate::plain`]), and `ippin serve` on a `proxy_protocol:
//! off` listener with an unpinned user in between.
//!
//! Both servers run as child processes; the clients are `concurrency`
//! tasks on this process's multi-thread tokio runtime, each making one
//! fresh connection at a time (full handshake: no session resumption),
//! `GET /whoami`, and reading the answer to its end.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::LoadError;
use crate::client::{Prober, proxy_v2};
use crate::cluster::{ALICE, BEHIND_LB, BOB, Cluster, Listener, ServerKind, ServerProcess};
use crate::stats::Summary;

/// Parameters.
#[derive(Debug, Clone)]
pub struct ThroughputParams {
    /// Length of one measured window per variant.
    pub window: Duration,
    /// Windows per variant (the variants alternate).
    pub rounds: usize,
    /// Client tasks.
    pub concurrency: usize,
}

/// One variant's results over all its windows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Variant {
    /// Name.
    pub name: String,
    /// What it runs.
    pub path: String,
    /// Completed connections (HTTP 200).
    pub connections: usize,
    /// Connections that failed.
    pub errors: usize,
    /// Connections per second, over all windows.
    pub per_s: f64,
    /// Connections per second of each window, in order.
    pub per_window: Vec<f64>,
    /// CPU time of the server process over the windows, clock ticks.
    pub server_cpu_ticks: u64,
    /// Server CPU time per completed connection, µs: the comparison that
    /// the other processes on a shared machine disturb least.
    pub server_cpu_us_per_conn: f64,
    /// Client-side time from `connect` to the end of the TLS handshake.
    pub handshake: Summary,
    /// Client-side time from `connect` to the end of the answer.
    pub total: Summary,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Client tasks.
    pub concurrency: usize,
    /// Seconds per window.
    pub window_s: f64,
    /// PROXY v2 + mutual TLS + pin check (alice, pinned, via the trusted
    /// balancer).
    pub full: Variant,
    /// As `full`, the header in the same segment as the ClientHello.
    pub full_coalesced: Variant,
    /// `ippin serve`, `proxy_protocol: off`, unpinned bob.
    pub off_unpinned: Variant,
    /// Plain rustls mutual TLS (bob's certificate).
    pub plain: Variant,
    /// `full.per_s / plain.per_s` (target ≥ 0.97).
    pub ratio_full_to_plain: f64,
    /// `full_coalesced.per_s / plain.per_s`.
    pub ratio_coalesced_to_plain: f64,
    /// `off_unpinned.per_s / plain.per_s`.
    pub ratio_off_to_plain: f64,
    /// The median over rounds of `full / plain` within each round (the two
    /// windows of a round are seconds apart, so a slow drift of the machine's
    /// load cancels out; the total ratio above is the verdict).
    pub ratio_full_to_plain_round_median: f64,
    /// Server CPU per connection, `full` over `plain`.
    pub cpu_ratio_full_to_plain: f64,
    /// The load average when the run ended (`/proc/loadavg`).
    pub loadavg: String,
}

impl ThroughputReport {
    /// Failed bounds: errors, or the full path under 97% of plain.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in [
            &self.full,
            &self.full_coalesced,
            &self.off_unpinned,
            &self.plain,
        ] {
            if v.errors > 0 || v.connections == 0 {
                out.push(format!(
                    "{}: {} ok, {} errors",
                    v.name, v.connections, v.errors
                ));
            }
        }
        if self.ratio_full_to_plain < 0.97 {
            out.push(format!(
                "full path at {:.1}% of plain (target ≥ 97%)",
                self.ratio_full_to_plain * 100.0
            ));
        }
        out
    }
}

struct Target {
    pid: u32,
    prober: Prober,
    addr: SocketAddr,
    header: Option<Vec<u8>>,
}

/// What one window measured.
struct Window {
    ok: usize,
    errors: usize,
    handshakes: Vec<Duration>,
    totals: Vec<Duration>,
    elapsed: Duration,
    server_ticks: u64,
}

/// One window of `concurrency` clients on `target`.
async fn window(target: Arc<Target>, length: Duration, concurrency: usize) -> Window {
    let ticks_before = crate::procfs::cpu_ticks(target.pid).unwrap_or(0);
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err, mut hs, mut tot) = (0, 0, Vec::new(), Vec::new());
            while Instant::now() < deadline {
                match t.prober.get(t.addr, t.header.as_deref(), "/whoami").await {
                    Ok(timing) if timing.status == 200 => {
                        ok += 1;
                        hs.push(timing.handshake);
                        tot.push(timing.total);
                    }
                    _ => err += 1,
                }
            }
            (ok, err, hs, tot)
        }));
    }
    let (mut ok, mut err, mut hs, mut tot) = (0, 0, Vec::new(), Vec::new());
    for t in tasks {
        if let Ok((o, e, h, x)) = t.await {
            ok += o;
            err += e;
            hs.extend(h);
            tot.extend(x);
        }
    }
    let elapsed = start.elapsed();
    let ticks_after = crate::procfs::cpu_ticks(target.pid).unwrap_or(0);
    Window {
        ok,
        errors: err,
        handshakes: hs,
        totals: tot,
        elapsed,
        server_ticks: ticks_after.saturating_sub(ticks_before),
    }
}

/// Runs the comparison.
///
/// # Errors
/// [`LoadError::Setup`] / [`LoadError::Valid`] when the servers or the
/// logins that make the client certificates fail.
pub async fn run(exe: &Path, p: &ThroughputParams) -> Result<ThroughputReport, LoadError> {
    let cluster = Cluster::create(Duration::from_secs(5))?;
    let ippin = ServerProcess::start(exe, ServerKind::Ippin, &cluster)?;
    let plain = ServerProcess::start(exe, ServerKind::Plain, &cluster)?;
    let lb_client: SocketAddr = format!("{BEHIND_LB}:50000")
        .parse()
        .map_err(|_| LoadError::Setup("address".into()))?;
    let login_via_lb = proxy_v2(lb_client, ippin.addr(Listener::LoginProxied));
    let alice = crate::client::login(
        &cluster,
        ippin.addr(Listener::LoginProxied),
        ALICE,
        Some(login_via_lb),
    )
    .await?;
    if alice.pinned_ip.as_deref() != Some(BEHIND_LB) {
        return Err(LoadError::Valid(format!(
            "alice pinned to {:?}, expected {BEHIND_LB}",
            alice.pinned_ip
        )));
    }
    let bob = crate::client::login(&cluster, ippin.addr(Listener::LoginDirect), BOB, None).await?;
    let full = Arc::new(Target {
        pid: ippin.pid(),
        prober: Prober::new(
            &cluster.ca_pem,
            Some((&alice.tls_cert_pem, &alice.tls_key_pem)),
        )?,
        addr: ippin.addr(Listener::TlsProxied),
        header: Some(proxy_v2(lb_client, ippin.addr(Listener::TlsProxied))),
    });
    let full_coalesced = Arc::new(Target {
        pid: ippin.pid(),
        prober: full.prober.clone().coalescing(),
        addr: full.addr,
        header: full.header.clone(),
    });
    let bob_prober = Prober::new(&cluster.ca_pem, Some((&bob.tls_cert_pem, &bob.tls_key_pem)))?;
    let off = Arc::new(Target {
        pid: ippin.pid(),
        prober: bob_prober.clone(),
        addr: ippin.addr(Listener::TlsDirect),
        header: None,
    });
    let base = Arc::new(Target {
        pid: plain.pid(),
        prober: bob_prober,
        addr: plain.addr(Listener::LoginDirect),
        header: None,
    });
    let mut variants = [
        (
            Variant {
                name: "full".into(),
                path: "ippin serve, tls listener proxy_protocol: on; PROXY v2 header from the \
                       trusted balancer + mutual TLS + pin check (alice pinned to 203.0.113.7) \
                       + audit line"
                    .into(),
                ..Variant::default()
            },
            full,
            Vec::new(),
            Vec::new(),
            Duration::ZERO,
        ),
        (
            Variant {
                name: "full_coalesced".into(),
                path: "as `full`, with the PROXY header sent in the same segment as the \
                       ClientHello (one write)"
                    .into(),
                ..Variant::default()
            },
            full_coalesced,
            Vec::new(),
            Vec::new(),
            Duration::ZERO,
        ),
        (
            Variant {
                name: "off_unpinned".into(),
                path: "ippin serve, tls listener proxy_protocol: off; no header; mutual TLS + \
                       pin check of an unpinned certificate (bob) + audit line"
                    .into(),
                ..Variant::default()
            },
            off,
            Vec::new(),
            Vec::new(),
            Duration::ZERO,
        ),
        (
            Variant {
                name: "plain".into(),
                path: "ippin-load serve-plain: the same rustls configuration and HTTP layer, \
                       no PROXY stage, no pin check, no audit (bob's certificate)"
                    .into(),
                ..Variant::default()
            },
            base,
            Vec::new(),
            Vec::new(),
            Duration::ZERO,
        ),
    ];
    // Warm both servers up.
    for (_, target, ..) in &variants {
        let _ = window(target.clone(), Duration::from_millis(300), p.concurrency).await;
    }
    for round in 0..p.rounds.max(1) {
        // Alternate the order so that no variant always runs first.
        let order: [usize; 4] = if round % 2 == 0 {
            [3, 0, 1, 2]
        } else {
            [0, 1, 2, 3]
        };
        for i in order {
            let Some((v, target, hs, tot, spent)) = variants.get_mut(i) else {
                continue;
            };
            let w = window(target.clone(), p.window, p.concurrency).await;
            v.connections += w.ok;
            v.errors += w.errors;
            v.per_window.push(w.ok as f64 / w.elapsed.as_secs_f64());
            v.server_cpu_ticks += w.server_ticks;
            hs.extend(w.handshakes);
            tot.extend(w.totals);
            *spent += w.elapsed;
        }
    }
    let [full, coalesced, off, plain_v] = variants.map(|(mut v, _, hs, tot, spent)| {
        v.per_s = v.connections as f64 / spent.as_secs_f64().max(1e-9);
        v.server_cpu_us_per_conn = (v.server_cpu_ticks as f64 * 1e6
            / crate::procfs::TICKS_PER_SECOND as f64)
            / (v.connections.max(1) as f64);
        v.handshake = Summary::of(&hs);
        v.total = Summary::of(&tot);
        v
    });
    drop(ippin);
    drop(plain);
    let ratio = |a: &Variant| a.per_s / plain_v.per_s.max(1e-9);
    let mut rounds: Vec<f64> = full
        .per_window
        .iter()
        .zip(&plain_v.per_window)
        .map(|(f, p)| f / p.max(1e-9))
        .collect();
    rounds.sort_by(f64::total_cmp);
    let round_median = match rounds.len() {
        0 => 0.0,
        n if n % 2 == 1 => rounds.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (rounds.get(n / 2 - 1).copied().unwrap_or(0.0)
                + rounds.get(n / 2).copied().unwrap_or(0.0))
                / 2.0
        }
    };
    Ok(ThroughputReport {
        concurrency: p.concurrency,
        window_s: p.window.as_secs_f64(),
        ratio_full_to_plain: ratio(&full),
        ratio_coalesced_to_plain: ratio(&coalesced),
        ratio_off_to_plain: ratio(&off),
        ratio_full_to_plain_round_median: round_median,
        cpu_ratio_full_to_plain: full.server_cpu_us_per_conn
            / plain_v.server_cpu_us_per_conn.max(1e-9),
        full,
        full_coalesced: coalesced,
        off_unpinned: off,
        plain: plain_v,
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    })
}
