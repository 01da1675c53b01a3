//! The committed vectors made by ssh-keygen and openssl (see
//! tests/vectors/generate.sh): what each must produce.

use std::fs;
use std::net::IpAddr;

use ippin_cert::ssh::{
    Permissions, SourceAddress, SshCa, SshValidation, parse_certificate, validate_user_cert,
};
use ippin_cert::ssh_key::PublicKey;
use ippin_cert::x509::{Profile, X509Ca, client_identity, pinned_ip, pinned_ip_fast};

use crate::support::{NOW, rng, vectors};

fn read(name: &str) -> String {
    fs::read_to_string(vectors().join(name)).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ssh_check(
    cert: &str,
    principal: &str,
) -> Result<ippin_cert::ssh::ValidatedSshCert, &'static str> {
    let cert = parse_certificate(&read(cert)).unwrap();
    let trusted = ["ssh_ca_ed25519.pub", "ssh_ca_p256.pub"].map(|f| {
        PublicKey::from_openssh(&read(f))
            .unwrap()
            .fingerprint(Default::default())
    });
    validate_user_cert(&cert, &SshValidation::new(&trusted, principal, NOW)).map_err(|e| e.code())
}

#[test]
fn ssh_keygen_certificates_validate_with_ours() {
    let ok = ssh_check("ssh_cert_pinned_v4.pub", "alice").unwrap();
    assert_eq!(ok.pinned_ip().unwrap(), Some(ip("192.0.2.10")));
    ok.check_source(ip("192.0.2.10")).unwrap();
    assert!(ok.check_source(ip("192.0.2.11")).is_err());
    assert_eq!(ok.permissions, Permissions::default());

    let ok = ssh_check("ssh_cert_list_p256.pub", "ops").unwrap();
    assert_eq!(
        ok.source_address,
        Some(SourceAddress::parse("10.0.0.0/8,2001:db8::/32").unwrap())
    );
    assert_eq!(ok.force_command.as_deref(), Some("/usr/bin/true"));
    assert!(ok.verify_required);
    assert_eq!(
        ok.permissions,
        Permissions {
            pty: true,
            ..Permissions::none()
        }
    );
    ok.check_source(ip("10.200.0.1")).unwrap();
    ok.check_source(ip("2001:db8::99")).unwrap();
    assert!(ok.check_source(ip("11.0.0.1")).is_err());

    // ssh-keygen keeps the spelling it was given; sshd and ippin accept it
    let ok = ssh_check("ssh_cert_pinned_v6_upper.pub", "alice").unwrap();
    assert_eq!(ok.pinned_ip().unwrap(), Some(ip("2001:db8::7")));

    let ok = ssh_check("ssh_cert_unpinned.pub", "alice").unwrap();
    assert_eq!(ok.source_address, None);
}

#[test]
fn ssh_keygen_certificates_rejected_by_ours() {
    assert_eq!(
        ssh_check("ssh_cert_host.pub", "alice").unwrap_err(),
        "ssh_not_user_cert"
    );
    assert_eq!(
        ssh_check("ssh_cert_unknown_critical.pub", "alice").unwrap_err(),
        "ssh_unknown_critical_option"
    );
    assert_eq!(
        ssh_check("ssh_cert_pinned_v4.pub", "root").unwrap_err(),
        "ssh_principal"
    );
}

#[test]
fn ssh_keygen_ca_key_loads_as_our_ca() {
    let ca = SshCa::from_openssh(&read("ssh_ca_ed25519")).unwrap();
    let expected = PublicKey::from_openssh(&read("ssh_ca_ed25519.pub")).unwrap();
    assert_eq!(ca.public_key().key_data(), expected.key_data());
    assert!(SshCa::from_openssh(&read("ssh_ca_p256")).is_ok());
}

fn x509(name: &str) -> Vec<u8> {
    fs::read(vectors().join(format!("x509_{name}.der"))).unwrap()
}

fn x509_both(name: &str) -> Result<Option<IpAddr>, &'static str> {
    let der = x509(name);
    let full = pinned_ip(&der).map_err(|e| e.code());
    assert_eq!(
        full,
        pinned_ip_fast(&der).map_err(|e| e.code()),
        "{name}: fast and full disagree"
    );
    full
}

#[test]
fn openssl_certificates_read_as_recorded() {
    assert_eq!(x509_both("pinned_v4"), Ok(Some(ip("192.0.2.10"))));
    assert_eq!(x509_both("pinned_v6"), Ok(Some(ip("2001:db8::7"))));
    assert_eq!(x509_both("unpinned"), Ok(None));
    // openssl keeps only the last of two config lines for one OID
    assert_eq!(x509_both("last_of_two_lines"), Ok(Some(ip("192.0.2.11"))));
    assert_eq!(x509_both("teleport"), Ok(Some(ip("192.0.2.10"))));
    let id = client_identity(&x509("teleport")).unwrap();
    assert_eq!(id.login_ip, Some(ip("198.51.100.1")));
    assert_eq!(id.profile, Some(Profile::Teleport));
    assert_eq!(
        (id.user.as_str(), id.roles.as_slice()),
        ("alice", &["dev".to_owned()][..])
    );
}

#[test]
fn openssl_certificates_rejected_as_recorded() {
    for (name, code) in [
        ("critical", "critical_extension"),
        ("utf8_inner", "extension_value"),
        ("nonminimal_len", "extension_value"),
        ("trailing_byte", "extension_value"),
        ("leading_zero", "extension_value"),
        ("mapped", "extension_value"),
        ("trailing_space", "extension_value"),
        ("layouts_disagree", "layout_mismatch"),
    ] {
        assert_eq!(x509_both(name), Err(code), "{name}");
    }
}

#[test]
fn openssl_ca_loads_as_our_ca() {
    let ca = X509Ca::from_pem(&read("x509_ca.pem"), &read("x509_ca.key")).unwrap();
    let der = crate::x509::client(&ca, Some("192.0.2.1"), None, Profile::Ippin);
    assert_eq!(pinned_ip_fast(&der).unwrap(), Some(ip("192.0.2.1")));
    let _ = rng();
}
