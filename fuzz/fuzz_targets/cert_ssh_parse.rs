#![no_main]
//! SSH certificate parsing (binary and OpenSSH text) and validation: no
//! panic; what the strict text parser accepts is the canonical encoding
//! (decoding the binary form of its body gives the same certificate and
//! re-encodes to the same bytes); what validates has a well-formed pin. A key read from the
//! input is a certificate's subject only when it is a plain key of a kind the CA signs
//! (`check_subject_key`): never a certificate; `parse_public_key` never returns one.

use ippin_cert::ssh::{
    SshValidation, check_subject_key, parse_certificate, parse_public_key, validate_user_cert,
};
use ippin_cert::ssh_key::public::KeyData;
use ippin_cert::ssh_key::{Certificate, HashAlg, PublicKey};
use libfuzzer_sys::fuzz_target;

fn check(cert: &Certificate) {
    let bytes = cert.to_bytes().expect("re-encode");
    // the comment is not part of the binary form
    let again = Certificate::from_bytes(&bytes).expect("re-parse");
    assert_eq!(again.to_bytes().expect("re-encode"), bytes);
    let trusted = [cert.signature_key().fingerprint(HashAlg::Sha256)];
    let principal = cert
        .valid_principals()
        .first()
        .map(String::as_str)
        .unwrap_or("root");
    let v = SshValidation::new(&trusted, principal, cert.valid_after());
    if let Ok(ok) = validate_user_cert(cert, &v) {
        assert!(!ok.principals.is_empty());
        if let Some(list) = &ok.source_address {
            assert!(!list.nets().is_empty());
            for net in list.nets() {
                assert!(net.prefix_len() > 0, "a /0 entry validated");
                let through = ok.pinned_endpoint.as_deref();
                assert!(ok.check_source_at(net.addr(), through).is_ok());
                // Bound to an endpoint: refused without it.
                if through.is_some() {
                    assert!(ok.check_source(net.addr()).is_err());
                }
            }
        }
        match (ok.pinned_ip(), &ok.source_address) {
            // A pin bound to an endpoint is never read as the pin alone.
            (Err(e), Some(_)) if ok.pinned_endpoint.is_some() => {
                assert_eq!(e.code(), "pin_bound_to_endpoint");
            }
            (Ok(Some(ip)), Some(list)) => {
                assert!(ok.check_source(ip).is_ok());
                assert_eq!(ip, ip.to_canonical());
                assert_eq!(list.single_host(), Some(ip));
            }
            (Ok(None), None) => {}
            (Err(e), Some(list)) => {
                assert_eq!(e.code(), "pin_is_network");
                assert!(list.single_host().is_none());
            }
            other => panic!("pinned_ip and source_address disagree: {other:?}"),
        }
    }
}

fn subject(key: &KeyData) {
    let plain = matches!(
        key,
        KeyData::Ed25519(_)
            | KeyData::Ecdsa(_)
            | KeyData::SkEd25519(_)
            | KeyData::SkEcdsaSha2NistP256(_)
            | KeyData::Rsa(_)
    );
    if check_subject_key(key).is_ok() {
        assert!(plain, "a subject key that is not a plain key: {}", key.algorithm());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Certificate::from_bytes(data) {
        check(&cert);
        // The certificate itself, as a key: never a subject.
        assert!(check_subject_key(&KeyData::Certificate(Box::new(cert))).is_err());
    }
    if let Ok(key) = PublicKey::from_bytes(data) {
        subject(key.key_data());
    }
    if let Some(key) = std::str::from_utf8(data)
        .ok()
        .and_then(|t| PublicKey::from_openssh(t).ok())
    {
        subject(key.key_data());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The bounded key reader: never a certificate.
        if let Ok(key) = parse_public_key(text) {
            assert!(!matches!(key.key_data(), KeyData::Certificate(_)));
            subject(key.key_data());
        }
        if let Ok(cert) = parse_certificate(text) {
            check(&cert);
            // strict: the text's base64 body is exactly the re-encoding
            let again = cert.to_openssh().expect("re-encode text");
            assert_eq!(
                text.split_ascii_whitespace().nth(1),
                again.split_ascii_whitespace().nth(1)
            );
            assert!(!text.trim_end().contains('\n'));
        }
    }
});
