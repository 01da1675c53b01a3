//! Latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Summary {
    /// The summary of `samples` (nearest-rank percentiles); all zero when
    /// there is none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ippin_loadtest::stats::Summary;
    /// let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    /// let s = Summary::of(&ms);
    /// assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (100, 50.0, 99.0, 100.0));
    /// ```
    pub fn of(samples: &[Duration]) -> Summary {
        let mut sorted: Vec<Duration> = samples.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: ceil(p * n), 1-based.
            let n = sorted.len();
            let r = ((p * n as f64).ceil() as usize).clamp(1, n);
            sorted.get(r - 1).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Summary {
            count: sorted.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
            self.count, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// The median of `values` (the lower middle for an even count); 0 when
/// empty.
///
/// ```
/// assert_eq!(ippin_loadtest::stats::median(&[5, 1, 3]), 3);
/// assert_eq!(ippin_loadtest::stats::median(&[]), 0);
/// ```
pub fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// The verdict line shared by every run that keeps a valid client going:
/// `None` when the client succeeded at least once and never failed.
pub fn valid_client_failure(
    ok: usize,
    failed: usize,
    first_error: &Option<String>,
) -> Option<String> {
    (ok == 0 || failed > 0)
        .then(|| format!("valid client: {ok} ok, {failed} failed ({first_error:?})"))
}

/// The verdict line on the server process shared by the runs that stop it
/// at the end: `None` when it stayed alive, printed no panic and exited 0.
pub fn server_health_failure(alive: bool, panicked: bool, exit: Option<i32>) -> Option<String> {
    (!alive || panicked || exit != Some(0))
        .then(|| format!("server alive {alive}, panicked {panicked}, exit {exit:?}"))
}
