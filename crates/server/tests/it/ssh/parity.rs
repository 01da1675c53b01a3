//! Parity with OpenSSH's own `sshd`: the same certificates, the same allow/deny outcomes, over
//! IPv4 and IPv6 loopback. sshd enforces `source-address` itself; we run as root, so the
//! parity certificates name the principal `root`, whose role here does not require a pin (the
//! `source-address` in the certificate is what both servers check).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ippin_test_support::{Child, free_port, peer, wait_for_tcp};

use crate::ssh::harness::{Ca, Identity, Server, ip, ssh};

/// The `sshd_config` (and host key) of an OpenSSH `sshd` on `port` at `listen`, trusting the
/// user CA whose public key is `ca_pub`, for root logins by certificate only; its path.
pub(crate) fn sshd_config(dir: &Path, port: u16, listen: &[&str], ca_pub: &Path) -> PathBuf {
    std::fs::create_dir_all("/run/sshd").expect("privilege separation folder /run/sshd");
    let host_key = dir.join("sshd_host_key");
    let out = Command::new(peer("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .expect("ssh-keygen host key");
    assert!(out.status.success());
    let config = dir.join("sshd_config");
    let listen: String = listen
        .iter()
        .map(|a| format!("ListenAddress {a}\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "Port {port}\n\
             {listen}\
             HostKey {host}\n\
             TrustedUserCAKeys {ca}\n\
             AuthorizedKeysFile none\n\
             PermitRootLogin yes\n\
             UsePAM no\n\
             StrictModes no\n\
             PidFile none\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\n",
            host = host_key.display(),
            ca = ca_pub.display(),
        ),
    )
    .expect("write sshd_config");
    config
}

fn start_sshd(ca: &Ca, port: u16) -> Child {
    let config = sshd_config(&ca.dir, port, &["127.0.0.1", "::1"], &ca.pub_path);
    let mut cmd = Command::new(peer("sshd"));
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    let child = Child::spawn("sshd", cmd);
    wait_for_tcp(SocketAddr::new(ip("127.0.0.1"), port));
    wait_for_tcp(SocketAddr::new(ip("::1"), port));
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn same_outcomes_as_sshd_ipv4_and_ipv6() {
    let ca = Ca::new();
    let other = Ca::new();
    let mut ours = Server::new(&ca, |_| {});
    let ours_v4 = ours.listen_direct(ip("127.0.0.1")).await;
    let ours_v6 = ours.listen_direct(ip("::1")).await;
    let sshd_port = free_port(ip("127.0.0.1"));
    let sshd = start_sshd(&ca, sshd_port);

    let pinned_1 = ca.issue("p1", "root", Some(ip("127.0.0.1")));
    let pinned_2 = ca.issue("p2", "root", Some(ip("127.0.0.2")));
    let pinned_v6 = ca.issue("p6", "root", Some(ip("::1")));
    let unpinned = ca.issue("un", "root", None);
    let untrusted = other.issue("ot", "root", Some(ip("127.0.0.1")));
    let wrong_principal = ca.issue("wp", "nobody-here", Some(ip("127.0.0.1")));
    let expired = ca.keygen_issue("ex", "root", &["-V", "20200101:20200102"]);
    let critical = ca.keygen_issue("cr", "root", &["-O", "critical:ippin-test@example.com=x"]);
    // A pin bound to a private endpoint, used from the pinned address without the endpoint
    // (a host given that address in sshd's network): the binding is a critical option, so
    // sshd refuses it as ippin does.
    let bound = ca.keygen_issue(
        "bd",
        "root",
        &[
            "-O",
            "source-address=127.0.0.1/32",
            "-O",
            "critical:pinned-endpoint@ippin=vpce-0123456789abcdef0",
        ],
    );

    // (name, identity, from, expected allowed)
    let cases: Vec<(&str, &Identity, &str, bool)> = vec![
        (
            "pinned 127.0.0.1 from 127.0.0.1",
            &pinned_1,
            "127.0.0.1",
            true,
        ),
        (
            "pinned 127.0.0.1 from 127.0.0.2",
            &pinned_1,
            "127.0.0.2",
            false,
        ),
        (
            "pinned 127.0.0.2 from 127.0.0.2",
            &pinned_2,
            "127.0.0.2",
            true,
        ),
        (
            "pinned 127.0.0.2 from 127.0.0.1",
            &pinned_2,
            "127.0.0.1",
            false,
        ),
        ("pinned ::1 from ::1", &pinned_v6, "::1", true),
        ("pinned 127.0.0.1 from ::1", &pinned_1, "::1", false),
        ("pinned ::1 from 127.0.0.1", &pinned_v6, "127.0.0.1", false),
        ("unpinned from 127.0.0.2", &unpinned, "127.0.0.2", true),
        ("unpinned from ::1", &unpinned, "::1", true),
        ("untrusted CA", &untrusted, "127.0.0.1", false),
        ("wrong principal", &wrong_principal, "127.0.0.1", false),
        ("expired", &expired, "127.0.0.1", false),
        ("unknown critical option", &critical, "127.0.0.1", false),
        (
            "bound to an endpoint, from its address",
            &bound,
            "127.0.0.1",
            false,
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, id, from, expected) in cases {
        let v6 = from.contains(':');
        let ours_addr = if v6 { ours_v6 } else { ours_v4 };
        let sshd_addr = SocketAddr::new(ip(if v6 { "::1" } else { "127.0.0.1" }), sshd_port);
        let (a, b) = tokio::join!(
            ssh(id, "root", from, ours_addr, &["echo", "in"]),
            ssh(id, "root", from, sshd_addr, &["echo", "in"]),
        );
        let ours_ok = a.ok() && a.stdout == "in\n";
        let sshd_ok = b.ok() && b.stdout == "in\n";
        if ours_ok != expected || sshd_ok != expected {
            mismatches.push(format!(
                "{name}: expected {expected}, ippin {ours_ok} ({:?}), sshd {sshd_ok} ({:?})",
                a.stderr, b.stderr
            ));
        }
    }
    let (_, sshd_log) = sshd.finish();
    assert!(
        mismatches.is_empty(),
        "{mismatches:#?}\nsshd log:\n{sshd_log}"
    );
}
