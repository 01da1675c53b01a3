//! The login listener against an attacker, on the real `ippin serve`: a
//! name locked after five bad passwords (with `ippin login` and curl), the
//! lock ending at its time, one address holding connections open, and a
//! request body that trickles in.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ippin_test_support::{peer, wait_until};
use serde_json::Value;

use crate::support::{ALICE, BOB, Cluster, curl};

const LOGIN: &str = "kind: login, proxy_protocol: off";

/// `POST /v1/login` with curl from `from`: `user` and `password`, keys that
/// are never looked at (the password is checked first).
fn post_login(cluster: &Cluster, from: &str, user: &str, password: &str) -> crate::support::Http {
    let body = serde_json::json!({
        "user": user, "password": password,
        "ssh_public_key": "ssh-ed25519 AAAA", "tls_public_key": "not read"
    })
    .to_string();
    let url = format!("https://{}/v1/login", cluster.addr(0));
    let ca = cluster.ca_pem();
    curl(&[
        "--interface",
        from,
        "--cacert",
        ca.to_str().expect("UTF-8"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
        &url,
    ])
}

fn parse_time(text: &Value) -> SystemTime {
    humantime::parse_rfc3339(text.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not RFC 3339: {text}: {e}"))
}

/// Five bad passwords lock alice: the fifth answer is 429 `user_locked` and
/// says until when (about 20 minutes, the default), `ippin login` prints it;
/// a sixth attempt with the RIGHT password is refused with the same lock;
/// bob logs in meanwhile; a name no user has answers exactly the same way.
#[test]
fn five_bad_passwords_lock_alice_but_not_bob_and_unknown_names_lock_alike() {
    let cluster = Cluster::start(&[LOGIN]);
    let url = format!("https://{}", cluster.addr(0));
    let started = SystemTime::now();
    for i in 1..=5 {
        let ran = cluster
            .login(&url, ("alice", "not-her-password"), Some("127.0.0.1"))
            .ran;
        assert_eq!(ran.code, Some(1), "{ran:?}");
        if i < 5 {
            assert!(ran.stderr.contains("HTTP 401: bad_credentials"), "{ran:?}");
        } else {
            assert!(ran.stderr.contains("HTTP 429: user_locked"), "{ran:?}");
            assert!(ran.stderr.contains("after 5 failed logins"), "{ran:?}");
            assert!(ran.stderr.contains("locked until 20"), "{ran:?}");
        }
    }
    // The right password, during the lock: refused, and `ippin login` says why.
    let ran = cluster.login(&url, ALICE, Some("127.0.0.1")).ran;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("HTTP 429: user_locked"), "{ran:?}");
    assert!(!cluster.audit().iter().any(|e| e["event"] == "login_issued"));

    let locked = post_login(&cluster, "127.0.0.2", ALICE.0, ALICE.1).expect(429);
    assert_eq!(locked["error"], "user_locked");
    let until = parse_time(&locked["locked_until"]);
    let lock = until.duration_since(started).expect("in the future");
    assert!(
        lock > Duration::from_secs(19 * 60) && lock <= Duration::from_secs(21 * 60),
        "{lock:?}"
    );
    let message = locked["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "locked until {} after 5 failed logins",
            locked["locked_until"].as_str().unwrap_or_default()
        )),
        "{message}"
    );
    // A wrong password now gets the very same answer.
    let wrong = post_login(&cluster, "127.0.0.2", "alice", "wrong").expect(429);
    assert_eq!(wrong, locked);

    // bob is not affected.
    cluster.login(&url, BOB, Some("127.0.0.1")).ok();

    // A name that no user has: the same answers, the same lock.
    for _ in 1..=4 {
        let r = post_login(&cluster, "127.0.0.3", "nobody", "x").expect(401);
        assert_eq!(r["error"], "bad_credentials");
    }
    let nobody = post_login(&cluster, "127.0.0.3", "nobody", "x").expect(429);
    assert_eq!(nobody["error"], "user_locked");
    assert_eq!(
        nobody["message"]
            .as_str()
            .unwrap_or_default()
            .replace(nobody["locked_until"].as_str().unwrap_or_default(), "T"),
        message.replace(locked["locked_until"].as_str().unwrap_or_default(), "T")
    );
    let line = cluster.wait_audit("alice's lock", |v| {
        v["event"] == "login_locked" && v["user"] == "alice"
    });
    assert_eq!(line["reason"], "user_locked");
    assert_eq!(line["failures"], 5);
    cluster.wait_audit("the lock of a name no user has", |v| {
        v["event"] == "login_locked" && v["user"] == "nobody"
    });
}

/// With `lockout: 2s`, alice is locked after five bad passwords and logs in
/// again once the lock is over (polled, bounded), not before its time.
#[test]
fn the_lock_ends_at_its_time() {
    let cluster = Cluster::start_with("login_limits: {lockout: 2s}\n", &[LOGIN]);
    let url = format!("https://{}", cluster.addr(0));
    for _ in 1..=4 {
        post_login(&cluster, "127.0.0.1", "alice", "wrong").expect(401);
    }
    let locked = post_login(&cluster, "127.0.0.1", "alice", "wrong").expect(429);
    let until = parse_time(&locked["locked_until"]);
    let mut refusals = Vec::new();
    let mut done = None;
    let ok = wait_until(Duration::from_secs(60), || {
        let login = cluster.login(&url, ALICE, Some("127.0.0.1"));
        if login.ran.code == Some(0) {
            done = Some(SystemTime::now());
            return true;
        }
        refusals.push(login.ran.stderr);
        false
    });
    assert!(ok, "alice never logged in again: {refusals:?}");
    // `locked_until` is rounded up to the second: success comes after it
    // (with the second's slack), and every refusal before was the lock.
    let done = done.expect("logged in");
    assert!(done + Duration::from_secs(1) >= until, "{done:?} {until:?}");
    for r in &refusals {
        assert!(r.contains("user_locked"), "{r}");
    }
}

/// A TCP connection from `from` to `to` (raw socket, bound first).
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tcp = runtime.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind(SocketAddr::new(from, 0)).expect("bind");
        s.connect(to).await.expect("connect")
    });
    let tcp = tcp.into_std().expect("std socket");
    tcp.set_nonblocking(false).expect("blocking");
    tcp
}

/// One address holds at most `MAX_TLS_PER_PEER` connections of a `tls` listener: the ones
/// beyond are closed at once (audited `too_many_connections`), while the first wait in their
/// handshakes; another address is not refused.
#[test]
fn one_address_cannot_hold_the_tls_listener() {
    const EXTRA: usize = 2;
    let max = ippin::state::MAX_TLS_PER_PEER;
    let cluster = Cluster::start_with("", &["kind: tls, proxy_protocol: off, header_timeout: 60s"]);
    let addr = cluster.addr(0);
    let attacker: IpAddr = "127.0.0.5".parse().expect("ip");
    // Each sends the first byte of a TLS record: past the PROXY stage, waiting in its
    // handshake (10 s).
    let mut conns: Vec<TcpStream> = (0..max + EXTRA)
        .map(|_| {
            let mut c = connect_from(attacker, addr);
            c.write_all(b"\x16").expect("write");
            c.set_nonblocking(true).expect("nonblocking");
            c
        })
        .collect();
    let is_closed = |c: &mut TcpStream| -> bool {
        let mut buf = [0u8; 8];
        match c.read(&mut buf) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    let t = Instant::now();
    let mut closed = 0;
    let found = wait_until(Duration::from_secs(5), || {
        closed = conns.iter_mut().map(is_closed).filter(|c| *c).count();
        closed >= EXTRA
    });
    assert!(found, "closed {closed}; audit: {:?}", cluster.audit());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(closed, EXTRA, "only the ones beyond the share");
    let line = cluster.wait_audit("the refused connection", |v| {
        v["event"] == "connection_refused"
            && v["reason"] == "too_many_connections"
            && v["listener"] == "tls"
    });
    assert_eq!(line["limit"], max);
    // Another address is not refused: its connection waits in its handshake too. No sleep:
    // a later connection from that address, refused for what it sends (not TLS), is a mark
    // in the audit log; had `other` been refused for its count, at its accept, that line
    // would be there before the mark.
    let six: IpAddr = "127.0.0.6".parse().expect("ip");
    let mut other = connect_from(six, addr);
    other.write_all(b"\x16").expect("write");
    other.set_nonblocking(true).expect("nonblocking");
    let mut mark = connect_from(six, addr);
    mark.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let from_six = |v: &serde_json::Value| {
        v["peer"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.6:")
    };
    cluster.wait_audit("the mark's refusal", |v| {
        v["event"] == "tls_refused" && from_six(v)
    });
    assert!(
        !cluster
            .audit()
            .iter()
            .any(|v| v["event"] == "connection_refused" && from_six(v)),
        "another address was refused: {:?}",
        cluster.audit()
    );
    assert!(!is_closed(&mut other), "another address was closed");
    drop(conns);
}

/// One address holding `max_connections_per_peer` connections open gets
/// its next one closed at once (audited `too_many_connections`); another
/// address is served meanwhile, and a place given back is usable again.
#[test]
fn one_address_cannot_hold_the_login_listener() {
    let cluster = Cluster::start_with(
        "login_limits: {max_connections_per_peer: 4}\n",
        &["kind: login, proxy_protocol: off, header_timeout: 60s"],
    );
    let addr = cluster.addr(0);
    let attacker: IpAddr = "127.0.0.5".parse().expect("ip");
    // Five connections that never send a byte (header_timeout 60 s). The
    // server counts them in the order its tasks run, so which one is over the
    // limit is not fixed: exactly one is closed, at once, and four stay.
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect_from(attacker, addr)).collect();
    for c in &conns {
        c.set_nonblocking(true).expect("nonblocking");
    }
    let t = Instant::now();
    let mut closed = None;
    let found = wait_until(Duration::from_secs(10), || {
        closed = conns.iter_mut().position(|c| {
            let mut buf = [0u8; 8];
            match c.read(&mut buf) {
                Ok(n) => n == 0,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            }
        });
        closed.is_some()
    });
    assert!(
        found,
        "no connection from one address was closed; audit: {:?}",
        cluster.audit()
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    let mut held: Vec<TcpStream> = conns;
    held.remove(closed.expect("found"));
    let line = cluster.wait_audit("the refused connection", |v| {
        v["event"] == "connection_refused" && v["reason"] == "too_many_connections"
    });
    assert!(
        line["peer"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.5:"),
        "{line}"
    );
    assert_eq!(line["limit"], 4);
    // Another address is served.
    let url = format!("https://{addr}");
    cluster.login(&url, BOB, Some("127.0.0.6")).ok();
    // The other four are still open (not collateral): checked after that login, a mark
    // later than the refusal, not after a sleep.
    for s in &mut held {
        let mut buf = [0u8; 8];
        assert!(
            matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a held connection was closed"
        );
    }
    // Closing one held connection gives its place back (bounded poll).
    drop(held.pop());
    let ok = wait_until(Duration::from_secs(20), || {
        cluster
            .login(&url, BOB, Some("127.0.0.5"))
            .ran
            .code
            .is_some_and(|c| c == 0)
    });
    assert!(ok, "the place was not given back");
    drop(held);
}

/// A request whose head arrives and whose body then trickles in (one byte
/// every 200 ms, never finished) is answered 408 `body_timeout` at the
/// configured `body_timeout` (1 s), well before the head (10 s) and
/// connection (30 s) timeouts; audited with that reason. The client is
/// `openssl s_client`.
#[test]
fn a_trickling_body_is_cut_at_the_body_timeout() {
    let cluster = Cluster::start_with("login_limits: {body_timeout: 1s}\n", &[LOGIN]);
    let addr = cluster.addr(0);
    let mut child = Command::new(peer("openssl"))
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-CAfile",
            cluster.ca_pem().to_str().expect("UTF-8"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = stdout.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            Instant::now(),
        )
    });
    let head = "POST /v1/login HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    stdin.write_all(head.as_bytes()).expect("head");
    stdin.flush().expect("flush");
    let sent = Instant::now();
    // Dribble until the server answers and closes (bounded: 20 s).
    while !reader.is_finished() && sent.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        if stdin.write_all(b" ").and_then(|()| stdin.flush()).is_err() {
            break;
        }
    }
    drop(stdin);
    let (answer, at) = reader.join().expect("reader");
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
    // Cut at the configured 1 s (not the default 5 s, nor the head or
    // connection timeouts), with a wide margin for a loaded machine.
    let took = at.duration_since(sent);
    assert!(took >= Duration::from_secs(1), "cut early: {took:?}");
    assert!(took < Duration::from_secs(4), "cut only after {took:?}");
    let line = cluster.wait_audit("the body timeout", |v| {
        v["event"] == "login_refused" && v["reason"] == "body_timeout"
    });
    assert!(
        line["observed"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1:"),
        "{line}"
    );
}

/// One address that keeps failing, each time with another name (so no name
/// locks), is throttled for every name, bob's right password included,
/// with `429 peer_throttled`; bob from another address logs in.
#[test]
fn an_address_spraying_names_is_throttled_and_another_is_not() {
    let cluster = Cluster::start_with("login_limits: {peer_max_failures: 3}\n", &[LOGIN]);
    for name in ["carol", "dave", "erin"] {
        post_login(&cluster, "127.0.0.7", name, "guess").expect(401);
    }
    let throttled = post_login(&cluster, "127.0.0.7", BOB.0, BOB.1).expect(429);
    assert_eq!(throttled["error"], "peer_throttled");
    parse_time(&throttled["locked_until"]);
    let url = format!("https://{}", cluster.addr(0));
    let ran = cluster.login(&url, BOB, Some("127.0.0.7")).ran;
    assert!(ran.stderr.contains("HTTP 429: peer_throttled"), "{ran:?}");
    cluster.login(&url, BOB, Some("127.0.0.8")).ok();
    let line = cluster.wait_audit("the throttle", |v| {
        v["event"] == "login_locked" && v["reason"] == "peer_throttled"
    });
    assert!(
        line["observed"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.7:"),
        "{line}"
    );
}
