//! Running an example: start it, wait for `listening on`, read its JSON audit lines, kill it
//! on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use ippin_test_support::READY_TIMEOUT;

/// A running example; killed and reaped on drop.
pub(crate) struct Example {
    child: std::process::Child,
    lines: Receiver<String>,
    /// The audit lines read so far.
    pub(crate) audit: Vec<serde_json::Value>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Example {
    /// Starts the example binary `bin` with `args` and waits (bounded) for `listening on`.
    pub(crate) fn start(bin: &str, args: &[&str]) -> Example {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // From here on, a panic kills the child (drop).
        let mut ex = Example {
            child,
            lines,
            audit: Vec::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ex.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        ex.addr = addr.trim().parse().expect("a socket address");
                        return ex;
                    }
                }
                Err(e) => panic!("{bin} did not say `listening on` within {READY_TIMEOUT:?}: {e}"),
            }
        }
    }

    /// Waits (bounded) for an audit line for which `pred` holds, and returns it.
    pub(crate) fn wait_audit(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(found) = self.audit.iter().find(|v| pred(v)) {
            return found.clone();
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON audit line ({e}): {line}"));
                    self.audit.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no such audit line within {READY_TIMEOUT:?}; lines so far: {:#?}",
                    self.audit
                ),
            }
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion with a bound: (exit code, stdout, stderr).
pub(crate) fn run(mut cmd: Command, bound: Duration) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the client");
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("client output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
