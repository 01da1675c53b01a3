//! X.509 client certificates: issuance, full and fast extraction, every
//! rejection rule (the fast path and the full decoder must agree on each).

use std::net::IpAddr;

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
            assert_eq!(id.pinned_ip, Some(ip(pin)));
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
    assert_eq!((id.pinned_ip, id.login_ip, id.profile), (None, None, None));
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
