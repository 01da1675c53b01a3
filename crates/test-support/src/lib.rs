//! Shared fixtures for ippin's tests (not published).
//!
//! * [`peer`] finds a real peer program (HAProxy, nginx, curl, OpenSSH,
//!   OpenSSL) or panics with the command that installs it. Tests that need a
//!   peer never skip silently.
//! * [`free_port`] hands out an ephemeral loopback port.
//! * [`wait_until`] / [`wait_for_tcp`] poll for readiness with a bound, so no
//!   test asserts on a sleep.
//! * [`Child`] kills its process on drop, so a failing test leaves nothing
//!   behind.

pub mod etcd;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The default bound for readiness waits.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of a real peer program, searched in `PATH` and in the sbin
/// folders where Debian installs daemons.
///
/// # Panics
/// When the program is missing, with the command that installs it. This is
/// deliberate: a test that needs a real peer must fail loudly without it.
pub fn peer(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "real peer `{name}` is missing: run `scripts/install-peers` as root \
         (apt-get installs haproxy, nginx, curl, openssh-client, openssh-server, openssl)"
    );
}

/// An ephemeral TCP port on `ip` that was free a moment ago.
///
/// The port is released before it is returned, so a peer program can bind
/// it; tests that can bind themselves should bind port 0 instead.
pub fn free_port(ip: IpAddr) -> u16 {
    // The kernel may hand the same ephemeral port out again once it is released: a test
    // that asks for several ports (the listeners of one configuration) would get two alike.
    // Ports given out before in this process are skipped.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no ephemeral port that was not given out before in 1000 tries");
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
///
/// Returns whether it held. Use it for readiness, never for assertions
/// about timing.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until something accepts TCP connections on `addr`.
///
/// # Panics
/// When nothing does within [`READY_TIMEOUT`].
pub fn wait_for_tcp(addr: SocketAddr) {
    let ok = wait_until(READY_TIMEOUT, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    assert!(ok, "nothing listens on {addr} after {READY_TIMEOUT:?}");
}

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    name: String,
}

impl Child {
    /// Spawns `cmd` with stdout and stderr captured.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command) -> Child {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let inner = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Child {
            inner,
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.inner.try_wait(), Ok(None))
    }

    /// Kills the process and returns what it wrote to stdout and stderr.
    pub fn finish(mut self) -> (String, String) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.inner.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.inner.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

/// A fresh temporary folder, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ippin-test-")
        .tempdir()
        .expect("create a temporary folder")
}
