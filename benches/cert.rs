//! Pinned-IP extraction from a P-256 client certificate (ippin's fast path
//! vs x509-cert vs x509-parser), and the full SSH user-certificate check vs
//! ssh-key's `validate_at` alone. Run: `cargo bench -p ippin-benches --bench cert`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use der::Decode;
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::ssh::{SshCa, SshCertRequest, SshValidation, validate_user_cert};
use ippin_cert::ssh_key::{Algorithm, PrivateKey};
use ippin_cert::x509::{self, ClientCertRequest, PINNED_IP_OID, X509Ca};

const NOW: u64 = 1_700_000_000;

fn client_cert() -> Vec<u8> {
    let mut rng = UnwrapErr(SysRng);
    let ca = X509Ca::generate_p256("ippin bench CA", NOW - 60, NOW + 86_400, &mut rng).unwrap();
    let (_, spki) = x509::generate_key_pair_p256(&mut rng).unwrap();
    let req = ClientCertRequest::builder("alice", x509::spki_der_from_pem(&spki).unwrap())
        .role("dev")
        .validity(NOW, NOW + 3600)
        .serial(0x0102_0304_0506_0708)
        .pinned_ip("203.0.113.77".parse().unwrap())
        .build()
        .unwrap();
    ca.issue_client(&req, &mut rng).unwrap()
}

fn x509_extraction(c: &mut Criterion) {
    let der = client_cert();
    let mut g = c.benchmark_group(format!("x509_pinned_ip_{}_bytes", der.len()));
    g.bench_function("ippin_fast_path", |b| {
        b.iter(|| x509::pinned_ip_fast(black_box(&der)).unwrap())
    });
    g.bench_function("x509_cert_from_der_find_ext", |b| {
        b.iter(|| {
            let cert = x509_cert::Certificate::from_der(black_box(&der)).unwrap();
            let ext = cert
                .tbs_certificate()
                .extensions()
                .and_then(|e| e.iter().find(|e| e.extn_id == PINNED_IP_OID))
                .unwrap();
            x509::PinnedIp::from_extension_value(ext.extn_value.as_bytes()).unwrap()
        })
    });
    let oid = x509_parser::oid_registry::Oid::from(&[1, 3, 9999, 1, 9]).unwrap();
    g.bench_function("x509_parser_find_ext", |b| {
        b.iter(|| {
            let (_, cert) = x509_parser::parse_x509_certificate(black_box(&der)).unwrap();
            let ext = cert.extensions().iter().find(|e| e.oid == oid).unwrap();
            x509::PinnedIp::from_extension_value(ext.value).unwrap()
        })
    });
    g.bench_function("ippin_full_decode", |b| {
        b.iter(|| x509::pinned_ip(black_box(&der)).unwrap())
    });
    g.finish();
}

fn ssh_check(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let ca = SshCa::generate_ed25519(&mut rng).unwrap();
    let user = PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap();
    let req = SshCertRequest::builder(user.public_key().key_data().clone())
        .key_id("alice@bench")
        .principal("alice")
        .validity(NOW, NOW + 3600)
        .pinned_ip("203.0.113.77".parse().unwrap())
        .login_ip("203.0.113.77".parse().unwrap())
        .build()
        .unwrap();
    let cert = ca.issue(&req, &mut rng).unwrap();
    let trusted = [ca.fingerprint()];
    let v = SshValidation::new(&trusted, "alice", NOW + 1);
    let mut g = c.benchmark_group("ssh_user_cert_ed25519");
    let observed: std::net::IpAddr = "203.0.113.77".parse().unwrap();
    let ssh_key_alone = || black_box(&cert).validate_at(NOW + 1, &trusted).unwrap();
    let ippin_full = || {
        let ok = validate_user_cert(black_box(&cert), &v).unwrap();
        ok.check_source(black_box(observed)).unwrap();
    };
    g.bench_function("ssh_key_validate_at", |b| b.iter(ssh_key_alone));
    g.bench_function("ippin_validate_and_check_source", |b| b.iter(ippin_full));
    // The same two, interleaved call by call, so that both see the same
    // machine load (the two functions above run 5 s apart): each function
    // runs both checks and reports the time of its own.
    g.bench_function("interleaved/ssh_key_validate_at", |b| {
        b.iter_custom(|iters| paired(iters, &ssh_key_alone, &ippin_full).0)
    });
    g.bench_function("interleaved/ippin_validate_and_check_source", |b| {
        b.iter_custom(|iters| paired(iters, &ssh_key_alone, &ippin_full).1)
    });
    g.finish();
    // Paired per-call ratios, whose median is robust to load that changes
    // during the run. The control pairs validate_at with ssh-key's own
    // signature step alone (validate_at minus one fingerprint and the window
    // check): its spread across runs shows the noise of this method (code
    // and stack placement differ from process to process).
    let ratio = |f: &dyn Fn()| {
        let mut r: Vec<f64> = (0..4000)
            .map(|_| {
                let (a, b) = paired(1, &ssh_key_alone, &f);
                b.as_secs_f64() / a.as_secs_f64()
            })
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let control = ratio(&|| black_box(&cert).verify_signature().unwrap());
    let ippin = ratio(&ippin_full);
    println!(
        "ssh paired median ratio to validate_at over 4000 pairs: ippin {ippin:.4}, control (signature step alone) {control:.4}"
    );
}

/// Runs `a` and `b` `iters` times each, alternating which goes first, and
/// returns the total time of each.
fn paired(iters: u64, a: &impl Fn(), b: &impl Fn()) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for i in 0..iters {
        let mut time_a = || {
            let t = Instant::now();
            a();
            ta += t.elapsed();
        };
        if i % 2 == 0 {
            time_a();
            let t = Instant::now();
            b();
            tb += t.elapsed();
        } else {
            let t = Instant::now();
            b();
            tb += t.elapsed();
            time_a();
        }
    }
    (ta, tb)
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = x509_extraction, ssh_check
}
criterion_main!(benches);
