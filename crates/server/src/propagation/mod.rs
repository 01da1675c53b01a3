//! Signed propagation of the observed client IP between ippin services
//! (front → inner), over PROXY v2. See docs/propagation.md.
//!
//! A front (`kind: forward`) writes, before relaying, a PROXY v2 header
//! whose TLV [`TLV_TYPE`] (0xE7) carries a **grant** and a **MAC**. The
//! grant (renewed every half lifetime, 10 minutes by default) holds the
//! front's certificate (issued by the cluster CA, role `proxy`), a fresh
//! ephemeral X25519 key, the inner listener's static X25519 key, its
//! audience and a validity, all signed by the front's Ed25519 key. The
//! MAC (HMAC-SHA256 under a key derived from X25519 between the two keys
//! and bound to the grant) covers the address block, the front → inner
//! connection it is written on ([`Link`]), the audience, a timestamp and a
//! nonce. An inner listener with `propagation` set
//! verifies the grant once (then caches it) and the MAC on every header
//! ([`Verifier`]); only then does it use the client address named.
//!
//! Everything here but [`net`], [`serve`] and [`cmd`] (sockets, files, the
//! clock) is sans-IO: time, nonces and ephemeral keys are parameters.
//!
//! ```
//! use ippin::propagation::{Link, Reason, SecretKey, Signer, TrustAnchor, Verifier, issue_proxy_identity};
//! use ippin_cert::rand_core::UnwrapErr;
//! use ippin_cert::getrandom::SysRng;
//!
//! let mut rng = UnwrapErr(SysRng);
//! let now = 1_700_000_000;
//! let ca = ippin_cert::x509::X509Ca::generate_p256("cluster CA", now - 60, now + 3600, &mut rng).unwrap();
//! let id = issue_proxy_identity(&ca, "front-1", now - 60, now + 3600, 7, &mut rng).unwrap();
//! let signer = Signer::from_pem(&id.cert_pem, &id.key_pem).unwrap();
//!
//! // The inner listener's static key; the front knows its public half.
//! let inner = SecretKey::from_bytes([0x5a; 32]); // random bytes in practice
//! let inner_public = inner.public_key();
//!
//! // The front signs a grant once, then writes a MAC'd header per connection.
//! let ephemeral = SecretKey::from_bytes([0x17; 32]); // random bytes in practice
//! let grant = signer.grant(&inner_public, "inner", now, now + 600, &ephemeral).unwrap();
//! let client = "192.0.2.7:51234".parse().unwrap();
//! let reached = "198.51.100.1:443".parse().unwrap();
//! // The header is bound to the front → inner connection it is written on.
//! let link = Link { front: "10.0.0.5:40100".parse().unwrap(), inner: "10.0.0.9:4443".parse().unwrap() };
//! let bytes = grant.header(client, reached, link, now, [1; 16]).unwrap();
//!
//! // The inner listener verifies it once, on that connection; a replay is refused.
//! let verifier = Verifier::new(TrustAnchor::from_der(ca.cert_der()).unwrap(), inner, "inner", 30, 1024);
//! let (header, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
//! assert_eq!(verifier.verify(&header, link, now + 1).unwrap().client, client);
//! let again = verifier.verify(&header, link, now + 2).unwrap_err();
//! assert_eq!(again.reason, Reason::Replayed);
//! assert_eq!(again.reason.code(), "signed_header_replayed");
//! // Raced onto another connection, it is refused too.
//! let other = Link { front: "10.0.0.66:40100".parse().unwrap(), ..link };
//! let raced = verifier.verify(&header, other, now + 1).unwrap_err();
//! assert_eq!(raced.reason.code(), "signed_connection_mismatch");
//! ```

use std::fmt;
use std::net::SocketAddr;

pub mod cmd;
pub mod config;
pub mod grants;
pub mod key;
pub mod net;
pub mod replay;
pub mod sequence;
pub mod serve;
pub mod sign;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod tests;

pub use grants::{DEFAULT_GRANT_CACHE_CAPACITY, GrantCache};
pub use key::{KeyError, PublicKey, SecretKey};
pub use replay::{MAX_PER_SECOND, ReplayCache, ReplayRefusal};
pub use sequence::{SeqStep, step};
pub use sign::{
    FrontGrant, GrantSchedule, MAX_GRANT_LIFETIME, ProxyIdentityPem, SignError, Signer,
    issue_proxy_identity,
};
pub use verify::{AnchorError, TrustAnchor, Verified, Verifier};
pub use wire::{SignedBlock, TLV_TYPE, WireError, decode};

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
