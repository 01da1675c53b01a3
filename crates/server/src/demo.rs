//! `ippin demo`: the whole story on loopback, with real sockets, an
//! ephemeral CA in a temporary folder, and nothing to prepare.
//!
//! Cast: `alice` (role `pinned-ip`), `bob` (role `dev`, no pinning),
//! `carol` (role `pinned-ip`, behind a layer-4 load balancer at 127.0.0.3
//! that sends PROXY v2 headers), and `mallory` at 127.0.0.4, who writes a
//! PROXY header claiming to be carol's address.
//!
//! Each step states the outcome it expects; the demo exits non-zero when any
//! outcome differs.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Instant, SystemTime};

use ippin_proxy_protocol as pp;

use crate::Outcome;
use crate::client::{self, ClientError, Credentials, Endpoint};
use crate::config::Config;
use crate::server::{self, Running};

const ALICE_HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const ALICE_CAFE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LOAD_BALANCER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const MALLORY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Carol's address as the load balancer reports it in its PROXY header. It
/// is only data inside the header (TEST-NET-3): no packet goes there.
const CAROL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// Where the demo's network restrictions send nobody (inside the allowed 127.0.0.0/8).
const FORBIDDEN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// The demo's `network_restrictions`: loopback allowed, except [`FORBIDDEN`].
const DEMO_RESTRICTIONS: &str = "\
kind: network_restrictions
version: v4
spec:
  allow:
  - cidr: 127.0.0.0/8
  deny:
  - cidr: 127.0.0.9/32
";

/// The SSH listener's index in [`demo_config`].
const SSH_LISTENER: usize = 4;

/// The front (`kind: forward`) relaying to the inner listener just
/// before it ([`propagation_listeners`]).
const FRONT_LISTENER: usize = 6;

/// The listeners `setup` appends to [`demo_config`] once their key files
/// exist: 5 an inner `tls` listener with propagation on `inner`, 6 a front
/// (`kind: forward`, direct clients) relaying to it with a grant + MAC
/// header (docs/propagation.md).
fn propagation_listeners(inner: SocketAddr) -> String {
    format!(
        "  - kind: tls
    listen: {inner}
    proxy_protocol: off
    header_timeout: 5s
    propagation: {{audience: demo-inner, key: demo-inner.propkey}}
  - kind: forward
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
    forward: {{upstream: \"{inner}\", audience: demo-inner, cert: proxy-demo-front.pem, \
key: proxy-demo-front.key, upstream_key: demo-inner.propkey.pub}}
"
    )
}

/// Writes the inner listener's key pair and the front's identity into
/// `dir`, then appends [`propagation_listeners`] to the configuration.
fn add_propagation(dir: &Path, config: &Path) -> Result<(), String> {
    crate::propagation::cmd::write_propagation_key("demo-inner", dir)?;
    crate::propagation::cmd::issue_proxy_files(
        config,
        "demo-front",
        Some(dir),
        std::time::Duration::from_secs(3600),
        SystemTime::now(),
    )?;
    // A free port for the inner listener: the front's configuration names it.
    let inner = std::net::TcpListener::bind((ALICE_HOME, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a port for the inner listener: {e}"))?;
    let mut text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&propagation_listeners(inner));
    std::fs::write(config, text).map_err(|e| format!("{}: {e}", config.display()))
}

/// The listeners, in this order: 0 login direct, 1 tls direct,
/// 2 login behind the LB, 3 tls behind the LB, 4 ssh direct.
fn demo_config(users: &str) -> String {
    format!(
        "cluster_name: demo
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {{cert: server.pem, key: server.key}}
roles: [roles.yaml]
users:
{users}cert_ttl: 1h
audit_log: audit.log
ssh_host_key: ssh_host_ed25519_key
ssh_auth_rejection_time: 50ms
network_restrictions: network_restrictions.yaml
audit_network_observed: true
listeners:
  - kind: login
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
  - kind: tls
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
  - kind: login
    listen: 127.0.0.1:0
    proxy_protocol: on
    trusted_proxies: [{LOAD_BALANCER}/32]
    header_timeout: 5s
  - kind: tls
    listen: 127.0.0.1:0
    proxy_protocol: on
    trusted_proxies: [{LOAD_BALANCER}/32]
    header_timeout: 5s
  - kind: ssh
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
"
    )
}

/// What a step expects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Login issues certificates with this pin (or none).
    Issued(Option<IpAddr>),
    /// Access allowed, the server sees this client IP.
    Allowed(IpAddr),
    /// Refused with this reason code (HTTP 403).
    Denied(&'static str),
    /// The connection is closed before TLS (PROXY stage).
    ConnectionRefused,
    /// A `direct-tcpip` forward carried bytes both ways.
    Relayed,
}

/// One printed row.
#[derive(Debug, Clone)]
struct Row {
    who: String,
    from: String,
    through: String,
    action: &'static str,
    outcome: String,
    reason: String,
    ok: bool,
}

struct Demo {
    ca_pem: String,
    audit_log: std::path::PathBuf,
    host_key: Option<ssh_key::PublicKey>,
    running: Running,
    rows: Vec<Row>,
    /// The OS login of the restricted-session step: the one running the demo, which bob's
    /// role allows ([`setup`]).
    login: Option<String>,
    /// Lines printed after the table: steps this machine cannot run, and why.
    notes: Vec<String>,
    passwords: Passwords,
}

/// Which password a demo login gives.
#[derive(Clone, Copy)]
enum Password {
    /// The user's own ([`Passwords`]).
    Right,
    /// Another one.
    Wrong,
}

fn v2_header(src: Ipv4Addr, dst: SocketAddr) -> Result<Vec<u8>, String> {
    let SocketAddr::V4(dst) = dst else {
        return Err("the demo listens on IPv4".into());
    };
    pp::V2Builder::new(pp::Command::Proxy)
        .addresses(pp::Addresses::Tcp4 {
            src: std::net::SocketAddrV4::new(src, 50_007),
            dst,
        })
        .and_then(|b| b.encode())
        .map_err(|e| format!("cannot encode the PROXY header: {e}"))
}

impl Demo {
    fn endpoint(&self, listener: usize, bind: Ipv4Addr, header: Option<Vec<u8>>) -> Endpoint {
        Endpoint {
            addr: self
                .running
                .addr(listener)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1))),
            server_name: "localhost".into(),
            ca_pem: self.ca_pem.clone(),
            bind: Some(IpAddr::V4(bind)),
            proxy_header: header,
            headers: Vec::new(),
        }
    }

    fn record(
        &mut self,
        who: &str,
        from: String,
        through: &str,
        action: &'static str,
        expect: &Expect,
        got: Result<String, (String, String)>,
    ) {
        let (outcome, reason, matched) = match (&got, expect) {
            (Ok(detail), Expect::Issued(_) | Expect::Allowed(_)) => {
                let want = match expect {
                    Expect::Issued(Some(ip)) => format!("pinned {ip}"),
                    Expect::Issued(None) => "not pinned".to_owned(),
                    Expect::Allowed(ip) => format!("seen as {ip}"),
                    _ => String::new(),
                };
                let ok = detail.starts_with(&want);
                let word = if matches!(expect, Expect::Issued(_)) {
                    "issued"
                } else {
                    "allowed"
                };
                (word.to_owned(), detail.clone(), ok)
            }
            (Err((code, message)), Expect::Denied(want)) => {
                // Pin denials must tell the user what to do.
                let pin_reason = code.starts_with("pinned_ip") || code == "untrusted_client_ip";
                let ok = code == want && (!pin_reason || message.contains("log in again"));
                ("denied".to_owned(), format!("{code}: {message}"), ok)
            }
            (Ok(detail), Expect::Relayed) => (
                "relayed".to_owned(),
                detail.clone(),
                detail.starts_with("echo"),
            ),
            (Err((code, message)), Expect::ConnectionRefused) => {
                let ok = code == "connection_closed";
                ("refused".to_owned(), message.clone(), ok)
            }
            (Ok(detail), _) => ("allowed".to_owned(), detail.clone(), false),
            (Err((code, message)), _) => ("denied".to_owned(), format!("{code}: {message}"), false),
        };
        self.rows.push(Row {
            who: who.to_owned(),
            from,
            through: through.to_owned(),
            action,
            outcome,
            reason,
            ok: matched,
        });
    }

    async fn login(
        &mut self,
        who: &str,
        password: Password,
        listener: usize,
        bind: Ipv4Addr,
        via_lb_as: Option<Ipv4Addr>,
        expect: Expect,
    ) -> Option<Credentials> {
        let (header, from, through) = match self.route(listener, bind, via_lb_as) {
            Ok(x) => x,
            Err(e) => {
                self.record(
                    who,
                    bind.to_string(),
                    "-",
                    "login",
                    &expect,
                    Err(("setup".into(), e)),
                );
                return None;
            }
        };
        let ep = self.endpoint(listener, bind, header);
        let password = match password {
            Password::Right => self.passwords.of(who),
            Password::Wrong => "not-the-password".to_owned(),
        };
        let result = client::login(&ep, who, &password).await;
        let creds = result.as_ref().ok().cloned();
        let got = result
            .map(|c| match c.pinned_ip {
                Some(ip) => format!("pinned {ip}"),
                None => "not pinned".to_owned(),
            })
            .map_err(split);
        self.record(who, from, &through, "login", &expect, got);
        creds
    }

    async fn access(
        &mut self,
        who: &str,
        creds: Option<&Credentials>,
        listener: usize,
        bind: Ipv4Addr,
        via_lb_as: Option<Ipv4Addr>,
        expect: Expect,
    ) {
        let route = self.route(listener, bind, via_lb_as);
        let Some(creds) = creds else {
            self.record(
                who,
                bind.to_string(),
                "-",
                "GET /whoami",
                &expect,
                Err(("no_credentials".into(), "the login before failed".into())),
            );
            return;
        };
        let (header, from, through) = match route {
            Ok(x) => x,
            Err(e) => {
                self.record(
                    who,
                    bind.to_string(),
                    "-",
                    "GET /whoami",
                    &expect,
                    Err(("setup".into(), e)),
                );
                return;
            }
        };
        let ep = self.endpoint(listener, bind, header);
        let got = client::whoami(&ep, creds)
            .await
            .map(|w| {
                let ip = w
                    .observed
                    .parse::<SocketAddr>()
                    .map_or(w.observed.clone(), |a| a.ip().to_string());
                format!("seen as {ip} via {}", w.via)
            })
            .map_err(split);
        self.record(who, from, &through, "GET /whoami", &expect, got);
    }

    async fn renew(
        &mut self,
        who: &str,
        creds: Option<&Credentials>,
        bind: Ipv4Addr,
        expect: Expect,
    ) -> Option<Credentials> {
        let ep = self.endpoint(1, bind, None);
        let result = match creds {
            Some(c) => client::renew(&ep, c).await,
            None => Err(ClientError::Local("the login before failed".into())),
        };
        let out = result.as_ref().ok().cloned();
        let got = result
            .map(|c| match c.pinned_ip {
                Some(ip) => format!("pinned {ip}"),
                None => "not pinned".to_owned(),
            })
            .map_err(split);
        self.record(
            who,
            bind.to_string(),
            "tls (direct)",
            "POST /v1/renew",
            &expect,
            got,
        );
        out
    }

    /// The PROXY header, the "from" and "through" columns for a step.
    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        listener: usize,
        bind: Ipv4Addr,
        via_lb_as: Option<Ipv4Addr>,
    ) -> Result<(Option<Vec<u8>>, String, String), String> {
        let kind = self
            .running
            .listeners
            .get(listener)
            .map_or("?", |(k, _)| k.as_str());
        let behind_lb = listener >= 2;
        match via_lb_as {
            None => Ok((None, bind.to_string(), format!("{kind} (direct)"))),
            Some(claimed) => {
                let dst = self.running.addr(listener).ok_or("no such listener")?;
                let header = v2_header(claimed, dst)?;
                let through = if bind == LOAD_BALANCER {
                    format!("L4 LB {LOAD_BALANCER} → {kind}")
                } else {
                    format!("own PROXY v2 header → {kind}")
                };
                let from = if bind == LOAD_BALANCER {
                    claimed.to_string()
                } else {
                    format!("{bind} claiming {claimed}")
                };
                let _ = behind_lb;
                Ok((Some(header), from, through))
            }
        }
    }
}

impl Demo {
    /// The last audit record of the SSH service named `event`.
    fn last_ssh_event(&self, event: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit_log).ok()?;
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("ssh").cloned())
            .find(|v| v.get("event").and_then(|e| e.as_str()) == Some(event))
    }

    /// Connects to the SSH listener from `bind` and authenticates with `creds`.
    async fn ssh_session(
        &self,
        who: &str,
        creds: &Credentials,
        bind: Ipv4Addr,
    ) -> Result<crate::ssh::client::SshClient, (String, String)> {
        let local = |e: String| ("error".to_owned(), e);
        let server = self
            .running
            .addr(SSH_LISTENER)
            .ok_or_else(|| local("no ssh listener".into()))?;
        let host_key = self
            .host_key
            .clone()
            .ok_or_else(|| local("no host key".into()))?;
        let key = ssh_key::PrivateKey::from_openssh(creds.ssh_private_key.trim())
            .map_err(|e| local(e.to_string()))?;
        let cert = ssh_key::Certificate::from_openssh(creds.ssh_certificate.trim())
            .map_err(|e| local(e.to_string()))?;
        let mut session =
            crate::ssh::client::SshClient::connect(server, IpAddr::V4(bind), host_key)
                .await
                .map_err(|e| local(e.to_string()))?;
        match session
            .authenticate(who, key, cert)
            .await
            .map_err(|e| local(e.to_string()))?
        {
            Ok(()) => Ok(session),
            Err(message) => {
                let code = self
                    .last_ssh_event("ssh.auth.denied")
                    .and_then(|v| v.get("reason").and_then(|r| r.as_str().map(str::to_owned)))
                    .unwrap_or_else(|| "unknown".to_owned());
                Err((code, message))
            }
        }
    }

    /// `ssh who@server whoami` from `bind`, in process.
    async fn ssh_whoami(
        &mut self,
        who: &str,
        creds: Option<&Credentials>,
        bind: Ipv4Addr,
        expect: Expect,
    ) {
        let got = match creds {
            None => Err(("no_credentials".into(), "the login before failed".into())),
            Some(creds) => self.ssh_exec(who, creds, bind).await,
        };
        self.record(
            who,
            bind.to_string(),
            "ssh (direct)",
            "ssh whoami",
            &expect,
            got,
        );
    }

    async fn ssh_exec(
        &self,
        who: &str,
        creds: &Credentials,
        bind: Ipv4Addr,
    ) -> Result<String, (String, String)> {
        let session = self.ssh_session(who, creds, bind).await?;
        let (status, out) = session
            .exec("whoami")
            .await
            .map_err(|e| ("error".to_owned(), e.to_string()))?;
        let observed = out
            .lines()
            .find_map(|l| l.strip_prefix("observed: "))
            .and_then(|o| o.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map_or("?".to_owned(), |a| a.ip().to_string());
        let pinned = out
            .lines()
            .find_map(|l| l.strip_prefix("pinned: "))
            .unwrap_or("?");
        Ok(format!(
            "seen as {observed}; whoami: user {who}, pinned {pinned}, exit {status}"
        ))
    }

    /// bob in a real session as the demo's login: a program connecting to [`FORBIDDEN`] is
    /// refused by the kernel (EPERM) and audited as `T4002I` with its name and pid. Where
    /// the machine cannot enforce (not root, no cgroup v2 or eBPF), a note says why and no
    /// step is counted.
    async fn restricted_session(&mut self, creds: Option<&Credentials>) {
        use crate::ssh::session::Enforcement;
        match self.running.enforcement.as_ref() {
            Enforcement::Kernel(_) => {}
            other => {
                self.notes.push(format!(
                    "restricted session: not shown on this machine: {}",
                    other.describe()
                ));
                return;
            }
        }
        let Some(login) = self.login.clone() else {
            self.notes.push(
                "restricted session: not shown: this machine's login name cannot be a role's \
                 login"
                    .to_owned(),
            );
            return;
        };
        let through = format!("ssh session as {login}");
        let action = "bash: connect()";
        let got = match creds {
            None => Err(("no_credentials".into(), "the login before failed".into())),
            Some(creds) => self.session_connect(&login, creds).await,
        };
        self.record(
            "bob",
            ALICE_HOME.to_string(),
            &through,
            action,
            &Expect::Denied("T4002I"),
            got,
        );
    }

    async fn session_connect(
        &self,
        login: &str,
        creds: &Credentials,
    ) -> Result<String, (String, String)> {
        let session = self.ssh_session(login, creds, ALICE_HOME).await?;
        let command = format!("bash -c 'exec 3<>/dev/tcp/{FORBIDDEN}/9' 2>&1; echo \"exit $?\"");
        let (_, out) = session
            .exec(&command)
            .await
            .map_err(|e| ("error".to_owned(), e.to_string()))?;
        let said = out
            .lines()
            .find(|l| l.contains("connect"))
            .unwrap_or(out.trim())
            .to_owned();
        if !said.contains("Operation not permitted") {
            return Ok(format!("not refused by the kernel: {}", out.trim()));
        }
        // The kernel's event reaches the audit log through the enforcer's reader: wait for it
        // (bounded).
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let event = std::fs::read_to_string(&self.audit_log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v.get("ssh").cloned())
                .find(|v| v["code"] == "T4002I" && v["program"] == "bash");
            if let Some(e) = event {
                return Err((
                    "T4002I".to_owned(),
                    format!(
                        "{said}; audit: program {}, pid {}, cgroup {}",
                        e["program"].as_str().unwrap_or("?"),
                        e["pid"],
                        e["cgroup_id"]
                    ),
                ));
            }
            if Instant::now() > deadline {
                return Err(("no_event".to_owned(), format!("{said}; no T4002I event")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A `direct-tcpip` forward (what `ssh -W host:port` does) to `dst`, sending a line.
    async fn ssh_forward(
        &mut self,
        who: &str,
        creds: Option<&Credentials>,
        bind: Ipv4Addr,
        dst: SocketAddr,
        expect: Expect,
    ) {
        let action = "ssh -W (direct-tcpip)";
        let through = format!("ssh → {dst}");
        let got = match creds {
            None => Err(("no_credentials".into(), "the login before failed".into())),
            Some(creds) => self.forward(who, creds, bind, dst).await,
        };
        self.record(who, bind.to_string(), &through, action, &expect, got);
    }

    async fn forward(
        &self,
        who: &str,
        creds: &Credentials,
        bind: Ipv4Addr,
        dst: SocketAddr,
    ) -> Result<String, (String, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let session = self.ssh_session(who, creds, bind).await?;
        let io = |e: std::io::Error| ("error".to_owned(), e.to_string());
        match session
            .direct_tcpip(&dst.ip().to_string(), dst.port())
            .await
            .map_err(|e| ("error".to_owned(), e.to_string()))?
        {
            Ok(mut stream) => {
                stream.write_all(b"ping\n").await.map_err(io)?;
                let mut back = [0u8; 5];
                stream.read_exact(&mut back).await.map_err(io)?;
                Ok(format!(
                    "echo answered {:?} through the forward",
                    String::from_utf8_lossy(&back).trim()
                ))
            }
            Err(message) => {
                let event = self.last_ssh_event("session.network");
                let code = event
                    .as_ref()
                    .filter(|v| {
                        v.get("dst_addr").and_then(|a| a.as_str()) == Some(&dst.ip().to_string())
                    })
                    .and_then(|v| v.get("code").and_then(|c| c.as_str().map(str::to_owned)))
                    .unwrap_or_else(|| "not_audited".to_owned());
                Err((code, message))
            }
        }
    }
}

/// A line echo server on 127.0.0.1 for the forwarding step; runs until dropped.
async fn echo_server() -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ALICE_HOME, 0))
        .await
        .map_err(|e| format!("echo listener: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await
                {
                    if n == 0 || s.write_all(buf.get(..n).unwrap_or(&[])).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

fn split(e: ClientError) -> (String, String) {
    match e {
        ClientError::Refused { error, message, .. } => (error, message),
        ClientError::Closed(m) => (
            "connection_closed".into(),
            format!("closed before TLS completed ({m})"),
        ),
        other => ("error".into(), other.to_string()),
    }
}

/// Builds the CA, the users and the configuration in `dir` and starts the
/// listeners.
/// The login running the demo (root, usually): bob's role allows it, for the
/// restricted-session step. `None` when its name cannot be a role's login.
fn demo_login() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
    ippin_policy::check_login(&user.name).ok()?;
    Some(user.name)
}

/// The demo's roles: `ca init`'s, with bob's role `dev` allowing `login`.
fn demo_roles(login: &str) -> String {
    format!("{}  allow:\n    logins: [{login}]\n", crate::ca::ROLES_YAML)
}

/// The demo users' passwords: drawn at random for each run and kept in memory only. Its
/// listeners are on loopback, where every local user can reach them while it runs, and
/// bob's role allows the OS login of whoever runs it (root under `scripts/test`): a
/// password written in the source would be a root shell for any of them.
struct Passwords(Vec<(&'static str, String)>);

impl Passwords {
    fn new() -> Result<Passwords, String> {
        let mut out = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let mut b = [0u8; 18];
            ippin_cert::getrandom::fill(&mut b)
                .map_err(|e| format!("no randomness for the demo's passwords: {e}"))?;
            let text: String = b.iter().map(|x| format!("{x:02x}")).collect();
            out.push((name, text));
        }
        Ok(Passwords(out))
    }

    fn of(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }
}

async fn setup(dir: &Path, passwords: &Passwords) -> Result<(String, Running), String> {
    let mut users = String::new();
    for (name, role) in [
        ("alice", "pinned-ip"),
        ("bob", "dev"),
        ("carol", "pinned-ip"),
    ] {
        let hash = crate::users::hash_password_light(&passwords.of(name))?;
        let _ = writeln!(
            users,
            "  - {{name: {name}, password_hash: \"{hash}\", roles: [{role}]}}"
        );
    }
    let path = crate::ca::init_at(dir, SystemTime::now(), &demo_config(&users))
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("network_restrictions.yaml"), DEMO_RESTRICTIONS)
        .map_err(|e| format!("network_restrictions.yaml: {e}"))?;
    if let Some(login) = demo_login() {
        std::fs::write(dir.join("roles.yaml"), demo_roles(&login))
            .map_err(|e| format!("roles.yaml: {e}"))?;
    }
    add_propagation(dir, &path)?;
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let ca_pem = std::fs::read_to_string(&config.ca.tls_cert).map_err(|e| e.to_string())?;
    let running = server::start(config).await.map_err(|e| e.to_string())?;
    Ok((ca_pem, running))
}

async fn play(demo: &mut Demo) {
    // alice at home: log in, use it, move to the café, be refused, log in again.
    let alice = demo
        .login(
            "alice",
            Password::Right,
            0,
            ALICE_HOME,
            None,
            Expect::Issued(Some(ALICE_HOME.into())),
        )
        .await;
    demo.access(
        "alice",
        alice.as_ref(),
        1,
        ALICE_HOME,
        None,
        Expect::Allowed(ALICE_HOME.into()),
    )
    .await;
    demo.access(
        "alice",
        alice.as_ref(),
        1,
        ALICE_CAFE,
        None,
        Expect::Denied("pinned_ip_mismatch"),
    )
    .await;
    let alice2 = demo
        .login(
            "alice",
            Password::Right,
            0,
            ALICE_CAFE,
            None,
            Expect::Issued(Some(ALICE_CAFE.into())),
        )
        .await;
    demo.access(
        "alice",
        alice2.as_ref(),
        1,
        ALICE_CAFE,
        None,
        Expect::Allowed(ALICE_CAFE.into()),
    )
    .await;
    demo.access(
        "alice",
        alice2.as_ref(),
        1,
        ALICE_HOME,
        None,
        Expect::Denied("pinned_ip_mismatch"),
    )
    .await;
    let renewed = demo
        .renew(
            "alice",
            alice2.as_ref(),
            ALICE_CAFE,
            Expect::Issued(Some(ALICE_CAFE.into())),
        )
        .await;
    demo.renew(
        "alice",
        renewed.as_ref(),
        ALICE_HOME,
        Expect::Denied("pinned_ip_mismatch"),
    )
    .await;
    // bob's roles do not pin: his certificates work from anywhere.
    let bob = demo
        .login(
            "bob",
            Password::Right,
            0,
            ALICE_HOME,
            None,
            Expect::Issued(None),
        )
        .await;
    demo.access(
        "bob",
        bob.as_ref(),
        1,
        ALICE_HOME,
        None,
        Expect::Allowed(ALICE_HOME.into()),
    )
    .await;
    demo.access(
        "bob",
        bob.as_ref(),
        1,
        ALICE_CAFE,
        None,
        Expect::Allowed(ALICE_CAFE.into()),
    )
    .await;
    // The same certificates over SSH, with the in-process client.
    demo.ssh_whoami(
        "alice",
        alice.as_ref(),
        ALICE_HOME,
        Expect::Allowed(ALICE_HOME.into()),
    )
    .await;
    demo.ssh_whoami(
        "alice",
        alice.as_ref(),
        ALICE_CAFE,
        Expect::Denied("pinned_ip_mismatch"),
    )
    .await;
    demo.ssh_whoami(
        "alice",
        alice2.as_ref(),
        ALICE_CAFE,
        Expect::Allowed(ALICE_CAFE.into()),
    )
    .await;
    demo.ssh_whoami(
        "bob",
        bob.as_ref(),
        ALICE_HOME,
        Expect::Allowed(ALICE_HOME.into()),
    )
    .await;
    demo.ssh_whoami(
        "bob",
        bob.as_ref(),
        ALICE_CAFE,
        Expect::Allowed(ALICE_CAFE.into()),
    )
    .await;
    // Outbound connections made for a session go through the network restrictions.
    demo.ssh_forward(
        "bob",
        bob.as_ref(),
        ALICE_HOME,
        SocketAddr::from((FORBIDDEN, 9)),
        Expect::Denied("T4002I"),
    )
    .await;
    match echo_server().await {
        Ok((echo, task)) => {
            demo.ssh_forward("bob", bob.as_ref(), ALICE_HOME, echo, Expect::Relayed)
                .await;
            task.abort();
        }
        Err(e) => demo.record(
            "bob",
            ALICE_HOME.to_string(),
            "-",
            "ssh -W (direct-tcpip)",
            &Expect::Relayed,
            Err(("setup".into(), e)),
        ),
    }
    // bob's role allows this machine's login: in a real session, the kernel refuses a
    // connection to the forbidden address (eBPF on the session's cgroup).
    demo.restricted_session(bob.as_ref()).await;
    // carol behind a layer-4 load balancer that sends PROXY v2.
    let carol = demo
        .login(
            "carol",
            Password::Right,
            2,
            LOAD_BALANCER,
            Some(CAROL),
            Expect::Issued(Some(CAROL.into())),
        )
        .await;
    demo.access(
        "carol",
        carol.as_ref(),
        3,
        LOAD_BALANCER,
        Some(CAROL),
        Expect::Allowed(CAROL.into()),
    )
    .await;
    // mallory, not a trusted proxy, writes a PROXY header claiming carol's IP.
    demo.access(
        "mallory",
        carol.as_ref(),
        3,
        MALLORY,
        Some(CAROL),
        Expect::ConnectionRefused,
    )
    .await;
    // alice through a front (kind: forward) to an inner tls listener: the
    // front vouches for her address with a grant + MAC header (TLV 0xE7),
    // and the inner listener pins on it.
    demo.access(
        "alice",
        alice.as_ref(),
        FRONT_LISTENER,
        ALICE_HOME,
        None,
        Expect::Allowed(ALICE_HOME.into()),
    )
    .await;
    demo.access(
        "alice",
        alice.as_ref(),
        FRONT_LISTENER,
        ALICE_CAFE,
        None,
        Expect::Denied("pinned_ip_mismatch"),
    )
    .await;
    // and a wrong password is just refused.
    demo.login(
        "bob",
        Password::Wrong,
        0,
        ALICE_HOME,
        None,
        Expect::Denied("bad_credentials"),
    )
    .await;
}

fn table(rows: &[Row]) -> String {
    let headers = [
        "#",
        "who",
        "from",
        "through",
        "action",
        "outcome",
        "reason / detail",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            [
                format!("{}", i + 1),
                r.who.clone(),
                r.from.clone(),
                r.through.clone(),
                r.action.to_owned(),
                if r.ok {
                    r.outcome.clone()
                } else {
                    format!("{} (UNEXPECTED)", r.outcome)
                },
                r.reason.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()).take(6) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        for (i, c) in row.iter().enumerate() {
            if i == 6 {
                out.push_str(c);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(c.chars().count());
                out.push_str(c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(&mut out, &headers.map(str::to_owned));
    for row in &cells {
        line(&mut out, row);
    }
    out
}

/// Runs the demo and renders its report; exit 1 when an outcome differs.
pub async fn run() -> Outcome {
    let started = Instant::now();
    let passwords = match Passwords::new() {
        Ok(p) => p,
        Err(e) => return Outcome::fail(2, format!("error: {e}\n")),
    };
    // The inner listener's port is picked free, then bound by the server: another process
    // can take it in between. Then the setup starts again, in a fresh folder (three tries).
    let mut attempt = 0;
    let (dir, ca_pem, running) = loop {
        attempt += 1;
        let dir = match tempfile::Builder::new().prefix("ippin-demo-").tempdir() {
            Ok(d) => d,
            Err(e) => {
                return Outcome::fail(2, format!("error: cannot make a temporary folder: {e}\n"));
            }
        };
        match setup(dir.path(), &passwords).await {
            Ok((ca_pem, running)) => break (dir, ca_pem, running),
            Err(e) if attempt < 3 && e.contains("Address already in use") => continue,
            Err(e) => return Outcome::fail(2, format!("error: demo setup failed: {e}\n")),
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ippin demo: ephemeral CA in {}; listeners:",
        dir.path().display()
    );
    for (i, (kind, addr)) in running.listeners.iter().enumerate() {
        let mode = if *kind == crate::config::ListenerKind::Ssh {
            format!(
                "PROXY off; network restrictions: 127.0.0.0/8 except {FORBIDDEN}; in-process SSH client"
            )
        } else if i == FRONT_LISTENER {
            "PROXY off (direct clients); forwards to the inner listener with a grant + MAC \
             header (audience demo-inner)"
                .to_owned()
        } else if i == FRONT_LISTENER - 1 {
            "PROXY off; propagation: accepts the front's grant + MAC headers (audience \
             demo-inner)"
                .to_owned()
        } else if i >= 2 {
            format!("PROXY on, trusted proxy {LOAD_BALANCER}")
        } else {
            "PROXY off (direct clients)".to_owned()
        };
        let _ = writeln!(out, "  {kind:<5} {addr}  {mode}");
    }
    out.push('\n');
    let audit_log = running.state.config.audit_log.clone();
    let host_key = running
        .state
        .config
        .ssh_host_key
        .as_deref()
        .and_then(|p| crate::ssh::wiring::read_host_key(p).ok())
        .map(|k| k.public_key().clone());
    let mut demo = Demo {
        ca_pem,
        audit_log,
        host_key,
        running,
        rows: Vec::new(),
        login: demo_login(),
        notes: Vec::new(),
        passwords,
    };
    play(&mut demo).await;
    out.push_str(&table(&demo.rows));
    for note in &demo.notes {
        let _ = writeln!(out, "{note}");
    }
    let failed: Vec<usize> = demo
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.ok)
        .map(|(i, _)| i + 1)
        .collect();
    let audit_lines = std::fs::read_to_string(&demo.running.state.config.audit_log)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    out.push('\n');
    let _ = writeln!(
        out,
        "summary: alice's certificates worked only from the IP she logged in from; moving to \
         {ALICE_CAFE} needed a new login (pinned_ip_mismatch: \"log in again\"), and renewal \
         kept the pin. bob (no pinning) worked from both. carol behind the load balancer was \
         seen as {CAROL} and pinned to it; mallory's forged PROXY header from an untrusted peer \
         was refused before TLS. Through a front (kind: forward) the inner listener saw \
         alice's own address, vouched for by the front's grant and MAC, and pinned it the same \
         way. Over SSH (certificates from the same logins, in-process \
         client) the pin held the same way, and the network restrictions refused a forward to \
         {FORBIDDEN} (T4002I) while one to the echo listener went through; where the machine \
         enforces them, a program in bob's real session was refused the same address by the \
         kernel (EPERM, T4002I with its name and pid). {audit_lines} audit events written."
    );
    let _ = writeln!(
        out,
        "{} steps, {} as expected, {} unexpected; {:.1} s",
        demo.rows.len(),
        demo.rows.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Outcome::ok(out)
    } else {
        Outcome {
            code: 1,
            stdout: out,
            stderr: format!("error: unexpected outcome in steps {failed:?}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_passwords_are_drawn_for_each_run() {
        let (a, b) = (Passwords::new().unwrap(), Passwords::new().unwrap());
        for name in ["alice", "bob", "carol"] {
            let p = a.of(name);
            assert_eq!(p.len(), 36, "{name}");
            assert!(p.bytes().all(|c| c.is_ascii_hexdigit()), "{name}: {p}");
            assert_ne!(p, b.of(name), "{name}: the same in two runs");
        }
        assert_ne!(a.of("alice"), a.of("bob"));
        assert!(a.of("mallory").is_empty());
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let users = "  - {name: alice, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [pinned-ip]}\n";
        let c = Config::parse(Path::new("/d/ippin.yaml"), &demo_config(users)).unwrap();
        assert_eq!(c.listeners.len(), 5);
        assert_eq!(
            c.listeners.get(SSH_LISTENER).map(|l| l.kind),
            Some(crate::config::ListenerKind::Ssh)
        );
        assert_eq!(
            c.ssh_auth_rejection_time,
            std::time::Duration::from_millis(50)
        );
        assert_eq!(c.users.len(), 1);
    }

    #[test]
    fn the_demo_roles_let_bob_use_the_demo_login_only() {
        let roles = ippin_policy::parse_roles("roles.yaml", &demo_roles("root")).unwrap();
        let logins = |name: &str| {
            let role = roles.iter().find(|r| r.name == name).expect("role");
            role.allow_logins().iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(logins("dev"), ["root"]);
        assert!(logins("pinned-ip").is_empty());
    }

    #[test]
    fn the_propagation_listeners_are_valid_once_their_keys_exist() {
        let dir = tempfile::tempdir().unwrap();
        crate::propagation::cmd::write_propagation_key("demo-inner", dir.path()).unwrap();
        let users = "  - {name: alice, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [pinned-ip]}\n";
        let inner: SocketAddr = "127.0.0.1:4999".parse().unwrap();
        let text = format!("{}{}", demo_config(users), propagation_listeners(inner));
        let c = Config::parse(&dir.path().join("ippin.yaml"), &text).unwrap();
        let kinds: Vec<_> = c.listeners.iter().map(|l| l.kind).collect();
        assert_eq!(kinds.len(), FRONT_LISTENER + 1);
        let inner_cfg = &c.listeners[FRONT_LISTENER - 1];
        assert_eq!(inner_cfg.listen, inner);
        assert_eq!(
            inner_cfg.propagation.as_ref().map(|p| p.audience.as_str()),
            Some("demo-inner")
        );
        let front = c.listeners[FRONT_LISTENER].forward.as_ref().unwrap();
        assert_eq!(front.upstream, inner.to_string());
        assert_eq!(
            Some(front.upstream_public),
            inner_cfg
                .propagation
                .as_ref()
                .map(|p| p.secret.public_key())
        );
    }

    #[test]
    fn v2_headers_parse_back() {
        let h = v2_header(CAROL, "127.0.0.1:4000".parse().unwrap()).unwrap();
        let (parsed, used) = pp::parse(&h).unwrap();
        assert_eq!(used, h.len());
        assert_eq!(parsed.source(), Some(SocketAddr::from((CAROL, 50_007))));
    }
}
