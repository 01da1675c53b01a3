//! v2 Type-Length-Value fields: types, eager validation, iteration.

use crate::Error;

/// `PP2_TYPE_ALPN`: the negotiated application protocol (opaque bytes).
pub const PP2_TYPE_ALPN: u8 = 0x01;
/// `PP2_TYPE_AUTHORITY`: the host name the client asked for (UTF-8).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// `PP2_TYPE_CRC32C`: CRC32C of the whole header (4 bytes, big-endian).
pub const PP2_TYPE_CRC32C: u8 = 0x03;
/// `PP2_TYPE_NOOP`: padding, ignored (any length, 0 included).
pub const PP2_TYPE_NOOP: u8 = 0x04;
/// `PP2_TYPE_UNIQUE_ID`: opaque connection identifier, at most 128 bytes.
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
/// `PP2_TYPE_SSL`: client flags (1 byte), verify result (4 bytes), sub-TLVs.
pub const PP2_TYPE_SSL: u8 = 0x20;
/// `PP2_SUBTYPE_SSL_VERSION`: TLS version name (US-ASCII).
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// `PP2_SUBTYPE_SSL_CN`: client certificate Common Name (UTF-8).
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// `PP2_SUBTYPE_SSL_CIPHER`: cipher name (US-ASCII).
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
/// `PP2_SUBTYPE_SSL_SIG_ALG`: server certificate signature algorithm (US-ASCII).
pub const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
/// `PP2_SUBTYPE_SSL_KEY_ALG`: server certificate key algorithm (US-ASCII).
pub const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
/// `PP2_SUBTYPE_SSL_GROUP`: key exchange group (US-ASCII).
pub const PP2_SUBTYPE_SSL_GROUP: u8 = 0x26;
/// `PP2_SUBTYPE_SSL_SIG_SCHEME`: TLS signature scheme (US-ASCII).
pub const PP2_SUBTYPE_SSL_SIG_SCHEME: u8 = 0x27;
/// `PP2_SUBTYPE_SSL_CLIENT_CERT`: the client certificate (DER, opaque here).
pub const PP2_SUBTYPE_SSL_CLIENT_CERT: u8 = 0x28;
/// `PP2_TYPE_NETNS`: network namespace name (US-ASCII).
pub const PP2_TYPE_NETNS: u8 = 0x30;
/// First type of the range reserved for applications.
pub const PP2_TYPE_MIN_CUSTOM: u8 = 0xE0;
/// Last type of the range reserved for applications.
pub const PP2_TYPE_MAX_CUSTOM: u8 = 0xEF;

/// The longest UNIQUE_ID value the spec allows.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// The longest AUTHORITY value taken: a host name is at most 253 bytes, and HAProxy refuses
/// a header whose AUTHORITY is longer than 255.
pub const MAX_AUTHORITY_LEN: usize = 255;

/// One v2 TLV, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tlv<'a> {
    /// [`PP2_TYPE_ALPN`].
    Alpn(&'a [u8]),
    /// [`PP2_TYPE_AUTHORITY`], checked to be UTF-8 and at most [`MAX_AUTHORITY_LEN`] bytes.
    Authority(&'a str),
    /// [`PP2_TYPE_CRC32C`], already verified. When given to a builder, the
    /// value is ignored and the checksum is computed at encoding time.
    Crc32c(u32),
    /// [`PP2_TYPE_NOOP`].
    Noop(&'a [u8]),
    /// [`PP2_TYPE_UNIQUE_ID`], at most [`MAX_UNIQUE_ID_LEN`] bytes.
    UniqueId(&'a [u8]),
    /// [`PP2_TYPE_SSL`], sub-TLVs checked.
    Ssl(SslTlv<'a>),
    /// [`PP2_TYPE_NETNS`], checked to be US-ASCII.
    Netns(&'a str),
    /// A type in the application range 0xE0–0xEF, raw.
    Custom {
        /// The type.
        kind: u8,
        /// The value.
        value: &'a [u8],
    },
    /// Any other type, raw. Unknown TLVs never change the addresses.
    Unknown {
        /// The type.
        kind: u8,
        /// The value.
        value: &'a [u8],
    },
}

impl Tlv<'_> {
    /// The TLV's type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Tlv::Alpn(_) => PP2_TYPE_ALPN,
            Tlv::Authority(_) => PP2_TYPE_AUTHORITY,
            Tlv::Crc32c(_) => PP2_TYPE_CRC32C,
            Tlv::Noop(_) => PP2_TYPE_NOOP,
            Tlv::UniqueId(_) => PP2_TYPE_UNIQUE_ID,
            Tlv::Ssl(_) => PP2_TYPE_SSL,
            Tlv::Netns(_) => PP2_TYPE_NETNS,
            Tlv::Custom { kind, .. } | Tlv::Unknown { kind, .. } => *kind,
        }
    }
}

/// The value of a [`PP2_TYPE_SSL`] TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslTlv<'a> {
    client: u8,
    verify: u32,
    sub: &'a [u8],
}

/// `PP2_CLIENT_SSL`: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// `PP2_CLIENT_CERT_CONN`: the client sent a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// `PP2_CLIENT_CERT_SESS`: the client sent a certificate in this TLS session.
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

impl<'a> SslTlv<'a> {
    /// Builds an SSL TLV value from its parts; `sub_tlvs` is the encoded
    /// sub-TLV area and is validated like a received one.
    ///
    /// # Errors
    /// When `sub_tlvs` is not a valid sequence of SSL sub-TLVs.
    pub fn new(client: u8, verify: u32, sub_tlvs: &'a [u8]) -> Result<Self, Error> {
        validate_ssl_subs(sub_tlvs, 0)?;
        Ok(SslTlv {
            client,
            verify,
            sub: sub_tlvs,
        })
    }

    /// The `client` bit field ([`PP2_CLIENT_SSL`], ...).
    pub fn client(&self) -> u8 {
        self.client
    }

    /// The `verify` field: zero when the client presented a certificate
    /// that was verified, non-zero otherwise.
    pub fn verify(&self) -> u32 {
        self.verify
    }

    /// Whether the client connected over TLS.
    pub fn is_ssl(&self) -> bool {
        self.client & PP2_CLIENT_SSL != 0
    }

    /// The encoded sub-TLV area.
    pub fn sub_tlv_bytes(&self) -> &'a [u8] {
        self.sub
    }

    /// The sub-TLVs in wire order.
    pub fn sub_tlvs(&self) -> SslSubTlvs<'a> {
        SslSubTlvs { rest: self.sub }
    }
}

/// One sub-TLV of a [`PP2_TYPE_SSL`] TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslSubTlv<'a> {
    /// [`PP2_SUBTYPE_SSL_VERSION`].
    Version(&'a str),
    /// [`PP2_SUBTYPE_SSL_CN`].
    Cn(&'a str),
    /// [`PP2_SUBTYPE_SSL_CIPHER`].
    Cipher(&'a str),
    /// [`PP2_SUBTYPE_SSL_SIG_ALG`].
    SigAlg(&'a str),
    /// [`PP2_SUBTYPE_SSL_KEY_ALG`].
    KeyAlg(&'a str),
    /// [`PP2_SUBTYPE_SSL_GROUP`].
    Group(&'a str),
    /// [`PP2_SUBTYPE_SSL_SIG_SCHEME`].
    SigScheme(&'a str),
    /// [`PP2_SUBTYPE_SSL_CLIENT_CERT`], raw DER.
    ClientCert(&'a [u8]),
    /// Any other sub-type, raw.
    Unknown {
        /// The sub-type.
        kind: u8,
        /// The value.
        value: &'a [u8],
    },
}

impl SslSubTlv<'_> {
    /// The sub-TLV's type byte.
    pub fn kind(&self) -> u8 {
        match self {
            SslSubTlv::Version(_) => PP2_SUBTYPE_SSL_VERSION,
            SslSubTlv::Cn(_) => PP2_SUBTYPE_SSL_CN,
            SslSubTlv::Cipher(_) => PP2_SUBTYPE_SSL_CIPHER,
            SslSubTlv::SigAlg(_) => PP2_SUBTYPE_SSL_SIG_ALG,
            SslSubTlv::KeyAlg(_) => PP2_SUBTYPE_SSL_KEY_ALG,
            SslSubTlv::Group(_) => PP2_SUBTYPE_SSL_GROUP,
            SslSubTlv::SigScheme(_) => PP2_SUBTYPE_SSL_SIG_SCHEME,
            SslSubTlv::ClientCert(_) => PP2_SUBTYPE_SSL_CLIENT_CERT,
            SslSubTlv::Unknown { kind, .. } => *kind,
        }
    }

    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        match self {
            SslSubTlv::Version(s)
            | SslSubTlv::Cn(s)
            | SslSubTlv::Cipher(s)
            | SslSubTlv::SigAlg(s)
            | SslSubTlv::KeyAlg(s)
            | SslSubTlv::Group(s)
            | SslSubTlv::SigScheme(s) => s.as_bytes(),
            SslSubTlv::ClientCert(v) | SslSubTlv::Unknown { value: v, .. } => v,
        }
    }
}

/// Splits `bytes` into one TLV: type, value, rest. `None` when the TLV
/// header or value does not fit.
#[inline]
fn split_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&[kind, hi, lo], rest) = bytes.split_first_chunk::<3>()?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((kind, value, rest))
}

/// Iterator over the TLVs of a parsed header.
///
/// The bytes were validated when the header was parsed, so every item is
/// well formed.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// Iterates over already validated TLV bytes.
    pub(crate) fn new(validated: &'a [u8]) -> Self {
        Tlvs { rest: validated }
    }

    /// The first TLV of the given type, if any.
    pub fn find(mut self, kind: u8) -> Option<Tlv<'a>> {
        self.by_ref().find(|t| t.kind() == kind)
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        let (kind, value, rest) = split_tlv(self.rest)?;
        self.rest = rest;
        // Validated at parse time; the fallback keeps the iterator total.
        Some(decode(kind, value, 0).unwrap_or(Tlv::Unknown { kind, value }))
    }
}

/// Iterator over the sub-TLVs of an SSL TLV (validated when parsed).
#[derive(Debug, Clone)]
pub struct SslSubTlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SslSubTlvs<'a> {
    type Item = SslSubTlv<'a>;

    fn next(&mut self) -> Option<SslSubTlv<'a>> {
        let (kind, value, rest) = split_tlv(self.rest)?;
        self.rest = rest;
        Some(decode_ssl_sub(kind, value, 0).unwrap_or(SslSubTlv::Unknown { kind, value }))
    }
}

fn ascii(kind: u8, value: &[u8], offset: usize) -> Result<&str, Error> {
    if value.is_ascii() {
        // ASCII is UTF-8; the conversion cannot fail.
        std::str::from_utf8(value).map_err(|_| encoding(kind, offset, "US-ASCII"))
    } else {
        Err(encoding(kind, offset, "US-ASCII"))
    }
}

fn utf8(kind: u8, value: &[u8], offset: usize) -> Result<&str, Error> {
    std::str::from_utf8(value).map_err(|_| encoding(kind, offset, "UTF-8"))
}

fn encoding(kind: u8, offset: usize, expected: &'static str) -> Error {
    Error::TlvEncoding {
        kind,
        offset,
        expected,
    }
}

/// Decodes and checks one TLV's value. `offset` is only used in errors.
pub(crate) fn decode(kind: u8, value: &[u8], offset: usize) -> Result<Tlv<'_>, Error> {
    Ok(match kind {
        PP2_TYPE_ALPN => Tlv::Alpn(value),
        PP2_TYPE_AUTHORITY => {
            if value.len() > MAX_AUTHORITY_LEN {
                return Err(Error::TlvLength {
                    kind,
                    offset,
                    len: value.len(),
                    reason: "exceeds the maximum of 255",
                });
            }
            Tlv::Authority(utf8(kind, value, offset)?)
        }
        PP2_TYPE_CRC32C => match <[u8; 4]>::try_from(value) {
            Ok(b) => Tlv::Crc32c(u32::from_be_bytes(b)),
            Err(_) => {
                return Err(Error::TlvLength {
                    kind,
                    offset,
                    len: value.len(),
                    reason: "must be exactly 4",
                });
            }
        },
        PP2_TYPE_NOOP => Tlv::Noop(value),
        PP2_TYPE_UNIQUE_ID => {
            if value.len() > MAX_UNIQUE_ID_LEN {
                return Err(Error::TlvLength {
                    kind,
                    offset,
                    len: value.len(),
                    reason: "exceeds the maximum of 128",
                });
            }
            Tlv::UniqueId(value)
        }
        PP2_TYPE_SSL => {
            let Some((&[client, a, b, c, d], sub)) = value.split_first_chunk::<5>() else {
                return Err(Error::TlvLength {
                    kind,
                    offset,
                    len: value.len(),
                    reason: "is shorter than the 5 bytes of client and verify",
                });
            };
            validate_ssl_subs(sub, offset.saturating_add(8))?;
            Tlv::Ssl(SslTlv {
                client,
                verify: u32::from_be_bytes([a, b, c, d]),
                sub,
            })
        }
        PP2_TYPE_NETNS => Tlv::Netns(ascii(kind, value, offset)?),
        PP2_TYPE_MIN_CUSTOM..=PP2_TYPE_MAX_CUSTOM => Tlv::Custom { kind, value },
        _ => Tlv::Unknown { kind, value },
    })
}

fn decode_ssl_sub(kind: u8, value: &[u8], offset: usize) -> Result<SslSubTlv<'_>, Error> {
    Ok(match kind {
        PP2_SUBTYPE_SSL_VERSION => SslSubTlv::Version(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_CN => SslSubTlv::Cn(utf8(kind, value, offset)?),
        PP2_SUBTYPE_SSL_CIPHER => SslSubTlv::Cipher(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_SIG_ALG => SslSubTlv::SigAlg(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_KEY_ALG => SslSubTlv::KeyAlg(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_GROUP => SslSubTlv::Group(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_SIG_SCHEME => SslSubTlv::SigScheme(ascii(kind, value, offset)?),
        PP2_SUBTYPE_SSL_CLIENT_CERT => SslSubTlv::ClientCert(value),
        _ => SslSubTlv::Unknown { kind, value },
    })
}

/// Checks an SSL sub-TLV area; `base` is its offset in the header.
fn validate_ssl_subs(mut rest: &[u8], base: usize) -> Result<(), Error> {
    let total = rest.len();
    let mut seen: u16 = 0;
    while !rest.is_empty() {
        let offset = base.saturating_add(total - rest.len());
        let Some((kind, value, tail)) = split_tlv(rest) else {
            return Err(Error::TlvBounds {
                offset,
                reason: "SSL sub-TLV runs past the end of the SSL TLV",
            });
        };
        if (PP2_SUBTYPE_SSL_VERSION..=PP2_SUBTYPE_SSL_CLIENT_CERT).contains(&kind) {
            let bit = 1u16 << (kind - PP2_SUBTYPE_SSL_VERSION);
            if seen & bit != 0 {
                return Err(Error::DuplicateTlv { kind, offset });
            }
            seen |= bit;
        }
        decode_ssl_sub(kind, value, offset)?;
        rest = tail;
    }
    Ok(())
}

/// Per type byte: the bit used to detect a repeated singleton TLV (0 for
/// types that may repeat: NOOP, custom, unknown), and how its value is
/// checked. One table load replaces a chain of comparisons on the hot path.
const CLASS: [(u8, Check); 256] = {
    let mut t = [(0u8, Check::None); 256];
    t[PP2_TYPE_ALPN as usize] = (1, Check::None);
    t[PP2_TYPE_AUTHORITY as usize] = (2, Check::Utf8);
    t[PP2_TYPE_CRC32C as usize] = (4, Check::Decode);
    t[PP2_TYPE_UNIQUE_ID as usize] = (8, Check::UniqueId);
    t[PP2_TYPE_SSL as usize] = (16, Check::Decode);
    t[PP2_TYPE_NETNS as usize] = (32, Check::Decode);
    t
};

/// How [`validate`] checks a TLV's value.
#[derive(Clone, Copy)]
enum Check {
    /// Any bytes (ALPN, NOOP, custom, unknown).
    None,
    /// UTF-8 (AUTHORITY).
    Utf8,
    /// At most [`MAX_UNIQUE_ID_LEN`] bytes (UNIQUE_ID).
    UniqueId,
    /// The full [`decode`] (CRC32C, SSL, NETNS).
    Decode,
}

/// Whether `v` is ASCII, with word loads for the short values TLVs carry.
#[inline(always)]
fn is_ascii_short(v: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    match v.len() {
        0..8 => v.iter().fold(0u8, |acc, &b| acc | b) < 0x80,
        8..=16 => {
            // Two overlapping 8-byte words cover the whole value.
            let (Some(head), Some(tail)) = (v.first_chunk::<8>(), v.last_chunk::<8>()) else {
                return false;
            };
            (u64::from_ne_bytes(*head) | u64::from_ne_bytes(*tail)) & HIGH == 0
        }
        _ => v.is_ascii(),
    }
}

#[cold]
#[inline(never)]
fn bounds_error(rest_len: usize, offset: usize) -> Error {
    Error::TlvBounds {
        offset,
        reason: if rest_len < 3 {
            "bytes left over that cannot hold a TLV"
        } else {
            "value runs past the end of the header"
        },
    }
}

#[cold]
#[inline(never)]
fn duplicate_error(kind: u8, offset: usize) -> Error {
    Error::DuplicateTlv { kind, offset }
}

/// Validates the TLV area of a v2 header. `base` is the area's offset in
/// the header. Returns the offset (relative to the area) of the CRC32C
/// value and the received checksum, when there is one.
///
/// What load balancers send (ALPN, AUTHORITY in ASCII, UNIQUE_ID, NOOP,
/// custom types; none repeated) passes [`plain`], a loop that needs few
/// registers; anything else, every error and every area with a CRC32C,
/// SSL or NETNS TLV goes to [`validate_full`], which checks every rule
/// from the start and names the first that fails.
#[inline(always)]
pub(crate) fn validate(area: &[u8], base: usize) -> Result<Option<(usize, u32)>, Error> {
    if plain(area) {
        return Ok(None);
    }
    validate_full(area, base)
}

/// Whether `area` is a valid TLV area with no CRC32C, SSL or NETNS TLV and
/// no AUTHORITY outside ASCII. `false` says nothing more: [`validate_full`]
/// decides. Every area this accepts, [`validate_full`] accepts with no
/// CRC32C (unit proptests check it).
#[inline(always)]
fn plain(area: &[u8]) -> bool {
    let mut rest = area;
    let mut seen: u8 = 0;
    while let Some((&[kind, hi, lo], tail)) = rest.split_first_chunk::<3>() {
        let Some((value, tail)) = tail.split_at_checked(usize::from(u16::from_be_bytes([hi, lo])))
        else {
            return false;
        };
        let (bit, check) = CLASS[usize::from(kind)];
        let ok = match check {
            Check::None => true,
            Check::Utf8 => value.len() <= MAX_AUTHORITY_LEN && is_ascii_short(value),
            Check::UniqueId => value.len() <= MAX_UNIQUE_ID_LEN,
            Check::Decode => false,
        };
        if !ok || seen & bit != 0 {
            return false;
        }
        seen |= bit;
        rest = tail;
    }
    rest.is_empty()
}

/// [`validate`] with every rule checked in turn.
#[cold]
#[inline(never)]
fn validate_full(area: &[u8], base: usize) -> Result<Option<(usize, u32)>, Error> {
    let mut rest = area;
    let mut seen: u8 = 0;
    let mut crc = None;
    while !rest.is_empty() {
        let Some((kind, value, tail)) = split_tlv(rest) else {
            return Err(bounds_error(
                rest.len(),
                base.saturating_add(area.len() - rest.len()),
            ));
        };
        let (bit, check) = CLASS[usize::from(kind)];
        if seen & bit != 0 {
            return Err(duplicate_error(
                kind,
                base.saturating_add(area.len() - rest.len()),
            ));
        }
        seen |= bit;
        let ok = match check {
            Check::None => true,
            // ASCII is the common case; anything else gets the full check.
            Check::Utf8 => value.len() <= MAX_AUTHORITY_LEN && is_ascii_short(value),
            Check::UniqueId => value.len() <= MAX_UNIQUE_ID_LEN,
            Check::Decode => false,
        };
        if !ok {
            let at = area.len() - rest.len();
            if let Tlv::Crc32c(v) = decode(kind, value, base.saturating_add(at))? {
                crc = Some((at + 3, v));
            }
        }
        rest = tail;
    }
    Ok(crc)
}

/// Appends one TLV to `out`.
///
/// # Errors
/// When the value is longer than 65535 bytes.
pub(crate) fn push(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(value.len()).map_err(|_| Error::Encode {
        reason: "a TLV value is longer than 65535 bytes",
    })?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Encodes SSL sub-TLVs into the byte area [`SslTlv::new`] takes.
///
/// # Errors
/// When a value is longer than 65535 bytes or a sub-type repeats.
pub fn encode_ssl_sub_tlvs(subs: &[SslSubTlv<'_>]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for s in subs {
        push(&mut out, s.kind(), s.value())?;
    }
    validate_ssl_subs(&out, 0).map_err(|_| Error::Encode {
        reason: "SSL sub-TLVs repeat a sub-type or carry non-ASCII text",
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// TLV areas from TLVs of the types that matter to [`super::plain`]
    /// (repeats allowed), values of any bytes, then maybe one byte changed
    /// and maybe cut short.
    fn areas() -> impl Strategy<Value = Vec<u8>> {
        let kind = prop_oneof![
            Just(super::PP2_TYPE_ALPN),
            Just(super::PP2_TYPE_AUTHORITY),
            Just(super::PP2_TYPE_CRC32C),
            Just(super::PP2_TYPE_NOOP),
            Just(super::PP2_TYPE_UNIQUE_ID),
            Just(super::PP2_TYPE_SSL),
            Just(super::PP2_TYPE_NETNS),
            Just(0xE0u8),
            any::<u8>(),
        ];
        let value = prop_oneof![
            proptest::collection::vec(0x20u8..0x7F, 0..20),
            proptest::collection::vec(any::<u8>(), 0..20),
            proptest::collection::vec(any::<u8>(), 120..140),
        ];
        (
            proptest::collection::vec((kind, value), 0..4),
            any::<Option<(usize, u8)>>(),
            any::<Option<usize>>(),
        )
            .prop_map(|(tlvs, change, cut)| {
                let mut out = Vec::new();
                for (kind, value) in tlvs {
                    super::push(&mut out, kind, &value).unwrap_or_default();
                }
                if let Some((at, byte)) = change
                    && !out.is_empty()
                {
                    let at = at % out.len();
                    out[at] = byte;
                }
                if let Some(cut) = cut {
                    out.truncate(cut % (out.len() + 1));
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8192))]

        /// What the quick loop accepts, the full check accepts with no
        /// CRC32C; and `validate` always answers as the full check does.
        #[test]
        fn plain_is_a_subset_of_the_full_check(area in areas(), base in 0usize..100) {
            let full = super::validate_full(&area, base);
            if super::plain(&area) {
                prop_assert_eq!(&full, &Ok(None));
            }
            prop_assert_eq!(super::validate(&area, base), full);
        }
    }

    #[test]
    fn plain_takes_what_load_balancers_send_and_passes_the_rest_on() {
        let mut area = Vec::new();
        super::push(&mut area, super::PP2_TYPE_AUTHORITY, b"example.com").unwrap();
        super::push(&mut area, super::PP2_TYPE_UNIQUE_ID, &[0xAB; 16]).unwrap();
        super::push(&mut area, 0xEA, &[1, 2, 3]).unwrap();
        assert!(super::plain(&area));
        // A CRC32C, a non-ASCII AUTHORITY or a repeat goes to the full check.
        for (kind, value) in [
            (super::PP2_TYPE_CRC32C, &[0u8; 4][..]),
            (super::PP2_TYPE_AUTHORITY, "é".as_bytes()),
            (super::PP2_TYPE_UNIQUE_ID, &[1][..]),
        ] {
            let mut more = Vec::new();
            super::push(&mut more, super::PP2_TYPE_UNIQUE_ID, &[7; 8]).unwrap();
            assert!(super::plain(&more));
            super::push(&mut more, kind, value).unwrap();
            assert!(!super::plain(&more), "{kind}");
        }
        assert!(!super::plain(&area[..area.len() - 1]));
    }
}
