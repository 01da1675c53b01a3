//! SSH certificates: issuance, validation and every rejection rule.

use std::net::IpAddr;

use ippin_cert::Error;
use ippin_cert::ssh::{
    Permissions, SourceAddress, SshCa, SshCertRequest, SshValidation, parse_certificate,
    validate_user_cert,
};
use ippin_cert::ssh_key::certificate::{Builder, CertType};
use ippin_cert::ssh_key::{Algorithm, Certificate, PrivateKey};

use crate::support::{NOW, rng};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn user_key() -> PrivateKey {
    PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap()
}

/// A CA whose private key the test can also use with ssh-key's builder, to
/// make certificates ippin would never issue.
fn ca_and_key() -> (SshCa, PrivateKey) {
    let key = user_key();
    let ca = SshCa::from_openssh(&key.to_openssh(Default::default()).unwrap()).unwrap();
    (ca, key)
}

fn request(pin: Option<&str>) -> SshCertRequest {
    let mut b = SshCertRequest::builder(user_key().public_key().key_data().clone())
        .key_id("alice@ippin")
        .serial(42)
        .principal("alice")
        .principal("ops")
        .validity(NOW - 60, NOW + 3600)
        .login_ip(ip("192.0.2.10"));
    if let Some(p) = pin {
        b = b.pinned_ip(ip(p));
    }
    b.build().unwrap()
}

fn validate(
    cert: &Certificate,
    ca: &SshCa,
    principal: &str,
    now: u64,
) -> Result<ippin_cert::ssh::ValidatedSshCert, Error> {
    let trusted = [ca.fingerprint()];
    validate_user_cert(
        cert,
        &SshValidation {
            trusted_cas: &trusted,
            principal,
            now,
        },
    )
}

/// A certificate signed by `key` with arbitrary options, for the rejection
/// rules.
fn raw_cert(key: &PrivateKey, f: impl FnOnce(&mut Builder)) -> Certificate {
    let mut b = Builder::new(
        vec![7u8; 32],
        user_key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 3600,
    )
    .unwrap();
    b.cert_type(CertType::User).unwrap();
    b.key_id("raw").unwrap();
    b.valid_principal("alice").unwrap();
    f(&mut b);
    b.sign(key).unwrap()
}

#[test]
fn issue_and_validate_ed25519_and_p256() {
    for ca in [
        SshCa::generate_ed25519(&mut rng()).unwrap(),
        SshCa::generate_p256(&mut rng()).unwrap(),
    ] {
        let cert = ca.issue(&request(Some("192.0.2.10")), &mut rng()).unwrap();
        assert_eq!(
            cert.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("192.0.2.10/32")
        );
        assert_eq!(
            cert.extensions().get("login-ip").map(String::as_str),
            Some("192.0.2.10")
        );
        let ok = validate(&cert, &ca, "alice", NOW).unwrap();
        assert_eq!(ok.key_id, "alice@ippin");
        assert_eq!(ok.serial, 42);
        assert_eq!(ok.principals, ["alice", "ops"]);
        assert_eq!(ok.pinned_ip(), Some(ip("192.0.2.10")));
        assert_eq!(ok.login_ip, Some(ip("192.0.2.10")));
        assert_eq!(ok.permissions, Permissions::default());
        assert_eq!(ok.ca_fingerprint, ca.fingerprint());
        ok.check_source(ip("192.0.2.10")).unwrap();
        ok.check_source(ip("::ffff:192.0.2.10")).unwrap();
        let err = ok.check_source(ip("192.0.2.11")).unwrap_err();
        assert_eq!(err.code(), "source_address_mismatch");
        assert_eq!(
            err.to_string(),
            "client address 192.0.2.11 is not allowed by source-address `192.0.2.10/32`"
        );
    }
}

#[test]
fn ipv6_pin_is_slash_128_and_mapped_pins_become_ipv4() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = ca.issue(&request(Some("2001:DB8::7")), &mut rng()).unwrap();
    assert_eq!(
        cert.critical_options().get("source-address").unwrap(),
        "2001:db8::7/128"
    );
    let cert = ca
        .issue(&request(Some("::ffff:198.51.100.4")), &mut rng())
        .unwrap();
    assert_eq!(
        cert.critical_options().get("source-address").unwrap(),
        "198.51.100.4/32"
    );
}

#[test]
fn unpinned_certificate_allows_every_source() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = ca.issue(&request(None), &mut rng()).unwrap();
    assert!(cert.critical_options().is_empty());
    let ok = validate(&cert, &ca, "ops", NOW).unwrap();
    assert_eq!(ok.source_address, None);
    ok.check_source(ip("203.0.113.1")).unwrap();
}

#[test]
fn ca_key_round_trips_through_openssh_format() {
    let ca = SshCa::generate_p256(&mut rng()).unwrap();
    let again = SshCa::from_openssh(&ca.to_openssh().unwrap()).unwrap();
    assert_eq!(again.fingerprint(), ca.fingerprint());
    let cert = again.issue(&request(Some("10.0.0.1")), &mut rng()).unwrap();
    validate(&cert, &ca, "alice", NOW).unwrap();
    // and the OpenSSH text form of the certificate parses back
    let text = cert.to_openssh().unwrap();
    assert_eq!(parse_certificate(&text).unwrap(), cert);
}

#[test]
fn builder_refuses_bad_requests() {
    let key = user_key().public_key().key_data().clone();
    let base = || {
        SshCertRequest::builder(key.clone())
            .key_id("k")
            .principal("alice")
            .validity(1, 2)
    };
    base().build().unwrap();
    let field = |r: Result<SshCertRequest, Error>| match r.unwrap_err() {
        Error::Request { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(
            SshCertRequest::builder(key.clone())
                .key_id("k")
                .validity(1, 2)
                .build()
        ),
        "principals"
    );
    assert_eq!(field(base().principal("").build()), "principals");
    assert_eq!(field(base().principal("alice").build()), "principals");
    assert_eq!(field(base().principal("a,b").build()), "principals");
    assert_eq!(field(base().principal("a b").build()), "principals");
    assert_eq!(field(base().validity(2, 2).build()), "validity");
    assert_eq!(field(base().validity(3, 2).build()), "validity");
    assert_eq!(field(base().key_id("").build()), "key_id");
    assert_eq!(field(base().key_id("a\nb").build()), "key_id");
    assert_eq!(field(base().key_id("x".repeat(257)).build()), "key_id");
    assert_eq!(field(base().force_command("").build()), "force_command");
}

#[test]
fn rejects_host_certificates() {
    let (ca, key) = ca_and_key();
    let mut b = Builder::new(
        vec![1u8; 32],
        user_key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 60,
    )
    .unwrap();
    b.cert_type(CertType::Host).unwrap();
    b.valid_principal("alice").unwrap();
    let cert = b.sign(&key).unwrap();
    assert_eq!(
        validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_not_user_cert"
    );
}

#[test]
fn rejects_untrusted_ca() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let other = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = other.issue(&request(None), &mut rng()).unwrap();
    assert_eq!(
        validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_untrusted_ca"
    );
}

#[test]
fn rejects_outside_validity_window() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = ca.issue(&request(None), &mut rng()).unwrap();
    assert!(
        validate(&cert, &ca, "alice", NOW - 60).is_ok(),
        "valid_after is inclusive"
    );
    assert_eq!(
        validate(&cert, &ca, "alice", NOW - 61).unwrap_err().code(),
        "ssh_validity"
    );
    assert!(validate(&cert, &ca, "alice", NOW + 3599).is_ok());
    assert_eq!(
        validate(&cert, &ca, "alice", NOW + 3600)
            .unwrap_err()
            .code(),
        "ssh_validity",
        "valid_before is exclusive"
    );
}

#[test]
fn rejects_bad_signature() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = ca.issue(&request(Some("10.0.0.1")), &mut rng()).unwrap();
    // Re-sign nothing: change the serial inside the signed bytes.
    let mut bytes = cert.to_bytes().unwrap();
    let serial_at = bytes
        .windows(8)
        .position(|w| w == 42u64.to_be_bytes())
        .unwrap();
    bytes[serial_at + 7] = 43;
    let forged = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(forged.serial(), 43);
    assert_eq!(
        validate(&forged, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_signature"
    );
}

#[test]
fn rejects_missing_principal() {
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let cert = ca.issue(&request(None), &mut rng()).unwrap();
    let err = validate(&cert, &ca, "root", NOW).unwrap_err();
    assert_eq!(err.code(), "ssh_principal");
    assert_eq!(
        err.to_string(),
        "principal `root` is not among the certificate's principals [alice,ops]"
    );
}

#[test]
fn rejects_certificate_without_principals() {
    let (ca, key) = ca_and_key();
    let mut b = Builder::new(
        vec![1u8; 32],
        user_key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 60,
    )
    .unwrap();
    b.cert_type(CertType::User).unwrap();
    b.all_principals_valid().unwrap();
    let cert = b.sign(&key).unwrap();
    assert_eq!(
        validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_principal"
    );
}

#[test]
fn rejects_unknown_critical_options() {
    let (ca, key) = ca_and_key();
    let cert = raw_cert(&key, |b| {
        b.critical_option("no-such-option", "x").unwrap();
    });
    let err = validate(&cert, &ca, "alice", NOW).unwrap_err();
    assert_eq!(err.code(), "ssh_unknown_critical_option");
    assert_eq!(
        err.to_string(),
        "unrecognised critical option `no-such-option`"
    );
    // a permit-* name is an extension, not a critical option
    let cert = raw_cert(&key, |b| {
        b.critical_option("permit-pty", "").unwrap();
    });
    assert_eq!(
        validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_unknown_critical_option"
    );
}

#[test]
fn rejects_malformed_source_address_in_certificate() {
    let (ca, key) = ca_and_key();
    for bad in [
        "",
        "10.0.0.1/33",
        "10.0.0.1,",
        "10.0.0.1, 10.0.0.2",
        "10.0.0.1/24",
        "010.0.0.1",
        "fe80::1%1",
        "10.*",
        "!10.0.0.1",
        "::ffff:10.0.0.1/128",
    ] {
        let cert = raw_cert(&key, |b| {
            b.critical_option("source-address", bad).unwrap();
        });
        let err = validate(&cert, &ca, "alice", NOW).unwrap_err();
        assert_eq!(err.code(), "source_address_malformed", "{bad}: {err}");
    }
    // a well-formed list with a match later in the list is fine
    let cert = raw_cert(&key, |b| {
        b.critical_option("source-address", "10.0.0.0/8,192.0.2.0/24")
            .unwrap();
    });
    let ok = validate(&cert, &ca, "alice", NOW).unwrap();
    ok.check_source(ip("192.0.2.99")).unwrap();
    assert_eq!(ok.pinned_ip(), None);
}

#[test]
fn recognised_critical_options_are_reported() {
    let (ca, key) = ca_and_key();
    let cert = raw_cert(&key, |b| {
        b.critical_option("force-command", "/usr/bin/true").unwrap();
        b.critical_option("verify-required", "").unwrap();
        b.critical_option("source-address", "2001:db8::/32")
            .unwrap();
        b.extension("permit-pty", "").unwrap();
        b.extension("unknown@example.com", "ignored").unwrap();
    });
    let ok = validate(&cert, &ca, "alice", NOW).unwrap();
    assert_eq!(ok.force_command.as_deref(), Some("/usr/bin/true"));
    assert!(ok.verify_required);
    assert_eq!(
        ok.source_address,
        Some(SourceAddress::parse("2001:db8::/32").unwrap())
    );
    assert_eq!(
        ok.permissions,
        Permissions {
            pty: true,
            ..Permissions::none()
        }
    );
    assert_eq!(ok.login_ip, None);
}

#[test]
fn rejects_malformed_recognised_options() {
    let (ca, key) = ca_and_key();
    let cases: [(&str, &str, bool); 5] = [
        ("verify-required", "yes", true),
        ("force-command", "", true),
        ("permit-pty", "data", false),
        ("login-ip", "::ffff:10.0.0.1", false),
        ("login-ip", "10.0.0.1 ", false),
    ];
    for (name, data, critical) in cases {
        let cert = raw_cert(&key, |b| {
            if critical {
                b.critical_option(name, data).unwrap();
            } else {
                b.extension(name, data).unwrap();
            }
        });
        let err = validate(&cert, &ca, "alice", NOW).unwrap_err();
        assert_eq!(err.code(), "ssh_option_malformed", "{name}={data}: {err}");
    }
}
