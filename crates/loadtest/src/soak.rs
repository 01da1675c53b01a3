//! Soak: mixed valid and hostile traffic for minutes, with the server's
//! memory sampled; pass when it does not grow beyond noise.
//!
//! Traffic, in a loop until the deadline: one hostile round (every PROXY
//! seed to every listener, every certificate prober) plus
//! `stalled_per_round` connections that never send (closed by the server
//! at `header_timeout`), while a valid user logs in and accesses
//! continuously.
//!
//! Criterion: the samples of the first quarter are warm-up (allocator
//! arenas, caches); the median RSS of the last quarter may exceed the
//! median of the second quarter by at most [`crate::hostile::rss_noise_kib`]
//! (5% or 4 MiB). Descriptors must return to the baseline at the end, the
//! valid user must never fail, and the server must stay alive, print no
//! panic and exit 0 on SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::LoadError;
use crate::client::ValidUser;
use crate::cluster::{Cluster, Listener, ServerKind, ServerProcess};
use crate::hostile::{HostileSet, RoundCounts, ValidRun, round, rss_noise_kib, valid_loop};
use crate::sampler::{Sample, Sampler};
use crate::stats::{Summary, median};

/// Parameters.
#[derive(Debug, Clone)]
pub struct SoakParams {
    /// How long.
    pub duration: Duration,
    /// RSS sampling period.
    pub sample_every: Duration,
    /// The fuzz corpus folder.
    pub corpus: PathBuf,
    /// Hostile connections in flight at once.
    pub concurrency: usize,
    /// Never-sending connections opened per round.
    pub stalled_per_round: usize,
    /// The listeners' `header_timeout`.
    pub header_timeout: Duration,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Seconds run.
    pub seconds: f64,
    /// Hostile rounds completed.
    pub rounds: usize,
    /// Hostile connections and how they ended.
    pub hostile: RoundCounts,
    /// Never-sending connections opened.
    pub stalled: usize,
    /// Never-sending connections the server did not close in time.
    pub stalled_not_closed: usize,
    /// Valid logins + accesses.
    pub valid_ok: usize,
    /// Valid failures.
    pub valid_failed: usize,
    /// The first valid failure.
    pub valid_first_error: Option<String>,
    /// Valid login latency.
    pub valid_login: Summary,
    /// Valid access latency.
    pub valid_access: Summary,
    /// Baseline before the load.
    pub baseline: Sample,
    /// Median RSS of the second quarter of the samples, KiB.
    pub rss_q2_kib: u64,
    /// Median RSS of the last quarter, KiB.
    pub rss_q4_kib: u64,
    /// Allowed growth, KiB.
    pub rss_noise_kib: u64,
    /// At most 60 samples spread over the run.
    pub series: Vec<Sample>,
    /// Descriptors back to the baseline at the end.
    pub fds_settled: bool,
    /// Descriptors at the end.
    pub fds_after: usize,
    /// Server alive at the end.
    pub server_alive: bool,
    /// A panic was printed.
    pub server_panicked: bool,
    /// Exit code on SIGTERM.
    pub exit_code: Option<i32>,
}

impl SoakReport {
    /// Failed bounds (see the module documentation).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rss_q4_kib > self.rss_q2_kib + self.rss_noise_kib {
            out.push(format!(
                "RSS grew: median {} KiB in the second quarter, {} KiB in the last (noise {} KiB)",
                self.rss_q2_kib, self.rss_q4_kib, self.rss_noise_kib
            ));
        }
        if self.hostile.hung > 0 || self.stalled_not_closed > 0 {
            out.push(format!(
                "{} hostile connections hung, {} stalled ones not closed",
                self.hostile.hung, self.stalled_not_closed
            ));
        }
        if !self.fds_settled {
            out.push(format!(
                "{} descriptors at the end, baseline {}",
                self.fds_after, self.baseline.fds
            ));
        }
        out.extend(crate::stats::valid_client_failure(
            self.valid_ok,
            self.valid_failed,
            &self.valid_first_error,
        ));
        out.extend(crate::stats::server_health_failure(
            self.server_alive,
            self.server_panicked,
            self.exit_code,
        ));
        out
    }
}

async fn stalled(addr: std::net::SocketAddr, bound: Duration) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut buf = [0u8; 16];
    tokio::time::timeout(bound, tcp.read(&mut buf))
        .await
        .is_ok()
}

/// Runs the soak.
///
/// # Errors
/// [`LoadError::Setup`] when the server or the corpus cannot be set up.
pub async fn run(exe: &Path, p: &SoakParams) -> Result<SoakReport, LoadError> {
    let cluster = Cluster::create(p.header_timeout)?;
    let set = HostileSet::load(&p.corpus, &cluster)?;
    let mut server = ServerProcess::start(exe, ServerKind::Ippin, &cluster)?;
    let valid = ValidUser::new(
        &cluster,
        server.addr(Listener::LoginDirect),
        server.addr(Listener::TlsDirect),
    );
    valid.once().await?;
    let sampler = Sampler::start(server.pid(), p.sample_every);
    sampler.baseline().await;
    let baseline = sampler.snapshot().baseline;
    let done = Arc::new(AtomicBool::new(false));
    let valid_task = valid_loop(valid.clone(), done.clone());
    let start = Instant::now();
    let deadline = start + p.duration;
    let bound = p.header_timeout + Duration::from_secs(15);
    let mut hostile = RoundCounts::default();
    let mut rounds = 0;
    let mut stall_tasks = Vec::new();
    let mut stalled_n = 0;
    let mut stalled_not_closed = 0;
    let targets = [
        server.addr(Listener::LoginDirect),
        server.addr(Listener::TlsDirect),
    ];
    while Instant::now() < deadline {
        for i in 0..p.stalled_per_round {
            let addr = targets.get(i % 2).copied().unwrap_or(targets[0]);
            stall_tasks.push(tokio::spawn(stalled(addr, bound)));
            stalled_n += 1;
        }
        let c = round(&server, &set, p.concurrency, bound).await;
        hostile.sent += c.sent;
        hostile.refused += c.refused;
        hostile.hung += c.hung;
        for (k, v) in c.answered {
            *hostile.answered.entry(k).or_default() += v;
        }
        for n in c.hung_names {
            if hostile.hung_names.len() < 8 {
                hostile.hung_names.push(n);
            }
        }
        rounds += 1;
        // Reap the stalled ones already done, so the list stays short.
        let mut keep = Vec::new();
        for t in stall_tasks {
            if t.is_finished() {
                if !t.await.unwrap_or(false) {
                    stalled_not_closed += 1;
                }
            } else {
                keep.push(t);
            }
        }
        stall_tasks = keep;
    }
    for t in stall_tasks {
        if !t.await.unwrap_or(false) {
            stalled_not_closed += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    let ValidRun {
        logins,
        accesses,
        failed: valid_failed,
        first_error: first,
    } = valid_task.await.unwrap_or_default();
    let seconds = start.elapsed().as_secs_f64();
    let usage = sampler.finish_after_settle(Duration::from_secs(15)).await;
    let rss: Vec<u64> = usage.samples.iter().map(|s| s.rss_kib).collect();
    let q = rss.len() / 4;
    let rss_q2_kib = median(rss.get(q..2 * q).unwrap_or_default());
    let rss_q4_kib = median(rss.get(rss.len().saturating_sub(q)..).unwrap_or_default());
    let step = (usage.samples.len() / 60).max(1);
    let series = usage.samples.iter().step_by(step).copied().collect();
    let server_alive = server.is_running();
    let server_panicked = server.panicked();
    let exit_code = server.stop();
    Ok(SoakReport {
        seconds,
        rounds,
        hostile,
        stalled: stalled_n,
        stalled_not_closed,
        valid_ok: logins.len(),
        valid_failed,
        valid_first_error: first,
        valid_login: Summary::of(&logins),
        valid_access: Summary::of(&accesses),
        baseline,
        rss_q2_kib,
        rss_q4_kib,
        rss_noise_kib: rss_noise_kib(rss_q2_kib),
        series,
        fds_settled: usage.fds_settled,
        fds_after: usage.after.fds,
        server_alive,
        server_panicked,
        exit_code,
    })
}
