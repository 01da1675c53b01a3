//! Network restrictions changed while a session is open: `ssh -L` forwards in one session,
//! before and after a live policy change and a broken update, and `ssh -W`; a forwarded
//! connection open across the change is ended by it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ippin::ssh::LiveRestrictions;
use ippin_test_support::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::forward::{echo_listener, forward_once};
use crate::ssh::harness::{Ca, Server, ip, ssh_command, through, wait_for};

fn policy(deny: &[&str]) -> String {
    let mut s = String::from(
        "kind: network_restrictions\nversion: v4\nmetadata:\n  name: nr\nspec:\n  allow:\n  - cidr: 127.0.0.0/8\n",
    );
    if !deny.is_empty() {
        s.push_str("  deny:\n");
        for d in deny {
            s.push_str(&format!("  - cidr: {d}\n"));
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn live_policy_change_applies_to_an_open_session() {
    let ca = Ca::new();
    let path = ca.dir.join("network_restrictions.yaml");
    std::fs::write(&path, policy(&["127.0.0.3"])).expect("write policy");
    let live = Arc::new(LiveRestrictions::load(&path).expect("policy"));
    let _watch = live.clone().watch(Duration::from_millis(50));
    let dial = live.clone();
    let mut server = Server::new(&ca, |s| {
        s.dial_policy = dial;
        s.recheck_interval = Duration::from_millis(200);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let (e1, _t1) = echo_listener("127.0.0.1").await;
    let (e3, _t3) = echo_listener("127.0.0.3").await;
    let (e4, _t4) = echo_listener("127.0.0.4").await;
    let bob = ca.issue("bob", "bob", None);

    // One session with three local forwards.
    let (l1, l3, l4) = (
        free_port(ip("127.0.0.1")),
        free_port(ip("127.0.0.1")),
        free_port(ip("127.0.0.1")),
    );
    let mut cmd = ssh_command(&bob, "bob", "127.0.0.1", addr);
    cmd.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
    for (l, e) in [(l1, e1), (l3, e3), (l4, e4)] {
        cmd.arg("-L").arg(format!("127.0.0.1:{l}:{e}"));
    }
    let mut session = cmd.spawn().expect("spawn ssh -L");
    let l1_addr = SocketAddr::new(ip("127.0.0.1"), l1);
    tokio::task::spawn_blocking(move || ippin_test_support::wait_for_tcp(l1_addr))
        .await
        .expect("wait for the forward");

    // Before: 127.0.0.1 and 127.0.0.4 reachable, 127.0.0.3 denied.
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    assert_eq!(through(l4).await.as_deref(), Some("ping\n"));
    assert_eq!(through(l3).await, None);
    assert!(
        forward_once(&bob, "bob", addr, &e4.to_string())
            .await
            .is_ok()
    );

    // A connection through the forward to 127.0.0.4, open across the change.
    let mut held = tokio::net::TcpStream::connect(("127.0.0.1", l4))
        .await
        .expect("connect through the forward");
    held.write_all(b"open\n").await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), held.read(&mut buf))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&buf[..n], b"open\n");

    // Live change: 127.0.0.4 denied too. Same session, new channels.
    std::fs::write(&path, policy(&["127.0.0.3", "127.0.0.4"])).expect("write policy");
    wait_for("the new policy", || live.generation() == 2).await;
    // The open connection is ended (its channel closed): end of stream, within the bound.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match held.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the forward to a denied destination stayed open"
    );
    wait_for("the held forward's denial in the audit log", || {
        server.events.all().iter().any(|e| {
            let v = serde_json::to_value(e).expect("json");
            e.name() == "session.network" && v["operation"] == 1 && v["dst_addr"] == "127.0.0.4"
        })
    })
    .await;
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    assert_eq!(through(l4).await, None);
    assert_eq!(through(l3).await, None);
    let err = forward_once(&bob, "bob", addr, &e4.to_string())
        .await
        .expect_err("denied");
    assert!(
        err.contains("127.0.0.4 matches the deny rule 127.0.0.4/32"),
        "{err}"
    );

    // A broken update is refused; the policy in force stays.
    std::fs::write(
        &path,
        "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.1/8\n",
    )
    .expect("write broken policy");
    wait_for("the refusal of the broken policy", || {
        live.last_error().is_some()
    })
    .await;
    assert_eq!(live.generation(), 2);
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    assert_eq!(through(l4).await, None);

    // The session was never dropped.
    assert!(
        session.try_wait().expect("ssh status").is_none(),
        "the ssh session ended"
    );
    drop(session);

    // Each denied dial once in the audit log, in order: l3; then l4, l3, -W to .4; then l4.
    let denied: Vec<String> = server
        .events
        .all()
        .iter()
        .filter(|e| e.name() == "session.network")
        .map(|e| serde_json::to_value(e).expect("json"))
        // Dials only: the held forward's end (a send) was checked above.
        .filter(|v| v["operation"] == 0)
        .inspect(|v| assert_eq!(v["action"], 1))
        .map(|v| v["dst_addr"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        denied,
        [
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.4"
        ],
        "{denied:?}"
    );
}
