//! The refusal reaches the user of the plain documented command (README "Using it"):
//! `ssh -i KEY -p PORT alice@HOST whoami` with `KEY-cert.pub` beside `KEY`, as `ippin login`
//! writes them. OpenSSH 9.2 then offers the plain key first, then the certificate, and gives
//! up after the certificate's failure reply without reading the disconnect that follows; so
//! the reason travels as an `SSH_MSG_USERAUTH_BANNER` queued before that failure reply.
//!
//! The real `ippin serve` and `ippin login` binaries, the real OpenSSH client, loopback only.
//! No `-o CertificateFile=` and no `-o IdentitiesOnly`: only what keeps the run hermetic.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ippin_test_support::peer;
use serde_json::Value;

use crate::support::{ALICE, COMMAND_TIMEOUT, Cluster, Ran, run};

const LOGIN: usize = 0;
const SSH: usize = 1;

fn cluster() -> Cluster {
    Cluster::start(&[
        "kind: login, proxy_protocol: off",
        "kind: ssh, proxy_protocol: off",
    ])
}

/// `ssh -i KEY -p PORT alice@HOST whoami` from `bind`, as documented, plus only the options
/// that keep the run hermetic (no user or system configuration, no known-hosts file, no
/// prompt, no agent).
fn plain_ssh(key: &Path, bind: &str, server: SocketAddr) -> Ran {
    let mut cmd = Command::new(peer("ssh"));
    cmd.args(["-F", "/dev/null"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "BatchMode=yes"])
        .args(["-b", bind])
        .arg("-i")
        .arg(key)
        .args(["-p", &server.port().to_string()])
        .arg(format!("alice@{}", server.ip()))
        .arg("whoami")
        .env_remove("SSH_AUTH_SOCK");
    run(cmd, b"", COMMAND_TIMEOUT)
}

/// The `ssh.auth.denied` reasons in the audit log, in order.
fn denial_reasons(cluster: &Cluster) -> Vec<String> {
    cluster
        .audit()
        .iter()
        .filter(|v| v["ssh"]["event"] == "ssh.auth.denied")
        .filter_map(|v| v["ssh"]["reason"].as_str().map(str::to_owned))
        .collect()
}

fn wait_denials(cluster: &Cluster, n: usize) -> Vec<String> {
    let ok = ippin_test_support::wait_until(std::time::Duration::from_secs(10), || {
        denial_reasons(cluster).len() >= n
    });
    assert!(ok, "fewer than {n} denials: {:#?}", cluster.audit());
    denial_reasons(cluster)
}

/// Nothing the terminal would act on: no ESC, no other control character but the line ends.
fn assert_no_control(stderr: &str) {
    assert!(
        !stderr
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r'),
        "control characters on stderr: {stderr:?}"
    );
}

#[test]
fn pinned_certificate_from_another_address_tells_why_with_the_plain_command() {
    let cluster = cluster();
    let url = format!("https://{}", cluster.addr(LOGIN));
    let login = cluster.login(&url, ALICE, Some("127.0.0.1")).ok();
    let key = login.dir.path().join("ippin_ed25519");
    assert!(login.ssh_cert().exists(), "login writes KEY-cert.pub");
    let ssh_addr = cluster.addr(SSH);

    // From the login address: allowed, and nothing from ippin on stderr (no banner for a
    // successful authentication, nor for the plain key refused on the way).
    let ran = plain_ssh(&key, "127.0.0.1", ssh_addr);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("user: alice\n"), "{ran:?}");
    assert!(!ran.stderr.contains("ippin"), "{ran:?}");

    // On the way in, the plain key (offered first) was refused, silently.
    let before = wait_denials(&cluster, 1);
    assert_eq!(before, vec!["not_a_certificate".to_owned()]);

    // From 127.0.0.2: refused, and the user reads why and what to do.
    let ran = plain_ssh(&key, "127.0.0.2", ssh_addr);
    println!("{}", ran.stderr);
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");
    assert!(
        ran.stderr.contains("pinned_ip_mismatch")
            && ran.stderr.contains("127.0.0.2")
            && ran.stderr.contains("log in again"),
        "no readable reason on stderr: {}",
        ran.stderr
    );
    // The plain key's refusal (offered first) says nothing: the message is the
    // certificate's, not a generic one.
    assert!(!ran.stderr.contains("not_a_certificate"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("plain public key"), "{}", ran.stderr);
    assert_no_control(&ran.stderr);

    // The audit is unchanged: one line per refused attempt, the plain key first, then the
    // certificate — which shows the client did offer both, in that order.
    let reasons = wait_denials(&cluster, 3);
    assert_eq!(
        reasons[1..],
        [
            "not_a_certificate".to_owned(),
            "pinned_ip_mismatch".to_owned()
        ],
        "{:#?}",
        cluster.audit()
    );
    let denied: Vec<Value> = cluster
        .audit()
        .into_iter()
        .filter(|v| v["ssh"]["reason"] == "pinned_ip_mismatch")
        .collect();
    assert!(
        denied.first().is_some_and(|v| v["ssh"]["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("127.0.0.2:"))),
        "{denied:?}"
    );
}

#[test]
fn expired_certificate_tells_why_with_the_plain_command() {
    let cluster = cluster();
    let url = format!("https://{}", cluster.addr(LOGIN));
    let login = cluster.login(&url, ALICE, Some("127.0.0.1")).ok();
    let key = login.dir.path().join("ippin_ed25519");
    // The login's key, certified again by the cluster's own SSH user CA, pinned to the login
    // address but expired: written where `ippin login` put its certificate.
    let ca_key = cluster.path("ca/ssh_user_ca");
    let signed = Command::new(peer("ssh-keygen"))
        .arg("-q")
        .arg("-s")
        .arg(&ca_key)
        .args(["-I", "alice@expired", "-n", "alice"])
        .args(["-V", "20200101:20200102"])
        .args(["-O", "source-address=127.0.0.1/32"])
        .arg(login.dir.path().join("ippin_ed25519.pub"))
        .output()
        .expect("run ssh-keygen");
    assert!(
        signed.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&signed.stderr)
    );

    let ran = plain_ssh(&key, "127.0.0.1", cluster.addr(SSH));
    println!("{}", ran.stderr);
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(
        ran.stderr.contains("expired")
            && ran.stderr.contains("has expired")
            && ran.stderr.contains("log in again"),
        "no readable reason on stderr: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("plain public key"), "{}", ran.stderr);
    assert_no_control(&ran.stderr);
    let reasons = wait_denials(&cluster, 2);
    assert_eq!(
        reasons,
        vec!["not_a_certificate".to_owned(), "expired".to_owned()],
        "{:#?}",
        cluster.audit()
    );
}

/// What one authentication gave, seen by a russh client: whether it got in, and every banner
/// received on the way.
async fn attempt(
    addr: SocketAddr,
    host_key: ippin_cert::ssh_key::PublicKey,
    user: &str,
    key: ippin_cert::ssh_key::PrivateKey,
    cert: Option<ippin_cert::ssh_key::Certificate>,
) -> (bool, Vec<String>) {
    use std::sync::{Arc, Mutex};

    use russh::client::{self, AuthResult};
    use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

    struct Banners {
        host_key: ippin_cert::ssh_key::PublicKey,
        seen: Arc<Mutex<Vec<String>>>,
    }
    impl client::Handler for Banners {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. }
                if key.key_data() == self.host_key.key_data()))
        }
        async fn auth_banner(
            &mut self,
            banner: &str,
            _session: &mut client::Session,
        ) -> Result<(), Self::Error> {
            self.seen.lock().expect("lock").push(banner.to_owned());
            Ok(())
        }
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Banners {
        host_key,
        seen: seen.clone(),
    };
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut session =
            client::connect_stream(Arc::new(client::Config::default()), stream, handler)
                .await
                .expect("key exchange");
        let key = Arc::new(key);
        let result = match cert {
            Some(cert) => session.authenticate_openssh_cert(user, key, cert).await,
            None => {
                session
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None))
                    .await
            }
        };
        matches!(result, Ok(AuthResult::Success))
    };
    let ok = tokio::time::timeout(crate::ssh::harness::CLIENT_TIMEOUT, work)
        .await
        .expect("authentication did not finish in time");
    let banners = seen.lock().expect("lock").clone();
    (ok, banners)
}

/// On the wire: the banner comes only with a refusal the user can act on, never with a
/// success, a plain key or someone else's principal (nothing beyond what the disconnect
/// message told before); and a user name full of terminal escape sequences (here in a
/// certificate from the trusted CA, which the issuing API would refuse to make) arrives
/// written out, not as escapes.
#[tokio::test(flavor = "multi_thread")]
async fn banner_only_for_refusals_the_user_can_act_on_and_never_with_escapes() {
    use ippin_cert::ssh_key::certificate::Builder;
    use ippin_cert::ssh_key::{Certificate, PrivateKey};

    use crate::ssh::harness::{Ca, Server, ip, now};

    let ca = Ca::new();
    let mut server = Server::new(&ca, |s| {
        s.auth_rejection_time = std::time::Duration::from_millis(50);
    });
    let addr = server.listen_direct(ip("127.0.0.1")).await;
    let host_key = server.service.host_public_key().clone();
    let load = |id: &crate::ssh::harness::Identity| {
        let key = PrivateKey::read_openssh_file(&id.key).expect("key");
        let cert = Certificate::read_file(&id.cert).expect("certificate");
        (key, cert)
    };

    // A success: no banner.
    let (key, cert) = load(&ca.issue("bob", "bob", None));
    let (ok, banners) = attempt(
        addr,
        host_key.clone(),
        "bob",
        key.clone(),
        Some(cert.clone()),
    )
    .await;
    assert!(ok, "bob's certificate is accepted");
    assert!(banners.is_empty(), "banner on success: {banners:?}");

    // The plain key, and bob's certificate offered for alice: refused without a word.
    let (ok, banners) = attempt(addr, host_key.clone(), "bob", key.clone(), None).await;
    assert!(!ok);
    assert!(banners.is_empty(), "banner for a plain key: {banners:?}");
    let (ok, banners) = attempt(addr, host_key.clone(), "alice", key, Some(cert)).await;
    assert!(!ok);
    assert!(
        banners.is_empty(),
        "banner for another principal: {banners:?}"
    );

    // A pinned certificate from elsewhere: the reason, with its code.
    let (key, cert) = load(&ca.issue("alice", "alice", Some(ip("127.0.0.9"))));
    let (ok, banners) = attempt(addr, host_key.clone(), "alice", key.clone(), Some(cert)).await;
    assert!(!ok);
    assert_eq!(
        banners,
        vec![
            "ippin: refused (pinned_ip_mismatch): the certificate is pinned to 127.0.0.9/32, \
             this connection comes from 127.0.0.1: log in again (`ippin login`) from here\r\n"
                .to_owned()
        ]
    );

    // A user name with an OSC title change, a bell, a screen clear, a C1 CSI and a
    // right-to-left override: written out. The certificate is bob's (its key id), the name a
    // principal his roles do not allow as a login.
    let evil = "mal\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}lory";
    let ca_key = PrivateKey::from_openssh(ca.ca.to_openssh().expect("CA key")).expect("CA key");
    let t = now();
    let mut b = Builder::new(
        [9u8; 16],
        key.public_key().key_data().clone(),
        t - 60,
        t + 3600,
    )
    .expect("builder");
    b.key_id("bob@ippin/5").expect("key id");
    b.serial(5).expect("serial");
    b.valid_principal(evil).expect("principal");
    let cert = b.sign(&ca_key).expect("sign");
    let (ok, banners) = attempt(addr, host_key, evil, key, Some(cert)).await;
    assert!(!ok);
    assert_eq!(
        banners,
        vec![
            "ippin: refused (login_not_allowed): the login \
             `mal\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m\\u{202e}lory` is not allowed by the \
             roles of `bob`; if your roles changed, log in again (`ippin login`)\r\n"
                .to_owned()
        ]
    );
    assert_eq!(
        server.events.denial_reasons(),
        vec![
            "not_a_certificate".to_owned(),
            "wrong_principal".to_owned(),
            "pinned_ip_mismatch".to_owned(),
            "login_not_allowed".to_owned()
        ]
    );
}
