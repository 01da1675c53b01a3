//! Kernel enforcement of ippin's network restrictions for the processes of a session
//! (Linux): each session gets its own cgroup v2, and seven eBPF programs attached to it: four
//! decide every TCP or UDP `connect(2)` and every addressed UDP `sendto(2)`/`sendmsg(2)` of
//! its processes; `cgroup/sock_create` refuses, under a policy, the IPv4 and IPv6 sockets they
//! cannot see (ICMP "ping", raw, SCTP and other protocols); `cgroup/setsockopt` refuses the
//! options that reroute packets; and, under a policy, `cgroup_skb/egress` decides every UDP
//! packet and drops those of any other socket but TCP; all with the semantics of
//! [`ippin_policy::NetworkRestrictions::decide`]. A denied
//! call fails with `EPERM` ("Operation not permitted"), and each decision can become an
//! audit event.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use ippin_policy::NetworkRestrictions;
//! use ippin_restrict::{Enforcer, EnforcerConfig};
//!
//! let policy = NetworkRestrictions::from_rules(
//!     &["127.0.0.0/8".parse().unwrap()],   // allow
//!     &["127.0.0.3/32".parse().unwrap()],  // deny wins
//! ).unwrap();
//! // Fails (with the reason) when enforcement cannot be set up: never runs unrestricted.
//! let enforcer = Enforcer::new(&EnforcerConfig::default(), &policy)?;
//!
//! let session = enforcer.session("sid-4b1c")?;
//! let mut cmd = Command::new("curl");
//! cmd.arg("http://127.0.0.3:8080/");
//! // In the session cgroup before it runs any of its code. (It keeps this process's user:
//! // for a user's session run it as the user with `ChildSetup`, since root is not confined.)
//! session.confine(&mut cmd);
//! let status = cmd.status().expect("spawn");
//! assert!(!status.success());
//!
//! let events = session.take_events().expect("given once");
//! let event = events.recv_timeout(Duration::from_secs(1)).unwrap();
//! assert_eq!(event.program, "curl");
//! let audit = event.audit_event("alice", "alice", "sid-4b1c"); // T4002I, action 1
//!
//! // A policy change holds running sessions at once.
//! enforcer.set_policy(&NetworkRestrictions::allow_all())?;
//! session.end()?; // kills what remains and removes the cgroup
//! # Ok::<(), ippin_restrict::Error>(())
//! ```
//!
//! # Public API
//!
//! | item | what |
//! |---|---|
//! | [`Enforcer`] | loads the programs once (`new`), holds the policy maps: `set_policy` (live, every session), `protect` (endpoints refused whatever the policy), `set_observe`, `lost_events`, `summary`, `parent`, makes sessions (`session`) and ends them all when the server stops (`end_sessions`; none is made after) |
//! | [`EnforcerConfig`] | the parent cgroup, whether allowed connections are reported too, the event queue's size |
//! | [`Session`] | one session's cgroup with the programs attached: `confine` (a `Command`'s child placed before `exec`), `placement`/[`Placement`] (for other ways of forking), `add_process`, `processes`, `take_events`, `end` |
//! | [`ChildSetup`], [`Login`], [`Credentials`], [`Pty`], [`resize`], [`terminal_path`] | starting a session's process: in the session cgroup, `setsid`, a pseudo-terminal as controlling terminal, as an OS login (groups, group, user), in that order before `exec` |
//! | [`NetEvent`], [`SocketKind`] | one decision from the kernel; `audit_event` turns it into the `T4002I` event |
//! | [`Error`] | why enforcement cannot be set up or a session cannot be made (typed, `#[non_exhaustive]`) |
//! | [`cgroup2_mount`], [`DEFAULT_PARENT`] | where cgroup v2 is, and the default parent |
//! | [`end_orphaned_sessions`] | ends the sessions a server that is gone left (what [`Enforcer::new`] does first), for a server that starts without enforcement |
//!
//! # What the kernel must offer, and what happens without it
//!
//! | need | why | without it |
//! |---|---|---|
//! | cgroup v2 mounted (unified or hybrid: found in `/proc/self/mountinfo`) | one cgroup per session, programs attached to it | [`Error::NoCgroup2`] |
//! | root (effective uid 0) | loading programs, creating root-owned cgroups | [`Error::NotRoot`] |
//! | `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` with `connect4/6`, `sendmsg4/6` (Linux 4.18), LPM tries (4.11), ring buffers (5.8), BTF map definitions, socket storage from those hooks (`bpf_sk_storage_get`) | the decision and the events | [`Error::Bpf`] with the loader's or verifier's reason |
//! | `cgroup.kill` (5.14) | ending every process of a session at once | falls back to `SIGKILL` to each listed process, repeated until the cgroup is empty (bounded) |
//! | the parent cgroup (configured, or `<cgroup2 mount>/ippin` made on first use) | where session cgroups go | [`Error::Parent`] |
//!
//! BPF LSM is not needed. Every failure is a typed [`Error`] with a reason: this crate never
//! hands out a session whose programs are not attached.
//!
//! # The decision, in the kernel
//!
//! The programs (`bpf/restrict.bpf.c`) read four LPM tries (allow and deny, IPv4 and IPv6)
//! and a config array (`has_policy`, `observe`):
//!
//! | policy | destination matches an allow rule | matches a deny rule | decision |
//! |---|---|---|---|
//! | none ([`NetworkRestrictions::allow_all`]) | – | – | allowed |
//! | present | no | any | denied (by default) |
//! | present | yes | no | allowed |
//! | present | yes | yes | denied (deny wins) |
//!
//! Destinations are first turned into what the kernel connects to, as
//! [`ippin_policy::kernel_destination`] does: `::ffff:a.b.c.d` is decided as `a.b.c.d`,
//! `0.0.0.0` (and `::ffff:0.0.0.0`) as `127.0.0.1`, `::` as `::1`. An IPv6 destination that
//! embeds an IPv4 address ([`ippin_policy::embedded_ipv4`]: IPv4-compatible, NAT64
//! `64:ff9b::/96`, 6to4, Teredo) must be allowed both as IPv6 and as its IPv4 address.
//!
//! **Protected endpoints** come first, whatever the policy (also with none):
//! [`Enforcer::protect`] names address-and-port pairs (the access server's own listeners; a
//! listener on an unspecified address as its port on every network of the host) that no
//! session's process may reach. Without them, a process of a session on the access server's
//! host could connect to a listener that trusts this host as a proxy and write a PROXY
//! header naming any client address. They are checked on the address the kernel connects
//! to, after the rewrites below.
//!
//! The BPF side decides as `decide` does (the crate's tests compare the two on the same
//! destinations), with one addition that `decide` cannot make because it is given an address,
//! not a socket: `kernel_destination` describes an unbound socket (as the server's own dials
//! are), and a session's process can bind first. Linux routes `0.0.0.0` to the socket's
//! IPv4 source when it has one (`ip_route_output_key_hash_rcu`: the destination becomes the
//! source), so the programs decide `0.0.0.0` (and `::ffff:0.0.0.0`) as the bound address, or
//! for a UDP send as the message's source (`IP_PKTINFO`), and only else as `127.0.0.1`;
//! and a `connect` to `::` from a socket bound to an IPv4-mapped address as `127.0.0.1`,
//! where the kernel sends it. Without this, binding to a denied local address and
//! connecting to `0.0.0.0` would reach it.
//!
//! What the kernel *asks* about:
//!
//! - TCP: `connect(2)` (and so `sendto` with `MSG_FASTOPEN`, which connects) on IPv4 and IPv6
//!   sockets. The connect hook marks the socket (socket storage); under a policy every
//!   segment of a marked socket is decided again on its peer as it leaves
//!   (`cgroup_skb/egress`): a connection made while its peer was allowed sends nothing more
//!   once an update denies the peer (its segments are dropped, one `Send` event per denial;
//!   the sender sees the connection stall until TCP gives up, or until the peer is allowed
//!   again and its retransmissions go through). A connection the session *accepted* is not
//!   marked and not restricted: the policy decides what a session reaches, not who reaches
//!   it.
//! - UDP: `connect(2)`, and every `sendto`/`sendmsg` that names a destination. Under a
//!   policy, every UDP packet is also decided as it leaves (`cgroup_skb/egress`) on its
//!   destination, and a connected socket's also on its peer: a UDP socket connected while
//!   its destination was allowed is held to a policy that denies it later (its `send(2)`
//!   fails with `EPERM`, a `Send` event), and so is a datagram corked while it was allowed.
//!   Every packet of any other socket but TCP (made before the policy) is dropped.
//! - Sockets the hooks above never see — ICMP "ping" sockets (allowed to every group by
//!   systemd's `ping_group_range`), raw sockets, SCTP and any IPv4/IPv6 protocol but TCP,
//!   MPTCP, UDP and UDP-Lite — cannot be made at all while a policy is in force
//!   (`cgroup/sock_create`; `EPERM`, an event with operation `Socket` and the protocol as
//!   its port).
//! - Not network egress, so not decided: Unix sockets. A session's process can still ask a
//!   process outside the session to connect for it (a resolver, a mail system, cron, a user
//!   manager): see "What the caller and the host must still see to" below.
//! - **A failed update.** When writing a policy fails half-way (a map refuses an entry),
//!   the programs refuse every connect and send of every session until an update succeeds
//!   ([`Enforcer::denying_all`]): a half-written policy is never in force.
//!
//! # Policy updates
//!
//! [`Enforcer::set_policy`] rewrites the maps that every session's programs read, so running
//! sessions are held to the new policy from their next `connect`, addressed send or UDP
//! packet. An update is not one atomic
//! step; it is ordered so that no intermediate state allows what neither the old nor the new
//! policy allows: the new denials are written first, then the old allowances removed, then
//! the new ones added, then the old denials removed. (A connection that both allow may be
//! refused during the update.) From "no policy" to a policy, the rules are written before
//! the switch is turned on; the other way, the switch goes off first.
//!
//! The programs are attached to every session, also while there is no policy (they then
//! allow at once, after one array lookup): so a policy that appears later holds the sessions
//! already running. A caller that wants sessions without any program when no policy is
//! configured simply makes no [`Enforcer`].
//!
//! # Events
//!
//! Each decision goes through a ring buffer (256 KiB): denials, and allowed ones when
//! `observe` is on ([`EnforcerConfig::observe`], [`Enforcer::set_observe`]), each session
//! within its own share (512 events at once, refilled at 2,000 a second), so that one
//! session's flood does not crowd out the others'. A thread of the [`Enforcer`] reads it and
//! routes each [`NetEvent`] to the queue of the session whose cgroup made it
//! ([`Session::take_events`]). When the share is spent, or the ring buffer or a session's
//! queue is full, the event is dropped and counted ([`Enforcer::lost_events`]); a denial
//! still refuses, and, observing, an allowed operation whose event cannot be put in the ring
//! buffer is refused (fail closed). `src` is the socket's bound address when it has one (usually the unspecified
//! address before a `connect`: the kernel picks the source afterwards).
//!
//! # No escape
//!
//! - The session cgroup and its files are owned by root and not writable by others, and
//!   [`Enforcer::new`] refuses a parent whose directory, `cgroup.procs` or `cgroup.threads`
//!   (or an ancestor's) is not root's alone ([`Error::Parent`]): an unprivileged process
//!   cannot move itself, or anything, out of its session, nor make a child cgroup.
//! - Children inherit the cgroup: `fork`, double forks, `setsid` and daemonising stay in it.
//! - The programs are the kernel's attachments to the session cgroup (`BPF_PROG_ATTACH`,
//!   `BPF_F_ALLOW_MULTI`), which it runs together with the programs of other tools on the
//!   ancestors: it refuses when any one refuses. They are not BPF links, which the kernel
//!   detaches when the last descriptor closes: a server that exits, or is killed, leaves its
//!   sessions' processes restricted, by the last policy it wrote.
//! - [`Session::end`] (or dropping the [`Session`]) kills every process left with
//!   `cgroup.kill`, waits (bounded) until the cgroup is empty and removes the cgroup, and
//!   with it the programs' attachments.
//! - A session cgroup is named `NAME@PID.STARTTIME`, after the process that made it; the
//!   next [`Enforcer::new`] on the parent ends the sessions of an owner that no longer runs
//!   (their policy is no longer followed), and leaves alone those of one that does (another
//!   server on the same parent). [`Enforcer::summary`] says how many it ended.
//!
//! What the caller and the host must still see to (the kernel cannot):
//!
//! - **Sockets carry the cgroup they were made in.** The kernel runs the programs of the
//!   socket's cgroup (fixed when the socket is created), not of the calling process. A
//!   socket made outside the session and handed in (an inherited descriptor without
//!   close-on-exec, or one passed over a Unix socket by a process outside the session) is
//!   not decided. Rust's standard library opens every descriptor close-on-exec; a server
//!   must not pass network sockets to the session's processes.
//! - **Root is not confined.** A session of root can write any cgroup file and detach
//!   programs; only unprivileged logins are held.
//! - **Other processes of the same login.** A process of the login outside any session
//!   (cron, another login path) is not confined; a session's process that can `ptrace` it
//!   could act through it. Keep `kernel.yama.ptrace_scope` at 1 or more (tracing only
//!   descendants), or do not give restricted logins other ways in.
//!
//! # Tooling: aya, with the programs in C built by clang
//!
//! aya is a pure-Rust loader: building this crate needs only cargo (no libbpf, libelf or
//! zlib to compile, no clang at build time), which keeps the workspace's "one command with
//! only cargo" true. libbpf-rs would bring `libbpf-sys`, which compiles libbpf from C and
//! links libelf and zlib. The programs are small, so C with libbpf's headers is the clearest
//! way to write them; the object is committed (`bpf/restrict.bpf.o`) and
//! `scripts/build-bpf` rebuilds it with pinned flags (`--check` compares the bytes; the
//! compiler and headers used are in `bpf/TOOLCHAIN`). aya has no type for socket storage
//! (`BPF_MAP_TYPE_SK_STORAGE`, the `outbound` map only the programs use): it creates the
//! map and logs a warning (target `aya::bpf`) at every load, which an application may filter
//! out (the `ippin` binary does).
//!
//! # `unsafe`
//!
//! The workspace forbids `unsafe`; this crate denies it except in three places:
//!
//! * [`ChildSetup::apply`] (which [`Session::confine`] uses) registers a `pre_exec` hook
//!   (an `unsafe` function in the standard library, because the hook runs in the forked
//!   child). The hook makes system calls only, on data prepared before the fork: one
//!   `write(2)` to the session's `cgroup.procs` and the seccomp filter below
//!   ([`Placement::place_current_process`]), `setsid`, `TIOCSCTTY`, `umask`, `setgroups`,
//!   `setgid`, `setuid`: async-signal-safe, no allocation, no lock.
//! * The seccomp filter that keeps a session to the machine's own system calls is
//!   installed with `prctl(PR_SET_SECCOMP)`, a C call with a pointer to a static program
//!   (`compat.rs`): the kernel runs `cgroup/setsockopt` programs for native calls only, so
//!   a 32-bit process could otherwise set an IPv6 routing header unseen. The same filter
//!   refuses `socket(2)` of a family the hooks do not see (all but Unix, IPv4, IPv6 and
//!   netlink), `AF_INET` with `SOCK_PACKET` and `socketpair(2)` of any family but Unix
//!   (`EAFNOSUPPORT`), and `io_uring_setup(2)` and `request_key(2)` (`ENOSYS`).
//! * The programs are attached to a session cgroup with `bpf(BPF_PROG_ATTACH)`, a C call
//!   with a pointer to a local (`attach.rs`): aya attaches with BPF links, which the kernel
//!   detaches when this process exits, leaving the sessions' processes unrestricted; the
//!   kernel's own attachments stay until the cgroup is removed.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;

pub use error::Error;

#[cfg(target_os = "linux")]
mod attach;
#[cfg(target_os = "linux")]
mod bpf;
#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod child;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod compat;
#[cfg(target_os = "linux")]
mod placement;
#[cfg(target_os = "linux")]
mod session;

#[cfg(target_os = "linux")]
pub use cgroup::cgroup2_mount;
#[cfg(target_os = "linux")]
pub use child::{ChildSetup, Credentials, Login, MAX_GROUPS, Pty, resize, terminal_path};
#[cfg(target_os = "linux")]
pub use placement::Placement;
#[cfg(target_os = "linux")]
pub use session::{Enforcer, Session, end_orphaned_sessions};

use std::net::SocketAddr;
use std::path::PathBuf;

pub use ippin_policy::{NetAction, NetOperation, NetworkRestrictions};
use ippin_policy::{NetDecision, NetworkEvent};

/// The default name of the parent cgroup under the cgroup v2 mount, when none is configured.
pub const DEFAULT_PARENT: &str = "ippin";

/// How an [`Enforcer`] sets up sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnforcerConfig {
    /// The parent cgroup of the session cgroups. `None`: `<cgroup2 mount>/ippin`, made (mode
    /// `0755`) when missing. A configured parent must exist.
    pub parent: Option<PathBuf>,
    /// Report allowed decisions too (`audit_network_observed`), not only denials.
    pub observe: bool,
    /// How many events each session's queue holds before dropping (and counting) them.
    pub event_queue: usize,
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        EnforcerConfig {
            parent: None,
            observe: false,
            event_queue: 1024,
        }
    }
}

impl EnforcerConfig {
    /// Sets the parent cgroup.
    pub fn parent(mut self, parent: impl Into<PathBuf>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// Sets whether allowed decisions are reported.
    pub fn observe(mut self, observe: bool) -> Self {
        self.observe = observe;
        self
    }

    /// Sets the size of each session's event queue (at least 1).
    pub fn event_queue(mut self, n: usize) -> Self {
        self.event_queue = n.max(1);
        self
    }
}

/// The kind of socket a decision was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketKind {
    /// `SOCK_STREAM` (TCP).
    Stream,
    /// `SOCK_DGRAM` (UDP).
    Datagram,
    /// Another socket type, by its number.
    Other(u8),
}

/// One decision of the kernel programs, as read from the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetEvent {
    /// The process (thread group) id, in the initial pid namespace.
    pub pid: u32,
    /// The cgroup v2 id of the process (the session cgroup's inode number).
    pub cgroup_id: u64,
    /// The calling thread's name (`comm`, at most 15 bytes): `curl`, `python3`, ...
    pub program: String,
    /// The socket's bound address and port; unspecified when not bound yet.
    pub src: SocketAddr,
    /// The destination as the program gave it (an IPv6 socket's `::ffff:a.b.c.d` stays
    /// IPv6 here; [`NetEvent::audit_event`] shows it as IPv4).
    pub dst: SocketAddr,
    /// `connect` or a send naming a destination.
    pub operation: NetOperation,
    /// Refused, or allowed and observed.
    pub action: NetAction,
    /// TCP or UDP.
    pub socket: SocketKind,
}

impl NetEvent {
    /// The `session.network` (`T4002I`) audit event for this decision, for the session of
    /// `user` logged in as `login` with id `session_id`, with the process's `pid`,
    /// `cgroup_id` and `program`. The caller adds its `server_id` and `cluster_name`
    /// ([`NetworkEvent::with_server`]).
    pub fn audit_event(&self, user: &str, login: &str, session_id: &str) -> NetworkEvent {
        let decision = match self.action {
            NetAction::Observed => NetDecision::Allowed,
            _ => NetDecision::Denied { matched: None },
        };
        NetworkEvent::new(
            user,
            login,
            session_id,
            self.src,
            self.dst,
            self.operation,
            &decision,
        )
        .with_process(self.pid, self.cgroup_id, &self.program)
    }
}

/// The README's examples, compiled and run as doctests (so that they stay true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
