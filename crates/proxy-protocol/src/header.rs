//! Parsed headers: borrowed ([`Header`]) and owned ([`OwnedHeader`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::tlv::Tlvs;

/// The length of a v2 UNIX address (`sun_path`), in bytes.
pub const UNIX_ADDR_LEN: usize = 108;

/// What the sender says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// The proxy opened the connection itself (a health check): the socket
    /// peer is the real client. v2 only.
    Local,
    /// The connection is relayed on behalf of the client in the header.
    Proxy,
}

/// The addresses a header carries.
///
/// [`Addresses::Unspec`] stands for every header whose addresses must not be
/// used: v2 LOCAL, v2 family UNSPEC, v1 `UNKNOWN`. Those headers never expose
/// addresses, even when the sender put some on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addresses {
    /// No usable addresses: use the socket peer.
    Unspec,
    /// TCP over IPv4 (v1 `TCP4`, v2 0x11).
    Tcp4 {
        /// The client.
        src: SocketAddrV4,
        /// The address the client connected to.
        dst: SocketAddrV4,
    },
    /// TCP over IPv6 (v1 `TCP6`, v2 0x21).
    Tcp6 {
        /// The client.
        src: SocketAddrV6,
        /// The address the client connected to.
        dst: SocketAddrV6,
    },
    /// UDP over IPv4 (v2 0x12).
    Udp4 {
        /// The client.
        src: SocketAddrV4,
        /// The address the client sent to.
        dst: SocketAddrV4,
    },
    /// UDP over IPv6 (v2 0x22).
    Udp6 {
        /// The client.
        src: SocketAddrV6,
        /// The address the client sent to.
        dst: SocketAddrV6,
    },
    /// A UNIX socket (v2 0x31 stream, 0x32 datagram), raw `sun_path` bytes.
    Unix {
        /// Whether the socket is a datagram socket (0x32).
        datagram: bool,
        /// The client's path.
        src: [u8; UNIX_ADDR_LEN],
        /// The server's path.
        dst: [u8; UNIX_ADDR_LEN],
    },
}

impl Addresses {
    /// The source as an IP socket address, when the addresses are IP ones.
    pub fn source(&self) -> Option<SocketAddr> {
        match *self {
            Addresses::Tcp4 { src, .. } | Addresses::Udp4 { src, .. } => Some(SocketAddr::V4(src)),
            Addresses::Tcp6 { src, .. } | Addresses::Udp6 { src, .. } => Some(SocketAddr::V6(src)),
            Addresses::Unspec | Addresses::Unix { .. } => None,
        }
    }

    /// The destination as an IP socket address, when the addresses are IP
    /// ones.
    pub fn destination(&self) -> Option<SocketAddr> {
        match *self {
            Addresses::Tcp4 { dst, .. } | Addresses::Udp4 { dst, .. } => Some(SocketAddr::V4(dst)),
            Addresses::Tcp6 { dst, .. } | Addresses::Udp6 { dst, .. } => Some(SocketAddr::V6(dst)),
            Addresses::Unspec | Addresses::Unix { .. } => None,
        }
    }

    /// The v2 family/transport byte of these addresses.
    pub fn v2_family(&self) -> u8 {
        match self {
            Addresses::Unspec => 0x00,
            Addresses::Tcp4 { .. } => 0x11,
            Addresses::Udp4 { .. } => 0x12,
            Addresses::Tcp6 { .. } => 0x21,
            Addresses::Udp6 { .. } => 0x22,
            Addresses::Unix {
                datagram: false, ..
            } => 0x31,
            Addresses::Unix { datagram: true, .. } => 0x32,
        }
    }
}

/// Whether the header carried a CRC32C checksum.
///
/// There is no "invalid" state: a checksum that does not match is a parse
/// error ([`Error::Crc32cMismatch`](crate::Error::Crc32cMismatch)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Crc32cStatus {
    /// No CRC32C TLV (always the case for v1).
    Absent,
    /// A CRC32C TLV was present and matched the header.
    Valid,
}

/// A v1 (text) header, borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Header<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) addrs: V1Addrs,
}

/// The addresses of a v1 line, kept compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V1Addrs {
    Unknown,
    Tcp4(SocketAddrV4, SocketAddrV4),
    Tcp6(SocketAddrV6, SocketAddrV6),
}

impl<'a> V1Header<'a> {
    /// The whole line, CRLF included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether the protocol field was `UNKNOWN` (addresses are then never
    /// exposed).
    pub fn is_unknown(&self) -> bool {
        matches!(self.addrs, V1Addrs::Unknown)
    }
}

/// A v2 (binary) header, borrowing the input.
///
/// It can only be obtained from the parser, so its bytes are known to be
/// valid: every TLV was checked when it was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Header<'a> {
    /// The whole header: 16 fixed bytes, address block, TLVs.
    pub(crate) raw: &'a [u8],
    pub(crate) crc: Crc32cStatus,
    /// The source, read once at parse time (`None` for LOCAL, UNSPEC and
    /// UNIX): `source()` is then a copy.
    pub(crate) src: Option<SocketAddr>,
}

impl<'a> V2Header<'a> {
    /// The whole header, as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The family/transport byte as received (also for LOCAL headers, whose
    /// addresses are ignored).
    pub fn family_byte(&self) -> u8 {
        self.raw.get(13).copied().unwrap_or(0)
    }

    /// The command.
    pub fn command(&self) -> Command {
        command_of(self.raw)
    }

    /// The addresses ([`Addresses::Unspec`] for LOCAL and UNSPEC).
    pub fn addresses(&self) -> Addresses {
        addresses_of(self.raw)
    }

    /// The TLVs, in wire order.
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs::new(tlv_bytes_of(self.raw))
    }
}

/// A parsed PROXY protocol header, borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Header<'a> {
    /// Version 1 (text).
    V1(V1Header<'a>),
    /// Version 2 (binary).
    V2(V2Header<'a>),
}

impl<'a> Header<'a> {
    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self {
            Header::V1(_) => 1,
            Header::V2(_) => 2,
        }
    }

    /// The command; v1 headers are always [`Command::Proxy`].
    pub fn command(&self) -> Command {
        match self {
            Header::V1(_) => Command::Proxy,
            Header::V2(h) => h.command(),
        }
    }

    /// The addresses; [`Addresses::Unspec`] for LOCAL, UNSPEC and `UNKNOWN`.
    pub fn addresses(&self) -> Addresses {
        match self {
            Header::V1(h) => match h.addrs {
                V1Addrs::Unknown => Addresses::Unspec,
                V1Addrs::Tcp4(src, dst) => Addresses::Tcp4 { src, dst },
                V1Addrs::Tcp6(src, dst) => Addresses::Tcp6 { src, dst },
            },
            Header::V2(h) => h.addresses(),
        }
    }

    /// The client's IP address and port, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::V1(h) => match h.addrs {
                V1Addrs::Unknown => None,
                V1Addrs::Tcp4(src, _) => Some(SocketAddr::V4(src)),
                V1Addrs::Tcp6(src, _) => Some(SocketAddr::V6(src)),
            },
            Header::V2(h) => h.src,
        }
    }

    /// The address the client connected to, when the header carries one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self {
            Header::V1(h) => match h.addrs {
                V1Addrs::Unknown => None,
                V1Addrs::Tcp4(_, dst) => Some(SocketAddr::V4(dst)),
                V1Addrs::Tcp6(_, dst) => Some(SocketAddr::V6(dst)),
            },
            Header::V2(h) => h.addresses().destination(),
        }
    }

    /// The TLVs in wire order (always empty for v1).
    pub fn tlvs(&self) -> Tlvs<'a> {
        match self {
            Header::V1(_) => Tlvs::new(&[]),
            Header::V2(h) => h.tlvs(),
        }
    }

    /// The header's length on the wire, in bytes.
    pub fn header_len(&self) -> usize {
        self.as_bytes().len()
    }

    /// The header's bytes as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Header::V1(h) => h.raw,
            Header::V2(h) => h.raw,
        }
    }

    /// Whether a CRC32C checksum was present (it was verified if so).
    pub fn crc32c(&self) -> Crc32cStatus {
        match self {
            Header::V1(_) => Crc32cStatus::Absent,
            Header::V2(h) => h.crc,
        }
    }

    /// A copy that does not borrow the input.
    pub fn into_owned(self) -> OwnedHeader {
        OwnedHeader {
            version: self.version(),
            command: self.command(),
            addresses: self.addresses(),
            crc: self.crc32c(),
            tlv_start: match self {
                Header::V1(h) => h.raw.len(),
                Header::V2(h) => h.raw.len() - tlv_bytes_of(h.raw).len(),
            },
            raw: self.as_bytes().to_vec(),
        }
    }
}

/// A parsed header that owns its bytes (see [`Header::into_owned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHeader {
    version: u8,
    command: Command,
    addresses: Addresses,
    crc: Crc32cStatus,
    tlv_start: usize,
    raw: Vec<u8>,
}

impl OwnedHeader {
    /// 1 or 2.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The command; v1 headers are always [`Command::Proxy`].
    pub fn command(&self) -> Command {
        self.command
    }

    /// The addresses; [`Addresses::Unspec`] for LOCAL, UNSPEC and `UNKNOWN`.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The client's IP address and port, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.source()
    }

    /// The address the client connected to, when the header carries one.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.addresses.destination()
    }

    /// The TLVs in wire order (always empty for v1).
    pub fn tlvs(&self) -> Tlvs<'_> {
        Tlvs::new(self.raw.get(self.tlv_start..).unwrap_or(&[]))
    }

    /// Whether a CRC32C checksum was present (it was verified if so).
    pub fn crc32c(&self) -> Crc32cStatus {
        self.crc
    }

    /// The header's length on the wire, in bytes.
    pub fn header_len(&self) -> usize {
        self.raw.len()
    }

    /// The header's bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

pub(crate) fn v4(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

pub(crate) fn v6(ip: [u8; 16], port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
}

// The v2 header's layout, and readers of a validated header's raw bytes (the parser in
// `v2` writes what these read).

/// The 12-byte signature that opens every v2 header.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Length of the fixed part: signature, version/command, family, length.
pub const FIXED_LEN: usize = 16;

/// The address block length of a family/transport byte, or `None` when the
/// byte is not one of the seven the spec defines.
#[inline]
pub(crate) fn block_len(family: u8) -> Option<u16> {
    match family {
        0x00 => Some(0),
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => None,
    }
}

pub(crate) fn command_of(raw: &[u8]) -> Command {
    match raw.get(12) {
        Some(b) if b & 0x0F == 1 => Command::Proxy,
        _ => Command::Local,
    }
}

fn family_of(raw: &[u8]) -> u8 {
    raw.get(13).copied().unwrap_or(0)
}

/// The TLV area of a validated header.
pub(crate) fn tlv_bytes_of(raw: &[u8]) -> &[u8] {
    let block = usize::from(block_len(family_of(raw)).unwrap_or(0));
    raw.get(FIXED_LEN + block..).unwrap_or_default()
}

#[inline]
fn arr<const N: usize>(raw: &[u8], at: usize) -> [u8; N] {
    raw.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

#[inline]
fn port(raw: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(arr(raw, at))
}

/// The addresses of a validated header.
pub(crate) fn addresses_of(raw: &[u8]) -> Addresses {
    if command_of(raw) == Command::Local {
        return Addresses::Unspec;
    }
    match family_of(raw) {
        0x11 => Addresses::Tcp4 {
            src: v4(arr(raw, 16), port(raw, 24)),
            dst: v4(arr(raw, 20), port(raw, 26)),
        },
        0x12 => Addresses::Udp4 {
            src: v4(arr(raw, 16), port(raw, 24)),
            dst: v4(arr(raw, 20), port(raw, 26)),
        },
        0x21 => Addresses::Tcp6 {
            src: v6(arr(raw, 16), port(raw, 48)),
            dst: v6(arr(raw, 32), port(raw, 50)),
        },
        0x22 => Addresses::Udp6 {
            src: v6(arr(raw, 16), port(raw, 48)),
            dst: v6(arr(raw, 32), port(raw, 50)),
        },
        f @ (0x31 | 0x32) => Addresses::Unix {
            datagram: f == 0x32,
            src: arr(raw, 16),
            dst: arr(raw, 16 + UNIX_ADDR_LEN),
        },
        _ => Addresses::Unspec,
    }
}
