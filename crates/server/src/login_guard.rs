//! The login listeners' limits, wired: the sans-IO decisions of
//! [`crate::lockout`] behind mutexes, one set per server (shared by every
//! login listener, so a second listener does not give a second set of
//! guesses), fed with the server's clock by the caller.
//!
//! Which address a connection counts under (docs/server.md, "Login limits"):
//!
//! * a socket peer that is not a named trusted proxy of the listener counts
//!   under its own address, from the moment it is accepted;
//! * a named trusted proxy (a load balancer) counts nothing itself: the
//!   connection counts under the client address its PROXY header vouches
//!   for; its own connections (health checks, an HTTP proxy carrying many
//!   clients in `X-Forwarded-For`) are not counted, the proxy limits those;
//! * on a listener that takes signed headers from ippin fronts, every
//!   connection counts after the PROXY stage: under the signed client
//!   address, or the socket peer when there is none;
//! * failures count under the observed client address when it is trusted,
//!   else under the socket peer (an untrusted observation is chosen by the
//!   client, so it could dodge the throttle with it).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use ippin_policy::{ObservedAddr, Provenance};

use crate::config::{ListenerConfig, LoginLimits};
use crate::lockout::{Attempt, Failed, Limit, PeerPlace, PeerPlaces, Refusal, Throttle};

/// The most user names, and the most client addresses, whose failures are
/// kept at once (each table; about 40 bytes a record, so a few MiB at most).
/// See `crate::lockout` for what happens when a table is full.
pub const MAX_TRACKED: usize = 100_000;

/// Reason code of a connection refused because its address holds
/// `max_connections_per_peer` connections already.
pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while one of these is held; a poisoned one is still
    // consistent (every update is a single step).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The server's login limits and their state.
#[derive(Debug)]
pub struct LoginGuard {
    limits: LoginLimits,
    throttle: Mutex<Throttle>,
    connections: PeerPlaces,
}

impl LoginGuard {
    /// Empty tables for `limits`.
    pub fn new(limits: &LoginLimits) -> LoginGuard {
        let users = Limit {
            max_failures: limits.max_failures,
            window: limits.failure_window,
            lock_for: limits.lockout,
        };
        let peers = Limit {
            max_failures: limits.peer_max_failures,
            window: limits.peer_window,
            lock_for: limits.peer_window,
        };
        LoginGuard {
            limits: *limits,
            throttle: Mutex::new(Throttle::new(users, peers, MAX_TRACKED)),
            connections: PeerPlaces::new(limits.max_connections_per_peer),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// A place for one more connection from `key`, held until dropped;
    /// `None` when `key` holds `max_connections_per_peer` already.
    pub fn enter(&self, key: IpAddr) -> Option<ConnectionSlot> {
        self.connections.take(key)
    }

    /// See [`Throttle::begin`].
    ///
    /// # Errors
    /// The refusal to answer with, before the password is checked.
    pub fn begin(&self, user: &str, peer: IpAddr, now: SystemTime) -> Result<Attempt, Refusal> {
        lock(&self.throttle).begin(user, peer, now)
    }

    /// See [`Throttle::failed`].
    pub fn failed(&self, attempt: Attempt, user: &str, peer: IpAddr, now: SystemTime) -> Failed {
        lock(&self.throttle).failed(attempt, user, peer, now)
    }

    /// See [`Throttle::succeeded`].
    pub fn succeeded(&self, attempt: Attempt, user: &str, peer: IpAddr) {
        lock(&self.throttle).succeeded(attempt, user, peer);
    }
}

/// A connection's place in its address's count; given back on drop.
pub type ConnectionSlot = PeerPlace;

fn named_proxy(lcfg: &ListenerConfig, peer: SocketAddr) -> bool {
    lcfg.trusted_proxies.is_some()
        && crate::accept::listener_policy(lcfg).is_trusted_proxy(peer.ip())
}

/// The address a new login connection from `peer` counts under, or `None`
/// when it is decided after the PROXY stage ([`key_after_proxy`]): `peer` is
/// a named trusted proxy of the listener, or the listener takes signed
/// headers from ippin fronts.
pub fn key_at_accept(lcfg: &ListenerConfig, peer: SocketAddr) -> Option<IpAddr> {
    (!named_proxy(lcfg, peer) && lcfg.propagation.is_none())
        .then_some(ippin_access::lockout::peer_only_key(peer.ip()))
}

/// For a connection [`key_at_accept`] deferred: the client address a
/// trusted header (PROXY or signed) names; else the socket peer, except for
/// a named trusted proxy's own connection (`None`: not counted).
pub fn key_after_proxy(
    lcfg: &ListenerConfig,
    observed: &ObservedAddr,
    peer: SocketAddr,
) -> Option<IpAddr> {
    let from_header = matches!(
        observed.provenance(),
        Provenance::ProxyV1 | Provenance::ProxyV2 | Provenance::SignedPropagation
    );
    if from_header && observed.is_trusted() {
        // The client the header names (with its private endpoint, if any: `throttle_key`).
        Some(throttle_key(observed, peer))
    } else if named_proxy(lcfg, peer) {
        None
    } else {
        Some(ippin_access::lockout::peer_only_key(peer.ip()))
    }
}

/// The address failures count under: the observed client when trusted,
/// else the socket peer.
pub fn throttle_key(observed: &ObservedAddr, peer: SocketAddr) -> IpAddr {
    ippin_access::lockout::throttle_key(observed, peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyModeSetting;

    fn listener(mode: ProxyModeSetting, trusted: Option<&str>) -> ListenerConfig {
        ListenerConfig {
            kind: crate::config::ListenerKind::Login,
            listen: "127.0.0.1:0".parse().unwrap(),
            proxy_protocol: mode,
            trusted_proxies: trusted.map(|n| vec![n.parse().unwrap()]),
            header_timeout: std::time::Duration::from_secs(5),
            trust_x_forwarded_for: false,
            trust_every_peer: false,
            forwarded_hops: 1,
            forward: None,
            propagation: None,
            allowed_endpoints: None,
        }
    }

    fn seen(addr: &str, provenance: Provenance, trusted: bool) -> ObservedAddr {
        ObservedAddr::new(addr.parse().unwrap(), provenance, trusted)
    }

    proptest::proptest! {
        /// Whatever the observation and the peer: an address a header claims counts only when
        /// the header was believed (trusted, from a PROXY or signed stage); otherwise the
        /// connection counts under its TCP peer, or not at all for a named trusted proxy's
        /// own connection; never under an untrusted claim.
        #[test]
        fn a_claim_that_was_not_believed_is_never_the_key(
            claimed in proptest::sample::select(vec!["198.51.100.7:4000", "[2001:db8::7]:4000"]),
            peer in proptest::sample::select(vec!["127.0.0.3:5000", "127.0.0.9:5000"]),
            provenance in proptest::sample::select(vec![
                Provenance::Direct,
                Provenance::ProxyV1,
                Provenance::ProxyV2,
                Provenance::SignedPropagation,
                Provenance::ForwardedHeader,
                Provenance::ProxyLocal,
            ]),
            trusted in proptest::bool::ANY,
            named in proptest::bool::ANY,
        ) {
            let lcfg = listener(ProxyModeSetting::On, named.then_some("127.0.0.3/32"));
            let peer: SocketAddr = peer.parse().unwrap();
            let observed = seen(claimed, provenance, trusted);
            let at_accept = key_at_accept(&lcfg, peer);
            let after = key_after_proxy(&lcfg, &observed, peer);
            let believed = trusted
                && matches!(
                    provenance,
                    Provenance::ProxyV1 | Provenance::ProxyV2 | Provenance::SignedPropagation
                );
            proptest::prop_assert!(at_accept.is_none() || at_accept == Some(peer.ip()));
            match after {
                Some(key) if key == observed.ip() && key != peer.ip() => {
                    proptest::prop_assert!(believed, "an unbelieved claim counted: {observed:?}");
                }
                Some(key) => proptest::prop_assert_eq!(key, peer.ip()),
                None => proptest::prop_assert!(
                    named && !believed,
                    "not counted: {observed:?} from {peer}"
                ),
            }
        }
    }

    #[test]
    fn which_address_a_connection_counts_under() {
        let peer: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        let lb = listener(ProxyModeSetting::On, Some("127.0.0.3/32"));
        // Any peer but a named trusted proxy counts at accept, as itself,
        // even in mode `on` without `trusted_proxies` (it could name anyone).
        assert_eq!(
            key_at_accept(&listener(ProxyModeSetting::Off, None), peer),
            Some(peer.ip())
        );
        assert_eq!(
            key_at_accept(&listener(ProxyModeSetting::On, None), peer),
            Some(peer.ip())
        );
        let other: SocketAddr = "127.0.0.9:5000".parse().unwrap();
        assert_eq!(key_at_accept(&lb, other), Some(other.ip()));
        // The named balancer: decided after the PROXY stage.
        assert_eq!(key_at_accept(&lb, peer), None);
        let client = seen("198.51.100.7:4000", Provenance::ProxyV2, true);
        assert_eq!(key_after_proxy(&lb, &client, peer), Some(client.ip()));
        // Through a private endpoint: under endpoint and address together.
        let through = client.with_endpoint(ippin_policy::Endpoint::parse("azure:7").unwrap());
        assert_eq!(
            key_after_proxy(&lb, &through, peer),
            Some(throttle_key(&through, peer))
        );
        assert_ne!(key_after_proxy(&lb, &through, peer), Some(client.ip()));
        // Its own connections (LOCAL, no header) are not counted.
        let own = seen("127.0.0.3:5000", Provenance::Direct, true);
        assert_eq!(key_after_proxy(&lb, &own, peer), None);
    }

    #[test]
    fn failures_count_under_the_socket_peer_when_the_observation_is_untrusted() {
        let peer: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        let claimed = seen("198.51.100.7:0", Provenance::ProxyV1, false);
        assert_eq!(throttle_key(&claimed, peer), peer.ip());
        let vouched = seen("198.51.100.7:4000", Provenance::ProxyV2, true);
        assert_eq!(throttle_key(&vouched, peer), vouched.ip());
        // A client seen through a private endpoint counts under endpoint and address
        // together, at accept and for failures alike.
        let through = vouched.with_endpoint(ippin_policy::Endpoint::parse("azure:7").unwrap());
        assert_ne!(throttle_key(&through, peer), vouched.ip());
        assert_eq!(
            throttle_key(&through, peer),
            ippin_access::lockout::throttle_key(&through, peer)
        );
    }

    #[test]
    fn a_place_is_given_back_when_its_slot_drops() {
        let guard = LoginGuard::new(&LoginLimits {
            max_connections_per_peer: 1,
            ..LoginLimits::default()
        });
        let ip: IpAddr = "127.0.0.5".parse().unwrap();
        let slot = guard.enter(ip).expect("first");
        assert!(guard.enter(ip).is_none());
        drop(slot);
        assert!(guard.enter(ip).is_some());
    }
}
