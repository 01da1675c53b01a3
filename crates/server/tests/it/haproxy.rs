//! HAProxy (TCP mode, `send-proxy-v2` and `send-proxy`) in front of `tls`
//! listeners in each PROXY mode, and hostile PROXY traffic straight to a
//! listener: untrusted peers, a second header, a header that never ends.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ippin_test_support::{Child, free_port, peer, temp_dir};
use serde_json::Value;

use crate::support::{
    ALICE, BOB, Cluster, Daemon, LOCALHOST, LOCALHOST6, ON_V6, whoami, whoami_at,
};

/// Listener indexes in [`cluster`].
const LOGIN: usize = 0;
const TLS_ON: usize = 1;
const TLS_OFF: usize = 2;
const TLS_UNSPECIFIED: usize = 3;

/// The `header_timeout` of the `on` listener.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

fn cluster() -> Cluster {
    Cluster::start(&[
        "kind: login, proxy_protocol: off",
        "kind: tls, proxy_protocol: on, trusted_proxies: [127.0.0.1/32], header_timeout: 1s",
        "kind: tls, proxy_protocol: off",
        "kind: tls",
    ])
}

/// HAProxy frontends on loopback, each relaying to one listener with one
/// `send-proxy` flavour.
pub(crate) struct Haproxy {
    _daemon: Daemon,
    /// Frontend ports, in the order given to [`Haproxy::start`].
    ports: Vec<u16>,
    /// Frontend addresses, same order.
    pub(crate) binds: Vec<SocketAddr>,
}

impl Haproxy {
    pub(crate) fn start(routes: &[(SocketAddr, &str)]) -> Haproxy {
        let on_v4: Vec<_> = routes.iter().map(|(b, o)| (LOCALHOST, *b, *o)).collect();
        Haproxy::start_on(&on_v4)
    }

    /// Like [`Haproxy::start`], with each frontend's bind address.
    fn start_on(routes: &[(IpAddr, SocketAddr, &str)]) -> Haproxy {
        let dir = temp_dir();
        let mut cfg = String::from(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
        );
        let mut ports = Vec::new();
        for (i, (front, backend, send_proxy)) in routes.iter().enumerate() {
            let bind = SocketAddr::new(*front, free_port(*front));
            ports.push(bind);
            cfg.push_str(&format!(
                "frontend fe{i}\n    bind {bind}\n    default_backend be{i}\n\
                 backend be{i}\n    server s{i} {backend} {send_proxy}\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let mut cmd = Command::new(peer("haproxy"));
        cmd.arg("-f").arg(&path).arg("-db");
        let mut daemon = Daemon {
            child: Child::spawn("haproxy", cmd),
            _dir: dir,
        };
        for bind in &ports {
            daemon.wait(*bind);
        }
        let binds = ports;
        let ports = binds.iter().map(SocketAddr::port).collect();
        Haproxy {
            _daemon: daemon,
            ports,
            binds,
        }
    }
}

fn observed_ip(v: &Value) -> String {
    let text = v["observed"].as_str().unwrap_or_default();
    text.rsplit_once(':')
        .map(|(ip, _)| ip.to_owned())
        .unwrap_or_default()
}

#[test]
fn haproxy_in_front_of_each_mode() {
    let cluster = cluster();
    let login_url = format!("https://{}", cluster.addr(LOGIN));
    // alice logs in from 127.0.0.2: her certificates are pinned there.
    let alice = cluster.login(&login_url, ALICE, Some("127.0.0.2")).ok();
    assert_eq!(
        alice.inspect_tls()["pinned"],
        serde_json::json!(["127.0.0.2/32"])
    );
    let bob = cluster.login(&login_url, BOB, Some("127.0.0.2")).ok();

    let lb = Haproxy::start(&[
        (cluster.addr(TLS_ON), "send-proxy-v2"),
        (cluster.addr(TLS_ON), "send-proxy"),
        (cluster.addr(TLS_OFF), "send-proxy-v2"),
        (cluster.addr(TLS_UNSPECIFIED), "send-proxy-v2"),
    ]);
    let [v2, v1, off, unspecified] = lb.ports[..] else {
        panic!("four frontends");
    };

    // Mode on: the observed IP is the client's, not HAProxy's (127.0.0.1),
    // and the pin follows it.
    for (port, via) in [(v2, "proxy_v2"), (v1, "proxy_v1")] {
        let ok = whoami(&cluster, &alice, port, "127.0.0.2", &[]).expect(200);
        assert_eq!(ok["via"], via, "{ok}");
        assert_eq!(observed_ip(&ok), "127.0.0.2", "{ok}");
        let denied = whoami(&cluster, &alice, port, "127.0.0.1", &[]).expect(403);
        assert_eq!(denied["error"], "pinned_ip_mismatch", "{via}: {denied}");
        let bob_ok = whoami(&cluster, &bob, port, "127.0.0.3", &[]).expect(200);
        assert_eq!(observed_ip(&bob_ok), "127.0.0.3", "{bob_ok}");
    }

    // Mode off: the header is refused before TLS.
    whoami(&cluster, &alice, off, "127.0.0.2", &[]).expect_refused();
    cluster.wait_audit("header on an off listener", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "header_forbidden"
    });

    // Unspecified: the header's address is used but never trusted, so a
    // pinned certificate is denied and an unpinned one allowed.
    let denied = whoami(&cluster, &alice, unspecified, "127.0.0.2", &[]).expect(403);
    assert_eq!(denied["error"], "untrusted_client_ip", "{denied}");
    let ok = whoami(&cluster, &bob, unspecified, "127.0.0.2", &[]).expect(200);
    assert_eq!(ok["user"], "bob");
    assert_eq!(ok["observed"], "127.0.0.2:0", "{ok}");

    // A client that sends its own header through HAProxy: HAProxy's header
    // comes first, the client's is a second one.
    whoami(&cluster, &alice, v2, "127.0.0.2", &["--haproxy-protocol"]).expect_refused();
    cluster.wait_audit("a second header", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "duplicate_header"
    });
    drop(lb);
    let (out, err) = cluster.stop();
    assert!(
        !out.contains("panicked") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn hostile_proxy_traffic_straight_to_the_listener() {
    let cluster = cluster();
    let alice = cluster
        .login(
            &format!("https://{}", cluster.addr(LOGIN)),
            ALICE,
            Some("127.0.0.2"),
        )
        .ok();
    let on = cluster.addr(TLS_ON);

    // curl --haproxy-protocol from 127.0.0.2, which is not a trusted proxy:
    // refused, although the header it sends is truthful.
    whoami(
        &cluster,
        &alice,
        on.port(),
        "127.0.0.2",
        &["--haproxy-protocol"],
    )
    .expect_refused();
    let line = cluster.wait_audit("an untrusted proxy", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "untrusted_proxy"
    });
    assert!(
        line["peer"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.2"),
        "{line}"
    );

    // Two headers from a trusted peer: refused, nothing answered.
    let header = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n";
    let mut two = header.to_vec();
    two.extend_from_slice(header);
    let (closed, answer, _) = send_and_wait_close(on, &two, Duration::from_secs(10));
    assert!(
        closed,
        "the listener kept a connection with two headers open"
    );
    assert!(answer.is_empty(), "answered {answer:?}");
    cluster.wait_audit("two headers", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "duplicate_header"
    });

    // A header that never completes: closed at header_timeout (1 s), not
    // before, and well before the 10 s bound.
    let (closed, answer, elapsed) =
        send_and_wait_close(on, b"PROXY TCP4 127.0.0.2 127.0", Duration::from_secs(10));
    assert!(closed, "a stalled header was not closed within 10 s");
    eprintln!("stalled v1 header: closed {elapsed:?} after the last byte (header_timeout 1 s)");
    assert!(answer.is_empty(), "answered {answer:?}");
    assert!(
        elapsed >= HEADER_TIMEOUT.mul_f32(0.9),
        "closed after {elapsed:?}, before the header timeout"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );
    cluster.wait_audit("a stalled header", |v| {
        v["event"] == "proxy_refused" && v["reason"] == "timeout"
    });

    // The same for a v2 header cut after its fixed part.
    let mut v2 = ippin_proxy_protocol::V2_SIGNATURE.to_vec();
    v2.extend([0x21, 0x11, 0x00, 0x0C, 127, 0]);
    let (closed, _, elapsed) = send_and_wait_close(on, &v2, Duration::from_secs(10));
    assert!(
        closed && elapsed >= HEADER_TIMEOUT.mul_f32(0.9) && elapsed < Duration::from_secs(5),
        "closed: {closed}, after {elapsed:?}"
    );
}

/// Connects from 127.0.0.1, sends `bytes`, and reads until the server
/// closes or `bound` passes. Returns whether it closed, what it sent back,
/// and when it closed (from the moment the bytes were sent).
fn send_and_wait_close(
    addr: SocketAddr,
    bytes: &[u8],
    bound: Duration,
) -> (bool, Vec<u8>, Duration) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.write_all(bytes).expect("send");
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = bound.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (false, answer, start.elapsed());
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (true, answer, start.elapsed()),
            Ok(n) => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {
                return (true, answer, start.elapsed());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn haproxy_over_ipv6_with_tlvs_and_crc32c() {
    let cluster = Cluster::start(&[
        &format!("{ON_V6}kind: login, proxy_protocol: off"),
        &format!(
            "{ON_V6}kind: tls, proxy_protocol: on, trusted_proxies: [\"::1/128\", 127.0.0.1/32], header_timeout: 1s"
        ),
    ]);
    let login_url = format!("https://{}", cluster.addr(0));
    let alice = cluster.login(&login_url, ALICE, Some("::1")).ok();
    assert_eq!(
        alice.inspect_tls()["pinned"],
        serde_json::json!(["::1/128"])
    );
    let tls = cluster.addr(1);
    let lb = Haproxy::start_on(&[
        (
            LOCALHOST6,
            tls,
            "send-proxy-v2 proxy-v2-options crc32c,unique-id",
        ),
        (LOCALHOST, tls, "send-proxy-v2 proxy-v2-options crc32c"),
        (LOCALHOST6, tls, "send-proxy"),
    ]);
    // From ::1 through HAProxy (v2 with CRC32C and TLVs, and v1 TCP6): the
    // observed client is ::1, the pin holds.
    for (bind, via) in [(lb.binds[0], "proxy_v2"), (lb.binds[2], "proxy_v1")] {
        let ok = whoami_at(&cluster, &alice, bind, "::1", &[]).expect(200);
        assert_eq!(ok["via"], via, "{ok}");
        assert_eq!(observed_ip(&ok), "[::1]", "{ok}");
    }
    // From 127.0.0.1 through HAProxy to the same IPv6 listener: the header
    // says 127.0.0.1, which is not the pinned ::1.
    let denied = whoami_at(&cluster, &alice, lb.binds[1], "127.0.0.1", &[]).expect(403);
    assert_eq!(denied["error"], "pinned_ip_mismatch", "{denied}");
}

/// Accepts connections on `listener` until one carries a PROXY header
/// whose source IP is `from` (readiness probes come from elsewhere), and
/// returns what it sent: the whole header and the first application bytes
/// after it (read until some arrive, the peer closes, or the time is up).
/// Bounded by 10 s.
fn capture_header(listener: &std::net::TcpListener, from: IpAddr) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    listener.set_nonblocking(true).expect("non-blocking");
    while Instant::now() < deadline {
        let mut conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut bytes = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            match ippin_proxy_protocol::parse(&bytes) {
                Err(e) if e.is_incomplete() => {}
                // The header alone so far, from the client awaited: its first bytes
                // follow (the header and the request may come in two segments).
                Ok((h, used))
                    if used == bytes.len() && h.source().map(|s| s.ip()) == Some(from) => {}
                _ => break,
            }
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(_) => {}
            }
        }
        let source = ippin_proxy_protocol::parse(&bytes)
            .ok()
            .and_then(|(h, _)| h.source());
        if source.map(|s| s.ip()) == Some(from) {
            return bytes;
        }
    }
    panic!("no PROXY header from {from} within 10 s");
}

#[test]
fn inspect_proxy_reads_what_haproxy_and_curl_send() {
    let capture = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let target = capture.local_addr().expect("address");
    let lb = Haproxy::start(&[(target, "send-proxy-v2 proxy-v2-options crc32c,unique-id")]);
    let url = format!("http://127.0.0.1:{}/", lb.ports[0]);
    let client = std::thread::spawn(move || {
        crate::support::curl(&["--interface", "127.0.0.2", "--max-time", "3", &url])
    });
    let bytes = capture_header(&capture, "127.0.0.2".parse().expect("IP"));
    let _ = client.join();
    let ran = crate::support::ippin(&["inspect", "proxy", "-"], &bytes);
    assert_eq!(ran.code, Some(0), "{ran:?} on {bytes:02x?}");
    let got: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(got["version"], 2);
    assert_eq!(got["command"], "proxy");
    assert_eq!(got["family"], "tcp4");
    assert!(
        got["source"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.2:"),
        "{got}"
    );
    assert_eq!(got["destination"], format!("127.0.0.1:{}", lb.ports[0]));
    assert_eq!(got["crc32c"], "valid");
    let types: Vec<u64> = got["tlvs"]
        .as_array()
        .expect("tlvs")
        .iter()
        .filter_map(|t| t["type"].as_u64())
        .collect();
    assert!(types.contains(&3), "CRC32C TLV missing: {got}");

    // curl's own v1 header, straight.
    let url = format!("http://{target}/");
    let client = std::thread::spawn(move || {
        crate::support::curl(&[
            "--interface",
            "127.0.0.2",
            "--haproxy-protocol",
            "--max-time",
            "3",
            &url,
        ])
    });
    let bytes = capture_header(&capture, "127.0.0.2".parse().expect("IP"));
    let _ = client.join();
    let ran = crate::support::ippin(&["inspect", "proxy", "-"], &bytes);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let got: Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(got["version"], 1);
    assert_eq!(got["family"], "tcp4");
    assert!(
        got["source"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.2:"),
        "{got}"
    );
    assert_eq!(got["destination"], target.to_string());
    // The HTTP request that followed is the application's, not a header.
    assert!(bytes.len() > got["header_len"].as_u64().unwrap_or(0) as usize);
}
