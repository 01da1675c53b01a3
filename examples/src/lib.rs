//! Runnable examples of `ippin-access` (the binaries under `src/bin`), run by this crate's
//! tests against real clients. Each binary is what a user of the library writes; this
//! library part is empty.
