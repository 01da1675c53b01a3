//! nginx as an L7 reverse proxy in front of `login` listeners: with
//! `trust_x_forwarded_for` the certificates are pinned to the client's
//! address, without it to nginx's; a value forged by the client is not
//! believed.

use std::path::Path;
use std::process::Command;

use ippin_test_support::{Child, free_port, peer, temp_dir};
use serde_json::{Value, json};

use crate::support::{ALICE, COMMAND_TIMEOUT, Cluster, Daemon, LOCALHOST, curl, run, whoami};

/// Listener indexes.
const LOGIN_XFF: usize = 0;
const LOGIN_PLAIN: usize = 1;
const LOGIN_XFF_STRICT: usize = 2;
const TLS: usize = 3;

/// nginx with one TLS server block per (login listener, X-Forwarded-For
/// expression); its TLS identity is the one `ippin ca init` made.
fn nginx(cluster: &Cluster, routes: &[(usize, &str)]) -> (Daemon, Vec<u16>) {
    let dir = temp_dir();
    let prefix = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs folder");
    let cert = cluster.path("server.pem").display().to_string();
    let key = cluster.path("server.key").display().to_string();
    let mut conf = format!(
        "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log stderr;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
           fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n\
           scgi_temp_path {prefix}/scgi;\n"
    );
    let mut ports = Vec::new();
    for (listener, xff) in routes {
        let port = free_port(LOCALHOST);
        ports.push(port);
        let upstream = cluster.addr(*listener);
        conf.push_str(&format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 location / {{\n      proxy_http_version 1.1;\n\
                   proxy_set_header X-Forwarded-For {xff};\n\
                   proxy_pass https://{upstream};\n    }}\n  }}\n"
        ));
    }
    conf.push_str("}\n");
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(peer("nginx"));
    cmd.arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path);
    let mut daemon = Daemon {
        child: Child::spawn("nginx", cmd),
        _dir: dir,
    };
    for port in &ports {
        daemon.wait(std::net::SocketAddr::new(LOCALHOST, *port));
    }
    (daemon, ports)
}

fn cluster() -> Cluster {
    Cluster::start(&[
        "kind: login, proxy_protocol: off, trust_x_forwarded_for: true, trusted_proxies: [127.0.0.1/32]",
        "kind: login, proxy_protocol: off",
        "kind: login, proxy_protocol: off, trust_x_forwarded_for: true, danger_trust_every_peer: true",
        "kind: tls, proxy_protocol: off",
    ])
}

/// A fresh SSH public key (OpenSSH text) and TLS public key (SPKI PEM),
/// made by ssh-keygen and openssl.
fn public_keys(parent: &Path) -> (String, String) {
    let dir = tempfile::Builder::new()
        .prefix("keys-")
        .tempdir_in(parent)
        .expect("key folder");
    let dir = dir.path();
    let ssh = dir.join("id_ed25519");
    let mut cmd = Command::new(peer("ssh-keygen"));
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&ssh);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_eq!(ran.code, Some(0), "ssh-keygen: {ran:?}");
    let tls = dir.join("tls.key");
    let mut cmd = Command::new(peer("openssl"));
    cmd.args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
    ])
    .arg(&tls);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_eq!(ran.code, Some(0), "openssl genpkey: {ran:?}");
    let mut cmd = Command::new(peer("openssl"));
    cmd.args(["pkey", "-pubout", "-in"]).arg(&tls);
    let ran = run(cmd, b"", COMMAND_TIMEOUT);
    assert_eq!(ran.code, Some(0), "openssl pkey: {ran:?}");
    let ssh_pub = std::fs::read_to_string(ssh.with_extension("pub")).expect("ssh public key");
    (ssh_pub.trim().to_owned(), ran.stdout)
}

/// `POST /v1/login` with curl from `from`, with extra headers.
fn raw_login(cluster: &Cluster, port: u16, from: &str, headers: &[&str]) -> (u16, Value) {
    let (ssh, tls) = public_keys(cluster.dir.path());
    let body = json!({"user": ALICE.0, "password": ALICE.1,
                      "ssh_public_key": ssh, "tls_public_key": tls});
    let body_path = cluster.path("login.json");
    std::fs::write(&body_path, body.to_string()).expect("write body");
    let data = format!("@{}", body_path.display());
    let ca = cluster.ca_pem().display().to_string();
    let url = format!("https://127.0.0.1:{port}/v1/login");
    let mut args = vec![
        "--interface",
        from,
        "--cacert",
        &ca,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let http = curl(&args);
    (http.status, http.json())
}

#[test]
fn nginx_x_forwarded_for_pins_the_client_not_the_proxy() {
    let cluster = cluster();
    let (_nginx, ports) = nginx(
        &cluster,
        &[
            (LOGIN_XFF, "$remote_addr"),
            (LOGIN_PLAIN, "$remote_addr"),
            (LOGIN_XFF, "$proxy_add_x_forwarded_for"),
            (LOGIN_XFF_STRICT, "$proxy_add_x_forwarded_for"),
        ],
    );
    let [xff, plain, appending, appending_strict] = ports[..] else {
        panic!("four nginx servers");
    };
    let tls_port = cluster.ports[TLS];

    // Flag on: pinned to the client (127.0.0.2), not nginx (127.0.0.1).
    let alice = cluster
        .login(
            &format!("https://127.0.0.1:{xff}"),
            ALICE,
            Some("127.0.0.2"),
        )
        .ok();
    assert!(
        alice.ran.stdout.contains("pinned to 127.0.0.2"),
        "{:?}",
        alice.ran
    );
    assert_eq!(alice.inspect_tls()["pinned"], json!(["127.0.0.2/32"]));
    assert_eq!(alice.inspect_tls()["login_ip"], "127.0.0.2");
    whoami(&cluster, &alice, tls_port, "127.0.0.2", &[]).expect(200);
    whoami(&cluster, &alice, tls_port, "127.0.0.1", &[]).expect(403);
    let line = cluster.wait_audit("the login through nginx", |v| {
        v["event"] == "login_issued" && v["pinned"] == "127.0.0.2"
    });
    assert_eq!(line["provenance"], "forwarded", "{line}");

    // Flag off: the header is ignored; pinned to nginx's address.
    let plain_login = cluster
        .login(
            &format!("https://127.0.0.1:{plain}"),
            ALICE,
            Some("127.0.0.2"),
        )
        .ok();
    assert_eq!(plain_login.inspect_tls()["pinned"], json!(["127.0.0.1/32"]));

    // A value forged by the client, nginx appending the real one: the
    // trusted-proxies walk takes the address nginx saw.
    let (status, body) = raw_login(
        &cluster,
        appending,
        "127.0.0.2",
        &["X-Forwarded-For: 6.6.6.6"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pinned_ip"], "127.0.0.2", "{body}");
    // Forged with several values and a Forwarded-style spoof in the same
    // header line: still the address nginx saw.
    let (status, body) = raw_login(
        &cluster,
        appending,
        "127.0.0.3",
        &["X-Forwarded-For: 6.6.6.6, 127.0.0.1"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pinned_ip"], "127.0.0.3", "{body}");

    // Every peer trusted (the strict compatible mode), a header with
    // more than one value is refused rather than guessed at.
    let (status, body) = raw_login(
        &cluster,
        appending_strict,
        "127.0.0.2",
        &["X-Forwarded-For: 6.6.6.6"],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_forwarded_header")),
        "{body}"
    );

    // Straight to the listener from a peer that is not a trusted proxy:
    // its header is not believed either.
    let (status, body) = raw_login(
        &cluster,
        cluster.ports[LOGIN_XFF],
        "127.0.0.2",
        &["X-Forwarded-For: 6.6.6.6"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pinned_ip"], "127.0.0.2", "{body}");
    assert!(
        !cluster
            .audit()
            .iter()
            .any(|v| v.to_string().contains("6.6.6.6")),
        "a forged address reached the audit log as a client"
    );
}

/// `/metrics` (counts of refusals by reason) is for a client on this host only. nginx on
/// this host forwards anyone's request from 127.0.0.1: on a listener that believes its
/// forwarded headers, a connection from it is never the local client, through nginx or
/// not; on a listener without them, a local client is.
#[test]
fn metrics_are_not_served_through_a_same_host_l7_proxy() {
    let cluster = cluster();
    let (_nginx, ports) = nginx(&cluster, &[(LOGIN_XFF, "$remote_addr")]);
    let ca = cluster.ca_pem().display().to_string();
    let get = |from: &str, port: u16| {
        curl(&[
            "--interface",
            from,
            "--cacert",
            &ca,
            &format!("https://127.0.0.1:{port}/metrics"),
        ])
    };
    // A remote client (127.0.0.2) through nginx.
    let through = get("127.0.0.2", ports[0]);
    assert_eq!(through.status, 403, "{through:?}");
    assert!(through.body.contains("metrics_local_only"), "{through:?}");
    // The proxy's own address, straight to the listener that believes it.
    let direct = get("127.0.0.1", cluster.ports[LOGIN_XFF]);
    assert_eq!(direct.status, 403, "{direct:?}");
    // A local client on a listener without forwarded headers.
    let local = get("127.0.0.1", cluster.ports[LOGIN_PLAIN]);
    assert_eq!(local.status, 200, "{local:?}");
    assert!(local.body.contains("ippin_"), "{local:?}");
}
