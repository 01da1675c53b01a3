//! Login throttling decisions, sans-IO: which login attempts are refused
//! before the password is checked, and what a failure changes.
//!
//! * **Per user name**: `max_failures` failed logins within `window` of the
//!   first lock the name for `lock_for`. While locked, every attempt is
//!   refused *before* the password is checked, so a correct password is
//!   refused the same way as a wrong one (and costs no hash).
//! * **Per peer** (a client address: IPv4, or the /64 of an IPv6 address,
//!   [`peer_key`]): the same rule with its own limits throttles one address
//!   that fails too often, whatever names it tries. Its attempts in flight
//!   count against its limit with its failures ([`FailureTable::reserve`]),
//!   and a name's attempt is counted as a failure before the password is
//!   checked ([`Throttle::begin`]): attempts at once cannot check more
//!   passwords than either limit allows. Only failures throttle an address.
//! * **Concurrent connections per peer** ([`ConnectionCounts`]).
//!
//! The tables do not know which names are real users: a name that no user
//! has is counted and locked exactly like a real one, so the lockout tells
//! an attacker nothing about which names exist.
//!
//! Time is a parameter (`now`); nothing here reads a clock, opens a socket
//! or uses the rest of the crate (std, and `ippin-policy` for what an
//! address stands for).
//!
//! # Bounded memory, and eviction
//!
//! A [`FailureTable`] holds at most `capacity` records, keyed by a 64-bit
//! keyed hash of the name (SipHash with a random key per table), so a
//! record costs the same whatever the name's length. When a new key must be
//! recorded and the table is full:
//!
//! 1. records that no longer matter (lock over, window over) are dropped;
//! 2. if still full, the *counting* (not locked) record whose window started
//!    first is evicted: its failures are forgotten;
//! 3. a **locked record is never evicted** before its lock ends, so no
//!    amount of other names can unlock a locked name early;
//! 4. if every record is locked, nothing can be recorded: the attempt is
//!    refused before the password is checked ([`Refusal::Busy`], fail
//!    closed) — only names already in the table can still be tried.
//!
//! Step 2 lets an attacker who fills the table with fresh names reset the
//! partial count of another name; each such name costs one failed login
//! (one password hash), so a reset costs `capacity` hashes.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use ippin_access::lockout::{Limit, Refusal, Throttle};
//!
//! let users = Limit { max_failures: 5, window: Duration::from_secs(1200), lock_for: Duration::from_secs(1200) };
//! let peers = Limit { max_failures: 30, window: Duration::from_secs(60), lock_for: Duration::from_secs(60) };
//! let mut t = Throttle::new(users, peers, 1024);
//! let (now, peer) = (SystemTime::UNIX_EPOCH, "192.0.2.7".parse().unwrap());
//! for _ in 0..5 {
//!     let attempt = t.begin("alice", peer, now).unwrap();
//!     t.failed(attempt, "alice", peer, now); // the password was wrong
//! }
//! assert!(matches!(t.begin("alice", peer, now), Err(Refusal::UserLocked { .. })));
//! assert!(t.begin("bob", peer, now).is_ok());
//! ```

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many failures within which window lock a key, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures that lock (at least 1).
    pub max_failures: u32,
    /// Failures count within this time of the first one of the window.
    pub window: Duration,
    /// How long the lock lasts.
    pub lock_for: Duration,
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// One key's state, times in ms since the epoch.
#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: u64,
    failures: u32,
    /// 0: not locked.
    locked_until: u64,
    /// Attempts let through whose password check has not ended ([`FailureTable::reserve`]).
    pending: u32,
    /// When the last of them was let through: attempts in flight for longer than a window
    /// (a caller that never settled one: a request dropped between the two) are forgotten.
    pending_since: u64,
}

impl Record {
    fn locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    fn in_window(&self, now: u64, limit: &Limit) -> bool {
        now < self.window_start.saturating_add(ms_of(limit.window))
    }

    /// Whether the record still changes a decision.
    fn matters(&self, now: u64, limit: &Limit) -> bool {
        self.locked(now)
            || (self.pending > 0 && self.pending_fresh(now, limit))
            || (self.failures > 0 && self.in_window(now, limit))
    }

    /// Whether the attempts in flight were let through within a window of `now`.
    fn pending_fresh(&self, now: u64, limit: &Limit) -> bool {
        now < self.pending_since.saturating_add(ms_of(limit.window))
    }
}

/// What [`FailureTable::fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counted {
    /// Counted; `failures` so far in the window, below the limit.
    Below {
        /// Failures in the current window.
        failures: u32,
    },
    /// This failure reached the limit: the key is locked until `until`.
    Locked {
        /// End of the lock.
        until: SystemTime,
    },
    /// The key was already locked (nothing changed).
    AlreadyLocked {
        /// End of the lock.
        until: SystemTime,
    },
    /// The table is full of locked records: nothing was recorded.
    Full,
}

/// Failure counts and locks per key, bounded (see the module docs).
#[derive(Debug)]
pub struct FailureTable {
    limit: Limit,
    capacity: usize,
    hasher: RandomState,
    records: HashMap<u64, Record>,
}

impl FailureTable {
    /// An empty table with `limit`, holding at most `capacity` records
    /// (at least 1).
    pub fn new(limit: Limit, capacity: usize) -> FailureTable {
        FailureTable {
            limit: Limit {
                max_failures: limit.max_failures.max(1),
                ..limit
            },
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            records: HashMap::new(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Records held (at most the capacity).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn slot<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The end of `key`'s lock, when it is locked at `now`.
    pub fn locked_until<K: Hash + ?Sized>(&self, key: &K, now: SystemTime) -> Option<SystemTime> {
        let now = ms(now);
        self.records
            .get(&self.slot(key))
            .filter(|r| r.locked(now))
            .map(|r| time(r.locked_until))
    }

    /// Whether a failure of `key` could be recorded at `now` (it has a
    /// record, or one can be made: see the module docs for what is evicted).
    pub fn make_room<K: Hash + ?Sized>(&mut self, key: &K, now: SystemTime) -> bool {
        let slot = self.slot(key);
        self.make_room_for(slot, ms(now))
    }

    fn make_room_for(&mut self, slot: u64, now: u64) -> bool {
        if self.records.contains_key(&slot) || self.records.len() < self.capacity {
            return true;
        }
        let limit = self.limit;
        self.records.retain(|_, r| r.matters(now, &limit));
        if self.records.len() < self.capacity {
            return true;
        }
        let oldest = self
            .records
            .iter()
            .filter(|(_, r)| !r.locked(now))
            .min_by_key(|(_, r)| r.window_start)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.records.remove(&k);
                true
            }
            None => false,
        }
    }

    /// `key`'s record at `now` (ms), made when there is room, its count started again when
    /// its window is over; `Full` when there is no room, `AlreadyLocked` when it is locked.
    fn current<K: Hash + ?Sized>(&mut self, key: &K, now: u64) -> Result<&mut Record, Counted> {
        let slot = self.slot(key);
        if !self.make_room_for(slot, now) {
            return Err(Counted::Full);
        }
        let limit = self.limit;
        let r = self.records.entry(slot).or_insert(Record {
            window_start: now,
            failures: 0,
            locked_until: 0,
            pending: 0,
            pending_since: 0,
        });
        if r.locked(now) {
            return Err(Counted::AlreadyLocked {
                until: time(r.locked_until),
            });
        }
        if r.failures == 0 || !r.in_window(now, &limit) {
            r.window_start = now;
            r.failures = 0;
        }
        Ok(r)
    }

    /// Records one failure of `key` at `now`.
    pub fn fail<K: Hash + ?Sized>(&mut self, key: &K, now: SystemTime) -> Counted {
        let now = ms(now);
        let limit = self.limit;
        let r = match self.current(key, now) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        r.failures = r.failures.saturating_add(1);
        if r.failures >= limit.max_failures {
            r.locked_until = now.saturating_add(ms_of(limit.lock_for)).max(1);
            r.failures = 0;
            return Counted::Locked {
                until: time(r.locked_until),
            };
        }
        Counted::Below {
            failures: r.failures,
        }
    }

    /// Lets one attempt of `key` through at `now`, counted as in flight until
    /// [`settle`](Self::settle)d: refused while `key` is locked (`AlreadyLocked`), when its
    /// failures in the window and its attempts in flight together reach the limit (`Locked`
    /// until the window ends, nothing locked: the attempts in flight decide), or when the
    /// table is full (`Full`). `Below` (with the failures so far) when let through.
    pub fn reserve<K: Hash + ?Sized>(&mut self, key: &K, now: SystemTime) -> Counted {
        let now = ms(now);
        let limit = self.limit;
        let r = match self.current(key, now) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        if r.pending > 0 && !r.pending_fresh(now, &limit) {
            r.pending = 0;
        }
        if r.failures.saturating_add(r.pending) >= limit.max_failures {
            return Counted::Locked {
                until: time(r.window_start.saturating_add(ms_of(limit.window))),
            };
        }
        r.pending = r.pending.saturating_add(1);
        r.pending_since = now;
        Counted::Below {
            failures: r.failures,
        }
    }

    /// Ends an attempt [`reserve`](Self::reserve) let through: no longer in flight, and, when
    /// it `failed`, a failure of `key` at `now` (as [`fail`](Self::fail), which may lock).
    pub fn settle<K: Hash + ?Sized>(&mut self, key: &K, now: SystemTime, failed: bool) -> Counted {
        let slot = self.slot(key);
        if let Some(r) = self.records.get_mut(&slot) {
            r.pending = r.pending.saturating_sub(1);
        }
        if failed {
            self.fail(key, now)
        } else {
            Counted::Below { failures: 0 }
        }
    }

    /// Forgets `key`'s failures and lock.
    pub fn reset<K: Hash + ?Sized>(&mut self, key: &K) {
        let slot = self.slot(key);
        self.records.remove(&slot);
    }
}

/// The key of a client address for the per-peer limits: the canonical IPv4
/// address (an IPv4-mapped IPv6 address is its IPv4 address), or the /64 of
/// an IPv6 address (one subscriber usually holds a whole /64, so counting
/// single IPv6 addresses would give one attacker 2^64 keys).
///
/// Except where the neighbours in a /64 are other clients
/// ([`ippin_policy::stands_alone`]) and the address is one a translator
/// assigns: an address that embeds an IPv4 address (NAT64, 6to4, Teredo,
/// IPv4-compatible) counts as that IPv4 address, as its client would without
/// the translator; SIIT's and the local-use NAT64 prefix's count alone. So one
/// client behind a translator cannot spend the limits of every other client of
/// it. Link-local addresses, which any host on the link picks freely, are one
/// key together (`fe80::`).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            if let Some(v4) = ippin_policy::embedded_ipv4(IpAddr::V6(v6)) {
                return IpAddr::V4(v4);
            }
            // Link-local addresses are the host's own choice (all of `fe80::/10` for anyone on
            // the link): they count as one client, whatever their bits.
            if u128::from(v6) >> 118 == 0x3fa {
                return IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0));
            }
            if ippin_policy::stands_alone(IpAddr::V6(v6)) {
                return IpAddr::V6(v6);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The address a connection's attempts and connections count under ([`Throttle::begin`],
/// [`PeerPlaces::take`]): the observed client when the observation is trusted (the client a
/// trusted proxy or a verified signature names), else the TCP peer, never an address the
/// client claims unchecked.
///
/// A client seen through a cloud private endpoint ([`ippin_policy::ObservedAddr::endpoint`])
/// counts under its endpoint and address together: behind another endpoint the same address
/// is another consumer's client (each plans its own network), who must not throttle or lock
/// out this one. That key is an address of its own, in `0100::/8` (reserved by the IETF,
/// assigned to no network: only `100::/64`, discard-only, is), its first 64 bits a hash of
/// the endpoint and the client's key ([`peer_key`]), so that every table keyed by address
/// keeps it apart. No client can take an endpoint's key: one whose address is in `0100::/8`
/// (which no real network routes) counts under `100::`, which is no endpoint's key. (Unique
/// local addresses, `fd00::/8`, were used before: a client with a ULA prefix of its choice
/// could compute a victim's key and spend its limits.)
///
/// ```
/// use ippin_access::lockout::throttle_key;
/// use ippin_policy::{Endpoint, ObservedAddr};
/// let peer = "10.0.0.9:4000".parse().unwrap();
/// let seen = ObservedAddr::socket_peer("10.0.0.5:5000".parse().unwrap());
/// assert_eq!(throttle_key(&seen, peer).to_string(), "10.0.0.5");
/// let e1 = seen.with_endpoint(Endpoint::parse("vpce-0123456789abcdef0").unwrap());
/// let e2 = seen.with_endpoint(Endpoint::parse("azure:7").unwrap());
/// assert_ne!(throttle_key(&e1, peer), throttle_key(&e2, peer));
/// assert_ne!(throttle_key(&e1, peer), throttle_key(&seen, peer));
/// assert_eq!(throttle_key(&e1, peer), throttle_key(&e1, peer));
/// // A client from the keys' own range is one bucket, never an endpoint's key.
/// let odd = ObservedAddr::socket_peer(SocketAddr::new(throttle_key(&e1, peer), 1));
/// assert_eq!(throttle_key(&odd, peer).to_string(), "100::");
/// # use std::net::SocketAddr;
/// ```
pub fn throttle_key(
    observed: &ippin_policy::ObservedAddr,
    tcp_peer: std::net::SocketAddr,
) -> IpAddr {
    if observed.is_trusted() {
        trusted_key(observed)
    } else {
        peer_only_key(tcp_peer.ip())
    }
}

/// [`throttle_key`] of a trusted observation (whose TCP peer is not read): the observed
/// client, with its private endpoint if any. An untrusted observation counts under its
/// (unchecked) address here: callers with the TCP peer use [`throttle_key`].
pub fn trusted_key(observed: &ippin_policy::ObservedAddr) -> IpAddr {
    match observed.endpoint() {
        None => peer_only_key(observed.ip()),
        Some(endpoint) => {
            use std::hash::{Hash, Hasher};
            // Deterministic (fixed keys), so that every node of a fleet counts alike. The
            // lowest bit of the hash is set: the key is never `100::`.
            let mut h = std::hash::DefaultHasher::new();
            endpoint.as_str().hash(&mut h);
            peer_key(observed.ip()).hash(&mut h);
            let hash = (h.finish() & 0x00ff_ffff_ffff_ffff) | 1;
            IpAddr::V6(Ipv6Addr::from(ENDPOINT_KEYS | (u128::from(hash) << 64)))
        }
    }
}

/// The range of the endpoint keys of [`throttle_key`]: `0100::/8`.
const ENDPOINT_KEYS: u128 = 0x01 << 120;

/// The key of a client counted by its address alone (its socket peer, before any header is
/// read; a trusted observation through no endpoint): `ip`, or `100::` for an address in the
/// range of [`throttle_key`]'s endpoint keys (which no real network routes), so that no
/// client counts under an endpoint's key in a table [`throttle_key`] also fills.
pub fn peer_only_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if u128::from(v6) >> 120 == ENDPOINT_KEYS >> 120 => {
            IpAddr::V6(Ipv6Addr::from(ENDPOINT_KEYS))
        }
        other => other,
    }
}

/// Why an attempt is refused before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The client address failed too often (`peer_throttled`).
    PeerThrottled {
        /// End of the throttle.
        until: SystemTime,
    },
    /// The user name is locked (`user_locked`), whether or not a user has it.
    UserLocked {
        /// End of the lock.
        until: SystemTime,
        /// The failures that lock a name.
        max_failures: u32,
    },
    /// The name or address is not in its table and the table is full of
    /// locked records (`login_busy`): fail closed, see the module docs.
    Busy,
}

impl Refusal {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::PeerThrottled { .. } => "peer_throttled",
            Refusal::UserLocked { .. } => "user_locked",
            Refusal::Busy => "login_busy",
        }
    }

    /// When to try again (`None` for [`Refusal::Busy`]).
    pub fn until(&self) -> Option<SystemTime> {
        match self {
            Refusal::PeerThrottled { until } | Refusal::UserLocked { until, .. } => Some(*until),
            Refusal::Busy => None,
        }
    }
}

/// An attempt let through to the password check, from [`Throttle::begin`].
/// It was already counted as a failure of its user name (so concurrent
/// attempts cannot check more than `max_failures` passwords); pass it to
/// [`Throttle::failed`] or [`Throttle::succeeded`].
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    locked_by_it: Option<SystemTime>,
}

/// What a failed attempt changed, from [`Throttle::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// The user name is locked now, until then: answer with the lock.
    pub user_locked_until: Option<SystemTime>,
    /// This attempt was the one that locked the name.
    pub user_lock_began: bool,
    /// This failure throttled the peer, until then.
    pub peer_throttle_began: Option<SystemTime>,
}

/// The login decisions: a [`FailureTable`] for user names and one for peers.
#[derive(Debug)]
pub struct Throttle {
    users: FailureTable,
    peers: FailureTable,
}

impl Throttle {
    /// Tables with these limits, each holding at most `capacity` records.
    pub fn new(users: Limit, peers: Limit, capacity: usize) -> Throttle {
        Throttle {
            users: FailureTable::new(users, capacity),
            peers: FailureTable::new(peers, capacity),
        }
    }

    /// Before the password of `user` from `peer` is checked: refused when
    /// the peer is throttled (or its failures and attempts in flight reach its
    /// limit), the name locked, or a table full; otherwise the attempt is
    /// counted in flight for the peer and as a failure of the name in advance,
    /// so that attempts at once cannot check more passwords than either limit
    /// allows.
    ///
    /// `peer` must be an address the client cannot choose: [`throttle_key`] of the
    /// connection (the observed client when trusted, else the TCP peer). An untrusted
    /// observation's address is the client's claim: keyed by it, one client would get a
    /// fresh per-address limit for every address it claims.
    ///
    /// # Errors
    /// The [`Refusal`], in that order of precedence.
    pub fn begin(&mut self, user: &str, peer: IpAddr, now: SystemTime) -> Result<Attempt, Refusal> {
        let peer = peer_key(peer);
        if let Some(until) = self.peers.locked_until(&peer, now) {
            return Err(Refusal::PeerThrottled { until });
        }
        if !self.peers.make_room(&peer, now) {
            return Err(Refusal::Busy);
        }
        // The address first: its attempts in flight count against its limit, so attempts at
        // once cannot check more passwords than it allows.
        match self.peers.reserve(&peer, now) {
            Counted::Below { .. } => {}
            Counted::Locked { until } | Counted::AlreadyLocked { until } => {
                return Err(Refusal::PeerThrottled { until });
            }
            Counted::Full => return Err(Refusal::Busy),
        }
        let max_failures = self.users.limit().max_failures;
        let locked_by_it = match self.users.fail(user, now) {
            Counted::Below { .. } => None,
            Counted::Locked { until } => Some(until),
            // Not counted against the address: a user who retries until the lock ends must
            // not be throttled for it, and the refusal costs no password check.
            Counted::AlreadyLocked { until } => {
                let _ = self.peers.settle(&peer, now, false);
                return Err(Refusal::UserLocked {
                    until,
                    max_failures,
                });
            }
            // A full name table (only under a flood of fresh names) is a failure of the address
            // too, so that one address cannot repeat these refusals without limit (room for the
            // address was made above).
            Counted::Full => {
                let _ = self.peers.settle(&peer, now, true);
                return Err(Refusal::Busy);
            }
        };
        Ok(Attempt { locked_by_it })
    }

    /// The password was wrong (or the name has no user): the failure is
    /// counted for the peer (no longer in flight); the name's was counted by
    /// [`Throttle::begin`].
    pub fn failed(
        &mut self,
        attempt: Attempt,
        user: &str,
        peer: IpAddr,
        now: SystemTime,
    ) -> Failed {
        let peer_throttle_began = match self.peers.settle(&peer_key(peer), now, true) {
            Counted::Locked { until } => Some(until),
            _ => None,
        };
        let user_locked_until = self.users.locked_until(user, now).or(attempt.locked_by_it);
        Failed {
            user_locked_until,
            user_lock_began: attempt.locked_by_it.is_some(),
            peer_throttle_began,
        }
    }

    /// The password was right: the name's failures (and a lock its attempt
    /// began) are forgotten. The peer's failures are kept (one good account
    /// must not clear an address that guesses at others); the attempt is no
    /// longer in flight.
    pub fn succeeded(&mut self, attempt: Attempt, user: &str, peer: IpAddr) {
        let _ = attempt;
        self.users.reset(user);
        let _ = self
            .peers
            .settle(&peer_key(peer), SystemTime::UNIX_EPOCH, false);
    }

    /// The end of `user`'s lock at `now`, if locked.
    pub fn user_locked_until(&self, user: &str, now: SystemTime) -> Option<SystemTime> {
        self.users.locked_until(user, now)
    }

    /// Records held: (user names, peers).
    pub fn len(&self) -> (usize, usize) {
        (self.users.len(), self.peers.len())
    }
}

/// Live connections per peer ([`peer_key`]), at most `max_per_peer` each.
///
/// A key is held only while one of its connections is open, so the map is
/// bounded by the number of open connections, which the server bounds.
#[derive(Debug)]
pub struct ConnectionCounts {
    max_per_peer: usize,
    counts: HashMap<IpAddr, usize>,
}

impl ConnectionCounts {
    /// No connection yet; at most `max_per_peer` (at least 1) per peer.
    pub fn new(max_per_peer: usize) -> ConnectionCounts {
        ConnectionCounts {
            max_per_peer: max_per_peer.max(1),
            counts: HashMap::new(),
        }
    }

    /// Takes a place for a connection from `peer`; false when the peer
    /// already has `max_per_peer` (nothing is taken then).
    pub fn enter(&mut self, peer: IpAddr) -> bool {
        let n = self.counts.entry(peer_key(peer)).or_insert(0);
        if *n >= self.max_per_peer {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a place taken by [`ConnectionCounts::enter`].
    pub fn leave(&mut self, peer: IpAddr) {
        let key = peer_key(peer);
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }

    /// Peers with at least one connection.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no connection is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// [`ConnectionCounts`] shared between connections, each holding its place as a guard that
/// gives it back when dropped ([`PeerPlace`]).
#[derive(Debug, Clone)]
pub struct PeerPlaces(std::sync::Arc<std::sync::Mutex<ConnectionCounts>>);

impl PeerPlaces {
    /// No place taken; at most `max_per_peer` (at least 1) per peer ([`peer_key`]).
    pub fn new(max_per_peer: usize) -> PeerPlaces {
        PeerPlaces(std::sync::Arc::new(std::sync::Mutex::new(
            ConnectionCounts::new(max_per_peer),
        )))
    }

    /// A place for a connection from `peer`, or `None` when the peer holds every one of its
    /// places.
    pub fn take(&self, peer: IpAddr) -> Option<PeerPlace> {
        let entered = self.lock().enter(peer);
        entered.then(|| PeerPlace {
            places: self.clone(),
            peer,
        })
    }

    /// Peers holding at least one place.
    pub fn peers(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionCounts> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A place taken from [`PeerPlaces`]; given back when dropped.
#[derive(Debug)]
pub struct PeerPlace {
    places: PeerPlaces,
    peer: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        self.places.lock().leave(self.peer);
    }
}

/// Places counted per name (a user's connections, forwards, lookups), at most `max` each,
/// shared between tasks; each place a guard that gives it back when dropped
/// ([`NamedPlace`]). A name is held only while one of its places is, so the map is bounded
/// by the places taken.
#[derive(Debug, Clone)]
pub struct NamedPlaces {
    counts: std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>>,
    max: usize,
}

impl NamedPlaces {
    /// No place taken; at most `max` per name.
    pub fn new(max: usize) -> NamedPlaces {
        NamedPlaces {
            counts: std::sync::Arc::default(),
            max,
        }
    }

    /// A place for `name`, or `None` when it holds every one of its places.
    pub fn take(&self, name: &str) -> Option<NamedPlace> {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(name.to_owned()).or_insert(0);
        if *n >= self.max {
            if *n == 0 {
                map.remove(name);
            }
            return None;
        }
        *n += 1;
        Some(NamedPlace {
            places: self.clone(),
            name: name.to_owned(),
        })
    }

    /// The places `name` holds.
    pub fn held(&self, name: &str) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// A place taken from [`NamedPlaces`]; given back when dropped.
#[derive(Debug)]
pub struct NamedPlace {
    places: NamedPlaces,
    name: String,
}

impl Drop for NamedPlace {
    fn drop(&mut self) {
        let mut map = self
            .places
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn named_places_are_counted_per_name_and_given_back() {
        let places = NamedPlaces::new(2);
        let a = places.take("bob").unwrap();
        let _b = places.take("bob").unwrap();
        assert!(places.take("bob").is_none());
        assert!(places.take("alice").is_some());
        assert_eq!(places.held("alice"), 0, "given back when dropped");
        drop(a);
        assert_eq!(places.held("bob"), 1);
        assert!(places.take("bob").is_some());
        assert!(NamedPlaces::new(0).take("x").is_none());
    }

    #[test]
    fn the_throttle_key_is_never_an_unchecked_claim() {
        use ippin_policy::{ObservedAddr, Provenance};
        let peer: std::net::SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let claimed = ObservedAddr::untrusted("192.0.2.7".parse().unwrap(), Provenance::ProxyV1);
        assert_eq!(throttle_key(&claimed, peer), peer.ip());
        let vouched =
            ObservedAddr::new("192.0.2.7:4000".parse().unwrap(), Provenance::ProxyV2, true);
        assert_eq!(throttle_key(&vouched, peer), vouched.ip());
    }

    #[test]
    fn clients_of_a_translator_are_counted_apart() {
        let key = |s: &str| peer_key(s.parse().unwrap());
        // Two IPv4 clients of one NAT64 gateway (or SIIT, Teredo server, link): two keys.
        for (a, b) in [
            ("64:ff9b::c000:207", "64:ff9b::c000:208"),
            ("::ffff:0:c000:207", "::ffff:0:c000:208"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "2001:0:4136:e378:8000:63bf:3fff:fdd3",
            ),
            ("64:ff9b:1::1", "64:ff9b:1::2"),
        ] {
            assert_ne!(key(a), key(b), "{a} {b}");
        }
        // Link-local addresses are free for the taking on the link: one key for all.
        assert_eq!(key("fe80::1"), key("fe80::2"));
        assert_eq!(key("fe80::1"), key("febf:1:2:3::4"));
        // An address that embeds an IPv4 address counts as it.
        assert_eq!(key("64:ff9b::c000:207"), key("192.0.2.7"));
        assert_eq!(key("2002:c000:207::1"), key("192.0.2.7"));
        // Native IPv6: the /64; IPv4-mapped: the IPv4 address.
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }

    #[test]
    fn peer_places_are_given_back_when_dropped() {
        let places = PeerPlaces::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = places.take(a).unwrap();
        let second = places.take(a).unwrap();
        assert!(places.take(a).is_none());
        // The same /64 is one peer; another address is not.
        let v6 = places.take("2001:db8::1".parse().unwrap()).unwrap();
        let _v6b = places.take("2001:db8::2".parse().unwrap()).unwrap();
        assert!(places.take("2001:db8::3".parse().unwrap()).is_none());
        assert!(places.take("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        let third = places.take(a).unwrap();
        drop((second, third, v6, _v6b));
        assert_eq!(places.peers(), 0);
    }

    const N: u32 = 5;

    fn limit(max_failures: u32, secs: u64) -> Limit {
        Limit {
            max_failures,
            window: Duration::from_secs(secs),
            lock_for: Duration::from_secs(secs),
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn peer(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn throttle() -> Throttle {
        Throttle::new(limit(N, 1200), limit(30, 60), 1024)
    }

    /// `n` failed attempts of `user` from `from` at `now`; the last answer.
    fn fail_n(t: &mut Throttle, user: &str, from: IpAddr, now: SystemTime, n: u32) -> Failed {
        let mut last = None;
        for _ in 0..n {
            let a = t.begin(user, from, now).expect("let through");
            last = Some(t.failed(a, user, from, now));
        }
        last.expect("n > 0")
    }

    #[test]
    fn five_failures_lock_the_name_and_say_until_when() {
        let mut t = throttle();
        let f = fail_n(&mut t, "alice", peer(1), at(1000), N - 1);
        assert_eq!(f.user_locked_until, None);
        let f = fail_n(&mut t, "alice", peer(1), at(2000), 1);
        let until = at(2000 + 1_200_000);
        assert_eq!(f.user_locked_until, Some(until));
        assert!(f.user_lock_began);
        // Whatever the password: refused before it is checked.
        assert_eq!(
            t.begin("alice", peer(2), at(3000)).unwrap_err(),
            Refusal::UserLocked {
                until,
                max_failures: N
            }
        );
        // Another name from the same peer is not affected.
        assert!(t.begin("bob", peer(1), at(3000)).is_ok());
    }

    #[test]
    fn the_lock_ends_at_its_time_and_counting_starts_again() {
        let mut t = throttle();
        fail_n(&mut t, "alice", peer(1), at(0), N);
        let until = 1_200_000;
        assert!(t.begin("alice", peer(1), at(until - 1)).is_err());
        let f = fail_n(&mut t, "alice", peer(1), at(until), 1);
        assert_eq!(f.user_locked_until, None, "a fresh window");
    }

    /// An address's attempts in flight count against its limit with its failures: attempts
    /// at once cannot check more passwords than the limit allows. Only failures lock it:
    /// successes in flight, however many, leave nothing behind.
    #[test]
    fn attempts_in_flight_count_against_the_peer_in_advance() {
        let mut t = Throttle::new(limit(100, 1200), limit(3, 60), 1024);
        let a1 = t.begin("u1", peer(1), at(0)).unwrap();
        let a2 = t.begin("u2", peer(1), at(0)).unwrap();
        let a3 = t.begin("u3", peer(1), at(0)).unwrap();
        // Three in flight: the fourth is refused before its password is checked.
        assert!(matches!(
            t.begin("u4", peer(1), at(0)),
            Err(Refusal::PeerThrottled { .. })
        ));
        assert_eq!(t.failed(a1, "u1", peer(1), at(1)).peer_throttle_began, None);
        assert_eq!(t.failed(a2, "u2", peer(1), at(1)).peer_throttle_began, None);
        // The failure that reaches the limit throttles the address.
        assert_eq!(
            t.failed(a3, "u3", peer(1), at(1)).peer_throttle_began,
            Some(at(60_001))
        );

        // As many successes in flight as the limit: none throttles, none leaves a count.
        let mut t = Throttle::new(limit(100, 1200), limit(3, 60), 1024);
        let ok: Vec<_> = (0..3)
            .map(|i| t.begin(&format!("ok{i}"), peer(3), at(0)).unwrap())
            .collect();
        for (i, a) in ok.into_iter().enumerate() {
            t.succeeded(a, &format!("ok{i}"), peer(3));
        }
        let a = t.begin("typo", peer(3), at(1)).unwrap();
        assert_eq!(
            t.failed(a, "typo", peer(3), at(1)).peer_throttle_began,
            None
        );
        assert!(t.begin("again", peer(3), at(2)).is_ok());

        // Attempts never settled (a request dropped between begin and its end) stop counting
        // once a window has passed since the last was let through.
        let mut t = Throttle::new(limit(100, 1200), limit(2, 60), 1024);
        let _lost = [
            t.begin("l1", peer(4), at(0)).unwrap(),
            t.begin("l2", peer(4), at(0)).unwrap(),
        ];
        assert!(t.begin("l3", peer(4), at(59_999)).is_err());
        assert!(t.begin("l4", peer(4), at(60_000)).is_ok());

        // A success in flight counts until it ends, then no more.
        let mut t = Throttle::new(limit(100, 1200), limit(3, 60), 1024);
        fail_n(&mut t, "u1", peer(2), at(0), 2);
        let a = t.begin("alice", peer(2), at(1)).unwrap();
        assert!(
            t.begin("u5", peer(2), at(1)).is_err(),
            "throttled while in flight"
        );
        t.succeeded(a, "alice", peer(2));
        let a = t
            .begin("u6", peer(2), at(2))
            .expect("the success gave its count back");
        let f = t.failed(a, "u6", peer(2), at(2));
        assert_eq!(f.peer_throttle_began, Some(at(60_002)));
    }

    #[test]
    fn success_resets_the_count_but_not_the_peers() {
        let mut t = Throttle::new(limit(N, 1200), limit(6, 60), 1024);
        fail_n(&mut t, "alice", peer(1), at(0), N - 1);
        let a = t.begin("alice", peer(1), at(1)).unwrap();
        t.succeeded(a, "alice", peer(1));
        let f = fail_n(&mut t, "alice", peer(1), at(2), 2);
        assert_eq!(f.user_locked_until, None);
        assert_eq!(f.peer_throttle_began, Some(at(60_002)));
        // The peer has 6 failures (the success did not clear them):
        // throttled, whoever it names.
        assert!(matches!(
            t.begin("carol", peer(1), at(3)),
            Err(Refusal::PeerThrottled { .. })
        ));
        assert!(t.begin("carol", peer(9), at(3)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut t = throttle();
        fail_n(&mut t, "alice", peer(1), at(0), N - 1);
        let f = fail_n(&mut t, "alice", peer(1), at(1_200_000), N - 1);
        assert_eq!(f.user_locked_until, None);
    }

    #[test]
    fn concurrent_attempts_check_at_most_max_failures_passwords() {
        let mut t = throttle();
        let attempts: Vec<_> = (0..N)
            .map(|_| t.begin("alice", peer(1), at(0)).unwrap())
            .collect();
        // All N are in flight: the next is refused before its check.
        assert!(matches!(
            t.begin("alice", peer(1), at(0)),
            Err(Refusal::UserLocked { .. })
        ));
        let began: Vec<bool> = attempts
            .into_iter()
            .map(|a| t.failed(a, "alice", peer(1), at(1)).user_lock_began)
            .collect();
        assert_eq!(began.iter().filter(|b| **b).count(), 1);
    }

    #[test]
    fn peer_keys_are_canonical_and_group_ipv6_by_64() {
        assert_eq!(
            peer_key("::ffff:192.0.2.7".parse().unwrap()),
            peer_key("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            peer_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(
            peer_key("2001:db8:1:3::1".parse().unwrap()),
            peer_key("2001:db8:1:2::1".parse().unwrap())
        );
    }

    #[test]
    fn connection_counts_per_peer() {
        let mut c = ConnectionCounts::new(2);
        assert!(c.enter(peer(1)));
        assert!(c.enter("::ffff:192.0.2.1".parse().unwrap()));
        assert!(!c.enter(peer(1)));
        assert!(c.enter(peer(2)));
        c.leave(peer(1));
        assert!(c.enter(peer(1)));
        c.leave(peer(1));
        c.leave(peer(1));
        c.leave(peer(2));
        assert!(c.is_empty());
    }

    #[test]
    fn login_busy_counts_against_the_peer_and_a_locked_name_does_not() {
        // One failure locks a name; two failures throttle an address; one name fits.
        let mut t = Throttle::new(limit(1, 600), limit(2, 60), 1);
        let a = t.begin("a", peer(3), at(0)).unwrap();
        let _ = t.failed(a, "a", peer(3), at(0));
        // Retrying the locked name until the lock ends never throttles the address.
        for i in 0..10 {
            assert!(matches!(
                t.begin("a", peer(5), at(1 + i)),
                Err(Refusal::UserLocked { .. })
            ));
        }
        // A full table of names: each `login_busy` is a failure of the address.
        assert_eq!(t.begin("b", peer(4), at(20)).unwrap_err(), Refusal::Busy);
        assert_eq!(t.begin("c", peer(4), at(20)).unwrap_err(), Refusal::Busy);
        assert!(matches!(
            t.begin("d", peer(4), at(20)),
            Err(Refusal::PeerThrottled { .. })
        ));
    }

    #[test]
    fn a_full_table_of_locks_refuses_new_names_and_keeps_the_locks() {
        let mut t = Throttle::new(limit(1, 60), limit(1000, 60), 3);
        for name in ["a", "b", "c"] {
            let a = t.begin(name, peer(1), at(0)).unwrap();
            assert!(t.failed(a, name, peer(1), at(0)).user_lock_began);
        }
        assert_eq!(t.begin("d", peer(1), at(1)).unwrap_err(), Refusal::Busy);
        // Once the locks are over, their records go.
        assert!(t.begin("d", peer(1), at(60_000)).is_ok());
    }

    proptest! {
        /// No client, whatever its address (in the keys' own range, a unique local address
        /// of its choosing, any other), trusted or not, counts under a key of a client seen
        /// through an endpoint, before or after [`peer_key`]; the same address through two
        /// endpoints, two keys (but for a 56-bit hash collision).
        #[test]
        fn no_client_counts_under_an_endpoints_key(
            bits in any::<u128>(),
            top in proptest::sample::select(vec![0x01u8, 0xfd, 0x20, 0x00]),
            victim in any::<u128>(),
            e1 in "[a-z0-9]{1,16}",
            trusted in any::<bool>(),
        ) {
            use ippin_policy::{Endpoint, ObservedAddr};
            let attacker = Ipv6Addr::from((u128::from(top) << 120) | (bits >> 8));
            let socket = |ip: IpAddr| std::net::SocketAddr::new(ip, 4000);
            let direct = if trusted {
                ObservedAddr::socket_peer(socket(IpAddr::V6(attacker)))
            } else {
                ObservedAddr::untrusted(IpAddr::V6(attacker), ippin_policy::Provenance::ProxyV2)
            };
            let tcp = socket(IpAddr::V6(attacker));
            let victim = ObservedAddr::socket_peer(socket(IpAddr::V6(Ipv6Addr::from(victim))));
            let ep1 = Endpoint::parse(&format!("vpce-{e1}")).unwrap();
            let ep2 = Endpoint::parse(&format!("vpce-{e1}x")).unwrap();
            let through = throttle_key(&victim.with_endpoint(ep1), tcp);
            let through2 = throttle_key(&victim.with_endpoint(ep2), tcp);
            let mine = throttle_key(&direct, tcp);
            prop_assert_ne!(mine, through);
            // Counted at accept, by the socket peer alone: the same.
            let at_accept = peer_only_key(IpAddr::V6(attacker));
            prop_assert_ne!(peer_key(at_accept), peer_key(through));
            prop_assert_ne!(peer_key(mine), peer_key(through));
            prop_assert_eq!(peer_key(through), through);
            prop_assert_ne!(through, through2);
        }

        /// One address, attempts begun and ended in any order within one window: the
        /// passwords it gets checked that turn out wrong, with those still in flight, never
        /// exceed its limit; once that many have failed it is refused; and successes, however
        /// many at once, never refuse it while fewer than the limit are in flight.
        #[test]
        fn an_address_never_checks_more_wrong_passwords_than_its_limit(
            ops in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<u8>()), 1..300),
            max in 1u32..8,
        ) {
            let mut t = Throttle::new(limit(100_000, 3600), limit(max, 3600), 4096);
            let mut in_flight: Vec<(Attempt, String)> = Vec::new();
            let (mut failed, mut n) = (0u32, 0u32);
            for (start, fails, pick) in ops {
                if start || in_flight.is_empty() {
                    n += 1;
                    let name = format!("u{n}");
                    match t.begin(&name, peer(9), at(u64::from(n))) {
                        Ok(a) => in_flight.push((a, name)),
                        Err(Refusal::PeerThrottled { .. }) => {
                            prop_assert!(
                                failed >= max || failed + in_flight.len() as u32 >= max,
                                "refused with {failed} failures and {} in flight", in_flight.len()
                            );
                        }
                        Err(other) => prop_assert!(false, "{other:?}"),
                    }
                } else {
                    let (a, name) = in_flight.swap_remove(usize::from(pick) % in_flight.len());
                    if fails {
                        let _ = t.failed(a, &name, peer(9), at(u64::from(n)));
                        failed += 1;
                    } else {
                        t.succeeded(a, &name, peer(9));
                    }
                }
                prop_assert!(failed + in_flight.len() as u32 <= max);
            }
        }

        /// Random names and addresses never grow the tables past their
        /// capacity, and a locked name stays locked until its time
        /// whatever else happens (eviction cannot unlock it early).
        #[test]
        fn bounded_and_locks_hold(
            ops in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u64..5_000, any::<bool>()), 1..400),
            capacity in 1usize..40,
        ) {
            let mut t = Throttle::new(limit(3, 10), limit(50, 10), capacity);
            let mut now = 0u64;
            // Lock "alice" first (3 failures).
            let first = fail_n(&mut t, "alice", peer(200), at(now), 3);
            let until = first.user_locked_until.expect("locked");
            for (name, from, step, ok) in ops {
                now += step;
                let name = format!("u{name}");
                let from = IpAddr::from([10, 0, from, 1]);
                if let Ok(a) = t.begin(&name, from, at(now)) {
                    if ok {
                        t.succeeded(a, &name, from);
                    } else {
                        let _ = t.failed(a, &name, from, at(now));
                    }
                }
                let (users, peers) = t.len();
                prop_assert!(users <= capacity && peers <= capacity);
                let locked = t.user_locked_until("alice", at(now));
                if at(now) < until {
                    prop_assert_eq!(locked, Some(until));
                } else {
                    prop_assert_eq!(locked, None);
                }
            }
        }

        /// Sequential failures of one name within the window lock it at
        /// exactly the `max_failures`-th, until `lock_for` after it; a
        /// success before that starts the count again.
        #[test]
        fn locks_after_exactly_n(
            n in 1u32..10,
            gaps in proptest::collection::vec(0u64..1_000, 1..30),
            reset_at in proptest::option::of(0usize..30),
        ) {
            let window = 60_000u64;
            let mut t = Throttle::new(
                Limit { max_failures: n, window: Duration::from_millis(window), lock_for: Duration::from_secs(120) },
                limit(10_000, 60),
                64,
            );
            let (mut now, mut count) = (0u64, 0u32);
            for (i, gap) in gaps.iter().enumerate() {
                now += gap;
                if now >= window {
                    break;
                }
                let a = t.begin("alice", peer(1), at(now));
                if count >= n {
                    prop_assert!(matches!(a, Err(Refusal::UserLocked { .. })), "{:?}", a);
                    continue;
                }
                let a = a.expect("below the limit");
                if reset_at == Some(i) {
                    t.succeeded(a, "alice", peer(1));
                    count = 0;
                    continue;
                }
                let f = t.failed(a, "alice", peer(1), at(now));
                count += 1;
                if count == n {
                    prop_assert_eq!(f.user_locked_until, Some(at(now + 120_000)));
                    prop_assert!(f.user_lock_began);
                    prop_assert!(t.user_locked_until("alice", at(now + 119_999)).is_some());
                    prop_assert!(t.user_locked_until("alice", at(now + 120_000)).is_none());
                } else {
                    prop_assert_eq!(f.user_locked_until, None);
                }
            }
        }
    }
}
