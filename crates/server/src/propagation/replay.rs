//! The bounded replay cache: nonces seen within the freshness window.
//!
//! * An entry for a header signed at `timestamp` expires at
//!   `timestamp + window`: after that the header fails the freshness check
//!   anyway, so forgetting its nonce cannot let a replay through.
//! * Capacity is fixed. Expired entries are evicted first; when every
//!   entry is still live, a new nonce is **refused** (fail closed,
//!   `replay_cache_full`): forgetting a live nonce would reopen a replay.
//! * Time is a parameter (unix seconds).

use std::collections::{BTreeSet, HashMap};

use super::wire::NONCE_LEN;

/// Why [`ReplayCache::admit`] refused a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayRefusal {
    /// The nonce was seen, and its entry has not expired.
    Replayed,
    /// Every slot holds a live nonce.
    Full,
}

/// A set of recently seen nonces with their expiry, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    expiry_of: HashMap<[u8; NONCE_LEN], u64>,
    by_expiry: BTreeSet<(u64, [u8; NONCE_LEN])>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` nonces (at least one).
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            expiry_of: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// How many nonces are held (live or not yet evicted).
    pub fn len(&self) -> usize {
        self.expiry_of.len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.expiry_of.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every entry whose expiry is before `now`.
    pub fn evict_expired(&mut self, now: u64) {
        while let Some(&(expiry, nonce)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry_of.remove(&nonce);
        }
    }

    /// Records `nonce`, live until `expires` (inclusive), if it is new and
    /// there is room at `now`.
    ///
    /// # Errors
    /// [`ReplayRefusal::Replayed`] for a live nonce seen before,
    /// [`ReplayRefusal::Full`] when every slot holds a live nonce.
    pub fn admit(
        &mut self,
        nonce: [u8; NONCE_LEN],
        expires: u64,
        now: u64,
    ) -> Result<(), ReplayRefusal> {
        self.evict_expired(now);
        if self.expiry_of.contains_key(&nonce) {
            return Err(ReplayRefusal::Replayed);
        }
        if self.expiry_of.len() >= self.capacity {
            return Err(ReplayRefusal::Full);
        }
        self.expiry_of.insert(nonce, expires);
        self.by_expiry.insert((expires, nonce));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> [u8; 16] {
        [i; 16]
    }

    #[test]
    fn replay_refused_until_expiry_then_forgotten() {
        let mut c = ReplayCache::new(4);
        assert_eq!(c.admit(n(1), 130, 100), Ok(()));
        assert_eq!(c.admit(n(1), 130, 100), Err(ReplayRefusal::Replayed));
        assert_eq!(c.admit(n(1), 140, 130), Err(ReplayRefusal::Replayed));
        // After expiry the entry is evicted (the freshness check refuses
        // the old header by then).
        assert_eq!(c.admit(n(2), 200, 131), Ok(()));
        assert_eq!(c.len(), 1);
        assert_eq!(c.admit(n(1), 161, 131), Ok(()));
    }

    #[test]
    fn full_of_live_entries_fails_closed_and_recovers_after_expiry() {
        let mut c = ReplayCache::new(2);
        assert_eq!(c.admit(n(1), 110, 100), Ok(()));
        assert_eq!(c.admit(n(2), 120, 100), Ok(()));
        assert_eq!(c.admit(n(3), 130, 105), Err(ReplayRefusal::Full));
        assert_eq!(c.len(), 2);
        // n(1) expires after 110: room again, n(2) still remembered.
        assert_eq!(c.admit(n(3), 130, 111), Ok(()));
        assert_eq!(c.admit(n(2), 130, 111), Err(ReplayRefusal::Replayed));
        assert_eq!(c.capacity(), 2);
    }

    #[test]
    fn never_grows_past_capacity() {
        let mut c = ReplayCache::new(8);
        for i in 0..=255u8 {
            let _ = c.admit(n(i), 1000 + u64::from(i), 500 + u64::from(i) * 3);
            assert!(c.len() <= 8);
        }
    }
}
