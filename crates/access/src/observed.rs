//! One observed-address type, whatever told us the address.
//!
//! The access layer uses [`ObservedAddr`] (from `ippin-policy`) from accept to audit. Every
//! source of an address becomes one here, and nowhere else:
//!
//! | source | function | provenance | trusted when |
//! |---|---|---|---|
//! | the socket peer, no header | [`from_proxy`] | `direct` | the listener allows no header (mode `off` or unspecified) |
//! | PROXY v1 `TCP4`/`TCP6` | [`from_proxy`] | `proxy_v1` | the peer is a trusted proxy and the mode is `on` |
//! | PROXY v1 `UNKNOWN`, v2 `UNSPEC`/`UNIX` | [`from_proxy`] | `proxy_v1` / `proxy_v2` | never (the peer stands in) |
//! | PROXY v2 `PROXY` `TCP4`/`TCP6` | [`from_proxy`] | `proxy_v2` | the peer is a trusted proxy and the mode is `on` |
//! | PROXY v2 `LOCAL` | [`from_proxy`] | `proxy_local` | never |
//! | `X-Forwarded-For` / `Forwarded` | [`from_forwarded`] | `forwarded` | read through trusted proxies only, from a trusted connection |
//! | a verified signed header | [`from_signed`] | `signed_propagation` | always (it was verified) |
//!
//! The mapping from `ippin-proxy-protocol`'s [`Observed`](pp::Observed) is lossless: address,
//! provenance and trust are kept, and `LOCAL` has its own provenance.
//!
//! ```
//! use ippin_access::observed::{from_proxy, Provenance};
//! use ippin_proxy_protocol as pp;
//!
//! let local = pp::Observed::new("10.0.0.2:41000".parse().unwrap(), pp::Provenance::Local, false);
//! let seen = from_proxy(&local);
//! assert_eq!(seen.provenance(), Provenance::ProxyLocal);
//! assert!(!seen.is_trusted());
//! ```

use std::net::SocketAddr;

use ippin_proxy_protocol as pp;

pub use ippin_policy::{ObservedAddr, Provenance};

/// The observation the PROXY stage made, as the access layer's type.
///
/// Address, provenance and trust are kept. `LOCAL` becomes [`Provenance::ProxyLocal`], which
/// is never trusted. A provenance this crate does not know (the PROXY crate's enum is
/// `#[non_exhaustive]`) becomes an untrusted `direct` observation: it can never pin or
/// satisfy a pin.
pub fn from_proxy(o: &pp::Observed) -> ObservedAddr {
    let (provenance, trusted) = match o.provenance {
        pp::Provenance::Direct => (Provenance::Direct, o.trusted),
        pp::Provenance::ProxyV1 => (Provenance::ProxyV1, o.trusted),
        pp::Provenance::ProxyV2 => (Provenance::ProxyV2, o.trusted),
        pp::Provenance::Local => (Provenance::ProxyLocal, false),
        _ => (Provenance::Direct, false),
    };
    ObservedAddr::new(o.addr, provenance, trusted)
}

/// The client a verified signed header names (`ippin-propagation`'s
/// [`Verified::client`](ippin_propagation::verify::Verified)): trusted, provenance
/// `signed_propagation`.
///
/// Call it only with the address of a header that verified; an address read from an
/// unverified header is [`from_proxy`]'s business.
pub fn from_signed(client: SocketAddr) -> ObservedAddr {
    ObservedAddr::new(client, Provenance::SignedPropagation, true)
}

/// The client an HTTP request's `X-Forwarded-For` or `Forwarded` header lines name, for a
/// request that arrived on a connection observed as `conn` (the PROXY stage's answer).
///
/// The rules, in order:
/// - a connection that is not trusted cannot vouch for anyone: its headers are not read, and
///   the answer is `conn` itself (untrusted);
/// - only a connection observed `direct` (its socket peer) can be an HTTP proxy: when `conn`
///   came from a PROXY header (or a signed one), the peer it names is the *client*, whose
///   headers are its own claims; they are not read, and the answer is `conn`. (A deployment
///   with an L4 balancer in front of an L7 proxy has the proxy as the socket peer.);
/// - both headers at once are refused: a proxy appends to one, and the other would be the
///   client's;
/// - `ippin-policy` reads the chain with `mode` (trusted proxies and hops, or the existing
///   system's strict form); a trusted proxy that names no client gives an untrusted
///   observation;
/// - when no header is believed, the answer is `conn`, with its own provenance and trust.
///
/// # Errors
/// [`ForwardedError`] for a header the client must fix (answer 400): two kinds at once, or a
/// chain `ippin-policy` refuses.
pub fn from_forwarded(
    conn: &ObservedAddr,
    x_forwarded_for: &[&str],
    forwarded: &[&str],
    mode: &ippin_policy::ForwardedMode,
) -> Result<ObservedAddr, ForwardedError> {
    if !conn.is_trusted() || conn.provenance() != Provenance::Direct {
        return Ok(*conn);
    }
    if !x_forwarded_for.is_empty() && !forwarded.is_empty() {
        return Err(ForwardedError(
            "both X-Forwarded-For and Forwarded are present; send one".into(),
        ));
    }
    let peer = conn.socket_addr();
    let found = if !forwarded.is_empty() {
        ippin_policy::client_from_forwarded(forwarded, peer, mode)
    } else {
        ippin_policy::client_from_x_forwarded_for(x_forwarded_for, peer, mode)
    };
    let found = found.map_err(|e| ForwardedError(e.to_string()))?;
    // The policy answers with the peer itself (provenance `direct`) when it believes no
    // header; the connection's own observation stands then.
    if found.provenance() == Provenance::Direct {
        return Ok(*conn);
    }
    Ok(found)
}

/// A forwarded header the client must fix; the message says what is wrong. The stable reason
/// code is [`ForwardedError::CODE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ForwardedError(pub String);

impl ForwardedError {
    /// `bad_forwarded_header`.
    pub const CODE: &'static str = "bad_forwarded_header";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proxy_provenance_keeps_address_and_trust() {
        let addr: SocketAddr = "[::ffff:192.0.2.1]:5000".parse().unwrap();
        for (p, want) in [
            (pp::Provenance::Direct, Provenance::Direct),
            (pp::Provenance::ProxyV1, Provenance::ProxyV1),
            (pp::Provenance::ProxyV2, Provenance::ProxyV2),
        ] {
            for trusted in [true, false] {
                let seen = from_proxy(&pp::Observed::new(addr, p, trusted));
                assert_eq!(seen.provenance(), want);
                assert_eq!(seen.is_trusted(), trusted);
                assert_eq!(seen.ip().to_string(), "192.0.2.1");
                assert_eq!(seen.port(), if trusted { 5000 } else { 0 });
            }
        }
        let local = from_proxy(&pp::Observed::new(addr, pp::Provenance::Local, true));
        assert_eq!(local.provenance(), Provenance::ProxyLocal);
        assert!(
            !local.is_trusted(),
            "LOCAL is never trusted, whatever the stage said"
        );
    }

    #[test]
    fn forwarded_headers_need_a_trusted_connection() {
        let mode =
            ippin_policy::ForwardedMode::trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let lb: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let trusted = ObservedAddr::new(lb, Provenance::Direct, true);
        let seen = from_forwarded(&trusted, &["203.0.113.9"], &[], &mode).unwrap();
        assert_eq!(seen.provenance(), Provenance::ForwardedHeader);
        assert_eq!(seen.ip().to_string(), "203.0.113.9");
        // Nor those of a client a PROXY header named, even one inside the proxies' networks.
        let named = ObservedAddr::new(lb, Provenance::ProxyV2, true);
        assert_eq!(
            from_forwarded(&named, &["203.0.113.9"], &[], &mode).unwrap(),
            named
        );
        // An untrusted connection's headers are not read.
        let untrusted = ObservedAddr::new(lb, Provenance::ProxyV2, false);
        assert_eq!(
            from_forwarded(&untrusted, &["203.0.113.9"], &[], &mode).unwrap(),
            untrusted
        );
        // Both kinds at once: refused.
        assert!(from_forwarded(&trusted, &["203.0.113.9"], &["for=203.0.113.9"], &mode).is_err());
        // A trusted proxy that names no client: untrusted.
        assert!(
            !from_forwarded(&trusted, &[], &[], &mode)
                .unwrap()
                .is_trusted()
        );
        // A client that is no proxy: its own connection stands, headers or not.
        let client = ObservedAddr::new("192.0.2.8:5".parse().unwrap(), Provenance::Direct, true);
        assert_eq!(
            from_forwarded(&client, &["203.0.113.9"], &[], &mode).unwrap(),
            client
        );
    }

    #[test]
    fn signed_is_trusted_and_canonical() {
        let s = from_signed("[::ffff:198.51.100.3]:7".parse().unwrap());
        assert!(s.is_trusted());
        assert_eq!(s.provenance(), Provenance::SignedPropagation);
        assert_eq!(s.socket_addr().to_string(), "198.51.100.3:7");
    }
}
