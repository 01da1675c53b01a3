//! The crate's one error type.

use ipnet::IpNet;
use std::net::IpAddr;

/// Everything that can go wrong when issuing, reading or validating a
/// certificate.
///
/// Each variant carries the context a user needs to act on it, and
/// [`Error::code`] gives a stable, machine-readable reason code for logs and
/// metrics (denials are values: the code does not change when the message
/// wording does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An IP address in text form (a pin, a login IP) is not in the one
    /// canonical form ippin accepts.
    #[error("{field} `{text}`: {reason}")]
    IpText {
        /// Where the text was found, e.g. `login-ip extension`.
        field: &'static str,
        /// The offending text (lossily decoded when not UTF-8).
        text: String,
        /// Why it was refused.
        reason: String,
    },

    /// An entry of an OpenSSH `source-address` list is malformed; the whole
    /// list (and so the whole certificate) is refused.
    #[error("source-address entry `{entry}`: {reason}")]
    SourceAddressEntry {
        /// The offending entry (empty for an empty entry).
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The client's IP is not allowed by the certificate's `source-address`.
    #[error("client address {ip} is not allowed by source-address `{allowed}`")]
    SourceAddressMismatch {
        /// The (canonical) client IP that was checked.
        ip: IpAddr,
        /// The certificate's list.
        allowed: String,
    },

    /// A certificate request was refused by its builder.
    #[error("certificate request: {field}: {reason}")]
    Request {
        /// The request field at fault.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// The `ssh-key` crate reported an error (parsing, encoding, signing).
    #[error("{context}: {source}")]
    SshKey {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: ssh_key::Error,
    },

    /// An SSH certificate parses but is not in its one canonical encoding
    /// (e.g. data after an option's inner string), or the text holds more
    /// than one line.
    #[error("OpenSSH certificate: {reason}")]
    SshEncoding {
        /// What was wrong.
        reason: String,
    },

    /// An SSH certificate's CA key or signature algorithm is refused
    /// (RSA/SHA-1, DSA, FIDO, a certificate as CA key, a mismatch).
    #[error("CA key `{key}` with signature `{signature}`: {reason}")]
    SshCaAlgorithm {
        /// The CA key's algorithm name.
        key: String,
        /// The signature's algorithm name.
        signature: String,
        /// Why it was refused.
        reason: String,
    },

    /// An SSH certificate is not a user certificate.
    #[error("certificate type is `host`; a user certificate is required")]
    SshNotUserCert,

    /// An SSH certificate was signed by a CA that is not trusted.
    #[error("certificate signed by an untrusted CA ({fingerprint})")]
    SshUntrustedCa {
        /// The SHA-256 fingerprint of the signing CA key.
        fingerprint: String,
    },

    /// An SSH certificate is outside its validity window.
    #[error("certificate not valid at {now}: valid from {valid_after} until before {valid_before}")]
    SshValidity {
        /// The time the check was made at (unix seconds).
        now: u64,
        /// The certificate's `valid after` (unix seconds).
        valid_after: u64,
        /// The certificate's `valid before` (unix seconds).
        valid_before: u64,
    },

    /// The CA signature on an SSH certificate does not verify.
    #[error("certificate CA signature does not verify")]
    SshSignature,

    /// The principal is not listed in the SSH certificate.
    #[error("principal `{principal}` is not among the certificate's principals [{principals}]")]
    SshPrincipal {
        /// The principal asked for.
        principal: String,
        /// The certificate's principals, comma separated.
        principals: String,
    },

    /// An SSH certificate carries a critical option ippin does not
    /// recognise; OpenSSH requires refusing such a certificate.
    #[error("unrecognised critical option `{name}`")]
    SshUnknownCriticalOption {
        /// The option's name.
        name: String,
    },

    /// A recognised SSH critical option or extension has a malformed value.
    #[error("{kind} `{name}`: {reason}")]
    SshOption {
        /// `critical option` or `extension`.
        kind: &'static str,
        /// The option's name.
        name: String,
        /// Why it was refused.
        reason: String,
    },

    /// The `der` crate (through `x509-cert`) refused a structure.
    #[error("{context}: {source}")]
    Der {
        /// What was being decoded or encoded.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: der::Error,
    },

    /// The fast path's hand-written DER walker refused a structure.
    #[error("{context}: malformed DER at offset {offset}: {reason}")]
    DerStructure {
        /// The structure being read.
        context: &'static str,
        /// Byte offset in the certificate.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// An X.509 certificate breaks an RFC 5280 structural rule both
    /// readers enforce: an empty extensions list, extensions in a v1/v2
    /// certificate, unique identifiers in a v1 certificate, a bad version.
    #[error("certificate structure: {reason}")]
    CertificateProfile {
        /// What was wrong.
        reason: &'static str,
    },

    /// An X.509 extension appears more than once (RFC 5280 4.2: a
    /// certificate must not include more than one instance of a particular
    /// extension), whichever extension it is.
    #[error("duplicate extension {oid}")]
    DuplicateExtension {
        /// The extension's OID, dotted.
        oid: String,
    },

    /// An ippin X.509 extension is marked critical (ippin issues it
    /// non-critical, and rustls/webpki refuse unknown critical extensions).
    #[error("extension {oid} is marked critical; it must be non-critical")]
    CriticalExtension {
        /// The extension's OID, dotted.
        oid: String,
    },

    /// The value of an ippin X.509 extension is malformed.
    #[error("extension {oid} value: {reason}")]
    ExtensionValue {
        /// The extension's OID, dotted.
        oid: String,
        /// Why it was refused.
        reason: String,
    },

    /// A subject attribute ippin reads (Teleport layout) appears twice.
    #[error("duplicate subject attribute {oid}")]
    DuplicateAttribute {
        /// The attribute's OID, dotted.
        oid: String,
    },

    /// The value of a subject attribute ippin reads is malformed.
    #[error("subject attribute {oid}: {reason}")]
    AttributeValue {
        /// The attribute's OID, dotted.
        oid: String,
        /// Why it was refused.
        reason: String,
    },

    /// The ippin layout and the Teleport layout of one certificate disagree.
    #[error(
        "{what}: the ippin extension says {ippin:?}, the Teleport subject attribute says {teleport:?}"
    )]
    LayoutMismatch {
        /// `pinned IP` or `login IP`.
        what: &'static str,
        /// The value in the ippin layout (one address is a `/32` or `/128`).
        ippin: Option<IpNet>,
        /// The value in the Teleport layout (one address is a `/32` or `/128`).
        teleport: Option<IpNet>,
    },

    /// The certificate is pinned to a network (or, in SSH, a list), and the
    /// caller asked for one address ([`crate::x509::pinned_ip`],
    /// [`crate::x509::pinned_ip_fast`], [`crate::ssh::ValidatedSshCert::pinned_ip`]):
    /// read the whole pin with [`crate::x509::pin`], [`crate::x509::pin_fast`]
    /// or the `source_address` field.
    #[error("the certificate is pinned to {pin}, not to one address")]
    PinIsNetwork {
        /// The pin, as text (canonical CIDR, or the `source-address` list).
        pin: String,
    },

    /// The pin is bound to a private endpoint (the X.509 extension 1.3.9999.1.9.3, the SSH
    /// critical option `pinned-endpoint@ippin`), and the caller asked for the pin alone, which would
    /// drop the binding: read it with the functions that return both (`x509::pin_at`,
    /// `x509::pin_fast_at`, the `pinned_endpoint` fields).
    #[error(
        "the certificate's pin is bound to private endpoint {endpoint}; read the pin with its endpoint"
    )]
    PinBoundToEndpoint {
        /// The endpoint's name.
        endpoint: String,
    },

    /// The pin is bound to one private endpoint and the client came through another, or
    /// through none (or the other way round).
    #[error(
        "the certificate's pin holds through private endpoint {pinned}; the client came through {seen}"
    )]
    EndpointMismatch {
        /// The pin's endpoint (`none` when unbound).
        pinned: String,
        /// The client's endpoint (`none` when it came through none).
        seen: String,
    },

    /// A network pin was asked of a layout that cannot carry one: Teleport's
    /// subject attribute holds one address. Refused rather than widened or
    /// narrowed.
    #[error(
        "the {profile} layout cannot carry the network pin {pin}: Teleport's pinned-IP attribute holds one address"
    )]
    ProfileCannotPinNetwork {
        /// The layout asked for (`teleport` or `both`).
        profile: &'static str,
        /// The network.
        pin: IpNet,
    },

    /// The certificate subject does not have the shape ippin requires.
    #[error("subject: {reason}")]
    Subject {
        /// What was wrong.
        reason: String,
    },

    /// A key could not be read, or does not fit.
    #[error("key: {reason}")]
    Key {
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// A stable reason code (`snake_case`), for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Error::IpText { .. } => "ip_text",
            Error::SourceAddressEntry { .. } => "source_address_malformed",
            Error::SourceAddressMismatch { .. } => "source_address_mismatch",
            Error::Request { .. } => "bad_request",
            Error::SshKey { .. } => "ssh_encoding",
            Error::SshEncoding { .. } => "ssh_encoding",
            Error::SshCaAlgorithm { .. } => "ssh_ca_algorithm",
            Error::SshNotUserCert => "ssh_not_user_cert",
            Error::SshUntrustedCa { .. } => "ssh_untrusted_ca",
            Error::SshValidity { .. } => "ssh_validity",
            Error::SshSignature => "ssh_signature",
            Error::SshPrincipal { .. } => "ssh_principal",
            Error::SshUnknownCriticalOption { .. } => "ssh_unknown_critical_option",
            Error::SshOption { .. } => "ssh_option_malformed",
            Error::Der { .. } => "der",
            Error::DerStructure { .. } => "der_structure",
            Error::CertificateProfile { .. } => "certificate_profile",
            Error::DuplicateExtension { .. } => "duplicate_extension",
            Error::CriticalExtension { .. } => "critical_extension",
            Error::ExtensionValue { .. } => "extension_value",
            Error::DuplicateAttribute { .. } => "duplicate_attribute",
            Error::AttributeValue { .. } => "attribute_value",
            Error::LayoutMismatch { .. } => "layout_mismatch",
            Error::PinIsNetwork { .. } => "pin_is_network",
            Error::PinBoundToEndpoint { .. } => "pin_bound_to_endpoint",
            Error::EndpointMismatch { .. } => "pinned_endpoint_mismatch",
            Error::ProfileCannotPinNetwork { .. } => "profile_cannot_pin_network",
            Error::Subject { .. } => "subject",
            Error::Key { .. } => "key",
        }
    }

    pub(crate) fn ssh(context: &'static str) -> impl FnOnce(ssh_key::Error) -> Error {
        move |source| Error::SshKey { context, source }
    }

    #[allow(dead_code)]
    pub(crate) fn der(context: &'static str) -> impl FnOnce(der::Error) -> Error {
        move |source| Error::Der { context, source }
    }

    #[cfg(feature = "issue")]
    pub(crate) fn request(field: &'static str, reason: impl Into<String>) -> Error {
        Error::Request {
            field,
            reason: reason.into(),
        }
    }
}

/// How untrusted text (an option name, a list entry, an IP text) is shown
/// in an error message: at most 64 characters, control characters and
/// quotes escaped, so a hostile certificate cannot forge log lines.
pub(crate) fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
