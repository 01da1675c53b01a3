//! The inner listener's cache of verified grants, sans-IO (time is a
//! parameter).
//!
//! * Keyed by the front's ephemeral public key; a lookup hits only when the
//!   cached grant's bytes equal the presented grant's, byte for byte, and
//!   `now` is inside the entry's validity.
//! * Only a [`VerifiedGrant`] can be inserted, and only the verifier makes
//!   one (after the certificate, the signature, the window and the key
//!   agreement passed): a flood of unverified grants never enters.
//! * An entry lives from `max(certificate not_before, grant not_before −
//!   window)` to `min(certificate not_after, grant not_after)`.
//! * Capacity is fixed. Inserting evicts expired entries first, then, if
//!   still full, the entry that expires soonest. Losing an entry costs one
//!   more full verification, never a wrong acceptance.

use std::collections::HashMap;

use super::wire::KEY_LEN;

/// The default number of grants remembered.
pub const DEFAULT_GRANT_CACHE_CAPACITY: usize = 1024;

/// A grant that passed every check, with its MAC key.
#[derive(Clone)]
pub struct VerifiedGrant {
    ephemeral: [u8; KEY_LEN],
    bytes: Vec<u8>,
    key: ring::hmac::Key,
    valid_from: u64,
    valid_until: u64,
}

impl std::fmt::Debug for VerifiedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedGrant")
            .field("ephemeral", &self.ephemeral)
            .field("valid_from", &self.valid_from)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl VerifiedGrant {
    /// Only the verifier calls this, after verifying the grant.
    pub(crate) fn new(
        ephemeral: [u8; KEY_LEN],
        bytes: &[u8],
        key: ring::hmac::Key,
        valid_from: u64,
        valid_until: u64,
    ) -> VerifiedGrant {
        VerifiedGrant {
            ephemeral,
            bytes: bytes.to_vec(),
            key,
            valid_from,
            valid_until,
        }
    }

    /// The MAC key.
    pub fn key(&self) -> &ring::hmac::Key {
        &self.key
    }
}

/// Verified grants by ephemeral key, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct GrantCache {
    capacity: usize,
    entries: HashMap<[u8; KEY_LEN], VerifiedGrant>,
}

impl GrantCache {
    /// An empty cache holding at most `capacity` grants (at least one).
    pub fn new(capacity: usize) -> GrantCache {
        GrantCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// How many grants are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no grant is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The MAC key of the cached grant for `ephemeral` if its bytes equal
    /// `grant_bytes` and it is valid at `now`.
    pub fn get(
        &self,
        ephemeral: &[u8; KEY_LEN],
        grant_bytes: &[u8],
        now: u64,
    ) -> Option<ring::hmac::Key> {
        self.entries
            .get(ephemeral)
            .filter(|e| e.bytes == grant_bytes && e.valid_from <= now && now <= e.valid_until)
            .map(|e| e.key.clone())
    }

    /// Remembers `grant` (replacing any entry with its ephemeral key).
    pub fn insert(&mut self, grant: VerifiedGrant, now: u64) {
        if grant.valid_until < now {
            return;
        }
        if !self.entries.contains_key(&grant.ephemeral) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.valid_until >= now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.valid_until)
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(grant.ephemeral, grant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[i; 32])
    }

    fn g(i: u8, from: u64, until: u64) -> VerifiedGrant {
        VerifiedGrant::new([i; 32], &[i; 40], key(i), from, until)
    }

    fn tag(k: &ring::hmac::Key) -> Vec<u8> {
        ring::hmac::sign(k, b"m").as_ref().to_vec()
    }

    #[test]
    fn hits_only_on_equal_bytes_inside_the_validity() {
        let mut c = GrantCache::new(4);
        c.insert(g(1, 100, 200), 150);
        let hit = c.get(&[1; 32], &[1; 40], 150).unwrap();
        assert_eq!(tag(&hit), tag(&key(1)));
        // Same ephemeral key, other bytes: a miss.
        assert!(c.get(&[1; 32], &[1; 41], 150).is_none());
        let mut other = [1u8; 40];
        other[39] = 2;
        assert!(c.get(&[1; 32], &other, 150).is_none());
        // Outside the validity: a miss.
        assert!(c.get(&[1; 32], &[1; 40], 99).is_none());
        assert!(c.get(&[1; 32], &[1; 40], 201).is_none());
        assert!(c.get(&[2; 32], &[1; 40], 150).is_none());
    }

    #[test]
    fn bounded_expired_first_then_soonest() {
        let mut c = GrantCache::new(3);
        c.insert(g(1, 0, 110), 100);
        c.insert(g(2, 0, 300), 100);
        c.insert(g(3, 0, 200), 100);
        assert_eq!(c.len(), 3);
        // Full of live entries: the one expiring soonest (1) goes.
        c.insert(g(4, 0, 400), 100);
        assert_eq!(c.len(), 3);
        assert!(c.get(&[1; 32], &[1; 40], 100).is_none());
        assert!(c.get(&[2; 32], &[2; 40], 100).is_some());
        // Later, the expired entry (3) goes first.
        c.insert(g(5, 0, 500), 250);
        assert!(c.get(&[3; 32], &[3; 40], 150).is_none());
        assert!(c.get(&[2; 32], &[2; 40], 250).is_some());
        assert!(c.get(&[4; 32], &[4; 40], 250).is_some());
        for i in 10..=200u8 {
            c.insert(g(i, 0, 1000 + u64::from(i)), 300);
            assert!(c.len() <= 3);
        }
        // Already expired grants are not stored at all.
        let mut d = GrantCache::new(2);
        d.insert(g(1, 0, 10), 11);
        assert!(d.is_empty());
        assert_eq!(d.capacity(), 2);
    }

    /// A grant valid until exactly `now` is still valid: it is stored and
    /// hits at `now`, and the cache is no longer empty.
    #[test]
    fn a_grant_valid_until_now_is_stored() {
        let mut c = GrantCache::new(2);
        assert!(c.is_empty());
        c.insert(g(1, 0, 10), 10);
        assert!(!c.is_empty());
        assert!(c.get(&[1; 32], &[1; 40], 10).is_some());
        assert!(c.get(&[1; 32], &[1; 40], 11).is_none());
    }

    /// Replacing the entry of an ephemeral key (a renewed grant under the
    /// same key) in a full cache evicts nothing else.
    #[test]
    fn replacing_an_entry_never_evicts_another() {
        let mut c = GrantCache::new(2);
        c.insert(g(1, 0, 100), 0);
        c.insert(g(2, 0, 200), 0);
        c.insert(VerifiedGrant::new([2; 32], &[9; 40], key(2), 0, 300), 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32], &[1; 40], 50).is_some(), "1 was evicted");
        assert!(c.get(&[2; 32], &[9; 40], 50).is_some());
        assert!(
            c.get(&[2; 32], &[2; 40], 50).is_none(),
            "2 was not replaced"
        );
    }

    /// The Debug form names the grant but never shows its key or bytes.
    #[test]
    fn debug_shows_the_validity_not_the_key() {
        let text = format!("{:?}", g(7, 11, 22));
        assert!(text.starts_with("VerifiedGrant {"), "{text}");
        assert!(text.contains("valid_from: 11") && text.contains("valid_until: 22"));
        assert!(!text.contains("key") && !text.contains("bytes"), "{text}");
    }
}
