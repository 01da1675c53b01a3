//! HAProxy with `send-proxy-v2` in front of an `ssh` listener in PROXY mode `on`: the pin
//! follows the client's address, not HAProxy's.

use std::net::SocketAddr;
use std::process::Command;

use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
use ippin_test_support::{Child, free_port, peer, wait_for_tcp};

use crate::ssh::harness::{Ca, Server, ip, ssh, wait_for};

fn start_haproxy(ca: &Ca, front: SocketAddr, back: SocketAddr) -> Child {
    let config = ca.dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend ssh_in\n  bind {front}\n  default_backend ippin_ssh\n\
             backend ippin_ssh\n  server s1 {back} send-proxy-v2\n"
        ),
    )
    .expect("write haproxy.cfg");
    let mut cmd = Command::new(peer("haproxy"));
    cmd.arg("-db").arg("-f").arg(&config);
    let child = Child::spawn("haproxy", cmd);
    wait_for_tcp(front);
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_follows_the_client_behind_haproxy() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["127.0.0.1/32".parse().expect("net")]);
    let back = server.listen_proxy(ip("127.0.0.1"), policy).await;
    let front = SocketAddr::new(ip("127.0.0.1"), free_port(ip("127.0.0.1")));
    let haproxy = start_haproxy(&ca, front, back);

    // Alice logged in from 127.0.0.2 and comes through HAProxy (which connects from 127.0.0.1).
    let at_2 = ca.issue("alice2", "alice", Some(ip("127.0.0.2")));
    let run = ssh(&at_2, "alice", "127.0.0.2", front, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("observed: 127.0.0.2:") && run.stdout.contains("(proxy_v2, trusted)"),
        "{}",
        run.stdout
    );

    // A certificate pinned to HAProxy's own address does not pass for a client at 127.0.0.2.
    let at_1 = ca.issue("alice1", "alice", Some(ip("127.0.0.1")));
    let run = ssh(&at_1, "alice", "127.0.0.2", front, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stderr.contains("127.0.0.2"), "{}", run.stderr);
    assert!(
        server
            .events
            .denial_reasons()
            .contains(&"pinned_ip_mismatch".to_owned())
    );

    // Straight to the listener, without a PROXY header: refused before SSH starts.
    let run = ssh(&at_1, "alice", "127.0.0.1", back, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    // The refusal is audited after the connection is closed: the client can be done first.
    wait_for("the PROXY refusal in the audit", || {
        server
            .events
            .all()
            .iter()
            .any(|e| e.name() == "ssh.proxy_refused")
    })
    .await;
    let refused: Vec<_> = server
        .events
        .all()
        .into_iter()
        .filter(|e| e.name() == "ssh.proxy_refused")
        .collect();
    // Exactly one `header_required`: the direct client. The readiness probe of HAProxy's
    // front (`wait_for_tcp`) may have made HAProxy open a back-end connection that it then
    // aborts before its header: that one, when it happens, is refused as closed or reset.
    let reasons: Vec<&str> = refused.iter().filter_map(|e| e.reason()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "header_required").count(),
        1,
        "{refused:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|r| matches!(*r, "header_required" | "io_error" | "connection_closed")),
        "{refused:?}"
    );
    assert!(reasons.len() <= 2, "{refused:?}");
    assert_eq!(server.events.allowed(), 1);
    drop(haproxy);
}
