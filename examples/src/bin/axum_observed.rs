//! An HTTPS service on axum behind a trusted load balancer that speaks the PROXY protocol: it
//! answers with the client address it observed, and serves `/` only to a client whose
//! certificate's pin matches that address; a mismatch is refused with the reason.
//!
//! ```text
//! axum_observed --cert SERVER.pem --key SERVER.key --client-ca CA.pem
//!               --trusted-proxy 10.0.0.0/8 --user alice [--user bob ...]
//!               [--listen 127.0.0.1:0] [--proxy-timeout-secs 5]
//! ```
//!
//! Every `--user` must use a pinned certificate. It prints `listening on ADDR`, then one JSON
//! audit line per verdict (and per refused connection) on stdout.
//!
//! - `GET /whoami`: the observed address, certificate or not;
//! - `GET /`: `hello USER at ADDR` for a client whose pin matches, else 403 `refused (REASON): …`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, routing::get};
use ippin_access::User;
use ippin_access::axum::{Client, Handshake, Limits, Observed, ObservedListener, Verified};
use ippin_access::tls::TlsEvent;
use ippin_access::tokio::PrefixedStream;
use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// The TLS handshake after the PROXY header, giving the listener the client certificate.
struct Tls(TlsAcceptor);

impl Handshake for Tls {
    type Io = TlsStream<PrefixedStream<TcpStream>>;

    async fn handshake(
        &self,
        stream: PrefixedStream<TcpStream>,
    ) -> std::io::Result<(Self::Io, Option<Vec<u8>>)> {
        let tls = self.0.accept(stream).await?;
        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let cert = cert.map(|c| c.to_vec());
        Ok((tls, cert))
    }
}

/// One JSON line on stdout, flushed; `false` when it cannot be written.
fn print_json(value: &impl serde::Serialize) -> bool {
    let Ok(line) = serde_json::to_string(value) else {
        return false;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

fn arg(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

fn one(args: &[String], name: &str) -> Result<String, String> {
    arg(args, name)
        .pop()
        .ok_or_else(|| format!("missing {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();

    // TLS that asks for a client certificate from our CA (and lets /whoami work without).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(one(&args, "--client-ca")?)? {
        roots.add(ca?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let certs = CertificateDer::pem_file_iter(one(&args, "--cert")?)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(one(&args, "--key")?)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips the certificate's checks.
    ippin_access::rustls::without_resumption(&mut tls);

    // PROXY headers are required, from the load balancer's networks only.
    let trusted = arg(&args, "--trusted-proxy")
        .iter()
        .map(|n| n.parse())
        .collect::<Result<_, _>>()?;
    let policy = ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(trusted);
    let proxy_timeout = one(&args, "--proxy-timeout-secs").map_or(Ok(5), |s| s.parse())?;
    let limits = Limits::default().with_proxy_timeout(Duration::from_secs(proxy_timeout));

    // Each user's role requires a pin.
    let users: HashMap<String, User> = arg(&args, "--user")
        .into_iter()
        .map(|name| (name, User::new(true, vec!["pinned".into()])))
        .collect();
    let audit = |event: TlsEvent| print_json(&event);

    let tcp = tokio::net::TcpListener::bind(one(&args, "--listen").unwrap_or("127.0.0.1:0".into()))
        .await?;
    println!("listening on {}", tcp.local_addr()?);
    let listener = ObservedListener::new(tcp, policy, limits)
        .with_mtls(
            Tls(TlsAcceptor::from(Arc::new(tls))),
            Arc::new(users),
            Arc::new(audit),
        )
        // Answer refused clients with the reason instead of closing them: every handler
        // that may only serve allowed clients takes `Verified`.
        .serve_denied()
        .on_refused(|refusal| {
            print_json(refusal);
        });

    let app = Router::new()
        .route(
            "/whoami",
            get(|Observed(seen): Observed| async move { format!("{}\n", seen.socket_addr()) }),
        )
        .route(
            "/",
            get(|v: Verified| async move {
                format!("hello {} at {}\n", v.verdict.user, v.observed.socket_addr())
            }),
        );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<Client>(),
    )
    .await?;
    Ok(())
}
