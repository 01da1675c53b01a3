//! Prefix pins end to end (`pin_source_ip_prefix`), in a network namespace the test creates so
//! that loopback holds more IPv6 addresses than `::1`: `::2` (inside `::/64`, the /64 of `::1`)
//! and `2001:db8:1:3::1` (outside). Everything runs inside the namespace: `ippin serve`, `ippin
//! login`, curl for mutual TLS, OpenSSH's `ssh` against ippin's SSH service, and OpenSSH's
//! `sshd`, which enforces `source-address=::/64` on its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ippin_test_support::{Child, free_port, peer, wait_until};
use serde_json::Value;

use crate::attacks::{site, wait_audit};
use crate::ssh::harness::ip;
use crate::support::{COMMAND_TIMEOUT, IPPIN, run};

/// A network namespace with loopback up and extra addresses; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// `tag` tells apart the namespaces of the tests of one process.
    fn new(tag: &str, addrs: &[&str]) -> Netns {
        let name = format!("ippin-{tag}-{}", std::process::id());
        // A namespace left by a killed earlier run of this process id is replaced.
        let _ = Command::new(peer("ip"))
            .args(["netns", "del", &name])
            .output();
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for a in addrs {
            ns.ip(&["-n", &ns.name, "addr", "add", a, "dev", "lo", "nodad"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new(peer("ip"))
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program` run inside the namespace.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(peer("ip"));
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Polls (bounded) until `addr` accepts TCP connections inside the namespace.
    fn wait_for_tcp(&self, addr: SocketAddr) {
        let ok = wait_until(ippin_test_support::READY_TIMEOUT, || {
            let mut c = self.cmd(peer("bash"));
            c.arg("-c")
                .arg(format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port()));
            run(c, b"", Duration::from_secs(5)).code == Some(0)
        });
        assert!(ok, "{addr} did not accept connections in {}", self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(peer("ip"))
            .args(["netns", "del", &self.name])
            .output();
    }
}

const PREFIX_ROLE: &str = "---
kind: role
version: v7
metadata:
  name: v6-prefix
spec:
  options:
    pin_source_ip: true
    pin_source_ip_prefix: {ipv4: 24, ipv6: 64}
  allow:
    logins: [root]
";

/// `ippin login` from `bind` inside the namespace; the folder of the saved credentials and
/// what the command printed.
fn log_in(ns: &Netns, dir: &Path, server: &str, user: &str, bind: &str) -> (PathBuf, String) {
    let out_dir = dir.join(format!("{user}-{}", bind.replace(':', "_")));
    std::fs::create_dir_all(&out_dir).expect("login folder");
    let mut c = ns.cmd(IPPIN);
    c.args(["login", "--server", server, "--user", user, "--ca"])
        .arg(dir.join("ca/tls_ca.pem"))
        .arg("--out")
        .arg(&out_dir)
        .args(["--bind", bind]);
    let ran = run(c, b"secret\n", COMMAND_TIMEOUT);
    assert_eq!(ran.code, Some(0), "login {user} from {bind}: {ran:?}");
    (out_dir, ran.stdout)
}

/// `GET /whoami` with the login's certificate, from `from`: status and body.
fn whoami(ns: &Netns, dir: &Path, creds: &Path, url: &str, from: &str) -> (u16, String) {
    let mut c = ns.cmd(peer("curl"));
    c.args(["-s", "-S", "--max-time", "15", "-w", "\n%{http_code}"])
        .args(["--interface", from, "--cert"])
        .arg(creds.join("ippin_tls.pem"))
        .arg("--key")
        .arg(creds.join("ippin_tls.key"))
        .arg("--cacert")
        .arg(dir.join("ca/tls_ca.pem"))
        .args(["-g", url]);
    let ran = run(c, b"", COMMAND_TIMEOUT);
    let (body, status) = ran.stdout.rsplit_once('\n').unwrap_or(("", &ran.stdout));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// OpenSSH's `ssh` with the login's key and certificate, from `from`, running `command`.
fn ssh(
    ns: &Netns,
    creds: &Path,
    user: &str,
    server: SocketAddr,
    from: &str,
    command: &str,
) -> (bool, String, String) {
    let mut c = ns.cmd(peer("ssh"));
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ])
    .args([
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .args(["-o", "ConnectTimeout=10", "-i"])
    .arg(creds.join("ippin_ed25519"))
    .arg("-o")
    .arg(format!(
        "CertificateFile={}",
        creds.join("ippin_ed25519-cert.pub").display()
    ))
    .args(["-b", from, "-p", &server.port().to_string()])
    .arg(format!("{user}@{}", server.ip()))
    .arg(command);
    let ran = run(c, b"", COMMAND_TIMEOUT);
    (ran.code == Some(0), ran.stdout, ran.stderr)
}

fn start_sshd(ns: &Netns, dir: &Path, port: u16) -> Child {
    let config =
        crate::ssh::parity::sshd_config(dir, port, &["::1"], &dir.join("ca/ssh_user_ca.pub"));
    let mut c = ns.cmd(peer("sshd"));
    c.arg("-D").arg("-e").arg("-f").arg(&config);
    let child = Child::spawn("sshd", c);
    ns.wait_for_tcp(SocketAddr::new(ip("::1"), port));
    child
}

#[test]
fn a_v6_login_pinned_to_its_64_is_served_inside_it_and_refused_outside() {
    let ns = Netns::new("pfx64", &["::2/128", "2001:db8:1:3::1/64"]);
    let lo = ip("127.0.0.1");
    let (login_port, tls_port, ssh_port, sshd_port) =
        (free_port(lo), free_port(lo), free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: '[::1]:{login_port}', proxy_protocol: off}}
  - {{kind: tls, listen: '[::1]:{tls_port}', proxy_protocol: off}}
  - {{kind: ssh, listen: '[::1]:{ssh_port}', proxy_protocol: off}}
  - {{kind: login, listen: '127.0.0.1:{login_port}', proxy_protocol: off}}
  - {{kind: tls, listen: '127.0.0.1:{tls_port}', proxy_protocol: off}}
"
        ),
        "",
    );
    let dir = tmp.path();
    let mut roles = std::fs::read_to_string(dir.join("roles.yaml")).expect("roles");
    roles.push_str(PREFIX_ROLE);
    std::fs::write(dir.join("roles.yaml"), roles).expect("write roles");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config, "carol", &["v6-prefix".to_owned()], &hash).expect("carol");

    let mut serve = ns.cmd(IPPIN);
    serve.args(["serve", "--config"]).arg(&config);
    let _server = Child::spawn("ippin serve", serve);
    for port in [login_port, tls_port, ssh_port] {
        ns.wait_for_tcp(SocketAddr::new(ip("::1"), port));
    }
    ns.wait_for_tcp(SocketAddr::new(lo, tls_port));
    let login_v6 = format!("https://[::1]:{login_port}");
    let tls_v6 = format!("https://[::1]:{tls_port}/whoami");

    // carol logs in from ::1: pinned to ::/64, in both certificates and the audit log.
    let (carol, said) = log_in(&ns, dir, &login_v6, "carol", "::1");
    assert!(said.contains("pinned to ::/64"), "{said}");
    let cert = std::fs::read_to_string(carol.join("ippin_ed25519-cert.pub")).expect("cert");
    let keygen = Command::new(peer("ssh-keygen"))
        .arg("-L")
        .arg("-f")
        .arg(carol.join("ippin_ed25519-cert.pub"))
        .output()
        .expect("ssh-keygen -L");
    let listing = String::from_utf8_lossy(&keygen.stdout);
    assert!(
        listing.contains("source-address ::/64"),
        "{listing}\n{cert}"
    );
    let x509 = Command::new(peer("openssl"))
        .args(["x509", "-noout", "-text", "-in"])
        .arg(carol.join("ippin_tls.pem"))
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&x509.stdout);
    assert!(
        text.contains("1.3.9999.1.9:") && text.contains("::/64"),
        "{text}"
    );
    let issued = wait_audit(dir, "carol's login", |v| {
        v["event"] == "login_issued" && v["user"] == "carol"
    });
    assert_eq!(issued["pinned"], "::/64", "{issued}");

    // mutual TLS with curl: ::1 and ::2 are inside ::/64, 2001:db8:1:3::1 is not.
    for from in ["::1", "::2"] {
        let (status, body) = whoami(&ns, dir, &carol, &tls_v6, from);
        assert_eq!(status, 200, "from {from}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["pinned"], "::/64", "{v}");
    }
    let (status, body) = whoami(&ns, dir, &carol, &tls_v6, "2001:db8:1:3::1");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pinned_ip_mismatch"), "{body}");

    // OpenSSH's ssh against ippin's SSH service: the same rule.
    let ssh_addr = SocketAddr::new(ip("::1"), ssh_port);
    let (ok, out, err) = ssh(&ns, &carol, "carol", ssh_addr, "::2", "whoami");
    assert!(ok, "from ::2: {out} {err}");
    assert!(out.contains("pinned: ::/64"), "{out}");
    assert!(
        out.contains("observed: [::2]") || out.contains("observed: ::2"),
        "{out}"
    );
    let (ok, out, err) = ssh(&ns, &carol, "carol", ssh_addr, "2001:db8:1:3::1", "whoami");
    assert!(!ok, "served outside the prefix: {out}");
    assert!(err.contains("pinned_ip_mismatch"), "{err}");

    // OpenSSH's sshd enforces source-address=::/64 itself (principal root, from the role).
    let sshd = start_sshd(&ns, dir, sshd_port);
    let sshd_addr = SocketAddr::new(ip("::1"), sshd_port);
    let (ok, out, err) = ssh(&ns, &carol, "root", sshd_addr, "::2", "echo in");
    assert!(ok && out == "in\n", "sshd from ::2: {out} {err}");
    let (ok, out, _) = ssh(&ns, &carol, "root", sshd_addr, "2001:db8:1:3::1", "echo in");
    assert!(!ok, "sshd served outside the prefix: {out}");
    let (_, sshd_log) = sshd.finish();
    assert!(
        sshd_log.contains("not from a permitted source address"),
        "sshd did not refuse on source-address:\n{sshd_log}"
    );

    // The same role over IPv4: /24. 127.0.0.2 is inside 127.0.0.0/24, 127.0.1.1 is not.
    let (carol4, said) = log_in(
        &ns,
        dir,
        &format!("https://127.0.0.1:{login_port}"),
        "carol",
        "127.0.0.1",
    );
    assert!(said.contains("pinned to 127.0.0.0/24"), "{said}");
    let tls_v4 = format!("https://127.0.0.1:{tls_port}/whoami");
    assert_eq!(whoami(&ns, dir, &carol4, &tls_v4, "127.0.0.2").0, 200);
    let (status, body) = whoami(&ns, dir, &carol4, &tls_v4, "127.0.1.1");
    assert_eq!(status, 403, "{body}");

    // alice's role pins one address: from ::1 she is pinned to ::1, and ::2 is refused.
    let (alice, said) = log_in(&ns, dir, &login_v6, "alice", "::1");
    assert!(said.contains("pinned to ::1:"), "{said}");
    assert_eq!(whoami(&ns, dir, &alice, &tls_v6, "::1").0, 200);
    let (status, body) = whoami(&ns, dir, &alice, &tls_v6, "::2");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pinned_ip_mismatch"), "{body}");
}

/// A certificate pinned to a network satisfies only roles whose prefix is at least as wide:
/// when the role that asked for `/64` is changed to pin one address (the server restarted on
/// the new roles file, the same CA), carol's `/64` certificate is refused `pin_too_wide`, and
/// renewing it is refused too, until she logs in again.
#[test]
fn a_role_narrowed_after_login_refuses_the_wider_pin() {
    let ns = Netns::new("pfxnarrow", &["::2/128"]);
    let lo = ip("127.0.0.1");
    let (login_port, tls_port) = (free_port(lo), free_port(lo));
    let (tmp, config) = site(
        &format!(
            "  - {{kind: login, listen: '[::1]:{login_port}', proxy_protocol: off}}
  - {{kind: tls, listen: '[::1]:{tls_port}', proxy_protocol: off}}
"
        ),
        "",
    );
    let dir = tmp.path();
    let base = std::fs::read_to_string(dir.join("roles.yaml")).expect("roles");
    std::fs::write(dir.join("roles.yaml"), format!("{base}{PREFIX_ROLE}")).expect("roles");
    let hash = ippin::users::hash_password_light("secret").expect("hash");
    ippin::users::add_user(&config, "carol", &["v6-prefix".to_owned()], &hash).expect("carol");
    let start = || {
        let mut serve = ns.cmd(IPPIN);
        serve.args(["serve", "--config"]).arg(&config);
        let server = Child::spawn("ippin serve", serve);
        ns.wait_for_tcp(SocketAddr::new(ip("::1"), login_port));
        ns.wait_for_tcp(SocketAddr::new(ip("::1"), tls_port));
        server
    };
    let server = start();
    let login_v6 = format!("https://[::1]:{login_port}");
    let tls_v6 = format!("https://[::1]:{tls_port}/whoami");
    let (carol, _) = log_in(&ns, dir, &login_v6, "carol", "::1");
    assert_eq!(whoami(&ns, dir, &carol, &tls_v6, "::2").0, 200);

    // The role now pins one address.
    drop(server);
    let narrowed = PREFIX_ROLE.replace("    pin_source_ip_prefix: {ipv4: 24, ipv6: 64}\n", "");
    assert_ne!(narrowed, PREFIX_ROLE);
    std::fs::write(dir.join("roles.yaml"), format!("{base}{narrowed}")).expect("roles");
    let _server = start();
    let (status, body) = whoami(&ns, dir, &carol, &tls_v6, "::1");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pin_too_wide"), "{body}");
    // Renewal would re-sign the wider pin: refused the same way (the check before renewal).
    let mut c = ns.cmd(peer("curl"));
    c.args(["-s", "-S", "--max-time", "15", "-w", "\n%{http_code}"])
        .args(["--interface", "::1", "--cert"])
        .arg(carol.join("ippin_tls.pem"))
        .arg("--key")
        .arg(carol.join("ippin_tls.key"))
        .arg("--cacert")
        .arg(dir.join("ca/tls_ca.pem"))
        .args(["-H", "content-type: application/json", "--data", "{}"])
        .args(["-g", &format!("https://[::1]:{tls_port}/v1/renew")]);
    let ran = run(c, b"", COMMAND_TIMEOUT);
    assert!(ran.stdout.ends_with("\n403"), "{ran:?}");
    assert!(ran.stdout.contains("pin_too_wide"), "{ran:?}");
    // A new login gets the one-address pin, which the narrowed role accepts.
    let (again, said) = log_in(&ns, dir, &login_v6, "carol", "::1");
    assert!(said.contains("pinned to ::1:"), "{said}");
    assert_eq!(whoami(&ns, dir, &again, &tls_v6, "::1").0, 200);
    assert_eq!(whoami(&ns, dir, &again, &tls_v6, "::2").0, 403);
}
