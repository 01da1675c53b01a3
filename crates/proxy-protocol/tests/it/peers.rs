//! Real peers on loopback: HAProxy (`send-proxy`, `send-proxy-v2`, with
//! CRC32C and UNIQUE_ID), nginx stream `proxy_protocol on`, and
//! `curl --haproxy-protocol`. Each test captures the first bytes the peer
//! sends and checks that the parser reads the addresses that were used.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use ippin_proxy_protocol::{
    Command, Crc32cStatus, DEFAULT_TIMEOUT, Header, ListenerPolicy, Provenance, ProxyMode, Tlv,
    accept, parse,
};
use ippin_test_support::{Child, free_port, peer, temp_dir, wait_for_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const CAPTURE_DEADLINE: Duration = Duration::from_secs(20);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Accepts connections on `listener` until one carries a header whose
/// source IP is `want` (readiness probes from 127.0.0.1 / ::1 are skipped),
/// and returns that connection's first bytes: the header and what followed
/// it, up to `more` application bytes.
async fn capture(listener: &TcpListener, want: SocketAddr, more: usize) -> Vec<u8> {
    let deadline = Instant::now() + CAPTURE_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (mut sock, _) = tokio::time::timeout(left, listener.accept())
            .await
            .expect("no connection from the peer in time")
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        let got = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = match tokio::time::timeout(left, sock.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) | Err(_) => 0,
            };
            buf.extend_from_slice(&chunk[..n]);
            match parse(&buf) {
                Ok((h, used)) if buf.len() >= used + more || n == 0 => break Some(h.source()),
                Err(e) if !e.is_incomplete() => {
                    panic!("peer sent an invalid header: {e}: {buf:02x?}")
                }
                _ if n == 0 => break None,
                _ => {}
            }
        };
        if got == Some(Some(want)) {
            return buf;
        }
    }
}

/// A client connection from `local` (any port) to `to`, which sends
/// `hello\r\n` and stays open.
async fn client(local: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = if local.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    s.write_all(b"hello\r\n").await.unwrap();
    s
}

fn assert_tail(buf: &[u8], used: usize) {
    assert!(
        buf[used..].starts_with(b"hello\r\n"),
        "after the header: {:?}",
        &buf[used..]
    );
}

fn haproxy(dir: &Path, server_line: &str, extra_frontend: &str, fe4: u16, fe6: u16) -> Child {
    let cfg = format!(
        "global\n  maxconn 100\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 20s\n  timeout server 20s\n\
         frontend fe\n  bind 127.0.0.1:{fe4}\n  bind [::1]:{fe6}\n{extra_frontend}  default_backend be\n\
         backend be\n  {server_line}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Process::new(peer("haproxy"))
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Process::new(peer("haproxy"));
    cmd.arg("-db").arg("-f").arg(&path);
    let child = Child::spawn("haproxy", cmd);
    wait_for_tcp(SocketAddr::new(ip("127.0.0.1"), fe4));
    child
}

struct Setup {
    _dir: tempfile::TempDir,
    _child: Child,
    listener: TcpListener,
    fe4: SocketAddr,
    fe6: SocketAddr,
}

async fn with_haproxy(server_opts: &str, extra_frontend: &str) -> Setup {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let be = listener.local_addr().unwrap();
    let fe4 = free_port(ip("127.0.0.1"));
    let fe6 = free_port(ip("::1"));
    let dir = temp_dir();
    let line = format!("server s {be} {server_opts}");
    let child = haproxy(dir.path(), &line, extra_frontend, fe4, fe6);
    Setup {
        _dir: dir,
        _child: child,
        listener,
        fe4: SocketAddr::new(ip("127.0.0.1"), fe4),
        fe6: SocketAddr::new(ip("::1"), fe6),
    }
}

#[tokio::test]
async fn haproxy_send_proxy_v1() {
    let s = with_haproxy("send-proxy", "").await;
    for (from, fe) in [(ip("127.0.0.2"), s.fe4), (ip("::1"), s.fe6)] {
        let c = client(from, fe).await;
        let want = c.local_addr().unwrap();
        let buf = capture(&s.listener, want, 7).await;
        let (h, used) = parse(&buf).unwrap();
        assert_eq!(h.version(), 1, "{:?}", String::from_utf8_lossy(&buf));
        assert_eq!(h.source(), Some(want));
        assert_eq!(h.destination(), Some(fe));
        assert_tail(&buf, used);
    }
}

#[tokio::test]
async fn haproxy_send_proxy_v2() {
    let s = with_haproxy("send-proxy-v2", "").await;
    for (from, fe) in [(ip("127.0.0.3"), s.fe4), (ip("::1"), s.fe6)] {
        let c = client(from, fe).await;
        let want = c.local_addr().unwrap();
        let buf = capture(&s.listener, want, 7).await;
        let (h, used) = parse(&buf).unwrap();
        assert_eq!((h.version(), h.command()), (2, Command::Proxy));
        assert_eq!(h.source(), Some(want));
        assert_eq!(h.destination(), Some(fe));
        assert_tail(&buf, used);
    }
}

#[tokio::test]
async fn haproxy_send_proxy_v2_crc32c_unique_id() {
    let s = with_haproxy(
        "send-proxy-v2 proxy-v2-options crc32c,unique-id",
        "  unique-id-format uid-%ci-%cp\n",
    )
    .await;
    let c = client(ip("127.0.0.4"), s.fe4).await;
    let want = c.local_addr().unwrap();
    let buf = capture(&s.listener, want, 7).await;
    let (h, used) = parse(&buf).unwrap();
    assert_eq!(h.source(), Some(want));
    assert_eq!(h.destination(), Some(s.fe4));
    assert_eq!(h.crc32c(), Crc32cStatus::Valid);
    let uid = format!("uid-{}-{}", want.ip(), want.port());
    assert_eq!(h.tlvs().find(0x05), Some(Tlv::UniqueId(uid.as_bytes())));
    assert_tail(&buf, used);
    // One flipped bit in the captured header is caught by the checksum.
    let mut bad = buf[..used].to_vec();
    bad[18] ^= 1;
    assert!(!parse(&bad).unwrap_err().is_incomplete());
    // The same capture through the tokio adapter, one byte at a time.
    let (mut w, r) = tokio::io::duplex(16);
    let feed = tokio::spawn(async move {
        for b in buf {
            w.write_all(&[b]).await.unwrap();
        }
        w
    });
    let policy = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()]);
    let a = accept(r, "127.0.0.1:9".parse().unwrap(), &policy, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        (a.observed.addr, a.observed.provenance, a.observed.trusted),
        (want, Provenance::ProxyV2, true)
    );
    let mut stream = a.stream;
    let mut hello = [0u8; 7];
    stream.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello\r\n");
    drop(feed.await.unwrap());
}

#[tokio::test]
async fn nginx_stream_proxy_protocol() {
    let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    assert!(
        module.exists(),
        "nginx's stream module is missing: apt-get install libnginx-mod-stream (as root)"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let be = listener.local_addr().unwrap();
    let fe4 = SocketAddr::new(ip("127.0.0.1"), free_port(ip("127.0.0.1")));
    let fe6 = SocketAddr::new(ip("::1"), free_port(ip("::1")));
    let dir = temp_dir();
    let prefix = dir.path();
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let conf = format!(
        "load_module {module};\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log stderr notice;\npid {pid};\n\
         events {{ worker_connections 64; }}\n\
         stream {{\n  server {{\n    listen {fe4};\n    listen {fe6};\n    proxy_pass {be};\n    proxy_protocol on;\n  }}\n}}\n",
        module = module.display(),
        pid = prefix.join("nginx.pid").display(),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Process::new(peer("nginx"));
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg("stderr");
    let _nginx = Child::spawn("nginx", cmd);
    wait_for_tcp(fe4);
    for (from, fe, want_version_text) in [(ip("127.0.0.5"), fe4, "TCP4"), (ip("::1"), fe6, "TCP6")]
    {
        let c = client(from, fe).await;
        let want = c.local_addr().unwrap();
        let buf = capture(&listener, want, 7).await;
        let (h, used) = parse(&buf).unwrap();
        assert_eq!(h.version(), 1);
        assert!(buf.starts_with(format!("PROXY {want_version_text} ").as_bytes()));
        assert_eq!(h.source(), Some(want));
        assert_eq!(h.destination(), Some(fe));
        assert_tail(&buf, used);
    }
}

#[tokio::test]
async fn curl_haproxy_protocol() {
    for (local, url_host, bind) in [
        ("127.0.0.6", "127.0.0.1", "127.0.0.1:0"),
        ("::1", "[::1]", "[::1]:0"),
    ] {
        let listener = TcpListener::bind(bind).await.unwrap();
        let be = listener.local_addr().unwrap();
        let local_ip = ip(local);
        let port = free_port(local_ip);
        let mut cmd = Process::new(peer("curl"));
        cmd.args([
            "-s",
            "-g",
            "--max-time",
            "15",
            "--haproxy-protocol",
            "--interface",
            local,
        ])
        .args(["--local-port", &port.to_string()])
        .arg(format!("http://{url_host}:{}/pin", be.port()));
        let _curl = Child::spawn("curl", cmd);
        let want = SocketAddr::new(local_ip, port);
        let buf = capture(&listener, want, 0).await;
        let (h, used): (Header<'_>, usize) = parse(&buf).unwrap();
        assert_eq!(h.version(), 1);
        assert_eq!(h.source(), Some(want));
        assert_eq!(h.destination(), Some(be));
        assert!(buf[used..].starts_with(b"GET /pin HTTP/1.1\r\n") || buf.len() == used);
    }
}
