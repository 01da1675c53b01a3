//! Sessions under a policy: real processes, real sockets, the real kernel.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use ippin_restrict::{Enforcer, EnforcerConfig, Error, NetAction, NetOperation, SocketKind};

use crate::support::*;

/// TCP connect and UDP sendto, IPv4 and IPv6, allowed and denied, with Python sockets; each
/// denial fails with EPERM and becomes an event naming the program and its pid.
#[test]
fn python_sockets_allowed_and_denied_v4_v6_tcp_udp() {
    let parent = Parent::new("python");
    let enforcer = parent.enforcer(
        &policy(&["127.0.0.0/8", "::1/128"], &["127.0.0.3/32"]),
        false,
    );
    let session = enforcer.session("python").unwrap();
    let events = session.take_events().unwrap();
    let allowed = Listener::http("127.0.0.1");
    let denied = Listener::http("127.0.0.3");
    let v6 = Listener::http("::1");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();

    let mut probe = Probe::start(&session);
    let pid = probe.pid();
    let comm = comm_of(python());

    assert_eq!(probe.try_("tcp", "127.0.0.1", allowed.addr.port()), Ok(()));
    assert_eq!(probe.try_("tcp", "::1", v6.addr.port()), Ok(()));
    assert_eq!(probe.try_("udp", "127.0.0.1", udp_port), Ok(()));
    let mut buf = [0u8; 16];
    let (n, _) = udp
        .recv_from(&mut buf)
        .expect("the allowed datagram arrives");
    assert_eq!(&buf[..n], b"ippin");

    assert_eq!(
        probe.try_("tcp", "127.0.0.3", denied.addr.port()),
        Err(EPERM.into())
    );
    let ev = wait_event(&events, |e| e.dst == denied.addr);
    assert_eq!(ev.pid, pid);
    assert_eq!(ev.program, comm);
    assert_eq!(Some(ev.cgroup_id), session.cgroup_id());
    assert_eq!(ev.operation, NetOperation::Connect);
    assert_eq!(ev.action, NetAction::Denied);
    assert_eq!(ev.socket, SocketKind::Stream);
    let audit = ev.audit_event("alice", "alice", "sid-1");
    assert_eq!(audit.code, "T4002I");
    assert_eq!(audit.dst_addr, "127.0.0.3");
    assert_eq!(audit.dst_port, denied.addr.port());
    assert_eq!(audit.action, NetAction::Denied);

    // TCP Fast Open connects inside sendto(MSG_FASTOPEN): decided as a connect.
    assert_eq!(
        probe.try_("tfo", "127.0.0.3", denied.addr.port()),
        Err(EPERM.into())
    );
    // (allowed: it connects, or is in progress on this socket with a timeout)
    assert_ne!(
        probe.try_("tfo", "127.0.0.1", allowed.addr.port()),
        Err(EPERM.into())
    );

    assert_eq!(probe.try_("udp", "127.0.0.3", 9), Err(EPERM.into()));
    let ev = wait_event(&events, |e| e.dst.port() == 9);
    assert_eq!(
        (ev.operation, ev.socket, ev.pid),
        (NetOperation::Send, SocketKind::Datagram, pid)
    );

    // IPv6 denied: a new policy that denies ::1.
    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["::1/128"]))
        .unwrap();
    assert_eq!(probe.try_("tcp", "::1", v6.addr.port()), Err(EPERM.into()));
    let ev = wait_event(&events, |e| e.dst == v6.addr);
    assert_eq!((ev.pid, ev.action), (pid, NetAction::Denied));
    assert_eq!(ev.audit_event("a", "a", "s").version, 6);
    assert_eq!(probe.try_("udp", "::1", 9), Err(EPERM.into()));
    wait_event(&events, |e| {
        e.dst.ip() == "::1".parse::<IpAddr>().unwrap() && e.operation == NetOperation::Send
    });

    drop(probe);
    session.end().unwrap();
}

/// With `observe`, allowed decisions are reported too (action 0); without a policy, all is
/// allowed.
#[test]
fn observe_reports_allowed_and_no_policy_allows_all() {
    let parent = Parent::new("observe");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), true);
    assert!(
        enforcer
            .summary()
            .ends_with("policy: none (all allowed); protected endpoints: 0; observe: on"),
        "{}",
        enforcer.summary()
    );
    let session = enforcer.session("observe").unwrap();
    let events = session.take_events().unwrap();
    let l = Listener::http("127.0.0.3");
    let mut probe = Probe::start(&session);
    assert_eq!(probe.try_("tcp", "127.0.0.3", l.addr.port()), Ok(()));
    let ev = wait_event(&events, |e| e.dst == l.addr);
    assert_eq!(ev.action, NetAction::Observed);
    assert_eq!(ev.pid, probe.pid());

    enforcer.set_observe(false).unwrap();
    assert_eq!(probe.try_("tcp", "127.0.0.3", l.addr.port()), Ok(()));
    assert_eq!(
        events.recv_timeout(Duration::from_millis(300)).ok(),
        None,
        "no event for an allowed connect when not observing"
    );
}

/// curl and nc, as a user would run them.
#[test]
fn curl_and_nc_are_refused_with_eperm() {
    let parent = Parent::new("tools");
    let enforcer = parent.enforcer(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]), false);
    let session = enforcer.session("tools").unwrap();
    let events = session.take_events().unwrap();
    let allowed = Listener::http("127.0.0.1");
    let denied = Listener::http("127.0.0.3");

    let run = |prog: &str, args: &[String]| {
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null());
        session.confine(&mut cmd);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e} (scripts/install-peers)"));
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (st, out) = run(
        "curl",
        &[
            "-sS".into(),
            "--max-time".into(),
            "5".into(),
            format!("http://{}/", allowed.addr),
        ],
    );
    assert!(st.success(), "curl to the allowed address: {out}");
    assert_eq!(out, "ok");

    let (st, out) = run(
        "curl",
        &[
            "-sS".into(),
            "--max-time".into(),
            "5".into(),
            format!("http://{}/", denied.addr),
        ],
    );
    assert_eq!(st.code(), Some(7), "curl could not connect: {out}");
    let ev = wait_event(&events, |e| e.dst == denied.addr);
    assert_eq!(ev.program, "curl");

    let (st, out) = run(
        "nc",
        &[
            "-v".into(),
            "-z".into(),
            "-w".into(),
            "3".into(),
            "127.0.0.3".into(),
            denied.addr.port().to_string(),
        ],
    );
    assert!(!st.success());
    assert!(out.contains("Operation not permitted"), "nc: {out}");
    let ev = wait_event(&events, |e| e.program == "nc");
    assert_eq!((ev.dst, ev.operation), (denied.addr, NetOperation::Connect));

    // nc -u connects its UDP socket: decided at connect.
    let (st, out) = run(
        "nc",
        &[
            "-v".into(),
            "-u".into(),
            "-z".into(),
            "-w".into(),
            "1".into(),
            "127.0.0.3".into(),
            "9".into(),
        ],
    );
    assert!(
        !st.success() && out.contains("Operation not permitted"),
        "nc -u: {out}"
    );
    let ev = wait_event(&events, |e| {
        e.program == "nc" && e.socket == SocketKind::Datagram
    });
    assert_eq!(ev.action, NetAction::Denied);
}

/// The kernel's decision is `NetworkRestrictions::decide`'s, on destinations as the kernel
/// routes them: the unspecified addresses, IPv4-mapped and embedded-IPv4 IPv6 addresses.
/// Allowed destinations are loopback ones only (closed ports: refused, not EPERM); others
/// are only tried where the policy denies them, so nothing leaves the machine.
#[test]
fn kernel_decides_as_the_policy_does() {
    let parent = Parent::new("differential");
    let cases: &[(&[&str], &[&str])] = &[
        (&["127.0.0.0/8", "::/0"], &["127.0.0.1/32"]),
        (&["127.0.0.1/32"], &[]),
        (&["127.0.0.0/8"], &["127.0.0.9/32"]),
        (&["127.0.0.0/8", "::1/128"], &[]),
        (&["::/0", "0.0.0.0/0"], &["127.0.0.0/8", "::1/128"]),
        (&["::1/128"], &["127.0.0.0/8"]),
        // Multicast and broadcast need a rule of their own, whatever /0 says.
        (&["0.0.0.0/0", "::/0"], &[]),
    ];
    let dsts = [
        "127.0.0.1",
        "127.0.0.9",
        "0.0.0.0",
        "::",
        "::1",
        "::ffff:127.0.0.9",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "::127.0.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "ff02::1",
        "::ffff:224.0.0.251",
    ];
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("differential").unwrap();
    let mut probe = Probe::start(&session);
    for (allow, deny) in cases {
        let p = policy(allow, deny);
        enforcer.set_policy(&p).unwrap();
        for dst in dsts {
            let ip: IpAddr = dst.parse().unwrap();
            let want = p.decide(ip);
            let local = ippin_policy::kernel_destination(ip).is_loopback();
            if want.is_allowed() && !local {
                continue; // would leave the machine
            }
            for kind in ["tcp", "udp"] {
                let got = probe.try_(kind, dst, 9);
                let refused = got == Err(EPERM.to_string());
                assert_eq!(
                    refused,
                    !want.is_allowed(),
                    "{kind} to {dst} under allow {allow:?} deny {deny:?}: kernel {got:?}, policy {want:?}"
                );
            }
        }
    }
}

/// `0.0.0.0` reaches 127.0.0.1 and `::ffff:127.0.0.9` reaches 127.0.0.9: decided as such.
#[test]
fn unspecified_and_mapped_destinations_reach_what_is_decided() {
    let parent = Parent::new("routes");
    let enforcer = parent.enforcer(&policy(&["127.0.0.1/32"], &[]), false);
    let session = enforcer.session("routes").unwrap();
    let events = session.take_events().unwrap();
    let lo = Listener::http("127.0.0.1");
    let nine = Listener::http("127.0.0.9");
    let mut probe = Probe::start(&session);
    // Allowed as 127.0.0.1, and it does reach the listener on 127.0.0.1.
    assert_eq!(probe.try_("tcp", "0.0.0.0", lo.addr.port()), Ok(()));
    assert_eq!(
        probe.try_("tcp", "::ffff:127.0.0.9", nine.addr.port()),
        Err(EPERM.into())
    );
    let ev = wait_event(&events, |e| e.dst.port() == nine.addr.port());
    assert_eq!(ev.audit_event("u", "l", "s").dst_addr, "127.0.0.9");

    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["127.0.0.1/32"]))
        .unwrap();
    assert_eq!(
        probe.try_("tcp", "0.0.0.0", lo.addr.port()),
        Err(EPERM.into())
    );
    assert_eq!(
        probe.try_("udp", "0.0.0.0", lo.addr.port()),
        Err(EPERM.into())
    );
    assert_eq!(
        probe.try_("tcp", "::ffff:127.0.0.9", nine.addr.port()),
        Ok(())
    );
}

/// `0.0.0.0` from a bound socket reaches the bound address (Linux routes an unspecified
/// destination to the source): decided as that address, not as 127.0.0.1. `::` from a
/// socket bound to an IPv4-mapped address reaches 127.0.0.1.
#[test]
fn unspecified_destination_from_a_bound_socket_is_decided_as_the_bound_address() {
    let parent = Parent::new("bound");
    let enforcer = parent.enforcer(&policy(&["127.0.0.1/32", "::1/128"], &[]), false);
    let session = enforcer.session("bound").unwrap();
    let seven = Listener::http("127.0.0.7");
    let lo = Listener::http("127.0.0.1");
    let udp = UdpSocket::bind("127.0.0.7:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let mut probe = Probe::start(&session);

    // Unrestricted, these reach the listeners on 127.0.0.7 (denied: not 127.0.0.1).
    let port = seven.addr.port();
    let denied = Err(EPERM.to_string());
    assert_eq!(probe.try_from("tcp", "0.0.0.0", port, "127.0.0.7"), denied);
    assert_eq!(
        probe.try_from("udp", "0.0.0.0", udp_port, "127.0.0.7"),
        denied
    );
    assert_eq!(
        probe.try_from("tcp", "::ffff:0.0.0.0", port, "::ffff:127.0.0.7"),
        denied
    );
    assert_eq!(probe.try_from("tfo", "0.0.0.0", port, "127.0.0.7"), denied);
    assert_eq!(
        probe.try_from("pktinfo", "0.0.0.0", udp_port, "127.0.0.7"),
        denied
    );
    // Bound to the allowed address, it is allowed and reaches it.
    assert_eq!(
        probe.try_from("tcp", "0.0.0.0", lo.addr.port(), "127.0.0.1"),
        Ok(())
    );
    // `::` on a socket bound to a mapped address goes to 127.0.0.1 (allowed), not ::1.
    enforcer.set_policy(&policy(&["127.0.0.0/8"], &[])).unwrap();
    assert_eq!(
        probe.try_from("tcp", "::", lo.addr.port(), "::ffff:127.0.0.7"),
        Ok(())
    );
    enforcer.set_policy(&policy(&["::1/128"], &[])).unwrap();
    assert_eq!(
        probe.try_from("tcp", "::", lo.addr.port(), "::ffff:127.0.0.7"),
        denied
    );
    assert_eq!(
        probe
            .try_("tcp", "::", lo.addr.port())
            .as_ref()
            .err()
            .map(String::as_str),
        Some("err 111 Connection refused")
    );
}

/// `0.0.0.0` from a socket bound to a device goes, left to the kernel, to that device's
/// address, not to 127.0.0.1: the programs hand the kernel the address they decided, so the
/// connection goes there or nowhere. In a network namespace with a dummy interface holding
/// 198.18.0.1, a listener on it, loopback allowed (and, second, no policy but the listener
/// protected): from the session neither TCP nor UDP reaches it.
#[test]
fn unspecified_destination_on_a_bound_device_goes_where_it_was_decided() {
    let ns = NetNs::new("dev", "198.18.0.1");
    let (mut listener, port) = ns.listener("198.18.0.1");
    // Outside any session the trick works: the reason for this test.
    let mut outside = Probe::outside_in(&ns);
    assert_eq!(outside.try_from("devtcp", "0.0.0.0", port, "d0"), Ok(()));

    let parent = Parent::new("dev");
    let enforcer = parent.enforcer(&policy(&["127.0.0.0/8"], &[]), false);
    let session = enforcer.session("dev").unwrap();
    let mut probe = Probe::start_in(&session, &ns);
    assert_eq!(
        probe.try_("tcp", "198.18.0.1", port),
        Err(EPERM.into()),
        "the address itself is denied"
    );
    let got = probe.try_from("devtcp", "0.0.0.0", port, "d0");
    assert!(got.is_err() && got != Err(EPERM.into()), "{got:?}");
    let got = probe.try_from("devtcp", "::ffff:0.0.0.0", port, "d0");
    assert!(got.is_err(), "{got:?}");

    // No policy, the listener protected (a load balancer's address it trusts, say).
    enforcer
        .set_policy(&NetworkRestrictions::allow_all())
        .unwrap();
    let protected: SocketAddr = format!("198.18.0.1:{port}").parse().unwrap();
    enforcer.protect(&[protected], &[]).unwrap();
    assert_eq!(probe.try_("tcp", "198.18.0.1", port), Err(EPERM.into()));
    let got = probe.try_from("devtcp", "0.0.0.0", port, "d0");
    assert!(got.is_err(), "{got:?}");
    drop(probe);
    let _ = listener.kill();
    let _ = listener.wait();
}

/// A policy change holds a running process from its next connect.
#[test]
fn policy_change_applies_to_the_next_connect_of_a_running_process() {
    let parent = Parent::new("live");
    let enforcer = parent.enforcer(&policy(&["127.0.0.0/8"], &[]), false);
    assert!(
        enforcer
            .summary()
            .ends_with("policy: 1 allow, 0 deny rules; protected endpoints: 0; observe: off")
    );
    let session = enforcer.session("live").unwrap();
    let events = session.take_events().unwrap();
    let l = Listener::http("127.0.0.5");
    let mut probe = Probe::start(&session);
    assert_eq!(probe.try_("tcp", "127.0.0.5", l.addr.port()), Ok(()));
    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["127.0.0.5/32"]))
        .unwrap();
    assert_eq!(
        probe.try_("tcp", "127.0.0.5", l.addr.port()),
        Err(EPERM.into())
    );
    let ev = wait_event(&events, |e| e.dst == l.addr);
    assert_eq!((ev.pid, ev.action), (probe.pid(), NetAction::Denied));
    enforcer
        .set_policy(&NetworkRestrictions::allow_all())
        .unwrap();
    assert_eq!(probe.try_("tcp", "127.0.0.5", l.addr.port()), Ok(()));
    enforcer.set_policy(&policy(&["::1/128"], &[])).unwrap();
    assert_eq!(
        probe.try_("tcp", "127.0.0.5", l.addr.port()),
        Err(EPERM.into())
    );
}

/// Forks, double forks and setsid stay in the session cgroup and restricted.
#[test]
fn forks_double_forks_and_setsid_stay_restricted() {
    let parent = Parent::new("forks");
    let enforcer = parent.enforcer(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]), false);
    let session = enforcer.session("forks").unwrap();
    let events = session.take_events().unwrap();
    let denied = Listener::http("127.0.0.3");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = format!(
        r#"
import os, socket, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        s = socket.socket()
        try:
            s.connect(('127.0.0.3', {port}))
            r = 'ok'
        except OSError as e:
            r = 'err %d %s' % (e.errno, e.strerror)
        cg = open('/proc/self/cgroup').read()
        open('{out}.tmp', 'w').write(r + '\n' + str(os.getpid()) + '\n' + cg)
        os.rename('{out}.tmp', '{out}')
    os._exit(0)
"#,
        port = denied.addr.port(),
        out = out.display()
    );
    let mut cmd = Command::new(python());
    cmd.args(["-c", &script]);
    session.confine(&mut cmd);
    assert!(cmd.status().unwrap().success());
    eventually("the grandchild wrote its result", || out.exists());
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(EPERM));
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    let rel = session.path().unwrap();
    let rel = rel
        .strip_prefix(ippin_restrict::cgroup2_mount().unwrap())
        .unwrap();
    assert!(
        text.contains(&format!("0::/{}\n", rel.display())),
        "the grandchild is in the session cgroup: {text}"
    );
    let ev = wait_event(&events, |e| e.pid == pid);
    assert_eq!(ev.action, NetAction::Denied);
}

/// An unprivileged login cannot move itself out, nor make a child cgroup, and is restricted
/// (placed in the session after the child dropped root).
#[test]
fn unprivileged_user_cannot_leave_the_session_cgroup() {
    let user = TestUser::new();
    let parent = Parent::new("escape");
    let enforcer = parent.enforcer(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]), false);
    let session = enforcer.session("escape").unwrap();
    let events = session.take_events().unwrap();
    let mount = ippin_restrict::cgroup2_mount().unwrap();
    let script = format!(
        "id -u; \
         echo $$ > {root}/cgroup.procs; echo root=$?; \
         echo $$ > {parent}/cgroup.procs; echo parent=$?; \
         mkdir {session}/sub; echo mkdir=$?; \
         echo 0 > {session}/cgroup.kill; echo kill=$?; \
         cat /proc/self/cgroup; \
         nc -v -z -w 3 127.0.0.3 9",
        root = mount.display(),
        parent = parent.path.display(),
        session = session.path().unwrap().display(),
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script])
        .uid(user.uid)
        .gid(user.gid)
        .current_dir("/");
    session.confine(&mut cmd);
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.starts_with(&format!("{}\n", user.uid)), "{text}");
    for step in ["root", "parent", "mkdir", "kill"] {
        assert!(
            !text.contains(&format!("{step}=0")),
            "{step} succeeded: {text}"
        );
    }
    assert!(text.contains("Permission denied"), "{text}");
    let rel = session.path().unwrap();
    let rel = rel.strip_prefix(&mount).unwrap().to_owned();
    assert!(text.contains(&format!("0::/{}\n", rel.display())), "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(!session.path().unwrap().join("sub").exists());
    let ev = wait_event(&events, |e| e.program == "nc");
    assert_eq!(ev.action, NetAction::Denied);
    drop(user);
}

use std::os::unix::process::CommandExt;

/// Ending a session kills what remains in it and removes its cgroup.
#[test]
fn ending_the_session_kills_its_processes_and_removes_the_cgroup() {
    let parent = Parent::new("end");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("end").unwrap();
    let path = session.path().unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sleep 300 & sleep 300"]);
    session.confine(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    eventually("both sleeps are in the session", || {
        session.processes().map(|p| p.len() >= 3).unwrap_or(false)
    });
    assert!(session.processes().unwrap().contains(&child.id()));
    session.end().unwrap();
    assert!(!path.exists(), "the cgroup is gone");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    // A process started outside can be added (here: one that runs nothing of a user's).
    let session = enforcer.session("added").unwrap();
    let mut outside = Command::new("sleep").arg("300").spawn().unwrap();
    session.add_process(outside.id()).unwrap();
    assert_eq!(session.processes().unwrap(), vec![outside.id()]);
    session.end().unwrap();
    assert_eq!(outside.wait().unwrap().signal(), Some(9));

    // Dropping a session ends it too.
    let session = enforcer.session("end2").unwrap();
    let path = session.path().unwrap();
    drop(session);
    assert!(!path.exists());
}

/// Enforcement that cannot be set up is a typed error, never a session without programs.
#[test]
fn missing_parent_is_a_typed_error() {
    let mount = ippin_restrict::cgroup2_mount().unwrap();
    let missing = mount.join(format!("ippin-missing-{}", std::process::id()));
    let err = Enforcer::new(
        &EnforcerConfig::default().parent(&missing),
        &policy(&["127.0.0.0/8"], &[]),
    )
    .unwrap_err();
    match &err {
        Error::Parent { path, reason } => {
            assert_eq!(path, &missing);
            assert!(reason.contains("No such file"), "{reason}");
        }
        other => panic!("expected Error::Parent, got {other:?}"),
    }
    assert!(err.to_string().contains("ippin-missing-"), "{err}");

    let not_cgroup = tempfile::tempdir().unwrap();
    let err = Enforcer::new(
        &EnforcerConfig::default().parent(not_cgroup.path()),
        &NetworkRestrictions::allow_all(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Parent { .. }), "{err:?}");
    assert!(err.to_string().contains("not on a cgroup v2"), "{err}");

    // A parent others may write cgroup.procs of (delegated) would let sessions move out.
    use std::os::unix::fs::PermissionsExt;
    let parent = Parent::new("delegated");
    let procs = parent.path.join("cgroup.procs");
    std::fs::set_permissions(&procs, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Enforcer::new(
        &EnforcerConfig::default().parent(&parent.path),
        &NetworkRestrictions::allow_all(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Parent { .. }), "{err:?}");
    assert!(
        err.to_string().contains("could move themselves out"),
        "{err}"
    );
}

/// Bad session names and duplicates are refused.
#[test]
fn session_names_are_checked_and_unique() {
    let parent = Parent::new("names");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    assert!(matches!(
        enforcer.session("../x"),
        Err(Error::SessionName { .. })
    ));
    let one = enforcer.session("dup").unwrap();
    assert!(matches!(
        enforcer.session("dup"),
        Err(Error::Cgroup { op: "mkdir", .. })
    ));
    one.end().unwrap();
}

use ippin_restrict::NetworkRestrictions;

/// Not root: a typed error. The test binary runs itself again as a test login (from a copy
/// the login can execute) and checks the error there.
#[test]
fn not_root_is_a_typed_error() {
    if std::env::var_os("IPPIN_RESTRICT_AS_USER").is_some() {
        let err =
            Enforcer::new(&EnforcerConfig::default(), &policy(&["127.0.0.0/8"], &[])).unwrap_err();
        assert!(
            matches!(err, Error::NotRoot { euid } if euid != 0),
            "{err:?}"
        );
        assert!(err.to_string().contains("needs root"), "{err}");
        return;
    }
    let user = TestUser::new();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("it");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy just written may still be open for writing in a child that another test's
    // thread forked meanwhile (ETXTBSY until that child execs): retry, bounded.
    let mut tries = 0;
    let out = loop {
        let ran = Command::new(&exe)
            .args([
                "--exact",
                "enforce::not_root_is_a_typed_error",
                "--test-threads=1",
            ])
            .env("IPPIN_RESTRICT_AS_USER", "1")
            .uid(user.uid)
            .gid(user.gid)
            .current_dir("/")
            .output();
        match ran {
            Err(e) if e.raw_os_error() == Some(26) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Protected endpoints (the access server's own listeners) are refused whatever the policy,
/// also with none, in every form that reaches them (0.0.0.0, ::ffff:a.b.c.d, the plain
/// address); the same address on another port, and the same port elsewhere, are not.
#[test]
fn protected_endpoints_are_refused_with_or_without_a_policy() {
    let parent = Parent::new("protect");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("protect").unwrap();
    let events = session.take_events().unwrap();
    let own = Listener::http("127.0.0.1");
    let other = Listener::http("127.0.0.1");
    let elsewhere = Listener::http("127.0.0.2");
    let own6 = Listener::http("::1");
    let mut probe = Probe::start(&session);
    // Before: nothing protected, all allowed.
    assert_eq!(probe.try_("tcp", "127.0.0.1", own.addr.port()), Ok(()));

    enforcer.protect(&[own.addr, own6.addr], &[]).unwrap();
    assert!(enforcer.summary().contains("protected endpoints: 2"));
    for (host, port) in [
        ("127.0.0.1", own.addr.port()),
        ("0.0.0.0", own.addr.port()),
        ("::ffff:127.0.0.1", own.addr.port()),
        ("::1", own6.addr.port()),
        ("::", own6.addr.port()),
    ] {
        assert_eq!(
            probe.try_("tcp", host, port),
            Err(EPERM.into()),
            "{host} {port}"
        );
    }
    assert_eq!(
        probe.try_("udp", "127.0.0.1", own.addr.port()),
        Err(EPERM.into())
    );
    let ev = wait_event(&events, |e| e.dst.port() == own.addr.port());
    assert_eq!(ev.action, NetAction::Denied);
    assert_eq!(probe.try_("tcp", "127.0.0.1", other.addr.port()), Ok(()));
    let moved = SocketAddr::new("127.0.0.2".parse().unwrap(), own.addr.port());
    // The same port on another address is not protected (nothing may listen there: refused
    // by the kernel, not EPERM).
    assert_ne!(
        probe.try_("tcp", &moved.ip().to_string(), moved.port()),
        Err(EPERM.into())
    );
    assert_eq!(
        probe.try_("tcp", "127.0.0.2", elsewhere.addr.port()),
        Ok(())
    );

    // A policy that allows all of loopback does not open them.
    enforcer
        .set_policy(&policy(&["127.0.0.0/8", "::1/128"], &[]))
        .unwrap();
    assert_eq!(
        probe.try_("tcp", "127.0.0.1", own.addr.port()),
        Err(EPERM.into())
    );
    assert_eq!(probe.try_("tcp", "127.0.0.1", other.addr.port()), Ok(()));

    // A listener on the unspecified address: its port, through every host network given,
    // in both families; the same port outside those networks is not protected.
    let any = SocketAddr::new("0.0.0.0".parse().unwrap(), elsewhere.addr.port());
    enforcer
        .protect(
            &[any],
            &["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        )
        .unwrap();
    assert_eq!(
        probe.try_("tcp", "127.0.0.2", elsewhere.addr.port()),
        Err(EPERM.into())
    );
    assert_eq!(
        probe.try_("tcp", "127.9.9.9", elsewhere.addr.port()),
        Err(EPERM.into())
    );
    assert_eq!(
        probe.try_("udp", "::1", elsewhere.addr.port()),
        Err(EPERM.into())
    );
    // The exact endpoints given before are gone now.
    assert_eq!(probe.try_("tcp", "127.0.0.1", own.addr.port()), Ok(()));
    enforcer
        .protect(&[any], &["127.0.0.2/32".parse().unwrap()])
        .unwrap();
    assert_eq!(
        probe.try_("udp", "127.0.0.3", elsewhere.addr.port()),
        Ok(())
    );
    assert_eq!(
        probe.try_("udp", "127.0.0.2", elsewhere.addr.port()),
        Err(EPERM.into())
    );

    // A listener on `[::ffff:0.0.0.0]` is an IPv4 wildcard: its port is protected as for
    // `0.0.0.0`.
    let mapped_any = SocketAddr::new("::ffff:0.0.0.0".parse().unwrap(), elsewhere.addr.port());
    enforcer
        .protect(&[mapped_any], &["127.0.0.0/8".parse().unwrap()])
        .unwrap();
    for host in ["127.0.0.2", "::ffff:127.0.0.2", "0.0.0.0"] {
        assert_eq!(
            probe.try_("tcp", host, elsewhere.addr.port()),
            Err(EPERM.into()),
            "{host}"
        );
    }

    // Lifted: reachable again.
    enforcer.protect(&[], &[]).unwrap();
    assert_eq!(
        probe.try_("tcp", "127.0.0.2", elsewhere.addr.port()),
        Ok(())
    );
}

/// Socket options that make the kernel send elsewhere than the address the hooks decide (an
/// IPv6 segment routing header: the datagram goes to its next segment; an IPv4 loose source
/// route) are refused in every session, with or without a policy, and reported. Outside a
/// session the same sends go through, so the refusal is the programs'.
#[test]
fn rerouting_socket_options_are_refused() {
    let mut outside = Probe::outside();
    assert_eq!(outside.try_from("rthdr", "::1", 9, "::1"), Ok(()));
    assert_eq!(
        outside.try_from("srcroute", "127.0.0.1", 9, "127.0.0.1"),
        Ok(())
    );
    assert_eq!(outside.try_from("flowopts", "::1", 9, "opts"), Ok(()));

    let parent = Parent::new("sockopt");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("sockopt").unwrap();
    let events = session.take_events().unwrap();
    let mut probe = Probe::start(&session);
    for policy in [None, Some(policy(&["127.0.0.0/8", "::1/128"], &[]))] {
        if let Some(p) = &policy {
            enforcer.set_policy(p).unwrap();
        }
        // A routing header, a source route, options attached to a flow label request (a
        // routing header could be one): refused. A bare flow label request is not.
        for (kind, host, via, allowed) in [
            ("rthdr", "::1", "::1", false),
            ("srcroute", "127.0.0.1", "127.0.0.1", false),
            ("flowopts", "::1", "opts", false),
            ("flowopts", "::1", "bare", true),
        ] {
            let want = if allowed { Ok(()) } else { Err(EPERM.into()) };
            assert_eq!(
                probe.try_from(kind, host, 9, via),
                want,
                "{kind} {via}: {policy:?}"
            );
        }
        // Plain sends are decided by address as before.
        assert_eq!(probe.try_("udp", "::1", 9), Ok(()));
        assert_eq!(probe.try_("udp", "127.0.0.1", 9), Ok(()));
    }
    let ev = wait_event(&events, |e| e.operation == NetOperation::SocketOption);
    assert_eq!(ev.action, NetAction::Denied);
    assert_eq!(ev.program, comm_of(python()));
    // The option's number stands where a port would be: IPV6_RTHDR (57), IP_OPTIONS (4) or
    // IPV6_FLOWLABEL_MGR (32).
    assert!(matches!(ev.dst.port(), 57 | 4 | 32), "{ev:?}");
    assert_eq!(
        ev.audit_event("u", "l", "s").operation,
        NetOperation::SocketOption
    );
}

/// A UDP socket connected while its destination was allowed sends with `send(2)`, which no
/// address hook sees: once a policy denies the destination its datagrams are dropped (EPERM,
/// a `T4002I` send event), and they go again when the policy allows it again. The datagram
/// after is the next one the receiver gets: the denied one never arrived.
#[test]
fn a_udp_socket_connected_before_an_update_is_held_to_it() {
    let parent = Parent::new("udpconn");
    // Only the receiver's address: not 127.0.0.1, the socket's own source.
    let enforcer = parent.enforcer(&policy(&["127.0.0.3/32"], &[]), false);
    let session = enforcer.session("udpconn").unwrap();
    let events = session.take_events().unwrap();
    let rx = UdpSocket::bind("127.0.0.3:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = rx.local_addr().unwrap().port();
    let mut probe = Probe::start(&session);
    let mut buf = [0u8; 64];
    assert_eq!(probe.try_("uconn", "127.0.0.3", port), Ok(()));
    assert_eq!(probe.try_("usend", "before", 0), Ok(()));
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"before");
    // With a control message the sendmsg hook runs with no address: decided as the peer,
    // not as the socket's own source (127.0.0.1, not allowed).
    assert_eq!(probe.try_("utos", "tos", 0), Ok(()));
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"tos");

    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]))
        .unwrap();
    assert_eq!(probe.try_("utos", "denied", 0), Err(EPERM.into()));
    assert_eq!(probe.try_("usend", "denied", 0), Err(EPERM.into()));
    let ev = wait_event(&events, |e| e.dst.port() == port);
    assert_eq!(ev.action, NetAction::Denied);
    assert_eq!(ev.operation, NetOperation::Send);
    assert_eq!(ev.dst.ip().to_string(), "127.0.0.3");

    enforcer
        .set_policy(&policy(&["127.0.0.3/32"], &[]))
        .unwrap();
    assert_eq!(probe.try_("usend", "after", 0), Ok(()));
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after", "the denied datagram never arrived");

    // Connected to port 0 (Linux allows it): connected all the same.
    assert_eq!(probe.try_("uconn", "127.0.0.3", 0), Ok(()));
    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]))
        .unwrap();
    assert_eq!(probe.try_("usend", "port0", 0), Err(EPERM.into()));
    assert_eq!(probe.try_("utos", "port0", 0), Err(EPERM.into()));

    // A datagram begun (MSG_MORE) while its destination was allowed, finished after a
    // policy denies it: the finishing send names no address, so no address hook runs.
    enforcer
        .set_policy(&policy(&["127.0.0.3/32"], &[]))
        .unwrap();
    assert_eq!(probe.try_("ucork", "127.0.0.3", port), Ok(()));
    enforcer
        .set_policy(&policy(&["127.0.0.0/8"], &["127.0.0.3/32"]))
        .unwrap();
    assert_eq!(probe.try_("usend", "flushed", 0), Err(EPERM.into()));
    enforcer
        .set_policy(&policy(&["127.0.0.3/32"], &[]))
        .unwrap();
    assert_eq!(probe.try_("uconn", "127.0.0.3", port), Ok(()));
    assert_eq!(probe.try_("usend", "last", 0), Ok(()));
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"last", "the corked datagram never arrived");
}

/// A TCP connection a session's process made while its peer was allowed sends nothing more
/// once an update denies the peer: its segments are dropped as they leave, the denial
/// reported once; allowed again, TCP's retransmission delivers what was held. A connection
/// the session accepted is not the policy's to decide: its replies pass.
#[test]
fn a_tcp_connection_made_before_an_update_is_held_to_it() {
    let parent = Parent::new("tcpheld");
    let enforcer = parent.enforcer(&policy(&["127.0.0.3/32"], &[]), false);
    let session = enforcer.session("tcpheld").unwrap();
    let events = session.take_events().unwrap();
    let mut probe = Probe::start(&session);
    // Connected to `peer` while `allow` is in force; `deny` denies it; `allow` again.
    let mut held = |peer: &str, allow: &[&str], deny: (&[&str], &[&str]), word: &str| {
        let listener = TcpListener::bind((peer.parse::<IpAddr>().unwrap(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        enforcer.set_policy(&policy(allow, &[])).unwrap();
        assert_eq!(probe.try_("tconn", peer, port), Ok(()));
        let (mut them, _) = listener.accept().unwrap();
        them.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(probe.try_("usend", "before", 0), Ok(()));
        let n = them.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"before");

        enforcer.set_policy(&policy(deny.0, deny.1)).unwrap();
        // TCP's send returns once the bytes are queued; the segment is dropped as it leaves.
        assert_eq!(probe.try_("usend", word, 0), Ok(()));
        let ev = wait_event(&events, |e| e.dst.port() == port);
        assert_eq!(ev.action, NetAction::Denied);
        assert_eq!(ev.operation, NetOperation::Send);
        assert_eq!(ev.dst.ip().to_string(), peer);
        them.set_nonblocking(true).unwrap();
        assert_eq!(
            them.read(&mut buf).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "{peer}: a segment of a denied connection arrived"
        );
        assert_eq!(probe.try_("tcp", peer, port), Err(EPERM.into()));

        enforcer.set_policy(&policy(allow, &[])).unwrap();
        them.set_nonblocking(false).unwrap();
        let n = them.read(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            word.as_bytes(),
            "{peer}: the held bytes were not retransmitted once allowed"
        );
    };
    held(
        "127.0.0.3",
        &["127.0.0.3/32"],
        (&["127.0.0.0/8"], &["127.0.0.3/32"]),
        "held",
    );
    held(
        "::1",
        &["::1/128", "127.0.0.3/32"],
        (&["::/1", "127.0.0.3/32"], &["::1/128"]),
        "held6",
    );

    let mut buf = [0u8; 64];
    // Accepted: a client at 127.0.0.1, which the policy does not allow, gets its replies.
    let answer = probe.ask("tlisten 127.0.0.1 0");
    let lport: u16 = answer
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("probe: {answer}"));
    let mut client = TcpStream::connect(("127.0.0.1", lport)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(probe.try_("taccept", "-", 0), Ok(()));
    assert_eq!(probe.try_("usend", "reply", 0), Ok(()));
    let n = client.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
}

/// A socket the hooks cannot decide (raw ICMP, made while there was no policy, connected to
/// an allowed host with a port) sends nothing once a policy is in force: its packets are
/// dropped, whatever it is connected to (deciding on its peer let its `sendto` go anywhere).
#[test]
fn sockets_made_before_a_policy_that_it_cannot_decide_send_nothing() {
    let parent = Parent::new("pingheld");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("pingheld").unwrap();
    let mut probe = Probe::start(&session);
    assert_eq!(probe.try_("rconn", "127.0.0.1", 7), Ok(()));
    assert_eq!(probe.try_("rsend", "127.0.0.3", 0), Ok(()));
    enforcer
        .set_policy(&policy(&["127.0.0.1/32"], &[]))
        .unwrap();
    assert_eq!(probe.try_("rsend", "127.0.0.3", 0), Err(EPERM.into()));
    assert_eq!(probe.try_("rsend", "127.0.0.1", 0), Err(EPERM.into()));
    enforcer
        .set_policy(&NetworkRestrictions::allow_all())
        .unwrap();
    assert_eq!(probe.try_("rsend", "127.0.0.3", 0), Ok(()));
}

/// One session flooding denials spends its own share of the events (512 at once, 2,000 a
/// second), not the ring buffer every session shares: beyond it its denials still refuse
/// and are counted lost, and another session's denial is still recorded.
#[test]
fn a_flood_of_denials_spends_only_its_own_share_of_events() {
    let parent = Parent::new("share");
    // A session queue that holds every event: what is lost here is lost in the kernel.
    let enforcer = Enforcer::new(
        &EnforcerConfig::default()
            .parent(&parent.path)
            .event_queue(100_000),
        &policy(&["127.0.0.0/8"], &["127.0.0.3/32"]),
    )
    .unwrap();
    let flooder = enforcer.session("flooder").unwrap();
    let flooder_events = flooder.take_events().unwrap();
    let other = enforcer.session("other").unwrap();
    let other_events = other.take_events().unwrap();
    let before = enforcer.lost_events();
    let mut cmd = Command::new(python());
    cmd.args([
        "-c",
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         refused = 0\n\
         for _ in range(6000):\n\
         \x20   try:\n\
         \x20       s.sendto(b'x', ('127.0.0.3', 9))\n\
         \x20   except PermissionError:\n\
         \x20       refused += 1\n\
         print(refused)\n",
    ]);
    cmd.stdout(Stdio::piped());
    flooder.confine(&mut cmd);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "6000",
        "every send refused"
    );
    // At most the burst and what the rate refilled meanwhile were recorded; the rest was
    // counted lost, in the kernel, as it happened.
    let recorded_at_most = 512.0 + 2000.0 * took + 64.0;
    let lost = enforcer.lost_events() - before;
    assert!(
        lost as f64 >= 6000.0 - recorded_at_most,
        "lost {lost} of 6000 in {took:.3} s"
    );
    // What was recorded reaches the session (bounded wait for the reader to catch up).
    let mut got = 0u64;
    while got + lost < 6000 {
        match flooder_events.recv_timeout(Duration::from_secs(5)) {
            Ok(_) => got += 1,
            Err(_) => break,
        }
    }
    assert_eq!(got + lost, 6000, "every denial recorded or counted lost");
    assert!(
        (got as f64) <= recorded_at_most,
        "{got} recorded in {took:.3} s"
    );
    // The other session's share is whole.
    let mut probe = Probe::start(&other);
    assert_eq!(probe.try_("udp", "127.0.0.3", 9), Err(EPERM.into()));
    let ev = wait_event(&other_events, |e| e.dst.port() == 9);
    assert_eq!(ev.action, NetAction::Denied);
}

/// `SO_BROADCAST` under a policy: refused (a subnet's broadcast address looks like any
/// other to the hooks, and reaches every host of the subnet); without one, allowed.
#[test]
fn broadcast_needs_no_policy() {
    let parent = Parent::new("bcast");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("bcast").unwrap();
    let mut probe = Probe::start(&session);
    assert_eq!(probe.try_("bcast", "127.0.0.1", 9), Ok(()));
    enforcer
        .set_policy(&policy(&["0.0.0.0/0", "::/0"], &["10.0.0.0/8"]))
        .unwrap();
    assert_eq!(probe.try_("bcast", "127.0.0.1", 9), Err(EPERM.into()));
    enforcer
        .set_policy(&NetworkRestrictions::allow_all())
        .unwrap();
    assert_eq!(probe.try_("bcast", "127.0.0.1", 9), Ok(()));
}

/// A static i386 program of 96 bytes that calls `exit(42)` with `int 0x80`.
fn i386_exit_42() -> Vec<u8> {
    let base: u32 = 0x0804_8000;
    let code: [u8; 12] = [
        0xB8, 1, 0, 0, 0, // mov eax, 1 (exit)
        0xBB, 42, 0, 0, 0, // mov ebx, 42
        0xCD, 0x80, // int 0x80
    ];
    let size = 52 + 32 + code.len() as u32;
    let mut elf = vec![0x7F, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(base + 84).to_le_bytes()); // entry: the code
    elf.extend_from_slice(&52u32.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [52u16, 32, 1, 0, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 0, base, base, size, size, 5, 0x1000] {
        elf.extend_from_slice(&v.to_le_bytes()); // PT_LOAD, R+X, the whole file
    }
    elf.extend_from_slice(&code);
    elf
}

/// A 32-bit process skips the kernel's `cgroup/setsockopt` programs (they run for native
/// calls only), so a session keeps to the machine's own system calls: a 32-bit program is
/// killed (`SIGSYS`) at its first call, with or without a policy. Outside a session the
/// same program runs (this kernel runs i386 programs), and a native one runs in the session.
#[test]
fn a_session_makes_no_32_bit_system_call() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("exit42-i386");
    std::fs::write(&program, i386_exit_42()).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let outside = Command::new(&program)
        .status()
        .expect("run the i386 program");
    assert_eq!(outside.code(), Some(42), "{outside:?}");

    let parent = Parent::new("compat");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("compat").unwrap();
    for policy in [None, Some(policy(&["127.0.0.0/8"], &[]))] {
        if let Some(p) = &policy {
            enforcer.set_policy(p).unwrap();
        }
        let mut cmd = Command::new(&program);
        session.confine(&mut cmd);
        let inside = cmd.status().expect("spawn in the session");
        assert_eq!(
            inside.signal(),
            Some(nix::libc::SIGSYS),
            "{policy:?}: {inside:?}"
        );
        let mut native = Command::new("sh");
        native.args(["-c", "exit 7"]);
        session.confine(&mut native);
        assert_eq!(native.status().unwrap().code(), Some(7));
    }
}

/// Socket families the cgroup hooks never see (packet, also as `AF_INET` with `SOCK_PACKET`,
/// VSOCK to the hypervisor, and the rest but Unix, IPv4, IPv6 and netlink) cannot be made in
/// a session, with a policy or without;
/// nor an io_uring, which makes sockets without `socket(2)`. Outside they can (this test
/// runs as root).
#[test]
fn a_session_makes_no_socket_of_a_family_the_hooks_do_not_see() {
    let script = r#"
import ctypes, errno, socket
out = []
for fam, typ in [(socket.AF_PACKET, socket.SOCK_DGRAM), (40, socket.SOCK_STREAM),
                 (socket.AF_INET, 10),
                 (socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_STREAM),
                 (socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_NETLINK, socket.SOCK_RAW)]:
    try:
        socket.socket(fam, typ).close()
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 8, params)
out.append("ok" if fd >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
print(" ".join(out))
"#;
    let run = |session: Option<&ippin_restrict::Session>| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script]).stdin(Stdio::null());
        if let Some(s) = session {
            s.confine(&mut cmd);
        }
        let out = cmd.output().expect("python3 (scripts/install-peers)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(run(None), "ok ok ok ok ok ok ok ok", "outside a session");
    let parent = Parent::new("families");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("families").unwrap();
    for policy in [None, Some(policy(&["127.0.0.0/8"], &[]))] {
        if let Some(p) = &policy {
            enforcer.set_policy(p).unwrap();
        }
        assert_eq!(
            run(Some(&session)),
            "EAFNOSUPPORT EAFNOSUPPORT EAFNOSUPPORT ok ok ok ok ENOSYS",
            "{policy:?}"
        );
    }
}

/// Joining a multicast group makes the kernel send IGMP/MLD reports naming the group past
/// every hook (data in the group's bits): under a policy every way to join is refused
/// (`EPERM`) unless an allow rule inside the multicast range covers the group, and a join
/// value longer than a page (read twice) always; without a policy joins are fine. Under a
/// policy the options that send from a source that is not the host's (`IP_FREEBIND`,
/// `IPV6_FREEBIND`) are refused too.
#[test]
fn a_session_joins_only_the_multicast_groups_its_policy_allows() {
    let script = r#"
import errno, socket, struct
def join(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
out = [
    join(lambda: s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton("239.66.66.66") + socket.inet_aton("127.0.0.1"))),
    join(lambda: s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
        socket.inet_pton(socket.AF_INET6, "ff0e::4242") + struct.pack("@I", 1))),
    join(lambda: s.setsockopt(socket.IPPROTO_IP, 42, struct.pack("@I", 1) + bytes(4)
        + struct.pack("@H", socket.AF_INET) + bytes(2) + socket.inet_aton("239.1.2.3")
        + bytes(120))),
    # A value longer than a page (which the kernel reads again after the program): an
    # allowed unicast address here, another thread could make it a group.
    join(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).setsockopt(
        socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton("127.0.0.1") + socket.inet_aton("127.0.0.1") + bytes(4089))),
    # Sending from an address that is not the host's (forged sources make allowed hosts
    # answer denied ones).
    join(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).setsockopt(
        socket.IPPROTO_IP, 15, 1)),
    join(lambda: s6.setsockopt(socket.IPPROTO_IPV6, 78, 1)),
]
print(" ".join(out))
"#;
    let parent = Parent::new("multicast");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("multicast").unwrap();
    let run = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script]).stdin(Stdio::null());
        session.confine(&mut cmd);
        let out = cmd.output().expect("python3 (scripts/install-peers)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    // Without a policy the kernel itself refuses the oversized join (not a group).
    assert_eq!(run(), "ok ok ok EINVAL ok ok", "no policy");
    enforcer
        .set_policy(&policy(&["127.0.0.0/8", "::1/128"], &[]))
        .unwrap();
    assert_eq!(
        run(),
        "EPERM EPERM EPERM EPERM EPERM EPERM",
        "unicast rules only"
    );
    enforcer
        .set_policy(&policy(&["127.0.0.0/8", "239.0.0.0/8", "ff0e::/16"], &[]))
        .unwrap();
    assert_eq!(run(), "ok ok ok EPERM EPERM EPERM", "the groups allowed");
    enforcer
        .set_policy(&policy(
            &["127.0.0.0/8", "239.0.0.0/8", "ff0e::/16"],
            &["239.66.66.0/24"],
        ))
        .unwrap();
    assert_eq!(run(), "EPERM ok ok EPERM EPERM EPERM", "one group denied");
}

/// Sockets whose sends the connect and send hooks never see (ICMP "ping" sockets, raw
/// sockets) cannot be made in a session with a policy: they would reach any address
/// undecided. Without a policy they can.
#[test]
fn sockets_the_policy_cannot_decide_are_refused() {
    // Ping sockets for every group, as systemd's defaults have it; put back afterwards.
    let range = "/proc/sys/net/ipv4/ping_group_range";
    let before = std::fs::read_to_string(range).unwrap();
    std::fs::write(range, "0 2147483647").unwrap();
    struct Restore(&'static str, String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, &self.1);
        }
    }
    let _restore = Restore(range, before);

    let parent = Parent::new("sockets");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("sockets").unwrap();
    let events = session.take_events().unwrap();
    let mut probe = Probe::start(&session);
    assert_eq!(probe.try_("icmp", "127.0.0.1", 0), Ok(()));
    assert_eq!(probe.try_("raw", "127.0.0.1", 0), Ok(()));

    enforcer
        .set_policy(&policy(&["127.0.0.0/8", "::1/128"], &[]))
        .unwrap();
    for (kind, host) in [
        ("icmp", "127.0.0.1"),
        ("icmp", "::1"),
        ("raw", "127.0.0.1"),
        ("raw", "::1"),
    ] {
        assert_eq!(
            probe.try_(kind, host, 0),
            Err(EPERM.into()),
            "{kind} {host}"
        );
    }
    // TCP and UDP still are decided by address.
    assert_eq!(probe.try_("udp", "127.0.0.1", 9), Ok(()));
    let ev = wait_event(&events, |e| e.operation == NetOperation::Socket);
    assert_eq!(ev.action, NetAction::Denied);
    assert_eq!(ev.program, comm_of(python()));
    let audit = ev.audit_event("u", "l", "s");
    assert_eq!(audit.operation, NetOperation::Socket);
}

/// The holder for the test below, run as its own process (this test binary again, with
/// `IPPIN_HOLDER_PARENT` set): an enforcer on that parent denying 127.0.0.3, one session,
/// and in it a loop that tries a TCP connect to `IPPIN_HOLDER_TARGET` every 20 ms and
/// appends `ok` or the errno to `IPPIN_HOLDER_LOG`. Writes the loop's PID to
/// `IPPIN_HOLDER_LOG.pid` and waits to be killed. Not a test of its own: ignored in a normal
/// run, started (`--ignored --exact`) as a process of its own by the orphan tests.
#[test]
#[ignore = "a process the orphan tests start (killed_holder_then)"]
fn holder_of_an_enforcer_for_another_test() {
    let parent = std::env::var("IPPIN_HOLDER_PARENT")
        .expect("IPPIN_HOLDER_PARENT: started by killed_holder_then, not on its own");
    let target = std::env::var("IPPIN_HOLDER_TARGET").unwrap();
    let log = std::env::var("IPPIN_HOLDER_LOG").unwrap();
    let enforcer = Enforcer::new(
        &EnforcerConfig::default().parent(&parent),
        &policy(&["127.0.0.0/8"], &["127.0.0.3/32"]),
    )
    .unwrap();
    let session = enforcer.session("orphan").unwrap();
    let script = format!(
        "import socket, time\n\
         while True:\n\
         \x20   s = socket.socket()\n\
         \x20   s.settimeout(2)\n\
         \x20   try:\n\
         \x20       s.connect(('127.0.0.3', {target}))\n\
         \x20       r = 'ok'\n\
         \x20   except OSError as e:\n\
         \x20       r = str(e.errno)\n\
         \x20   s.close()\n\
         \x20   open('{log}', 'a').write(r + '\\n')\n\
         \x20   time.sleep(0.02)\n"
    );
    let mut cmd = Command::new(python());
    cmd.args(["-c", &script]).stdin(Stdio::null());
    session.confine(&mut cmd);
    // Never waited for: this process is killed while the loop runs on.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    std::fs::write(format!("{log}.pid"), child.id().to_string()).unwrap();
    std::mem::forget(session);
    std::mem::forget(enforcer);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// No cgroup is left under `parent`.
fn assert_no_session_cgroup_left(parent: &Parent) {
    let left: Vec<_> = std::fs::read_dir(&parent.path)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A server that stops ends its own sessions (processes killed, cgroups removed), wherever
/// their parent is: under a parent outside the service's cgroup nothing else would, and
/// they would run on, held to the policy of then. Cgroups not named as sessions are left,
/// and no session is made from then on.
#[test]
fn a_stopping_enforcer_ends_its_own_sessions() {
    use std::os::unix::process::ExitStatusExt;
    let parent = Parent::new("stopping");
    let enforcer = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    let session = enforcer.session("stopping").unwrap();
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdin(Stdio::null());
    session.confine(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let foreign = parent.path.join("getty@tty1.service");
    std::fs::create_dir(&foreign).unwrap();
    assert_eq!(enforcer.end_sessions(), (1, 0));
    // No session is made once they are ending (one made meanwhile would outlive the stop).
    assert!(
        matches!(enforcer.session("late"), Err(Error::Stopping)),
        "a session made after end_sessions"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(foreign.is_dir());
    std::fs::remove_dir(&foreign).unwrap();
    assert_no_session_cgroup_left(&parent);
    drop(session);
}

/// A server killed outright (SIGKILL: no destructor runs) leaves its sessions' processes
/// restricted: the programs are the kernel's attachments to the session cgroups, not links
/// that die with the process. The next enforcer on the parent ends those sessions.
#[test]
fn a_killed_enforcer_leaves_its_sessions_restricted_and_the_next_one_ends_them() {
    killed_holder_then(false);
}

/// The same, the orphans ended by a server that starts without enforcement.
#[test]
fn a_server_without_enforcement_ends_orphaned_sessions_too() {
    killed_holder_then(true);
}

fn killed_holder_then(without_enforcer: bool) {
    let parent = Parent::new(if without_enforcer {
        "orphans-off"
    } else {
        "orphans"
    });
    let target = Listener::http("127.0.0.3");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tries");
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "enforce::holder_of_an_enforcer_for_another_test",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IPPIN_HOLDER_PARENT", &parent.path)
        .env("IPPIN_HOLDER_TARGET", target.addr.port().to_string())
        .env("IPPIN_HOLDER_LOG", &log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("tries.pid");
    assert!(
        wait_until(Duration::from_secs(30), || pid_file.exists()),
        "the holder did not start its session"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let tries = |log: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert!(wait_until(Duration::from_secs(10), || tries(&log).len() >= 3));
    assert!(tries(&log).iter().all(|t| t == "1"), "{:?}", tries(&log));

    // The server is killed: its descriptors close, no destructor runs.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let before = tries(&log).len();
    assert!(wait_until(Duration::from_secs(10), || tries(&log).len() >= before + 10));
    let after: Vec<String> = tries(&log).split_off(before);
    assert!(
        after.iter().all(|t| t == "1"),
        "after the holder died: {after:?}"
    );

    // Cgroups not named as sessions are never ours, whatever an `@` in them.
    let foreign = ["getty@tty1.service", "x@notatag"].map(|n| parent.path.join(n));
    for f in &foreign {
        std::fs::create_dir(f).unwrap();
    }
    // The next enforcer on this parent ends what the dead one left.
    let next = parent.enforcer(&NetworkRestrictions::allow_all(), false);
    for f in &foreign {
        assert!(f.is_dir(), "{} left alone", f.display());
        std::fs::remove_dir(f).unwrap();
    }
    assert!(next.summary().contains("1 ended"), "{}", next.summary());
    // Gone, or a zombie waiting for a reaper (this machine's PID 1 may not reap).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let dead = state.is_empty()
        || state
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
    assert!(dead, "the orphaned session's process was killed: {state}");
    assert_no_session_cgroup_left(&parent);
}
