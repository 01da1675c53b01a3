//! SSH certificates: issuance, validation and every rejection rule.

use std::net::IpAddr;

use ippin_cert::Error;
use ippin_cert::ssh::{
    Permissions, SourceAddress, SshCa, SshCertRequest, SshValidation, parse_certificate,
    validate_user_cert,
};
use ippin_cert::ssh_key::certificate::{Builder, CertType};
use ippin_cert::ssh_key::public::KeyData;
use ippin_cert::ssh_key::{Algorithm, Certificate, PrivateKey, PublicKey};

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
    validate_user_cert(cert, &SshValidation::new(&trusted, principal, now))
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
        assert_eq!(ok.pinned_ip().unwrap(), Some(ip("192.0.2.10")));
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
    // ASCII white space ends the line as OpenSSH reads it; any other (U+00A0, found by the
    // fuzz target `cert_ssh_parse`) is part of the base64 field, which OpenSSH refuses.
    assert_eq!(parse_certificate(&format!("{text} \t\n")).unwrap(), cert);
    for tail in ["\u{a0}\u{a0}", "\u{2003}", "\u{3000}"] {
        assert!(
            parse_certificate(&format!("{text}{tail}")).is_err(),
            "{tail:?} after the body"
        );
    }
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

/// A host certificate naming `alice`, signed by `key`.
fn host_cert(key: &PrivateKey) -> Certificate {
    let mut b = Builder::new(
        vec![1u8; 32],
        user_key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 60,
    )
    .unwrap();
    b.cert_type(CertType::Host).unwrap();
    b.valid_principal("alice").unwrap();
    b.sign(key).unwrap()
}

#[test]
fn rejects_host_certificates() {
    let (ca, key) = ca_and_key();
    let cert = host_cert(&key);
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

/// A forged certificate is refused as forged, whatever its (unsigned) fields claim: the
/// signature is checked before the type, the window and the principal are believed.
#[test]
fn signature_is_checked_before_the_fields_it_covers() {
    let (ca, key) = ca_and_key();
    // Signed as a host certificate, then flipped to a user certificate: the type byte is
    // under the signature.
    let host = host_cert(&key);
    let mut bytes = host.to_bytes().unwrap();
    let host_type = 2u32.to_be_bytes();
    let at = bytes
        .windows(4)
        .rposition(|w| w == host_type)
        .expect("type field");
    bytes[at + 3] = 1;
    let flipped = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(flipped.cert_type(), CertType::User);
    assert_eq!(
        validate(&flipped, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_signature"
    );
    // Signed valid, then altered: refused as forged even at a time outside the window and
    // for a principal it does not name.
    let cert = raw_cert(&key, |_| {});
    let mut bytes = cert.to_bytes().unwrap();
    let key_id = bytes.windows(3).position(|w| w == b"raw").expect("key id");
    bytes[key_id + 2] = b'x';
    let forged = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(forged.key_id(), "rax");
    for (principal, now) in [("alice", NOW), ("alice", NOW + 10 * 3600), ("mallory", NOW)] {
        assert_eq!(
            validate(&forged, &ca, principal, now).unwrap_err().code(),
            "ssh_signature",
            "{principal} at {now}"
        );
    }
    // The genuine one, for contrast, is refused for what is really wrong with it.
    assert_eq!(
        validate(&cert, &ca, "alice", NOW + 10 * 3600)
            .unwrap_err()
            .code(),
        "ssh_validity"
    );
    assert_eq!(
        validate(&cert, &ca, "mallory", NOW).unwrap_err().code(),
        "ssh_principal"
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
    assert_eq!(ok.pinned_ip().unwrap_err().code(), "pin_is_network");
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
    let cases: [(&str, &str, bool); 7] = [
        ("verify-required", "yes", true),
        ("force-command", "", true),
        ("force-command", "/bin/true\0; rm -rf /", true),
        ("unknown@example.com\0", "", false),
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

// --- hardening: certificates a correct CA never issues, signed over their exact bytes ---

use crate::sshwire::{
    self, CRITICAL, EXTENSIONS, KEY_ID, PRINCIPALS, SIGNATURE, SIGNATURE_KEY, Wire,
};

/// A well-formed Ed25519 user certificate from `key`, as wire fields.
fn wire(key: &PrivateKey) -> Wire {
    Wire::of(&raw_cert(key, |b| {
        b.critical_option("source-address", "10.0.0.1/32").unwrap();
        b.extension("permit-pty", "").unwrap();
    }))
}

/// Both readers on crafted bytes: the strict text parser, and the lenient
/// binary decoder followed by validation (what the server does with the
/// certificate russh hands it).
fn strict_and_lenient(
    ca: &SshCa,
    w: &Wire,
) -> (Result<Certificate, Error>, Result<(), &'static str>) {
    let strict = parse_certificate(&w.line());
    let lenient = match Certificate::from_bytes(&w.bytes()) {
        Ok(cert) => validate(&cert, ca, "alice", NOW)
            .map(|_| ())
            .map_err(|e| e.code()),
        Err(_) => Err("decode"),
    };
    (strict, lenient)
}

#[test]
fn the_wire_editor_reproduces_a_valid_certificate() {
    let (ca, key) = ca_and_key();
    let w = wire(&key).sign(&key);
    let cert = parse_certificate(&w.line()).unwrap();
    let ok = validate(&cert, &ca, "alice", NOW).unwrap();
    assert_eq!(ok.pinned_ip().unwrap(), Some(ip("10.0.0.1")));
}

#[test]
fn duplicate_or_unsorted_options_do_not_parse() {
    let (ca, key) = ca_and_key();
    let s = |t: &str| sshwire::string(t.as_bytes());
    let critical_cases = [
        // the same option twice (sshd: "multiple source-address"), same or other value
        vec![
            ("source-address", s("10.0.0.1/32")),
            ("source-address", s("10.0.0.1/32")),
        ],
        vec![
            ("source-address", s("10.0.0.1/32")),
            ("source-address", s("10.0.0.2/32")),
        ],
        // not lexically ordered (PROTOCOL.certkeys)
        vec![
            ("source-address", s("10.0.0.1/32")),
            ("force-command", s("/bin/true")),
        ],
    ];
    for entries in critical_cases {
        let mut w = wire(&key);
        w.fields[CRITICAL] = sshwire::options(&entries);
        let w = w.sign(&key);
        let (strict, lenient) = strict_and_lenient(&ca, &w);
        assert_eq!(strict.unwrap_err().code(), "ssh_encoding", "{entries:?}");
        assert_eq!(lenient, Err("decode"), "{entries:?}");
    }
    let mut w = wire(&key);
    w.fields[EXTENSIONS] =
        sshwire::options(&[("login-ip", s("10.0.0.1")), ("login-ip", s("10.0.0.2"))]);
    let (strict, lenient) = strict_and_lenient(&ca, &w.sign(&key));
    assert_eq!(strict.unwrap_err().code(), "ssh_encoding");
    assert_eq!(lenient, Err("decode"));
}

#[test]
fn data_after_an_options_inner_string_is_refused() {
    let (ca, key) = ca_and_key();
    let s = |t: &str| sshwire::string(t.as_bytes());
    let cases = [
        // source-address: the inner string, then junk (sshd: "corrupt (extra data)")
        (
            CRITICAL,
            vec![(
                "source-address",
                [s("10.0.0.1/32"), b"10.0.0.2".to_vec()].concat(),
            )],
        ),
        (
            CRITICAL,
            vec![(
                "source-address",
                [s("10.0.0.1/32"), s("10.0.0.2/32")].concat(),
            )],
        ),
        // a flag whose data is an empty inner string instead of nothing
        (CRITICAL, vec![("verify-required", s(""))]),
        (EXTENSIONS, vec![("permit-pty", s(""))]),
        // login-ip with data after its inner string
        (
            EXTENSIONS,
            vec![("login-ip", [s("10.0.0.1"), vec![0]].concat())],
        ),
        // an outer length that does not hold a whole inner string
        (
            CRITICAL,
            vec![("source-address", b"\0\0\0\x0f10.0.0.1".to_vec())],
        ),
    ];
    for (field, entries) in cases {
        let mut w = wire(&key);
        w.fields[field] = sshwire::options(&entries);
        let w = w.sign(&key);
        let (strict, lenient) = strict_and_lenient(&ca, &w);
        let code = strict.unwrap_err().code();
        assert!(
            code == "ssh_encoding",
            "{entries:?}: strict parser said {code}"
        );
        assert!(
            matches!(lenient, Err("ssh_signature" | "decode")),
            "{entries:?}: lenient path said {lenient:?}"
        );
    }
}

#[test]
fn parse_certificate_takes_one_line() {
    let (_, key) = ca_and_key();
    let line = wire(&key).sign(&key).line();
    parse_certificate(&format!("{line}\n")).unwrap();
    parse_certificate(&format!("{line}\r\n")).unwrap();
    let two = format!("{line}\n{line}\n");
    assert_eq!(parse_certificate(&two).unwrap_err().code(), "ssh_encoding");
    // the algorithm name must match the blob
    let wrong = line.replacen("ssh-ed25519-cert", "ecdsa-sha2-nistp256-cert", 1);
    assert!(parse_certificate(&wrong).is_err());
    // a plain public key is not a certificate
    let plain = key.public_key().to_openssh().unwrap();
    assert!(parse_certificate(&plain).is_err());
}

#[test]
fn validity_window_edges() {
    let (ca, key) = ca_and_key();
    let window = |after: u64, before: u64| {
        let mut w = wire(&key);
        w.fields[7] = after.to_be_bytes().to_vec();
        w.fields[8] = before.to_be_bytes().to_vec();
        parse_certificate(&w.sign(&key).line()).unwrap()
    };
    // valid_before = forever (ssh-keygen's "forever")
    let forever = window(0, u64::MAX);
    for now in [0, NOW, u64::MAX - 1] {
        assert!(validate(&forever, &ca, "alice", now).is_ok(), "{now}");
    }
    assert_eq!(
        validate(&forever, &ca, "alice", u64::MAX)
            .unwrap_err()
            .code(),
        "ssh_validity"
    );
    // an inverted or empty window is valid at no time
    for (after, before) in [(NOW + 10, NOW - 10), (NOW, NOW), (u64::MAX, 0)] {
        let cert = window(after, before);
        for now in [0, NOW - 10, NOW, NOW + 10, u64::MAX] {
            assert_eq!(
                validate(&cert, &ca, "alice", now).unwrap_err().code(),
                "ssh_validity",
                "[{after}, {before}) at {now}"
            );
        }
    }
}

#[test]
fn principals_compare_exactly_and_an_empty_list_matches_nobody() {
    let (ca, key) = ca_and_key();
    let with = |principals: &[&str]| {
        let mut w = wire(&key);
        w.fields[PRINCIPALS] = principals
            .iter()
            .flat_map(|p| sshwire::string(p.as_bytes()))
            .collect();
        parse_certificate(&w.sign(&key).line()).unwrap()
    };
    let cert = with(&["alice"]);
    validate(&cert, &ca, "alice", NOW).unwrap();
    for other in [
        "Alice",
        "alice ",
        " alice",
        "alice\0",
        "alic",
        "alice,bob",
        "*",
        "",
    ] {
        assert_eq!(
            validate(&cert, &ca, other, NOW).unwrap_err().code(),
            "ssh_principal",
            "{other:?}"
        );
    }
    // no principals: OpenSSH would accept it for every user; ippin for none
    let none = with(&[]);
    for user in ["alice", "root", ""] {
        assert_eq!(
            validate(&none, &ca, user, NOW).unwrap_err().code(),
            "ssh_principal"
        );
    }
    // an empty principal in the list does not match an empty user name
    let empty = with(&[""]);
    assert_eq!(
        validate(&empty, &ca, "", NOW).unwrap_err().code(),
        "ssh_principal"
    );
    // a wildcard principal is a literal name, not a pattern
    let star = with(&["*"]);
    assert_eq!(
        validate(&star, &ca, "alice", NOW).unwrap_err().code(),
        "ssh_principal"
    );
}

#[test]
fn certificate_as_ca_key_is_refused() {
    let (ca, key) = ca_and_key();
    // the CA key field holds a whole certificate (whose nonce is 32 bytes,
    // the size of an Ed25519 key)
    let inner = raw_cert(&key, |_| {});
    let mut w = wire(&key).sign(&key);
    w.fields[SIGNATURE_KEY] = inner.to_bytes().unwrap();
    // it decodes (ssh-key has a certificate variant for keys; one level of nesting is left
    // to the decoder) and is refused by validation, even when the operator trusts its
    // fingerprint
    let cert = parse_certificate(&w.line()).unwrap();
    let trusted = [
        cert.signature_key().fingerprint(Default::default()),
        ca.fingerprint(),
    ];
    let err = validate_user_cert(&cert, &SshValidation::new(&trusted, "alice", NOW)).unwrap_err();
    assert_eq!(err.code(), "ssh_ca_algorithm", "{err}");
    assert_eq!(
        err.to_string(),
        "CA key `certificate` with signature `ssh-ed25519`: the CA key is itself a certificate \
         (OpenSSH refuses nested certificates)"
    );
}

#[test]
fn signature_of_another_algorithm_than_the_ca_key_is_refused() {
    let (ca, key) = ca_and_key();
    let p256 = PrivateKey::random(
        &mut rng(),
        Algorithm::Ecdsa {
            curve: ippin_cert::ssh_key::EcdsaCurve::NistP256,
        },
    )
    .unwrap();
    let mut w = wire(&key).sign(&key);
    let other = wire(&key).sign(&p256);
    w.fields[SIGNATURE] = other.fields[SIGNATURE].clone();
    let cert = Certificate::from_bytes(&w.bytes()).unwrap();
    let err = validate(&cert, &ca, "alice", NOW).unwrap_err();
    assert_eq!(err.code(), "ssh_ca_algorithm", "{err}");
    // and a P-256 CA's own certificates validate
    let w = wire(&key).sign(&p256);
    let p256_ca = SshCa::from_openssh(&p256.to_openssh(Default::default()).unwrap()).unwrap();
    let cert = parse_certificate(&w.line()).unwrap();
    validate(&cert, &p256_ca, "alice", NOW).unwrap();
}

#[test]
fn key_id_is_reported_verbatim() {
    let (ca, key) = ca_and_key();
    let mut w = wire(&key);
    w.fields[KEY_ID] = b"alice@ippin serial 1".to_vec();
    let cert = parse_certificate(&w.sign(&key).line()).unwrap();
    assert_eq!(
        validate(&cert, &ca, "alice", NOW).unwrap().key_id,
        "alice@ippin serial 1"
    );
}

#[test]
fn malformed_login_ip_and_zero_prefix_source_address() {
    let (ca, key) = ca_and_key();
    for bad in [
        "",
        "10.0.0.1/32",
        "[::1]",
        "::FFFF:1.2.3.4",
        "1.2.3.4,5.6.7.8",
        "127.1",
        "fe80::1%lo",
    ] {
        let cert = raw_cert(&key, |b| {
            b.extension("login-ip", bad).unwrap();
        });
        assert_eq!(
            validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
            "ssh_option_malformed",
            "{bad:?}"
        );
    }
    for bad in [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.1/32,::/0",
        "127.1",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "1.2.3.4/32/32",
        "*",
        "10.0.0.1 ",
        " 10.0.0.1",
    ] {
        let cert = raw_cert(&key, |b| {
            b.critical_option("source-address", bad).unwrap();
        });
        assert_eq!(
            validate(&cert, &ca, "alice", NOW).unwrap_err().code(),
            "source_address_malformed",
            "{bad:?}"
        );
    }
    // upper-case IPv6 hex is accepted and canonicalised
    let cert = raw_cert(&key, |b| {
        b.critical_option("source-address", "2001:DB8::A/128")
            .unwrap();
    });
    let ok = validate(&cert, &ca, "alice", NOW).unwrap();
    assert_eq!(ok.pinned_ip().unwrap(), Some(ip("2001:db8::a")));
    ok.check_source(ip("2001:db8::a")).unwrap();
    assert!(ok.check_source(ip("2001:db8::b")).is_err());
}

#[test]
fn read_options_applies_the_validation_rules_without_a_ca() {
    let (_, key) = ca_and_key();
    let other = user_key(); // not a CA anyone trusts: read_options does not care
    for signer in [&key, &other] {
        let cert = raw_cert(signer, |b| {
            b.critical_option("source-address", "2001:DB8::7").unwrap();
            b.critical_option("verify-required", "").unwrap();
            b.extension("login-ip", "192.0.2.1").unwrap();
            b.extension("permit-pty", "").unwrap();
        });
        let o = ippin_cert::ssh::read_options(&cert).unwrap();
        assert_eq!(o.source_address.unwrap().to_string(), "2001:db8::7/128");
        assert_eq!(o.login_ip, Some(ip("192.0.2.1")));
        assert!(o.verify_required);
        assert!(o.permissions.pty && !o.permissions.x11_forwarding);
    }
    for (critical, name, data, code) in [
        (true, "no-such-option", "", "ssh_unknown_critical_option"),
        (
            true,
            "source-address",
            "0.0.0.0/0",
            "source_address_malformed",
        ),
        (true, "verify-required", "x", "ssh_option_malformed"),
        (false, "login-ip", "01.2.3.4", "ssh_option_malformed"),
    ] {
        let cert = raw_cert(&key, |b| {
            if critical {
                b.critical_option(name, data).unwrap();
            } else {
                b.extension(name, data).unwrap();
            }
        });
        assert_eq!(
            ippin_cert::ssh::read_options(&cert).unwrap_err().code(),
            code,
            "{name}={data}"
        );
    }
}

#[test]
fn hostile_text_is_escaped_and_bounded_in_errors() {
    let (ca, key) = ca_and_key();
    let long = format!("evil\nFAKE LOG LINE{}", "x".repeat(500));
    let cert = raw_cert(&key, |b| {
        b.critical_option(long.as_str(), "").unwrap();
    });
    let msg = validate(&cert, &ca, "alice", NOW).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("evil\\nFAKE LOG LINE"), "{msg}");
    assert!(msg.len() < 200, "{msg}");
    let err = SourceAddress::parse("10.0.0.1,\u{1b}[31m")
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\u{1b}'), "{err}");
    let err = ippin_cert::parse_canonical_ip("login-ip", "1.2.3.4\r\nx")
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\r') && !err.contains('\n'), "{err}");
}

/// A certificate is never a subject key. Its whole encoding would be signed where the key
/// belongs, and a parser of the new certificate reads those bytes as fields: a requester
/// who labels a certificate blob with its key's algorithm (`ssh-ed25519 <cert blob>`, which
/// reads as a public key) would get principals, validity and options of their own choosing
/// under the CA's signature.
#[test]
fn a_certificate_is_never_the_subject_key() {
    let (ca, _) = ca_and_key();
    let first = ca.issue(&request(Some("192.0.2.10")), &mut rng()).unwrap();
    let text = first.to_openssh().unwrap();
    let blob = text.split_whitespace().nth(1).unwrap();
    let relabelled = PublicKey::from_openssh(&format!("ssh-ed25519 {blob}"))
        .expect("ssh-key reads a certificate blob under its key's algorithm");
    assert!(matches!(relabelled.key_data(), KeyData::Certificate(_)));
    for key in [
        relabelled.key_data().clone(),
        KeyData::Certificate(Box::new(first.clone())),
    ] {
        let refused = SshCertRequest::builder(key)
            .key_id("k")
            .principal("alice")
            .validity(1, 2)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                &refused,
                Error::Request {
                    field: "public_key",
                    ..
                }
            ),
            "{refused:?}"
        );
    }
}

/// A certificate whose CA key is a certificate whose CA key is … `depth` deep (each layer the
/// least `ssh-key` decodes: an opaque key of an unknown certificate type), as one OpenSSH line.
fn nested_certificate_line(depth: usize) -> String {
    use ippin_cert::ssh_key::encoding::base64::{Base64, Encoding};
    fn s(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend(u32::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend(bytes);
    }
    let mut inner = Vec::new();
    s(&mut inner, b"a@b");
    s(&mut inner, b"");
    for _ in 0..depth {
        let mut v = Vec::new();
        s(&mut v, b"a-cert-v01@x");
        s(&mut v, b""); // nonce
        s(&mut v, b""); // opaque public key
        v.extend(0u64.to_be_bytes()); // serial
        v.extend(1u32.to_be_bytes()); // user certificate
        s(&mut v, b""); // key id
        s(&mut v, b""); // principals
        v.extend(0u64.to_be_bytes());
        v.extend(u64::MAX.to_be_bytes());
        s(&mut v, b""); // critical options
        s(&mut v, b""); // extensions
        s(&mut v, b""); // reserved
        s(&mut v, &inner); // signature (CA) key
        let mut sig = Vec::new();
        s(&mut sig, b"a@b");
        s(&mut sig, b"x");
        s(&mut v, &sig);
        inner = v;
    }
    format!("a-cert-v01@x {}", Base64::encode_string(&inner))
}

/// A certificate nested as its own CA key is refused before `ssh-key` decodes it (its decoder
/// recurses without limit: a line within `MAX_CERT_TEXT` was ~2,000 levels deep), and so is
/// a certificate where a public key belongs; run on a thread with a small stack, so that a
/// recursion would show as a crash rather than pass.
#[test]
fn nested_certificates_are_refused_before_they_are_decoded() {
    use ippin_cert::ssh::{MAX_CERT_TEXT, MAX_KEY_TEXT, parse_certificate, parse_public_key};
    let deepest_within = |max: usize| {
        let mut depth = 1;
        while nested_certificate_line(depth * 2).len() <= max {
            depth *= 2;
        }
        nested_certificate_line(depth)
    };
    let deepest = deepest_within(MAX_CERT_TEXT);
    let deepest_key = deepest_within(MAX_KEY_TEXT);
    use ippin_cert::ssh::MAX_CERT_MARKERS;
    let shallow = nested_certificate_line(MAX_CERT_MARKERS + 1);
    let harmless = nested_certificate_line(MAX_CERT_MARKERS);
    let one = nested_certificate_line(1);
    let key = user_key().public_key().to_openssh().unwrap();
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            for line in [&deepest, &deepest_key, &shallow] {
                let e = parse_certificate(line).unwrap_err();
                assert!(e.to_string().contains("nested"), "{e}");
            }
            for line in [&deepest_key, &shallow, &one] {
                let e = parse_public_key(line).unwrap_err();
                assert!(
                    e.to_string().contains("certificate where a public key"),
                    "{e}"
                );
            }
            // A few levels are left to the decoder (whose result, a certificate of an unknown
            // type and signature, no validation would pass): harmless depths, and the marker
            // may sit in a certificate's text fields.
            assert!(
                parse_certificate(&one).is_ok(),
                "one level is not refused as nested"
            );
            assert!(parse_certificate(&harmless).is_ok(), "a harmless depth");
            // A real key reads; one too long, or on two lines, does not.
            assert!(parse_public_key(&format!("  {key} alice\n")).is_ok());
            assert!(parse_public_key(&format!("{key}\n{key}")).is_err());
            assert!(parse_public_key(&format!("{key} {}", "x".repeat(20_000))).is_err());
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

/// The critical option `pinned-endpoint@ippin`: written beside `source-address` (a critical
/// option, so that stock sshd, which cannot check it, refuses the certificate), read by
/// validation and `read_options`; `pinned_ip` refuses a bound pin rather than drop the
/// binding; a name outside the charset, an endpoint without `source-address`, or the binding
/// as an extension (an sshd would ignore it) is refused.
#[test]
fn a_pin_bound_to_an_endpoint_is_written_read_and_never_dropped() {
    use ippin_cert::ssh::{PINNED_ENDPOINT, read_options};
    let (ca, key) = ca_and_key();
    let req = SshCertRequest::builder(user_key().public_key().key_data().clone())
        .key_id("alice@ippin")
        .serial(42)
        .principal("alice")
        .validity(NOW - 60, NOW + 3600)
        .pinned_ip(ip("10.0.0.5"))
        .pinned_endpoint("vpce-0123456789abcdef0")
        .build()
        .unwrap();
    let cert = ca.issue(&req, &mut rng()).unwrap();
    assert!(
        cert.critical_options()
            .iter()
            .any(|(k, v)| k == PINNED_ENDPOINT && v == "vpce-0123456789abcdef0"),
        "{:?}",
        cert.critical_options()
    );
    assert!(cert.extensions().iter().all(|(k, _)| k != PINNED_ENDPOINT));
    let valid = validate(&cert, &ca, "alice", NOW).unwrap();
    assert_eq!(
        valid.pinned_endpoint.as_deref(),
        Some("vpce-0123456789abcdef0")
    );
    assert_eq!(
        valid.pinned_ip().unwrap_err().code(),
        "pin_bound_to_endpoint"
    );
    // `check_source` alone (no endpoint) refuses a bound pin; `check_source_at` compares.
    assert_eq!(
        valid.check_source(ip("10.0.0.5")).unwrap_err().code(),
        "pinned_endpoint_mismatch"
    );
    assert!(
        valid
            .check_source_at(ip("10.0.0.5"), Some("vpce-0123456789abcdef0"))
            .is_ok()
    );
    for other in [Some("vpce-0123456789abcdef1"), None] {
        assert_eq!(
            valid
                .check_source_at(ip("10.0.0.5"), other)
                .unwrap_err()
                .code(),
            "pinned_endpoint_mismatch"
        );
    }
    assert_eq!(
        valid
            .check_source_at(ip("10.0.0.6"), Some("vpce-0123456789abcdef0"))
            .unwrap_err()
            .code(),
        "source_address_mismatch"
    );
    assert_eq!(
        read_options(&cert).unwrap().pinned_endpoint.as_deref(),
        Some("vpce-0123456789abcdef0")
    );
    // Through the text form too.
    let again = parse_certificate(&cert.to_openssh().unwrap()).unwrap();
    assert_eq!(again, cert);

    // The builder: a pin is needed, and the name must be one.
    let base = || {
        SshCertRequest::builder(user_key().public_key().key_data().clone())
            .key_id("alice@ippin")
            .serial(42)
            .principal("alice")
            .validity(NOW - 60, NOW + 3600)
    };
    assert!(base().pinned_endpoint("vpce-1").build().is_err());
    assert!(
        base()
            .pinned_ip(ip("10.0.0.5"))
            .pinned_endpoint("vpce 1")
            .build()
            .is_err()
    );

    // Crafted: refused by validation and by `read_options`.
    for (pin, name, as_extension) in [
        (true, "VPCE-1", false),
        (true, "", false),
        (true, "vpce-1\0", false),
        (false, "vpce-1", false),
        (true, "vpce-1", true),
    ] {
        let cert = raw_cert(&key, |b| {
            if pin {
                b.critical_option("source-address", "10.0.0.5/32").unwrap();
            }
            if as_extension {
                b.extension(PINNED_ENDPOINT, name).unwrap();
            } else {
                b.critical_option(PINNED_ENDPOINT, name).unwrap();
            }
        });
        assert!(read_options(&cert).is_err(), "{pin} {name:?}");
        assert!(
            validate(&cert, &ca, "alice", NOW).is_err(),
            "{pin} {name:?}"
        );
    }
}

/// An extension of ippin's that this version does not know (a later version's narrowing
/// field) refuses the certificate; another party's unknown extension is ignored, as sshd
/// ignores it.
#[test]
fn an_unknown_ippin_extension_refuses_the_certificate() {
    use ippin_cert::ssh::read_options;
    let (ca, key) = ca_and_key();
    for (name, refused) in [
        ("future-limit@ippin", true),
        ("@ippin", true),
        ("vendor-note@example.com", false),
        ("ippin", false),
    ] {
        let cert = raw_cert(&key, |b| {
            b.critical_option("source-address", "10.0.0.5/32").unwrap();
            b.extension(name, "1").unwrap();
        });
        assert_eq!(read_options(&cert).is_err(), refused, "{name}");
        assert_eq!(
            validate(&cert, &ca, "alice", NOW).is_err(),
            refused,
            "{name}"
        );
    }
}

/// A certificate whose text fields hold the certificate type marker (a user named
/// `ops-cert-v01` has it in the key id) is read: the nesting check leaves room for it.
#[test]
fn a_key_id_with_the_certificate_marker_is_read() {
    let (ca, _) = ca_and_key();
    let req = SshCertRequest::builder(user_key().public_key().key_data().clone())
        .key_id("ops-cert-v01@ippin/42")
        .serial(42)
        .principal("ops-cert-v01")
        .validity(NOW - 60, NOW + 3600)
        .build()
        .unwrap();
    let cert = ca.issue(&req, &mut rng()).unwrap();
    let read = parse_certificate(&cert.to_openssh().unwrap()).unwrap();
    assert_eq!(read, cert);
}
