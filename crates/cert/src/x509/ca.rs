//! The X.509 CA: issuing client and server certificates.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use der::asn1::{GeneralizedTime, ObjectIdentifier, UtcTime};
use der::pem::LineEnding;
use der::{DateTime, Decode, Encode};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use signature::{RandomizedSigner, Signer};
use spki::SubjectPublicKeyInfoRef;

use super::derw::{cons, extension, oid, rdn, seq, tlv, uint};
use super::walk::cert_parts;
use super::{
    LOGIN_IP_OID, PINNED_ENDPOINT_OID, PINNED_IP_OID, Profile, TELEPORT_LOGIN_IP_OID,
    TELEPORT_PINNED_IP_OID,
};
use crate::{Error, Result};

const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const PROPAGATION_FRONT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(super::PROPAGATION_FRONT_EKU);
const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// UTF8String, PrintableString.
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;

#[derive(Clone)]
enum CaKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl CaKey {
    fn spki_der(&self) -> Result<Vec<u8>> {
        let doc = match self {
            CaKey::P256(k) => k.verifying_key().to_public_key_der(),
            CaKey::Ed25519(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| Error::Key {
            reason: format!("encode CA public key: {e}"),
        })?;
        Ok(doc.as_bytes().to_vec())
    }

    fn algorithm(&self) -> Vec<u8> {
        match self {
            CaKey::P256(_) => seq(&[&oid(&ECDSA_WITH_SHA256)]),
            CaKey::Ed25519(_) => seq(&[&oid(&ED25519)]),
        }
    }

    fn sign<R: CryptoRng + ?Sized>(&self, tbs: &[u8], rng: &mut R) -> Result<Vec<u8>> {
        let fail = |e: signature::Error| Error::Key {
            reason: format!("signing failed: {e}"),
        };
        Ok(match self {
            CaKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign_with_rng(rng, tbs).map_err(fail)?;
                sig.to_der().as_bytes().to_vec()
            }
            CaKey::Ed25519(k) => {
                let sig: ed25519_dalek::Signature = k.try_sign(tbs).map_err(fail)?;
                sig.to_bytes().to_vec()
            }
        })
    }

    /// Signs `tbs` and wraps it into a Certificate.
    fn certificate<R: CryptoRng + ?Sized>(&self, tbs: &[u8], rng: &mut R) -> Result<Vec<u8>> {
        let sig = self.sign(tbs, rng)?;
        let mut bits = Vec::with_capacity(sig.len() + 1);
        bits.push(0);
        bits.extend_from_slice(&sig);
        Ok(seq(&[tbs, &self.algorithm(), &tlv(0x03, &bits)]))
    }
}

/// An X.509 certificate authority for client certificates (and the
/// server's own certificate). P-256 by default, Ed25519 supported.
#[derive(Clone)]
pub struct X509Ca {
    key: CaKey,
    cert_der: Vec<u8>,
    subject: Vec<u8>,
    key_id: Vec<u8>,
}

impl std::fmt::Debug for X509Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Ca")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The SubjectKeyIdentifier of a SubjectPublicKeyInfo: the leftmost 160
/// bits of the SHA-256 of the subjectPublicKey bits (RFC 7093, method 1).
fn key_id(spki_der: &[u8]) -> Result<Vec<u8>> {
    let spki =
        SubjectPublicKeyInfoRef::from_der(spki_der).map_err(Error::der("SubjectPublicKeyInfo"))?;
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    Ok(digest.get(..20).unwrap_or_default().to_vec())
}

fn time(unix: u64) -> Result<Vec<u8>> {
    let dt = DateTime::from_unix_duration(Duration::from_secs(unix))
        .map_err(Error::der("validity time"))?;
    // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    let enc = if dt.year() < 2050 {
        UtcTime::from_date_time(dt).and_then(|t| t.to_der())
    } else {
        GeneralizedTime::from_date_time(dt).to_der()
    };
    enc.map_err(Error::der("validity time"))
}

fn validity(not_before: u64, not_after: u64) -> Result<Vec<u8>> {
    if not_before >= not_after {
        return Err(Error::request(
            "validity",
            format!("not_before {not_before} is not before not_after {not_after}"),
        ));
    }
    Ok(seq(&[&time(not_before)?, &time(not_after)?]))
}

fn check_spki(spki_der: &[u8]) -> Result<()> {
    let spki =
        SubjectPublicKeyInfoRef::from_der(spki_der).map_err(Error::der("subject public key"))?;
    if spki.subject_public_key.raw_bytes().is_empty() {
        return Err(Error::request("spki_der", "empty public key"));
    }
    Ok(())
}

fn ip_printable(ip: IpAddr) -> Vec<u8> {
    tlv(PRINTABLE, ip.to_string().as_bytes())
}

impl X509Ca {
    fn self_signed<R: CryptoRng + ?Sized>(
        key: CaKey,
        common_name: &str,
        not_before: u64,
        not_after: u64,
        rng: &mut R,
    ) -> Result<X509Ca> {
        check_name("common_name", common_name)?;
        let spki = key.spki_der()?;
        let ski = key_id(&spki)?;
        let subject = seq(&[&rdn(&CN, UTF8, common_name)]);
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        if let Some(first) = serial.first_mut() {
            *first = (*first & 0x7f) | 0x01;
        }
        let exts = [
            extension(&BASIC_CONSTRAINTS, true, &seq(&[&[0x01, 0x01, 0xff]])),
            // keyCertSign (5) and cRLSign (6)
            extension(&KEY_USAGE, true, &[0x03, 0x02, 0x01, 0x06]),
            extension(&SUBJECT_KEY_ID, false, &tlv(0x04, &ski)),
        ]
        .concat();
        let tbs = seq(&[
            &[0xa0, 0x03, 0x02, 0x01, 0x02],
            &uint(&serial),
            &key.algorithm(),
            &subject,
            &validity(not_before, not_after)?,
            &subject,
            &spki,
            &cons(0xa3, &[&seq(&[&exts])]),
        ]);
        let cert_der = key.certificate(&tbs, rng)?;
        Ok(X509Ca {
            key,
            cert_der,
            subject,
            key_id: ski,
        })
    }

    /// A new self-signed P-256 CA named `common_name`, valid from
    /// `not_before` until `not_after` (unix seconds).
    ///
    /// # Errors
    /// [`Error::Request`] for an empty name or an empty window,
    /// [`Error::Der`] for times out of range.
    pub fn generate_p256<R: CryptoRng + ?Sized>(
        common_name: &str,
        not_before: u64,
        not_after: u64,
        rng: &mut R,
    ) -> Result<X509Ca> {
        let key = CaKey::P256(
            <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(rng),
        );
        X509Ca::self_signed(key, common_name, not_before, not_after, rng)
    }

    /// A new self-signed Ed25519 CA; see [`X509Ca::generate_p256`].
    ///
    /// # Errors
    /// As [`X509Ca::generate_p256`].
    pub fn generate_ed25519<R: CryptoRng + ?Sized>(
        common_name: &str,
        not_before: u64,
        not_after: u64,
        rng: &mut R,
    ) -> Result<X509Ca> {
        let key = CaKey::Ed25519(ed25519_dalek::SigningKey::generate(rng));
        X509Ca::self_signed(key, common_name, not_before, not_after, rng)
    }

    /// Loads a CA from its certificate (PEM `CERTIFICATE`) and its PKCS#8
    /// private key (PEM `PRIVATE KEY`, P-256 or Ed25519).
    ///
    /// # Errors
    /// [`Error::Key`] when the PEM labels are wrong, the key is of another
    /// type or does not match the certificate; [`Error::Der`] /
    /// [`Error::DerStructure`] when the certificate does not decode.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<X509Ca> {
        let (label, cert_der) =
            der::pem::decode_vec(cert_pem.as_bytes()).map_err(|e| Error::Key {
                reason: format!("CA certificate PEM: {e}"),
            })?;
        if label != "CERTIFICATE" {
            return Err(Error::Key {
                reason: format!("CA certificate PEM label is `{label}`, expected CERTIFICATE"),
            });
        }
        x509_cert::Certificate::from_der(&cert_der).map_err(Error::der("CA certificate"))?;
        let key = if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem) {
            CaKey::P256(k)
        } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(key_pem) {
            CaKey::Ed25519(k)
        } else {
            return Err(Error::Key {
                reason: "CA private key is not an unencrypted PKCS#8 P-256 or Ed25519 key".into(),
            });
        };
        let parts = cert_parts(&cert_der)?;
        if parts.spki.raw != key.spki_der()?.as_slice() {
            return Err(Error::Key {
                reason: "the private key does not match the CA certificate".into(),
            });
        }
        let subject = parts.subject.raw.to_vec();
        let key_id = key_id(parts.spki.raw)?;
        Ok(X509Ca {
            key,
            cert_der,
            subject,
            key_id,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE", LineEnding::LF, &self.cert_der).unwrap_or_default()
    }

    /// The CA private key, PKCS#8 PEM.
    ///
    /// # Errors
    /// [`Error::Key`] when encoding fails.
    pub fn key_pem(&self) -> Result<String> {
        let pem = match &self.key {
            CaKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            CaKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| Error::Key {
            reason: format!("encode CA private key: {e}"),
        })?;
        Ok(pem.as_str().to_owned())
    }

    fn common_exts(&self, spki_der: &[u8], eku: &ObjectIdentifier) -> Result<Vec<u8>> {
        Ok([
            extension(&BASIC_CONSTRAINTS, true, &seq(&[])),
            // digitalSignature (0)
            extension(&KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]),
            extension(&EXT_KEY_USAGE, false, &seq(&[&oid(eku)])),
            extension(&SUBJECT_KEY_ID, false, &tlv(0x04, &key_id(spki_der)?)),
            extension(&AUTHORITY_KEY_ID, false, &seq(&[&tlv(0x80, &self.key_id)])),
        ]
        .concat())
    }

    fn tbs(
        &self,
        serial: u64,
        not_before: u64,
        not_after: u64,
        subject: &[u8],
        spki: &[u8],
        exts: &[u8],
    ) -> Result<Vec<u8>> {
        Ok(seq(&[
            &[0xa0, 0x03, 0x02, 0x01, 0x02],
            &uint(&serial.to_be_bytes()),
            &self.key.algorithm(),
            &self.subject,
            &validity(not_before, not_after)?,
            subject,
            spki,
            &cons(0xa3, &[&seq(&[exts])]),
        ]))
    }

    /// Issues a client certificate (DER) for `req`: subject CN = user, one
    /// O per role, EKU clientAuth (a front's for signed propagation instead,
    /// when `req` asks for it), KeyUsage digitalSignature, SKI/AKI, and the
    /// pin and login IP in the layout of `req`'s [`Profile`].
    ///
    /// # Errors
    /// [`Error::Key`] when signing fails, [`Error::Der`] for times out of
    /// range.
    pub fn issue_client<R: CryptoRng + ?Sized>(
        &self,
        req: &super::ClientCertRequest,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let mut subject: Vec<Vec<u8>> = vec![rdn(&CN, UTF8, &req.user)];
        for role in &req.roles {
            subject.push(rdn(&O, UTF8, role));
        }
        let eku = if req.front {
            &PROPAGATION_FRONT
        } else {
            &CLIENT_AUTH
        };
        let mut exts = self.common_exts(&req.spki_der, eku)?;
        let ippin = matches!(req.profile, Profile::Ippin | Profile::Both);
        let teleport = matches!(req.profile, Profile::Teleport | Profile::Both);
        if teleport {
            if let Some(ip) = req.login_ip {
                subject.push(rdn(&TELEPORT_LOGIN_IP_OID, PRINTABLE, &ip.to_string()));
            }
            if let Some(net) = req.pinned {
                // `build` refused a network here; checked again so that no
                // path writes a widened or narrowed pin.
                let one = check_pin_network(net, req.profile)?;
                subject.push(rdn(
                    &TELEPORT_PINNED_IP_OID,
                    PRINTABLE,
                    &one.addr().to_string(),
                ));
            }
        }
        if ippin {
            if let Some(net) = req.pinned {
                let text = crate::ip::canonical_net_text(net);
                exts.extend(extension(
                    &PINNED_IP_OID,
                    false,
                    &tlv(PRINTABLE, text.as_bytes()),
                ));
            }
            if let Some(ip) = req.login_ip {
                exts.extend(extension(&LOGIN_IP_OID, false, &ip_printable(ip)));
            }
            if let (Some(_), Some(name)) = (req.pinned, &req.endpoint) {
                exts.extend(extension(
                    &PINNED_ENDPOINT_OID,
                    false,
                    &tlv(PRINTABLE, name.as_bytes()),
                ));
            }
        }
        let subject = seq(&subject.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let tbs = self.tbs(
            req.serial,
            req.not_before,
            req.not_after,
            &subject,
            &req.spki_der,
            &exts,
        )?;
        self.key.certificate(&tbs, rng)
    }

    /// Issues a server certificate (DER): subject CN = first DNS name (or
    /// empty), subjectAltName with the DNS names and IPs, EKU serverAuth.
    ///
    /// # Errors
    /// As [`X509Ca::issue_client`].
    pub fn issue_server<R: CryptoRng + ?Sized>(
        &self,
        req: &ServerCertRequest,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let subject = match req.dns_names.first() {
            Some(name) => seq(&[&rdn(&CN, UTF8, name)]),
            None => seq(&[]),
        };
        let mut names = Vec::new();
        for name in &req.dns_names {
            names.extend(tlv(0x82, name.as_bytes()));
        }
        for ip in &req.ip_addresses {
            match ip {
                IpAddr::V4(v4) => names.extend(tlv(0x87, &v4.octets())),
                IpAddr::V6(v6) => names.extend(tlv(0x87, &v6.octets())),
            }
        }
        let mut exts = self.common_exts(&req.spki_der, &SERVER_AUTH)?;
        // critical when the subject is empty (RFC 5280 4.2.1.6)
        exts.extend(extension(
            &SUBJECT_ALT_NAME,
            req.dns_names.is_empty(),
            &seq(&[&names]),
        ));
        let tbs = self.tbs(
            req.serial,
            req.not_before,
            req.not_after,
            &subject,
            &req.spki_der,
            &exts,
        )?;
        self.key.certificate(&tbs, rng)
    }

    /// Signs an arbitrary DER `TBSCertificate` with the CA key and returns
    /// the Certificate DER.
    ///
    /// Nothing about the content is checked: this is for test fixtures
    /// (malformed certificates a correct CA never issues) and special
    /// cases. Prefer [`X509Ca::issue_client`].
    ///
    /// # Errors
    /// [`Error::Key`] when signing fails.
    pub fn danger_sign_tbs<R: CryptoRng + ?Sized>(
        &self,
        tbs_der: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        self.key.certificate(tbs_der, rng)
    }

    /// The DER `SEQUENCE` of the CA's subject (the issuer of what it signs).
    pub fn subject_der(&self) -> &[u8] {
        &self.subject
    }
}

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::request(field, "empty"));
    }
    if value.chars().count() > 64 {
        return Err(Error::request(
            field,
            "longer than 64 characters (X.520 upper bound)",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::request(field, "control character"));
    }
    Ok(())
}

/// A request for a server certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCertRequest {
    /// DNS names (subjectAltName dNSName).
    pub dns_names: Vec<String>,
    /// IP addresses (subjectAltName iPAddress).
    pub ip_addresses: Vec<IpAddr>,
    /// The server's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds).
    pub not_after: u64,
    /// Serial number (positive).
    pub serial: u64,
}

impl ServerCertRequest {
    /// A checked request.
    ///
    /// # Errors
    /// [`Error::Request`] when there is no name, a DNS name is not a
    /// plausible host name, the key does not decode, the window is empty or
    /// the serial is 0.
    pub fn new(
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
        spki_der: Vec<u8>,
        not_before: u64,
        not_after: u64,
        serial: u64,
    ) -> Result<ServerCertRequest> {
        if dns_names.is_empty() && ip_addresses.is_empty() {
            return Err(Error::request("names", "no DNS name and no IP address"));
        }
        for name in &dns_names {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                });
            if !ok {
                return Err(Error::request(
                    "dns_names",
                    format!("`{}` is not a host name", name.escape_debug()),
                ));
            }
        }
        check_spki(&spki_der)?;
        if not_before >= not_after {
            return Err(Error::request(
                "validity",
                "not_before is not before not_after",
            ));
        }
        if serial == 0 {
            return Err(Error::request("serial", "must be positive"));
        }
        Ok(ServerCertRequest {
            dns_names,
            ip_addresses: ip_addresses
                .into_iter()
                .map(|ip| ip.to_canonical())
                .collect(),
            spki_der,
            not_before,
            not_after,
            serial,
        })
    }
}

/// A new P-256 key pair for a client: (PKCS#8 private key PEM,
/// SubjectPublicKeyInfo PEM `PUBLIC KEY`).
///
/// # Errors
/// [`Error::Key`] when encoding fails.
pub fn generate_key_pair_p256<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<(String, String)> {
    let key = <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::generate_from_rng(rng);
    let fail = |e: String| Error::Key { reason: e };
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    Ok((private.as_str().to_owned(), public))
}

/// The DER of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
///
/// # Errors
/// [`Error::Key`] for another PEM label or bad PEM, [`Error::Der`] when the
/// contents are not a SubjectPublicKeyInfo.
pub fn spki_der_from_pem(pem: &str) -> Result<Vec<u8>> {
    let (label, der) = der::pem::decode_vec(pem.as_bytes()).map_err(|e| Error::Key {
        reason: format!("public key PEM: {e}"),
    })?;
    if label != "PUBLIC KEY" {
        return Err(Error::Key {
            reason: format!("PEM label is `{label}`, expected PUBLIC KEY"),
        });
    }
    check_spki(&der)?;
    Ok(der)
}

/// Checks and canonicalises a pin network for `profile`: an IPv4-mapped
/// network becomes IPv4; host bits set or prefix length 0 are refused; a
/// network wider than one address is refused for the Teleport layout.
pub(crate) fn check_pin_network(net: IpNet, profile: Profile) -> Result<IpNet> {
    if net.trunc() != net {
        return Err(Error::request(
            "pinned_network",
            format!("host bits set beyond the prefix in {net}"),
        ));
    }
    let canonical = crate::ip::canonical_net(net);
    if canonical.prefix_len() == 0 {
        return Err(Error::request(
            "pinned_network",
            "prefix length 0 (a whole address family) pins nothing",
        ));
    }
    let one_address = canonical.prefix_len() == canonical.max_prefix_len();
    match profile {
        Profile::Teleport | Profile::Both if !one_address => Err(Error::ProfileCannotPinNetwork {
            profile: if profile == Profile::Teleport {
                "teleport"
            } else {
                "both"
            },
            pin: canonical,
        }),
        _ => Ok(canonical),
    }
}

pub(crate) fn check_client_request(
    user: &str,
    roles: &[String],
    spki_der: &[u8],
    not_before: u64,
    not_after: u64,
    serial: u64,
) -> Result<()> {
    check_name("user", user)?;
    for (i, role) in roles.iter().enumerate() {
        check_name("roles", role)?;
        if roles.get(..i).unwrap_or_default().contains(role) {
            return Err(Error::request("roles", format!("duplicate role `{role}`")));
        }
    }
    check_spki(spki_der)?;
    if not_before >= not_after {
        return Err(Error::request(
            "validity",
            format!("not_before {not_before} is not before not_after {not_after}"),
        ));
    }
    if serial == 0 {
        return Err(Error::request("serial", "must be positive"));
    }
    // make sure the times encode
    validity(not_before, not_after)?;
    Ok(())
}
