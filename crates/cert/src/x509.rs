//! X.509 client certificates carrying the pinned IP.
//!
//! # Layouts
//!
//! **ippin** ([`Profile::Ippin`], the default): the pin is the
//! non-critical extension [`PINNED_IP_OID`] (1.3.9999.1.9) and the login IP
//! the non-critical extension [`LOGIN_IP_OID`] (1.3.9999.1.9.1), each value
//!
//! ```text
//! PinnedIp ::= PrintableString   -- canonical IP text: dotted-decimal IPv4,
//!                                -- RFC 5952 IPv6; no port, zone, brackets;
//!                                -- or a network: canonical CIDR text
//! LoginIp  ::= PrintableString   -- canonical IP text; informational only
//! ```
//!
//! A network pin (a role's `pin_source_ip_prefix`) is written
//! `<network address>/<len>`: the address in canonical text with every host
//! bit zero, `len` in decimal without leading zeros, from 1 to 31 (IPv4) or
//! 127 (IPv6); one address is always written without a length. Read it with
//! [`pin`] / [`pin_fast`]; [`pinned_ip`] / [`pinned_ip_fast`] return one
//! address and refuse a network pin ([`Error::PinIsNetwork`]), so a caller
//! written for one address never mistakes a network for "unpinned".
//!
//! **Teleport** ([`Profile::Teleport`]): subject attributes, each in its own
//! RDN after CN and O: [`TELEPORT_LOGIN_IP_OID`] (1.3.9999.1.9, the *login*
//! IP, informational) and [`TELEPORT_PINNED_IP_OID`] (1.3.9999.2.15, the
//! pin), PrintableString (UTF8String accepted when reading).
//!
//! Both readers ([`client_identity`] / [`pinned_ip`], and
//! [`pinned_ip_fast`]) always read both layouts: a Teleport-pinned
//! certificate is never "unpinned" to a reader that expected ippin's. When
//! both layouts are present they must agree exactly, or the certificate is
//! refused ([`Error::LayoutMismatch`]). The Teleport layout holds one
//! address: a network pin cannot be issued in it
//! ([`Error::ProfileCannotPinNetwork`]), and an ippin network pin beside a
//! Teleport attribute never agrees with it.
//!
//! Roles travel as Organization (O) attributes, one RDN each after CN, as
//! Teleport carries its roles.
//!
//! # Strictness
//!
//! Exactly one instance of each extension and attribute (a second is
//! [`Error::DuplicateExtension`] / [`Error::DuplicateAttribute`], never
//! "unpinned"); the extensions must be non-critical; the value must be one
//! DER `PrintableString` TLV with a minimal length and nothing after it;
//! the text must be the canonical IP text (`01.2.3.4`, `::ffff:1.2.3.4`,
//! `2001:DB8::1`, `1.2.3.4 ` are refused).

#[cfg(feature = "issue")]
mod ca;
#[cfg(feature = "issue")]
mod derw;
mod pin;
mod walk;

use std::net::IpAddr;

use der::asn1::{ObjectIdentifier, PrintableStringRef};
use der::oid::AssociatedOid;
use der::{
    Decode, DecodeValue, EncodeValue, FixedTag, Header, Length, Reader, Tag, Tagged, Writer,
};
use ipnet::IpNet;

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
pub use ca::{ServerCertRequest, X509Ca, generate_key_pair_p256, spki_der_from_pem};

use crate::ip::{canonical_net_text, parse_canonical_net_reason, parse_canonical_reason};
use crate::{Error, Result};

/// The ippin pinned-IP extension: 1.3.9999.1.9 (non-critical).
pub const PINNED_IP_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.9999.1.9");

/// The ippin login-IP extension: 1.3.9999.1.9.1 (non-critical,
/// informational). A child arc of the pin's OID: Teleport assigns only
/// two-arc suffixes under 1.3.9999 (1.3.9999.1.x, 1.3.9999.2.x, ...), so
/// nothing it issues uses this OID, and both ippin extensions sit under
/// one arc.
pub const LOGIN_IP_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.9999.1.9.1");

/// The ippin pinned-endpoint extension: 1.3.9999.1.9.3 (non-critical). Beside a pin
/// issued through a cloud load balancer's private endpoint (AWS VPC endpoint, Azure Private
/// Link, GCP Private Service Connect), the endpoint's name as a `PrintableString`
/// (`vpce-0123456789abcdef0`, `azure:1234`, `gcp:5678`: 1 to 32 lowercase letters, digits,
/// `-` and `:`; see [`is_endpoint_name`]). Behind such an endpoint the client's address is
/// one of the consumer's own network, which another consumer may also use: the pin holds
/// only through the same endpoint. Only with a pin, at most once, ippin layout only.
pub const PINNED_ENDPOINT_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.9999.1.9.3");

/// Whether `name` is a private endpoint's name as certificates carry it
/// ([`PINNED_ENDPOINT_OID`], and the SSH critical option `pinned-endpoint@ippin`): 1 to 32 bytes of
/// lowercase ASCII letters, digits, `-` and `:`.
pub fn is_endpoint_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b':'))
}

/// The extended key usage of a front's certificate for signed propagation: 1.3.9999.1.9.2
/// (as text, for crates that compare it without this one), under the same arc as
/// [`LOGIN_IP_OID`]. A certificate issued with `ClientCertRequestBuilder::propagation_front`
/// (feature `issue`) has this usage alone; every other client
/// certificate has TLS client authentication (1.3.6.1.5.5.7.3.2) and not this.
pub const PROPAGATION_FRONT_EKU: &str = "1.3.9999.1.9.2";

/// Teleport's subject attribute for the login IP: 1.3.9999.1.9. The same
/// number as [`PINNED_IP_OID`] but a subject attribute, not an extension;
/// informational, never enforced as a pin.
pub const TELEPORT_LOGIN_IP_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.9999.1.9");

/// Teleport's subject attribute for the pinned IP: 1.3.9999.2.15.
pub const TELEPORT_PINNED_IP_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.9999.2.15");

macro_rules! ip_extension_type {
    ($name:ident, $oid:ident, $what:literal) => {
        impl $name {
            /// The IP address.
            pub fn ip(self) -> IpAddr {
                self.0
            }

            /// Wraps `ip`, canonicalised (IPv4-mapped IPv6 becomes IPv4).
            pub fn new(ip: IpAddr) -> Self {
                $name(ip.to_canonical())
            }

            /// Decodes an extension value strictly: one `PrintableString`
            /// TLV, minimal length, nothing trailing, canonical IP text.
            ///
            /// # Errors
            /// [`Error::ExtensionValue`] naming what was wrong.
            pub fn from_extension_value(value: &[u8]) -> Result<Self> {
                pin::decode_ip_printable(value)
                    .map($name)
                    .map_err(|reason| Error::ExtensionValue {
                        oid: $oid.to_string(),
                        reason,
                    })
            }

            fn text(&self) -> String {
                self.0.to_string()
            }
        }

        impl AssociatedOid for $name {
            const OID: ObjectIdentifier = $oid;
        }

        impl FixedTag for $name {
            const TAG: Tag = Tag::PrintableString;
        }

        impl<'a> DecodeValue<'a> for $name {
            type Error = der::Error;

            fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
                let s = PrintableStringRef::decode_value(reader, header)?;
                parse_canonical_reason(s.as_str())
                    .map($name)
                    .map_err(|_| reader.error(Tag::PrintableString.value_error()))
            }
        }

        impl EncodeValue for $name {
            fn value_len(&self) -> der::Result<Length> {
                Length::try_from(self.text().len())
            }

            fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
                writer.write(self.text().as_bytes())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

/// The value of the pinned-IP extension ([`PINNED_IP_OID`]).
///
/// ```text
/// PinnedIp ::= PrintableString  -- canonical IP text
/// ```
///
/// Its `der` traits encode canonical text and decode strictly (a
/// non-canonical text is a value error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinnedIp(pub IpAddr);
ip_extension_type!(PinnedIp, PINNED_IP_OID, "pinned IP");

/// The value of the pinned-IP extension ([`PINNED_IP_OID`]) in full: one
/// address or a network.
///
/// ```text
/// PinnedIp ::= PrintableString  -- canonical IP text, or canonical CIDR text
/// ```
///
/// One address is a `/32` or `/128` network and is written without a
/// length. Its `der` traits encode canonical text and decode strictly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinnedNetwork(pub IpNet);

impl PinnedNetwork {
    /// The network (`/32` or `/128` for one address).
    pub fn net(self) -> IpNet {
        self.0
    }

    /// Decodes an extension value strictly: one `PrintableString` TLV,
    /// minimal length, nothing trailing, canonical IP or CIDR text.
    ///
    /// # Errors
    /// [`Error::ExtensionValue`] naming what was wrong.
    pub fn from_extension_value(value: &[u8]) -> Result<Self> {
        pin::decode_net_printable(value)
            .map(PinnedNetwork)
            .map_err(|reason| Error::ExtensionValue {
                oid: PINNED_IP_OID.to_string(),
                reason,
            })
    }
}

impl AssociatedOid for PinnedNetwork {
    const OID: ObjectIdentifier = PINNED_IP_OID;
}

impl FixedTag for PinnedNetwork {
    const TAG: Tag = Tag::PrintableString;
}

impl<'a> DecodeValue<'a> for PinnedNetwork {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let s = PrintableStringRef::decode_value(reader, header)?;
        parse_canonical_net_reason(s.as_str())
            .map(PinnedNetwork)
            .map_err(|_| reader.error(Tag::PrintableString.value_error()))
    }
}

impl EncodeValue for PinnedNetwork {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(canonical_net_text(self.0).len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(canonical_net_text(self.0).as_bytes())
    }
}

impl std::fmt::Display for PinnedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&canonical_net_text(self.0))
    }
}

/// The value of the login-IP extension ([`LOGIN_IP_OID`]), informational.
///
/// ```text
/// LoginIp ::= PrintableString  -- canonical IP text
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoginIp(pub IpAddr);
ip_extension_type!(LoginIp, LOGIN_IP_OID, "login IP");

/// Where a client certificate carries the pin and the login IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// ippin's extensions ([`PINNED_IP_OID`], [`LOGIN_IP_OID`]).
    #[default]
    Ippin,
    /// Teleport's subject attributes ([`TELEPORT_PINNED_IP_OID`],
    /// [`TELEPORT_LOGIN_IP_OID`]).
    Teleport,
    /// Both, with the same values (for a migration period).
    Both,
}

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// What a client certificate should say. Built with
/// [`ClientCertRequest::builder`]; `build` refuses bad values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertRequest {
    user: String,
    roles: Vec<String>,
    spki_der: Vec<u8>,
    not_before: u64,
    not_after: u64,
    serial: u64,
    pinned: Option<IpNet>,
    endpoint: Option<String>,
    login_ip: Option<IpAddr>,
    profile: Profile,
    front: bool,
}

#[cfg(feature = "issue")]
impl ClientCertRequest {
    /// Starts a request for `user` (the subject CN) whose public key is the
    /// DER SubjectPublicKeyInfo `spki_der` (see [`spki_der_from_pem`]).
    pub fn builder(user: impl Into<String>, spki_der: Vec<u8>) -> ClientCertRequestBuilder {
        ClientCertRequestBuilder {
            req: ClientCertRequest {
                user: user.into(),
                roles: Vec::new(),
                spki_der,
                not_before: 0,
                not_after: 0,
                serial: 0,
                pinned: None,
                endpoint: None,
                login_ip: None,
                profile: Profile::Ippin,
                front: false,
            },
        }
    }

    /// Whether this is a front's certificate for signed propagation
    /// ([`ClientCertRequestBuilder::propagation_front`]).
    pub fn is_propagation_front(&self) -> bool {
        self.front
    }

    /// The user (CN).
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The roles (O attributes).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    /// The pinned IP (canonical), when the pin is one address (`None` when
    /// unpinned or pinned to a network: see [`pin`](Self::pin)).
    pub fn pinned_ip(&self) -> Option<IpAddr> {
        self.pinned
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr())
    }
    /// The pin (canonical; one address is a `/32` or `/128`).
    pub fn pin(&self) -> Option<IpNet> {
        self.pinned
    }
    /// The private endpoint the pin is bound to ([`PINNED_ENDPOINT_OID`]).
    pub fn pinned_endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }
    /// The login IP (canonical).
    pub fn login_ip(&self) -> Option<IpAddr> {
        self.login_ip
    }
    /// The layout.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// Builder for [`ClientCertRequest`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientCertRequestBuilder {
    req: ClientCertRequest,
}

#[cfg(feature = "issue")]
impl ClientCertRequestBuilder {
    /// Adds a role (an O attribute).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.req.roles.push(role.into());
        self
    }
    /// Sets the validity window (unix seconds), `not_before < not_after`.
    pub fn validity(mut self, not_before: u64, not_after: u64) -> Self {
        self.req.not_before = not_before;
        self.req.not_after = not_after;
        self
    }
    /// Sets the serial number (required, positive).
    pub fn serial(mut self, serial: u64) -> Self {
        self.req.serial = serial;
        self
    }
    /// Pins the certificate to `ip` (canonicalised).
    pub fn pinned_ip(mut self, ip: IpAddr) -> Self {
        self.req.pinned = Some(IpNet::from(ip.to_canonical()));
        self
    }
    /// Pins the certificate to the network `net` (canonicalised: an
    /// IPv4-mapped network becomes IPv4). A `/32` or `/128` is one address,
    /// as [`pinned_ip`](Self::pinned_ip). `build` refuses host bits set,
    /// prefix length 0, and a network with the Teleport layout.
    pub fn pinned_network(mut self, net: IpNet) -> Self {
        self.req.pinned = Some(net);
        self
    }
    /// Binds the pin to the private endpoint `name` it was issued through
    /// ([`PINNED_ENDPOINT_OID`]). `build` refuses it without a pin, a name that is not
    /// [`is_endpoint_name`], and the Teleport layout ([`Profile::Teleport`] or
    /// [`Profile::Both`]), which cannot say it: a Teleport reader would take the pin through
    /// any endpoint.
    pub fn pinned_endpoint(mut self, name: impl Into<String>) -> Self {
        self.req.endpoint = Some(name.into());
        self
    }
    /// Records the login IP (canonicalised).
    pub fn login_ip(mut self, ip: IpAddr) -> Self {
        self.req.login_ip = Some(ip.to_canonical());
        self
    }
    /// Chooses the layout (default [`Profile::Ippin`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.req.profile = profile;
        self
    }
    /// Makes this the certificate of a front of signed propagation (the crate
    /// `ippin-propagation`): its extended key usage is [`PROPAGATION_FRONT_EKU`] alone,
    /// where a user's certificate has TLS client authentication. A verifier of signed
    /// headers takes only certificates with that usage, so no certificate issued for a
    /// user, whatever its name and roles, can sign observed addresses; and a front's
    /// certificate is not one a TLS server takes for client authentication. `build`
    /// refuses a pin on it.
    pub fn propagation_front(mut self) -> Self {
        self.req.front = true;
        self
    }

    /// Checks the request.
    ///
    /// # Errors
    /// [`Error::Request`] for an empty, over-long (64) or control-character
    /// user or role, a duplicate role, a public key that is not a DER
    /// SubjectPublicKeyInfo, `not_before >= not_after` or times beyond year
    /// 9999, serial 0, or a network pin with host bits set or prefix length
    /// 0; [`Error::ProfileCannotPinNetwork`] for a network pin (shorter than
    /// `/32` or `/128`) with [`Profile::Teleport`] or [`Profile::Both`].
    pub fn build(mut self) -> Result<ClientCertRequest> {
        if self.req.front && (self.req.pinned.is_some() || self.req.login_ip.is_some()) {
            return Err(Error::request(
                "pinned_ip",
                "a front's certificate for signed propagation carries no pin or login IP",
            ));
        }
        if let Some(net) = self.req.pinned {
            self.req.pinned = Some(ca::check_pin_network(net, self.req.profile)?);
        }
        if let Some(name) = &self.req.endpoint {
            if self.req.pinned.is_none() {
                return Err(Error::request(
                    "pinned_endpoint",
                    "a private endpoint binds a pin: give the pin too",
                ));
            }
            if !is_endpoint_name(name) {
                return Err(Error::request(
                    "pinned_endpoint",
                    "not an endpoint name (1 to 32 lowercase letters, digits, `-` and `:`)",
                ));
            }
            if self.req.profile != Profile::Ippin {
                return Err(Error::request(
                    "pinned_endpoint",
                    "the Teleport layout cannot bind a pin to a private endpoint (a Teleport \
                     reader would take it through any endpoint): issue with the ippin layout",
                ));
            }
        }
        let r = &self.req;
        ca::check_client_request(
            &r.user,
            &r.roles,
            &r.spki_der,
            r.not_before,
            r.not_after,
            r.serial,
        )?;
        Ok(self.req)
    }
}

/// What a client certificate says about its holder, read by
/// [`client_identity`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIdentity {
    /// The subject CN.
    pub user: String,
    /// The subject O attributes, in order.
    pub roles: Vec<String>,
    /// The pin, from whichever layout carries it: one address (a `/32` or
    /// `/128`) or, in the ippin layout, a network.
    pub pin: Option<IpNet>,
    /// The private endpoint the pin is bound to ([`PINNED_ENDPOINT_OID`]), if any.
    pub pinned_endpoint: Option<String>,
    /// The login IP (informational; never a pin).
    pub login_ip: Option<IpAddr>,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds).
    pub not_after: u64,
    /// The serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// The layout found: `None` when neither carries anything.
    pub profile: Option<Profile>,
}

fn profile_of(p: &pin::Pins) -> Option<Profile> {
    match (p.ippin_layout, p.teleport_layout) {
        (true, true) => Some(Profile::Both),
        (true, false) => Some(Profile::Ippin),
        (false, true) => Some(Profile::Teleport),
        (false, false) => None,
    }
}

fn decode_full(cert_der: &[u8]) -> Result<(x509_cert::Certificate, pin::Pins)> {
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(Error::der("certificate"))?;
    let tbs = cert.tbs_certificate();
    pin::check_tbs_shape(
        tbs.version() as u8,
        tbs.issuer_unique_id().is_some() || tbs.subject_unique_id().is_some(),
        tbs.extensions().map(|e| {
            if e.is_empty() {
                pin::ExtensionsPresent::Empty
            } else {
                pin::ExtensionsPresent::NonEmpty
            }
        }),
    )?;
    let mut state = pin::PinState::default();
    for rdn in tbs.subject().iter_rdn() {
        let multi_valued = rdn.len() > 1;
        for atv in rdn.iter() {
            let kind = match atv.value.tag() {
                Tag::PrintableString => pin::AttrKind::Printable,
                Tag::Utf8String => pin::AttrKind::Utf8,
                _ => pin::AttrKind::Other,
            };
            state.on_attribute(atv.oid.as_bytes(), kind, atv.value.value(), multi_valued)?;
        }
    }
    for ext in tbs.extensions().into_iter().flatten() {
        state.on_extension(
            ext.extn_id.as_bytes(),
            ext.critical,
            ext.extn_value.as_bytes(),
        )?;
    }
    let pins = state.finish()?;
    Ok((cert, pins))
}

/// The pin of a DER certificate, by the full decoder (`x509-cert`),
/// reading both layouts strictly: one address (`/32`, `/128`) or a network.
///
/// # Errors
/// [`Error::Der`] when the certificate does not decode; the pin errors
/// listed in the [module docs](self); [`Error::PinBoundToEndpoint`] when the pin is bound to
/// a private endpoint, which a caller of this function would drop (read it with
/// [`pin_at`]).
pub fn pin(cert_der: &[u8]) -> Result<Option<IpNet>> {
    alone(pin_at(cert_der)?)
}

/// The pin of a DER certificate and the private endpoint it is bound to
/// ([`PINNED_ENDPOINT_OID`]), by the full decoder.
///
/// # Errors
/// As [`pin`], but never [`Error::PinBoundToEndpoint`].
pub fn pin_at(cert_der: &[u8]) -> Result<(Option<IpNet>, Option<String>)> {
    let pins = decode_full(cert_der)?.1;
    Ok((pins.pinned, pins.endpoint))
}

/// The pin alone: refused when it is bound to an endpoint, which the caller would drop.
fn alone((pin, endpoint): (Option<IpNet>, Option<String>)) -> Result<Option<IpNet>> {
    match endpoint {
        Some(endpoint) => Err(Error::PinBoundToEndpoint { endpoint }),
        None => Ok(pin),
    }
}

/// The pin of a DER certificate that TLS already verified, without
/// decoding the whole certificate.
///
/// It walks Certificate → TBSCertificate → subject and `[3]` extensions
/// with strict DER framing, and evaluates the pin exactly as [`pin`] does
/// (same code). On every certificate `x509-cert` can decode the two return
/// the same result; the fast path never errs where the full decoder
/// succeeds. It does not interpret the fields it skips (names other than
/// the subject's pin attributes, times, key, algorithm parameters): give it
/// only certificates your TLS stack verified.
///
/// # Errors
/// [`Error::DerStructure`] when the framing is broken; the pin errors
/// listed in the [module docs](self).
pub fn pin_fast(cert_der: &[u8]) -> Result<Option<IpNet>> {
    alone(pin_fast_at(cert_der)?)
}

/// [`pin_at`] by the fast path ([`pin_fast`]).
///
/// # Errors
/// As [`pin_fast`], but never [`Error::PinBoundToEndpoint`].
pub fn pin_fast_at(cert_der: &[u8]) -> Result<(Option<IpNet>, Option<String>)> {
    let pins = walk::pins_fast(cert_der)?;
    Ok((pins.pinned, pins.endpoint))
}

fn one_address(pin: Option<IpNet>) -> Result<Option<IpAddr>> {
    match pin {
        None => Ok(None),
        Some(n) if n.prefix_len() == n.max_prefix_len() => Ok(Some(n.addr())),
        Some(n) => Err(Error::PinIsNetwork {
            pin: canonical_net_text(n),
        }),
    }
}

/// The pinned IP of a DER certificate pinned to one address, by the full
/// decoder; as [`pin`], for callers that handle one address only.
///
/// # Errors
/// As [`pin`]; [`Error::PinIsNetwork`] when the pin is a network (never
/// "unpinned").
pub fn pinned_ip(cert_der: &[u8]) -> Result<Option<IpAddr>> {
    one_address(pin(cert_der)?)
}

/// The pinned IP of a DER certificate pinned to one address, by the fast
/// path ([`pin_fast`]), for callers that handle one address only.
///
/// # Errors
/// As [`pin_fast`]; [`Error::PinIsNetwork`] when the pin is a network
/// (never "unpinned").
pub fn pinned_ip_fast(cert_der: &[u8]) -> Result<Option<IpAddr>> {
    one_address(pin_fast(cert_der)?)
}

/// Reads a client certificate's identity (full decode).
///
/// Requires exactly one CN (UTF8String or PrintableString); roles are the
/// O attributes. The signature and validity are not checked here: this
/// reads a certificate that TLS verified.
///
/// # Errors
/// As [`pinned_ip`], plus [`Error::Subject`] for a missing, repeated or
/// non-string CN or O.
pub fn client_identity(cert_der: &[u8]) -> Result<ClientIdentity> {
    let (cert, pins) = decode_full(cert_der)?;
    let tbs = cert.tbs_certificate();
    let cn_oid = ObjectIdentifier::new_unwrap("2.5.4.3");
    let o_oid = ObjectIdentifier::new_unwrap("2.5.4.10");
    let mut user = None;
    let mut roles = Vec::new();
    for atv in tbs.subject().iter() {
        let is_cn = atv.oid == cn_oid;
        if !is_cn && atv.oid != o_oid {
            continue;
        }
        let text = match atv.value.tag() {
            Tag::Utf8String | Tag::PrintableString => std::str::from_utf8(atv.value.value()).ok(),
            _ => None,
        }
        .ok_or_else(|| Error::Subject {
            reason: format!(
                "attribute {} is not a UTF8String or PrintableString",
                atv.oid
            ),
        })?;
        if is_cn {
            if user.is_some() {
                return Err(Error::Subject {
                    reason: "more than one CN".into(),
                });
            }
            user = Some(text.to_owned());
        } else {
            roles.push(text.to_owned());
        }
    }
    let user = user.ok_or_else(|| Error::Subject {
        reason: "no CN".into(),
    })?;
    let validity = tbs.validity();
    Ok(ClientIdentity {
        user,
        roles,
        pin: pins.pinned,
        pinned_endpoint: pins.endpoint.clone(),
        login_ip: pins.login,
        not_before: validity.not_before.to_unix_duration().as_secs(),
        not_after: validity.not_after.to_unix_duration().as_secs(),
        serial: tbs.serial_number().as_bytes().to_vec(),
        profile: profile_of(&pins),
    })
}
