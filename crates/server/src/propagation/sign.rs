//! The front's side. The sans-IO core (identity, grants, the signed block)
//! is `ippin_propagation::sign`, and the PROXY v2 framing of the header is
//! `ippin_access::signed`; both are re-exported here. This module adds the
//! issuing of a front identity (with `ippin-cert`).

use ed25519_dalek::pkcs8::EncodePrivateKey;

pub use ippin_access::signed::{WriteHeader, addresses_for};
pub use ippin_propagation::sign::*;
use ippin_propagation::{Error, PROXY_CN_PREFIX, PROXY_ROLE};

/// A newly issued front identity, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyIdentityPem {
    /// The certificate (`CERTIFICATE`).
    pub cert_pem: String,
    /// The PKCS#8 Ed25519 key (`PRIVATE KEY`).
    pub key_pem: String,
}

impl std::fmt::Debug for ProxyIdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyIdentityPem").finish_non_exhaustive()
    }
}

/// Issues a front identity named `name`: a fresh Ed25519 key and a
/// certificate from `ca` with CN `proxy:NAME` and role (O) `proxy`, valid
/// from `not_before` to `not_after` (unix seconds).
///
/// # Errors
/// [`Error::Cert`] when the CA refuses (bad name or times),
/// [`Error::SigningKey`] when the key cannot be encoded.
pub fn issue_proxy_identity<R: ippin_cert::rand_core::CryptoRng + ?Sized>(
    ca: &ippin_cert::x509::X509Ca,
    name: &str,
    not_before: u64,
    not_after: u64,
    serial: u64,
    rng: &mut R,
) -> Result<ProxyIdentityPem, Error> {
    let key = ed25519_dalek::SigningKey::generate(rng);
    let spki = ed25519_spki_der(key.verifying_key().as_bytes());
    let req =
        ippin_cert::x509::ClientCertRequest::builder(format!("{PROXY_CN_PREFIX}{name}"), spki)
            .role(PROXY_ROLE)
            .propagation_front()
            .validity(not_before, not_after)
            .serial(serial.max(1))
            .build()
            .map_err(|e| Error::Cert(e.to_string()))?;
    let der = ca
        .issue_client(&req, rng)
        .map_err(|e| Error::Cert(e.to_string()))?;
    let key_pem = key
        .to_pkcs8_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::SigningKey(e.to_string()))?;
    Ok(ProxyIdentityPem {
        cert_pem: crate::files::der_to_pem(&der, "CERTIFICATE"),
        key_pem: key_pem.as_str().to_owned(),
    })
}
