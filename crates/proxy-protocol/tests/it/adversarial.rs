//! Adversarial inputs, one test per question in docs/proxy-protocol.md
//! ("Edge cases, decided"). Each asserts the decision recorded there.

use std::net::SocketAddr;

use ippin_proxy_protocol::{
    Addresses, Command, DEFAULT_TIMEOUT, Error, ListenerPolicy, Observed, ParseConfig, Provenance,
    ProxyMode, Refusal, Step, Tlv, UNIX_ADDR_LEN, accept, parse, parse_with,
};

use crate::vectors::{tcp4_block, tcp6_block, tlv, v2};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Invalid (never "incomplete"), also with more bytes after it.
#[track_caller]
fn invalid(input: &[u8]) -> Error {
    let e = parse(input).unwrap_err();
    assert!(!e.is_incomplete(), "{input:x?}: {e}");
    let mut more = input.to_vec();
    more.extend_from_slice(b"\r\nSSH-2.0-x\r\n");
    assert!(parse(&more).is_err(), "{more:x?}");
    e
}

// ---- v2 --------------------------------------------------------------------

#[test]
fn local_with_a_family_and_a_short_len_is_invalid() {
    // `\x20\x11\x00\x00`: LOCAL, TCP4, len 0. HAProxy's receiver skips the
    // length check for LOCAL; we refuse (the issue's rule, and HAProxy's
    // sender only ever sends LOCAL as UNSPEC).
    for (fam, block) in [
        (0x11u8, 12usize),
        (0x12, 12),
        (0x21, 36),
        (0x22, 36),
        (0x31, 216),
    ] {
        for len in [0, 1, block - 1] {
            let h = v2(0x20, fam, &vec![0; len]);
            assert!(
                matches!(invalid(&h[..16]), Error::V2Length { .. }),
                "fam {fam:#x} len {len}"
            );
            assert!(matches!(invalid(&h), Error::V2Length { .. }));
        }
        // With the full block it is fine, and the addresses stay hidden.
        let h = v2(0x20, fam, &vec![7; block]);
        let (header, used) = parse(&h).unwrap();
        assert_eq!((header.command(), used), (Command::Local, h.len()));
        assert_eq!(header.addresses(), Addresses::Unspec);
        assert_eq!(header.source(), None);
    }
    // LOCAL UNSPEC with len 0: HAProxy's health-check header.
    let unspec = v2(0x20, 0x00, &[]);
    let (h, used) = parse(&unspec).unwrap();
    assert_eq!((h.command(), used, h.source()), (Command::Local, 16, None));
}

#[test]
fn len_cap_and_max_header_len_boundaries() {
    // len = 0xFFFF under the default 4 KiB cap: refused from the 16 fixed
    // bytes alone.
    let mut fixed = v2(0x21, 0x11, &[]);
    fixed[14] = 0xFF;
    fixed[15] = 0xFF;
    assert!(matches!(
        invalid(&fixed),
        Error::TooLong {
            len: 65551,
            max: 4096
        }
    ));
    // With a cap that allows it, the same bytes are incomplete, with the
    // exact count.
    let big = ParseConfig::with_max_header_len(16 + 0xFFFF);
    assert_eq!(
        parse_with(&fixed, &big).unwrap_err(),
        Error::Incomplete {
            needed: Some(0xFFFF)
        }
    );
    // A full 0xFFFF header: 12 address bytes and one NOOP of 65520 bytes.
    let mut body = tcp4_block();
    body.extend(tlv(0x04, &vec![0; 0xFFFF - 12 - 3]));
    let h = v2(0x21, 0x11, &body);
    assert_eq!(h.len(), 16 + 0xFFFF);
    assert_eq!(parse_with(&h, &big).unwrap().1, h.len());
    // The cap is inclusive: exactly max_header_len passes, one more fails.
    let h = v2(0x21, 0x11, &tcp4_block());
    let exact = ParseConfig::with_max_header_len(28);
    assert_eq!(parse_with(&h, &exact).unwrap().1, 28);
    let under = ParseConfig::with_max_header_len(27);
    assert!(matches!(
        parse_with(&h[..16], &under).unwrap_err(),
        Error::TooLong { len: 28, max: 27 }
    ));
}

#[test]
fn unix_paths_without_nul_are_exposed_raw() {
    let mut body = vec![b'a'; UNIX_ADDR_LEN];
    body.extend(vec![b'b'; UNIX_ADDR_LEN]);
    let h = v2(0x21, 0x31, &body);
    let (header, _) = parse(&h).unwrap();
    match header.addresses() {
        Addresses::Unix { src, dst, datagram } => {
            assert!(!datagram);
            assert_eq!(src, [b'a'; UNIX_ADDR_LEN]);
            assert_eq!(dst, [b'b'; UNIX_ADDR_LEN]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(header.source(), None);
}

fn with(tlvs: &[Vec<u8>]) -> Vec<u8> {
    let mut body = tcp4_block();
    for t in tlvs {
        body.extend_from_slice(t);
    }
    v2(0x21, 0x11, &body)
}

#[test]
fn zero_length_tlvs() {
    // Accepted: an empty byte string or text is a value of these types.
    for kind in [0x01u8, 0x02, 0x04, 0x05, 0x30, 0xE0, 0x00, 0xF0, 0xFF] {
        let h = with(&[tlv(kind, b"")]);
        let (header, _) = parse(&h).unwrap_or_else(|e| panic!("{kind:#x}: {e}"));
        let t = header.tlvs().next().unwrap();
        assert_eq!(t.kind(), kind);
    }
    // Refused: CRC32C is exactly 4 bytes, SSL at least 5.
    assert!(matches!(
        invalid(&with(&[tlv(0x03, b"")])),
        Error::TlvLength { kind: 0x03, .. }
    ));
    for n in 0..5 {
        assert!(matches!(
            invalid(&with(&[tlv(0x20, &vec![1; n])])),
            Error::TlvLength { kind: 0x20, .. }
        ));
    }
    // SSL with exactly 5 bytes and no sub-TLV is fine.
    assert!(parse(&with(&[tlv(0x20, &[1, 0, 0, 0, 0])])).is_ok());
}

#[test]
fn zero_padding_after_the_addresses() {
    // Three zero bytes read as one TLV of the unregistered type 0x00 with
    // an empty value: an unknown type, exposed raw, accepted.
    let mut body = tcp4_block();
    body.extend([0; 6]);
    let h = v2(0x21, 0x11, &body);
    let (header, _) = parse(&h).unwrap();
    let kinds: Vec<Tlv<'_>> = header.tlvs().collect();
    assert_eq!(
        kinds,
        vec![
            Tlv::Unknown {
                kind: 0,
                value: &[]
            };
            2
        ]
    );
    // Zero padding that is not a whole number of TLVs is invalid.
    for n in [1, 2, 4, 5] {
        let mut body = tcp4_block();
        body.extend(vec![0; n]);
        assert!(matches!(
            invalid(&v2(0x21, 0x11, &body)),
            Error::TlvBounds { .. }
        ));
    }
}

#[test]
fn ssl_sub_tlvs_that_overrun_or_nest() {
    // A sub-TLV whose length runs past the SSL TLV (but not past the
    // header: the next TLV would cover it).
    let mut ssl = vec![1, 0, 0, 0, 0, 0x21, 0, 10];
    ssl.extend(b"TLSv1");
    let mut after = tlv(0x04, b"xxxxx");
    let mut h = with(&[tlv(0x20, &ssl)]);
    h.append(&mut after);
    let len = u16::try_from(h.len() - 16).unwrap();
    h[14..16].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(invalid(&h), Error::TlvBounds { .. }));
    // One or two bytes left over inside the SSL TLV.
    for extra in [1, 2] {
        let mut ssl = vec![1, 0, 0, 0, 0];
        ssl.extend(vec![0x21; extra]);
        assert!(matches!(
            invalid(&with(&[tlv(0x20, &ssl)])),
            Error::TlvBounds { .. }
        ));
    }
    // SSL inside SSL: 0x20 is not an SSL sub-type, so it is an unknown
    // sub-TLV, exposed raw and not parsed further (whatever it holds).
    let mut inner = vec![1, 0, 0, 0, 0];
    inner.extend(tlv(0x21, b"\xff\xfe"));
    let mut outer = vec![1, 0, 0, 0, 0];
    outer.extend(tlv(0x20, &inner));
    let h = with(&[tlv(0x20, &outer)]);
    let (header, _) = parse(&h).unwrap();
    let Some(Tlv::Ssl(ssl)) = header.tlvs().next() else {
        panic!()
    };
    let subs: Vec<_> = ssl.sub_tlvs().collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].kind(), 0x20);
    assert_eq!(subs[0].value(), &inner[..]);
}

#[test]
fn crc32c_twice_or_of_the_wrong_length() {
    let h = with(&[tlv(0x03, &[0; 4]), tlv(0x03, &[0; 4])]);
    assert!(matches!(
        invalid(&h),
        Error::DuplicateTlv { kind: 0x03, .. }
    ));
    for n in [3, 5] {
        assert!(matches!(
            invalid(&with(&[tlv(0x03, &vec![0; n])])),
            Error::TlvLength { kind: 0x03, .. }
        ));
    }
}

#[test]
fn text_tlvs_reject_bad_encodings() {
    // NETNS is US-ASCII.
    for bad in [&b"ns\x80"[..], "né".as_bytes()] {
        assert!(matches!(
            invalid(&with(&[tlv(0x30, bad)])),
            Error::TlvEncoding { kind: 0x30, .. }
        ));
    }
    // AUTHORITY is UTF-8: invalid bytes, overlong forms, surrogates and
    // truncated sequences are refused, at every length the fast ASCII
    // check handles (short, 8–16, long).
    let bads: [&[u8]; 6] = [
        b"\xff",
        b"\xc0\x80",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
    ];
    for bad in bads {
        for pad in [0, 5, 12, 40] {
            let mut v = vec![b'a'; pad];
            v.extend_from_slice(bad);
            assert!(
                matches!(
                    invalid(&with(&[tlv(0x02, &v)])),
                    Error::TlvEncoding { kind: 0x02, .. }
                ),
                "{v:x?}"
            );
        }
    }
    // Valid non-ASCII UTF-8 passes.
    let h = with(&[tlv(0x02, "bücher.example".as_bytes())]);
    let (h, _) = parse(&h).unwrap();
    assert_eq!(h.tlvs().next(), Some(Tlv::Authority("bücher.example")));
}

// ---- v1 --------------------------------------------------------------------

#[test]
fn v1_zero_ports_are_valid() {
    let (h, _) = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n").unwrap();
    assert_eq!(h.source(), Some(sa("1.2.3.4:0")));
    assert_eq!(h.destination(), Some(sa("5.6.7.8:0")));
    let (h, _) = parse(b"PROXY TCP6 ::1 ::2 0 0\r\n").unwrap();
    assert_eq!(h.source(), Some(sa("[::1]:0")));
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 00 0\r\n");
}

#[test]
fn v1_unknown_forms() {
    for ok in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN \r\n",
        b"PROXY UNKNOWN a\x00b\x80\xff\r\n",
    ] {
        let (h, used) = parse(ok).unwrap();
        assert_eq!((used, h.source()), (ok.len(), None));
    }
    // A space and nothing more yet: wait for the CRLF.
    assert!(parse(b"PROXY UNKNOWN ").unwrap_err().is_incomplete());
    // A lone CR or LF in the ignored part is still not a line end.
    invalid(b"PROXY UNKNOWN a\rb\r\n");
    invalid(b"PROXY UNKNOWN a\nb\r\n");
    invalid(b"PROXY UNKNOWN\n");
}

#[test]
fn v1_nul_and_high_bytes_are_invalid_outside_unknown() {
    let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r\n";
    for at in 0..line.len() - 2 {
        for byte in [0x00, 0x80, 0xC3, 0xFF] {
            let mut bad = line.to_vec();
            bad[at] = byte;
            invalid(&bad);
        }
    }
    invalid(b"PROXY TCP6 ::1\x00 ::2 1 2\r\n");
    invalid("PROXY TCP6 ::１ ::2 1 2\r\n".as_bytes());
}

#[test]
fn v1_bad_ipv4() {
    for addr in [
        "1.2.3.4.5",
        "1.2.3",
        "256.1.1.1",
        "1..2.3",
        "1.2.3.",
        ".1.2.3",
        "01.2.3.4",
        "1.2.3.4a",
        "0x1.2.3.4",
        "1.2.3.1000",
        "4294967295",
    ] {
        let line = format!("PROXY TCP4 {addr} 5.6.7.8 1 2\r\n");
        invalid(line.as_bytes());
        let line = format!("PROXY TCP4 5.6.7.8 {addr} 1 2\r\n");
        invalid(line.as_bytes());
    }
}

#[test]
fn v1_bad_and_good_ipv6() {
    for addr in [
        ":::",
        "1::2::3",
        "12345::",
        "::12345",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "::1.2.3.4:1",
        "1.2.3.4::",
        "::ffff:1.2.3.04",
        "::ffff:1.2.3",
        "::ffff:256.1.1.1",
        "1:2:3:4:5:6:7:1.2.3.4",
        "fe80::1%eth0",
        "[::1]",
        "::1/128",
        ":1::",
        "1::2:",
        "g::",
    ] {
        let line = format!("PROXY TCP6 {addr} ::2 1 2\r\n");
        invalid(line.as_bytes());
    }
    for (addr, want) in [
        ("2001:DB8::A", "2001:db8::a"),
        ("::FFFF:192.0.2.1", "::ffff:192.0.2.1"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ("::", "::"),
        ("1::", "1::"),
    ] {
        let line = format!("PROXY TCP6 {addr} ::2 1 2\r\n");
        let (h, _) = parse(line.as_bytes()).unwrap();
        assert_eq!(
            h.source().unwrap().ip(),
            want.parse::<std::net::IpAddr>().unwrap()
        );
    }
}

#[test]
fn v1_line_ends_and_length() {
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\rX");
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n");
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r\r\n");
    // The CR alone at the end of the input: wait for the LF.
    assert!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r")
            .unwrap_err()
            .is_incomplete()
    );
    // 107 bytes with CRLF: accepted. 108: invalid.
    let pad = |n: usize| {
        let mut l = b"PROXY UNKNOWN ".to_vec();
        l.extend(vec![b'x'; n - l.len() - 2]);
        l.extend(b"\r\n");
        assert_eq!(l.len(), n);
        l
    };
    assert_eq!(parse(&pad(107)).unwrap().1, 107);
    assert_eq!(invalid(&pad(108)), Error::V1TooLong);
}

// ---- stream and policy ----------------------------------------------------

/// Mode on; `None` names every peer (`0.0.0.0/0`, `::/0`).
fn on(trusted: Option<&[&str]>) -> ListenerPolicy {
    let trusted = trusted.unwrap_or(&["0.0.0.0/0", "::/0"]);
    ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(trusted.iter().map(|n| n.parse().unwrap()).collect())
}

const V1: &[u8] = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n";
const APP: &[u8] = b"SSH-2.0-OpenSSH_9.2p1\r\n";

#[test]
fn header_then_eof_is_accepted() {
    let p = on(None);
    let v2h = v2(0x21, 0x11, &tcp4_block());
    for h in [V1, &v2h[..]] {
        match p.step(sa("10.0.0.5:1"), h, true) {
            Step::Accept {
                observed, consumed, ..
            } => {
                assert_eq!(consumed, h.len());
                assert_eq!(observed.addr, sa("198.51.100.7:51234"));
            }
            other => panic!("{other:?}"),
        }
        // Without EOF it waits for the first application byte.
        assert_eq!(p.step(sa("10.0.0.5:1"), h, false), Step::NeedMore);
    }
}

#[tokio::test]
async fn split_signature_and_one_byte_v1_through_the_adapter() {
    let p = on(Some(&["127.0.0.0/8"]));
    let mut v2h = v2(0x21, 0x21, &tcp6_block());
    v2h.extend_from_slice(APP);
    let mut v1 = V1.to_vec();
    v1.extend_from_slice(APP);
    for input in [v1, v2h] {
        // One byte per read; and a split inside the 12-byte signature.
        for chunks in [vec![1; input.len()], vec![5, 7, input.len() - 12]] {
            let (mut client, server) = tokio::io::duplex(4096);
            let feed = input.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut at = 0;
                for n in chunks {
                    client.write_all(&feed[at..at + n]).await.unwrap();
                    client.flush().await.unwrap();
                    tokio::task::yield_now().await;
                    at += n;
                }
                client
            });
            let a = accept(server, sa("127.0.0.1:9"), &p, DEFAULT_TIMEOUT)
                .await
                .unwrap();
            drop(writer.await.unwrap());
            assert!(a.observed.trusted);
            let mut rest = Vec::new();
            let mut stream = a.stream;
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest)
                .await
                .unwrap();
            assert_eq!(rest, APP);
        }
    }
}

#[test]
fn mode_on_local_is_the_peer_untrusted() {
    let p = on(Some(&["10.0.0.0/8"]));
    let local = v2(0x20, 0x00, &[]);
    let (h, _) = parse(&local).unwrap();
    assert_eq!(
        p.decide(sa("10.0.0.5:40000"), Some(&h), APP),
        Ok(Observed::new(sa("10.0.0.5:0"), Provenance::Local, false))
    );
    // The same with an address block that LOCAL tells us to ignore.
    let mut block = tcp4_block();
    block[0] = 1;
    let local = v2(0x20, 0x11, &block);
    let (h, _) = parse(&local).unwrap();
    let o = p.decide(sa("10.0.0.5:40000"), Some(&h), APP).unwrap();
    assert_eq!((o.addr, o.trusted), (sa("10.0.0.5:0"), false));
}

#[test]
fn ipv4_mapped_peer_matches_an_ipv4_trusted_net() {
    let (h, _) = parse(V1).unwrap();
    let p = on(Some(&["127.0.0.1/32"]));
    let mapped = sa("[::ffff:127.0.0.1]:5000");
    assert!(p.is_trusted_proxy(mapped.ip()));
    assert_eq!(
        p.decide(mapped, Some(&h), APP).unwrap().addr,
        sa("198.51.100.7:51234")
    );
    let mut input = V1.to_vec();
    input.extend_from_slice(APP);
    assert!(matches!(p.step(mapped, &input, false), Step::Accept { .. }));
    // Another mapped address does not match.
    assert_eq!(
        p.decide(sa("[::ffff:127.0.0.2]:5000"), Some(&h), APP),
        Err(Refusal::UntrustedProxy {
            peer: "127.0.0.2".parse().unwrap()
        })
    );
    // A trusted net written in the mapped form matches too.
    let p = on(Some(&["::ffff:127.0.0.0/104"]));
    assert!(p.is_trusted_proxy(mapped.ip()));
}

#[test]
fn trusted_proxy_may_claim_a_source_in_its_own_network() {
    let p = on(Some(&["10.0.0.0/8"]));
    let line = b"PROXY TCP4 10.0.0.5 10.0.0.1 1234 22\r\n";
    let (h, _) = parse(line).unwrap();
    let o = p.decide(sa("10.0.0.5:40000"), Some(&h), APP).unwrap();
    assert_eq!(
        (o.addr, o.provenance, o.trusted),
        (sa("10.0.0.5:1234"), Provenance::ProxyV1, true)
    );
}

#[test]
fn empty_trusted_list_refuses_every_header() {
    let (h, _) = parse(V1).unwrap();
    for mode in [ProxyMode::On, ProxyMode::Unspecified] {
        let p = ListenerPolicy::new(mode).with_trusted_proxies(vec![]);
        for peer in ["127.0.0.1:1", "[::1]:1", "0.0.0.0:1"] {
            assert!(matches!(
                p.decide(sa(peer), Some(&h), APP),
                Err(Refusal::UntrustedProxy { .. })
            ));
            assert!(matches!(
                p.step(sa(peer), V1, false),
                Step::Refuse(Refusal::UntrustedProxy { .. })
            ));
        }
        // Without a header: `on` refuses, `unspecified` takes the peer.
        let direct = p.decide(sa("127.0.0.1:1"), None, APP);
        match mode {
            ProxyMode::On => assert_eq!(direct, Err(Refusal::HeaderRequired)),
            _ => assert!(direct.unwrap().trusted),
        }
    }
}
