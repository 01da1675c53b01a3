//! The baseline of the throughput comparison: plain rustls mutual TLS
//! with the server's own pieces and nothing of the pinning.
//!
//! What it shares with `ippin serve`: the configuration file and the
//! files it names (server certificate and key, X.509 CA), the rustls
//! server configuration built the same way (ring provider,
//! `WebPkiClientVerifier` over the CA, ALPN `http/1.1`), the same
//! [`ippin::server::HANDSHAKE_TIMEOUT`] and [`ippin::server::MAX_CONNECTIONS`],
//! the same HTTP layer ([`ippin::http::serve_one`]: hyper, one request per
//! connection). What it leaves out: the PROXY stage (no
//! `accept_observed`), the pin check (no `pinned_ip_fast`,
//! `client_identity`, `check_pin`) and the audit line of the decision.
//! `GET /whoami` answers a fixed JSON body of about the same size.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::LoadError;

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| LoadError::Setup(format!("{}: {e}", path.display())))
}

/// The rustls configuration of a plain mutual-TLS listener over the files
/// of the configuration at `config_path`.
///
/// # Errors
/// [`LoadError::Setup`] when a file is missing or does not parse.
pub fn server_config(config_path: &Path) -> Result<Arc<rustls::ServerConfig>, LoadError> {
    ippin::install_crypto_provider();
    let config =
        ippin::config::Config::load(config_path).map_err(|e| LoadError::Setup(e.to_string()))?;
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        LoadError::Setup(format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_slice_iter(read(&config.server_tls.cert)?.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&config.server_tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_slice(read(&config.server_tls.key)?.as_bytes())
        .map_err(|e| bad(&config.server_tls.key, &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(read(&config.ca.tls_cert)?.as_bytes()) {
        roots
            .add(c.map_err(|e| bad(&config.ca.tls_cert, &e))?)
            .map_err(|e| bad(&config.ca.tls_cert, &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| bad(&config.ca.tls_cert, &e))?;
    let mut tls = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&config.server_tls.cert, &e))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// `ippin-load serve-plain --config FILE`: four plain mutual-TLS listeners
/// on 127.0.0.1 ephemeral ports (the same count and order as
/// [`crate::cluster::Listener`], so the harness finds them the same way),
/// printed as `listening: plain on ADDR`; runs until killed.
///
/// # Errors
/// [`LoadError::Setup`] when it cannot start.
pub async fn serve(config_path: &Path) -> Result<(), LoadError> {
    let tls = server_config(config_path)?;
    let mut loops = Vec::new();
    for _ in 0..4 {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| LoadError::Setup(format!("bind: {e}")))?;
        let addr = socket
            .local_addr()
            .map_err(|e| LoadError::Setup(format!("bind: {e}")))?;
        println!("listening: plain on {addr}");
        loops.push(tokio::spawn(accept_loop(socket, tls.clone())));
    }
    for l in loops {
        let _ = l.await;
    }
    Ok(())
}

async fn accept_loop(socket: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(ippin::server::MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((tcp, _peer)) = socket.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let handshake =
                tokio::time::timeout(ippin::server::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            if let Ok(Ok(stream)) = handshake {
                ippin::http::serve_one(stream, |_req| async {
                    ippin::http::json(
                        hyper::StatusCode::OK,
                        &serde_json::json!({
                            "user": "plain", "roles": ["dev"], "observed": "127.0.0.1:1",
                            "via": "direct", "pinned": null
                        }),
                    )
                })
                .await;
            }
            drop(slot);
        });
    }
}
