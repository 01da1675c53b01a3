//! The accept loop every listener shares, with its bounds: at most
//! [`MAX_PENDING`] connections in the PROXY stage, at most
//! [`MAX_CONNECTIONS`] established ones per listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The most connections one listener handles at once past the PROXY stage
/// (TLS and HTTP). A connection whose header is complete waits for one of
/// these slots, so memory for the expensive stages stays bounded.
pub const MAX_CONNECTIONS: usize = 1024;

/// The most connections one listener holds at once in the PROXY stage
/// (waiting for a header, at most `header_timeout` each). Larger than
/// [`MAX_CONNECTIONS`] because a pending connection costs little (a small
/// task and a socket, measured in docs/resilience.md), so thousands of
/// stalled peers do not lock real clients out; beyond it the accept loop
/// waits and the kernel's backlog absorbs bursts.
pub const MAX_PENDING: usize = 16 * 1024;

/// Accepts on `socket` until it fails for good, each connection handed to
/// `handle` in its own task. At most [`MAX_PENDING`] connections are in the
/// PROXY stage at once (`handle` gets the permit and drops it when that stage
/// ends), and `handle` takes one of the [`MAX_CONNECTIONS`] shared slots for
/// an established connection. Every listener kind accepts through this loop.
pub(crate) async fn bounded_accept<F, Fut>(socket: TcpListener, listen: SocketAddr, handle: F)
where
    F: Fn(
        TcpStream,
        SocketAddr,
        tokio::sync::OwnedSemaphorePermit,
        Arc<tokio::sync::Semaphore>,
    ) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // A listener bound to one address is every connection's local address; only a
    // wildcard bind (`0.0.0.0`, `::`, or `::ffff:0.0.0.0`, which Linux binds as the IPv4
    // wildcard) has to ask each accepted socket (`getsockname`).
    let bound = socket
        .local_addr()
        .ok()
        .filter(|a| !a.ip().to_canonical().is_unspecified());
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(pending_slot) = pending.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match socket.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept on {listen}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Every audit line written while this connection is served carries its TCP peer.
        let local = match bound {
            Some(a) => a,
            None => match tcp.local_addr() {
                Ok(a) => a,
                // A socket that cannot say its own address is not served.
                Err(_) => continue,
            },
        };
        let served = handle(tcp, peer, pending_slot, slots.clone());
        tokio::spawn(
            crate::audit::CONNECTION_PEER
                .scope(peer, crate::audit::CONNECTION_LOCAL.scope(local, served)),
        );
    }
}
