//! Runs `russh_pinned` and logs in with the real OpenSSH client and a certificate signed by
//! `ssh-keygen -s`, pinned with `-O source-address=`, from the pinned address and from
//! another loopback address (`ssh -b`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Example, run};
use ippin_test_support::{peer, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_russh_pinned");

fn keygen(args: &[&str]) {
    let (code, out, err) = run(
        {
            let mut c = Command::new(peer("ssh-keygen"));
            c.args(args);
            c
        },
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "ssh-keygen {args:?}: {out}{err}");
}

/// A user CA, a host key, alice's key and her certificate pinned to 127.0.0.1, and a copy of
/// her key certified without a pin, in `dir`.
fn keys(dir: &Path) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    for name in ["ca", "host", "alice"] {
        keygen(&["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", &p(name)]);
    }
    keygen(&[
        "-q",
        "-s",
        &p("ca"),
        // The key id names the user as ippin's CA writes it (`CertIdentity::IppinKeyId`).
        "-I",
        "alice@ippin/1",
        "-z",
        "1",
        "-n",
        "alice",
        "-V",
        "-5m:+1h",
        "-O",
        "source-address=127.0.0.1/32",
        &p("alice.pub"),
    ]);
    // The same key, certified without a pin (a copy: ssh also offers `KEY-cert.pub`).
    std::fs::copy(p("alice"), p("unpinned")).unwrap();
    std::fs::copy(p("alice.pub"), p("unpinned.pub")).unwrap();
    let unpinned = [
        "-q",
        "-s",
        &p("ca"),
        "-I",
        "alice@ippin/2",
        "-z",
        "2",
        "-n",
        "alice",
    ];
    keygen(&[&unpinned[..], &["-V", "-5m:+1h", &p("unpinned.pub")]].concat());
}

/// `ssh alice@127.0.0.1 whoami` from `source` with alice's pinned certificate: (exit code,
/// stdout, stderr).
fn ssh(ex: &Example, dir: &Path, source: &str) -> (Option<i32>, String, String) {
    ssh_with(ex, dir, source, "alice")
}

/// `ssh alice@127.0.0.1 whoami` from `source` with the key `identity` and its certificate
/// `identity-cert.pub`.
fn ssh_with(
    ex: &Example,
    dir: &Path,
    source: &str,
    identity: &str,
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(peer("ssh"));
    cmd.args([
        "-F",
        "/dev/null",
        "-b",
        source,
        "-p",
        &ex.addr.port().to_string(),
    ])
    .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
    .args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ])
    .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
    .arg("-i")
    .arg(dir.join(identity))
    .arg("-o")
    .arg(format!(
        "CertificateFile={}",
        dir.join(format!("{identity}-cert.pub")).display()
    ))
    .args(["alice@127.0.0.1", "whoami"]);
    run(cmd, Duration::from_secs(30))
}

#[test]
fn the_pinned_address_logs_in_another_is_refused_with_the_reason() {
    let dir = temp_dir();
    keys(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let mut ex = Example::start(
        BIN,
        &[
            "--host-key",
            &p("host"),
            "--user-ca",
            &p("ca.pub"),
            "--user",
            "alice",
        ],
    );

    // From the pinned address: in, and the command answers.
    let (code, out, err) = ssh(&ex, dir.path(), "127.0.0.1");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("alice from 127.0.0.1:"), "{out}");
    let allowed = ex.wait_audit(|v| v["event"] == "ssh.auth.allowed");
    assert_eq!(allowed["user"], "alice");
    assert_eq!(allowed["key_id"], "alice@ippin/1");
    assert_eq!(allowed["pinned"][0], "127.0.0.1/32");

    // From 127.0.0.2: refused, with the reason in the audit log.
    let (code, out, err) = ssh(&ex, dir.path(), "127.0.0.2");
    assert_eq!(code, Some(255), "{out}{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let denied = ex.wait_audit(|v| v["event"] == "ssh.auth.denied");
    assert_eq!(denied["reason"], "pinned_ip_mismatch", "{denied}");
    assert_eq!(denied["user"], "alice");
    assert!(
        denied["observed"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{denied}"
    );
    assert!(
        ex.audit
            .iter()
            .filter(|v| v["event"] == "ssh.auth.allowed")
            .count()
            == 1,
        "one login only: {:#?}",
        ex.audit
    );

    // A certificate without a pin, for a user whose role requires one: refused too.
    let (code, out, err) = ssh_with(&ex, dir.path(), "127.0.0.1", "unpinned");
    assert_eq!(code, Some(255), "{out}{err}");
    let missing = ex.wait_audit(|v| v["reason"] == "pinned_ip_missing");
    assert_eq!(missing["key_id"], "alice@ippin/2");
}
