//! The OpenSSH `source-address` critical option.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{Error, Result};

/// The longest entry sshd accepts: `INET6_ADDRSTRLEN` (46) plus `/128`
/// minus the terminating NUL.
pub const MAX_ENTRY_LEN: usize = 49;

/// The value of the `source-address` critical option: the networks a
/// certificate may be used from.
///
/// OpenSSH's format is a comma-separated list of entries, each an address
/// (`10.0.0.1`, meaning `/32` or `/128`) or a network (`10.0.0.0/8`). ippin
/// reads it strictly: one malformed entry makes the whole list, and so the
/// whole certificate, invalid — sshd does the same (`addr_match_cidr_list`
/// fails and the certificate is refused). Refused:
///
/// | entry | why |
/// |---|---|
/// | `` (empty, e.g. `a,,b` or a trailing comma) | empty entry |
/// | ` 10.0.0.1`, `10.0.0.1 ` | white space |
/// | `10.0.0.1/33`, `::/129` | prefix out of range |
/// | `10.0.0.1/24` | host bits set beyond the prefix |
/// | `010.0.0.1`, `10.0.0.1/024` | leading zeros |
/// | `fe80::1%eth0` | zone |
/// | `10.0.0.*`, `10.0.0.?` | wildcard |
/// | `!10.0.0.1` | negation |
/// | `::ffff:10.0.0.1`, `::ffff:0:0/96` | IPv4-mapped IPv6 (see below) |
/// | `0.0.0.0/0`, `::/0` | prefix length 0 (see below) |
/// | `127.1`, `0177.0.0.1`, `0x7f.0.0.1` | not four dotted decimal octets |
/// | `10.0.0.0/8/8`, `10.0.0.0/+8` | prefix not a decimal number |
/// | longer than 49 characters | too long (sshd's limit) |
///
/// IPv6 entries may use any RFC 4291 spelling (upper case, uncompressed), as
/// sshd accepts them; [`fmt::Display`] writes them back in RFC 5952 form.
///
/// **IPv4-mapped entries.** sshd turns an IPv4-mapped client address into
/// plain IPv4 before matching, so an entry `::ffff:a.b.c.d/128` matches no
/// client at all in sshd. ippin compares canonical IPs too, and refuses such
/// an entry outright rather than silently matching nothing (or silently
/// matching the IPv4 client, which sshd would not do): the certificate
/// fails closed in both verifiers, and the mistake is visible.
///
/// **Prefix length 0.** sshd accepts `0.0.0.0/0` and `::/0` (every
/// address of a family). ippin refuses them: a certificate that carries
/// `source-address` is a pinned certificate to ippin's policy, and a list
/// that matches the whole Internet would satisfy "must be pinned" while
/// pinning nothing. A certificate meant for every address leaves the
/// option out. (ippin issues `/32` and `/128`, or one network of a role's
/// `pin_source_ip_prefix`.)
///
/// **Shorthand IPv4.** sshd parses addresses with `getaddrinfo`, which also
/// reads `127.1`, `0177.0.0.1` (octal) and `0x7f.0.0.1` (hex) as
/// 127.0.0.1. ippin refuses them (fail closed: sshd would accept, ippin
/// refuses, neither reads another address).
///
/// [`SourceAddress::matches`] canonicalises the client IP first (an
/// IPv4-mapped client from a dual-stack socket is matched as IPv4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceAddress(Vec<IpNet>);

impl SourceAddress {
    /// Parses an OpenSSH `source-address` list strictly.
    ///
    /// # Errors
    /// [`Error::SourceAddressEntry`] for the first malformed entry.
    pub fn parse(list: &str) -> Result<SourceAddress> {
        let mut nets = Vec::new();
        for entry in list.split(',') {
            let net = parse_entry(entry).map_err(|reason| Error::SourceAddressEntry {
                entry: crate::error::shown(entry),
                reason,
            })?;
            nets.push(net);
        }
        Ok(SourceAddress(nets))
    }

    /// A list of one host: `ip/32` or `ip/128` (the ippin pin). The IP is
    /// canonicalised first.
    pub fn single(ip: IpAddr) -> SourceAddress {
        SourceAddress(vec![IpNet::from(ip.to_canonical())])
    }

    /// A list made of `nets`, checked with the same rules as
    /// [`SourceAddress::parse`].
    ///
    /// # Errors
    /// [`Error::SourceAddressEntry`] when the list is empty, a network has
    /// host bits set, prefix length 0, or is IPv4-mapped.
    pub fn from_nets(nets: Vec<IpNet>) -> Result<SourceAddress> {
        if nets.is_empty() {
            return Err(Error::SourceAddressEntry {
                entry: String::new(),
                reason: "empty entry",
            });
        }
        for net in &nets {
            check_net(*net).map_err(|reason| Error::SourceAddressEntry {
                entry: net.to_string(),
                reason,
            })?;
        }
        Ok(SourceAddress(nets))
    }

    /// Whether `ip` (canonicalised first) is inside one of the networks.
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The networks, in list order.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// The single host this list pins to, when it is exactly one `/32` or
    /// `/128` entry (the form ippin and Teleport issue).
    pub fn single_host(&self) -> Option<IpAddr> {
        match self.0.as_slice() {
            [net] if net.prefix_len() == net.max_prefix_len() => Some(net.addr()),
            _ => None,
        }
    }
}

impl fmt::Display for SourceAddress {
    /// Writes the list as OpenSSH reads it: `addr/len` entries separated by
    /// commas, IPv6 in RFC 5952 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}/{}", net.addr(), net.prefix_len())?;
        }
        Ok(())
    }
}

impl FromStr for SourceAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<SourceAddress> {
        SourceAddress::parse(s)
    }
}

fn check_net(net: IpNet) -> Result<(), &'static str> {
    if net.prefix_len() == 0 {
        return Err("prefix length 0 matches every address, which pins nothing");
    }
    if net.trunc() != net {
        return Err("host bits set beyond the prefix");
    }
    if let IpNet::V6(v6) = net
        && v6.addr().to_ipv4_mapped().is_some()
    {
        return Err("IPv4-mapped IPv6 address; write the IPv4 address instead");
    }
    Ok(())
}

fn parse_entry(entry: &str) -> Result<IpNet, &'static str> {
    if entry.is_empty() {
        return Err("empty entry");
    }
    if let Some(c) = entry
        .chars()
        .find(|c| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/')))
    {
        return Err(match c {
            c if c.is_whitespace() => "white space",
            '%' => "zone not allowed",
            '*' | '?' => "wildcards not allowed",
            '!' => "negation not allowed",
            '[' | ']' => "brackets not allowed",
            _ => "invalid character",
        });
    }
    if entry.len() > MAX_ENTRY_LEN {
        return Err("entry too long");
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let ip = parse_addr(addr)?;
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = match prefix {
        None => max,
        Some(p) => parse_prefix(p, max)?,
    };
    let net = match ip {
        IpAddr::V4(v4) => Ipv4Net::new(v4, len).map(IpNet::V4),
        IpAddr::V6(v6) => Ipv6Net::new(v6, len).map(IpNet::V6),
    }
    .map_err(|_| "prefix out of range")?;
    check_net(net)?;
    Ok(net)
}

fn parse_addr(addr: &str) -> Result<IpAddr, &'static str> {
    if addr.is_empty() {
        return Err("missing address");
    }
    if addr.contains(':') {
        return addr
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "not an IPv6 address");
    }
    if addr.split('.').count() == 4 && addr.split('.').any(|o| o.len() > 1 && o.starts_with('0')) {
        return Err("leading zeros");
    }
    addr.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| "not an IPv4 address (four dotted decimal octets)")
}

fn parse_prefix(prefix: &str, max: u8) -> Result<u8, &'static str> {
    if prefix.is_empty() {
        return Err("missing prefix length after `/`");
    }
    if !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err("prefix length is not a decimal number");
    }
    if prefix.len() > 1 && prefix.starts_with('0') {
        return Err("leading zeros");
    }
    match prefix.parse::<u8>() {
        Ok(len) if len <= max => Ok(len),
        _ => Err("prefix out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(list: &str) -> &'static str {
        match SourceAddress::parse(list) {
            Err(Error::SourceAddressEntry { reason, .. }) => reason,
            other => panic!("{list}: expected a malformed entry, got {other:?}"),
        }
    }

    #[test]
    fn every_rejection_rule() {
        assert_eq!(reason(""), "empty entry");
        assert_eq!(reason("10.0.0.1,,10.0.0.2"), "empty entry");
        assert_eq!(reason("10.0.0.1,"), "empty entry");
        assert_eq!(reason("10.0.0.1, 10.0.0.2"), "white space");
        assert_eq!(reason("10.0.0.1 "), "white space");
        assert_eq!(reason("10.0.0.1/33"), "prefix out of range");
        assert_eq!(reason("::/129"), "prefix out of range");
        assert_eq!(reason("10.0.0.1/999"), "prefix out of range");
        assert_eq!(reason("10.0.0.1/24"), "host bits set beyond the prefix");
        assert_eq!(reason("2001:db8::1/64"), "host bits set beyond the prefix");
        assert_eq!(reason("010.0.0.1"), "leading zeros");
        assert_eq!(reason("10.0.0.0/08"), "leading zeros");
        assert_eq!(reason("fe80::1%eth0"), "zone not allowed");
        assert_eq!(reason("10.0.0.*"), "wildcards not allowed");
        assert_eq!(reason("10.0.0.?"), "wildcards not allowed");
        assert_eq!(reason("!10.0.0.1"), "negation not allowed");
        assert_eq!(reason("[::1]"), "brackets not allowed");
        assert_eq!(
            reason("::ffff:10.0.0.1"),
            "IPv4-mapped IPv6 address; write the IPv4 address instead"
        );
        assert_eq!(
            reason("::ffff:10.0.0.1/128"),
            "IPv4-mapped IPv6 address; write the IPv4 address instead"
        );
        assert_eq!(
            reason("::ffff:0:0/96"),
            "IPv4-mapped IPv6 address; write the IPv4 address instead"
        );
        assert_eq!(
            reason("10.0.0"),
            "not an IPv4 address (four dotted decimal octets)"
        );
        assert_eq!(reason("10.0.0.1/"), "missing prefix length after `/`");
        assert_eq!(reason("/8"), "missing address");
        assert_eq!(
            reason("10.0.0.0/8/8"),
            "prefix length is not a decimal number"
        );
        assert_eq!(reason("1:2:3:4:5:6:7:8:9"), "not an IPv6 address");
        let not_v4 = "not an IPv4 address (four dotted decimal octets)";
        assert_eq!(reason("127.1"), not_v4);
        assert_eq!(reason("127.0.1"), not_v4);
        assert_eq!(reason("0177.0.0.1"), "leading zeros");
        assert_eq!(reason("0x7f.0.0.1"), "invalid character");
        assert_eq!(reason("2130706433"), not_v4);
        assert_eq!(
            reason("1.2.3.4/32/32"),
            "prefix length is not a decimal number"
        );
        assert_eq!(reason("1.2.3.4/+32"), "invalid character");
        assert_eq!(reason("1.2.3.4/-1"), "invalid character");
        assert_eq!(reason("1.2.3.4/0x20"), "invalid character");
        assert_eq!(reason("1.2.3.256"), not_v4);
        assert_eq!(reason("1.2.3.4.5"), not_v4);
        assert_eq!(reason("1.2.3.4\t"), "white space");
        assert_eq!(reason("1.2.3.4\n"), "white space");
        assert_eq!(reason("1.2.3.4\0"), "invalid character");
        assert_eq!(reason("1.2.3.4;5.6.7.8"), "invalid character");
        assert_eq!(reason("1.2.3.4 5.6.7.8"), "white space");
        assert_eq!(reason("localhost"), "invalid character");
        assert_eq!(reason("fe80::1%25eth0"), "zone not allowed");
        assert_eq!(reason(":::1"), "not an IPv6 address");
        assert_eq!(
            reason("2001:db8::1/128/"),
            "prefix length is not a decimal number"
        );
        assert_eq!(reason("2001:db8::/0032"), "leading zeros");
        assert_eq!(
            reason("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa/128"),
            "entry too long"
        );
    }

    #[test]
    fn ipv6_hex_case_is_free_and_canonicalised() {
        for spelling in [
            "2001:DB8::7",
            "2001:db8::7",
            "2001:Db8:0:0:0:0:0:7",
            "2001:0db8:0000:0000:0000:0000:0000:0007/128",
        ] {
            let list = SourceAddress::parse(spelling).unwrap();
            assert_eq!(list.to_string(), "2001:db8::7/128", "{spelling}");
            assert_eq!(list.single_host(), Some("2001:db8::7".parse().unwrap()));
        }
    }

    #[test]
    fn one_bad_entry_spoils_the_list() {
        let err = SourceAddress::parse("10.0.0.1/32,10.0.0.1/33").unwrap_err();
        assert_eq!(
            err.to_string(),
            "source-address entry `10.0.0.1/33`: prefix out of range"
        );
    }

    #[test]
    fn matching() {
        let list = SourceAddress::parse("10.0.0.0/8,192.0.2.7,2001:DB8::/32").unwrap();
        assert!(list.matches("10.1.2.3".parse().unwrap()));
        assert!(list.matches("192.0.2.7".parse().unwrap()));
        assert!(!list.matches("192.0.2.8".parse().unwrap()));
        assert!(list.matches("2001:db8:ffff::1".parse().unwrap()));
        assert!(!list.matches("2001:db9::1".parse().unwrap()));
        // an IPv4-mapped client is matched as the IPv4 address it is
        assert!(list.matches("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!list.matches("::ffff:11.9.9.9".parse().unwrap()));
        assert_eq!(list.to_string(), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32");
        assert_eq!(list.single_host(), None);
    }

    #[test]
    fn zero_prefix_refused_and_single_hosts() {
        let zero = "prefix length 0 matches every address, which pins nothing";
        assert_eq!(reason("0.0.0.0/0"), zero);
        assert_eq!(reason("::/0"), zero);
        assert_eq!(reason("10.0.0.1,0.0.0.0/0"), zero);
        assert!(SourceAddress::from_nets(vec!["0.0.0.0/0".parse().unwrap()]).is_err());
        let any_a = SourceAddress::parse("0.0.0.0/1,128.0.0.0/1").unwrap();
        assert!(any_a.matches("203.0.113.9".parse().unwrap()));
        assert!(!any_a.matches("2001:db8::1".parse().unwrap()));
        assert_eq!(any_a.single_host(), None);
        let host = SourceAddress::parse("2001:db8::7/128").unwrap();
        assert_eq!(host.single_host(), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(
            SourceAddress::single("::ffff:1.2.3.4".parse().unwrap()).to_string(),
            "1.2.3.4/32"
        );
    }

    #[test]
    fn from_nets_checks_like_parse() {
        assert!(SourceAddress::from_nets(vec![]).is_err());
        assert!(SourceAddress::from_nets(vec!["10.0.0.1/8".parse().unwrap()]).is_err());
        assert!(SourceAddress::from_nets(vec!["10.0.0.0/8".parse().unwrap()]).is_ok());
    }
}
