//! The signed block: the value of the PROXY v2 TLV [`TLV_TYPE`], its strict
//! decoder, its encoder and the transcript the signature covers.
//!
//! # Layout (all integers big-endian)
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 1    | version, [`VERSION`] (1) |
//! | 1      | 1    | `A`: length of the address block, 13 (TCP4) or 37 (TCP6) |
//! | 2      | A    | address block: the v2 family byte, then the addresses exactly as in the header |
//! | 2+A    | 2    | `C`: certificate length, 1..=[`MAX_CERT_LEN`] |
//! | 4+A    | C    | the front's X.509 certificate, DER |
//! | 4+A+C  | 1    | `U`: audience length, 1..=[`MAX_AUDIENCE_LEN`] |
//! | 5+A+C  | U    | audience, printable ASCII |
//! | 5+A+C+U | 8   | timestamp, unix seconds |
//! | 13+A+C+U | 16 | nonce |
//! | 29+A+C+U | 2  | `S`: signature length, 1..=[`MAX_SIGNATURE_LEN`] |
//! | 31+A+C+U | S  | signature |
//!
//! Nothing may follow the signature.

use std::fmt;

/// The PROXY v2 TLV type of the signed block, in the application range
/// 0xE0–0xEF (see docs/propagation.md for why this one).
pub const TLV_TYPE: u8 = 0xE7;

/// The only version this code reads and writes.
pub const VERSION: u8 = 1;

/// The domain separator that starts every transcript.
pub const DOMAIN: &[u8] = b"ippin-propagation-v1";

/// The largest certificate the block may carry.
pub const MAX_CERT_LEN: usize = 2048;

/// The longest audience.
pub const MAX_AUDIENCE_LEN: usize = 255;

/// The longest signature (an Ed25519 signature is 64 bytes).
pub const MAX_SIGNATURE_LEN: usize = 128;

/// The nonce length.
pub const NONCE_LEN: usize = 16;

/// The v2 family byte of TCP over IPv4.
pub const FAMILY_TCP4: u8 = 0x11;

/// The v2 family byte of TCP over IPv6.
pub const FAMILY_TCP6: u8 = 0x21;

/// The largest encoded block (with the longest fields).
pub const MAX_BLOCK_LEN: usize =
    2 + 37 + 2 + MAX_CERT_LEN + 1 + MAX_AUDIENCE_LEN + 8 + NONCE_LEN + 2 + MAX_SIGNATURE_LEN;

/// Why a block does not decode or encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("signed block: truncated in field `{field}` (needed {needed} more bytes)")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The version byte is not [`VERSION`].
    #[error("signed block: version {found} (this server reads version {VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A length is out of its bounds.
    #[error("signed block: field `{field}` has length {len}, allowed {min}..={max}")]
    Length {
        /// The field.
        field: &'static str,
        /// The length found.
        len: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The address block is not TCP4 (13 bytes, 0x11) or TCP6 (37 bytes, 0x21).
    #[error(
        "signed block: address block of {len} bytes with family 0x{family:02x}: only TCP over IPv4 (0x11, 13 bytes) or IPv6 (0x21, 37 bytes)"
    )]
    Family {
        /// The family byte.
        family: u8,
        /// The block length.
        len: usize,
    },
    /// The audience holds a byte outside printable ASCII.
    #[error("signed block: audience byte 0x{byte:02x} at {at} is not printable ASCII")]
    Audience {
        /// The byte.
        byte: u8,
        /// Its position in the audience.
        at: usize,
    },
    /// Bytes follow the signature.
    #[error("signed block: {extra} bytes after the signature")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

/// A decoded signed block, borrowing the TLV value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignedBlock<'a> {
    /// The family byte followed by the addresses, as in the v2 header.
    pub addresses: &'a [u8],
    /// The front's certificate, DER.
    pub cert_der: &'a [u8],
    /// Whom the header is for (the upstream listener's configured name).
    pub audience: &'a [u8],
    /// When the front signed, unix seconds.
    pub timestamp: u64,
    /// Random, unique per header.
    pub nonce: [u8; NONCE_LEN],
    /// The front's signature over [`SignedBlock::transcript`].
    pub signature: &'a [u8],
}

impl fmt::Debug for SignedBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedBlock")
            .field("addresses", &self.addresses)
            .field("cert_len", &self.cert_der.len())
            .field("audience", &String::from_utf8_lossy(self.audience))
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(rest)) => {
                self.buf = rest;
                Ok(head)
            }
            _ => Err(WireError::Truncated {
                field,
                needed: n.saturating_sub(self.buf.len()),
            }),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self, field: &'static str) -> Result<usize, WireError> {
        let b = self.take(2, field)?;
        let mut a = [0u8; 2];
        a.copy_from_slice(b);
        Ok(usize::from(u16::from_be_bytes(a)))
    }

    fn bounded(
        &mut self,
        len: usize,
        min: usize,
        max: usize,
        field: &'static str,
    ) -> Result<&'a [u8], WireError> {
        if len < min || len > max {
            return Err(WireError::Length {
                field,
                len,
                min,
                max,
            });
        }
        self.take(len, field)
    }
}

/// The address block length for a v2 family byte (`None`: not TCP4/TCP6).
pub fn address_len(family: u8) -> Option<usize> {
    match family {
        FAMILY_TCP4 => Some(12),
        FAMILY_TCP6 => Some(36),
        _ => None,
    }
}

fn check_addresses(addresses: &[u8]) -> Result<(), WireError> {
    let family = addresses.first().copied().unwrap_or_default();
    match address_len(family) {
        Some(n) if n + 1 == addresses.len() => Ok(()),
        _ => Err(WireError::Family {
            family,
            len: addresses.len(),
        }),
    }
}

fn check_audience(audience: &[u8]) -> Result<(), WireError> {
    if audience.is_empty() || audience.len() > MAX_AUDIENCE_LEN {
        return Err(WireError::Length {
            field: "audience",
            len: audience.len(),
            min: 1,
            max: MAX_AUDIENCE_LEN,
        });
    }
    match audience.iter().position(|b| !b.is_ascii_graphic()) {
        Some(at) => Err(WireError::Audience {
            byte: audience.get(at).copied().unwrap_or_default(),
            at,
        }),
        None => Ok(()),
    }
}

/// Decodes a TLV value strictly: every length in its bounds, TCP4/TCP6
/// addresses only, printable audience, nothing after the signature.
///
/// Decoding says nothing about authenticity: the verifier checks that.
///
/// # Errors
/// The [`WireError`] naming the first field that is wrong.
pub fn decode(value: &[u8]) -> Result<SignedBlock<'_>, WireError> {
    let mut r = Reader { buf: value };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::Version { found: version });
    }
    let a = usize::from(r.u8("address length")?);
    let addresses = r.bounded(a, 13, 37, "addresses")?;
    check_addresses(addresses)?;
    let c = r.u16("certificate length")?;
    let cert_der = r.bounded(c, 1, MAX_CERT_LEN, "certificate")?;
    let u = usize::from(r.u8("audience length")?);
    let audience = r.bounded(u, 1, MAX_AUDIENCE_LEN, "audience")?;
    check_audience(audience)?;
    let ts = r.take(8, "timestamp")?;
    let mut t = [0u8; 8];
    t.copy_from_slice(ts);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(r.take(NONCE_LEN, "nonce")?);
    let s = r.u16("signature length")?;
    let signature = r.bounded(s, 1, MAX_SIGNATURE_LEN, "signature")?;
    if !r.buf.is_empty() {
        return Err(WireError::Trailing { extra: r.buf.len() });
    }
    Ok(SignedBlock {
        addresses,
        cert_der,
        audience,
        timestamp: u64::from_be_bytes(t),
        nonce,
        signature,
    })
}

impl SignedBlock<'_> {
    /// The bytes the signature covers:
    /// `DOMAIN || A || addresses || U || audience || timestamp || nonce`
    /// (`A`, `U`: one-byte lengths, so no two field splits give the same bytes).
    pub fn transcript(&self) -> Vec<u8> {
        transcript(self.addresses, self.audience, self.timestamp, &self.nonce)
    }

    /// Encodes the block (the TLV value).
    ///
    /// # Errors
    /// [`WireError`] when a field is out of the bounds [`decode`] enforces,
    /// so that everything encoded decodes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        check_addresses(self.addresses)?;
        check_audience(self.audience)?;
        let bound = |field, len: usize, max| {
            if len == 0 || len > max {
                Err(WireError::Length {
                    field,
                    len,
                    min: 1,
                    max,
                })
            } else {
                Ok(())
            }
        };
        bound("certificate", self.cert_der.len(), MAX_CERT_LEN)?;
        bound("signature", self.signature.len(), MAX_SIGNATURE_LEN)?;
        let mut out = Vec::with_capacity(
            40 + self.cert_der.len() + self.audience.len() + 27 + self.signature.len(),
        );
        out.push(VERSION);
        out.extend(len_u8(self.addresses.len()));
        out.extend_from_slice(self.addresses);
        out.extend(len_u16(self.cert_der.len()));
        out.extend_from_slice(self.cert_der);
        out.extend(len_u8(self.audience.len()));
        out.extend_from_slice(self.audience);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend(len_u16(self.signature.len()));
        out.extend_from_slice(self.signature);
        Ok(out)
    }
}

fn len_u8(n: usize) -> [u8; 1] {
    [u8::try_from(n).unwrap_or(u8::MAX)]
}

fn len_u16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// The transcript for these fields (see [`SignedBlock::transcript`]).
pub fn transcript(addresses: &[u8], audience: &[u8], timestamp: u64, nonce: &[u8; 16]) -> Vec<u8> {
    let mut t = Vec::with_capacity(DOMAIN.len() + 2 + addresses.len() + audience.len() + 24);
    t.extend_from_slice(DOMAIN);
    t.extend(len_u8(addresses.len()));
    t.extend_from_slice(addresses);
    t.extend(len_u8(audience.len()));
    t.extend_from_slice(audience);
    t.extend_from_slice(&timestamp.to_be_bytes());
    t.extend_from_slice(nonce);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut addrs = vec![FAMILY_TCP4];
        addrs.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb]);
        (addrs, vec![0x30; 300], b"inner-tls".to_vec(), vec![7; 64])
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let (a, c, u, s) = sample();
        let block = SignedBlock {
            addresses: &a,
            cert_der: &c,
            audience: &u,
            timestamp: 1_700_000_000,
            nonce: [9; 16],
            signature: &s,
        };
        let enc = block.encode().unwrap();
        assert_eq!(decode(&enc).unwrap(), block);
        for cut in 0..enc.len() {
            let err = decode(&enc[..cut]).unwrap_err();
            assert!(matches!(err, WireError::Truncated { .. }), "{cut}: {err}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WireError::Trailing { extra: 1 }));
    }

    #[test]
    fn bad_fields_are_named() {
        let (a, c, u, s) = sample();
        let block = SignedBlock {
            addresses: &a,
            cert_der: &c,
            audience: &u,
            timestamp: 1,
            nonce: [0; 16],
            signature: &s,
        };
        let enc = block.encode().unwrap();
        let mut v = enc.clone();
        v[0] = 2;
        assert_eq!(decode(&v), Err(WireError::Version { found: 2 }));
        let mut v = enc.clone();
        v[2] = 0x12; // UDP4
        assert!(matches!(
            decode(&v),
            Err(WireError::Family { family: 0x12, .. })
        ));
        let mut v = enc.clone();
        let at = 2 + 13 + 2 + 300 + 1;
        v[at] = b' ';
        assert!(matches!(decode(&v), Err(WireError::Audience { at: 0, .. })));
        let bad_audience = SignedBlock {
            audience: b"",
            ..block
        };
        assert!(bad_audience.encode().is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            v6 in any::<bool>(),
            addr_bytes in proptest::collection::vec(any::<u8>(), 36),
            cert in proptest::collection::vec(any::<u8>(), 1..MAX_CERT_LEN),
            audience in "[!-~]{1,255}",
            timestamp in any::<u64>(),
            nonce in any::<[u8; 16]>(),
            sig in proptest::collection::vec(any::<u8>(), 1..MAX_SIGNATURE_LEN),
        ) {
            let mut addresses = vec![if v6 { FAMILY_TCP6 } else { FAMILY_TCP4 }];
            addresses.extend_from_slice(&addr_bytes[..if v6 { 36 } else { 12 }]);
            let block = SignedBlock {
                addresses: &addresses,
                cert_der: &cert,
                audience: audience.as_bytes(),
                timestamp,
                nonce,
                signature: &sig,
            };
            let enc = block.encode().unwrap();
            prop_assert!(enc.len() <= MAX_BLOCK_LEN);
            prop_assert_eq!(decode(&enc).unwrap(), block);
        }

        #[test]
        fn decode_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(b) = decode(&bytes) {
                prop_assert_eq!(b.encode().unwrap(), bytes);
            }
        }
    }
}
