//! Samples a server process's descriptors and memory in the background.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Descriptors that may stay open past the baseline without counting as a
/// leak (a connection the valid client just closed, a log file).
pub const FD_SLACK: usize = 8;

/// One sample.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Milliseconds since sampling started.
    pub at_ms: u64,
    /// Open descriptors.
    pub fds: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
}

/// A server's descriptors and memory over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Before the load.
    pub baseline: Sample,
    /// The sample with the most descriptors.
    pub peak_fds: Sample,
    /// The largest resident memory seen.
    pub peak_rss_kib: u64,
    /// After the load, once the descriptors settled (or the wait ended).
    pub after: Sample,
    /// Whether descriptors came back to the baseline (± [`FD_SLACK`]).
    pub fds_settled: bool,
    /// Every sample (not serialized: the soak report carries its own
    /// series).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

impl Usage {
    /// Resident memory added per extra descriptor in sample `at` against
    /// the baseline, in bytes; `None` when fewer than 100 extra descriptors
    /// were open.
    pub fn bytes_per_extra_fd_at(&self, at: Sample) -> Option<u64> {
        let extra = at.fds.checked_sub(self.baseline.fds)?;
        if extra < 100 {
            return None;
        }
        let grown = at.rss_kib.saturating_sub(self.baseline.rss_kib);
        Some(grown * 1024 / extra as u64)
    }

    /// Failed bounds: descriptors not back to the baseline.
    pub fn failures(&self) -> Vec<String> {
        if self.fds_settled {
            Vec::new()
        } else {
            vec![format!(
                "server descriptors {} after the load, baseline {} (+{FD_SLACK} allowed)",
                self.after.fds, self.baseline.fds
            )]
        }
    }
}

/// A background sampler of process `pid`.
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
    start: Instant,
    state: Arc<Mutex<Usage>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let start = Instant::now();
        let state = Arc::new(Mutex::new(Usage::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(s) = sample(pid, start) else { return };
                let Ok(mut u) = st.lock() else { return };
                if s.fds > u.peak_fds.fds {
                    u.peak_fds = s;
                }
                u.peak_rss_kib = u.peak_rss_kib.max(s.rss_kib);
                // Bounded: at most 100,000 samples (5.5 h at 200 ms).
                if u.samples.len() < 100_000 {
                    u.samples.push(s);
                }
            }
        });
        Sampler {
            pid,
            start,
            state,
            task,
        }
    }

    /// Records the baseline now (and resets the peaks to it).
    pub async fn baseline(&self) {
        let s = sample(self.pid, self.start).unwrap_or_default();
        if let Ok(mut u) = self.state.lock() {
            u.baseline = s;
            u.peak_fds = s;
            u.peak_rss_kib = s.rss_kib;
        }
    }

    /// One sample now (also recorded), or `None` when the process is gone.
    pub fn sample_now(&self) -> Option<Sample> {
        let s = sample(self.pid, self.start)?;
        if let Ok(mut u) = self.state.lock() {
            if s.fds > u.peak_fds.fds {
                u.peak_fds = s;
            }
            u.peak_rss_kib = u.peak_rss_kib.max(s.rss_kib);
            u.samples.push(s);
        }
        Some(s)
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Usage {
        self.state.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Waits (at most `settle`) for the descriptors to come back to the
    /// baseline, then stops and returns the usage.
    pub async fn finish_after_settle(self, settle: Duration) -> Usage {
        let base = self.snapshot().baseline.fds;
        let pid = self.pid;
        let settled = crate::cluster::poll_until(settle, || {
            crate::procfs::fd_count(pid).is_some_and(|n| n <= base + FD_SLACK)
        })
        .await;
        self.task.abort();
        let mut u = self.snapshot();
        u.after = sample(self.pid, self.start).unwrap_or_default();
        u.fds_settled = settled;
        u
    }
}

fn sample(pid: u32, start: Instant) -> Option<Sample> {
    Some(Sample {
        at_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        fds: crate::procfs::fd_count(pid)?,
        rss_kib: crate::procfs::rss_kib(pid)?,
    })
}
