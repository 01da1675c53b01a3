//! OpenSSH user certificates: issuance with the pin in `source-address`,
//! and complete validation.
//!
//! A pinned certificate carries the critical option
//! `source-address=<ip>/32` (or `/128`), which sshd enforces on its own, and
//! the extension `login-ip=<ip>` (informational) when the login IP is known
//! — the layout Teleport uses, so one reader serves both.

mod source_address;

use std::net::IpAddr;

#[cfg(feature = "issue")]
use ipnet::IpNet;

#[cfg(feature = "issue")]
use rand_core::CryptoRng;
#[cfg(feature = "issue")]
use ssh_key::certificate::Builder;
use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, Fingerprint, HashAlg};
#[cfg(feature = "issue")]
use ssh_key::{EcdsaCurve, LineEnding, PrivateKey, PublicKey};

pub use source_address::{MAX_ENTRY_LEN, SourceAddress};

use crate::ip::parse_canonical_reason;
use crate::{Error, Result};

/// Critical option: the command the session is forced to run.
pub const FORCE_COMMAND: &str = "force-command";
/// Critical option: the networks the certificate may be used from.
pub const SOURCE_ADDRESS: &str = "source-address";
/// Critical option: FIDO keys must have performed user verification.
pub const VERIFY_REQUIRED: &str = "verify-required";
/// Extension (Teleport's): the IP the user logged in from; informational.
pub const LOGIN_IP: &str = "login-ip";
/// Critical option (ippin's): the private endpoint (AWS VPC endpoint, Azure Private Link,
/// GCP Private Service Connect) the pin was issued through, named as
/// [`crate::x509::is_endpoint_name`] says. Only beside `source-address`. ippin's services
/// take the pin only through the same endpoint. A critical option, not an extension: private
/// addresses are not unique across networks, and an sshd that ignored the binding would take
/// the pin from any host given the pinned address in its own network; OpenSSH refuses a
/// certificate with a critical option it does not know, so a bound certificate is refused by
/// stock sshd and used only where the endpoint is checked.
pub const PINNED_ENDPOINT: &str = "pinned-endpoint@ippin";
/// The critical options ippin recognises; any other refuses the
/// certificate (PROTOCOL.certkeys: unrecognised critical options must
/// cause the certificate to be refused).
pub const RECOGNISED_CRITICAL_OPTIONS: [&str; 4] = [
    FORCE_COMMAND,
    SOURCE_ADDRESS,
    VERIFY_REQUIRED,
    PINNED_ENDPOINT,
];
/// The suffix of ippin's own option and extension names. An extension with it that this
/// version does not know refuses the certificate: a field a later version adds to narrow a
/// certificate is not dropped by an older reader (fail closed across versions).
pub const IPPIN_NAME_SUFFIX: &str = "@ippin";

/// Extension names of the flag permissions.
const PERMIT_X11: &str = "permit-X11-forwarding";
const PERMIT_AGENT: &str = "permit-agent-forwarding";
const PERMIT_PORT: &str = "permit-port-forwarding";
const PERMIT_PTY: &str = "permit-pty";
const PERMIT_USER_RC: &str = "permit-user-rc";
const NO_TOUCH: &str = "no-touch-required";

/// The flag extensions of a user certificate.
///
/// [`Permissions::default`] grants what `ssh-keygen -s` grants by default:
/// every `permit-*` and not `no-touch-required`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::struct_excessive_bools)]
pub struct Permissions {
    /// `permit-X11-forwarding`.
    pub x11_forwarding: bool,
    /// `permit-agent-forwarding`.
    pub agent_forwarding: bool,
    /// `permit-port-forwarding`.
    pub port_forwarding: bool,
    /// `permit-pty`.
    pub pty: bool,
    /// `permit-user-rc`.
    pub user_rc: bool,
    /// `no-touch-required` (FIDO keys may sign without a touch).
    pub no_touch_required: bool,
}

impl Default for Permissions {
    fn default() -> Permissions {
        Permissions {
            x11_forwarding: true,
            agent_forwarding: true,
            port_forwarding: true,
            pty: true,
            user_rc: true,
            no_touch_required: false,
        }
    }
}

impl Permissions {
    /// No permission at all (`ssh-keygen -O clear`).
    pub fn none() -> Permissions {
        Permissions {
            x11_forwarding: false,
            agent_forwarding: false,
            port_forwarding: false,
            pty: false,
            user_rc: false,
            no_touch_required: false,
        }
    }

    #[cfg(feature = "issue")]
    fn flags(self) -> [(&'static str, bool); 6] {
        [
            (NO_TOUCH, self.no_touch_required),
            (PERMIT_X11, self.x11_forwarding),
            (PERMIT_AGENT, self.agent_forwarding),
            (PERMIT_PORT, self.port_forwarding),
            (PERMIT_PTY, self.pty),
            (PERMIT_USER_RC, self.user_rc),
        ]
    }
}

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// An SSH certificate authority: a private key that signs user
/// certificates.
///
/// Ed25519 is the default; ECDSA P-256 is supported.
#[derive(Clone)]
pub struct SshCa {
    key: PrivateKey,
}

#[cfg(feature = "issue")]
impl std::fmt::Debug for SshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshCa")
            .field("algorithm", &self.key.algorithm())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "issue")]
impl SshCa {
    /// A new Ed25519 CA.
    ///
    /// # Errors
    /// [`Error::SshKey`] when key generation fails.
    pub fn generate_ed25519<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<SshCa> {
        let key =
            PrivateKey::random(rng, Algorithm::Ed25519).map_err(Error::ssh("generate CA key"))?;
        Ok(SshCa { key })
    }

    /// A new ECDSA P-256 CA.
    ///
    /// # Errors
    /// [`Error::SshKey`] when key generation fails.
    pub fn generate_p256<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<SshCa> {
        let algorithm = Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        };
        let key = PrivateKey::random(rng, algorithm).map_err(Error::ssh("generate CA key"))?;
        Ok(SshCa { key })
    }

    /// Reads an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE
    /// KEY-----`), Ed25519 or ECDSA P-256.
    ///
    /// # Errors
    /// [`Error::SshKey`] when the key does not parse, [`Error::Key`] when
    /// it is encrypted or of another algorithm.
    pub fn from_openssh(pem: &str) -> Result<SshCa> {
        let key = PrivateKey::from_openssh(pem).map_err(Error::ssh("read CA private key"))?;
        if key.is_encrypted() {
            return Err(Error::Key {
                reason: "the CA private key is encrypted; decrypt it first".into(),
            });
        }
        match key.algorithm() {
            Algorithm::Ed25519
            | Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            } => Ok(SshCa { key }),
            other => Err(Error::Key {
                reason: format!("CA key algorithm {other} is not supported (Ed25519, ECDSA P-256)"),
            }),
        }
    }

    /// The private key in OpenSSH format (unencrypted, LF line endings).
    ///
    /// # Errors
    /// [`Error::SshKey`] when encoding fails.
    pub fn to_openssh(&self) -> Result<String> {
        let pem = self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(Error::ssh("encode CA private key"))?;
        Ok(pem.as_str().to_owned())
    }

    /// The CA public key (what sshd's `TrustedUserCAKeys` lists).
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The SHA-256 fingerprint of the CA public key, as
    /// [`SshValidation::trusted_cas`] expects it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint(HashAlg::Sha256)
    }

    /// Signs a user certificate for `req`, with a random 32-byte nonce.
    ///
    /// # Errors
    /// [`Error::SshKey`] when building or signing fails.
    pub fn issue<R: CryptoRng + ?Sized>(
        &self,
        req: &SshCertRequest,
        rng: &mut R,
    ) -> Result<Certificate> {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let mut b = Builder::new(
            nonce.to_vec(),
            req.public_key.clone(),
            req.valid_after,
            req.valid_before,
        )
        .map_err(Error::ssh("certificate validity"))?;
        let source_address = match req.pinned {
            Some(net) => Some(SourceAddress::from_nets(vec![net])?.to_string()),
            None => None,
        };
        let ctx = Error::ssh("build certificate");
        let res: std::result::Result<(), ssh_key::Error> = (|| {
            b.serial(req.serial)?;
            b.cert_type(CertType::User)?;
            b.key_id(req.key_id.clone())?;
            for p in &req.principals {
                b.valid_principal(p.clone())?;
            }
            if let Some(command) = &req.force_command {
                b.critical_option(FORCE_COMMAND, command.clone())?;
            }
            if let Some(list) = &source_address {
                b.critical_option(SOURCE_ADDRESS, list.clone())?;
            }
            if req.verify_required {
                b.critical_option(VERIFY_REQUIRED, "")?;
            }
            if let Some(ip) = req.login_ip {
                b.extension(LOGIN_IP, ip.to_string())?;
            }
            if let (Some(_), Some(name)) = (&source_address, &req.endpoint) {
                b.critical_option(PINNED_ENDPOINT, name.clone())?;
            }
            for (name, on) in req.permissions.flags() {
                if on {
                    b.extension(name, "")?;
                }
            }
            Ok(())
        })();
        res.map_err(ctx)?;
        // `build` refused every subject key that is not a plain key; checked again here, as
        // a request is the only thing standing between a caller and the CA's signature.
        check_subject_key(&req.public_key)?;
        let cert = b.sign(&self.key).map_err(Error::ssh("sign certificate"))?;
        // What was signed must read back as what was meant: the same certificate, field for
        // field, from its own encoding.
        let bytes = cert.to_bytes().map_err(Error::ssh("encode certificate"))?;
        match Certificate::from_bytes(&bytes) {
            Ok(read) if read == cert => Ok(cert),
            _ => Err(Error::request(
                "public_key",
                "the signed certificate does not read back as itself",
            )),
        }
    }
}

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// What a user certificate should say. Built with
/// [`SshCertRequest::builder`]; `build` refuses bad values, so a request
/// that exists is a request that can be signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCertRequest {
    key_id: String,
    serial: u64,
    principals: Vec<String>,
    valid_after: u64,
    valid_before: u64,
    public_key: KeyData,
    pinned: Option<IpNet>,
    endpoint: Option<String>,
    login_ip: Option<IpAddr>,
    permissions: Permissions,
    force_command: Option<String>,
    verify_required: bool,
}

#[cfg(feature = "issue")]
impl SshCertRequest {
    /// Starts a request for the user's `public_key`.
    pub fn builder(public_key: impl Into<KeyData>) -> SshCertRequestBuilder {
        SshCertRequestBuilder {
            req: SshCertRequest {
                key_id: String::new(),
                serial: 0,
                principals: Vec::new(),
                valid_after: 0,
                valid_before: 0,
                public_key: public_key.into(),
                pinned: None,
                endpoint: None,
                login_ip: None,
                permissions: Permissions::default(),
                force_command: None,
                verify_required: false,
            },
        }
    }

    /// The key id (logged by sshd).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The serial number.
    pub fn serial(&self) -> u64 {
        self.serial
    }
    /// The principals (user names the certificate is valid for).
    pub fn principals(&self) -> &[String] {
        &self.principals
    }
    /// Valid from (unix seconds, inclusive).
    pub fn valid_after(&self) -> u64 {
        self.valid_after
    }
    /// Valid until (unix seconds, exclusive).
    pub fn valid_before(&self) -> u64 {
        self.valid_before
    }
    /// The user's public key.
    pub fn public_key(&self) -> &KeyData {
        &self.public_key
    }
    /// The pinned IP (canonical), if any.
    pub fn pinned_ip(&self) -> Option<IpAddr> {
        self.pinned
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr())
    }
    /// The pin (`source-address` of one entry): one address is a `/32` or
    /// `/128`.
    pub fn pin(&self) -> Option<IpNet> {
        self.pinned
    }
    /// The login IP (canonical), if any.
    pub fn login_ip(&self) -> Option<IpAddr> {
        self.login_ip
    }
    /// The flag extensions.
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }
    /// The forced command, if any.
    pub fn force_command(&self) -> Option<&str> {
        self.force_command.as_deref()
    }
}

#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
/// Builder for [`SshCertRequest`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SshCertRequestBuilder {
    req: SshCertRequest,
}

#[cfg(feature = "issue")]
impl SshCertRequestBuilder {
    /// Sets the key id (required, printable, at most 256 bytes).
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.req.key_id = key_id.into();
        self
    }
    /// Sets the serial number (default 0).
    pub fn serial(mut self, serial: u64) -> Self {
        self.req.serial = serial;
        self
    }
    /// Adds a principal (at least one is required).
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.req.principals.push(principal.into());
        self
    }
    /// Sets the validity window, unix seconds: valid when
    /// `valid_after <= now < valid_before`.
    pub fn validity(mut self, valid_after: u64, valid_before: u64) -> Self {
        self.req.valid_after = valid_after;
        self.req.valid_before = valid_before;
        self
    }
    /// Pins the certificate to `ip` (`source-address ip/32` or `/128`).
    /// IPv4-mapped IPv6 addresses are canonicalised to IPv4.
    pub fn pinned_ip(mut self, ip: IpAddr) -> Self {
        self.req.pinned = Some(IpNet::from(ip.to_canonical()));
        self
    }
    /// Pins the certificate to the network `net`: `source-address=<net>/<len>`
    /// (an IPv4-mapped network is written as IPv4). `build` refuses host
    /// bits set and prefix length 0, as [`SourceAddress::from_nets`] does.
    pub fn pinned_network(mut self, net: IpNet) -> Self {
        self.req.pinned = Some(net);
        self
    }
    /// Binds the pin to the private endpoint `name` it was issued through (extension
    /// [`PINNED_ENDPOINT`]). `build` refuses it without a pin or with a name that is not
    /// [`crate::x509::is_endpoint_name`].
    pub fn pinned_endpoint(mut self, name: impl Into<String>) -> Self {
        self.req.endpoint = Some(name.into());
        self
    }
    /// Records the login IP (extension `login-ip`), canonicalised.
    pub fn login_ip(mut self, ip: IpAddr) -> Self {
        self.req.login_ip = Some(ip.to_canonical());
        self
    }
    /// Sets the flag extensions (default: [`Permissions::default`]).
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.req.permissions = permissions;
        self
    }
    /// Forces a command (critical option `force-command`).
    pub fn force_command(mut self, command: impl Into<String>) -> Self {
        self.req.force_command = Some(command.into());
        self
    }
    /// Requires FIDO user verification (critical option `verify-required`).
    pub fn verify_required(mut self, on: bool) -> Self {
        self.req.verify_required = on;
        self
    }

    /// Checks the request.
    ///
    /// # Errors
    /// [`Error::Request`] when the key id is empty, too long or has control
    /// characters; when there is no principal, an empty or duplicate one, or
    /// one with a comma, white space or control character; when
    /// `valid_after >= valid_before`; when the forced command is empty; when
    /// the pin network has host bits set; when the public key is not one
    /// [`check_subject_key`] takes (a certificate, DSA, a small RSA key). [`Error::SourceAddressEntry`] when
    /// the pin network has prefix length 0.
    pub fn build(self) -> Result<SshCertRequest> {
        let mut req = self.req;
        if let Some(net) = req.pinned {
            if net.trunc() != net {
                return Err(Error::request(
                    "pinned_network",
                    format!("host bits set beyond the prefix in {net}"),
                ));
            }
            let net = crate::ip::canonical_net(net);
            SourceAddress::from_nets(vec![net])?;
            req.pinned = Some(net);
        }
        if let Some(name) = &req.endpoint {
            if req.pinned.is_none() {
                return Err(Error::request(
                    "pinned_endpoint",
                    "a private endpoint binds a pin: give the pin too",
                ));
            }
            if !crate::x509::is_endpoint_name(name) {
                return Err(Error::request(
                    "pinned_endpoint",
                    "not an endpoint name (1 to 32 lowercase letters, digits, `-` and `:`)",
                ));
            }
        }
        if req.key_id.is_empty() {
            return Err(Error::request("key_id", "empty"));
        }
        if req.key_id.len() > 256 {
            return Err(Error::request("key_id", "longer than 256 bytes"));
        }
        if req.key_id.chars().any(char::is_control) {
            return Err(Error::request("key_id", "control character"));
        }
        if req.principals.is_empty() {
            return Err(Error::request(
                "principals",
                "none given (a certificate without principals is valid for every user)",
            ));
        }
        for (i, p) in req.principals.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::request("principals", "empty principal"));
            }
            if p.chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
            {
                return Err(Error::request(
                    "principals",
                    format!(
                        "principal `{}`: comma, white space or control character",
                        p.escape_debug()
                    ),
                ));
            }
            if req.principals.get(..i).unwrap_or_default().contains(p) {
                return Err(Error::request(
                    "principals",
                    format!("duplicate principal `{p}`"),
                ));
            }
        }
        if req.valid_after >= req.valid_before {
            return Err(Error::request(
                "validity",
                format!(
                    "valid_after {} is not before valid_before {}",
                    req.valid_after, req.valid_before
                ),
            ));
        }
        if req.force_command.as_deref() == Some("") {
            return Err(Error::request("force_command", "empty"));
        }
        check_subject_key(&req.public_key)?;
        Ok(req)
    }
}

/// The smallest RSA modulus taken as a subject key, in bits (OpenSSH's own minimum since 9.x
/// is 1024; 2048 is NIST's floor).
#[cfg(feature = "issue")]
pub const MIN_RSA_BITS: u32 = 2048;

/// Whether `key` may be the subject of a certificate: a plain Ed25519, ECDSA (NIST P-256,
/// P-384, P-521), FIDO (`sk-`) or RSA (at least [`MIN_RSA_BITS`]) key. A *certificate* is
/// never a subject key: its fields would be written, whole, where the key belongs, inside
/// the signed bytes, and a parser of the new certificate would read the old one's bytes as
/// fields of the new one (principals, validity, options of the requester's choosing, under
/// the CA's signature). DSA and key kinds unknown to this crate are refused too.
///
/// # Errors
/// [`Error::Request`] (field `public_key`) naming what the key is.
#[cfg(feature = "issue")]
#[cfg_attr(docsrs, doc(cfg(feature = "issue")))]
pub fn check_subject_key(key: &KeyData) -> Result<()> {
    match key {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) if rsa.key_size() >= MIN_RSA_BITS => Ok(()),
        KeyData::Rsa(rsa) => Err(Error::request(
            "public_key",
            format!(
                "an RSA key of {} bits (at least {MIN_RSA_BITS})",
                rsa.key_size()
            ),
        )),
        KeyData::Certificate(_) => Err(Error::request(
            "public_key",
            "a certificate, not a public key",
        )),
        other => Err(Error::request(
            "public_key",
            format!(
                "a {} key (Ed25519, ECDSA, FIDO or RSA only)",
                crate::error::shown(other.algorithm().as_str())
            ),
        )),
    }
}

/// What [`validate_user_cert`] checks a certificate against.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SshValidation<'a> {
    /// SHA-256 fingerprints of the trusted CA keys.
    pub trusted_cas: &'a [Fingerprint],
    /// The principal (user name) the certificate must list, compared byte
    /// for byte (no case folding, no patterns). An empty principal never
    /// matches.
    pub principal: &'a str,
    /// The time of the check, unix seconds.
    pub now: u64,
}

impl<'a> SshValidation<'a> {
    /// Checks against `trusted_cas`, for `principal`, at `now` (unix seconds).
    pub fn new(trusted_cas: &'a [Fingerprint], principal: &'a str, now: u64) -> Self {
        SshValidation {
            trusted_cas,
            principal,
            now,
        }
    }
}

/// A user certificate that passed [`validate_user_cert`]. It can only be
/// made by that function.
///
/// What the caller must still do: call [`ValidatedSshCert::check_source`]
/// with the client IP it observed, run `force_command` instead of what the
/// client asked when it is set, require FIDO user verification when
/// `verify_required` is set, and honour `permissions`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedSshCert {
    /// The key id.
    pub key_id: String,
    /// The serial number.
    pub serial: u64,
    /// The principals.
    pub principals: Vec<String>,
    /// Valid from (unix seconds, inclusive).
    pub valid_after: u64,
    /// Valid until (unix seconds, exclusive).
    pub valid_before: u64,
    /// The `source-address` list, when present.
    pub source_address: Option<SourceAddress>,
    /// The private endpoint the pin is bound to (critical option [`PINNED_ENDPOINT`]), when
    /// present: a pin check must compare it with the endpoint the client came through.
    pub pinned_endpoint: Option<String>,
    /// The `login-ip` extension, when present (informational, never a pin).
    pub login_ip: Option<IpAddr>,
    /// The `force-command` critical option, when present.
    pub force_command: Option<String>,
    /// Whether the `verify-required` critical option is present.
    pub verify_required: bool,
    /// The flag extensions.
    pub permissions: Permissions,
    /// The fingerprint of the CA that signed it.
    pub ca_fingerprint: Fingerprint,
}

impl ValidatedSshCert {
    /// Checks the client IP the server observed against `source-address`.
    /// A certificate without `source-address` allows every IP: whether a pin is *required*
    /// (a role that pins, refusing an unpinned certificate) is not this function's to say;
    /// `ippin-policy`'s `check_pin` decides both.
    ///
    /// `client_ip` must be an address the caller *believes*: the socket peer, or an address
    /// a trusted proxy vouched for. An address read from a header nobody vouched for is the
    /// client's own claim and must not reach this check (with `ippin-policy`, pass
    /// `ObservedAddr::trusted_ip` and refuse when it is `None`; its `check_pin` does both).
    ///
    /// A certificate whose pin is bound to a private endpoint (see [`PINNED_ENDPOINT`]) is
    /// refused here, whatever the IP: the endpoint the client came through must be compared
    /// too, with [`ValidatedSshCert::check_source_at`].
    ///
    /// # Errors
    /// [`Error::SourceAddressMismatch`] when the (canonical) IP is not in
    /// the list; [`Error::EndpointMismatch`] for a pin bound to an endpoint.
    pub fn check_source(&self, client_ip: IpAddr) -> Result<()> {
        self.check_source_at(client_ip, None)
    }

    /// [`ValidatedSshCert::check_source`] for a client that came through the private endpoint
    /// `endpoint` (`None`: through none): the pin's endpoint ([`PINNED_ENDPOINT`]) must be
    /// that one, or both absent.
    ///
    /// # Errors
    /// [`Error::SourceAddressMismatch`] when the (canonical) IP is not in the list;
    /// [`Error::EndpointMismatch`] when the endpoints differ.
    pub fn check_source_at(&self, client_ip: IpAddr, endpoint: Option<&str>) -> Result<()> {
        if self.source_address.is_some() && self.pinned_endpoint.as_deref() != endpoint {
            let name = |e: Option<&str>| e.map_or_else(|| "none".to_owned(), crate::error::shown);
            return Err(Error::EndpointMismatch {
                pinned: name(self.pinned_endpoint.as_deref()),
                seen: name(endpoint),
            });
        }
        match &self.source_address {
            Some(list) if !list.matches(client_ip) => Err(Error::SourceAddressMismatch {
                ip: client_ip.to_canonical(),
                allowed: list.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The pinned IP, for callers that handle one address only: the single
    /// host of a one-entry `/32` or `/128` `source-address`; `None` when the
    /// certificate has no `source-address`.
    ///
    /// # Errors
    /// [`Error::PinIsNetwork`] when `source-address` is wider than one
    /// address (a network, as ippin issues for a role with
    /// `pin_source_ip_prefix`, or several entries): never "unpinned". Read
    /// [`ValidatedSshCert::source_address`] for the whole pin.
    /// [`Error::PinBoundToEndpoint`] when the pin is bound to a private endpoint, which a
    /// caller of this function would drop: read [`ValidatedSshCert::pinned_endpoint`] too.
    pub fn pinned_ip(&self) -> Result<Option<IpAddr>> {
        if let Some(endpoint) = &self.pinned_endpoint {
            return Err(Error::PinBoundToEndpoint {
                endpoint: endpoint.clone(),
            });
        }
        match &self.source_address {
            None => Ok(None),
            Some(list) => match list.single_host() {
                Some(ip) => Ok(Some(ip)),
                None => Err(Error::PinIsNetwork {
                    pin: crate::error::shown(&list.to_string()),
                }),
            },
        }
    }
}

/// Refuses an OpenSSH one-line key or certificate whose decoded blob names more than `most`
/// certificate types (`…-cert-v01@…`) before `ssh-key` decodes it: `ssh-key` decodes a
/// certificate's CA key with a decoder that enters another certificate for such a name, with
/// no limit on the depth, so a crafted line of a few hundred kilobytes (a certificate whose CA
/// key is a certificate whose CA key is …) overflows the stack. A certificate names its own
/// type once, and the marker may also sit in its text fields (a user named `ops-cert-v01`
/// has it in the key id): a certificate may hold [`MAX_CERT_MARKERS`], a nesting far too
/// shallow to matter (validation refuses a certificate as a CA key anyway). A plain key
/// holds none.
fn check_nesting(line: &str, most: usize) -> Result<()> {
    use ssh_key::encoding::base64::{Base64, Encoding};
    const MARKER: &[u8] = b"-cert-v01@";
    let field = line.split_ascii_whitespace().nth(1).unwrap_or_default();
    let blob = Base64::decode_vec(field).map_err(|_| Error::SshEncoding {
        reason: "the key field is not base64".into(),
    })?;
    if blob.windows(MARKER.len()).filter(|w| *w == MARKER).count() > most {
        return Err(Error::SshEncoding {
            reason: if most == 0 {
                "a certificate where a public key belongs".into()
            } else {
                "certificates nested too deep (a certificate whose CA key is a certificate, and so on)".into()
            },
        });
    }
    Ok(())
}

/// The most certificate type names (`…-cert-v01@…`) a certificate's blob may hold for
/// [`parse_certificate`]: its own, and some in its text fields (russh bounds the nesting at 8
/// alike).
pub const MAX_CERT_MARKERS: usize = 8;

/// The longest public key text [`parse_public_key`] reads: 16 KiB (an RSA key of 16,384 bits
/// is about 2.8 KB).
pub const MAX_KEY_TEXT: usize = 16 * 1024;

/// Reads a public key in OpenSSH one-line form (`ssh-ed25519 AAAA... comment`), bounded: at
/// most [`MAX_KEY_TEXT`] bytes, one line, no certificate anywhere in it (checked before the
/// key is decoded: see [`parse_certificate`] on nesting). What a CA takes from a client as
/// the key to certify.
///
/// # Errors
/// [`Error::SshEncoding`] when it is too long, more than one line or holds a certificate,
/// [`Error::SshKey`] when it does not parse.
pub fn parse_public_key(text: &str) -> Result<ssh_key::PublicKey> {
    if text.len() > MAX_KEY_TEXT {
        return Err(Error::SshEncoding {
            reason: format!("longer than {MAX_KEY_TEXT} bytes"),
        });
    }
    let line = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if line.contains(['\n', '\r']) {
        return Err(Error::SshEncoding {
            reason: "more than one line; give one public key".into(),
        });
    }
    check_nesting(line, 0)?;
    ssh_key::PublicKey::from_openssh(line).map_err(Error::ssh("parse public key"))
}

/// The longest certificate text [`parse_certificate`] reads: 256 KiB (an
/// Ed25519 user certificate is about 700 bytes), so memory stays bounded
/// whatever the input.
pub const MAX_CERT_TEXT: usize = 256 * 1024;

/// Reads an SSH certificate in OpenSSH one-line form
/// (`ssh-ed25519-cert-v01@openssh.com AAAA... comment`), strictly.
///
/// Beyond what `ssh-key` checks (algorithm name, field framing, critical
/// options and extensions each lexically ordered and unique), the binary
/// certificate must re-encode to exactly the bytes that were read. That
/// refuses the encodings `ssh-key` reads leniently but sshd refuses:
/// data after the inner string of an option value (PROTOCOL.certkeys: the
/// value is a string inside a string), a flag option whose value is an
/// empty inner string rather than empty, and any other slack. One line
/// only: trailing white space is ignored, a second line is an error.
///
/// # Errors
/// [`Error::SshKey`] when it does not parse, [`Error::SshEncoding`] when it
/// parses but is not in the one canonical encoding, has a second line, or
/// is longer than [`MAX_CERT_TEXT`].
pub fn parse_certificate(text: &str) -> Result<Certificate> {
    if text.len() > MAX_CERT_TEXT {
        return Err(Error::SshEncoding {
            reason: format!("longer than {MAX_CERT_TEXT} bytes"),
        });
    }
    // ASCII white space only, as OpenSSH reads the line: a trailing U+00A0 (or any other
    // Unicode space) is part of the base64 field to OpenSSH, which then refuses the line.
    let line = text.trim_end_matches(|c: char| c.is_ascii_whitespace());
    if line.contains(['\n', '\r']) {
        return Err(Error::SshEncoding {
            reason: "more than one line; give one certificate".into(),
        });
    }
    check_nesting(line, MAX_CERT_MARKERS)?;
    let cert = Certificate::from_openssh(line).map_err(Error::ssh("parse certificate"))?;
    let again = cert
        .to_openssh()
        .map_err(Error::ssh("re-encode certificate"))?;
    let body = |t: &str| t.split_ascii_whitespace().nth(1).map(str::to_owned);
    if body(line) != body(&again) {
        return Err(Error::SshEncoding {
            reason: "not in canonical encoding: it does not re-encode to the same bytes \
                     (data after an option's inner string, an option value that is an empty \
                     string instead of empty, or other slack)"
                .into(),
        });
    }
    Ok(cert)
}

/// The CA key and signature algorithms [`validate_user_cert`] accepts:
/// Ed25519 and ECDSA (P-256, P-384, P-521), the signature of the same
/// algorithm as the key.
///
/// Refused: RSA (`ssh-rsa` signatures use SHA-1, which OpenSSH no longer
/// accepts by default; `rsa-sha2-*` cannot be verified by this build of
/// `ssh-key`, which has no RSA support), DSA, FIDO (`sk-*`) CA keys, and
/// anything else — including a certificate in place of the CA key.
fn check_ca_algorithm(cert: &Certificate) -> Result<()> {
    let key = cert.signature_key();
    let sig = cert.signature().algorithm();
    let refuse = |reason: &str| Error::SshCaAlgorithm {
        key: match key {
            // `algorithm()` of a certificate names the key inside it
            KeyData::Certificate(_) => "certificate".to_owned(),
            other => crate::error::shown(other.algorithm().as_str()),
        },
        signature: crate::error::shown(sig.as_str()),
        reason: reason.to_owned(),
    };
    // Match the key's variant, not `algorithm()`: a certificate in the CA
    // key field reports the algorithm of the key it certifies.
    match (key, &sig) {
        (KeyData::Ed25519(_), Algorithm::Ed25519) => Ok(()),
        (KeyData::Ecdsa(k), Algorithm::Ecdsa { curve }) if k.curve() == *curve => Ok(()),
        (KeyData::Ed25519(_) | KeyData::Ecdsa(_), _) => {
            Err(refuse("signature algorithm does not match the CA key"))
        }
        (KeyData::Certificate(_), _) => Err(refuse(
            "the CA key is itself a certificate (OpenSSH refuses nested certificates)",
        )),
        (KeyData::Rsa(_), _) => Err(refuse(
            "RSA CA keys are not supported (ssh-rsa signatures use SHA-1; use Ed25519 or ECDSA)",
        )),
        _ => Err(refuse("unsupported CA key type (Ed25519 or ECDSA only)")),
    }
}

/// Validates a user certificate completely.
///
/// `ssh-key`'s `validate_at` checks only the CA signature, that the CA is
/// trusted and the validity window. This checks, in order: the CA key
/// algorithm, that the CA is trusted, the CA's signature (before any other
/// field is believed), that it is a user certificate, the window, that
/// `v.principal` is listed, that every critical option is recognised
/// (`force-command`, `source-address`, `verify-required`) and well formed
/// (`source-address` strictly, see [`SourceAddress`]; `verify-required`
/// without data), and that the `login-ip` extension, when present, is a
/// canonical IP. Unknown extensions are ignored, as sshd ignores them, except ippin's own
/// (names ending [`IPPIN_NAME_SUFFIX`]), which refuse the certificate; known flag extensions
/// must not carry data.
///
/// The CA key must be Ed25519 or ECDSA with a signature of the same
/// algorithm (RSA, DSA, FIDO and nested-certificate CA keys are refused,
/// `ssh_ca_algorithm`). A certificate without principals is refused (in
/// OpenSSH it would be valid for every user). The client IP is checked
/// separately, by [`ValidatedSshCert::check_source`].
///
/// # Errors
/// The first failed check, as an [`Error`] whose [`Error::code`] names it.
pub fn validate_user_cert(cert: &Certificate, v: &SshValidation<'_>) -> Result<ValidatedSshCert> {
    check_ca_algorithm(cert)?;
    // The fingerprint is computed once, here: `validate_at` would compute it
    // again, so the three checks it makes are made here and the signature
    // alone is left to `ssh-key`.
    let ca_fingerprint = cert.signature_key().fingerprint(HashAlg::Sha256);
    if !v.trusted_cas.contains(&ca_fingerprint) {
        return Err(Error::SshUntrustedCa {
            fingerprint: ca_fingerprint.to_string(),
        });
    }
    // The signature comes before every other field is believed: a refusal
    // for the type, window or principal is then a statement about a
    // certificate the CA really issued, and a forged one is refused as
    // forged whatever else it claims. `verify_signature` is the signature
    // step of `validate_at` (public but hidden from ssh-key's docs because
    // on its own it trusts any CA; the CA was checked just above). It
    // verifies over the re-encoded to-be-signed bytes, so a certificate
    // whose bytes are not the canonical encoding fails here even when it
    // was read leniently.
    cert.verify_signature().map_err(|_| Error::SshSignature)?;
    if cert.cert_type() != CertType::User {
        return Err(Error::SshNotUserCert);
    }
    if !(cert.valid_after() <= v.now && v.now < cert.valid_before()) {
        return Err(Error::SshValidity {
            now: v.now,
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
        });
    }
    if v.principal.is_empty() || !cert.valid_principals().iter().any(|p| p == v.principal) {
        return Err(Error::SshPrincipal {
            principal: crate::error::shown(v.principal),
            principals: crate::error::shown(&cert.valid_principals().join(",")),
        });
    }
    let checked = check_options(cert)?;
    Ok(ValidatedSshCert {
        key_id: cert.key_id().to_owned(),
        serial: cert.serial(),
        principals: cert.valid_principals().to_vec(),
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        source_address: checked.source_address,
        pinned_endpoint: checked.pinned_endpoint,
        login_ip: checked.login_ip,
        force_command: checked.force_command,
        verify_required: checked.verify_required,
        permissions: checked.permissions,
        ca_fingerprint,
    })
}

/// The critical options and extensions of a user certificate, read as
/// strictly as [`validate_user_cert`] reads them, by [`read_options`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SshOptions {
    /// The `source-address` list, when present.
    pub source_address: Option<SourceAddress>,
    /// The private endpoint the pin is bound to (critical option [`PINNED_ENDPOINT`]), when
    /// present: a pin check must compare it with the endpoint the client came through.
    pub pinned_endpoint: Option<String>,
    /// The `login-ip` extension, when present (informational, never a pin).
    pub login_ip: Option<IpAddr>,
    /// The `force-command` critical option, when present.
    pub force_command: Option<String>,
    /// Whether the `verify-required` critical option is present.
    pub verify_required: bool,
    /// The flag extensions.
    pub permissions: Permissions,
}

/// Reads the critical options and extensions of `cert` with the rules of
/// [`validate_user_cert`] (every critical option recognised, `source-address`
/// strict, flags without data, `login-ip` canonical, no NUL in names), and
/// nothing else.
///
/// This is **not** a validation: the CA, signature, validity window,
/// certificate type and principal are not looked at. It is for tools that
/// show or pin-check a certificate without its CA (`ippin inspect`,
/// `ippin check`), so that they refuse what sshd and the server refuse.
///
/// # Errors
/// [`Error::SshUnknownCriticalOption`], [`Error::SourceAddressEntry`],
/// [`Error::SshOption`].
pub fn read_options(cert: &Certificate) -> Result<SshOptions> {
    check_options(cert)
}

/// The critical option and extension checks of [`validate_user_cert`],
/// without the signature: what ippin adds to `ssh-key`'s `validate_at`.
fn check_options(cert: &Certificate) -> Result<SshOptions> {
    let mut out = SshOptions {
        source_address: None,
        pinned_endpoint: None,
        login_ip: None,
        force_command: None,
        verify_required: false,
        permissions: Permissions::none(),
    };
    let critical = |name: &str, reason: &str| Error::SshOption {
        kind: "critical option",
        name: crate::error::shown(name),
        reason: reason.to_owned(),
    };
    for (name, data) in cert.critical_options().iter() {
        match name.as_str() {
            SOURCE_ADDRESS => out.source_address = Some(SourceAddress::parse(data)?),
            FORCE_COMMAND => {
                if data.is_empty() {
                    return Err(critical(name, "empty command"));
                }
                if data.contains('\0') {
                    // sshd reads it as a C string and refuses a NUL inside
                    return Err(critical(name, "NUL character in the command"));
                }
                out.force_command = Some(data.clone());
            }
            VERIFY_REQUIRED => {
                if !data.is_empty() {
                    return Err(critical(name, "a flag option must not carry data"));
                }
                out.verify_required = true;
            }
            PINNED_ENDPOINT => {
                if !crate::x509::is_endpoint_name(data) {
                    return Err(critical(
                        name,
                        "not an endpoint name (1 to 32 lowercase letters, digits, `-` and `:`)",
                    ));
                }
                out.pinned_endpoint = Some(data.clone());
            }
            _ => {
                return Err(Error::SshUnknownCriticalOption {
                    name: crate::error::shown(name),
                });
            }
        }
    }
    let extension = |name: &str, reason: String| Error::SshOption {
        kind: "extension",
        name: crate::error::shown(name),
        reason,
    };
    let p = &mut out.permissions;
    for (name, data) in cert.extensions().iter() {
        let flag = match name.as_str() {
            LOGIN_IP => {
                out.login_ip = Some(parse_canonical_reason(data).map_err(|r| extension(name, r))?);
                continue;
            }
            PERMIT_X11 => &mut p.x11_forwarding,
            PERMIT_AGENT => &mut p.agent_forwarding,
            PERMIT_PORT => &mut p.port_forwarding,
            PERMIT_PTY => &mut p.pty,
            PERMIT_USER_RC => &mut p.user_rc,
            NO_TOUCH => &mut p.no_touch_required,
            // sshd reads every name as a C string: a NUL inside refuses the
            // certificate there, so it does here too
            _ if name.contains('\0') => {
                return Err(extension(
                    name,
                    "NUL character in the extension name".into(),
                ));
            }
            // A later version's field, narrowing the certificate: not ignored.
            _ if name.ends_with(IPPIN_NAME_SUFFIX) => {
                return Err(extension(
                    name,
                    "an ippin extension this version does not know".into(),
                ));
            }
            _ => continue,
        };
        if !data.is_empty() {
            return Err(extension(
                name,
                "a flag extension must not carry data".into(),
            ));
        }
        *flag = true;
    }
    if out.pinned_endpoint.is_some() && out.source_address.is_none() {
        return Err(critical(
            PINNED_ENDPOINT,
            "a private endpoint without the pin it binds (`source-address`)",
        ));
    }
    Ok(out)
}
