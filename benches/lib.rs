//! Criterion benchmarks for ippin live beside this file, one per `[[bench]]`
//! in `Cargo.toml`; run them with `cargo bench -p ippin-benches`. This
//! library is empty on purpose.
#![forbid(unsafe_code)]
