//! The forwarded headers of an HTTP request on arbitrary connections, modes and header lines
//! (`ippin_access::observed::from_forwarded_values`): no panic; a connection that is not a
//! trusted direct peer the mode takes for a proxy gets its own observation back whatever its
//! headers hold (neither read nor refused); only such a proxy's headers change the answer,
//! into a forwarded-header observation; both headers at once, or a value that is not visible
//! ASCII, from a proxy, are refused.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ippin_access::observed::{ObservedAddr, Provenance, from_forwarded_values, reads_forwarded};
use ippin_policy::ForwardedMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
