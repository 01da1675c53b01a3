//! The parse path does not touch the heap.
//!
//! `allocation-counter` installs a counting global allocator in this test
//! binary (the `unsafe` lives in that crate) and counts per thread.

use ippin_proxy_protocol::{ListenerPolicy, ProxyMode, parse, parse_exact};

use crate::vectors::{V1_VALID, v2_valid};

#[test]
fn the_counter_is_live() {
    // Guard against a vacuous pass: the allocator must be installed.
    let info = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 64]);
    });
    assert!(info.count_total >= 1, "{info:?}");
}

#[test]
fn parsing_does_not_allocate() {
    let v2s = v2_valid();
    // Loading the vector files allocates: do it before counting.
    let v1s: &[crate::vectors::V1Vector] = &V1_VALID;
    let invalid: [&[u8]; 6] = [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n",
        b"PROXY UNKNOWNJUNK\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x01",
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
    ];
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer());
    let peer = "127.0.0.1:1".parse().unwrap();
    let info = allocation_counter::measure(|| {
        let mut seen = 0usize;
        for &(line, _) in v1s {
            let (h, used) = parse(line).unwrap();
            seen += used + h.source().map_or(0, |s| usize::from(s.port()));
            seen += h.tlvs().count();
            let _ = parse_exact(line).unwrap();
            let _ = policy.decide(peer, Some(&h), b"SSH-2.0-").unwrap();
        }
        for (h, _) in &v2s {
            let (h, used) = parse(h).unwrap();
            seen += used + h.source().map_or(0, |s| usize::from(s.port()));
            for t in h.tlvs() {
                seen += usize::from(t.kind());
            }
            let _ = h.addresses();
            let _ = policy.step(peer, h.as_bytes(), false);
        }
        for bad in invalid {
            seen += usize::from(parse(bad).is_err());
        }
        std::hint::black_box(seen);
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn cloud_tlv_readers_do_not_allocate() {
    use ippin_proxy_protocol::{
        AwsVpceId, AzureLinkId, Command, GcpPscConnectionId, Tlv, V2Builder, endpoint_ids,
    };
    let id: AwsVpceId = "vpce-0123456789abcdef0".parse().unwrap();
    let good = V2Builder::new(Command::Local)
        .aws_vpce_id(&id)
        .unwrap()
        .azure_link_id(AzureLinkId(7))
        .unwrap()
        .gcp_psc_connection_id(GcpPscConnectionId(9))
        .unwrap()
        .encode()
        .unwrap();
    let bad = V2Builder::new(Command::Local)
        .tlv(Tlv::Custom {
            kind: 0xEA,
            value: b"\x01vpce-XYZ",
        })
        .unwrap()
        .encode()
        .unwrap();
    let info = allocation_counter::measure(|| {
        let ids = endpoint_ids(parse(&good).unwrap().0.tlvs()).unwrap();
        assert!(ids.iter().all(Option::is_some));
        assert!(endpoint_ids(parse(&bad).unwrap().0.tlvs()).is_err());
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}
