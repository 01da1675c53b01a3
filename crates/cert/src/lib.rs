//! The pinned source IP in OpenSSH user certificates and X.509 client
//! certificates: issuance and strict extraction.
//!
//! * [`ssh`]: user certificates whose critical option `source-address`
//!   carries the pin (sshd enforces it on its own), plus the complete
//!   validation `ssh-key` leaves to its caller.
//! * [`x509`]: client certificates with the pin in the non-critical
//!   extension 1.3.9999.1.9, read back strictly (one instance, strict DER,
//!   canonical text) by a full decoder and by a fast path that agrees with
//!   it; Teleport's subject-attribute layout is read and written too.
//!
//! Time is always a parameter (unix seconds) and randomness comes from the
//! caller; nothing here opens a socket, a file or reads the clock.
//!
//! ```
//! use ippin_cert::rand_core::UnwrapErr;
//! use ippin_cert::getrandom::SysRng;
//! use ippin_cert::ssh::{SshCa, SshCertRequest, SshValidation, validate_user_cert};
//! use ippin_cert::x509::{self, ClientCertRequest, X509Ca};
//!
//! # fn main() -> Result<(), ippin_cert::Error> {
//! let mut rng = UnwrapErr(SysRng);
//! let now = 1_700_000_000;
//! let client_ip = "192.0.2.10".parse().unwrap();
//!
//! // SSH: pin at login, check at access.
//! let ca = SshCa::generate_ed25519(&mut rng)?;
//! let user = SshCa::generate_ed25519(&mut rng)?; // any key pair will do
//! let req = SshCertRequest::builder(user.public_key().key_data().clone())
//!     .key_id("alice@login")
//!     .principal("alice")
//!     .validity(now, now + 3600)
//!     .pinned_ip(client_ip)
//!     .build()?;
//! let cert = ca.issue(&req, &mut rng)?;
//! let trusted = [ca.fingerprint()];
//! let v = SshValidation { trusted_cas: &trusted, principal: "alice", now: now + 60 };
//! let checked = validate_user_cert(&cert, &v)?;
//! assert!(checked.check_source(client_ip).is_ok());
//! assert!(checked.check_source("198.51.100.1".parse().unwrap()).is_err());
//!
//! // X.509: the pin travels in extension 1.3.9999.1.9.
//! let ca = X509Ca::generate_p256("ippin CA", now, now + 86_400, &mut rng)?;
//! let (_key_pem, spki_pem) = x509::generate_key_pair_p256(&mut rng)?;
//! let req = ClientCertRequest::builder("alice", x509::spki_der_from_pem(&spki_pem)?)
//!     .role("dev")
//!     .validity(now, now + 3600)
//!     .serial(7)
//!     .pinned_ip(client_ip)
//!     .build()?;
//! let der = ca.issue_client(&req, &mut rng)?;
//! assert_eq!(x509::pinned_ip_fast(&der)?, Some(client_ip));
//! assert_eq!(x509::client_identity(&der)?.pinned_ip, Some(client_ip));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod ip;
pub mod ssh;
pub mod x509;

pub use error::{Error, Result};
pub use ip::{canonical_ip, parse_canonical_ip};

/// The random number traits the issuing functions take (`rand_core` 0.10,
/// as `ssh-key` and the RustCrypto signers use).
pub use ssh_key::rand_core;

/// The operating system's random number generator: `UnwrapErr(SysRng)`
/// is a [`rand_core::CryptoRng`].
pub use ssh_key::getrandom;

/// The `ssh-key` crate this crate's SSH types come from.
pub use ssh_key;
