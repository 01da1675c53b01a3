//! Signed propagation of the observed client IP between services (front →
//! inner), as a sans-IO library: the value of the PROXY v2 TLV 0xE7
//! ([`TLV_TYPE`]) that ippin's `kind: forward` listeners write and its
//! inner listeners verify. A tool can be a front or an inner with this
//! crate alone; the PROXY v2 framing around the value is the caller's.
//!
//! A front holds an Ed25519 key and a certificate from the cluster CA
//! (CN `proxy:NAME`, role (O) `proxy`, extended key usage the front's alone:
//! [`PROXY_CN_PREFIX`], [`PROXY_ROLE`], [`PROPAGATION_FRONT_EKU`]).
//! It signs a **grant** ([`Signer::grant`]) once per half lifetime per
//! upstream ([`GrantSchedule`]): the certificate, a fresh ephemeral X25519
//! key, the inner listener's static X25519 key ([`SecretKey`] /
//! [`PublicKey`]), the inner's audience and a validity. Per connection it
//! writes a **signed block** ([`FrontGrant::signed_block`]): the grant and
//! an HMAC-SHA256, under a key agreed by X25519 and bound to the grant,
//! over the header's addresses, the front → inner connection it is
//! written on ([`Link`]), the audience, a timestamp and a nonce.
//!
//! An inner listener verifies it ([`Verifier::verify_block`]): the grant
//! once (certificate chain to the [`TrustAnchor`], role, signature,
//! validity; then cached), the MAC, the connection, the freshness window
//! and the replay state keyed by the connection's 4-tuple, with the
//! decision table in [`Verifier`]'s docs. Each refusal is a [`Rejection`]
//! with a stable [`Reason`] code.
//!
//! Nothing here opens a socket, reads a file or reads the clock: time,
//! nonces and ephemeral keys are parameters. The wire format (version 3)
//! is in [`wire`].
//!
//! # Example
//!
//! A front signs a block for a link at time `t`; the inner verifies it.
//! (The certificate here is issued with `ippin-cert`; any X.509 issuer
//! whose CA key is P-256 or Ed25519 will do.)
//!
//! ```
//! use ippin_propagation::{
//!     Link, PROXY_CN_PREFIX, PROXY_ROLE, Reason, SecretKey, Signer, TrustAnchor, Verifier,
//!     address_block_for, ed25519_spki_der,
//! };
//! # use ippin_cert::getrandom::SysRng;
//! # use ippin_cert::rand_core::UnwrapErr;
//! # use ippin_cert::x509::{ClientCertRequest, X509Ca};
//! # let mut rng = UnwrapErr(SysRng);
//! let t = 1_700_000_000;
//!
//! // Once: the cluster CA issues the front's certificate (CN `proxy:NAME`, O `proxy`).
//! let ca = X509Ca::generate_p256("cluster CA", t - 60, t + 3600, &mut rng).unwrap();
//! let front_key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]); // random in practice
//! let spki = ed25519_spki_der(front_key.verifying_key().as_bytes());
//! let request = ClientCertRequest::builder(format!("{PROXY_CN_PREFIX}front-1"), spki)
//!     .role(PROXY_ROLE)
//!     .propagation_front()
//!     .validity(t - 60, t + 3600)
//!     .serial(7)
//!     .build()
//!     .unwrap();
//! let signer = Signer::new(front_key, ca.issue_client(&request, &mut rng).unwrap()).unwrap();
//!
//! // The inner listener's static key; the front knows its public half.
//! let inner = SecretKey::from_bytes([0x5a; 32]); // random bytes in practice
//!
//! // The front signs a grant once, then writes a MAC'd block per connection,
//! // bound to the front → inner connection it is written on.
//! let ephemeral = SecretKey::from_bytes([0x17; 32]); // random bytes in practice
//! let grant = signer.grant(&inner.public_key(), "inner", t, t + 600, &ephemeral).unwrap();
//! let client = "192.0.2.7:51234".parse().unwrap();
//! let reached = "198.51.100.1:443".parse().unwrap();
//! let link = Link { front: "10.0.0.5:40100".parse().unwrap(), inner: "10.0.0.9:4443".parse().unwrap() };
//! let value = grant.signed_block(client, reached, link, t, [1; 16]).unwrap();
//! // The front sends a PROXY v2 header (command PROXY) whose address bytes are
//! // `address_block_for(client, reached)` and whose TLV 0xE7 holds `value`.
//! let sent = address_block_for(client, reached);
//!
//! // The inner verifies it once, on that connection; a replay is refused.
//! let anchor = TrustAnchor::from_der(ca.cert_der()).unwrap();
//! // Started now (here: the second before the header): the headers accepted before a
//! // restart are not accepted again.
//! let verifier = Verifier::new(anchor, inner, "inner", 30, 1024).started_at(t - 1);
//! assert_eq!(verifier.verify_block(&sent, &value, link, t + 1).unwrap().client(), client);
//! let again = verifier.verify_block(&sent, &value, link, t + 2).unwrap_err();
//! assert_eq!(again.reason, Reason::Replayed);
//! assert_eq!(again.reason.code(), "signed_header_replayed");
//! // Raced onto another connection, it is refused too.
//! let other = Link { front: "10.0.0.66:40100".parse().unwrap(), ..link };
//! let raced = verifier.verify_block(&sent, &value, other, t + 1).unwrap_err();
//! assert_eq!(raced.reason.code(), "signed_connection_mismatch");
//! ```
//!
//! # Public API
//!
//! * Keys: [`SecretKey`], [`PublicKey`] ([`key`]).
//! * The front: [`Signer`], [`FrontGrant`], [`GrantSchedule`],
//!   [`address_block_for`], [`audience_ok`], [`ed25519_spki_der`],
//!   ([`sign`]).
//! * The inner: [`TrustAnchor`], [`Verifier`], [`Verified`], [`Rejection`],
//!   [`Reason`] ([`verify`]); its caches [`GrantCache`]
//!   ([`grants`]) and [`ReplayCache`] ([`replay`]).
//! * The wire format: [`wire`] ([`decode`], [`SignedBlock`]).
//! * One error type: [`Error`].
//! * PEM helpers for key and certificate files: [`pem`].
//!
//! # What the caller must still do
//!
//! * Frame the block: a v2 PROXY command (not LOCAL) with TCP over IPv4 or
//!   IPv6 and exactly one TLV 0xE7; refuse any other header that carries
//!   TLV 0xE7 ([`Reason::Malformed`]), never fall back to its addresses.
//! * Pass the real connection ([`Link`]) from the socket, and the real time.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;

mod error;
pub mod grants;
pub mod key;
pub mod pem;
pub mod replay;
pub mod sign;
pub mod verify;
pub mod wire;

/// The wire format's version ([`wire::VERSION`]), defined here so that the error type names it
/// without importing the codec that returns it.
const WIRE_VERSION: u8 = 4;

pub use error::Error;
pub use grants::{DEFAULT_GRANT_CACHE_CAPACITY, GrantCache, VerifiedGrant};
pub use key::{PublicKey, SecretKey};
pub use replay::{MAX_PER_SECOND, ReplayCache, ReplayRefusal};
pub use sign::{
    FrontGrant, GrantSchedule, MAX_GRANT_LIFETIME, Signer, address_block_for, audience_ok,
    ed25519_spki_der,
};
pub use verify::{TrustAnchor, Verified, Verifier};
pub use wire::{SignedBlock, TLV_TYPE, decode};

/// The front → inner TCP connection a signed header is written on, as
/// each end's socket sees it: the front's address (the inner's peer) and
/// the inner's address (the front's peer). The MAC covers it and the inner
/// compares it with the socket the header arrived on, so a header is good
/// on its own connection only (docs/propagation.md, "Connection binding").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    /// The front's end: its local address after `connect()`, the inner's
    /// peer address.
    pub front: SocketAddr,
    /// The inner's end: the front's peer address, the inner's local address.
    pub inner: SocketAddr,
}

impl Link {
    /// The link in canonical form (IPv4-mapped addresses as IPv4; scope
    /// ids and flow info dropped), the form the connection block carries
    /// and the replay state is keyed by.
    pub fn canonical(self) -> Link {
        let c = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        Link {
            front: c(self.front),
            inner: c(self.inner),
        }
    }
}

/// The role (subject O) a front's certificate must carry.
pub const PROXY_ROLE: &str = "proxy";

/// The prefix of a front certificate's CN (`proxy:NAME`).
pub const PROXY_CN_PREFIX: &str = "proxy:";

/// The extended key usage a front's certificate must have, alone: 1.3.9999.1.9.2 (the same
/// value as `ippin_cert::x509::PROPAGATION_FRONT_EKU`, which issues it with
/// `ClientCertRequestBuilder::propagation_front`). A certificate issued for a user carries
/// TLS client authentication instead, so none can pass for a front's, even one whose name
/// starts with [`PROXY_CN_PREFIX`] and whose roles include [`PROXY_ROLE`] (a login service
/// that lets users choose such names, or a role named `proxy`).
pub const PROPAGATION_FRONT_EKU: &str = "1.3.9999.1.9.2";

/// Why a signed header (or a header sequence) was refused. Each reason
/// has a stable [`code`](Reason::code), written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The signed block does not decode, appears twice, or sits in a
    /// header that is not a v2 PROXY header with TCP addresses.
    Malformed,
    /// The front's certificate does not decode or its key is not Ed25519.
    CertInvalid,
    /// The front's certificate was not issued by the cluster CA.
    CertUntrusted,
    /// The front's certificate is not valid now.
    CertExpired,
    /// The certificate lacks the `proxy` role (or the `proxy:` CN).
    NotProxy,
    /// The header's addresses differ from those in the signed block
    /// (someone rewrote the address after signing).
    AddressMismatch,
    /// The grant's signature, or the header's MAC, does not verify.
    BadSignature,
    /// The grant was made for another listener (audience).
    WrongAudience,
    /// The grant names another inner key than this listener's.
    GrantWrongKey,
    /// The grant is outside its validity (or claims more than an hour).
    GrantExpired,
    /// The timestamp is outside the window around now.
    Stale,
    /// The header was already accepted on its connection's 4-tuple within
    /// the window (same nonce, or an older timestamp than the newest
    /// accepted there).
    Replayed,
    /// The header was written for another front → inner connection than
    /// the one it arrived on (a captured header raced onto another
    /// connection).
    ConnectionMismatch,
    /// An unsigned header follows a signed one.
    UnsignedAfterSigned,
    /// A second signed header.
    TwoSigned,
}

impl Reason {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Malformed => "signed_header_malformed",
            Reason::CertInvalid => "proxy_cert_invalid",
            Reason::CertUntrusted => "proxy_cert_untrusted",
            Reason::CertExpired => "proxy_cert_expired",
            Reason::NotProxy => "proxy_cert_not_proxy",
            Reason::AddressMismatch => "signed_address_mismatch",
            Reason::BadSignature => "signed_header_bad_signature",
            Reason::WrongAudience => "signed_header_wrong_audience",
            Reason::GrantWrongKey => "signed_grant_wrong_key",
            Reason::GrantExpired => "signed_grant_expired",
            Reason::Stale => "signed_header_stale",
            Reason::Replayed => "signed_header_replayed",
            Reason::ConnectionMismatch => "signed_connection_mismatch",
            Reason::UnsignedAfterSigned => "unsigned_after_signed",
            Reason::TwoSigned => "two_signed_headers",
        }
    }

    /// Every reason, for tables and tests.
    pub const ALL: [Reason; 15] = [
        Reason::Malformed,
        Reason::CertInvalid,
        Reason::CertUntrusted,
        Reason::CertExpired,
        Reason::NotProxy,
        Reason::AddressMismatch,
        Reason::BadSignature,
        Reason::WrongAudience,
        Reason::GrantWrongKey,
        Reason::GrantExpired,
        Reason::Stale,
        Reason::Replayed,
        Reason::ConnectionMismatch,
        Reason::UnsignedAfterSigned,
        Reason::TwoSigned,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused signed header: the reason and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason.
    pub reason: Reason,
    /// Details for the operator.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

/// The README's examples, compiled and run as doctests (so that they stay true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
