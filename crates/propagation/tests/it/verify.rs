//! The verifier's decision table through the public API: each refusal
//! with its reason, checked against a header that passes otherwise.

use std::net::SocketAddr;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca};
use ippin_propagation::{
    FrontGrant, Link, PROXY_CN_PREFIX, PROXY_ROLE, Reason, SecretKey, Signer, TrustAnchor,
    Verified, Verifier, address_block_for, ed25519_spki_der,
};

use crate::{AUD, FROM, UNTIL, fixture, verifier};

const T: u64 = FROM + 10_000;

fn inner() -> SecretKey {
    SecretKey::from_bytes([0x44; 32])
}

fn link() -> Link {
    Link {
        front: "10.0.0.5:40000".parse().unwrap(),
        inner: "10.0.0.9:4443".parse().unwrap(),
    }
}

fn client() -> SocketAddr {
    "192.0.2.7:5000".parse().unwrap()
}

fn reached() -> SocketAddr {
    "198.51.100.1:443".parse().unwrap()
}

fn grant(signer: &Signer, not_before: u64, not_after: u64) -> FrontGrant {
    let eph = SecretKey::from_bytes([0x66; 32]);
    signer
        .grant(&inner().public_key(), AUD, not_before, not_after, &eph)
        .unwrap()
}

fn check(v: &Verifier, g: &FrontGrant, ts: u64, now: u64) -> Result<Verified, Reason> {
    let value = g
        .signed_block(client(), reached(), link(), ts, [5; 16])
        .unwrap();
    v.verify_block(&address_block_for(client(), reached()), &value, link(), now)
        .map_err(|r| r.reason)
}

/// A front identity from `ca` with this CN, roles and validity.
fn front(ca: &X509Ca, cn: &str, roles: &[&str], nb: u64, na: u64) -> Signer {
    front_with(ca, cn, roles, nb, na, true)
}

/// The same, issued as a front's (`propagation_front`) or as a user's certificate.
fn front_with(ca: &X509Ca, cn: &str, roles: &[&str], nb: u64, na: u64, as_front: bool) -> Signer {
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
    let mut req = ClientCertRequest::builder(
        cn.to_owned(),
        ed25519_spki_der(key.verifying_key().as_bytes()),
    );
    if as_front {
        req = req.propagation_front();
    }
    for r in roles {
        req = req.role(*r);
    }
    let req = req.validity(nb, na).serial(9).build().unwrap();
    Signer::new(key, ca.issue_client(&req, &mut UnwrapErr(SysRng)).unwrap()).unwrap()
}

#[test]
fn the_honest_header_passes() {
    let g = grant(&fixture().1, T, T + 600);
    let ok = check(&verifier(&inner()), &g, T, T).unwrap();
    assert_eq!(ok.client(), client());
    assert_eq!(ok.destination(), reached());
}

#[test]
fn a_front_of_another_ca_is_untrusted() {
    let other = X509Ca::generate_p256("other CA", FROM, UNTIL, &mut UnwrapErr(SysRng)).unwrap();
    let s = front(
        &other,
        &format!("{PROXY_CN_PREFIX}f"),
        &[PROXY_ROLE],
        FROM,
        UNTIL,
    );
    let g = grant(&s, T, T + 600);
    assert_eq!(
        check(&verifier(&inner()), &g, T, T),
        Err(Reason::CertUntrusted)
    );
}

#[test]
fn a_certificate_without_the_proxy_role_or_cn_is_not_a_front() {
    // The fixture holds only the CA's DER, so this test makes its own CA
    // and a verifier that trusts it.
    let ca = X509Ca::generate_p256("ca", FROM, UNTIL, &mut UnwrapErr(SysRng)).unwrap();
    let v = Verifier::new(
        TrustAnchor::from_der(ca.cert_der()).unwrap(),
        inner(),
        AUD,
        30,
        64,
    );
    let no_role = front(&ca, &format!("{PROXY_CN_PREFIX}f"), &["dev"], FROM, UNTIL);
    assert_eq!(
        check(&v, &grant(&no_role, T, T + 600), T, T),
        Err(Reason::NotProxy)
    );
    let user_cn = front(&ca, "alice", &[PROXY_ROLE], FROM, UNTIL);
    assert_eq!(
        check(&v, &grant(&user_cn, T, T + 600), T, T),
        Err(Reason::NotProxy)
    );
    // A user's certificate (TLS client authentication) named and roled as a front's: a
    // login service that lets users choose `proxy:x` and gives a role `proxy`.
    let users = front_with(
        &ca,
        &format!("{PROXY_CN_PREFIX}x"),
        &[PROXY_ROLE],
        FROM,
        UNTIL,
        false,
    );
    assert_eq!(
        check(&v, &grant(&users, T, T + 600), T, T),
        Err(Reason::NotProxy)
    );
    let expired = front(
        &ca,
        &format!("{PROXY_CN_PREFIX}f"),
        &[PROXY_ROLE],
        FROM,
        T - 1,
    );
    assert_eq!(
        check(&v, &grant(&expired, T, T + 600), T, T),
        Err(Reason::CertExpired)
    );
    let good = front(
        &ca,
        &format!("{PROXY_CN_PREFIX}f"),
        &[PROXY_ROLE],
        FROM,
        UNTIL,
    );
    assert!(check(&v, &grant(&good, T, T + 600), T, T).is_ok());
}

#[test]
fn time_is_a_parameter_grant_and_timestamp_windows() {
    let s = &fixture().1;
    // The grant's validity (with the window before it).
    let g = grant(s, T, T + 600);
    assert_eq!(
        check(&verifier(&inner()), &g, T + 601, T + 601),
        Err(Reason::GrantExpired)
    );
    assert_eq!(
        check(&verifier(&inner()), &g, T - 31, T - 31),
        Err(Reason::GrantExpired)
    );
    assert!(check(&verifier(&inner()), &g, T - 30, T - 30).is_ok());
    // The timestamp, both ways.
    assert_eq!(
        check(&verifier(&inner()), &g, T + 100, T + 131),
        Err(Reason::Stale)
    );
    assert_eq!(
        check(&verifier(&inner()), &g, T + 131, T + 100),
        Err(Reason::Stale)
    );
    assert!(check(&verifier(&inner()), &g, T + 100, T + 130).is_ok());
}

#[test]
fn addresses_other_than_the_signed_ones_are_refused() {
    let g = grant(&fixture().1, T, T + 600);
    let value = g
        .signed_block(client(), reached(), link(), T, [5; 16])
        .unwrap();
    let other: SocketAddr = "192.0.2.8:5000".parse().unwrap();
    let r = verifier(&inner())
        .verify_block(&address_block_for(other, reached()), &value, link(), T)
        .unwrap_err();
    assert_eq!(r.reason, Reason::AddressMismatch);
    let r = verifier(&inner())
        .verify_block(&[0x11], &value, link(), T)
        .unwrap_err();
    assert_eq!(r.reason, Reason::AddressMismatch);
    let r = verifier(&inner())
        .verify_block(
            &address_block_for(client(), reached()),
            b"garbage",
            link(),
            T,
        )
        .unwrap_err();
    assert_eq!(r.reason, Reason::Malformed);
}

/// The TBS of `cert` with its extensions replaced by `exts` (and the version kept), as DER.
fn tbs_with_extensions(cert: &[u8], exts: Vec<x509_cert::ext::Extension>) -> Vec<u8> {
    use der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(cert).unwrap();
    let tbs = cert.tbs_certificate();
    let mut body = vec![0xa0, 0x03, 0x02, 0x01, 0x02]; // [0] EXPLICIT version v3
    body.extend(tbs.serial_number().to_der().unwrap());
    body.extend(tbs.signature().to_der().unwrap());
    body.extend(tbs.issuer().to_der().unwrap());
    body.extend(tbs.validity().to_der().unwrap());
    body.extend(tbs.subject().to_der().unwrap());
    body.extend(tbs.subject_public_key_info().to_der().unwrap());
    let list = exts.to_der().unwrap();
    body.extend(der_header(0xa3, list.len()));
    body.extend(list);
    let mut out = der_header(0x30, body.len());
    out.extend(body);
    out
}

fn der_header(tag: u8, len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![tag, len as u8],
        0x80..=0xff => vec![tag, 0x81, len as u8],
        _ => vec![tag, 0x82, (len >> 8) as u8, len as u8],
    }
}

#[test]
fn a_front_certificate_must_have_the_profile_of_one() {
    use der::Decode;
    let ca = X509Ca::generate_p256("ca", FROM, UNTIL, &mut UnwrapErr(SysRng)).unwrap();
    // A fresh verifier for each check: the same link, time and nonce would be a replay.
    let v = || {
        Verifier::new(
            TrustAnchor::from_der(ca.cert_der()).unwrap(),
            inner(),
            AUD,
            30,
            64,
        )
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
    let honest = front(
        &ca,
        &format!("{PROXY_CN_PREFIX}f"),
        &[PROXY_ROLE],
        FROM,
        UNTIL,
    );
    assert!(check(&v(), &grant(&honest, T, T + 600), T, T).is_ok());
    let der = honest.cert_der().to_vec();
    let parsed = x509_cert::Certificate::from_der(&der).unwrap();
    let exts: Vec<x509_cert::ext::Extension> = parsed
        .tbs_certificate()
        .extensions()
        .map(|e| e.to_vec())
        .unwrap_or_default();
    let resign = |exts: Vec<x509_cert::ext::Extension>| {
        let tbs = tbs_with_extensions(&der, exts);
        let cert = ca.danger_sign_tbs(&tbs, &mut UnwrapErr(SysRng)).unwrap();
        Signer::new(key.clone(), cert).unwrap()
    };
    // The same extensions, re-signed: still a front (the surgery itself is sound).
    let same = check(&v(), &grant(&resign(exts.clone()), T, T + 600), T, T);
    assert!(same.is_ok(), "{same:?}");
    // An extension this reader does not know, marked critical.
    let mut unknown = exts.clone();
    unknown.push(x509_cert::ext::Extension {
        extn_id: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
        critical: true,
        extn_value: der::asn1::OctetString::new(vec![0x05, 0x00]).unwrap(),
    });
    assert_eq!(
        check(&v(), &grant(&resign(unknown), T, T + 600), T, T),
        Err(Reason::CertInvalid)
    );
    // An extension twice.
    let mut twice = exts.clone();
    twice.push(exts[0].clone());
    assert_eq!(
        check(&v(), &grant(&resign(twice), T, T + 600), T, T),
        Err(Reason::CertInvalid)
    );
    // A CA certificate (basicConstraints cA TRUE) cannot be a front.
    let mut ca_ext: Vec<x509_cert::ext::Extension> = exts
        .iter()
        .filter(|e| e.extn_id.to_string() != "2.5.29.19")
        .cloned()
        .collect();
    ca_ext.push(x509_cert::ext::Extension {
        extn_id: der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19"),
        critical: true,
        // SEQUENCE { BOOLEAN TRUE }
        extn_value: der::asn1::OctetString::new(vec![0x30, 0x03, 0x01, 0x01, 0xff]).unwrap(),
    });
    assert_eq!(
        check(&v(), &grant(&resign(ca_ext), T, T + 600), T, T),
        Err(Reason::CertInvalid)
    );
}
