//! v2 rules from the spec, one test per rule, and the byte sweeps.

use std::net::SocketAddr;

use ippin_proxy_protocol::{
    Addresses, Command, Crc32cStatus, Error, ParseConfig, SslSubTlv, Tlv, parse, parse_exact,
    parse_with,
};

use crate::vectors::{SIG, fill_crc, tcp4_block, tcp6_block, tlv, v2, v2_valid};

fn invalid(h: &[u8]) -> Error {
    match parse(h) {
        Ok((h, _)) => panic!("accepted: {h:?}"),
        Err(e) => {
            assert!(!e.is_incomplete(), "incomplete, expected invalid");
            e
        }
    }
}

#[test]
fn valid_headers_parse_with_their_source() {
    for (h, src) in v2_valid() {
        let mut input = h.clone();
        input.extend_from_slice(b"SSH-2.0-OpenSSH_9.2p1\r\n");
        let (got, used) = parse(&input).unwrap_or_else(|e| panic!("{h:02x?}: {e}"));
        assert_eq!(used, h.len());
        assert_eq!(got.version(), 2);
        assert_eq!(got.header_len(), h.len());
        assert_eq!(got.source(), src.map(|s| s.parse::<SocketAddr>().unwrap()));
        assert_eq!(got.source(), got.addresses().source());
        assert_eq!(parse_exact(&h).unwrap(), got);
    }
}

#[test]
fn every_truncation_is_incomplete_with_the_exact_count() {
    for (h, _) in v2_valid() {
        for n in 0..h.len() {
            match parse(&h[..n]) {
                Err(Error::Incomplete { needed: Some(k) }) => {
                    // Nothing at all: one byte tells the version.
                    let total = match n {
                        0 => 1,
                        1..16 => 16,
                        _ => h.len(),
                    };
                    assert_eq!(k, total - n, "cut at {n}");
                }
                other => panic!("cut at {n}: {other:?}"),
            }
        }
    }
}

#[test]
fn version_command_byte_sweep() {
    for b in 0..=255u8 {
        let h = v2(b, 0x11, &tcp4_block());
        let r = parse(&h);
        match (b >> 4, b & 0x0F) {
            (2, 0) => assert_eq!(r.unwrap().0.command(), Command::Local),
            (2, 1) => assert_eq!(r.unwrap().0.command(), Command::Proxy),
            (2, c) => assert_eq!(r.unwrap_err(), Error::V2Command { found: c }),
            (v, _) => assert_eq!(r.unwrap_err(), Error::V2Version { found: v }),
        }
        // Detected as soon as byte 13 is in, without waiting for 16.
        let early = parse(&h[..13]);
        assert_eq!(
            early.is_err_and(|e| e.is_incomplete()),
            b == 0x20 || b == 0x21,
            "{b:#04x}"
        );
    }
}

#[test]
fn family_byte_sweep() {
    // 216 zero bytes: a full UNIX block, or a shorter block followed by
    // zero-length TLVs of type 0 (unknown, valid).
    let body = [0u8; 216];
    for b in 0..=255u8 {
        let h = v2(0x21, b, &body);
        let defined = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32].contains(&b);
        match parse(&h) {
            Ok((got, used)) => {
                assert!(defined, "{b:#04x} accepted");
                assert_eq!(used, 16 + 216);
                let expect_src = matches!(b, 0x11 | 0x12 | 0x21 | 0x22);
                assert_eq!(got.source().is_some(), expect_src, "{b:#04x}");
            }
            Err(e) => {
                assert!(!defined, "{b:#04x}: {e}");
                assert_eq!(e, Error::V2Family { found: b });
            }
        }
        assert_eq!(
            parse(&h[..14]).unwrap_err().is_incomplete(),
            defined,
            "{b:#04x}"
        );
    }
}

#[test]
fn length_must_cover_the_address_block_never_incomplete() {
    for (fam, block) in [
        (0x11u8, 12u16),
        (0x12, 12),
        (0x21, 36),
        (0x22, 36),
        (0x31, 216),
        (0x32, 216),
    ] {
        for len in [0, block - 1] {
            let mut h = SIG.to_vec();
            h.extend_from_slice(&[0x21, fam]);
            h.extend_from_slice(&len.to_be_bytes());
            // Only the 16 fixed bytes are in: already invalid.
            assert_eq!(
                invalid(&h),
                Error::V2Length {
                    family: fam,
                    len,
                    block
                }
            );
            // Also with LOCAL, whose family is otherwise ignored.
            h[12] = 0x20;
            assert_eq!(
                invalid(&h),
                Error::V2Length {
                    family: fam,
                    len,
                    block
                }
            );
        }
    }
}

#[test]
fn local_and_unspec_never_expose_addresses_and_skip_exactly_len() {
    let mut body = tcp4_block();
    body.extend(tlv(0x04, b"pad"));
    let mut input = v2(0x20, 0x11, &body);
    let len = input.len();
    input.extend_from_slice(b"app");
    let (h, used) = parse(&input).unwrap();
    assert_eq!(used, len);
    assert_eq!(h.command(), Command::Local);
    assert_eq!(h.addresses(), Addresses::Unspec);
    assert_eq!(h.source(), None);
    assert_eq!(h.destination(), None);
    assert_eq!(h.tlvs().collect::<Vec<_>>(), vec![Tlv::Noop(b"pad")]);

    let bytes = v2(0x21, 0x00, &[]);
    let (h, used) = parse(&bytes).unwrap();
    assert_eq!(
        (used, h.command(), h.addresses()),
        (16, Command::Proxy, Addresses::Unspec)
    );
}

#[test]
fn size_cap_is_checked_before_waiting() {
    let mut fixed = SIG.to_vec();
    fixed.extend_from_slice(&[0x21, 0x11]);
    fixed.extend_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        invalid(&fixed),
        Error::TooLong {
            len: 5016,
            max: 4096
        }
    );
    let cfg = ParseConfig::with_max_header_len(28);
    let h = v2(0x21, 0x11, &tcp4_block());
    assert!(parse_with(&h, &cfg).is_ok());
    let mut longer = tcp4_block();
    longer.extend(tlv(0x04, b""));
    let h = v2(0x21, 0x11, &longer);
    assert_eq!(
        parse_with(&h[..16], &cfg).unwrap_err(),
        Error::TooLong { len: 31, max: 28 }
    );
    // The default accepts the largest header a 4 KiB cap allows.
    let mut big = tcp4_block();
    big.extend(tlv(0x04, &vec![0; 4096 - 16 - 12 - 3]));
    assert!(parse(&v2(0x21, 0x11, &big)).is_ok());
    big.push(0);
    assert!(matches!(
        invalid(&v2(0x21, 0x11, &big)),
        Error::TooLong { len: 4097, .. }
    ));
}

#[test]
fn tlvs_inside_len_no_leftover() {
    for leftover in [&[0x04u8][..], &[0x04, 0x00]] {
        let mut body = tcp4_block();
        body.extend_from_slice(leftover);
        assert!(matches!(
            invalid(&v2(0x21, 0x11, &body)),
            Error::TlvBounds { offset: 28, .. }
        ));
    }
    let mut body = tcp4_block();
    body.extend_from_slice(&[0x02, 0x00, 0x05, b'a', b'b']);
    assert!(matches!(
        invalid(&v2(0x21, 0x11, &body)),
        Error::TlvBounds { offset: 28, .. }
    ));
}

#[test]
fn known_tlvs_are_decoded() {
    let all = v2_valid();
    let (h, _) = parse(&all[4].0).unwrap();
    assert_eq!(h.crc32c(), Crc32cStatus::Valid);
    let tlvs: Vec<Tlv<'_>> = h.tlvs().collect();
    assert_eq!(tlvs.len(), 7);
    assert_eq!(tlvs[0], Tlv::Alpn(b"h2"));
    assert_eq!(tlvs[1], Tlv::Noop(b""));
    let Tlv::Ssl(ssl) = tlvs[2] else {
        panic!("{:?}", tlvs[2])
    };
    assert_eq!((ssl.client(), ssl.verify(), ssl.is_ssl()), (7, 0, true));
    assert_eq!(
        ssl.sub_tlvs().collect::<Vec<_>>(),
        vec![
            SslSubTlv::Version("TLSv1.3"),
            SslSubTlv::Cn("José"),
            SslSubTlv::Cipher("TLS_AES_256_GCM_SHA384"),
            SslSubTlv::ClientCert(&[0x30, 0x00]),
        ]
    );
    assert_eq!(tlvs[3], Tlv::Netns("blue"));
    assert_eq!(
        tlvs[4],
        Tlv::Custom {
            kind: 0xE0,
            value: b"custom"
        }
    );
    assert_eq!(
        tlvs[5],
        Tlv::Unknown {
            kind: 0xF0,
            value: b"experiment"
        }
    );
    assert!(matches!(tlvs[6], Tlv::Crc32c(_)));
    // Custom and unknown TLVs never change the addresses.
    assert_eq!(h.source(), Some("198.51.100.7:51234".parse().unwrap()));

    let (h, _) = parse(&all[2].0).unwrap();
    assert_eq!(h.tlvs().find(0x02), Some(Tlv::Authority("example.com")));
    assert_eq!(h.tlvs().find(0x05), Some(Tlv::UniqueId(&[0xAB; 16])));
    assert_eq!(h.crc32c(), Crc32cStatus::Absent);
}

fn with_tlvs(tlvs: &[Vec<u8>]) -> Vec<u8> {
    let mut body = tcp4_block();
    for t in tlvs {
        body.extend_from_slice(t);
    }
    v2(0x21, 0x11, &body)
}

#[test]
fn crc32c_is_exactly_4_bytes_and_verified() {
    for len in [0usize, 3, 5] {
        let e = invalid(&with_tlvs(&[tlv(0x03, &vec![0; len])]));
        assert_eq!(
            e,
            Error::TlvLength {
                kind: 3,
                offset: 28,
                len,
                reason: "must be exactly 4"
            }
        );
    }
    let good = fill_crc(with_tlvs(&[tlv(0x03, &[0; 4]), tlv(0x04, b"x")]), 31);
    assert_eq!(parse(&good).unwrap().0.crc32c(), Crc32cStatus::Valid);
    // Any flipped bit anywhere in the header is caught, except in the
    // CRC32C TLV's own type byte (byte 28): that turns the checksum into an
    // unknown TLV, which the protocol cannot tell from a sender without
    // CRC32C.
    for i in (0..good.len()).filter(|&i| i != 28) {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            if let Ok((h, _)) = parse(&bad) {
                panic!("byte {i} bit {bit:#x} flipped, still accepted: {h:?}");
            }
        }
    }
    let mut bad = good.clone();
    bad[38] ^= 1; // the NOOP value
    assert!(matches!(invalid(&bad), Error::Crc32cMismatch { .. }));
    // Two checksums are ambiguous.
    let two = with_tlvs(&[tlv(0x03, &[0; 4]), tlv(0x03, &[0; 4])]);
    assert!(matches!(
        invalid(&two),
        Error::DuplicateTlv {
            kind: 3,
            offset: 35
        }
    ));
}

#[test]
fn noop_any_length_unique_id_at_most_128() {
    for len in [0usize, 1, 300] {
        assert!(parse(&with_tlvs(&[tlv(0x04, &vec![0xFF; len])])).is_ok());
    }
    assert!(parse(&with_tlvs(&[tlv(0x05, &[1; 128])])).is_ok());
    assert!(parse(&with_tlvs(&[tlv(0x05, &[])])).is_ok());
    assert!(matches!(
        invalid(&with_tlvs(&[tlv(0x05, &[1; 129])])),
        Error::TlvLength {
            kind: 5,
            len: 129,
            ..
        }
    ));
}

/// AUTHORITY is at most 255 bytes (HAProxy's bound; a host name is at most 253), in ASCII
/// (the quick check) and in UTF-8 (the full one), with a CRC32C (the full check from the
/// start) and without; the builder refuses what the parser would.
#[test]
fn authority_at_most_255() {
    // A header with this AUTHORITY, and a CRC32C after it when asked.
    let header = |value: &[u8], crc: bool| {
        let mut tlvs = vec![tlv(0x02, value)];
        if crc {
            tlvs.push(tlv(0x03, &[0; 4]));
        }
        let h = with_tlvs(&tlvs);
        let at = h.len() - 4;
        if crc { fill_crc(h, at) } else { h }
    };
    for (value, crc) in [
        (vec![b'a'; 255], false),
        ("é".repeat(127).into_bytes(), false),
        (vec![b'a'; 255], true),
    ] {
        let h = header(&value, crc);
        assert!(parse(&h).is_ok(), "{} bytes, crc {crc}", value.len());
    }
    for (value, crc) in [
        (vec![b'a'; 256], false),
        ("é".repeat(128).into_bytes(), false),
        (vec![b'a'; 4000], false),
        (vec![b'a'; 256], true),
    ] {
        let len = value.len();
        assert!(
            matches!(invalid(&header(&value, crc)), Error::TlvLength { kind: 2, len: l, .. } if l == len),
            "{len} bytes, crc {crc}"
        );
    }
    let text = "a".repeat(256);
    let built = ippin_proxy_protocol::V2Builder::new(Command::Proxy)
        .addresses(Addresses::Unspec)
        .and_then(|b| b.tlv(Tlv::Authority(&text)))
        .and_then(|b| b.encode());
    assert!(built.is_err(), "{built:?}");
}

#[test]
fn text_tlvs_are_checked() {
    assert!(matches!(
        invalid(&with_tlvs(&[tlv(0x02, b"ex\xffample")])),
        Error::TlvEncoding {
            kind: 2,
            expected: "UTF-8",
            ..
        }
    ));
    assert!(parse(&with_tlvs(&[tlv(0x02, "bücher.example".as_bytes())])).is_ok());
    assert!(matches!(
        invalid(&with_tlvs(&[tlv(0x30, "nétns".as_bytes())])),
        Error::TlvEncoding {
            kind: 0x30,
            expected: "US-ASCII",
            ..
        }
    ));
}

#[test]
fn ssl_tlv_and_its_sub_tlvs_are_checked() {
    let ssl = |sub: &[u8]| {
        let mut v = vec![1, 0, 0, 0, 1];
        v.extend_from_slice(sub);
        with_tlvs(&[tlv(0x20, &v)])
    };
    for short in 0..5 {
        assert!(matches!(
            invalid(&with_tlvs(&[tlv(0x20, &vec![0; short])])),
            Error::TlvLength { kind: 0x20, .. }
        ));
    }
    assert!(parse(&ssl(&[])).is_ok());
    assert!(matches!(
        invalid(&ssl(&[0x21, 0, 5, b'T'])),
        Error::TlvBounds { offset: 36, .. }
    ));
    assert!(matches!(invalid(&ssl(&[0x21, 0])), Error::TlvBounds { .. }));
    assert!(matches!(
        invalid(&ssl(&tlv(0x21, b"TLSv1\xff"))),
        Error::TlvEncoding {
            kind: 0x21,
            offset: 36,
            expected: "US-ASCII"
        }
    ));
    assert!(matches!(
        invalid(&ssl(&tlv(0x22, b"\xc3"))),
        Error::TlvEncoding { kind: 0x22, .. }
    ));
    for sub in 0x23..=0x27u8 {
        assert!(
            matches!(invalid(&ssl(&tlv(sub, b"\x80"))), Error::TlvEncoding { .. }),
            "{sub:#x}"
        );
        assert!(parse(&ssl(&tlv(sub, b"name"))).is_ok());
    }
    let mut twice = tlv(0x21, b"TLSv1.2");
    twice.extend(tlv(0x21, b"TLSv1.3"));
    assert!(matches!(
        invalid(&ssl(&twice)),
        Error::DuplicateTlv { kind: 0x21, .. }
    ));
    // Unknown sub-types are exposed raw.
    let bytes = ssl(&tlv(0x2F, b"?"));
    let (h, _) = parse(&bytes).unwrap();
    let Some(Tlv::Ssl(s)) = h.tlvs().next() else {
        panic!()
    };
    assert_eq!(
        s.sub_tlvs().next(),
        Some(SslSubTlv::Unknown {
            kind: 0x2F,
            value: b"?"
        })
    );
}

#[test]
fn singleton_tlvs_may_not_repeat() {
    for kind in [0x01u8, 0x02, 0x05, 0x30] {
        let e = invalid(&with_tlvs(&[tlv(kind, b"a"), tlv(kind, b"b")]));
        assert_eq!(e, Error::DuplicateTlv { kind, offset: 32 });
    }
    assert!(parse(&with_tlvs(&[tlv(0x04, b""), tlv(0x04, b"")])).is_ok());
    assert!(parse(&with_tlvs(&[tlv(0xE1, b""), tlv(0xE1, b"")])).is_ok());
}

#[test]
fn signature_mismatch_is_not_a_header() {
    for i in 0..12 {
        let mut h = v2(0x21, 0x11, &tcp4_block());
        h[i] ^= 0x40;
        match parse(&h) {
            Err(Error::NotProxyHeader { offset, .. }) => assert_eq!(offset, i),
            // Byte 0 changed to something else entirely.
            other => panic!("{i}: {other:?}"),
        }
        // Also when only the first bytes are in.
        assert!(!parse(&h[..=i]).unwrap_err().is_incomplete());
    }
}

#[test]
fn udp_and_tcp6_addresses() {
    let bytes = v2(0x21, 0x21, &tcp6_block());
    let (h, _) = parse(&bytes).unwrap();
    assert!(matches!(h.addresses(), Addresses::Tcp6 { .. }));
    assert_eq!(h.destination(), Some("[2001:db8::10]:443".parse().unwrap()));
    let bytes = v2(0x21, 0x12, &tcp4_block());
    let (h, _) = parse(&bytes).unwrap();
    assert!(matches!(h.addresses(), Addresses::Udp4 { .. }));
}
