//! The forwarded headers of an HTTP request on arbitrary connections, modes and header lines
//! (`ippin_access::observed::from_forwarded_values`): no panic; a connection that is not a
//! trusted direct peer the mode takes for a proxy gets its own observation back whatever its
//! headers hold (neither read nor refused); only such a proxy's headers change the answer,
//! into a forwarded-header observation; both headers at once, or a value that is not visible
//! ASCII, from a proxy, are refused.
//!
//! And the property that matters: behind a chain of `hops` trusted proxies, each appending
//! what it saw (the first the client, the others the proxy before them, on the same line or
//! a new one), the answer is the client, whatever the client wrote to the left of it
//! (forged entries, garbage, its own address list): never an address the client chose.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ippin_access::observed::{ObservedAddr, Provenance, from_forwarded_values, reads_forwarded};
use ippin_policy::ForwardedMode;
use libfuzzer_sys::fuzz_target;

/// A chain of trusted proxies in front of the service appends to what the client sent.
fn behind_a_chain(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((addr, forged)) = rest.split_first_chunk::<16>() else { return };
    let client = if flags & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    };
    let proxies: Vec<ipnet::IpNet> = ["127.0.0.0/8", "10.0.0.0/8", "::1/128", "fd00::/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let canonical = client.to_canonical();
    if proxies.iter().any(|n| n.contains(&canonical)) {
        return;
    }
    let hops = usize::from((flags >> 1) % 3) + 1;
    let mode = ForwardedMode::TrustedProxies { proxies, hops };
    let use_forwarded = flags & 8 != 0;
    let entry = |ip: IpAddr| match (use_forwarded, ip) {
        (false, ip) => ip.to_string(),
        (true, IpAddr::V4(v4)) => format!("for={v4}"),
        (true, IpAddr::V6(v6)) => format!("for=\"[{v6}]\""),
    };
    // What the client sent: any bytes, visible ASCII or not, one line or several.
    let mut lines: Vec<Vec<u8>> = forged.split(|&b| b == b'\n').take(4).map(<[u8]>::to_vec).collect();
    // Each proxy appends what it saw, to the last line or as a line of its own.
    let mut seen = client;
    for hop in 0..hops {
        let text = entry(seen).into_bytes();
        match lines.last_mut() {
            Some(last) if flags & (0x10 << hop) == 0 => {
                last.extend_from_slice(b", ");
                last.extend_from_slice(&text);
            }
            _ => lines.push(text),
        }
        seen = IpAddr::V4(Ipv4Addr::new(10, 0, 0, hop as u8 + 1));
    }
    let conn = ObservedAddr::new(SocketAddr::new(seen, 443), Provenance::Direct, true);
    let values: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let empty: Vec<&[u8]> = Vec::new();
    let got = if use_forwarded {
        from_forwarded_values(&conn, empty.iter().copied(), values.iter().copied(), &mode)
    } else {
        from_forwarded_values(&conn, values.iter().copied(), empty.iter().copied(), &mode)
    };
    // Refused (a line the client made unreadable), or the client: never another address.
    if let Ok(o) = got {
        assert_eq!(o.ip().to_canonical(), canonical, "{lines:?} hops {hops}: {o:?}");
        assert!(o.is_trusted());
        assert_eq!(o.provenance(), Provenance::ForwardedHeader);
    }
}

fuzz_target!(|data: &[u8]| {
    behind_a_chain(data);
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((addr, rest)) = rest.split_first_chunk::<4>() else { return };
    let ip = if flags & 0x40 != 0 {
        IpAddr::V6(Ipv6Addr::from(u128::from(u32::from_be_bytes(*addr)) | 0xffff_0000_0000))
    } else {
        IpAddr::V4(Ipv4Addr::from(*addr))
    };
    let provenance = match flags & 3 {
        0 => Provenance::Direct,
        1 => Provenance::ProxyV2,
        2 => Provenance::SignedPropagation,
        _ => Provenance::ForwardedHeader,
    };
    let conn = ObservedAddr::new(SocketAddr::new(ip, 443), provenance, flags & 4 != 0);
    let mode = match (flags >> 3) & 3 {
        0 => ForwardedMode::EveryPeerIsAProxy,
        1 => ForwardedMode::trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()]),
        h => ForwardedMode::TrustedProxies {
            proxies: vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            hops: usize::from(h),
        },
    };
    // Header lines split at 0xff; each goes to X-Forwarded-For or Forwarded by its first
    // byte's low bit (and flag 0x80 sends them all to both lists' first choice).
    let (mut xff, mut fwd): (Vec<&[u8]>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    for line in rest.split(|&b| b == 0xff).take(16) {
        let Some((&which, value)) = line.split_first() else { continue };
        if which & 1 == 0 || flags & 0x80 != 0 {
            xff.push(value);
        } else {
            fwd.push(value);
        }
    }
    let got = from_forwarded_values(&conn, xff.iter().copied(), fwd.iter().copied(), &mode);
    let reads = reads_forwarded(&conn, &mode);
    assert_eq!(
        reads,
        conn.is_trusted() && conn.provenance() == Provenance::Direct && mode.believes(conn.ip())
    );
    if !reads {
        assert_eq!(got, Ok(conn), "a client's own headers were read or refused");
        return;
    }
    let visible = |v: &&[u8]| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    if !xff.iter().all(visible) || !fwd.iter().all(visible) {
        assert!(got.is_err(), "a value that is not visible ASCII was read");
        return;
    }
    if !xff.is_empty() && !fwd.is_empty() {
        assert!(got.is_err(), "both headers were read");
        return;
    }
    if let Ok(seen) = got
        && seen != conn
    {
        assert_eq!(seen.provenance(), Provenance::ForwardedHeader, "{seen:?}");
    }
});
