//! The attacks of the security review, each against the real `ippin serve` binary with real
//! peers (OpenSSH's `ssh`, `ssh-keygen`, `ippin login`) and raw sockets. Each is refused with
//! its reason; each passed on the code before the fix.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use ippin::client::{Credentials, Endpoint, login};
use ippin_test_support::{Child, free_port, peer, wait_for_tcp};
use serde_json::Value;

use crate::ssh::forward::{echo_listener, forward_once};
use crate::ssh::harness::{Identity, ip, ssh, write_private};
use crate::support::{IPPIN, ippin};

/// A configuration written by `ca init` with these `listeners` (YAML lines), plus `extra`
/// top-level lines (a `cert_ttl` there replaces the default 1 h); users alice (`pinned-ip`)
/// and bob (`dev`), password `secret`.
pub(crate) fn site(listeners: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = ippin_test_support::temp_dir();
    let config = format!(
        "cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {{cert: server.pem, key: server.key}}
roles: [roles.yaml]
users: []
cert_ttl: 1h
audit_log: audit.log
ssh_host_key: ssh_host_ed25519_key
ssh_auth_rejection_time: 10ms
{extra}listeners:
{listeners}"
    );
    // A `cert_ttl` in `extra` replaces the default.
    let config = if extra.contains("cert_ttl:") {
        config.replace("cert_ttl: 1h\n", "")
    } else {
        config
    };
    let path = ippin::ca::init_at(tmp.path(), SystemTime::now(), &config).expect("ca init");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&path, "alice", &["pinned-ip".to_owned()], &hash).expect("alice");
    ippin::users::add_user(&path, "bob", &["dev".to_owned()], &hash).expect("bob");
    (tmp, path)
}

/// `ippin serve` on `config`, up once every address in `ready` accepts connections.
pub(crate) fn serve(config: &Path, ready: &[SocketAddr]) -> Child {
    let mut cmd = Command::new(IPPIN);
    cmd.args(["serve", "--config"]).arg(config);
    let child = Child::spawn("ippin serve", cmd);
    for a in ready {
        wait_for_tcp(*a);
    }
    child
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls the audit log (bounded) until `pred` holds for a line; that line.
pub(crate) fn wait_audit(dir: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    ippin_test_support::wait_until(Duration::from_secs(10), || {
        found = audit(dir).into_iter().find(|v| pred(v));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no audit line for {what}: {:?}", audit(dir)))
}

pub(crate) async fn log_in(
    dir: &Path,
    login_addr: SocketAddr,
    user: &str,
    from: &str,
) -> Credentials {
    let ca = std::fs::read_to_string(dir.join("ca/tls_ca.pem")).expect("CA");
    login(
        &Endpoint::new(login_addr, &ca).from_ip(ip(from)),
        user,
        "secret",
    )
    .await
    .unwrap_or_else(|e| panic!("{user} logs in from {from}: {e:?}"))
}

fn save(dir: &Path, name: &str, creds: &Credentials) -> Identity {
    let key = dir.join(name);
    write_private(&key, &creds.ssh_private_key);
    let cert = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&cert, &creds.ssh_certificate).expect("write certificate");
    Identity { key, cert }
}

/// Bob (unpinned) forwards through ippin's SSH service into ippin's own `tls` listener, which
/// trusts PROXY headers from this host's address (a co-located load balancer), and writes a
/// header naming alice's pinned address. Every spelling of that listener's address is refused
/// `own_listener`, audited as a denied `session.network` event, and no access is granted.
#[tokio::test(flavor = "multi_thread")]
async fn forwards_into_ippins_own_listeners_are_refused() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let (login_port, tls_port, ssh_port) = (free_port(lo), free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}
  - {{kind: tls, listen: 127.0.0.1:{tls_port}, proxy_protocol: on, trusted_proxies: [127.0.0.1/32]}}
  - {{kind: ssh, listen: 127.0.0.1:{ssh_port}, proxy_protocol: off}}
"
        ),
        "",
    );
    let login_addr = SocketAddr::new(lo, login_port);
    let ssh_addr = SocketAddr::new(lo, ssh_port);
    // Not probed: a probe would be a connection without a header. Every listener is bound
    // before any is served, so the other two answering is enough.
    let _server = serve(&config, &[login_addr, ssh_addr]);
    let bob = save(
        tmp.path(),
        "bob",
        &log_in(tmp.path(), login_addr, "bob", "127.0.0.1").await,
    );

    for dest in [
        format!("127.0.0.1:{tls_port}"),
        format!("0.0.0.0:{tls_port}"),
        format!("0:{tls_port}"),
        format!("127.1:{tls_port}"),
        format!("localhost:{tls_port}"),
        format!("[::ffff:127.0.0.1]:{tls_port}"),
        format!("127.0.0.1:{login_port}"),
        format!("127.0.0.1:{ssh_port}"),
    ] {
        let err = forward_once(&bob, "bob", ssh_addr, &dest)
            .await
            .expect_err("a forward into ippin itself must fail");
        assert!(err.contains("own_listener"), "{dest}: {err}");
    }
    let denied: Vec<Value> = audit(tmp.path())
        .into_iter()
        .filter(|v| v["ssh"]["event"] == "session.network" && v["ssh"]["action"] == 1)
        .collect();
    assert!(denied.len() >= 7, "{denied:?}");
    for v in &denied {
        assert_eq!(v["ssh"]["code"], "T4002I", "{v}");
        assert_eq!(v["ssh"]["dst_addr"], "127.0.0.1", "{v}");
    }
    // The tls listener never saw a connection from the forwards.
    assert!(
        !audit(tmp.path())
            .iter()
            .any(|v| v["event"] == "access_allowed" || v["event"] == "proxy_refused"),
        "{:?}",
        audit(tmp.path())
    );
    // SSH authentication lines name the TCP peer beside the observed address.
    let auth_lines: Vec<Value> = audit(tmp.path())
        .into_iter()
        .filter(|v| v["ssh"]["event"] == "ssh.auth.allowed")
        .collect();
    assert!(!auth_lines.is_empty());
    for v in &auth_lines {
        let peer = v["ssh"]["peer"].as_str().unwrap_or_default();
        assert!(peer.starts_with("127.0.0.1:"), "{v}");
    }
    // Other destinations on the same host still work (no policy: all allowed).
    let (echo, _task) = echo_listener("127.0.0.1").await;
    assert!(
        forward_once(&bob, "bob", ssh_addr, &echo.to_string())
            .await
            .is_ok()
    );
}

/// With loopback denied, the unspecified addresses (which the kernel connects to loopback)
/// and the IPv4-mapped form are denied as loopback, with an audit line naming the address the
/// kernel would have reached.
#[tokio::test(flavor = "multi_thread")]
async fn unspecified_and_mapped_destinations_are_decided_as_loopback() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let (login_port, ssh_port) = (free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}
  - {{kind: ssh, listen: 127.0.0.1:{ssh_port}, proxy_protocol: off}}
"
        ),
        "network_restrictions: nr.yaml\n",
    );
    std::fs::write(
        tmp.path().join("nr.yaml"),
        "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 0.0.0.0/0\n  - cidr: ::/0\n  deny:\n  - cidr: 127.0.0.0/8\n  - cidr: ::1/128\n",
    )
    .expect("policy");
    let login_addr = SocketAddr::new(lo, login_port);
    let ssh_addr = SocketAddr::new(lo, ssh_port);
    let _server = serve(&config, &[login_addr, ssh_addr]);
    let bob = save(
        tmp.path(),
        "bob",
        &log_in(tmp.path(), login_addr, "bob", "127.0.0.1").await,
    );
    let (echo4, _t4) = echo_listener("127.0.0.1").await;
    let (echo6, _t6) = echo_listener("::1").await;
    let (p4, p6) = (echo4.port(), echo6.port());
    for (dest, reached) in [
        (format!("0.0.0.0:{p4}"), "127.0.0.1"),
        (format!("0:{p4}"), "127.0.0.1"),
        (format!("[::ffff:127.0.0.1]:{p4}"), "127.0.0.1"),
        (format!("[::ffff:0.0.0.0]:{p4}"), "127.0.0.1"),
        (format!("[::]:{p6}"), "::1"),
    ] {
        let err = forward_once(&bob, "bob", ssh_addr, &dest)
            .await
            .expect_err("denied");
        assert!(
            err.contains(&format!("{reached} matches the deny rule")),
            "{dest}: {err}"
        );
        wait_audit(tmp.path(), &dest, |v| {
            v["ssh"]["event"] == "session.network"
                && v["ssh"]["action"] == 1
                && v["ssh"]["dst_addr"] == reached
        });
    }
}

/// The CA's way round a `/0` pin: `source-address=0.0.0.0/1,128.0.0.0/1` covers every IPv4
/// address. For a user whose role requires a pin it is not a pin: refused `pin_too_wide`,
/// with the real OpenSSH client, while a single-host pin from the same CA works.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_source_address_does_not_satisfy_a_pinned_role() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let ssh_port = free_port(lo);
    let (tmp, config) = site(
        &format!("  - {{kind: ssh, listen: 127.0.0.1:{ssh_port}, proxy_protocol: off}}\n"),
        "",
    );
    let ssh_addr = SocketAddr::new(lo, ssh_port);
    let _server = serve(&config, &[ssh_addr]);
    let ca = tmp.path().join("ca/ssh_user_ca");
    let sign = |name: &str, source: &str| -> Identity {
        let key = tmp.path().join(name);
        let keygen = Command::new(peer("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(keygen.status.success(), "{keygen:?}");
        let signed = Command::new(peer("ssh-keygen"))
            .arg("-s")
            .arg(&ca)
            .args([
                "-I",
                "alice@ippin/1",
                "-z",
                "1",
                "-n",
                "alice",
                "-V",
                "-5m:+1h",
            ])
            .args(["-O", &format!("source-address={source}")])
            .arg(key.with_extension("pub"))
            .output()
            .expect("ssh-keygen -s");
        assert!(signed.status.success(), "{signed:?}");
        Identity {
            cert: PathBuf::from(format!("{}-cert.pub", key.display())),
            key,
        }
    };
    let wide = sign("wide", "0.0.0.0/1,128.0.0.0/1");
    let run = ssh(&wide, "alice", "127.0.0.2", ssh_addr, &["whoami"]).await;
    assert!(!run.ok(), "{run:?}");
    let line = wait_audit(tmp.path(), "the wide pin", |v| {
        v["ssh"]["event"] == "ssh.auth.denied" && v["ssh"]["reason"].is_string()
    });
    assert_eq!(line["ssh"]["reason"], "pin_too_wide", "{line}");
    let single = sign("single", "127.0.0.2/32");
    let run = ssh(&single, "alice", "127.0.0.2", ssh_addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
}

/// `trusted_proxies: ["::/1"]` (an IPv6 network wider than, and holding, the IPv4-mapped
/// range) on a dual-stack socket: IPv4 clients arrive as `::ffff:a.b.c.d`, and must not be
/// believed. The header is refused `untrusted_proxy`. (`::/0` itself is refused at start
/// without `danger_trust_every_peer`: `trusted_proxies_that_hold_every_peer_are_refused`.)
#[test]
fn ipv6_wildcard_trust_does_not_cover_ipv4_peers() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let port = free_port(lo);
    // An IPv6 socket bound to the IPv4-mapped loopback address: dual-stack, loopback only.
    let (tmp, config) = site(
        &format!(
            "  - {{kind: tls, listen: \"[::ffff:127.0.0.1]:{port}\", proxy_protocol: on, trusted_proxies: [\"::/1\"]}}\n"
        ),
        "",
    );
    let addr = SocketAddr::new(lo, port);
    let _server = serve(&config, &[addr]);
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("PROXY TCP4 127.0.0.2 127.0.0.1 5000 {port}\r\n\x16\x03\x01").as_bytes())
        .expect("send header");
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "not closed");
    // (The readiness probe's connection is refused `header_required` first.)
    let line = wait_audit(tmp.path(), "the refused header", |v| {
        v["event"] == "proxy_refused" && v["reason"] != "header_required"
    });
    assert_eq!(line["reason"], "untrusted_proxy", "{line}");
}

/// Headers believed from every peer need an explicit, loudly named setting: `ippin serve`
/// refuses `trust_x_forwarded_for` or `proxy_protocol: on` without `trusted_proxies`, naming
/// the file, the line and the field.
#[test]
fn headers_from_unnamed_peers_refuse_to_start() {
    for (listener, field) in [
        (
            "{kind: login, listen: 127.0.0.1:0, proxy_protocol: off, trust_x_forwarded_for: true}",
            "listeners[0].trusted_proxies",
        ),
        (
            "{kind: tls, listen: 127.0.0.1:0, proxy_protocol: on}",
            "listeners[0].trusted_proxies",
        ),
        (
            "{kind: tls, listen: 127.0.0.1:0, proxy_protocol: on, trusted_proxies: [127.0.0.3/32], danger_trust_every_peer: true}",
            "listeners[0].danger_trust_every_peer",
        ),
        // One list cannot name both the balancers and the HTTP proxies.
        (
            "{kind: login, listen: 127.0.0.1:0, proxy_protocol: on, trusted_proxies: [127.0.0.0/8], trust_x_forwarded_for: true}",
            "listeners[0].trust_x_forwarded_for",
        ),
    ] {
        let (_tmp, config) = site("  - {kind: login, listen: 127.0.0.1:0}\n", "");
        let text = std::fs::read_to_string(&config).expect("config");
        let (head, _) = text.split_once("listeners:").expect("listeners");
        std::fs::write(&config, format!("{head}listeners:\n  - {listener}\n")).expect("write");
        let ran = ippin(&["serve", "--config", config.to_str().expect("UTF-8")], b"");
        assert_eq!(ran.code, Some(1), "{listener}: {ran:?}");
        assert!(
            ran.stderr.contains("ippin.yaml:") && ran.stderr.contains(field),
            "{listener}: {}",
            ran.stderr
        );
    }
    // The named setting starts, with a warning.
    let port = free_port(ip("127.0.0.1"));
    let (_tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{port}, proxy_protocol: off, trust_x_forwarded_for: true, danger_trust_every_peer: true}}\n"
        ),
        "",
    );
    let server = serve(&config, &[SocketAddr::new(ip("127.0.0.1"), port)]);
    // It listens (the port answered); the warnings are printed before the listeners bind.
    let (_out, err) = server.finish();
    assert!(
        err.contains("WARNING") && err.contains("danger_trust_every_peer"),
        "{err}"
    );
}

/// A trusted HTTP proxy that sends no forwarded header names no client: its own address is
/// an untrusted observation, so a pinned user is refused (`untrusted_client_ip`) rather than
/// pinned to the proxy. An unpinned user still logs in, without a login IP.
#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_without_a_forwarded_header_gets_no_pin() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let login_port = free_port(lo);
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off, trust_x_forwarded_for: true, trusted_proxies: [127.0.0.3/32]}}\n"
        ),
        "",
    );
    let login_addr = SocketAddr::new(lo, login_port);
    let _server = serve(&config, &[login_addr]);
    let ca = std::fs::read_to_string(tmp.path().join("ca/tls_ca.pem")).expect("CA");
    let from_proxy = Endpoint::new(login_addr, &ca).from_ip(ip("127.0.0.3"));
    let refused = login(&from_proxy, "alice", "secret").await;
    match refused {
        Err(ippin::client::ClientError::Refused { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (403, "untrusted_client_ip"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let bob = login(&from_proxy, "bob", "secret").await.expect("bob");
    assert_eq!(bob.pinned_ip, None);
    // Through the proxy with a header: pinned to the client the proxy names.
    let with_header = from_proxy.with_header("X-Forwarded-For", "127.0.0.9");
    let alice = login(&with_header, "alice", "secret").await.expect("alice");
    assert_eq!(alice.pinned_ip.as_deref(), Some("127.0.0.9"));
}

/// On a listener without a `proxy_protocol` setting anyone may send a PROXY header; its
/// address is an untrusted claim. An unpinned user's access is allowed there, and the audit
/// line names both the claim (`observed`, port 0) and who really connected (`peer`).
#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_name_the_tcp_peer_beside_a_claimed_address() {
    ippin::install_crypto_provider();
    let lo = ip("127.0.0.1");
    let (login_port, tls_port) = (free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}
  - {{kind: tls, listen: 127.0.0.1:{tls_port}}}
"
        ),
        "",
    );
    let login_addr = SocketAddr::new(lo, login_port);
    let tls_addr = SocketAddr::new(lo, tls_port);
    let _server = serve(&config, &[login_addr]);
    let creds = log_in(tmp.path(), login_addr, "bob", "127.0.0.1").await;
    let ca = std::fs::read_to_string(tmp.path().join("ca/tls_ca.pem")).expect("CA");
    let header = ippin_proxy_protocol::V2Builder::new(ippin_proxy_protocol::Command::Proxy)
        .addresses(ippin_proxy_protocol::Addresses::Tcp4 {
            src: "198.51.100.99:5000".parse().expect("src"),
            dst: "127.0.0.1:443".parse().expect("dst"),
        })
        .expect("addresses")
        .encode()
        .expect("encode");
    let ep = Endpoint::new(tls_addr, &ca)
        .from_ip(ip("127.0.0.6"))
        .with_proxy_header(header);
    let answer = ippin::client::request(
        &ep,
        Some((&creds).into()),
        hyper::Method::GET,
        "/whoami",
        None,
    )
    .await
    .expect("bob is not pinned: allowed");
    drop(answer);
    let line = wait_audit(tmp.path(), "the access", |v| v["event"] == "access_allowed");
    assert_eq!(line["observed"], "198.51.100.99:0", "{line}");
    // The line names the certificate used, by its serial, not only its user.
    let der = ippin::ca::pem_to_der(&creds.tls_cert_pem, "CERTIFICATE").expect("pem");
    let serial: String = ippin_cert::x509::client_identity(&der)
        .expect("identity")
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(line["serial"], serial.as_str(), "{line}");
    assert!(
        line["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.6:")),
        "{line}"
    );
}
