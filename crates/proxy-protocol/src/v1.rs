//! Version 1: the text line `PROXY TCP4 src dst sport dport\r\n`.
//!
//! The parser walks the line once, byte by byte, and never converts it to a
//! string. Running out of input at a point where the bytes so far are a valid
//! beginning is [`Error::Incomplete`]; running out at byte 107 is
//! [`Error::V1TooLong`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::Error;
use crate::header::{Header, V1Addrs, V1Header};

/// The longest v1 line the spec allows, CRLF included.
pub const MAX_V1_LEN: usize = 107;

/// The longest IPv6 text form with an embedded IPv4 tail
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const MAX_V6_TEXT: usize = 45;

struct Cursor<'a> {
    line: &'a [u8],
    pos: usize,
    /// Whether the input reached the 107-byte limit (running out is then
    /// final).
    at_limit: bool,
}

impl Cursor<'_> {
    #[inline]
    fn out(&self) -> Error {
        if self.at_limit {
            Error::V1TooLong
        } else {
            Error::Incomplete { needed: None }
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, Error> {
        self.line.get(self.pos).copied().ok_or_else(|| self.out())
    }

    #[inline]
    fn syntax(&self, byte: u8, expected: &'static str) -> Error {
        Error::V1Syntax {
            offset: self.pos,
            byte,
            expected,
        }
    }

    /// Consumes `lit`, or fails at the first differing byte with `err`.
    #[inline]
    fn literal(&mut self, lit: &[u8], err: impl Fn(usize, u8) -> Error) -> Result<(), Error> {
        for &want in lit {
            let b = self.peek()?;
            if b != want {
                return Err(err(self.pos, b));
            }
            self.pos += 1;
        }
        Ok(())
    }

    #[inline]
    fn space(&mut self, expected: &'static str) -> Result<(), Error> {
        let b = self.peek()?;
        if b != b' ' {
            return Err(self.syntax(b, expected));
        }
        self.pos += 1;
        Ok(())
    }

    /// CRLF; a lone CR or LF is never a line end.
    #[inline]
    fn crlf(&mut self) -> Result<(), Error> {
        let b = self.peek()?;
        if b != b'\r' {
            return Err(self.syntax(b, "CRLF after the destination port"));
        }
        self.pos += 1;
        let b = self.peek()?;
        if b != b'\n' {
            return Err(self.syntax(b, "LF after CR"));
        }
        self.pos += 1;
        Ok(())
    }

    fn ipv4(&mut self, field: &'static str) -> Result<Ipv4Addr, Error> {
        let start = self.pos;
        let err = |reason| Error::V1Address {
            field,
            family: "IPv4",
            offset: start,
            reason,
        };
        let mut octets = [0u8; 4];
        for (i, slot) in octets.iter_mut().enumerate() {
            if i > 0 {
                if self.peek()? != b'.' {
                    return Err(err("expected 4 decimal numbers separated by dots"));
                }
                self.pos += 1;
            }
            let mut value: u16 = 0;
            let mut digits = 0;
            loop {
                let b = self.peek()?;
                if !b.is_ascii_digit() {
                    break;
                }
                if digits == 1 && value == 0 {
                    return Err(err("leading zero not allowed"));
                }
                value = value * 10 + u16::from(b - b'0');
                if value > 255 {
                    return Err(err("number above 255"));
                }
                digits += 1;
                self.pos += 1;
            }
            if digits == 0 {
                return Err(err("expected a decimal number"));
            }
            *slot = value as u8;
        }
        Ok(Ipv4Addr::from(octets))
    }

    fn ipv6(&mut self, field: &'static str) -> Result<Ipv6Addr, Error> {
        let start = self.pos;
        let err = |reason| Error::V1Address {
            field,
            family: "IPv6",
            offset: start,
            reason,
        };
        loop {
            let b = self.peek()?;
            if b == b' ' {
                break;
            }
            if !(b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                return Err(err(if b == b'%' {
                    "zone identifiers are not allowed"
                } else {
                    "character not allowed in an IPv6 address"
                }));
            }
            if self.pos - start >= MAX_V6_TEXT {
                return Err(err("too long"));
            }
            self.pos += 1;
        }
        let text = self.line.get(start..self.pos).unwrap_or_default();
        match parse_ipv6(text) {
            Ok((ip, len)) if len == text.len() => Ok(Ipv6Addr::from(ip)),
            Ok(_) => Err(err("character not allowed in an IPv6 address")),
            Err(reason) => Err(err(reason)),
        }
    }

    fn port(&mut self, field: &'static str) -> Result<u16, Error> {
        let start = self.pos;
        let err = |reason| Error::V1Port {
            field,
            offset: start,
            reason,
        };
        let mut value: u32 = 0;
        let mut digits = 0;
        loop {
            let b = self.peek()?;
            if !b.is_ascii_digit() {
                if digits == 0 {
                    return Err(err(if b == b'+' || b == b'-' {
                        "sign not allowed"
                    } else {
                        "expected a decimal number"
                    }));
                }
                break;
            }
            if digits == 1 && value == 0 {
                return Err(err("leading zero not allowed"));
            }
            value = value * 10 + u32::from(b - b'0');
            if value > 65535 {
                return Err(err("above 65535"));
            }
            digits += 1;
            self.pos += 1;
        }
        Ok(value as u16)
    }
}

/// Parses a v1 line at the start of `buf` (which begins with `P`).
#[inline]
pub(crate) fn parse(buf: &[u8]) -> Result<(Header<'_>, usize), Error> {
    if let Some((addrs, len)) = fast(buf)
        && let Some(raw) = buf.get(..len)
    {
        return Ok((Header::V1(V1Header { raw, addrs }), len));
    }
    parse_precise(buf)
}

/// The common case, complete and valid `TCP4`/`TCP6` lines, in one tight
/// pass. `None` means "not sure": [`parse_precise`] then decides and
/// explains. Everything this accepts, [`parse_precise`] accepts with the
/// same result (unit proptests check it, on valid lines and on arbitrary
/// bytes).
#[inline]
fn fast(buf: &[u8]) -> Option<(V1Addrs, usize)> {
    let (head, _) = buf.split_first_chunk::<11>()?;
    // `PROXY TC` and `CP4 ` / `CP6 ` as two overlapping word compares.
    let (Some(first), Some(last)) = (head.first_chunk::<8>(), head.last_chunk::<4>()) else {
        return None;
    };
    if u64::from_le_bytes(*first) != u64::from_le_bytes(*b"PROXY TC") {
        return None;
    }
    match u32::from_le_bytes(*last) {
        w if w == u32::from_le_bytes(*b"CP4 ") => fast_tcp4(buf),
        w if w == u32::from_le_bytes(*b"CP6 ") => fast_tcp6_any(buf),
        _ => None,
    }
}

/// `PROXY TCP6 …\r\n`: the window path, then the embedded IPv4 tails and
/// other rarer forms. Out of line, so that the TCP4 path's caller keeps a
/// small stack frame.
#[inline(never)]
fn fast_tcp6_any(buf: &[u8]) -> Option<(V1Addrs, usize)> {
    if let Some(found) = fast_tcp6(buf) {
        return Some(found);
    }
    let mut i = 11;
    let src = fast_ipv6(buf, &mut i)?;
    let dst = fast_ipv6(buf, &mut i)?;
    let sport = fast_port(buf, &mut i, b' ')?;
    let dport = fast_port(buf, &mut i, b'\r')?;
    let addrs = V1Addrs::Tcp6(
        SocketAddrV6::new(src, sport, 0, 0),
        SocketAddrV6::new(dst, dport, 0, 0),
    );
    if buf.get(i) != Some(&b'\n') || i >= MAX_V1_LEN {
        return None;
    }
    Some((addrs, i + 1))
}

/// `buf` (shorter than `N`) copied into a zero-padded window. From half a
/// window up, two fixed-size copies (the second ending at `buf`'s end, the
/// two overlapping) instead of a call to `memcpy` for a variable length.
#[inline(always)]
fn padded<const N: usize, const H: usize>(buf: &[u8]) -> Option<[u8; N]> {
    let mut pad = [0u8; N];
    let len = buf.len();
    match (buf.first_chunk::<H>(), buf.last_chunk::<H>()) {
        (Some(head), Some(tail)) if len <= N => {
            *pad.first_chunk_mut::<H>()? = *head;
            *pad.get_mut(len - H..)?.first_chunk_mut::<H>()? = *tail;
        }
        _ => pad.get_mut(..len)?.copy_from_slice(buf),
    }
    Some(pad)
}

/// The window the TCP4 fast path reads from: the longest TCP4 line
/// (`PROXY TCP4 ` + 2 × 15 + 2 × 5 + 3 spaces + CRLF = 56 bytes) and the
/// lookahead of its last field fit, and a power of two lets every index be
/// masked instead of bounds-checked.
const WINDOW: usize = 64;

/// A byte of a window (`N` a power of two). The mask keeps every index in
/// bounds; the paths below never go past index 60 (TCP4, `N` = 64) or 112
/// (TCP6, `N` = 128), so it never changes one.
#[inline(always)]
fn at<const N: usize>(w: &[u8; N], i: usize) -> u8 {
    w[i % N]
}

/// The window the TCP6 fast path reads from: the longest line it takes is
/// the spec's 104-byte TCP6 line (groups of hex digits only, no IPv4 tail).
const WINDOW6: usize = 128;

/// `PROXY TCP6 …\r\n` without embedded IPv4 tails, over a fixed 128-byte
/// window (zero-padded as for TCP4). `None` for anything else, including a
/// dotted tail, which [`fast_ipv6`] or the precise parser then handle.
#[inline]
fn fast_tcp6(buf: &[u8]) -> Option<(V1Addrs, usize)> {
    match buf.first_chunk::<WINDOW6>() {
        Some(w) => tcp6_window(w),
        None => {
            let mut pad = [0u8; WINDOW6];
            pad.get_mut(..buf.len())?.copy_from_slice(buf);
            tcp6_window(&pad)
        }
    }
}

#[inline(always)]
fn tcp6_window(w: &[u8; WINDOW6]) -> Option<(V1Addrs, usize)> {
    let mut i = 11;
    let src = w_ipv6(w, &mut i)?;
    let dst = w_ipv6(w, &mut i)?;
    let sport = w_port(w, &mut i, b' ')?;
    let dport = w_port(w, &mut i, b'\r')?;
    if at(w, i) != b'\n' || i >= MAX_V1_LEN {
        return None;
    }
    Some((
        V1Addrs::Tcp6(
            SocketAddrV6::new(src, sport, 0, 0),
            SocketAddrV6::new(dst, dport, 0, 0),
        ),
        i + 1,
    ))
}

/// RFC 4291 text (1–4 hex digits per group, at most one `::` standing for
/// at least one group), then a space. At most 8 groups of 4 digits and 8
/// colons: an address moves `i` by at most 41.
///
/// The groups are shifted into one 128-bit accumulator as they are read; a
/// `::` is then a split of it at the gap and one shift of the groups before
/// it, no array to move.
#[inline(always)]
fn w_ipv6(w: &[u8; WINDOW6], i: &mut usize) -> Option<Ipv6Addr> {
    let mut acc: u128 = 0;
    let mut n = 0u32;
    let mut gap: Option<u32> = None;
    let mut j = *i;
    if at(w, j) == b':' {
        if at(w, j + 1) != b':' {
            return None;
        }
        gap = Some(0);
        j += 2;
        if at(w, j) == b' ' {
            *i = j + 1;
            return Some(Ipv6Addr::UNSPECIFIED);
        }
    }
    loop {
        // The next four bytes' hex values (16 and up: not a hex digit), loaded
        // up front; the group is the run of digits they start with.
        let d0 = HEX[usize::from(at(w, j))];
        let d1 = HEX[usize::from(at(w, j + 1))];
        let d2 = HEX[usize::from(at(w, j + 2))];
        let d3 = HEX[usize::from(at(w, j + 3))];
        let (value, digits) = if d0 > 15 {
            return None;
        } else if d1 > 15 {
            (u16::from(d0), 1)
        } else if d2 > 15 {
            (u16::from(d0) << 4 | u16::from(d1), 2)
        } else if d3 > 15 {
            (u16::from(d0) << 8 | u16::from(d1) << 4 | u16::from(d2), 3)
        } else {
            let v = u16::from(d0) << 12 | u16::from(d1) << 8 | u16::from(d2) << 4;
            (v | u16::from(d3), 4)
        };
        if n == 8 {
            return None;
        }
        j += digits;
        acc = acc << 16 | u128::from(value);
        n += 1;
        match at(w, j) {
            b' ' => break,
            b':' => {
                j += 1;
                if at(w, j) == b':' {
                    if gap.is_some() {
                        return None;
                    }
                    gap = Some(n);
                    j += 1;
                    if at(w, j) == b' ' {
                        break;
                    }
                }
            }
            // A fifth hex digit, a dotted tail, anything else.
            _ => return None,
        }
    }
    let bits = match gap {
        None if n != 8 => return None,
        None => acc,
        Some(_) if n > 7 => return None,
        Some(g) => {
            // `acc` holds the n groups read: those after the gap are its low
            // 16 × (n − g) bits (< 128), those before it go up past the gap.
            let tail_bits = 16 * (n - g);
            let tail = acc & ((1u128 << tail_bits) - 1);
            let head = acc >> tail_bits;
            head.checked_shl(16 * (8 - g)).unwrap_or(0) | tail
        }
    };
    *i = j + 1;
    Some(Ipv6Addr::from_bits(bits))
}

/// `PROXY TCP4 …\r\n` over a fixed 64-byte window. Input shorter than the
/// window is copied into a zero-padded one: a zero byte is neither a digit
/// nor a separator, so the parse stops there and returns `None`.
#[inline(never)]
fn fast_tcp4(buf: &[u8]) -> Option<(V1Addrs, usize)> {
    // The pad is zeroed only when it is used.
    match buf.first_chunk::<WINDOW>() {
        Some(w) => tcp4_window(w),
        None => tcp4_window(&padded::<WINDOW, { WINDOW / 2 }>(buf)?),
    }
}

#[inline(always)]
fn tcp4_window(w: &[u8; WINDOW]) -> Option<(V1Addrs, usize)> {
    let mut i = 11;
    let src = w_ipv4(w, &mut i, b' ')?;
    let dst = w_ipv4(w, &mut i, b' ')?;
    let sport = w_port(w, &mut i, b' ')?;
    let dport = w_port(w, &mut i, b'\r')?;
    // A zero pad byte is never `\n`: the LF, if seen, came from `buf`.
    if at(w, i) != b'\n' {
        return None;
    }
    Some((
        V1Addrs::Tcp4(SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport)),
        i + 1,
    ))
}

/// A decimal 0..=255 without leading zero, then `end` (never a digit).
/// Branches on "is the next byte a digit", the three digits loaded up front.
#[inline(always)]
fn w_u8(w: &[u8; WINDOW], i: &mut usize, end: u8) -> Option<u8> {
    let j = *i;
    let d0 = at(w, j).wrapping_sub(b'0');
    let d1 = at(w, j + 1).wrapping_sub(b'0');
    let d2 = at(w, j + 2).wrapping_sub(b'0');
    if d0 > 9 {
        return None;
    }
    if d1 > 9 {
        if at(w, j + 1) != end {
            return None;
        }
        *i = j + 2;
        return Some(d0);
    }
    if d0 == 0 {
        return None;
    }
    if d2 > 9 {
        if at(w, j + 2) != end {
            return None;
        }
        *i = j + 3;
        return Some(d0 * 10 + d1);
    }
    if at(w, j + 3) != end {
        return None;
    }
    *i = j + 4;
    u8::try_from(u16::from(d0) * 100 + u16::from(d1) * 10 + u16::from(d2)).ok()
}

#[inline(always)]
fn w_ipv4(w: &[u8; WINDOW], i: &mut usize, end: u8) -> Option<Ipv4Addr> {
    let a = w_u8(w, i, b'.')?;
    let b = w_u8(w, i, b'.')?;
    let c = w_u8(w, i, b'.')?;
    let d = w_u8(w, i, end)?;
    Some(Ipv4Addr::new(a, b, c, d))
}

/// A decimal 0..=65535 without sign or leading zero, then `end` (window).
#[inline(always)]
fn w_port<const N: usize>(w: &[u8; N], i: &mut usize, end: u8) -> Option<u16> {
    let j = *i;
    let d0 = at(w, j).wrapping_sub(b'0');
    if d0 > 9 {
        return None;
    }
    if d0 == 0 {
        if at(w, j + 1) == end {
            *i = j + 2;
            return Some(0);
        }
        return None;
    }
    let mut value = u32::from(d0);
    for k in 1..6 {
        let b = at(w, j + k);
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            if b != end {
                return None;
            }
            *i = j + k + 1;
            return u16::try_from(value).ok();
        }
        value = value * 10 + u32::from(d);
    }
    None
}

/// A decimal 0..=65535 without sign or leading zero, then `end`.
#[inline(always)]
fn fast_port(buf: &[u8], i: &mut usize, end: u8) -> Option<u16> {
    let rest = buf.get(*i..)?;
    let d0 = rest.first()?.wrapping_sub(b'0');
    if d0 > 9 {
        return None;
    }
    if d0 == 0 {
        if rest.get(1) == Some(&end) {
            *i += 2;
            return Some(0);
        }
        return None;
    }
    let mut value = u32::from(d0);
    for k in 1..6 {
        let b = *rest.get(k)?;
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            if b != end {
                return None;
            }
            *i += k + 1;
            return u16::try_from(value).ok();
        }
        value = value * 10 + u32::from(d);
    }
    None
}

#[inline(always)]
fn fast_ipv6(buf: &[u8], i: &mut usize) -> Option<Ipv6Addr> {
    let (ip, len) = parse_ipv6(buf.get(*i..)?).ok()?;
    if len > MAX_V6_TEXT || buf.get(*i + len) != Some(&b' ') {
        return None;
    }
    *i += len + 1;
    Some(Ipv6Addr::from(ip))
}

/// The precise parser: every rule, exact errors, incomplete vs invalid.
fn parse_precise(buf: &[u8]) -> Result<(Header<'_>, usize), Error> {
    let at_limit = buf.len() >= MAX_V1_LEN;
    let line = buf.get(..MAX_V1_LEN).unwrap_or(buf);
    let mut c = Cursor {
        line,
        pos: 0,
        at_limit,
    };
    c.literal(b"PROXY", |offset, byte| Error::NotProxyHeader {
        offset,
        byte,
    })?;
    c.space("a single space after `PROXY`")?;
    let proto = c.pos;
    let addrs = match c.peek()? {
        b'T' => {
            c.literal(b"TCP", |_, _| Error::V1Protocol { offset: proto })?;
            let family = c.peek()?;
            if family != b'4' && family != b'6' {
                return Err(Error::V1Protocol { offset: proto });
            }
            c.pos += 1;
            c.space("a single space after the protocol")?;
            if family == b'4' {
                let src = c.ipv4("source")?;
                c.space("a single space after the source address")?;
                let dst = c.ipv4("destination")?;
                c.space("a single space after the destination address")?;
                let sport = c.port("source")?;
                c.space("a single space after the source port")?;
                let dport = c.port("destination")?;
                c.crlf()?;
                V1Addrs::Tcp4(SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport))
            } else {
                let src = c.ipv6("source")?;
                c.space("a single space after the source address")?;
                let dst = c.ipv6("destination")?;
                c.space("a single space after the destination address")?;
                let sport = c.port("source")?;
                c.space("a single space after the source port")?;
                let dport = c.port("destination")?;
                c.crlf()?;
                V1Addrs::Tcp6(
                    SocketAddrV6::new(src, sport, 0, 0),
                    SocketAddrV6::new(dst, dport, 0, 0),
                )
            }
        }
        b'U' => {
            c.literal(b"UNKNOWN", |_, _| Error::V1Protocol { offset: proto })?;
            match c.peek()? {
                b'\r' => {}
                b' ' => {
                    // The rest of the line is ignored, up to the CRLF.
                    loop {
                        let b = c.peek()?;
                        if b == b'\r' {
                            break;
                        }
                        if b == b'\n' {
                            return Err(c.syntax(b, "CRLF, not a lone LF"));
                        }
                        c.pos += 1;
                    }
                }
                _ => return Err(Error::V1Protocol { offset: proto }),
            }
            let b = c.peek()?;
            c.pos += 1;
            let lf = c.peek()?;
            if b != b'\r' || lf != b'\n' {
                return Err(c.syntax(lf, "LF after CR"));
            }
            c.pos += 1;
            V1Addrs::Unknown
        }
        _ => return Err(Error::V1Protocol { offset: proto }),
    };
    let raw = line.get(..c.pos).unwrap_or(line);
    Ok((Header::V1(V1Header { raw, addrs }), c.pos))
}

/// Hex digit values; 0xFF for every other byte.
const HEX: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses the IPv6 text form (RFC 4291 section 2.2): eight groups of one to
/// four hex digits, at most one `::` standing for one or more zero groups,
/// optionally ending in a dotted IPv4 tail (no leading zeros). No zone.
///
/// The text ends at the end of `s` or at the first space; returns the
/// address and the length of the text.
pub(crate) fn parse_ipv6(s: &[u8]) -> Result<([u8; 16], usize), &'static str> {
    let at = |i: usize| s.get(i).copied().filter(|&b| b != b' ');
    let mut groups = [0u16; 8];
    let mut n = 0usize;
    let mut gap: Option<usize> = None;
    let mut i = 0usize;
    if at(0) == Some(b':') {
        if at(1) != Some(b':') {
            return Err("starts with a single colon");
        }
        gap = Some(0);
        i = 2;
        if at(2).is_none() {
            return Ok(([0; 16], 2));
        }
    }
    loop {
        let start = i;
        let mut value: u32 = 0;
        while let Some(d) = at(i).map(|b| HEX[usize::from(b)]).filter(|&d| d < 16) {
            if i - start == 4 {
                return Err("group longer than 4 hex digits");
            }
            value = (value << 4) | u32::from(d);
            i += 1;
        }
        if at(i) == Some(b'.') {
            if n > 6 {
                return Err("IPv4 tail after more than 6 groups");
            }
            let tail = s.get(start..).unwrap_or_default();
            let tail_len = tail
                .iter()
                .take(16)
                .position(|&b| b == b' ')
                .unwrap_or(tail.len());
            let [a, b, c, d] = tail
                .get(..tail_len)
                .and_then(parse_ipv4_text)
                .ok_or("invalid IPv4 tail")?;
            if let Some(pair) = groups.get_mut(n..n + 2) {
                pair.copy_from_slice(&[u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
            }
            n += 2;
            i = start + tail_len;
            break;
        }
        if i == start {
            return Err("empty group");
        }
        let Some(slot) = groups.get_mut(n) else {
            return Err("more than 8 groups");
        };
        *slot = value as u16;
        n += 1;
        match at(i) {
            None => break,
            Some(b':') => {}
            Some(_) => return Err("character not allowed in an IPv6 address"),
        }
        i += 1;
        if at(i) == Some(b':') {
            if gap.is_some() {
                return Err("more than one `::`");
            }
            gap = Some(n);
            i += 1;
            if at(i).is_none() {
                break;
            }
        } else if at(i).is_none() {
            return Err("ends with a single colon");
        }
    }
    match gap {
        None if n != 8 => return Err("fewer than 8 groups"),
        None => {}
        Some(_) if n > 7 => return Err("`::` must stand for at least one group"),
        Some(g) => {
            // Move the groups after the gap to the end.
            let tail = n - g;
            groups.copy_within(g..n, 8 - tail);
            for slot in groups.iter_mut().skip(g).take(8 - n) {
                *slot = 0;
            }
        }
    }
    let mut out = [0u8; 16];
    for (chunk, g) in out.chunks_exact_mut(2).zip(groups) {
        chunk.copy_from_slice(&g.to_be_bytes());
    }
    Ok((out, i))
}

/// A complete dotted quad, no leading zeros.
fn parse_ipv4_text(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for slot in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.first() == Some(&b'0')) {
            return None;
        }
        let mut v: u16 = 0;
        for &b in p {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u16::from(b - b'0');
        }
        *slot = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// Appends the v1 line for `addrs` (TCP4, TCP6, or UNKNOWN for
/// [`Addresses::Unspec`](crate::Addresses::Unspec)).
pub(crate) fn encode(addrs: &crate::Addresses, out: &mut Vec<u8>) -> Result<(), Error> {
    use std::io::Write;
    let r = match addrs {
        crate::Addresses::Unspec => write!(out, "PROXY UNKNOWN\r\n"),
        crate::Addresses::Tcp4 { src, dst } => write!(
            out,
            "PROXY TCP4 {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        ),
        crate::Addresses::Tcp6 { src, dst } => write!(
            out,
            "PROXY TCP6 {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        ),
        _ => {
            return Err(Error::Encode {
                reason: "v1 carries only TCP over IPv4/IPv6 or UNKNOWN",
            });
        }
    };
    r.map_err(|_| Error::Encode {
        reason: "writing to memory failed",
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The fast path never accepts what the precise parser rejects, and
        /// agrees with it on what it accepts.
        #[test]
        fn fast_path_is_a_subset(
            proto in prop_oneof![Just("TCP4"), Just("TCP6")],
            a in "[0-9a-fA-F:.]{0,12}",
            b in "[0-9a-fA-F:.]{0,12}",
            p in "[0-9+]{0,6}",
            q in "[0-9-]{0,6}",
            end in prop_oneof![Just("\r\n"), Just("\n"), Just("\r"), Just(" \r\n")],
        ) {
            let line = format!("PROXY {proto} {a} {b} {p} {q}{end}");
            let bytes = line.as_bytes();
            if let Some((addrs, len)) = super::fast(bytes) {
                let (h, used) = super::parse_precise(bytes).expect("fast accepted, precise rejected");
                prop_assert_eq!(used, len);
                let crate::Header::V1(v) = h else { unreachable!() };
                prop_assert_eq!(v.addrs, addrs);
            }
        }

        /// On arbitrary bytes after a `TCP4`/`TCP6` prefix (from an
        /// alphabet rich in separators, digits and zero bytes), the public
        /// parser, fast path included, gives exactly what the precise
        /// parser gives: same header, same length, same error.
        #[test]
        fn fast_and_precise_agree_on_arbitrary_bytes(
            proto in prop_oneof![Just(&b"PROXY TCP4 "[..]), Just(&b"PROXY TCP6 "[..])],
            body in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::sample::select(b"0123456789.: \r\n".to_vec()),
                    1 => proptest::sample::select(b"\0abcdefABCDEF+-%\x80\xff".to_vec()),
                    1 => any::<u8>(),
                ],
                0..120,
            ),
        ) {
            let mut line = proto.to_vec();
            line.extend_from_slice(&body);
            prop_assert_eq!(super::parse(&line), super::parse_precise(&line));
        }

        /// The same on lines that are valid but for one byte.
        #[test]
        fn fast_and_precise_agree_near_valid(
            a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), p in any::<u16>(), q in any::<u16>(),
            x in any::<u128>(), y in any::<u128>(), v6 in any::<bool>(),
            at in any::<prop::sample::Index>(),
            byte in proptest::sample::select(b"0123456789abcdefABCDEF:. \r\n\0\xff".to_vec()),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut line = if v6 {
                format!(
                    "PROXY TCP6 {} {} {p} {q}\r\nSSH-2.0-x\r\n",
                    std::net::Ipv6Addr::from(x),
                    std::net::Ipv6Addr::from(y)
                )
            } else {
                format!(
                    "PROXY TCP4 {} {} {p} {q}\r\nSSH-2.0-x\r\n",
                    std::net::Ipv4Addr::from(a),
                    std::net::Ipv4Addr::from(b)
                )
            }
            .into_bytes();
            let i = at.index(line.len());
            line[i] = byte;
            line.truncate(cut.index(line.len() + 1));
            prop_assert_eq!(super::parse(&line), super::parse_precise(&line));
        }

        #[test]
        fn fast_path_on_valid_addresses(a in any::<[u8; 4]>(), b in any::<u128>(), p in any::<u16>(), q in any::<u16>()) {
            let v4 = std::net::Ipv4Addr::from(a);
            let v6 = std::net::Ipv6Addr::from(b);
            for line in [
                format!("PROXY TCP4 {v4} {v4} {p} {q}\r\n"),
                format!("PROXY TCP6 {v6} {v6} {p} {q}\r\n"),
            ] {
                let fast = super::fast(line.as_bytes());
                prop_assert!(fast.is_some(), "{}", line);
                let (h, used) = super::parse_precise(line.as_bytes()).unwrap();
                let crate::Header::V1(v) = h else { unreachable!() };
                prop_assert_eq!(fast, Some((v.addrs, used)));
            }
        }
    }

    /// Every port text of one to six digits from 0 to 999999, with and without
    /// leading zeros, and each followed by the right and a wrong end byte:
    /// the window's port reader against `str::parse` and the no-leading-zero
    /// rule.
    #[test]
    fn window_port_reader_matches_a_reference_on_every_number() {
        let check = |text: &str| {
            for (end, good_end) in [(b' ', true), (b'\r', false), (b'.', false)] {
                let mut w = [0u8; super::WINDOW];
                w[3..3 + text.len()].copy_from_slice(text.as_bytes());
                w[3 + text.len()] = end;
                let mut i = 3;
                let got = super::w_port(&w, &mut i, b' ');
                let leading_zero = text.len() > 1 && text.starts_with('0');
                let want = text
                    .parse::<u16>()
                    .ok()
                    .filter(|_| good_end && !leading_zero && text.len() <= 5);
                assert_eq!(got, want, "{text:?} then {end}");
                if want.is_some() {
                    assert_eq!(i, 3 + text.len() + 1, "{text:?}");
                }
            }
        };
        for n in 0..1_000_000u32 {
            check(&n.to_string());
        }
        for n in 0..100_000u32 {
            check(&format!("0{n}"));
        }
        check("");
    }

    /// The window's IPv6 reader on the forms RFC 4291 allows and the ones it
    /// does not, against `std`'s parser: every address it returns is the one
    /// `std` reads, and it returns one for every form without an IPv4 tail.
    #[test]
    fn window_ipv6_reader_matches_std() {
        let accepted = [
            "::",
            "::1",
            "1::",
            "1::8",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6::8",
            "1::3:4:5:6:7:8",
            "0001:02:003::",
            "ABCD:ef01::a",
            "fe80::1:0:0:1",
            "0:0:0:0:0:0:0:0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::10",
        ];
        let refused = [
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "12345::",
            ":1::",
            "1:::2",
            "1:2:3:4:5:6:7",
            "::ffff:1.2.3.4",
            "1:",
            ":",
            "",
            "g::",
            "1:2:3:4::5:6:7:8",
            "::1:",
            "1::2:",
        ];
        let read = |text: &str| {
            let mut w = [0u8; super::WINDOW6];
            w[5..5 + text.len()].copy_from_slice(text.as_bytes());
            w[5 + text.len()] = b' ';
            let mut i = 5;
            let got = super::w_ipv6(&w, &mut i);
            (got, i)
        };
        for text in accepted {
            let want: std::net::Ipv6Addr = text.parse().unwrap();
            assert_eq!(read(text), (Some(want), 5 + text.len() + 1), "{text}");
        }
        for text in refused {
            assert_eq!(read(text), (None, 5), "{text}");
        }
    }
}
