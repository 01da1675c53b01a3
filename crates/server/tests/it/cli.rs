//! `ippin inspect` and `ippin check` as processes, on certificates issued by
//! a real login: the exit codes and JSON scripts rely on.

use serde_json::{Value, json};

use crate::support::{ALICE, Cluster, ippin};

#[test]
fn check_and_inspect_on_issued_certificates() {
    let cluster = Cluster::start(&["kind: login, proxy_protocol: off"]);
    let alice = cluster
        .login(
            &format!("https://{}", cluster.addr(0)),
            ALICE,
            Some("127.0.0.2"),
        )
        .ok();
    let roles = cluster.path("roles.yaml");
    let roles = roles.to_str().expect("UTF-8");
    for cert in [alice.tls_cert(), alice.ssh_cert()] {
        let cert = cert.to_str().expect("UTF-8");
        let cases = [
            ("127.0.0.2:40000", 0, Value::Null),
            ("127.0.0.1:40000", 1, json!("pinned_ip_mismatch")),
            ("127.0.0.2", 1, json!("untrusted_client_ip")),
            ("[::ffff:127.0.0.2]:1", 0, Value::Null),
        ];
        for (observed, code, reason) in cases {
            let ran = ippin(
                &[
                    "check",
                    "--cert",
                    cert,
                    "--observed",
                    observed,
                    "--roles",
                    roles,
                ],
                b"",
            );
            assert_eq!(ran.code, Some(code), "{observed}: {ran:?}");
            let got: Value = serde_json::from_str(&ran.stdout).expect("JSON");
            assert_eq!(got["reason"], reason, "{observed}");
            assert_eq!(got["requires_pin"], true);
            assert_eq!(got["pinned"], json!(["127.0.0.2/32"]));
        }
        let bad = ippin(
            &["check", "--cert", cert, "--observed", "127.0.0.02:1"],
            b"",
        );
        assert_eq!(bad.code, Some(2), "{bad:?}");
        assert!(bad.stderr.starts_with("error: "));
    }
    let x509 = ippin(
        &["inspect", "cert", alice.tls_cert().to_str().expect("UTF-8")],
        b"",
    );
    let got: Value = serde_json::from_str(&x509.stdout).expect("JSON");
    assert_eq!(got["format"], "x509");
    assert_eq!(got["subject"], "CN=alice,O=pinned-ip");
    assert_eq!(got["login_ip"], "127.0.0.2");
    let ssh = ippin(
        &["inspect", "cert", alice.ssh_cert().to_str().expect("UTF-8")],
        b"",
    );
    let got: Value = serde_json::from_str(&ssh.stdout).expect("JSON");
    assert_eq!(got["format"], "ssh");
    assert_eq!(got["principals"], json!(["ippin:alice"]));
}

#[test]
fn inspect_proxy_reads_stdin() {
    let ran = ippin(
        &["inspect", "proxy", "-"],
        b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\nhello",
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let got: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(got["source"], "198.51.100.7:51234");
    let ran = ippin(&["inspect", "proxy"], b"PROXY TCP4 198.51.100.7");
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("incomplete"), "{ran:?}");
}

/// More than 1 MiB of input is refused, not cut to its first MiB (which could
/// hide what follows: a second certificate, trailing bytes).
#[test]
fn inputs_over_a_mebibyte_are_refused_not_cut() {
    let header = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n";
    let mut exact = header.to_vec();
    exact.resize(1024 * 1024, b'x');
    let ran = ippin(&["inspect", "proxy", "-"], &exact);
    assert_eq!(ran.code, Some(0), "exactly 1 MiB is read whole: {ran:?}");
    let mut over = exact.clone();
    over.push(b'x');
    let ran = ippin(&["inspect", "proxy", "-"], &over);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("larger than 1048576 bytes"), "{ran:?}");
}
