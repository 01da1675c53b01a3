//! Who gets in, from where, and with which audit reason.

use crate::ssh::harness::{Ca, Server, ip, ssh};

#[tokio::test(flavor = "multi_thread")]
async fn alice_pinned_to_her_login_address() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;

    // Logged in from 127.0.0.1: allowed from there, and `whoami` says who and from where.
    let at_1 = ca.issue("alice1", "alice", Some(ip("127.0.0.1")));
    let run = ssh(&at_1, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("user: alice\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("observed: 127.0.0.1:"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(direct, trusted)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pinned: 127.0.0.1/32\n"),
        "{}",
        run.stdout
    );

    // The same certificate from 127.0.0.2: refused, with the reason on stderr.
    let run = ssh(&at_1, "alice", "127.0.0.2", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("pinned")
            && run.stderr.contains("127.0.0.2")
            && run.stderr.contains("log in again"),
        "no readable reason on stderr: {}",
        run.stderr
    );
    assert!(
        server
            .events
            .denial_reasons()
            .contains(&"pinned_ip_mismatch".to_owned())
    );

    // After a new login from 127.0.0.2: allowed from there, and not from 127.0.0.1.
    let at_2 = ca.issue("alice2", "alice", Some(ip("127.0.0.2")));
    let run = ssh(&at_2, "alice", "127.0.0.2", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("observed: 127.0.0.2:"),
        "{}",
        run.stdout
    );
    let run = ssh(&at_2, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert_eq!(server.events.allowed(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bob_unpinned_from_anywhere_and_echo() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let bob = ca.issue("bob", "bob", None);
    for from in ["127.0.0.1", "127.0.0.2"] {
        let run = ssh(&bob, "bob", from, addr, &["whoami"]).await;
        assert!(run.ok(), "from {from}: {run:?}");
        assert!(run.stdout.contains("pinned: none\n"), "{}", run.stdout);
        assert!(
            run.stdout.contains(&format!("observed: {from}:")),
            "{}",
            run.stdout
        );
    }
    let run = ssh(&bob, "bob", "127.0.0.1", addr, &["echo", "hello", "world"]).await;
    assert_eq!(
        (run.stdout.as_str(), run.status),
        ("hello world\n", Some(0))
    );
    // No shell, no other program.
    let run = ssh(&bob, "bob", "127.0.0.1", addr, &["id"]).await;
    assert_eq!(run.status, Some(127), "{run:?}");
    assert!(run.stderr.contains("not a built-in"), "{}", run.stderr);
    assert!(
        server.events.denial_reasons().is_empty(),
        "{:?}",
        server.events.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alice_with_an_unpinned_certificate_is_refused() {
    // Her role requires a pin: an unpinned certificate (issued elsewhere) is not enough.
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let unpinned = ca.issue("alice", "alice", None);
    let run = ssh(&unpinned, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stderr.contains("log in again"), "{}", run.stderr);
    assert!(
        server
            .events
            .denial_reasons()
            .contains(&"pinned_ip_missing".to_owned())
    );
    assert_eq!(server.events.allowed(), 0);
}

/// Each bad certificate is refused, with its own audit reason. (A host certificate cannot be
/// tried here: the OpenSSH client will not offer one as a user identity — "pubkey_prepare:
/// ignoring certificate: not a user certificate" — so that row is tested on `authorize` in the
/// unit tests.)
#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_each_with_their_reason() {
    let ca = Ca::new();
    let other = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let cases = [
        (
            "untrusted_ca",
            other.issue("alice", "alice", Some(ip("127.0.0.1"))),
            "alice",
        ),
        (
            "wrong_principal",
            ca.issue("carol", "carol", Some(ip("127.0.0.1"))),
            "alice",
        ),
        (
            "unknown_critical_option",
            ca.keygen_issue(
                "crit",
                "alice",
                &[
                    "-O",
                    "source-address=127.0.0.1/32",
                    "-O",
                    "critical:ippin-test@example.com=x",
                ],
            ),
            "alice",
        ),
        (
            "unknown_user",
            ca.issue("dave", "dave", Some(ip("127.0.0.1"))),
            "dave",
        ),
    ];
    for (reason, id, user) in &cases {
        let before = server.events.denial_reasons().len();
        let run = ssh(id, user, "127.0.0.1", addr, &["whoami"]).await;
        assert_eq!(run.status, Some(255), "{reason}: {run:?}");
        let reasons = server.events.denial_reasons();
        assert_eq!(
            reasons.get(before).map(String::as_str),
            Some(*reason),
            "audit reasons: {reasons:?}"
        );
    }
    assert_eq!(server.events.allowed(), 0);
}

/// An expired certificate is refused. russh refuses it before any handler runs (see
/// docs/ssh.md), so the audit shows the client's next attempt, not the certificate.
#[tokio::test(flavor = "multi_thread")]
async fn expired_certificate_is_refused() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let expired = ca.keygen_issue(
        "old",
        "alice",
        &[
            "-V",
            "20200101:20200102",
            "-O",
            "source-address=127.0.0.1/32",
        ],
    );
    let run = ssh(&expired, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert_eq!(server.events.allowed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_key_without_certificate_is_refused() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let plain = ca.plain_key("plain");
    let run = ssh(&plain, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(
        run.stderr.contains("Permission denied (publickey)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        server.events.denial_reasons(),
        vec!["not_a_certificate".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_shell() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let bob = ca.issue("bob", "bob", None);
    // No command: the client asks for a shell (without a terminal, as stdin is not one).
    let run = ssh(&bob, "bob", "127.0.0.1", addr, &[]).await;
    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stderr.contains("no shell"), "{}", run.stderr);
}
