//! Metrics in the Prometheus text exposition format 0.0.4 (feature `metrics`), with no
//! dependency: counters keyed by one label, histograms of seconds, gauges, and a
//! [`Registry`] that renders them for a `/metrics` endpoint.
//!
//! - [`Counters`]: a family of counters with one label (a reason code, a listener). The
//!   number of distinct label values is bounded at construction: a value beyond the bound
//!   (or longer than [`MAX_LABEL_VALUE_BYTES`], or `"other"` itself) is counted under
//!   `"other"`, so a client that sends arbitrary values cannot grow memory or the scrape.
//! - [`Histogram`]: fixed bucket bounds (seconds, `f64`), counts and sum in atomics.
//! - [`Gauge`]: an `i64` set, raised or lowered.
//!
//! Recording is lock-free: atomic adds, and for a histogram's sum a compare-and-swap loop. A
//! label value's first record claims a free slot of its family; two threads claiming the same
//! slot at the same moment wait for each other for the length of a move (std's `OnceLock`).
//! Names are checked at construction against the format's grammar
//! (`[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics, `[a-zA-Z_][a-zA-Z0-9_]*` without a leading `__`
//! for labels), so rendering cannot fail; label values and help texts are escaped as the
//! format says (label values: backslash, double quote, newline; help: backslash, newline).
//!
//! A render reads each atomic once, without stopping writers: a histogram's `_count` is the
//! sum of the bucket counts read, so it always equals the `+Inf` bucket, but its `_sum` may
//! already include an observation that the buckets do not (or the other way round) while one
//! is recorded.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ippin_access::metrics::{Counters, Gauge, Histogram, Registry};
//!
//! # fn main() -> Result<(), ippin_access::metrics::MetricsError> {
//! let decisions = Arc::new(Counters::new(
//!     "ippin_decisions_total",
//!     "Access decisions by reason code.",
//!     "reason",
//!     32,
//! )?);
//! let latency = Arc::new(Histogram::new(
//!     "ippin_decision_seconds",
//!     "Time to decide.",
//!     &[0.001, 0.01, 0.1, 1.0],
//! )?);
//! let revision = Arc::new(Gauge::new("ippin_backend_revision", "Last applied revision.")?);
//!
//! let mut registry = Registry::new();
//! registry.register(decisions.clone())?;
//! registry.register(latency.clone())?;
//! registry.register(revision.clone())?;
//!
//! decisions.inc("allowed");
//! decisions.inc("pin_mismatch");
//! latency.observe_duration(Duration::from_micros(400));
//! revision.set(42);
//!
//! let text = registry.render();
//! assert!(text.contains("ippin_decisions_total{reason=\"pin_mismatch\"} 1\n"));
//! assert!(text.contains("ippin_decision_seconds_bucket{le=\"0.001\"} 1\n"));
//! assert!(text.contains("ippin_decision_seconds_bucket{le=\"+Inf\"} 1\n"));
//! assert!(text.contains("ippin_backend_revision 42\n"));
//! // Serve it with this content type.
//! let _ = ippin_access::metrics::CONTENT_TYPE;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The `Content-Type` of a rendered registry.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label value that collects the values over a [`Counters`] family's bound.
pub const OTHER: &str = "other";

/// The longest label value a [`Counters`] family keeps as its own; a longer one is counted
/// under [`OTHER`].
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// The largest bound on distinct label values of a [`Counters`] family.
pub const MAX_LABEL_VALUES: usize = 1024;

/// A metric could not be built or registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("metric name {0:?}: not [a-zA-Z_:][a-zA-Z0-9_:]*")]
    MetricName(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with the reserved `__`, or
    /// `le` (a histogram's).
    #[error("label name {0:?}: not [a-zA-Z_][a-zA-Z0-9_]*, or reserved")]
    LabelName(String),
    /// Histogram bucket bounds that are not finite and strictly increasing.
    #[error("histogram {name}: bucket bounds {reason}")]
    Buckets {
        /// The histogram.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A [`Counters`] bound of 0 or over [`MAX_LABEL_VALUES`].
    #[error("counters {name}: bound {bound} not within 1..={max}", max = MAX_LABEL_VALUES)]
    Bound {
        /// The family.
        name: String,
        /// The bound asked for.
        bound: usize,
    },
    /// A [`Registry`] already holds a metric of this name (or a histogram's series name
    /// collides with it).
    #[error("metric {0:?} registered twice")]
    Duplicate(String),
}

fn check_metric_name(name: &str) -> Result<(), MetricsError> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if ok {
        Ok(())
    } else {
        Err(MetricsError::MetricName(name.to_owned()))
    }
}

fn check_label_name(name: &str) -> Result<(), MetricsError> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
        && name != "le";
    if ok {
        Ok(())
    } else {
        Err(MetricsError::LabelName(name.to_owned()))
    }
}

/// Appends a label value escaped for the text format: `\` as `\\`, `"` as `\"`, a newline
/// as `\n`; everything else as it is.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A help text escaped for a `# HELP` line: `\` as `\\`, a newline as `\n`.
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as the format writes it: `+Inf`, `-Inf`, `NaN`, or Rust's shortest text that reads
/// back to the same value.
fn push_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn push_header(name: &str, help: &str, kind: &str, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(help, out);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// A metric a [`Registry`] renders. Implemented by [`Counters`], [`Histogram`] and [`Gauge`].
pub trait Metric: Send + Sync {
    /// The metric's name (a histogram's base name).
    fn name(&self) -> &str;
    /// Appends the metric's `# HELP`, `# TYPE` and sample lines.
    fn render(&self, out: &mut String);
    /// The sample names the metric writes (a histogram's `_bucket`, `_sum`, `_count`), for the
    /// registry's duplicate check.
    fn series_names(&self) -> Vec<String> {
        vec![self.name().to_owned()]
    }
}

/// One label value's counter.
#[derive(Debug)]
struct Slot {
    value: Box<str>,
    count: AtomicU64,
}

/// A family of counters with one label: `name{label="value"} count`.
///
/// At most `bound` distinct values are kept, in the order they were first seen (or given to
/// [`with_values`](Self::with_values)); later values, values over
/// [`MAX_LABEL_VALUE_BYTES`], and the value `"other"` are counted under `label="other"`,
/// rendered once it is not zero. A record scans the values seen so far: keep the bound to
/// what the label can really take (reason codes, listeners), not to a client's input.
#[derive(Debug)]
pub struct Counters {
    name: String,
    help: String,
    label: String,
    slots: Box<[OnceLock<Slot>]>,
    other: AtomicU64,
}

impl Counters {
    /// A family `name` with the label `label`, keeping at most `bound` distinct values.
    ///
    /// # Errors
    /// [`MetricsError::MetricName`], [`MetricsError::LabelName`], or [`MetricsError::Bound`]
    /// for a bound of 0 or over [`MAX_LABEL_VALUES`].
    pub fn new(name: &str, help: &str, label: &str, bound: usize) -> Result<Self, MetricsError> {
        check_metric_name(name)?;
        check_label_name(label)?;
        if bound == 0 || bound > MAX_LABEL_VALUES {
            return Err(MetricsError::Bound {
                name: name.to_owned(),
                bound,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            help: help.to_owned(),
            label: label.to_owned(),
            slots: (0..bound).map(|_| OnceLock::new()).collect(),
            other: AtomicU64::new(0),
        })
    }

    /// The same family with these values present from the start (rendered as 0 until
    /// counted), so a rate over them exists before the first event. Values past the bound
    /// are ignored.
    pub fn with_values(self, values: &[&str]) -> Self {
        for v in values {
            self.add(v, 0);
        }
        self
    }

    /// Adds 1 to `value`'s counter.
    pub fn inc(&self, value: &str) {
        self.add(value, 1);
    }

    /// Adds `n` to `value`'s counter (wrapping at `u64::MAX`, as atomics do).
    pub fn add(&self, value: &str, n: u64) {
        if value == OTHER || value.len() > MAX_LABEL_VALUE_BYTES {
            self.other.fetch_add(n, Ordering::Relaxed);
            return;
        }
        for slot in &*self.slots {
            let s = match slot.get() {
                Some(s) => s,
                None => {
                    // Claim the free slot; a thread that claimed it first wins, and its value
                    // is compared below like any other.
                    let _ = slot.set(Slot {
                        value: value.into(),
                        count: AtomicU64::new(0),
                    });
                    match slot.get() {
                        Some(s) => s,
                        None => continue,
                    }
                }
            };
            if &*s.value == value {
                s.count.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(n, Ordering::Relaxed);
    }

    /// `value`'s count (`"other"`: the count of the values over the bound).
    pub fn get(&self, value: &str) -> u64 {
        if value == OTHER {
            return self.other.load(Ordering::Relaxed);
        }
        self.slots
            .iter()
            .filter_map(OnceLock::get)
            .find(|s| &*s.value == value)
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }
}

impl Metric for Counters {
    fn name(&self) -> &str {
        &self.name
    }

    fn render(&self, out: &mut String) {
        push_header(&self.name, &self.help, "counter", out);
        let line = |value: &str, count: u64, out: &mut String| {
            out.push_str(&self.name);
            out.push('{');
            out.push_str(&self.label);
            out.push_str("=\"");
            escape_label_value(value, out);
            let _ = writeln!(out, "\"}} {count}");
        };
        for s in self.slots.iter().filter_map(OnceLock::get) {
            line(&s.value, s.count.load(Ordering::Relaxed), out);
        }
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            line(OTHER, other, out);
        }
    }
}

/// A histogram of seconds with fixed bucket bounds: `name_bucket{le="…"}` (cumulative, with
/// `+Inf`), `name_sum`, `name_count`.
///
/// An observation `v` falls in the first bucket whose bound is `>= v` (the format's `le`),
/// or only in `+Inf`. A `NaN` observation is not recorded.
#[derive(Debug)]
pub struct Histogram {
    name: String,
    help: String,
    bounds: Box<[f64]>,
    /// One count per bound, and one past the last for `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram `name` with these upper bounds (seconds), finite and strictly increasing
    /// (`+Inf` is added; an empty list keeps only it).
    ///
    /// # Errors
    /// [`MetricsError::MetricName`], or [`MetricsError::Buckets`].
    pub fn new(name: &str, help: &str, bounds: &[f64]) -> Result<Self, MetricsError> {
        check_metric_name(name)?;
        let bad = |reason| MetricsError::Buckets {
            name: name.to_owned(),
            reason,
        };
        if bounds.iter().any(|b| !b.is_finite()) {
            return Err(bad("must be finite (+Inf is added)"));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("must be strictly increasing"));
        }
        Ok(Self {
            name: name.to_owned(),
            help: help.to_owned(),
            bounds: bounds.into(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        })
    }

    /// Records one observation, in seconds.
    pub fn observe(&self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < seconds);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let mut cur = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + seconds).to_bits();
            match self
                .sum
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    /// Records a duration.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

impl Metric for Histogram {
    fn name(&self) -> &str {
        &self.name
    }

    fn series_names(&self) -> Vec<String> {
        ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", self.name))
            .chain([self.name.clone()])
            .collect()
    }

    fn render(&self, out: &mut String) {
        push_header(&self.name, &self.help, "histogram", out);
        let mut cumulative: u64 = 0;
        let les = self.bounds.iter().copied().chain([f64::INFINITY]);
        for (le, c) in les.zip(self.counts.iter()) {
            cumulative = cumulative.wrapping_add(c.load(Ordering::Relaxed));
            out.push_str(&self.name);
            out.push_str("_bucket{le=\"");
            push_float(le, out);
            let _ = writeln!(out, "\"}} {cumulative}");
        }
        out.push_str(&self.name);
        out.push_str("_sum ");
        push_float(self.sum(), out);
        out.push('\n');
        let _ = writeln!(out, "{}_count {cumulative}", self.name);
    }
}

/// A gauge: an `i64` set, raised or lowered.
#[derive(Debug)]
pub struct Gauge {
    name: String,
    help: String,
    value: AtomicI64,
}

impl Gauge {
    /// A gauge `name` at 0.
    ///
    /// # Errors
    /// [`MetricsError::MetricName`].
    pub fn new(name: &str, help: &str) -> Result<Self, MetricsError> {
        check_metric_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            help: help.to_owned(),
            value: AtomicI64::new(0),
        })
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (negative to lower; wrapping, as atomics do).
    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl Metric for Gauge {
    fn name(&self) -> &str {
        &self.name
    }

    fn render(&self, out: &mut String) {
        push_header(&self.name, &self.help, "gauge", out);
        let _ = writeln!(out, "{} {}", self.name, self.get());
    }
}

/// The metrics of one `/metrics` page, rendered in the order they were registered.
#[derive(Default)]
pub struct Registry {
    metrics: Vec<Arc<dyn Metric>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.metrics.iter().map(|m| m.name()))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metric; keep your own `Arc` to record into it.
    ///
    /// # Errors
    /// [`MetricsError::Duplicate`] when a registered metric writes a sample of the same name.
    pub fn register(&mut self, metric: Arc<dyn Metric>) -> Result<(), MetricsError> {
        let new = metric.series_names();
        for m in &self.metrics {
            if let Some(clash) = m.series_names().into_iter().find(|n| new.contains(n)) {
                return Err(MetricsError::Duplicate(clash));
            }
        }
        self.metrics.push(metric);
        Ok(())
    }

    /// Appends every metric's text to `out`.
    pub fn render_into(&self, out: &mut String) {
        for m in &self.metrics {
            m.render(out);
        }
    }

    /// Every metric's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
