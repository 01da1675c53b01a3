//! A bounded cache of decoded client-certificate identities.
//!
//! Every mutual-TLS connection hands the server the client's certificate, and a user's
//! certificate is the same bytes for every connection of its lifetime. Decoding it
//! ([`ippin_cert::x509::client_identity`], a full X.509 decode) costs several microseconds
//! per connection; this cache keeps the result per certificate.
//!
//! What it may and may not change:
//! - The key is the whole DER certificate, compared byte for byte (not a hash of it): a hit
//!   returns exactly what decoding those bytes returns. Decoding is a pure function of the
//!   bytes, so a cached identity is never stale.
//! - Nothing that varies per connection is cached: the chain, the signature and the validity
//!   window are checked by TLS on every handshake, and the user's roles, the pin check and
//!   the audit line are evaluated per connection by the caller.
//! - Only successful decodes are cached; a certificate that does not decode is decoded (and
//!   refused) every time.
//! - Memory is bounded: at most [`IdentityCache::capacity`] entries of certificates of at
//!   most [`MAX_CACHED_CERT_LEN`] bytes (a larger certificate is decoded and not kept).
//!   When full, an arbitrary entry makes room.
//!
//! ```
//! use ippin_access::tls::IdentityCache;
//!
//! let cache = IdentityCache::new(2);
//! assert!(cache.get_or_decode(b"not a certificate").is_err());
//! assert!(cache.is_empty(), "failures are not cached");
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ippin_cert::x509::{ClientIdentity, client_identity};

/// The number of certificates kept by default.
pub const DEFAULT_CAPACITY: usize = 4096;

/// The largest certificate kept (larger ones are decoded every time).
pub const MAX_CACHED_CERT_LEN: usize = 8192;

/// Decoded client identities, keyed by their certificate's DER bytes.
#[derive(Debug)]
pub struct IdentityCache {
    entries: Mutex<HashMap<Box<[u8]>, Arc<ClientIdentity>>>,
    capacity: usize,
}

impl Default for IdentityCache {
    fn default() -> IdentityCache {
        IdentityCache::new(DEFAULT_CAPACITY)
    }
}

impl IdentityCache {
    /// An empty cache of at most `capacity` certificates (0: nothing is kept).
    pub fn new(capacity: usize) -> IdentityCache {
        IdentityCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The most certificates kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many certificates are kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The identity in `der`: the kept one, or decoded now (and kept when it decodes).
    ///
    /// # Errors
    /// What [`client_identity`] returns for `der`.
    pub fn get_or_decode(&self, der: &[u8]) -> Result<Arc<ClientIdentity>, ippin_cert::Error> {
        if let Some(hit) = self.entries.lock().ok().and_then(|m| m.get(der).cloned()) {
            return Ok(hit);
        }
        let identity = Arc::new(client_identity(der)?);
        if self.capacity > 0
            && der.len() <= MAX_CACHED_CERT_LEN
            && let Ok(mut map) = self.entries.lock()
        {
            if map.len() >= self.capacity
                && !map.contains_key(der)
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
            map.insert(der.into(), identity.clone());
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ippin_cert::getrandom::SysRng;
    use ippin_cert::rand_core::UnwrapErr;
    use ippin_cert::x509::{ClientCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem};

    const NOW: u64 = 1_700_000_000;

    fn certs(n: usize) -> Vec<Vec<u8>> {
        let mut rng = UnwrapErr(SysRng);
        let ca = X509Ca::generate_p256("test CA", NOW - 60, NOW + 3600, &mut rng).unwrap();
        let (_, spki_pem) = generate_key_pair_p256(&mut rng).unwrap();
        let spki = spki_der_from_pem(&spki_pem).unwrap();
        (0..n)
            .map(|i| {
                let mut req = ClientCertRequest::builder(format!("user{i}"), spki.clone())
                    .validity(NOW - 60, NOW + 3600)
                    .serial(i as u64 + 1)
                    .role("dev");
                if i % 2 == 0 {
                    req = req.pinned_ip(format!("10.0.0.{i}").parse().unwrap());
                }
                ca.issue_client(&req.build().unwrap(), &mut rng).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_hit_is_what_decoding_returns_and_is_shared() {
        let certs = certs(2);
        let cache = IdentityCache::new(8);
        for der in &certs {
            let first = cache.get_or_decode(der).unwrap();
            assert_eq!(*first, client_identity(der).unwrap());
            let again = cache.get_or_decode(der).unwrap();
            assert!(Arc::ptr_eq(&first, &again), "the second lookup is a hit");
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get_or_decode(&certs[0]).unwrap().user, "user0");
        assert_eq!(
            cache.get_or_decode(&certs[0]).unwrap().pin,
            Some("10.0.0.0/32".parse().unwrap())
        );
        assert_eq!(cache.get_or_decode(&certs[1]).unwrap().pin, None);
    }

    #[test]
    fn bytes_that_differ_by_one_are_another_key() {
        let der = certs(1).remove(0);
        let cache = IdentityCache::new(8);
        cache.get_or_decode(&der).unwrap();
        // The same certificate with one byte of its signature changed: not a hit (the key is
        // the whole certificate), decoded on its own.
        let mut other = der.clone();
        let last = other.len() - 1;
        other[last] ^= 0x01;
        let decoded = cache.get_or_decode(&other);
        assert_eq!(decoded.is_ok(), client_identity(&other).is_ok());
        assert_eq!(cache.len(), 1 + usize::from(decoded.is_ok()));
    }

    #[test]
    fn bounded_and_failures_not_kept() {
        let certs = certs(5);
        let cache = IdentityCache::new(3);
        for der in &certs {
            cache.get_or_decode(der).unwrap();
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // Every certificate still reads right, kept or evicted.
        for (i, der) in certs.iter().enumerate() {
            assert_eq!(cache.get_or_decode(der).unwrap().user, format!("user{i}"));
        }
        assert_eq!(cache.len(), 3);
        for junk in [&b""[..], b"\x30\x03\x02\x01\x00", &[0x30; 9000][..]] {
            assert!(cache.get_or_decode(junk).is_err());
        }
        assert_eq!(cache.len(), 3);
        let none = IdentityCache::new(0);
        none.get_or_decode(&certs[0]).unwrap();
        assert!(none.is_empty());
    }
}
