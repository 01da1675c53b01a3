//! Integration tests of `ippin-propagation`: a front and an inner built
//! from the public API only.

mod decisions;
mod round_trip;
mod seeds;
mod verify;

use std::sync::OnceLock;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca};
use ippin_propagation::{
    PROXY_CN_PREFIX, PROXY_ROLE, SecretKey, Signer, TrustAnchor, Verifier, ed25519_spki_der,
};

/// The earliest time the fixture's certificates are valid.
pub(crate) const FROM: u64 = 1_600_000_000;
/// The latest.
pub(crate) const UNTIL: u64 = 1_900_000_000;
/// The inner's audience.
pub(crate) const AUD: &str = "inner-tls";

/// A CA (its DER) and a front identity it issued, valid FROM..UNTIL.
pub(crate) fn fixture() -> &'static (Vec<u8>, Signer) {
    static F: OnceLock<(Vec<u8>, Signer)> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = UnwrapErr(SysRng);
        let ca = X509Ca::generate_p256("test CA", FROM, UNTIL, &mut rng).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
        let spki = ed25519_spki_der(key.verifying_key().as_bytes());
        let req = ClientCertRequest::builder(format!("{PROXY_CN_PREFIX}front"), spki)
            .role(PROXY_ROLE)
            .propagation_front()
            .validity(FROM, UNTIL)
            .serial(3)
            .build()
            .unwrap();
        let der = ca.issue_client(&req, &mut rng).unwrap();
        (ca.cert_der().to_vec(), Signer::new(key, der).unwrap())
    })
}

/// A fresh verifier for the inner key `inner`, window 30 s.
pub(crate) fn verifier(inner: &SecretKey) -> Verifier {
    let anchor = TrustAnchor::from_der(&fixture().0).unwrap();
    Verifier::new(anchor, inner.clone(), AUD, 30, 64)
}
