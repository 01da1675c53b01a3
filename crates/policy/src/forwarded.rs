//! The client address from `X-Forwarded-For` and RFC 7239 `Forwarded` headers.
//!
//! Only for listeners that enable `trust_x_forwarded_for`. Two modes:
//!
//! * [`ForwardedMode::EveryPeerIsAProxy`] (the existing system's strict form): exactly one
//!   header line holding exactly one value, `ip`, `ip:port` or `[v6]:port` (in `Forwarded`:
//!   one element whose `for=` is one of those).
//!   Anything else — two lines, a list, `unknown`, an obfuscated name, junk — is a client
//!   error. Enabling this mode states that every peer of the listener is a trusted proxy, so
//!   a request with no header names no client: an untrusted observation of the peer (port 0),
//!   like a PROXY `LOCAL` header. Prefer the next mode.
//! * [`ForwardedMode::TrustedProxies`]: the chain is every header line's entries in order,
//!   then the socket peer as the last hop. If the peer is not inside a trusted network, no
//!   header is believed and the peer is the client (a direct client). Otherwise the chain is
//!   read from the right, at most `hops` entries deep: a trusted entry is the next proxy and
//!   the reading goes on; the first entry outside the trusted networks is the client, and so
//!   is the entry at depth `hops`, trusted or not. Entries further left were written by the
//!   client (or by a proxy the operator did not declare) and are never believed. With
//!   `hops` = 1 a client inside the trusted networks that goes through the proxy cannot
//!   prefix an entry and be believed. With `hops` above 1 every address of `proxies` is
//!   believed as a proxy reporting the entry to its left, so a client inside a trusted
//!   *network* that reaches the last proxy directly could name any address: for chains,
//!   list each proxy's own address (the reference server refuses networks there).
//!   `unknown`, an obfuscated identifier (`_hidden`) or a `Forwarded` element without `for=`
//!   reached gives an untrusted observation with no address. A chain that ends before a
//!   client was found (no header at all from a trusted peer, or only trusted entries fewer
//!   than `hops`) gives an untrusted observation of the last proxy: a proxy's own address
//!   never pins. Any malformed entry, wherever it stands, is an error.
//!
//! | peer trusted | entries, right to left (`hops` = 1) | result |
//! |---|---|---|
//! | no | anything | the peer, `direct`, trusted |
//! | yes | none | the peer, untrusted (port 0) |
//! | yes | `C` (any address) | `C`, `forwarded`, trusted |
//! | yes | `unknown` | no address, untrusted |
//! | yes | `X, C` (`X` written by the client) | `C`: `X` is never read |
//!
//! Entries without a port take the socket peer's port, so that a believed address is not
//! mistaken for the port-0 "untrusted" form; the port plays no other part in decisions.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::Error;
use crate::addr::{ObservedAddr, Provenance, canonical_ip, canonical_net};
use crate::yaml::Clipped;

/// Most bytes accepted across all lines of one forwarded header.
pub const MAX_FORWARDED_BYTES: usize = 8 * 1024;
/// Most hops (entries) accepted in one forwarded header.
pub const MAX_FORWARDED_HOPS: usize = 32;

const XFF: &str = "X-Forwarded-For";
const FWD: &str = "Forwarded";

/// How forwarded headers are believed on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedMode {
    /// **Every peer of the listener is a trusted proxy**: whoever connects names the client
    /// address, so use it only on a listener nothing but your proxies can reach. One line,
    /// one value; anything else is a client error (the existing system's strict form). A
    /// listener reachable by clients directly wants [`ForwardedMode::TrustedProxies`]. See
    /// the module docs.
    EveryPeerIsAProxy,
    /// The chain read from the right, at most `hops` entries deep, skipping entries inside
    /// `proxies` (compared canonically: an IPv4 network also covers IPv4-mapped IPv6 hops).
    /// See the module docs.
    TrustedProxies {
        /// The networks of the HTTP proxies.
        proxies: Vec<IpNet>,
        /// How many entries, counted from the right, trusted proxies write: 1 when one
        /// proxy stands in front of the service. Clamped to `1..=`[`MAX_FORWARDED_HOPS`].
        hops: usize,
    },
}

impl ForwardedMode {
    /// [`ForwardedMode::TrustedProxies`] with one proxy in front (`hops` = 1): only the entry
    /// the socket peer wrote is read.
    pub fn trusted_proxies(proxies: Vec<IpNet>) -> Self {
        ForwardedMode::TrustedProxies { proxies, hops: 1 }
    }

    /// Whether a connection from `peer` is one whose forwarded headers this mode believes:
    /// a proxy's, carrying other clients' requests (every peer in
    /// [`ForwardedMode::EveryPeerIsAProxy`]). Compared canonically, as the headers are. A
    /// caller that serves something to "local clients only" must not count such a
    /// connection as local, even from a loopback address.
    ///
    /// ```
    /// use ippin_policy::ForwardedMode;
    /// let mode = ForwardedMode::trusted_proxies(vec!["::ffff:127.0.0.1/128".parse().unwrap()]);
    /// assert!(mode.believes("127.0.0.1".parse().unwrap()));
    /// assert!(!mode.believes("127.0.0.2".parse().unwrap()));
    /// assert!(ForwardedMode::EveryPeerIsAProxy.believes("192.0.2.1".parse().unwrap()));
    /// ```
    pub fn believes(&self, peer: IpAddr) -> bool {
        match self {
            ForwardedMode::EveryPeerIsAProxy => true,
            ForwardedMode::TrustedProxies { proxies, .. } => trusted_by(proxies, peer),
        }
    }
}

/// One entry of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// An address, with its port when given.
    Addr(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier, or no `for=`.
    Unknown,
}

fn err(header: &'static str, reason: impl Into<String>) -> Error {
    Error::Forwarded {
        header,
        reason: reason.into(),
    }
}

fn check_size(header: &'static str, lines: &[&str]) -> Result<(), Error> {
    let total = lines
        .iter()
        .fold(0usize, |acc, l| acc.saturating_add(l.len()));
    if total > MAX_FORWARDED_BYTES {
        return Err(err(
            header,
            format!("{total} bytes, at most {MAX_FORWARDED_BYTES} accepted"),
        ));
    }
    Ok(())
}

fn check_hops(header: &'static str, n: usize) -> Result<(), Error> {
    if n > MAX_FORWARDED_HOPS {
        return Err(err(header, format!("more than {MAX_FORWARDED_HOPS} hops")));
    }
    Ok(())
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `1*5DIGIT` with value at most 65535.
fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {:?}: expected 1 to 5 digits", Clipped(s)));
    }
    s.parse::<u16>()
        .map_err(|_| format!("port {:?}: above 65535", Clipped(s)))
}

/// `ip`, `ip:port`, `[v6]` or `[v6]:port`, with a bare IPv6 address also accepted when
/// `bare_v6` (X-Forwarded-For writes them so).
fn parse_addr(s: &str, bare_v6: bool) -> Result<(IpAddr, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(format!("{:?}: `[` without `]`", Clipped(s)));
        };
        let v6: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("{:?}: not an IPv6 address", Clipped(inner)))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(parse_port(p)?),
                None => {
                    return Err(format!("{:?}: unexpected text after `]`", Clipped(s)));
                }
            },
        };
        return Ok((IpAddr::V6(v6), port));
    }
    match s.matches(':').count() {
        0 => s
            .parse::<std::net::Ipv4Addr>()
            .map(|v4| (IpAddr::V4(v4), None))
            .map_err(|_| format!("{:?}: not an IPv4 address", Clipped(s))),
        1 => {
            let (ip, port) = s.split_once(':').unwrap_or((s, ""));
            let v4: std::net::Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("{:?}: not an IPv4 address", Clipped(ip)))?;
            Ok((IpAddr::V4(v4), Some(parse_port(port)?)))
        }
        _ if bare_v6 => s
            .parse::<Ipv6Addr>()
            .map(|v6| (IpAddr::V6(v6), None))
            .map_err(|_| format!("{:?}: not an IP address", Clipped(s))),
        _ => Err(format!(
            "{:?}: an IPv6 address must be in brackets",
            Clipped(s)
        )),
    }
}

/// Splits X-Forwarded-For lines into hops. `allow_unknown` accepts the `unknown` token.
fn xff_hops(lines: &[&str], allow_unknown: bool) -> Result<Vec<Hop>, Error> {
    check_size(XFF, lines)?;
    let mut hops = Vec::new();
    for line in lines {
        for raw in line.split(',') {
            check_hops(XFF, hops.len() + 1)?;
            let entry = raw.trim_matches(is_ows);
            if entry.is_empty() {
                return Err(err(XFF, format!("empty entry in {:?}", Clipped(line))));
            }
            if allow_unknown && entry.eq_ignore_ascii_case("unknown") {
                hops.push(Hop::Unknown);
                continue;
            }
            let (ip, port) = parse_addr(entry, true).map_err(|e| err(XFF, e))?;
            hops.push(Hop::Addr(ip, port));
        }
    }
    Ok(hops)
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_obf(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('_')
        && s.chars()
            .skip(1)
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

/// RFC 7239 `node`: `nodename [ ":" node-port ]`, where `nodename` is an IPv4 address, a
/// bracketed IPv6 address, `unknown` or an obfuscated `_name`, and `node-port` is a port or an
/// obfuscated `_name`.
fn parse_node(value: &str, allow_unknown: bool) -> Result<Hop, String> {
    let (v6, name, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(format!("{:?}: `[` without `]`", Clipped(value)));
        };
        let port = match after {
            "" => None,
            a => match a.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("{:?}: unexpected text after `]`", Clipped(value))),
            },
        };
        (true, inner, port)
    } else {
        match value.split_once(':') {
            Some((n, p)) => (false, n, Some(p)),
            None => (false, value, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if is_obf(p) => None,
        Some(p) => Some(parse_port(p)?),
    };
    if !v6 && (name.eq_ignore_ascii_case("unknown") || is_obf(name)) {
        return if allow_unknown {
            Ok(Hop::Unknown)
        } else {
            Err(format!(
                "{:?}: no address (`unknown` or obfuscated) is not accepted in compatible strict mode",
                Clipped(value)
            ))
        };
    }
    let ip = if v6 {
        name.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("{:?}: not an IPv6 address", Clipped(name)))?
    } else {
        name.parse::<std::net::Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| {
                format!(
                    "{:?}: not an IPv4 address, a bracketed IPv6 address, `unknown` or `_name`",
                    Clipped(name)
                )
            })?
    };
    Ok(Hop::Addr(ip, port))
}

/// Splits `Forwarded` lines into elements and returns each element's hop.
fn forwarded_hops(lines: &[&str], allow_unknown: bool) -> Result<Vec<Hop>, Error> {
    check_size(FWD, lines)?;
    let mut hops = Vec::new();
    for line in lines {
        let mut chars = line.char_indices().peekable();
        // One element per iteration.
        loop {
            check_hops(FWD, hops.len() + 1)?;
            let mut seen: Vec<String> = Vec::new();
            let mut node: Option<Hop> = None;
            let mut comma = false;
            // One pair per iteration.
            loop {
                while chars.peek().is_some_and(|&(_, c)| is_ows(c)) {
                    chars.next();
                }
                let start = chars.peek().map_or(line.len(), |&(i, _)| i);
                while chars.peek().is_some_and(|&(_, c)| is_tchar(c)) {
                    chars.next();
                }
                let end = chars.peek().map_or(line.len(), |&(i, _)| i);
                let name = line.get(start..end).unwrap_or_default();
                if name.is_empty() {
                    return Err(err(
                        FWD,
                        format!(
                            "expected a parameter name at byte {start} of {:?}",
                            Clipped(line)
                        ),
                    ));
                }
                if chars.next().map(|(_, c)| c) != Some('=') {
                    return Err(err(
                        FWD,
                        format!("parameter {:?}: expected `=`", Clipped(name)),
                    ));
                }
                let lower = name.to_ascii_lowercase();
                if seen.contains(&lower) {
                    return Err(err(
                        FWD,
                        format!("parameter {:?} repeated in one element", Clipped(name)),
                    ));
                }
                seen.push(lower.clone());
                let value: String = if chars.peek().is_some_and(|&(_, c)| c == '"') {
                    chars.next();
                    let mut v = String::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(err(
                                    FWD,
                                    format!(
                                        "parameter {:?}: unterminated quoted string",
                                        Clipped(name)
                                    ),
                                ));
                            }
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, c))
                                    if c == '\t'
                                        || c == ' '
                                        || (c.is_ascii() && !c.is_ascii_control()) =>
                                {
                                    v.push(c)
                                }
                                _ => {
                                    return Err(err(
                                        FWD,
                                        format!(
                                            "parameter {:?}: bad escape in quoted string",
                                            Clipped(name)
                                        ),
                                    ));
                                }
                            },
                            Some((_, c))
                                if c == '\t'
                                    || c == ' '
                                    || (c.is_ascii() && !c.is_ascii_control()) =>
                            {
                                v.push(c)
                            }
                            Some((_, c)) => {
                                return Err(err(
                                    FWD,
                                    format!(
                                        "parameter {:?}: character {c:?} not allowed in a quoted string",
                                        Clipped(name)
                                    ),
                                ));
                            }
                        }
                    }
                    v
                } else {
                    let vstart = chars.peek().map_or(line.len(), |&(i, _)| i);
                    while chars.peek().is_some_and(|&(_, c)| is_tchar(c)) {
                        chars.next();
                    }
                    let vend = chars.peek().map_or(line.len(), |&(i, _)| i);
                    let v = line.get(vstart..vend).unwrap_or_default();
                    if v.is_empty() {
                        return Err(err(
                            FWD,
                            format!(
                                "parameter {:?}: empty or invalid value (an IPv6 address must be quoted)",
                                Clipped(name)
                            ),
                        ));
                    }
                    v.to_owned()
                };
                if lower == "for" {
                    node = Some(
                        parse_node(&value, allow_unknown)
                            .map_err(|e| err(FWD, format!("for={e}")))?,
                    );
                }
                while chars.peek().is_some_and(|&(_, c)| is_ows(c)) {
                    chars.next();
                }
                match chars.next() {
                    Some((_, ';')) => continue,
                    Some((_, ',')) => {
                        comma = true;
                        break;
                    }
                    None => break,
                    Some((i, c)) => {
                        return Err(err(
                            FWD,
                            format!("unexpected {c:?} at byte {i} of {:?}", Clipped(line)),
                        ));
                    }
                }
            }
            hops.push(node.unwrap_or(Hop::Unknown));
            if !comma {
                break;
            }
            if chars.clone().all(|(_, c)| is_ows(c)) {
                return Err(err(
                    FWD,
                    format!("empty element at the end of {:?}", Clipped(line)),
                ));
            }
        }
    }
    Ok(hops)
}

fn strict(
    header: &'static str,
    lines: &[&str],
    peer: SocketAddr,
    hops: impl FnOnce(&[&str]) -> Result<Vec<Hop>, Error>,
) -> Result<ObservedAddr, Error> {
    match lines.len() {
        // Every peer is a proxy in this mode: one that names no client is not a client.
        0 => {
            return Ok(ObservedAddr::untrusted(
                peer.ip(),
                Provenance::ForwardedHeader,
            ));
        }
        1 => {}
        n => {
            return Err(err(
                header,
                format!("expected exactly one header line, found {n}"),
            ));
        }
    }
    let hops = hops(lines)?;
    match hops.as_slice() {
        [Hop::Addr(ip, port)] => Ok(believed(*ip, *port, peer)),
        [Hop::Unknown] => Err(err(header, "no `for=` address in the element")),
        other => Err(err(
            header,
            format!("expected exactly one value, found {}", other.len()),
        )),
    }
}

fn believed(ip: IpAddr, port: Option<u16>, peer: SocketAddr) -> ObservedAddr {
    ObservedAddr::new(
        SocketAddr::new(ip, port.unwrap_or(peer.port())),
        Provenance::ForwardedHeader,
        true,
    )
}

/// Whether `ip` is inside one of `proxies`, compared canonically.
fn trusted_by(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    proxies.iter().any(|n| canonical_net(*n).contains(&ip))
}

fn chain(hops: &[Hop], peer: SocketAddr, proxies: &[IpNet], depth: usize) -> ObservedAddr {
    let trusted = |ip: IpAddr| trusted_by(proxies, ip);
    if !trusted(peer.ip()) {
        return ObservedAddr::new(peer, Provenance::Direct, true);
    }
    let depth = depth.clamp(1, MAX_FORWARDED_HOPS);
    // The last proxy read so far: it reported the entries left of it.
    let mut reporter = peer.ip();
    for (i, hop) in hops.iter().rev().take(depth).enumerate() {
        match hop {
            Hop::Unknown => return ObservedAddr::unknown(Provenance::ForwardedHeader),
            Hop::Addr(ip, port) if !trusted(*ip) || i + 1 == depth => {
                return believed(*ip, *port, peer);
            }
            Hop::Addr(ip, _) => reporter = *ip,
        }
    }
    // The chain ended on a trusted proxy that named no client.
    ObservedAddr::untrusted(reporter, Provenance::ForwardedHeader)
}

/// The client address from the `X-Forwarded-For` header lines of a request (in order; an empty
/// slice when there is none) received from socket peer `peer`. See the module docs for the two
/// modes. Errors are client errors (answer 400).
pub fn client_from_x_forwarded_for(
    header_lines: &[&str],
    peer: SocketAddr,
    mode: &ForwardedMode,
) -> Result<ObservedAddr, Error> {
    match mode {
        ForwardedMode::EveryPeerIsAProxy => strict(XFF, header_lines, peer, |l| xff_hops(l, false)),
        // A peer that is not a proxy is the client: its headers are not read (nor parsed, so
        // that a header nobody believes cannot get a direct client refused).
        ForwardedMode::TrustedProxies { proxies, .. } if !trusted_by(proxies, peer.ip()) => {
            Ok(ObservedAddr::new(peer, Provenance::Direct, true))
        }
        ForwardedMode::TrustedProxies {
            proxies,
            hops: depth,
        } => {
            let hops = xff_hops(header_lines, true)?;
            Ok(chain(&hops, peer, proxies, *depth))
        }
    }
}

/// The client address from the RFC 7239 `Forwarded` header lines of a request (in order; an
/// empty slice when there is none) received from socket peer `peer`. Only `for=` is read;
/// other parameters are checked for syntax and ignored. See the module docs for the modes.
pub fn client_from_forwarded(
    header_lines: &[&str],
    peer: SocketAddr,
    mode: &ForwardedMode,
) -> Result<ObservedAddr, Error> {
    match mode {
        ForwardedMode::EveryPeerIsAProxy => {
            strict(FWD, header_lines, peer, |l| forwarded_hops(l, false))
        }
        // A peer that is not a proxy is the client: its headers are not read (nor parsed, so
        // that a header nobody believes cannot get a direct client refused).
        ForwardedMode::TrustedProxies { proxies, .. } if !trusted_by(proxies, peer.ip()) => {
            Ok(ObservedAddr::new(peer, Provenance::Direct, true))
        }
        ForwardedMode::TrustedProxies {
            proxies,
            hops: depth,
        } => {
            let hops = forwarded_hops(header_lines, true)?;
            Ok(chain(&hops, peer, proxies, *depth))
        }
    }
}
