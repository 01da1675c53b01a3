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
use crate::ssh::harness::{Identity, ip};
use crate::ssh::sessions::{OsUser, PROBE, Remote, http_listener, restrictions};
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

    /// Every key and value under the prefix.
    fn dump(&self) -> String {
        let ran = self.ctl(&["get", "--prefix", PREFIX]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        ran.stdout
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
        let mut cmd = Command::new(IPPIN);
        cmd.args(["ctl", "--server"])
            .arg(self.nodes[node].tls.to_string())
            .arg("--identity")
            .arg(id)
            .arg("--ca")
            .arg(self.path("ca/tls_ca.pem"))
            .args(args);
        run(cmd, b"", COMMAND_TIMEOUT)
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
    ippin::install_crypto_provider();
    let etcd = Store::start();
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
    let backend = format!(
        "backend:\n  kind: etcd\n  endpoints: ['https://{}']\n  prefix: {PREFIX}\n  tls: {{ca: {}, \
         cert: {}, key: {}}}\nlogin_limits: {{max_failures: 5, lockout: 4s, failure_window: 1m}}\n",
        etcd.etcd.client,
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
    std::fs::write(
        dir.path().join("roles.yaml"),
        format!("{pinned}---\n{roles}"),
    )
    .expect("roles");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config, "carol", &["fleet-admin".to_owned()], &hash).expect("carol");
    let text = std::fs::read_to_string(&config).expect("config");
    let (head, _) = text.split_once("listeners:\n").expect("listeners");
    let mut nodes = Vec::new();
    let mut routes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = dir.path().join(format!("node{i}.yaml"));
        let node_text = format!("{}listeners:\n{}", head, listeners(p))
            .replace("audit_log: audit.log", &format!("audit_log: audit{i}.log"));
        std::fs::write(&path, node_text).expect("node config");
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
    let before = f.etcd.revision();
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
    assert_eq!(f.etcd.revision(), before, "nothing was written");
    assert_eq!(f.etcd.dump(), dump);
    // ctl checks the file first: file, line and field, nothing sent.
    std::fs::write(&bad, "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  options:\n    pin_source_ip: yes\n").unwrap();
    let ran = f.ctl(0, &carol, &["create", "-f", bad.to_str().unwrap()]);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains("bad.yaml:7") && ran.stderr.contains("spec.options.pin_source_ip"),
        "{ran:?}"
    );
    assert_eq!(f.etcd.revision(), before, "nothing was written");

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
    let revision = f.etcd.revision();
    assert!(
        m.body
            .contains(&format!("ippin_backend_revision {revision}\n")),
        "{}",
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
        let target = f.etcd.revision() + 1;
        let t0 = Instant::now();
        let ran = f.ctl(
            i as usize % 3,
            &carol,
            &["create", "--force", "-f", policy.to_str().unwrap()],
        );
        assert_eq!(ran.code, Some(0), "{ran:?}");
        loop {
            let mut all = true;
            for node in 0..3 {
                all &= applied_revision(&f, node, &ca).await >= target;
            }
            if all {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "change {i} not applied everywhere"
            );
        }
        times.push(t0.elapsed());
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
