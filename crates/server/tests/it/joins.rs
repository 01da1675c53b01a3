//! The joins between the libraries and the server, through real sockets: each check here was
//! found removable without any other server test failing. A removed user, a role that now
//! requires a pin, and a certificate whose pin cannot be read, over mutual TLS with curl
//! against the real `ippin serve`; a `forward` listener's refusal of an untrusted observation
//! and its fail-closed audit, with raw sockets on both sides of a real front. Each test's
//! mutation is listed in docs/testing.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ippin::client::Credentials;
use ippin_test_support::{Child, free_port, peer, wait_until};
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

/// What the fake upstream says first to every connection: the client sees it only if the
/// front relayed.
const BANNER: &[u8] = b"UPSTREAM-HELLO\n";

/// A plain TCP upstream standing in for an inner service: for every connection it writes
/// [`BANNER`], then reads until the front closes (at most 10 s); each connection's bytes go
/// to the channel.
fn fake_upstream() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = conn.write_all(BANNER);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut got = Vec::new();
                let _ = conn.read_to_end(&mut got);
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

/// A front: `ippin serve` with one `kind: forward` listener (`fields`: its `proxy_protocol`
/// and the like) relaying to `upstream`, on a site's CA with a proxy identity from `ippin ca
/// issue-proxy`, writing its audit log to `audit_log`. The folder, the running server and the
/// listener's address.
fn front(
    fields: &str,
    upstream: SocketAddr,
    audit_log: &str,
) -> (tempfile::TempDir, Child, SocketAddr) {
    // A placeholder listener for `ca init`; the front's replaces it.
    let (tmp, config) = site(
        "  - {kind: login, listen: 127.0.0.1:9, proxy_protocol: off}\n",
        "",
    );
    let dir = tmp.path();
    let config_s = config.to_str().expect("UTF-8");
    let issued = crate::support::ippin(&["ca", "issue-proxy", "--config", config_s, "front"], b"");
    assert_eq!(issued.code, Some(0), "issue-proxy: {issued:?}");
    let keys = dir.to_path_buf();
    let made = crate::support::ippin(
        &[
            "ca",
            "propagation-key",
            "--audience",
            "inner",
            "--out",
            keys.to_str().expect("UTF-8"),
        ],
        b"",
    );
    assert_eq!(made.code, Some(0), "propagation-key: {made:?}");
    let listen = SocketAddr::new(ip("127.0.0.1"), free_port(ip("127.0.0.1")));
    let text = std::fs::read_to_string(&config).expect("config");
    let (head, _) = text.split_once("\nlisteners:").expect("listeners");
    assert!(head.contains("audit_log: audit.log"), "{head}");
    let head = head.replace("audit_log: audit.log", &format!("audit_log: {audit_log}"));
    let yaml = format!(
        "{head}\nlisteners:\n  - {{listen: \"{listen}\", kind: forward, {fields}forward: \
         {{upstream: \"{upstream}\", audience: inner, cert: proxy-front.pem, key: proxy-front.key, \
         upstream_key: \"{}\"}}}}\n",
        keys.join("inner.propkey.pub").display()
    );
    std::fs::write(&config, yaml).expect("write config");
    let server = serve(&config, &[listen]);
    (tmp, server, listen)
}

/// Connects to the front, writes `first`, and reads what comes back until the front closes
/// (bounded: 10 s; a relay that stays open is reported as `None`).
fn through_front(front: SocketAddr, first: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(front).expect("connect to the front");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s.write_all(first).expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.starts_with(BANNER) {
                    // Relayed: the upstream answered through the front.
                    return Some(got);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

fn audit_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for an audit line of `file` for which `pred` holds.
fn wait_line(file: &Path, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = audit_lines(file).into_iter().find(|v| pred(v));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no such audit line: {:#?}", audit_lines(file)))
}

/// A front vouches only for addresses it can trust itself. Its listener must say
/// `proxy_protocol: on` or `off` (unspecified is refused at start), but even from a trusted
/// load balancer some headers name no client: a v1 `PROXY UNKNOWN` and a v2 `LOCAL` (a
/// health check) give the balancer's own address, untrusted. For those the front dials
/// nothing, signs nothing and relays nothing (`untrusted_client_ip`). Removing the front's
/// `is_trusted` check makes the upstream answer through it.
#[test]
fn a_forward_listener_never_forwards_an_untrusted_observation() {
    let (upstream, seen) = fake_upstream();
    let (tmp, server, listen) = front(
        "proxy_protocol: on, trusted_proxies: [127.0.0.1/32], ",
        upstream,
        "audit.log",
    );
    let log = tmp.path().join("audit.log");

    // The control: a client named by the trusted balancer is trusted; it is relayed.
    let got = through_front(
        listen,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 1000 443\r\nhello",
    )
    .expect("relay closes");
    assert!(
        got.starts_with(BANNER),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let fwd = wait_line(&log, |v| v["event"] == "forwarded");
    assert!(
        fwd["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("198.51.100.7")),
        "{fwd}"
    );

    // v1 UNKNOWN, then v2 LOCAL: no client named, so the balancer's address, untrusted.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"hello");
    for (header, provenance) in [
        (b"PROXY UNKNOWN\r\nhello".to_vec(), "proxy_v1"),
        // LOCAL has its own provenance (`ippin-access` maps it losslessly), never trusted.
        (local, "proxy_local"),
    ] {
        let got = through_front(listen, &header).expect("the front closes the connection");
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        let refused = wait_line(&log, |v| {
            v["event"] == "forward_refused" && v["provenance"] == provenance
        });
        assert_eq!(refused["reason"], "untrusted_client_ip", "{refused}");
        assert!(
            refused["observed"]
                .as_str()
                .is_some_and(|o| o.starts_with("127.0.0.1")),
            "{refused}"
        );
    }

    // The upstream saw the control's connection only: nothing was dialled for the others.
    let control = seen.recv_timeout(Duration::from_secs(10)).expect("control");
    assert!(control.ends_with(b"hello"), "{control:?}");
    assert!(
        seen.recv_timeout(Duration::from_millis(500)).is_err(),
        "the upstream was dialled for an untrusted client"
    );
    assert_eq!(
        audit_lines(&log)
            .iter()
            .filter(|v| v["event"] == "forwarded")
            .count(),
        1
    );
    let (_, stderr) = server.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A front that cannot write its audit line relays nothing: with the log on `/dev/full`, the
/// upstream's answer never reaches the client and the connection is closed. Removing the
/// `if !audit(..) { return }` before the relay makes the upstream answer through it.
#[test]
fn a_forward_listener_whose_audit_fails_relays_nothing() {
    let (upstream, seen) = fake_upstream();
    let (_tmp, server, listen) = front("proxy_protocol: off, ", upstream, "/dev/full");
    for _ in 0..2 {
        let got = through_front(listen, b"hello").expect("the front closes the connection");
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    // The upstream was dialled (the log line names the connection, so it is written once
    // the connection is up) and dropped before anything was sent: no signed header and no
    // client byte reaches an upstream for a relay the log does not show.
    for _ in 0..2 {
        let got = seen.recv_timeout(Duration::from_secs(10)).expect("dropped");
        assert!(got.is_empty(), "{got:?}");
    }
    let (_, stderr) = server.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("refusing the action it records"),
        "{stderr}"
    );
}
