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
//! # #[cfg(feature = "issue")]
//! # fn main() -> Result<(), ippin_cert::Error> {
//! use ippin_cert::rand_core::UnwrapErr;
//! use ippin_cert::getrandom::SysRng;
//! use ippin_cert::ssh::{SshCa, SshCertRequest, SshValidation, validate_user_cert};
//! use ippin_cert::x509::{self, ClientCertRequest, X509Ca};
//!
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
//! let v = SshValidation::new(&trusted, "alice", now + 60);
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
//! assert_eq!(x509::client_identity(&der)?.pin, Some(client_ip.into()));
//!
//! // A network pin (a role's `pin_source_ip_prefix`): the same extension, CIDR text.
//! let net: ipnet::IpNet = "2001:db8:1:2::/64".parse().unwrap();
//! let req = ClientCertRequest::builder("alice", x509::spki_der_from_pem(&spki_pem)?)
//!     .validity(now, now + 3600)
//!     .serial(8)
//!     .pinned_network(net)
//!     .build()?;
//! let der = ca.issue_client(&req, &mut rng)?;
//! assert_eq!(x509::pin_fast(&der)?, Some(net));
//! assert_eq!(x509::pinned_ip_fast(&der).unwrap_err().code(), "pin_is_network");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "issue"))]
//! # fn main() {}
//! ```
//!
//! (The example issues certificates, so it needs feature `issue`.)
//!
//! # Public API
//!
//! * [`ssh`], reading: [`parse_certificate`](ssh::parse_certificate) (bounded OpenSSH text),
//!   [`validate_user_cert`](ssh::validate_user_cert) against an
//!   [`SshValidation`](ssh::SshValidation) (trusted CA fingerprints, principal, time) giving a
//!   [`ValidatedSshCert`](ssh::ValidatedSshCert) whose
//!   [`check_source`](ssh::ValidatedSshCert::check_source) is the pin check;
//!   [`read_options`](ssh::read_options) ([`SshOptions`](ssh::SshOptions),
//!   [`Permissions`](ssh::Permissions)); [`SourceAddress`](ssh::SourceAddress), the strict
//!   `source-address` list; the option and extension names as constants.
//! * [`ssh`], issuing (feature `issue`): `SshCa` (generate, load and save OpenSSH keys, sign),
//!   `SshCertRequest` and its builder.
//! * [`x509`], reading: [`pin`](x509::pin) (full decoder: one address or a network),
//!   [`pin_fast`](x509::pin_fast) (a DER walk that agrees with it),
//!   [`pinned_ip`](x509::pinned_ip) and [`pinned_ip_fast`](x509::pinned_ip_fast) (the same,
//!   for callers that handle one address only: a network pin is an error, never "unpinned"),
//!   [`client_identity`](x509::client_identity) ([`ClientIdentity`](x509::ClientIdentity):
//!   user, roles, pin, login IP, [`Profile`](x509::Profile)); the extension value types
//!   [`PinnedIp`](x509::PinnedIp), [`PinnedNetwork`](x509::PinnedNetwork) and
//!   [`LoginIp`](x509::LoginIp) with their OIDs.
//! * [`x509`], issuing (feature `issue`): `X509Ca` (client and server certificates),
//!   `ClientCertRequest` and its builder, `ServerCertRequest`, `generate_key_pair_p256`,
//!   `spki_der_from_pem`.
//! * [`canonical_ip`], [`parse_canonical_ip`]: the one text form of an IP this crate writes
//!   and accepts.
//! * Errors: one [`Error`] enum with a stable [`code`](Error::code) per variant.
//! * Re-exports: [`ssh_key`] (its `Certificate`, `KeyData` and `Fingerprint` appear in this
//!   API), and with feature `issue` `rand_core` and `getrandom` (the RNG the issuing
//!   functions take).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `issue` | off     | Certificate authorities and requests (above), key generation; pulls in `p256`, `ed25519-dalek`, `sha2`, `signature`, `spki`, `rand_core` and `ssh-key`'s RNG support. |
//!
//! Without `issue` the crate reads and validates certificates only: it holds no signing code
//! of its own. (`ssh-key` still depends on the Ed25519 and P-256 crates, which it needs to
//! verify CA signatures.)
//!
//! # The exact `ssh-key` version
//!
//! `ssh-key` is required as `=0.7.0-rc.11`, a pre-release, on purpose:
//! * Pre-releases of RustCrypto crates change their API between release candidates, and
//!   Cargo's `^0.7.0-rc.11` would accept any later candidate and 0.7.0 itself.
//! * `ssh_key` types are part of this crate's API ([`ssh_key`] is re-exported), so an SSH
//!   server that hands us russh's certificates must use the same `ssh-key`. `russh` 0.65
//!   requires exactly `=0.7.0-rc.11` too; a looser requirement here could not resolve to
//!   anything else while russh is in the graph, and would only invite a second copy elsewhere.
//!
//! The requirement becomes `0.7` once `ssh-key` 0.7.0 is released and russh moves to it.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod ip;
pub mod ssh;
pub mod x509;

pub use error::{Error, Result};
pub use ip::{canonical_ip, parse_canonical_ip};

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// The random number traits the issuing functions take (`rand_core` 0.10,
/// as `ssh-key` and the RustCrypto signers use).
pub use ssh_key::rand_core;

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// The operating system's random number generator: `UnwrapErr(SysRng)`
/// is a [`rand_core::CryptoRng`].
pub use ssh_key::getrandom;

/// The `ssh-key` crate this crate's SSH types come from.
pub use ssh_key;

/// The `ipnet` crate whose `IpNet` is a pin (one address is a `/32` or `/128`).
pub use ipnet;

/// The README's examples, compiled and run as doctests (so that they stay true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
