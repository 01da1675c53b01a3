//! `ippin_access::rustls::server_config` turns session resumption off: a resumed session
//! would hand back the first handshake's client certificate without checking it again.

use std::sync::Arc;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{
    ClientCertRequest, ServerCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem,
};
use rustls::HandshakeKind;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now() -> u64 {
    std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()
}

struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut rng = UnwrapErr(SysRng);
    let t = now();
    let ca = X509Ca::generate_p256("resumption CA", t - 60, t + 3600, &mut rng).unwrap();
    let (server_key, spki) = generate_key_pair_p256(&mut rng).unwrap();
    let req = ServerCertRequest::new(
        vec!["localhost".into()],
        vec![],
        spki_der_from_pem(&spki).unwrap(),
        t - 60,
        t + 3600,
        1,
    )
    .unwrap();
    let server_der = ca.issue_server(&req, &mut rng).unwrap();
    let (client_key, spki) = generate_key_pair_p256(&mut rng).unwrap();
    let req = ClientCertRequest::builder("alice", spki_der_from_pem(&spki).unwrap())
        .validity(t - 60, t + 3600)
        .serial(2)
        .role("dev")
        .build()
        .unwrap();
    let client_der = ca.issue_client(&req, &mut rng).unwrap();
    Pki {
        ca_pem: ca.cert_pem(),
        server_pem: ippin_propagation::pem::der_to_pem(&server_der, "CERTIFICATE"),
        server_key,
        client: (
            CertificateDer::from(client_der),
            PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
        ),
    }
}

/// Two connections from one client (which keeps sessions and tickets); the kind of the
/// second handshake.
async fn second_handshake(server: rustls::ServerConfig, pki: &Pki) -> Option<HandshakeKind> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let mut kind = None;
    for _ in 0..2 {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = acceptor.clone();
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(a).await.unwrap();
            let kind = tls.get_ref().1.handshake_kind();
            tls.write_all(b"x").await.unwrap();
            tls.shutdown().await.unwrap();
            kind
        });
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, b).await.unwrap();
        // Read to the end, so that any ticket the server sent is taken.
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got).await;
        kind = server.await.unwrap();
    }
    kind
}

#[tokio::test]
async fn every_handshake_is_full() {
    let pki = pki();
    let config =
        ippin_access::rustls::server_config_from_pem(&pki.ca_pem, &pki.server_pem, &pki.server_key)
            .unwrap();
    assert_eq!(
        second_handshake(config, &pki).await,
        Some(HandshakeKind::Full)
    );

    // The control: the same configuration with rustls's default session storage resumes.
    let mut resuming =
        ippin_access::rustls::server_config_from_pem(&pki.ca_pem, &pki.server_pem, &pki.server_key)
            .unwrap();
    resuming.session_storage = rustls::server::ServerSessionMemoryCache::new(16);
    resuming.send_tls13_tickets = 2;
    assert_eq!(
        second_handshake(resuming, &pki).await,
        Some(HandshakeKind::Resumed)
    );
}
