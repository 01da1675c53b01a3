//! Runs the `mtls_gateway` example and drives it with curl (PROXY v1 from curl itself, the
//! trusted balancer's address) and a PROXY v2 client (a balancer that vouches for a client
//! elsewhere).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{
    ClientCertRequest, ServerCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem,
};
use ippin_test_support::{peer, wait_until};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn pem(der: &[u8], label: &str) -> String {
    ippin_propagation::pem::der_to_pem(der, label)
}

/// Writes the CA, the server's certificate and key, and one client certificate and key per
/// `(user, pin)` into `dir`; returns the CA's PEM.
fn write_pki(dir: &Path, clients: &[(&str, &str, Option<IpAddr>)]) {
    let mut rng = UnwrapErr(SysRng);
    let t = now();
    let ca = X509Ca::generate_p256("gateway CA", t - 60, t + 3600, &mut rng).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let (key, spki) = generate_key_pair_p256(&mut rng).unwrap();
    let req = ServerCertRequest::new(
        vec!["localhost".into()],
        vec!["127.0.0.1".parse().unwrap()],
        spki_der_from_pem(&spki).unwrap(),
        t - 60,
        t + 3600,
        1,
    )
    .unwrap();
    let der = ca.issue_server(&req, &mut rng).unwrap();
    std::fs::write(dir.join("server.pem"), pem(&der, "CERTIFICATE")).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    for (file, user, pin) in clients {
        let (key, spki) = generate_key_pair_p256(&mut rng).unwrap();
        let mut req = ClientCertRequest::builder(*user, spki_der_from_pem(&spki).unwrap())
            .validity(t - 60, t + 3600)
            .serial(2)
            .role("dev");
        if let Some(ip) = pin {
            req = req.pinned_ip(*ip);
        }
        let der = ca.issue_client(&req.build().unwrap(), &mut rng).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), pem(&der, "CERTIFICATE")).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key).unwrap();
    }
    // alice's roles require a pin; bob's do not.
    std::fs::write(dir.join("users"), "alice pinned\nbob\n").unwrap();
}

struct Gateway {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(dir: &Path) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mtls_gateway"))
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut gw = Gateway {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        assert!(
            wait_until(Duration::from_secs(30), || gw.listening().is_some()),
            "the example did not start"
        );
        gw.addr = gw.listening().unwrap();
        gw
    }

    fn listening(&self) -> Option<SocketAddr> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .find_map(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.parse().ok())
    }

    /// The audit lines so far.
    fn audit(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the `n`th audit line.
    fn audit_line(&self, n: usize) -> serde_json::Value {
        assert!(
            wait_until(Duration::from_secs(10), || self.audit().len() > n),
            "audit line {n} never came: {:?}",
            self.audit()
        );
        self.audit()[n].clone()
    }
}

/// curl with PROXY v1 (`--haproxy-protocol`: curl names its own address, 127.0.0.1, which
/// is the trusted balancer here) and the client certificate `who`.
fn curl(dir: &Path, gw: &Gateway, who: &str) -> (String, String) {
    let out = Command::new(peer("curl"))
        .args(["-sS", "--max-time", "10", "--haproxy-protocol"])
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("{who}.pem")))
        .arg("--key")
        .arg(dir.join(format!("{who}.key")))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{}/", gw.addr.port()))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.trim_end().to_owned())
}

/// A balancer that vouches for `client` with a PROXY v2 header, then mutual TLS as `who`.
async fn via_v2(dir: &Path, gw: &Gateway, client: SocketAddr, who: &str) -> String {
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&read("ca.pem")).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(&read(&format!("{who}.pem"))).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(&read(&format!("{who}.key"))).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let header = ippin_proxy_protocol::V2Builder::new(ippin_proxy_protocol::Command::Proxy)
        .addresses(ippin_access::signed::addresses_for(client, gw.addr))
        .unwrap()
        .encode()
        .unwrap();
    tcp.write_all(&header).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_pins_from_their_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let far: IpAddr = "203.0.113.7".parse().unwrap();
    write_pki(
        dir.path(),
        &[
            ("alice-here", "alice", Some("127.0.0.1".parse().unwrap())),
            ("alice-far", "alice", Some(far)),
            ("alice-unpinned", "alice", None),
            ("bob", "bob", None),
        ],
    );
    let gw = Gateway::start(dir.path());
    let mut n = 0;

    // curl from the balancer's own address, PROXY v1.
    assert_eq!(
        curl(dir.path(), &gw, "alice-here"),
        ("200".into(), "hello alice from 127.0.0.1".into())
    );
    assert_eq!(gw.audit_line(n)["event"], "access_allowed");
    n += 1;
    let (code, body) = curl(dir.path(), &gw, "alice-far");
    assert_eq!(code, "403", "{body}");
    assert!(body.starts_with("pinned_ip_mismatch:"), "{body}");
    assert!(body.contains("log in again"), "{body}");
    assert_eq!(gw.audit_line(n)["reason"], "pinned_ip_mismatch");
    n += 1;
    let (code, body) = curl(dir.path(), &gw, "alice-unpinned");
    assert_eq!(
        (code.as_str(), body.split(':').next()),
        ("403", Some("pinned_ip_missing"))
    );
    n += 1;
    assert_eq!(curl(dir.path(), &gw, "bob").0, "200");
    n += 1;

    // The balancer vouches for 203.0.113.7 with PROXY v2.
    let client = SocketAddr::new(far, 50_000);
    let answer = via_v2(dir.path(), &gw, client, "alice-far").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("hello alice from 203.0.113.7\n"),
        "{answer}"
    );
    let line = gw.audit_line(n);
    assert_eq!(
        (line["observed"].as_str(), line["provenance"].as_str()),
        (Some("203.0.113.7:50000"), Some("proxy_v2"))
    );
    n += 1;
    let answer = via_v2(dir.path(), &gw, client, "alice-here").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(gw.audit_line(n)["reason"], "pinned_ip_mismatch");

    // Without a header (a client that skips the balancer): closed before TLS, nothing served.
    let out = Command::new(peer("curl"))
        .args([
            "-sS",
            "--max-time",
            "10",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{}/", gw.addr.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    assert!(!out.status.success());
}
