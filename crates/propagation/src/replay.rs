//! The bounded replay state, keyed by the front → inner connection.
//!
//! A signed header is bound to the connection that carries it (the MAC
//! covers the front's and the inner's address and port, and the inner
//! compares them with its socket; see [`super::Link`]). A replay must
//! therefore arrive on a connection with the **same 4-tuple**, which TCP
//! allows only after the original connection closed. So the state is, per
//! link, the newest timestamp accepted on it and the nonces accepted at
//! that second:
//!
//! | header on link `L` at timestamp `t`, nonce `n` | result |
//! |------------------------------------------------|--------|
//! | `L` remembered, `t` < its newest | refused ([`ReplayRefusal::Older`]) |
//! | `L` remembered, `t` = its newest, `n` already seen | refused ([`ReplayRefusal::Replayed`]) |
//! | `L` remembered, `t` = its newest, [`MAX_PER_SECOND`] nonces already seen | refused ([`ReplayRefusal::Burst`]) |
//! | `L` remembered, `t` = its newest, `n` new | accepted, `n` remembered |
//! | `L` remembered, `t` > its newest | accepted, the entry restarts at `t` |
//! | `L` not remembered, `t` ≤ the floor | refused ([`ReplayRefusal::BelowFloor`]) |
//! | `L` not remembered, `t` > the floor | accepted (evicting the entry with the oldest newest timestamp when full; the floor rises to it) |
//!
//! * Entries are inserted only for headers whose MAC verified (the caller's
//!   duty), so only an authenticated front's connections create them.
//! * An entry whose newest timestamp `h` is older than `now − window` is
//!   dropped: every header it could refuse has `t ≤ h`, and is stale.
//! * The size never exceeds the capacity. When it is reached, the entry
//!   with the oldest newest timestamp is evicted and the **floor** rises to
//!   that timestamp: a header on a link not remembered must be newer than
//!   the floor. Every header an evicted entry would have refused has
//!   `t ≤ h ≤ floor`, so eviction never lets a replay in; it costs a
//!   legitimate header only when `capacity` links were accepted within its
//!   own second.
//! * Nothing is ever refused for lack of room: there is no "full" state an
//!   unauthenticated peer could drive the inner into.
//! * Time is a parameter (unix seconds).

use std::collections::{BTreeSet, HashMap};

use super::Link;
use super::wire::NONCE_LEN;

/// The most headers accepted on one link within one second. A link (one
/// TCP 4-tuple) carries one connection at a time; a front reusing the same
/// source port towards the same inner more than this often in one second
/// would be cycling through its whole port range many times a second.
pub const MAX_PER_SECOND: usize = 8;

/// Why [`ReplayCache::admit`] refused a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayRefusal {
    /// The nonce was already accepted on this link at this timestamp.
    Replayed,
    /// The timestamp is older than the newest accepted on this link.
    Older,
    /// [`MAX_PER_SECOND`] headers were already accepted on this link at
    /// this timestamp.
    Burst,
    /// The link is not remembered and the timestamp is not newer than the
    /// floor (an entry that could have refused it was evicted).
    BelowFloor,
}

#[derive(Debug, Clone)]
struct Entry {
    newest: u64,
    nonces: Vec<[u8; NONCE_LEN]>,
}

/// Per front → inner link, the newest timestamp accepted and the nonces
/// accepted at it; at most `capacity` links.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    window: u64,
    entries: HashMap<Link, Entry>,
    by_newest: BTreeSet<(u64, Link)>,
    floor: Option<u64>,
}

impl ReplayCache {
    /// An empty state holding at most `capacity` links (at least one), for
    /// headers fresh within `window_secs`.
    pub fn new(capacity: usize, window_secs: u64) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            window: window_secs,
            entries: HashMap::new(),
            by_newest: BTreeSet::new(),
            floor: None,
        }
    }

    /// The same state, started at `now`: headers written at or before `now` on links not
    /// remembered are refused until the window has passed ([`ReplayRefusal::BelowFloor`]).
    /// A process that starts knows none of the headers accepted before it (by itself before
    /// a restart): without this floor, any of them captured within the window would be
    /// accepted once more.
    #[must_use]
    pub fn started_at(mut self, now: u64) -> Self {
        self.floor = Some(self.floor.map_or(now, |f| f.max(now)));
        self
    }

    /// How many links are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no link is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The floor: headers on links not remembered must be newer.
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Drops every entry whose newest timestamp is outside the window
    /// before `now` (every header it could refuse is stale).
    pub fn evict_expired(&mut self, now: u64) {
        while let Some(&(newest, link)) = self.by_newest.first() {
            if newest.saturating_add(self.window) >= now {
                break;
            }
            self.by_newest.pop_first();
            self.entries.remove(&link);
        }
        if self
            .floor
            .is_some_and(|f| f.saturating_add(self.window) < now)
        {
            self.floor = None;
        }
    }

    /// Records the header written at `timestamp` with `nonce` on `link`
    /// (canonical form), if the table above accepts it at `now`. Call it
    /// only for headers whose MAC verified and whose timestamp is fresh.
    ///
    /// # Errors
    /// The [`ReplayRefusal`] of the table above.
    pub fn admit(
        &mut self,
        link: Link,
        timestamp: u64,
        nonce: [u8; NONCE_LEN],
        now: u64,
    ) -> Result<(), ReplayRefusal> {
        self.evict_expired(now);
        if let Some(e) = self.entries.get_mut(&link) {
            if timestamp < e.newest {
                return Err(ReplayRefusal::Older);
            }
            if timestamp == e.newest {
                if e.nonces.contains(&nonce) {
                    return Err(ReplayRefusal::Replayed);
                }
                if e.nonces.len() >= MAX_PER_SECOND {
                    return Err(ReplayRefusal::Burst);
                }
                e.nonces.push(nonce);
                return Ok(());
            }
            self.by_newest.remove(&(e.newest, link));
            e.newest = timestamp;
            e.nonces.clear();
            e.nonces.push(nonce);
            self.by_newest.insert((timestamp, link));
            return Ok(());
        }
        if self.floor.is_some_and(|f| timestamp <= f) {
            return Err(ReplayRefusal::BelowFloor);
        }
        while self.entries.len() >= self.capacity {
            let Some((newest, oldest)) = self.by_newest.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.floor = Some(self.floor.map_or(newest, |f| f.max(newest)));
        }
        if self.floor.is_some_and(|f| timestamp <= f) {
            return Err(ReplayRefusal::BelowFloor);
        }
        self.entries.insert(
            link,
            Entry {
                newest: timestamp,
                nonces: vec![nonce],
            },
        );
        self.by_newest.insert((timestamp, link));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(i: u8) -> [u8; 16] {
        [i; 16]
    }

    fn link(port: u16) -> Link {
        Link {
            front: format!("10.0.0.1:{port}").parse().unwrap(),
            inner: "10.0.0.2:4443".parse().unwrap(),
        }
    }

    #[test]
    fn replay_on_the_same_link_is_refused_until_stale_then_forgotten() {
        let mut c = ReplayCache::new(4, 30);
        assert_eq!(c.admit(link(1), 100, n(1), 100), Ok(()));
        assert_eq!(
            c.admit(link(1), 100, n(1), 101),
            Err(ReplayRefusal::Replayed)
        );
        assert_eq!(
            c.admit(link(1), 100, n(1), 130),
            Err(ReplayRefusal::Replayed)
        );
        // After the window the entry goes (the header is stale by then).
        assert_eq!(c.admit(link(2), 131, n(2), 131), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn same_link_new_timestamp_or_new_nonce_is_accepted_older_is_not() {
        let mut c = ReplayCache::new(4, 30);
        assert_eq!(c.admit(link(1), 100, n(1), 100), Ok(()));
        // The front reused the port within the same second: a new nonce.
        assert_eq!(c.admit(link(1), 100, n(2), 100), Ok(()));
        // A later connection on the same 4-tuple.
        assert_eq!(c.admit(link(1), 105, n(3), 105), Ok(()));
        // A captured header from before, replayed on the reused 4-tuple.
        assert_eq!(c.admit(link(1), 100, n(4), 106), Err(ReplayRefusal::Older));
        assert_eq!(
            c.admit(link(1), 105, n(3), 106),
            Err(ReplayRefusal::Replayed)
        );
        // The same nonce on another link is another connection's header
        // (the MAC binds it to its link; this state need not refuse it).
        assert_eq!(c.admit(link(2), 105, n(3), 106), Ok(()));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_burst_on_one_link_in_one_second_is_capped() {
        let mut c = ReplayCache::new(4, 30);
        for i in 0..MAX_PER_SECOND {
            assert_eq!(c.admit(link(1), 100, n(i as u8), 100), Ok(()));
        }
        assert_eq!(c.admit(link(1), 100, n(99), 100), Err(ReplayRefusal::Burst));
        assert_eq!(c.admit(link(1), 101, n(99), 101), Ok(()));
    }

    /// A state started at `now` refuses the headers written before, on links it does not
    /// know (accepted before a restart, perhaps), until the window has passed.
    #[test]
    fn a_state_started_now_refuses_headers_written_before() {
        let mut c = ReplayCache::new(4, 30).started_at(1_000);
        assert_eq!(
            c.admit(link(1), 990, n(1), 1_000),
            Err(ReplayRefusal::BelowFloor)
        );
        assert_eq!(
            c.admit(link(1), 1_000, n(1), 1_000),
            Err(ReplayRefusal::BelowFloor)
        );
        assert_eq!(c.admit(link(1), 1_001, n(1), 1_001), Ok(()));
        // Past the window the floor is gone.
        c.evict_expired(1_031);
        assert_eq!(c.floor(), None);
    }

    #[test]
    fn eviction_raises_the_floor_so_evicted_headers_stay_refused() {
        let mut c = ReplayCache::new(2, 30);
        assert_eq!(c.admit(link(1), 100, n(1), 100), Ok(()));
        assert_eq!(c.admit(link(2), 101, n(2), 101), Ok(()));
        // Full: link(1) (newest 100) is evicted, the floor becomes 100.
        assert_eq!(c.admit(link(3), 102, n(3), 102), Ok(()));
        assert_eq!(c.len(), 2);
        assert_eq!(c.floor(), Some(100));
        // The evicted link's header replayed: still refused.
        assert_eq!(
            c.admit(link(1), 100, n(1), 103),
            Err(ReplayRefusal::BelowFloor)
        );
        // A new header on it is newer than the floor: accepted.
        assert_eq!(c.admit(link(1), 103, n(4), 103), Ok(()));
        // The floor goes once it is stale.
        let _ = c.admit(link(9), 200, n(9), 200);
        assert_eq!(c.floor(), None);
    }

    /// The floor holds while a header at it could still be fresh: at
    /// `now = floor + window` a header written at the floor is inside the
    /// window, so the floor must still refuse it.
    #[test]
    fn the_floor_lasts_exactly_the_window() {
        let mut c = ReplayCache::new(1, 30);
        assert_eq!(c.capacity(), 1);
        assert!(c.is_empty());
        assert_eq!(c.admit(link(1), 100, n(1), 100), Ok(()));
        assert!(!c.is_empty());
        // Full: link(1) is evicted, the floor becomes 100.
        assert_eq!(c.admit(link(2), 129, n(2), 129), Ok(()));
        assert_eq!(c.floor(), Some(100));
        assert_eq!(
            c.admit(link(1), 100, n(3), 130),
            Err(ReplayRefusal::BelowFloor)
        );
        assert_eq!(c.floor(), Some(100));
        c.evict_expired(131);
        assert_eq!(c.floor(), None);
        assert_eq!(ReplayCache::new(5, 30).capacity(), 5);
        assert_eq!(ReplayCache::new(0, 30).capacity(), 1);
    }

    /// A step of an adversarial run: which link (from a small or large
    /// set), which timestamp offset, which nonce, how far time moves.
    fn steps() -> impl Strategy<Value = Vec<(u16, u8, u8, u8)>> {
        proptest::collection::vec((any::<u16>(), 0u8..40, any::<u8>(), 0u8..3), 1..400)
    }

    proptest! {
        /// Whatever is inserted, the state never holds more than its
        /// capacity, and no header accepted once is accepted again while
        /// fresh (within the window), on the same link.
        #[test]
        fn bounded_and_never_accepts_a_replay(
            cap in 1usize..16,
            small in any::<bool>(),
            steps in steps(),
        ) {
            let window = 30u64;
            let mut c = ReplayCache::new(cap, window);
            let mut now = 1_000u64;
            let mut accepted: Vec<(Link, u64, [u8; 16])> = Vec::new();
            for (port, back, nonce, tick) in steps {
                now += u64::from(tick);
                let port = if small { port % 4 } else { port };
                let ts = now.saturating_sub(u64::from(back) % (window + 1));
                let l = link(port);
                let nonce = n(nonce % 8);
                let result = c.admit(l, ts, nonce, now);
                prop_assert!(c.len() <= cap);
                if result.is_ok() {
                    prop_assert!(
                        !accepted.contains(&(l, ts, nonce)),
                        "replay accepted: {:?} {} {:?}", l, ts, nonce
                    );
                    accepted.push((l, ts, nonce));
                }
                // Forget what is stale: the freshness check refuses it.
                accepted.retain(|&(_, t, _)| now.abs_diff(t) <= window);
            }
        }

        /// A legitimate front (timestamps never going back on a link, one
        /// new nonce each) is never refused while fewer links than the
        /// capacity are used per window.
        #[test]
        fn honest_fronts_are_never_refused(
            ports in proptest::collection::vec(0u16..64, 1..300),
        ) {
            let mut c = ReplayCache::new(64, 30);
            let mut now = 5_000u64;
            for (i, port) in ports.into_iter().enumerate() {
                if i.is_multiple_of(7) {
                    now += 1;
                }
                let mut nonce = [0u8; 16];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                prop_assert_eq!(c.admit(link(port), now, nonce, now), Ok(()));
            }
        }
    }
}
