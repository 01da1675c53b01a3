//! An async client over the gateway codec: tokio and hyper's HTTP/1.1 client, plain `http`
//! to a loopback etcd (feature `fleet-tokio`).
//!
//! Each call opens one connection, `POST`s the request the codec encoded, reads the answer
//! within a time bound and a size bound, and decodes it with the codec's decoder. A watch
//! keeps its connection and decodes the streamed body chunk by chunk through
//! [`WatchStream`].
//!
//! **No TLS yet**: the endpoint is spoken to in clear text, so it must be a loopback address
//! (an etcd on the same host, or a local TLS-terminating proxy). Mutual TLS to a remote etcd
//! (rustls, the fleet's CA, a client certificate) is the next step; until then
//! [`EtcdClient::new`] refuses nothing, and the caller keeps it on loopback.
//!
//! Bounds:
//! * a per-request time bound ([`EtcdClient::with_timeout`], 5 s by default) covers the
//!   connect, the answer's head and its whole body; for a watch it covers the connect and the
//!   head only (the stream stays open: bound each [`EtcdWatch::next`] with
//!   `tokio::time::timeout` and ask for progress messages to tell a quiet etcd from a dead
//!   one);
//! * a body is read at most to [`MAX_BODY_BYTES`] (or a smaller bound given with
//!   [`EtcdClient::with_max_body`]): a longer one is refused while it is read, not buffered
//!   then measured; a watch message is bounded the same way by its [`WatchStream`].
//!
//! The calls spawn the connection's task on the current tokio runtime: call them inside one.
//!
//! ```no_run
//! use std::time::Duration;
//! use ippin_access::fleet::client::EtcdClient;
//! use ippin_access::fleet::{Put, Range, Watch};
//!
//! # async fn run() -> Result<(), ippin_access::fleet::client::ClientError> {
//! let etcd = EtcdClient::new("127.0.0.1:2379".parse().unwrap())
//!     .with_timeout(Duration::from_secs(2));
//! let written = etcd.put(&Put::new(b"/ippin/roles/ops", b"...")).await?;
//! let roles = etcd.range(&Range::prefix(b"/ippin/roles/")).await?;
//! // Everything after that read, in order; on `None`, reopen from the last revision + 1.
//! let mut watch = etcd
//!     .watch(&Watch::prefix(b"/ippin/").from_revision(roles.header.revision + 1))
//!     .await?;
//! while let Some(message) = watch.next().await {
//!     for event in message?.events {
//!         println!("{:?} at {}", event.kind, event.kv.mod_revision);
//!     }
//! }
//! # let _ = written;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{
    Compaction, DeleteRange, DeleteRangeResponse, FleetError, HeaderResponse, LeaseGrant,
    LeaseGrantResponse, LeaseKeepAlive, LeaseKeepAliveResponse, LeaseRevoke, MAX_BODY_BYTES, Put,
    PutResponse, Range, RangeResponse, Request, Txn, TxnResponse, Watch, WatchResponse,
    WatchStream,
};

/// The default per-request time bound.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call (or a watch) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection to etcd could not be opened.
    #[error("connect to etcd at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The call did not complete within its time bound.
    #[error("etcd did not answer within {after:?}")]
    Timeout {
        /// The bound.
        after: Duration,
    },
    /// The HTTP exchange failed: the connection was closed or reset, or the answer is not
    /// HTTP/1.1 (a watch ends with this when etcd goes away).
    #[error("HTTP exchange with etcd: {0}")]
    Http(#[from] hyper::Error),
    /// etcd answered with an error status and its error object.
    #[error("etcd answered {status}: error {code}: {message}")]
    Etcd {
        /// The HTTP status.
        status: u16,
        /// The gRPC status code.
        code: u64,
        /// etcd's message.
        message: String,
    },
    /// An error status with a body that is not etcd's error object (a proxy's page).
    #[error("etcd answered HTTP status {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The body is longer than the bound; reading stopped there.
    #[error("answer body over the bound of {max} bytes")]
    BodyTooLarge {
        /// The bound.
        max: usize,
    },
    /// A [`Request`] built by hand with a path that is not an origin-form path under `/v3/`
    /// (the codec's encoders never make one); refused before connecting.
    #[error("not a gateway path: {path:?}")]
    BadPath {
        /// The path.
        path: &'static str,
    },
    /// The body (or a watch message) does not decode.
    #[error("decode: {0}")]
    Decode(#[from] FleetError),
}

/// An async client of one etcd endpoint's JSON gateway (plain `http`, loopback only; see the
/// module's documentation).
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoint: SocketAddr,
    timeout: Duration,
    max_body: usize,
}

impl EtcdClient {
    /// A client of the gateway at `endpoint`, with [`DEFAULT_TIMEOUT`] and [`MAX_BODY_BYTES`].
    /// Nothing is opened until a call.
    pub fn new(endpoint: SocketAddr) -> Self {
        Self {
            endpoint,
            timeout: DEFAULT_TIMEOUT,
            max_body: MAX_BODY_BYTES,
        }
    }

    /// The same client with another per-request time bound.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client with a smaller body bound (and watch message bound); a bound above
    /// [`MAX_BODY_BYTES`] is lowered to it.
    pub fn with_max_body(mut self, max: usize) -> Self {
        self.max_body = max.min(MAX_BODY_BYTES);
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// Reads a key or a range.
    pub async fn range(&self, req: &Range) -> Result<RangeResponse, ClientError> {
        Ok(RangeResponse::decode(&self.call(&req.encode()).await?)?)
    }

    /// Writes a key.
    pub async fn put(&self, req: &Put) -> Result<PutResponse, ClientError> {
        Ok(PutResponse::decode(&self.call(&req.encode()).await?)?)
    }

    /// Deletes a key or a range.
    pub async fn delete_range(
        &self,
        req: &DeleteRange,
    ) -> Result<DeleteRangeResponse, ClientError> {
        Ok(DeleteRangeResponse::decode(
            &self.call(&req.encode()).await?,
        )?)
    }

    /// Runs a transaction.
    pub async fn txn(&self, req: &Txn) -> Result<TxnResponse, ClientError> {
        Ok(TxnResponse::decode(&self.call(&req.encode()).await?)?)
    }

    /// Compacts the history up to a revision.
    pub async fn compaction(&self, req: &Compaction) -> Result<HeaderResponse, ClientError> {
        Ok(HeaderResponse::decode(&self.call(&req.encode()).await?)?)
    }

    /// Grants a lease.
    pub async fn lease_grant(&self, req: &LeaseGrant) -> Result<LeaseGrantResponse, ClientError> {
        Ok(LeaseGrantResponse::decode(
            &self.call(&req.encode()).await?,
        )?)
    }

    /// Revokes a lease (and deletes its keys).
    pub async fn lease_revoke(&self, req: &LeaseRevoke) -> Result<HeaderResponse, ClientError> {
        Ok(HeaderResponse::decode(&self.call(&req.encode()).await?)?)
    }

    /// Renews a lease once.
    pub async fn lease_keepalive(
        &self,
        req: &LeaseKeepAlive,
    ) -> Result<LeaseKeepAliveResponse, ClientError> {
        Ok(LeaseKeepAliveResponse::decode(
            &self.call(&req.encode()).await?,
        )?)
    }

    /// Sends any encoded request; the answer's body (status 2xx, at most the bound), within
    /// the time bound. Error statuses become [`ClientError::Etcd`] or
    /// [`ClientError::Status`].
    pub async fn call(&self, req: &Request) -> Result<Vec<u8>, ClientError> {
        let after = self.timeout;
        let exchange = async {
            let (resp, conn) = self.send(req).await?;
            let out = read_answer(resp, self.max_body).await;
            conn.abort();
            out
        };
        tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| ClientError::Timeout { after })?
    }

    /// Opens a watch: the answer's head within the time bound, then a stream of messages
    /// (the first one `created`), each at most the body bound.
    pub async fn watch(&self, req: &Watch) -> Result<EtcdWatch, ClientError> {
        let after = self.timeout;
        let max = self.max_body;
        let open = async {
            let (resp, conn) = self.send(&req.encode()).await?;
            let status = resp.status();
            if !status.is_success() {
                let out = read_answer(resp, max).await;
                conn.abort();
                return Err(out.err().unwrap_or(ClientError::Status {
                    status: status.as_u16(),
                }));
            }
            Ok(EtcdWatch {
                body: Some(resp.into_body()),
                stream: WatchStream::with_max_message(max),
                ready: VecDeque::new(),
                conn,
            })
        };
        tokio::time::timeout(after, open)
            .await
            .map_err(|_| ClientError::Timeout { after })?
    }

    /// Connects, spawns the connection's task, sends the request; the answer's head.
    async fn send(
        &self,
        req: &Request,
    ) -> Result<(hyper::Response<Incoming>, JoinHandle<()>), ClientError> {
        let endpoint = self.endpoint;
        // Built before connecting: a bad path is refused without touching the network.
        let uri = hyper::Uri::try_from(req.path)
            .ok()
            .filter(|u| u.scheme().is_none() && u.path().starts_with("/v3/"))
            .ok_or(ClientError::BadPath { path: req.path })?;
        let mut http_req = hyper::Request::new(Full::new(Bytes::from(req.body.clone())));
        *http_req.method_mut() = hyper::Method::POST;
        *http_req.uri_mut() = uri;
        let headers = http_req.headers_mut();
        if let Ok(host) = hyper::header::HeaderValue::from_str(&endpoint.to_string()) {
            headers.insert(hyper::header::HOST, host);
        }
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        let tcp = TcpStream::connect(endpoint)
            .await
            .map_err(|source| ClientError::Connect { endpoint, source })?;
        // Small requests and streamed events: no Nagle delay.
        drop(tcp.set_nodelay(true));
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        let conn = tokio::spawn(async move {
            // Its error reaches the caller through the request or the body.
            drop(conn.await);
        });
        match sender.send_request(http_req).await {
            Ok(resp) => Ok((resp, conn)),
            Err(e) => {
                conn.abort();
                Err(e.into())
            }
        }
    }
}

/// Reads a whole body, refusing it past `max` bytes (the Content-Length first, then as the
/// frames arrive); then the status is checked.
async fn read_answer(resp: hyper::Response<Incoming>, max: usize) -> Result<Vec<u8>, ClientError> {
    let status = resp.status();
    let declared = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ClientError::BodyTooLarge { max });
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if data.len() > max.saturating_sub(buf.len()) {
                return Err(ClientError::BodyTooLarge { max });
            }
            buf.extend_from_slice(&data);
        }
    }
    if status.is_success() {
        return Ok(buf);
    }
    let status = status.as_u16();
    // The decoders read etcd's error object from any of them.
    match HeaderResponse::decode(&buf) {
        Err(FleetError::Gateway { code, message }) => Err(ClientError::Etcd {
            status,
            code,
            message,
        }),
        _ => Err(ClientError::Status { status }),
    }
}

/// An open watch: the messages of the streamed answer, decoded as they arrive.
///
/// [`next`](Self::next) returns `None` once the stream is over: after etcd closed it, after
/// the connection broke (that error is returned first, then `None`), or after a message did
/// not decode (that error first). Nothing is lost across a reopen from the last applied
/// revision + 1. Dropping it closes the connection.
#[derive(Debug)]
pub struct EtcdWatch {
    body: Option<Incoming>,
    stream: WatchStream,
    ready: VecDeque<WatchResponse>,
    conn: JoinHandle<()>,
}

impl EtcdWatch {
    /// The next message; `None` when the stream is over. Not bounded in time: etcd sends
    /// nothing while nothing changes (unless progress messages were asked for).
    pub async fn next(&mut self) -> Option<Result<WatchResponse, ClientError>> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(Ok(m));
            }
            let body = self.body.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match self.stream.push(&data) {
                        Ok(messages) => self.ready.extend(messages),
                        Err(e) => return Some(Err(self.end(e.into()))),
                    }
                }
                Some(Err(e)) => return Some(Err(self.end(e.into()))),
                None => {
                    self.body = None;
                    self.conn.abort();
                    return self.stream.finish().err().map(|e| Err(e.into()));
                }
            }
        }
    }

    /// Ends the stream after an error: later calls return `None`.
    fn end(&mut self, e: ClientError) -> ClientError {
        self.body = None;
        self.conn.abort();
        e
    }
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_path_is_refused_before_connecting() {
        // Nothing listens on port 1: a connection attempt would be a connect error.
        let c = EtcdClient::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        for path in [
            "/v3/kv range",
            "http://elsewhere/v3/kv/range",
            "/v2/keys",
            "",
        ] {
            let req = Request {
                path,
                body: b"{}".to_vec(),
            };
            let got = c.call(&req).await;
            assert!(
                matches!(got, Err(ClientError::BadPath { path: p }) if p == path),
                "{path:?}: {got:?}"
            );
        }
        let ok_path = c.call(&Range::key(b"k").encode()).await;
        assert!(
            matches!(ok_path, Err(ClientError::Connect { .. })),
            "{ok_path:?}"
        );
    }
}
