//! `ippin ssh`: the real OpenSSH client with the certificate of `ippin login`, and the login
//! again it offers when the refusal says the certificate is pinned elsewhere (docs/cli.md,
//! "ippin ssh"). A pinned user logs in from 127.0.0.1, then connects from 127.0.0.2
//! (`ssh -b 127.0.0.2`): refused, offered the login again (the answer and the password
//! scripted on stdin), which runs from 127.0.0.2, and the retried command succeeds.
//!
//! The real `ippin serve`, `ippin login` and `ippin ssh` binaries, the real OpenSSH client,
//! loopback only, bounded runs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use ippin_test_support::{free_port, peer};

use crate::support::{ALICE, COMMAND_TIMEOUT, Cluster, IPPIN, Login, Ran, inspect_cert, run};

const LOGIN: usize = 0;
const SSH: usize = 1;
const QUESTION: &str = "log in again from here";

struct Setup {
    cluster: Cluster,
    login: Login,
    url: String,
}

/// A cluster with a login and an SSH listener, and alice logged in from 127.0.0.1.
fn setup() -> Setup {
    let cluster = Cluster::start(&[
        "kind: login, proxy_protocol: off",
        "kind: ssh, proxy_protocol: off",
    ]);
    let url = format!("https://{}", cluster.addr(LOGIN));
    let login = cluster.login(&url, ALICE, Some("127.0.0.1")).ok();
    assert_eq!(pinned(&login), ["127.0.0.1/32"]);
    Setup {
        cluster,
        login,
        url,
    }
}

/// The pin of the SSH certificate in the login's folder.
fn pinned(login: &Login) -> Vec<String> {
    inspect_cert(&login.ssh_cert())["pinned"]
        .as_array()
        .expect("pinned")
        .iter()
        .map(|v| v.as_str().expect("text").to_owned())
        .collect()
}

/// `ippin ssh [ours…] -- HERMETIC -b BIND -p PORT alice@HOST whoami` with `stdin`: the
/// options after `--` only keep the run hermetic (no user or system configuration, no
/// known-hosts file, no agent).
fn ippin_ssh(s: &Setup, ours: &[&str], bind: &str, server: SocketAddr, stdin: &[u8]) -> Ran {
    let mut cmd = Command::new(IPPIN);
    cmd.arg("ssh")
        .arg("--identity")
        .arg(s.login.dir.path())
        .arg("--server")
        .arg(&s.url)
        .args(["--user", ALICE.0])
        .arg("--ca")
        .arg(s.cluster.ca_pem())
        .arg("--ssh")
        .arg(peer("ssh"))
        .args(ours)
        .arg("--")
        .args(["-F", "/dev/null"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "BatchMode=yes"])
        .args(["-b", bind])
        .args(["-p", &server.port().to_string()])
        .arg(format!("alice@{}", server.ip()))
        .arg("whoami")
        .env_remove("SSH_AUTH_SOCK");
    run(cmd, stdin, COMMAND_TIMEOUT)
}

/// The `ssh.auth.denied` events with `reason`.
fn denials(cluster: &Cluster, reason: &str) -> usize {
    cluster
        .audit()
        .iter()
        .filter(|v| v["ssh"]["event"] == "ssh.auth.denied" && v["ssh"]["reason"] == reason)
        .count()
}

fn password_line() -> Vec<u8> {
    format!("y\n{}\n", ALICE.1).into_bytes()
}

#[test]
fn pinned_elsewhere_is_offered_a_login_from_here_and_the_retry_succeeds() {
    let s = setup();
    let ran = ippin_ssh(&s, &[], "127.0.0.2", s.cluster.addr(SSH), &password_line());
    println!("{}", ran.stderr);
    // The retried command ran, and its status is ippin ssh's.
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.stdout.matches("user: alice\n").count(), 1, "{ran:?}");
    // ssh's stderr reached the user (the refusal banner), then the question, then the login's
    // report (on stderr: stdout is the remote command's).
    let banner = ran.stderr.find("ippin: refused (pinned_ip_mismatch)");
    let question = ran.stderr.find(QUESTION);
    let relogged = ran.stderr.find("pinned to 127.0.0.2");
    assert!(
        banner.is_some() && banner < question && question < relogged,
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("(127.0.0.2)? [y/N]"), "{}", ran.stderr);
    // The login again ran from ssh's source address: the new certificate is pinned there.
    assert_eq!(pinned(&s.login), ["127.0.0.2/32"]);
    let login = s.cluster.wait_audit("the second login", |v| {
        v["event"] == "login_issued"
            && v["observed"]
                .as_str()
                .is_some_and(|o| o.starts_with("127.0.0.2:"))
    });
    assert_eq!(login["user"], "alice", "{login}");
    // Exactly one refused attempt of the certificate: the retry was the only other one.
    assert_eq!(denials(&s.cluster, "pinned_ip_mismatch"), 1);
}

#[test]
fn no_relogin_gives_sshs_refusal_and_status_without_an_offer() {
    let s = setup();
    let ran = ippin_ssh(
        &s,
        &["--no-relogin"],
        "127.0.0.2",
        s.cluster.addr(SSH),
        &password_line(),
    );
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");
    assert!(
        ran.stderr.contains("ippin: refused (pinned_ip_mismatch)"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains(QUESTION), "{}", ran.stderr);
    assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
}

#[test]
fn answering_no_or_nothing_retries_nothing() {
    let s = setup();
    for stdin in [&b"n\n"[..], b"", b"yes-please\nalice-password-1\n"] {
        let before = denials(&s.cluster, "pinned_ip_mismatch");
        let ran = ippin_ssh(&s, &[], "127.0.0.2", s.cluster.addr(SSH), stdin);
        assert_eq!(ran.code, Some(255), "{ran:?}");
        assert!(ran.stderr.contains(QUESTION), "{}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{ran:?}");
        assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
        let ok = ippin_test_support::wait_until(std::time::Duration::from_secs(10), || {
            denials(&s.cluster, "pinned_ip_mismatch") > before
        });
        assert!(ok, "no refusal audited");
        // One attempt only: no retry followed.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(denials(&s.cluster, "pinned_ip_mismatch"), before + 1);
    }
}

#[test]
fn other_failures_get_no_offer() {
    let s = setup();
    // Nothing listens there: ssh fails on its own, with no refusal to read.
    let closed = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    let ran = ippin_ssh(&s, &[], "127.0.0.2", closed, &password_line());
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(!ran.stderr.contains(QUESTION), "{}", ran.stderr);
    // From the pinned address it just works, with nothing asked.
    let ran = ippin_ssh(&s, &[], "127.0.0.1", s.cluster.addr(SSH), b"");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("user: alice\n"), "{ran:?}");
    assert!(!ran.stderr.contains(QUESTION), "{}", ran.stderr);
}

#[test]
fn an_identity_of_the_users_own_is_refused_before_ssh_runs() {
    let s = setup();
    let other: &Path = &s.cluster.path("ca/ssh_user_ca");
    let mut cmd = Command::new(IPPIN);
    cmd.arg("ssh")
        .arg("--identity")
        .arg(s.login.dir.path())
        .arg("--ssh")
        .arg(peer("ssh"))
        .arg("-i")
        .arg(other)
        .arg(format!("alice@{}", s.cluster.addr(SSH).ip()));
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("`-i`"), "{}", ran.stderr);
}

#[test]
fn an_expired_certificate_is_offered_a_login_and_the_retry_succeeds() {
    let s = setup();
    // The login's key, certified again by the cluster's own SSH user CA, pinned to the login
    // address but expired, written where `ippin login` put its certificate.
    let signed = Command::new(peer("ssh-keygen"))
        .arg("-q")
        .arg("-s")
        .arg(s.cluster.path("ca/ssh_user_ca"))
        .args(["-I", "alice@expired", "-n", "alice"])
        .args(["-V", "20200101:20200102"])
        .args(["-O", "source-address=127.0.0.1/32"])
        .arg(s.login.dir.path().join("ippin_ed25519.pub"))
        .output()
        .expect("run ssh-keygen");
    assert!(signed.status.success(), "{signed:?}");
    let ran = ippin_ssh(&s, &[], "127.0.0.1", s.cluster.addr(SSH), &password_line());
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("user: alice\n"), "{ran:?}");
    assert!(
        ran.stderr.contains("ippin: refused (expired)")
            && ran.stderr.contains("the certificate has expired (expired)")
            && ran.stderr.contains(QUESTION),
        "{}",
        ran.stderr
    );
    assert_eq!(denials(&s.cluster, "expired"), 1);
    assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
}
