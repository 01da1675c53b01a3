//! A PROXY-aware accept for tokio streams (feature `tokio`).
//!
//! [`accept`] runs the PROXY stage on a freshly accepted connection: it reads at most one
//! header, bounded in bytes (the listener policy's buffer limit) and in time (`timeout`),
//! decides with the listener's mode and trusted proxies, and returns the observed client
//! address with a stream that replays any bytes read past the header. A refusal carries a
//! stable reason code; close the connection without writing anything.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! use ippin_access::tokio::accept;
//! use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let policy = ListenerPolicy::new(ProxyMode::On)
//!     .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
//! let policy = std::sync::Arc::new(policy);
//! loop {
//!     // An accept error (out of descriptors, say) is not the service's end.
//!     let Ok((tcp, peer)) = listener.accept().await else {
//!         tokio::time::sleep(Duration::from_millis(100)).await;
//!         continue;
//!     };
//!     // One task per connection: a client that stalls its header holds only its own.
//!     let policy = policy.clone();
//!     tokio::spawn(async move {
//!         match accept(tcp, peer, &policy, Duration::from_secs(5)).await {
//!             Ok((observed, stream)) => { /* TLS on `stream`, the pin check with `observed` */ }
//!             Err(refused) => eprintln!("refused {peer}: {}", refused.code),
//!         }
//!     });
//! }
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use ippin_proxy_protocol as pp;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::observed::{ObservedAddr, from_proxy};

pub use pp::PrefixedStream;

/// Why a connection was refused at the PROXY stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct Refused {
    /// The stable reason code (`ippin-proxy-protocol`'s, or the signed stage's).
    pub code: &'static str,
    /// A readable explanation.
    pub message: String,
}

impl Refused {
    /// A refusal with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }
}

/// Runs the PROXY stage on `stream`, accepted from `peer`; see the module docs.
///
/// # Errors
/// [`Refused`] when the listener policy refuses the connection (a header where none is
/// allowed, none where one is required, a malformed or second header, the time or byte
/// limit reached).
pub async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    policy: &pp::ListenerPolicy,
    timeout: Duration,
) -> Result<(ObservedAddr, PrefixedStream<S>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match Box::pin(pp::accept(stream, peer, policy, timeout)).await {
        Ok(accepted) => Ok((from_proxy(&accepted.observed), accepted.stream)),
        Err(refusal) => Err(Refused::new(refusal.code(), refusal.to_string())),
    }
}
