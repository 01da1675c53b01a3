//! In-process end-to-end tests: a real server on loopback ports, real
//! client sockets bound to chosen 127.0.0.0/8 addresses, real TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ippin_proxy_protocol as pp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, ClientError, Credentials, Endpoint};
use crate::config::Config;
use crate::server::{self, Running};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const CAFE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

struct Fixture {
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    audit_log: PathBuf,
    ca_pem: String,
    running: Running,
}

impl Fixture {
    /// A server whose `listeners:` block is `listeners`, with users alice
    /// (pinned-ip) and bob (dev), and the audit log at `audit` (relative to
    /// the folder) .
    async fn start_with_audit(listeners: &str, audit: &str) -> Fixture {
        Fixture::start_tuned(listeners, audit, |_| {}).await
    }

    /// As [`Fixture::start_with_audit`], with `tune` applied to the state
    /// before the listeners start.
    async fn start_tuned(
        listeners: &str,
        audit: &str,
        tune: impl FnOnce(&mut server::State),
    ) -> Fixture {
        let dir = ippin_test_support::temp_dir();
        let mut users = String::new();
        for (name, role) in [("alice", "pinned-ip"), ("bob", "dev")] {
            let hash = crate::users::hash_password_light(&format!("{name}-pw")).unwrap();
            users.push_str(&format!(
                "  - {{name: {name}, password_hash: \"{hash}\", roles: [{role}]}}\n"
            ));
        }
        let text = format!(
            "cluster_name: test\nca: {{ssh_key: ca/ssh_user_ca, tls_cert: ca/tls_ca.pem, tls_key: ca/tls_ca.key}}\n\
             server_tls: {{cert: server.pem, key: server.key}}\nroles: [roles.yaml]\nusers:\n{users}\
             cert_ttl: 1h\naudit_log: {audit}\nlisteners:\n{listeners}"
        );
        let path = crate::ca::init_at(dir.path(), SystemTime::now(), &text).unwrap();
        let config = Config::load(&path).unwrap();
        let audit_log = config.audit_log.clone();
        let ca_pem = std::fs::read_to_string(&config.ca.tls_cert).unwrap();
        let mut state = server::State::load(config).unwrap();
        tune(&mut state);
        let running = server::start_with(std::sync::Arc::new(state))
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            config_path: path,
            audit_log,
            ca_pem,
            running,
        }
    }

    async fn start(listeners: &str) -> Fixture {
        Fixture::start_with_audit(listeners, "audit.log").await
    }

    fn ep(&self, listener: usize, from: IpAddr) -> Endpoint {
        Endpoint::new(self.running.addr(listener).unwrap(), self.ca_pem.clone()).from_ip(from)
    }

    /// The audit events once `ready` holds for them (the server writes
    /// refusals after closing the connection, so a test polls, bounded).
    async fn audit_when(
        &self,
        ready: impl Fn(&[serde_json::Value]) -> bool + Send + 'static,
    ) -> Vec<serde_json::Value> {
        let log = self.audit_log.clone();
        let read = move || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        tokio::task::spawn_blocking(move || {
            ippin_test_support::wait_until(Duration::from_secs(10), || ready(&read()));
            read()
        })
        .await
        .unwrap()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

const DIRECT: &str = "  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: off}\n  - {kind: tls, listen: 127.0.0.1:0, proxy_protocol: off}\n";

fn refusal(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Refused {
            status,
            error,
            message,
        }) => (status, error, message),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let addrs = match (src, dst) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => pp::Addresses::Tcp4 { src, dst },
        _ => panic!("v4 only here"),
    };
    pp::V2Builder::new(pp::Command::Proxy)
        .addresses(addrs)
        .unwrap()
        .encode()
        .unwrap()
}

async fn login(ep: &Endpoint, user: &str) -> Result<Credentials, ClientError> {
    client::login(ep, user, &format!("{user}-pw")).await
}

#[tokio::test]
async fn pinned_login_then_access_from_the_pinned_ip_only() {
    let f = Fixture::start(DIRECT).await;
    let alice = login(&f.ep(0, HOME), "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.1"));
    // The certificates carry the pin, read back by the certificate library.
    let der = crate::ca::pem_to_der(&alice.tls_cert_pem, "CERTIFICATE").unwrap();
    assert_eq!(ippin_cert::x509::pinned_ip_fast(&der).unwrap(), Some(HOME));
    let ssh = ippin_cert::ssh::parse_certificate(&alice.ssh_certificate).unwrap();
    assert_eq!(
        ssh.critical_options()
            .get("source-address")
            .map(String::as_str),
        Some("127.0.0.1/32")
    );

    let who = client::whoami(&f.ep(1, HOME), &alice).await.unwrap();
    assert_eq!(who.user, "alice");
    assert_eq!(who.roles, vec!["pinned-ip".to_owned()]);
    assert_eq!(who.via, "direct");
    assert_eq!(who.pinned.as_deref(), Some("127.0.0.1"));
    assert!(who.observed.starts_with("127.0.0.1:"), "{}", who.observed);

    let (status, code, message) = refusal(client::whoami(&f.ep(1, CAFE), &alice).await);
    assert_eq!((status, code.as_str()), (403, "pinned_ip_mismatch"));
    assert!(message.contains("log in again"), "{message}");

    // Logging in again from the café pins there.
    let alice2 = login(&f.ep(0, CAFE), "alice").await.unwrap();
    assert_eq!(alice2.pinned_ip.as_deref(), Some("127.0.0.2"));
    assert!(client::whoami(&f.ep(1, CAFE), &alice2).await.is_ok());
    assert!(client::whoami(&f.ep(1, HOME), &alice2).await.is_err());

    // bob is not pinned and works from both.
    let bob = login(&f.ep(0, HOME), "bob").await.unwrap();
    assert_eq!(bob.pinned_ip, None);
    assert!(client::whoami(&f.ep(1, HOME), &bob).await.is_ok());
    let who = client::whoami(&f.ep(1, CAFE), &bob).await.unwrap();
    assert_eq!(who.pinned, None);

    let events = f.audit();
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "access_denied")
        .collect();
    assert_eq!(denied.len(), 2, "{events:?}");
    assert_eq!(denied[0]["user"], "alice");
    assert_eq!(denied[0]["reason"], "pinned_ip_mismatch");
    assert_eq!(denied[0]["pinned"], "127.0.0.1");
    assert!(
        denied[0]["observed"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:")
    );
    assert_eq!(denied[0]["provenance"], "direct");
    let issued = events
        .iter()
        .filter(|e| e["event"] == "login_issued")
        .count();
    assert_eq!(issued, 3);
}

#[tokio::test]
async fn bad_credentials_are_401_and_audited() {
    let f = Fixture::start(DIRECT).await;
    let r = client::login(&f.ep(0, HOME), "alice", "wrong").await;
    assert_eq!(refusal(r).0, 401);
    let r = client::login(&f.ep(0, HOME), "nobody", "x").await;
    let (status, code, _) = refusal(r);
    assert_eq!((status, code.as_str()), (401, "bad_credentials"));
    let events = f.audit();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["event"] == "login_refused"));
    assert_eq!(events[1]["user"], "nobody");
}

#[tokio::test]
async fn renewal_keeps_the_pin_and_the_login_ip() {
    let f = Fixture::start(DIRECT).await;
    let alice = login(&f.ep(0, CAFE), "alice").await.unwrap();
    let renewed = client::renew(&f.ep(1, CAFE), &alice).await.unwrap();
    assert_eq!(renewed.pinned_ip.as_deref(), Some("127.0.0.2"));
    let der = crate::ca::pem_to_der(&renewed.tls_cert_pem, "CERTIFICATE").unwrap();
    let id = ippin_cert::x509::client_identity(&der).unwrap();
    assert_eq!(id.pin, Some(CAFE.into()));
    assert_eq!(id.login_ip, Some(CAFE));
    assert_ne!(renewed.tls_key_pem, alice.tls_key_pem, "fresh keys");
    // The renewed certificate works from the pinned IP only.
    assert!(client::whoami(&f.ep(1, CAFE), &renewed).await.is_ok());
    // Renewal from elsewhere is denied by the pin check.
    let (status, code, _) = refusal(client::renew(&f.ep(1, HOME), &renewed).await);
    assert_eq!((status, code.as_str()), (403, "pinned_ip_mismatch"));
    // An unpinned user renews unpinned.
    let bob = login(&f.ep(0, HOME), "bob").await.unwrap();
    let bob2 = client::renew(&f.ep(1, CAFE), &bob).await.unwrap();
    assert_eq!(bob2.pinned_ip, None);
    // A body that is no renewal request is refused, and audited as a refused renewal.
    let (status, _) = client::request(
        &f.ep(1, CAFE),
        Some((&bob).into()),
        hyper::Method::POST,
        "/v1/renew",
        Some(b"not json".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    let events = f.audit();
    assert!(
        events.iter().any(|e| e["event"] == "renew_refused"
            && e["user"] == "bob"
            && e["reason"] == "bad_request"),
        "{events:#?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "renew_issued")
            .count(),
        2
    );
}

#[tokio::test]
async fn login_endpoint_refuses_unknown_paths_and_bad_bodies() {
    let f = Fixture::start(DIRECT).await;
    let ep = f.ep(0, HOME);
    let (status, _) = client::request(&ep, None, hyper::Method::GET, "/v1/login", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, body) = client::request(
        &ep,
        None,
        hyper::Method::POST,
        "/v1/login",
        Some(br#"{"user":"alice","password":"alice-pw","extra":1}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let big = vec![b' '; crate::http::MAX_BODY_BYTES + 10];
    let result = client::request(&ep, None, hyper::Method::POST, "/v1/login", Some(big)).await;
    match result {
        Ok((status, _)) => assert_eq!(status, 413),
        // The server may close while the client is still sending.
        Err(ClientError::Closed(_)) => {}
        Err(e) => panic!("{e}"),
    }
    // The key fields are checked.
    let body = serde_json::json!({
        "user": "bob", "password": "bob-pw",
        "ssh_public_key": "ssh-ed25519 garbage", "tls_public_key": "nope"
    });
    let (status, body) = client::request(
        &ep,
        None,
        hyper::Method::POST,
        "/v1/login",
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("bad_public_key"));
}

#[tokio::test]
async fn tls_listener_without_a_client_certificate_is_closed() {
    let f = Fixture::start(DIRECT).await;
    let r = client::request(&f.ep(1, HOME), None, hyper::Method::GET, "/whoami", None).await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
}

const PROXY_ON: &str = "  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: on, trusted_proxies: [127.0.0.3/32]}\n  - {kind: tls, listen: 127.0.0.1:0, proxy_protocol: on, trusted_proxies: [127.0.0.3/32], header_timeout: 1s}\n  - {kind: tls, listen: 127.0.0.1:0}\n  - {kind: tls, listen: 127.0.0.1:0, proxy_protocol: off}\n  - {kind: login, listen: 127.0.0.1:0}\n";

#[tokio::test]
async fn proxy_mode_on_follows_the_client_behind_a_trusted_balancer() {
    let f = Fixture::start(PROXY_ON).await;
    let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let login_ep = f
        .ep(0, LB)
        .with_proxy_header(v2(client, f.running.addr(0).unwrap()));
    let alice = login(&login_ep, "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("203.0.113.7"));

    let tls = f.running.addr(1).unwrap();
    let who = client::whoami(&f.ep(1, LB).with_proxy_header(v2(client, tls)), &alice)
        .await
        .unwrap();
    assert_eq!(who.observed, "203.0.113.7:40000");
    assert_eq!(who.via, "proxy_v2");
    // The balancer reports another client: the pin follows the client.
    let other: SocketAddr = "203.0.113.8:40000".parse().unwrap();
    let (_, code, _) =
        refusal(client::whoami(&f.ep(1, LB).with_proxy_header(v2(other, tls)), &alice).await);
    assert_eq!(code, "pinned_ip_mismatch");
    // v1 works the same.
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40001 {}\r\n", tls.port()).into_bytes();
    assert!(
        client::whoami(&f.ep(1, LB).with_proxy_header(v1), &alice)
            .await
            .is_ok()
    );
    // Without a header: refused before TLS.
    let r = client::whoami(&f.ep(1, LB), &alice).await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    // A header from a peer that is not a trusted proxy: refused.
    let r = client::whoami(
        &f.ep(1, STRANGER).with_proxy_header(v2(client, tls)),
        &alice,
    )
    .await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    // Two headers: refused.
    let mut two = v2(client, tls);
    two.extend(v2(client, tls));
    let r = client::whoami(&f.ep(1, LB).with_proxy_header(two), &alice).await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");

    let refused: Vec<String> = f
        .audit_when(|events| {
            events
                .iter()
                .filter(|e| e["event"] == "proxy_refused")
                .count()
                >= 3
        })
        .await
        .iter()
        .filter(|e| e["event"] == "proxy_refused")
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        refused,
        ["header_required", "untrusted_proxy", "duplicate_header"]
    );
}

#[tokio::test]
async fn proxy_mode_off_refuses_headers_and_unspecified_trusts_none() {
    let f = Fixture::start(PROXY_ON).await;
    let bob = login(
        &f.ep(0, LB).with_proxy_header(v2(
            "127.0.0.9:1".parse().unwrap(),
            f.running.addr(0).unwrap(),
        )),
        "bob",
    )
    .await
    .unwrap();
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // Unspecified (listener 2): direct clients are fine ...
    let alice_direct = {
        // alice logs in through the balancer as 127.0.0.1 to get a pin there.
        let ep = f
            .ep(0, LB)
            .with_proxy_header(v2(client, f.running.addr(0).unwrap()));
        login(&ep, "alice").await.unwrap()
    };
    assert_eq!(alice_direct.pinned_ip.as_deref(), Some("127.0.0.1"));
    assert!(client::whoami(&f.ep(2, HOME), &alice_direct).await.is_ok());
    // ... but a header there is never trusted: pinned users are denied,
    let unspec = f.running.addr(2).unwrap();
    let (_, code, message) = refusal(
        client::whoami(
            &f.ep(2, LB).with_proxy_header(v2(client, unspec)),
            &alice_direct,
        )
        .await,
    );
    assert_eq!(code, "untrusted_client_ip");
    assert!(message.contains("log in again"));
    // ... unpinned users are allowed, seen with port 0 (untrusted).
    let who = client::whoami(&f.ep(2, LB).with_proxy_header(v2(client, unspec)), &bob)
        .await
        .unwrap();
    assert_eq!(who.observed, "127.0.0.1:0");
    // Mode off (listener 3): any header is refused before TLS.
    let off = f.running.addr(3).unwrap();
    let r = client::whoami(&f.ep(3, LB).with_proxy_header(v2(client, off)), &bob).await;
    assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    // A pinned login through an unspecified login listener is refused.
    let ulogin = f.running.addr(4).unwrap();
    let r = login(&f.ep(4, LB).with_proxy_header(v2(client, ulogin)), "alice").await;
    let (status, code, _) = refusal(r);
    assert_eq!((status, code.as_str()), (403, "untrusted_client_ip"));
}

#[tokio::test]
async fn a_header_that_never_completes_is_closed_at_the_timeout() {
    let f = Fixture::start(PROXY_ON).await;
    let addr = f.running.addr(1).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(LB, 0)).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let header = v2("203.0.113.7:1".parse().unwrap(), addr);
    tcp.write_all(&header[..10]).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes (EOF or reset) on its own; the bound here only keeps
    // a broken server from hanging the test.
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected the server to close, got {other:?}"),
    }
    let events = f
        .audit_when(|events| events.iter().any(|e| e["event"] == "proxy_refused"))
        .await;
    assert_eq!(events.last().unwrap()["reason"], "timeout", "{events:?}");
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_when_enabled() {
    let listeners = "  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: off, trust_x_forwarded_for: true, trusted_proxies: [127.0.0.3/32]}\n  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: off}\n  - {kind: login, listen: 127.0.0.1:0, trust_x_forwarded_for: true, trusted_proxies: [127.0.0.3/32]}\n";
    let f = Fixture::start(listeners).await;
    // From the trusted L7 proxy: the client's address is pinned.
    let ep = f.ep(0, LB).with_header("X-Forwarded-For", "127.0.0.9");
    let alice = login(&ep, "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.9"));
    // A client that forges an extra value in front is not believed.
    let ep = f
        .ep(0, LB)
        .with_header("X-Forwarded-For", "10.9.9.9, 127.0.0.8");
    let alice = login(&ep, "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.8"));
    // From a peer that is not a trusted proxy: the header is ignored.
    let ep = f
        .ep(0, STRANGER)
        .with_header("X-Forwarded-For", "127.0.0.9");
    let alice = login(&ep, "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.4"));
    // A malformed header is a client error.
    let ep = f.ep(0, LB).with_header("X-Forwarded-For", "not-an-ip");
    let (status, code, _) = refusal(login(&ep, "alice").await);
    assert_eq!((status, code.as_str()), (400, "bad_forwarded_header"));
    // Behind an unspecified PROXY stage the hop is untrusted, so its
    // forwarded headers are not read: a pinned login is refused.
    let ep = f
        .ep(2, LB)
        .with_proxy_header(v2(
            "127.0.0.3:1000".parse().unwrap(),
            f.running.addr(2).unwrap(),
        ))
        .with_header("X-Forwarded-For", "127.0.0.9");
    let (status, code, _) = refusal(login(&ep, "alice").await);
    assert_eq!((status, code.as_str()), (403, "untrusted_client_ip"));
    // With the flag off, the header is ignored.
    let ep = f.ep(1, LB).with_header("X-Forwarded-For", "127.0.0.9");
    let alice = login(&ep, "alice").await.unwrap();
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.3"));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_unwritable_audit_log_refuses_logins_and_access() {
    let f = Fixture::start(DIRECT).await;
    let bob = login(&f.ep(0, HOME), "bob").await.unwrap();
    // The same CA and users, but the audit log is /dev/full: every write
    // fails (ENOSPC).
    let mut config = Config::load(&f.config_path).unwrap();
    config.audit_log = PathBuf::from("/dev/full");
    let broken = server::start(config).await.unwrap();
    let ep = |i| Endpoint::new(broken.addr(i).unwrap(), f.ca_pem.clone()).from_ip(HOME);
    let (status, code, _) = refusal(login(&ep(0), "bob").await);
    assert_eq!((status, code.as_str()), (503, "audit_unavailable"));
    let (status, code, _) = refusal(client::whoami(&ep(1), &bob).await);
    assert_eq!((status, code.as_str()), (503, "audit_unavailable"));
    // The working server still serves the same certificate.
    assert!(client::whoami(&f.ep(1, HOME), &bob).await.is_ok());
}

#[test]
fn audit_paths_resolve_against_the_config_folder() {
    let c = Config::parse(
        Path::new("/srv/ippin/ippin.yaml"),
        &format!(
            "cluster_name: t\nca: {{ssh_key: a, tls_cert: b, tls_key: c}}\nserver_tls: {{cert: d, key: e}}\naudit_log: logs/audit.log\nlisteners:\n{DIRECT}"
        ),
    )
    .unwrap();
    assert_eq!(c.audit_log, PathBuf::from("/srv/ippin/logs/audit.log"));
}

#[tokio::test]
async fn ca_init_and_user_add_make_a_working_server() {
    let dir = ippin_test_support::temp_dir();
    let path = crate::ca::init(dir.path()).unwrap();
    // A second init refuses to overwrite.
    assert!(matches!(
        crate::ca::init(dir.path()),
        Err(crate::ca::CaError::Exists(_))
    ));
    // The written configuration loads as is.
    let config = Config::load(&path).unwrap();
    assert_eq!(config.listeners.len(), 3);
    assert!(server::startup_warnings(&config).is_empty());
    // Ephemeral ports for the test, then `user add` edits the file.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:3080", "127.0.0.1:0")
        .replace("127.0.0.1:3443", "127.0.0.1:0")
        .replace("127.0.0.1:3022", "127.0.0.1:0");
    std::fs::write(&path, text).unwrap();
    let hash = crate::users::hash_password_light("s3cret").unwrap();
    crate::users::add_user(&path, "dana", &["pinned-ip".to_owned()], &hash).unwrap();
    // An unknown role is refused and leaves the file alone.
    let before = std::fs::read_to_string(&path).unwrap();
    let err = crate::users::add_user(&path, "erin", &["nope".to_owned()], &hash).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    assert!(before.contains("# OpenSSH private key of the SSH user CA"));

    let config = Config::load(&path).unwrap();
    // The password hashes are the owner's alone (`ca init` writes 0600); readable by others,
    // the configuration is refused.
    assert!(server::startup_warnings(&config).is_empty());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("password hashes") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ca_pem = std::fs::read_to_string(&config.ca.tls_cert).unwrap();
    let running = server::start(config).await.unwrap();
    let ep = Endpoint::new(
        running.first(crate::config::ListenerKind::Login).unwrap(),
        ca_pem.clone(),
    )
    .from_ip(CAFE);
    let creds = client::login(&ep, "dana", "s3cret").await.unwrap();
    assert_eq!(creds.pinned_ip.as_deref(), Some("127.0.0.2"));
    let tls = Endpoint::new(
        running.first(crate::config::ListenerKind::Tls).unwrap(),
        ca_pem,
    )
    .from_ip(CAFE);
    assert_eq!(client::whoami(&tls, &creds).await.unwrap().user, "dana");

    // `ippin login` writes the files, keys private.
    let out = dir.path().join("out");
    let files = client::save(&out, &creds).unwrap();
    assert_eq!(files.len(), 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("ippin_tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(out.join("ippin_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cert = std::fs::read_to_string(out.join("ippin_ed25519-cert.pub")).unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
}

#[test]
fn unspecified_listeners_are_warned_about() {
    let c = Config::parse(
        Path::new("/x/ippin.yaml"),
        "cluster_name: t\nca: {ssh_key: a, tls_cert: b, tls_key: c}\nserver_tls: {cert: d, key: e}\naudit_log: l\nlisteners:\n  - {kind: tls, listen: 127.0.0.1:0}\n  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: on, danger_trust_every_peer: true}\n",
    )
    .unwrap();
    let w = server::startup_warnings(&c);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("WARNING: listener 0 (tls"), "{}", w[0]);
    assert!(w[0].contains("UNSPECIFIED"));
    assert!(w[1].contains("danger_trust_every_peer"), "{}", w[1]);
    // Every peer a proxy: this host's addresses too, with what that means for its users.
    assert!(w[2].starts_with("WARNING: listener 1 (login"), "{}", w[2]);
    assert!(w[2].contains("holds addresses of this host"), "{}", w[2]);
}

/// etcd reached without a client certificate (clear text on loopback, or TLS without
/// `cert`) is named at start: any local process can write the fleet's state; with one, no
/// warning.
#[test]
fn etcd_without_client_certificates_is_warned_about() {
    let base = "cluster_name: t\nca: {ssh_key: a, tls_cert: b, tls_key: c}\nserver_tls: {cert: d, key: e}\naudit_log: l\nlisteners:\n  - {kind: tls, listen: 127.0.0.1:0, proxy_protocol: off}\n";
    for (backend, warned) in [
        ("backend: {kind: etcd, endpoints: [127.0.0.1:2379]}\n", true),
        (
            "backend: {kind: etcd, endpoints: ['https://127.0.0.1:2379'], tls: {ca: ca.pem}}\n",
            true,
        ),
        (
            "backend: {kind: etcd, endpoints: ['https://127.0.0.1:2379'], tls: {ca: ca.pem, cert: c.pem, key: c.key}}\n",
            false,
        ),
        ("", false),
    ] {
        let c = Config::parse(Path::new("/x/ippin.yaml"), &format!("{base}{backend}")).unwrap();
        let w = server::startup_warnings(&c);
        let named = w
            .iter()
            .any(|l| l.contains("etcd") && l.contains("client certificate"));
        assert_eq!(named, warned, "{backend}: {w:?}");
    }
}

#[tokio::test]
async fn failed_handshakes_are_audited() {
    let f = Fixture::start(DIRECT).await;
    let r = client::request(&f.ep(1, HOME), None, hyper::Method::GET, "/whoami", None).await;
    assert!(r.is_err());
    let events = f
        .audit_when(|events| events.iter().any(|e| e["event"] == "tls_refused"))
        .await;
    assert!(
        events.iter().any(|e| e["event"] == "tls_refused"),
        "{events:?}"
    );
    let e = f.audit().pop().unwrap();
    assert_eq!(e["reason"], "tls_handshake_failed");
    assert_eq!(e["listener"], "tls");
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}

/// Peers that start a TLS handshake and stall it cannot hold the handshake
/// stage: past `max_handshakes`, the connection that has been there longest
/// is closed at once (audited `tls_handshake_shed`), long before the
/// 10-second handshake timeout, and a real client still gets through.
#[tokio::test]
async fn stalled_handshakes_are_shed_oldest_first() {
    const CAP: usize = 8;
    const STALLED: usize = 40;
    let f = Fixture::start_tuned(DIRECT, "audit.log", |s| s.max_handshakes = CAP).await;
    let bob = login(&f.ep(0, HOME), "bob").await.unwrap();
    let addr = f.running.addr(1).unwrap();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A TLS record header announcing a ClientHello that never comes: past
        // the PROXY stage (mode off: not a header), stuck in the handshake.
        s.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00]).await.unwrap();
        stalled.push(s);
    }
    // From one peer, past the first lines of a window the refusals are counted into an
    // `audit.suppressed` line (crate::audit): written lines plus the counts, with the
    // summaries flushed before each look.
    let audit = f.running.state.audit.clone();
    let shed = move |events: &[serde_json::Value]| {
        let _ = audit.flush_summaries(SystemTime::now(), true);
        events
            .iter()
            .filter(|e| e["reason"] == "tls_handshake_shed")
            .map(|e| {
                if e["event"] == "audit.suppressed" {
                    e["count"].as_u64().unwrap() as usize
                } else {
                    1
                }
            })
            .sum::<usize>()
    };
    let events = f
        .audit_when({
            let shed = shed.clone();
            move |events| shed(events) >= STALLED - CAP
        })
        .await;
    assert_eq!(shed(&events), STALLED - CAP, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| e["reason"] == "tls_handshake_timeout"),
        "shed, not timed out: {events:?}"
    );
    // The shed connections are closed: each read ends (EOF or reset) at once.
    let mut closed = 0;
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
            closed += 1;
        }
    }
    assert_eq!(closed, STALLED - CAP);
    // A real client's handshake takes its place (shedding one more stalled peer).
    let who = client::whoami(&f.ep(1, HOME), &bob).await.unwrap();
    assert_eq!(who.user, "bob");
    let events = f
        .audit_when({
            let shed = shed.clone();
            move |events| shed(events) > STALLED - CAP
        })
        .await;
    assert_eq!(shed(&events), STALLED - CAP + 1);
}

/// Behind a trusted balancer, connections count under the client address
/// the PROXY header names, not under the balancer: one client holding its
/// limit is refused (audited with its address), another client through the
/// same balancer is served although the balancer holds more than the limit.
#[tokio::test]
async fn behind_a_balancer_the_connection_limit_is_per_client() {
    let listeners = "  - {kind: login, listen: 127.0.0.1:0, proxy_protocol: on, trusted_proxies: [127.0.0.3/32]}\n";
    // `login_limits` rides on the audit line of the fixture's text.
    let f = Fixture::start_with_audit(
        listeners,
        "audit.log\nlogin_limits: {max_connections_per_peer: 2}",
    )
    .await;
    let addr = f.running.addr(0).unwrap();
    let a: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let open = |client: SocketAddr| async move {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(LB, 0)).unwrap();
        let mut tcp = s.connect(addr).await.unwrap();
        tcp.write_all(&v2(client, addr)).await.unwrap();
        // The start of a ClientHello that never comes: past the PROXY stage
        // (which looks past the header for a second one), held in TLS.
        tcp.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00])
            .await
            .unwrap();
        tcp
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(a).await);
    }
    // Exactly one of client A's three is closed (the one counted third).
    let events = f
        .audit_when(|e| e.iter().any(|e| e["event"] == "connection_refused"))
        .await;
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "connection_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(refused[0]["observed"], "198.51.100.7:40000");
    assert!(
        refused[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.3:")
    );
    // Client B through the same balancer (which now holds 3 > 2) is served.
    let b: SocketAddr = "198.51.100.8:40000".parse().unwrap();
    let bob = login(&f.ep(0, LB).with_proxy_header(v2(b, addr)), "bob").await;
    assert!(bob.is_ok(), "{bob:?}");
    drop(held);
}
