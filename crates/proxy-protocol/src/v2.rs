//! Version 2: the binary header.
//!
//! ```text
//! 12 bytes  signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//!  1 byte   version (high nibble, 2) and command (low nibble, 0 LOCAL / 1 PROXY)
//!  1 byte   family (high nibble) and transport (low nibble)
//!  2 bytes  length of what follows, big-endian
//!  ...      address block (0, 12, 36 or 216 bytes), then TLVs
//! ```

use std::net::SocketAddr;

use crate::Error;
use crate::header::{Addresses, Command, Crc32cStatus, Header, V2Header, v4, v6};
pub(crate) use crate::header::{FIXED_LEN, SIGNATURE, block_len};
use crate::tlv;

/// The 16 fixed bytes of a PROXY TCP4 header, length bytes zero.
const PROXY_TCP4: u128 = u128::from_be_bytes(fixed(0x11));
/// The 16 fixed bytes of a PROXY TCP6 header, length bytes zero.
const PROXY_TCP6: u128 = u128::from_be_bytes(fixed(0x21));

/// The 16 fixed bytes of a PROXY TCP4 header of length 12 (no TLVs), as a
/// native-endian word.
const BARE_TCP4: u128 = u128::from_ne_bytes({
    let mut f = fixed(0x11);
    f[15] = 12;
    f
});

const fn fixed(family: u8) -> [u8; FIXED_LEN] {
    let mut out = [0; FIXED_LEN];
    let mut i = 0;
    while i < SIGNATURE.len() {
        out[i] = SIGNATURE[i];
        i += 1;
    }
    out[12] = 0x21;
    out[13] = family;
    out
}

/// Parses a v2 header at the start of `buf` (which begins with `0x0D`).
///
/// PROXY TCP4 and TCP6, what load balancers send, take a fast path: the
/// signature, version, command and family are one 14-byte compare, which
/// leaves the length and the TLVs to check. Anything else, and every error
/// before the TLVs, goes to [`parse_general`], which checks the same rules
/// one by one and names the first that fails.
#[inline]
pub(crate) fn parse(buf: &[u8], max_len: usize) -> Result<(Header<'_>, usize), Error> {
    if let Some((fixed, rest)) = buf.split_first_chunk::<FIXED_LEN>() {
        // A bare PROXY TCP4 header, length 12: all 16 fixed bytes in one compare.
        if u128::from_ne_bytes(*fixed) == BARE_TCP4
            && max_len >= FIXED_LEN + 12
            && let Some(&[a, b, c, d, _, _, _, _, p0, p1, _, _]) = rest.first_chunk::<12>()
            && let Some(raw) = buf.get(..FIXED_LEN + 12)
        {
            let src = SocketAddr::V4(v4([a, b, c, d], u16::from_be_bytes([p0, p1])));
            let header = Header::V2(V2Header {
                raw,
                crc: Crc32cStatus::Absent,
                src: Some(src),
            });
            return Ok((header, FIXED_LEN + 12));
        }
        let word = u128::from_be_bytes(*fixed);
        let len = usize::from(word as u16);
        let total = FIXED_LEN + len;
        let prefix = word & !0xFFFF;
        if total <= max_len
            && let Some(raw) = buf.get(..total)
        {
            if prefix == PROXY_TCP4
                && let Some((&[a, b, c, d, _, _, _, _, p0, p1, _, _], area)) = raw
                    .get(FIXED_LEN..)
                    .and_then(|r| r.split_first_chunk::<12>())
            {
                let src = SocketAddr::V4(v4([a, b, c, d], u16::from_be_bytes([p0, p1])));
                return finish(raw, area, FIXED_LEN + 12, src);
            }
            if prefix == PROXY_TCP6
                && let Some((block, area)) = raw
                    .get(FIXED_LEN..)
                    .and_then(|r| r.split_first_chunk::<36>())
                && let (Some(ip), Some(&[p0, p1])) = (block.first_chunk::<16>(), block.get(32..34))
            {
                let src = SocketAddr::V6(v6(*ip, u16::from_be_bytes([p0, p1])));
                return finish(raw, area, FIXED_LEN + 36, src);
            }
        }
    }
    parse_general(buf, max_len)
}

/// The fast path's end: the TLV area checked as in [`parse_general`].
#[inline(always)]
fn finish<'a>(
    raw: &'a [u8],
    area: &[u8],
    area_start: usize,
    src: SocketAddr,
) -> Result<(Header<'a>, usize), Error> {
    let crc = if area.is_empty() {
        Crc32cStatus::Absent
    } else {
        check_area(raw, area, area_start)?
    };
    let header = Header::V2(V2Header {
        raw,
        crc,
        src: Some(src),
    });
    Ok((header, raw.len()))
}

/// Every TLV of a non-empty area, and the CRC32C when there is one. Out of
/// line, so that the bare headers' path stays small where it is inlined.
#[inline(never)]
fn check_area(raw: &[u8], area: &[u8], area_start: usize) -> Result<Crc32cStatus, Error> {
    match tlv::validate(area, area_start)? {
        None => Ok(Crc32cStatus::Absent),
        Some((at, received)) => verify_crc(raw, area_start + at, received),
    }
}

/// Parses a v2 header at the start of `buf`, every rule checked in turn.
#[inline(never)]
fn parse_general(buf: &[u8], max_len: usize) -> Result<(Header<'_>, usize), Error> {
    let Some((fixed, _)) = buf.split_first_chunk::<FIXED_LEN>() else {
        return Err(check_prefix(buf));
    };
    let [sig @ .., ver_cmd, family, l0, l1] = *fixed;
    if sig != SIGNATURE {
        return Err(check_prefix(buf));
    }
    if ver_cmd & 0xFE != 0x20 {
        return Err(ver_cmd_error(ver_cmd));
    }
    let Some(block) = block_len(family) else {
        return Err(Error::V2Family { found: family });
    };
    let len = u16::from_be_bytes([l0, l1]);
    if len < block {
        return Err(Error::V2Length { family, len, block });
    }
    let total = FIXED_LEN + usize::from(len);
    if total > max_len {
        return Err(Error::TooLong {
            len: total,
            max: max_len,
        });
    }
    let Some(raw) = buf.get(..total) else {
        return Err(Error::Incomplete {
            needed: Some(total - buf.len()),
        });
    };
    let area_start = FIXED_LEN + usize::from(block);
    let area = raw.get(area_start..).unwrap_or_default();
    let crc = if area.is_empty() {
        Crc32cStatus::Absent
    } else {
        match tlv::validate(area, area_start)? {
            None => Crc32cStatus::Absent,
            Some((at, received)) => verify_crc(raw, area_start + at, received)?,
        }
    };
    // The source, from the block just checked to be there.
    let block_bytes = raw.get(FIXED_LEN..).unwrap_or_default();
    let src = match (ver_cmd, family) {
        (0x21, 0x11 | 0x12) => {
            block_bytes
                .first_chunk::<12>()
                .map(|&[a, b, c, d, _, _, _, _, p0, p1, _, _]| {
                    SocketAddr::V4(v4([a, b, c, d], u16::from_be_bytes([p0, p1])))
                })
        }
        (0x21, 0x21 | 0x22) => block_bytes.first_chunk::<36>().map(|b| {
            // Constant indices into a 36-byte array: checked at compile time.
            let ip = [
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15],
            ];
            SocketAddr::V6(v6(ip, u16::from_be_bytes([b[32], b[33]])))
        }),
        _ => None,
    };
    Ok((Header::V2(V2Header { raw, crc, src }), total))
}

/// Checks the CRC32C `received` in the 4 bytes at `field` against the whole
/// header with those bytes zeroed.
#[inline(never)]
fn verify_crc(raw: &[u8], field: usize, received: u32) -> Result<Crc32cStatus, Error> {
    let before = raw.get(..field).unwrap_or_default();
    let after = raw.get(field + 4..).unwrap_or_default();
    let computed = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(before), &[0; 4]),
        after,
    );
    if computed != received {
        return Err(Error::Crc32cMismatch { received, computed });
    }
    Ok(Crc32cStatus::Valid)
}

#[cold]
#[inline(never)]
fn ver_cmd_error(ver_cmd: u8) -> Error {
    match check_ver_cmd(ver_cmd) {
        Err(e) => e,
        // Not reached: the caller saw a bad byte.
        Ok(()) => Error::V2Command {
            found: ver_cmd & 0x0F,
        },
    }
}

#[inline]
fn check_ver_cmd(ver_cmd: u8) -> Result<(), Error> {
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version {
            found: ver_cmd >> 4,
        });
    }
    if ver_cmd & 0x0F > 1 {
        return Err(Error::V2Command {
            found: ver_cmd & 0x0F,
        });
    }
    Ok(())
}

/// For fewer than 16 bytes, or a wrong signature: the precise error for
/// the bytes that are there.
fn check_prefix(buf: &[u8]) -> Error {
    for (offset, (&byte, &want)) in buf.iter().zip(SIGNATURE.iter()).enumerate() {
        if byte != want {
            return Error::NotProxyHeader { offset, byte };
        }
    }
    if let Some(&ver_cmd) = buf.get(12)
        && let Err(e) = check_ver_cmd(ver_cmd)
    {
        return e;
    }
    if let Some(&family) = buf.get(13)
        && block_len(family).is_none()
    {
        return Error::V2Family { found: family };
    }
    Error::Incomplete {
        needed: Some(FIXED_LEN.saturating_sub(buf.len())),
    }
}

/// Appends the fixed part and address block for `command`/`addrs`, with the
/// length field covering `tlv_len` more bytes.
pub(crate) fn encode_head(
    command: Command,
    addrs: &Addresses,
    tlv_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let family = addrs.v2_family();
    let block = usize::from(block_len(family).unwrap_or(0));
    let len = u16::try_from(block + tlv_len).map_err(|_| Error::Encode {
        reason: "addresses and TLVs exceed the 65535 bytes a v2 length can describe",
    })?;
    out.extend_from_slice(&SIGNATURE);
    out.push(match command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    out.push(family);
    out.extend_from_slice(&len.to_be_bytes());
    match addrs {
        Addresses::Unspec => {}
        Addresses::Tcp4 { src, dst } | Addresses::Udp4 { src, dst } => {
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        Addresses::Tcp6 { src, dst } | Addresses::Udp6 { src, dst } => {
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        Addresses::Unix { src, dst, .. } => {
            out.extend_from_slice(src);
            out.extend_from_slice(dst);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// A header whose 14-byte prefix is PROXY TCP4 or TCP6 (the fast path's
    /// gate), with an arbitrary length and body, and a CRC32C filled in or not.
    fn near_fast() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(0x11u8), Just(0x21u8)],
            proptest::collection::vec(any::<u8>(), 0..80),
            any::<u16>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(family, body, len_pick, exact, tail)| {
                let mut out = super::SIGNATURE.to_vec();
                out.extend_from_slice(&[0x21, family]);
                let len = if exact {
                    u16::try_from(body.len()).unwrap_or(0)
                } else {
                    len_pick % 96
                };
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&body);
                out.extend_from_slice(&tail);
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The fast path returns exactly what the general parser returns:
        /// the same header, bytes used, or error.
        #[test]
        fn fast_and_general_agree_near_the_fast_prefix(
            bytes in near_fast(),
            max in prop_oneof![Just(4096usize), 0usize..80],
        ) {
            prop_assert_eq!(super::parse(&bytes, max), super::parse_general(&bytes, max));
            for cut in 0..bytes.len() {
                let b = bytes.get(..cut).unwrap_or_default();
                prop_assert_eq!(super::parse(b, max), super::parse_general(b, max));
            }
        }

        /// The same on TLV areas built from valid TLVs (so that the fast path
        /// gets past the length checks), with a CRC32C when `crc`.
        #[test]
        fn fast_and_general_agree_with_tlvs(
            family in prop_oneof![Just(0x11u8), Just(0x21u8)],
            block in proptest::collection::vec(any::<u8>(), 36),
            tlvs in proptest::collection::vec((prop_oneof![Just(0x01u8), Just(0x02), Just(0x04), Just(0x05), Just(0x30), any::<u8>()], proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
            crc in any::<bool>(),
            flip in any::<Option<(usize, u8)>>(),
        ) {
            let block_len = if family == 0x11 { 12 } else { 36 };
            let mut body = block.get(..block_len).unwrap_or_default().to_vec();
            for (kind, value) in &tlvs {
                body.push(*kind);
                body.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
                body.extend_from_slice(value);
            }
            let crc_at = body.len() + 3;
            if crc {
                body.extend_from_slice(&[0x03, 0, 4, 0, 0, 0, 0]);
            }
            let mut h = super::SIGNATURE.to_vec();
            h.extend_from_slice(&[0x21, family]);
            h.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
            h.extend_from_slice(&body);
            if crc {
                let at = super::FIXED_LEN + crc_at;
                let sum = crc32c::crc32c(&h);
                h[at..at + 4].copy_from_slice(&sum.to_be_bytes());
            }
            if let Some((at, x)) = flip {
                let i = at % h.len();
                h[i] ^= x;
            }
            prop_assert_eq!(super::parse(&h, 4096), super::parse_general(&h, 4096));
        }
    }

    /// The bare TCP4 path accepts the plain header and keeps the length bound.
    #[test]
    fn bare_tcp4_is_accepted_and_bounded() {
        let mut h = super::SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 203, 0, 113, 10, 0xC8, 0x22, 1, 0xBB,
        ]);
        h.extend_from_slice(b"SSH-2.0-x\r\n");
        let (header, used) = super::parse(&h, 4096).unwrap();
        assert_eq!(used, 28);
        assert_eq!(header.source(), Some("198.51.100.7:51234".parse().unwrap()));
        // Below the fixed bound of the configuration: refused, as by the general path.
        assert_eq!(super::parse(&h, 27), super::parse_general(&h, 27));
        assert!(super::parse(&h, 27).is_err());
    }
}
