//! Signed propagation of the observed client IP between ippin services
//! (front → inner), over PROXY v2. See docs/propagation.md.
//!
//! A front (`kind: forward`) writes, before relaying, a PROXY v2 header
//! whose TLV [`TLV_TYPE`] (0xE7) carries its certificate (issued by the
//! cluster CA, role `proxy`) and an Ed25519 signature over the address
//! block, the upstream's audience, a timestamp and a nonce. An inner
//! listener with `propagation` set verifies it ([`Verifier`]) and, only
//! then, uses the client address it names.
//!
//! Everything here but [`net`], [`serve`] and [`cmd`] (sockets, files, the
//! clock) is sans-IO: time and nonces are parameters.
//!
//! ```
//! use ippin::propagation::{Reason, Signer, TrustAnchor, Verifier, issue_proxy_identity};
//! use ippin_cert::rand_core::UnwrapErr;
//! use ippin_cert::getrandom::SysRng;
//!
//! let mut rng = UnwrapErr(SysRng);
//! let now = 1_700_000_000;
//! let ca = ippin_cert::x509::X509Ca::generate_p256("cluster CA", now - 60, now + 3600, &mut rng).unwrap();
//! let id = issue_proxy_identity(&ca, "front-1", now - 60, now + 3600, 7, &mut rng).unwrap();
//! let signer = Signer::from_pem(&id.cert_pem, &id.key_pem).unwrap();
//!
//! // The front signs for the upstream named `inner`.
//! let client = "192.0.2.7:51234".parse().unwrap();
//! let reached = "198.51.100.1:443".parse().unwrap();
//! let bytes = signer.header(client, reached, "inner", now, [1; 16]).unwrap();
//!
//! // The inner listener verifies it once; a replay is refused.
//! let verifier = Verifier::new(TrustAnchor::from_der(ca.cert_der()).unwrap(), "inner", 30, 1024);
//! let (header, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
//! assert_eq!(verifier.verify(&header, now + 1).unwrap().client, client);
//! let again = verifier.verify(&header, now + 2).unwrap_err();
//! assert_eq!(again.reason, Reason::Replayed);
//! assert_eq!(again.reason.code(), "signed_header_replayed");
//! ```

use std::fmt;

pub mod cmd;
pub mod config;
pub mod net;
pub mod replay;
pub mod sequence;
pub mod serve;
pub mod sign;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod tests;

pub use replay::{ReplayCache, ReplayRefusal};
pub use sequence::{SeqStep, step};
pub use sign::{ProxyIdentityPem, SignError, Signer, issue_proxy_identity};
pub use verify::{AnchorError, TrustAnchor, Verified, Verifier};
pub use wire::{SignedBlock, TLV_TYPE, WireError, decode};

/// The role (subject O) a front's certificate must carry.
pub const PROXY_ROLE: &str = "proxy";

/// The prefix of a front certificate's CN (`proxy:NAME`). User names
/// cannot contain `:`, so no user certificate can pass for a front's, even
/// for a user given a role named `proxy`.
pub const PROXY_CN_PREFIX: &str = "proxy:";

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
    /// The signature does not verify over the signed fields.
    BadSignature,
    /// The header was signed for another listener.
    WrongAudience,
    /// The timestamp is outside the window around now.
    Stale,
    /// The nonce was already used within the window.
    Replayed,
    /// The replay cache is full of live nonces (fail closed).
    ReplayCacheFull,
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
            Reason::Stale => "signed_header_stale",
            Reason::Replayed => "signed_header_replayed",
            Reason::ReplayCacheFull => "replay_cache_full",
            Reason::UnsignedAfterSigned => "unsigned_after_signed",
            Reason::TwoSigned => "two_signed_headers",
        }
    }

    /// Every reason, for tables and tests.
    pub const ALL: [Reason; 13] = [
        Reason::Malformed,
        Reason::CertInvalid,
        Reason::CertUntrusted,
        Reason::CertExpired,
        Reason::NotProxy,
        Reason::AddressMismatch,
        Reason::BadSignature,
        Reason::WrongAudience,
        Reason::Stale,
        Reason::Replayed,
        Reason::ReplayCacheFull,
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
