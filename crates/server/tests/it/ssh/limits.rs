//! The bounded stages of the SSH service: connections that stall before authenticating are
//! shed oldest first (the `LoginGraceTime` / `MaxStartups` problem), and authenticated
//! sessions beyond the limit are refused at authentication, not queued.

use std::time::Duration;

use ippin::ssh::client::SshClient;
use ippin_cert::ssh_key::{Certificate, PrivateKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::harness::{Ca, Server, ip, ssh, wait_for};

fn shed_count(server: &Server) -> usize {
    server
        .events
        .all()
        .iter()
        .filter(|e| e.name() == "ssh.shed")
        .count()
}

/// Reads until the server closes the connection (`true`); `false` when it stays quiet for
/// `quiet` (the server's banner and key-exchange offer are read and skipped).
async fn closed_by_server(s: &mut tokio::net::TcpStream, quiet: Duration) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_unauthenticated_connections_are_shed_oldest_first() {
    const CAP: usize = 4;
    const STALLED: usize = 10;
    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.max_unauthenticated = CAP;
        // Far beyond the test: nothing here is closed by the grace time.
        s.login_grace_time = Duration::from_secs(600);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Half send an identification string and stall before the key exchange; half send
        // nothing at all.
        if i % 2 == 0 {
            s.write_all(b"SSH-2.0-stall\r\n").await.expect("write");
        }
        stalled.push(s);
    }
    wait_for("the oldest stalled connections to be shed", || {
        shed_count(&server) >= STALLED - CAP
    })
    .await;
    assert_eq!(shed_count(&server), STALLED - CAP);
    // Each shed connection is closed within the disconnect grace (1 s) whatever stage it
    // stalled in; the others stay open. Checked side by side, each for 4 s.
    let checks = stalled.into_iter().map(|mut s| {
        tokio::spawn(async move {
            let closed = tokio::time::timeout(
                Duration::from_secs(4),
                closed_by_server(&mut s, Duration::from_secs(5)),
            )
            .await
            .unwrap_or(false);
            (closed, s)
        })
    });
    let mut closed = 0;
    let mut still_open = Vec::new();
    for c in checks.collect::<Vec<_>>() {
        let (was_closed, s) = c.await.expect("check");
        if was_closed {
            closed += 1;
        } else {
            still_open.push(s);
        }
    }
    assert_eq!(
        closed,
        STALLED - CAP,
        "the shed ones, and only those, are closed"
    );

    // A real user still gets in; their connection takes the place of the oldest staller.
    let bob = ca.issue("bob", "bob", None);
    let run = ssh(&bob, "bob", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert_eq!(shed_count(&server), STALLED - CAP + 1);
    assert_eq!(server.events.allowed(), 1);
}

/// One client address holds at most `MAX_UNAUTHENTICATED_PER_PEER` connections before
/// authentication: the ones beyond are closed at once (not by shedding another client's), and
/// a user from another address gets in while they stall.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_at_most_its_share_of_unauthenticated_connections() {
    const EXTRA: usize = 3;
    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.login_grace_time = Duration::from_secs(600);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let mut stalled = Vec::new();
    for _ in 0..ippin::ssh::MAX_UNAUTHENTICATED_PER_PEER + EXTRA {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().unwrap()).expect("bind");
        let mut s = socket.connect(addr).await.expect("connect");
        s.write_all(b"SSH-2.0-stall\r\n").await.expect("write");
        stalled.push(s);
    }
    let refused = |server: &Server| {
        server
            .events
            .all()
            .iter()
            .filter(|e| format!("{e:?}").contains("ssh_peer_unauthenticated_full"))
            .count()
    };
    wait_for(
        "the connections beyond the address's share to be closed",
        || refused(&server) >= EXTRA,
    )
    .await;
    // Only those: nobody was shed to make room.
    assert_eq!(refused(&server), EXTRA);
    assert_eq!(
        shed_count(&server),
        EXTRA,
        "the refusals, no shed connection"
    );
    // Which ones were over the share depends on the order the server's tasks ran: exactly
    // EXTRA are closed; the others stay open (checked side by side).
    let checks: Vec<_> = stalled
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let closed = closed_by_server(&mut s, Duration::from_secs(1)).await;
                (closed, s)
            })
        })
        .collect();
    let mut stalled = Vec::new();
    let mut closed = 0;
    for c in checks {
        let (was_closed, s) = c.await.expect("check");
        if was_closed {
            closed += 1;
        } else {
            stalled.push(s);
        }
    }
    assert_eq!(closed, EXTRA, "the ones beyond the share, and only those");
    // Another address is not affected.
    let bob = ca.issue("bob", "bob", None);
    let run = ssh(&bob, "bob", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert_eq!(refused(&server), EXTRA);
    // Once the stalled connections go (the server sees them close), their address may
    // connect again.
    drop(stalled);
    let mut run = ssh(&bob, "bob", "127.0.0.2", addr, &["whoami"]).await;
    for _ in 0..50 {
        if run.ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        run = ssh(&bob, "bob", "127.0.0.2", addr, &["whoami"]).await;
    }
    assert!(run.ok(), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_beyond_the_limit_are_refused_at_authentication() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.max_sessions = 1;
        s.auth_rejection_time = Duration::from_millis(10);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let host_key = server.service.host_public_key().clone();
    let id = ca.issue("bob", "bob", None);
    let key = PrivateKey::read_openssh_file(&id.key).expect("key");
    let cert = Certificate::read_file(&id.cert).expect("certificate");
    let connect = || SshClient::connect(addr, ip("127.0.0.1"), host_key.clone());

    let mut first = connect().await.expect("connect");
    first
        .authenticate("bob", key.clone(), cert.clone())
        .await
        .expect("no transport error")
        .expect("the first session is let in");
    let mut second = connect().await.expect("connect");
    let refused = second
        .authenticate("bob", key.clone(), cert.clone())
        .await
        .expect("no transport error")
        .expect_err("no place for a second session");
    assert!(refused.contains("try again later"), "{refused}");
    assert_eq!(
        server.events.denial_reasons(),
        vec!["sessions_full".to_owned()]
    );
    // The first session still works.
    assert_eq!(first.exec("echo still here").await.expect("exec").0, 0);

    // Once it ends, its place is free again.
    drop(first);
    let mut let_in = false;
    for _ in 0..100 {
        let mut next = connect().await.expect("connect");
        if next
            .authenticate("bob", key.clone(), cert.clone())
            .await
            .expect("no transport error")
            .is_ok()
        {
            let_in = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(let_in, "the place of the ended session was never freed");
    assert_eq!(server.events.allowed(), 2);
}

/// A peer that stalls before the key exchange is closed at the login grace time, like one
/// that stalls during authentication (a disconnect request alone would not close it: russh
/// acts on it only after the key exchange).
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_stalled_before_the_key_exchange_is_closed_at_the_grace_time() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.login_grace_time = Duration::from_millis(500);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let mut banner_only = tokio::net::TcpStream::connect(addr).await.expect("connect");
    banner_only
        .write_all(b"SSH-2.0-stall\r\n")
        .await
        .expect("write");
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for s in [&mut banner_only, &mut silent] {
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            closed_by_server(s, Duration::from_secs(20)),
        )
        .await
        .unwrap_or(false);
        assert!(closed, "still open long after the grace time");
    }
    assert_eq!(shed_count(&server), 0);
}
