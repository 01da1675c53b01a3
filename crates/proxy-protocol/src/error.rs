//! The crate's one error type.

/// Why bytes are not (yet) a PROXY protocol header, or why a header cannot
/// be encoded.
///
/// [`Error::Incomplete`] means "read more bytes and call again"; every other
/// variant means the bytes can never become a valid header and the
/// connection must be dropped. Offsets count from the first byte of the
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes so far are a valid beginning of a header, but the header
    /// is not complete.
    #[error("incomplete PROXY header: {}", match .needed {
        Some(n) => format!("at least {n} more bytes needed"),
        None => "more bytes needed".to_owned(),
    })]
    Incomplete {
        /// How many more bytes are needed at least, when known (v2 always
        /// knows; v1 does not until the CRLF arrives).
        needed: Option<usize>,
    },

    /// The bytes begin neither the v1 `PROXY` keyword nor the v2 signature.
    #[error(
        "not a PROXY header: byte {offset} is {byte:#04x}, which starts neither `PROXY` nor the v2 signature"
    )]
    NotProxyHeader {
        /// Offset of the first byte that differs.
        offset: usize,
        /// That byte.
        byte: u8,
    },

    /// v1: a byte that the grammar does not allow at this place.
    #[error("v1 header, byte {offset} ({byte:#04x}): expected {expected}")]
    V1Syntax {
        /// Offset of the offending byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
        /// What the grammar allows here.
        expected: &'static str,
    },

    /// v1: no CRLF within the first 107 bytes (the spec's longest line).
    #[error("v1 header: no CRLF within the first 107 bytes")]
    V1TooLong,

    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("v1 header, byte {offset}: protocol must be `TCP4`, `TCP6` or `UNKNOWN`")]
    V1Protocol {
        /// Offset of the protocol field.
        offset: usize,
    },

    /// v1: an address is not in the canonical text form of the family
    /// named by the protocol field.
    #[error("v1 header, {field} address at byte {offset}: not a valid {family} address ({reason})")]
    V1Address {
        /// `"source"` or `"destination"`.
        field: &'static str,
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
        /// Offset of the address field.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// v1: a port is not a decimal integer in 0..=65535 without sign or
    /// leading zero.
    #[error("v1 header, {field} port at byte {offset}: {reason}")]
    V1Port {
        /// `"source"` or `"destination"`.
        field: &'static str,
        /// Offset of the port field.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// v2: the version nibble of byte 13 is not 2.
    #[error("v2 header: version {found:#x} (only 2 is defined)")]
    V2Version {
        /// The version nibble found.
        found: u8,
    },

    /// v2: the command nibble of byte 13 is neither LOCAL (0) nor PROXY (1).
    #[error("v2 header: command {found:#x} (only LOCAL 0x0 and PROXY 0x1 are defined)")]
    V2Command {
        /// The command nibble found.
        found: u8,
    },

    /// v2: the family/transport byte is not one of 0x00, 0x11, 0x12, 0x21,
    /// 0x22, 0x31, 0x32.
    #[error("v2 header: address family/transport byte {found:#04x} is not defined")]
    V2Family {
        /// The byte found.
        found: u8,
    },

    /// v2: the length field does not cover the family's address block.
    #[error(
        "v2 header: length {len} is shorter than the {block}-byte address block of family {family:#04x}"
    )]
    V2Length {
        /// The family/transport byte.
        family: u8,
        /// The length field.
        len: u16,
        /// The size of that family's address block.
        block: u16,
    },

    /// The header would be longer than the configured cap
    /// ([`ParseConfig::max_header_len`](crate::ParseConfig)).
    #[error("PROXY header of {len} bytes exceeds the configured maximum of {max}")]
    TooLong {
        /// Total header length announced.
        len: usize,
        /// The configured cap.
        max: usize,
    },

    /// v2: a TLV runs past the end of the header, or 1–2 bytes are left
    /// over that cannot hold a TLV.
    #[error("v2 header, TLV at byte {offset}: {reason}")]
    TlvBounds {
        /// Offset of the TLV (or of the leftover bytes).
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },

    /// v2: a TLV's value has a length its type does not allow.
    #[error("v2 header, TLV type {kind:#04x} at byte {offset}: length {len} {reason}")]
    TlvLength {
        /// The TLV type.
        kind: u8,
        /// Offset of the TLV.
        offset: usize,
        /// Its value length.
        len: usize,
        /// The rule it breaks, e.g. "must be exactly 4".
        reason: &'static str,
    },

    /// v2: a TLV's value is not text in the encoding its type requires.
    #[error("v2 header, TLV type {kind:#04x} at byte {offset}: value is not {expected}")]
    TlvEncoding {
        /// The TLV type.
        kind: u8,
        /// Offset of the TLV.
        offset: usize,
        /// `"UTF-8"` or `"US-ASCII"`.
        expected: &'static str,
    },

    /// v2: a TLV type that may appear once appears twice.
    #[error("v2 header, TLV type {kind:#04x} at byte {offset}: appears more than once")]
    DuplicateTlv {
        /// The TLV type.
        kind: u8,
        /// Offset of the second occurrence.
        offset: usize,
    },

    /// v2: the CRC32C TLV does not match the header.
    #[error("v2 header: CRC32C {received:#010x} does not match the computed {computed:#010x}")]
    Crc32cMismatch {
        /// The checksum in the TLV.
        received: u32,
        /// The checksum computed over the header with the field zeroed.
        computed: u32,
    },

    /// A strict entry point ([`parse_exact`](crate::parse_exact)) found
    /// bytes after the header.
    #[error("{count} bytes follow the PROXY header")]
    TrailingBytes {
        /// How many.
        count: usize,
    },

    /// Encoding: the builder was asked for something the format cannot
    /// carry, or a set-once field was set twice.
    #[error("cannot encode PROXY header: {reason}")]
    Encode {
        /// What was asked and why it cannot be done.
        reason: &'static str,
    },
}

impl Error {
    /// Whether more bytes may turn the input into a valid header.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Error::Incomplete { .. })
    }
}
