#![no_main]
//! SSH certificate parsing (binary and OpenSSH text) and validation: no
//! panic; what parses re-encodes to a certificate that parses the same.

use ippin_cert::ssh::{SshValidation, parse_certificate, validate_user_cert};
use ippin_cert::ssh_key::{Certificate, HashAlg};
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
    let v = SshValidation {
        trusted_cas: &trusted,
        principal,
        now: cert.valid_after(),
    };
    if let Ok(ok) = validate_user_cert(cert, &v) {
        if let Some(list) = &ok.source_address {
            for net in list.nets() {
                assert!(ok.check_source(net.addr()).is_ok());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Certificate::from_bytes(data) {
        check(&cert);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cert) = parse_certificate(text) {
            check(&cert);
        }
    }
});
