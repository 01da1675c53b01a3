//! Fixtures: a parent cgroup per test, a Python socket probe, listeners, a test OS user.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ippin_restrict::{Enforcer, EnforcerConfig, NetEvent, NetworkRestrictions, Session};

/// A parent cgroup of its own for one test, removed when dropped (after its sessions).
pub(crate) struct Parent {
    pub(crate) path: PathBuf,
}

impl Parent {
    pub(crate) fn new(test: &str) -> Parent {
        assert_eq!(
            nix::unistd::geteuid().as_raw(),
            0,
            "these tests need root (cgroups and eBPF)"
        );
        let mount = ippin_restrict::cgroup2_mount().expect("a cgroup v2 mount");
        let path = mount.join(format!("ippin-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("make the test parent cgroup");
        Parent { path }
    }

    pub(crate) fn enforcer(&self, policy: &NetworkRestrictions, observe: bool) -> Enforcer {
        Enforcer::new(
            &EnforcerConfig::default()
                .parent(&self.path)
                .observe(observe),
            policy,
        )
        .expect("enforcement set up")
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) fn policy(allow: &[&str], deny: &[&str]) -> NetworkRestrictions {
    let p = |l: &[&str]| l.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>();
    NetworkRestrictions::from_rules(&p(allow), &p(deny)).unwrap()
}

/// The Python interpreter itself (not a shim), so that its `comm` is known.
pub(crate) fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 (scripts/install-peers)");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// What the kernel shows as the name (`comm`) of a program started from `path`.
pub(crate) fn comm_of(path: &str) -> String {
    let base = Path::new(path).file_name().unwrap().to_string_lossy();
    base.chars().take(15).collect()
}

/// The probe: for each line `tcp|tfo|udp|pktinfo|icmp|raw|rthdr|srcroute host port
/// [bind-address]` on stdin (`rthdr`, `srcroute`: a UDP send with an IPv6 routing header or
/// an IPv4 loose source route through `bind-address`; `flowopts`: a flow label request, with
/// an option attached when `bind-address` is `opts`, then a UDP send)
/// (`icmp`: an ICMP "ping" socket sending an echo request; `raw`: a raw ICMP socket, made
/// only);
/// (`pktinfo`: a UDP `sendmsg` whose source is given in an `IP_PKTINFO` message, number 8,
/// which Python does not name; `tfo`: TCP Fast Open, a
/// `sendto` with `MSG_FASTOPEN` that connects), tries it and prints `ok` or
/// `err <errno> <strerror>`; `devtcp`, `devudp`: a TCP connect or UDP send from a socket
/// bound to the device `bind-address` (`SO_BINDTODEVICE`); `bcast`: `SO_BROADCAST` set on a
/// UDP socket; `uconn`: a UDP socket connected to `host` `port` and kept; `ucork`: an
/// unconnected one, kept, a datagram to `host` `port` begun with `MSG_MORE`; `usend`:
/// `send(2)` of `host` as data on the kept socket; `utos`: the same with `sendmsg(2)` and an `IP_TOS` control
/// message; `rconn`, `rsend`: the same for a raw ICMP socket, an echo request sent to
/// `host`; `tconn`: a TCP socket connected to `host` `port` and kept (for `usend`);
/// `tlisten`: a TCP listener on `host` (port 0), kept, answering `port <n>`; `taccept`: one
/// connection accepted on it, kept (for `usend`). Stays running until stdin closes.
pub(crate) const PROBE: &str = r#"
import socket, struct, sys
held = None
listener = None
for line in sys.stdin:
    kind, host, port, *bind = line.split()
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = None
    try:
        if kind == 'uconn':
            # a UDP socket connected now and kept, for `usend` later
            held = socket.socket(fam, socket.SOCK_DGRAM)
            held.connect((host, int(port)))
            print('ok', flush=True)
            continue
        if kind == 'tconn':
            # a TCP connection made now and kept, for `usend` later
            held = socket.create_connection((host, int(port)), timeout=5)
            print('ok', flush=True)
            continue
        if kind == 'tlisten':
            listener = socket.socket(fam, socket.SOCK_STREAM)
            listener.bind((host, 0))
            listener.listen(1)
            print('port', listener.getsockname()[1], flush=True)
            continue
        if kind == 'taccept':
            listener.settimeout(5)
            held, _ = listener.accept()
            print('ok', flush=True)
            continue
        if kind == 'ucork':
            # an unconnected UDP socket, kept, with a datagram to `host` `port` corked
            held = socket.socket(fam, socket.SOCK_DGRAM)
            held.sendto(b'corked-', socket.MSG_MORE, (host, int(port)))
            print('ok', flush=True)
            continue
        if kind == 'usend':
            # send(2) on the kept socket (no address: no sock_addr hook runs), `host` as data
            held.sendall(host.encode())
            print('ok', flush=True)
            continue
        if kind == 'rconn':
            # a raw ICMP socket connected to `host` `port` and kept, for `rsend`
            proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
            held = socket.socket(fam, socket.SOCK_RAW, proto)
            held.connect((host, int(port)))
            print('ok', flush=True)
            continue
        if kind == 'rsend':
            # an echo request to `host` on the kept raw socket
            held.sendto(bytes([8, 0, 0, 0, 0, 1, 0, 1]), (host, 0))
            print('ok', flush=True)
            continue
        if kind == 'utos':
            # sendmsg(2) on the kept socket with an IP_TOS control message and no address
            held.sendmsg([host.encode()], [(socket.IPPROTO_IP, socket.IP_TOS, struct.pack('i', 0))])
            print('ok', flush=True)
            continue
        if kind == 'bcast':
            # SO_BROADCAST set on a UDP socket, nothing sent
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            print('ok', flush=True)
            continue
        if kind in ('icmp', 'raw'):
            proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
            s = socket.socket(fam, socket.SOCK_DGRAM if kind == 'icmp' else socket.SOCK_RAW, proto)
            if kind == 'icmp':
                s.sendto(bytes([128 if fam == socket.AF_INET6 else 8, 0, 0, 0, 0, 1, 0, 1]), (host, 0))
            print('ok', flush=True)
            continue
        s = socket.socket(fam, socket.SOCK_DGRAM if kind in ('udp', 'pktinfo', 'rthdr', 'srcroute', 'flowopts', 'devudp') else socket.SOCK_STREAM)
        s.settimeout(5)
        if bind and kind in ('devtcp', 'devudp'):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bind[0].encode())
        elif bind and kind not in ('pktinfo', 'rthdr', 'srcroute', 'flowopts'):
            s.bind((bind[0], 0))
        if kind in ('tcp', 'devtcp'):
            s.connect((host, int(port)))
        elif kind == 'pktinfo':
            # UDP with the source given per message (IP_PKTINFO), not bound
            info = struct.pack('i4s4s', 0, socket.inet_aton(bind[0]), bytes(4))
            s.sendmsg([b'ippin'], [(socket.IPPROTO_IP, 8, info)], 0, (host, int(port)))
        elif kind == 'rthdr':
            # An IPv6 segment routing header (type 4) whose next segment is `bind`: the
            # kernel would send the datagram there, not to `host`.
            srh = bytes([0, 4, 4, 1, 1, 0, 0, 0]) + bytes(16) + socket.inet_pton(socket.AF_INET6, bind[0])
            s.setsockopt(socket.IPPROTO_IPV6, 57, srh)
            s.sendto(b'ippin', (host, int(port)))
        elif kind == 'flowopts':
            # A flow label request (32 bytes: ::1, a random label, GET, share ANY, CREATE)
            # with an option after it in control-message form (IPV6_TCLASS 8).
            req = socket.inet_pton(socket.AF_INET6, '::1') + struct.pack('=IBBHHHI', socket.htonl(__import__('random').randrange(1, 0xfffff)), 0, 255, 1, 0, 60, 0)
            opt = struct.pack('=QIIi', 20, 41, 67, 8) + bytes(4)
            s.setsockopt(socket.IPPROTO_IPV6, 32, req + (opt if bind and bind[0] == 'opts' else b''))
            s.sendto(b'ippin', (host, int(port)))
        elif kind == 'srcroute':
            # An IPv4 loose source route (IP_OPTIONS, LSRR) through `bind`.
            s.setsockopt(socket.IPPROTO_IP, 4, bytes([0x83, 7, 4]) + socket.inet_aton(bind[0]) + bytes(1))
            s.sendto(b'ippin', (host, int(port)))
        elif kind == 'tfo':
            s.sendto(b'ippin', socket.MSG_FASTOPEN, (host, int(port)))
        else:
            s.sendto(b'ippin', (host, int(port)))
        print('ok', flush=True)
    except OSError as e:
        print('err', e.errno, e.strerror, flush=True)
    finally:
        if s is not None:
            s.close()
"#;

/// A running probe inside a session.
pub(crate) struct Probe {
    pub(crate) child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Probe {
    pub(crate) fn start(session: &Session) -> Probe {
        Probe::spawn(Some(session), None)
    }

    /// The probe inside a session, run in the network namespace `netns`.
    pub(crate) fn start_in(session: &Session, netns: &NetNs) -> Probe {
        Probe::spawn(Some(session), Some(netns))
    }

    /// The probe in the network namespace `netns`, outside any session, for comparison.
    pub(crate) fn outside_in(netns: &NetNs) -> Probe {
        Probe::spawn(None, Some(netns))
    }

    /// The probe outside any session, for comparison.
    pub(crate) fn outside() -> Probe {
        Probe::spawn(None, None)
    }

    /// The probe, in `session` when given, in `netns` (through `ip netns exec`) when given.
    fn spawn(session: Option<&Session>, netns: Option<&NetNs>) -> Probe {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, python()]);
                c
            }
            None => Command::new(python()),
        };
        cmd.args(["-c", PROBE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(session) = session {
            session.confine(&mut cmd);
        }
        let mut child = cmd
            .spawn()
            .expect("spawn the probe (python3, ip: scripts/install-peers)");
        let out = BufReader::new(child.stdout.take().unwrap());
        Probe { child, out }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tries `kind` (`tcp`, `tfo` or `udp`) to `host` `port`; `Ok(())` or `Err(errno text)`.
    pub(crate) fn try_(&mut self, kind: &str, host: &str, port: u16) -> Result<(), String> {
        self.try_from(kind, host, port, "")
    }

    /// Sends one request line, returns the answer line as it is.
    pub(crate) fn ask(&mut self, request: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).expect("probe answer");
        line.trim().to_owned()
    }

    /// As [`Probe::try_`], from a socket bound to `bind` (port 0) first, unless empty.
    pub(crate) fn try_from(
        &mut self,
        kind: &str,
        host: &str,
        port: u16,
        bind: &str,
    ) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{kind} {host} {port} {bind}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).expect("probe answer");
        let line = line.trim();
        if line == "ok" {
            Ok(())
        } else {
            Err(line.to_owned())
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const EPERM: &str = "err 1 Operation not permitted";

/// A TCP listener on `ip` that answers every connection with a tiny HTTP response (for curl),
/// on a thread that stops when dropped.
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Listener {
    pub(crate) fn http(ip: &str) -> Listener {
        let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).expect("bind listener");
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).ok();
                        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener { addr, stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits (at most 5 s) for an event that satisfies `want`; the others seen on the way are
/// shown in the failure message.
pub(crate) fn wait_event(
    events: &Receiver<NetEvent>,
    want: impl Fn(&NetEvent) -> bool,
) -> NetEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if want(&ev) => return ev,
            Ok(ev) => seen.push(ev),
            Err(_) => panic!("no matching event within 5 s; saw {seen:#?}"),
        }
    }
}

/// Polls `f` every 20 ms for at most 5 s.
pub(crate) fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A system user made for one test with `useradd`, removed (with `userdel`) when dropped,
/// also when the test fails.
pub(crate) struct TestUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl TestUser {
    pub(crate) fn new() -> TestUser {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("ippinrt{}x{n}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", &name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
        let user = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new user");
        TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A network namespace made for one test (`ip netns add`), deleted when dropped: up
/// loopback and an interface `d0` with `address` (a /32), up.
pub(crate) struct NetNs {
    pub(crate) name: String,
}

impl NetNs {
    pub(crate) fn new(tag: &str, address: &str) -> NetNs {
        let name = format!("ippin-t-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2, scripts/install-peers)");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        // A veth pair with both ends inside (this kernel has no dummy device).
        ip(&[
            "-n", &ns.name, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "d0",
        ]);
        ip(&["-n", &ns.name, "link", "set", "d0", "up"]);
        ip(&["-n", &ns.name, "link", "set", "d1", "up"]);
        ns
    }

    /// A TCP listener on `ip` in this namespace (connections complete in its backlog),
    /// until dropped; its port.
    pub(crate) fn listener(&self, ip: &str) -> (std::process::Child, u16) {
        let script = format!(
            "import socket, sys\ns = socket.socket()\ns.bind(('{ip}', 0))\ns.listen(64)\n\
             print(s.getsockname()[1], flush=True)\nsys.stdin.read()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, python(), "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the listener");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the listener's port");
        let port = line.trim().parse().expect("a port");
        (child, port)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

pub(crate) use ippin_test_support::wait_until;
