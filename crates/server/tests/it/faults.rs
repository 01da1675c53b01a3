//! Faults around a real `ippin serve`: clients that vanish halfway, files
//! that cannot be read at start, an audit log that stops accepting lines,
//! a port that is taken. The server must keep serving others, or refuse
//! to start with an error that names the culprit and a non-zero exit.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ippin_test_support::{Child, free_port, temp_dir, wait_until};

use crate::support::{ALICE, BOB, Cluster, IPPIN, LOCALHOST, ippin, whoami};

/// A folder from `ippin ca init` with alice and bob, `audit_log` set to
/// `audit`, and the given listeners (YAML flow-mapping insides without
/// `listen`) on free 127.0.0.1 ports. Not started.
fn folder(listeners: &[&str], audit: &str) -> (tempfile::TempDir, PathBuf, Vec<SocketAddr>) {
    let dir = temp_dir();
    let root = dir.path().to_str().expect("UTF-8").to_owned();
    let init = ippin(&["ca", "init", &root], b"");
    assert_eq!(init.code, Some(0), "ca init: {init:?}");
    let config = dir.path().join("ippin.yaml");
    let config_s = config.to_str().expect("UTF-8").to_owned();
    for ((user, password), role) in [(ALICE, "pinned-ip"), (BOB, "dev")] {
        let added = ippin(
            &["user", "add", "--config", &config_s, user, "--role", role],
            password.as_bytes(),
        );
        assert_eq!(added.code, Some(0), "user add: {added:?}");
    }
    let text = std::fs::read_to_string(&config).expect("config");
    let (head, _) = text.split_once("\nlisteners:").expect("listeners");
    assert!(head.contains("audit_log: audit.log"), "{head}");
    let mut yaml = head.replace("audit_log: audit.log", &format!("audit_log: {audit}"));
    yaml.push_str("\nlisteners:\n");
    let mut addrs = Vec::new();
    for l in listeners {
        let addr = SocketAddr::new(LOCALHOST, free_port(LOCALHOST));
        yaml.push_str(&format!("  - {{listen: \"{addr}\", {l}}}\n"));
        addrs.push(addr);
    }
    std::fs::write(&config, yaml).expect("write config");
    (dir, config, addrs)
}

/// Starts `ippin serve` on `config` and waits for `addrs` to accept.
fn serve(config: &Path, addrs: &[SocketAddr]) -> Child {
    let mut cmd = Command::new(IPPIN);
    cmd.arg("serve").arg("--config").arg(config);
    let mut child = Child::spawn("ippin serve", cmd);
    for addr in addrs {
        let up = wait_until(ippin_test_support::READY_TIMEOUT, || {
            !child.is_running()
                || TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
        });
        assert!(
            up && child.is_running(),
            "ippin serve did not start on {addr}"
        );
    }
    child
}

/// `ippin login` against `login` as `user`, into a fresh folder under `dir`.
fn login(dir: &Path, login: SocketAddr, user: (&str, &str)) -> (crate::support::Ran, PathBuf) {
    let out = tempfile::Builder::new()
        .prefix("login-")
        .tempdir_in(dir)
        .expect("folder")
        .keep();
    let ca = dir.join("ca/tls_ca.pem");
    let url = format!("https://{login}");
    let ran = ippin(
        &[
            "login",
            "--server",
            &url,
            "--user",
            user.0,
            "--ca",
            ca.to_str().expect("UTF-8"),
            "--out",
            out.to_str().expect("UTF-8"),
        ],
        user.1.as_bytes(),
    );
    (ran, out)
}

fn client_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    ippin::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca_pem).expect("CA file") {
        roots.add(c.expect("CA")).expect("CA");
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The first flight of a real TLS client (its ClientHello record).
fn client_hello(ca_pem: &Path) -> Vec<u8> {
    let mut conn =
        rustls::ClientConnection::new(client_config(ca_pem), "localhost".try_into().expect("name"))
            .expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("hello");
    assert!(out.len() > 100, "a ClientHello is a few hundred bytes");
    out
}

/// Connects, sends `bytes`, and vanishes (no FIN wait, no read).
fn send_and_vanish(addr: SocketAddr, bytes: &[u8]) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.write_all(bytes).expect("write");
    drop(tcp);
}

#[test]
fn clients_vanishing_mid_header_mid_handshake_mid_login_do_not_stop_the_service() {
    // 0: login behind a trusted balancer (a header is expected);
    // 1: login for direct clients; 2: tls for direct clients.
    let cluster = Cluster::start(&[
        "kind: login, proxy_protocol: on, trusted_proxies: [127.0.0.1/32]",
        "kind: login, proxy_protocol: off",
        "kind: tls, proxy_protocol: off",
    ]);
    let header = ippin_proxy_protocol::V2Builder::new(ippin_proxy_protocol::Command::Proxy)
        .addresses(ippin_proxy_protocol::Addresses::Tcp4 {
            src: "127.0.0.1:40000".parse().expect("addr"),
            dst: "127.0.0.1:443".parse().expect("addr"),
        })
        .and_then(|b| b.encode())
        .expect("header");
    let hello = client_hello(&cluster.ca_pem());
    for i in 0..10 {
        // In the middle of the PROXY header: the signature and a few bytes.
        send_and_vanish(cluster.addr(0), &header[..12 + i]);
        // In the middle of the TLS handshake: part of the ClientHello.
        send_and_vanish(cluster.addr(1), &hello[..hello.len() / 2 + i]);
        send_and_vanish(cluster.addr(2), &hello[..20 + i]);
    }
    // In the middle of a login request: TLS done, half a request sent.
    for _ in 0..10 {
        let tcp = TcpStream::connect(cluster.addr(1)).expect("connect");
        let conn = rustls::ClientConnection::new(
            client_config(&cluster.ca_pem()),
            "localhost".try_into().expect("name"),
        )
        .expect("client");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(
            b"POST /v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 400\r\n\r\n{\"user\": \"alice\", \"pass",
        )
        .expect("half a request");
        tls.flush().expect("flush");
        drop(tls);
    }
    // Each vanished client is accounted for, and nobody else noticed.
    cluster.wait_audit("a header cut short", |v| {
        v["event"] == "proxy_refused" && v["listener"] == "login"
    });
    cluster.wait_audit("a handshake cut short", |v| {
        v["event"] == "tls_refused" && v["reason"] == "tls_handshake_failed"
    });
    let url = format!("https://{}", cluster.addr(1));
    let alice = cluster.login(&url, ALICE, Some("127.0.0.1")).ok();
    let ok = whoami(&cluster, &alice, cluster.ports[2], "127.0.0.1", &[]).expect(200);
    assert_eq!(ok["user"], "alice");
    // No login was issued for the half requests.
    let issued = cluster
        .audit()
        .iter()
        .filter(|v| v["event"] == "login_issued")
        .count();
    assert_eq!(issued, 1, "{:#?}", cluster.audit());
    let (_, stderr) = cluster.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unreadable_config_or_ca_stops_serve_naming_the_file() {
    // No such configuration.
    let dir = temp_dir();
    let missing = dir.path().join("nowhere/ippin.yaml");
    let ran = ippin(
        &["serve", "--config", missing.to_str().expect("UTF-8")],
        b"",
    );
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("nowhere/ippin.yaml"), "{ran:?}");
    // The configuration is a folder.
    let ran = ippin(
        &["serve", "--config", dir.path().to_str().expect("UTF-8")],
        b"",
    );
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains(dir.path().to_str().expect("UTF-8")),
        "{ran:?}"
    );

    // The X.509 CA certificate is gone; then the CA key is garbage.
    let (dir, config, _) = folder(&["kind: login, proxy_protocol: off"], "audit.log");
    let config_s = config.to_str().expect("UTF-8");
    let ca_cert = dir.path().join("ca/tls_ca.pem");
    let kept = std::fs::read(&ca_cert).expect("CA cert");
    std::fs::remove_file(&ca_cert).expect("remove");
    let ran = ippin(&["serve", "--config", config_s], b"");
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("tls_ca.pem"), "{ran:?}");
    std::fs::write(&ca_cert, kept).expect("restore");
    std::fs::write(dir.path().join("ca/tls_ca.key"), "not a key\n").expect("garble");
    let ran = ippin(&["serve", "--config", config_s], b"");
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("tls_ca.key"), "{ran:?}");
    // The SSH CA key is a folder.
    let ssh_key = dir.path().join("ca/ssh_user_ca");
    std::fs::remove_file(&ssh_key).expect("remove");
    std::fs::create_dir(&ssh_key).expect("mkdir");
    let ran = ippin(&["serve", "--config", config_s], b"");
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains("ssh_user_ca") || ran.stderr.contains("tls_ca.key"),
        "{ran:?}"
    );
}

#[test]
fn a_listener_port_in_use_stops_serve_naming_the_address() {
    let taken = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (dir, config, _) = folder(&["kind: login, proxy_protocol: off"], "audit.log");
    let text = std::fs::read_to_string(&config).expect("config");
    let (head, _) = text.split_once("\nlisteners:").expect("listeners");
    std::fs::write(
        &config,
        format!(
            "{head}\nlisteners:\n  - {{kind: tls, listen: \"127.0.0.1:{port}\", proxy_protocol: off}}\n"
        ),
    )
    .expect("write");
    let ran = ippin(&["serve", "--config", config.to_str().expect("UTF-8")], b"");
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains(&format!("127.0.0.1:{port}")), "{ran:?}");
    assert!(ran.stderr.to_lowercase().contains("in use"), "{ran:?}");
    drop(taken);
    drop(dir);
}

#[test]
fn an_audit_log_that_fails_from_the_start_refuses_logins_fail_closed() {
    // From the start: /dev/full accepts the open, refuses every write (ENOSPC).
    let (dir, config, addrs) = folder(
        &[
            "kind: login, proxy_protocol: off",
            "kind: tls, proxy_protocol: off",
        ],
        "/dev/full",
    );
    let server = serve(&config, &addrs);
    let (ran, out) = login(dir.path(), addrs[0], BOB);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("audit_unavailable"), "{ran:?}");
    assert!(
        !out.join("ippin_tls.pem").exists(),
        "no certificate may be written"
    );
    let (_, stderr) = server.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_audit_log_that_stops_accepting_mid_run_fails_closed_and_the_server_lives_on() {
    // The log is a FIFO read by `cat`: writable while `cat` runs; once it
    // is gone, every write fails (EPIPE), as a log on a dead disk would.
    let dir = temp_dir();
    let fifo = dir.path().join("audit.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let copy = dir.path().join("audit.copy");
    let mut cat = Command::new("sh");
    cat.arg("-c").arg(format!(
        "exec cat '{}' > '{}'",
        fifo.display(),
        copy.display()
    ));
    let reader = Child::spawn("cat audit.fifo", cat);
    let (sdir, config, addrs) = folder(
        &[
            "kind: login, proxy_protocol: off",
            "kind: tls, proxy_protocol: off",
        ],
        fifo.to_str().expect("UTF-8"),
    );
    let mut server = serve(&config, &addrs);
    let (ran, out) = login(sdir.path(), addrs[0], BOB);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(out.join("ippin_tls.pem").exists());
    let logged = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&copy).is_ok_and(|t| t.contains("login_issued"))
    });
    assert!(logged, "the login reached the audit log");

    let whoami = |creds: &Path| {
        let url = format!("https://{}/whoami", addrs[1]);
        let (cert, key) = (creds.join("ippin_tls.pem"), creds.join("ippin_tls.key"));
        let ca = sdir.path().join("ca/tls_ca.pem");
        crate::support::curl(&[
            "--cert",
            cert.to_str().expect("UTF-8"),
            "--key",
            key.to_str().expect("UTF-8"),
            "--cacert",
            ca.to_str().expect("UTF-8"),
            &url,
        ])
    };
    assert_eq!(whoami(&out).expect(200)["user"], "bob");

    // The reader goes away: the log cannot be written any more.
    drop(reader);
    let (ran, later) = login(sdir.path(), addrs[0], BOB);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("audit_unavailable"), "{ran:?}");
    assert!(
        !later.join("ippin_tls.pem").exists(),
        "no certificate without an audit line"
    );
    // An access that would be allowed is not served either.
    assert_eq!(whoami(&out).expect(503)["error"], "audit_unavailable");
    assert!(
        server.is_running(),
        "fail closed refuses the action, not the process"
    );
    let (_, stderr) = server.finish();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A reload (`SIGHUP`: systemd sends it for `systemctl reload`, which it takes as soon as it
/// has started the process) while `serve` still starts, here waiting on an etcd that never
/// answers, does not end the process: it goes on and fails on its own, as it would have
/// (exit 1, naming the store), rather than dying of the signal, which systemd would not
/// restart.
#[test]
fn a_reload_while_serve_starts_does_not_end_it() {
    use std::os::unix::process::ExitStatusExt;
    let silent = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let store = silent.local_addr().expect("addr");
    // Accepts and never answers.
    let _held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in silent.incoming().flatten() {
            kept.push(c);
        }
    });
    let (dir, config, _) = folder(&["kind: login, proxy_protocol: off"], "audit.log");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text = text.replace(
        "\nlisteners:\n",
        &format!(
            "\nbackend:\n  kind: etcd\n  endpoints: [{store}]\n  prefix: /ippin-hup/\n  timeout: 2s\nlisteners:\n"
        ),
    );
    std::fs::write(&config, text).expect("config");
    let mut child = Command::new(IPPIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ippin serve");
    let pid = child.id();
    // The handler is in place once the process catches SIGHUP (bit 0 of `SigCgt`).
    let caught = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & 1 == 1)
    };
    assert!(
        wait_until(ippin_test_support::READY_TIMEOUT, caught),
        "ippin serve never caught SIGHUP"
    );
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        }),
        "ippin serve did not give up on the silent store"
    );
    let status = status.expect("exited");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    assert_eq!(status.signal(), None, "ended by a signal: {status:?} {err}");
    assert_eq!(status.code(), Some(1), "{err}");
    drop(dir);
}
