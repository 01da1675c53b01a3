//! `ippin ssh`: the real OpenSSH client with the certificate of `ippin login`, and the login
//! again it offers when the refusal says the certificate is pinned elsewhere (docs/cli.md,
//! "ippin ssh"). A pinned user logs in from 127.0.0.1, then connects from 127.0.0.2
//! (`ssh -b 127.0.0.2`): refused, offered the login again (the answer and the password typed
//! by a script on a pseudo-terminal, each once its prompt has appeared), which runs from
//! 127.0.0.2, and the retried command succeeds. Without a terminal nothing is asked.
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
    run(ippin_ssh_cmd(s, ours, bind, server), stdin, COMMAND_TIMEOUT)
}

/// Runs `cmd` on a pseudo-terminal (python3's `pty`), typing each answer once its prompt
/// has appeared in the output (bounded: 60 s). The output (stdout and stderr merged, as a
/// terminal shows them, `\r\n` read as `\n`) is in `stdout`.
fn on_terminal(cmd: &Command, answers: &[(&str, &str)]) -> Ran {
    const DRIVER: &str = r#"
import json, os, pty, select, sys, time
answers = json.loads(os.environ["PTY_ANSWERS"])
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out, seen, step = b"", 0, 0
deadline = time.time() + 60
while True:
    if time.time() > deadline:
        os.kill(pid, 9)
        sys.stdout.buffer.write(out)
        sys.exit(124)
    r, _, _ = select.select([fd], [], [], 0.2)
    if not r:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
    if step < len(answers) and answers[step][0].encode() in out[seen:]:
        seen = len(out)
        os.write(fd, answers[step][1].encode())
        step += 1
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out.replace(b"\r\n", b"\n"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut py = Command::new(peer("python3"));
    py.arg("-c")
        .arg(DRIVER)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let answers: Vec<[&str; 2]> = answers.iter().map(|(a, b)| [*a, *b]).collect();
    py.env(
        "PTY_ANSWERS",
        serde_json::to_string(&answers).expect("JSON"),
    );
    run(py, b"", COMMAND_TIMEOUT)
}

/// The `ippin ssh` command [`ippin_ssh`] runs: `ippin ssh [ours…] -- HERMETIC -b BIND -p PORT
/// alice@HOST whoami`.
fn ippin_ssh_cmd(s: &Setup, ours: &[&str], bind: &str, server: SocketAddr) -> Command {
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
    cmd
}

/// The password line of alice, typed when asked.
fn password() -> String {
    format!("{}\n", ALICE.1)
}

const PASSWORD_PROMPT: &str = "password for alice";

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
    let cmd = ippin_ssh_cmd(&s, &[], "127.0.0.2", s.cluster.addr(SSH));
    let ran = on_terminal(&cmd, &[(QUESTION, "y\n"), (PASSWORD_PROMPT, &password())]);
    let out = &ran.stdout;
    // The retried command ran, and its status is ippin ssh's.
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(out.matches("user: alice\n").count(), 1, "{ran:?}");
    // ssh's refusal banner reached the user, then the question, then the login's report.
    let banner = out.find("ippin: refused (pinned_ip_mismatch)");
    let question = out.find(QUESTION);
    let relogged = out.find("pinned to 127.0.0.2");
    assert!(
        banner.is_some() && banner < question && question < relogged,
        "{out}"
    );
    assert!(out.contains("(127.0.0.2)? [y/N]"), "{out}");
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

/// On a pipe nothing is asked and nothing is read: the answer and the password a script
/// would pipe in stay unread by ippin (a first ssh that is not refused would forward them
/// to the SSH server as the remote command's input; ippin never reads them for a login).
#[test]
fn without_a_terminal_nothing_is_asked_or_read() {
    let s = setup();
    let ran = ippin_ssh(&s, &[], "127.0.0.2", s.cluster.addr(SSH), &password_line());
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(!ran.stderr.contains(QUESTION), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no terminal to ask on"),
        "{}",
        ran.stderr
    );
    assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
}

/// A refusal line printed after authentication (by the session: here a stand-in `ssh` that
/// runs ippin's `LocalCommand`, as OpenSSH does once authenticated, then prints a refusal
/// and exits 255 like a nested ssh would) is not believed: no question, no second run.
#[test]
fn a_refusal_printed_by_the_session_is_not_believed() {
    let s = setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("ssh");
    let runs = dir.path().join("runs");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho run >> {runs}\nfor a in \"$@\"; do case \"$a\" in LocalCommand=*) sh -c \"${{a#LocalCommand=}}\";; esac; done\necho 'ippin: refused (pinned_ip_mismatch): client IP 198.51.100.1 does not match' >&2\nexit 255\n",
            runs = runs.display()
        ),
    )
    .expect("write the stand-in");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let cmd = ippin_ssh_cmd(&s, &[], "127.0.0.2", s.cluster.addr(SSH));
    let mut args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    let at = args.iter().position(|a| a == "--ssh").expect("--ssh") + 1;
    args[at] = fake.clone().into_os_string();
    let mut cmd = Command::new(IPPIN);
    cmd.args(&args);
    let ran = on_terminal(&cmd, &[(QUESTION, "y\n"), (PASSWORD_PROMPT, &password())]);
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(!ran.stdout.contains(QUESTION), "{}", ran.stdout);
    let count = std::fs::read_to_string(&runs)
        .expect("runs")
        .lines()
        .count();
    assert_eq!(count, 1, "the session's refusal caused a second run");
    // Without the marker (a refusal before authentication) the same output is offered.
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'ippin: refused (pinned_ip_mismatch): client IP 198.51.100.1 does not match' >&2\nexit 255\n",
    )
    .expect("rewrite the stand-in");
    let ran = on_terminal(&cmd, &[(QUESTION, "n\n")]);
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(ran.stdout.contains(QUESTION), "{}", ran.stdout);
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
    let cmd = ippin_ssh_cmd(&s, &[], "127.0.0.2", s.cluster.addr(SSH));
    for answer in ["n\n", "\u{4}", "yes-please\n"] {
        let before = denials(&s.cluster, "pinned_ip_mismatch");
        let ran = on_terminal(&cmd, &[(QUESTION, answer)]);
        assert_eq!(ran.code, Some(255), "{ran:?}");
        assert!(ran.stdout.contains(QUESTION), "{}", ran.stdout);
        assert!(!ran.stdout.contains("user: alice"), "{ran:?}");
        assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
        let ok = ippin_test_support::wait_until(std::time::Duration::from_secs(10), || {
            denials(&s.cluster, "pinned_ip_mismatch") > before
        });
        assert!(ok, "no refusal audited");
        // One attempt only: ippin ssh has exited, so no retry can follow.
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
    let cmd = ippin_ssh_cmd(&s, &[], "127.0.0.1", s.cluster.addr(SSH));
    let ran = on_terminal(&cmd, &[(QUESTION, "y\n"), (PASSWORD_PROMPT, &password())]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("user: alice\n"), "{ran:?}");
    assert!(
        ran.stdout.contains("ippin: refused (expired)")
            && ran.stdout.contains("the certificate has expired (expired)")
            && ran.stdout.contains(QUESTION),
        "{}",
        ran.stdout
    );
    assert_eq!(denials(&s.cluster, "expired"), 1);
    assert_eq!(pinned(&s.login), ["127.0.0.1/32"]);
}
