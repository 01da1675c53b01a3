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

/// The observed client of a freshly accepted connection from `peer` to
/// `local` (the listener's address as the socket reports it), with a stream
/// that replays any bytes read past the headers.
pub async fn observe<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cfg: &ListenerConfig,
) -> Result<(ObservedAddr, pp::PrefixedStream<S>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if cfg.propagation.is_some() {
        return Box::pin(crate::propagation::serve::accept(stream, peer, local, cfg)).await;
    }
    // Boxed: awaited inline, the reader's future (with its read buffer) would
    // be laid out in this one for every connection waiting for its header.
    Box::pin(accept_observed(stream, peer, cfg)).await
}
