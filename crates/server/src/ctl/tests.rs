use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn ctl(args: &[&str]) -> CtlArgs {
    let mut all = vec!["ippin", "ctl"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).unwrap().command {
        Command::Ctl(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn arguments() {
    let c = ctl(&[
        "--server",
        "127.0.0.1:3443",
        "--ca",
        "ca.pem",
        "create",
        "-f",
        "p.yaml",
        "--force",
    ]);
    assert_eq!(c.server.as_deref(), Some("127.0.0.1:3443"));
    assert_eq!(c.ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(c.identity, PathBuf::from("."));
    assert!(
        matches!(c.command, CtlCommand::Create { ref file, force: true } if file == Path::new("p.yaml"))
    );
    // The connection options also after the command.
    let c = ctl(&[
        "get",
        "roles",
        "--identity",
        "/id",
        "--format",
        "json",
        "--server",
        "h:1",
    ]);
    assert_eq!(c.identity, PathBuf::from("/id"));
    assert_eq!(c.server.as_deref(), Some("h:1"));
    assert!(matches!(
        c.command,
        CtlCommand::Get { ref kind, name: None, format: OutputFormat::Json } if kind == "roles"
    ));
    let c = ctl(&["get", "role", "dev"]);
    assert!(matches!(
        c.command,
        CtlCommand::Get { name: Some(ref n), format: OutputFormat::Yaml, .. } if n == "dev"
    ));
    let c = ctl(&["create", "--filename", "x.yaml"]);
    assert!(matches!(c.command, CtlCommand::Create { force: false, .. }));
    let c = ctl(&["rm", "role/dev"]);
    assert!(matches!(c.command, CtlCommand::Rm { ref resource } if resource == "role/dev"));
    for bad in [
        &["create"][..],
        &["get"],
        &["get", "role", "--format", "xml"],
        &["rm"],
        &["delete", "role/x"],
    ] {
        let mut all = vec!["ippin", "ctl"];
        all.extend_from_slice(bad);
        assert!(Cli::try_parse_from(all).is_err(), "{bad:?}");
    }
}

#[test]
fn rm_targets() {
    assert_eq!(parse_target("role/dev"), Ok((Kind::Role, "dev".into())));
    assert_eq!(
        parse_target("users/alice"),
        Ok((Kind::User, "alice".into()))
    );
    for same in [
        "network_restrictions",
        "network_restrictions/network_restrictions",
    ] {
        assert_eq!(
            parse_target(same),
            Ok((Kind::NetworkRestrictions, NETWORK_RESTRICTIONS_NAME.into()))
        );
    }
    for bad in [
        "role",
        "role/",
        "role/a/b",
        "role/../x",
        "node/x",
        "Role/x",
        "network_restrictions/x",
        "",
    ] {
        assert!(parse_target(bad).is_err(), "{bad:?}");
    }
    assert!(
        parse_target("node/x")
            .unwrap_err()
            .contains("unknown kind `node`")
    );
}

#[test]
fn change_messages() {
    assert_eq!(
        changed("role", "x", "created"),
        "role \"x\" has been created"
    );
    assert_eq!(
        changed("role", "x", "updated"),
        "role \"x\" has been updated"
    );
    assert_eq!(
        changed("user", "alice", "created"),
        "user \"alice\" has been created"
    );
    assert_eq!(
        changed("role", "x", "deleted"),
        "role \"x\" has been deleted"
    );
    for action in ["created", "updated"] {
        assert_eq!(
            changed("network_restrictions", "network_restrictions", action),
            "network restrictions have been updated"
        );
    }
    assert_eq!(
        changed("network_restrictions", "network_restrictions", "deleted"),
        "network restrictions have been deleted"
    );
    // Whatever the server says, the terminal gets no control characters.
    assert_eq!(
        changed("ro\u{1b}[2Jle", "a\"b\n", "created"),
        "ro\\u{1b}[2Jle \"a\\\"b\\n\" has been created"
    );
}

#[test]
fn create_output() {
    let answer = br#"{"revision": 12, "results": [
        {"kind": "role", "name": "dev", "action": "created"},
        {"kind": "user", "name": "alice", "action": "updated"},
        {"kind": "network_restrictions", "name": "network_restrictions", "action": "created"}]}"#;
    assert_eq!(
        created_output(answer).unwrap(),
        "role \"dev\" has been created\nuser \"alice\" has been updated\nnetwork restrictions have been updated\n"
    );
    assert!(
        created_output(br#"{"results": [{"kind": "role", "name": "x", "action": "exploded"}]}"#)
            .is_err()
    );
    assert!(created_output(b"<html>").is_err());
}

fn item(kind: &str, name: &str, document: &str) -> Item {
    Item {
        kind: kind.into(),
        name: name.into(),
        document: document.into(),
    }
}

#[test]
fn get_outputs() {
    let items = vec![
        item(
            "role",
            "a",
            "kind: role\nversion: v7\nmetadata: {name: a}\n",
        ),
        item("role", "b", "kind: role\nversion: v7\nmetadata: {name: b}"),
    ];
    assert_eq!(
        get_output(&items, false, OutputFormat::Yaml).unwrap(),
        "kind: role\nversion: v7\nmetadata: {name: a}\n---\nkind: role\nversion: v7\nmetadata: {name: b}\n"
    );
    let json = get_output(&items, false, OutputFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["metadata"]["name"], "a");
    assert_eq!(v[1]["metadata"]["name"], "b");
    assert_eq!(v.as_array().unwrap().len(), 2);
    let one = get_output(&items[..1], true, OutputFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["kind"], "role");
    assert!(get_output(&items, true, OutputFormat::Json).is_err());
    // The example of docs/cli.md.
    let alice = item(
        "user",
        "alice",
        "kind: user\nversion: v1\nmetadata:\n  name: alice\nspec:\n  roles:\n  - pinned-ip\n",
    );
    assert_eq!(
        get_output(&[alice], true, OutputFormat::Json).unwrap(),
        "{\n  \"kind\": \"user\",\n  \"metadata\": {\n    \"name\": \"alice\"\n  },\n  \"spec\": {\n    \"roles\": [\n      \"pinned-ip\"\n    ]\n  },\n  \"version\": \"v1\"\n}\n"
    );
    assert_eq!(get_output(&[], false, OutputFormat::Yaml).unwrap(), "");
    assert_eq!(get_output(&[], false, OutputFormat::Json).unwrap(), "[]\n");
    // A hostile document: no escape sequence reaches the terminal; no alias bomb is expanded.
    let evil = [item("role", "x", "kind: role\n\u{1b}]0;owned\u{7}\n")];
    let shown = get_output(&evil, false, OutputFormat::Yaml).unwrap();
    assert!(
        !shown.contains('\u{1b}') && shown.contains("\\u{1b}"),
        "{shown}"
    );
    let bomb = [item("role", "x", "a: &a [1, 1]\nb: [*a, *a]\n")];
    assert!(get_output(&bomb, false, OutputFormat::Json).is_err());
}

#[test]
fn refusals_show_the_servers_message() {
    let body = br#"{"error": "already_exists", "message": "role \"dev\" already exists"}"#;
    assert_eq!(
        refusal(StatusCode::CONFLICT, body),
        "role \"dev\" already exists (already_exists)"
    );
    assert_eq!(
        refusal(StatusCode::NOT_FOUND, br#"{"error": "no_backend"}"#),
        "HTTP 404: no_backend"
    );
    assert_eq!(refusal(StatusCode::BAD_GATEWAY, b"<html>"), "HTTP 502");
    assert_eq!(
        refusal(
            StatusCode::FORBIDDEN,
            br#"{"error": "not_admin", "message": "a\u001bb\nc"}"#
        ),
        "a\\u{1b}b\\nc (not_admin)"
    );
}

/// `create -f` with a bad document: the file, line and field, and nothing sent (no server
/// is given at all, so a send would fail differently).
#[tokio::test]
async fn a_bad_document_is_reported_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "kind: network_restrictions\nversion: v4\nspec:\n  deny:\n  - cidr: 10.0.0.1/8\n",
    )
    .unwrap();
    let args = ctl(&["create", "-f", file.to_str().unwrap()]);
    let out = ctl_command(&args).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: {}:5: spec.deny[0].cidr: `10.0.0.1/8`: host bits set (the network is `10.0.0.0/8`)\n",
            file.display()
        )
    );
    assert_eq!(out.stdout, "");
    // A good file gets as far as the missing server.
    std::fs::write(&file, "kind: network_restrictions\nversion: v4\n").unwrap();
    let out = ctl_command(&args).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--server"), "{}", out.stderr);
    // Too large: refused while reading.
    std::fs::write(&file, vec![b'#'; admin::MAX_TEXT_BYTES + 1]).unwrap();
    let out = ctl_command(&args).await;
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
}

/// What the fake admin API saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    client_cert: bool,
}

/// An `ippin ca init` site, an identity issued by its CA (as `ippin login` writes it), and a
/// mutual-TLS HTTP/1.1 server on loopback with the site's server identity that requires a
/// client certificate from that CA and gives `answers` in order, reporting each request.
struct FakeAdmin {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    ca: PathBuf,
    identity: PathBuf,
    seen: tokio::sync::mpsc::UnboundedReceiver<Seen>,
}

async fn fake_admin(answers: Vec<(u16, String)>) -> FakeAdmin {
    use http_body_util::{BodyExt, Full, Limited};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let config = crate::config::Config::load(&crate::ca::init(&site).unwrap()).unwrap();
    let ca = crate::ca::Ca::load_config(&config).unwrap();
    let mut rng = crate::rng();
    let ssh =
        ippin_cert::ssh_key::PrivateKey::random(&mut rng, ippin_cert::ssh_key::Algorithm::Ed25519)
            .unwrap();
    let (key_pem, spki_pem) = ippin_cert::x509::generate_key_pair_p256(&mut rng).unwrap();
    let issued = ca
        .issue(&crate::ca::IssueRequest {
            user: "admin",
            roles: &["admin".to_owned()],
            logins: &[],
            ssh_public_key: &ssh.public_key().to_openssh().unwrap(),
            tls_public_key: &spki_pem,
            pinned: None,
            pinned_endpoint: None,
            login_ip: None,
            now: std::time::SystemTime::now(),
            ttl: std::time::Duration::from_secs(600),
            session: None,
        })
        .unwrap();
    let identity = dir.path().join("id");
    std::fs::create_dir(&identity).unwrap();
    std::fs::write(identity.join("ippin_tls.pem"), &issued.tls_certificate).unwrap();
    std::fs::write(identity.join("ippin_tls.key"), &key_pem).unwrap();
    {
        // As `ippin login --out` leaves them: the folder and the key the user's alone.
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(&identity, private).unwrap();
        let key = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(identity.join("ippin_tls.key"), key).unwrap();
    }

    let ca_path = site.join("ca/tls_ca.pem");
    let ca_der = CertificateDer::from_pem_file(&ca_path).unwrap();
    let chain = CertificateDer::pem_file_iter(site.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(site.join("server.key")).unwrap();
    let mut tls = ippin_access::rustls::server_config(&[ca_der], chain, key).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let client_cert = stream.get_ref().1.peer_certificates().is_some();
            let report = report.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let report = report.clone();
                    let body = body.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().to_string();
                        let content_type = req
                            .headers()
                            .get(hyper::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let sent = Limited::new(req.into_body(), 4 << 20)
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let _ = report.send(Seen {
                            method,
                            path,
                            content_type,
                            body: sent,
                            client_cert,
                        });
                        hyper::Response::builder()
                            .status(status)
                            .header(hyper::header::CONTENT_TYPE, "application/json")
                            .body(Full::new(bytes::Bytes::from(body)))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    });
    FakeAdmin {
        _dir: dir,
        addr,
        ca: ca_path,
        identity,
        seen,
    }
}

impl FakeAdmin {
    async fn run(&self, args: &[&str]) -> Outcome {
        let server = self.addr.to_string();
        let mut all = vec![
            "--server",
            &server,
            "--ca",
            self.ca.to_str().unwrap(),
            "--identity",
            self.identity.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ctl_command(&ctl(&all)).await
    }
}

/// The whole exchange against a mutual-TLS server that answers as the admin API does: what
/// is sent (method, path, force flag, body, client certificate) and what is printed.
#[tokio::test]
async fn against_a_tls_server_that_answers_per_the_contract() {
    let text = "kind: role\nversion: v7\nmetadata: {name: dev}\n---\nkind: network_restrictions\nversion: v4\n";
    let mut admin = fake_admin(vec![
        (
            200,
            r#"{"revision": 7, "results": [{"kind": "role", "name": "dev", "action": "updated"}, {"kind": "network_restrictions", "name": "network_restrictions", "action": "created"}]}"#.into(),
        ),
        (
            200,
            r#"{"kind": "role", "name": "dev", "revision": 7, "document": "kind: role\nversion: v7\nmetadata: {name: dev}\n"}"#.into(),
        ),
        (200, r#"{"revision": 8}"#.into()),
        (
            409,
            r#"{"error": "already_exists", "message": "role \"dev\" already exists"}"#.into(),
        ),
    ])
    .await;
    let file = admin._dir.path().join("p.yaml");
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap().to_owned();

    let out = admin.run(&["create", "-f", &file, "--force"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            0,
            "role \"dev\" has been updated\nnetwork restrictions have been updated\n",
            ""
        )
    );
    let seen = admin.seen.recv().await.unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/admin/resources?force=1");
    assert_eq!(seen.body, text.as_bytes());
    assert_eq!(seen.content_type.as_deref(), Some("application/yaml"));
    assert!(seen.client_cert);

    let out = admin.run(&["get", "role", "dev", "--format", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["metadata"]["name"], "dev");
    let seen = admin.seen.recv().await.unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/admin/resources/role/dev")
    );
    assert!(seen.body.is_empty() && seen.client_cert);

    let out = admin.run(&["rm", "network_restrictions"]).await;
    assert_eq!(out.stdout, "network restrictions have been deleted\n");
    let seen = admin.seen.recv().await.unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "DELETE",
            "/v1/admin/resources/network_restrictions/network_restrictions"
        )
    );

    let out = admin.run(&["create", "-f", &file]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: role \"dev\" already exists (already_exists)\n"
    );
    let seen = admin.seen.recv().await.unwrap();
    assert_eq!(seen.path, "/v1/admin/resources");
}

/// A connection failure names the server.
#[tokio::test]
async fn an_unreachable_server_is_named() {
    let admin = fake_admin(Vec::new()).await;
    // Nothing listens there any more (the server took no connection and ended).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let server = addr.to_string();
    let out = ctl_command(&ctl(&[
        "get",
        "roles",
        "--server",
        &server,
        "--ca",
        admin.ca.to_str().unwrap(),
        "--identity",
        admin.identity.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot reach the admin API at {server}: ")),
        "{}",
        out.stderr
    );
}

/// What the server says is shown with its control and bidirectional characters escaped,
/// line breaks kept only where asked for.
#[test]
fn server_text_is_shown_escaped() {
    assert_eq!(shown("a\u{1b}[2Jb", false), "a\\u{1b}[2Jb");
    assert_eq!(shown("role \u{202e}ved", false), "role \\u{202e}ved");
    assert_eq!(shown("x\u{2066}y\u{61c}", true), "x\\u{2066}y\\u{61c}");
    assert_eq!(shown("l1\nl2\tt", true), "l1\nl2\tt");
    assert_eq!(shown("l1\nl2", false), "l1\\nl2");
    // Line breaks to some viewers and not to others.
    assert_eq!(
        shown("a\u{2028}b\u{2029}c\u{85}d", true),
        "a\\u{2028}b\\u{2029}c\\u{85}d"
    );
}

/// The identity folder and its files must be the user's alone: a folder others may write
/// (a shared `/tmp`, the default `.` run from there), a key others may read, or a link is
/// refused before any call; the user's own folder is read.
#[test]
fn an_identity_others_control_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("id");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(tmp.path().join("ca.pem"), "ca").unwrap();
    std::fs::write(dir.join("ippin_tls.pem"), "cert").unwrap();
    std::fs::write(dir.join("ippin_tls.key"), "key").unwrap();
    let set = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&dir, 0o700);
    set(&dir.join("ippin_tls.key"), 0o600);
    let target = |identity: &Path| {
        let ca = tmp.path().join("ca.pem");
        Target::new(&ctl(&[
            "--server",
            "127.0.0.1:3443",
            "--ca",
            ca.to_str().unwrap(),
            "--identity",
            identity.to_str().unwrap(),
            "get",
            "roles",
        ]))
    };
    let ok = target(&dir).expect("the user's own identity");
    assert_eq!((ok.cert_pem.as_str(), ok.key_pem.as_str()), ("cert", "key"));
    set(&dir, 0o777);
    let e = target(&dir).err().unwrap();
    assert!(e.contains("identity folder"), "{e}");
    set(&dir, 0o700);
    set(&dir.join("ippin_tls.key"), 0o644);
    let e = target(&dir).err().unwrap();
    assert!(
        e.contains("ippin_tls.key") && e.contains("read or write"),
        "{e}"
    );
    set(&dir.join("ippin_tls.key"), 0o600);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let e = target(&link).err().unwrap();
    assert!(e.contains("symbolic link"), "{e}");
}
