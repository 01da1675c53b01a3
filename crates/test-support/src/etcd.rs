//! A real etcd for tests: a single member on loopback with a temporary data directory and
//! ephemeral ports, optionally with TLS on its client listener (certificates made with the
//! `openssl` CLI by [`Pki`]). Fails loudly, naming `scripts/install-peers`, when etcd or
//! openssl is missing.

use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Child, READY_TIMEOUT, free_port, peer, temp_dir, wait_until};

/// A single-member etcd on loopback, killed (and its data directory removed) on drop.
pub struct Etcd {
    child: Option<Child>,
    /// The client URL's address (`http://` or, with TLS, `https://`).
    pub client: SocketAddr,
    peer_addr: SocketAddr,
    dir: tempfile::TempDir,
    tls: Option<EtcdTls>,
    /// Where `/health` is read: the client address, or with TLS a clear-text metrics one.
    health_addr: SocketAddr,
}

/// etcd's TLS files for its client listener: `https` with `--client-cert-auth`.
pub struct EtcdTls {
    /// Its certificate (an IP SAN 127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA that client certificates must chain to.
    pub client_ca: PathBuf,
}

impl Etcd {
    /// A plain-`http` etcd, healthy when it returns.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With TLS on the client listener (clients must present a certificate).
    pub fn start_tls(tls: EtcdTls) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdTls>) -> Self {
        let dir = temp_dir();
        let lo = Ipv4Addr::LOCALHOST.into();
        let client = SocketAddr::new(lo, free_port(lo));
        let peer_addr = SocketAddr::new(lo, free_port(lo));
        let health_addr = match tls {
            Some(_) => SocketAddr::new(lo, free_port(lo)),
            None => client,
        };
        let mut etcd = Self {
            child: None,
            client,
            peer_addr,
            dir,
            tls,
            health_addr,
        };
        etcd.restart();
        etcd
    }

    /// Kills etcd (its data directory kept).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            drop(child.finish());
        }
    }

    /// Kills etcd, replaces its data directory with `snapshot` (made earlier with
    /// `etcdctl snapshot save`) through `etcdctl snapshot restore`, which keeps the
    /// snapshot's revision (etcd 3.4 cannot raise it), and starts it again: the store goes
    /// back in time, as after an operator's restore from a backup.
    pub fn restore(&mut self, snapshot: &std::path::Path) {
        self.kill();
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).expect("remove etcd's data directory");
        let peer_addr = self.peer_addr;
        let mut cmd = Command::new(peer("etcdctl"));
        cmd.env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--data-dir={}", data.display()))
            .arg("--name=ippin-test")
            .arg(format!("--initial-cluster=ippin-test=http://{peer_addr}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer_addr}"));
        let mut child = Child::spawn("etcdctl snapshot restore", cmd);
        let done = wait_until(READY_TIMEOUT, || !child.is_running());
        let (out, err) = child.finish();
        assert!(
            done && data.join("member").is_dir(),
            "etcdctl snapshot restore (done: {done}):\n{out}\n{err}"
        );
        self.restart();
    }

    /// Starts etcd (again) on the same data directory and ports; waits until it is healthy.
    pub fn restart(&mut self) {
        self.kill();
        // Fails naming scripts/install-peers when etcd is missing.
        let etcd = peer("etcd");
        let (client, peer_addr) = (self.client, self.peer_addr);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut cmd = Command::new(etcd);
        cmd.arg("--name=ippin-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={scheme}://{client}"))
            .arg(format!("--advertise-client-urls={scheme}://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer_addr}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer_addr}"))
            .arg(format!("--initial-cluster=ippin-test=http://{peer_addr}"))
            .arg("--initial-cluster-state=new")
            .arg("--experimental-watch-progress-notify-interval=200ms")
            .arg("--log-level=error");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.client_ca.display()))
                .arg("--client-cert-auth")
                .arg(format!("--listen-metrics-urls=http://{}", self.health_addr));
        }
        let mut child = Child::spawn("etcd", cmd);
        let health_addr = self.health_addr;
        let ready = wait_until(READY_TIMEOUT, || {
            child.is_running() && health(health_addr).is_some_and(|b| b.contains("\"true\""))
        });
        if !ready {
            let (out, err) = child.finish();
            panic!("etcd not healthy on {client} within {READY_TIMEOUT:?}\n{out}\n{err}");
        }
        self.child = Some(child);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn health(addr: SocketAddr) -> Option<String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut w = s.try_clone().ok()?;
    write!(
        w,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let mut all = String::new();
    r.read_to_string(&mut all).ok()?;
    all.starts_with("HTTP/1.1 200").then_some(all)
}

/// Certificates made with the `openssl` CLI in a temporary directory: a CA, etcd's
/// certificate (IP SAN 127.0.0.1; client use too, for etcd's gateway dials its own gRPC
/// server with it) and a client certificate it signed, and another CA.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// Makes the certificates (`ca`, `other-ca`, `etcd`, `client`: `.pem` and `.key`).
    pub fn new() -> Self {
        let pki = Self { dir: temp_dir() };
        let openssl = peer("openssl");
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(pki.dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, cert, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN={ca}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            run(&args);
        }
        for (name, ext) in [
            (
                "etcd",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let ext_file = format!("{name}.ext");
            std::fs::write(
                pki.dir.path().join(&ext_file),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .unwrap();
            let (key, csr, cert, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("/CN={name}"),
            );
            let mut args = vec!["req", "-new"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext_file,
                "-out",
                &cert,
            ]);
        }
        pki
    }

    /// The path of one of its files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The bytes of one of its files.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// etcd with TLS on its client listener, requiring client certificates from `ca.pem`.
    pub fn etcd(&self) -> Etcd {
        Etcd::start_tls(EtcdTls {
            cert: self.path("etcd.pem"),
            key: self.path("etcd.key"),
            client_ca: self.path("ca.pem"),
        })
    }
}
