//! Mutual TLS with rustls / tokio-rustls (feature `rustls`).
//!
//! - [`server_config`]: a `ServerConfig` that **requires** a client certificate chaining to
//!   your client CA (rustls's WebPKI verifier: chain, signature, validity window, key usage),
//!   TLS 1.2 and 1.3 with rustls's safe defaults, the `ring` provider. [`server_config_from_pem`]
//!   reads the three PEM texts.
//!   Session resumption is off ([`without_resumption`]): a resumed session would skip the
//!   certificate's checks.
//! - [`check`]: after the handshake, the pin check of the connection's client certificate
//!   against its observed address ([`crate::tls::check`]), audited fail closed. A connection
//!   without a client certificate (a configuration of your own that made it optional) is
//!   refused `no_client_certificate`.
//!
//! With tokio-rustls, pass `tls_stream.get_ref().1` (the `ServerConnection`) to [`check`].
//!
//! ```no_run
//! # fn run(ca: &str, cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let config = ippin_access::rustls::server_config_from_pem(ca, cert, key)?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
//! # let _ = acceptor; Ok(()) }
//! ```

use std::sync::Arc;

use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::audit::AuditSink;
use crate::observed::ObservedAddr;
use crate::tls::{IdentityCache, TlsEvent, TlsVerdict};
use crate::users::UserDirectory;

/// A mutual-TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM text holds no item of the kind needed, or does not parse.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (`client CA`, `certificate chain`, `private key`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused a client CA certificate.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// rustls refused the configuration (a chain it cannot use, a key that does not match
    /// the certificate).
    #[error("rustls: {0}")]
    Rustls(String),
}

/// A server configuration that requires a client certificate issued by one of `client_cas`,
/// serving `chain` (leaf first) with `key`. ALPN is left empty; set `alpn_protocols` on the
/// result if you need it.
///
/// # Errors
/// [`TlsConfigError::ClientCa`] when rustls refuses a client CA; [`TlsConfigError::Rustls`]
/// when it refuses the chain or the key.
pub fn server_config(
    client_cas: &[CertificateDer<'_>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_cas {
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsConfigError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    without_resumption(&mut config);
    Ok(config)
}

/// Turns session resumption off: no server-side session cache, no TLS 1.3 tickets (rustls
/// issues no TLS 1.2 tickets by default).
///
/// A resumed session skips the client certificate's verification: rustls hands back the
/// certificate of the first handshake without checking its chain or validity again, and
/// renews the ticket each time. A client that resumes once a day would keep an expired
/// certificate working for ever. Every connection of a pinned user is therefore a full
/// handshake, with the chain and validity checked by the verifier and again by
/// [`crate::tls::decide`]. [`server_config`] calls it; call it on a configuration of your
/// own that requires client certificates.
pub fn without_resumption(config: &mut ServerConfig) {
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

/// [`server_config`] from PEM texts: the client CA certificate(s), the server's chain (leaf
/// first), and its PKCS#8, PKCS#1 or SEC1 private key.
///
/// # Errors
/// [`TlsConfigError::Pem`] for a text without the item needed; then as [`server_config`].
pub fn server_config_from_pem(
    client_ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<ServerConfig, TlsConfigError> {
    let certs = |what: &'static str, text: &str| {
        let list = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::Pem {
                what,
                reason: e.to_string(),
            })?;
        if list.is_empty() {
            return Err(TlsConfigError::Pem {
                what,
                reason: "no CERTIFICATE".into(),
            });
        }
        Ok(list)
    };
    let cas = certs("client CA", client_ca_pem)?;
    let chain = certs("certificate chain", chain_pem)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsConfigError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
    server_config(&cas, chain, key)
}

/// The end-entity client certificate of a finished handshake, if one was presented.
pub fn client_certificate(conn: &rustls::CommonState) -> Option<&CertificateDer<'static>> {
    conn.peer_certificates().and_then(|c| c.first())
}

/// The pin check of a finished mutual-TLS handshake, seen at `observed` at `now` (Unix
/// seconds), with the users of `users`, recorded to `sink` fail closed. Serve the connection only when
/// `verdict.access.is_allowed()`.
///
/// The certificate's chain, signature and validity were checked by the verifier of the
/// configuration (use [`server_config`]); this adds the user and the pin.
pub fn check(
    conn: &rustls::CommonState,
    cache: &IdentityCache,
    users: &dyn UserDirectory,
    observed: &ObservedAddr,
    now: u64,
    sink: &dyn AuditSink<TlsEvent>,
) -> TlsVerdict {
    match client_certificate(conn) {
        Some(der) => crate::tls::check(cache, der, users, observed, now, sink),
        None => crate::tls::audit(crate::tls::without_certificate(), observed, sink),
    }
}
