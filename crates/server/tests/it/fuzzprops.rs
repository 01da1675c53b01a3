//! Properties of `ippin check` and `ippin inspect cert` over generated
//! certificates and addresses (the fuzz targets `server_check` and
//! `server_inspect` assert the same on arbitrary bytes):
//!
//! * the decision on a pinned certificate is CIDR containment of the
//!   observed address, canonically (an IPv4-mapped client is its IPv4
//!   address), and `--untrusted` always denies it;
//! * `inspect cert` and `check` report the same pin for the same file;
//! * on corrupted certificates, the exit codes of the two commands agree,
//!   and `--untrusted` never turns a deny into an allow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ippin::Outcome;
use ippin::check::{CheckArgs, run};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::ssh_key::certificate::{Builder, CertType};
use ippin_cert::ssh_key::{Algorithm, PrivateKey};
use ippin_cert::x509::{self, ClientCertRequest, X509Ca};
use proptest::prelude::*;
use serde_json::Value;

const NOW: u64 = 1_700_000_000;

const PINNING: &str = "kind: role\nversion: v7\nmetadata:\n  name: pinned-ip\nspec:\n  options:\n    pin_source_ip: true\n";

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

fn key() -> PrivateKey {
    PrivateKey::random(&mut rng(), Algorithm::Ed25519).expect("ed25519 key")
}

/// An OpenSSH user certificate whose `source-address` is `nets`, signed by
/// a fresh CA key.
fn ssh_cert(nets: &[IpNet]) -> Vec<u8> {
    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
    let mut b = Builder::new(
        vec![7u8; 32],
        key().public_key().key_data().clone(),
        NOW - 60,
        NOW + 3600,
    )
    .expect("builder");
    b.cert_type(CertType::User).expect("type");
    b.key_id("props").expect("key id");
    b.valid_principal("alice").expect("principal");
    b.critical_option("source-address", list.join(","))
        .expect("critical option");
    let cert = b.sign(&key()).expect("sign");
    format!("{}\n", cert.to_openssh().expect("encode")).into_bytes()
}

fn x509_ca() -> &'static X509Ca {
    static CA: OnceLock<X509Ca> = OnceLock::new();
    CA.get_or_init(|| {
        X509Ca::generate_p256("props CA", NOW - 86_400, NOW + 86_400, &mut rng()).expect("CA")
    })
}

fn spki() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| {
        let (_, public) = x509::generate_key_pair_p256(&mut rng()).expect("key pair");
        x509::spki_der_from_pem(&public).expect("SPKI")
    })
}

/// A DER client certificate for alice pinned to `pin`, as ippin issues.
fn x509_cert(pin: IpAddr, login: IpAddr) -> Vec<u8> {
    let req = ClientCertRequest::builder("alice", spki().to_vec())
        .role("pinned-ip")
        .validity(NOW - 60, NOW + 3600)
        .serial(0x1234)
        .pinned_ip(pin)
        .login_ip(login)
        .build()
        .expect("request");
    x509_ca().issue_client(&req, &mut rng()).expect("issue")
}

/// `ippin check` with the `pin_source_ip` role file.
fn check(cert: &[u8], observed: SocketAddr, untrusted: bool) -> Outcome {
    run(&CheckArgs {
        roles: vec![("pinning.yaml".to_owned(), PINNING.to_owned())],
        ..check_args(cert, observed, untrusted)
    })
}

/// `ippin check` without role files: no pin is required.
fn check_args(cert: &[u8], observed: SocketAddr, untrusted: bool) -> CheckArgs {
    CheckArgs {
        cert: cert.to_vec(),
        observed: observed.to_string(),
        roles: Vec::new(),
        untrusted,
        endpoint: None,
    }
}

fn json(out: &Outcome) -> Value {
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    serde_json::from_str(&out.stdout).expect("one JSON line")
}

fn pinned(report: &Value) -> Vec<IpNet> {
    report["pinned"]
        .as_array()
        .expect("pinned list")
        .iter()
        .map(|n| n.as_str().expect("string").parse().expect("CIDR"))
        .collect()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A network `source-address` accepts: no host bits, prefix at least 1,
/// not IPv4-mapped.
fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        // single hosts, the only pins a pin-requiring role accepts
        any::<u32>().prop_map(|a| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), 32).expect("len"))),
        (any::<u32>(), 1u8..=32).prop_map(|(a, len)| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).expect("len").trunc())
        }),
        (any::<u128>(), 1u8..=128)
            .prop_map(|(a, len)| {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).expect("len").trunc())
            })
            .prop_filter("not IPv4-mapped", |n| match n {
                IpNet::V6(v6) => v6.network().to_ipv4_mapped().is_none(),
                IpNet::V4(_) => true,
            }),
    ]
}

/// An address inside `net`: its network address with `host` in the host
/// bits.
fn inside(net: IpNet, host: u128) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let mask = u32::from(n.hostmask());
            let host = u32::try_from(host & u128::from(mask)).expect("masked");
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let mask = u128::from(n.hostmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (host & mask)))
        }
    }
}

/// Either anywhere, or inside one of `nets`, and sometimes written as an
/// IPv4-mapped IPv6 address.
fn observed(nets: Vec<IpNet>) -> impl Strategy<Value = (Vec<IpNet>, IpAddr)> {
    let count = nets.len();
    (
        Just(nets),
        any::<IpAddr>(),
        0..count,
        any::<u128>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(nets, anywhere, i, host, pick_inside, mapped)| {
            let ip = if pick_inside {
                inside(nets[i], host)
            } else {
                anywhere
            };
            let ip = match ip {
                IpAddr::V4(v4) if mapped => IpAddr::V6(v4.to_ipv6_mapped()),
                other => other,
            };
            (nets, ip)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ssh_decision_is_containment(
        (nets, ip) in proptest::collection::vec(net(), 1..4).prop_flat_map(observed),
        port in 1u16..,
    ) {
        let cert = ssh_cert(&nets);
        let inspected = ippin::inspect::cert(&cert);
        prop_assert_eq!(inspected.code, 0, "{:?}", inspected);
        prop_assert_eq!(pinned(&json(&inspected)), nets.clone());

        let at = SocketAddr::new(ip, port);
        let out = check(&cert, at, false);
        let report = json(&out);
        prop_assert_eq!(&pinned(&report), &nets);
        prop_assert_eq!(&report["requires_pin"], &Value::Bool(true));
        // The roles require a pin, so only a single-host pin counts (`pin_too_wide`).
        let single = matches!(nets.as_slice(), [n] if n.prefix_len() == n.max_prefix_len());
        let want = single && nets.iter().any(|n| n.contains(&canonical(ip)));
        prop_assert_eq!(out.code == 0, want, "{} in {:?}: {:?}", ip, nets, out);
        let reason = match (want, single) {
            (true, _) => Value::Null,
            (false, false) => "pin_too_wide".into(),
            (false, true) => "pinned_ip_mismatch".into(),
        };
        prop_assert_eq!(&report["reason"], &reason);
        prop_assert_eq!(
            &report["observed"],
            &Value::from(SocketAddr::new(canonical(ip), port).to_string())
        );

        let untrusted = check(&cert, at, true);
        prop_assert_eq!(untrusted.code, 1);
        let untrusted_reason = if single { "untrusted_client_ip" } else { "pin_too_wide" };
        prop_assert_eq!(&json(&untrusted)["reason"], &Value::from(untrusted_reason));
        // No port: not a trusted observation either.
        let no_port = check(&cert, SocketAddr::new(ip, 0), false);
        prop_assert_eq!(&json(&no_port)["reason"], &Value::from(untrusted_reason));
    }

    #[test]
    fn x509_decision_is_equality(
        pin in any::<IpAddr>(),
        login in any::<IpAddr>(),
        other in any::<IpAddr>(),
        same in any::<bool>(),
        port in 1u16..,
    ) {
        let cert = x509_cert(pin, login);
        let inspected = ippin::inspect::cert(&cert);
        prop_assert_eq!(inspected.code, 0, "{:?}", inspected);
        let report = json(&inspected);
        prop_assert_eq!(pinned(&report), vec![IpNet::from(canonical(pin))]);
        prop_assert_eq!(
            &report["login_ip"],
            &Value::from(canonical(login).to_string())
        );

        let ip = if same { pin } else { other };
        let out = check(&cert, SocketAddr::new(ip, port), false);
        prop_assert_eq!(pinned(&json(&out)), vec![IpNet::from(canonical(pin))]);
        prop_assert_eq!(out.code == 0, canonical(ip) == canonical(pin), "{:?}", out);
        prop_assert_eq!(check(&cert, SocketAddr::new(ip, port), true).code, 1);
    }

    #[test]
    fn corrupted_certificates_keep_the_contract(
        der in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        ip in any::<IpAddr>(),
    ) {
        let pin: IpAddr = "192.0.2.10".parse().expect("IP");
        let mut cert = if der {
            x509_cert(pin, pin)
        } else {
            ssh_cert(&[IpNet::from(pin)])
        };
        for (at, byte) in edits {
            let i = at.index(cert.len());
            cert[i] = byte;
        }
        if truncate {
            cert.truncate(cut.index(cert.len()));
        }
        let inspected = ippin::inspect::cert(&cert);
        let at = SocketAddr::new(ip, 443);
        let trusted = run(&check_args(&cert, at, false));
        let untrusted = run(&check_args(&cert, at, true));
        prop_assert!(matches!(inspected.code, 0..=2));
        prop_assert!(matches!(trusted.code, 0..=2));
        if inspected.code == 2 {
            prop_assert_eq!(trusted.code, 2);
        }
        if inspected.code == 0 {
            prop_assert_ne!(trusted.code, 2);
            prop_assert_eq!(pinned(&json(&inspected)), pinned(&json(&trusted)));
        }
        if untrusted.code == 0 {
            prop_assert_eq!(trusted.code, 0);
            prop_assert!(pinned(&json(&untrusted)).is_empty());
        }
        prop_assert_eq!(untrusted.code == 2, trusted.code == 2);
        // A role that requires a pin only ever turns an allow into a deny.
        if check(&cert, at, false).code == 0 {
            prop_assert_eq!(trusted.code, 0);
        }
    }
}
