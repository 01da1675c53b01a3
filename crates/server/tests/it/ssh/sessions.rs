//! Real sessions through the real `ippin serve` binary, with the real OpenSSH client, as OS
//! logins the tests create (and remove) with `useradd`: a shell under a terminal, `exec`
//! with its exit status, `sftp`, the processes ended with the connection; and the network
//! restrictions held by the kernel on the session's processes (curl, nc, Python sockets),
//! changed live, with no way out of the session cgroup; and sessions refused when the
//! enforcement cannot be set up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use ippin::client::{Endpoint, login};
use ippin_test_support::{free_port, peer, wait_for_tcp};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::ssh::harness::{CLIENT_TIMEOUT, Identity, ip, ssh, ssh_command, wait_for};
use crate::ssh::serve::{Serve, save};

/// `useradd` and `userdel` lock the user database: one at a time.
static USER_DB: Mutex<()> = Mutex::new(());

/// An OS login made for one test, removed (with its home and processes) on drop.
pub(crate) struct OsUser {
    pub(crate) name: String,
    uid: u32,
    pub(crate) home: PathBuf,
}

impl OsUser {
    pub(crate) fn create(tag: &str) -> OsUser {
        let name = format!("ippin-{tag}-{}", std::process::id() % 100_000);
        let _db = USER_DB.lock().unwrap_or_else(|p| p.into_inner());
        // A leftover of an interrupted run goes first.
        let _ = std::process::Command::new(peer("userdel"))
            .args(["-r", "-f", &name])
            .stderr(Stdio::null())
            .status();
        let st = std::process::Command::new(peer("useradd"))
            .args(["-m", "-s", "/bin/bash", &name])
            .status()
            .expect("useradd (scripts/install-peers installs passwd)");
        assert!(st.success(), "useradd {name}");
        let out = std::process::Command::new("id")
            .args(["-u", &name])
            .output()
            .expect("id -u");
        let uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("uid");
        OsUser {
            home: PathBuf::from(format!("/home/{name}")),
            name,
            uid,
        }
    }

    /// The pids of this login's processes.
    pub(crate) fn processes(&self) -> Vec<u32> {
        processes_of(self.uid)
    }
}

impl Drop for OsUser {
    fn drop(&mut self) {
        // Its processes go first (bounded): the uid is free for the next `useradd` only when
        // none is left.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            for pid in left {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _db = USER_DB.lock().unwrap_or_else(|p| p.into_inner());
        let _ = std::process::Command::new(peer("userdel"))
            .args(["-r", "-f", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let real = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse::<u32>().ok());
        if real == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// `ippin serve` with one ippin user, `bob`, whose role allows `login`; logged in.
struct Node {
    serve: Serve,
    dir: tempfile::TempDir,
    ssh: SocketAddr,
    /// An SSH listener whose PROXY mode is unspecified: a header is read, never trusted.
    ssh_unspecified: SocketAddr,
    bob: Identity,
}

impl Node {
    /// With `policy`, the configuration's `nr.yaml` (`extra_config` names it).
    async fn start(login_name: &str, extra_config: &str, policy: Option<String>) -> Node {
        ippin::install_crypto_provider();
        let login_port = free_port(ip("127.0.0.1"));
        let ssh_port = free_port(ip("127.0.0.1"));
        let unspecified_port = free_port(ip("127.0.0.1"));
        let listeners = format!(
            "  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}\n  - \
             {{kind: ssh, listen: 127.0.0.1:{ssh_port}, proxy_protocol: off}}\n  - \
             {{kind: ssh, listen: 127.0.0.1:{unspecified_port}}}\n"
        );
        let (dir, config_path) = crate::attacks::site(&listeners, extra_config);
        // `ca init`'s roles, with bob's `dev` allowing the login.
        std::fs::write(
            dir.path().join("roles.yaml"),
            format!(
                "{}  allow:\n    logins: [{login_name}]\n",
                ippin::ca::ROLES_YAML
            ),
        )
        .expect("roles");
        if let Some(policy) = policy {
            std::fs::write(dir.path().join("nr.yaml"), policy).expect("policy");
        }
        let serve = Serve::start(&config_path, &dir.path().join("serve.log"));
        let login_addr = SocketAddr::new(ip("127.0.0.1"), login_port);
        let ssh = SocketAddr::new(ip("127.0.0.1"), ssh_port);
        let ssh_unspecified = SocketAddr::new(ip("127.0.0.1"), unspecified_port);
        tokio::task::spawn_blocking(move || {
            wait_for_tcp(login_addr);
            wait_for_tcp(ssh);
            wait_for_tcp(ssh_unspecified);
        })
        .await
        .expect("ippin serve listening");
        let ca_pem = std::fs::read_to_string(dir.path().join("ca/tls_ca.pem")).expect("CA");
        let creds = login(&Endpoint::new(login_addr, &ca_pem), "bob", "secret")
            .await
            .expect("bob logs in");
        let bob = save(dir.path(), "bob", &creds);
        Node {
            serve,
            dir,
            ssh,
            ssh_unspecified,
            bob,
        }
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| (v["event"] == "ssh").then(|| v["ssh"].clone()))
            .collect()
    }

    /// An OpenSSH connection shared by later `ssh -S CONTROL` runs (`ControlMaster`), as
    /// `login`; the client and its control socket.
    async fn shared_connection(&self, login: &str) -> (tokio::process::Child, PathBuf) {
        let control = self.dir.path().join("ctl");
        let mut master = ssh_command(&self.bob, login, "127.0.0.1", self.ssh);
        master
            .args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
            .arg(&control);
        let child = master.spawn().expect("ssh -M");
        wait_for("the shared connection", || control.exists()).await;
        (child, control)
    }

    async fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        wait_for(what, || {
            found = self.audit().into_iter().find(|v| pred(v));
            found.is_some()
        })
        .await;
        found.unwrap_or_default()
    }
}

/// A long-lived `ssh LOGIN@… sh` whose commands are written to its input: one session, many
/// commands, each answered with its output and status.
pub(crate) struct Remote {
    _child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Remote {
    fn open(node: &Node, login_name: &str) -> Remote {
        Remote::open_at(&node.bob, login_name, "127.0.0.1", node.ssh)
    }

    /// A shell as `login_name` with `id`, from `bind` to `server`.
    pub(crate) fn open_at(
        id: &Identity,
        login_name: &str,
        bind: &str,
        server: SocketAddr,
    ) -> Remote {
        let mut cmd = ssh_command(id, login_name, bind, server);
        cmd.arg("exec sh 2>&1").stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ssh");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Remote {
            _child: child,
            input,
            output,
        }
    }

    /// Runs `line` in the remote shell; its output (stdout and stderr) and exit status.
    pub(crate) async fn run(&mut self, line: &str) -> (String, i32) {
        let end = "__ippin_end__";
        // A command's output may not end in a newline: the marker starts a line of its own.
        let script = format!("{line}\n__s=$?; echo; echo \"{end}$__s\"\n");
        self.input
            .write_all(script.as_bytes())
            .await
            .expect("write to the session");
        let mut out = String::new();
        let read = async {
            while let Some(l) = self.output.next_line().await.expect("read the session") {
                if let Some(code) = l.strip_prefix(end) {
                    return code.trim().parse().unwrap_or(-1);
                }
                out.push_str(&l);
                out.push('\n');
            }
            panic!("the session ended during `{line}`: {out}");
        };
        let code = tokio::time::timeout(CLIENT_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not finish"));
        (out, code)
    }
}

/// The cgroup v2 directory named by the contents of a `/proc/PID/cgroup` file (its `0::`
/// line; the other lines are cgroup v1 hierarchies on a hybrid system).
fn cgroup_dir(proc_cgroup: &str) -> PathBuf {
    let mount = ippin_restrict::cgroup2_mount().expect("cgroup v2");
    let line = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {proc_cgroup}"));
    mount.join(line.trim())
}

pub(crate) const PROBE: &str = r#"import socket, sys
fam, kind, host, port = sys.argv[1:5]
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET,
                  socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(3)
try:
    if kind == "udp":
        s.sendto(b"x", (host, int(port)))
    else:
        s.connect((host, int(port)))
    print("OK")
except OSError as e:
    print("ERR", e.strerror)
"#;

pub(crate) fn restrictions(deny: &[&str]) -> String {
    let mut s = String::from(
        "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.0/8\n  \
         - cidr: ::1/128\n",
    );
    if !deny.is_empty() {
        s.push_str("  deny:\n");
        for d in deny {
            s.push_str(&format!("  - cidr: {d}\n"));
        }
    }
    s
}

/// A loopback TCP listener that accepts and answers `ok` over HTTP, on a thread.
pub(crate) fn http_listener(host: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind((host, 0)).expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_exec_and_sftp_run_as_the_os_login() {
    let user = OsUser::create("s1");
    let node = Node::start(&user.name, "", None).await;

    // exec: a real command, its output and exit status, as the login.
    let run = ssh(
        &node.bob,
        &user.name,
        "127.0.0.1",
        node.ssh,
        &["id -un; echo \"$HOME $USER $SHELL\"; echo \"$SSH_CONNECTION\"; exit 7"],
    )
    .await;
    assert_eq!(run.status, Some(7), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], user.name);
    assert_eq!(
        lines[1],
        format!("{} {} /bin/bash", user.home.display(), user.name)
    );
    let conn: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(conn[0], "127.0.0.1", "{run:?}");
    assert_eq!(conn[2..], ["127.0.0.1", &node.ssh.port().to_string()]);

    // The environment is fresh: nothing of the server's.
    let run = ssh(&node.bob, &user.name, "127.0.0.1", node.ssh, &["env"]).await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(!run.stdout.contains("CARGO"), "{}", run.stdout);
    assert!(
        run.stdout.contains("PATH=/usr/local/bin:/usr/bin:/bin"),
        "{}",
        run.stdout
    );

    // A shell under a terminal, driven through its input.
    let mut cmd = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
    cmd.arg("-tt").stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("ssh -tt");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(b"id; tty; echo \"SC=$SSH_CONNECTION T=$TERM\"; exit 3\n")
        .await
        .expect("type");
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .expect("shell in time")
        .expect("ssh -tt");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("uid={}({})", user.uid, user.name)),
        "{text}"
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("SC=127.0.0.1 "), "{text}");

    // sftp: put and get, as the login, in its home.
    let local = node.dir.path().join("up.txt");
    std::fs::write(&local, "sftp payload\n").expect("file");
    let back = node.dir.path().join("back.txt");
    let batch = node.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} up.txt\nget up.txt {}\n",
            local.display(),
            back.display()
        ),
    )
    .expect("batch");
    let mut sftp = tokio::process::Command::new(peer("sftp"));
    sftp.args(["-F", "/dev/null", "-b"])
        .arg(&batch)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-i")
        .arg(&node.bob.key)
        .arg("-o")
        .arg(format!("CertificateFile={}", node.bob.cert.display()))
        .args(["-P", &node.ssh.port().to_string()])
        .arg(format!("{}@127.0.0.1", user.name))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CLIENT_TIMEOUT, sftp.output())
        .await
        .expect("sftp in time")
        .expect("sftp");
    assert!(out.status.success(), "sftp: {out:?}");
    assert_eq!(
        std::fs::read_to_string(&back).expect("got it back"),
        "sftp payload\n"
    );
    let meta = std::fs::metadata(user.home.join("up.txt")).expect("uploaded file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user.uid);

    // A certificate's force-command replaces what the client asks; the asked command is in
    // SSH_ORIGINAL_COMMAND and in the audit line.
    let forced_key = node.dir.path().join("forced");
    std::fs::copy(&node.bob.key, &forced_key).expect("copy key");
    let public = std::process::Command::new(peer("ssh-keygen"))
        .args(["-y", "-f"])
        .arg(&forced_key)
        .output()
        .expect("ssh-keygen -y");
    std::fs::write(node.dir.path().join("forced.pub"), &public.stdout).expect("public key");
    let signed = std::process::Command::new(peer("ssh-keygen"))
        .arg("-q")
        .arg("-s")
        .arg(node.dir.path().join("ca/ssh_user_ca"))
        .args(["-I", "bob@ippin/777", "-z", "777", "-V", "-1m:+1h", "-n"])
        .arg(format!("bob,{}", user.name))
        .arg("-O")
        .arg("force-command=id -un; echo \"asked: $SSH_ORIGINAL_COMMAND\"")
        .arg(node.dir.path().join("forced.pub"))
        .output()
        .expect("ssh-keygen -s");
    assert!(signed.status.success(), "{signed:?}");
    let forced = crate::ssh::harness::Identity {
        key: forced_key,
        cert: node.dir.path().join("forced-cert.pub"),
    };
    let run = ssh(
        &forced,
        &user.name,
        "127.0.0.1",
        node.ssh,
        &["echo", "mine"],
    )
    .await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("{}\nasked: echo mine\n", user.name));
    let start = node
        .wait_audit("the forced command's start", |v| {
            v["event"] == "ssh.session.start" && v["original_command"] == "echo mine"
        })
        .await;
    assert!(
        start["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("id -un")),
        "{start}"
    );

    // A command killed by a signal: the client is told (OpenSSH exits 255).
    let run = ssh(
        &node.bob,
        &user.name,
        "127.0.0.1",
        node.ssh,
        &["kill -TERM $$"],
    )
    .await;
    assert_eq!(run.status, Some(255), "{run:?}");
    let end = node
        .wait_audit("the end of the killed command", |v| {
            v["event"] == "ssh.session.end" && v["signal"] == "TERM"
        })
        .await;
    assert_eq!(end["login"], user.name.as_str());
    assert_eq!(end["user"], "bob");

    // A client that goes away: the session's processes are ended, also those in the
    // background.
    let mut cmd = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
    cmd.arg("sleep 300 & sleep 301");
    let mut child = cmd.spawn().expect("ssh sleep");
    wait_for("the sleeps", || user.processes().len() >= 2).await;
    child.kill().await.expect("kill the client");
    wait_for("the session's processes to end", || {
        user.processes().is_empty()
    })
    .await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kernel_holds_every_process_of_a_session_to_the_restrictions() {
    let user = OsUser::create("s2");
    let nr_extra = "network_restrictions: nr.yaml\nnetwork_restrictions_poll: off\n";
    let policy = restrictions(&["127.0.0.3/32", "127.0.0.9/32"]);
    let node = Node::start(&user.name, nr_extra, Some(policy)).await;
    let log = node.serve.log();
    assert!(
        log.contains("sessions: kernel enforcement in force"),
        "{log}"
    );

    let allowed = http_listener("127.0.0.1");
    let denied = http_listener("127.0.0.3");
    let v6 = http_listener("::1");
    let probe = user.home.join("probe.py");
    std::fs::write(&probe, PROBE).expect("probe");

    let mut remote = Remote::open(&node, &user.name);
    let (cg, code) = remote.run("cat /proc/self/cgroup").await;
    assert_eq!(code, 0, "{cg}");
    let cgroup = cgroup_dir(&cg);
    assert!(cgroup.is_dir(), "{}", cgroup.display());

    let py = |fam: &str, kind: &str, host: &str, port: u16| {
        format!("python3 {} {fam} {kind} {host} {port}", probe.display())
    };
    // TCP and UDP, IPv4 and IPv6, allowed and denied.
    let cases: Vec<(String, &str)> = vec![
        (py("4", "tcp", "127.0.0.1", allowed.port()), "OK"),
        (
            py("4", "tcp", "127.0.0.3", denied.port()),
            "ERR Operation not permitted",
        ),
        (py("6", "tcp", "::1", v6.port()), "OK"),
        (py("6", "tcp", "::2", 80), "ERR Operation not permitted"),
        (py("4", "udp", "127.0.0.1", 9), "OK"),
        (
            py("4", "udp", "127.0.0.3", 9),
            "ERR Operation not permitted",
        ),
        (py("6", "udp", "::1", 9), "OK"),
        (py("6", "udp", "::2", 9), "ERR Operation not permitted"),
        // As the kernel routes them: 0.0.0.0 is 127.0.0.1, ::ffff:a.b.c.d is a.b.c.d.
        (py("4", "tcp", "0.0.0.0", allowed.port()), "OK"),
        (py("6", "tcp", "::ffff:127.0.0.1", allowed.port()), "OK"),
        (
            py("6", "tcp", "::ffff:127.0.0.9", 80),
            "ERR Operation not permitted",
        ),
    ];
    for (line, want) in &cases {
        let (out, _) = remote.run(line).await;
        assert_eq!(out.trim(), *want, "{line}");
    }
    let (out, code) = remote
        .run(&format!("curl -sS --max-time 5 http://{allowed}/"))
        .await;
    assert_eq!((out.trim(), code), ("ok", 0), "curl allowed");
    let (out, code) = remote
        .run(&format!("curl -sS --max-time 5 http://{denied}/"))
        .await;
    assert_eq!(code, 7, "curl denied: {out}");
    let (out, code) = remote
        .run(&format!("nc -v -z -w 3 127.0.0.3 {}", denied.port()))
        .await;
    assert!(
        code != 0 && out.contains("Operation not permitted"),
        "nc: {out}"
    );

    // Each denial is a T4002I line naming the program, its pid and cgroup.
    let curl = node
        .wait_audit("curl's T4002I", |v| {
            v["code"] == "T4002I" && v["program"] == "curl"
        })
        .await;
    assert_eq!(curl["action"], 1);
    assert_eq!(curl["dst_addr"], "127.0.0.3");
    assert_eq!(curl["dst_port"], denied.port());
    assert_eq!(curl["login"], user.name.as_str());
    assert_eq!(curl["user"], "bob");
    assert_eq!(curl["cluster_name"], "local");
    assert!(curl["pid"].as_u64().is_some_and(|p| p > 1), "{curl}");
    assert!(curl["cgroup_id"].as_u64().is_some(), "{curl}");
    assert!(curl["server_id"].as_str().is_some_and(|s| !s.is_empty()));
    let mapped = node
        .wait_audit("the mapped destination's T4002I", |v| {
            v["code"] == "T4002I" && v["program"] == "python3" && v["dst_addr"] == "127.0.0.9"
        })
        .await;
    assert_eq!(mapped["version"], 4);

    // No escape: forks, double forks and setsid stay in the session cgroup, and the login
    // cannot move anything out of it.
    let root_procs = ippin_restrict::cgroup2_mount()
        .expect("cgroup v2")
        .join("cgroup.procs");
    let (out, _) = remote
        .run(&format!(
            "setsid sh -c 'sleep 300' </dev/null >/dev/null 2>&1 & \
             (sh -c 'sleep 301 </dev/null >/dev/null 2>&1 &' &); \
             echo $$ > {}; echo \"w=$?\"",
            root_procs.display()
        ))
        .await;
    assert!(out.contains("w=1") || out.contains("w=2"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    let in_session = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|c| cgroup_dir(&c) == cgroup)
            .unwrap_or(true)
    };
    wait_for("both sleeps", || user.processes().len() >= 4).await;
    for pid in user.processes() {
        assert!(in_session(pid), "pid {pid} left the session cgroup");
    }
    let (out, _) = remote
        .run(&py("4", "tcp", "127.0.0.3", denied.port()).replace("python3", "setsid python3"))
        .await;
    assert_eq!(out.trim(), "ERR Operation not permitted");

    // The server's own dial for the session (`ssh -W`) to the denied address: refused, and
    // its event names the OS login and this node, as the kernel's events do.
    let mut forward = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
    forward
        .arg("-W")
        .arg(format!("127.0.0.3:{}", denied.port()));
    let out = tokio::time::timeout(CLIENT_TIMEOUT, forward.output())
        .await
        .expect("in time")
        .expect("ssh -W");
    assert!(!out.status.success(), "{out:?}");
    let event = node
        .wait_audit("the forward's T4002I", |v| {
            v["event"] == "session.network"
                && v["dst_addr"] == "127.0.0.3"
                && v["dst_port"] == denied.port()
                && v["action"] == 1
        })
        .await;
    assert_eq!(event["login"], user.name.as_str(), "{event}");
    assert_eq!(event["user"], "bob", "{event}");
    assert!(
        event["server_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{event}"
    );

    // A policy change while the session is open: its next connect is decided by it.
    std::fs::write(
        node.dir.path().join("nr.yaml"),
        restrictions(&["127.0.0.1/32"]),
    )
    .expect("policy 2");
    node.serve.hangup();
    wait_for("the reload", || {
        node.serve.log().contains("network restrictions reloaded")
    })
    .await;
    for (line, want) in [
        (
            py("4", "tcp", "127.0.0.1", allowed.port()),
            "ERR Operation not permitted",
        ),
        (
            py("4", "tcp", "0.0.0.0", allowed.port()),
            "ERR Operation not permitted",
        ),
        (py("4", "tcp", "127.0.0.3", denied.port()), "OK"),
    ] {
        let (out, _) = remote.run(&line).await;
        assert_eq!(out.trim(), want, "after the change: {line}");
    }

    // The end of the session: every process gone, the cgroup removed.
    drop(remote);
    wait_for("the session's processes to end", || {
        user.processes().is_empty()
    })
    .await;
    wait_for("the session cgroup to go", || !cgroup.exists()).await;
}

/// A PROXY header on a listener that trusts none names whoever its sender likes: an unpinned
/// user's session is let in, but `SSH_CONNECTION` and `SSH_CLIENT` name the TCP peer, not
/// the claim (scripts and log shippers read them), while `whoami` shows the claim marked
/// untrusted.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_client_address_is_not_what_the_session_is_told() {
    let user = OsUser::create("s6");
    let node = Node::start(&user.name, "", None).await;
    let relay = node.dir.path().join("relay.py");
    std::fs::write(
        &relay,
        "import os, socket, sys, threading\n\
         s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
         s.sendall(b'PROXY TCP4 203.0.113.66 127.0.0.1 4242 22\\r\\n')\n\
         def up():\n\
         \x20   while True:\n\
         \x20       d = os.read(0, 65536)\n\
         \x20       if not d:\n\
         \x20           s.shutdown(socket.SHUT_WR)\n\
         \x20           return\n\
         \x20       s.sendall(d)\n\
         threading.Thread(target=up, daemon=True).start()\n\
         while True:\n\
         \x20   d = s.recv(65536)\n\
         \x20   if not d:\n\
         \x20       break\n\
         \x20   os.write(1, d)\n",
    )
    .expect("relay");
    let through_claim = |command: &'static str| {
        let mut cmd = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh_unspecified);
        cmd.arg("-o").arg(format!(
            "ProxyCommand=python3 {} {}",
            relay.display(),
            node.ssh_unspecified.port()
        ));
        cmd.arg(command);
        cmd
    };
    let out = tokio::time::timeout(
        CLIENT_TIMEOUT,
        through_claim("echo \"$SSH_CONNECTION|$SSH_CLIENT\"").output(),
    )
    .await
    .expect("in time")
    .expect("ssh");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("203.0.113.66"), "{text}");
    let (connection, client) = text.trim().split_once('|').expect("two variables");
    assert!(connection.starts_with("127.0.0.1 "), "{connection}");
    assert!(
        connection.ends_with(&format!(" 127.0.0.1 {}", node.ssh_unspecified.port())),
        "{connection}"
    );
    assert!(client.starts_with("127.0.0.1 "), "{client}");
    // The built-in says what was claimed, and that it is not trusted.
    let mut builtins = ssh_command(&node.bob, "bob", "127.0.0.1", node.ssh_unspecified);
    builtins
        .arg("-o")
        .arg(format!(
            "ProxyCommand=python3 {} {}",
            relay.display(),
            node.ssh_unspecified.port()
        ))
        .arg("whoami");
    let out = tokio::time::timeout(CLIENT_TIMEOUT, builtins.output())
        .await
        .expect("in time")
        .expect("ssh whoami");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("observed: 203.0.113.66:0 (proxy_v1, untrusted)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_refused_when_enforcement_cannot_be_set_up() {
    let user = OsUser::create("s3");
    let extra = "network_restrictions: nr.yaml\nsessions:\n  cgroup_parent: \
                 /sys/fs/cgroup/ippin-no-such-parent\n";
    let node = Node::start(&user.name, extra, Some(restrictions(&[]))).await;
    let log = node.serve.log();
    assert!(log.contains("cannot be enforced"), "{log}");
    let run = ssh(&node.bob, &user.name, "127.0.0.1", node.ssh, &["id"]).await;
    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("refused (restrictions_unavailable)"),
        "{run:?}"
    );
    assert!(run.stderr.contains("ippin-no-such-parent"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let refused = node
        .wait_audit("the refusal", |v| v["event"] == "ssh.session.refused")
        .await;
    assert_eq!(refused["reason"], "restrictions_unavailable");
    // Nothing started: no start line (the uid may be an earlier test's, so its processes
    // are not the measure).
    assert!(
        !node
            .audit()
            .iter()
            .any(|v| v["event"] == "ssh.session.start"),
        "{:?}",
        node.audit()
    );
}

/// `cmd` (an `ssh` command) running a process that keeps its connection busy: spawned, and
/// returned once the remote process has started (bounded).
pub(crate) async fn busy_session(mut cmd: tokio::process::Command) -> tokio::process::Child {
    cmd.arg("echo started; exec sleep 600");
    let mut client = cmd.spawn().expect("ssh");
    let mut stdout = client.stdout.take().expect("stdout");
    let mut first = [0u8; 8];
    tokio::time::timeout(
        CLIENT_TIMEOUT,
        tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first),
    )
    .await
    .expect("in time")
    .expect("the command started");
    assert_eq!(&first, b"started\n");
    client
}

/// An authenticated connection is checked again every `ssh_recheck_interval` (2 s by
/// default): once its certificate has expired, the server ends it, and with it the
/// processes of its sessions, though the client keeps it busy.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_is_ended_when_its_certificate_expires() {
    let user = OsUser::create("s7");
    let node = Node::start(&user.name, "cert_ttl: 15s\n", None).await;
    let started = std::time::Instant::now();
    let client = busy_session(ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh)).await;
    assert!(!user.processes().is_empty(), "the session's sleep runs");
    // Bounded: the certificate's 15 s, then at most one recheck interval, and slack.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        client.wait_with_output(),
    )
    .await
    .expect("the server ended the connection in time")
    .expect("ssh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("connection ended (expired)"), "{err}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "ended before the certificate could have expired: {:?}",
        started.elapsed()
    );
    let ended = node
        .wait_audit("the end of the connection", |v| {
            v["event"] == "ssh.connection.ended" && v["reason"] == "expired"
        })
        .await;
    assert_eq!(ended["user"], "bob");
    assert_eq!(ended["login"], user.name.as_str());
    wait_for("the session's processes to end", || {
        user.processes().is_empty()
    })
    .await;
}

/// A connection kept open (OpenSSH's connection sharing) outlives its certificate until the
/// next recheck: each new channel is checked again too, so once the certificate has expired
/// nothing more runs on it. (The recheck is set to an hour here, so that the channels are
/// what refuses.)
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_connection_runs_nothing_after_its_certificate_expired() {
    let user = OsUser::create("s4");
    let node = Node::start(
        &user.name,
        "cert_ttl: 20s\nssh_recheck_interval: 1h\n",
        None,
    )
    .await;
    let (_master, control) = node.shared_connection(&user.name).await;
    let through_master = |command: &'static str| {
        let mut cmd = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
        cmd.arg("-S").arg(&control).arg(command);
        cmd
    };
    // More channels, one after the other, than a connection may have at once: each one's
    // place is given back when it ends.
    for _ in 0..ippin::ssh::session::MAX_SESSION_CHANNELS + 2 {
        let out = tokio::time::timeout(CLIENT_TIMEOUT, through_master("echo shared").output())
            .await
            .expect("in time")
            .expect("ssh -S");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "shared\n", "{out:?}");
    }

    // The certificate lives 20 s: poll (bounded) until a new channel is refused.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = tokio::time::timeout(CLIENT_TIMEOUT, through_master("echo shared").output())
            .await
            .expect("in time")
            .expect("ssh -S");
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("refused (expired)") {
            assert!(out.stdout.is_empty(), "{out:?}");
            break;
        }
        assert_eq!(String::from_utf8_lossy(&out.stdout), "shared\n", "{out:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {err}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let refused = node
        .wait_audit("the refusal", |v| {
            v["event"] == "ssh.session.refused" && v["reason"] == "expired"
        })
        .await;
    assert_eq!(refused["login"], user.name.as_str());

    // A forward through the shared connection is refused the same way.
    let (echo, _task) = crate::ssh::forward::echo_listener("127.0.0.1").await;
    let mut forward = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
    forward
        .arg("-S")
        .arg(&control)
        .arg("-W")
        .arg(echo.to_string());
    let out = tokio::time::timeout(CLIENT_TIMEOUT, forward.output())
        .await
        .expect("in time")
        .expect("ssh -W");
    assert!(!out.status.success(), "{out:?}");
    node.wait_audit("the forward's refusal", |v| {
        v["event"] == "ssh.session.refused"
            && v["reason"] == "expired"
            && v["kind"] == "direct-tcpip"
    })
    .await;
}

/// Closing a channel whose process still holds the server's resources (a background job
/// keeping its output open) does not give its place back: a client cannot have more than
/// MAX_SESSION_CHANNELS such channels at once on one connection.
#[tokio::test(flavor = "multi_thread")]
async fn closed_channels_whose_processes_linger_keep_their_place() {
    let user = OsUser::create("s5");
    let node = Node::start(&user.name, "", None).await;
    let (_master, control) = node.shared_connection(&user.name).await;
    let through_master = |command: &'static str| {
        let mut cmd = ssh_command(&node.bob, &user.name, "127.0.0.1", node.ssh);
        cmd.arg("-S").arg(&control).arg(command);
        cmd
    };
    let max = ippin::ssh::session::MAX_SESSION_CHANNELS;
    for i in 0..max {
        // The shell exits at once; its background `sleep` keeps the output open, so the
        // channel is never done. The client gives up on it (its channel is closed). The
        // server hangs up the channel's process group when the client closes it while the
        // shell still runs: the `sleep` ignores that, as a process meant to linger would
        // (without it, whether it survives depends on which of the two came first).
        let mut cmd = through_master("trap '' HUP; sleep 600 & echo started");
        let mut child = cmd.spawn().expect("ssh -S");
        let mut out = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(CLIENT_TIMEOUT, out.next_line())
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(line.as_deref(), Some("started"), "channel {i}");
        child.kill().await.expect("kill the mux client");
    }
    let sleeps = || {
        user.processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .count()
    };
    wait_for("the lingering sleeps", || sleeps() >= max).await;
    let out = tokio::time::timeout(CLIENT_TIMEOUT, through_master("echo one more").output())
        .await
        .expect("in time")
        .expect("ssh -S");
    // Refused on the shared connection (OpenSSH then makes a connection of its own).
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Session open refused by peer"),
        "an eleventh channel ran on the shared connection: {out:?}"
    );
}

/// A client that sends its disconnect and then keeps the TCP connection open and quiet does
/// not keep its session: the server waits a few seconds for it to close (russh change 6 in
/// `vendor/russh/PATCHES.md`), then drops the connection, and the session's processes end
/// with it. A relay stands between the russh client and the server: it passes the client's
/// bytes on and, once the client has closed, holds its side towards the server open.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_and_stays_connected_does_not_keep_its_session() {
    use std::sync::Arc;

    use ippin_cert::ssh_key::{Certificate, PrivateKey};
    use russh::client::{self, AuthResult};

    struct AnyHostKey;
    impl client::Handler for AnyHostKey {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    let user = OsUser::create("s8");
    let node = Node::start(&user.name, "", None).await;
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the relay");
    let relay_addr = relay.local_addr().expect("relay address");
    let server = node.ssh;
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (client_side, _) = relay.accept().await.expect("accept");
        let server_side = tokio::net::TcpStream::connect(server)
            .await
            .expect("connect to the server");
        let (mut from_client, mut to_client) = client_side.into_split();
        let (mut from_server, mut to_server) = server_side.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        });
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        // The client closed. Dropping the write half would shut it down: it is handed over
        // instead, and the connection to the server stays open, with nothing more sent.
        let _ = held_tx.send(to_server);
    });

    let key = PrivateKey::read_openssh_file(&node.bob.key).expect("key");
    let cert = Certificate::read_file(&node.bob.cert).expect("certificate");
    let stream = tokio::net::TcpStream::connect(relay_addr)
        .await
        .expect("connect to the relay");
    let mut session = tokio::time::timeout(
        CLIENT_TIMEOUT,
        client::connect_stream(Arc::new(client::Config::default()), stream, AnyHostKey),
    )
    .await
    .expect("key exchange in time")
    .expect("key exchange");
    let auth = session
        .authenticate_openssh_cert(user.name.clone(), Arc::new(key), cert)
        .await
        .expect("authentication");
    assert!(matches!(auth, AuthResult::Success), "{auth:?}");
    let channel = session
        .channel_open_session()
        .await
        .expect("session channel");
    channel.exec(false, "sleep 300").await.expect("exec");
    wait_for("the session's sleep", || !user.processes().is_empty()).await;

    session
        .disconnect(russh::Disconnect::ByApplication, "bye", "en")
        .await
        .expect("disconnect");
    drop(channel);
    drop(session);
    let held = tokio::time::timeout(CLIENT_TIMEOUT, held_rx)
        .await
        .expect("the client closed its side in time")
        .expect("the relay holds the server's side");
    // The connection to the server is still open here (`held`); the session is not.
    wait_for("the session's processes to end", || {
        user.processes().is_empty()
    })
    .await;
    drop(held);
}
