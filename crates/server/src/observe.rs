//! The observation pipeline of a listener: the PROXY stage
//! ([`crate::accept`]), or for a listener with `propagation`, the PROXY stage
//! followed by one signed header ([`crate::propagation::net::accept_listener`]),
//! with what the listener made for it when it started ([`Observing`]).
//! Nothing below calls back up into this module.

use std::net::SocketAddr;

use ippin_access::observed::ObservedAddr;
use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::accept::{Refused, accept_observed};
use crate::config::ListenerConfig;
use crate::propagation::runtime::Armed;

/// What a listener's observation needs beyond its configuration, made once when the
/// listener starts: its PROXY policy (trusted proxies and endpoints not copied for each
/// connection) and, with `propagation`, the verifier of signed headers.
#[derive(Debug)]
pub struct Observing {
    /// The listener's PROXY policy ([`crate::accept::listener_policy`]).
    pub policy: pp::ListenerPolicy,
    /// The armed verifier of a listener with `propagation` (`None` otherwise: such a
    /// listener then refuses every connection, `propagation_unavailable`).
    pub signed: Option<Armed>,
}

impl Observing {
    /// The observation of `cfg`'s connections, with its verifier.
    pub fn new(cfg: &ListenerConfig, signed: Option<Armed>) -> Observing {
        Observing {
            policy: crate::accept::listener_policy(cfg),
            signed,
        }
    }
}

/// The observed client of a freshly accepted connection from `peer`, with a
/// stream that replays any bytes read past the headers. `observing` is what
/// the listener made for it when it started. `local` (the listener's address as the socket reports
/// it) is needed only by a listener with `propagation`, whose signed headers
/// name it: callers ask the socket (`getsockname`) only for those, and such a
/// listener refuses a connection without it.
pub async fn observe<S>(
    stream: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    cfg: &ListenerConfig,
    observing: &Observing,
) -> Result<(ObservedAddr, pp::PrefixedStream<S>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if cfg.propagation.is_some() {
        let Some(local) = local else {
            return Err(Refused::new(
                "local_address_unknown",
                "local_address_unknown: the connection's own address is not known",
            ));
        };
        return Box::pin(crate::propagation::net::accept_listener(
            stream,
            peer,
            local,
            cfg,
            &observing.policy,
            observing.signed.as_ref(),
        ))
        .await;
    }
    // Boxed: awaited inline, the reader's future (with its read buffer) would
    // be laid out in this one for every connection waiting for its header.
    Box::pin(accept_observed(stream, peer, cfg, &observing.policy)).await
}
