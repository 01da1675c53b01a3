//! `direct-tcpip` (`ssh -W`): the server dials, and every dial goes through the network
//! restrictions.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use ippin_policy::NetworkRestrictions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::ssh::harness::{CLIENT_TIMEOUT, Ca, Identity, Server, ip, ssh_command};

/// An echo service on `ip`, port 0.
pub(crate) async fn echo_listener(at: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((ip(at), 0)).await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// What `ssh -W dest` gave: the echoed line when the forward worked, or stderr.
pub(crate) async fn forward_once(
    id: &Identity,
    user: &str,
    server: SocketAddr,
    dest: &str,
) -> Result<String, String> {
    let mut cmd = ssh_command(id, user, "127.0.0.1", server);
    cmd.args(["-W", dest]).stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ssh -W");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let work = async {
        stdin.write_all(b"ping through ippin\n").await.ok()?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.ok()?;
        drop(stdin);
        Some(line)
    };
    let line = tokio::time::timeout(CLIENT_TIMEOUT, work)
        .await
        .expect("ssh -W did not finish in time");
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("ssh -W did not exit in time")
        .expect("wait ssh -W");
    match line {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_tcpip_allowed_and_denied_by_network_restrictions() {
    let ca = Ca::new();
    let policy = NetworkRestrictions::from_rules(
        &["127.0.0.0/8".parse().expect("net")],
        &["127.0.0.3/32".parse().expect("net")],
    )
    .expect("policy");
    let mut server = Server::new(&ca, |s| s.dial_policy = Arc::new(policy));
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let (allowed, _a) = echo_listener("127.0.0.1").await;
    let (denied, _d) = echo_listener("127.0.0.3").await;
    let bob = ca.issue("bob", "bob", None);

    let line = forward_once(&bob, "bob", addr, &allowed.to_string()).await;
    assert_eq!(line, Ok("ping through ippin\n".to_owned()));

    // Inside the allowed range but denied, written plainly and as IPv4-mapped IPv6.
    for dest in [
        denied.to_string(),
        format!("[::ffff:127.0.0.3]:{}", denied.port()),
    ] {
        let err = forward_once(&bob, "bob", addr, &dest)
            .await
            .expect_err("denied dial");
        assert!(
            err.contains("denied by network restrictions") && err.contains("127.0.0.3"),
            "{dest}: {err}"
        );
    }
    // Outside every allow rule.
    let err = forward_once(&bob, "bob", addr, "[::1]:9")
        .await
        .expect_err("denied dial");
    assert!(err.contains("not in any allow rule"), "{err}");

    // Each denial is audited once, in the `session.network` shape.
    let network: Vec<serde_json::Value> = server
        .events
        .all()
        .iter()
        .filter(|e| e.name() == "session.network")
        .map(|e| serde_json::to_value(e).expect("json"))
        .collect();
    assert_eq!(network.len(), 3, "{network:#?}");
    for (event, (dst, version)) in
        network
            .iter()
            .zip([("127.0.0.3", 4), ("127.0.0.3", 4), ("::1", 6)])
    {
        assert_eq!(event["code"], "T4002I");
        assert_eq!(event["event"], "session.network");
        assert_eq!(event["user"], "bob");
        assert_eq!(event["login"], "bob");
        assert_eq!(event["src_addr"], "127.0.0.1");
        assert_eq!(event["dst_addr"], dst);
        assert_eq!(event["version"], version);
        assert_eq!(event["operation"], 0);
        assert_eq!(event["action"], 1);
        assert!(
            event["sid"].as_str().is_some_and(|s| s.len() == 36),
            "{event}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_observed_connection_that_cannot_be_audited_is_not_relayed() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.audit_observed_connections = true;
        // Authentication and exec lines are written; `session.network` lines cannot be.
        s.audit = Arc::new(|e: ippin::ssh::SshAuditEvent| e.name() != "session.network");
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let (echo, _e) = echo_listener("127.0.0.1").await;
    let bob = ca.issue("bob", "bob", None);
    let err = forward_once(&bob, "bob", addr, &echo.to_string())
        .await
        .expect_err("refused: the audit line cannot be written");
    assert!(err.contains("audit log cannot be written"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_policy_allows_every_destination_and_an_empty_allow_list_denies_every_one() {
    let ca = Ca::new();
    let bob = ca.issue("bob", "bob", None);
    let (v4, _a) = echo_listener("127.0.0.3").await;
    let (v6, _b) = echo_listener("::1").await;
    let dests = [v4.to_string(), format!("[::1]:{}", v6.port())];

    // No network_restrictions resource: every dial is allowed, and none is audited as denied.
    let mut open = Server::new(&ca, |_| {});
    let addr = open.listen_direct(ip("127.0.0.1")).await;
    for dest in &dests {
        let line = forward_once(&bob, "bob", addr, dest).await;
        assert_eq!(line, Ok("ping through ippin\n".to_owned()), "{dest}");
    }
    assert!(
        !open
            .events
            .all()
            .iter()
            .any(|e| e.name() == "session.network"),
        "no policy, no denial"
    );

    // A resource whose allow list is empty: deny by default, every destination refused.
    let empty = NetworkRestrictions::parse(
        "empty.yaml",
        "kind: network_restrictions\nversion: v4\nmetadata:\n  name: nr\nspec:\n  allow: []\n",
    )
    .expect("an empty allow list is a valid policy");
    let mut closed = Server::new(&ca, |s| s.dial_policy = Arc::new(empty));
    let addr = closed.listen_direct(ip("127.0.0.1")).await;
    for dest in &dests {
        let err = forward_once(&bob, "bob", addr, dest)
            .await
            .expect_err("an empty allow list denies every dial");
        assert!(
            err.contains("denied by network restrictions"),
            "{dest}: {err}"
        );
    }
    let denials = closed
        .events
        .all()
        .iter()
        .filter(|e| e.name() == "session.network")
        .count();
    assert_eq!(denials, dests.len(), "each denial audited once");
}

/// A forward whose client stopped reading (its window shut) while the destination keeps
/// sending: when the SSH connection ends, the relay ends with it and the destination's
/// connection is closed; it does not stay open, waiting for a window that never opens,
/// holding the socket and its user's forward place.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_forward_ends_with_its_connection() {
    use ippin::ssh::client::SshClient;
    use ippin_cert::ssh_key::{Certificate, PrivateKey};
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    // A destination that sends for as long as it can; it reports when its peer is gone.
    let firehose = TcpListener::bind((ip("127.0.0.1"), 0)).await.expect("bind");
    let dest = firehose.local_addr().expect("addr");
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = firehose.accept().await.expect("accept");
        let chunk = vec![0x5a; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
        let _ = gone_tx.send(());
    });
    let id = ca.issue("bob", "bob", None);
    let key = PrivateKey::read_openssh_file(&id.key).expect("key");
    let cert = Certificate::read_file(&id.cert).expect("certificate");
    let host_key = server.service.host_public_key().clone();
    let mut client = SshClient::connect(addr, ip("127.0.0.1"), host_key)
        .await
        .expect("connect");
    client
        .authenticate("bob", key, cert)
        .await
        .expect("no transport error")
        .expect("bob is let in");
    // Opened, never read: the window shuts once the destination has filled it.
    let stream = client
        .direct_tcpip("127.0.0.1", dest.port())
        .await
        .expect("no transport error")
        .expect("forward allowed");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(stream);
    drop(client);
    tokio::time::timeout(std::time::Duration::from_secs(20), gone)
        .await
        .expect("the destination's connection is closed once the SSH connection ends")
        .expect("reported");
}
