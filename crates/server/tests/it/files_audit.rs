//! Files and audit, against the real binary: key files written by `ippin login`, the
//! configuration replaced by `ippin user add`, private-key modes checked by `ippin serve`,
//! configuration errors that name file, line and field, and the audit log's bounds
//! (capped fields, summarised refusals, reopen on SIGHUP).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ippin_test_support::{peer, temp_dir, wait_until};
use serde_json::Value;

use crate::support::{ALICE, BOB, Cluster, curl, ippin, whoami};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn signal(cluster: &Cluster, sig: &str) {
    let pid = cluster.server_pid().to_string();
    let ran = crate::support::run(
        {
            let mut c = Command::new("kill");
            c.args([sig, &pid]);
            c
        },
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(ran.code, Some(0), "kill {sig}: {ran:?}");
}

/// A fresh `ippin ca init` folder and its configuration path.
fn site() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = temp_dir();
    let init = ippin(&["ca", "init", dir.path().to_str().expect("UTF-8")], b"");
    assert_eq!(init.code, Some(0), "{init:?}");
    let config = dir.path().join("ippin.yaml");
    (dir, config)
}

fn serve_fails(config: &Path) -> String {
    let ran = ippin(&["serve", "--config", config.to_str().expect("UTF-8")], b"");
    assert_eq!(ran.code, Some(1), "serve should refuse to start: {ran:?}");
    ran.stderr
}

#[test]
fn login_replaces_0644_key_files_with_new_0600_files_openssh_accepts() {
    let cluster = Cluster::start(&["kind: login, proxy_protocol: off"]);
    let out = temp_dir();
    let names = [
        ("ippin_ed25519", 0o600),
        ("ippin_ed25519.pub", 0o644),
        ("ippin_ed25519-cert.pub", 0o644),
        ("ippin_tls.key", 0o600),
        ("ippin_tls.pem", 0o644),
    ];
    let mut inodes = Vec::new();
    for (name, _) in names {
        let p = out.path().join(name);
        std::fs::write(&p, "left over\n").expect("plant");
        chmod(&p, 0o644);
        inodes.push(std::fs::metadata(&p).expect("meta").ino());
    }
    // A hard link to the old key: the new key must not be written into its inode.
    let link = out.path().join("old-key-link");
    std::fs::hard_link(out.path().join("ippin_ed25519"), &link).expect("link");
    let url = format!("https://{}", cluster.addr(0));
    let ca = cluster.ca_pem();
    let ran = ippin(
        &[
            "login",
            "--server",
            &url,
            "--user",
            BOB.0,
            "--ca",
            ca.to_str().expect("UTF-8"),
            "--out",
            out.path().to_str().expect("UTF-8"),
        ],
        BOB.1.as_bytes(),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for ((name, want), old) in names.iter().zip(&inodes) {
        let p = out.path().join(name);
        assert_eq!(mode(&p), *want, "{name}");
        assert_ne!(
            std::fs::metadata(&p).expect("meta").ino(),
            *old,
            "{name}: new inode"
        );
    }
    assert_eq!(std::fs::read_to_string(&link).expect("link"), "left over\n");
    // OpenSSH refuses a private key others can read; this one it loads.
    let keygen = crate::support::run(
        {
            let mut c = Command::new(peer("ssh-keygen"));
            c.arg("-y").arg("-f").arg(out.path().join("ippin_ed25519"));
            c
        },
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(keygen.code, Some(0), "{keygen:?}");
    let public = std::fs::read_to_string(out.path().join("ippin_ed25519.pub")).expect("pub");
    assert_eq!(
        keygen.stdout.split_whitespace().nth(1),
        public.split_whitespace().nth(1)
    );
    // Nothing but the five files, the link and the logins' lock file (`.ippin.lock`, kept:
    // removing it would let two logins lock two different files) is left in the folder.
    assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 7);
    let lock = std::fs::metadata(out.path().join(".ippin.lock")).expect("lock file");
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);
    // A folder `ippin login` makes is 0700.
    let fresh = out.path().join("new/nested");
    let ran = ippin(
        &[
            "login",
            "--server",
            &url,
            "--user",
            BOB.0,
            "--ca",
            ca.to_str().expect("UTF-8"),
            "--out",
            fresh.to_str().expect("UTF-8"),
        ],
        BOB.1.as_bytes(),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("ippin_tls.key")), 0o600);
    let _ = cluster.stop();
}

/// A lock file the user cannot open (another user's, 0600, in a folder the user owns: the
/// user may not read it, but may not remove it either while it is there) does not stop a
/// login: it writes its files without the lock and says so. Run as an unprivileged user
/// (root opens any file).
#[test]
fn a_lock_file_the_user_cannot_open_is_passed_over_with_a_warning() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let cluster = Cluster::start(&["kind: login, proxy_protocol: off"]);
    let out = temp_dir();
    std::os::unix::fs::chown(out.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
    chmod(out.path(), 0o755);
    let lock = out.path().join(".ippin.lock");
    std::fs::write(&lock, "").expect("lock file");
    chmod(&lock, 0o600);
    let ca = out.path().join("ca.pem");
    std::fs::copy(cluster.ca_pem(), &ca).expect("CA");
    chmod(&ca, 0o644);
    let ids = out.path().join("ids");
    std::fs::create_dir(&ids).expect("ids");
    std::fs::rename(&lock, ids.join(".ippin.lock")).expect("lock in place");
    std::os::unix::fs::chown(&ids, Some(NOBODY), Some(NOBODY)).expect("chown ids");
    let url = format!("https://127.0.0.1:{}", cluster.ports[0]);
    let mut cmd = Command::new(crate::support::IPPIN);
    cmd.args(["login", "--server", &url, "--user", ALICE.0, "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(&ids)
        .env("HOME", out.path())
        .uid(NOBODY)
        .gid(NOBODY);
    let ran = crate::support::run(cmd, ALICE.1.as_bytes(), Duration::from_secs(60));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stderr.contains(".ippin.lock") && ran.stderr.contains("writing without the lock"),
        "{ran:?}"
    );
    let key = std::fs::metadata(ids.join("ippin_ed25519")).expect("the key was written");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&key), NOBODY);
    assert_eq!(mode(&ids.join("ippin_ed25519")), 0o600);
}

#[test]
fn user_add_keeps_the_config_private_and_follows_no_planted_temp_file() {
    let (dir, config) = site();
    // Written the owner's alone: the users' password hashes go into it.
    assert_eq!(mode(&config), 0o600);
    chmod(&config, 0o640);
    let old_inode = std::fs::metadata(&config).expect("meta").ino();
    // Symlinks planted at the predictable names a temporary file could take (the one used
    // before, and `.ippin.yaml.tmp`): neither victim may be touched.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "victim\n").expect("victim");
    for planted in ["ippin.yaml.tmp", ".ippin.yaml.tmp", "ippin.tmp"] {
        std::os::unix::fs::symlink(&victim, dir.path().join(planted)).expect("symlink");
    }
    let entries_before = std::fs::read_dir(dir.path()).expect("dir").count();
    let added = ippin(
        &[
            "user",
            "add",
            "--config",
            config.to_str().expect("UTF-8"),
            "carol",
            "--role",
            "dev",
        ],
        b"carol-password-1\n",
    );
    assert_eq!(added.code, Some(0), "{added:?}");
    assert_eq!(
        mode(&config),
        0o600,
        "the configuration keeps its owner's bits, and loses group's and others'"
    );
    assert_ne!(std::fs::metadata(&config).expect("meta").ino(), old_inode);
    assert!(
        std::fs::read_to_string(&config)
            .expect("read")
            .contains("{name: \"carol\"")
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "victim\n"
    );
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        entries_before
    );
}

/// A configuration, role or certificate file that others may change (group or world
/// writable, or another user's) is refused at start, naming it.
#[test]
fn serve_refuses_a_config_or_role_file_others_may_write() {
    let (dir, config) = site();
    for file in ["ippin.yaml", "roles.yaml", "server.pem", "ca/tls_ca.pem"] {
        let p = dir.path().join(file);
        let before = mode(&p);
        chmod(&p, before | 0o020);
        let err = serve_fails(&config);
        assert!(
            err.contains(file) && err.contains("writable by group or others"),
            "{file}: {err}"
        );
        chmod(&p, before);
        // Owned by another user: the same.
        std::os::unix::fs::chown(&p, Some(65534), None).expect("chown (tests run as root)");
        let err = serve_fails(&config);
        assert!(
            err.contains(file) && err.contains("owned by another user"),
            "{file}: {err}"
        );
        std::os::unix::fs::chown(&p, Some(0), None).expect("chown back");
    }
}

#[test]
fn serve_refuses_private_keys_others_can_read_naming_file_field_and_line() {
    let (dir, config) = site();
    for (file, field, line) in [
        ("ca/ssh_user_ca", "ca.ssh_key", 3),
        ("ca/tls_ca.key", "ca.tls_key", 5),
        ("server.key", "server_tls.key", 6),
        ("ssh_host_ed25519_key", "ssh_host_key", 11),
    ] {
        let p = dir.path().join(file);
        chmod(&p, 0o644);
        let err = serve_fails(&config);
        assert!(
            err.contains(&format!("ippin.yaml:{line}: field `{field}`")),
            "{file}: {err}"
        );
        assert!(
            err.contains(&format!("permissions 0644 for '{}'", p.display())),
            "{err}"
        );
        assert!(err.contains("too open"), "{err}");
        chmod(&p, 0o600);
    }
    // A propagation key: the listener's field.
    let root = dir.path().to_str().expect("UTF-8");
    let made = ippin(
        &["ca", "propagation-key", "--audience", "in", "--out", root],
        b"",
    );
    assert_eq!(made.code, Some(0), "{made:?}");
    let text = std::fs::read_to_string(&config).expect("read");
    let (head, _) = text.split_once("\nlisteners:").expect("listeners");
    let prop = dir.path().join("prop.yaml");
    std::fs::write(
        &prop,
        format!(
            "{head}\nlisteners:\n  - {{listen: \"127.0.0.1:0\", kind: tls, proxy_protocol: on,\n     \
             trusted_proxies: [127.0.0.3/32], propagation: {{audience: in, key: in.propkey}}}}\n"
        ),
    )
    .expect("write");
    let key = dir.path().join("in.propkey");
    chmod(&key, 0o640);
    let err = serve_fails(&prop);
    let line = head.lines().count() + 3;
    assert!(
        err.contains(&format!(
            "prop.yaml:{line}: field `listeners[0].propagation.key`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("permissions 0640 for '{}'", key.display())),
        "{err}"
    );
    // A missing key file: the field, its line, the path and the OS error.
    let key = dir.path().join("ca/tls_ca.key");
    std::fs::rename(&key, dir.path().join("moved")).expect("move");
    let err = serve_fails(&config);
    assert!(err.contains("ippin.yaml:5: field `ca.tls_key`"), "{err}");
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    // A folder where the key should be: unreadable, with the OS error.
    std::fs::create_dir(&key).expect("dir");
    chmod(&key, 0o700);
    let err = serve_fails(&config);
    assert!(err.contains("ippin.yaml:5: field `ca.tls_key`"), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
    std::fs::remove_dir(&key).expect("rmdir");
    std::fs::rename(dir.path().join("moved"), &key).expect("restore");
    // A role file that cannot be read: `roles[1]`, its line, the path, the OS error.
    let text = std::fs::read_to_string(&config).expect("read");
    let line = text
        .lines()
        .position(|l| l.starts_with("roles:"))
        .expect("roles line")
        + 1;
    std::fs::write(
        &config,
        text.replace("roles: [roles.yaml]", "roles: [roles.yaml, gone.yaml]"),
    )
    .expect("write");
    let err = serve_fails(&config);
    assert!(
        err.contains(&format!("ippin.yaml:{line}: field `roles[1]`")),
        "{err}"
    );
    assert!(
        err.contains("gone.yaml: cannot read: No such file"),
        "{err}"
    );
}

#[test]
fn a_key_written_twice_in_the_config_is_refused_at_its_line() {
    let (_dir, config) = site();
    let text = std::fs::read_to_string(&config).expect("read");
    let lines = text.lines().count();
    std::fs::write(&config, format!("{text}cluster_name: other\n")).expect("write");
    let err = serve_fails(&config);
    assert!(
        err.contains(&format!("ippin.yaml:{}:1: ", lines + 1)),
        "{err}"
    );
    assert!(
        err.contains("field `cluster_name` is written twice (first on line 1)"),
        "{err}"
    );
}

/// `POST /v1/login` with `body` from 127.0.0.1 (answer status).
fn post_login(cluster: &Cluster, body: &[u8]) -> u16 {
    let file = cluster.path("body.json");
    std::fs::write(&file, body).expect("body");
    let url = format!("https://{}/v1/login", cluster.addr(0));
    let data = format!("@{}", file.display());
    let ca = cluster.ca_pem();
    curl(&[
        "--cacert",
        ca.to_str().expect("UTF-8"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
        &url,
    ])
    .status
}

/// A login refused at once (a password over the length limit: no hashing).
fn refused_login(user: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "user": user, "password": "p".repeat(2000),
        "ssh_public_key": "", "tls_public_key": "",
    }))
    .expect("json")
}

/// Stops the server with SIGTERM (it writes the pending summaries) and waits for it.
fn stop_gracefully(cluster: &mut Cluster) {
    signal(cluster, "-TERM");
    let exited = wait_until(Duration::from_secs(10), || !cluster.server_running());
    assert!(exited, "ippin serve did not stop on SIGTERM");
}

#[test]
fn a_huge_user_name_yields_a_bounded_audit_line() {
    let cluster = Cluster::start(&["kind: login, proxy_protocol: off"]);
    // The largest name a login body can carry (bodies are bounded at 64 KiB).
    let name = "N".repeat(60 * 1024);
    assert_eq!(post_login(&cluster, &refused_login(&name)), 401);
    let line = cluster.wait_audit("the refused login", |v| v["event"] == "login_refused");
    let raw = std::fs::read_to_string(cluster.path("audit.log")).expect("log");
    assert!(raw.lines().all(|l| l.len() < 1024), "a line is too long");
    let user = line["user"].as_str().expect("user");
    assert!(user.starts_with(&"N".repeat(256)), "{user}");
    assert!(
        user.ends_with(&format!("…[+{} bytes]", name.len() - 256)),
        "{user}"
    );
    let _ = cluster.stop();
}

#[test]
fn a_burst_of_refusals_from_one_peer_is_summarised_with_its_count() {
    const BURST: usize = 23;
    // A lockout above the burst: five failures would lock the name (429, `login_locked`).
    let mut cluster = Cluster::start_with(
        "login_limits: {max_failures: 100, peer_max_failures: 100}\n",
        &["kind: login, proxy_protocol: off"],
    );
    for _ in 0..BURST {
        assert_eq!(post_login(&cluster, &refused_login("mallory")), 401);
    }
    // A grant in the middle of it all is written whatever happens to the refusals.
    let bob = cluster
        .login(&format!("https://{}", cluster.addr(0)), BOB, None)
        .ok();
    drop(bob);
    let log = cluster.path("audit.log");
    stop_gracefully(&mut cluster);
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let written = lines
        .iter()
        .filter(|v| v["event"] == "login_refused" && v["user"] == "mallory")
        .count();
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "audit.suppressed")
        .collect();
    // One 60 s window in practice (5 lines, one summary of the rest); on a machine so slow
    // that the burst spans windows, each window writes 5 and counts the rest. Either way
    // every refusal is a line or in a count, exactly once.
    assert!(!summaries.is_empty(), "{lines:#?}");
    assert!(
        (5 * summaries.len()..=5 * (summaries.len() + 1)).contains(&written),
        "{lines:#?}"
    );
    let counted: u64 = summaries
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(written as u64 + counted, BURST as u64, "{lines:#?}");
    for s in &summaries {
        assert_eq!(s["peer"], "127.0.0.1");
        assert_eq!(s["kind"], "login_refused");
        assert_eq!(s["reason"], "bad_credentials");
        // A login's user name is the client's choice: never part of the summary's key (varying
        // it would open a window per attempt), so the summary names no user.
        assert_eq!(s["user"], "");
        assert_eq!(s["window_secs"], 60);
    }
    assert_eq!(
        lines
            .iter()
            .filter(|v| v["event"] == "login_issued")
            .count(),
        1
    );
}

#[test]
fn sighup_reopens_the_audit_log_at_its_path_losing_no_line() {
    let cluster = Cluster::start(&[
        "kind: login, proxy_protocol: off",
        "kind: tls, proxy_protocol: off",
    ]);
    let alice = cluster
        .login(
            &format!("https://{}", cluster.addr(0)),
            ALICE,
            Some("127.0.0.1"),
        )
        .ok();
    let mut calls = 0usize;
    let mut call = || {
        whoami(&cluster, &alice, cluster.ports[1], "127.0.0.1", &[]).expect(200);
        calls += 1;
    };
    call();
    call();
    let log = cluster.path("audit.log");
    let rotated = cluster.path("audit.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    // Still written to the renamed file until the signal.
    call();
    signal(&cluster, "-HUP");
    // The reopen happens between lines: keep making lines until one lands at the path.
    let fresh = wait_until(Duration::from_secs(10), || {
        call();
        log.exists() && std::fs::read_to_string(&log).is_ok_and(|t| !t.is_empty())
    });
    assert!(fresh, "no new audit.log after SIGHUP");
    call();
    let count = |p: &Path| {
        std::fs::read_to_string(p)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("whole JSON line"))
            .filter(|v| v["event"] == "access_allowed")
            .count()
    };
    let (old, new) = (count(&rotated), count(&log));
    assert!(old >= 3, "{old}");
    assert!(new >= 1, "{new}");
    assert_eq!(
        old + new,
        calls,
        "every access line is in one of the two files"
    );
    assert_eq!(mode(&log), 0o600);
    let (_, stderr) = cluster.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Files named by `network_restrictions`, a listener's `propagation.trusted_ca` and a
/// `forward` section are read when the listeners start: their errors still name the
/// configuration file, the field and its line.
#[test]
fn files_read_at_start_name_their_field_and_line() {
    let (dir, config) = site();
    let text = std::fs::read_to_string(&config).expect("read");
    let (head, _) = text.split_once("\nlisteners:").expect("listeners");
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .expect("needle")
            + 1
    };
    // A policy file that does not exist.
    let nr = dir.path().join("nr-missing.yaml");
    let yaml = format!(
        "{head}\nnetwork_restrictions: nr-missing.yaml\nlisteners:\n  - {{listen: \"127.0.0.1:0\", kind: ssh, proxy_protocol: off}}\n"
    );
    std::fs::write(&config, &yaml).expect("write");
    let err = serve_fails(&config);
    let line = line_of(&yaml, "network_restrictions:");
    assert!(
        err.contains(&format!("ippin.yaml:{line}: field `network_restrictions`")),
        "{err}"
    );
    assert!(err.contains(&nr.display().to_string()), "{err}");
    // A propagation listener whose `trusted_ca` does not exist.
    let root = dir.path().to_str().expect("UTF-8");
    let made = ippin(
        &["ca", "propagation-key", "--audience", "in", "--out", root],
        b"",
    );
    assert_eq!(made.code, Some(0), "{made:?}");
    let yaml = format!(
        "{head}\nlisteners:\n  - {{listen: \"127.0.0.1:0\", kind: tls, proxy_protocol: off,\n     \
         propagation: {{audience: in, key: in.propkey,\n       trusted_ca: gone-ca.pem}}}}\n"
    );
    std::fs::write(&config, &yaml).expect("write");
    let err = serve_fails(&config);
    let line = line_of(&yaml, "trusted_ca:");
    assert!(
        err.contains(&format!(
            "ippin.yaml:{line}: field `listeners[0].propagation.trusted_ca`"
        )),
        "{err}"
    );
    assert!(err.contains("gone-ca.pem"), "{err}");
    // A forward listener whose certificate does not exist.
    let yaml = format!(
        "{head}\nlisteners:\n  - {{listen: \"127.0.0.1:0\", kind: forward, proxy_protocol: off,\n     \
         forward: {{upstream: \"127.0.0.1:9\", audience: in, upstream_key: in.propkey.pub,\n       \
         cert: gone.pem, key: gone.key}}}}\n"
    );
    std::fs::write(&config, &yaml).expect("write");
    let err = serve_fails(&config);
    let line = line_of(&yaml, "forward: {");
    assert!(
        err.contains(&format!("ippin.yaml:{line}: field `listeners[0].forward`")),
        "{err}"
    );
    assert!(err.contains("gone.pem"), "{err}");
}
