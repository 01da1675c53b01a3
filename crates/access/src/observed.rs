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

use ippin_propagation::verify::Verified;
use ippin_proxy_protocol as pp;

pub use ippin_policy::{ObservedAddr, Provenance};

/// The observation the PROXY stage made, as the access layer's type.
///
/// Address, provenance and trust are kept. `LOCAL` becomes [`Provenance::ProxyLocal`], which
/// is never trusted. A provenance this crate does not know (the PROXY crate's enum is
/// `#[non_exhaustive]`) becomes an untrusted `direct` observation: it can never pin or
/// satisfy a pin. The cloud endpoint the connection came through (a listener with
/// `allowed_endpoints`) is kept ([`ObservedAddr::endpoint`]): pins are bound to it.
pub fn from_proxy(o: &pp::Observed) -> ObservedAddr {
    let (provenance, trusted) = match o.provenance {
        pp::Provenance::Direct => (Provenance::Direct, o.trusted),
        pp::Provenance::ProxyV1 => (Provenance::ProxyV1, o.trusted),
        pp::Provenance::ProxyV2 => (Provenance::ProxyV2, o.trusted),
        pp::Provenance::Local => (Provenance::ProxyLocal, false),
        _ => (Provenance::Direct, false),
    };
    let observed = ObservedAddr::new(o.addr, provenance, trusted);
    // The names agree by construction (`vpce-…`, `azure:N`, `gcp:N`); a name the policy
    // crate would not take cannot be left off, so the observation is then not trusted.
    match o.endpoint {
        None => observed,
        Some(id) => match ippin_policy::Endpoint::parse(&id.to_string()) {
            Some(e) => observed.with_endpoint(e),
            None => ObservedAddr::new(o.addr, provenance, false),
        },
    }
}

/// The client a verified signed header names ([`Verified::client`]): trusted, provenance
/// `signed_propagation`.
///
/// It takes the verifier's answer, not an address: only `ippin-propagation`'s verifier
/// makes a [`Verified`], so an address read from an unverified header cannot be made a
/// trusted observation here (that is [`from_proxy`]'s business, untrusted).
///
/// The cloud private endpoint the front said the client came through is kept
/// ([`ObservedAddr::endpoint`]): pins are bound to it.
pub fn from_signed(verified: &Verified) -> ObservedAddr {
    let observed = ObservedAddr::new(verified.client(), Provenance::SignedPropagation, true);
    match verified.endpoint() {
        None => observed,
        Some(name) => match ippin_policy::Endpoint::parse(name) {
            Some(e) => observed.with_endpoint(e),
            // Not reached: the verifier decodes names only. Untrusted, never unbound.
            None => ObservedAddr::new(verified.client(), Provenance::SignedPropagation, false),
        },
    }
}

/// Whether [`from_forwarded`] reads a request's forwarded headers on a connection observed as
/// `conn`: a trusted, direct connection whose peer `mode` takes for a proxy. When it does not,
/// the headers are the client's own and must be neither read nor refused (not even for bytes
/// that are not visible ASCII): check this before converting them.
pub fn reads_forwarded(conn: &ObservedAddr, mode: &ippin_policy::ForwardedMode) -> bool {
    conn.is_trusted() && conn.provenance() == Provenance::Direct && mode.believes(conn.ip())
}

/// The client an HTTP request's `X-Forwarded-For` or `Forwarded` header lines name, for a
/// request that arrived on a connection observed as `conn` (the PROXY stage's answer).
/// `x_forwarded_for` and `forwarded` are **every line of each header, in order**: with
/// `headers.get(…)` instead of all lines, an appending proxy's own line (HAProxy adds one
/// after the client's) is missed and the client's forged line read as the proxy's. With axum,
/// `crate::axum::forwarded_client` (feature `axum`) gathers them.
///
/// The rules, in order:
/// - a connection that is not trusted cannot vouch for anyone: its headers are not read, and
///   the answer is `conn` itself (untrusted);
/// - only a connection observed `direct` (its socket peer) can be an HTTP proxy: when `conn`
///   came from a PROXY header (or a signed one), the peer it names is the *client*, whose
///   headers are its own claims; they are not read, and the answer is `conn`. (A deployment
///   with an L4 balancer in front of an L7 proxy has the proxy as the socket peer.);
/// - a peer the mode does not take for a proxy is the client: its headers are not read (nor
///   refused);
/// - both headers at once are refused: a proxy appends to one, and the other would be the
///   client's;
/// - `ippin-policy` reads the chain with `mode`: trusted proxies and hops, or
///   [`ippin_policy::ForwardedMode::EveryPeerIsAProxy`], which believes *whoever connects* (use it only on
///   a listener that nothing but your proxies can reach); a trusted proxy that names no
///   client gives an untrusted observation;
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
    // A peer the mode does not take for a proxy is the client: nothing it sends is read.
    if !reads_forwarded(conn, mode) {
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

/// [`from_forwarded`] from the raw values of a request's header lines (in order, every line
/// of each: an HTTP library's `get_all`), as an HTTP server holds them: a client's own headers
/// (see [`reads_forwarded`]) are not even converted, and a value from a proxy that is not
/// visible ASCII is refused.
///
/// # Errors
/// As [`from_forwarded`], and for a value that is not visible ASCII.
pub fn from_forwarded_values<'a>(
    conn: &ObservedAddr,
    x_forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    forwarded: impl IntoIterator<Item = &'a [u8]>,
    mode: &ippin_policy::ForwardedMode,
) -> Result<ObservedAddr, ForwardedError> {
    if !reads_forwarded(conn, mode) {
        return Ok(*conn);
    }
    let text = |name: &str, values: &mut dyn Iterator<Item = &'a [u8]>| {
        values
            .map(|v| {
                v.iter()
                    .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
                    .then(|| std::str::from_utf8(v).ok())
                    .flatten()
                    .ok_or_else(|| ForwardedError(format!("header {name}: not visible ASCII")))
            })
            .collect::<Result<Vec<&str>, ForwardedError>>()
    };
    let xff = text("X-Forwarded-For", &mut x_forwarded_for.into_iter())?;
    let fwd = text("Forwarded", &mut forwarded.into_iter())?;
    from_forwarded(conn, &xff, &fwd, mode)
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
    use std::net::SocketAddr;

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

    /// Raw header values: every line in order; bytes that are not visible ASCII refused from
    /// a proxy, not even looked at from a client.
    #[test]
    fn raw_values_are_read_only_from_a_proxy() {
        let mode =
            ippin_policy::ForwardedMode::trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy = ObservedAddr::new("10.0.0.5:4000".parse().unwrap(), Provenance::Direct, true);
        let client = ObservedAddr::new("192.0.2.8:4000".parse().unwrap(), Provenance::Direct, true);
        let lines: [&[u8]; 2] = [b"198.51.100.7", b"203.0.113.9"];
        let seen = from_forwarded_values(&proxy, lines, [], &mode).unwrap();
        assert_eq!(seen.ip().to_string(), "203.0.113.9");
        let junk: [&[u8]; 1] = [b"\xff"];
        assert!(from_forwarded_values(&proxy, junk, [], &mode).is_err());
        assert!(from_forwarded_values(&proxy, [&b"a\x7fb"[..]], [], &mode).is_err());
        assert_eq!(
            from_forwarded_values(&client, junk, junk, &mode).unwrap(),
            client
        );
    }

    /// The endpoint the PROXY stage names is kept: pins are bound to it.
    #[test]
    fn the_endpoint_a_connection_came_through_is_kept() {
        let addr: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let mut o = pp::Observed::new(addr, pp::Provenance::ProxyV2, true);
        o.endpoint = Some(pp::EndpointId::Azure(pp::AzureLinkId(7)));
        let seen = from_proxy(&o);
        assert_eq!(
            seen.endpoint().map(|e| e.to_string()).as_deref(),
            Some("azure:7")
        );
        assert!(seen.is_trusted());
        assert!(
            seen.to_string().contains("through endpoint azure:7"),
            "{seen}"
        );
        o.endpoint = None;
        assert_eq!(from_proxy(&o).endpoint(), None);
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
        // A peer outside the proxies is the client: both headers at once, or junk, are not
        // read (nor refused).
        let client: SocketAddr = "192.0.2.8:4000".parse().unwrap();
        let direct = ObservedAddr::new(client, Provenance::Direct, true);
        assert_eq!(
            from_forwarded(&direct, &["203.0.113.9"], &["for=203.0.113.9"], &mode).unwrap(),
            direct
        );
        assert_eq!(
            from_forwarded(&direct, &["junk"], &[], &mode).unwrap(),
            direct
        );
        // From a proxy, both at once are refused.
        assert!(from_forwarded(&trusted, &["203.0.113.9"], &["for=203.0.113.9"], &mode).is_err());
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

    /// The front's key usage is one value in the crate that issues it and the crate that
    /// requires it (foundations do not depend on each other).
    #[test]
    fn the_fronts_key_usage_is_the_same_in_both_crates() {
        assert_eq!(
            ippin_cert::x509::PROPAGATION_FRONT_EKU,
            ippin_propagation::PROPAGATION_FRONT_EKU
        );
    }

    /// A header signed by a front and verified by the inner listener (the propagation crate's
    /// own flow): the observation is the client it names, trusted, canonical.
    #[test]
    fn signed_is_trusted_and_canonical() {
        use ippin_cert::x509::{ClientCertRequest, X509Ca};
        use ippin_propagation::{
            Link, PROXY_CN_PREFIX, PROXY_ROLE, SecretKey, Signer, TrustAnchor, Verifier,
            address_block_for, ed25519_spki_der,
        };
        let mut rng = ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng);
        let t = 1_700_000_000;
        let ca = X509Ca::generate_p256("cluster CA", t - 60, t + 3600, &mut rng).unwrap();
        let front_key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
        let spki = ed25519_spki_der(front_key.verifying_key().as_bytes());
        let request = ClientCertRequest::builder(format!("{PROXY_CN_PREFIX}front-1"), spki)
            .role(PROXY_ROLE)
            .propagation_front()
            .validity(t - 60, t + 3600)
            .serial(7)
            .build()
            .unwrap();
        let signer = Signer::new(front_key, ca.issue_client(&request, &mut rng).unwrap()).unwrap();
        let inner = SecretKey::from_bytes([0x5a; 32]);
        let grant = signer
            .grant(
                &inner.public_key(),
                "inner",
                t,
                t + 600,
                &SecretKey::from_bytes([0x17; 32]),
            )
            .unwrap();
        let client: SocketAddr = "[::ffff:198.51.100.3]:7".parse().unwrap();
        let reached: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let link = Link {
            front: "10.0.0.5:40100".parse().unwrap(),
            inner: "10.0.0.9:4443".parse().unwrap(),
        };
        let value = grant
            .signed_block(client, reached, link, t, [1; 16])
            .unwrap();
        let verifier = Verifier::new(
            TrustAnchor::from_der(ca.cert_der()).unwrap(),
            inner,
            "inner",
            30,
            1024,
        );
        let verified = verifier
            .verify_block(&address_block_for(client, reached), &value, link, t + 1)
            .unwrap();
        let s = from_signed(&verified);
        assert!(s.is_trusted());
        assert_eq!(s.provenance(), Provenance::SignedPropagation);
        assert_eq!(s.socket_addr().to_string(), "198.51.100.3:7");
    }
}
