//! The one canonical text form of an IP address.
//!
//! IPv4: dotted decimal without leading zeros. IPv6: RFC 5952 (lower case,
//! longest run of zero groups compressed), which is what `Ipv6Addr`'s
//! `Display` writes. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is not
//! canonical: its canonical form is the IPv4 address. No port, zone,
//! brackets or white space.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Error, Result};

/// The canonical form of `ip`: IPv4-mapped IPv6 addresses become IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Parses `text` when it is the canonical text of an IP address, and says
/// why not otherwise (a short reason, without the text).
pub(crate) fn parse_canonical_reason(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| "not an IP address (dotted-decimal IPv4 or RFC 5952 IPv6)".to_owned())?;
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(format!(
            "IPv4-mapped IPv6 address; the canonical form is `{v4}`"
        ));
    }
    let canonical = match ip {
        // The standard parser takes exactly four decimal octets; the one
        // other spelling of the same address has leading zeros, which it
        // also refuses (checked again here, without formatting).
        IpAddr::V4(_) => !text
            .split('.')
            .any(|octet| octet.len() > 1 && octet.starts_with('0')),
        IpAddr::V6(_) => displays_as(ip, text),
    };
    if !canonical {
        return Err(format!("not canonical; the canonical form is `{ip}`"));
    }
    Ok(ip)
}

/// Whether `ip`'s `Display` form is exactly `text`, without allocating
/// (this runs on every certificate check).
fn displays_as(ip: IpAddr, text: &str) -> bool {
    use std::fmt::Write as _;

    /// Compares what is written against `rest`, consuming it.
    struct Compare<'a> {
        rest: &'a [u8],
    }
    impl std::fmt::Write for Compare<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match self.rest.strip_prefix(s.as_bytes()) {
                Some(rest) => {
                    self.rest = rest;
                    Ok(())
                }
                None => Err(std::fmt::Error),
            }
        }
    }
    let mut c = Compare {
        rest: text.as_bytes(),
    };
    write!(c, "{ip}").is_ok() && c.rest.is_empty()
}

/// Parses `text` when it is the canonical text of an IP address.
///
/// `field` names where the text came from, for the error message.
///
/// # Errors
/// [`Error::IpText`] when `text` is not an IP address or not its canonical
/// form.
pub fn parse_canonical_ip(field: &'static str, text: &str) -> Result<IpAddr> {
    parse_canonical_reason(text).map_err(|reason| Error::IpText {
        field,
        text: crate::error::shown(text),
        reason,
    })
}

/// Parses the canonical text of a pin and says why not otherwise: one
/// address is its canonical IP text (`192.0.2.7`, `2001:db8::7`, never
/// with `/32` or `/128`); a network is `<canonical network address>/<len>`
/// with `len` from 1 to 31 (IPv4) or 127 (IPv6) in decimal without leading
/// zeros or sign, and every host bit zero (`2001:db8:1:2::/64`).
pub(crate) fn parse_canonical_net_reason(text: &str) -> Result<IpNet, String> {
    let Some((addr, len)) = text.split_once('/') else {
        return parse_canonical_reason(text).map(IpNet::from);
    };
    let ip = parse_canonical_reason(addr)?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_empty()
        || len.len() > 3
        || !len.bytes().all(|b| b.is_ascii_digit())
        || (len.len() > 1 && len.starts_with('0'))
    {
        return Err("prefix length is not a decimal number without leading zeros".to_owned());
    }
    let len: u8 = len
        .parse()
        .map_err(|_| "prefix length out of range".to_owned())?;
    if len == 0 {
        return Err("prefix length 0 (a whole address family) pins nothing".to_owned());
    }
    if len > max {
        return Err(format!(
            "prefix length {len} is longer than the address ({max})"
        ));
    }
    if len == max {
        return Err(format!(
            "not canonical: one address is written without a prefix length (`{ip}`)"
        ));
    }
    let net = IpNet::new(ip, len).map_err(|_| "prefix length out of range".to_owned())?;
    if net.trunc() != net {
        return Err(format!(
            "host bits set beyond the prefix; the network is `{}`",
            net.trunc()
        ));
    }
    Ok(net)
}

/// The canonical text of a pin (see [`parse_canonical_net_reason`]): the
/// IP alone for one address, `network/len` otherwise. `net` should already
/// be canonical (host bits zero, not IPv4-mapped).
pub(crate) fn canonical_net_text(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        format!("{}/{}", net.network(), net.prefix_len())
    }
}

#[cfg(feature = "issue")]
/// Canonicalises a network pin: an IPv4-mapped IPv6 network of prefix 96
/// or more becomes the IPv4 network; host bits are cleared.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(n4) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n4.trunc());
    }
    net.trunc()
}

/// Like [`parse_canonical_ip`] for bytes that should be ASCII text.
#[allow(dead_code)]
pub(crate) fn parse_canonical_ip_bytes(bytes: &[u8]) -> Result<IpAddr, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    parse_canonical_reason(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_canonical_text() {
        for ok in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "::",
        ] {
            assert_eq!(parse_canonical_ip("t", ok).unwrap().to_string(), ok);
        }
        for bad in [
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "::ffff:1.2.3.4",
            "::FFFF:1.2.3.4",
            "2001:DB8::1",
            "2001:0db8::1",
            "2001:db8:0:0:0:0:0:1",
            "1.2.3.4 ",
            " 1.2.3.4",
            "fe80::1%1",
            "[::1]",
            "1.2.3.4:80",
            "",
        ] {
            let err = parse_canonical_ip("t", bad).unwrap_err();
            assert_eq!(err.code(), "ip_text", "{bad}");
        }
    }

    #[test]
    fn pin_text_accepts_only_canonical_networks() {
        for ok in [
            "1.2.3.4",
            "::1",
            "192.0.2.0/24",
            "10.0.0.0/8",
            "128.0.0.0/1",
            "2001:db8:1:2::/64",
            "2001:db8::/127",
            "8000::/1",
        ] {
            let net = parse_canonical_net_reason(ok).unwrap();
            assert_eq!(canonical_net_text(net), ok);
        }
        for bad in [
            "1.2.3.4/32",
            "::1/128",
            "1.2.3.4/24",
            "2001:db8:1:2::1/64",
            "0.0.0.0/0",
            "::/0",
            "1.2.3.0/024",
            "1.2.3.0/+24",
            "1.2.3.0/ 24",
            "1.2.3.0/",
            "1.2.3.0/33",
            "::/129",
            "::/1000",
            "1.2.3.0/24/24",
            "01.2.3.0/24",
            "2001:DB8::/32",
            "::ffff:1.2.3.0/120",
            "/24",
            "",
        ] {
            assert!(parse_canonical_net_reason(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_as_compares_exactly() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(displays_as(ip, "2001:db8::1"));
        assert!(!displays_as(ip, "2001:db8::"));
        assert!(!displays_as(ip, "2001:db8::10"));
        assert!(!displays_as(ip, ""));
    }

    #[test]
    fn mapped_addresses_canonicalise_to_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped).to_string(), "10.0.0.1");
    }
}
