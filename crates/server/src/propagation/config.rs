//! The configuration of propagation, re-exported: the `forward:` and
//! `propagation:` sections are plain data of the configuration
//! (`ippin::config::propagation`), which imports no feature.

pub use crate::config::propagation::*;
