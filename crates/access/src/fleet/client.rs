//! An async client over the gateway codec: tokio, hyper's HTTP/1.1 client and tokio-rustls,
//! to one etcd cluster through one or more member endpoints (feature `fleet-tokio`).
//!
//! Each call opens one connection, `POST`s the request the codec encoded, reads the answer
//! within a time bound and a size bound, and decodes it with the codec's decoder. A watch
//! keeps its connection and decodes the streamed body chunk by chunk through
//! [`WatchStream`].
//!
//! **Endpoints.** An [`Endpoint`] is an address spoken to in clear text (`http`: keep it on
//! loopback) or over TLS (`https`: etcd's certificate verified against a CA bundle of your
//! own, a client certificate presented for etcd's `--client-cert-auth`;
//! [`client_config_from_pem`] builds the rustls configuration with the `ring` provider).
//! [`EtcdClient::with_endpoints`] takes several members of one cluster; each call (and each
//! watch's opening) tries the endpoint that answered last, then the others in their order.
//! It moves on only when an endpoint cannot be reached ([`ClientError::Connect`]), does not
//! answer within the time bound ([`ClientError::Timeout`]), or TLS refuses it
//! ([`ClientError::Tls`]); an answer of etcd, even an error, is returned as it is. When every
//! endpoint fails, the last one's error is returned; it names that endpoint's address.
//!
//! A timeout (or a connection that breaks after the request was written) does not say
//! whether etcd applied the request: the next endpoint may apply a write a second time. A put
//! or a delete repeated leaves the same keys (at a later revision); a transaction guarded by
//! compares is not applied twice, but its second attempt may answer with the failure branch.
//! Read the revisions in the answer when it matters.
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
//! The time bound applies to each endpoint tried: a call over `n` endpoints that all time out
//! takes `n` bounds.
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
//!
//! Over TLS, to three members, with a client certificate:
//!
//! ```no_run
//! use std::sync::Arc;
//! use ippin_access::fleet::client::{client_config_from_pem, Endpoint, EtcdClient};
//! use rustls::pki_types::ServerName;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Arc::new(client_config_from_pem(
//!     &std::fs::read("/etc/ippin/etcd-ca.pem")?,
//!     Some((
//!         &std::fs::read("/etc/ippin/etcd-client.pem")?,
//!         &std::fs::read("/etc/ippin/etcd-client-key.pem")?,
//!     )),
//! )?);
//! let endpoints = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
//!     .iter()
//!     .map(|a| {
//!         let addr: std::net::SocketAddr = a.parse()?;
//!         Ok(Endpoint::tls(addr, ServerName::from(addr.ip()), config.clone()))
//!     })
//!     .collect::<Result<Vec<_>, std::net::AddrParseError>>()?;
//! let etcd = EtcdClient::with_endpoints(endpoints);
//! # let _ = etcd; Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::{
    Compaction, DeleteRange, DeleteRangeResponse, FleetError, HeaderResponse, LeaseGrant,
    LeaseGrantResponse, LeaseKeepAlive, LeaseKeepAliveResponse, LeaseRevoke, MAX_BODY_BYTES, Put,
    PutResponse, Range, RangeResponse, Request, Txn, TxnResponse, Watch, WatchResponse,
    WatchStream,
};

/// The default per-request time bound.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One etcd member's address, spoken to in clear text or over TLS.
///
/// A clear-text endpoint sends keys, values and leases unencrypted and unauthenticated: keep
/// it on loopback (an etcd on the same host, or a local TLS-terminating proxy). A TLS
/// endpoint verifies etcd's certificate against the configuration's roots under
/// `server_name` (an IP address is matched against the certificate's IP SANs), and presents
/// the configuration's client certificate if it has one ([`client_config_from_pem`]).
#[derive(Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    tls: Option<(ServerName<'static>, TlsConnector)>,
}

impl Endpoint {
    /// A clear-text endpoint (`http`; loopback only, see above: a call to an endpoint made
    /// with another address fails with [`ClientError::Connect`] before anything is sent).
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// A TLS endpoint (`https`): connect to `addr`, verify etcd's certificate for
    /// `server_name` with `config`.
    pub fn tls(
        addr: SocketAddr,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> Self {
        Self {
            addr,
            tls: Some((server_name, TlsConnector::from(config))),
        }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name etcd's certificate is verified for; `None` for a clear-text endpoint.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.tls.as_ref().map(|(name, _)| name)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("tls", &self.server_name())
            .finish()
    }
}

/// Which PEM input of [`client_config_from_pem`] is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsInput {
    /// The CA bundle that signed etcd's certificate.
    Ca,
    /// The client certificate chain (leaf first).
    ClientChain,
    /// The client certificate's private key.
    ClientKey,
}

impl std::fmt::Display for TlsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ca => "etcd CA bundle",
            Self::ClientChain => "etcd client certificate chain",
            Self::ClientKey => "etcd client private key",
        })
    }
}

/// A TLS configuration for etcd could not be built from its PEM inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM text does not parse, or holds no item of the kind needed.
    #[error("{input}: {reason}")]
    Pem {
        /// The input.
        input: TlsInput,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused a certificate of the CA bundle as a trust anchor.
    #[error("etcd CA bundle: certificate {index}: {source}")]
    Ca {
        /// Its position in the bundle, from 0.
        index: usize,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// rustls refused the client certificate and key (a key that does not match the leaf,
    /// a key type it cannot sign with).
    #[error("etcd client certificate and key: {0}")]
    ClientCert(rustls::Error),
}

/// A rustls client configuration for etcd, from PEM texts: the CA bundle that signed etcd's
/// certificate (required: the system's roots are never used), and optionally the client
/// certificate chain (leaf first) and its PKCS#8, PKCS#1 or SEC1 key, for etcd's
/// `--client-cert-auth`. TLS 1.2 and 1.3 with rustls's safe defaults, the `ring` provider.
///
/// # Errors
/// [`TlsConfigError::Pem`] names the input that does not parse or is empty;
/// [`TlsConfigError::Ca`] a CA certificate rustls refuses; [`TlsConfigError::ClientCert`] a
/// chain and key rustls refuses.
pub fn client_config_from_pem(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsConfigError> {
    let certs = |input: TlsInput, text: &[u8]| {
        let list = CertificateDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::Pem {
                input,
                reason: e.to_string(),
            })?;
        if list.is_empty() {
            return Err(TlsConfigError::Pem {
                input,
                reason: "no CERTIFICATE".into(),
            });
        }
        Ok(list)
    };
    let mut roots = rustls::RootCertStore::empty();
    for (index, ca) in certs(TlsInput::Ca, ca_pem)?.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|source| TlsConfigError::Ca { index, source })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::ClientCert)?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((chain_pem, key_pem)) => {
            let chain = certs(TlsInput::ClientChain, chain_pem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsConfigError::Pem {
                input: TlsInput::ClientKey,
                reason: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::ClientCert)
        }
    }
}

/// Why a call (or a watch) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection to etcd could not be opened, or it was closed during the TLS
    /// handshake.
    #[error("connect to etcd at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The call did not complete within its time bound (at one endpoint).
    #[error("etcd at {endpoint} did not answer within {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: SocketAddr,
        /// The bound.
        after: Duration,
    },
    /// TLS refused the connection: etcd's certificate did not verify (another CA, another
    /// name, expired), or etcd sent an alert (it refused our client certificate, or the lack
    /// of one).
    #[error("TLS with etcd at {endpoint}: {source}")]
    Tls {
        /// The endpoint.
        endpoint: SocketAddr,
        /// rustls's error.
        source: rustls::Error,
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
    /// [`EtcdClient::with_endpoints`] was given no endpoint; refused before connecting.
    #[error("no etcd endpoint")]
    NoEndpoint,
}

impl ClientError {
    /// Whether the next endpoint is tried after this error: the endpoint could not be
    /// reached, did not answer in time, or TLS refused it. An answer of etcd (an error
    /// status, a body that does not decode) or a broken exchange is returned as it is.
    fn moves_on(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Tls { .. }
        )
    }
}

/// An async client of one etcd cluster's JSON gateway, through one or more endpoints (see
/// the module's documentation).
///
/// Clones share the index of the endpoint that worked last.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoints: Arc<[Endpoint]>,
    /// The endpoint tried first: the one that answered last.
    preferred: Arc<AtomicUsize>,
    timeout: Duration,
    max_body: usize,
    /// Whether a time-out moves on to the next endpoint (true: reads; false: writes, whose
    /// request may have been applied by the endpoint that did not answer in time).
    retry_after_timeout: bool,
}

impl EtcdClient {
    /// A client of the clear-text gateway at `endpoint` (loopback only), with
    /// [`DEFAULT_TIMEOUT`] and [`MAX_BODY_BYTES`]. Nothing is opened until a call.
    pub fn new(endpoint: SocketAddr) -> Self {
        Self::with_endpoints(vec![Endpoint::plain(endpoint)])
    }

    /// A client of the members at `endpoints`, with [`DEFAULT_TIMEOUT`] and
    /// [`MAX_BODY_BYTES`]. Each call tries the endpoint that answered last, then the others in
    /// their order; see the module's documentation for when it moves on. An empty list makes
    /// every call fail with [`ClientError::NoEndpoint`]. Nothing is opened until a call.
    pub fn with_endpoints(endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints: endpoints.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
            timeout: DEFAULT_TIMEOUT,
            max_body: MAX_BODY_BYTES,
            retry_after_timeout: true,
        }
    }

    /// The same client, for writes: a time-out ends the call (the endpoint may have applied
    /// the request; sending it again to another could apply it twice, or fail a create-only
    /// comparison on its own write). Connection and TLS failures still move on.
    pub fn without_retry_after_timeout(mut self) -> Self {
        self.retry_after_timeout = false;
        self
    }

    /// The same client with another per-request time bound (per endpoint tried).
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

    /// The first endpoint's address (of an empty list: the unspecified address, port 0).
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoints
            .first()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), Endpoint::addr)
    }

    /// The endpoints, in their order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The address of the endpoint the next call tries first.
    pub fn preferred(&self) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        let i = self.preferred.load(Ordering::Relaxed);
        self.endpoints
            .get(if i < n { i } else { 0 })
            .map(Endpoint::addr)
    }

    /// Runs `attempt` on the preferred endpoint, then on the others in order while it fails
    /// with an error that [moves on](ClientError::moves_on); remembers the one that worked.
    async fn each_endpoint<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let first = if first < n { first } else { 0 };
        let mut last = ClientError::NoEndpoint;
        for k in 0..n {
            let i = (first + k) % n;
            let Some(ep) = self.endpoints.get(i) else {
                break;
            };
            let addr = ep.addr;
            let after = self.timeout;
            let out = tokio::time::timeout(after, attempt(ep.clone()))
                .await
                .unwrap_or(Err(ClientError::Timeout {
                    endpoint: addr,
                    after,
                }));
            match out {
                Err(e)
                    if e.moves_on()
                        && (self.retry_after_timeout
                            || !matches!(e, ClientError::Timeout { .. })) =>
                {
                    last = e;
                }
                other => {
                    // An answer (even etcd's error) means the endpoint works; a bad path was
                    // refused before connecting and says nothing about it.
                    if !matches!(other, Err(ClientError::BadPath { .. })) {
                        self.preferred.store(i, Ordering::Relaxed);
                    }
                    return other;
                }
            }
        }
        Err(last)
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
    /// the time bound at each endpoint tried. Error statuses become [`ClientError::Etcd`] or
    /// [`ClientError::Status`].
    pub async fn call(&self, req: &Request) -> Result<Vec<u8>, ClientError> {
        let max = self.max_body;
        self.each_endpoint(|ep| async move {
            let (resp, conn) = send(&ep, req).await?;
            let out = read_answer(resp, max).await;
            conn.abort();
            out
        })
        .await
    }

    /// Opens a watch: the answer's head within the time bound (at each endpoint tried), then
    /// a stream of messages (the first one `created`), each at most the body bound.
    pub async fn watch(&self, req: &Watch) -> Result<EtcdWatch, ClientError> {
        let max = self.max_body;
        let req = req.encode();
        let req = &req;
        self.each_endpoint(|ep| async move {
            let (resp, conn) = send(&ep, req).await?;
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
        })
        .await
    }
}

/// Connects (TCP, then TLS if the endpoint has it), spawns the connection's task, sends the
/// request; the answer's head.
async fn send(
    ep: &Endpoint,
    req: &Request,
) -> Result<(hyper::Response<Incoming>, JoinHandle<()>), ClientError> {
    let endpoint = ep.addr;
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
    if ep.tls.is_none() && !endpoint.ip().to_canonical().is_loopback() {
        // Clear text off this host would carry users, roles and restrictions readable and
        // writable on the path: refused, not sent.
        return Err(ClientError::Connect {
            endpoint,
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a clear-text etcd endpoint must be on loopback; use Endpoint::tls",
            ),
        });
    }
    let tcp = TcpStream::connect(endpoint)
        .await
        .map_err(|source| ClientError::Connect { endpoint, source })?;
    // Small requests and streamed events: no Nagle delay.
    drop(tcp.set_nodelay(true));
    let (mut sender, conn) = match &ep.tls {
        None => {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            (sender, spawn_conn(conn))
        }
        Some((name, connector)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| io_error(endpoint, e))?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
            (sender, spawn_conn(conn))
        }
    };
    match sender.send_request(http_req).await {
        Ok(resp) => Ok((resp, conn)),
        Err(e) => {
            conn.abort();
            Err(http_error(endpoint, e))
        }
    }
}

/// Spawns an HTTP/1.1 connection's task; its error reaches the caller through the request or
/// the body.
fn spawn_conn<T>(conn: http1::Connection<T, Full<Bytes>>) -> JoinHandle<()>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        drop(conn.await);
    })
}

/// A TLS handshake's I/O error: rustls's own error when it is one (a certificate that does
/// not verify, an alert), else the connection's.
fn io_error(endpoint: SocketAddr, e: std::io::Error) -> ClientError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => ClientError::Tls {
            endpoint,
            source: tls.clone(),
        },
        None => ClientError::Connect {
            endpoint,
            source: e,
        },
    }
}

/// An HTTP error: [`ClientError::Tls`] when rustls's error in its causes is an alert that
/// refuses the handshake (etcd refused the client certificate with an alert after a TLS 1.3
/// handshake the client saw complete: nothing was taken), else [`ClientError::Http`]. Any
/// other TLS error here (a record that does not decrypt, say) came after the request was
/// written, which etcd may have applied: never taken for "nothing was sent" (it would be
/// sent again to another endpoint, or reported as not applied).
fn http_error(endpoint: SocketAddr, e: hyper::Error) -> ClientError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cause {
        // An `io::Error`'s `source` skips the error it wraps: look at that one too.
        let wrapped = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if let Some(tls) = [Some(c), wrapped]
            .into_iter()
            .flatten()
            .find_map(|c| c.downcast_ref::<rustls::Error>())
        {
            if refuses_handshake(tls) {
                return ClientError::Tls {
                    endpoint,
                    source: tls.clone(),
                };
            }
            break;
        }
        cause = c.source();
    }
    ClientError::Http(e)
}

/// Whether `e` is a peer's alert that refuses the handshake (the client's certificate, or
/// the handshake itself), the only TLS errors that say the request was not taken.
fn refuses_handshake(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(
            A::BadCertificate
                | A::CertificateRequired
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::HandshakeFailure
        )
    )
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
    /// Only an alert refusing the handshake says a request was not taken; a TLS error after
    /// the request was written (a record that does not decrypt) may follow an applied write.
    #[test]
    fn only_handshake_refusals_move_on() {
        use rustls::AlertDescription as A;
        assert!(super::refuses_handshake(&rustls::Error::AlertReceived(
            A::CertificateRequired
        )));
        assert!(super::refuses_handshake(&rustls::Error::AlertReceived(
            A::UnknownCA
        )));
        assert!(!super::refuses_handshake(&rustls::Error::DecryptError));
        assert!(!super::refuses_handshake(&rustls::Error::AlertReceived(
            A::BadRecordMac
        )));
        assert!(!super::refuses_handshake(&rustls::Error::AlertReceived(
            A::CloseNotify
        )));
    }

    use super::*;

    /// A clear-text endpoint off loopback is refused before a connection is opened: a
    /// listener there sees nothing.
    #[tokio::test]
    async fn a_clear_text_endpoint_off_loopback_is_refused() {
        // Not loopback, but an address of this host when the tests run in a namespace with
        // one; whether or not anything listens, the call must fail before connecting.
        for addr in [
            "192.0.2.1:2379",
            "[2001:db8::1]:2379",
            "[::ffff:192.0.2.1]:2379",
        ] {
            let c = EtcdClient::new(addr.parse().unwrap());
            let e = c
                .call(&Request {
                    path: "/v3/kv/range",
                    body: b"{}".to_vec(),
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&e, ClientError::Connect { source, .. }
                    if source.kind() == std::io::ErrorKind::PermissionDenied),
                "{addr}: {e:?}"
            );
        }
    }

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
