//! Load, stall, hostile-input and soak measurements of the `ippin`
//! server, on loopback only.
//!
//! The server under test runs in a child process (`ippin-load serve`,
//! which is exactly `ippin serve`'s code), so its descriptors and memory
//! are read from `/proc` apart from the clients'. Every loop is bounded in
//! count and in time; every run stops by itself. The binary `ippin-load`
//! has one subcommand per measurement; `tests/it` runs reduced versions.
//!
//! ```
//! use std::time::Duration;
//! use ippin_loadtest::stats::Summary;
//!
//! // Latencies are reported as nearest-rank percentiles.
//! let samples: Vec<Duration> = [3, 1, 2, 50].map(Duration::from_millis).to_vec();
//! let s = Summary::of(&samples);
//! assert_eq!((s.count, s.p50_ms, s.max_ms), (4, 2.0, 50.0));
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod cost;
pub mod flood;
pub mod hostile;
pub mod plain;
pub mod procfs;
pub mod sampler;
pub mod soak;
pub mod stall;
pub mod stats;
pub mod throughput;

/// Errors of the harness (the measured server's misbehaviour is reported
/// in the reports, not here).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The run could not be set up: a folder, a file, the server process,
    /// the open-files limit.
    #[error("setup: {0}")]
    Setup(String),
    /// One probe connection did not get a complete HTTP answer.
    #[error("probe: {0}")]
    Probe(String),
    /// A valid login or access failed.
    #[error("valid client: {0}")]
    Valid(String),
}
