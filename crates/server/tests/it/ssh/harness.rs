//! Fixtures: a CA with its files, certificates issued by `ippin-cert` or by `ssh-keygen`,
//! the SSH service on an ephemeral loopback port, and the real OpenSSH client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ippin::ssh::{SshAuditEvent, SshService, SshSettings, SshUser};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::ssh::{SshCa, SshCertRequest};
use ippin_policy::{ObservedAddr, Provenance};
use ippin_test_support::peer;
use tokio::net::TcpListener;

/// The bound on every client run.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub(crate) fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A user key and the certificate that goes with it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) key: PathBuf,
    pub(crate) cert: PathBuf,
}

/// An SSH user CA and its files in a temporary folder.
pub(crate) struct Ca {
    pub(crate) ca: SshCa,
    pub(crate) dir: PathBuf,
    pub(crate) key_path: PathBuf,
    pub(crate) pub_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let tmp = ippin_test_support::temp_dir();
        let mut ca = Ca::in_dir(tmp.path(), "ca");
        ca._tmp = Some(tmp);
        ca
    }

    pub(crate) fn in_dir(dir: &Path, name: &str) -> Ca {
        let ca = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).expect("CA key");
        let key_path = dir.join(name);
        let pub_path = dir.join(format!("{name}.pub"));
        write_private(&key_path, &ca.to_openssh().expect("CA to OpenSSH"));
        std::fs::write(
            &pub_path,
            ca.public_key().to_openssh().expect("CA public key"),
        )
        .expect("write CA public key");
        Ca {
            ca,
            dir: dir.to_owned(),
            key_path,
            pub_path,
            _tmp: None,
        }
    }

    pub(crate) fn public_key(&self) -> ssh_key::PublicKey {
        self.ca.public_key().clone()
    }

    /// A fresh user key pair written as `<name>` / `<name>.pub`.
    fn user_key(&self, name: &str) -> (SshCa, PathBuf) {
        let user = SshCa::generate_ed25519(&mut UnwrapErr(SysRng)).expect("user key");
        let key = self.dir.join(name);
        write_private(&key, &user.to_openssh().expect("user key to OpenSSH"));
        std::fs::write(
            self.dir.join(format!("{name}.pub")),
            user.public_key().to_openssh().expect("user public key"),
        )
        .expect("write user public key");
        (user, key)
    }

    /// A certificate from `ippin-cert` for `principal`, valid for an hour, pinned or not, with
    /// the key id ippin's CA writes (`PRINCIPAL@ippin/1`, serial 1).
    pub(crate) fn issue(&self, name: &str, principal: &str, pinned: Option<IpAddr>) -> Identity {
        let (user, key) = self.user_key(name);
        let t = now();
        let mut req = SshCertRequest::builder(user.public_key().key_data().clone())
            .key_id(format!("{principal}@ippin/1"))
            .serial(1)
            .principal(principal)
            .validity(t - 60, t + 3600);
        if let Some(ip) = pinned {
            req = req.pinned_ip(ip).login_ip(ip);
        }
        let cert = self
            .ca
            .issue(&req.build().expect("request"), &mut UnwrapErr(SysRng))
            .expect("issue");
        let cert_path = self.dir.join(format!("{name}-cert.pub"));
        std::fs::write(&cert_path, cert.to_openssh().expect("cert to OpenSSH"))
            .expect("write cert");
        Identity {
            key,
            cert: cert_path,
        }
    }

    /// A certificate made by the real `ssh-keygen -s` with extra options (`-h`, `-V`, `-O`),
    /// with the key id ippin's CA writes (`PRINCIPAL@ippin/1`, serial 1).
    pub(crate) fn keygen_issue(&self, name: &str, principal: &str, extra: &[&str]) -> Identity {
        let (_, key) = self.user_key(name);
        let out = std::process::Command::new(peer("ssh-keygen"))
            .arg("-q")
            .arg("-s")
            .arg(&self.key_path)
            .args([
                "-I",
                &format!("{principal}@ippin/1"),
                "-z",
                "1",
                "-n",
                principal,
            ])
            .args(extra)
            .arg(self.dir.join(format!("{name}.pub")))
            .output()
            .expect("run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Identity {
            key,
            cert: self.dir.join(format!("{name}-cert.pub")),
        }
    }

    /// A plain key with no certificate.
    pub(crate) fn plain_key(&self, name: &str) -> Identity {
        let (_, key) = self.user_key(name);
        Identity {
            cert: self.dir.join("does-not-exist-cert.pub"),
            key,
        }
    }
}

/// The users every test server knows: alice (pinned role), bob (no pinning), and root for the
/// parity runs against sshd (whose certificates must name the local user).
pub(crate) fn users() -> HashMap<String, SshUser> {
    let mut m = HashMap::new();
    m.insert(
        "alice".to_owned(),
        SshUser::new(true, vec!["pinned-ip".to_owned()]),
    );
    m.insert(
        "bob".to_owned(),
        SshUser::new(false, vec!["dev".to_owned()]),
    );
    m.insert(
        "root".to_owned(),
        SshUser::new(false, vec!["dev".to_owned()]),
    );
    m
}

/// Audit events collected in memory.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<SshAuditEvent>>>);

impl Events {
    pub(crate) fn all(&self) -> Vec<SshAuditEvent> {
        self.0.lock().expect("events lock").clone()
    }

    pub(crate) fn denial_reasons(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter(|e| e.name() == "ssh.auth.denied")
            .filter_map(|e| e.reason().map(str::to_owned))
            .collect()
    }

    pub(crate) fn allowed(&self) -> usize {
        self.all()
            .iter()
            .filter(|e| e.name() == "ssh.auth.allowed")
            .count()
    }

    pub(crate) fn sink(&self) -> Arc<ippin::ssh::SshAudit> {
        let store = self.0.clone();
        Arc::new(move |e: SshAuditEvent| {
            store.lock().expect("events lock").push(e);
            true
        })
    }
}

/// The SSH service running on ephemeral loopback listeners.
pub(crate) struct Server {
    pub(crate) service: SshService,
    pub(crate) events: Events,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Server {
    /// A service trusting `ca`, with the test users; `configure` may change the settings.
    pub(crate) fn new(ca: &Ca, configure: impl FnOnce(&mut SshSettings)) -> Server {
        let events = Events::default();
        let mut settings =
            SshSettings::new(vec![ca.public_key()], Arc::new(users()), events.sink());
        configure(&mut settings);
        Server {
            service: SshService::new(settings).expect("service"),
            events,
            tasks: Vec::new(),
        }
    }

    /// A server around an already built service whose audit goes to `events`.
    pub(crate) fn from_service(service: SshService, events: Events) -> Server {
        Server {
            service,
            events,
            tasks: Vec::new(),
        }
    }

    /// Listens on `ip` port 0 and serves every connection with its TCP peer as the observed
    /// address (a direct listener).
    pub(crate) async fn listen_direct(&mut self, ip: IpAddr) -> SocketAddr {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let service = self.service.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let observed = ObservedAddr::new(peer, Provenance::Direct, true);
                    let _ = service.handle(stream, observed).await;
                });
            }
        }));
        addr
    }

    /// Listens on `ip` port 0 through the PROXY stage with `policy`.
    pub(crate) async fn listen_proxy(
        &mut self,
        ip: IpAddr,
        policy: ippin_proxy_protocol::ListenerPolicy,
    ) -> SocketAddr {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let service = self.service.clone();
        self.tasks.push(tokio::spawn(async move {
            service
                .serve_listener(listener, policy, Duration::from_secs(5))
                .await;
        }));
        addr
    }
}

/// What one `ssh` run gave.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn ok(&self) -> bool {
        self.status == Some(0)
    }
}

/// The common client options: no prompts, no host key checks, only the given identity.
pub(crate) fn ssh_command(
    id: &Identity,
    user: &str,
    bind: &str,
    server: SocketAddr,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(peer("ssh"));
    cmd.args(["-F", "/dev/null"])
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=10"])
        .arg("-i")
        .arg(&id.key)
        .arg("-o")
        .arg(format!("CertificateFile={}", id.cert.display()))
        .args(["-b", bind])
        .args(["-p", &server.port().to_string()])
        .arg(format!("{user}@{}", server.ip()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `ssh ... user@server COMMAND` from `bind`, bounded by [`CLIENT_TIMEOUT`].
pub(crate) async fn ssh(
    id: &Identity,
    user: &str,
    bind: &str,
    server: SocketAddr,
    command: &[&str],
) -> Run {
    let mut cmd = ssh_command(id, user, bind, server);
    cmd.args(command);
    let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
        .await
        .expect("ssh did not finish in time")
        .expect("run ssh");
    Run {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP literal")
}

/// Sends a line through the local forward at `port`; `None` when the forward was refused (the
/// client closes the local connection).
pub(crate) async fn through(port: u16) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"ping\n").await.ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.ok()?;
        (!line.is_empty()).then_some(line)
    };
    tokio::time::timeout(CLIENT_TIMEOUT, work)
        .await
        .expect("forward did not answer in time")
}

/// Polls `cond` every 20 ms for at most 20 s; panics naming `what` when it never holds.
pub(crate) async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
