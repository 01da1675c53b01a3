//! The eBPF object: loading it, writing the policy into its maps, reading its events.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::cgroup_sock::CgroupSock;
use aya::programs::cgroup_sockopt::CgroupSockopt;
use aya::programs::{CgroupSkb, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;
use ippin_policy::{MAX_NETWORK_RULES, NetAction, NetOperation, NetworkRestrictions};

use crate::{Error, NetEvent, SocketKind};

/// The compiled programs (`scripts/build-bpf` makes it from `bpf/restrict.bpf.c`).
///
/// Kept 8-byte aligned: the ELF parser reads it in place.
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!("../bpf/restrict.bpf.o"));

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// The four programs, by the names of their C functions, with the hook each is for.
pub(crate) const PROGRAMS: [(&str, &str); 4] = [
    ("ippin_connect4", "connect4"),
    ("ippin_connect6", "connect6"),
    ("ippin_sendmsg4", "sendmsg4"),
    ("ippin_sendmsg6", "sendmsg6"),
];

/// The program that refuses sockets the four hooks cannot decide (`cgroup/sock_create`).
pub(crate) const SOCK_CREATE: &str = "ippin_sock_create";

/// The program that refuses the socket options that reroute packets past the four hooks
/// (IPv6 routing headers, IPv4 source routes: `cgroup/setsockopt`).
pub(crate) const SETSOCKOPT: &str = "ippin_setsockopt";

/// The program that decides every packet but TCP on its destination under a policy
/// (`cgroup_skb/egress`): datagrams of a socket connected before the policy denied it.
pub(crate) const EGRESS: &str = "ippin_egress";

/// The kernel's attach type for each hook (`enum bpf_attach_type` in `linux/bpf.h`).
fn attach_type(hook: &str) -> u32 {
    match hook {
        "connect4" => 10,   // BPF_CGROUP_INET4_CONNECT
        "connect6" => 11,   // BPF_CGROUP_INET6_CONNECT
        "sendmsg4" => 14,   // BPF_CGROUP_UDP4_SENDMSG
        "sendmsg6" => 15,   // BPF_CGROUP_UDP6_SENDMSG
        "sock_create" => 2, // BPF_CGROUP_INET_SOCK_CREATE
        "setsockopt" => 22, // BPF_CGROUP_SETSOCKOPT
        "egress" => 1,      // BPF_CGROUP_INET_EGRESS
        _ => u32::MAX,      // no such type: the kernel refuses the attach
    }
}

/// Size of one event in the ring buffer (`struct event` in the C source).
const EVENT_SIZE: usize = 72;

/// The most protected endpoints (`protected`'s `max_entries` in the C source).
pub(crate) const MAX_PROTECTED: usize = 4096;

/// `struct endpoint`: the address as IPv6 (IPv4 mapped), the port, both network order.
type EndpointKey = [u8; 20];

type Trie4 = LpmTrie<MapData, [u8; 4], u8>;
type Trie6 = LpmTrie<MapData, [u8; 16], u8>;

/// The policy maps and what is in them.
struct Maps {
    allow4: Trie4,
    deny4: Trie4,
    allow6: Trie6,
    deny6: Trie6,
    config: Array<MapData, [u32; 3]>,
    stats: Array<MapData, u64>,
    protected: BpfHashMap<MapData, EndpointKey, u8>,
    protected_ports: BpfHashMap<MapData, u16, u8>,
    local4: Trie4,
    local6: Trie6,
    /// What is now in those maps.
    protected_now: HashSet<EndpointKey>,
    ports_now: HashSet<u16>,
    local_now: HashSet<IpNet>,
    /// The rules now in the maps.
    allow: HashSet<IpNet>,
    deny: HashSet<IpNet>,
    has_policy: bool,
    observe: bool,
    /// A policy update failed half-way: everything is refused until one succeeds.
    deny_all: bool,
}

/// Where events go: session cgroup id → the session's queue.
pub(crate) type Routes = Arc<Mutex<HashMap<u64, SyncSender<NetEvent>>>>;

/// The loaded object, shared by the enforcer and its sessions.
pub(crate) struct Loaded {
    programs: Mutex<Ebpf>,
    maps: Mutex<Maps>,
    pub(crate) routes: Routes,
    pub(crate) dropped: Arc<AtomicU64>,
    reader: Option<Reader>,
}

struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // Stop the reader before the maps go.
        self.reader.take();
    }
}

fn map_err(name: &str) -> impl Fn(aya::maps::MapError) -> Error + '_ {
    move |e| Error::bpf(format!("map {name}"), e)
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    bpf: &mut Ebpf,
    name: &str,
) -> Result<T, Error> {
    let map = bpf
        .take_map(name)
        .ok_or_else(|| Error::bpf(format!("map {name}"), "not in the object"))?;
    T::try_from(map).map_err(map_err(name))
}

impl Loaded {
    /// Loads and verifies the four programs and makes the maps, then writes `policy` and
    /// `observe` and starts the event reader.
    pub(crate) fn load(policy: &NetworkRestrictions, observe: bool) -> Result<Arc<Self>, Error> {
        // aya's attach unwraps the kernel version: read it here first, so that an unreadable
        // one is this error instead of a panic later.
        let version =
            aya::util::KernelVersion::current().map_err(|e| Error::bpf("kernel version", e))?;
        if version < aya::util::KernelVersion::new(5, 8, 0) {
            return Err(Error::bpf(
                "kernel version",
                format!("{version:?}: ring buffers need Linux 5.8 or later"),
            ));
        }
        let max = u32::try_from(MAX_NETWORK_RULES).unwrap_or(u32::MAX);
        // An update writes the new denials before it removes the old ones (see
        // `set_policy`): the deny tries hold two whole policies' worth. (The tries are not
        // preallocated: the room costs nothing until it is used.)
        let mut bpf = EbpfLoader::new()
            // `outbound` is socket storage, a map kind aya creates but has no type for; only
            // the programs use it.
            .allow_unsupported_maps()
            .set_max_entries("allow4", max)
            .set_max_entries("deny4", max.saturating_mul(2))
            .set_max_entries("allow6", max)
            .set_max_entries("deny6", max.saturating_mul(2))
            .load(&OBJECT.0)
            .map_err(|e| Error::bpf("load", error_chain(&e)))?;
        // Each program loaded as its own kind (aya has no generic load).
        macro_rules! load {
            ($kind:ty, $name:expr, $hook:expr) => {{
                let what = format!("program {}", $hook);
                let prog: &mut $kind = bpf
                    .program_mut($name)
                    .ok_or_else(|| Error::bpf(what.clone(), "not in the object"))?
                    .try_into()
                    .map_err(|e| Error::bpf(what.clone(), e))?;
                prog.load()
                    .map_err(|e| Error::bpf(what.clone(), error_chain(&e)))?;
            }};
        }
        for (name, hook) in PROGRAMS {
            load!(CgroupSockAddr, name, hook);
        }
        load!(CgroupSock, SOCK_CREATE, "sock_create");
        load!(CgroupSockopt, SETSOCKOPT, "setsockopt");
        load!(CgroupSkb, EGRESS, "egress");
        let maps = Maps {
            allow4: take(&mut bpf, "allow4")?,
            deny4: take(&mut bpf, "deny4")?,
            allow6: take(&mut bpf, "allow6")?,
            deny6: take(&mut bpf, "deny6")?,
            config: take(&mut bpf, "config")?,
            stats: take(&mut bpf, "stats")?,
            protected: take(&mut bpf, "protected")?,
            protected_ports: take(&mut bpf, "protected_ports")?,
            local4: take(&mut bpf, "local4")?,
            local6: take(&mut bpf, "local6")?,
            protected_now: HashSet::new(),
            ports_now: HashSet::new(),
            local_now: HashSet::new(),
            allow: HashSet::new(),
            deny: HashSet::new(),
            has_policy: false,
            observe: false,
            deny_all: false,
        };
        let events = bpf
            .take_map("events")
            .ok_or_else(|| Error::bpf("map events", "not in the object"))?;
        // A duplicate of the ring buffer's descriptor, to wait on.
        let fd = match &events {
            aya::maps::Map::RingBuf(data) => data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::bpf("map events", e))?,
            _ => return Err(Error::bpf("map events", "not a ring buffer")),
        };
        let ring: RingBuf<MapData> = RingBuf::try_from(events).map_err(map_err("events"))?;

        let routes: Routes = Arc::default();
        let dropped = Arc::new(AtomicU64::new(0));
        let reader = Reader::start(ring, fd, routes.clone(), dropped.clone())?;
        let loaded = Loaded {
            programs: Mutex::new(bpf),
            maps: Mutex::new(maps),
            routes,
            dropped,
            reader: Some(reader),
        };
        loaded.set_policy(policy)?;
        loaded.set_observe(observe)?;
        Ok(Arc::new(loaded))
    }

    /// Attaches the programs to a session cgroup, for as long as the cgroup lives.
    ///
    /// The attachments are the kernel's own (`BPF_PROG_ATTACH` with `BPF_F_ALLOW_MULTI`),
    /// not BPF links: a link is detached when the last descriptor of it closes, so the
    /// programs would come off every session the moment this process exits or is killed,
    /// and the sessions' processes would run on unrestricted. These stay on the cgroup
    /// until it is removed (the end of the session) with the programs and their maps, the
    /// last policy written in force; a server that starts again kills what a dead one left
    /// ([`crate::Enforcer::new`]). `ALLOW_MULTI`: programs of other tools on the cgroup or
    /// its ancestors keep running too, and the kernel refuses when any one refuses, so none
    /// can lift this one's denial.
    pub(crate) fn attach(&self, cgroup: impl AsFd) -> Result<(), Error> {
        let bpf = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        let others = [
            (SOCK_CREATE, "sock_create"),
            (SETSOCKOPT, "setsockopt"),
            (EGRESS, "egress"),
        ];
        for (name, hook) in PROGRAMS.into_iter().chain(others) {
            let fd = bpf
                .program(name)
                .ok_or_else(|| Error::bpf(format!("program {hook}"), "not in the object"))?
                .fd()
                .map_err(|e| Error::bpf(format!("program {hook}"), e))?;
            crate::attach::attach(cgroup.as_fd(), fd.as_fd(), attach_type(hook))
                .map_err(|e| Error::bpf(format!("attach {hook}"), e))?;
        }
        Ok(())
    }

    /// Rewrites the maps to hold `policy`, in an order that never allows more than the old
    /// and the new policies together: the new denials first, then the old allowances go,
    /// then the new ones come, then the old denials go.
    ///
    /// When a step fails, the programs are switched to refuse everything (`deny_all`) until
    /// an update succeeds: a half-written policy is never left in force.
    pub(crate) fn set_policy(&self, policy: &NetworkRestrictions) -> Result<(), Error> {
        let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        match m.write_policy(policy) {
            Ok(()) => {
                if m.deny_all {
                    let (has, observe) = (m.has_policy, m.observe);
                    m.deny_all = false;
                    m.write_config(has, observe)?;
                }
                Ok(())
            }
            Err(e) => {
                m.deny_all = true;
                let (has, observe) = (m.has_policy, m.observe);
                // If even this fails, the error below is all that can be said.
                let _ = m.write_config(has, observe);
                Err(e)
            }
        }
    }

    /// Whether a failed update left the programs refusing everything.
    pub(crate) fn denying_all(&self) -> bool {
        self.maps.lock().unwrap_or_else(|p| p.into_inner()).deny_all
    }
}

impl Maps {
    fn write_policy(&mut self, policy: &NetworkRestrictions) -> Result<(), Error> {
        let m = self;
        let allow: HashSet<IpNet> = policy.allow_rules().iter().copied().collect();
        let deny: HashSet<IpNet> = policy.deny_rules().iter().copied().collect();
        if !policy.has_policy() {
            // Allow all: lift the policy first, then empty the maps.
            let observe = m.observe;
            m.write_config(false, observe)?;
            let (old_allow, old_deny) = (m.allow.clone(), m.deny.clone());
            for net in &old_allow {
                m.remove(*net, false)?;
            }
            for net in &old_deny {
                m.remove(*net, true)?;
            }
            return Ok(());
        }
        // The four differences, computed once (no copy of the rule sets).
        let add_deny: Vec<IpNet> = deny.difference(&m.deny).copied().collect();
        let drop_allow: Vec<IpNet> = m.allow.difference(&allow).copied().collect();
        let add_allow: Vec<IpNet> = allow.difference(&m.allow).copied().collect();
        let drop_deny: Vec<IpNet> = m.deny.difference(&deny).copied().collect();
        for net in add_deny {
            m.insert(net, true)?;
        }
        for net in drop_allow {
            m.remove(net, false)?;
        }
        for net in add_allow {
            m.insert(net, false)?;
        }
        for net in drop_deny {
            m.remove(net, true)?;
        }
        // Maps first, then the switch from "allow all" (if it was off).
        let observe = m.observe;
        m.write_config(true, observe)
    }
}

impl Loaded {
    /// Replaces the protected endpoints: a listener on a given address is that address and
    /// port; one on an unspecified address is its port on every network of `local`. The new
    /// entries are written before the old ones go, so none is open in between.
    pub(crate) fn set_protected(
        &self,
        endpoints: &[SocketAddr],
        local: &[IpNet],
    ) -> Result<(), Error> {
        // `[::ffff:0.0.0.0]:P` is an IPv4 wildcard listener, as `0.0.0.0:P` is.
        let wildcard = |a: &SocketAddr| a.ip().to_canonical().is_unspecified();
        let exact: HashSet<EndpointKey> = endpoints
            .iter()
            .filter(|a| !wildcard(a))
            .map(|a| endpoint_key(*a))
            .collect();
        let ports: HashSet<u16> = endpoints
            .iter()
            .filter(|a| wildcard(a))
            .map(|a| a.port().to_be())
            .collect();
        let nets: HashSet<IpNet> = local.iter().map(IpNet::trunc).collect();
        for (what, n) in [
            ("endpoints", exact.len()),
            ("ports", ports.len()),
            ("networks", nets.len()),
        ] {
            if n > MAX_PROTECTED {
                return Err(Error::Policy {
                    reason: format!(
                        "{n} protected {what}, more than the {MAX_PROTECTED} the map holds"
                    ),
                });
            }
        }
        let fail = |e: aya::maps::MapError| Error::Policy {
            reason: format!("protected endpoints: {}", error_chain(&e)),
        };
        let gone = |r: Result<(), aya::maps::MapError>| match r {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(fail(e)),
        };
        let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        for net in nets.difference(&m.local_now.clone()) {
            match net {
                IpNet::V4(n) => m.local4.insert(&key4(*n), 1, 0),
                IpNet::V6(n) => m.local6.insert(&key6(*n), 1, 0),
            }
            .map_err(fail)?;
            m.local_now.insert(*net);
        }
        for key in exact.difference(&m.protected_now.clone()) {
            m.protected.insert(key, 1, 0).map_err(fail)?;
            m.protected_now.insert(*key);
        }
        for port in ports.difference(&m.ports_now.clone()) {
            m.protected_ports.insert(port, 1, 0).map_err(fail)?;
            m.ports_now.insert(*port);
        }
        for key in m.protected_now.clone().difference(&exact) {
            gone(m.protected.remove(key))?;
            m.protected_now.remove(key);
        }
        for port in m.ports_now.clone().difference(&ports) {
            gone(m.protected_ports.remove(port))?;
            m.ports_now.remove(port);
        }
        for net in m.local_now.clone().difference(&nets) {
            gone(match net {
                IpNet::V4(n) => m.local4.remove(&key4(*n)),
                IpNet::V6(n) => m.local6.remove(&key6(*n)),
            })?;
            m.local_now.remove(net);
        }
        Ok(())
    }

    pub(crate) fn protected_count(&self) -> usize {
        let m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        m.protected_now.len() + m.ports_now.len()
    }

    pub(crate) fn set_observe(&self, observe: bool) -> Result<(), Error> {
        let mut m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let has = m.has_policy;
        m.write_config(has, observe)
    }

    /// (policy present, allow rules, deny rules, observe) as now in the maps.
    pub(crate) fn state(&self) -> (bool, usize, usize, bool) {
        let m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        (m.has_policy, m.allow.len(), m.deny.len(), m.observe)
    }

    /// Events the kernel could not queue (ring buffer full).
    pub(crate) fn kernel_lost(&self) -> u64 {
        let m = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        m.stats.get(&0, 0).unwrap_or(0)
    }
}

impl Maps {
    fn write_config(&mut self, has_policy: bool, observe: bool) -> Result<(), Error> {
        self.config
            .set(
                0,
                [
                    u32::from(has_policy),
                    u32::from(observe),
                    u32::from(self.deny_all),
                ],
                0,
            )
            .map_err(|e| Error::Policy {
                reason: format!("map config: {}", error_chain(&e)),
            })?;
        self.has_policy = has_policy;
        self.observe = observe;
        Ok(())
    }

    fn insert(&mut self, net: IpNet, deny: bool) -> Result<(), Error> {
        let r = match (net, deny) {
            // An allow rule's value is its prefix length: the programs let a multicast or
            // broadcast destination through only a rule written for that range.
            (IpNet::V4(n), false) => self.allow4.insert(&key4(n), n.prefix_len(), 0),
            (IpNet::V4(n), true) => self.deny4.insert(&key4(n), 1, 0),
            (IpNet::V6(n), false) => self.allow6.insert(&key6(n), n.prefix_len(), 0),
            (IpNet::V6(n), true) => self.deny6.insert(&key6(n), 1, 0),
        };
        r.map_err(|e| Error::Policy {
            reason: format!("insert {net}: {}", error_chain(&e)),
        })?;
        if deny {
            self.deny.insert(net);
        } else {
            self.allow.insert(net);
        }
        Ok(())
    }

    fn remove(&mut self, net: IpNet, deny: bool) -> Result<(), Error> {
        let r = match (net, deny) {
            (IpNet::V4(n), false) => self.allow4.remove(&key4(n)),
            (IpNet::V4(n), true) => self.deny4.remove(&key4(n)),
            (IpNet::V6(n), false) => self.allow6.remove(&key6(n)),
            (IpNet::V6(n), true) => self.deny6.remove(&key6(n)),
        };
        match r {
            Ok(()) => {}
            // Already gone: the goal is reached.
            Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => {
                return Err(Error::Policy {
                    reason: format!("remove {net}: {}", error_chain(&e)),
                });
            }
        }
        if deny {
            self.deny.remove(&net);
        } else {
            self.allow.remove(&net);
        }
        Ok(())
    }
}

/// The key of `addr` in `protected`: IPv4 as `::ffff:a.b.c.d` (so an IPv4-mapped address is
/// the same endpoint as its IPv4 form), then the port in network order, then 2 bytes of
/// padding.
pub(crate) fn endpoint_key(addr: SocketAddr) -> EndpointKey {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&ip.octets());
    key[16..18].copy_from_slice(&addr.port().to_be_bytes());
    key
}

fn key4(n: ipnet::Ipv4Net) -> Key<[u8; 4]> {
    Key::new(u32::from(n.prefix_len()), n.network().octets())
}

fn key6(n: ipnet::Ipv6Net) -> Key<[u8; 16]> {
    Key::new(u32::from(n.prefix_len()), n.network().octets())
}

/// An error and its sources, on one line (the kernel's reason is often in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    // The verifier log can be long: keep the start, where the reason is.
    if s.len() > 2000 {
        let mut cut = 2000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …");
    }
    s
}

impl Reader {
    fn start(
        mut ring: RingBuf<MapData>,
        fd: OwnedFd,
        routes: Routes,
        dropped: Arc<AtomicU64>,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ippin-restrict-events".into())
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    while let Some(item) = ring.next() {
                        if let Some(ev) = parse_event(&item) {
                            route(&routes, &dropped, ev);
                        }
                    }
                    let mut fds = [nix::poll::PollFd::new(
                        fd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    // Bounded wait, so that the stop flag is seen within 100 ms.
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u8));
                }
            })
            .map_err(|e| Error::bpf("event reader", e))?;
        Ok(Reader {
            stop,
            thread: Some(thread),
        })
    }
}

fn route(routes: &Routes, dropped: &AtomicU64, ev: NetEvent) {
    let routes = routes.lock().unwrap_or_else(|p| p.into_inner());
    match routes.get(&ev.cgroup_id) {
        Some(tx) => match tx.try_send(ev) {
            Ok(()) => {}
            // A session whose reader is gone while its cgroup lives: the event is lost, and
            // counted as lost (`lost_events`), never dropped unseen.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        },
        None => {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads one `struct event` (72 bytes, native byte order).
pub(crate) fn parse_event(b: &[u8]) -> Option<NetEvent> {
    if b.len() < EVENT_SIZE {
        return None;
    }
    let u64_at = |i: usize| {
        b.get(i..i + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_ne_bytes)
    };
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let u16_at = |i: usize| {
        b.get(i..i + 2)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_ne_bytes)
    };
    let arr16 = |i: usize| -> Option<[u8; 16]> { b.get(i..i + 16)?.try_into().ok() };
    let cgroup_id = u64_at(0)?;
    let pid = u32_at(8)?;
    let dst_port = u16_at(12)?;
    let src_port = u16_at(14)?;
    let dst = arr16(16)?;
    let src = arr16(32)?;
    let comm = arr16(48)?;
    let (family, operation, action, sock_type) = (b[64], b[65], b[66], b[67]);
    let ip = |a: [u8; 16]| -> Option<IpAddr> {
        match family {
            4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    };
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    Some(NetEvent {
        pid,
        cgroup_id,
        program: String::from_utf8_lossy(&comm[..end]).into_owned(),
        src: SocketAddr::new(ip(src)?, src_port),
        dst: SocketAddr::new(ip(dst)?, dst_port),
        operation: match operation {
            0 => NetOperation::Connect,
            2 => NetOperation::Socket,
            3 => NetOperation::SocketOption,
            _ => NetOperation::Send,
        },
        action: match action {
            0 => NetAction::Observed,
            _ => NetAction::Denied,
        },
        socket: match sock_type {
            1 => SocketKind::Stream,
            2 => SocketKind::Datagram,
            other => SocketKind::Other(other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `struct event` as the C side lays it out.
    fn event_bytes(family: u8, operation: u8, action: u8, comm: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; EVENT_SIZE];
        b[0..8].copy_from_slice(&77u64.to_ne_bytes());
        b[8..12].copy_from_slice(&4242u32.to_ne_bytes());
        b[12..14].copy_from_slice(&443u16.to_ne_bytes());
        b[14..16].copy_from_slice(&5000u16.to_ne_bytes());
        b[16..20].copy_from_slice(&[127, 0, 0, 3]);
        b[32..36].copy_from_slice(&[127, 0, 0, 1]);
        b[48..48 + comm.len()].copy_from_slice(comm);
        b[64] = family;
        b[65] = operation;
        b[66] = action;
        b[67] = 1;
        b
    }

    #[test]
    fn an_event_reads_back_field_by_field() {
        let ev = parse_event(&event_bytes(4, 0, 1, b"curl")).expect("event");
        assert_eq!(
            (ev.pid, ev.cgroup_id, ev.program.as_str()),
            (4242, 77, "curl")
        );
        assert_eq!(ev.dst, "127.0.0.3:443".parse().unwrap());
        assert_eq!(ev.src, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            (ev.operation, ev.action, ev.socket),
            (NetOperation::Connect, NetAction::Denied, SocketKind::Stream)
        );
        assert_eq!(
            parse_event(&event_bytes(4, 2, 1, b"")).unwrap().operation,
            NetOperation::Socket
        );
        assert_eq!(
            parse_event(&event_bytes(6, 3, 1, b"")).unwrap().operation,
            NetOperation::SocketOption
        );
        // An unknown action is a denial, never an "observed".
        assert_eq!(
            parse_event(&event_bytes(4, 1, 9, b"x")).unwrap().action,
            NetAction::Denied
        );
        // An unknown family, or a short record, is no event.
        assert!(parse_event(&event_bytes(5, 0, 1, b"x")).is_none());
        assert!(parse_event(&event_bytes(4, 0, 1, b"x")[..EVENT_SIZE - 1]).is_none());
    }

    /// An event is delivered, or counted as lost: a full queue, a session whose reader is
    /// gone, a cgroup no session claims.
    #[test]
    fn events_no_reader_takes_are_counted_as_lost() {
        let routes: Routes = Arc::default();
        let dropped = AtomicU64::new(0);
        let ev = || parse_event(&event_bytes(4, 0, 1, b"curl")).expect("event");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        routes.lock().unwrap().insert(77, tx);
        route(&routes, &dropped, ev());
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        route(&routes, &dropped, ev()); // full
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        drop(rx);
        route(&routes, &dropped, ev()); // the reader is gone
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        routes.lock().unwrap().clear();
        route(&routes, &dropped, ev()); // no session
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn protected_endpoint_keys_map_ipv4_into_ipv6() {
        let v4 = endpoint_key("127.0.0.1:3022".parse().unwrap());
        let mapped = endpoint_key("[::ffff:127.0.0.1]:3022".parse().unwrap());
        assert_eq!(v4, mapped);
        assert_eq!(&v4[16..18], &3022u16.to_be_bytes());
        assert_ne!(v4, endpoint_key("127.0.0.1:3023".parse().unwrap()));
    }

    proptest! {
        /// Whatever the bytes, reading them never panics, and the name is at most 16 bytes.
        #[test]
        fn any_bytes_read_without_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(ev) = parse_event(&b) {
                prop_assert!(ev.program.len() <= 16 * 3);
            }
        }
    }
}
