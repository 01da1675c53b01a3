//! Runs `axum_observed` and drives it with curl through PROXY v1 (`--haproxy-protocol`, from
//! 127.0.0.1 and 127.0.0.2), with a raw PROXY v2 client that stalls (the others are served
//! meanwhile), and with a raw PROXY v2 client over mutual TLS (rustls) naming any address.

use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{Example, run};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{
    ClientCertRequest, ServerCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem,
};
use ippin_propagation::pem::der_to_pem;
use ippin_test_support::{peer, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_axum_observed");

/// A CA, a server certificate for 127.0.0.1, and alice's client certificate pinned to
/// 127.0.0.1, written as PEM files in `dir`.
fn certificates(dir: &Path) {
    let mut rng = UnwrapErr(SysRng);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ca = X509Ca::generate_p256("example CA", now - 60, now + 3600, &mut rng).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let (server_key, server_spki) = generate_key_pair_p256(&mut rng).unwrap();
    let req = ServerCertRequest::new(
        vec!["localhost".into()],
        vec!["127.0.0.1".parse().unwrap()],
        spki_der_from_pem(&server_spki).unwrap(),
        now - 60,
        now + 3600,
        1,
    )
    .unwrap();
    let server = ca.issue_server(&req, &mut rng).unwrap();
    std::fs::write(dir.join("server.pem"), der_to_pem(&server, "CERTIFICATE")).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    let (alice_key, alice_spki) = generate_key_pair_p256(&mut rng).unwrap();
    let req = ClientCertRequest::builder("alice", spki_der_from_pem(&alice_spki).unwrap())
        .validity(now - 60, now + 3600)
        .serial(2)
        .role("pinned")
        .pinned_ip("127.0.0.1".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let alice = ca.issue_client(&req, &mut rng).unwrap();
    std::fs::write(dir.join("alice.pem"), der_to_pem(&alice, "CERTIFICATE")).unwrap();
    std::fs::write(dir.join("alice.key"), alice_key).unwrap();
}

fn start(dir: &Path) -> Example {
    let path = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    Example::start(
        BIN,
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "--client-ca",
            &ca,
            "--trusted-proxy",
            "127.0.0.0/8",
            "--user",
            "alice",
            // Long enough that a header read inline in accept would stall every client.
            "--proxy-timeout-secs",
            "60",
        ],
    )
}

/// curl with alice's certificate, from `source`, sending a PROXY v1 header (its own
/// addresses) when `proxy`: (HTTP status, body).
fn curl(ex: &Example, dir: &Path, source: &str, proxy: bool, path: &str) -> (String, String) {
    let mut cmd = Command::new(peer("curl"));
    cmd.args(["-sS", "--max-time", "10", "--interface", source])
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("alice.pem"))
        .arg("--key")
        .arg(dir.join("alice.key"))
        .args(["-w", "\n%{http_code}"]);
    if proxy {
        cmd.arg("--haproxy-protocol");
    }
    cmd.arg(format!("https://127.0.0.1:{}{path}", ex.addr.port()));
    let (_, out, err) = run(cmd, Duration::from_secs(20));
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.trim().to_owned(), format!("{body}{err}"))
}

#[test]
fn the_pinned_address_is_served_another_is_refused_with_the_reason() {
    let dir = temp_dir();
    certificates(dir.path());
    let mut ex = start(dir.path());

    // A raw PROXY v2 client that sends its header's first bytes and stalls: the others are
    // served meanwhile.
    let mut stalled = TcpStream::connect(ex.addr).unwrap();
    std::io::Write::write_all(&mut stalled, b"\r\n\r\n\0\r\nQUIT\n\x21\x11").unwrap();

    // From 127.0.0.1, the pin: served.
    let (status, body) = curl(&ex, dir.path(), "127.0.0.1", true, "/");
    assert_eq!(status, "200", "{body}");
    assert!(body.starts_with("hello alice at 127.0.0.1:"), "{body}");
    let allowed = ex.wait_audit(|v| v["event"] == "access_allowed");
    assert_eq!(allowed["user"], "alice");
    assert_eq!(allowed["provenance"], "proxy_v1");

    // From 127.0.0.2 (the load balancer says so in its PROXY header): refused with the reason.
    let (status, body) = curl(&ex, dir.path(), "127.0.0.2", true, "/");
    assert_eq!(status, "403", "{body}");
    assert!(body.starts_with("refused (pinned_ip_mismatch): "), "{body}");
    let denied = ex.wait_audit(|v| v["event"] == "access_denied");
    assert_eq!(denied["reason"], "pinned_ip_mismatch");
    assert!(
        denied["observed"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{denied}"
    );

    // /whoami answers with the observed address, pin or not.
    let (status, body) = curl(&ex, dir.path(), "127.0.0.2", true, "/whoami");
    assert_eq!(status, "200", "{body}");
    assert!(body.starts_with("127.0.0.2:"), "{body}");

    // Without a PROXY header: closed before TLS, and reported.
    let (status, _) = curl(&ex, dir.path(), "127.0.0.1", false, "/");
    assert_eq!(status, "000", "no HTTP answer");
    let refused = ex.wait_audit(|v| v["event"] == "connection.refused");
    assert!(
        refused["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{refused}"
    );
    drop(stalled);
}

/// A PROXY v2 header (`PROXY`, TCP over IPv4) naming `client` as the source.
fn proxy_v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// `GET path` over mutual TLS with alice's certificate, after a PROXY v2 header naming
/// `client`: the whole response.
fn get_v2(ex: &Example, dir: &Path, client: [u8; 4], path: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    use std::sync::Arc;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_file(dir.join("alice.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("alice.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(ex.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&proxy_v2(client, 41000)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify: keep what arrived.
    let _ = tls.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_proxy_v2_client_is_observed_at_the_address_its_header_names() {
    let dir = temp_dir();
    certificates(dir.path());
    let mut ex = start(dir.path());

    let response = get_v2(&ex, dir.path(), [203, 0, 113, 7], "/whoami");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("\r\n\r\n203.0.113.7:41000\n"),
        "{response}"
    );

    // alice's certificate is pinned to 127.0.0.1: from 203.0.113.7 it is refused.
    let response = get_v2(&ex, dir.path(), [203, 0, 113, 7], "/");
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("refused (pinned_ip_mismatch): "),
        "{response}"
    );
    let denied = ex.wait_audit(|v| v["event"] == "access_denied");
    assert_eq!(denied["observed"], "203.0.113.7:41000");
    assert_eq!(denied["provenance"], "proxy_v2");
    assert_eq!(denied["reason"], "pinned_ip_mismatch");

    // Naming 127.0.0.1, the pin: served.
    let response = get_v2(&ex, dir.path(), [127, 0, 0, 1], "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("hello alice at 127.0.0.1:41000\n"),
        "{response}"
    );
}
