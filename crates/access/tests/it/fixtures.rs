//! Certificates for the tests.

use std::net::IpAddr;

use ippin_cert::getrandom::SysRng;
use ippin_cert::rand_core::UnwrapErr;
use ippin_cert::x509::{ClientCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem};

pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) struct Issuer {
    ca: X509Ca,
    spki: Vec<u8>,
}

impl Issuer {
    pub(crate) fn new() -> Issuer {
        let mut rng = UnwrapErr(SysRng);
        let ca = X509Ca::generate_p256("access test CA", NOW - 60, NOW + 3600, &mut rng).unwrap();
        let (_, spki_pem) = generate_key_pair_p256(&mut rng).unwrap();
        Issuer {
            ca,
            spki: spki_der_from_pem(&spki_pem).unwrap(),
        }
    }

    /// A client certificate for `user`, pinned to `pin` when given.
    pub(crate) fn client(&self, user: &str, pin: Option<IpAddr>) -> Vec<u8> {
        let mut req = ClientCertRequest::builder(user, self.spki.clone())
            .validity(NOW - 60, NOW + 3600)
            .serial(7)
            .role("dev");
        if let Some(ip) = pin {
            req = req.pinned_ip(ip);
        }
        self.ca
            .issue_client(&req.build().unwrap(), &mut UnwrapErr(SysRng))
            .unwrap()
    }
}

impl Issuer {
    /// A client certificate pinned to the network `net` (a prefix pin).
    pub(crate) fn client_net(&self, user: &str, net: ipnet::IpNet) -> Vec<u8> {
        let req = ClientCertRequest::builder(user, self.spki.clone())
            .validity(NOW - 60, NOW + 3600)
            .serial(8)
            .role("dev")
            .pinned_network(net);
        self.ca
            .issue_client(&req.build().unwrap(), &mut UnwrapErr(SysRng))
            .unwrap()
    }
}

/// `der` with the first occurrence of `from` replaced by `to` (same length).
pub(crate) fn patched(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = der
        .windows(from.len())
        .position(|w| w == from)
        .expect("bytes to patch are in the certificate");
    let mut out = der.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

/// `der` with the last occurrence of `from` replaced by `to` (same length).
pub(crate) fn patched_last(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = der
        .windows(from.len())
        .rposition(|w| w == from)
        .expect("bytes to patch are in the certificate");
    let mut out = der.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

impl Issuer {
    /// A client certificate pinned to `pin` and bound to the private endpoint `endpoint`.
    pub(crate) fn client_bound(&self, user: &str, pin: IpAddr, endpoint: &str) -> Vec<u8> {
        let req = ClientCertRequest::builder(user, self.spki.clone())
            .validity(NOW - 60, NOW + 3600)
            .serial(9)
            .role("dev")
            .pinned_ip(pin)
            .pinned_endpoint(endpoint);
        self.ca
            .issue_client(&req.build().unwrap(), &mut UnwrapErr(SysRng))
            .unwrap()
    }
}
