//! Reduced versions of the `ippin-load` measurements, run in CI: each
//! starts the server in a child process of the `ippin-load` binary and
//! asserts bounds (counts, descriptors, liveness), never exact timings.

mod flood;
mod hostile;
mod soak;
mod stall;

/// The harness binary (its `serve` subcommand runs the server).
pub(crate) fn exe() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_ippin-load"))
}
