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
    /// `ippin serve`, `proxy_protocol: off`, unpinned bob.
    pub off_unpinned: Variant,
    /// Plain rustls mutual TLS (bob's certificate).
    pub plain: Variant,
    /// `full.per_s / plain.per_s` (target ≥ 0.97).
    pub ratio_full_to_plain: f64,
    /// `off_unpinned.per_s / plain.per_s`.
    pub ratio_off_to_plain: f64,
    /// The load average when the run ended (`/proc/loadavg`).
    pub loadavg: String,
}

impl ThroughputReport {
    /// Failed bounds: errors, or the full path under 97% of plain.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in [&self.full, &self.off_unpinned, &self.plain] {
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
    prober: Prober,
    addr: SocketAddr,
    header: Option<Vec<u8>>,
}

/// One window of `concurrency` clients on `target`: (ok, errors,
/// handshakes, totals, elapsed).
async fn window(
    target: Arc<Target>,
    length: Duration,
    concurrency: usize,
) -> (usize, usize, Vec<Duration>, Vec<Duration>, Duration) {
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
    (ok, err, hs, tot, start.elapsed())
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
        prober: Prober::new(
            &cluster.ca_pem,
            Some((&alice.tls_cert_pem, &alice.tls_key_pem)),
        )?,
        addr: ippin.addr(Listener::TlsProxied),
        header: Some(proxy_v2(lb_client, ippin.addr(Listener::TlsProxied))),
    });
    let bob_prober = Prober::new(&cluster.ca_pem, Some((&bob.tls_cert_pem, &bob.tls_key_pem)))?;
    let off = Arc::new(Target {
        prober: bob_prober.clone(),
        addr: ippin.addr(Listener::TlsDirect),
        header: None,
    });
    let base = Arc::new(Target {
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
        let order: [usize; 3] = if round % 2 == 0 { [2, 0, 1] } else { [0, 1, 2] };
        for i in order {
            let Some((v, target, hs, tot, spent)) = variants.get_mut(i) else {
                continue;
            };
            let (ok, err, h, t, elapsed) = window(target.clone(), p.window, p.concurrency).await;
            v.connections += ok;
            v.errors += err;
            v.per_window.push(ok as f64 / elapsed.as_secs_f64());
            hs.extend(h);
            tot.extend(t);
            *spent += elapsed;
        }
    }
    let [full, off, plain_v] = variants.map(|(mut v, _, hs, tot, spent)| {
        v.per_s = v.connections as f64 / spent.as_secs_f64().max(1e-9);
        v.handshake = Summary::of(&hs);
        v.total = Summary::of(&tot);
        v
    });
    drop(ippin);
    drop(plain);
    let ratio = |a: &Variant| a.per_s / plain_v.per_s.max(1e-9);
    Ok(ThroughputReport {
        concurrency: p.concurrency,
        window_s: p.window.as_secs_f64(),
        ratio_full_to_plain: ratio(&full),
        ratio_off_to_plain: ratio(&off),
        full,
        off_unpinned: off,
        plain: plain_v,
        loadavg: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    })
}
