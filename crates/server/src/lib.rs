//! The ippin reference server: configuration, sockets and wiring over the
//! `ippin-proxy-protocol`, `ippin-cert` and `ippin-policy` libraries.
#![forbid(unsafe_code)]

pub mod check;
pub mod inspect;
pub mod outcome;

pub use outcome::Outcome;
