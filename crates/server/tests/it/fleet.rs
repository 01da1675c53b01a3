//! A fleet: three real `ippin serve` nodes on one real etcd, behind HAProxy
//! (`send-proxy-v2`), driven with `ippin ctl`, the real OpenSSH client, curl and etcdctl.
//! Network restrictions and roles changed once through the admin API and in force on every
//! node (running sessions included), lockouts shared through etcd leases, nodes serving
//! with their last state while etcd is down, and bad admin input refused with nothing
//! written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ippin_test_support::etcd::{Etcd, Pki};
use ippin_test_support::{free_port, peer, wait_until};
use serde_json::Value;

use crate::haproxy::Haproxy;
use crate::ssh::harness::{Identity, ip, ssh_command};
use crate::ssh::sessions::{OsUser, PROBE, Remote, busy_session, http_listener, restrictions};
use crate::support::{COMMAND_TIMEOUT, IPPIN, Ran, curl, run};

/// The key prefix the nodes share.
const PREFIX: &str = "/ippin-fleet/";

/// The fleet's etcd: TLS on its client listener with client certificate authentication
/// (certificates from [`Pki`]), and `etcdctl` as another client of it.
pub(crate) struct Store {
    pub(crate) etcd: Etcd,
    pub(crate) pki: Pki,
}

impl Store {
    pub(crate) fn start() -> Store {
        let pki = Pki::new();
        // ippin refuses a private key that group or others may read.
        for key in ["client.key", "etcd.key"] {
            std::fs::set_permissions(
                pki.path(key),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("chmod");
        }
        let etcd = pki.etcd();
        Store { etcd, pki }
    }

    /// `etcdctl` (v3 API) against this etcd: another client than ippin.
    pub(crate) fn ctl(&self, args: &[&str]) -> Ran {
        let mut cmd = Command::new(peer("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://{}", self.etcd.client))
            .arg(format!("--cacert={}", self.pki.path("ca.pem").display()))
            .arg(format!("--cert={}", self.pki.path("client.pem").display()))
            .arg(format!("--key={}", self.pki.path("client.key").display()))
            .arg("--command-timeout=3s")
            .args(args);
        run(cmd, b"", COMMAND_TIMEOUT)
    }

    /// The store's revision now.
    fn revision(&self) -> i64 {
        let ran = self.ctl(&["get", "--prefix", PREFIX, "-w", "json", "--keys-only"]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        let v: Value = serde_json::from_str(&ran.stdout).expect("etcdctl JSON");
        v["header"]["revision"].as_i64().expect("revision")
    }

    /// Every key under the prefix with its value and revisions, but the nodes' heartbeats
    /// (`heartbeat/NODE`, written every second): what an admin write could change.
    fn dump(&self) -> String {
        let mut out = String::new();
        let end = format!("{}0", PREFIX.trim_end_matches('/'));
        for (from, to) in [
            (PREFIX.to_owned(), format!("{PREFIX}heartbeat/")),
            (format!("{PREFIX}heartbeat0"), end),
        ] {
            let ran = self.ctl(&["get", &from, &to, "-w", "fields"]);
            assert_eq!(ran.code, Some(0), "{ran:?}");
            // The header (the store's revision) moves with every heartbeat.
            out.extend(
                ran.stdout
                    .lines()
                    .filter(|l| !l.starts_with("\"Revision\"") && !l.starts_with("\"RaftTerm\""))
                    .map(|l| format!("{l}\n")),
            );
        }
        out
    }

    fn kill(&mut self) {
        self.etcd.kill();
    }

    fn restart(&mut self) {
        self.etcd.restart();
    }
}

/// One node: its process and the HAProxy frontends in front of its listeners.
struct Node {
    config: PathBuf,
    log: PathBuf,
    /// The running `ippin serve`, its stderr going to `log` (a file, so that a long run
    /// never blocks on a full pipe).
    child: Option<std::process::Child>,
    /// The node's own listeners (login, tls, ssh).
    own: [SocketAddr; 3],
    /// HAProxy's frontends for them (same order).
    login: SocketAddr,
    tls: SocketAddr,
    ssh: SocketAddr,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("node log");
        let mut child = Command::new(IPPIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ippin serve");
        let own = self.own;
        let up = wait_until(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || own.iter().all(|a| {
                    std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()
                })
        });
        let running = matches!(child.try_wait(), Ok(None));
        if !up || !running {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node {} did not start\n{}",
                self.config.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    etcd: Store,
    nodes: Vec<Node>,
    _haproxy: Haproxy,
    /// The relays between the nodes and etcd ([`Options::etcd_proxies`]), in the order of
    /// the nodes' `backend.endpoints`.
    etcd_proxies: Vec<EtcdProxy>,
}

/// How [`start_fleet_with`] sets the fleet up.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// How many [`EtcdProxy`] the nodes reach etcd through (their `backend.endpoints`; none:
    /// etcd itself). etcdctl still talks to etcd directly, so that the nodes can be cut off
    /// while etcd stays up.
    etcd_proxies: usize,
    /// A second administrator, dave (role `fleet-admin`), and a role `retired` that no
    /// user has, in the seed.
    second_admin: bool,
}

/// HAProxy in `mode tcp` between the nodes and etcd: TLS passes through it (etcd's
/// certificate names 127.0.0.1, which the proxy's address is too). Killed, it closes the
/// nodes' connections; stopped (SIGSTOP), it leaves them hanging in silence.
struct EtcdProxy {
    bind: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl EtcdProxy {
    fn new(etcd: SocketAddr) -> EtcdProxy {
        let lo = ip("127.0.0.1");
        let bind = SocketAddr::new(lo, free_port(lo));
        let dir = ippin_test_support::temp_dir();
        let config = dir.path().join("etcd-proxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 200\n\
                 defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 5m\n    \
                 timeout server 5m\n\
                 frontend etcd\n    bind {bind}\n    default_backend etcd\n\
                 backend etcd\n    server etcd {etcd}\n"
            ),
        )
        .expect("etcd proxy config");
        let mut proxy = EtcdProxy {
            bind,
            config,
            _dir: dir,
            child: None,
        };
        proxy.start();
        proxy
    }

    /// Starts it (again, on the same address) and waits until it accepts connections.
    fn start(&mut self) {
        self.kill();
        let mut child = Command::new(peer("haproxy"))
            .arg("-f")
            .arg(&self.config)
            .arg("-db")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let bind = self.bind;
        let up = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || std::net::TcpStream::connect_timeout(&bind, Duration::from_millis(200)).is_ok()
        });
        let running = matches!(child.try_wait(), Ok(None));
        assert!(up && running, "the etcd proxy does not listen on {bind}");
        self.child = Some(child);
    }

    /// Kills it: the nodes' connections to etcd are closed.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to it.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the etcd proxy runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

impl Fleet {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ippin login` through `node`'s login frontend, from `from`; its folder.
    fn login(&self, node: usize, user: &str, password: &str, from: &str) -> (PathBuf, Ran) {
        let out = self.path(&format!("login-{user}-{node}-{from}"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("login dir");
        let mut cmd = Command::new(IPPIN);
        cmd.args(["login", "--server"])
            .arg(format!("https://{}", self.nodes[node].login))
            .args(["--user", user, "--ca"])
            .arg(self.path("ca/tls_ca.pem"))
            .arg("--out")
            .arg(&out)
            .args(["--bind", from]);
        let ran = run(cmd, format!("{password}\n").as_bytes(), COMMAND_TIMEOUT);
        (out, ran)
    }

    /// `ippin ctl` through `node`'s tls frontend with the certificate in `id`.
    fn ctl(&self, node: usize, id: &Path, args: &[&str]) -> Ran {
        run(self.ctl_command(node, id, args), b"", COMMAND_TIMEOUT)
    }

    /// The `ippin ctl` command of [`Fleet::ctl`], not started.
    fn ctl_command(&self, node: usize, id: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(IPPIN);
        cmd.args(["ctl", "--server"])
            .arg(self.nodes[node].tls.to_string())
            .arg("--identity")
            .arg(id)
            .arg("--ca")
            .arg(self.path("ca/tls_ca.pem"))
            .args(args);
        cmd
    }

    /// curl to `node`'s tls frontend with the certificate in `id`, from 127.0.0.1.
    fn curl(
        &self,
        node: usize,
        id: &Path,
        method: &str,
        path: &str,
        extra: &[&str],
    ) -> crate::support::Http {
        let url = format!("https://localhost:{}{path}", self.nodes[node].tls.port());
        let resolve = format!("localhost:{}:127.0.0.1", self.nodes[node].tls.port());
        let ca = self.path("ca/tls_ca.pem");
        let cert = id.join("ippin_tls.pem");
        let key = id.join("ippin_tls.key");
        let mut args = vec![
            "--resolve",
            &resolve,
            "--cacert",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-X",
            method,
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    }

    /// `GET path` on `node`'s login frontend from `from`.
    fn get_login(&self, node: usize, path: &str, from: &str) -> crate::support::Http {
        let url = format!("https://localhost:{}{path}", self.nodes[node].login.port());
        let resolve = format!("localhost:{}:127.0.0.1", self.nodes[node].login.port());
        let ca = self.path("ca/tls_ca.pem");
        curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            ca.to_str().unwrap(),
            "--interface",
            from,
            &url,
        ])
    }

    /// `/readyz` of `node`, through its login frontend.
    fn readyz(&self, node: usize) -> crate::support::Http {
        let url = format!("https://localhost:{}/readyz", self.nodes[node].login.port());
        let resolve = format!("localhost:{}:127.0.0.1", self.nodes[node].login.port());
        let ca = self.path("ca/tls_ca.pem");
        curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            ca.to_str().unwrap(),
            &url,
        ])
    }
}

/// The `dev` role of `ippin ca init`, allowing `login`, pinned or not.
fn dev_role(login: &str, pin: bool) -> String {
    format!(
        "kind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  options:\n    \
         pin_source_ip: {pin}\n  allow:\n    logins: [{login}]\n"
    )
}

fn start_fleet(os_login: &str) -> Fleet {
    start_fleet_with(os_login, Options::default())
}

fn start_fleet_with(os_login: &str, options: Options) -> Fleet {
    ippin::install_crypto_provider();
    let etcd = Store::start();
    let etcd_proxies: Vec<EtcdProxy> = (0..options.etcd_proxies)
        .map(|_| EtcdProxy::new(etcd.etcd.client))
        .collect();
    let endpoints = if etcd_proxies.is_empty() {
        format!("'https://{}'", etcd.etcd.client)
    } else {
        etcd_proxies
            .iter()
            .map(|p| format!("'https://{}'", p.bind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lo = ip("127.0.0.1");
    let ports: Vec<[SocketAddr; 3]> = (0..3)
        .map(|_| {
            [
                SocketAddr::new(lo, free_port(lo)),
                SocketAddr::new(lo, free_port(lo)),
                SocketAddr::new(lo, free_port(lo)),
            ]
        })
        .collect();
    let listeners = |p: &[SocketAddr; 3]| {
        format!(
            "  - {{kind: login, listen: {}, proxy_protocol: on, trusted_proxies: [127.0.0.1/32]}}\n  \
             - {{kind: tls, listen: {}, proxy_protocol: on, trusted_proxies: [127.0.0.1/32]}}\n  \
             - {{kind: ssh, listen: {}, proxy_protocol: on, trusted_proxies: [127.0.0.1/32]}}\n",
            p[0], p[1], p[2]
        )
    };
    // Each call to etcd may take 5 s: a seed's write (an fsync) on a loaded machine can take
    // longer than the default 2 s, and a node that cannot seed does not start.
    let backend = format!(
        "backend:\n  kind: etcd\n  endpoints: [{}]\n  prefix: {PREFIX}\n  timeout: 5s\n  tls: {{ca: {}, \
         cert: {}, key: {}}}\nlogin_limits: {{max_failures: 5, lockout: 4s, failure_window: 1m}}\n",
        endpoints,
        etcd.pki.path("ca.pem").display(),
        etcd.pki.path("client.pem").display(),
        etcd.pki.path("client.key").display(),
    );
    let (dir, config) = crate::attacks::site(&listeners(&ports[0]), &backend);
    // The seed: `ca init`'s roles with `dev` allowing the OS login, and an admin role and
    // user (carol) for the API.
    let roles = format!(
        "{}---\n{}",
        dev_role(os_login, false),
        "kind: role\nversion: v7\nmetadata:\n  name: fleet-admin\nspec:\n  options:\n    admin: true\n    pin_source_ip: true\n"
    );
    let pinned = "kind: role\nversion: v7\nmetadata:\n  name: pinned-ip\nspec:\n  options:\n    pin_source_ip: true\n";
    let retired = if options.second_admin {
        "---\nkind: role\nversion: v7\nmetadata:\n  name: retired\nspec:\n  options:\n    pin_source_ip: true\n"
    } else {
        ""
    };
    std::fs::write(
        dir.path().join("roles.yaml"),
        format!("{pinned}---\n{roles}{retired}"),
    )
    .expect("roles");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config, "carol", &["fleet-admin".to_owned()], &hash).expect("carol");
    if options.second_admin {
        ippin::users::add_user(&config, "dave", &["fleet-admin".to_owned()], &hash).expect("dave");
    }
    let text = std::fs::read_to_string(&config).expect("config");
    let (head, _) = text.split_once("listeners:\n").expect("listeners");
    let mut nodes = Vec::new();
    let mut routes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = dir.path().join(format!("node{i}.yaml"));
        let node_text = format!("{}listeners:\n{}", head, listeners(p))
            .replace("audit_log: audit.log", &format!("audit_log: audit{i}.log"));
        crate::support::write_config(&path, node_text);
        for a in p {
            routes.push(*a);
        }
        nodes.push(Node {
            config: path,
            log: dir.path().join(format!("node{i}.log")),
            child: None,
            own: *p,
            login: p[0],
            tls: p[1],
            ssh: p[2],
        });
    }
    for n in &mut nodes {
        n.start();
    }
    let with_proxy: Vec<(SocketAddr, &str)> =
        routes.iter().map(|a| (*a, "send-proxy-v2")).collect();
    let haproxy = Haproxy::start(&with_proxy);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.login = haproxy.binds[3 * i];
        n.tls = haproxy.binds[3 * i + 1];
        n.ssh = haproxy.binds[3 * i + 2];
    }
    Fleet {
        dir,
        etcd,
        nodes,
        _haproxy: haproxy,
        etcd_proxies,
    }
}

/// The pins of the certificates `ippin login` wrote in `dir`: the X.509 one's, after
/// checking the SSH one's is the same.
fn inspect_pin(dir: &Path) -> Value {
    let tls = crate::support::inspect_cert(&dir.join("ippin_tls.pem"))["pinned"].clone();
    let ssh = crate::support::inspect_cert(&dir.join("ippin_ed25519-cert.pub"))["pinned"].clone();
    assert_eq!(tls, ssh, "the two certificates of one login");
    match tls.as_array().map(Vec::as_slice) {
        Some([]) => Value::Null,
        Some([one]) => one.clone(),
        _ => panic!("pins: {tls}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_restrictions_roles_and_lockouts_through_etcd() {
    let os = OsUser::create("fleet");
    let mut f = start_fleet(&os.name);

    // The admin logs in through node 0; bob (role dev) through node 2.
    let (carol, ran) = f.login(0, "carol", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (bob, ran) = f.login(2, "bob", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(inspect_pin(&bob), Value::Null, "dev does not pin yet");

    // A session already open on node 2, through HAProxy.
    let bob_id = Identity {
        key: bob.join("ippin_ed25519"),
        cert: bob.join("ippin_ed25519-cert.pub"),
    };
    let probe = os.home.join("probe.py");
    std::fs::write(&probe, PROBE).expect("probe");
    let target = http_listener("127.0.0.9");
    let mut remote = Remote::open_at(&bob_id, &os.name, "127.0.0.1", f.nodes[2].ssh);
    let connect = format!(
        "python3 {} 4 tcp 127.0.0.9 {}",
        probe.display(),
        target.port()
    );
    let (out, _) = remote.run(&connect).await;
    assert_eq!(out.trim(), "OK", "no restrictions yet");

    // ---- bad input through the API: refused with its reason, nothing written ----------
    let dump = f.etcd.dump();
    let bad = f.path("bad.yaml");
    std::fs::write(&bad, "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  options:\n    pin_source_ip: yes\n").unwrap();
    let r = f.curl(
        0,
        &carol,
        "POST",
        "/v1/admin/resources",
        &["--data-binary", &format!("@{}", bad.display())],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("bad_document")),
        "{r:?}"
    );
    std::fs::write(&bad, "kind: cluster_auth_preference\nversion: v2\n").unwrap();
    let r = f.curl(
        0,
        &carol,
        "POST",
        "/v1/admin/resources",
        &["--data-binary", &format!("@{}", bad.display())],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("unknown_kind")),
        "{r:?}"
    );
    // A good document after a broken one: all or nothing.
    std::fs::write(
        &bad,
        format!("{}---\nkind: role\nversion: v7\n", restrictions(&[])),
    )
    .unwrap();
    let r = f.curl(
        0,
        &carol,
        "POST",
        "/v1/admin/resources",
        &["--data-binary", &format!("@{}", bad.display())],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let big = f.path("big.yaml");
    std::fs::write(&big, format!("kind: role\n#{}\n", "x".repeat(2 << 20))).unwrap();
    let r = f.curl(
        0,
        &carol,
        "POST",
        "/v1/admin/resources",
        &["--data-binary", &format!("@{}", big.display())],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (413, Some("body_too_large")),
        "{r:?}"
    );
    std::fs::write(&bad, restrictions(&[])).unwrap();
    let r = f.curl(
        0,
        &bob,
        "POST",
        "/v1/admin/resources",
        &["--data-binary", &format!("@{}", bad.display())],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("not_admin")),
        "{r:?}"
    );
    let r = f.curl(1, &bob, "DELETE", "/v1/admin/resources/role/dev", &[]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("not_admin")),
        "{r:?}"
    );
    assert_eq!(f.etcd.dump(), dump, "nothing was written");
    // ctl checks the file first: file, line and field, nothing sent.
    std::fs::write(&bad, "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  options:\n    pin_source_ip: yes\n").unwrap();
    let ran = f.ctl(0, &carol, &["create", "-f", bad.to_str().unwrap()]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains("bad.yaml:7") && ran.stderr.contains("spec.options.pin_source_ip"),
        "{ran:?}"
    );
    assert_eq!(f.etcd.dump(), dump, "nothing was written");

    // ---- network restrictions through node 0, in force on node 2's open session ------
    let policy = f.path("netpolicy.yaml");
    std::fs::write(&policy, restrictions(&["127.0.0.9/32"])).unwrap();
    let ran = f.ctl(0, &carol, &["create", "-f", policy.to_str().unwrap()]);
    let done = Instant::now();
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("network restrictions have been updated"),
        "{ran:?}"
    );
    let mut refused_after = None;
    while done.elapsed() < Duration::from_secs(5) {
        let (out, _) = remote.run(&connect).await;
        if out.trim() == "ERR Operation not permitted" {
            refused_after = Some(done.elapsed());
            break;
        }
        assert_eq!(out.trim(), "OK");
    }
    let after = refused_after.expect("the open session on node 2 is refused its denied connect");
    assert!(after < Duration::from_secs(2), "refused after {after:?}");
    // ctl get on node 1 shows the same document.
    let ran = f.ctl(1, &carol, &["get", "network_restrictions"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        ran.stdout.trim(),
        restrictions(&["127.0.0.9/32"]).trim(),
        "{ran:?}"
    );
    // Writing it again without --force: refused, it exists.
    let ran = f.ctl(1, &carol, &["create", "-f", policy.to_str().unwrap()]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("already"), "{ran:?}");
    // The change is audited on node 0 with who, from where and what.
    let audit0 = std::fs::read_to_string(f.path("audit0.log")).unwrap();
    let change = audit0
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "admin_changed")
        .expect("admin_changed on node 0");
    assert_eq!(change["user"], "carol");
    assert_eq!(change["kind"], "network_restrictions");
    assert!(
        change["observed"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{change}"
    );

    // ---- operations: /healthz, and /metrics to local clients only ---------------------
    assert_eq!(
        f.get_login(1, "/healthz", "127.0.0.1").expect(200)["status"],
        "ok"
    );
    let m = f.get_login(0, "/metrics", "127.0.0.1");
    assert_eq!(m.status, 200, "{m:?}");
    for line in [
        "ippin_admin_decisions_total{reason=\"changed\"} 1\n",
        "ippin_admin_decisions_total{reason=\"not_admin\"} 1\n",
        "ippin_admin_decisions_total{reason=\"bad_document\"} 2\n",
        "ippin_login_decisions_total{reason=\"issued\"} 1\n",
        "ippin_backend_connected 1\n",
        "# TYPE ippin_tls_handshake_seconds histogram\n",
    ] {
        assert!(m.body.contains(line), "{line} not in\n{}", m.body);
    }
    // The revision in force: at least the policy's, at most the store's now (heartbeats
    // move it every second).
    let shown: i64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("ippin_backend_revision "))
        .and_then(|v| v.parse().ok())
        .expect("ippin_backend_revision");
    let policy_rev: i64 = {
        let ran = f.etcd.ctl(&[
            "get",
            &format!("{PREFIX}network_restrictions"),
            "-w",
            "json",
        ]);
        let v: Value = serde_json::from_str(&ran.stdout).expect("etcdctl JSON");
        v["kvs"][0]["mod_revision"].as_i64().expect("mod_revision")
    };
    assert!(
        shown >= policy_rev && shown <= f.etcd.revision(),
        "revision {shown}, policy at {policy_rev}: {}",
        m.body
    );
    // A client elsewhere, as the load balancer vouches for it: refused.
    let ca = std::fs::read_to_string(f.path("ca/tls_ca.pem")).expect("CA");
    let remote_client = ippin::client::Endpoint::new(f.nodes[0].own[0], ca)
        .with_proxy_header(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n".to_vec());
    let (status, body) =
        ippin::client::request(&remote_client, None, hyper::Method::GET, "/metrics", None)
            .await
            .expect("an answer");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("metrics_local_only"));

    // ---- a role changed to pin through the API: every node issues pinned certificates -
    // A connection kept open (ControlMaster) with bob's unpinned certificate, before.
    let control = f.path("bob-master");
    let mut master = ssh_command(&bob_id, &os.name, "127.0.0.1", f.nodes[2].ssh);
    master
        .args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
        .arg(&control);
    let master = master.spawn().expect("ssh -M");
    assert!(
        wait_until(Duration::from_secs(10), || control.exists()),
        "the shared connection"
    );
    let through_master = || {
        let mut cmd = ssh_command(&bob_id, &os.name, "127.0.0.1", f.nodes[2].ssh);
        cmd.arg("-S").arg(&control).arg("echo shared");
        cmd
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, through_master().output())
        .await
        .expect("in time")
        .expect("ssh -S");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "shared\n", "{out:?}");
    let role = f.path("dev.yaml");
    std::fs::write(&role, dev_role(&os.name, true)).unwrap();
    let ran = f.ctl(
        0,
        &carol,
        &["create", "--force", "-f", role.to_str().unwrap()],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("role \"dev\" has been updated"),
        "{ran:?}"
    );
    for node in 0..3 {
        let mut pin = Value::Null;
        let ok = wait_until(Duration::from_secs(5), || {
            let (dir, ran) = f.login(node, "bob", "secret", "127.0.0.3");
            assert_eq!(ran.code, Some(0), "{ran:?}");
            pin = inspect_pin(&dir);
            pin != Value::Null
        });
        assert!(ok, "node {node} still issues unpinned certificates");
        assert_eq!(pin, "127.0.0.3/32", "node {node}");
    }
    // The open connection's unpinned certificate no longer passes on node 2: the node ends
    // it (its recheck, every 2 s), though the client keeps it open.
    let out = tokio::time::timeout(Duration::from_secs(30), master.wait_with_output())
        .await
        .expect("node 2 ended the shared connection in time")
        .expect("ssh -M");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection ended (pinned_ip_missing)"),
        "{err}"
    );
    assert!(err.contains("log in again"), "{err}");
    let out = tokio::time::timeout(COMMAND_TIMEOUT, through_master().output())
        .await
        .expect("in time")
        .expect("ssh -S");
    assert!(
        out.stdout.is_empty(),
        "nothing runs through it any more: {out:?}"
    );
    // bob's session open since the start had the same unpinned certificate: ended too. A
    // new one, with a certificate pinned to 127.0.0.1, for what follows.
    drop(remote);
    let (bob_pinned, ran) = f.login(2, "bob", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(inspect_pin(&bob_pinned), "127.0.0.1/32");
    let bob_pinned_id = Identity {
        key: bob_pinned.join("ippin_ed25519"),
        cert: bob_pinned.join("ippin_ed25519-cert.pub"),
    };
    let mut remote = Remote::open_at(&bob_pinned_id, &os.name, "127.0.0.1", f.nodes[2].ssh);
    let (out, _) = remote.run(&connect).await;
    assert_eq!(
        out.trim(),
        "ERR Operation not permitted",
        "the restrictions hold it"
    );

    // ---- five bad passwords on node 0 lock alice on node 1 too ------------------------
    for _ in 0..5 {
        let (_, ran) = f.login(0, "alice", "wrong", "127.0.0.4");
        assert_ne!(ran.code, Some(0));
    }
    let mut answer = String::new();
    let locked = wait_until(Duration::from_secs(5), || {
        let (_, ran) = f.login(1, "alice", "secret", "127.0.0.5");
        answer = format!("{ran:?}");
        ran.code != Some(0) && ran.stderr.contains("locked until")
    });
    assert!(locked, "alice is not locked on node 1: {answer}");
    // Another user is not affected.
    let (_, ran) = f.login(1, "bob", "secret", "127.0.0.5");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // After the lease ends (lockout: 4s), alice logs in again on node 1.
    let unlocked = wait_until(Duration::from_secs(20), || {
        f.login(1, "alice", "secret", "127.0.0.5").1.code == Some(0)
    });
    assert!(unlocked, "alice is still locked after the lease");

    // ---- etcd down: every node serves with its last state, says degraded, refuses writes
    for node in 0..3 {
        assert_eq!(f.readyz(node).expect(200)["status"], "ok", "node {node}");
    }
    f.etcd.kill();
    for node in 0..3 {
        let ok = wait_until(Duration::from_secs(10), || f.readyz(node).status == 503);
        assert!(ok, "node {node} does not say degraded");
        assert_eq!(f.readyz(node).json()["status"], "degraded");
        let (dir, ran) = f.login(node, "bob", "secret", "127.0.0.6");
        assert_eq!(ran.code, Some(0), "node {node}: {ran:?}");
        assert_eq!(
            inspect_pin(&dir),
            "127.0.0.6/32",
            "node {node} keeps the last roles"
        );
        let r = f.curl(node, &dir, "GET", "/whoami", &["--interface", "127.0.0.6"]);
        assert_eq!(r.status, 200, "node {node}: {r:?}");
    }
    let (out, _) = remote.run(&connect).await;
    assert_eq!(
        out.trim(),
        "ERR Operation not permitted",
        "the last restrictions stay"
    );
    let ran = f.ctl(
        0,
        &carol,
        &["create", "--force", "-f", policy.to_str().unwrap()],
    );
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("backend unavailable"), "{ran:?}");

    // etcd back; another etcd client changes the role meanwhile: every node applies it.
    f.etcd.restart();
    let key = format!("{PREFIX}roles/dev");
    let ran = f.etcd.ctl(&["put", &key, &dev_role(&os.name, false)]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for node in 0..3 {
        let ok = wait_until(Duration::from_secs(10), || {
            let (dir, ran) = f.login(node, "bob", "secret", "127.0.0.7");
            ran.code == Some(0) && inspect_pin(&dir) == Value::Null
        });
        assert!(
            ok,
            "node {node} did not apply the change made while it was away"
        );
        let ok = wait_until(Duration::from_secs(10), || f.readyz(node).status == 200);
        assert!(ok, "node {node} is not ready again");
    }

    // ---- a node restarted with etcd down refuses to start -----------------------------
    f.etcd.kill();
    f.nodes[1].stop();
    let mut cmd = Command::new(IPPIN);
    cmd.args(["serve", "--config"]).arg(&f.nodes[1].config);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains("backend unavailable")
            && ran.stderr.contains(&f.etcd.etcd.client.to_string()),
        "{ran:?}"
    );
    drop(remote);
}

/// The YAML of a user document.
fn user_doc(name: &str, roles: &str) -> String {
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    format!(
        "kind: user\nversion: v1\nmetadata:\n  name: {name}\nspec:\n  password_hash: \
         {hash}\n  roles: [{roles}]\n"
    )
}

impl Fleet {
    fn proxy(&mut self) -> &mut EtcdProxy {
        self.etcd_proxies
            .first_mut()
            .expect("a fleet with an etcd proxy")
    }

    /// The pin of a certificate `user` gets from `node`, logging in from `from`; `None` when
    /// the login failed.
    fn pin_of(&self, node: usize, user: &str, from: &str) -> Option<Value> {
        let (dir, ran) = self.login(node, user, "secret", from);
        (ran.code == Some(0)).then(|| inspect_pin(&dir))
    }

    /// Waits (bounded) until every node says `degraded` in `/readyz`.
    fn wait_degraded(&self, why: &str) {
        for node in 0..self.nodes.len() {
            let ok = wait_until(Duration::from_secs(15), || self.readyz(node).status == 503);
            assert!(ok, "{why}: node {node} does not say degraded");
            let r = self.readyz(node);
            assert_eq!(r.json()["status"], "degraded", "{why}: node {node}: {r:?}");
        }
    }

    /// Waits (bounded) until every node is ready with at least `revision` in force.
    fn wait_ready_at(&self, revision: i64, why: &str) {
        for node in 0..self.nodes.len() {
            let mut last = None;
            let ok = wait_until(Duration::from_secs(10), || {
                let r = self.readyz(node);
                let done = r.status == 200
                    && r.json()["status"] == "ok"
                    && r.json()["revision"].as_i64().is_some_and(|v| v >= revision);
                last = Some(r);
                done
            });
            assert!(
                ok,
                "{why}: node {node} is not ready at revision {revision}: {last:?}"
            );
        }
    }

    /// Waits (bounded) until bob's certificates from every node have pin `want` (logging
    /// in from `from`).
    fn wait_bob_pin(&self, from: &str, want: &Value, why: &str) {
        for node in 0..self.nodes.len() {
            let mut pin = None;
            let ok = wait_until(Duration::from_secs(10), || {
                pin = self.pin_of(node, "bob", from);
                pin.as_ref() == Some(want)
            });
            assert!(ok, "{why}: node {node}: bob's pin is {pin:?}, not {want}");
        }
    }

    /// `PREFIX` + `rel` put by etcdctl (another client than ippin); the store's revision.
    fn put(&self, rel: &str, value: &str) -> i64 {
        let ran = self.etcd.ctl(&["put", &format!("{PREFIX}{rel}"), value]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        self.etcd.revision()
    }
}

/// An attacker review's cases: the watch resumes from the last revision applied after the
/// nodes were cut off from etcd (connections closed, then hanging) while etcd stayed up and
/// changed; a compaction while cut off means a full read; hostile values from another etcd
/// client are not applied; and the admin API's controls (pin, demotion, deletion that the
/// seed does not undo, the network restrictions that cannot be removed).
#[tokio::test(flavor = "multi_thread")]
async fn fleet_resume_hostile_values_and_admin_controls() {
    let t0 = Instant::now();
    let os = OsUser::create("fleeth");
    let mut f = start_fleet_with(
        &os.name,
        Options {
            etcd_proxies: 1,
            second_admin: true,
        },
    );
    let unpinned = Value::Null;
    let pinned = Value::from("127.0.0.3/32");
    let (carol, ran) = f.login(0, "carol", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (dave, ran) = f.login(1, "dave", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(f.pin_of(2, "bob", "127.0.0.3"), Some(unpinned.clone()));
    f.wait_ready_at(0, "at start");

    // ---- 1. cut off (connections closed), a change meanwhile, resumed from the revision
    f.proxy().kill();
    f.wait_degraded("proxy killed");
    let written = f.put("roles/dev", &dev_role(&os.name, true));
    // etcd is up and has it; the nodes serve their last state.
    assert_eq!(f.pin_of(0, "bob", "127.0.0.3"), Some(unpinned.clone()));
    f.wait_degraded("still cut off");
    f.proxy().start();
    f.wait_bob_pin("127.0.0.3", &pinned, "after the proxy came back");
    f.wait_ready_at(written, "after the proxy came back");

    // ---- the same with connections that hang in silence (SIGSTOP) ----------------------
    f.proxy().signal("-STOP");
    f.wait_degraded("proxy stopped");
    let written = f.put("roles/dev", &dev_role(&os.name, false));
    f.wait_degraded("still stopped");
    f.proxy().signal("-CONT");
    f.wait_bob_pin("127.0.0.3", &unpinned, "after SIGCONT");
    f.wait_ready_at(written, "after SIGCONT");

    // ---- 2. compaction past the nodes' revision while they are cut off ----------------
    f.wait_ready_at(f.etcd.revision(), "before the compaction");
    let logged_before: Vec<usize> = (0..3)
        .map(|node| {
            std::fs::read_to_string(&f.nodes[node].log)
                .unwrap_or_default()
                .len()
        })
        .collect();
    f.proxy().kill();
    f.wait_degraded("cut off for the compaction");
    f.put("roles/dev", &dev_role(&os.name, true));
    // A key of no known form (ignored by the nodes), so that the compaction removes the
    // revision the nodes would resume from.
    let compacted = f.put("compaction-marker", "x");
    let ran = f.etcd.ctl(&["compact", &compacted.to_string()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    f.proxy().start();
    f.wait_bob_pin("127.0.0.3", &pinned, "after the compaction");
    f.wait_ready_at(compacted, "after the compaction");
    // The watch is not resumed across the cut: the whole state is read again first (the
    // resume's revision was compacted meanwhile, which that read does not need).
    for (node, before) in logged_before.iter().enumerate() {
        let log = std::fs::read_to_string(&f.nodes[node].log).unwrap_or_default();
        let log = log.get(*before..).unwrap_or_default();
        assert!(
            log.contains("state read again from the store"),
            "node {node} did not read the state again after the compaction:\n{log}"
        );
    }

    // ---- 3. hostile values from another etcd client: not applied ----------------------
    // dev pins now. A bad boolean (YAML 1.1's `no`), a role named otherwise than its key,
    // and an alias bomb, each as roles/dev: none is applied, and dev is dropped rather than
    // kept as it was (a value refused may narrow it): every node refuses bob, whose role
    // it is, until a dev that validates is written.
    let mut bomb = String::from("kind: role\nversion: v7\nmetadata:\n  name: dev\n");
    bomb.push_str(&format!(
        "a0: &a0 [{0}, {0}, {0}, {0}, {0}, {0}]\n",
        os.name
    ));
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("spec:\n  options:\n    pin_source_ip: false\n  allow:\n    logins: *a9\n");
    let mut hostile = 0;
    for value in [
        dev_role(&os.name, false).replace("pin_source_ip: false", "pin_source_ip: no"),
        dev_role(&os.name, false).replace("name: dev", "name: other"),
        bomb,
    ] {
        hostile = f.put("roles/dev", &value);
    }
    f.wait_ready_at(hostile, "after the hostile values");
    for node in 0..3 {
        assert_eq!(
            f.pin_of(node, "bob", "127.0.0.3"),
            None,
            "node {node} let bob in with a roles/dev that does not validate"
        );
    }
    // The API shows only what validates: the stored dev does not, and says so.
    let ran = f.ctl(0, &carol, &["get", "role", "dev"]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("does not validate"), "{ran:?}");
    let ran = f.ctl(0, &carol, &["get", "roles"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("name: fleet-admin") && !ran.stdout.contains("name: dev"),
        "{ran:?}"
    );
    let valid = f.put("roles/dev", &dev_role(&os.name, true));
    f.wait_ready_at(valid, "after a dev that validates");
    for node in 0..3 {
        assert_eq!(
            f.pin_of(node, "bob", "127.0.0.3"),
            Some(pinned.clone()),
            "node {node}: bob, pinned again by a dev that validates"
        );
    }

    // A lockout written by another client, until year 9999 and on no lease: alice is
    // locked at most `lockout` (4 s) from when each node saw it.
    assert!(f.pin_of(0, "alice", "127.0.0.1").is_some(), "alice logs in");
    let locked = f.put(
        "lockouts/alice",
        r#"{"until": "9999-12-31T23:59:59Z", "failures": 5}"#,
    );
    f.wait_ready_at(locked, "after the lockout");
    let seen = Instant::now();
    for node in 0..3 {
        let (_, ran) = f.login(node, "alice", "secret", "127.0.0.1");
        assert_ne!(ran.code, Some(0), "node {node}: {ran:?}");
        assert!(
            ran.stderr.contains("locked until") && !ran.stderr.contains("9999"),
            "node {node}: {ran:?}"
        );
    }
    for node in 0..3 {
        let ok = wait_until(
            Duration::from_secs(10).saturating_sub(seen.elapsed()),
            || f.pin_of(node, "alice", "127.0.0.1").is_some(),
        );
        assert!(ok, "node {node}: alice is locked longer than `lockout`");
    }
    let ran = f.etcd.ctl(&["del", &format!("{PREFIX}lockouts/alice")]);
    assert_eq!(ran.code, Some(0), "{ran:?}");

    // ---- 4. admin controls -------------------------------------------------------------
    // carol's certificate (pinned to 127.0.0.1) from 127.0.0.2: refused, nothing written.
    let dump = f.etcd.dump();
    let policy = f.path("netpolicy.yaml");
    std::fs::write(&policy, restrictions(&["127.0.0.9/32"])).unwrap();
    let r = f.curl(
        0,
        &carol,
        "POST",
        "/v1/admin/resources?force=1",
        &[
            "--interface",
            "127.0.0.2",
            "--data-binary",
            &format!("@{}", policy.display()),
        ],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("pinned_ip_mismatch")),
        "{r:?}"
    );
    let r = f.curl(
        1,
        &carol,
        "DELETE",
        "/v1/admin/resources/role/retired",
        &["--interface", "127.0.0.2"],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(f.etcd.dump(), dump, "nothing was written");

    // The network restrictions cannot be removed: refused with its reason, still there and
    // in force on a session open on node 2.
    let (bob, ran) = f.login(2, "bob", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let bob_id = Identity {
        key: bob.join("ippin_ed25519"),
        cert: bob.join("ippin_ed25519-cert.pub"),
    };
    let probe = os.home.join("probe.py");
    std::fs::write(&probe, PROBE).expect("probe");
    let target = http_listener("127.0.0.9");
    let mut remote = Remote::open_at(&bob_id, &os.name, "127.0.0.1", f.nodes[2].ssh);
    let connect = format!(
        "python3 {} 4 tcp 127.0.0.9 {}",
        probe.display(),
        target.port()
    );
    let (out, _) = remote.run(&connect).await;
    assert_eq!(out.trim(), "OK", "no restrictions yet");
    let ran = f.ctl(1, &dave, &["create", "-f", policy.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let denied = "ERR Operation not permitted";
    let done = Instant::now();
    let mut out = String::new();
    while done.elapsed() < Duration::from_secs(5) {
        out = remote.run(&connect).await.0;
        if out.trim() == denied {
            break;
        }
    }
    assert_eq!(out.trim(), denied, "the policy is not in force on node 2");
    let ran = f.ctl(1, &dave, &["rm", "network_restrictions"]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("cannot be removed"), "{ran:?}");
    let ran = f.etcd.ctl(&[
        "get",
        "--print-value-only",
        &format!("{PREFIX}network_restrictions"),
    ]);
    assert!(ran.stdout.contains("127.0.0.9/32"), "{ran:?}");
    let ran = f.ctl(2, &carol, &["get", "network_restrictions"]);
    assert_eq!(
        ran.stdout.trim(),
        restrictions(&["127.0.0.9/32"]).trim(),
        "{ran:?}"
    );
    // Deleted by another etcd client: every node keeps the last policy.
    let ran = f
        .etcd
        .ctl(&["del", &format!("{PREFIX}network_restrictions")]);
    assert_eq!((ran.code, ran.stdout.trim()), (Some(0), "1"), "{ran:?}");
    f.wait_ready_at(f.etcd.revision(), "after the policy was deleted");
    let (out, _) = remote.run(&connect).await;
    assert_eq!(out.trim(), denied, "the last policy stays in force");
    drop(remote);
    // ... and the nodes write it back, so a node started later does not start with none.
    let key = format!("{PREFIX}network_restrictions");
    let back = wait_until(Duration::from_secs(10), || {
        f.etcd
            .ctl(&["get", "--print-value-only", &key])
            .stdout
            .contains("127.0.0.9/32")
    });
    assert!(back, "the deleted policy was not written back");
    let ran = f.ctl(1, &dave, &["create", "-f", policy.to_str().unwrap()]);
    assert!(ran.stderr.contains("already"), "{ran:?}");

    // A seeded role deleted: audited, and not written again when a node restarts.
    let ran = f.ctl(0, &carol, &["rm", "role/retired"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("deleted"), "{ran:?}");
    let audit0 = std::fs::read_to_string(f.path("audit0.log")).unwrap();
    let deleted = audit0
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "admin_changed" && v["action"] == "deleted")
        .expect("admin_changed deleted on node 0");
    assert_eq!(
        (&deleted["user"], &deleted["kind"], &deleted["name"]),
        (
            &Value::from("carol"),
            &Value::from("role"),
            &Value::from("retired")
        ),
        "{deleted}"
    );
    let ran = f
        .etcd
        .ctl(&["get", &format!("{PREFIX}seeded"), "--print-value-only"]);
    assert!(!ran.stdout.trim().is_empty(), "no seeded marker: {ran:?}");
    f.nodes[1].stop();
    // A node that starts on a store holding a value that does not validate refuses to
    // start, naming the key.
    f.put(
        "roles/dev",
        &dev_role(&os.name, true).replace("name: dev", "name: other"),
    );
    let mut cmd = Command::new(IPPIN);
    cmd.args(["serve", "--config"]).arg(&f.nodes[1].config);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains(&format!("{PREFIX}roles/dev")),
        "{ran:?}"
    );
    f.put("roles/dev", &dev_role(&os.name, true));
    f.nodes[1].start();
    let ran = f.etcd.ctl(&["get", &format!("{PREFIX}roles/retired")]);
    assert_eq!((ran.code, ran.stdout.trim()), (Some(0), ""), "{ran:?}");
    let ran = f.ctl(1, &dave, &["get", "role", "retired"]);
    assert!(
        ran.code != Some(0) && ran.stderr.contains("not found"),
        "{ran:?}"
    );

    // carol demoted by dave: her next request is refused, on every node.
    let demote = f.path("carol.yaml");
    std::fs::write(&demote, user_doc("carol", "dev")).unwrap();
    let ran = f.ctl(
        1,
        &dave,
        &["create", "--force", "-f", demote.to_str().unwrap()],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for node in 0..3 {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(5), || {
            let ran = f.ctl(node, &carol, &["get", "role", "dev"]);
            let refused = ran.code != Some(0) && ran.stderr.contains("not_admin");
            last = Some(ran);
            refused
        });
        assert!(ok, "node {node} still lets carol administer: {last:?}");
    }
    let ran = f.ctl(0, &dave, &["get", "role", "dev"]);
    assert_eq!(ran.code, Some(0), "dave still administers: {ran:?}");
    eprintln!(
        "fleet_resume_hostile_values_and_admin_controls: {:?}",
        t0.elapsed()
    );
}

/// The watch connection of every node hangs in silence (the first endpoint's relay is
/// stopped) while the second endpoint answers: the probes move to it and succeed, so the node
/// must not stay on a watch that delivers nothing. A change made meanwhile must reach every
/// node, and `/readyz` must not say `ok` with a stale state.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_watch_hanging_while_another_endpoint_answers() {
    let mut f = start_fleet_with(
        "fleetdev",
        Options {
            etcd_proxies: 2,
            second_admin: false,
        },
    );
    assert_eq!(f.pin_of(0, "bob", "127.0.0.3"), Some(Value::Null));
    f.wait_ready_at(f.etcd.revision(), "at start");
    f.proxy().signal("-STOP");
    let written = f.put("roles/dev", &dev_role("fleetdev", true));
    for node in 0..3 {
        let mut last = None;
        let mut stale_but_ok = None;
        let ok = wait_until(Duration::from_secs(15), || {
            let r = f.readyz(node);
            let revision = r.json()["revision"].as_i64().unwrap_or(0);
            if r.status == 200 && revision < written {
                stale_but_ok = Some(format!("{r:?}"));
            }
            last = Some(r);
            revision >= written
        });
        assert!(
            ok,
            "node {node} has not applied revision {written} (its watch hangs): {last:?}; \
             ready while stale: {stale_but_ok:?}"
        );
    }
    f.wait_bob_pin("127.0.0.3", &Value::from("127.0.0.3/32"), "watch hanging");
    f.proxy().signal("-CONT");
}

/// A user removed through the admin API on one node: their SSH connection already open on
/// another node is ended within its recheck interval (2 s), with the session's processes,
/// though the client keeps it busy; the client is told why.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_removing_a_user_ends_their_open_connection() {
    let os = OsUser::create("fleetrm");
    let f = start_fleet(&os.name);
    let (carol, ran) = f.login(0, "carol", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let (bob, ran) = f.login(2, "bob", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let bob_id = Identity {
        key: bob.join("ippin_ed25519"),
        cert: bob.join("ippin_ed25519-cert.pub"),
    };
    let client = busy_session(ssh_command(&bob_id, &os.name, "127.0.0.1", f.nodes[2].ssh)).await;
    assert!(!os.processes().is_empty(), "the session's sleep runs");
    let ran = f.ctl(0, &carol, &["rm", "user/bob"]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let out = tokio::time::timeout(Duration::from_secs(30), client.wait_with_output())
        .await
        .expect("node 2 ended bob's connection in time")
        .expect("ssh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("connection ended (unknown_user)"), "{err}");
    let gone = wait_until(Duration::from_secs(10), || os.processes().is_empty());
    assert!(gone, "the session's processes outlive the connection");
}

/// etcd restored from a backup goes back to the backup's revision (etcd 3.4's restore keeps
/// it), below the one every node has in force: a watch from the revision after theirs would
/// deliver nothing until the store passed it again, and a change made before that would
/// never arrive. The nodes see the store's revision go back, read the whole state again and
/// follow it from there.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_follows_a_store_restored_from_a_backup() {
    let mut f = start_fleet_with("fleetdev", Options::default());
    assert_eq!(f.pin_of(0, "bob", "127.0.0.3"), Some(Value::Null));
    f.wait_ready_at(f.etcd.revision(), "at start");
    let backup_dir = ippin_test_support::temp_dir();
    let backup = backup_dir.path().join("backup.db");
    let ran = f
        .etcd
        .ctl(&["snapshot", "save", backup.to_str().expect("UTF-8 path")]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // Writes after the backup (the same role again) move every node's revision on.
    let mut later = 0;
    for _ in 0..100 {
        later = f.put("roles/dev", &dev_role("fleetdev", false));
    }
    f.wait_ready_at(later, "after the writes that follow the backup");
    f.etcd.etcd.restore(&backup);
    // A change on the restored store, at a revision the nodes have already passed.
    let changed = f.put("roles/dev", &dev_role("fleetdev", true));
    assert!(
        changed < later,
        "the restored store is at revision {changed}, not below {later}: the test proves nothing"
    );
    f.wait_bob_pin(
        "127.0.0.3",
        &Value::from("127.0.0.3/32"),
        "after the restore",
    );
}

/// A lockout another etcd client wrote with no lease and an `until` in year 9999 locks its
/// user at most `lockout` (4 s) from when a node saw it, and not again when another user's
/// lockout changes the node's locks.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_lockout_without_lease_is_not_extended() {
    let f = start_fleet_with("fleetdev", Options::default());
    let locked = f.put(
        "lockouts/alice",
        r#"{"until": "9999-12-31T23:59:59Z", "failures": 5}"#,
    );
    f.wait_ready_at(locked, "after the lockout");
    for node in 0..3 {
        let (_, ran) = f.login(node, "alice", "secret", "127.0.0.1");
        assert!(ran.stderr.contains("locked until"), "node {node}: {ran:?}");
    }
    for node in 0..3 {
        let ok = wait_until(Duration::from_secs(10), || {
            f.pin_of(node, "alice", "127.0.0.1").is_some()
        });
        assert!(ok, "node {node}: alice is locked longer than `lockout`");
    }
    // mallory (no such user) locked through node 0: a change of every node's lockouts.
    for _ in 0..5 {
        let (_, ran) = f.login(0, "mallory", "wrong", "127.0.0.4");
        assert_ne!(ran.code, Some(0));
    }
    let key = format!("{PREFIX}lockouts/mallory");
    let ok = wait_until(Duration::from_secs(5), || {
        !f.etcd
            .ctl(&["get", &key, "--keys-only"])
            .stdout
            .trim()
            .is_empty()
    });
    assert!(ok, "mallory is not locked");
    f.wait_ready_at(f.etcd.revision(), "after mallory's lockout");
    for node in 0..3 {
        let (_, ran) = f.login(node, "alice", "secret", "127.0.0.1");
        assert_eq!(ran.code, Some(0), "node {node} locks alice again: {ran:?}");
    }
    // The stale key (no lease, its `until` beyond what the nodes hold) does not stop a new
    // lock: five failures through node 0 lock alice on every node.
    for _ in 0..5 {
        let (_, ran) = f.login(0, "alice", "wrong", "127.0.0.5");
        assert_ne!(ran.code, Some(0));
    }
    f.wait_ready_at(f.etcd.revision(), "after alice's new lockout");
    for node in 1..3 {
        let (_, ran) = f.login(node, "alice", "secret", "127.0.0.1");
        assert!(
            ran.stderr.contains("locked until"),
            "node {node} does not hold alice's new lock: {ran:?}"
        );
    }
}

/// The revision `node` has put in force, from its `/readyz` (through HAProxy).
async fn applied_revision(f: &Fleet, node: usize, ca: &str) -> i64 {
    let ep = ippin::client::Endpoint::new(f.nodes[node].login, ca);
    match ippin::client::request(&ep, None, hyper::Method::GET, "/readyz", None).await {
        Ok((_, body)) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["revision"].as_i64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Measurements for docs/benchmarks.md (`scripts/bench-fleet`): the time from `ippin ctl
/// create` (process start) until every node has the change in force (its `/readyz`
/// revision, set after the policy reached the dial policy and the sessions' kernel maps),
/// over 50 changes; and logins per second on one node with the backend and with the files.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: scripts/bench-fleet runs it"]
async fn measure_ctl_to_enforcement_and_logins() {
    let os = OsUser::create("fbench");
    let f = start_fleet(&os.name);
    let ca = std::fs::read_to_string(f.path("ca/tls_ca.pem")).expect("CA");
    let (carol, ran) = f.login(0, "carol", "secret", "127.0.0.1");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let policy = f.path("netpolicy.yaml");
    let mut times = Vec::new();
    for i in 0..50u32 {
        std::fs::write(
            &policy,
            restrictions(&[&format!("127.0.{}.{}/32", 10 + i / 200, i % 200 + 1)]),
        )
        .unwrap();
        // The nodes' revisions are sampled from before `ctl` starts; the change's own
        // revision is read once it returned; each node's first sample at or past it ends
        // the wait (heartbeats move the revisions every second, so no "+1" can be guessed).
        let cmd = f.ctl_command(
            i as usize % 3,
            &carol,
            &["create", "--force", "-f", policy.to_str().unwrap()],
        );
        let t0 = Instant::now();
        let ctl = std::thread::spawn(move || run(cmd, b"", COMMAND_TIMEOUT));
        let mut ctl = Some(ctl);
        let mut samples: Vec<(Instant, usize, i64)> = Vec::new();
        let mut target = None;
        let done = loop {
            for node in 0..3 {
                let rev = applied_revision(&f, node, &ca).await;
                samples.push((Instant::now(), node, rev));
            }
            if ctl
                .as_ref()
                .is_some_and(std::thread::JoinHandle::is_finished)
            {
                let ran = ctl.take().expect("ctl").join().expect("ctl thread");
                assert_eq!(ran.code, Some(0), "{ran:?}");
                let got = f.etcd.ctl(&[
                    "get",
                    &format!("{PREFIX}network_restrictions"),
                    "-w",
                    "json",
                ]);
                let v: Value = serde_json::from_str(&got.stdout).expect("etcdctl JSON");
                target = v["kvs"][0]["mod_revision"].as_i64();
            }
            if let Some(t) = target {
                let firsts: Vec<Option<Instant>> = (0..3)
                    .map(|n| {
                        samples
                            .iter()
                            .find(|(_, m, r)| *m == n && *r >= t)
                            .map(|(at, _, _)| *at)
                    })
                    .collect();
                if firsts.iter().all(Option::is_some) {
                    break firsts.into_iter().flatten().max().expect("three nodes");
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "change {i} not applied everywhere"
            );
        };
        times.push(done - t0);
    }
    times.sort();
    eprintln!(
        "ctl create -> in force on 3 nodes, 50 changes: median {:?}, max {:?}, min {:?}",
        times[times.len() / 2],
        times[times.len() - 1],
        times[0]
    );

    // Logins per second on node 0 (backend) and on a node with the same files and no
    // backend, 4 clients at a time, 200 logins each way.
    let files_cfg = f.path("files.yaml");
    let text = std::fs::read_to_string(&f.nodes[0].config).unwrap();
    let lo = ip("127.0.0.1");
    let own = SocketAddr::new(lo, free_port(lo));
    let (head, _) = text.split_once("listeners:\n").unwrap();
    let mut in_backend = false;
    let head: String = head
        .lines()
        .filter(|l| {
            in_backend = l.starts_with("backend:") || (in_backend && l.starts_with("  "));
            !in_backend
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("audit_log: audit0.log", "audit_log: audit-files.log");
    std::fs::write(
        &files_cfg,
        format!(
            "{head}listeners:\n  - {{kind: login, listen: {own}, proxy_protocol: on, \
             trusted_proxies: [127.0.0.1/32]}}\n"
        ),
    )
    .unwrap();
    let mut files_node = crate::attacks::serve(&files_cfg, &[own]);
    // Both straight to the node's login listener, with the header a load balancer sends.
    let header = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 443\r\n".to_vec();
    let direct = ippin::client::Endpoint::new(own, ca.clone()).with_proxy_header(header.clone());
    let fleet_ep =
        ippin::client::Endpoint::new(f.nodes[0].own[0], ca.clone()).with_proxy_header(header);
    for (name, ep) in [("files", direct), ("etcd backend", fleet_ep)] {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let ep = ep.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    ippin::client::login(&ep, "bob", "secret")
                        .await
                        .expect("login");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "logins/s on one node, {name}: {:.1} (200 logins in {secs:.2} s)",
            200.0 / secs
        );
    }
    assert!(files_node.is_running());
}
