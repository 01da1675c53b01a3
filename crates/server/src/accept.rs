//! The PROXY stage of a listener: its configured policy, and the accept of
//! `ippin-access` (which maps the answer into the one observed-address
//! type). Listeners with signed propagation add a stage: see
//! the `observe` module.

use std::net::SocketAddr;

use ippin_access::observed::ObservedAddr;
use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{ListenerConfig, ProxyModeSetting};

pub use ippin_access::observed::from_proxy as to_observed;
pub use ippin_access::tokio::Refused;

/// The PROXY-protocol listener policy for a configured listener.
pub fn listener_policy(cfg: &ListenerConfig) -> pp::ListenerPolicy {
    let mode = match cfg.proxy_protocol {
        ProxyModeSetting::On => pp::ProxyMode::On,
        ProxyModeSetting::Off => pp::ProxyMode::Off,
        ProxyModeSetting::Unspecified => pp::ProxyMode::Unspecified,
    };
    let mut policy = pp::ListenerPolicy::new(mode);
    policy.trusted_proxies = cfg.trusted_proxies.clone();
    policy.allowed_endpoints = cfg.allowed_endpoints.clone();
    policy
}

/// Runs the PROXY stage on a freshly accepted connection from `peer`:
/// reads at most one header within the listener's `header_timeout`, decides
/// with the listener's mode and trusted proxies, and returns the observed
/// client address with a stream that replays any bytes read past the
/// header (`ippin_access::tokio::accept`).
/// `policy` is [`listener_policy`] of `cfg`, made once per listener by the caller.
pub async fn accept_observed<S>(
    stream: S,
    peer: SocketAddr,
    cfg: &ListenerConfig,
    policy: &pp::ListenerPolicy,
) -> Result<(ObservedAddr, pp::PrefixedStream<S>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ippin_access::tokio::accept(stream, peer, policy, cfg.header_timeout).await
}
