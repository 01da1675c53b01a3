//! ippin-access's decisions on arbitrary certificates: the mutual-TLS table on arbitrary DER
//! (and mutations of a real certificate), the SSH table on arbitrary OpenSSH certificate
//! bytes. No panic; nothing is allowed that the rules forbid:
//! - an allowed TLS connection of a pin-requiring user has a single-IP pin equal to a trusted
//!   observation; any allowed pinned certificate was used from its pin;
//! - an unreadable pin never allows;
//! - an SSH certificate from bytes is never allowed (no CA is trusted but a fixed one that
//!   signs nothing here), and its pin reads as `ippin_access::pin::ssh_pin` says.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use ippin_access::observed::{ObservedAddr, Provenance};
use ippin_access::ssh::{AuthContext, CertIdentity, authorize};
use ippin_access::{CertPin, User, tls};
use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

fn seed_cert() -> &'static Vec<u8> {
    static CERT: OnceLock<Vec<u8>> = OnceLock::new();
    CERT.get_or_init(|| {
        let mut rng = UnwrapErr(SysRng);
        let ca = X509Ca::generate_p256("fuzz CA", NOW - 60, NOW + 3600, &mut rng).unwrap();
        let (_, spki) = generate_key_pair_p256(&mut rng).unwrap();
        let req = ClientCertRequest::builder("u", spki_der_from_pem(&spki).unwrap())
            .validity(NOW - 60, NOW + 3600)
            .serial(1)
            .role("r")
            .pinned_ip("192.0.2.1".parse().unwrap())
            .build()
            .unwrap();
        ca.issue_client(&req, &mut rng).unwrap()
    })
}

fn observed(b: &[u8]) -> ObservedAddr {
    let ip = match b.first().copied().unwrap_or(0) % 3 {
        0 => IpAddr::from([192, 0, 2, b.get(1).copied().unwrap_or(1) % 3]),
        1 => IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, b.get(1).copied().unwrap_or(1) % 3).to_ipv6_mapped()),
        _ => IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b.get(1).copied().unwrap_or(0)]),
    };
    let provenance = match b.get(2).copied().unwrap_or(0) % 6 {
        0 => Provenance::Direct,
        1 => Provenance::ProxyV1,
        2 => Provenance::ProxyV2,
        3 => Provenance::ForwardedHeader,
        4 => Provenance::SignedPropagation,
        _ => Provenance::ProxyLocal,
    };
    let port = u16::from(b.get(3).copied().unwrap_or(0));
    ObservedAddr::new(SocketAddr::new(ip, port), provenance, b.get(4).is_some_and(|x| x & 1 == 1))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (ctl, rest) = data.split_at(8);
    let seen = observed(ctl);
    let requires_pin = ctl[5] & 1 == 1;
    let mut users = HashMap::new();
    if ctl[5] & 2 == 2 {
        users.insert("u".to_owned(), User::new(requires_pin, vec!["r".into()]));
    }
    // Arbitrary DER, or the real certificate with a few bytes overwritten.
    let der = if ctl[6] & 1 == 1 {
        let mut der = seed_cert().clone();
        for pair in rest.chunks(3) {
            if let [hi, lo, v] = pair {
                let at = usize::from(u16::from_be_bytes([*hi, *lo])) % der.len();
                der[at] = *v;
            }
        }
        der
    } else {
        rest.to_vec()
    };
    let v = tls::decide_der(&der, &users, &seen, NOW);
    if v.access.is_allowed() {
        assert!(users.contains_key(&v.user), "allowed an unknown user");
        match &v.pin {
            CertPin::Ip(pin) => {
                assert!(seen.is_trusted(), "a pin satisfied by an untrusted observation");
                assert_eq!(*pin, seen.ip(), "a pin satisfied from elsewhere");
            }
            CertPin::None => assert!(!requires_pin, "a required pin was missing"),
            other => panic!("allowed with pin {other:?}"),
        }
    }

    // SSH: arbitrary certificate bytes.
    if let Ok(cert) = ippin_cert::ssh_key::Certificate::from_bytes(rest) {
        let _ = ippin_access::pin::ssh_pin(&cert);
        let ssh_users = |name: &str| (name == "u").then(|| User::new(requires_pin, vec![]));
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &[],
            users: &ssh_users,
            honours_force_command: false,
        };
        assert!(authorize(&ctx, "u", &cert, &seen, NOW).is_err(), "no CA is trusted");
    }
});
