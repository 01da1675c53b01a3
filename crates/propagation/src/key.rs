//! The inner listener's static X25519 key pair (propagation v2): the front
//! agrees a MAC key with it once per grant (see [`super::wire`]).
//!
//! Files (written by `ippin ca propagation-key`):
//!
//! | file | PEM label | contents |
//! |------|-----------|----------|
//! | `NAME.propkey` (mode 0600) | [`SECRET_LABEL`] | the 32-byte X25519 secret |
//! | `NAME.propkey.pub` | [`PUBLIC_LABEL`] | the 32-byte X25519 public key |
//!
//! X25519 is computed with `curve25519-dalek` (`MontgomeryPoint::mul_clamped`,
//! RFC 7748's function), the crate `ed25519-dalek` already brings in.

use crate::Error;
use curve25519_dalek::montgomery::MontgomeryPoint;
use zeroize::Zeroize;

use super::wire::KEY_LEN;

/// The PEM label of an inner listener's secret key file.
pub const SECRET_LABEL: &str = "IPPIN PROPAGATION SECRET KEY";

/// The PEM label of an inner listener's public key file.
pub const PUBLIC_LABEL: &str = "IPPIN PROPAGATION PUBLIC KEY";

/// An X25519 public key (the inner's static key, or a front's ephemeral key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// Reads a public key file's text ([`PUBLIC_LABEL`]).
    ///
    /// # Errors
    /// [`Error`] for another label, a bad length, or a small-order key.
    pub fn from_pem(text: &str) -> Result<PublicKey, Error> {
        let bytes = block(text, PUBLIC_LABEL)?;
        let key = PublicKey(bytes);
        // A small-order key gives the same all-zero output for every secret.
        if MontgomeryPoint(key.0).mul_clamped([0x42; KEY_LEN]).0 == [0; KEY_LEN] {
            return Err(Error::SmallOrder);
        }
        Ok(key)
    }

    /// The public key file's text.
    pub fn to_pem(&self) -> String {
        crate::pem::der_to_pem(&self.0, PUBLIC_LABEL)
    }
}

/// An X25519 secret key, wiped from memory when dropped.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretKey")
            .field(&self.public_key())
            .finish()
    }
}

/// Two secret keys are equal when their public keys are (configurations
/// compare equal when they name the same key).
impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        self.public_key() == other.public_key()
    }
}

impl Eq for SecretKey {}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretKey {
    /// A secret from 32 random bytes (the caller draws them: sans-IO).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(bytes)
    }

    /// Reads a secret key file's text ([`SECRET_LABEL`]).
    ///
    /// # Errors
    /// [`Error`] for another label or a bad length.
    pub fn from_pem(text: &str) -> Result<SecretKey, Error> {
        block(text, SECRET_LABEL).map(SecretKey)
    }

    /// The secret key file's text.
    pub fn to_pem(&self) -> String {
        crate::pem::der_to_pem(&self.0, SECRET_LABEL)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(MontgomeryPoint::mul_base_clamped(self.0).0)
    }

    /// X25519 with `peer`; `None` when the result is all zero (a
    /// non-contributory exchange: `peer` is of small order).
    pub fn agree(&self, peer: &PublicKey) -> Option<SharedSecret> {
        let out = MontgomeryPoint(peer.0).mul_clamped(self.0).0;
        if out == [0; KEY_LEN] {
            None
        } else {
            Some(SharedSecret(out))
        }
    }
}

/// The output of X25519, wiped from memory when dropped.
pub struct SharedSecret([u8; KEY_LEN]);

impl SharedSecret {
    /// The 32 bytes (input keying material for HKDF).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The per-grant MAC key: HKDF-SHA256 with salt [`super::wire::DOMAIN`],
/// input the X25519 output, info SHA-256 of the encoded grant; 32 bytes,
/// used as an HMAC-SHA256 key. Binding the key to the grant's hash means a
/// MAC made under one grant verifies under no other.
pub fn mac_key(shared: &SharedSecret, grant_bytes: &[u8]) -> Option<ring::hmac::Key> {
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, super::wire::DOMAIN);
    let info = ring::digest::digest(&ring::digest::SHA256, grant_bytes);
    let info = [info.as_ref()];
    let prk = salt.extract(shared.as_bytes());
    let okm = prk.expand(&info, ring::hmac::HMAC_SHA256).ok()?;
    Some(ring::hmac::Key::from(okm))
}

fn block(text: &str, label: &'static str) -> Result<[u8; KEY_LEN], Error> {
    let mut bytes = crate::pem::pem_to_der(text, label).ok_or(Error::KeyPem { label })?;
    let out = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| Error::KeyLength {
        label,
        len: bytes.len(),
    });
    bytes.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
    #[test]
    fn rfc7748_vector() {
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let a = SecretKey::from_bytes(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let b = SecretKey::from_bytes(hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            a.public_key().0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            b.public_key().0,
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(a.agree(&b.public_key()).unwrap().as_bytes(), &shared);
        assert_eq!(b.agree(&a.public_key()).unwrap().as_bytes(), &shared);
    }

    fn tag(key: &ring::hmac::Key) -> Vec<u8> {
        ring::hmac::sign(key, b"message").as_ref().to_vec()
    }

    proptest::proptest! {
        /// Both ends of an exchange derive the same MAC key for the same
        /// grant, and another grant gives another key.
        #[test]
        fn both_ends_agree_and_keys_are_bound_to_the_grant(
            a in proptest::prelude::any::<[u8; 32]>(),
            b in proptest::prelude::any::<[u8; 32]>(),
            grant in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..600),
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let (a, b) = (SecretKey::from_bytes(a), SecretKey::from_bytes(b));
            let ab = a.agree(&b.public_key()).unwrap();
            let ba = b.agree(&a.public_key()).unwrap();
            proptest::prop_assert_eq!(ab.as_bytes(), ba.as_bytes());
            let k1 = mac_key(&ab, &grant).unwrap();
            proptest::prop_assert_eq!(tag(&k1), tag(&mac_key(&ba, &grant).unwrap()));
            let mut other = grant.clone();
            let at = flip.0 % other.len();
            other[at] ^= flip.1.max(1);
            proptest::prop_assert_ne!(tag(&k1), tag(&mac_key(&ab, &other).unwrap()));
        }
    }

    #[test]
    fn small_order_peers_are_refused() {
        let s = SecretKey::from_bytes([7; 32]);
        // 0 and 1 are small-order points on Curve25519.
        let mut one = [0u8; 32];
        one[0] = 1;
        for p in [[0u8; 32], one] {
            assert!(s.agree(&PublicKey(p)).is_none());
            assert_eq!(
                PublicKey::from_pem(&PublicKey(p).to_pem()),
                Err(Error::SmallOrder)
            );
        }
    }

    #[test]
    fn pem_round_trip_and_mistakes() {
        let s = SecretKey::from_bytes([9; 32]);
        let p = s.public_key();
        assert_eq!(SecretKey::from_pem(&s.to_pem()).unwrap().public_key(), p);
        assert_eq!(PublicKey::from_pem(&p.to_pem()).unwrap(), p);
        // The public file is not a secret file, and the other way round.
        assert_eq!(
            SecretKey::from_pem(&p.to_pem()).unwrap_err(),
            Error::KeyPem {
                label: SECRET_LABEL
            }
        );
        assert!(PublicKey::from_pem(&s.to_pem()).is_err());
        let short = crate::pem::der_to_pem(&[1; 31], PUBLIC_LABEL);
        assert_eq!(
            PublicKey::from_pem(&short),
            Err(Error::KeyLength {
                label: PUBLIC_LABEL,
                len: 31
            })
        );
        assert!(format!("{s:?}").starts_with("SecretKey(PublicKey("));
    }
}
