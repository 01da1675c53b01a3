//! The harness: a real `ippin serve` from `ippin ca init`, real peers, and
//! bounded runs of short-lived commands.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ippin_test_support::{Child, free_port, temp_dir, wait_until};
use serde_json::Value;

/// The `ippin` binary under test.
pub(crate) const IPPIN: &str = env!("CARGO_BIN_EXE_ippin");

/// Passwords of the two users every cluster has.
pub(crate) const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub(crate) const BOB: (&str, &str) = ("bob", "bob-password-1");

/// The bound for a short-lived command (login, curl, inspect, …).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub(crate) const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The prefix of a listener description that binds it on `[::1]` instead
/// of 127.0.0.1.
pub(crate) const ON_V6: &str = "v6 ";

/// What a finished command printed.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Exit code (`None` when killed by a signal).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` with `stdin`, waiting at most `timeout`.
///
/// # Panics
/// When it cannot start, or does not finish in time (it is killed first).
pub(crate) fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Ran {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not finish within {timeout:?}; stdout: {} stderr: {}",
                out_reader.join().unwrap_or_default(),
                err_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Writes a configuration the owner's alone (0600): one with password hashes that others
/// may read is refused.
pub(crate) fn write_config(path: &Path, text: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write the configuration");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Runs the `ippin` binary.
pub(crate) fn ippin(args: &[&str], stdin: &[u8]) -> Ran {
    let mut cmd = Command::new(IPPIN);
    cmd.args(args);
    run(cmd, stdin, COMMAND_TIMEOUT)
}

/// A running `ippin serve` over a configuration made by `ippin ca init`,
/// with users alice (role `pinned-ip`) and bob (role `dev`) and the
/// listeners the test asked for, each on its own loopback port.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ports: Vec<u16>,
    ips: Vec<IpAddr>,
    server: Option<Child>,
}

impl Cluster {
    /// Starts a cluster. Each listener is the inside of a YAML flow mapping
    /// without `listen`, e.g. `kind: tls, proxy_protocol: on`, bound on
    /// 127.0.0.1, or on `[::1]` when it starts with [`ON_V6`].
    pub(crate) fn start(listeners: &[&str]) -> Cluster {
        Cluster::start_with("", listeners)
    }

    /// As [`Cluster::start`], with `top` (top-level YAML lines, e.g.
    /// `login_limits: {lockout: 2s}\n`) added to the configuration.
    pub(crate) fn start_with(top: &str, listeners: &[&str]) -> Cluster {
        let dir = temp_dir();
        let root = dir.path().to_str().expect("UTF-8 temp path").to_owned();
        let init = ippin(&["ca", "init", &root], b"");
        assert_eq!(init.code, Some(0), "ca init: {init:?}");
        let config = dir.path().join("ippin.yaml");
        let config_s = config.to_str().expect("UTF-8").to_owned();
        for ((user, password), role) in [(ALICE, "pinned-ip"), (BOB, "dev")] {
            let added = ippin(
                &["user", "add", "--config", &config_s, user, "--role", role],
                password.as_bytes(),
            );
            assert_eq!(added.code, Some(0), "user add {user}: {added:?}");
        }
        let text = std::fs::read_to_string(&config).expect("read config");
        let head = text
            .split_once("\nlisteners:")
            .map(|(head, _)| head)
            .expect("ca init writes a listeners section");
        let mut ports = Vec::new();
        let mut ips = Vec::new();
        let mut yaml = format!("{head}\n{top}listeners:\n");
        for l in listeners {
            let (ip, l) = match l.strip_prefix(ON_V6) {
                Some(rest) => (LOCALHOST6, rest),
                None => (LOCALHOST, *l),
            };
            let addr = SocketAddr::new(ip, free_port(ip));
            ports.push(addr.port());
            ips.push(ip);
            yaml.push_str(&format!("  - {{listen: \"{addr}\", {l}}}\n"));
        }
        std::fs::write(&config, yaml).expect("write config");
        let mut cmd = Command::new(IPPIN);
        cmd.args(["serve", "--config", &config_s]);
        let server = Child::spawn("ippin serve", cmd);
        let mut cluster = Cluster {
            dir,
            ports,
            ips,
            server: Some(server),
        };
        for i in 0..cluster.ports.len() {
            cluster.wait_ready(cluster.addr(i));
        }
        cluster
    }

    fn wait_ready(&mut self, addr: SocketAddr) {
        let ok = wait_until(ippin_test_support::READY_TIMEOUT, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                || !self.server.as_mut().is_some_and(Child::is_running)
        });
        let running = self.server.as_mut().is_some_and(Child::is_running);
        if !ok || !running {
            let (out, err) = self.server.take().map(Child::finish).unwrap_or_default();
            panic!("ippin serve is not listening on {addr}; stdout: {out} stderr: {err}");
        }
    }

    /// The address of listener `i`.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ips[i], self.ports[i])
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The X.509 CA certificate clients trust.
    pub(crate) fn ca_pem(&self) -> PathBuf {
        self.path("ca/tls_ca.pem")
    }

    /// `ippin login` to `url` as `user`, from source address `bind`
    /// (default: the kernel's choice), writing into a fresh folder.
    pub(crate) fn login(&self, url: &str, user: (&str, &str), bind: Option<&str>) -> Login {
        let out = tempfile::Builder::new()
            .prefix("login-")
            .tempdir_in(self.dir.path())
            .expect("login folder");
        let ca = self.ca_pem();
        let mut args = vec![
            "login",
            "--server",
            url,
            "--user",
            user.0,
            "--ca",
            ca.to_str().expect("UTF-8"),
            "--out",
            out.path().to_str().expect("UTF-8"),
        ];
        if let Some(ip) = bind {
            args.extend(["--bind", ip]);
        }
        let ran = ippin(&args, user.1.as_bytes());
        Login { dir: out, ran }
    }

    /// The audit log, one JSON value per line.
    pub(crate) fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) for an audit line for which `pred` holds.
    pub(crate) fn wait_audit(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(10), || {
            found = self.audit().into_iter().find(|v| pred(v));
            found.is_some()
        });
        assert!(ok, "no audit line for {what}; log: {:#?}", self.audit());
        found.expect("found")
    }

    /// The process id of `ippin serve` (to send it signals).
    pub(crate) fn server_pid(&self) -> u32 {
        self.server.as_ref().map_or(0, Child::id)
    }

    /// Whether `ippin serve` still runs.
    pub(crate) fn server_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(Child::is_running)
    }

    /// Stops the server and returns its output.
    pub(crate) fn stop(mut self) -> (String, String) {
        self.server.take().map(Child::finish).unwrap_or_default()
    }
}

/// The result of `ippin login`: the folder it wrote into and its output.
pub(crate) struct Login {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ran: Ran,
}

impl Login {
    /// Asserts success and returns self.
    pub(crate) fn ok(self) -> Login {
        assert_eq!(self.ran.code, Some(0), "login failed: {:?}", self.ran);
        self
    }

    pub(crate) fn tls_cert(&self) -> PathBuf {
        self.dir.path().join("ippin_tls.pem")
    }

    pub(crate) fn tls_key(&self) -> PathBuf {
        self.dir.path().join("ippin_tls.key")
    }

    pub(crate) fn ssh_cert(&self) -> PathBuf {
        self.dir.path().join("ippin_ed25519-cert.pub")
    }

    /// What `ippin inspect cert` says about the X.509 certificate.
    pub(crate) fn inspect_tls(&self) -> Value {
        inspect_cert(&self.tls_cert())
    }
}

/// `ippin inspect cert FILE` as JSON (asserting exit 0).
pub(crate) fn inspect_cert(file: &Path) -> Value {
    let ran = ippin(&["inspect", "cert", file.to_str().expect("UTF-8")], b"");
    assert_eq!(ran.code, Some(0), "inspect cert: {ran:?}");
    serde_json::from_str(&ran.stdout).expect("inspect JSON")
}

/// An HTTP answer seen by curl.
#[derive(Debug)]
pub(crate) struct Http {
    /// curl's exit code (0 when a response arrived).
    pub(crate) curl: Option<i32>,
    /// The status, 0 when there was no response.
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) stderr: String,
}

impl Http {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts the server answered `status` and returns the JSON body.
    pub(crate) fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        self.json()
    }

    /// Asserts there was no HTTP answer at all (the connection was refused
    /// or closed before a response).
    pub(crate) fn expect_refused(&self) {
        assert_eq!(
            self.status, 0,
            "expected no response: {self:?} (curl said: {})",
            self.stderr
        );
        assert_ne!(self.curl, Some(0), "{self:?}");
    }
}

/// Runs curl with `args`, adding silence, a time bound and the status line.
pub(crate) fn curl(args: &[&str]) -> Http {
    let mut cmd = Command::new(ippin_test_support::peer("curl"));
    cmd.args(["-s", "-S", "--max-time", "15", "-w", "\n%{http_code}"])
        .args(args);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    let (body, status) = ran.stdout.rsplit_once('\n').unwrap_or(("", &ran.stdout));
    Http {
        curl: ran.code,
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: ran.stderr,
    }
}

/// `GET https://127.0.0.1:PORT/whoami` with the login's client certificate,
/// from source address `from`, with `extra` curl arguments.
pub(crate) fn whoami(
    cluster: &Cluster,
    login: &Login,
    port: u16,
    from: &str,
    extra: &[&str],
) -> Http {
    whoami_at(
        cluster,
        login,
        SocketAddr::new(LOCALHOST, port),
        from,
        extra,
    )
}

/// `GET https://ADDR/whoami` with the login's client certificate, from
/// source address `from`, with `extra` curl arguments.
pub(crate) fn whoami_at(
    cluster: &Cluster,
    login: &Login,
    addr: SocketAddr,
    from: &str,
    extra: &[&str],
) -> Http {
    let url = format!("https://{addr}/whoami");
    let cert = login.tls_cert();
    let key = login.tls_key();
    let ca = cluster.ca_pem();
    let mut args = vec![
        "--interface",
        from,
        "--cert",
        cert.to_str().expect("UTF-8"),
        "--key",
        key.to_str().expect("UTF-8"),
        "--cacert",
        ca.to_str().expect("UTF-8"),
    ];
    args.extend_from_slice(extra);
    // `-g`: the brackets of an IPv6 URL are not a glob.
    args.extend(["-g", &url]);
    curl(&args)
}

/// A real peer daemon (HAProxy, nginx) in its own folder, killed on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) _dir: tempfile::TempDir,
}

impl Daemon {
    /// Waits until `addr` accepts connections, or panics with the daemon's
    /// output when it died or did not come up.
    pub(crate) fn wait(&mut self, addr: SocketAddr) {
        let child = &mut self.child;
        let ok = wait_until(ippin_test_support::READY_TIMEOUT, || {
            !child.is_running()
                || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !ok || !self.child.is_running() {
            let name = self.child.name().to_owned();
            let dummy = Child::spawn("true", Command::new("true"));
            let (out, err) = std::mem::replace(&mut self.child, dummy).finish();
            panic!("{name} is not listening on {addr}; stdout: {out} stderr: {err}");
        }
    }
}
