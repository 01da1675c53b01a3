//! The cloud load-balancer TLV readers (AWS 0xEA, Azure 0xEE, GCP 0xE0) and
//! the endpoint allow-list on arbitrary TLV areas: they never panic, a
//! repeated vendor TLV is always refused, a valid ID re-encodes to the same
//! TLV value, and the policy accepts only headers whose every ID is listed.
#![no_main]

use std::net::SocketAddr;

use ippin_proxy_protocol::{
    AwsVpceId, AzureLinkId, Command, EndpointId, GcpPscConnectionId, ListenerPolicy,
    ProxyMode, Refusal, Tlv, V2Builder, aws_vpce_id, azure_link_id, endpoint_ids,
    gcp_psc_connection_id, parse,
};
use libfuzzer_sys::fuzz_target;

const KINDS: [u8; 4] = [0xEA, 0xEE, 0xE0, 0xE7];

/// The TLV value that carries `id` (what the builder writes).
fn value_of(id: &EndpointId) -> Vec<u8> {
    let h = V2Builder::new(Command::Local)
        .endpoint_id(id)
        .expect("one endpoint TLV")
        .encode()
        .expect("encode");
    h[16 + 3..].to_vec()
}

fuzz_target!(|data: &[u8]| {
    // Raw input: whatever parses, the readers must not panic on.
    if let Ok((h, _)) = parse(data) {
        let _ = endpoint_ids(h.tlvs());
    }
    // Structured: (selector, length, value) triples become custom TLVs, written by hand
    // after a PROXY TCP4 head (the builder refuses a repeated vendor TLV).
    let mut bytes = V2Builder::new(Command::Proxy)
        .addresses(ippin_proxy_protocol::Addresses::Tcp4 {
            src: "198.51.100.7:5000".parse().unwrap(),
            dst: "203.0.113.10:443".parse().unwrap(),
        })
        .unwrap()
        .encode()
        .unwrap();
    let mut count = [0usize; 4];
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len % 32).min(tail.len());
        let (value, tail) = tail.split_at(n);
        let k = usize::from(*sel) % KINDS.len();
        // Half the time, a well-formed prefix: subtype 0x01 (AWS, Azure) or `vpce-`.
        let mut v = Vec::with_capacity(n + 6);
        if sel & 0x80 != 0 && k < 2 {
            v.push(0x01);
            if k == 0 && sel & 0x40 != 0 {
                v.extend_from_slice(b"vpce-");
            }
        }
        v.extend_from_slice(value);
        bytes.push(KINDS[k]);
        bytes.extend_from_slice(&u16::try_from(v.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&v);
        count[k] += 1;
        rest = tail;
    }
    // The parser's default cap is 4 KiB.
    if bytes.len() > ippin_proxy_protocol::DEFAULT_MAX_HEADER_LEN {
        return;
    }
    let len = u16::try_from(bytes.len() - 16).unwrap().to_be_bytes();
    bytes[14..16].copy_from_slice(&len);
    let (header, _) = parse(&bytes).expect("the builder's header parses");
    let tlvs = header.tlvs();
    let aws = aws_vpce_id(tlvs.clone());
    let azure = azure_link_id(tlvs.clone());
    let gcp = gcp_psc_connection_id(tlvs.clone());
    if count[0] > 1 {
        assert!(aws.is_err());
    }
    if count[1] > 1 {
        assert!(azure.is_err());
    }
    if count[2] > 1 {
        assert!(gcp.is_err());
    }
    let find = |kind: u8| {
        header
            .tlvs()
            .find(kind)
            .and_then(|t| match t {
                Tlv::Custom { value, .. } => Some(value.to_vec()),
                _ => None,
            })
            .expect("the TLV read is there")
    };
    if let Ok(Some(id)) = aws {
        assert_eq!(count[0], 1);
        assert_eq!(id.as_str().parse::<AwsVpceId>(), Ok(id));
        assert_eq!(value_of(&EndpointId::Aws(id)), find(0xEA));
    }
    if let Ok(Some(id)) = azure {
        assert_eq!(value_of(&EndpointId::Azure(id)), find(0xEE));
    }
    if let Ok(Some(id)) = gcp {
        assert_eq!(value_of(&EndpointId::Gcp(id)), find(0xE0));
    }
    // The allow-list: some of the IDs read, chosen by the first byte.
    let ids = endpoint_ids(header.tlvs());
    let mut allowed = vec![
        EndpointId::Azure(AzureLinkId(0)),
        EndpointId::Gcp(GcpPscConnectionId(0)),
    ];
    if let Ok(found) = &ids {
        for (i, id) in found.iter().flatten().enumerate() {
            if data.first().is_some_and(|f| f >> i & 1 == 1) {
                allowed.push(*id);
            }
        }
    }
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()])
        .with_allowed_endpoints(allowed.clone());
    let peer: SocketAddr = "10.0.0.5:40000".parse().unwrap();
    match policy.decide(peer, Some(&header), b"SSH-2.0-x\r\n") {
        Ok(observed) => {
            assert!(observed.trusted);
            let found = ids.expect("accepted: the TLVs are valid");
            assert!(found.iter().flatten().count() > 0);
            assert!(found.iter().flatten().all(|id| allowed.contains(id)));
        }
        Err(Refusal::InvalidEndpointTlv(e)) => assert_eq!(ids, Err(e)),
        Err(Refusal::EndpointNotAllowed { endpoint: Some(id) }) => {
            assert!(!allowed.contains(&id));
        }
        Err(Refusal::EndpointNotAllowed { endpoint: None }) => {
            assert_eq!(ids.map(|f| f.iter().flatten().count()), Ok(0));
        }
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
});
