//! The clients of the harness: a lean mutual-TLS prober (one connection,
//! optional bytes before TLS, `GET`, read to the end), and the real
//! `ippin` client for valid logins and accesses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::LoadError;
use crate::cluster::Cluster;

/// Bound on one probe (connect, handshake, answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on an answer the prober reads.
pub const MAX_ANSWER: u64 = 64 * 1024;

/// Timings of one probe, measured by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// HTTP status of the answer.
    pub status: u16,
    /// From starting `connect` to the end of the TLS handshake (PROXY header
    /// included).
    pub handshake: Duration,
    /// From starting `connect` to the end of the answer.
    pub total: Duration,
}

/// A client certificate that is always presented, whatever it contains.
#[derive(Debug)]
struct Always(Arc<CertifiedKey>);

impl ResolvesClientCert for Always {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A reusable client TLS configuration for one identity, with session
/// resumption disabled so that every connection is a full handshake.
#[derive(Debug, Clone)]
pub struct Prober {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    coalesce: bool,
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, LoadError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| LoadError::Setup(format!("CA: {e}")))?;
        roots
            .add(c)
            .map_err(|e| LoadError::Setup(format!("CA: {e}")))?;
    }
    Ok(roots)
}

impl Prober {
    /// A prober presenting `cert_pem` with `key_pem` (or no certificate).
    ///
    /// # Errors
    /// [`LoadError::Setup`] when a PEM does not parse.
    pub fn new(ca_pem: &str, auth: Option<(&str, &str)>) -> Result<Prober, LoadError> {
        ippin::install_crypto_provider();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots(ca_pem)?);
        let config = match auth {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| LoadError::Setup(format!("client certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| LoadError::Setup(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| LoadError::Setup(format!("client certificate: {e}")))?
            }
        };
        Ok(Prober::finish(config))
    }

    /// A prober presenting `cert_der` as its certificate, whatever it is
    /// (hostile input), signing the handshake with `key_pem`.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when the key does not parse.
    pub fn presenting(ca_pem: &str, cert_der: Vec<u8>, key_pem: &str) -> Result<Prober, LoadError> {
        ippin::install_crypto_provider();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| LoadError::Setup(format!("client key: {e}")))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| LoadError::Setup(format!("client key: {e}")))?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der)], signer);
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots(ca_pem)?)
            .with_client_cert_resolver(Arc::new(Always(Arc::new(certified))));
        Ok(Prober::finish(config))
    }

    fn finish(mut config: rustls::ClientConfig) -> Prober {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Prober {
            coalesce: false,
            config: Arc::new(config),
            name: ServerName::try_from("localhost")
                .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())),
        }
    }

    /// The same prober sending the prefix in the same segment as the TLS
    /// ClientHello (one `write`), as a proxy that corks or uses `writev`
    /// does; by default the prefix is written on its own first.
    pub fn coalescing(mut self) -> Prober {
        self.coalesce = true;
        self
    }

    /// One connection to `addr`: `prefix` (a PROXY header) before TLS, then
    /// `GET path`, and the answer read to its end.
    ///
    /// # Errors
    /// [`LoadError::Probe`] for anything short of a complete HTTP answer
    /// (refused, reset, handshake failure, timeout).
    pub async fn get(
        &self,
        addr: SocketAddr,
        prefix: Option<&[u8]>,
        path: &str,
    ) -> Result<Timing, LoadError> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.get_inner(addr, prefix, path)).await {
            Ok(r) => r,
            Err(_) => Err(LoadError::Probe(format!(
                "no answer within {PROBE_TIMEOUT:?}"
            ))),
        }
    }

    async fn get_inner(
        &self,
        addr: SocketAddr,
        prefix: Option<&[u8]>,
        path: &str,
    ) -> Result<Timing, LoadError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| LoadError::Probe(format!("{what}: {e}"));
        let start = Instant::now();
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| fail("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let mut pending = Vec::new();
        if let Some(p) = prefix {
            if self.coalesce {
                pending = p.to_vec();
            } else {
                tcp.write_all(p).await.map_err(|e| fail("prefix", &e))?;
            }
        }
        let tcp = PrefixWriter {
            inner: tcp,
            pending,
        };
        let mut tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| fail("TLS", &e))?;
        let handshake = start.elapsed();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| fail("request", &e))?;
        let mut answer = Vec::new();
        let read = (&mut tls).take(MAX_ANSWER).read_to_end(&mut answer).await;
        // A peer that closes TCP right after the answer without close_notify
        // is still an answer.
        if let Err(e) = read
            && answer.is_empty()
        {
            return Err(fail("answer", &e));
        }
        let status = parse_status(&answer).ok_or_else(|| {
            LoadError::Probe(format!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(answer.get(..answer.len().min(64)).unwrap_or_default())
            ))
        })?;
        Ok(Timing {
            status,
            handshake,
            total: start.elapsed(),
        })
    }
}

/// A stream whose first write is preceded by `pending`, in the same
/// `write` call.
struct PrefixWriter {
    inner: TcpStream,
    pending: Vec<u8>,
}

impl tokio::io::AsyncRead for PrefixWriter {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PrefixWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = self.get_mut();
        while !this.pending.is_empty() {
            let mut both = this.pending.clone();
            both.extend_from_slice(buf);
            match std::pin::Pin::new(&mut this.inner).poll_write(cx, &both) {
                Poll::Ready(Ok(n)) if n >= this.pending.len() => {
                    let of_buf = n - this.pending.len();
                    this.pending.clear();
                    if of_buf > 0 {
                        return Poll::Ready(Ok(of_buf));
                    }
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    this.pending.drain(..n);
                }
                other => return other,
            }
        }
        std::pin::Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The status code of an HTTP/1.1 answer.
///
/// ```
/// assert_eq!(ippin_loadtest::client::parse_status(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
/// assert_eq!(ippin_loadtest::client::parse_status(b"junk"), None);
/// ```
pub fn parse_status(answer: &[u8]) -> Option<u16> {
    let rest = answer.strip_prefix(b"HTTP/1.1 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok()
}

/// A valid user going through the real `ippin` client: log in on the
/// direct login listener, then `GET /whoami` on the direct tls listener.
#[derive(Debug, Clone)]
pub struct ValidUser {
    login: ippin::client::Endpoint,
    access: ippin::client::Endpoint,
    user: (&'static str, &'static str),
}

/// Latencies of one valid login + access.
#[derive(Debug, Clone, Copy)]
pub struct ValidTiming {
    /// `POST /v1/login` (argon2 and issuance included).
    pub login: Duration,
    /// `GET /whoami` with the new certificate.
    pub access: Duration,
}

impl ValidUser {
    /// alice (pinned) from 127.0.0.1 on the direct listeners at `login`
    /// and `access`.
    pub fn new(cluster: &Cluster, login: SocketAddr, access: SocketAddr) -> ValidUser {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        ValidUser {
            login: ippin::client::Endpoint::new(login, cluster.ca_pem.clone()).from_ip(ip),
            access: ippin::client::Endpoint::new(access, cluster.ca_pem.clone()).from_ip(ip),
            user: crate::cluster::ALICE,
        }
    }

    /// One login and one access; both must succeed, pinned to 127.0.0.1.
    ///
    /// # Errors
    /// [`LoadError::Valid`] with what failed.
    pub async fn once(&self) -> Result<ValidTiming, LoadError> {
        let t = Instant::now();
        let creds = ippin::client::login(&self.login, self.user.0, self.user.1)
            .await
            .map_err(|e| LoadError::Valid(format!("login: {e}")))?;
        let login = t.elapsed();
        if creds.pinned_ip.as_deref() != Some("127.0.0.1") {
            return Err(LoadError::Valid(format!(
                "login: pinned to {:?}, expected 127.0.0.1",
                creds.pinned_ip
            )));
        }
        let t = Instant::now();
        let who = ippin::client::whoami(&self.access, &creds)
            .await
            .map_err(|e| LoadError::Valid(format!("access: {e}")))?;
        if who.user != self.user.0 {
            return Err(LoadError::Valid(format!("access: served as {}", who.user)));
        }
        Ok(ValidTiming {
            login,
            access: t.elapsed(),
        })
    }
}

/// Logs in through `login` and returns the credentials (for probers).
///
/// # Errors
/// [`LoadError::Valid`] when the login fails.
pub async fn login(
    cluster: &Cluster,
    login: SocketAddr,
    user: (&str, &str),
    proxy_header: Option<Vec<u8>>,
) -> Result<ippin::client::Credentials, LoadError> {
    let mut ep = ippin::client::Endpoint::new(login, cluster.ca_pem.clone());
    if let Some(h) = proxy_header {
        ep = ep.with_proxy_header(h);
    }
    ippin::client::login(&ep, user.0, user.1)
        .await
        .map_err(|e| LoadError::Valid(format!("login as {}: {e}", user.0)))
}

/// A PROXY v2 header from the trusted balancer at 127.0.0.1 naming
/// `src` as the client and `dst` as the destination.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    use ippin_proxy_protocol::{Addresses, Command, V2Builder};
    let addrs = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Addresses::Tcp4 { src: s, dst: d },
        (SocketAddr::V6(s), SocketAddr::V6(d)) => Addresses::Tcp6 { src: s, dst: d },
        _ => return Vec::new(),
    };
    V2Builder::new(Command::Proxy)
        .addresses(addrs)
        .and_then(|b| b.encode())
        .unwrap_or_default()
}
