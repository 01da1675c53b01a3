//! Interop with the real tools on loopback: ssh-keygen, sshd + ssh,
//! openssl, and rustls's stock client-certificate verifier.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ippin_cert::ssh::{
    SshCa, SshCertRequest, SshValidation, parse_certificate, validate_user_cert,
};
use ippin_cert::ssh_key::{Algorithm, LineEnding, PrivateKey};
use ippin_cert::x509::{Profile, X509Ca, pinned_ip_fast};
use ippin_test_support::{Child, free_port, peer, temp_dir, wait_for_tcp};

use crate::support::{NOW, rng};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run peer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn ssh_keygen_lists_our_source_address() {
    let dir = temp_dir();
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let req = SshCertRequest::builder(user.public_key().key_data().clone())
        .key_id("alice@interop")
        .principal("alice")
        .validity(NOW, NOW + 3600)
        .pinned_ip(ip("2001:db8::42"))
        .login_ip(ip("2001:db8::42"))
        .build()
        .unwrap();
    let cert = ca.issue(&req, &mut rng()).unwrap();
    let path = dir.path().join("alice-cert.pub");
    fs::write(&path, cert.to_openssh().unwrap()).unwrap();
    let (ok, out, err) = run(Command::new(peer("ssh-keygen"))
        .arg("-L")
        .arg("-f")
        .arg(&path));
    assert!(ok, "ssh-keygen -L failed: {err}");
    assert!(out.contains("source-address 2001:db8::42/128"), "{out}");
    assert!(out.contains("Key ID: \"alice@interop\""), "{out}");
    assert!(out.contains("permit-pty"), "{out}");
    assert!(out.contains("login-ip"), "{out}");
}

#[test]
fn ssh_keygen_signed_certificates_validate_with_ours() {
    let dir = temp_dir();
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let ca_path = dir.path().join("ca");
    write_private(&ca_path, &ca.to_openssh().unwrap());
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let user_pub = dir.path().join("user.pub");
    fs::write(&user_pub, user.public_key().to_openssh().unwrap()).unwrap();
    for (list, inside, outside) in [
        ("192.0.2.10/32", "192.0.2.10", "192.0.2.11"),
        ("10.0.0.0/8,2001:db8::/32", "2001:db8:1::1", "11.0.0.1"),
    ] {
        let (ok, _, err) = run(Command::new(peer("ssh-keygen"))
            .args(["-q", "-s"])
            .arg(&ca_path)
            .args(["-I", "id", "-n", "alice", "-V", "20230101:20330101"])
            .arg("-O")
            .arg(format!("source-address={list}"))
            .arg(&user_pub));
        assert!(ok, "ssh-keygen -s failed: {err}");
        let text = fs::read_to_string(dir.path().join("user-cert.pub")).unwrap();
        let cert = parse_certificate(&text).unwrap();
        let trusted = [ca.fingerprint()];
        let v = validate_user_cert(&cert, &SshValidation::new(&trusted, "alice", NOW)).unwrap();
        assert_eq!(
            v.source_address.as_ref().unwrap().to_string(),
            SourceAddressText::canonical(list)
        );
        v.check_source(ip(inside)).unwrap();
        assert!(v.check_source(ip(outside)).is_err());
    }
}

struct SourceAddressText;
impl SourceAddressText {
    fn canonical(list: &str) -> String {
        ippin_cert::ssh::SourceAddress::parse(list)
            .unwrap()
            .to_string()
    }
}

/// sshd enforces our pin on its own: the pinned certificate logs in from
/// 127.0.0.1 and is refused from 127.0.0.2.
#[test]
fn sshd_enforces_our_pin() {
    let dir = temp_dir();
    let d = dir.path();
    fs::create_dir_all("/run/sshd").unwrap();
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    fs::write(d.join("ca.pub"), ca.public_key().to_openssh().unwrap()).unwrap();
    let host = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    write_private(
        &d.join("host_key"),
        &host.to_openssh(LineEnding::LF).unwrap(),
    );
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    write_private(&d.join("id"), &user.to_openssh(LineEnding::LF).unwrap());
    let now = unix_now();
    let req = SshCertRequest::builder(user.public_key().key_data().clone())
        .key_id("root@sshd-interop")
        .principal("root")
        .validity(now - 300, now + 3600)
        .pinned_ip(ip("127.0.0.1"))
        .login_ip(ip("127.0.0.1"))
        .build()
        .unwrap();
    let cert = ca.issue(&req, &mut rng()).unwrap();
    fs::write(d.join("id-cert.pub"), cert.to_openssh().unwrap()).unwrap();

    let port = free_port(ip("127.0.0.1"));
    let config = format!(
        "ListenAddress 127.0.0.1:{port}\nHostKey {host}\nTrustedUserCAKeys {ca}\n\
         AuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
         PidFile none\nLogLevel VERBOSE\n",
        host = d.join("host_key").display(),
        ca = d.join("ca.pub").display(),
    );
    fs::write(d.join("sshd_config"), config).unwrap();
    let mut cmd = Command::new(peer("sshd"));
    let log = d.join("sshd.log");
    cmd.args(["-D", "-E"])
        .arg(&log)
        .arg("-f")
        .arg(d.join("sshd_config"));
    let sshd = Child::spawn("sshd", cmd);
    wait_for_tcp(SocketAddr::new(ip("127.0.0.1"), port));

    let ssh = |bind: &str| {
        run(Command::new(peer("ssh"))
            .args(["-F", "/dev/null", "-b", bind, "-p", &port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(d.join("id"))
            .arg("-o")
            .arg(format!(
                "CertificateFile={}",
                d.join("id-cert.pub").display()
            ))
            .args(["root@127.0.0.1", "echo", "pinned-ok"]))
    };
    let (ok_pinned, out_pinned, err_pinned) = ssh("127.0.0.1");
    let (ok_other, _, err_other) = ssh("127.0.0.2");
    // sshd logs the refusal from its per-connection process; wait for it
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    let said_why = ippin_test_support::wait_until(Duration::from_secs(10), || {
        read_log().contains("not from a permitted source address")
    });
    drop(sshd);
    let sshd_log = read_log();
    assert!(
        ok_pinned && out_pinned.contains("pinned-ok"),
        "login from the pinned IP failed: {err_pinned}\nsshd: {sshd_log}"
    );
    assert!(
        !ok_other,
        "login from 127.0.0.2 was accepted\nsshd: {sshd_log}"
    );
    assert!(
        err_other.contains("Permission denied"),
        "ssh from 127.0.0.2: {err_other}\nsshd: {sshd_log}"
    );
    assert!(said_why, "sshd log does not say why: {sshd_log}");
}

fn pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap()
}

#[test]
fn openssl_shows_our_extension_and_verifies_the_chain() {
    let dir = temp_dir();
    let now = unix_now();
    for ca in [
        X509Ca::generate_p256("ippin interop CA", now - 300, now + 86_400, &mut rng()).unwrap(),
        X509Ca::generate_ed25519("ippin interop CA", now - 300, now + 86_400, &mut rng()).unwrap(),
    ] {
        let client = client_now(&ca, now, Profile::Ippin);
        fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        fs::write(dir.path().join("client.pem"), pem(&client)).unwrap();
        let (ok, out, err) = run(Command::new(peer("openssl"))
            .args(["x509", "-noout", "-text", "-in"])
            .arg(dir.path().join("client.pem")));
        assert!(ok, "{err}");
        assert!(out.contains("1.3.9999.1.9:"), "{out}");
        assert!(out.contains("203.0.113.5"), "{out}");
        assert!(out.contains("TLS Web Client Authentication"), "{out}");
        assert!(out.contains("Subject: CN = alice, O = dev"), "{out}");
        let (ok, out, err) = run(Command::new(peer("openssl"))
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(dir.path().join("ca.pem"))
            .arg(dir.path().join("client.pem")));
        assert!(ok && out.contains(": OK"), "openssl verify: {out} {err}");
    }
}

fn client_now(ca: &X509Ca, now: u64, profile: Profile) -> Vec<u8> {
    let (_, spki) = ippin_cert::x509::generate_key_pair_p256(&mut rng()).unwrap();
    let req = ippin_cert::x509::ClientCertRequest::builder(
        "alice",
        ippin_cert::x509::spki_der_from_pem(&spki).unwrap(),
    )
    .role("dev")
    .validity(now - 60, now + 3600)
    .serial(99)
    .pinned_ip(ip("203.0.113.5"))
    .login_ip(ip("203.0.113.5"))
    .profile(profile)
    .build()
    .unwrap();
    ca.issue_client(&req, &mut rng()).unwrap()
}

#[test]
fn rustls_stock_client_verifier_accepts_pinned_certificates() {
    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::WebPkiClientVerifier;

    for ca in [
        X509Ca::generate_p256("ippin CA", NOW - 300, NOW + 86_400, &mut rng()).unwrap(),
        X509Ca::generate_ed25519("ippin CA", NOW - 300, NOW + 86_400, &mut rng()).unwrap(),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let at = UnixTime::since_unix_epoch(Duration::from_secs(NOW));
        for profile in [Profile::Ippin, Profile::Teleport, Profile::Both] {
            let der = client_now(&ca, NOW, profile);
            verifier
                .verify_client_cert(&CertificateDer::from(der.clone()), &[], at)
                .unwrap_or_else(|e| panic!("{profile:?}: rustls refused: {e}"));
            assert_eq!(pinned_ip_fast(&der).unwrap(), Some(ip("203.0.113.5")));
        }
        // the measured reason the extension is non-critical: webpki refuses
        // an unknown critical extension
        let critical = crate::x509::crafted(
            &ca,
            &[],
            &[crate::x509::ext(
                "1.3.9999.1.9",
                Some(true),
                &crate::x509::printable("203.0.113.5"),
            )],
        );
        assert!(
            verifier
                .verify_client_cert(&CertificateDer::from(critical), &[], at)
                .is_err()
        );
    }
}

/// ssh-keygen's own certificates with options sshd accepts but ippin
/// refuses or reads strictly, and CA key types ippin refuses.
#[test]
fn ssh_keygen_certificates_ippin_refuses() {
    let dir = temp_dir();
    let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
    let user_pub = dir.path().join("user.pub");
    fs::write(&user_pub, user.public_key().to_openssh().unwrap()).unwrap();
    let sign = |ca_path: &Path, extra: &[&str]| -> String {
        let (ok, _, err) = run(Command::new(peer("ssh-keygen"))
            .args(["-q", "-s"])
            .arg(ca_path)
            .args(["-I", "id", "-n", "alice", "-V", "20230101:20330101"])
            .args(extra)
            .arg(&user_pub));
        assert!(ok, "ssh-keygen -s {extra:?} failed: {err}");
        fs::read_to_string(dir.path().join("user-cert.pub")).unwrap()
    };
    let check = |text: &str, trusted: &[ippin_cert::ssh_key::Fingerprint]| {
        let cert = parse_certificate(text).unwrap();
        validate_user_cert(&cert, &SshValidation::new(trusted, "alice", NOW))
            .map(|v| v.source_address.map(|s| s.to_string()))
            .map_err(|e| e.code())
    };

    // RSA CA: SHA-1 `ssh-rsa` and SHA-2 signatures alike are refused
    let rsa_path = dir.path().join("ca_rsa");
    let (ok, _, err) = run(Command::new(peer("ssh-keygen"))
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa_path));
    assert!(ok, "ssh-keygen rsa: {err}");
    let rsa_pub = fs::read_to_string(rsa_path.with_extension("pub")).unwrap();
    let rsa_fp = ippin_cert::ssh_key::PublicKey::from_openssh(&rsa_pub)
        .unwrap()
        .fingerprint(Default::default());
    for alg in ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"] {
        let text = sign(&rsa_path, &["-t", alg]);
        assert_eq!(check(&text, &[rsa_fp]), Err("ssh_ca_algorithm"), "{alg}");
    }

    // Ed25519 CA: options sshd reads with getaddrinfo or as "any address"
    let ca = SshCa::generate_ed25519(&mut rng()).unwrap();
    let ca_path = dir.path().join("ca");
    write_private(&ca_path, &ca.to_openssh().unwrap());
    let trusted = [ca.fingerprint()];
    // (ssh-keygen itself refuses host bits beyond the prefix, `10.0.0.1/24`)
    for list in ["0.0.0.0/0", "::/0", "127.1", "0177.0.0.1"] {
        let text = sign(&ca_path, &["-O", &format!("source-address={list}")]);
        assert_eq!(
            check(&text, &trusted),
            Err("source_address_malformed"),
            "{list}"
        );
    }
    // an unknown critical option (ssh-keygen -O critical:...)
    let text = sign(&ca_path, &["-O", "critical:no-such-option=x"]);
    assert_eq!(check(&text, &trusted), Err("ssh_unknown_critical_option"));
    // verify-required carries no data and is reported
    let text = sign(
        &ca_path,
        &["-O", "verify-required", "-O", "source-address=2001:DB8::1"],
    );
    assert_eq!(check(&text, &trusted), Ok(Some("2001:db8::1/128".into())));
    // a host certificate
    let text = sign(&ca_path, &["-h"]);
    assert_eq!(check(&text, &trusted), Err("ssh_not_user_cert"));
}
