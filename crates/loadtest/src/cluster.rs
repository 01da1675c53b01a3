//! A server to measure: a folder made by `ippin ca init` with two users
//! and four listeners, and the server running in a child process (so its
//! file descriptors and memory are its own).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::LoadError;

/// alice: role `pinned-ip` (her certificates are pinned at login).
pub const ALICE: (&str, &str) = ("alice", "alice-load-password");
/// bob: role `dev` (never pinned).
pub const BOB: (&str, &str) = ("bob", "bob-load-password");

/// The address the simulated load balancer puts in PROXY headers as the
/// client's (TEST-NET-3: it only ever appears inside headers; every packet
/// stays on 127.0.0.0/8).
pub const BEHIND_LB: &str = "203.0.113.7";

/// Index of each listener in the configuration (and in
/// [`ServerProcess::listeners`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `login`, `proxy_protocol: off`: direct clients.
    LoginDirect = 0,
    /// `tls`, `proxy_protocol: off`.
    TlsDirect = 1,
    /// `login`, `proxy_protocol: on`, `trusted_proxies: [127.0.0.1/32]`.
    LoginProxied = 2,
    /// `tls`, `proxy_protocol: on`, `trusted_proxies: [127.0.0.1/32]`.
    TlsProxied = 3,
}

/// A server folder: CA, server identity, roles, users, configuration.
#[derive(Debug)]
pub struct Cluster {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
    /// `ippin.yaml` in it.
    pub config: PathBuf,
    /// The X.509 CA certificate (PEM): clients verify the server with it.
    pub ca_pem: String,
    /// The listeners' `header_timeout`.
    pub header_timeout: Duration,
}

impl Cluster {
    /// Writes a folder with `ippin::ca::init_at`, users alice and bob
    /// (light argon2 parameters, so logins cost little next to TLS), the
    /// four [`Listener`]s on 127.0.0.1 ephemeral ports, and `header_timeout`
    /// on each.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when a file cannot be written.
    pub fn create(header_timeout: Duration) -> Result<Cluster, LoadError> {
        let dir = tempfile::Builder::new()
            .prefix("ippin-load-")
            .tempdir()
            .map_err(|e| LoadError::Setup(format!("temporary folder: {e}")))?;
        let mut users = String::new();
        for ((name, password), role) in [(ALICE, "pinned-ip"), (BOB, "dev")] {
            let hash = ippin::users::hash_password_light(password)
                .map_err(|e| LoadError::Setup(format!("password hash: {e}")))?;
            users.push_str(&format!(
                "  - {{name: {name}, password_hash: \"{hash}\", roles: [{role}]}}\n"
            ));
        }
        let t = format!("{}ms", header_timeout.as_millis());
        // Every attacker of the stall and hostile runs connects from
        // 127.0.0.1, the valid client's address too: they measure what each
        // pending connection costs, so the per-address connection limit of
        // the login listeners (16 by default; tested in ippin's
        // tests/it/login.rs) is raised to its maximum here.
        let on = "proxy_protocol: on, trusted_proxies: [127.0.0.1/32]";
        let text = format!(
            "cluster_name: load\n\
             ca: {{ssh_key: ca/ssh_user_ca, tls_cert: ca/tls_ca.pem, tls_key: ca/tls_ca.key}}\n\
             server_tls: {{cert: server.pem, key: server.key}}\n\
             roles: [roles.yaml]\nusers:\n{users}\
             cert_ttl: 8h\naudit_log: audit.log\n\
             login_limits: {{max_connections_per_peer: 4096}}\nlisteners:\n\
             \x20 - {{kind: login, listen: 127.0.0.1:0, proxy_protocol: off, header_timeout: {t}}}\n\
             \x20 - {{kind: tls, listen: 127.0.0.1:0, proxy_protocol: off, header_timeout: {t}}}\n\
             \x20 - {{kind: login, listen: 127.0.0.1:0, {on}, header_timeout: {t}}}\n\
             \x20 - {{kind: tls, listen: 127.0.0.1:0, {on}, header_timeout: {t}}}\n"
        );
        let config = ippin::ca::init_at(dir.path(), SystemTime::now(), &text)
            .map_err(|e| LoadError::Setup(format!("ca init: {e}")))?;
        let ca_pem = std::fs::read_to_string(dir.path().join("ca/tls_ca.pem"))
            .map_err(|e| LoadError::Setup(format!("ca/tls_ca.pem: {e}")))?;
        Ok(Cluster {
            dir,
            config,
            ca_pem,
            header_timeout,
        })
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }
}

/// Which server the child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The real server: `ippin::server::serve_command`, exactly what
    /// `ippin serve --config FILE` runs.
    Ippin,
    /// The plain mutual-TLS baseline of [`crate::plain`].
    Plain,
}

/// A server running in a child process of `ippin-load` (killed on drop).
#[derive(Debug)]
pub struct ServerProcess {
    child: std::process::Child,
    /// The bound listeners, in configuration order.
    pub listeners: Vec<SocketAddr>,
    /// Where its stderr goes.
    pub stderr_path: PathBuf,
}

/// How long a server may take to print its listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

impl ServerProcess {
    /// Starts `exe serve --config CONFIG` (or `serve-plain`), where `exe`
    /// is the `ippin-load` binary, and waits for its `listening:` lines.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when it does not start or exits first.
    pub fn start(exe: &Path, kind: ServerKind, cluster: &Cluster) -> Result<Self, LoadError> {
        Self::start_n(exe, kind, cluster, 4)
    }

    /// [`ServerProcess::start`] for a configuration of `listeners` listeners.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when it does not start or exits first.
    pub fn start_n(
        exe: &Path,
        kind: ServerKind,
        cluster: &Cluster,
        listeners: usize,
    ) -> Result<Self, LoadError> {
        let sub = match kind {
            ServerKind::Ippin => "serve",
            ServerKind::Plain => "serve-plain",
        };
        let stderr_path = cluster.dir.path().join(format!("{sub}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| LoadError::Setup(format!("{}: {e}", stderr_path.display())))?;
        let mut child = Command::new(exe)
            .arg(sub)
            .arg("--config")
            .arg(&cluster.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| LoadError::Setup(format!("start {}: {e}", exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LoadError::Setup("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            listeners: Vec::new(),
            stderr_path,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while server.listeners.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(addr) = line
                        .rsplit(" on ")
                        .next()
                        .filter(|_| line.starts_with("listening:"))
                    {
                        let addr = addr.trim().parse().map_err(|e| {
                            LoadError::Setup(format!("bad listening line `{line}`: {e}"))
                        })?;
                        server.listeners.push(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    if !server.is_running() {
                        return Err(LoadError::Setup(format!(
                            "the server exited at start: {}",
                            server.stderr_text()
                        )));
                    }
                }
                Err(_) => {
                    return Err(LoadError::Setup(format!(
                        "the server printed no listeners within {START_TIMEOUT:?}: {}",
                        server.stderr_text()
                    )));
                }
            }
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bound address of `l`.
    pub fn addr(&self, l: Listener) -> SocketAddr {
        self.listeners
            .get(l as usize)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its open file descriptors now.
    pub fn fds(&self) -> Option<usize> {
        crate::procfs::fd_count(self.pid())
    }

    /// Its resident memory now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        crate::procfs::rss_kib(self.pid())
    }

    /// What it wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether a panic was reported on stderr (a panicking connection task
    /// does not end the process: tokio catches it, the default hook prints
    /// `panicked at`).
    pub fn panicked(&self) -> bool {
        self.stderr_text().contains("panicked at")
    }

    /// Stops it with SIGTERM (through `kill`, no `unsafe`) and returns its
    /// exit code; `None` when it had to be killed or died of a signal.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `ippin-load` executable for child servers: the running binary, or
/// the one a test names.
///
/// # Errors
/// [`LoadError::Setup`] when the running binary cannot be found.
pub fn own_exe() -> Result<PathBuf, LoadError> {
    std::env::current_exe().map_err(|e| LoadError::Setup(format!("current_exe: {e}")))
}

/// Waits (polling every 50 ms, at most `timeout`) until `cond` holds.
pub async fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
