//! The one accept path every listener uses: the PROXY stage decided by
//! `ippin-proxy-protocol`, its answer mapped into `ippin-policy`'s
//! [`ObservedAddr`].

use std::net::SocketAddr;

use ippin_policy::{ObservedAddr, Provenance};
use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{ListenerConfig, ProxyModeSetting};

/// Why a connection was refused at the PROXY stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The stable reason code from the PROXY layer.
    pub code: &'static str,
    /// A readable explanation.
    pub message: String,
}

/// The PROXY-protocol listener policy for a configured listener.
pub fn listener_policy(cfg: &ListenerConfig) -> pp::ListenerPolicy {
    let mode = match cfg.proxy_protocol {
        ProxyModeSetting::On => pp::ProxyMode::On,
        ProxyModeSetting::Off => pp::ProxyMode::Off,
        ProxyModeSetting::Unspecified => pp::ProxyMode::Unspecified,
    };
    let mut policy = pp::ListenerPolicy::new(mode);
    policy.trusted_proxies = cfg.trusted_proxies.clone();
    policy
}

/// Maps the PROXY layer's observation into the policy crate's type.
///
/// A `LOCAL` header (a proxy's own health check) names no client: the
/// address is the proxy's, recorded as `direct` and never trusted, whatever
/// the PROXY layer said.
pub fn to_observed(o: &pp::Observed) -> ObservedAddr {
    let (provenance, trusted) = match o.provenance {
        pp::Provenance::Direct => (Provenance::Direct, o.trusted),
        pp::Provenance::ProxyV1 => (Provenance::ProxyV1, o.trusted),
        pp::Provenance::ProxyV2 => (Provenance::ProxyV2, o.trusted),
        pp::Provenance::Local => (Provenance::Direct, false),
        // `pp::Provenance` is `#[non_exhaustive]`: a provenance this server does not know
        // must never pin or satisfy a pin, so it fails closed (untrusted, like LOCAL).
        _ => (Provenance::Direct, false),
    };
    ObservedAddr::new(o.addr, provenance, trusted)
}

/// Runs the PROXY stage on a freshly accepted connection from `peer` to
/// `local` (the listener's address as the socket reports it): reads
/// at most one header within the listener's `header_timeout`, decides with
/// the listener's mode and trusted proxies, and returns the observed client
/// address with a stream that replays any bytes read past the header.
pub async fn accept_observed<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cfg: &ListenerConfig,
) -> Result<(ObservedAddr, pp::PrefixedStream<S>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Listeners with `propagation` also take one signed header (after at
    // most one unsigned one): crate::propagation decides the sequence.
    if cfg.propagation.is_some() {
        return Box::pin(crate::propagation::serve::accept(stream, peer, local, cfg)).await;
    }
    let policy = listener_policy(cfg);
    // Both readers are boxed: awaited inline, their futures (each with a
    // read buffer) were laid out side by side in this one, and every
    // connection waiting for its header carried both (about 2.7 KiB instead
    // of 1.4 KiB; measured with `ippin-load stall`).
    match Box::pin(pp::accept(stream, peer, &policy, cfg.header_timeout)).await {
        Ok(accepted) => Ok((to_observed(&accepted.observed), accepted.stream)),
        Err(refusal) => Err(Refused {
            code: refusal.code(),
            message: refusal.to_string(),
        }),
    }
}
