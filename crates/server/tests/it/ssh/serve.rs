//! The real `ippin serve` binary as a child process: network restrictions reloaded on
//! `SIGHUP` (sent to that child only) without dropping an open `ssh -N -L` session, a broken
//! update refused with the old policy kept; and the SSH audit fail-closed with
//! `audit_log: /dev/full`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ippin::client::{Credentials, Endpoint, login};
use ippin::config::{Config, ListenerKind};
use ippin::server::{State, start_with};
use ippin::ssh::client::SshClient;
use ippin_test_support::{free_port, wait_for_tcp};

use crate::ssh::forward::{echo_listener, forward_once};
use crate::ssh::harness::{
    CLIENT_TIMEOUT, Identity, ip, ssh_command, through, wait_for, write_private,
};

fn policy(deny: &[&str]) -> String {
    let mut s = String::from(
        "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.0/8\n",
    );
    if !deny.is_empty() {
        s.push_str("  deny:\n");
        for d in deny {
            s.push_str(&format!("  - cidr: {d}\n"));
        }
    }
    s
}

const BROKEN: &str =
    "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.1/8\n";

/// `ippin serve` running as a child; killed on drop. Its stderr goes to a file so the test
/// can read the log while it runs.
pub(crate) struct Serve {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Serve {
    pub(crate) fn start(config: &Path, log: &Path) -> Serve {
        let err = std::fs::File::create(log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ippin"))
            .args(["serve", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn ippin serve");
        Serve {
            child,
            log: log.to_owned(),
        }
    }

    /// `kill -HUP` to this child only.
    pub(crate) fn hangup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn save(dir: &Path, name: &str, creds: &Credentials) -> Identity {
    let key = dir.join(name);
    write_private(&key, &creds.ssh_private_key);
    let cert = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&cert, &creds.ssh_certificate).expect("write certificate");
    Identity { key, cert }
}

fn network_events(audit_log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(audit_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ssh"]["event"] == "session.network")
        .map(|v| v["ssh"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_network_restrictions_without_dropping_sessions() {
    ippin::install_crypto_provider();
    let tmp = ippin_test_support::temp_dir();
    let login_port = free_port(ip("127.0.0.1"));
    let ssh_port = free_port(ip("127.0.0.1"));
    let nr = tmp.path().join("nr.yaml");
    std::fs::write(&nr, policy(&["127.0.0.3/32"])).expect("policy");
    // Polling off: only SIGHUP can put a new policy in force.
    let config = format!(
        "cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {{cert: server.pem, key: server.key}}
roles: [roles.yaml]
users: []
cert_ttl: 1h
audit_log: audit.log
ssh_host_key: ssh_host_ed25519_key
network_restrictions: nr.yaml
network_restrictions_poll: off
audit_network_observed: true
listeners:
  - {{kind: login, listen: 127.0.0.1:{login_port}, proxy_protocol: off}}
  - {{kind: ssh, listen: 127.0.0.1:{ssh_port}, proxy_protocol: off}}
"
    );
    let config_path = ippin::ca::init_at(tmp.path(), SystemTime::now(), &config).expect("ca init");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config_path, "bob", &["dev".to_owned()], &hash).expect("bob");
    let serve = Serve::start(&config_path, &tmp.path().join("serve.log"));
    let login_addr = SocketAddr::new(ip("127.0.0.1"), login_port);
    let ssh_addr = SocketAddr::new(ip("127.0.0.1"), ssh_port);
    tokio::task::spawn_blocking(move || {
        wait_for_tcp(login_addr);
        wait_for_tcp(ssh_addr);
    })
    .await
    .expect("ippin serve listening");
    let ca_pem = std::fs::read_to_string(tmp.path().join("ca/tls_ca.pem")).expect("CA");
    let creds = login(&Endpoint::new(login_addr, &ca_pem), "bob", "secret")
        .await
        .expect("bob logs in");
    let bob = save(tmp.path(), "bob", &creds);

    let (e1, _t1) = echo_listener("127.0.0.1").await;
    let (e3, _t3) = echo_listener("127.0.0.3").await;
    let (e4, _t4) = echo_listener("127.0.0.4").await;
    let (l1, l4) = (free_port(ip("127.0.0.1")), free_port(ip("127.0.0.1")));
    let mut cmd = ssh_command(&bob, "bob", "127.0.0.1", ssh_addr);
    cmd.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
    for (l, e) in [(l1, e1), (l4, e4)] {
        cmd.arg("-L").arg(format!("127.0.0.1:{l}:{e}"));
    }
    let mut session = cmd.spawn().expect("spawn ssh -N -L");
    let l1_addr = SocketAddr::new(ip("127.0.0.1"), l1);
    tokio::task::spawn_blocking(move || wait_for_tcp(l1_addr))
        .await
        .expect("wait for the forward");

    // Policy 1: 127.0.0.3 denied, the rest of loopback allowed.
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    assert_eq!(through(l4).await.as_deref(), Some("ping\n"));
    assert!(
        forward_once(&bob, "bob", ssh_addr, &e4.to_string())
            .await
            .is_ok()
    );
    let err = forward_once(&bob, "bob", ssh_addr, &e3.to_string())
        .await
        .expect_err("127.0.0.3 denied");
    assert!(err.contains("127.0.0.3 matches the deny rule"), "{err}");

    // Policy 2, put in force by SIGHUP: 127.0.0.4 denied too. Same session.
    std::fs::write(&nr, policy(&["127.0.0.3/32", "127.0.0.4/32"])).expect("policy 2");
    serve.hangup();
    wait_for("the reload on SIGHUP", || {
        serve.log().contains("network restrictions reloaded")
    })
    .await;
    assert_eq!(through(l4).await, None);
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    let err = forward_once(&bob, "bob", ssh_addr, &e4.to_string())
        .await
        .expect_err("127.0.0.4 denied after the reload");
    assert!(err.contains("127.0.0.4 matches the deny rule"), "{err}");

    // A broken update: refused (logged, with file and line), policy 2 stays.
    std::fs::write(&nr, BROKEN).expect("broken policy");
    serve.hangup();
    wait_for("the refusal of the broken policy", || {
        serve.log().contains("the previous policy stays in force")
    })
    .await;
    let log = serve.log();
    assert!(log.contains("nr.yaml:5"), "{log}");
    assert_eq!(through(l4).await, None);
    assert_eq!(through(l1).await.as_deref(), Some("ping\n"));
    assert!(
        forward_once(&bob, "bob", ssh_addr, &e3.to_string())
            .await
            .is_err()
    );

    // The session was never dropped.
    assert!(
        session.try_wait().expect("ssh status").is_none(),
        "the ssh -N -L session ended"
    );
    drop(session);
    drop(serve);

    // Each denial once, in order, in the `session.network` shape; allowed ones observed.
    let events = network_events(&tmp.path().join("audit.log"));
    let denied: Vec<&str> = events
        .iter()
        .filter(|v| v["action"] == 1)
        .map(|v| v["dst_addr"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        denied,
        [
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.4",
            "127.0.0.4",
            "127.0.0.3"
        ],
        "{events:?}"
    );
    for v in &events {
        assert_eq!(v["code"], "T4002I", "{v}");
        assert_eq!(v["user"], "bob", "{v}");
        assert_eq!(v["login"], "bob", "{v}");
        // Named like the kernel's events: this node and its cluster.
        assert_eq!(v["cluster_name"], "local", "{v}");
        assert!(
            v["server_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{v}"
        );
        assert_eq!(v["operation"], 0, "{v}");
        assert_eq!(v["version"], 4, "{v}");
        assert!(v["sid"].as_str().is_some_and(|s| s.len() == 36), "{v}");
        assert!(
            v["src_addr"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.1")),
            "{v}"
        );
        assert!(v["dst_port"].as_u64().is_some_and(|p| p > 0), "{v}");
    }
    assert!(
        events
            .iter()
            .any(|v| v["action"] == 0 && v["dst_addr"] == "127.0.0.1"),
        "allowed connections are observed: {events:?}"
    );
    if let Some(example) = events.iter().find(|v| v["action"] == 1) {
        eprintln!("example session.network line: {example}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_audit_log_refuses_ssh_authentication() {
    ippin::install_crypto_provider();
    let tmp = ippin_test_support::temp_dir();
    let config = "cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {cert: server.pem, key: server.key}
roles: [roles.yaml]
users: []
cert_ttl: 1h
audit_log: /dev/full
ssh_host_key: ssh_host_ed25519_key
ssh_auth_rejection_time: 10ms
listeners:
  - {kind: ssh, listen: 127.0.0.1:0, proxy_protocol: off}
";
    let config_path = ippin::ca::init_at(tmp.path(), SystemTime::now(), config).expect("ca init");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config_path, "bob", &["dev".to_owned()], &hash).expect("bob");
    let state = Arc::new(State::load(Config::load(&config_path).expect("config")).expect("state"));
    let running = start_with(state.clone()).await.expect("start");
    let addr = running.first(ListenerKind::Ssh).expect("ssh listener");

    // A valid certificate for bob, straight from the CA (login itself is fail-closed too).
    let mut rng = ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng);
    let key =
        ippin_cert::ssh_key::PrivateKey::random(&mut rng, ippin_cert::ssh_key::Algorithm::Ed25519)
            .expect("key");
    let (_, spki) = ippin_cert::x509::generate_key_pair_p256(&mut rng).expect("tls key");
    let ssh_public_key = key.public_key().to_openssh().expect("public key");
    let issued = state
        .ca
        .issue(&ippin::ca::IssueRequest {
            user: "bob",
            roles: &["dev".to_owned()],
            logins: &[],
            ssh_public_key: &ssh_public_key,
            tls_public_key: &spki,
            pinned: None,
            pinned_endpoint: None,
            login_ip: None,
            now: SystemTime::now(),
            ttl: Duration::from_secs(600),
            session: None,
        })
        .expect("issue");
    let cert = ippin_cert::ssh_key::Certificate::from_openssh(issued.ssh_certificate.trim())
        .expect("cert");
    let host_key = ippin::ssh::wiring::read_host_key(&tmp.path().join("ssh_host_ed25519_key"))
        .expect("host key")
        .public_key()
        .clone();
    let mut client = SshClient::connect(addr, ip("127.0.0.1"), host_key)
        .await
        .expect("connect");
    let refused = tokio::time::timeout(CLIENT_TIMEOUT, client.authenticate("bob", key, cert))
        .await
        .expect("in time")
        .expect("no transport error")
        .expect_err("refused: the audit line cannot be written");
    assert!(refused.contains("audit log cannot be written"), "{refused}");
    running.shutdown();
}
