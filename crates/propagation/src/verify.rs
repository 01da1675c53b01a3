//! Verification of a signed PROXY v2 header (version 2: a grant signed by
//! the front, a MAC per connection), sans-IO: the cluster CA, the static
//! key, the audience, the window and the caches are state; the time is a
//! parameter.
//!
//! A signed header comes with no TLS, so this module carries the small
//! certificate check it needs: the
//! issuer name equals the CA's subject, the signature algorithm is the
//! CA's (ECDSA P-256 with SHA-256, or Ed25519), and the CA's key verifies
//! the signature over the `TBSCertificate` (with `ring`, the crypto
//! provider the server already uses for TLS).

use crate::Error;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use der::{Decode, Encode, Tagged};

use crate::grants::{DEFAULT_GRANT_CACHE_CAPACITY, GrantCache, VerifiedGrant};
use crate::key::{PublicKey, SecretKey, mac_key};
use crate::replay::{ReplayCache, ReplayRefusal};
use crate::wire::{self, FAMILY_TCP4, FAMILY_TCP6, MAX_GRANT_LIFETIME};
use crate::{Link, PROXY_CN_PREFIX, PROXY_ROLE, Reason, Rejection};

const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// How many verified front certificates are remembered (their CA
/// signature is then not checked again; validity and role always are).
pub const CERT_CACHE_CAPACITY: usize = 16;

/// The default capacity of the replay cache.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaAlg {
    P256,
    Ed25519,
}

/// The cluster CA as a verifier needs it: its subject and public key.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    subject_der: Vec<u8>,
    alg: CaAlg,
    key: Vec<u8>,
}

impl TrustAnchor {
    /// Reads the CA certificate (DER).
    ///
    /// # Errors
    /// [`Error`] when it does not decode or its key is unsupported.
    pub fn from_der(ca_der: &[u8]) -> Result<TrustAnchor, Error> {
        let cert = x509_cert::Certificate::from_der(ca_der)
            .map_err(|e| Error::AnchorDecode(e.to_string()))?;
        let tbs = cert.tbs_certificate();
        let subject_der = tbs
            .subject()
            .to_der()
            .map_err(|e| Error::AnchorDecode(e.to_string()))?;
        let spki = tbs.subject_public_key_info();
        let alg = spki.algorithm.oid.to_string();
        let alg = match alg.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                if curve.as_deref() != Some(OID_P256) {
                    return Err(Error::AnchorAlgorithm(format!(
                        "EC on curve {}",
                        curve.unwrap_or_default()
                    )));
                }
                CaAlg::P256
            }
            OID_ED25519 => CaAlg::Ed25519,
            other => return Err(Error::AnchorAlgorithm(other.to_owned())),
        };
        let key = spki.subject_public_key.raw_bytes().to_vec();
        Ok(TrustAnchor {
            subject_der,
            alg,
            key,
        })
    }

    /// Whether the CA signed `cert`: issuer name, algorithm and signature.
    fn verify_issued(&self, cert: &x509_cert::Certificate) -> Result<(), String> {
        let tbs = cert.tbs_certificate();
        let issuer = tbs.issuer().to_der().map_err(|e| e.to_string())?;
        if issuer != self.subject_der {
            return Err("issued by another CA (issuer name differs)".into());
        }
        if cert.signature_algorithm() != tbs.signature() {
            return Err("signatureAlgorithm differs from the TBSCertificate's".into());
        }
        let (expected, ring_alg): (&str, &dyn ring::signature::VerificationAlgorithm) =
            match self.alg {
                CaAlg::P256 => (OID_ECDSA_SHA256, &ring::signature::ECDSA_P256_SHA256_ASN1),
                CaAlg::Ed25519 => (OID_ED25519, &ring::signature::ED25519),
            };
        if cert.signature_algorithm().oid.to_string() != expected {
            return Err(format!(
                "signed with {}, not the CA's algorithm",
                cert.signature_algorithm().oid
            ));
        }
        let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
        let sig = cert
            .signature()
            .as_bytes()
            .ok_or_else(|| "signature BIT STRING has unused bits".to_owned())?;
        ring::signature::UnparsedPublicKey::new(ring_alg, &self.key)
            .verify(&tbs_der, sig)
            .map_err(|_| "the CA's key does not verify its signature".to_owned())
    }
}

/// What a verified front certificate says.
#[derive(Debug, Clone)]
struct FrontCert {
    name: String,
    is_proxy: bool,
    not_before: u64,
    not_after: u64,
    key: Option<ed25519_dalek::VerifyingKey>,
}

/// A verified signed header: the client address it vouches for.
///
/// Only [`Verifier`] makes one (its fields are private), so a value of this type is proof
/// that a header verified: a caller that takes `&Verified` (as `ippin-access`'s
/// `observed::from_signed` does) cannot be handed an address read from anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    client: SocketAddr,
    destination: SocketAddr,
    /// The endpoint's name and its length (0: none).
    endpoint: ([u8; wire::MAX_ENDPOINT_LEN], u8),
}

impl Verified {
    /// The cloud private endpoint the client came through to the front, when the front said
    /// one (`vpce-…`, `azure:N`, `gcp:N`): pins are bound to it.
    pub fn endpoint(&self) -> Option<&str> {
        let (buf, len) = &self.endpoint;
        // Only a decoded name (ASCII) is stored.
        buf.get(..usize::from(*len))
            .filter(|b| !b.is_empty())
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The client (canonical form: an IPv4-mapped address becomes IPv4).
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The address the client connected to, as the front saw it.
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }
}

/// The verifier of one listener: trust anchor, static key, audience,
/// window, caches.
///
/// # Decision table (first failing row wins; cheap checks first, so bytes
/// that fail them cost no public-key operation)
///
/// | check | refusal code |
/// |-------|--------------|
/// | one TLV 0xE7, v2 PROXY command, TCP4/TCP6, block and grant decode | `signed_header_malformed` |
/// | grant's audience = this listener's | `signed_header_wrong_audience` |
/// | grant's inner key = this listener's public key | `signed_grant_wrong_key` |
/// | block's address block = header's, byte for byte | `signed_address_mismatch` |
/// | block's connection = the connection the header arrived on | `signed_connection_mismatch` |
/// | \|now − timestamp\| ≤ window | `signed_header_stale` |
/// | grant cache hit (same ephemeral key, same grant bytes, still valid): skip to the MAC | |
/// | certificate decodes, key is Ed25519 | `proxy_cert_invalid` |
/// | certificate signed by the cluster CA | `proxy_cert_untrusted` |
/// | certificate valid at `now` | `proxy_cert_expired` |
/// | role `proxy` (O) and CN `proxy:NAME` | `proxy_cert_not_proxy` |
/// | grant signature verifies | `signed_header_bad_signature` |
/// | not_before − window ≤ now ≤ not_after, lifetime ≤ 1 h | `signed_grant_expired` |
/// | X25519 not all-zero (then HKDF; the grant enters the cache) | `signed_header_malformed` |
/// | MAC verifies (constant time) | `signed_header_bad_signature` |
/// | not replayed on this connection's 4-tuple (see [`crate::replay`]) | `signed_header_replayed` |
#[derive(Debug)]
pub struct Verifier {
    anchor: TrustAnchor,
    secret: SecretKey,
    public: PublicKey,
    audience: String,
    window: u64,
    certs: Mutex<HashMap<Vec<u8>, FrontCert>>,
    grants: Mutex<GrantCache>,
    replay: Mutex<ReplayCache>,
}

fn reject(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// What [`Verifier::front_cert`] reads of a front certificate: its CN (one,
/// a UTF8String or PrintableString), its O values (each one of those) and
/// its validity. The same reading as `ippin_cert::x509::client_identity`,
/// whose pin and shape checks do not apply to a front's certificate.
struct Subject {
    user: String,
    roles: Vec<String>,
    not_before: u64,
    not_after: u64,
}

/// The object identifiers read here, compared by their encoding (a non-minimal encoding of an
/// arc is another OID, never the CN).
const OID_CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_O: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_BASIC_CONSTRAINTS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_FRONT_USAGE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap(crate::PROPAGATION_FRONT_EKU);

/// Whether `der` is a certificate with a front's profile, role, CN and key usage.
pub(crate) fn is_front_certificate(der: &[u8]) -> bool {
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return false;
    };
    subject_and_validity(&cert).is_ok_and(|id| {
        id.roles.iter().any(|r| r == PROXY_ROLE)
            && id.user.starts_with(PROXY_CN_PREFIX)
            && has_front_usage(&cert)
    })
}

/// Whether the certificate's extended key usage is exactly the front's
/// ([`PROPAGATION_FRONT_EKU`](crate::PROPAGATION_FRONT_EKU)). A certificate without the
/// extension, or with other usages too, is not a front's: a user's certificate (TLS client
/// authentication) never passes, whatever its name and roles.
fn has_front_usage(cert: &x509_cert::Certificate) -> bool {
    let Some(ext) = cert
        .tbs_certificate()
        .extensions()
        .map(|e| e.as_slice())
        .unwrap_or_default()
        .iter()
        .find(|e| e.extn_id == OID_EXT_KEY_USAGE)
    else {
        return false;
    };
    x509_cert::ext::pkix::ExtendedKeyUsage::from_der(ext.extn_value.as_bytes())
        .is_ok_and(|eku| eku.0 == [OID_FRONT_USAGE])
}

/// The certificate profile a front's certificate must have (RFC 5280 §4.1, §4.2): version 3,
/// each extension at most once, no critical extension this reader does not understand (only
/// basicConstraints and keyUsage may be critical), and not a CA certificate (`cA` false).
fn check_profile(cert: &x509_cert::Certificate) -> Result<(), String> {
    let tbs = cert.tbs_certificate();
    if tbs.version() != x509_cert::certificate::Version::V3 {
        return Err("not an X.509 v3 certificate".into());
    }
    let mut seen = Vec::new();
    for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or_default() {
        if seen.contains(&ext.extn_id) {
            return Err(format!("extension {} appears twice", ext.extn_id));
        }
        seen.push(ext.extn_id);
        if ext.critical && ext.extn_id != OID_BASIC_CONSTRAINTS && ext.extn_id != OID_KEY_USAGE {
            return Err(format!("unknown critical extension {}", ext.extn_id));
        }
        if ext.extn_id == OID_BASIC_CONSTRAINTS {
            let bc = x509_cert::ext::pkix::BasicConstraints::from_der(ext.extn_value.as_bytes())
                .map_err(|e| format!("basicConstraints: {e}"))?;
            if bc.ca {
                return Err("a CA certificate cannot be a front".into());
            }
        }
    }
    Ok(())
}

fn subject_and_validity(cert: &x509_cert::Certificate) -> Result<Subject, String> {
    check_profile(cert)?;
    let tbs = cert.tbs_certificate();
    let mut user = None;
    let mut roles = Vec::new();
    for atv in tbs.subject().iter() {
        let is_cn = atv.oid == OID_CN;
        if !is_cn && atv.oid != OID_O {
            continue;
        }
        let text = match atv.value.tag() {
            der::Tag::Utf8String | der::Tag::PrintableString => {
                std::str::from_utf8(atv.value.value()).ok()
            }
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "subject: attribute {} is not a UTF8String or PrintableString",
                atv.oid
            )
        })?;
        if is_cn {
            if user.is_some() {
                return Err("subject: more than one CN".into());
            }
            user = Some(text.to_owned());
        } else {
            roles.push(text.to_owned());
        }
    }
    let user = user.ok_or_else(|| "subject: no CN".to_owned())?;
    let validity = tbs.validity();
    Ok(Subject {
        user,
        roles,
        not_before: validity.not_before.to_unix_duration().as_secs(),
        not_after: validity.not_after.to_unix_duration().as_secs(),
    })
}

/// The client and destination of an address block.
fn parse_block(block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let (&family, rest) = block.split_first()?;
    let port = |at: usize| -> Option<u16> {
        let b = rest.get(at..at + 2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    };
    match family {
        FAMILY_TCP4 => {
            let ip = |at: usize| -> Option<IpAddr> {
                let b: [u8; 4] = rest.get(at..at + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            };
            Some((
                SocketAddr::new(ip(0)?, port(8)?),
                SocketAddr::new(ip(4)?, port(10)?),
            ))
        }
        FAMILY_TCP6 => {
            let ip = |at: usize| -> Option<IpAddr> {
                let b: [u8; 16] = rest.get(at..at + 16)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            };
            Some((
                SocketAddr::new(ip(0)?.to_canonical(), port(32)?),
                SocketAddr::new(ip(16)?.to_canonical(), port(34)?),
            ))
        }
        _ => None,
    }
}

impl Verifier {
    /// A verifier for headers addressed to `audience` under grants for the
    /// static key `secret`, fresh within `window_secs`, remembering at most
    /// `replay_capacity` connection 4-tuples and [`DEFAULT_GRANT_CACHE_CAPACITY`] grants.
    ///
    /// A verifier of a process that runs for real is made with [`Verifier::started_at`] too
    /// (`Verifier::new(…).started_at(now)`): without it, a restarted process accepts again,
    /// within the window, the headers its predecessor accepted.
    pub fn new(
        anchor: TrustAnchor,
        secret: SecretKey,
        audience: &str,
        window_secs: u64,
        replay_capacity: usize,
    ) -> Verifier {
        Verifier {
            anchor,
            public: secret.public_key(),
            secret,
            audience: audience.to_owned(),
            window: window_secs,
            certs: Mutex::new(HashMap::new()),
            grants: Mutex::new(GrantCache::new(DEFAULT_GRANT_CACHE_CAPACITY)),
            replay: Mutex::new(ReplayCache::new(replay_capacity, window_secs)),
        }
    }

    /// The same verifier, started at `now` (Unix seconds): headers written at or before it
    /// are refused until the window has passed ([`ReplayCache::started_at`]), so that a
    /// verifier made at a restart does not accept again, within the window, the headers its
    /// predecessor accepted. Every long-running verifier should be made with it.
    #[must_use]
    pub fn started_at(self, now: u64) -> Verifier {
        let replay = self
            .replay
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .started_at(now);
        Verifier {
            replay: Mutex::new(replay),
            ..self
        }
    }

    /// The same verifier with a grant cache of `capacity` entries.
    #[must_use]
    pub fn with_grant_cache_capacity(self, capacity: usize) -> Verifier {
        Verifier {
            grants: Mutex::new(GrantCache::new(capacity)),
            ..self
        }
    }

    /// This listener's audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// This listener's static public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// How many links the replay state remembers now.
    pub fn replay_len(&self) -> usize {
        self.replay.lock().map_or(0, |c| c.len())
    }

    /// How many verified grants the grant cache holds now.
    pub fn grant_cache_len(&self) -> usize {
        self.grants.lock().map_or(0, |c| c.len())
    }

    fn front_cert(&self, der: &[u8]) -> Result<FrontCert, Rejection> {
        if let Ok(cache) = self.certs.lock()
            && let Some(c) = cache.get(der)
        {
            return Ok(c.clone());
        }
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| reject(Reason::CertInvalid, format!("does not decode: {e}")))?;
        self.anchor
            .verify_issued(&cert)
            .map_err(|e| reject(Reason::CertUntrusted, e))?;
        let id = subject_and_validity(&cert).map_err(|e| reject(Reason::CertInvalid, e))?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        let key = if spki.algorithm.oid.to_string() == OID_ED25519 {
            spki.subject_public_key
                .raw_bytes()
                .try_into()
                .ok()
                .and_then(|b: [u8; 32]| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
        } else {
            None
        };
        let front = FrontCert {
            is_proxy: id.roles.iter().any(|r| r == PROXY_ROLE)
                && id.user.starts_with(PROXY_CN_PREFIX)
                && has_front_usage(&cert),
            name: id.user,
            not_before: id.not_before,
            not_after: id.not_after,
            key,
        };
        if let Ok(mut cache) = self.certs.lock() {
            if cache.len() >= CERT_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(der.to_vec(), front.clone());
        }
        Ok(front)
    }

    /// The full check of a grant not in the cache: certificate, signature,
    /// validity, key agreement. On success the grant enters the cache and
    /// its MAC key is returned.
    fn verify_grant(
        &self,
        block: &wire::SignedBlock<'_>,
        now: u64,
    ) -> Result<ring::hmac::Key, Rejection> {
        let grant = &block.grant;
        let front = self.front_cert(grant.cert_der)?;
        if now < front.not_before || now > front.not_after {
            return Err(reject(
                Reason::CertExpired,
                format!(
                    "`{}` is valid from {} to {}, now is {now}",
                    front.name, front.not_before, front.not_after
                ),
            ));
        }
        if !front.is_proxy {
            return Err(reject(
                Reason::NotProxy,
                format!(
                    "`{}` lacks role `{PROXY_ROLE}`, a CN `{PROXY_CN_PREFIX}NAME` or the front's \
                     extended key usage {} alone",
                    front.name,
                    crate::PROPAGATION_FRONT_EKU
                ),
            ));
        }
        let key = front.key.ok_or_else(|| {
            reject(
                Reason::CertInvalid,
                format!("`{}`: the key is not Ed25519", front.name),
            )
        })?;
        let sig = ed25519_dalek::Signature::from_slice(grant.signature).map_err(|_| {
            reject(
                Reason::BadSignature,
                format!(
                    "grant signature of {} bytes is not Ed25519",
                    grant.signature.len()
                ),
            )
        })?;
        // Cofactorless verification with canonical scalars (dalek's
        // `verify`): the key comes from a CA-issued certificate, and a
        // malleated grant signature changes the grant's bytes, hence its
        // MAC key: the front's MACs no longer verify under it.
        ed25519_dalek::Verifier::verify(&key, &grant.transcript(), &sig).map_err(|_| {
            reject(
                Reason::BadSignature,
                format!("`{}`'s key does not verify the grant signature", front.name),
            )
        })?;
        let lifetime = grant.not_after.checked_sub(grant.not_before);
        if lifetime.is_none_or(|l| l > MAX_GRANT_LIFETIME)
            || now < grant.not_before.saturating_sub(self.window)
            || now > grant.not_after
        {
            return Err(reject(
                Reason::GrantExpired,
                format!(
                    "grant by `{}` valid {}..={} (at most {MAX_GRANT_LIFETIME}s), now is {now}, window {}s",
                    front.name, grant.not_before, grant.not_after, self.window
                ),
            ));
        }
        let shared = self
            .secret
            .agree(&PublicKey(grant.ephemeral))
            .ok_or_else(|| {
                reject(
                    Reason::Malformed,
                    format!(
                        "grant by `{}`: its ephemeral key is of small order",
                        front.name
                    ),
                )
            })?;
        let mac_key = mac_key(&shared, block.grant_bytes)
            .ok_or_else(|| reject(Reason::Malformed, "HKDF refused the key length"))?;
        let verified = VerifiedGrant::new(
            grant.ephemeral,
            block.grant_bytes,
            mac_key.clone(),
            front
                .not_before
                .max(grant.not_before.saturating_sub(self.window)),
            front.not_after.min(grant.not_after),
        );
        if let Ok(mut cache) = self.grants.lock() {
            cache.insert(verified, now);
        }
        Ok(mac_key)
    }

    /// Verifies a signed header at `now` (unix seconds) and, on success,
    /// records it in the replay state of its link.
    ///
    /// * `sent`: the header's family byte and address bytes exactly as
    ///   sent (for a v2 header, byte 13 and the address bytes from byte 16:
    ///   see [`address_block_for`](crate::address_block_for)).
    /// * `value`: the value of its one TLV [`TLV_TYPE`](crate::TLV_TYPE).
    /// * `link`: the connection the header arrived on, as this side's
    ///   socket sees it (peer = the front, local = this listener).
    ///
    /// The PROXY framing is the caller's to check first: the header is a v2
    /// PROXY command (not LOCAL) with TCP over IPv4 or IPv6, and carries
    /// exactly one TLV 0xE7 (refuse otherwise with [`Reason::Malformed`]).
    /// Call it once per header.
    ///
    /// # Errors
    /// The [`Rejection`] of the first failing check (see the table above).
    pub fn verify_block(
        &self,
        sent: &[u8],
        value: &[u8],
        link: Link,
        now: u64,
    ) -> Result<Verified, Rejection> {
        let block = wire::decode(value).map_err(|e| reject(Reason::Malformed, e.to_string()))?;
        if block.grant.audience != self.audience.as_bytes() {
            return Err(reject(
                Reason::WrongAudience,
                format!(
                    "granted for `{}`, this listener is `{}`",
                    String::from_utf8_lossy(block.grant.audience),
                    self.audience
                ),
            ));
        }
        if block.grant.inner_key != self.public.0 {
            return Err(reject(
                Reason::GrantWrongKey,
                "the grant names another inner key than this listener's",
            ));
        }
        if sent != block.addresses {
            return Err(reject(
                Reason::AddressMismatch,
                "the header's addresses are not the ones the front wrote in the block",
            ));
        }
        let link = link.canonical();
        let written_on = parse_block(block.connection);
        if written_on != Some((link.front, link.inner)) {
            let claimed = written_on.map_or_else(
                || "an unreadable connection".to_owned(),
                |(f, i)| format!("{f} -> {i}"),
            );
            return Err(reject(
                Reason::ConnectionMismatch,
                format!(
                    "written for the connection {claimed}, arrived on {} -> {}",
                    link.front, link.inner
                ),
            ));
        }
        if now.abs_diff(block.timestamp) > self.window {
            return Err(reject(
                Reason::Stale,
                format!(
                    "written at {}, now is {now}, window {}s",
                    block.timestamp, self.window
                ),
            ));
        }
        let cached = self
            .grants
            .lock()
            .ok()
            .and_then(|c| c.get(&block.grant.ephemeral, block.grant_bytes, now));
        let mac_key = match cached {
            Some(k) => k,
            None => self.verify_grant(&block, now)?,
        };
        ring::hmac::verify(&mac_key, &block.mac_input(), &block.mac).map_err(|_| {
            reject(
                Reason::BadSignature,
                "the MAC does not verify under the grant's key",
            )
        })?;
        let admitted = match self.replay.lock() {
            Ok(mut state) => state.admit(link, block.timestamp, block.nonce, now),
            // A poisoned lock: no decision can be made; refuse.
            Err(_) => Err(ReplayRefusal::Replayed),
        };
        if let Err(r) = admitted {
            let detail = match r {
                ReplayRefusal::Older => {
                    "older than the newest header accepted on this connection's 4-tuple"
                }
                ReplayRefusal::Burst => {
                    "too many headers on this connection's 4-tuple within one second"
                }
                ReplayRefusal::BelowFloor => {
                    "not newer than the replay state's floor (a link was forgotten early)"
                }
                _ => "this header was already accepted on this connection's 4-tuple",
            };
            return Err(reject(Reason::Replayed, detail));
        }
        let (client, destination) = parse_block(block.addresses)
            .ok_or_else(|| reject(Reason::Malformed, "address block"))?;
        // The decoder took a name or nothing: at most 32 bytes of lowercase letters, digits,
        // `-` and `:`.
        let mut endpoint = ([0u8; wire::MAX_ENDPOINT_LEN], 0u8);
        if let Some(dst) = endpoint.0.get_mut(..block.endpoint.len()) {
            dst.copy_from_slice(block.endpoint);
            endpoint.1 = u8::try_from(block.endpoint.len()).unwrap_or(0);
        }
        Ok(Verified {
            client,
            destination,
            endpoint,
        })
    }
}
