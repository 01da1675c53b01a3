//! What ippin adds per connection on the server, timed directly (no
//! sockets): the PROXY v2 parse, the pin extraction, the identity read, and
//! the whole pin check with its audit line ([`ippin::server::access_verdict`])
//! written to a file and to memory. On a shared machine these numbers are
//! steadier than connections per second, and they say how much of a
//! connection's cost pinning can be.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::LoadError;
use crate::cluster::Cluster;

/// Microseconds per call of each step.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// Iterations of each step.
    pub iterations: usize,
    /// `ippin_proxy_protocol::parse` of a 28-byte v2 TCP4 header.
    pub proxy_v2_parse_us: f64,
    /// `ippin_cert::x509::pinned_ip_fast` of a pinned client certificate.
    pub pinned_ip_fast_us: f64,
    /// `ippin_cert::x509::client_identity` of it.
    pub client_identity_us: f64,
    /// `access_verdict` (pin, identity, roles, `check_pin`, audit line to a
    /// file), allowed.
    pub access_verdict_file_audit_us: f64,
    /// The same with the audit line kept in memory.
    pub access_verdict_memory_audit_us: f64,
    /// The same (audit in memory) with the identity cache off: every call
    /// decodes the certificate, as for a certificate seen for the first time.
    pub access_verdict_uncached_us: f64,
}

fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
}

/// Times each step `iterations` times.
///
/// # Errors
/// [`LoadError::Setup`] when the CA or the configuration cannot be set up,
/// or a step does not give the expected answer.
pub fn run(iterations: usize) -> Result<CostReport, LoadError> {
    let setup = |e: &dyn std::fmt::Display| LoadError::Setup(e.to_string());
    let cluster = Cluster::create(Duration::from_secs(3))?;
    let config = ippin::config::Config::load(&cluster.config).map_err(|e| setup(&e))?;
    let key =
        std::fs::read_to_string(cluster.dir.path().join("ca/tls_ca.key")).map_err(|e| setup(&e))?;
    let ca = ippin_cert::x509::X509Ca::from_pem(&cluster.ca_pem, &key).map_err(|e| setup(&e))?;
    let mut rng = ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng);
    let (_, spki) = ippin_cert::x509::generate_key_pair_p256(&mut rng).map_err(|e| setup(&e))?;
    let spki = ippin_cert::x509::spki_der_from_pem(&spki).map_err(|e| setup(&e))?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let client: std::net::SocketAddr = format!("{}:5000", crate::cluster::BEHIND_LB)
        .parse()
        .map_err(|_| LoadError::Setup("address".into()))?;
    let req = ippin_cert::x509::ClientCertRequest::builder("alice", spki)
        .role("pinned-ip")
        .validity(now.saturating_sub(60), now + 3600)
        .serial(1)
        .pinned_ip(client.ip())
        .build()
        .map_err(|e| setup(&e))?;
    let der = ca.issue_client(&req, &mut rng).map_err(|e| setup(&e))?;
    let observed = ippin_policy::ObservedAddr::new(client, ippin_policy::Provenance::ProxyV2, true);
    let header = crate::client::proxy_v2(
        client,
        "127.0.0.1:443"
            .parse()
            .map_err(|_| LoadError::Setup("address".into()))?,
    );
    let file_state = ippin::server::State::load(config.clone()).map_err(|e| setup(&e))?;
    let memory_state = {
        let roles = ippin::config::load_roles(&config.roles).map_err(|e| setup(&e))?;
        let ca = ippin::ca::Ca::load(&config.ca).map_err(|e| setup(&e))?;
        ippin::server::State::new(
            config.clone(),
            roles,
            ca,
            ippin::audit::Audit::memory("load"),
        )
    };
    let uncached_state = {
        let roles = ippin::config::load_roles(&config.roles).map_err(|e| setup(&e))?;
        let ca = ippin::ca::Ca::load(&config.ca).map_err(|e| setup(&e))?;
        let mut state = ippin::server::State::new(
            config.clone(),
            roles,
            ca,
            ippin::audit::Audit::memory("load"),
        );
        state.identities = ippin_access::tls::IdentityCache::new(0);
        state
    };
    let allowed = ippin::server::access_verdict(&file_state, &der, &observed);
    if allowed.access != ippin::server::Access::Allow {
        return Err(LoadError::Setup(format!(
            "expected allow: {:?}",
            allowed.access
        )));
    }
    let n = iterations.max(1);
    Ok(CostReport {
        iterations: n,
        proxy_v2_parse_us: per_call(n * 10, || {
            let _ = black_box(ippin_proxy_protocol::parse(black_box(&header)));
        }),
        pinned_ip_fast_us: per_call(n, || {
            let _ = black_box(ippin_cert::x509::pinned_ip_fast(black_box(&der)));
        }),
        client_identity_us: per_call(n, || {
            let _ = black_box(ippin_cert::x509::client_identity(black_box(&der)));
        }),
        access_verdict_file_audit_us: per_call(n, || {
            black_box(ippin::server::access_verdict(&file_state, &der, &observed));
        }),
        // The memory sink keeps every line: bounded by `n`.
        access_verdict_memory_audit_us: per_call(n, || {
            black_box(ippin::server::access_verdict(
                &memory_state,
                &der,
                &observed,
            ));
        }),
        access_verdict_uncached_us: per_call(n, || {
            black_box(ippin::server::access_verdict(
                &uncached_state,
                &der,
                &observed,
            ));
        }),
    })
}
