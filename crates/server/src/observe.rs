//! The observation pipeline of a listener: the PROXY stage
//! ([`crate::accept`]), or for a listener with `propagation`, the PROXY stage
//! followed by one signed header ([`crate::propagation::serve::accept`]).
//! Nothing below calls back up into this module.

use std::net::SocketAddr;

use ippin_access::observed::ObservedAddr;
use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::accept::{Refused, accept_observed};
use crate::config::ListenerConfig;

/// The observed client of a freshly accepted connection from `peer`, with a
/// stream that replays any bytes read past the headers. `policy` is the
/// listener's PROXY policy ([`crate::accept::listener_policy`] of `cfg`, made
/// once per listener). `local` (the listener's address as the socket reports
/// it) is needed only by a listener with `propagation`, whose signed headers
/// name it: callers ask the socket (`getsockname`) only for those, and such a
/// listener refuses a connection without it.
pub async fn observe<S>(
    stream: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    cfg: &ListenerConfig,
    policy: &pp::ListenerPolicy,
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
        return Box::pin(crate::propagation::serve::accept(stream, peer, local, cfg)).await;
    }
    // Boxed: awaited inline, the reader's future (with its read buffer) would
    // be laid out in this one for every connection waiting for its header.
    Box::pin(accept_observed(stream, peer, cfg, policy)).await
}
