//! Network restrictions: which destinations a session may connect or send to, and the audit
//! event each decision can become.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
#[cfg(feature = "serde")]
use serde::{Serialize, Serializer};

use crate::Error;
use crate::addr::canonical_ip;
use crate::yaml::Clipped;
#[cfg(feature = "yaml")]
use crate::yaml::{Node, Reader, load};

/// The outcome for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetDecision {
    /// The destination matches an allow rule and no deny rule (or there is no policy).
    Allowed,
    /// Refused. `matched` is the most specific deny rule that matched, or `None` when the
    /// destination matched no allow rule (deny by default).
    Denied {
        /// The deny rule that matched, if any.
        matched: Option<IpNet>,
    },
}

impl NetDecision {
    /// Whether this is [`NetDecision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, NetDecision::Allowed)
    }
}

/// A multiply-shift hasher for integer keys. Keys are networks from the administrator's policy,
/// probed (never inserted) with addresses the session chose, so flooding is not a concern.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: every input bit reaches the low bits the table indexes by
        // (masked networks have all-zero low bits, so a bare multiply would collide).
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation is intended: the two halves are mixed in turn.
        let lo = n as u64;
        let hi = (n >> 64) as u64;
        self.0 = (self.0 ^ lo).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (self.0.rotate_left(29) ^ hi).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// Rules of one family, bucketed by prefix length: a lookup probes one hash set per prefix
/// length in use (at most 33 for IPv4, 129 for IPv6), whatever the number of rules.
#[derive(Debug, Clone)]
struct Buckets<K> {
    /// (prefix length, networks with that length as masked integers), longest first.
    by_len: Vec<(u8, IntSet<K>)>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Buckets { by_len: Vec::new() }
    }
}

trait Bits: Copy + Eq + std::hash::Hash {
    const WIDTH: u8;
    fn mask(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn mask(self, len: u8) -> Self {
        match u32::MAX.checked_shl(u32::from(32u8.saturating_sub(len))) {
            Some(m) => self & m,
            None => 0,
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn mask(self, len: u8) -> Self {
        match u128::MAX.checked_shl(u32::from(128u8.saturating_sub(len))) {
            Some(m) => self & m,
            None => 0,
        }
    }
}

impl<K: Bits> Buckets<K> {
    fn insert(&mut self, net: K, len: u8) {
        let len = len.min(K::WIDTH);
        match self.by_len.iter_mut().find(|(l, _)| *l == len) {
            Some((_, set)) => {
                set.insert(net.mask(len));
            }
            None => {
                let mut set = IntSet::default();
                set.insert(net.mask(len));
                self.by_len.push((len, set));
                self.by_len.sort_by_key(|b| std::cmp::Reverse(b.0));
            }
        }
    }

    /// The longest prefix length whose bucket holds `addr`'s network.
    fn longest_match(&self, addr: K) -> Option<u8> {
        self.by_len
            .iter()
            .find(|(len, set)| set.contains(&addr.mask(*len)))
            .map(|(len, _)| *len)
    }
}

#[derive(Debug, Clone, Default)]
struct Family<K> {
    allow: Buckets<K>,
    deny: Buckets<K>,
}

#[derive(Debug, Clone, Default)]
struct Policy {
    v4: Family<u32>,
    v6: Family<u128>,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// A parsed `network_restrictions` resource, or "no policy" ([`NetworkRestrictions::allow_all`]).
///
/// | policy | destination matches an allow rule | matches a deny rule | decision |
/// |---|---|---|---|
/// | none | – | – | allowed |
/// | present | no | any | denied (by default) |
/// | present | yes | no | allowed |
/// | present | yes | yes | denied (deny wins) |
///
/// A multicast destination is allowed only by a rule inside the multicast range
/// (`224.0.0.0/4`, `ff00::/8`), the limited broadcast `255.255.255.255` only by a rule
/// naming it ([`min_allow_len`]): such a datagram reaches every listener of a network,
/// denied hosts included, so `0.0.0.0/0` does not let one out.
///
/// IPv4 rules also match IPv4-mapped IPv6 destinations (`::ffff:10.0.0.1` is `10.0.0.1`);
/// IPv6 rules never match IPv4 destinations (mapped or not). Lookups probe one hash set per
/// prefix length in use, so their cost does not grow with the number of rules.
///
/// There is no `Default`: "no policy" allows everything, so it is spelt out
/// ([`NetworkRestrictions::allow_all`]) rather than reached by a derived default.
#[derive(Debug, Clone)]
pub struct NetworkRestrictions {
    policy: Option<Policy>,
}

/// Largest number of rules (allow and deny together) accepted in one policy.
pub const MAX_NETWORK_RULES: usize = 100_000;

impl NetworkRestrictions {
    /// No policy: every destination is allowed.
    pub fn allow_all() -> Self {
        NetworkRestrictions { policy: None }
    }

    /// Builds a policy from rule lists (already parsed networks). Networks with host bits set
    /// or inside the IPv4-mapped range `::ffff:0:0/96` are refused, as by
    /// `NetworkRestrictions::parse` (feature `yaml`).
    pub fn from_rules(allow: &[IpNet], deny: &[IpNet]) -> Result<Self, Error> {
        let mut policy = Policy::default();
        for (list, name) in [(allow, "allow"), (deny, "deny")] {
            for (i, net) in list.iter().enumerate() {
                check_net(*net).map_err(|m| {
                    Error::field(
                        "(rules)",
                        0,
                        format!("{name}[{i}]"),
                        format!("`{net}`: {m}"),
                    )
                })?;
                policy.add(*net, name == "deny");
            }
        }
        if policy.allow.len() + policy.deny.len() > MAX_NETWORK_RULES {
            return Err(Error::limit(
                "(rules)",
                0,
                format!("more than {MAX_NETWORK_RULES} rules"),
            ));
        }
        Ok(NetworkRestrictions {
            policy: Some(policy),
        })
    }

    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    /// Parses a `kind: network_restrictions`, `version: v4` resource (one YAML document):
    ///
    /// ```yaml
    /// kind: network_restrictions
    /// version: v4
    /// metadata:
    ///   name: network-restrictions
    /// spec:
    ///   allow:
    ///   - cidr: 10.0.0.0/8
    ///   - cidr: 2001:db8::/32
    ///   deny:
    ///   - cidr: 10.1.2.3        # a single IP means /32 (or /128)
    /// ```
    ///
    /// An entry with host bits set, a bad prefix, leading zeros, an IPv4-mapped IPv6 network
    /// (write the IPv4 form, which also covers mapped destinations), or any field other than
    /// `cidr` refuses the whole policy, naming the entry (`spec.deny[0].cidr`). `spec` accepts
    /// only `allow` and `deny`.
    pub fn parse(file_name: &str, text: &str) -> Result<Self, Error> {
        let r = Reader { file: file_name };
        let docs = load(file_name, text)?;
        let doc = match docs.as_slice() {
            [one] => one,
            [] => {
                return Err(Error::field(
                    file_name,
                    1,
                    "(document)",
                    "no network_restrictions document",
                ));
            }
            [_, second, ..] => {
                return Err(Error::field(
                    file_name,
                    second.line,
                    "(document)",
                    "one network_restrictions document expected",
                ));
            }
        };
        r.resource(
            doc,
            "network_restrictions",
            &["v4"],
            "kind `network_restrictions`, version v4",
        )?;
        let mut policy = Policy::default();
        if let Some(spec) = doc.get("spec") {
            for (key, value) in r.map(spec, "spec")? {
                let deny = match key.as_str() {
                    "allow" => false,
                    "deny" => true,
                    other => {
                        return Err(Error::field(
                            file_name,
                            value.line,
                            format!("spec.{other}"),
                            "unknown field (expected `allow` and `deny`)",
                        ));
                    }
                };
                if matches!(value.value, crate::yaml::Value::Null) {
                    continue;
                }
                for (i, entry) in r.seq(value, &format!("spec.{key}"))?.iter().enumerate() {
                    let net = parse_entry(&r, entry, &format!("spec.{key}[{i}]"))?;
                    policy.add(net, deny);
                    if policy.allow.len() + policy.deny.len() > MAX_NETWORK_RULES {
                        return Err(Error::limit(
                            file_name,
                            entry.line,
                            format!("more than {MAX_NETWORK_RULES} rules"),
                        ));
                    }
                }
            }
        }
        Ok(NetworkRestrictions {
            policy: Some(policy),
        })
    }

    /// Whether a policy is in force (false for [`NetworkRestrictions::allow_all`]).
    pub fn has_policy(&self) -> bool {
        self.policy.is_some()
    }

    /// The allow rules, as written.
    pub fn allow_rules(&self) -> &[IpNet] {
        self.policy.as_ref().map_or(&[], |p| &p.allow)
    }

    /// The deny rules, as written.
    pub fn deny_rules(&self) -> &[IpNet] {
        self.policy.as_ref().map_or(&[], |p| &p.deny)
    }

    /// The decision for destination `dst`, decided as the kernel will route it.
    ///
    /// `dst` is first turned into [`kernel_destination`] (IPv4-mapped becomes IPv4, the
    /// unspecified addresses become the loopback address Linux connects them to). When that
    /// address embeds an IPv4 address the packets are delivered to or through
    /// ([`embedded_ipv4`]: IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo
    /// `2001::/32`), both the IPv6 address and the embedded IPv4 address must be allowed:
    /// deny wins. So `0.0.0.0`, `[::]`, `::ffff:127.0.0.1`, `::127.0.0.1` and
    /// `64:ff9b::7f00:1` are all denied by a rule denying `127.0.0.0/8`.
    pub fn decide(&self, dst: IpAddr) -> NetDecision {
        if self.policy.is_none() {
            return NetDecision::Allowed;
        }
        let dst = kernel_destination(dst);
        let direct = self.decide_exact(dst);
        if !direct.is_allowed() {
            return direct;
        }
        match embedded_ipv4(dst) {
            Some(v4) => self.decide_exact(IpAddr::V4(v4)),
            None => direct,
        }
    }

    /// The decision for exactly `dst` (compared canonically), with no kernel mapping.
    fn decide_exact(&self, dst: IpAddr) -> NetDecision {
        let Some(policy) = &self.policy else {
            return NetDecision::Allowed;
        };
        let dst = canonical_ip(dst);
        let min_allow = min_allow_len(dst);
        match dst {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                decide_family(&policy.v4, a, min_allow, |len| {
                    Ipv4Net::new(Ipv4Addr::from(a.mask(len)), len)
                        .ok()
                        .map(IpNet::V4)
                })
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                decide_family(&policy.v6, a, min_allow, |len| {
                    Ipv6Net::new(Ipv6Addr::from(a.mask(len)), len)
                        .ok()
                        .map(IpNet::V6)
                })
            }
        }
    }
}

/// The address a Linux `connect(2)` to `ip` actually reaches, for deciding on it.
///
/// | `ip` | becomes | why |
/// |---|---|---|
/// | `::ffff:a.b.c.d` | `a.b.c.d` | an IPv4-mapped address is an IPv4 connection |
/// | `0.0.0.0` (also as `::ffff:0.0.0.0`) | `127.0.0.1` | Linux routes a connect to `INADDR_ANY` to the loopback address (the socket is not bound) |
/// | `::` | `::1` | `tcp_v6_connect` turns the unspecified address into `::1` |
/// | anything else | itself | |
///
/// Host names, and the numeric forms a resolver accepts (`127.1`, `0x7f.1`, `2130706433`),
/// are not addresses: resolve them first and decide on every address the resolver gives.
///
/// ```
/// use std::net::IpAddr;
/// use ippin_policy::kernel_destination;
///
/// let any: IpAddr = "0.0.0.0".parse().unwrap();
/// assert_eq!(kernel_destination(any), "127.0.0.1".parse::<IpAddr>().unwrap());
/// let any6: IpAddr = "::".parse().unwrap();
/// assert_eq!(kernel_destination(any6), "::1".parse::<IpAddr>().unwrap());
/// ```
pub fn kernel_destination(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The IPv4 address that traffic to the IPv6 address `ip` is delivered to or tunnelled
/// through, for the forms that embed one. `None` for every other address (including
/// IPv4 addresses and IPv4-mapped ones, which [`kernel_destination`] already converts).
///
/// | range | embedded IPv4 | what reaches it |
/// |---|---|---|
/// | `::a.b.c.d` (IPv4-compatible, `::/96` except `::` and `::1`) | the low 32 bits | the `sit` driver tunnels to it when loaded |
/// | `64:ff9b::/96` (NAT64 well-known prefix, RFC 6052) | the low 32 bits | a NAT64 gateway translates to it |
/// | `2002::/16` (6to4, RFC 3056) | bits 16–47 | the 6to4 router tunnels to it |
/// | `2001::/32` (Teredo, RFC 4380) | the low 32 bits, inverted | the Teredo client's public address |
///
/// The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) embeds the address at a position
/// that depends on the operator's prefix length; it is not decoded: write rules for it as
/// IPv6 networks.
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let a = u128::from(v6);
    let low32 = Ipv4Addr::from((a & 0xffff_ffff) as u32);
    if a >> 32 == 0 {
        // IPv4-compatible; `::` and `::1` are the unspecified and loopback addresses.
        return (a > 1).then_some(low32);
    }
    if a >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32);
    }
    if a >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((a >> 80) & 0xffff_ffff) as u32));
    }
    if a >> 96 == 0x2001_0000 {
        return Some(Ipv4Addr::from(!((a & 0xffff_ffff) as u32)));
    }
    None
}

/// `min_allow`: the shortest allow rule that may allow `addr` (see [`min_allow_len`]).
fn decide_family<K: Bits>(
    fam: &Family<K>,
    addr: K,
    min_allow: u8,
    net: impl Fn(u8) -> Option<IpNet>,
) -> NetDecision {
    if let Some(len) = fam.deny.longest_match(addr) {
        return NetDecision::Denied { matched: net(len) };
    }
    match fam.allow.longest_match(addr) {
        Some(len) if len >= min_allow => NetDecision::Allowed,
        _ => NetDecision::Denied { matched: None },
    }
}

/// How specific an allow rule must be to allow `dst`: a multicast destination only by a
/// rule inside the multicast range (`224.0.0.0/4`, `ff00::/8`), the limited broadcast
/// `255.255.255.255` only by a rule naming it; every other destination by any rule. A
/// multicast or broadcast datagram reaches every listener of a network, denied hosts
/// included, so a wide rule written for unicast hosts (`0.0.0.0/0`) does not let one out.
pub fn min_allow_len(dst: IpAddr) -> u8 {
    match dst {
        IpAddr::V4(v4) if v4.is_broadcast() => 32,
        IpAddr::V4(v4) if v4.is_multicast() => 4,
        IpAddr::V6(v6) if v6.is_multicast() => 8,
        _ => 0,
    }
}

impl Policy {
    fn add(&mut self, net: IpNet, deny: bool) {
        let fam_list = if deny {
            &mut self.deny
        } else {
            &mut self.allow
        };
        fam_list.push(net);
        match net {
            IpNet::V4(n) => {
                let b = if deny {
                    &mut self.v4.deny
                } else {
                    &mut self.v4.allow
                };
                b.insert(u32::from(n.network()), n.prefix_len());
            }
            IpNet::V6(n) => {
                let b = if deny {
                    &mut self.v6.deny
                } else {
                    &mut self.v6.allow
                };
                b.insert(u128::from(n.network()), n.prefix_len());
            }
        }
    }
}

/// Refuses host bits and the IPv4-mapped range.
fn check_net(net: IpNet) -> Result<(), String> {
    if net.trunc() != net {
        return Err(format!("host bits set (the network is `{}`)", net.trunc()));
    }
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
    {
        return Err(format!(
            "IPv4-mapped IPv6 network; write the IPv4 form `{}/{}`, which also matches mapped destinations",
            v4,
            v6.prefix_len() - 96
        ));
    }
    Ok(())
}

/// Parses a network (`10.0.0.0/8`) or a single IP (a `/32` or `/128`) strictly: addresses as
/// the standard library reads them (no leading zeros in IPv4 octets, no short forms, no zone
/// index), a decimal prefix without sign or leading zeros, at most 32 or 128. Host bits are
/// kept (the caller decides what they mean). Every address list of ippin is read with it, so
/// that `010.0.0.1` (octal 8 to some tools) or `/08` is refused everywhere alike.
///
/// ```
/// use ippin_policy::parse_net;
/// assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
/// assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
/// assert!(parse_net("010.0.0.1/32").is_err());
/// assert!(parse_net("10.0.0.0/08").is_err());
/// assert!(parse_net("fe80::1%eth0").is_err());
/// ```
///
/// # Errors
/// A text that is not such an address or network, said in a sentence.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", Clipped(addr)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "prefix {:?}: expected a decimal number",
                    Clipped(p)
                ));
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(format!(
                    "prefix {:?}: leading zeros not allowed",
                    Clipped(p)
                ));
            }
            let n: u8 = p
                .parse()
                .map_err(|_| format!("prefix {:?}: above {max}", Clipped(p)))?;
            if n > max {
                return Err(format!("prefix {n}: above {max}"));
            }
            n
        }
    };
    IpNet::new(ip, len).map_err(|_| format!("prefix {len}: above {max}"))
}

#[cfg(feature = "yaml")]
/// [`parse_net`], and the network must be one a rule can name ([`check_net`]).
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net = parse_net(s)?;
    check_net(net)?;
    Ok(net)
}

#[cfg(feature = "yaml")]
fn parse_entry(r: &Reader<'_>, entry: &Node, path: &str) -> Result<IpNet, Error> {
    for (key, value) in r.map(entry, path)? {
        if key != "cidr" {
            return Err(Error::field(
                r.file,
                value.line,
                format!("{path}.{key}"),
                "unknown field (expected `cidr`)",
            ));
        }
    }
    let field = format!("{path}.cidr");
    let text = r.req_str(entry, "cidr", &field)?;
    let line = entry.get("cidr").map_or(entry.line, |n| n.line);
    parse_cidr(text).map_err(|m| {
        Error::field(
            r.file,
            line,
            field,
            format!("`{}`: {m}", text.chars().take(80).collect::<String>()),
        )
    })
}

/// What a session tried to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetOperation {
    /// `connect(2)`: serialised as 0.
    Connect,
    /// `sendto(2)`/`sendmsg(2)`: serialised as 1.
    Send,
    /// `socket(2)` of a kind whose destinations cannot be decided (ICMP, raw, SCTP, ...):
    /// serialised as 2. The event's port is the protocol number.
    Socket,
    /// `setsockopt(2)` of an option that sends packets elsewhere than the address decided
    /// (an IPv6 routing header, an IPv4 source route): serialised as 3. The event's port is
    /// the option's number.
    SocketOption,
}

/// What was done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetAction {
    /// Allowed and recorded: serialised as 0.
    Observed,
    /// Refused: serialised as 1.
    Denied,
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for NetOperation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            NetOperation::Connect => 0,
            NetOperation::Send => 1,
            NetOperation::Socket => 2,
            NetOperation::SocketOption => 3,
        })
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for NetAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            NetAction::Observed => 0,
            NetAction::Denied => 1,
        })
    }
}

/// The audit event for one network decision, shaped like the existing system's
/// `session.network` event (code `T4002I`); with feature `serde`, serialises with its JSON
/// field names.
///
/// ```
/// use ippin_policy::{NetOperation, NetworkEvent, NetworkRestrictions};
/// # use serde_json;
///
/// let policy = NetworkRestrictions::from_rules(&["10.0.0.0/8".parse().unwrap()], &[]).unwrap();
/// let dst: std::net::SocketAddr = "[::ffff:192.0.2.1]:443".parse().unwrap();
/// let decision = policy.decide(dst.ip());
/// let event = NetworkEvent::new("alice", "root", "sid-1", "10.0.0.5:5000".parse().unwrap(), dst, NetOperation::Connect, &decision);
/// # #[cfg(feature = "serde")]
/// assert_eq!(serde_json::to_value(&event).unwrap()["action"], 1);
/// assert_eq!(event.dst_addr, "192.0.2.1");
/// assert_eq!(event.version, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct NetworkEvent {
    /// Always `T4002I`.
    pub code: &'static str,
    /// Always `session.network`.
    pub event: &'static str,
    /// The user (`user`).
    pub user: String,
    /// The login on the host (`login`).
    pub login: String,
    /// The session ID (`sid`).
    #[cfg_attr(feature = "serde", serde(rename = "sid"))]
    pub session_id: String,
    /// Source address (`src_addr`), canonical.
    pub src_addr: String,
    /// Destination address (`dst_addr`), canonical: IPv4-mapped destinations are shown as IPv4.
    pub dst_addr: String,
    /// Destination port (`dst_port`).
    pub dst_port: u16,
    /// 4 or 6: the family of the canonical destination (`version`).
    pub version: u8,
    /// 0 connect, 1 send (`operation`).
    pub operation: NetOperation,
    /// 0 observed, 1 denied (`action`).
    pub action: NetAction,
    /// The process that asked (`pid`), when the kernel reported the decision.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub pid: Option<u32>,
    /// The cgroup v2 id of that process (`cgroup_id`), when the kernel reported it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cgroup_id: Option<u64>,
    /// The program's name (`program`, the kernel's `comm`), when the kernel reported it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub program: Option<String>,
    /// The node that decided (`server_id`), when the caller names it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_id: Option<String>,
    /// The cluster of that node (`cluster_name`), when the caller names it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cluster_name: Option<String>,
}

/// The event code of [`NetworkEvent`].
pub const NETWORK_EVENT_CODE: &str = "T4002I";

impl NetworkEvent {
    /// The event for `decision` about a session's `operation` from `src` to `dst`.
    pub fn new(
        user: &str,
        login: &str,
        session_id: &str,
        src: SocketAddr,
        dst: SocketAddr,
        operation: NetOperation,
        decision: &NetDecision,
    ) -> Self {
        let dst_ip = canonical_ip(dst.ip());
        NetworkEvent {
            code: NETWORK_EVENT_CODE,
            event: "session.network",
            user: user.to_owned(),
            login: login.to_owned(),
            session_id: session_id.to_owned(),
            src_addr: canonical_ip(src.ip()).to_string(),
            dst_addr: dst_ip.to_string(),
            dst_port: dst.port(),
            version: if dst_ip.is_ipv4() { 4 } else { 6 },
            operation,
            action: if decision.is_allowed() {
                NetAction::Observed
            } else {
                NetAction::Denied
            },
            pid: None,
            cgroup_id: None,
            program: None,
            server_id: None,
            cluster_name: None,
        }
    }

    /// Adds the process the kernel reported: its pid, cgroup id and program name.
    pub fn with_process(mut self, pid: u32, cgroup_id: u64, program: &str) -> Self {
        self.pid = Some(pid);
        self.cgroup_id = Some(cgroup_id);
        self.program = Some(program.to_owned());
        self
    }

    /// Adds the node that decided and its cluster.
    pub fn with_server(mut self, server_id: &str, cluster_name: &str) -> Self {
        self.server_id = Some(server_id.to_owned());
        self.cluster_name = Some(cluster_name.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// How many of 4096 buckets (the hash's low 12 bits) `keys` reach.
    fn spread<K: std::hash::Hash>(keys: impl Iterator<Item = K>) -> usize {
        let build = BuildHasherDefault::<IntHasher>::default();
        keys.map(|k| build.hash_one(k) & 0xfff)
            .collect::<HashSet<u64>>()
            .len()
    }

    /// The lookup sets stay sets of one probe each: 4096 masked networks, whose low bits are
    /// all zero, reach about as many buckets as random keys would (4096 · (1 − 1/e) ≈ 2589).
    /// The hash only affects speed, never a decision; this keeps it from degrading silently
    /// (docs/testing.md).
    #[test]
    fn masked_networks_spread_over_the_low_bits() {
        let v4 = spread((0u32..4096).map(|i| 0x0a00_0000 | (i << 8)));
        let v6 = spread((0u128..4096).map(|i| (0x2001_0db8_u128 << 96) | (i << 80)));
        let v6_low = spread((0u128..4096).map(|i| i << 16));
        for (name, n) in [("v4 /24", v4), ("v6 /48", v6), ("v6 low half", v6_low)] {
            assert!(n > 2400, "{name}: {n} of 4096 buckets");
        }
    }
}
