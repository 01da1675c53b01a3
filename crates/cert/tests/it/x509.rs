//! X.509 client certificates: issuance, full and fast extraction, every
//! rejection rule (the fast path and the full decoder must agree on each).

use std::net::IpAddr;

use der::Decode as _;
use ipnet::IpNet;
use ippin_cert::Error;
use ippin_cert::x509::{
    self, ClientCertRequest, PinnedIp, Profile, ServerCertRequest, X509Ca, client_identity,
    pinned_ip, pinned_ip_fast,
};

use crate::support::{NOW, rng};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn spki() -> Vec<u8> {
    let (_, public) = x509::generate_key_pair_p256(&mut rng()).unwrap();
    x509::spki_der_from_pem(&public).unwrap()
}

pub(crate) fn ca() -> X509Ca {
    X509Ca::generate_p256(
        "ippin test CA",
        NOW - 86_400,
        NOW + 86_400 * 365,
        &mut rng(),
    )
    .unwrap()
}

pub(crate) fn client(
    ca: &X509Ca,
    pin: Option<&str>,
    login: Option<&str>,
    profile: Profile,
) -> Vec<u8> {
    let mut b = ClientCertRequest::builder("alice", spki())
        .role("dev")
        .role("ops")
        .validity(NOW - 60, NOW + 3600)
        .serial(0x1234)
        .profile(profile);
    if let Some(p) = pin {
        b = b.pinned_ip(ip(p));
    }
    if let Some(l) = login {
        b = b.login_ip(ip(l));
    }
    ca.issue_client(&b.build().unwrap(), &mut rng()).unwrap()
}

/// A client certificate pinned to `pin` and bound to the private endpoint `endpoint`.
pub(crate) fn client_bound(ca: &X509Ca, pin: &str, endpoint: &str) -> Vec<u8> {
    let req = ClientCertRequest::builder("alice", spki())
        .role("dev")
        .validity(NOW - 60, NOW + 3600)
        .serial(0x1234)
        .pinned_ip(ip(pin))
        .pinned_endpoint(endpoint)
        .build()
        .unwrap();
    ca.issue_client(&req, &mut rng()).unwrap()
}

/// Both readers must give the same answer; returns it.
fn both(der: &[u8]) -> Result<Option<IpAddr>, &'static str> {
    let full = pinned_ip(der).map_err(|e| e.code());
    let fast = pinned_ip_fast(der).map_err(|e| e.code());
    assert_eq!(full, fast, "full and fast path disagree");
    full
}

// --- a tiny DER writer, to build certificates a correct CA never issues ---

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    let o = der::asn1::ObjectIdentifier::new(dotted).unwrap();
    tlv(0x06, o.as_bytes())
}

pub(crate) fn ext(id: &str, critical: Option<bool>, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if let Some(c) = critical {
        parts.push(vec![0x01, 0x01, if c { 0xff } else { 0x00 }]);
    }
    parts.push(tlv(0x04, value));
    seq(&parts)
}

pub(crate) fn attr(id: &str, tag: u8, value: &[u8]) -> Vec<u8> {
    tlv(0x31, &seq(&[oid(id), tlv(tag, value)]))
}

pub(crate) fn printable(text: &str) -> Vec<u8> {
    tlv(0x13, text.as_bytes())
}

/// A client certificate with the given extra subject RDNs and extensions,
/// signed by `ca`.
pub(crate) fn crafted(ca: &X509Ca, rdns: &[Vec<u8>], exts: &[Vec<u8>]) -> Vec<u8> {
    let mut subject = vec![attr("2.5.4.3", 0x0c, b"alice")];
    subject.extend_from_slice(rdns);
    let mut ext_list = vec![ext("2.5.29.19", Some(true), &seq(&[]))];
    ext_list.extend_from_slice(exts);
    let tbs = seq(&[
        vec![0xa0, 0x03, 0x02, 0x01, 0x02],
        vec![0x02, 0x01, 0x07],
        seq(&[oid("1.2.840.10045.4.3.2")]),
        ca.subject_der().to_vec(),
        seq(&[tlv(0x17, b"231114000000Z"), tlv(0x17, b"331114000000Z")]),
        seq(&subject),
        spki(),
        tlv(0xa3, &seq(&ext_list)),
    ]);
    ca.danger_sign_tbs(&tbs, &mut rng()).unwrap()
}

const PIN: &str = "1.3.9999.1.9";
const LOGIN: &str = "1.3.9999.1.9.1";
const TP_LOGIN: &str = "1.3.9999.1.9";
const TP_PIN: &str = "1.3.9999.2.15";

#[test]
fn issue_and_read_pinned_client_certificates() {
    for ca in [
        ca(),
        X509Ca::generate_ed25519("ed CA", NOW - 10, NOW + 1000, &mut rng()).unwrap(),
    ] {
        for (pin, login) in [
            ("192.0.2.10", "192.0.2.10"),
            ("2001:db8::7", "198.51.100.1"),
        ] {
            let der = client(&ca, Some(pin), Some(login), Profile::Ippin);
            assert_eq!(both(&der), Ok(Some(ip(pin))));
            let id = client_identity(&der).unwrap();
            assert_eq!(id.user, "alice");
            assert_eq!(id.roles, ["dev", "ops"]);
            assert_eq!(id.pin, Some(IpNet::from(ip(pin))));
            assert_eq!(id.login_ip, Some(ip(login)));
            assert_eq!((id.not_before, id.not_after), (NOW - 60, NOW + 3600));
            assert_eq!(id.serial, [0x12, 0x34]);
            assert_eq!(id.profile, Some(Profile::Ippin));
        }
    }
}

#[test]
fn unpinned_certificate_reads_as_unpinned() {
    let der = client(&ca(), None, None, Profile::Ippin);
    assert_eq!(both(&der), Ok(None));
    let id = client_identity(&der).unwrap();
    assert_eq!((id.pin, id.login_ip, id.profile), (None, None, None));
}

#[test]
fn p256_client_certificate_is_about_443_bytes() {
    let der = client(&ca(), Some("203.0.113.77"), None, Profile::Ippin);
    assert!((400..=480).contains(&der.len()), "{} bytes", der.len());
}

#[test]
fn teleport_layout_is_written_and_read() {
    let ca = ca();
    let der = client(&ca, Some("10.1.2.3"), Some("10.9.9.9"), Profile::Teleport);
    assert_eq!(both(&der), Ok(Some(ip("10.1.2.3"))));
    let id = client_identity(&der).unwrap();
    assert_eq!(id.login_ip, Some(ip("10.9.9.9")));
    assert_eq!(id.profile, Some(Profile::Teleport));
    assert_eq!(id.roles, ["dev", "ops"]);
    // no ippin extension in a Teleport-layout certificate
    let parsed: x509_cert::Certificate = der::Decode::from_der(&der).unwrap();
    let exts = parsed.tbs_certificate().extensions().unwrap();
    assert!(exts.iter().all(|e| e.extn_id != x509::PINNED_IP_OID));

    let der = client(&ca, Some("2001:db8::1"), Some("2001:db8::2"), Profile::Both);
    assert_eq!(both(&der), Ok(Some(ip("2001:db8::1"))));
    assert_eq!(client_identity(&der).unwrap().profile, Some(Profile::Both));
}

#[test]
fn teleport_login_ip_is_never_a_pin() {
    let ca = ca();
    let der = crafted(&ca, &[attr(TP_LOGIN, 0x13, b"10.0.0.1")], &[]);
    assert_eq!(both(&der), Ok(None));
    assert_eq!(
        client_identity(&der).unwrap().login_ip,
        Some(ip("10.0.0.1"))
    );
    // UTF8String is accepted for the Teleport attributes
    let der = crafted(&ca, &[attr(TP_PIN, 0x0c, b"10.0.0.2")], &[]);
    assert_eq!(both(&der), Ok(Some(ip("10.0.0.2"))));
}

#[test]
fn every_rejection_rule_fast_and_full_agree() {
    let ca = ca();
    type Case = (&'static str, Vec<Vec<u8>>, Vec<Vec<u8>>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "duplicate extension",
            vec![],
            vec![
                ext(PIN, None, &printable("10.0.0.1")),
                ext(PIN, None, &printable("10.0.0.1")),
            ],
            "duplicate_extension",
        ),
        (
            "duplicate, different",
            vec![],
            vec![
                ext(PIN, None, &printable("10.0.0.1")),
                ext(PIN, None, &printable("10.0.0.2")),
            ],
            "duplicate_extension",
        ),
        (
            "duplicate login ext",
            vec![],
            vec![
                ext(LOGIN, None, &printable("10.0.0.1")),
                ext(LOGIN, None, &printable("10.0.0.1")),
            ],
            "duplicate_extension",
        ),
        (
            "critical",
            vec![],
            vec![ext(PIN, Some(true), &printable("10.0.0.1"))],
            "critical_extension",
        ),
        (
            "wrong inner type",
            vec![],
            vec![ext(PIN, None, &tlv(0x0c, b"10.0.0.1"))],
            "extension_value",
        ),
        (
            "ia5 inner type",
            vec![],
            vec![ext(PIN, None, &tlv(0x16, b"10.0.0.1"))],
            "extension_value",
        ),
        (
            "non-minimal length",
            vec![],
            vec![ext(
                PIN,
                None,
                &[&[0x13u8, 0x81, 0x08][..], b"10.0.0.1"].concat(),
            )],
            "extension_value",
        ),
        (
            "trailing bytes",
            vec![],
            vec![ext(PIN, None, &[printable("10.0.0.1"), vec![0]].concat())],
            "extension_value",
        ),
        (
            "truncated",
            vec![],
            vec![ext(PIN, None, &[0x13, 0x09, b'1', b'0'])],
            "extension_value",
        ),
        (
            "empty value",
            vec![],
            vec![ext(PIN, None, &[])],
            "extension_value",
        ),
        (
            "leading zero",
            vec![],
            vec![ext(PIN, None, &printable("010.0.0.1"))],
            "extension_value",
        ),
        (
            "mapped",
            vec![],
            vec![ext(PIN, None, &printable("::ffff:10.0.0.1"))],
            "extension_value",
        ),
        (
            "upper case",
            vec![],
            vec![ext(PIN, None, &printable("2001:DB8::1"))],
            "extension_value",
        ),
        (
            "uncompressed",
            vec![],
            vec![ext(PIN, None, &printable("2001:db8:0:0:0:0:0:1"))],
            "extension_value",
        ),
        (
            "trailing space",
            vec![],
            vec![ext(PIN, None, &printable("10.0.0.1 "))],
            "extension_value",
        ),
        (
            "port",
            vec![],
            vec![ext(PIN, None, &printable("10.0.0.1:22"))],
            "extension_value",
        ),
        (
            "not printable",
            vec![],
            vec![ext(PIN, None, &tlv(0x13, b"10.0.0.1%"))],
            "extension_value",
        ),
        (
            "bad login ip",
            vec![],
            vec![ext(LOGIN, None, &printable("10.0.0.01"))],
            "extension_value",
        ),
        (
            "duplicate teleport pin",
            vec![
                attr(TP_PIN, 0x13, b"10.0.0.1"),
                attr(TP_PIN, 0x13, b"10.0.0.1"),
            ],
            vec![],
            "duplicate_attribute",
        ),
        (
            "teleport pin wrong type",
            vec![attr(TP_PIN, 0x16, b"10.0.0.1")],
            vec![],
            "attribute_value",
        ),
        (
            "teleport pin non-canonical",
            vec![attr(TP_PIN, 0x13, b"10.0.0.1 ")],
            vec![],
            "attribute_value",
        ),
        (
            "teleport login non-canonical",
            vec![attr(TP_LOGIN, 0x0c, b"::FFFF:10.0.0.1")],
            vec![],
            "attribute_value",
        ),
        (
            "layouts disagree on pin",
            vec![attr(TP_PIN, 0x13, b"10.0.0.2")],
            vec![ext(PIN, None, &printable("10.0.0.1"))],
            "layout_mismatch",
        ),
        (
            "pinned in one layout only",
            vec![attr(TP_LOGIN, 0x13, b"10.0.0.2")],
            vec![
                ext(PIN, None, &printable("10.0.0.1")),
                ext(LOGIN, None, &printable("10.0.0.2")),
            ],
            "layout_mismatch",
        ),
        (
            "layouts disagree on login",
            vec![
                attr(TP_PIN, 0x13, b"10.0.0.1"),
                attr(TP_LOGIN, 0x13, b"10.0.0.3"),
            ],
            vec![
                ext(PIN, None, &printable("10.0.0.1")),
                ext(LOGIN, None, &printable("10.0.0.2")),
            ],
            "layout_mismatch",
        ),
    ];
    for (name, rdns, exts, code) in cases {
        let der = crafted(&ca, &rdns, &exts);
        assert_eq!(both(&der), Err(code), "{name}");
        assert_eq!(
            client_identity(&der).map(|_| ()).map_err(|e| e.code()),
            Err(code),
            "{name}"
        );
    }
    // an explicit critical FALSE (not DER-canonical, but accepted by x509-cert) is non-critical
    let der = crafted(&ca, &[], &[ext(PIN, Some(false), &printable("10.0.0.1"))]);
    assert_eq!(both(&der), Ok(Some(ip("10.0.0.1"))));
    // layouts that agree are fine
    let der = crafted(
        &ca,
        &[attr(TP_PIN, 0x13, b"10.0.0.1")],
        &[ext(PIN, None, &printable("10.0.0.1"))],
    );
    assert_eq!(both(&der), Ok(Some(ip("10.0.0.1"))));
}

#[test]
fn error_messages_carry_context() {
    let ca = ca();
    let der = crafted(
        &ca,
        &[],
        &[
            ext(PIN, None, &printable("10.0.0.1")),
            ext(PIN, None, &printable("10.0.0.1")),
        ],
    );
    assert_eq!(
        pinned_ip_fast(&der).unwrap_err().to_string(),
        "duplicate extension 1.3.9999.1.9"
    );
    let der = crafted(&ca, &[], &[ext(PIN, None, &printable("::ffff:10.0.0.1"))]);
    assert_eq!(
        pinned_ip(&der).unwrap_err().to_string(),
        "extension 1.3.9999.1.9 value: IPv4-mapped IPv6 address; the canonical form is `10.0.0.1`"
    );
}

#[test]
fn every_truncation_is_an_error_in_both() {
    let der = client(&ca(), Some("192.0.2.1"), Some("192.0.2.1"), Profile::Both);
    for n in 0..der.len() {
        assert!(
            pinned_ip_fast(&der[..n]).is_err(),
            "fast accepted a {n}-byte prefix"
        );
        assert!(
            pinned_ip(&der[..n]).is_err(),
            "full accepted a {n}-byte prefix"
        );
    }
    let mut longer = der.clone();
    longer.push(0);
    assert_eq!(pinned_ip_fast(&longer).unwrap_err().code(), "der_structure");
    assert_eq!(pinned_ip(&longer).unwrap_err().code(), "der");
}

#[test]
fn pinned_ip_type_der_round_trip() {
    use der::{Decode, Encode};
    for text in ["10.0.0.1", "2001:db8::1"] {
        let p = PinnedIp::new(ip(text));
        let der = p.to_der().unwrap();
        assert_eq!(der, printable(text));
        assert_eq!(PinnedIp::from_der(&der).unwrap(), p);
        assert_eq!(PinnedIp::from_extension_value(&der).unwrap(), p);
    }
    assert!(PinnedIp::from_der(&printable("010.0.0.1")).is_err());
    assert!(PinnedIp::from_der(&[printable("10.0.0.1"), vec![0]].concat()).is_err());
    assert_eq!(PinnedIp::new(ip("::ffff:1.2.3.4")).to_string(), "1.2.3.4");
}

#[test]
fn builder_refuses_bad_requests() {
    let field = |r: Result<ClientCertRequest, Error>| match r.unwrap_err() {
        Error::Request { field, .. } => field,
        Error::Der { context, .. } => context,
        other => panic!("{other:?}"),
    };
    let ok = || {
        ClientCertRequest::builder("alice", spki())
            .validity(1, 2)
            .serial(1)
    };
    ok().build().unwrap();
    assert_eq!(
        field(
            ClientCertRequest::builder("", spki())
                .validity(1, 2)
                .serial(1)
                .build()
        ),
        "user"
    );
    assert_eq!(
        field(
            ClientCertRequest::builder("a".repeat(65), spki())
                .validity(1, 2)
                .serial(1)
                .build()
        ),
        "user"
    );
    assert_eq!(field(ok().role("r").role("r").build()), "roles");
    assert_eq!(field(ok().role("").build()), "roles");
    assert_eq!(field(ok().validity(2, 2).build()), "validity");
    assert_eq!(field(ok().serial(0).build()), "serial");
    assert_eq!(
        field(
            ClientCertRequest::builder("alice", vec![0x30, 0x00])
                .validity(1, 2)
                .serial(1)
                .build()
        ),
        "subject public key"
    );
}

#[test]
fn ca_round_trips_through_pem_and_server_certificates_issue() {
    let ca = ca();
    let again = X509Ca::from_pem(&ca.cert_pem(), &ca.key_pem().unwrap()).unwrap();
    assert_eq!(again.cert_der(), ca.cert_der());
    let der = client(&again, Some("10.0.0.1"), None, Profile::Ippin);
    assert_eq!(both(&der), Ok(Some(ip("10.0.0.1"))));
    // a key that does not belong to the certificate is refused
    let other = X509Ca::generate_p256("other", NOW, NOW + 10, &mut rng()).unwrap();
    assert_eq!(
        X509Ca::from_pem(&ca.cert_pem(), &other.key_pem().unwrap())
            .unwrap_err()
            .code(),
        "key"
    );
    let req = ServerCertRequest::new(
        vec!["localhost".into()],
        vec![ip("127.0.0.1")],
        spki(),
        NOW - 10,
        NOW + 10,
        9,
    )
    .unwrap();
    let server = ca.issue_server(&req, &mut rng()).unwrap();
    let parsed: x509_cert::Certificate = der::Decode::from_der(&server).unwrap();
    assert_eq!(
        parsed.tbs_certificate().subject().to_string(),
        "CN=localhost"
    );
    assert!(ServerCertRequest::new(vec![], vec![], spki(), 1, 2, 1).is_err());
    assert!(ServerCertRequest::new(vec!["bad name".into()], vec![], spki(), 1, 2, 1).is_err());
}

// --- hardening: structure rules both readers enforce, and the pin text ---

/// A certificate with full control over version, unique IDs and the
/// extensions field (`None` = no `[3]` at all).
pub(crate) fn shaped(
    ca: &X509Ca,
    version: Option<&[u8]>,
    unique_ids: &[Vec<u8>],
    rdns: &[Vec<u8>],
    exts: Option<&[Vec<u8>]>,
) -> Vec<u8> {
    let mut subject = vec![attr("2.5.4.3", 0x0c, b"alice")];
    subject.extend_from_slice(rdns);
    let mut tbs = Vec::new();
    if let Some(v) = version {
        tbs.push(v.to_vec());
    }
    tbs.extend([
        vec![0x02, 0x01, 0x07],
        seq(&[oid("1.2.840.10045.4.3.2")]),
        ca.subject_der().to_vec(),
        seq(&[tlv(0x17, b"231114000000Z"), tlv(0x17, b"331114000000Z")]),
        seq(&subject),
        spki(),
    ]);
    tbs.extend_from_slice(unique_ids);
    if let Some(exts) = exts {
        tbs.push(tlv(0xa3, &seq(exts)));
    }
    ca.danger_sign_tbs(&seq(&tbs), &mut rng()).unwrap()
}

const V1: Option<&[u8]> = None;
const V1_EXPLICIT: Option<&[u8]> = Some(&[0xa0, 0x03, 0x02, 0x01, 0x00]);
const V2: Option<&[u8]> = Some(&[0xa0, 0x03, 0x02, 0x01, 0x01]);
const V3: Option<&[u8]> = Some(&[0xa0, 0x03, 0x02, 0x01, 0x02]);

/// The agreement contract, plus: both fail. Returns (full code, fast code).
fn both_fail(der: &[u8]) -> (&'static str, &'static str) {
    crate::props::check_agreement(der);
    (
        pinned_ip(der).unwrap_err().code(),
        pinned_ip_fast(der).unwrap_err().code(),
    )
}

#[test]
fn duplicate_extensions_of_any_oid_are_refused_by_both() {
    let ca = ca();
    let pin = ext(PIN, None, &printable("10.0.0.1"));
    let eku = ext("2.5.29.37", None, &seq(&[oid("1.3.6.1.5.5.7.3.2")]));
    let other = ext("1.2.3.4", None, &[0x05, 0x00]);
    for (name, exts) in [
        // `crafted` always adds basicConstraints: a second one
        (
            "basicConstraints twice",
            vec![pin.clone(), ext("2.5.29.19", Some(true), &seq(&[]))],
        ),
        ("EKU twice", vec![eku.clone(), pin.clone(), eku.clone()]),
        (
            "unknown OID twice",
            vec![other.clone(), other.clone(), pin.clone()],
        ),
        (
            "unknown twice, unpinned",
            vec![other.clone(), other.clone()],
        ),
    ] {
        let der = crafted(&ca, &[], &exts);
        assert_eq!(both(&der), Err("duplicate_extension"), "{name}");
        assert_eq!(
            client_identity(&der).unwrap_err().code(),
            "duplicate_extension",
            "{name}"
        );
    }
    let der = crafted(&ca, &[], &[eku.clone(), eku]);
    assert_eq!(
        pinned_ip_fast(&der).unwrap_err().to_string(),
        "duplicate extension 2.5.29.37"
    );
    // many distinct extensions are fine (past the 16 kept inline)
    let many: Vec<Vec<u8>> = (1..40)
        .map(|i| ext(&format!("1.2.3.{i}"), None, &[0x05, 0x00]))
        .chain([pin.clone()])
        .collect();
    assert_eq!(both(&crafted(&ca, &[], &many)), Ok(Some(ip("10.0.0.1"))));
    // and a duplicate among many is found
    let mut dup = many.clone();
    dup.push(ext("1.2.3.7", None, &[0x05, 0x00]));
    assert_eq!(both(&crafted(&ca, &[], &dup)), Err("duplicate_extension"));
}

/// An extension under ippin's arc (1.3.9999.1.9.*) that this version does not know (a
/// later version's narrowing field) refuses the certificate, by the fast path and the full
/// decode alike, critical or not, pinned or not; other unknown extensions are ignored, and
/// the arc's own OID with a sibling (1.3.9999.1.90) is not under it.
#[test]
fn an_unknown_extension_under_ippins_arc_is_refused_by_both() {
    let ca = ca();
    let pin = ext(PIN, None, &printable("10.0.0.1"));
    for (name, exts, refused) in [
        (
            "1.3.9999.1.9.99 beside a pin",
            vec![pin.clone(), ext("1.3.9999.1.9.99", None, &[0x05, 0x00])],
            true,
        ),
        (
            "1.3.9999.1.9.4.1, unpinned",
            vec![ext("1.3.9999.1.9.4.1", None, &[0x05, 0x00])],
            true,
        ),
        (
            "1.3.9999.1.9.7, critical",
            vec![
                pin.clone(),
                ext("1.3.9999.1.9.7", Some(true), &[0x05, 0x00]),
            ],
            true,
        ),
        (
            "1.3.9999.1.90",
            vec![pin.clone(), ext("1.3.9999.1.90", None, &[0x05, 0x00])],
            false,
        ),
        (
            "1.3.9999.1.8.1",
            vec![pin.clone(), ext("1.3.9999.1.8.1", None, &[0x05, 0x00])],
            false,
        ),
    ] {
        let der = crafted(&ca, &[], &exts);
        if refused {
            assert_eq!(both(&der), Err("extension_value"), "{name}");
            assert_eq!(
                client_identity(&der).unwrap_err().code(),
                "extension_value",
                "{name}"
            );
        } else {
            assert_eq!(both(&der), Ok(Some(ip("10.0.0.1"))), "{name}");
            assert!(client_identity(&der).is_ok(), "{name}");
        }
    }
}

#[test]
fn version_unique_ids_and_empty_extensions() {
    let ca = ca();
    let pin = [ext(PIN, None, &printable("10.0.0.1"))];
    let uid = |tag: u8| tlv(tag, &[0x00, 0xab]);
    // fine: v3 with extensions, v3/v2 with unique IDs, v1 bare
    assert_eq!(
        both(&shaped(&ca, V3, &[], &[], Some(&pin))),
        Ok(Some(ip("10.0.0.1")))
    );
    assert_eq!(
        both(&shaped(&ca, V3, &[uid(0x81), uid(0x82)], &[], Some(&pin))),
        Ok(Some(ip("10.0.0.1")))
    );
    assert_eq!(both(&shaped(&ca, V2, &[uid(0x82)], &[], None)), Ok(None));
    assert_eq!(both(&shaped(&ca, V1, &[], &[], None)), Ok(None));
    // refused by both, the same way
    for (name, der) in [
        ("v1 with extensions", shaped(&ca, V1, &[], &[], Some(&pin))),
        ("v2 with extensions", shaped(&ca, V2, &[], &[], Some(&pin))),
        ("v3, empty extensions", shaped(&ca, V3, &[], &[], Some(&[]))),
        (
            "v1 with issuerUniqueID",
            shaped(&ca, V1, &[uid(0x81)], &[], None),
        ),
        (
            "v1 with subjectUniqueID",
            shaped(&ca, V1, &[uid(0x82)], &[], None),
        ),
    ] {
        assert_eq!(both(&der), Err("certificate_profile"), "{name}");
    }
    // a pinned v1/v2 certificate is an error, never "unpinned"
    let err = pinned_ip_fast(&shaped(&ca, V1, &[], &[], Some(&pin))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate structure: extensions in a v1 or v2 certificate (RFC 5280: v3 only)"
    );
    // versions that are not v1..v3, or badly encoded, fail in both
    for (name, version) in [
        ("version 4", &[0xa0, 0x03, 0x02, 0x01, 0x03][..]),
        ("negative version", &[0xa0, 0x03, 0x02, 0x01, 0xff]),
        ("padded version", &[0xa0, 0x04, 0x02, 0x02, 0x00, 0x02]),
        ("version not an INTEGER", &[0xa0, 0x03, 0x04, 0x01, 0x02]),
        (
            "trailing byte in [0]",
            &[0xa0, 0x04, 0x02, 0x01, 0x02, 0x00],
        ),
    ] {
        let der = shaped(&ca, Some(version), &[], &[], Some(&pin));
        let (full, fast) = both_fail(&der);
        assert!(
            full == "der" || full == "certificate_profile",
            "{name}: {full}"
        );
        assert!(
            fast == "der_structure" || fast == "certificate_profile",
            "{name}: {fast}"
        );
    }
    // an explicitly encoded v1 (DER forbids encoding the default) with a pin
    let (_, fast) = both_fail(&shaped(&ca, V1_EXPLICIT, &[], &[], Some(&pin)));
    assert_eq!(fast, "certificate_profile");
}

#[test]
fn non_minimal_oid_of_the_pin_is_not_another_extension() {
    let ca = ca();
    // 1.3.9999.1.9 with a padded arc: 2b 80 ce 0f 01 09
    let padded = seq(&[
        tlv(0x06, &[0x2b, 0x80, 0xce, 0x0f, 0x01, 0x09]),
        tlv(0x04, &printable("10.0.0.1")),
    ]);
    let der = crafted(&ca, &[], &[padded]);
    // x509-cert decodes it (as an OID that is not byte-equal to the pin's),
    // so without the shared check the full decoder would say "unpinned"
    assert!(x509_cert::Certificate::from_der(&der).is_ok());
    assert_eq!(both(&der), Err("certificate_profile"));
    // the same for a Teleport attribute type
    let rdn = tlv(
        0x31,
        &seq(&[
            tlv(0x06, &[0x2b, 0xce, 0x0f, 0x02, 0x80, 0x0f]),
            printable("10.0.0.1"),
        ]),
    );
    let der = crafted(&ca, &[rdn], &[]);
    assert_eq!(both(&der), Err("certificate_profile"));
}

#[test]
fn teleport_pin_in_a_multi_valued_rdn_is_refused() {
    let ca = ca();
    let atv = |id: &str, text: &str| seq(&[oid(id), printable(text)]);
    // DER SET OF: elements in ascending order of their encodings
    let mut members = [atv(TP_PIN, "10.0.0.1"), atv("2.5.4.10", "dev")];
    members.sort();
    let multi = tlv(0x31, &members.concat());
    let der = crafted(&ca, &[multi], &[]);
    assert_eq!(both(&der), Err("attribute_value"));
    // both Teleport attributes in one RDN
    let mut members = [atv(TP_PIN, "10.0.0.1"), atv(TP_LOGIN, "10.0.0.1")];
    members.sort();
    let der = crafted(&ca, &[tlv(0x31, &members.concat())], &[]);
    assert_eq!(both(&der), Err("attribute_value"));
    // UTF8String is accepted, in its own RDN
    let der = crafted(&ca, &[attr(TP_PIN, 0x0c, b"2001:db8::1")], &[]);
    assert_eq!(both(&der), Ok(Some(ip("2001:db8::1"))));
}

#[test]
fn pin_text_and_inner_encoding() {
    let ca = ca();
    // PrintableString includes ':' (X.680): IPv6 text is accepted as is
    for good in [
        "2001:db8::1",
        "::1",
        "::",
        "1::",
        "fe80::1",
        "64:ff9b::102:304",
        "0.0.0.0",
    ] {
        let der = crafted(&ca, &[], &[ext(PIN, None, &printable(good))]);
        assert_eq!(both(&der), Ok(Some(ip(good))), "{good}");
    }
    for bad in [
        "::ffff:1.2.3.4",
        "::FFFF:1.2.3.4",
        "01.2.3.4",
        "1.2.3.4 ",
        " 1.2.3.4",
        "1.2.3.4%eth0",
        "fe80::1%1",
        "[::1]",
        "[::1]:22",
        "1:0:0:0:0:0:0:0",
        "1::0",
        "0:0:0:0:0:0:0:1",
        "2001:DB8::1",
        "2001:db8:0:0:1:0:0:1",
        "::1:0:0:0:0:0:0:0",
        "127.1",
        "0x7f.0.0.1",
        "1.2.3.4/32",
        "1.2.3.4.",
        "",
    ] {
        let der = crafted(&ca, &[], &[ext(PIN, None, &tlv(0x13, bad.as_bytes()))]);
        assert_eq!(both(&der), Err("extension_value"), "{bad:?}");
        let der = crafted(&ca, &[attr(TP_PIN, 0x13, bad.as_bytes())], &[]);
        assert_eq!(both(&der), Err("attribute_value"), "teleport {bad:?}");
    }
    // the inner value: one PrintableString TLV, minimal definite length
    for (name, value) in [
        ("UTF8String", tlv(0x0c, b"10.0.0.1")),
        ("IA5String", tlv(0x16, b"10.0.0.1")),
        ("OCTET STRING", tlv(0x04, b"10.0.0.1")),
        ("raw text", b"10.0.0.1".to_vec()),
        (
            "indefinite length",
            [&[0x13u8, 0x80][..], b"10.0.0.1", &[0, 0]].concat(),
        ),
        (
            "long form length",
            [&[0x13u8, 0x82, 0x00, 0x08][..], b"10.0.0.1"].concat(),
        ),
        (
            "constructed PrintableString",
            tlv(0x33, &printable("10.0.0.1")),
        ),
        (
            "two strings",
            [printable("10.0.0.1"), printable("10.0.0.2")].concat(),
        ),
        ("NUL inside", tlv(0x13, b"10.0.0.1\0")),
    ] {
        let der = crafted(&ca, &[], &[ext(PIN, None, &value)]);
        assert_eq!(both(&der), Err("extension_value"), "{name}");
    }
}

#[test]
fn trailing_bytes_after_the_certificate_fail_in_both() {
    let der = client(&ca(), Some("192.0.2.1"), None, Profile::Ippin);
    for tail in [&[0u8][..], &[0, 0], &[0x30, 0x00], &der[..10]] {
        let longer = [der.as_slice(), tail].concat();
        assert_eq!(both_fail(&longer), ("der", "der_structure"));
        assert!(client_identity(&longer).is_err());
    }
}

/// The extended key usages of a certificate, with x509-cert.
fn ekus(der: &[u8]) -> Vec<String> {
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id.to_string() == "2.5.29.37")
        .expect("an extended key usage");
    let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).unwrap();
    eku.0.iter().map(ToString::to_string).collect()
}

/// A user's certificate has TLS client authentication; a front's for signed propagation has
/// the front's usage alone, and no pin.
#[test]
fn a_fronts_certificate_has_its_own_key_usage_and_no_pin() {
    let ca = ca();
    assert_eq!(
        ekus(&client(&ca, Some("192.0.2.1"), None, Profile::Ippin)),
        ["1.3.6.1.5.5.7.3.2"]
    );
    let front = ClientCertRequest::builder("proxy:front", spki())
        .role("proxy")
        .propagation_front()
        .validity(NOW - 60, NOW + 3600)
        .serial(7)
        .build()
        .unwrap();
    assert!(front.is_propagation_front());
    let der = ca.issue_client(&front, &mut rng()).unwrap();
    assert_eq!(ekus(&der), [x509::PROPAGATION_FRONT_EKU]);
    for b in [
        ClientCertRequest::builder("proxy:front", spki()).pinned_ip(ip("192.0.2.1")),
        ClientCertRequest::builder("proxy:front", spki()).login_ip(ip("192.0.2.1")),
    ] {
        let e = b
            .propagation_front()
            .validity(NOW - 60, NOW + 3600)
            .serial(7)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("front"), "{e}");
    }
}

/// The pinned-endpoint extension (1.3.9999.1.9.3): written beside the pin, read by both
/// readers alike; the functions that return the pin alone refuse a bound pin rather than drop
/// the binding; an endpoint without a pin, a name outside the charset, a critical or
/// repeated extension, or the Teleport layout are refused.
#[test]
fn a_pin_bound_to_an_endpoint_is_written_read_and_never_dropped() {
    const ENDPOINT: &str = "1.3.9999.1.9.3";
    let ca = ca();
    let der = client_bound(&ca, "10.0.0.5", "vpce-0123456789abcdef0");
    let want = (
        Some("10.0.0.5/32".parse::<IpNet>().unwrap()),
        Some("vpce-0123456789abcdef0".to_owned()),
    );
    assert_eq!(x509::pin_at(&der).unwrap(), want);
    assert_eq!(x509::pin_fast_at(&der).unwrap(), want);
    let id = client_identity(&der).unwrap();
    assert_eq!(
        id.pinned_endpoint.as_deref(),
        Some("vpce-0123456789abcdef0")
    );
    for e in [
        x509::pin(&der).unwrap_err(),
        x509::pin_fast(&der).unwrap_err(),
        pinned_ip(&der).unwrap_err(),
        pinned_ip_fast(&der).unwrap_err(),
    ] {
        assert_eq!(e.code(), "pin_bound_to_endpoint", "{e}");
    }
    // Unbound certificates read as before.
    let plain = client(&ca, Some("10.0.0.5"), None, Profile::Ippin);
    assert_eq!(x509::pin_at(&plain).unwrap().1, None);
    assert_eq!(pinned_ip(&plain).unwrap(), Some(ip("10.0.0.5")));

    // Crafted: what a correct CA never writes, refused by both readers with one code.
    let pin = ext(PIN, None, &printable("10.0.0.5"));
    for (exts, code) in [
        (
            vec![ext(ENDPOINT, None, &printable("vpce-1"))],
            "extension_value",
        ),
        (
            vec![pin.clone(), ext(ENDPOINT, None, &printable("VPCE-1"))],
            "extension_value",
        ),
        (
            vec![pin.clone(), ext(ENDPOINT, None, &printable(""))],
            "extension_value",
        ),
        (
            vec![pin.clone(), ext(ENDPOINT, None, &tlv(0x0c, b"vpce-1"))],
            "extension_value",
        ),
        (
            vec![pin.clone(), ext(ENDPOINT, Some(true), &printable("vpce-1"))],
            "critical_extension",
        ),
        (
            vec![
                pin.clone(),
                ext(ENDPOINT, None, &printable("vpce-1")),
                ext(ENDPOINT, None, &printable("vpce-1")),
            ],
            "duplicate_extension",
        ),
    ] {
        let der = crafted(&ca, &[], &exts);
        let full = x509::pin_at(&der).unwrap_err();
        let fast = x509::pin_fast_at(&der).unwrap_err();
        assert_eq!((full.code(), fast.code()), (code, code), "{full} / {fast}");
    }
    let der = crafted(
        &ca,
        &[],
        &[pin, ext(ENDPOINT, Some(false), &printable("azure:7"))],
    );
    assert_eq!(
        x509::pin_fast_at(&der).unwrap().1.as_deref(),
        Some("azure:7")
    );

    // The builder: a pin is needed, the name must be one, and the Teleport layout cannot say it.
    let base = || {
        ClientCertRequest::builder("alice", spki())
            .validity(NOW - 60, NOW + 3600)
            .serial(7)
    };
    assert!(base().pinned_endpoint("vpce-1").build().is_err());
    assert!(
        base()
            .pinned_ip(ip("10.0.0.5"))
            .pinned_endpoint("Vpce 1")
            .build()
            .is_err()
    );
    for profile in [Profile::Teleport, Profile::Both] {
        let e = base()
            .pinned_ip(ip("10.0.0.5"))
            .pinned_endpoint("vpce-1")
            .profile(profile)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("Teleport layout"), "{e}");
    }
}
