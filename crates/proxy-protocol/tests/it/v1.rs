//! v1 rules from the spec, one test per rule.

use std::net::SocketAddr;

use ippin_proxy_protocol::{Addresses, Command, Crc32cStatus, Error, parse, parse_exact};

use crate::vectors::V1_VALID;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn valid_lines_parse_with_their_addresses() {
    for &(line, addrs) in V1_VALID.iter() {
        let mut input = line.to_vec();
        input.extend_from_slice(b"SSH-2.0-OpenSSH_9.2p1\r\n");
        let (h, used) = parse(&input).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(used, line.len(), "{line:?}");
        assert_eq!(h.version(), 1);
        assert_eq!(h.command(), Command::Proxy);
        assert_eq!(h.header_len(), line.len());
        assert_eq!(h.crc32c(), Crc32cStatus::Absent);
        assert_eq!(h.tlvs().count(), 0);
        match addrs {
            Some((src, dst)) => {
                assert_eq!(h.source(), Some(sa(src)), "{line:?}");
                assert_eq!(h.destination(), Some(sa(dst)), "{line:?}");
            }
            None => {
                assert_eq!(h.source(), None);
                assert_eq!(h.destination(), None);
                assert_eq!(h.addresses(), Addresses::Unspec);
            }
        }
        assert_eq!(parse_exact(line).unwrap(), h);
    }
}

#[test]
fn every_truncation_is_incomplete() {
    for &(line, _) in V1_VALID.iter() {
        for n in 0..line.len() {
            let err = parse(&line[..n]).unwrap_err();
            assert!(
                err.is_incomplete(),
                "{:?} cut at {n}: {err}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

fn invalid(line: &[u8]) -> Error {
    match parse(line) {
        Ok((h, _)) => panic!("{:?} accepted as {h:?}", String::from_utf8_lossy(line)),
        Err(e) => {
            assert!(
                !e.is_incomplete(),
                "{:?}: incomplete, expected invalid",
                String::from_utf8_lossy(line)
            );
            e
        }
    }
}

#[test]
fn single_spaces_only() {
    for line in [
        &b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
    ] {
        invalid(line);
    }
    assert!(matches!(
        invalid(b"PROXYxTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        Error::V1Syntax {
            offset: 5,
            byte: b'x',
            ..
        }
    ));
}

#[test]
fn crlf_only() {
    assert!(matches!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        Error::V1Syntax { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
        Error::V1Syntax { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
        Error::V1Syntax { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY UNKNOWN\n"),
        Error::V1Protocol { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY UNKNOWN a\nb\r\n"),
        Error::V1Syntax { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY UNKNOWN\rx"),
        Error::V1Syntax { .. }
    ));
}

#[test]
fn protocol_is_tcp4_tcp6_or_unknown() {
    for line in [
        &b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNJUNK\r\n",
        b"PROXY UNKNOWX\r\n",
        b"PROXY \r\n",
    ] {
        assert!(
            matches!(invalid(line), Error::V1Protocol { offset: 6 }),
            "{line:?}"
        );
    }
}

#[test]
fn not_proxy_at_all() {
    assert!(matches!(
        invalid(b"PROXZ"),
        Error::NotProxyHeader {
            offset: 4,
            byte: b'Z'
        }
    ));
    assert!(matches!(
        invalid(b"SSH-2.0-x\r\n"),
        Error::NotProxyHeader {
            offset: 0,
            byte: b'S'
        }
    ));
    assert!(matches!(
        invalid(b"GET / HTTP/1.1\r\n"),
        Error::NotProxyHeader { offset: 0, .. }
    ));
    assert!(matches!(
        invalid(b"POST / HTTP/1.1\r\n"),
        Error::NotProxyHeader { offset: 1, .. }
    ));
}

#[test]
fn ipv4_dotted_quads_without_leading_zeros() {
    for addr in [
        "01.2.3.4",
        "1.02.3.4",
        "1.2.3.00",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "1..3.4",
        ".1.2.3",
        "1.2.3.4.",
        "1.2.3.-4",
        "1.2.3.1000",
        "0x1.2.3.4",
        "::1",
        "1.2.3.4/8",
    ] {
        let line = format!("PROXY TCP4 {addr} 5.6.7.8 1 2\r\n");
        let e = invalid(line.as_bytes());
        assert!(
            matches!(
                e,
                Error::V1Address {
                    field: "source",
                    family: "IPv4",
                    ..
                } | Error::V1Syntax { .. }
            ),
            "{addr}: {e}"
        );
        let line = format!("PROXY TCP4 5.6.7.8 {addr} 1 2\r\n");
        invalid(line.as_bytes());
    }
    // 0 alone is no leading zero.
    assert!(parse(b"PROXY TCP4 0.0.0.0 10.0.0.0 1 2\r\n").is_ok());
}

#[test]
fn ipv6_text_form_no_zone() {
    for addr in [
        "fe80::1%eth0",
        ":::",
        "1::2::3",
        "1:2:3:4:5:6:7:8:9",
        "12345::",
        ":1::",
        "1:",
        "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7",
        "::ffff:01.2.3.4",
        "::ffff:1.2.3",
        "::ffff:1.2.3.4:1",
        "1:2:3:4:5:6:7:1.2.3.4",
        "g::1",
        "1.2.3.4",
        "[::1]",
        "::1/128",
    ] {
        let line = format!("PROXY TCP6 {addr} ::1 1 2\r\n");
        let e = invalid(line.as_bytes());
        assert!(
            matches!(
                e,
                Error::V1Address {
                    field: "source",
                    family: "IPv6",
                    ..
                } | Error::V1Syntax { .. }
            ),
            "{addr}: {e}"
        );
    }
    // Every valid text form agrees with the standard library.
    for addr in [
        "::",
        "::1",
        "1::",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8",
        "0:0:0:0:0:0:0:0",
        "::ffff:1.2.3.4",
        "64:ff9b::192.0.2.33",
        "ABCD:ef01::",
    ] {
        let line = format!("PROXY TCP6 {addr} ::1 1 2\r\n");
        let (h, _) = parse(line.as_bytes()).unwrap_or_else(|e| panic!("{addr}: {e}"));
        let want: std::net::Ipv6Addr = addr.parse().unwrap();
        assert_eq!(h.source().unwrap().ip(), want, "{addr}");
    }
}

#[test]
fn address_of_the_wrong_family_is_invalid() {
    invalid(b"PROXY TCP4 ::1 ::1 1 2\r\n");
    invalid(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n");
    invalid(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n");
    invalid(b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n");
}

#[test]
fn ports_decimal_no_sign_no_leading_zero() {
    for (port, reason) in [
        ("+80", "sign not allowed"),
        ("-1", "sign not allowed"),
        ("080", "leading zero not allowed"),
        ("00", "leading zero not allowed"),
        ("65536", "above 65535"),
        ("99999", "above 65535"),
        ("1000000", "above 65535"),
        ("x", "expected a decimal number"),
    ] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 443\r\n");
        match invalid(line.as_bytes()) {
            Error::V1Port {
                field: "source",
                reason: r,
                offset: 27,
            } => assert_eq!(r, reason, "{port}"),
            e => panic!("{port}: {e}"),
        }
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 443 {port}\r\n");
        match invalid(line.as_bytes()) {
            Error::V1Port {
                field: "destination",
                reason: r,
                ..
            } => assert_eq!(r, reason, "{port}"),
            e => panic!("{port}: {e}"),
        }
    }
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n");
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n");
    invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
}

#[test]
fn at_most_107_bytes() {
    // A complete 108-byte UNKNOWN line is invalid too.
    let long = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n";
    assert_eq!(long.len(), 108);
    assert_eq!(invalid(long), Error::V1TooLong);
    // 107 bytes without CRLF: invalid without waiting for more.
    let mut no_crlf = b"PROXY UNKNOWN ".to_vec();
    no_crlf.resize(107, b'a');
    assert_eq!(invalid(&no_crlf), Error::V1TooLong);
    no_crlf.truncate(106);
    assert!(parse(&no_crlf).unwrap_err().is_incomplete());
    // TCP6 with two dotted tails would be 116 bytes: over the limit.
    let tails = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n";
    assert_eq!(invalid(tails), Error::V1TooLong);
}

#[test]
fn unknown_never_exposes_addresses() {
    let (h, used) = parse(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\nrest").unwrap();
    assert_eq!(used, 35);
    assert_eq!(h.source(), None);
    assert_eq!(h.addresses(), Addresses::Unspec);
    // Anything before the CRLF is ignored, even what is not an address.
    assert!(parse(b"PROXY UNKNOWN a b c d e\r\n").is_ok());
}

#[test]
fn trailing_bytes_are_not_consumed() {
    let (_, used) = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nPROXY TCP4").unwrap();
    assert_eq!(used, 32);
    assert_eq!(
        parse_exact(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nxy").unwrap_err(),
        Error::TrailingBytes { count: 2 }
    );
}

#[test]
fn invalid_prefix_is_reported_before_the_line_ends() {
    // No need to wait for a CRLF when the bytes so far already break a rule.
    assert!(matches!(
        invalid(b"PROXY TCP4 256"),
        Error::V1Address { .. }
    ));
    assert!(matches!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 +"),
        Error::V1Port { .. }
    ));
    assert!(matches!(invalid(b"PROXY TCP7"), Error::V1Protocol { .. }));
}
