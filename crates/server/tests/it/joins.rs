//! The joins between the libraries and the server, through real sockets: each check here was
//! found removable without any other server test failing. A removed user, a role that now
//! requires a pin, and a certificate whose pin cannot be read, over mutual TLS with curl
//! against the real `ippin serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ippin::client::Credentials;
use ippin_test_support::{free_port, peer};
use serde_json::Value;

use crate::attacks::{log_in, serve, site};
use crate::ssh::harness::ip;
use crate::support::{Http, curl};

/// Writes the login's TLS key and certificate; their paths.
fn save_tls(dir: &Path, name: &str, creds: &Credentials) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    crate::ssh::harness::write_private(&key, &creds.tls_key_pem);
    let cert = dir.join(format!("{name}.pem"));
    std::fs::write(&cert, &creds.tls_cert_pem).expect("write certificate");
    (
        cert.to_str().expect("UTF-8").to_owned(),
        key.to_str().expect("UTF-8").to_owned(),
    )
}

fn whoami(dir: &Path, tls: SocketAddr, (cert, key): &(String, String), from: &str) -> Http {
    let ca = dir.join("ca/tls_ca.pem");
    curl(&[
        "--interface",
        from,
        "--cert",
        cert,
        "--key",
        key,
        "--cacert",
        ca.to_str().expect("UTF-8"),
        &format!("https://{tls}/whoami"),
    ])
}

fn reason(h: &Http) -> Value {
    h.expect(403)["error"].clone()
}

/// A client certificate for alice from the cluster's own CA, made by openssl, whose pin
/// extension holds `pin_der` (hex bytes, colon separated): any content, signed.
fn openssl_cert(dir: &Path, name: &str, pin_der: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n1.3.9999.1.9=DER:{pin_der}\n"
        ),
    )
    .expect("ext file");
    let run = |args: &[&str]| {
        let out = Command::new(peer("openssl"))
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let (key_s, csr_s, cert_s) = (
        key.to_str().expect("UTF-8"),
        csr.to_str().expect("UTF-8"),
        cert.to_str().expect("UTF-8"),
    );
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key_s,
        "-out",
        csr_s,
        "-subj",
        "/CN=alice/O=pinned-ip",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        csr_s,
        "-CA",
        "ca/tls_ca.pem",
        "-CAkey",
        "ca/tls_ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        ext.to_str().expect("UTF-8"),
        "-out",
        cert_s,
    ]);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    (cert_s.to_owned(), key_s.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_access_uses_the_current_users_and_roles_and_refuses_unreadable_pins() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let (login_port, tls_port) = (free_port(lo), free_port(lo));
    let login_addr = SocketAddr::new(lo, login_port);
    let tls = SocketAddr::new(lo, tls_port);
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}
  - {{kind: tls, listen: 127.0.0.1:{tls_port}, proxy_protocol: off}}
"
        ),
        "",
    );
    let dir = tmp.path();
    // carol starts in the unpinned role `dev`.
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config, "carol", &["dev".to_owned()], &hash).expect("carol");
    let server = serve(&config, &[login_addr, tls]);
    let bob = save_tls(
        dir,
        "bob",
        &log_in(dir, login_addr, "bob", "127.0.0.1").await,
    );
    let carol = save_tls(
        dir,
        "carol",
        &log_in(dir, login_addr, "carol", "127.0.0.1").await,
    );
    whoami(dir, tls, &bob, "127.0.0.1").expect(200);
    whoami(dir, tls, &carol, "127.0.0.2").expect(200);
    drop(server);

    // The operator removes bob and moves carol to the pinned role; same CA, same listeners.
    let text = std::fs::read_to_string(&config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.contains("name: \"bob\""))
        .map(|l| {
            if l.contains("name: \"carol\"") {
                l.replace("[\"dev\"]", "[\"pinned-ip\"]")
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert!(text.matches("[\"pinned-ip\"]").count() == 2 && !text.contains("\"bob\""));
    std::fs::write(&config, text).expect("edit config");
    let _server = serve(&config, &[login_addr, tls]);

    // bob's certificate is valid and signed by the CA, but bob is gone.
    assert_eq!(reason(&whoami(dir, tls, &bob, "127.0.0.1")), "unknown_user");
    // carol's certificate has no pin, and her role requires one now: from anywhere.
    for from in ["127.0.0.1", "127.0.0.2"] {
        assert_eq!(
            reason(&whoami(dir, tls, &carol, from)),
            "pinned_ip_missing",
            "{from}"
        );
    }
    // A pin the server cannot read (a leading zero is not canonical) is invalid, never
    // "unpinned", even from the address it seems to name.
    let bad = openssl_cert(dir, "badpin", &hex_der_printable("127.0.0.01"));
    for from in ["127.0.0.1", "127.0.0.2"] {
        assert_eq!(
            reason(&whoami(dir, tls, &bad, from)),
            "invalid_pin",
            "{from}"
        );
    }
    // A pin in the wrong ASN.1 type (UTF8String instead of PrintableString) likewise.
    let utf8 = openssl_cert(dir, "utf8pin", "0c:09:31:32:37:2e:30:2e:30:2e:31");
    assert_eq!(reason(&whoami(dir, tls, &utf8, "127.0.0.1")), "invalid_pin");
    // And the same CA's well-formed pin is accepted from its address only: the test's own
    // openssl certificates reach the pin check at all.
    let good = openssl_cert(dir, "goodpin", &hex_der_printable("127.0.0.1"));
    whoami(dir, tls, &good, "127.0.0.1").expect(200);
    assert_eq!(
        reason(&whoami(dir, tls, &good, "127.0.0.2")),
        "pinned_ip_mismatch"
    );
}

/// DER of a PrintableString holding `text`, as openssl's `DER:` hex.
fn hex_der_printable(text: &str) -> String {
    let mut bytes = vec![0x13, u8::try_from(text.len()).expect("short")];
    bytes.extend_from_slice(text.as_bytes());
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
