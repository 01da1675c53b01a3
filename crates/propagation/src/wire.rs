//! The signed block (version 4): the value of the PROXY v2 TLV
//! [`TLV_TYPE`], its strict decoder, its encoder, and the bytes the grant
//! signature and the per-connection MAC cover.
//!
//! # Block layout (all integers big-endian)
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0        | 1    | version, [`VERSION`] (3) |
//! | 1        | 1    | `A`: length of the address block, 13 (TCP4) or 37 (TCP6) |
//! | 2        | A    | address block: the v2 family byte, then the addresses exactly as in the header |
//! | 2+A      | 1    | `B`: length of the connection block, 13 (TCP4) or 37 (TCP6) |
//! | 3+A      | B    | connection block: the front → inner TCP connection the header is written on, encoded like an address block (source = the front's address, destination = the inner's) |
//! | 3+A+B    | 1    | `E`: endpoint length, 0..=[`MAX_ENDPOINT_LEN`] |
//! | 4+A+B    | E    | the cloud private endpoint the client came through to the front (`vpce-…`, `azure:N`, `gcp:N`: lowercase letters, digits, `-`, `:`), empty when none |
//! | 4+A+B+E  | 2    | `G`: grant length, 1..=[`MAX_GRANT_LEN`] |
//! | 6+A+B+E  | G    | the grant (below) |
//! | 6+A+B+E+G  | 8    | timestamp, unix seconds |
//! | 14+A+B+E+G | 16   | nonce |
//! | 30+A+B+E+G | 32   | MAC, HMAC-SHA256 over [`mac_input`] |
//!
//! The endpoint (version 4): behind a cloud private endpoint the client's address is one of
//! the consumer's own network, which another consumer may use too, so a pin holds only
//! through the endpoint it was issued through; the front says which one, under the MAC.
//!
//! # Grant layout
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 2    | `C`: certificate length, 1..=[`MAX_CERT_LEN`] |
//! | 2      | C    | the front's X.509 certificate, DER |
//! | 2+C    | 32   | the front's ephemeral X25519 public key |
//! | 34+C   | 32   | the inner listener's static X25519 public key |
//! | 66+C   | 1    | `U`: audience length, 1..=[`MAX_AUDIENCE_LEN`] |
//! | 67+C   | U    | audience, printable ASCII |
//! | 67+C+U | 8    | not_before, unix seconds |
//! | 75+C+U | 8    | not_after, unix seconds |
//! | 83+C+U | 2    | `S`: signature length, 1..=[`MAX_SIGNATURE_LEN`] |
//! | 85+C+U | S    | Ed25519 signature over [`DOMAIN_GRANT`] and the bytes from offset 0 to 83+C+U |
//!
//! Nothing may follow the MAC, nor the grant's signature.

use crate::Error;
use std::fmt;

/// The longest grant validity (`not_after − not_before`), seconds.
pub const MAX_GRANT_LIFETIME: u64 = 3600;

/// The PROXY v2 TLV type of the signed block, in the application range
/// 0xE0–0xEF (see docs/propagation.md for why this one).
pub const TLV_TYPE: u8 = 0xE7;

/// The only version this code reads and writes (4: version 2 plus the connection block
/// (3), plus the endpoint).
pub const VERSION: u8 = crate::WIRE_VERSION;

/// The longest endpoint name.
pub const MAX_ENDPOINT_LEN: usize = 32;

/// The HKDF salt of the MAC key.
pub const DOMAIN: &[u8] = b"ippin-propagation-v2";

/// The prefix of the bytes a grant signature covers.
pub const DOMAIN_GRANT: &[u8] = b"ippin-propagation-v2 grant";

/// The prefix of the bytes a per-connection MAC covers.
pub const DOMAIN_CONN: &[u8] = b"ippin-propagation-v3 connection";

/// The largest certificate a grant may carry.
pub const MAX_CERT_LEN: usize = 2048;

/// The longest audience.
pub const MAX_AUDIENCE_LEN: usize = 255;

/// The longest signature (an Ed25519 signature is 64 bytes).
pub const MAX_SIGNATURE_LEN: usize = 128;

/// The nonce length.
pub const NONCE_LEN: usize = 16;

/// The length of an X25519 key.
pub const KEY_LEN: usize = 32;

/// The MAC length (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// The v2 family byte of TCP over IPv4.
pub const FAMILY_TCP4: u8 = 0x11;

/// The v2 family byte of TCP over IPv6.
pub const FAMILY_TCP6: u8 = 0x21;

/// The largest encoded grant.
pub const MAX_GRANT_LEN: usize =
    2 + MAX_CERT_LEN + 2 * KEY_LEN + 1 + MAX_AUDIENCE_LEN + 16 + 2 + MAX_SIGNATURE_LEN;

/// The largest encoded block.
pub const MAX_BLOCK_LEN: usize =
    2 + 37 + 1 + 37 + 1 + MAX_ENDPOINT_LEN + 2 + MAX_GRANT_LEN + 8 + NONCE_LEN + MAC_LEN;

/// A decoded grant: the front's certificate and signature over an
/// ephemeral key, an inner listener's key, an audience and a validity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The front's certificate, DER.
    pub cert_der: &'a [u8],
    /// The front's ephemeral X25519 public key.
    pub ephemeral: [u8; KEY_LEN],
    /// The static X25519 public key of the inner listener it is for.
    pub inner_key: [u8; KEY_LEN],
    /// The inner listener's audience.
    pub audience: &'a [u8],
    /// Valid from, unix seconds.
    pub not_before: u64,
    /// Valid until, unix seconds (inclusive).
    pub not_after: u64,
    /// The front's Ed25519 signature over [`Grant::transcript`].
    pub signature: &'a [u8],
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("cert_len", &self.cert_der.len())
            .field("ephemeral", &self.ephemeral)
            .field("inner_key", &self.inner_key)
            .field("audience", &String::from_utf8_lossy(self.audience))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

/// A decoded signed block, borrowing the TLV value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignedBlock<'a> {
    /// The family byte followed by the addresses, as in the v2 header.
    pub addresses: &'a [u8],
    /// The front → inner connection the header was written on, encoded
    /// like `addresses` (source: the front's address and port as its
    /// socket saw them; destination: the inner's).
    pub connection: &'a [u8],
    /// The cloud private endpoint the client came through to the front, as its name's
    /// bytes; empty when none.
    pub endpoint: &'a [u8],
    /// The grant, exactly as sent (the grant cache compares these bytes,
    /// and the MAC key is bound to their SHA-256).
    pub grant_bytes: &'a [u8],
    /// The grant, decoded.
    pub grant: Grant<'a>,
    /// When the front wrote the header, unix seconds.
    pub timestamp: u64,
    /// Random, unique per header.
    pub nonce: [u8; NONCE_LEN],
    /// HMAC-SHA256 over [`SignedBlock::mac_input`].
    pub mac: [u8; MAC_LEN],
}

impl fmt::Debug for SignedBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedBlock")
            .field("addresses", &self.addresses)
            .field("connection", &self.connection)
            .field("endpoint", &String::from_utf8_lossy(self.endpoint))
            .field("grant", &self.grant)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(rest)) => {
                self.buf = rest;
                Ok(head)
            }
            _ => Err(Error::Truncated {
                field,
                needed: n.saturating_sub(self.buf.len()),
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<usize, Error> {
        Ok(usize::from(self.array::<1>(field)?[0]))
    }

    fn u16(&mut self, field: &'static str) -> Result<usize, Error> {
        Ok(usize::from(u16::from_be_bytes(self.array(field)?)))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn bounded(
        &mut self,
        len: usize,
        min: usize,
        max: usize,
        field: &'static str,
    ) -> Result<&'a [u8], Error> {
        check_len(field, len, min, max)?;
        self.take(len, field)
    }

    fn end(&self, in_: &'static str) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Trailing {
                in_,
                extra: self.buf.len(),
            })
        }
    }
}

fn check_len(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), Error> {
    if len < min || len > max {
        Err(Error::Length {
            field,
            len,
            min,
            max,
        })
    } else {
        Ok(())
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

fn check_addresses(addresses: &[u8]) -> Result<(), Error> {
    let family = addresses.first().copied().unwrap_or_default();
    match address_len(family) {
        Some(n) if n + 1 == addresses.len() => Ok(()),
        _ => Err(Error::Family {
            family,
            len: addresses.len(),
        }),
    }
}

/// An endpoint name: empty, or 1 to [`MAX_ENDPOINT_LEN`] lowercase ASCII letters, digits,
/// `-` and `:`.
fn check_endpoint(endpoint: &[u8]) -> Result<(), Error> {
    check_len("endpoint", endpoint.len(), 0, MAX_ENDPOINT_LEN)?;
    match endpoint
        .iter()
        .position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b':'))
    {
        Some(at) => Err(Error::EndpointByte {
            byte: endpoint.get(at).copied().unwrap_or_default(),
            at,
        }),
        None => Ok(()),
    }
}

fn check_audience(audience: &[u8]) -> Result<(), Error> {
    check_len("audience", audience.len(), 1, MAX_AUDIENCE_LEN)?;
    match audience.iter().position(|b| !b.is_ascii_graphic()) {
        Some(at) => Err(Error::AudienceByte {
            byte: audience.get(at).copied().unwrap_or_default(),
            at,
        }),
        None => Ok(()),
    }
}

/// Decodes a grant strictly: every length in its bounds, printable
/// audience, nothing after the signature. Says nothing about authenticity.
///
/// # Errors
/// The [`Error`] naming the first field that is wrong.
pub fn decode_grant(bytes: &[u8]) -> Result<Grant<'_>, Error> {
    let mut r = Reader { buf: bytes };
    let c = r.u16("certificate length")?;
    let cert_der = r.bounded(c, 1, MAX_CERT_LEN, "certificate")?;
    let ephemeral = r.array("ephemeral key")?;
    let inner_key = r.array("inner key")?;
    let u = r.u8("audience length")?;
    let audience = r.bounded(u, 1, MAX_AUDIENCE_LEN, "audience")?;
    check_audience(audience)?;
    let not_before = r.u64("not_before")?;
    let not_after = r.u64("not_after")?;
    let s = r.u16("signature length")?;
    let signature = r.bounded(s, 1, MAX_SIGNATURE_LEN, "signature")?;
    r.end("grant")?;
    Ok(Grant {
        cert_der,
        ephemeral,
        inner_key,
        audience,
        not_before,
        not_after,
        signature,
    })
}

/// Decodes a TLV value strictly: version 3, every length in its bounds,
/// TCP4/TCP6 addresses only, a grant that decodes, nothing after the MAC.
///
/// Decoding says nothing about authenticity: the verifier checks that.
///
/// # Errors
/// The [`Error`] naming the first field that is wrong.
pub fn decode(value: &[u8]) -> Result<SignedBlock<'_>, Error> {
    let mut r = Reader { buf: value };
    let version = r.array::<1>("version")?[0];
    if version != VERSION {
        return Err(Error::Version { found: version });
    }
    let a = r.u8("address length")?;
    let addresses = r.bounded(a, 13, 37, "addresses")?;
    check_addresses(addresses)?;
    let b = r.u8("connection length")?;
    let connection = r.bounded(b, 13, 37, "connection")?;
    check_addresses(connection)?;
    let e = r.u8("endpoint length")?;
    let endpoint = r.bounded(e, 0, MAX_ENDPOINT_LEN, "endpoint")?;
    check_endpoint(endpoint)?;
    let g = r.u16("grant length")?;
    let grant_bytes = r.bounded(g, 1, MAX_GRANT_LEN, "grant")?;
    let grant = decode_grant(grant_bytes)?;
    let timestamp = r.u64("timestamp")?;
    let nonce = r.array("nonce")?;
    let mac = r.array("mac")?;
    r.end("block")?;
    Ok(SignedBlock {
        addresses,
        connection,
        endpoint,
        grant_bytes,
        grant,
        timestamp,
        nonce,
        mac,
    })
}

fn len_u8(n: usize) -> [u8; 1] {
    [u8::try_from(n).unwrap_or(u8::MAX)]
}

fn len_u16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

impl Grant<'_> {
    fn check(&self) -> Result<(), Error> {
        check_len("certificate", self.cert_der.len(), 1, MAX_CERT_LEN)?;
        check_audience(self.audience)?;
        check_len("signature", self.signature.len(), 1, MAX_SIGNATURE_LEN)
    }

    /// The grant's fields before the signature length, as encoded.
    fn signed_fields(&self, out: &mut Vec<u8>) {
        out.extend(len_u16(self.cert_der.len()));
        out.extend_from_slice(self.cert_der);
        out.extend_from_slice(&self.ephemeral);
        out.extend_from_slice(&self.inner_key);
        out.extend(len_u8(self.audience.len()));
        out.extend_from_slice(self.audience);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
    }

    /// The bytes the signature covers: [`DOMAIN_GRANT`] then every field
    /// before the signature length, encoded (lengths included, so no two
    /// field splits give the same bytes). The `signature` field is ignored.
    pub fn transcript(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(DOMAIN_GRANT.len() + 83 + self.cert_der.len() + 255);
        t.extend_from_slice(DOMAIN_GRANT);
        self.signed_fields(&mut t);
        t
    }

    /// The encoded grant.
    ///
    /// # Errors
    /// [`Error`] when a field is out of its bounds.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.check()?;
        let mut out = Vec::with_capacity(87 + self.cert_der.len() + self.audience.len() + 64);
        self.signed_fields(&mut out);
        out.extend(len_u16(self.signature.len()));
        out.extend_from_slice(self.signature);
        Ok(out)
    }
}

/// The bytes a per-connection MAC covers:
/// `DOMAIN_CONN || A || addresses || B || connection || E || endpoint || U || audience ||
/// timestamp || nonce` (`A`, `B`, `E`, `U`: one-byte lengths).
pub fn mac_input(
    addresses: &[u8],
    connection: &[u8],
    endpoint: &[u8],
    audience: &[u8],
    timestamp: u64,
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(
        DOMAIN_CONN.len()
            + 4
            + addresses.len()
            + connection.len()
            + endpoint.len()
            + audience.len()
            + 24,
    );
    t.extend_from_slice(DOMAIN_CONN);
    t.extend(len_u8(addresses.len()));
    t.extend_from_slice(addresses);
    t.extend(len_u8(connection.len()));
    t.extend_from_slice(connection);
    t.extend(len_u8(endpoint.len()));
    t.extend_from_slice(endpoint);
    t.extend(len_u8(audience.len()));
    t.extend_from_slice(audience);
    t.extend_from_slice(&timestamp.to_be_bytes());
    t.extend_from_slice(nonce);
    t
}

/// Encodes a block around an already encoded grant (the front's
/// per-connection path: the grant is not decoded again).
///
/// # Errors
/// [`Error`] when the addresses or the connection are not TCP4/TCP6
/// or the grant's length is out of bounds.
pub fn encode_block(
    addresses: &[u8],
    connection: &[u8],
    endpoint: &[u8],
    grant_bytes: &[u8],
    timestamp: u64,
    nonce: &[u8; NONCE_LEN],
    mac: &[u8; MAC_LEN],
) -> Result<Vec<u8>, Error> {
    check_addresses(addresses)?;
    check_addresses(connection)?;
    check_endpoint(endpoint)?;
    check_len("grant", grant_bytes.len(), 1, MAX_GRANT_LEN)?;
    let mut out = Vec::with_capacity(
        6 + addresses.len()
            + connection.len()
            + endpoint.len()
            + grant_bytes.len()
            + 8
            + NONCE_LEN
            + MAC_LEN,
    );
    out.push(VERSION);
    out.extend(len_u8(addresses.len()));
    out.extend_from_slice(addresses);
    out.extend(len_u8(connection.len()));
    out.extend_from_slice(connection);
    out.extend(len_u8(endpoint.len()));
    out.extend_from_slice(endpoint);
    out.extend(len_u16(grant_bytes.len()));
    out.extend_from_slice(grant_bytes);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(mac);
    Ok(out)
}

impl SignedBlock<'_> {
    /// The bytes the MAC covers (see [`mac_input`]; the audience is the grant's).
    pub fn mac_input(&self) -> Vec<u8> {
        mac_input(
            self.addresses,
            self.connection,
            self.endpoint,
            self.grant.audience,
            self.timestamp,
            &self.nonce,
        )
    }

    /// The encoded block (the grant written as [`SignedBlock::grant_bytes`]).
    ///
    /// # Errors
    /// [`Error`] when a field is out of its bounds.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        encode_block(
            self.addresses,
            self.connection,
            self.endpoint,
            self.grant_bytes,
            self.timestamp,
            &self.nonce,
            &self.mac,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addrs4() -> Vec<u8> {
        let mut a = vec![FAMILY_TCP4];
        a.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb]);
        a
    }

    fn conn6() -> Vec<u8> {
        let mut a = vec![FAMILY_TCP6];
        a.extend_from_slice(&[0; 15]);
        a.push(1);
        a.extend_from_slice(&[0; 15]);
        a.push(1);
        a.extend_from_slice(&[0xa0, 0x00, 0x11, 0x5b]);
        a
    }

    fn grant<'a>(cert: &'a [u8], audience: &'a [u8], sig: &'a [u8]) -> Grant<'a> {
        Grant {
            cert_der: cert,
            ephemeral: [3; 32],
            inner_key: [4; 32],
            audience,
            not_before: 1_700_000_000,
            not_after: 1_700_000_600,
            signature: sig,
        }
    }

    fn sample() -> Vec<u8> {
        let g = grant(&[0x30; 300], b"inner-tls", &[7; 64])
            .encode()
            .unwrap();
        encode_block(
            &addrs4(),
            &conn6(),
            b"",
            &g,
            1_700_000_001,
            &[9; 16],
            &[5; 32],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let enc = sample();
        let b = decode(&enc).unwrap();
        assert_eq!(b.addresses, addrs4().as_slice());
        assert_eq!(b.connection, conn6().as_slice());
        assert_eq!(b.grant, grant(&[0x30; 300], b"inner-tls", &[7; 64]));
        assert_eq!(
            (b.timestamp, b.nonce, b.mac),
            (1_700_000_001, [9; 16], [5; 32])
        );
        assert_eq!(b.encode().unwrap(), enc);
        for cut in 0..enc.len() {
            let err = decode(&enc[..cut]).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "{cut}: {err}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(Error::Trailing {
                in_: "block",
                extra: 1
            })
        );
    }

    #[test]
    fn the_grant_is_strict_inside_the_block() {
        let g = grant(&[0x30; 10], b"a", &[7; 64]).encode().unwrap();
        let mut padded = g.clone();
        padded.push(0);
        let enc = encode_block(&addrs4(), &addrs4(), b"", &padded, 1, &[0; 16], &[0; 32]).unwrap();
        assert_eq!(
            decode(&enc),
            Err(Error::Trailing {
                in_: "grant",
                extra: 1
            })
        );
        for cut in 0..g.len() {
            assert!(decode_grant(&g[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let enc = sample();
        let mut v = enc.clone();
        v[0] = 1;
        assert_eq!(decode(&v), Err(Error::Version { found: 1 }));
        v[0] = 2; // version 2 had no connection block
        assert_eq!(decode(&v), Err(Error::Version { found: 2 }));
        v[0] = 3; // version 3 had no endpoint
        assert_eq!(decode(&v), Err(Error::Version { found: 3 }));
        let mut v = enc.clone();
        v[2] = 0x12; // UDP4
        assert!(matches!(
            decode(&v),
            Err(Error::Family { family: 0x12, .. })
        ));
        let mut v = enc.clone();
        // version, A, addresses, B, connection, E (0), G, C, certificate, two keys, U
        let at = 2 + 13 + 1 + 37 + 1 + 2 + 2 + 300 + 64 + 1;
        assert_eq!(v[at], b'i');
        v[at] = b' ';
        assert!(matches!(decode(&v), Err(Error::AudienceByte { at: 0, .. })));
        let empty = grant(&[1], b"", &[1]);
        assert!(empty.encode().is_err());
        assert!(
            encode_block(
                &[FAMILY_TCP4, 1],
                &addrs4(),
                b"",
                b"g",
                1,
                &[0; 16],
                &[0; 32]
            )
            .is_err()
        );
        assert!(
            encode_block(
                &addrs4(),
                &[FAMILY_TCP4, 1],
                b"",
                b"g",
                1,
                &[0; 16],
                &[0; 32]
            )
            .is_err()
        );
        assert!(encode_block(&addrs4(), &addrs4(), b"", b"", 1, &[0; 16], &[0; 32]).is_err());
        // An endpoint that is not a name, or too long.
        for bad in [&b"VPCE"[..], b"vpce 1", &[b'a'; 33]] {
            assert!(encode_block(&addrs4(), &addrs4(), bad, b"g", 1, &[0; 16], &[0; 32]).is_err());
        }
        // The connection block's family is checked like the addresses'.
        let mut v = enc.clone();
        v[2 + 13 + 1] = 0x22; // UDP6
        assert!(matches!(
            decode(&v),
            Err(Error::Family { family: 0x22, .. })
        ));
    }

    #[test]
    fn the_transcript_starts_with_the_domain_and_ignores_the_signature() {
        let a = grant(&[1; 5], b"x", &[1; 64]);
        let b = Grant {
            signature: &[2; 64],
            ..a
        };
        assert!(a.transcript().starts_with(DOMAIN_GRANT));
        assert_eq!(a.transcript(), b.transcript());
        let later = Grant {
            not_after: a.not_after + 1,
            ..a
        };
        assert_ne!(a.transcript(), later.transcript());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            v6 in any::<bool>(),
            conn_v6 in any::<bool>(),
            addr_bytes in proptest::collection::vec(any::<u8>(), 36),
            cert in proptest::collection::vec(any::<u8>(), 1..MAX_CERT_LEN),
            audience in "[!-~]{1,255}",
            keys in any::<([u8; 32], [u8; 32])>(),
            times in any::<(u64, u64, u64)>(),
            nonce in any::<[u8; 16]>(),
            mac in any::<[u8; 32]>(),
            sig in proptest::collection::vec(any::<u8>(), 1..MAX_SIGNATURE_LEN),
        ) {
            let mut addresses = vec![if v6 { FAMILY_TCP6 } else { FAMILY_TCP4 }];
            addresses.extend_from_slice(&addr_bytes[..if v6 { 36 } else { 12 }]);
            let mut connection = vec![if conn_v6 { FAMILY_TCP6 } else { FAMILY_TCP4 }];
            connection.extend(addr_bytes.iter().rev().take(if conn_v6 { 36 } else { 12 }));
            let g = Grant {
                cert_der: &cert,
                ephemeral: keys.0,
                inner_key: keys.1,
                audience: audience.as_bytes(),
                not_before: times.0,
                not_after: times.1,
                signature: &sig,
            };
            let gb = g.encode().unwrap();
            prop_assert!(gb.len() <= MAX_GRANT_LEN);
            prop_assert_eq!(decode_grant(&gb).unwrap(), g);
            let endpoint: &[u8] = match times.2 % 3 {
                0 => b"",
                1 => b"vpce-0123456789abcdef0",
                _ => b"gcp:18446744073709551615",
            };
            let enc = encode_block(&addresses, &connection, endpoint, &gb, times.2, &nonce, &mac)
                .unwrap();
            prop_assert!(enc.len() <= MAX_BLOCK_LEN);
            let b = decode(&enc).unwrap();
            prop_assert_eq!(b.grant, g);
            prop_assert_eq!(b.grant_bytes, gb.as_slice());
            prop_assert_eq!(b.addresses, addresses.as_slice());
            prop_assert_eq!(b.connection, connection.as_slice());
            prop_assert_eq!(b.endpoint, endpoint);
            prop_assert_eq!((b.timestamp, b.nonce, b.mac), (times.2, nonce, mac));
            prop_assert_eq!(b.encode().unwrap(), enc);
        }

        #[test]
        fn decode_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(b) = decode(&bytes) {
                prop_assert_eq!(b.encode().unwrap(), bytes.clone());
            }
            if let Ok(g) = decode_grant(&bytes) {
                prop_assert_eq!(g.encode().unwrap(), bytes.clone());
            }
        }

        /// Random bytes rarely decode; mutations of a valid block either
        /// fail or decode to something that re-encodes to the same bytes.
        #[test]
        fn mutations_decode_strictly(at in any::<usize>(), x in 1u8..) {
            let mut v = sample();
            let at = at % v.len();
            v[at] ^= x;
            if let Ok(b) = decode(&v) {
                prop_assert_eq!(b.encode().unwrap(), v);
            }
        }
    }
}
