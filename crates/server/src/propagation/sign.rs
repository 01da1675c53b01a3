//! The front's side. The sans-IO core (identity, grants, the signed block)
//! is `ippin_propagation::sign`, re-exported here; this module adds the
//! PROXY v2 framing of the header (with `ippin-proxy-protocol`) and the
//! issuing of a front identity (with `ippin-cert`).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ippin_proxy_protocol as pp;

pub use ippin_propagation::sign::*;
use ippin_propagation::wire::{FAMILY_TCP4, FAMILY_TCP6, NONCE_LEN, TLV_TYPE};
use ippin_propagation::{Error, Link, PROXY_CN_PREFIX, PROXY_ROLE};

/// Writes the PROXY v2 header that carries a signed block.
pub trait WriteHeader {
    /// The PROXY v2 header a front writes to its upstream: command PROXY,
    /// `client` → `destination` (TCP4 when both are IPv4, else TCP6 with
    /// IPv4 addresses mapped), and the signed block under this grant for
    /// the connection `link` it is written on (the front's local address
    /// after `connect()` and its peer), written at `now` with `nonce`.
    ///
    /// # Errors
    /// [`Error::Encode`] when the header does not encode.
    fn header(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error>;
}

impl WriteHeader for FrontGrant {
    fn header(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let addrs = addresses_for(client, destination);
        let value = self.signed_block(client, destination, link, now, nonce)?;
        pp::V2Builder::new(pp::Command::Proxy)
            .addresses(addrs)
            .and_then(|b| {
                b.tlv(pp::Tlv::Custom {
                    kind: TLV_TYPE,
                    value: &value,
                })
            })
            .and_then(|b| b.encode())
            .map_err(|e| Error::Encode(e.to_string()))
    }
}

/// The v2 addresses for a client and the address it reached: TCP4 when
/// both are IPv4 (canonical form), otherwise TCP6 with any IPv4 address
/// written IPv4-mapped. Scope ids and flow info are dropped.
pub fn addresses_for(client: SocketAddr, destination: SocketAddr) -> pp::Addresses {
    let c = client.ip().to_canonical();
    let d = destination.ip().to_canonical();
    match (c, d) {
        (IpAddr::V4(cs), IpAddr::V4(ds)) => pp::Addresses::Tcp4 {
            src: SocketAddrV4::new(cs, client.port()),
            dst: SocketAddrV4::new(ds, destination.port()),
        },
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            pp::Addresses::Tcp6 {
                src: SocketAddrV6::new(v6(c), client.port(), 0, 0),
                dst: SocketAddrV6::new(v6(d), destination.port(), 0, 0),
            }
        }
    }
}

/// The family byte and address bytes of `addrs` as a v2 header carries
/// them (TCP4 / TCP6 only; anything else gives an empty block, which the
/// block encoder refuses).
pub fn address_block(addrs: &pp::Addresses) -> Vec<u8> {
    let mut out = Vec::with_capacity(37);
    match addrs {
        pp::Addresses::Tcp4 { src, dst } => {
            out.push(FAMILY_TCP4);
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        pp::Addresses::Tcp6 { src, dst } => {
            out.push(FAMILY_TCP6);
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        _ => {}
    }
    out
}

/// A newly issued front identity, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyIdentityPem {
    /// The certificate (`CERTIFICATE`).
    pub cert_pem: String,
    /// The PKCS#8 Ed25519 key (`PRIVATE KEY`).
    pub key_pem: String,
}

impl std::fmt::Debug for ProxyIdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyIdentityPem").finish_non_exhaustive()
    }
}

/// Issues a front identity named `name`: a fresh Ed25519 key and a
/// certificate from `ca` with CN `proxy:NAME` and role (O) `proxy`, valid
/// from `not_before` to `not_after` (unix seconds).
///
/// # Errors
/// [`Error::Cert`] when the CA refuses (bad name or times),
/// [`Error::SigningKey`] when the key cannot be encoded.
pub fn issue_proxy_identity<R: ippin_cert::rand_core::CryptoRng + ?Sized>(
    ca: &ippin_cert::x509::X509Ca,
    name: &str,
    not_before: u64,
    not_after: u64,
    serial: u64,
    rng: &mut R,
) -> Result<ProxyIdentityPem, Error> {
    let key = ed25519_dalek::SigningKey::generate(rng);
    let spki = ed25519_spki_der(key.verifying_key().as_bytes());
    let req =
        ippin_cert::x509::ClientCertRequest::builder(format!("{PROXY_CN_PREFIX}{name}"), spki)
            .role(PROXY_ROLE)
            .validity(not_before, not_after)
            .serial(serial.max(1))
            .build()
            .map_err(|e| Error::Cert(e.to_string()))?;
    let der = ca
        .issue_client(&req, rng)
        .map_err(|e| Error::Cert(e.to_string()))?;
    let key_pem = key
        .to_pkcs8_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::SigningKey(e.to_string()))?;
    Ok(ProxyIdentityPem {
        cert_pem: crate::files::der_to_pem(&der, "CERTIFICATE"),
        key_pem: key_pem.as_str().to_owned(),
    })
}
