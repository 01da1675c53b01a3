//! The ippin reference server: configuration, sockets and wiring over the
//! `ippin-proxy-protocol`, `ippin-cert` and `ippin-policy` libraries.
//!
//! Every decision comes from the libraries: the PROXY stage from
//! `ippin-proxy-protocol`, the pin to issue and the pin check from
//! `ippin-policy`, certificate issuance and strict pin extraction from
//! `ippin-cert`. This crate reads the clock, opens sockets and files, and
//! writes the audit log.
//!
//! ```
//! // A configuration is checked strictly: unknown fields are refused, with
//! // the file, line and field in the error.
//! let text = "cluster_name: local\nbogus: 1\n";
//! let err = ippin::config::Config::parse(std::path::Path::new("ippin.yaml"), text).unwrap_err();
//! assert!(err.to_string().starts_with("ippin.yaml:2:"));
//! assert!(err.to_string().contains("bogus"));
//! ```
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod audit;
pub mod ca;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod directory;
pub mod files;
pub mod fleet;
pub mod fleet_http;
pub mod http;
pub mod inspect;
pub mod listen;
pub mod login_guard;
pub mod metrics;
pub mod observe;
pub mod openssh;
pub mod outcome;
pub mod propagation;
pub mod server;
pub mod ssh;
pub mod state;
pub mod users;

pub use outcome::Outcome;

// Moved to ippin-access; kept at their old paths for the server's modules and tests.
pub use ippin_access::{host, lockout, shed};

/// Installs rustls's `ring` provider as the process default, once. Later
/// calls do nothing. See `docs/crypto-provider.md` for the choice.
pub fn install_crypto_provider() {
    // `Err` means a provider is already installed: fine either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The operating system's random number generator, as the certificate
/// library takes it.
pub(crate) fn rng() -> ippin_cert::rand_core::UnwrapErr<ippin_cert::getrandom::SysRng> {
    ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng)
}

#[cfg(test)]
mod e2e_tests;
