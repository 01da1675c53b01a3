//! Test vectors, read from `tests/vectors/*.bin` (written, with the reason
//! for each, by `tests/vectors/generate.py`; listed in
//! `tests/vectors/manifest.tsv`), and helpers that build variations.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use ippin_proxy_protocol::parse;

/// A v1 line and the (source, destination) it carries.
pub(crate) type V1Vector = (&'static [u8], Option<(&'static str, &'static str)>);

/// One row of `manifest.tsv`, with the file's bytes.
pub(crate) struct Vector {
    pub(crate) file: &'static str,
    pub(crate) valid: bool,
    pub(crate) addrs: Option<(&'static str, &'static str)>,
    pub(crate) bytes: &'static [u8],
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Every vector of the manifest, loaded once (and leaked: test data).
pub(crate) static VECTORS: LazyLock<Vec<Vector>> = LazyLock::new(|| {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let manifest = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, expect, src, dst, _note] = cols[..] else {
                panic!("manifest line {line:?}");
            };
            let bytes = std::fs::read(dir().join(file)).unwrap();
            Vector {
                file: leak(file),
                valid: expect == "valid",
                addrs: (src != "-").then(|| (leak(src), leak(dst))),
                bytes: Box::leak(bytes.into_boxed_slice()),
            }
        })
        .collect()
});

/// v1 lines that must parse, with the source and destination they carry
/// (`None` for `UNKNOWN`).
pub(crate) static V1_VALID: LazyLock<Vec<V1Vector>> = LazyLock::new(|| {
    VECTORS
        .iter()
        .filter(|v| v.valid && v.bytes.first() == Some(&b'P'))
        .map(|v| (v.bytes, v.addrs))
        .collect()
});

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
    VECTORS
        .iter()
        .filter(|v| v.valid && v.bytes.first() == Some(&0x0D))
        .map(|v| (v.bytes.to_vec(), v.addrs.map(|(src, _)| src)))
        .collect()
}

#[test]
fn every_file_is_in_the_manifest_and_loads() {
    let mut listed: Vec<&str> = VECTORS.iter().map(|v| v.file).collect();
    listed.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    on_disk.sort_unstable();
    assert_eq!(listed, on_disk);
    assert!(V1_VALID.len() >= 10 && v2_valid().len() >= 10);
}

#[test]
fn valid_vectors_parse_with_their_addresses() {
    for v in VECTORS.iter().filter(|v| v.valid) {
        let (h, used) = parse(v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.file));
        assert_eq!(used, v.bytes.len(), "{}", v.file);
        let got = h.source().map(|s| s.to_string());
        assert_eq!(got.as_deref(), v.addrs.map(|a| a.0), "{}", v.file);
        let got = h.destination().map(|s| s.to_string());
        assert_eq!(got.as_deref(), v.addrs.map(|a| a.1), "{}", v.file);
    }
}

#[test]
fn invalid_vectors_are_refused_and_no_prefix_is_accepted() {
    let invalid: Vec<&Vector> = VECTORS.iter().filter(|v| !v.valid).collect();
    assert!(invalid.len() >= 10);
    for v in invalid {
        let e = parse(v.bytes).unwrap_err();
        assert!(!e.is_incomplete(), "{}: {e}", v.file);
        for cut in 0..v.bytes.len() {
            assert!(parse(&v.bytes[..cut]).is_err(), "{} cut at {cut}", v.file);
        }
    }
}

#[test]
fn the_builders_here_match_the_files() {
    let file = |name: &str| VECTORS.iter().find(|v| v.file == name).unwrap().bytes;
    assert_eq!(v2(0x21, 0x11, &tcp4_block()), file("v2-tcp4.bin"));
    let mut body = tcp6_block();
    body.extend(tlv(0x02, b"example.com"));
    body.extend(tlv(0x05, &[0xAB; 16]));
    assert_eq!(v2(0x21, 0x21, &body), file("v2-tcp6-tlvs.bin"));
    // The CRC32C the script computed is the one the spec's algorithm gives.
    let h = file("v2-tcp4-every-tlv-crc.bin").to_vec();
    let at = h.len() - 4;
    assert_eq!(fill_crc(h.clone(), at), h);
}
