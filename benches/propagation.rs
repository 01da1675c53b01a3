//! Signed propagation (v2) per connection — the front writes the PROXY v2
//! header under its current grant (HMAC-SHA256), the inner listener
//! verifies it with the grant cached (decode, audience, key, addresses,
//! window, cache lookup, MAC, replay cache) — beside a mutual-TLS
//! handshake (rustls with ring, in memory, P-256 certificates from
//! ippin-cert) in the same run; plus the cold cost of a new grant (the
//! front's Ed25519 signature and X25519, the inner's full check).
//! Run: `cargo bench -p ippin-benches --bench propagation`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ippin::propagation::{VerifyHeader, WriteHeader, issue_proxy_identity};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{self, ClientCertRequest, ServerCertRequest, X509Ca};
use ippin_propagation::{FrontGrant, Link, SecretKey, Signer, TrustAnchor, Verifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 30;
const LIFETIME: u64 = 600;

struct Fixture {
    ca: X509Ca,
    signer: Signer,
    inner: SecretKey,
}

fn random_key() -> SecretKey {
    let mut b = [0u8; 32];
    ippin_cert::getrandom::fill(&mut b).unwrap();
    SecretKey::from_bytes(b)
}

fn fixture() -> Fixture {
    let mut rng = UnwrapErr(SysRng);
    let ca = X509Ca::generate_p256("bench CA", NOW - 60, NOW + 86_400 * 30, &mut rng).unwrap();
    let id = issue_proxy_identity(&ca, "front", NOW - 60, NOW + 86_400 * 30, 3, &mut rng).unwrap();
    let signer = Signer::from_pem(&id.cert_pem, &id.key_pem).unwrap();
    Fixture {
        ca,
        signer,
        inner: random_key(),
    }
}

impl Fixture {
    /// A fresh verifier (empty certificate, grant and replay caches).
    fn verifier(&self) -> Verifier {
        Verifier::new(
            TrustAnchor::from_der(self.ca.cert_der()).unwrap(),
            self.inner.clone(),
            "inner",
            WINDOW,
            1 << 20,
        )
    }

    /// A new grant (what the front does once per half lifetime).
    fn grant(&self, from: u64) -> FrontGrant {
        self.signer
            .grant(
                &self.inner.public_key(),
                "inner",
                from,
                from + LIFETIME,
                &random_key(),
            )
            .unwrap()
    }
}

/// The clock and nonce of the `i`-th connection: one second passes every
/// 1000 connections, so the replay cache stays around 31,000 entries.
fn nth(i: u64) -> (u64, [u8; 16]) {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&i.to_be_bytes());
    (NOW + i / 1000, nonce)
}

/// The front → inner connection of the `i`th header: the front's source
/// port cycles through 60,000 ports, as a busy front's would (each link
/// then carries at most one header a second, in increasing time).
fn link(i: u64) -> Link {
    Link {
        front: SocketAddr::from(([10, 0, 0, 5], 1024 + (i % 60_000) as u16)),
        inner: SocketAddr::from(([10, 0, 0, 9], 4443)),
    }
}

fn propagation(c: &mut Criterion) {
    let f = fixture();
    let client = "192.0.2.7:51234".parse().unwrap();
    let reached = "198.51.100.1:443".parse().unwrap();
    // One grant valid for every benchmark's clock (benchmarks run at most
    // a few million iterations: NOW + a few thousand seconds).
    let grant = f
        .signer
        .grant(
            &f.inner.public_key(),
            "inner",
            NOW,
            NOW + 3600,
            &random_key(),
        )
        .unwrap();
    let mut g = c.benchmark_group("per_connection");

    g.bench_function("propagation_steady_state", |b| {
        let v = f.verifier();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (now, nonce) = nth(i);
            let bytes = grant.header(client, reached, link(i), now, nonce).unwrap();
            let (h, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
            black_box(v.verify(&h, link(i), now).unwrap())
        })
    });
    g.bench_function("propagation_front", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (now, nonce) = nth(i);
            black_box(grant.header(client, reached, link(i), now, nonce).unwrap())
        })
    });
    g.bench_function("propagation_inner", |b| {
        let v = f.verifier();
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                let (now, nonce) = nth(i);
                (
                    now,
                    link(i),
                    grant.header(client, reached, link(i), now, nonce).unwrap(),
                )
            },
            |(now, on, bytes)| {
                let (h, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
                black_box(v.verify(&h, on, now).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    // A new epoch: the front signs a new grant, the inner (certificate
    // cached) checks it in full and caches it.
    g.bench_function("propagation_cold_grant", |b| {
        let v = f.verifier();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let (now, nonce) = nth(i);
            let fresh = f.grant(now);
            let bytes = fresh.header(client, reached, link(i), now, nonce).unwrap();
            let (h, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
            black_box(v.verify(&h, link(i), now).unwrap())
        })
    });
    // An inner that just started: the CA's signature on the front's
    // certificate is checked too (the front's grant is already made).
    g.bench_function("propagation_cold_inner", |b| {
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                let (now, nonce) = nth(i);
                (
                    now,
                    link(i),
                    grant.header(client, reached, link(i), now, nonce).unwrap(),
                    f.verifier(),
                )
            },
            |(now, on, bytes, v)| {
                let (h, _) = ippin_proxy_protocol::parse(&bytes).unwrap();
                black_box(v.verify(&h, on, now).unwrap())
            },
            BatchSize::SmallInput,
        )
    });

    // Floors: the primitives alone.
    let msg = [7u8; 96];
    let hkey = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3; 32]);
    g.bench_function("raw_hmac_sha256_96_bytes", |b| {
        b.iter(|| ring::hmac::sign(&hkey, black_box(&msg)))
    });
    let (a, peer) = (random_key(), random_key().public_key());
    g.bench_function("raw_x25519", |b| b.iter(|| a.agree(black_box(&peer))));
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let dsig = ed25519_dalek::Signer::sign(&dalek, &msg);
    let dpk = dalek.verifying_key();
    g.bench_function("raw_ed25519_sign_dalek", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&dalek, black_box(&msg)))
    });
    g.bench_function("raw_ed25519_verify_dalek", |b| {
        b.iter(|| ed25519_dalek::Verifier::verify(&dpk, black_box(&msg), &dsig).unwrap())
    });

    let (client_cfg, client_cfg_resume, server_cfg) = tls_configs(&f.ca);
    g.bench_function("mtls_handshake_full", |b| {
        b.iter(|| handshake(&client_cfg, &server_cfg))
    });
    g.bench_function("mtls_handshake_resumed", |b| {
        handshake(&client_cfg_resume, &server_cfg);
        b.iter(|| handshake(&client_cfg_resume, &server_cfg))
    });
    g.finish();
}

fn tls_configs(
    ca: &X509Ca,
) -> (
    Arc<rustls::ClientConfig>,
    Arc<rustls::ClientConfig>,
    Arc<rustls::ServerConfig>,
) {
    ippin::install_crypto_provider();
    let mut rng = UnwrapErr(SysRng);
    let (server_key, server_spki) = x509::generate_key_pair_p256(&mut rng).unwrap();
    let server_der = ca
        .issue_server(
            &ServerCertRequest::new(
                vec!["localhost".into()],
                vec![],
                x509::spki_der_from_pem(&server_spki).unwrap(),
                NOW - 60,
                NOW + 86_400 * 365 * 30,
                11,
            )
            .unwrap(),
            &mut rng,
        )
        .unwrap();
    let (client_key, client_spki) = x509::generate_key_pair_p256(&mut rng).unwrap();
    let client_der = ca
        .issue_client(
            &ClientCertRequest::builder("alice", x509::spki_der_from_pem(&client_spki).unwrap())
                .role("dev")
                .validity(NOW - 60, NOW + 86_400 * 365 * 30)
                .serial(12)
                .pinned_ip("192.0.2.7".parse().unwrap())
                .build()
                .unwrap(),
            &mut rng,
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
        .build()
        .unwrap();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server_der)],
            PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(client_der)],
            PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let mut full = client.clone();
    full.resumption = rustls::client::Resumption::disabled();
    (Arc::new(full), Arc::new(client), Arc::new(server))
}

/// One full handshake in memory, client certificate included.
fn handshake(client: &Arc<rustls::ClientConfig>, server: &Arc<rustls::ServerConfig>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c =
        rustls::Connection::Client(rustls::ClientConnection::new(client.clone(), name).unwrap());
    let mut s = rustls::Connection::Server(rustls::ServerConnection::new(server.clone()).unwrap());
    while c.is_handshaking() || s.is_handshaking() {
        pump(&mut c, &mut s);
        pump(&mut s, &mut c);
    }
    black_box((c, s));
}

fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
}

criterion_group!(benches, propagation);
criterion_main!(benches);
