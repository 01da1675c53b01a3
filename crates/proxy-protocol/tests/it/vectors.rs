//! Valid test vectors, written by hand from the spec (not by our encoder).

/// v1 lines that must parse, with the source and destination they carry
/// (`None` for `UNKNOWN`).
/// A v1 line and the (source, destination) it carries.
pub(crate) type V1Vector = (&'static [u8], Option<(&'static str, &'static str)>);

pub(crate) const V1_VALID: &[V1Vector] = &[
    (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        Some(("192.168.0.1:56324", "192.168.0.11:443")),
    ),
    (
        b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n",
        Some(("198.51.100.7:51234", "203.0.113.10:443")),
    ),
    (
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        Some(("0.0.0.0:0", "255.255.255.255:65535")),
    ),
    (
        b"PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::10 51234 443\r\n",
        Some(("[2001:db8:85a3::8a2e:370:7334]:51234", "[2001:db8::10]:443")),
    ),
    (
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        Some(("[::ffff:192.0.2.1]:1", "[::1]:2")),
    ),
    (
        b"PROXY TCP6 :: 1:2:3:4:5:6:7:: 10 20\r\n",
        Some(("[::]:10", "[1:2:3:4:5:6:7:0]:20")),
    ),
    (
        b"PROXY TCP6 0001:0DB8:0000:0000:0000:0000:0000:0001 1:2:3:4:5:6:1.2.3.4 9 9\r\n",
        Some(("[1:db8::1]:9", "[1:2:3:4:5:6:102:304]:9")),
    ),
    // The spec's longest TCP6 line: 104 bytes.
    (
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        Some((
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        )),
    ),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", None),
    // The spec's worst case: 107 bytes, the longest line allowed.
    (
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        None,
    ),
];

pub(crate) const SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A v2 header from its parts.
pub(crate) fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = SIG.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// TCP4 198.51.100.7:51234 -> 203.0.113.10:443.
pub(crate) fn tcp4_block() -> Vec<u8> {
    let mut b = vec![198, 51, 100, 7, 203, 0, 113, 10];
    b.extend_from_slice(&51234u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

/// TCP6 [2001:db8:85a3::8a2e:370:7334]:51234 -> [2001:db8::10]:443.
pub(crate) fn tcp6_block() -> Vec<u8> {
    let src: std::net::Ipv6Addr = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();
    let dst: std::net::Ipv6Addr = "2001:db8::10".parse().unwrap();
    let mut b = src.octets().to_vec();
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&51234u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

/// Sets the CRC32C value at `at` (offset of the 4 value bytes).
pub(crate) fn fill_crc(mut h: Vec<u8>, at: usize) -> Vec<u8> {
    h[at..at + 4].copy_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&h);
    h[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Valid v2 headers, with the source they expose.
pub(crate) fn v2_valid() -> Vec<(Vec<u8>, Option<&'static str>)> {
    let mut tcp6_tlvs = tcp6_block();
    tcp6_tlvs.extend(tlv(0x02, b"example.com"));
    tcp6_tlvs.extend(tlv(0x05, &[0xAB; 16]));
    let mut ssl = vec![0x07, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    ssl.extend(tlv(0x22, "José".as_bytes()));
    ssl.extend(tlv(0x23, b"TLS_AES_256_GCM_SHA384"));
    ssl.extend(tlv(0x28, &[0x30, 0x00]));
    let mut all = tcp4_block();
    all.extend(tlv(0x01, b"h2"));
    all.extend(tlv(0x04, b""));
    all.extend(tlv(0x20, &ssl));
    all.extend(tlv(0x30, b"blue"));
    all.extend(tlv(0xE0, b"custom"));
    all.extend(tlv(0xF0, b"experiment"));
    all.extend(tlv(0x03, &[0; 4]));
    let crc_at = 16 + all.len() - 4;
    let with_crc = fill_crc(v2(0x21, 0x11, &all), crc_at);
    let mut udp6 = tcp6_block();
    udp6.extend(tlv(0x04, &[0; 7]));
    let mut unix = vec![0u8; 216];
    unix[..9].copy_from_slice(b"/tmp/a.so");
    vec![
        (v2(0x21, 0x11, &tcp4_block()), Some("198.51.100.7:51234")),
        (v2(0x21, 0x12, &tcp4_block()), Some("198.51.100.7:51234")),
        (
            v2(0x21, 0x21, &tcp6_tlvs),
            Some("[2001:db8:85a3::8a2e:370:7334]:51234"),
        ),
        (
            v2(0x21, 0x22, &udp6),
            Some("[2001:db8:85a3::8a2e:370:7334]:51234"),
        ),
        (with_crc, Some("198.51.100.7:51234")),
        (v2(0x20, 0x00, &[]), None),
        // LOCAL with addresses: they are skipped, never exposed.
        (v2(0x20, 0x11, &tcp4_block()), None),
        // PROXY over UNSPEC: no addresses.
        (v2(0x21, 0x00, &tlv(0x04, b"")), None),
        (v2(0x21, 0x31, &unix), None),
        (v2(0x21, 0x32, &unix), None),
    ]
}
