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

/// Each bad certificate is refused, with its own audit reason. (The OpenSSH client will not
/// offer a host certificate as a user identity — "pubkey_prepare: ignoring certificate: not a
/// user certificate" — so that row is in `forged_and_host_certificates_each_with_their_reason`,
/// with ippin's own SSH client.)
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

/// A certificate outside its validity window, offered by the real OpenSSH client, is refused
/// with its own audit reason and a message that says to log in again. (russh alone would
/// refuse it before any handler runs, unaudited; ippin builds with the one-change patch in
/// vendor/russh/PATCHES.md so that the handler judges it.)
#[tokio::test(flavor = "multi_thread")]
async fn expired_and_not_yet_valid_certificates_each_with_their_reason() {
    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let pin = ["-O", "source-address=127.0.0.1/32"];
    let expired = ca.keygen_issue("old", "alice", &["-V", "20200101:20200102", pin[0], pin[1]]);
    let future = ca.keygen_issue("soon", "alice", &["-V", "+1d:+2d", pin[0], pin[1]]);
    let cases = [
        ("expired", &expired, "has expired"),
        ("not_yet_valid", &future, "not valid yet"),
    ];
    for (reason, id, said) in cases {
        let before = server.events.denial_reasons().len();
        let run = ssh(id, "alice", "127.0.0.1", addr, &["whoami"]).await;
        assert_eq!(run.status, Some(255), "{reason}: {run:?}");
        assert!(
            run.stderr.contains(said) && run.stderr.contains("log in again"),
            "{reason}: no readable reason on stderr: {}",
            run.stderr
        );
        let reasons = server.events.denial_reasons();
        assert_eq!(
            reasons.get(before).map(String::as_str),
            Some(reason),
            "audit reasons: {reasons:?}"
        );
    }
    assert_eq!(server.events.allowed(), 0);
}

/// A forged certificate (a trusted CA named, a field changed after signing) and a host
/// certificate from the trusted CA, each offered through a real SSH connection, are refused
/// with their own audit reasons. The OpenSSH client will offer neither (it checks the
/// signature when it loads a certificate, and ignores host certificates as user identities),
/// so the client here is ippin's own russh client over TCP.
#[tokio::test(flavor = "multi_thread")]
async fn forged_and_host_certificates_each_with_their_reason() {
    use ippin::ssh::client::SshClient;
    use ippin_cert::ssh_key::{Certificate, PrivateKey};

    let ca = Ca::new();
    let mut server = Server::new(&ca, |_| {});
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let host_key = server.service.host_public_key().clone();
    let load = |id: &crate::ssh::harness::Identity| {
        let key = PrivateKey::read_openssh_file(&id.key).expect("key");
        let cert = Certificate::read_file(&id.cert).expect("certificate");
        (key, cert)
    };

    // Genuine first: the same path lets it in, so the refusals below are about the
    // certificates.
    let (key, genuine) = load(&ca.issue("bob", "bob", None));
    let mut client = SshClient::connect(addr, ip("127.0.0.1"), host_key.clone())
        .await
        .expect("connect");
    client
        .authenticate("bob", key.clone(), genuine.clone())
        .await
        .expect("no transport error")
        .expect("the genuine certificate is accepted");
    assert_eq!(server.events.allowed(), 1);

    // Forged: bob's certificate with its key id changed after the CA signed it.
    let mut bytes = genuine.to_bytes().expect("encode");
    let at = bytes
        .windows(10)
        .position(|w| w == b"bob@ippin/")
        .expect("key id");
    bytes[at + 2] = b'x';
    let forged = Certificate::from_bytes(&bytes).expect("still decodes");
    assert_eq!(forged.key_id(), "box@ippin/1");

    // Host: signed by the trusted CA with `ssh-keygen -h`, naming bob.
    let (host_cert_key, host_cert) = load(&ca.keygen_issue("node", "bob", &["-h"]));

    let cases = [
        ("bad_ca_signature", key, forged),
        ("host_certificate", host_cert_key, host_cert),
    ];
    for (reason, key, cert) in cases {
        let before = server.events.denial_reasons().len();
        let mut client = SshClient::connect(addr, ip("127.0.0.1"), host_key.clone())
            .await
            .expect("connect");
        let refused = client
            .authenticate("bob", key, cert)
            .await
            .expect("no transport error");
        assert!(refused.is_err(), "{reason}: accepted");
        let reasons = server.events.denial_reasons();
        assert_eq!(
            reasons.get(before).map(String::as_str),
            Some(reason),
            "audit reasons: {reasons:?}"
        );
    }
    assert_eq!(server.events.allowed(), 1);
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
