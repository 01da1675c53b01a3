//! The whole story with the server's own pieces: `ca init`, users, the login listener issues
//! the certificates (pinned to the address it observed), and the SSH service built from the
//! same server state enforces them against the real OpenSSH client.

use std::sync::Arc;
use std::time::SystemTime;

use ippin::client::{Credentials, Endpoint, login};
use ippin::config::{Config, ListenerKind};
use ippin::server::{State, start_with};
use ippin::ssh::wiring::service_for;

use crate::ssh::harness::{Events, Identity, Server, ip, ssh, write_private};

const CONFIG: &str = "\
cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {cert: server.pem, key: server.key}
roles: [roles.yaml]
users: []
cert_ttl: 1h
audit_log: audit.log
listeners:
  - kind: login
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
  - kind: ssh
    listen: 127.0.0.1:0
    proxy_protocol: off
    header_timeout: 5s
";

fn save(dir: &std::path::Path, name: &str, creds: &Credentials) -> Identity {
    let key = dir.join(name);
    write_private(&key, &creds.ssh_private_key);
    let cert = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&cert, &creds.ssh_certificate).expect("write certificate");
    Identity { key, cert }
}

#[tokio::test(flavor = "multi_thread")]
async fn ippin_login_then_ssh() {
    ippin::install_crypto_provider();
    let tmp = ippin_test_support::temp_dir();
    let config_path = ippin::ca::init_at(tmp.path(), SystemTime::now(), CONFIG).expect("ca init");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config_path, "alice", &["pinned-ip".to_owned()], &hash).expect("alice");
    ippin::users::add_user(&config_path, "bob", &["dev".to_owned()], &hash).expect("bob");
    let state = Arc::new(State::load(Config::load(&config_path).expect("config")).expect("state"));
    let running = start_with(state.clone()).await.expect("start the server");
    let login_addr = running.first(ListenerKind::Login).expect("login listener");
    let endpoint = Endpoint::new(login_addr, state.ca.x509_cert_pem());

    let events = Events::default();
    let service = service_for(&state, None, Arc::new(ippin::ssh::AllowAll), events.sink())
        .expect("ssh service");
    let mut server = Server::from_service(service, events);
    let addr = server.listen_direct(ip("127.0.0.1")).await;

    // alice logs in from 127.0.0.1: pinned there.
    let creds = login(
        &endpoint.clone().from_ip(ip("127.0.0.1")),
        "alice",
        "secret",
    )
    .await
    .expect("login from 127.0.0.1");
    assert_eq!(creds.pinned_ip.as_deref(), Some("127.0.0.1"));
    let alice_1 = save(tmp.path(), "alice1", &creds);
    let run = ssh(&alice_1, "alice", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("pinned: 127.0.0.1/32"),
        "{}",
        run.stdout
    );
    let run = ssh(&alice_1, "alice", "127.0.0.2", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stderr.contains("log in again"), "{}", run.stderr);

    // A new login from 127.0.0.2: allowed from there.
    let creds = login(
        &endpoint.clone().from_ip(ip("127.0.0.2")),
        "alice",
        "secret",
    )
    .await
    .expect("login from 127.0.0.2");
    assert_eq!(creds.pinned_ip.as_deref(), Some("127.0.0.2"));
    let alice_2 = save(tmp.path(), "alice2", &creds);
    let run = ssh(&alice_2, "alice", "127.0.0.2", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");

    // bob is not pinned: allowed from both.
    let creds = login(&endpoint, "bob", "secret").await.expect("bob login");
    assert_eq!(creds.pinned_ip, None);
    let bob = save(tmp.path(), "bob", &creds);
    for from in ["127.0.0.1", "127.0.0.2"] {
        let run = ssh(&bob, "bob", from, addr, &["whoami"]).await;
        assert!(run.ok(), "bob from {from}: {run:?}");
    }
    assert_eq!(
        server.events.denial_reasons(),
        vec!["pinned_ip_mismatch".to_owned()]
    );

    // The same through the server's own `kind: ssh` listener, audited to its audit log.
    let listener = running.first(ListenerKind::Ssh).expect("ssh listener");
    let run = ssh(&alice_2, "alice", "127.0.0.2", listener, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    let run = ssh(&alice_1, "alice", "127.0.0.2", listener, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    running.shutdown();
    let log = std::fs::read_to_string(tmp.path().join("audit.log")).expect("audit log");
    let ssh_events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "ssh")
        .collect();
    assert!(
        ssh_events
            .iter()
            .any(|v| v["ssh"]["event"] == "ssh.auth.allowed"
                && v["ssh"]["user"] == "alice"
                && v["ssh"]["observed"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("127.0.0.2:"))),
        "{log}"
    );
    assert!(
        ssh_events
            .iter()
            .any(|v| v["ssh"]["event"] == "ssh.auth.denied"
                && v["ssh"]["reason"] == "pinned_ip_mismatch"),
        "{log}"
    );
}
