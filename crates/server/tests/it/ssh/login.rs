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

/// The principals `ssh-keygen -L` lists for the certificate at `cert`, and its key id.
fn principals_and_key_id(cert: &std::path::Path) -> (Vec<String>, String) {
    let out = std::process::Command::new(ippin_test_support::peer("ssh-keygen"))
        .arg("-L")
        .arg("-f")
        .arg(cert)
        .output()
        .expect("run ssh-keygen -L");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut principals = Vec::new();
    let mut key_id = String::new();
    let mut in_principals = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(id) = t.strip_prefix("Key ID: ") {
            key_id = id.trim_matches('"').to_owned();
        }
        if t.starts_with("Principals:") {
            in_principals = true;
            continue;
        }
        if in_principals {
            // The list is indented further than the section names.
            if t.ends_with(':') || t.contains(": ") || t.is_empty() {
                in_principals = false;
            } else {
                principals.push(t.to_owned());
            }
        }
    }
    (principals, key_id)
}

/// A role's `allow.logins` become principals of the certificate `ippin login` issues (the key
/// id still names the user); a renewal takes the roles as they are then; and a login that is a
/// principal but no longer allowed by the roles is refused `login_not_allowed`, while the
/// user's own name still reaches the built-ins.
#[tokio::test(flavor = "multi_thread")]
async fn role_logins_become_principals_and_a_login_no_longer_allowed_is_refused() {
    ippin::install_crypto_provider();
    let tmp = ippin_test_support::temp_dir();
    // With a `tls` listener too, for the renewal.
    let config = format!(
        "{CONFIG}  - kind: tls\n    listen: 127.0.0.1:0\n    proxy_protocol: off\n    header_timeout: 5s\n"
    );
    let config_path = ippin::ca::init_at(tmp.path(), SystemTime::now(), &config).expect("ca init");
    let roles_path = tmp.path().join("roles.yaml");
    let roles = std::fs::read_to_string(&roles_path).expect("roles");
    let ops = "---\nkind: role\nversion: v7\nmetadata: {name: ops}\nspec:\n  allow:\n    logins: [deploy, app1, deploy]\n";
    std::fs::write(&roles_path, format!("{roles}{ops}")).expect("write roles");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config_path, "carol", &["ops".to_owned()], &hash).expect("carol");
    let state = Arc::new(State::load(Config::load(&config_path).expect("config")).expect("state"));
    let running = start_with(state.clone()).await.expect("start the server");
    let login_addr = running.first(ListenerKind::Login).expect("login listener");
    let endpoint = Endpoint::new(login_addr, state.ca.x509_cert_pem());

    let creds = login(&endpoint, "carol", "secret").await.expect("login");
    let carol = save(tmp.path(), "carol", &creds);
    let (mut principals, key_id) = principals_and_key_id(&carol.cert);
    principals.sort();
    assert_eq!(principals, ["app1", "deploy", "ippin:carol"]);
    assert!(key_id.starts_with("carol@ippin/"), "{key_id}");
    running.shutdown();

    // The role loses `app1` (a deny in it wins over its allow).
    let changed = ops.replace(
        "logins: [deploy, app1, deploy]\n",
        "logins: [deploy, app1]\n  deny:\n    logins: [app1]\n",
    );
    std::fs::write(&roles_path, format!("{roles}{changed}")).expect("rewrite roles");
    let state = Arc::new(State::load(Config::load(&config_path).expect("config")).expect("state"));
    let running = start_with(state.clone()).await.expect("restart the server");
    let tls_addr = running.first(ListenerKind::Tls).expect("tls listener");
    let endpoint = Endpoint::new(tls_addr, state.ca.x509_cert_pem());

    // Renewal takes the roles now, not the presented certificate's principals.
    let renewed = ippin::client::renew(&endpoint, &creds)
        .await
        .expect("renew");
    let renewed_id = save(tmp.path(), "carol-renewed", &renewed);
    let (mut principals, _) = principals_and_key_id(&renewed_id.cert);
    principals.sort();
    assert_eq!(principals, ["deploy", "ippin:carol"]);

    let events = Events::default();
    let service = service_for(&state, None, Arc::new(ippin::ssh::AllowAll), events.sink())
        .expect("ssh service");
    let mut server = Server::from_service(service, events);
    let addr = server.listen_direct(ip("127.0.0.1")).await;

    // The old certificate still names app1; the roles no longer allow it.
    let run = ssh(&carol, "app1", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(
        run.stderr.contains(
            "refused (login_not_allowed): the login `app1` is not allowed by the roles of `carol`"
        ),
        "{}",
        run.stderr
    );
    // A name that is no principal at all is not a login either.
    let run = ssh(&carol, "root", "127.0.0.1", addr, &["whoami"]).await;
    assert_eq!(run.status, Some(255), "{run:?}");
    // Her own name: the built-ins, no OS login.
    let run = ssh(&carol, "carol", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("user: carol\nlogin: none\n"),
        "{}",
        run.stdout
    );
    // (after `wrong_principal` the client goes on to offer the plain key: `not_a_certificate`)
    let reasons = server.events.denial_reasons();
    assert_eq!(
        reasons[..2],
        ["login_not_allowed", "wrong_principal"],
        "{reasons:?}"
    );
    assert!(
        reasons[2..].iter().all(|r| r == "not_a_certificate"),
        "{reasons:?}"
    );
    running.shutdown();
}

/// An OpenSSH `sshd` that trusts ippin's SSH CA (without an `AuthorizedPrincipalsFile`) lets
/// a certificate in as every account one of its principals names. An ippin user named after
/// an account (here `root`) whose roles do not allow that login gets no certificate sshd
/// takes as it; a user whose role allows `root` does. ippin's own server still gives the
/// first one the built-ins under their own name.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_named_after_an_account_is_not_let_in_as_it_by_sshd() {
    ippin::install_crypto_provider();
    let tmp = ippin_test_support::temp_dir();
    let config_path = ippin::ca::init_at(tmp.path(), SystemTime::now(), CONFIG).expect("ca init");
    let roles_path = tmp.path().join("roles.yaml");
    let roles = std::fs::read_to_string(&roles_path).expect("roles");
    let admin = "---\nkind: role\nversion: v7\nmetadata: {name: admin}\nspec:\n  allow:\n    logins: [root]\n";
    std::fs::write(&roles_path, format!("{roles}{admin}")).expect("write roles");
    // A role that allows `root`, on listeners any local user can reach while the tests run
    // as root: the password is drawn for this run, never one written here.
    let mut bytes = [0u8; 16];
    ippin_cert::getrandom::fill(&mut bytes).expect("randomness");
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = ippin::users::hash_password_light(&password).expect("hash");
    ippin::users::add_user(&config_path, "root", &["dev".to_owned()], &hash).expect("root");
    ippin::users::add_user(&config_path, "ops1", &["admin".to_owned()], &hash).expect("ops1");
    let state = Arc::new(State::load(Config::load(&config_path).expect("config")).expect("state"));
    let running = start_with(state.clone()).await.expect("start the server");
    let login_addr = running.first(ListenerKind::Login).expect("login listener");
    let endpoint = Endpoint::new(login_addr, state.ca.x509_cert_pem());
    let named_root = save(
        tmp.path(),
        "named-root",
        &login(&endpoint, "root", &password)
            .await
            .expect("login root"),
    );
    let ops1 = save(
        tmp.path(),
        "ops1",
        &login(&endpoint, "ops1", &password)
            .await
            .expect("login ops1"),
    );
    let (principals, _) = principals_and_key_id(&named_root.cert);
    assert_eq!(principals, ["ippin:root"]);

    let ca_pub = tmp.path().join("ssh_user_ca.pub");
    std::fs::write(&ca_pub, state.ca.ssh_public_key()).expect("CA public key");
    let port = ippin_test_support::free_port(ip("127.0.0.1"));
    let config = crate::ssh::parity::sshd_config(tmp.path(), port, &["127.0.0.1"], &ca_pub);
    let mut cmd = std::process::Command::new(ippin_test_support::peer("sshd"));
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    let sshd = ippin_test_support::Child::spawn("sshd", cmd);
    let sshd_addr = std::net::SocketAddr::new(ip("127.0.0.1"), port);
    ippin_test_support::wait_for_tcp(sshd_addr);

    let allowed = ssh(&ops1, "root", "127.0.0.1", sshd_addr, &["echo", "in"]).await;
    let refused = ssh(&named_root, "root", "127.0.0.1", sshd_addr, &["echo", "in"]).await;
    let (_, sshd_log) = sshd.finish();
    assert!(
        allowed.ok() && allowed.stdout == "in\n",
        "{allowed:?}\n{sshd_log}"
    );
    assert!(!refused.ok(), "{refused:?}\n{sshd_log}");
    assert!(refused.stdout.is_empty(), "{refused:?}");

    // ippin's own server: the user `root` gets the built-ins under that name.
    let events = Events::default();
    let service = service_for(&state, None, Arc::new(ippin::ssh::AllowAll), events.sink())
        .expect("ssh service");
    let mut server = Server::from_service(service, events);
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let run = ssh(&named_root, "root", "127.0.0.1", addr, &["whoami"]).await;
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("user: root\nlogin: none\n"),
        "{}",
        run.stdout
    );
    running.shutdown();
}
