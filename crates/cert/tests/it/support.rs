//! Shared fixtures.

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;

/// A fixed "now" for the tests (2023-11-14), unix seconds.
pub(crate) const NOW: u64 = 1_700_000_000;

/// The operating system's RNG.
pub(crate) fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// The folder of the committed test vectors.
pub(crate) fn vectors() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}
