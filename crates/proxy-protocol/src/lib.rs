//! Strict, sans-IO PROXY protocol v1/v2 parsing and encoding, and listener policy.
#![forbid(unsafe_code)]
