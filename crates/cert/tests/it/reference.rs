//! An independent reference for the X.509 pin readers.
//!
//! `x509-parser` (asn1-rs underneath: no code shared with `x509-cert`,
//! `der` or this crate's DER walk) decodes the certificate, and the rules
//! written out below, from the crate docs (`ippin_cert::x509`), decide
//! what the pin is. `pinned_ip_fast`, `pinned_ip` and `client_identity`
//! must agree with that reference, error code included, on every
//! generated certificate (pinned IPv4 / IPv6 / unpinned, the Teleport
//! layout, extra extensions, duplicates, critical flags, wrong inner
//! encodings, non-canonical text, shape rules, truncations) and on every
//! committed vector.
//!
//! The rules, in the order the crate applies them (the first that fails
//! gives the error):
//!
//! 1. **Framing.** The certificate is one DER TLV with nothing after it
//!    (x509-parser returns what it did not consume; it must be empty).
//!    An extension's `critical` BOOLEAN is one octet 0x00 or 0xFF
//!    (X.690 11.1). x509-parser reads that BOOLEAN as BER (any non-zero
//!    octet is TRUE) on purpose, so the reference reads the raw octet with
//!    asn1-rs; the crate refuses a BER-only BOOLEAN as a framing error
//!    (`der_structure` from the fast path, `der` from `x509-cert`).
//!    `x509-cert` decodes the whole certificate before any other rule, so
//!    a framing error anywhere is its first answer; the fast path meets
//!    the extensions' framing in its walk, after rules 2 and 3 and after
//!    the extensions before it, so it may give their error first.
//!    A version above v3 is refused here too (the fast path reads
//!    `Version` as one octet 0, 1 or 2 while walking; `x509-cert` decodes
//!    it as an enumeration).
//! 2. **Shape** (RFC 5280 4.1), `certificate_profile`: unique identifiers need v2 or v3; extensions need v3,
//!    and a present `[3]` holds at least one extension.
//! 3. **Subject attributes**, in order. Every attribute type is a
//!    well-formed OID (X.690 8.19: at least one octet, no sub-identifier
//!    starting with 0x80, the last octet complete), else
//!    `certificate_profile`. The Teleport layout: 1.3.9999.2.15 (the pin)
//!    and 1.3.9999.1.9 (the login IP) must each be alone in its RDN
//!    (`attribute_value`), appear once (`duplicate_attribute`), be a
//!    PrintableString (its character set, X.680 41.4) or a UTF8String,
//!    and hold the canonical text of an IP (`attribute_value`).
//! 4. **Extensions**, in order: a well-formed OID (`certificate_profile`);
//!    no OID twice, whatever the extension (`duplicate_extension`); for
//!    1.3.9999.1.9 (the pin) and 1.3.9999.1.9.1 (the login IP): not
//!    critical (`critical_extension`), and the extnValue is exactly the
//!    DER PrintableString of the canonical text of an IP: tag 0x13, one
//!    short-form length octet equal to the text's length, the text, nothing
//!    else (`extension_value`). The pin's text may also be a network,
//!    `addr/len`: `addr` canonical, `len` decimal without leading zeros,
//!    `0 < len <` the address's bits, and the address's bits past `len`
//!    all zero (checked by shifting the address as an integer).
//! 5. **Layouts.** When both layouts carry something, the pins and the
//!    login IPs must be equal (`layout_mismatch`). The pin is the
//!    extension's, else the Teleport attribute's; the Teleport login IP
//!    is never a pin.
//!
//! Canonical text: dotted-decimal IPv4 without leading zeros, RFC 5952
//! IPv6 (what `Ipv6Addr`'s `Display` writes), never IPv4-mapped IPv6; the
//! reference checks it as "parses, is not mapped, and prints back to the
//! same text", a different procedure from the crate's.
//!
//! `client_identity` adds: exactly one CN (2.5.4.3), and the CN and every
//! O (2.5.4.10) a UTF8String or PrintableString of UTF-8 text (`subject`).
//!
//! Where the readers go beyond the reference: the fast path does not
//! interpret the fields it skips (serial, algorithms, issuer, validity,
//! key), so on a certificate x509-parser cannot decode the fast path may
//! still answer; the tests below only build certificates whose skipped
//! fields are well formed, and require a refusal from every reader for
//! every truncation.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use ipnet::IpNet;
use ippin_cert::x509::{
    Profile, X509Ca, client_identity, pin as pinned_ip, pin_fast as pinned_ip_fast,
};
use proptest::prelude::*;
use x509_parser::asn1_rs::{Any, Class, FromDer as _, Tag};
use x509_parser::nom::Parser as _;
use x509_parser::prelude::{X509Certificate, X509CertificateParser};

use crate::support::{NOW, rng, vectors};

// --- the reference -------------------------------------------------------

const PIN: &str = "1.3.9999.1.9";
const LOGIN: &str = "1.3.9999.1.9.1";
const TP_PIN: &str = "1.3.9999.2.15";
const TP_LOGIN: &str = "1.3.9999.1.9";
const CN: &str = "2.5.4.3";
const O: &str = "2.5.4.10";

/// The pin, the login IP and the layout found.
type Pins = (Option<IpNet>, Option<IpAddr>, Option<Profile>);

/// What the reference says about a certificate x509-parser decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    /// The pin and login IP, or the rule that refuses the certificate
    /// (`"framing"` for rule 1, else the crate's error code).
    pins: Result<Pins, &'static str>,
    /// Whether rule 1 holds everywhere: `x509-cert` decodes the whole
    /// certificate first, so a framing error anywhere is its answer
    /// (`der`), while the fast path meets it in its walk's order.
    framing_ok: bool,
    /// CN and roles, or why `client_identity` refuses them.
    subject: Result<(String, Vec<String>), &'static str>,
    not_before: u64,
    not_after: u64,
    serial: Vec<u8>,
}

/// X.690 8.19.2: at least one octet, no sub-identifier with a leading
/// 0x80 octet, and the last octet ends a sub-identifier.
fn oid_well_formed(content: &[u8]) -> bool {
    let starts = std::iter::once(true).chain(content.iter().map(|b| b & 0x80 == 0));
    !content.is_empty()
        && content
            .iter()
            .zip(starts)
            .all(|(b, at_start)| !(at_start && *b == 0x80))
        && content.last().is_some_and(|b| b & 0x80 == 0)
}

/// X.680 41.4: A-Z a-z 0-9 space ' ( ) + , - . / : = ?
fn printable_charset(text: &[u8]) -> bool {
    text.iter()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(b))
}

/// The IP whose canonical text is exactly `text`.
fn canonical_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let ip: IpAddr = text.parse().ok()?;
    let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    (!mapped && ip.to_string() == text).then_some(ip)
}

/// Rule 4's value: exactly `13 len text`, short-form length.
fn pin_extension_value(value: &[u8]) -> Option<IpAddr> {
    match value {
        [0x13, len, text @ ..] if usize::from(*len) == text.len() && *len < 0x80 => {
            if printable_charset(text) {
                canonical_ip(text)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Rule 4's pin value: a canonical IP (the whole address), or
/// `addr/len` with `addr` canonical, `len` decimal without leading zeros,
/// `0 < len < bits`, and every bit of `addr` past `len` zero (checked on
/// the address as an integer).
fn pin_network_value(value: &[u8]) -> Option<(IpAddr, u32)> {
    let [0x13, len, text @ ..] = value else {
        return None;
    };
    if usize::from(*len) != text.len() || *len >= 0x80 || !printable_charset(text) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let Some((addr, len)) = text.split_once('/') else {
        let ip = canonical_ip(text.as_bytes())?;
        return Some((ip, bits(ip)));
    };
    let ip = canonical_ip(addr.as_bytes())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.starts_with('0') {
        return None;
    }
    let n: u32 = len.parse().ok()?;
    if n == 0 || n >= bits(ip) {
        return None;
    }
    let host_bits_zero = match ip {
        IpAddr::V4(v4) => u32::from(v4) << n == 0,
        IpAddr::V6(v6) => u128::from(v6) << n == 0,
    };
    host_bits_zero.then_some((ip, n))
}

/// The raw `critical` octets of each extension, in order, read with
/// asn1-rs from the TBSCertificate's last element when it is `[3]`;
/// `None` when the certificate has no `[3]`.
fn raw_extensions(tbs_raw: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let (_, tbs) = Any::from_der(tbs_raw).ok()?;
    let mut rest = tbs.data;
    let mut last = None;
    while !rest.is_empty() {
        let (r, el) = Any::from_der(rest).ok()?;
        rest = r;
        last = Some(el);
    }
    let last = last?;
    if last.class() != Class::ContextSpecific || last.tag() != Tag(3) {
        return None;
    }
    let (_, list) = Any::from_der(last.data).ok()?;
    let mut out = Vec::new();
    let mut rest = list.data;
    while !rest.is_empty() {
        let (r, ext) = Any::from_der(rest).ok()?;
        rest = r;
        let (after_oid, _) = Any::from_der(ext.data).ok()?;
        let (_, next) = Any::from_der(after_oid).ok()?;
        out.push((next.tag() == Tag::Boolean).then(|| next.data.to_vec()));
    }
    Some(out)
}

fn reference_pins(cert: &X509Certificate<'_>) -> Result<Pins, &'static str> {
    let tbs = &cert.tbs_certificate;
    let raw_exts = raw_extensions(tbs.as_ref());
    // 2. shape
    let version = tbs.version.0;
    if version > 2 {
        // Version ::= INTEGER { v1(0), v2(1), v3(2) }: the fast path reads
        // it as part of the framing, x509-cert as an enumeration.
        return Err("framing");
    }
    if (tbs.issuer_uid.is_some() || tbs.subject_uid.is_some()) && version == 0 {
        return Err("certificate_profile");
    }
    if let Some(raw) = &raw_exts
        && (version != 2 || raw.is_empty())
    {
        return Err("certificate_profile");
    }
    // 3. subject attributes
    let (mut tp_pin, mut tp_login) = (None, None);
    for rdn in tbs.subject.iter_rdn() {
        let multi = rdn.iter().count() > 1;
        for atv in rdn.iter() {
            if !oid_well_formed(atv.attr_type().as_bytes()) {
                return Err("certificate_profile");
            }
            let id = atv.attr_type().to_id_string();
            let slot = match id.as_str() {
                TP_PIN => &mut tp_pin,
                TP_LOGIN => &mut tp_login,
                _ => continue,
            };
            if multi {
                return Err("attribute_value");
            }
            if slot.is_some() {
                return Err("duplicate_attribute");
            }
            let value = atv.attr_value();
            let text = value.data;
            let ok_type = match value.tag() {
                Tag::PrintableString => printable_charset(text),
                Tag::Utf8String => true,
                _ => false,
            };
            if value.class() != Class::Universal || !ok_type {
                return Err("attribute_value");
            }
            *slot = Some(canonical_ip(text).ok_or("attribute_value")?);
        }
    }
    // 4. extensions
    let (mut ext_pin, mut ext_login) = (None, None);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for (i, ext) in tbs.extensions().iter().enumerate() {
        // 1. framing: the critical BOOLEAN, as DER
        if let Some(Some(flag)) = raw_exts.as_ref().and_then(|r| r.get(i))
            && flag.as_slice() != [0x00]
            && flag.as_slice() != [0xff]
        {
            return Err("framing");
        }
        let oid = ext.oid.as_bytes();
        if !oid_well_formed(oid) {
            return Err("certificate_profile");
        }
        if seen.iter().any(|s| s.as_slice() == oid) {
            return Err("duplicate_extension");
        }
        seen.push(oid.to_vec());
        let is_pin = match ext.oid.to_id_string().as_str() {
            PIN => true,
            LOGIN => false,
            _ => continue,
        };
        if ext.critical {
            return Err("critical_extension");
        }
        if is_pin {
            ext_pin = Some(pin_network_value(ext.value).ok_or("extension_value")?);
        } else {
            ext_login = Some(pin_extension_value(ext.value).ok_or("extension_value")?);
        }
    }
    // 5. layouts
    let ippin = ext_pin.is_some() || ext_login.is_some();
    let teleport = tp_pin.is_some() || tp_login.is_some();
    let tp_pin = tp_pin.map(|ip| (ip, bits(ip)));
    if ippin && teleport && (ext_pin != tp_pin || ext_login != tp_login) {
        return Err("layout_mismatch");
    }
    let profile = match (ippin, teleport) {
        (true, true) => Some(Profile::Both),
        (true, false) => Some(Profile::Ippin),
        (false, true) => Some(Profile::Teleport),
        (false, false) => None,
    };
    let pin = ext_pin
        .or(tp_pin)
        .map(|(ip, len)| IpNet::new(ip, len as u8).expect("len checked"));
    Ok((pin, ext_login.or(tp_login), profile))
}

fn reference_subject(cert: &X509Certificate<'_>) -> Result<(String, Vec<String>), &'static str> {
    let mut cn = None;
    let mut roles = Vec::new();
    for atv in cert.tbs_certificate.subject.iter_attributes() {
        let id = atv.attr_type().to_id_string();
        if id != CN && id != O {
            continue;
        }
        let value = atv.attr_value();
        if value.class() != Class::Universal
            || !matches!(value.tag(), Tag::Utf8String | Tag::PrintableString)
        {
            return Err("subject");
        }
        let text = std::str::from_utf8(value.data).map_err(|_| "subject")?;
        if id == CN {
            if cn.is_some() {
                return Err("subject");
            }
            cn = Some(text.to_owned());
        } else {
            roles.push(text.to_owned());
        }
    }
    Ok((cn.ok_or("subject")?, roles))
}

/// The reference: `Err` with x509-parser's complaint when it cannot
/// decode the certificate (or leaves bytes after it).
fn reference(der: &[u8]) -> Result<Expected, String> {
    let (rest, cert) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(der)
        .map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    let validity = cert.validity();
    let raw_exts = raw_extensions(cert.tbs_certificate.as_ref()).unwrap_or_default();
    let framing_ok = cert.tbs_certificate.version.0 <= 2
        && raw_exts
            .iter()
            .flatten()
            .all(|flag| flag.as_slice() == [0x00] || flag.as_slice() == [0xff]);
    Ok(Expected {
        framing_ok,
        pins: reference_pins(&cert),
        subject: reference_subject(&cert),
        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(u64::MAX),
        not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(u64::MAX),
        serial: cert.tbs_certificate.raw_serial().to_vec(),
    })
}

/// `x509-cert`'s serial bytes keep the sign octet the DER INTEGER has.
fn same_serial(ours: &[u8], raw: &[u8]) -> bool {
    ours == raw || raw.strip_prefix(&[0]) == Some(ours)
}

/// Compares every reader with the reference on `der`; `what` names it in
/// a failure.
fn check(der: &[u8], what: &str) {
    let fast = pinned_ip_fast(der);
    let full = pinned_ip(der);
    let identity = client_identity(der);
    let expected = match reference(der) {
        Ok(e) => e,
        Err(why) => {
            // Only certificates with well-formed skipped fields are made
            // here, so x509-parser refuses only broken framing: every
            // reader must refuse too.
            assert!(
                fast.is_err(),
                "{what}: x509-parser refused ({why}), fast read {fast:?}"
            );
            assert!(
                full.is_err(),
                "{what}: x509-parser refused ({why}), full read {full:?}"
            );
            assert!(identity.is_err(), "{what}: x509-parser refused ({why})");
            return;
        }
    };
    if !expected.framing_ok {
        assert_eq!(full.expect_err(what).code(), "der", "{what}");
        assert_eq!(identity.expect_err(what).code(), "der", "{what}");
        let want = match expected.pins {
            Err("framing") => "der_structure",
            Err(code) => code,
            Ok(_) => panic!("{what}: the reference found a framing error but no refusal"),
        };
        assert_eq!(fast.expect_err(what).code(), want, "{what}");
        return;
    }
    match expected.pins {
        Ok((pin, login, profile)) => {
            assert_eq!(fast.as_ref().ok(), Some(&pin), "{what}: fast {fast:?}");
            assert_eq!(full.as_ref().ok(), Some(&pin), "{what}: full {full:?}");
            match (&expected.subject, &identity) {
                (Ok((user, roles)), Ok(id)) => {
                    assert_eq!(
                        (&id.user, &id.roles, id.pin, id.login_ip, id.profile),
                        (user, roles, pin, login, profile),
                        "{what}"
                    );
                    assert_eq!(
                        (id.not_before, id.not_after),
                        (expected.not_before, expected.not_after),
                        "{what}"
                    );
                    assert!(same_serial(&id.serial, &expected.serial), "{what}");
                }
                (Err(code), Err(e)) => assert_eq!(e.code(), *code, "{what}: {e}"),
                (want, got) => panic!("{what}: identity {got:?}, reference {want:?}"),
            }
        }
        Err(code) => {
            let fast = fast.expect_err(what);
            assert_eq!(fast.code(), code, "{what}: fast said {fast}");
            let full = full.expect_err(what);
            assert_eq!(full.code(), code, "{what}: full said {full}");
            let identity = identity.expect_err(what);
            assert_eq!(identity.code(), code, "{what}: identity said {identity}");
        }
    }
}

// --- certificates built from pieces ---------------------------------------

/// DER TLV with a minimal definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    tlv(
        0x06,
        der::asn1::ObjectIdentifier::new(dotted).unwrap().as_bytes(),
    )
}

/// 1.3.9999.1.9 with a sub-identifier padded by 0x80.
fn padded_pin_oid() -> Vec<u8> {
    tlv(0x06, &[0x2b, 0x80, 0xce, 0x0f, 0x01, 0x09])
}

/// The text an attribute or extension carries.
#[derive(Clone, Debug)]
enum Text {
    Canonical(IpAddr),
    /// IPv6 in upper case (when it has letters).
    Upper(Ipv6Addr),
    LeadingZero(Ipv4Addr),
    Mapped(Ipv4Addr),
    TrailingSpace(IpAddr),
    WithPort(IpAddr),
    Junk(String),
    /// `addr/len` with whatever `addr` and `len` (canonical or not: host
    /// bits, full length, 0, too long).
    Network(IpAddr, u8),
    /// `addr/0len`: a leading zero.
    NetworkLeadingZero(IpAddr, u8),
}

impl Text {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Text::Canonical(ip) => ip.to_string(),
            Text::Upper(ip) => ip.to_string().to_uppercase(),
            Text::LeadingZero(ip) => {
                let [a, b, c, d] = ip.octets();
                format!("{a}.{b}.{c}.0{d}")
            }
            Text::Mapped(ip) => format!("::ffff:{ip}"),
            Text::TrailingSpace(ip) => format!("{ip} "),
            Text::WithPort(ip) => std::net::SocketAddr::new(*ip, 443).to_string(),
            Text::Junk(s) => s.clone(),
            Text::Network(ip, len) => format!("{ip}/{len}"),
            Text::NetworkLeadingZero(ip, len) => format!("{ip}/0{len}"),
        }
        .into_bytes()
    }
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    // Often one of a few addresses, so that the two layouts sometimes
    // carry the same pin and sometimes not.
    let few: Vec<IpAddr> = ["192.0.2.10", "2001:db8::7"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    prop_oneof![
        4 => prop::sample::select(few),
        1 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        1 => any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        // short IPv6 (with `::`), mapped and compatible forms
        1 => (any::<u16>(), any::<u32>())
            .prop_map(|(h, l)| IpAddr::V6(Ipv6Addr::from((u128::from(h) << 112) | u128::from(l)))),
        1 => any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        30 => any_ip().prop_map(Text::Canonical),
        1 => any::<u128>().prop_map(|a| Text::Upper(Ipv6Addr::from(a))),
        1 => any::<u32>().prop_map(|a| Text::LeadingZero(Ipv4Addr::from(a))),
        1 => any::<u32>().prop_map(|a| Text::Mapped(Ipv4Addr::from(a))),
        1 => any_ip().prop_map(Text::TrailingSpace),
        1 => any_ip().prop_map(Text::WithPort),
        1 => "[0-9a-fA-F.:% \\[\\]_*/]{0,24}".prop_map(Text::Junk),
        // networks: often canonical (host bits cleared), sometimes not
        4 => (any_ip(), 0u8..=130, any::<bool>()).prop_map(|(ip, len, clear)| {
            let ip = match (ip, clear) {
                (IpAddr::V4(v4), true) if len <= 32 => IpAddr::V4(
                    ipnet::Ipv4Net::new(v4, len).map(|n| n.network()).unwrap_or(v4),
                ),
                (IpAddr::V6(v6), true) if len <= 128 => IpAddr::V6(
                    ipnet::Ipv6Net::new(v6, len).map(|n| n.network()).unwrap_or(v6),
                ),
                _ => ip,
            };
            Text::Network(ip, len)
        }),
        1 => (any_ip(), 1u8..=128).prop_map(|(ip, len)| Text::NetworkLeadingZero(ip, len)),
    ]
}

/// How an extension value wraps its text.
#[derive(Clone, Copy, Debug)]
enum Wrap {
    Printable,
    Utf8,
    Ia5,
    /// `13 81 len text`.
    LongLength,
    /// `13 80 text 00 00`.
    Indefinite,
    TrailingByte,
    /// One byte short of its length.
    Truncated,
    /// The PrintableString inside another OCTET STRING.
    Nested,
    Empty,
}

fn wrap() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        40 => Just(Wrap::Printable),
        1 => Just(Wrap::Utf8),
        1 => Just(Wrap::Ia5),
        1 => Just(Wrap::LongLength),
        1 => Just(Wrap::Indefinite),
        1 => Just(Wrap::TrailingByte),
        1 => Just(Wrap::Truncated),
        1 => Just(Wrap::Nested),
        1 => Just(Wrap::Empty),
    ]
}

fn wrapped(w: Wrap, text: &[u8]) -> Vec<u8> {
    let n = text.len() as u8;
    match w {
        Wrap::Printable => tlv(0x13, text),
        Wrap::Utf8 => tlv(0x0c, text),
        Wrap::Ia5 => tlv(0x16, text),
        Wrap::LongLength => [&[0x13, 0x81, n][..], text].concat(),
        Wrap::Indefinite => [&[0x13, 0x80][..], text, &[0, 0]].concat(),
        Wrap::TrailingByte => [tlv(0x13, text), vec![0]].concat(),
        Wrap::Truncated => [&[0x13, n.wrapping_add(1)][..], text].concat(),
        Wrap::Nested => tlv(0x04, &tlv(0x13, text)),
        Wrap::Empty => Vec::new(),
    }
}

/// Which extension.
#[derive(Clone, Copy, Debug)]
enum ExtId {
    Pin,
    Login,
    BasicConstraints,
    ExtKeyUsage,
    /// 1.3.9999.1.x, a neighbour of the pin's OID.
    Neighbour(u8),
    PaddedPin,
}

/// The `critical` field.
#[derive(Clone, Copy, Debug)]
enum Critical {
    Absent,
    False,
    True,
    /// `01 01 01`: TRUE in BER, not in DER.
    BerTrue,
}

#[derive(Clone, Debug)]
struct ExtPiece {
    id: ExtId,
    critical: Critical,
    wrap: Wrap,
    text: Text,
}

fn ext_piece() -> impl Strategy<Value = ExtPiece> {
    let id = prop_oneof![
        8 => Just(ExtId::Pin),
        4 => Just(ExtId::Login),
        2 => Just(ExtId::BasicConstraints),
        2 => Just(ExtId::ExtKeyUsage),
        2 => (0u8..12).prop_map(ExtId::Neighbour),
        1 => Just(ExtId::PaddedPin),
    ];
    let critical = prop_oneof![
        14 => Just(Critical::Absent),
        3 => Just(Critical::False),
        1 => Just(Critical::True),
        1 => Just(Critical::BerTrue),
    ];
    (id, critical, wrap(), text()).prop_map(|(id, critical, wrap, text)| ExtPiece {
        id,
        critical,
        wrap,
        text,
    })
}

impl ExtPiece {
    fn der(&self) -> Vec<u8> {
        let id = match self.id {
            ExtId::Pin => oid(PIN),
            ExtId::Login => oid(LOGIN),
            ExtId::BasicConstraints => oid("2.5.29.19"),
            ExtId::ExtKeyUsage => oid("2.5.29.37"),
            ExtId::Neighbour(n) => oid(&format!("1.3.9999.1.{n}")),
            ExtId::PaddedPin => padded_pin_oid(),
        };
        let value = match self.id {
            ExtId::BasicConstraints => seq(&[]),
            ExtId::ExtKeyUsage => seq(&[oid("1.3.6.1.5.5.7.3.2")]),
            _ => wrapped(self.wrap, &self.text.bytes()),
        };
        let mut parts = vec![id];
        match self.critical {
            Critical::Absent => {}
            Critical::False => parts.push(vec![0x01, 0x01, 0x00]),
            Critical::True => parts.push(vec![0x01, 0x01, 0xff]),
            Critical::BerTrue => parts.push(vec![0x01, 0x01, 0x01]),
        }
        parts.push(tlv(0x04, &value));
        seq(&parts)
    }
}

/// A subject attribute.
#[derive(Clone, Debug)]
enum AttrPiece {
    /// `CN=bob` again (a second CN).
    SecondCn,
    Role(String),
    /// An O attribute that is an IA5String.
    Ia5Role,
    TeleportPin(u8, Text),
    TeleportLogin(u8, Text),
    /// The Teleport pin and an O in one RDN.
    MultiValued(Text),
    /// An attribute type padded with 0x80.
    PaddedType,
}

fn attr_piece() -> impl Strategy<Value = AttrPiece> {
    let tag = prop_oneof![8 => Just(0x13u8), 4 => Just(0x0c), 1 => Just(0x16), 1 => Just(0x14)];
    prop_oneof![
        1 => Just(AttrPiece::SecondCn),
        6 => "[a-z]{1,8}".prop_map(AttrPiece::Role),
        1 => Just(AttrPiece::Ia5Role),
        6 => (tag.clone(), text()).prop_map(|(t, x)| AttrPiece::TeleportPin(t, x)),
        4 => (tag, text()).prop_map(|(t, x)| AttrPiece::TeleportLogin(t, x)),
        1 => text().prop_map(AttrPiece::MultiValued),
        1 => Just(AttrPiece::PaddedType),
    ]
}

fn atv(id: Vec<u8>, tag: u8, value: &[u8]) -> Vec<u8> {
    seq(&[id, tlv(tag, value)])
}

impl AttrPiece {
    /// The RDN.
    fn der(&self) -> Vec<u8> {
        let one = |a: Vec<u8>| tlv(0x31, &a);
        match self {
            AttrPiece::SecondCn => one(atv(oid(CN), 0x0c, b"bob")),
            AttrPiece::Role(r) => one(atv(oid(O), 0x0c, r.as_bytes())),
            AttrPiece::Ia5Role => one(atv(oid(O), 0x16, b"dev")),
            AttrPiece::TeleportPin(tag, t) => one(atv(oid(TP_PIN), *tag, &t.bytes())),
            AttrPiece::TeleportLogin(tag, t) => one(atv(oid(TP_LOGIN), *tag, &t.bytes())),
            AttrPiece::MultiValued(t) => {
                // DER sorts SET OF by encoding; the O (06 03 55 04 0a)
                // sorts before the pin's type (06 06 2b ...) either way.
                let mut members = [
                    atv(oid(TP_PIN), 0x13, &t.bytes()),
                    atv(oid(O), 0x0c, b"ops"),
                ];
                members.sort();
                tlv(0x31, &members.concat())
            }
            AttrPiece::PaddedType => one(atv(tlv(0x06, &[0x55, 0x80, 0x04, 0x0a]), 0x0c, b"x")),
        }
    }
}

/// The shape of TBSCertificate around the subject and extensions.
#[derive(Clone, Debug)]
struct Shape {
    /// 0 = absent (v1), 1 = explicit v1, 2 = v2, 3 = v3, 4 = "v4".
    version: u8,
    issuer_uid: bool,
    subject_uid: bool,
    cn: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    let version =
        prop_oneof![1 => Just(0u8), 1 => Just(1), 1 => Just(2), 30 => Just(3), 1 => Just(4)];
    (
        version,
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(version, issuer_uid, subject_uid, cn)| Shape {
            version,
            issuer_uid,
            subject_uid,
            cn,
        })
}

fn ca() -> &'static (X509Ca, Vec<u8>) {
    static CA: OnceLock<(X509Ca, Vec<u8>)> = OnceLock::new();
    CA.get_or_init(|| {
        let ca =
            X509Ca::generate_ed25519("reference CA", NOW - 10, NOW + 86_400, &mut rng()).unwrap();
        (ca, crate::x509::spki())
    })
}

fn build(shape: &Shape, attrs: &[AttrPiece], exts: Option<&[ExtPiece]>) -> Vec<u8> {
    let (ca, spki) = ca();
    let mut subject = Vec::new();
    if shape.cn {
        subject.push(tlv(0x31, &atv(oid(CN), 0x0c, b"alice")));
    }
    subject.extend(attrs.iter().map(AttrPiece::der));
    let mut tbs = Vec::new();
    if shape.version > 0 {
        tbs.push(tlv(0xa0, &tlv(0x02, &[shape.version - 1])));
    }
    tbs.extend([
        tlv(0x02, &[0x01, 0x23]),
        seq(&[oid("1.3.101.112")]),
        ca.subject_der().to_vec(),
        seq(&[tlv(0x17, b"231114000000Z"), tlv(0x17, b"331114000000Z")]),
        seq(&subject),
        spki.clone(),
    ]);
    if shape.issuer_uid {
        tbs.push(tlv(0x81, &[0x00, 0xab]));
    }
    if shape.subject_uid {
        tbs.push(tlv(0x82, &[0x00, 0xcd]));
    }
    if let Some(exts) = exts {
        let list: Vec<Vec<u8>> = exts.iter().map(ExtPiece::der).collect();
        tbs.push(tlv(0xa3, &seq(&list)));
    }
    ca.danger_sign_tbs(&seq(&tbs), &mut rng()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Generated certificates: every reader agrees with the reference.
    #[test]
    fn readers_agree_with_x509_parser_and_the_written_rules(
        shape in shape(),
        attrs in prop::collection::vec(attr_piece(), 0..3),
        exts in prop::option::weighted(0.95, prop_oneof![
            // `[3]` present and empty now and then
            1 => Just(Vec::new()),
            20 => prop::collection::vec(ext_piece(), 1..4),
        ]),
        duplicate in prop::option::weighted(0.15, any::<prop::sample::Index>()),
        cut in prop::option::weighted(0.1, any::<prop::sample::Index>()),
    ) {
        let mut exts = exts;
        // a second copy of one extension (the pin's, often)
        if let (Some(list), Some(at)) = (exts.as_mut(), duplicate)
            && !list.is_empty()
        {
            let copy = list[at.index(list.len())].clone();
            list.push(copy);
        }
        let der = build(&shape, &attrs, exts.as_deref());
        check(&der, &format!("{shape:?} {attrs:?} {exts:?}"));
        if let Some(cut) = cut {
            let short = &der[..cut.index(der.len())];
            check(short, "truncated");
            prop_assert!(pinned_ip_fast(short).is_err());
        }
    }
}

// --- the rules, one at a time (so that each is surely exercised) ------------

fn one(exts: Vec<ExtPiece>, attrs: &[AttrPiece]) -> Vec<u8> {
    let v3 = Shape {
        version: 3,
        issuer_uid: false,
        subject_uid: false,
        cn: true,
    };
    build(&v3, attrs, Some(&exts))
}

fn pin_ext(text: Text, wrap: Wrap, critical: Critical) -> ExtPiece {
    ExtPiece {
        id: ExtId::Pin,
        critical,
        wrap,
        text,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Each rule has a certificate on which the reference gives that answer,
/// and the readers agree with it there.
#[test]
fn every_rule_of_the_reference_is_reached() {
    let good = || Text::Canonical(ip("192.0.2.10"));
    let ok = pin_ext(good(), Wrap::Printable, Critical::Absent);
    let bc = ExtPiece {
        id: ExtId::BasicConstraints,
        critical: Critical::True,
        wrap: Wrap::Printable,
        text: good(),
    };
    type Case = (&'static str, Vec<u8>, Result<Option<IpAddr>, &'static str>);
    let cases: Vec<Case> = vec![
        (
            "pinned v4",
            one(vec![ok.clone()], &[]),
            Ok(Some(ip("192.0.2.10"))),
        ),
        (
            "pinned v6",
            one(
                vec![pin_ext(
                    Text::Canonical(ip("2001:db8::7")),
                    Wrap::Printable,
                    Critical::False,
                )],
                &[],
            ),
            Ok(Some(ip("2001:db8::7"))),
        ),
        ("unpinned", one(vec![bc.clone()], &[]), Ok(None)),
        (
            "BER TRUE",
            one(
                vec![
                    bc.clone(),
                    pin_ext(good(), Wrap::Printable, Critical::BerTrue),
                ],
                &[],
            ),
            Err("framing"),
        ),
        (
            "BER TRUE on another extension",
            one(
                vec![
                    ExtPiece {
                        critical: Critical::BerTrue,
                        ..bc.clone()
                    },
                    ok.clone(),
                ],
                &[],
            ),
            Err("framing"),
        ),
        (
            "padded OID",
            one(
                vec![ExtPiece {
                    id: ExtId::PaddedPin,
                    ..ok.clone()
                }],
                &[],
            ),
            Err("certificate_profile"),
        ),
        (
            "padded attribute type",
            one(vec![ok.clone()], &[AttrPiece::PaddedType]),
            Err("certificate_profile"),
        ),
        (
            "duplicate pin",
            one(vec![ok.clone(), ok.clone()], &[]),
            Err("duplicate_extension"),
        ),
        (
            "duplicate other",
            one(vec![bc.clone(), ok.clone(), bc.clone()], &[]),
            Err("duplicate_extension"),
        ),
        (
            "critical",
            one(vec![pin_ext(good(), Wrap::Printable, Critical::True)], &[]),
            Err("critical_extension"),
        ),
        (
            "UTF8String",
            one(vec![pin_ext(good(), Wrap::Utf8, Critical::Absent)], &[]),
            Err("extension_value"),
        ),
        (
            "long length",
            one(
                vec![pin_ext(good(), Wrap::LongLength, Critical::Absent)],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "indefinite",
            one(
                vec![pin_ext(good(), Wrap::Indefinite, Critical::Absent)],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "trailing",
            one(
                vec![pin_ext(good(), Wrap::TrailingByte, Critical::Absent)],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "truncated",
            one(
                vec![pin_ext(good(), Wrap::Truncated, Critical::Absent)],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "nested",
            one(vec![pin_ext(good(), Wrap::Nested, Critical::Absent)], &[]),
            Err("extension_value"),
        ),
        (
            "empty",
            one(vec![pin_ext(good(), Wrap::Empty, Critical::Absent)], &[]),
            Err("extension_value"),
        ),
        (
            "mapped",
            one(
                vec![pin_ext(
                    Text::Mapped(Ipv4Addr::new(192, 0, 2, 10)),
                    Wrap::Printable,
                    Critical::Absent,
                )],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "upper",
            one(
                vec![pin_ext(
                    Text::Upper(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa)),
                    Wrap::Printable,
                    Critical::Absent,
                )],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "leading zero",
            one(
                vec![pin_ext(
                    Text::LeadingZero(Ipv4Addr::new(192, 0, 2, 1)),
                    Wrap::Printable,
                    Critical::Absent,
                )],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "junk in PrintableString",
            one(
                vec![pin_ext(
                    Text::Junk("10.0.0.1*".into()),
                    Wrap::Printable,
                    Critical::Absent,
                )],
                &[],
            ),
            Err("extension_value"),
        ),
        (
            "teleport pin",
            one(vec![bc.clone()], &[AttrPiece::TeleportPin(0x0c, good())]),
            Ok(Some(ip("192.0.2.10"))),
        ),
        (
            "teleport login only",
            one(vec![bc.clone()], &[AttrPiece::TeleportLogin(0x13, good())]),
            Ok(None),
        ),
        (
            "teleport IA5String",
            one(vec![bc.clone()], &[AttrPiece::TeleportPin(0x16, good())]),
            Err("attribute_value"),
        ),
        (
            "teleport multi-valued",
            one(vec![bc.clone()], &[AttrPiece::MultiValued(good())]),
            Err("attribute_value"),
        ),
        (
            "teleport twice",
            one(
                vec![bc.clone()],
                &[
                    AttrPiece::TeleportPin(0x13, good()),
                    AttrPiece::TeleportPin(0x13, good()),
                ],
            ),
            Err("duplicate_attribute"),
        ),
        (
            "layouts agree",
            one(vec![ok.clone()], &[AttrPiece::TeleportPin(0x13, good())]),
            Ok(Some(ip("192.0.2.10"))),
        ),
        (
            "layouts disagree",
            one(
                vec![ok.clone()],
                &[AttrPiece::TeleportPin(
                    0x13,
                    Text::Canonical(ip("192.0.2.11")),
                )],
            ),
            Err("layout_mismatch"),
        ),
        (
            "login only in one layout",
            one(
                vec![ok.clone()],
                &[
                    AttrPiece::TeleportPin(0x13, good()),
                    AttrPiece::TeleportLogin(0x13, good()),
                ],
            ),
            Err("layout_mismatch"),
        ),
        (
            "v2 with extensions",
            build(
                &Shape {
                    version: 2,
                    issuer_uid: false,
                    subject_uid: false,
                    cn: true,
                },
                &[],
                Some(std::slice::from_ref(&ok)),
            ),
            Err("certificate_profile"),
        ),
        (
            "v3, empty extensions",
            build(
                &Shape {
                    version: 3,
                    issuer_uid: false,
                    subject_uid: false,
                    cn: true,
                },
                &[],
                Some(&[]),
            ),
            Err("certificate_profile"),
        ),
        (
            "v1 with a unique id",
            build(
                &Shape {
                    version: 0,
                    issuer_uid: true,
                    subject_uid: false,
                    cn: true,
                },
                &[],
                None,
            ),
            Err("certificate_profile"),
        ),
    ];
    for (name, der, want) in cases {
        let got = reference(&der).unwrap().pins.map(|p| p.0.map(|n| n.addr()));
        assert_eq!(got, want, "{name}: the reference");
        check(&der, name);
    }
    // client_identity's subject rules
    for (name, attrs) in [
        ("second CN", vec![AttrPiece::SecondCn]),
        ("IA5String O", vec![AttrPiece::Ia5Role]),
    ] {
        let der = one(vec![ok.clone()], &attrs);
        assert_eq!(reference(&der).unwrap().subject, Err("subject"), "{name}");
        check(&der, name);
    }
    let no_cn = build(
        &Shape {
            version: 3,
            issuer_uid: false,
            subject_uid: false,
            cn: false,
        },
        &[],
        Some(std::slice::from_ref(&ok)),
    );
    assert_eq!(reference(&no_cn).unwrap().subject, Err("subject"));
    check(&no_cn, "no CN");
}

// --- the committed vectors ---------------------------------------------------

/// Every committed X.509 vector, whole and cut at every length, against
/// the reference; the answers recorded in vectors.rs are what the
/// reference says too.
#[test]
fn committed_vectors_agree_with_the_reference() {
    let mut names: Vec<_> = fs::read_dir(vectors())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("x509_") && n.ends_with(".der"))
        .collect();
    names.sort();
    assert!(names.len() >= 13, "{names:?}");
    for name in &names {
        let der = fs::read(vectors().join(name)).unwrap();
        assert!(
            reference(&der).is_ok(),
            "{name}: x509-parser decodes every vector"
        );
        check(&der, name);
        for cut in 0..der.len() {
            let short = &der[..cut];
            assert!(reference(short).is_err(), "{name} cut at {cut}");
            check(short, name);
        }
    }
    let pin = |name: &str| {
        let der = fs::read(vectors().join(format!("x509_{name}.der"))).unwrap();
        reference(&der).unwrap().pins.map(|p| p.0.map(|n| n.addr()))
    };
    assert_eq!(pin("pinned_v4"), Ok(Some(ip("192.0.2.10"))));
    assert_eq!(pin("pinned_v6"), Ok(Some(ip("2001:db8::7"))));
    assert_eq!(pin("teleport"), Ok(Some(ip("192.0.2.10"))));
    assert_eq!(pin("unpinned"), Ok(None));
    assert_eq!(pin("critical"), Err("critical_extension"));
    assert_eq!(pin("layouts_disagree"), Err("layout_mismatch"));
    for name in [
        "utf8_inner",
        "nonminimal_len",
        "trailing_byte",
        "leading_zero",
        "mapped",
        "trailing_space",
    ] {
        assert_eq!(pin(name), Err("extension_value"), "{name}");
    }
}
