//! The listener decision table and the sans-IO reader (`step`).

use std::net::SocketAddr;

use ippin_proxy_protocol::{
    Addresses, AwsVpceId, AzureLinkId, CloudTlvError, CloudTlvProblem, Command, EndpointId, Error,
    GcpPscConnectionId, ListenerPolicy, Observed, ParseConfig, Provenance, ProxyMode, Refusal,
    Step, Tlv, V2Builder, parse,
};

use crate::vectors::{tcp4_block, v2};

const PEER: &str = "10.0.0.5:40000";
const V1: &[u8] = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n";
const APP: &[u8] = b"SSH-2.0-OpenSSH_9.2p1\r\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Every peer trusted, named explicitly (mode on trusts nobody without a list).
const ANY: Option<&[&str]> = Some(&["0.0.0.0/0", "::/0"]);

fn policy(mode: ProxyMode, trusted: Option<&[&str]>) -> ListenerPolicy {
    let mut p = ListenerPolicy::new(mode);
    p.trusted_proxies = trusted.map(|t| t.iter().map(|n| n.parse().unwrap()).collect());
    p
}

fn decide(p: &ListenerPolicy, header: Option<&[u8]>, after: &[u8]) -> Result<Observed, Refusal> {
    let parsed = header.map(|h| parse(h).unwrap().0);
    p.decide(sa(PEER), parsed.as_ref(), after)
}

fn obs(addr: &str, provenance: Provenance, trusted: bool) -> Result<Observed, Refusal> {
    Ok(Observed::new(sa(addr), provenance, trusted))
}

#[test]
fn no_header() {
    let direct = obs(PEER, Provenance::Direct, true);
    assert_eq!(
        decide(&policy(ProxyMode::On, None), None, APP),
        Err(Refusal::HeaderRequired)
    );
    assert_eq!(decide(&policy(ProxyMode::Off, None), None, APP), direct);
    assert_eq!(
        decide(&policy(ProxyMode::Unspecified, None), None, APP),
        direct
    );
    assert_eq!(
        decide(
            &policy(ProxyMode::Unspecified, Some(&["192.0.2.0/24"])),
            None,
            APP
        ),
        direct
    );
}

#[test]
fn mode_off_refuses_any_header() {
    let p = policy(ProxyMode::Off, None);
    assert_eq!(decide(&p, Some(V1), APP), Err(Refusal::HeaderForbidden));
    // A caller that did not parse is refused too.
    assert_eq!(decide(&p, None, V1), Err(Refusal::HeaderForbidden));
    assert_eq!(
        p.step(sa(PEER), b"PROXY", false),
        Step::Refuse(Refusal::HeaderForbidden)
    );
}

#[test]
fn mode_on_trusts_the_header() {
    let p = policy(ProxyMode::On, Some(&["10.0.0.0/8"]));
    assert_eq!(
        decide(&p, Some(V1), APP),
        obs("198.51.100.7:51234", Provenance::ProxyV1, true)
    );
    let v2h = v2(0x21, 0x11, &tcp4_block());
    assert_eq!(
        decide(&p, Some(&v2h), APP),
        obs("198.51.100.7:51234", Provenance::ProxyV2, true)
    );
    // LOCAL: the proxy itself is the client; its address never pins.
    let local = v2(0x20, 0x00, &[]);
    assert_eq!(
        decide(&p, Some(&local), APP),
        obs("10.0.0.5:0", Provenance::Local, false)
    );
    // UNKNOWN / UNSPEC: the client is unknown; the peer stands in, untrusted.
    assert_eq!(
        decide(&p, Some(b"PROXY UNKNOWN\r\n"), APP),
        obs("10.0.0.5:0", Provenance::ProxyV1, false)
    );
    let unspec = v2(0x21, 0x00, &[]);
    assert_eq!(
        decide(&p, Some(&unspec), APP),
        obs("10.0.0.5:0", Provenance::ProxyV2, false)
    );
}

#[test]
fn mode_unspecified_never_trusts_a_header() {
    let p = policy(ProxyMode::Unspecified, None);
    assert_eq!(
        decide(&p, Some(V1), APP),
        obs("198.51.100.7:0", Provenance::ProxyV1, false)
    );
    let local = v2(0x20, 0x00, &[]);
    assert_eq!(
        decide(&p, Some(&local), APP),
        obs("10.0.0.5:0", Provenance::Local, false)
    );
}

#[test]
fn trusted_proxies_only() {
    let p = policy(ProxyMode::On, Some(&["192.0.2.0/24", "2001:db8::/32"]));
    assert_eq!(
        decide(&p, Some(V1), APP),
        Err(Refusal::UntrustedProxy {
            peer: "10.0.0.5".parse().unwrap()
        })
    );
    let p = policy(ProxyMode::Unspecified, Some(&["192.0.2.0/24"]));
    assert_eq!(
        decide(&p, Some(V1), APP).unwrap_err().code(),
        "untrusted_proxy"
    );
    // An IPv4-mapped peer is matched as IPv4.
    let p = policy(ProxyMode::On, Some(&["10.0.0.0/8"]));
    let mapped = sa("[::ffff:10.0.0.5]:40000");
    let h = parse(V1).unwrap().0;
    assert!(p.decide(mapped, Some(&h), APP).unwrap().trusted);
    // The refusal comes before the header is complete.
    let p = policy(ProxyMode::On, Some(&["192.0.2.0/24"]));
    assert_eq!(
        p.step(sa(PEER), b"PROXY TCP4 1", false).refusal_code(),
        Some("untrusted_proxy")
    );
}

trait Code {
    fn refusal_code(&self) -> Option<&'static str>;
}

impl Code for Step<'_> {
    fn refusal_code(&self) -> Option<&'static str> {
        match self {
            Step::Refuse(r) => Some(r.code()),
            _ => None,
        }
    }
}

#[test]
fn duplicate_header_including_a_partial_prefix() {
    let p = policy(ProxyMode::On, ANY);
    let sig = &v2(0x21, 0x11, &tcp4_block())[..];
    for after in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY",
        b"P",
        b"PRO",
        b"\r",
        b"\r\n\r\n\0",
        sig,
        &sig[..11],
    ] {
        assert_eq!(
            decide(&p, Some(V1), after),
            Err(Refusal::DuplicateHeader),
            "{after:?}"
        );
    }
    for after in [&b""[..], b"PX", b"\r\r", b"SSH-2.0", b"\x16\x03\x01"] {
        assert!(decide(&p, Some(V1), after).is_ok(), "{after:?}");
    }
}

#[test]
fn canonical_addresses() {
    let p = policy(ProxyMode::On, ANY);
    let h = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1000 22\r\n";
    assert_eq!(
        decide(&p, Some(h), APP),
        obs("192.0.2.1:1000", Provenance::ProxyV1, true)
    );
    let p = policy(ProxyMode::Off, None);
    let mapped = sa("[::ffff:192.0.2.9]:7");
    assert_eq!(p.decide(mapped, None, APP).unwrap().addr, sa("192.0.2.9:7"));
}

#[test]
fn refusal_codes_are_stable() {
    let all = [
        (Refusal::HeaderRequired, "header_required"),
        (Refusal::HeaderForbidden, "header_forbidden"),
        (
            Refusal::UntrustedProxy {
                peer: "10.0.0.1".parse().unwrap(),
            },
            "untrusted_proxy",
        ),
        (Refusal::DuplicateHeader, "duplicate_header"),
        (Refusal::InvalidHeader(Error::V1TooLong), "invalid_header"),
        (Refusal::UnparsedHeader, "unparsed_header"),
        (Refusal::Timeout, "timeout"),
        (Refusal::Closed { received: 3 }, "connection_closed"),
        (Refusal::Io(std::io::ErrorKind::ConnectionReset), "io_error"),
        (
            Refusal::EndpointNotAllowed { endpoint: None },
            "endpoint_not_allowed",
        ),
        (
            Refusal::EndpointNotAllowed {
                endpoint: Some(EndpointId::Azure(AzureLinkId(1))),
            },
            "endpoint_not_allowed",
        ),
        (
            Refusal::InvalidEndpointTlv(CloudTlvError::Gcp {
                problem: CloudTlvProblem::Repeated,
            }),
            "invalid_endpoint_tlv",
        ),
    ];
    for (r, code) in all {
        assert_eq!(r.code(), code);
        assert!(r.to_string().starts_with(code), "{r}");
    }
}

/// Feeds `input` to `step` `chunk` bytes at a time, as a reader would.
fn feed<'a>(p: &ListenerPolicy, input: &'a [u8], chunk: usize) -> (Step<'a>, usize) {
    let mut have = 0;
    loop {
        let eof = have == input.len();
        match p.step(sa(PEER), &input[..have], eof) {
            Step::NeedMore => {
                assert!(!eof, "NeedMore at end of input");
                assert!(have < p.buffer_limit());
                have = (have + chunk).min(input.len());
            }
            done => return (done, have),
        }
    }
}

#[test]
fn step_one_byte_at_a_time() {
    let p = policy(ProxyMode::On, ANY);
    let v2h = v2(0x21, 0x11, &tcp4_block());
    for header in [V1, &v2h[..]] {
        let mut input = header.to_vec();
        input.extend_from_slice(APP);
        for chunk in [1, 2, 7, 64, 4096] {
            let (step, read) = feed(&p, &input, chunk);
            let Step::Accept {
                observed,
                header: Some(h),
                consumed,
            } = step
            else {
                panic!("{step:?}")
            };
            assert_eq!(consumed, header.len());
            assert_eq!(h.header_len(), header.len());
            assert!(observed.trusted);
            assert_eq!(observed.addr, sa("198.51.100.7:51234"));
            // It waited for the first application byte, and no longer.
            assert!(read > header.len(), "{read}");
            assert!(read <= header.len() + chunk, "{read}");
        }
    }
}

#[test]
fn step_waits_to_tell_a_duplicate() {
    let p = policy(ProxyMode::On, ANY);
    let mut input = V1.to_vec();
    input.extend_from_slice(V1);
    let (step, _) = feed(&p, &input, 1);
    assert_eq!(step, Step::Refuse(Refusal::DuplicateHeader));
    // "PR" after the header is undecided; "PX" is application data.
    let mut buf = V1.to_vec();
    buf.extend_from_slice(b"PR");
    assert_eq!(p.step(sa(PEER), &buf, false), Step::NeedMore);
    buf.truncate(V1.len());
    buf.extend_from_slice(b"PX");
    assert!(matches!(p.step(sa(PEER), &buf, false), Step::Accept { .. }));
    // Nothing after the header yet: wait, unless the peer has closed.
    assert_eq!(p.step(sa(PEER), V1, false), Step::NeedMore);
    assert!(matches!(
        p.step(sa(PEER), V1, true),
        Step::Accept { consumed: 48, .. }
    ));
}

#[test]
fn step_refuses_early_and_on_close() {
    let p = policy(ProxyMode::On, ANY);
    assert_eq!(p.step(sa(PEER), b"", false), Step::NeedMore);
    assert_eq!(
        p.step(sa(PEER), b"", true),
        Step::Refuse(Refusal::HeaderRequired)
    );
    assert_eq!(
        p.step(sa(PEER), b"S", false),
        Step::Refuse(Refusal::HeaderRequired)
    );
    assert_eq!(
        p.step(sa(PEER), b"PROXY TCP4 1.2", true),
        Step::Refuse(Refusal::Closed { received: 14 })
    );
    assert_eq!(
        p.step(sa(PEER), b"PRO", true),
        Step::Refuse(Refusal::Closed { received: 3 })
    );
    assert_eq!(
        p.step(sa(PEER), b"PROXY TCP4 +", false).refusal_code(),
        Some("invalid_header")
    );
    let p = policy(ProxyMode::Off, None);
    assert!(matches!(
        p.step(sa(PEER), b"", true),
        Step::Accept { header: None, .. }
    ));
    assert!(matches!(
        p.step(sa(PEER), b"S", false),
        Step::Accept {
            header: None,
            consumed: 0,
            ..
        }
    ));
}

#[test]
fn step_buffers_boundedly() {
    let p = policy(ProxyMode::On, ANY).with_parse_config(ParseConfig::with_max_header_len(64));
    assert_eq!(p.buffer_limit(), 107 + 16);
    let mut big = tcp4_block();
    big.extend(crate::vectors::tlv(0x04, &[0; 100]));
    let h = v2(0x21, 0x11, &big);
    assert!(matches!(
        p.step(sa(PEER), &h[..16], false),
        Step::Refuse(Refusal::InvalidHeader(Error::TooLong { .. }))
    ));
}

#[test]
fn mode_on_needs_its_proxies_named() {
    // No list: every header is refused, before and after it is complete.
    let p = policy(ProxyMode::On, None);
    assert_eq!(
        decide(&p, Some(V1), APP).unwrap_err().code(),
        "untrusted_proxy"
    );
    assert_eq!(
        p.step(sa(PEER), b"PROXY TCP4 1", false).refusal_code(),
        Some("untrusted_proxy")
    );
    // Unspecified with no list still parses headers (never trusted).
    let p = policy(ProxyMode::Unspecified, None);
    assert!(!decide(&p, Some(V1), APP).unwrap().trusted);
}

#[test]
fn ipv6_networks_never_match_ipv4_peers() {
    let h = parse(V1).unwrap().0;
    // `::/0` on a dual-stack listener: an IPv4 client shows as `::ffff:a.b.c.d`.
    let p = policy(ProxyMode::On, Some(&["::/0"]));
    for peer in ["10.0.0.5:1", "[::ffff:10.0.0.5]:1"] {
        assert_eq!(
            p.decide(sa(peer), Some(&h), APP).unwrap_err().code(),
            "untrusted_proxy",
            "{peer}"
        );
        assert!(!p.is_trusted_proxy(sa(peer).ip()), "{peer}");
    }
    assert!(
        p.decide(sa("[2001:db8::1]:1"), Some(&h), APP)
            .unwrap()
            .trusted
    );
    // Any IPv6 network wider than the mapped range is IPv6 only.
    for wide in ["::/1", "::/95", "::/64", "::ffff:0:0/95"] {
        let p = policy(ProxyMode::On, Some(&[wide]));
        assert!(
            !p.is_trusted_proxy(sa("[::ffff:10.0.0.5]:1").ip()),
            "{wide}"
        );
        assert!(!p.is_trusted_proxy(sa("10.0.0.5:1").ip()), "{wide}");
    }
    // The mapped range written as IPv6 is IPv4: it matches both forms of the peer.
    let p = policy(ProxyMode::On, Some(&["::ffff:10.0.0.0/104"]));
    assert!(p.is_trusted_proxy(sa("10.0.0.5:1").ip()));
    assert!(p.is_trusted_proxy(sa("[::ffff:10.0.0.5]:1").ip()));
    assert!(!p.is_trusted_proxy(sa("11.0.0.5:1").ip()));
}

const VPCE_OK: &str = "vpce-0123456789abcdef0";
const VPCE_OTHER: &str = "vpce-0123456789abcdef1";

fn vpce(s: &str) -> EndpointId {
    EndpointId::Aws(s.parse::<AwsVpceId>().unwrap())
}

/// A v2 PROXY TCP4 header carrying these endpoint IDs (and raw TLVs).
fn proxied(ids: &[EndpointId], raw: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = V2Builder::new(Command::Proxy)
        .addresses(Addresses::Tcp4 {
            src: "198.51.100.7:51234".parse().unwrap(),
            dst: "203.0.113.10:443".parse().unwrap(),
        })
        .unwrap();
    for id in ids {
        b = b.endpoint_id(id).unwrap();
    }
    for (kind, value) in raw {
        b = b.tlv(Tlv::Custom { kind: *kind, value }).unwrap();
    }
    b.encode().unwrap()
}

/// (policy, header, expected).
type Row<'a> = (
    &'a ListenerPolicy,
    Option<Vec<u8>>,
    Result<Observed, Refusal>,
);

#[test]
fn endpoint_allow_list() {
    let allowed = vec![
        vpce(VPCE_OK),
        EndpointId::Azure(AzureLinkId(123)),
        EndpointId::Gcp(GcpPscConnectionId(456)),
    ];
    let on = policy(ProxyMode::On, Some(&["10.0.0.0/8"])).with_allowed_endpoints(allowed.clone());
    let unspec = policy(ProxyMode::Unspecified, None).with_allowed_endpoints(allowed);
    // A connection served through an endpoint carries it: pins are bound to it.
    let through = |addr: &str, provenance, trusted, id: EndpointId| {
        obs(addr, provenance, trusted).map(|mut o| {
            o.endpoint = Some(id);
            o
        })
    };
    let served = |id: EndpointId| through("198.51.100.7:51234", Provenance::ProxyV2, true, id);
    let not = |id: Option<EndpointId>| Err(Refusal::EndpointNotAllowed { endpoint: id });
    let bad = |e: CloudTlvError| Err(Refusal::InvalidEndpointTlv(e));
    let local_ok = {
        let mut h = V2Builder::new(Command::Local);
        h = h.endpoint_id(&vpce(VPCE_OK)).unwrap();
        h.encode().unwrap()
    };
    let table: Vec<Row<'_>> = vec![
        (
            &on,
            Some(proxied(&[vpce(VPCE_OK)], &[])),
            served(vpce(VPCE_OK)),
        ),
        (
            &on,
            Some(proxied(&[EndpointId::Azure(AzureLinkId(123))], &[])),
            served(EndpointId::Azure(AzureLinkId(123))),
        ),
        (
            &on,
            Some(proxied(&[EndpointId::Gcp(GcpPscConnectionId(456))], &[])),
            served(EndpointId::Gcp(GcpPscConnectionId(456))),
        ),
        // Two listed IDs of two vendors: the first (AWS, Azure, GCP) is the endpoint.
        (
            &on,
            Some(proxied(
                &[EndpointId::Gcp(GcpPscConnectionId(456)), vpce(VPCE_OK)],
                &[],
            )),
            served(vpce(VPCE_OK)),
        ),
        // Another endpoint of the same vendor, or a listed one of another.
        (
            &on,
            Some(proxied(&[vpce(VPCE_OTHER)], &[])),
            not(Some(vpce(VPCE_OTHER))),
        ),
        (
            &on,
            Some(proxied(&[EndpointId::Azure(AzureLinkId(456))], &[])),
            not(Some(EndpointId::Azure(AzureLinkId(456)))),
        ),
        (
            &on,
            Some(proxied(&[EndpointId::Gcp(GcpPscConnectionId(123))], &[])),
            not(Some(EndpointId::Gcp(GcpPscConnectionId(123)))),
        ),
        // One listed and one not: refused.
        (
            &on,
            Some(proxied(
                &[vpce(VPCE_OK), EndpointId::Gcp(GcpPscConnectionId(1))],
                &[],
            )),
            not(Some(EndpointId::Gcp(GcpPscConnectionId(1)))),
        ),
        // No ID: v2 without TLVs, v1, LOCAL without an ID.
        (&on, Some(proxied(&[], &[])), not(None)),
        (&on, Some(V1.to_vec()), not(None)),
        (&on, Some(v2(0x20, 0x00, &[])), not(None)),
        // LOCAL with a listed ID: the health check gets through, untrusted.
        (
            &on,
            Some(local_ok),
            through("10.0.0.5:0", Provenance::Local, false, vpce(VPCE_OK)),
        ),
        // Malformed vendor TLVs, even next to a listed ID.
        (
            &on,
            Some(proxied(&[vpce(VPCE_OK)], &[(0xE0, &[1, 2, 3])])),
            bad(CloudTlvError::Gcp {
                problem: CloudTlvProblem::Length { len: 3 },
            }),
        ),
        (
            &on,
            Some(proxied(&[], &[(0xEA, b"\x02vpce-01234567")])),
            bad(CloudTlvError::Aws {
                problem: CloudTlvProblem::Subtype { subtype: 2 },
            }),
        ),
        (
            &on,
            // (Made by hand: the builder refuses a second one.)
            Some(v2(
                0x21,
                0x11,
                &[
                    tcp4_block(),
                    crate::vectors::tlv(0xEE, &[1, 123, 0, 0, 0]),
                    crate::vectors::tlv(0xEE, &[1, 123, 0, 0, 0]),
                ]
                .concat(),
            )),
            bad(CloudTlvError::Azure {
                problem: CloudTlvProblem::Repeated,
            }),
        ),
        // Mode unspecified: a header with a listed ID is used, untrusted;
        // a connection without a header came through no endpoint.
        (
            &unspec,
            Some(proxied(&[vpce(VPCE_OK)], &[])),
            through("198.51.100.7:0", Provenance::ProxyV2, false, vpce(VPCE_OK)),
        ),
        (
            &unspec,
            Some(proxied(&[vpce(VPCE_OTHER)], &[])),
            not(Some(vpce(VPCE_OTHER))),
        ),
        (&unspec, None, not(None)),
    ];
    for (i, (p, header, want)) in table.into_iter().enumerate() {
        assert_eq!(decide(p, header.as_deref(), APP), want, "row {i}");
        // `step` decides the same way.
        if let Some(h) = header {
            let mut input = h.clone();
            input.extend_from_slice(APP);
            let got = match p.step(sa(PEER), &input, false) {
                Step::Accept { observed, .. } => Ok(observed),
                Step::Refuse(r) => Err(r),
                other => panic!("row {i}: {other:?}"),
            };
            assert_eq!(got, want, "row {i} (step)");
        }
    }
    // The refusal comes after the trust check: an untrusted peer is still
    // refused `untrusted_proxy`.
    let p = policy(ProxyMode::On, Some(&["192.0.2.0/24"])).with_allowed_endpoints(vec![]);
    assert_eq!(
        decide(&p, Some(&proxied(&[vpce(VPCE_OK)], &[])), APP)
            .unwrap_err()
            .code(),
        "untrusted_proxy"
    );
    // An empty list refuses every connection; no list does not look.
    let p = policy(ProxyMode::On, Some(&["10.0.0.0/8"])).with_allowed_endpoints(vec![]);
    assert_eq!(
        decide(&p, Some(&proxied(&[vpce(VPCE_OK)], &[])), APP),
        not(Some(vpce(VPCE_OK)))
    );
    // Without a list, the TLVs are not looked at, and no endpoint is named.
    let p = policy(ProxyMode::On, Some(&["10.0.0.0/8"]));
    assert_eq!(
        decide(&p, Some(&proxied(&[], &[(0xE0, &[1])])), APP),
        obs("198.51.100.7:51234", Provenance::ProxyV2, true)
    );
    assert_eq!(
        decide(&p, Some(&proxied(&[vpce(VPCE_OK)], &[])), APP),
        obs("198.51.100.7:51234", Provenance::ProxyV2, true)
    );
}

/// A stream connection whose PROXY header names UDP addresses (family 0x12 or 0x22) is
/// refused `datagram_family`, even from a trusted proxy in mode on (HAProxy takes the
/// addresses of TCP families only); the datagram decision takes the same header.
#[test]
fn a_stream_header_with_udp_addresses_is_refused() {
    let tcp6 = crate::vectors::tcp6_block();
    for (fam, block) in [(0x12u8, tcp4_block()), (0x22, tcp6)] {
        let header = v2(0x21, fam, &block);
        for mode in [ProxyMode::On, ProxyMode::Unspecified] {
            let got = decide(&policy(mode, ANY), Some(&header), APP);
            assert_eq!(got, Err(Refusal::DatagramFamily), "{fam:#x} {mode:?}");
            assert_eq!(got.unwrap_err().code(), "datagram_family");
        }
        // The rules every header is held to come first.
        assert_eq!(
            decide(
                &policy(ProxyMode::On, Some(&["192.0.2.0/24"])),
                Some(&header),
                APP
            ),
            Err(Refusal::UntrustedProxy {
                peer: sa(PEER).ip()
            })
        );
        assert_eq!(
            decide(&policy(ProxyMode::Off, ANY), Some(&header), APP),
            Err(Refusal::HeaderForbidden)
        );
        // LOCAL: the addresses are ignored, whatever their family.
        let local = v2(0x20, fam, &header[16..]);
        assert_eq!(
            decide(&policy(ProxyMode::On, ANY), Some(&local), APP),
            Ok(Observed::new(
                std::net::SocketAddr::new(sa(PEER).ip(), 0),
                Provenance::Local,
                false
            ))
        );
        // The same header in a datagram is taken.
        let mut datagram = header.clone();
        datagram.extend_from_slice(b"payload");
        let p = policy(ProxyMode::On, ANY);
        let accepted = p.decide_datagram(sa(PEER), &datagram).unwrap();
        assert_eq!(accepted.payload_offset, header.len());
        // A TCP header on a stream is still taken.
        let tcp_fam = fam & 0xF0 | 0x01;
        assert!(decide(&p, Some(&v2(0x21, tcp_fam, &header[16..])), APP).is_ok());
    }
}

/// A cloud endpoint TLV given as a "custom" TLV counts as one: the builder refuses a second
/// one of the same vendor, whichever way each was added, so that what it writes
/// `endpoint_ids` can read.
#[test]
fn the_builder_refuses_a_second_endpoint_tlv_of_a_vendor() {
    let aws: AwsVpceId = VPCE_OK.parse().unwrap();
    let base = || {
        V2Builder::new(Command::Proxy)
            .addresses(Addresses::Tcp4 {
                src: "198.51.100.7:51234".parse().unwrap(),
                dst: "203.0.113.10:443".parse().unwrap(),
            })
            .unwrap()
    };
    for kind in [0xEAu8, 0xEE, 0xE0] {
        let custom = Tlv::Custom {
            kind,
            value: &[1, 2, 3, 4, 5],
        };
        let twice = base().tlv(custom).and_then(|b| b.tlv(custom));
        assert!(twice.is_err(), "{kind:#x} twice as custom");
    }
    assert!(
        base()
            .aws_vpce_id(&aws)
            .and_then(|b| b.tlv(Tlv::Custom {
                kind: 0xEA,
                value: &[1]
            }))
            .is_err()
    );
    assert!(
        base()
            .tlv(Tlv::Custom {
                kind: 0xEA,
                value: &[1]
            })
            .and_then(|b| b.aws_vpce_id(&aws))
            .is_err()
    );
    // Other custom types may repeat, and one vendor's TLV beside another's is fine.
    let other = Tlv::Custom {
        kind: 0xE5,
        value: &[7],
    };
    assert!(base().tlv(other).and_then(|b| b.tlv(other)).is_ok());
    let both = base()
        .aws_vpce_id(&aws)
        .and_then(|b| b.gcp_psc_connection_id(GcpPscConnectionId(7)))
        .and_then(|b| b.encode())
        .unwrap();
    let (h, _) = parse(&both).unwrap();
    let ids = ippin_proxy_protocol::endpoint_ids(h.tlvs()).unwrap();
    assert_eq!(
        ids,
        [
            Some(EndpointId::Aws(aws)),
            None,
            Some(EndpointId::Gcp(GcpPscConnectionId(7)))
        ]
    );
}

mod props {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use ippin_proxy_protocol::{Command, ListenerPolicy, Provenance, ProxyMode, Step};
    use proptest::prelude::*;

    fn mode() -> impl Strategy<Value = ProxyMode> {
        prop_oneof![
            Just(ProxyMode::On),
            Just(ProxyMode::Off),
            Just(ProxyMode::Unspecified)
        ]
    }

    /// A v1 header for `src` (sometimes cut or followed by a second one), or arbitrary bytes.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), 0usize..60, any::<bool>()).prop_map(
                |(a, port, cut, twice)| {
                    let h = format!(
                        "PROXY TCP4 {} 203.0.113.10 {port} 443\r\n",
                        Ipv4Addr::from(a)
                    );
                    let mut v = h.clone().into_bytes();
                    if twice {
                        v.extend_from_slice(h.as_bytes());
                    }
                    v.extend_from_slice(b"SSH-2.0-x\r\n");
                    v.truncate(v.len().saturating_sub(cut % 8));
                    v
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..120),
        ]
    }

    proptest! {
        /// Whatever the bytes, the mode and the peer: a trusted observation comes only from a
        /// listener with `on`, a peer among its trusted proxies and one PROXY header, whose
        /// source it is; or, without a header, from the peer itself (`off`, `unspecified`). An
        /// `unspecified` listener never believes a header, an `off` one never takes one, an
        /// `on` one never serves a connection without one.
        #[test]
        fn only_a_trusted_proxys_one_header_is_believed(
            mode in mode(),
            peer in proptest::sample::select(vec!["10.0.0.5:40000", "192.0.2.9:5000"]),
            buf in input(),
            eof in any::<bool>(),
        ) {
            let mut policy = ListenerPolicy::new(mode);
            policy.trusted_proxies = Some(vec!["10.0.0.0/8".parse().unwrap()]);
            let peer: SocketAddr = peer.parse().unwrap();
            let peer_trusted = matches!(peer.ip(), IpAddr::V4(v) if v.octets()[0] == 10);
            match policy.step(peer, &buf, eof) {
                Step::Accept { observed, header, consumed } => {
                    prop_assert!(consumed <= buf.len());
                    match (&header, mode) {
                        (Some(_), ProxyMode::Off) => prop_assert!(false, "a header on an off listener"),
                        (None, ProxyMode::On) => prop_assert!(false, "no header on an on listener"),
                        _ => {}
                    }
                    if mode == ProxyMode::Unspecified && header.is_some() {
                        prop_assert!(!observed.trusted, "a header believed on an unspecified listener");
                    }
                    if observed.trusted {
                        match &header {
                            Some(h) => {
                                prop_assert!(mode == ProxyMode::On && peer_trusted);
                                prop_assert_eq!(h.command(), Command::Proxy);
                                prop_assert_eq!(Some(observed.addr), h.source());
                                prop_assert_eq!(observed.provenance, Provenance::ProxyV1);
                            }
                            None => {
                                prop_assert!(mode != ProxyMode::On);
                                prop_assert_eq!(observed.addr, peer);
                                prop_assert_eq!(observed.provenance, Provenance::Direct);
                            }
                        }
                    } else {
                        prop_assert_eq!(observed.addr.port(), 0);
                    }
                    // One header per connection: what follows is not another.
                    let rest = &buf[consumed..];
                    if header.is_some() {
                        prop_assert!(!rest.starts_with(b"PROXY "), "{:?}", String::from_utf8_lossy(rest));
                    }
                }
                Step::NeedMore => prop_assert!(!eof),
                _ => {}
            }
        }
    }
}
