//! This host's own addresses, as the kernel reports them: the addresses the server's own
//! outbound connections (SSH forwards) can come from. A leaf module: it imports nothing of
//! the crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The most bytes read from one `/proc` file.
const MAX_PROC_FILE: u64 = 1 << 20;

/// Every address of this host: the loopback networks, then the IPv4 routes the kernel marks
/// `host LOCAL` in `/proc/net/fib_trie` (single addresses, and wider "AnyIP" local routes such
/// as `ip route add local 10.9.0.0/16 dev lo`), the IPv6 addresses in `/proc/net/if_inet6`,
/// and the IPv6 routes `/proc/net/ipv6_route` marks `RTF_LOCAL` (the same AnyIP routes for
/// IPv6) (read where they exist; the loopback networks are always included).
pub fn local_networks() -> Vec<IpNet> {
    let mut out: Vec<IpNet> = vec![
        IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).unwrap_or_default(),
        IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let mut add = |net: IpNet| {
        if !out.iter().any(|n| n.contains(&net)) {
            out.push(net);
        }
    };
    if let Some(text) = read("/proc/net/fib_trie") {
        fib_trie_locals(&text).into_iter().for_each(&mut add);
    }
    if let Some(text) = read("/proc/net/if_inet6") {
        if_inet6_addresses(&text)
            .into_iter()
            .for_each(|ip| add(IpNet::from(IpAddr::V6(ip))));
    }
    // IPv6 "AnyIP" local routes (`ip -6 route add local 2001:db8:5::/64 dev lo`): the kernel
    // delivers to every address of them, which no interface lists.
    if let Some(text) = read("/proc/net/ipv6_route") {
        ipv6_route_locals(&text).into_iter().for_each(&mut add);
    }
    out
}

/// The networks of `/proc/net/ipv6_route` whose route is `RTF_LOCAL` (flags, the ninth
/// column, with bit `0x80000000`): destination (32 hex digits) and prefix length (hex).
fn ipv6_route_locals(text: &str) -> Vec<IpNet> {
    const RTF_LOCAL: u32 = 0x8000_0000;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dst), Some(len), Some(flags)) = (f.first(), f.get(1), f.get(8)) else {
            continue;
        };
        let (Ok(dst), Ok(len), Ok(flags)) = (
            u128::from_str_radix(dst, 16),
            u8::from_str_radix(len, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if flags & RTF_LOCAL == 0 || dst == 0 {
            continue;
        }
        if let Ok(net) = ipnet::Ipv6Net::new(Ipv6Addr::from(dst), len) {
            let net = IpNet::V6(net.trunc());
            if !out.contains(&net) {
                out.push(net);
            }
        }
    }
    out
}

/// The networks of `trusted` that hold an address of this host (`local`, from
/// [`local_networks`]), compared canonically (an IPv6 network never overlaps an IPv4 one
/// unless it is inside the mapped range). A listener that trusts one of them as a proxy
/// believes headers that any process or forwarding service of this host writes.
pub fn overlapping(trusted: &[IpNet], local: &[IpNet]) -> Vec<IpNet> {
    let overlap = |a: &IpNet, b: &IpNet| {
        let (a, b) = (
            ippin_policy::canonical_net(*a),
            ippin_policy::canonical_net(*b),
        );
        a.contains(&b.network()) || b.contains(&a.network())
    };
    trusted
        .iter()
        .filter(|n| local.iter().any(|h| overlap(n, h)))
        .copied()
        .collect()
}

fn read(path: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_PROC_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The IPv4 networks of `/proc/net/fib_trie` whose next line says `/N host LOCAL`.
fn fib_trie_locals(text: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if let Some(rest) = t.strip_prefix('/')
            && let Some((len, kind)) = rest.split_once(' ')
            && kind.trim() == "host LOCAL"
            && let (Some(ip), Ok(len)) = (last, len.parse::<u8>())
            && let Ok(net) = ipnet::Ipv4Net::new(ip, len)
        {
            let net = IpNet::V4(net.trunc());
            if !out.contains(&net) {
                out.push(net);
            }
        }
    }
    out
}

/// The addresses of `/proc/net/if_inet6` (first column: 32 hex digits).
fn if_inet6_addresses(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|h| h.len() == 32)
        .filter_map(|h| u128::from_str_radix(h, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_formats() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n     |-- 10.1.2.3\n        /32 host LOCAL\n     |-- 10.1.2.255\n        /32 link BROADCAST\n";
        let nets: Vec<String> = fib_trie_locals(fib).iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.0/8", "127.0.0.1/32", "10.1.2.3/32"]);
        // An AnyIP route: the whole network is local.
        let anyip = "     |-- 10.9.0.0\n        /16 host LOCAL\n";
        assert_eq!(
            fib_trie_locals(anyip),
            vec!["10.9.0.0/16".parse::<IpNet>().unwrap()]
        );
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000000000000000001 02 40 20 80     eth0\nbad\n";
        assert_eq!(
            if_inet6_addresses(v6),
            vec![Ipv6Addr::LOCALHOST, "fe80::1".parse().unwrap()]
        );
    }

    #[test]
    fn ipv6_local_routes() {
        let text = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                    00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo\n\
                    20010db8000500000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001       lo\n\
                    00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 80200001       lo\n\
                    bad line\n";
        let nets: Vec<String> = ipv6_route_locals(text)
            .iter()
            .map(|n| n.to_string())
            .collect();
        // The unicast route is not local; `::/0` (a default route marked local) is skipped.
        assert_eq!(nets, ["::1/128", "2001:db8:5::/64"]);
    }

    #[test]
    fn loopback_is_always_local() {
        let nets = local_networks();
        assert!(
            nets.iter()
                .any(|n| n.contains(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))))
        );
        assert!(
            nets.iter()
                .any(|n| n.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
    }
}
