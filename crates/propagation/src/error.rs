//! The crate's one error type.

/// Why a key, a block, a grant, a front identity or a trust anchor was
/// not accepted or could not be made. (A refused *header* is not an error
/// but a [`Rejection`](crate::Rejection) with a stable reason code.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // Key files (`key`).
    /// The text is not exactly one PEM block with the expected label.
    #[error("not one PEM `{label}` block")]
    KeyPem {
        /// The label expected.
        label: &'static str,
    },
    /// The block does not hold 32 bytes.
    #[error("`{label}` block holds {len} bytes; an X25519 key is 32")]
    KeyLength {
        /// The label.
        label: &'static str,
        /// The length found.
        len: usize,
    },
    /// The public key is of small order: no shared secret could come of it.
    #[error("the public key is of small order (an all-zero shared secret would follow)")]
    SmallOrder,

    // The wire format (`wire`).
    /// The bytes end inside a field.
    #[error("signed block: truncated in field `{field}` (needed {needed} more bytes)")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The version byte is not [`VERSION`](crate::wire::VERSION).
    #[error(
        "signed block: version {found} (this server reads version {})",
        crate::WIRE_VERSION
    )]
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
    AudienceByte {
        /// The byte.
        byte: u8,
        /// Its position in the audience.
        at: usize,
    },
    /// The endpoint holds a byte outside lowercase letters, digits, `-` and `:`.
    #[error(
        "signed block: endpoint byte 0x{byte:02x} at {at} is not a lowercase letter, digit, `-` or `:`"
    )]
    EndpointByte {
        /// The byte.
        byte: u8,
        /// Its position in the endpoint.
        at: usize,
    },
    /// Bytes follow the last field (`in_`: the block or the grant).
    #[error("signed block: {extra} bytes after the end of the {in_}")]
    Trailing {
        /// `block` or `grant`.
        in_: &'static str,
        /// How many.
        extra: usize,
    },

    // The front: its identity, grants and blocks (`sign`).
    /// The key is not an unencrypted PKCS#8 Ed25519 key.
    #[error("proxy identity key: {0}")]
    SigningKey(String),
    /// The certificate does not decode, or is not for this key.
    #[error("proxy identity certificate: {0}")]
    Cert(String),
    /// The audience is not 1 to 255 printable ASCII bytes.
    #[error("audience `{0}`: use 1 to 255 printable ASCII characters, no spaces")]
    Audience(String),
    /// The header could not be encoded.
    #[error("signed header: {0}")]
    Encode(String),
    /// The grant could not be made (validity, inner key, randomness).
    #[error("grant: {0}")]
    Grant(String),

    // The trust anchor (`verify`).
    /// The CA certificate does not decode.
    #[error("trusted CA certificate: {0}")]
    AnchorDecode(String),
    /// The CA's key is neither P-256 nor Ed25519.
    #[error("trusted CA certificate: key algorithm {0} is not P-256 or Ed25519")]
    AnchorAlgorithm(String),
}
