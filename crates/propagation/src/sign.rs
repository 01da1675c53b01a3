//! The front's side: its identity (an Ed25519 key and a certificate from
//! the cluster CA with role `proxy`), the grants it signs (once per half
//! lifetime per upstream) and the per-connection header it writes under a
//! grant (a MAC, no signature). Sans-IO: the time, the nonce and the
//! ephemeral key are parameters.

use crate::Error;
use std::net::{IpAddr, SocketAddr};

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey;

use crate::Link;
use crate::key::{PublicKey, SecretKey, mac_key};
use crate::wire::{self, FAMILY_TCP4, FAMILY_TCP6, Grant, MAC_LEN, NONCE_LEN};

/// The front's signing identity.
#[derive(Clone)]
pub struct Signer {
    key: ed25519_dalek::SigningKey,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("cert_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The SubjectPublicKeyInfo DER of an Ed25519 public key (RFC 8410).
pub fn ed25519_spki_der(public: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    out.extend_from_slice(public);
    out
}

impl Signer {
    /// An identity from its key and certificate (DER).
    ///
    /// # Errors
    /// [`Error::Cert`] when the certificate's public key is not this
    /// key's, or the certificate is larger than the signed block allows.
    pub fn new(key: ed25519_dalek::SigningKey, cert_der: Vec<u8>) -> Result<Signer, Error> {
        use der::Decode;
        if cert_der.is_empty() || cert_der.len() > wire::MAX_CERT_LEN {
            return Err(Error::Cert(format!(
                "{} bytes; 1 to {} allowed",
                cert_der.len(),
                wire::MAX_CERT_LEN
            )));
        }
        let cert =
            x509_cert::Certificate::from_der(&cert_der).map_err(|e| Error::Cert(e.to_string()))?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        if spki.subject_public_key.raw_bytes() != key.verifying_key().as_bytes() {
            return Err(Error::Cert(
                "its public key is not the key given with it".into(),
            ));
        }
        Ok(Signer { key, cert_der })
    }

    /// An identity from PEM texts: a `CERTIFICATE` and a PKCS#8 `PRIVATE KEY`.
    ///
    /// # Errors
    /// [`Error::SigningKey`] / [`Error::Cert`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Signer, Error> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(key_pem).map_err(|e| {
            Error::SigningKey(format!("not an unencrypted PKCS#8 Ed25519 key: {e}"))
        })?;
        let cert_der = crate::pem::pem_to_der(cert_pem, "CERTIFICATE")
            .ok_or_else(|| Error::Cert("not one PEM CERTIFICATE block".into()))?;
        Signer::new(key, cert_der)
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Whether the certificate says what a verifier requires of a front's: the role
    /// [`PROXY_ROLE`](crate::PROXY_ROLE), a CN `proxy:NAME`, and the front's extended key usage
    /// ([`PROPAGATION_FRONT_EKU`](crate::PROPAGATION_FRONT_EKU)) alone. (Whether its CA is
    /// trusted is the verifier's to say.) A front that starts with a certificate failing this
    /// would have every header refused `proxy_cert_not_proxy`: check it at load.
    pub fn is_front(&self) -> bool {
        crate::verify::is_front_certificate(&self.cert_der)
    }

    /// Signs a grant for the inner listener whose static key is
    /// `inner_key` and whose audience is `audience`, valid from
    /// `not_before` to `not_after` (unix seconds), with the ephemeral key
    /// `ephemeral` (fresh randomness, drawn by the caller); derives the MAC
    /// key the headers under this grant use.
    ///
    /// # Errors
    /// [`Error::Audience`] for an unusable audience,
    /// [`Error::Grant`] for a validity longer than
    /// [`MAX_GRANT_LIFETIME`] or ending before it starts, or an inner key
    /// of small order, [`Error::Encode`] when it does not encode.
    pub fn grant(
        &self,
        inner_key: &PublicKey,
        audience: &str,
        not_before: u64,
        not_after: u64,
        ephemeral: &SecretKey,
    ) -> Result<FrontGrant, Error> {
        if !audience_ok(audience) {
            return Err(Error::Audience(audience.escape_default().to_string()));
        }
        if not_after < not_before || not_after - not_before > MAX_GRANT_LIFETIME {
            return Err(Error::Grant(format!(
                "validity {not_before}..={not_after}: at most {MAX_GRANT_LIFETIME}s, not reversed"
            )));
        }
        let shared = ephemeral.agree(inner_key).ok_or_else(|| {
            Error::Grant("the inner key is of small order (no shared secret)".into())
        })?;
        let mut grant = Grant {
            cert_der: &self.cert_der,
            ephemeral: ephemeral.public_key().0,
            inner_key: inner_key.0,
            audience: audience.as_bytes(),
            not_before,
            not_after,
            signature: &[],
        };
        let signature = self.key.sign(&grant.transcript()).to_bytes();
        grant.signature = &signature;
        let bytes = grant.encode().map_err(|e| Error::Encode(e.to_string()))?;
        let key = mac_key(&shared, &bytes)
            .ok_or_else(|| Error::Grant("HKDF refused the key length".into()))?;
        Ok(FrontGrant {
            bytes,
            audience: audience.to_owned(),
            key,
            not_before,
            not_after,
        })
    }
}

pub use crate::wire::MAX_GRANT_LIFETIME;

/// A grant the front signed for one upstream, and its MAC key: what the
/// front needs to write a header per connection.
#[derive(Clone)]
pub struct FrontGrant {
    bytes: Vec<u8>,
    audience: String,
    key: ring::hmac::Key,
    not_before: u64,
    not_after: u64,
}

impl std::fmt::Debug for FrontGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontGrant")
            .field("audience", &self.audience)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl FrontGrant {
    /// The encoded grant.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Valid from, unix seconds.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// Valid until, unix seconds.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The signed block (the TLV value) for an address block and a
    /// connection block, written at `now` with `nonce` (exposed for tests
    /// and benches; [`FrontGrant::signed_block`] is what a front sends).
    ///
    /// # Errors
    /// [`Error::Encode`] when the addresses are not TCP4/TCP6.
    pub fn block(
        &self,
        addresses: &[u8],
        connection: &[u8],
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        self.block_via(addresses, connection, b"", now, nonce)
    }

    /// [`FrontGrant::block`] for a client that came through the cloud private endpoint
    /// `endpoint` (its name's bytes; empty for none).
    ///
    /// # Errors
    /// [`Error::Encode`] when the addresses are not TCP4/TCP6 or the endpoint is not a name.
    pub fn block_via(
        &self,
        addresses: &[u8],
        connection: &[u8],
        endpoint: &[u8],
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let input = wire::mac_input(
            addresses,
            connection,
            endpoint,
            self.audience.as_bytes(),
            now,
            &nonce,
        );
        let tag = ring::hmac::sign(&self.key, &input);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(tag.as_ref());
        wire::encode_block(
            addresses,
            connection,
            endpoint,
            &self.bytes,
            now,
            &nonce,
            &mac,
        )
        .map_err(|e| Error::Encode(e.to_string()))
    }

    /// The signed block (the value of TLV [`TLV_TYPE`](crate::TLV_TYPE))
    /// a front writes in its PROXY v2 header to its upstream for a
    /// connection from `client` to `destination`, under this grant, for
    /// the connection `link` it is written on (the front's local address
    /// after `connect()` and its peer), written at `now` with `nonce`.
    ///
    /// The header that carries it must be a v2 PROXY command whose
    /// addresses are exactly [`address_block_for`]`(client, destination)`:
    /// TCP4 when both are IPv4, else TCP6 with IPv4 addresses mapped. The
    /// PROXY framing is the caller's (ippin's server uses
    /// `ippin-proxy-protocol`).
    ///
    /// # Errors
    /// [`Error::Encode`] when the block does not encode.
    pub fn signed_block(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        self.signed_block_via(client, destination, None, link, now, nonce)
    }

    /// [`FrontGrant::signed_block`] for a client that came through the cloud private endpoint
    /// `endpoint` (`vpce-…`, `azure:N`, `gcp:N`; see `ippin-proxy-protocol`'s `EndpointId`):
    /// behind such an endpoint the client's address is one of its own network, which another
    /// consumer may use too, so the inner binds pins to the endpoint it is told here. A front
    /// whose client came through an endpoint must say so.
    ///
    /// # Errors
    /// [`Error::Encode`] when the block does not encode (an endpoint that is not a name).
    pub fn signed_block_via(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        endpoint: Option<&str>,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let addresses = address_block_for(client, destination);
        let connection = address_block_for(link.front, link.inner);
        let endpoint = endpoint.map(str::as_bytes).unwrap_or_default();
        self.block_via(&addresses, &connection, endpoint, now, nonce)
    }
}

/// The front's current grant for one upstream, renewed every half
/// lifetime. Sans-IO: the time and the ephemeral randomness are
/// parameters.
#[derive(Debug)]
pub struct GrantSchedule {
    signer: std::sync::Arc<Signer>,
    inner_key: PublicKey,
    audience: String,
    lifetime: u64,
    current: std::sync::Mutex<Option<std::sync::Arc<FrontGrant>>>,
}

impl GrantSchedule {
    /// Grants by `signer` for the upstream `inner_key` / `audience`, each
    /// valid `lifetime_secs` (2 to [`MAX_GRANT_LIFETIME`]; clamped).
    pub fn new(
        signer: std::sync::Arc<Signer>,
        inner_key: PublicKey,
        audience: &str,
        lifetime_secs: u64,
    ) -> GrantSchedule {
        GrantSchedule {
            signer,
            inner_key,
            audience: audience.to_owned(),
            lifetime: lifetime_secs.clamp(2, MAX_GRANT_LIFETIME),
            current: std::sync::Mutex::new(None),
        }
    }

    /// The upstream's audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The grant to use at `now`: the current one while `now` is in its
    /// first half, else a new one signed with the ephemeral secret
    /// `fresh()` returns.
    ///
    /// # Errors
    /// [`Error`] from `fresh` or from signing.
    pub fn grant_at(
        &self,
        now: u64,
        fresh: impl FnOnce() -> Result<[u8; 32], Error>,
    ) -> Result<std::sync::Arc<FrontGrant>, Error> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| Error::Grant("grant lock poisoned".into()))?;
        if let Some(g) = current.as_ref()
            && g.not_before <= now
            && now < g.not_before.saturating_add(self.lifetime / 2)
        {
            return Ok(g.clone());
        }
        let ephemeral = SecretKey::from_bytes(fresh()?);
        let g = std::sync::Arc::new(self.signer.grant(
            &self.inner_key,
            &self.audience,
            now,
            now.saturating_add(self.lifetime),
            &ephemeral,
        )?);
        *current = Some(g.clone());
        Ok(g)
    }
}

/// Whether `audience` may be used: 1 to 255 printable ASCII bytes.
pub fn audience_ok(audience: &str) -> bool {
    !audience.is_empty()
        && audience.len() <= wire::MAX_AUDIENCE_LEN
        && audience.bytes().all(|b| b.is_ascii_graphic())
}

/// The family byte and address bytes a v2 PROXY header carries for a
/// connection from `src` to `dst`: TCP4 (0x11) when both are IPv4
/// (canonical form: IPv4-mapped addresses count as IPv4), otherwise TCP6
/// (0x21) with any IPv4 address written IPv4-mapped; then source address,
/// destination address, source port, destination port, big-endian. Scope
/// ids and flow info are dropped.
pub fn address_block_for(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let s = src.ip().to_canonical();
    let d = dst.ip().to_canonical();
    let mut out = Vec::with_capacity(37);
    match (s, d) {
        (IpAddr::V4(s4), IpAddr::V4(d4)) => {
            out.push(FAMILY_TCP4);
            out.extend_from_slice(&s4.octets());
            out.extend_from_slice(&d4.octets());
        }
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(FAMILY_TCP6);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}
