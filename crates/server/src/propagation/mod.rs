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
//! The sans-IO core (keys, wire format, grants, the signed block, the
//! verifier, the replay state) is the `ippin-propagation` crate; its
//! modules and types are re-exported here. The PROXY v2 framing
//! ([`sign::WriteHeader`], [`verify::VerifyHeader`]) and the header
//! sequence of a listener (`ippin_access::signed::step`, sans-IO too) are
//! `ippin-access`'s. This module adds issuing a front identity with
//! `ippin-cert`, and the I/O: [`net`], [`serve`] and [`cmd`] (sockets,
//! files, the clock) and [`config`].
//!
//! ```
//! use ippin::propagation::{Link, Reason, SecretKey, Signer, TrustAnchor, Verifier, VerifyHeader, WriteHeader, issue_proxy_identity};
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
//! assert_eq!(verifier.verify(&header, link, now + 1).unwrap().client(), client);
//! let again = verifier.verify(&header, link, now + 2).unwrap_err();
//! assert_eq!(again.reason, Reason::Replayed);
//! assert_eq!(again.reason.code(), "signed_header_replayed");
//! // Raced onto another connection, it is refused too.
//! let other = Link { front: "10.0.0.66:40100".parse().unwrap(), ..link };
//! let raced = verifier.verify(&header, other, now + 1).unwrap_err();
//! assert_eq!(raced.reason.code(), "signed_connection_mismatch");
//! ```

pub mod cmd;
pub mod config;
pub mod net;
pub mod runtime;
pub mod serve;
pub mod sign;
pub mod verify;

pub use ippin_propagation::{
    Link, PROXY_CN_PREFIX, PROXY_ROLE, Reason, Rejection, grants, key, replay, wire,
};

#[cfg(test)]
mod tests;

pub use grants::{DEFAULT_GRANT_CACHE_CAPACITY, GrantCache};
pub use ippin_access::signed::{SeqStep, step};
pub use ippin_propagation::Error;
pub use key::{PublicKey, SecretKey};
pub use replay::{MAX_PER_SECOND, ReplayCache, ReplayRefusal};
pub use sign::{
    FrontGrant, GrantSchedule, MAX_GRANT_LIFETIME, ProxyIdentityPem, Signer, WriteHeader,
    issue_proxy_identity,
};
pub use verify::{TrustAnchor, Verified, Verifier, VerifyHeader};
pub use wire::{SignedBlock, TLV_TYPE, decode};
