#!/usr/bin/env python3
"""Writes the PROXY protocol test vectors in this directory.

Run from anywhere: `python3 crates/proxy-protocol/tests/vectors/generate.py`.
It rewrites every `*.bin` file and `manifest.tsv`; the tests
(`tests/it/vectors.rs`) read only those files, never this script.

Where the bytes come from:
* v1 lines: typed from the grammar in HAProxy's doc/proxy-protocol.txt
  (section 2.1), including the spec's own example
  (`PROXY TCP4 192.168.0.1 192.168.0.11 56324 443`) and its worst cases
  (the 104-byte TCP6 line, the 107-byte UNKNOWN line).
* v2 headers: assembled field by field from section 2.2 (signature,
  version/command, family, length, address block, TLVs), with the CRC32C
  computed here (RFC 4960 appendix B, Castagnoli polynomial, bitwise) and not
  by the crate's encoder, so the tests do not check the encoder against
  itself.
* invalid-*: hand-built refusals from docs/proxy-protocol.md ("Edge cases,
  decided"), each a complete input that must be refused, never "incomplete".
Captures of real senders (HAProxy, nginx, curl) are not stored: the peer
tests (`tests/it/peers.rs`) take them live on loopback.

manifest.tsv columns: file, expectation (`valid` or `invalid`), source and
destination socket addresses (`-` when the header exposes none), and a note.
"""

import ipaddress
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def tcp4_block() -> bytes:
    # 198.51.100.7:51234 -> 203.0.113.10:443
    return bytes([198, 51, 100, 7, 203, 0, 113, 10]) + struct.pack(">HH", 51234, 443)


def tcp6_block() -> bytes:
    src = ipaddress.IPv6Address("2001:db8:85a3::8a2e:370:7334").packed
    dst = ipaddress.IPv6Address("2001:db8::10").packed
    return src + dst + struct.pack(">HH", 51234, 443)


def with_crc(header: bytes, at: int) -> bytes:
    """Fills the 4 CRC32C value bytes at offset `at`."""
    zeroed = header[:at] + b"\0\0\0\0" + header[at + 4 :]
    return header[:at] + struct.pack(">I", crc32c(zeroed)) + header[at + 4 :]


SRC4, DST4 = "198.51.100.7:51234", "203.0.113.10:443"
SRC6, DST6 = "[2001:db8:85a3::8a2e:370:7334]:51234", "[2001:db8::10]:443"

FFFF6 = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
V1 = [
    ("v1-spec-example", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
     "192.168.0.1:56324", "192.168.0.11:443", "the spec's example line"),
    ("v1-tcp4", b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n",
     SRC4, DST4, "the benchmark line"),
    ("v1-tcp4-extremes", b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
     "0.0.0.0:0", "255.255.255.255:65535", "smallest and largest values"),
    ("v1-tcp6", b"PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::10 51234 443\r\n",
     SRC6, DST6, "the benchmark line"),
    ("v1-tcp6-v4-tail", b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
     "[::ffff:192.0.2.1]:1", "[::1]:2", "embedded IPv4 tail, as nginx sends"),
    ("v1-tcp6-gaps", b"PROXY TCP6 :: 1:2:3:4:5:6:7:: 10 20\r\n",
     "[::]:10", "[1:2:3:4:5:6:7:0]:20", "`::` alone and at the end"),
    ("v1-tcp6-upper-padded",
     b"PROXY TCP6 0001:0DB8:0000:0000:0000:0000:0000:0001 1:2:3:4:5:6:1.2.3.4 9 9\r\n",
     "[1:db8::1]:9", "[1:2:3:4:5:6:102:304]:9", "upper case, 4-digit groups, tail after 6 groups"),
    ("v1-tcp6-longest", b"PROXY TCP6 " + FFFF6 + b" " + FFFF6 + b" 65535 65535\r\n",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "the spec's longest TCP6 line, 104 bytes"),
    ("v1-unknown", b"PROXY UNKNOWN\r\n", "-", "-", "UNKNOWN, nothing after"),
    ("v1-unknown-addresses", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "-", "-",
     "UNKNOWN: the rest is ignored"),
    ("v1-unknown-longest", b"PROXY UNKNOWN " + FFFF6 + b" " + FFFF6 + b" 65535 65535\r\n",
     "-", "-", "the spec's worst case, 107 bytes"),
]


def v2_vectors():
    tcp6_tlvs = tcp6_block() + tlv(0x02, b"example.com") + tlv(0x05, b"\xab" * 16)
    ssl = bytes([0x07, 0, 0, 0, 0])
    ssl += tlv(0x21, b"TLSv1.3") + tlv(0x22, "José".encode())
    ssl += tlv(0x23, b"TLS_AES_256_GCM_SHA384") + tlv(0x28, b"\x30\x00")
    every = tcp4_block() + tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0x20, ssl)
    every += tlv(0x30, b"blue") + tlv(0xE0, b"custom") + tlv(0xF0, b"experiment")
    every += tlv(0x03, b"\0\0\0\0")
    every_h = v2(0x21, 0x11, every)
    # src "/tmp/a.so" NUL-padded to 108 bytes, dst all zeros.
    unix = b"/tmp/a.so" + b"\0" * (216 - 9)
    udp6 = tcp6_block() + tlv(0x04, b"\0" * 7)
    return [
        ("v2-tcp4", v2(0x21, 0x11, tcp4_block()), SRC4, DST4, "TCP4, no TLVs (benchmark)"),
        ("v2-udp4", v2(0x21, 0x12, tcp4_block()), SRC4, DST4, "UDP4"),
        ("v2-tcp6-tlvs", v2(0x21, 0x21, tcp6_tlvs), SRC6, DST6,
         "TCP6 + AUTHORITY + 16-byte UNIQUE_ID (benchmark)"),
        ("v2-udp6-noop", v2(0x21, 0x22, udp6), SRC6, DST6, "UDP6 + NOOP"),
        ("v2-tcp4-every-tlv-crc", with_crc(every_h, len(every_h) - 4), SRC4, DST4,
         "every TLV type, SSL with sub-TLVs, CRC32C last"),
        ("v2-local-unspec", v2(0x20, 0x00, b""), "-", "-",
         "LOCAL UNSPEC, what HAProxy sends for health checks"),
        ("v2-local-tcp4", v2(0x20, 0x11, tcp4_block()), "-", "-",
         "LOCAL with an address block: skipped, never exposed"),
        ("v2-proxy-unspec-noop", v2(0x21, 0x00, tlv(0x04, b"")), "-", "-",
         "PROXY over UNSPEC: no addresses"),
        ("v2-unix-stream", v2(0x21, 0x31, unix), "-", "-", "UNIX stream"),
        ("v2-unix-dgram", v2(0x21, 0x32, unix), "-", "-", "UNIX datagram"),
    ]


def invalid_vectors():
    bad_crc = v2(0x21, 0x11, tcp4_block() + tlv(0x03, b"\0\0\0\1"))
    return [
        ("invalid-v2-local-tcp4-len0", v2(0x20, 0x11, b""),
         "LOCAL with family TCP4 and len 0 (< 12)"),
        ("invalid-v2-tcp4-len8", v2(0x21, 0x11, tcp4_block()[:8]),
         "len shorter than the address block"),
        ("invalid-v2-crc-mismatch", bad_crc, "CRC32C that does not match"),
        ("invalid-v2-authority-overlong", v2(0x21, 0x11, tcp4_block() + tlv(0x02, b"\xc0\x80")),
         "AUTHORITY with an overlong UTF-8 form"),
        ("invalid-v2-two-zero-bytes", v2(0x21, 0x11, tcp4_block() + b"\0\0"),
         "2 bytes after the addresses cannot hold a TLV"),
        ("invalid-v2-ssl-short", v2(0x21, 0x11, tcp4_block() + tlv(0x20, b"\1\0\0\0")),
         "SSL TLV shorter than 5 bytes"),
        ("invalid-v1-plus-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n", "signed port"),
        ("invalid-v1-five-octets", b"PROXY TCP4 1.2.3.4.5 5.6.7.8 80 443\r\n", "5 octets"),
        ("invalid-v1-double-gap", b"PROXY TCP6 1::2::3 ::1 80 443\r\n", "two `::`"),
        ("invalid-v1-lone-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n", "LF without CR"),
        ("invalid-v1-108-bytes", b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "108-byte line"),
    ]


def main():
    rows = []
    for name, data, src, dst, note in V1 + v2_vectors():
        rows.append((name + ".bin", "valid", src, dst, note))
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    for name, data, note in invalid_vectors():
        rows.append((name + ".bin", "invalid", "-", "-", note))
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    with open(os.path.join(HERE, "manifest.tsv"), "w") as f:
        f.write("# file\texpect\tsource\tdestination\tnote (written by generate.py)\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


if __name__ == "__main__":
    main()
