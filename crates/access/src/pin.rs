//! The one place a certificate becomes a [`CertPin`].
//!
//! The rule: **a pin that cannot be read is [`CertPin::Invalid`], never [`CertPin::None`]**.
//! A certificate whose pin extension (or `source-address`) is malformed, repeated or of the
//! wrong type must not pass as an unpinned certificate, or a user could strip their pin by
//! damaging it. `ippin-policy`'s [`check_pin`](ippin_policy::check_pin) refuses an invalid
//! pin (`invalid_pin`) whatever the roles say.
//!
//! ```
//! use ippin_access::pin::x509_pin;
//! use ippin_policy::{CertPin, Endpoint};
//!
//! // Bytes that are not a certificate: invalid, not "no pin".
//! assert!(matches!(x509_pin(b"\x30\x03\x02\x01\x00"), CertPin::Invalid(_)));
//! ```

use ippin_cert::ssh::SourceAddress;
use ippin_cert::ssh_key::Certificate as SshCertificate;
use ippin_policy::{CertPin, Endpoint};

/// The pin of a DER X.509 certificate that TLS verified (the fast, strict walk of
/// `ippin-cert`; both layouts). A pin bound to a private endpoint is [`CertPin::Invalid`]
/// here (the endpoint would be dropped): read such certificates with [`x509_pin_at`].
pub fn x509_pin(der: &[u8]) -> CertPin {
    from_result(ippin_cert::x509::pin_fast(der).map(|net| net.map(network_pin)))
}

/// The pin of a DER X.509 certificate that TLS verified and the private endpoint it is
/// bound to, for [`ippin_policy::check_pin_at`].
pub fn x509_pin_at(der: &[u8]) -> (CertPin, Option<Endpoint>) {
    match ippin_cert::x509::pin_fast_at(der) {
        Ok((net, endpoint)) => with_endpoint(net.map_or(CertPin::None, network_pin), endpoint),
        Err(e) => (CertPin::Invalid(e.to_string()), None),
    }
}

/// A pin and the endpoint name a certificate gave with it: a name the policy crate does not
/// take makes the pin invalid, never unbound.
pub fn with_endpoint(pin: CertPin, endpoint: Option<String>) -> (CertPin, Option<Endpoint>) {
    match endpoint {
        None => (pin, None),
        Some(name) => match Endpoint::parse(&name) {
            Some(e) => (pin, Some(e)),
            None => (
                CertPin::Invalid(format!("the pin's private endpoint {name:?} is not a name")),
                None,
            ),
        },
    }
}

/// A pin read as one network: [`CertPin::Ip`] for a `/32` or `/128`, else a one-network
/// [`CertPin::Nets`] (a prefix pin).
pub fn network_pin(net: ipnet::IpNet) -> CertPin {
    if net.prefix_len() == net.max_prefix_len() {
        CertPin::Ip(net.addr())
    } else {
        CertPin::Nets(vec![net])
    }
}

/// The pin of a decoded `x509-cert` certificate. It is re-encoded and read with the same
/// strict rules as [`x509_pin`]; a certificate that does not encode has an invalid pin.
pub fn x509_cert_pin(cert: &x509_cert::Certificate) -> CertPin {
    use der::Encode;
    match cert.to_der() {
        Ok(der) => x509_pin(&der),
        Err(e) => CertPin::Invalid(format!("the certificate does not encode: {e}")),
    }
}

/// The pin of an OpenSSH certificate: its `source-address` critical option, read as strictly
/// as sshd reads it. A certificate whose critical options do not read (an unknown critical
/// option, a malformed list) has an invalid pin.
///
/// This reads the option only; it does not validate the certificate (CA, signature, window,
/// principal): [`crate::ssh::authorize`] does all of that.
///
/// A pin bound to a private endpoint (critical option `pinned-endpoint@ippin`) is
/// [`CertPin::Invalid`] here: read such certificates with [`ssh_pin_at`].
pub fn ssh_pin(cert: &SshCertificate) -> CertPin {
    match ssh_pin_at(cert) {
        (pin, None) => pin,
        (_, Some(e)) => CertPin::Invalid(format!(
            "the pin is bound to private endpoint {e}; read it with ssh_pin_at"
        )),
    }
}

/// [`ssh_pin`] and the private endpoint the pin is bound to, for
/// [`ippin_policy::check_pin_at`].
pub fn ssh_pin_at(cert: &SshCertificate) -> (CertPin, Option<Endpoint>) {
    match ippin_cert::ssh::read_options(cert) {
        Ok(o) => with_endpoint(
            o.source_address.map_or(CertPin::None, source_address_pin),
            o.pinned_endpoint,
        ),
        Err(e) => (CertPin::Invalid(e.to_string()), None),
    }
}

/// A `source-address` list as a pin.
pub fn source_address_pin(sa: SourceAddress) -> CertPin {
    CertPin::Nets(sa.nets().to_vec())
}

/// The pin as text for an audit line: `None` when unpinned, the pin's display form otherwise
/// (an invalid pin names its error).
pub fn pin_text(pin: &CertPin) -> Option<String> {
    match pin {
        CertPin::None => None,
        other => Some(other.to_string()),
    }
}

/// The pin as a list of networks for an audit line (empty when unpinned or invalid).
pub fn pin_strings(pin: &CertPin) -> Vec<String> {
    match pin {
        CertPin::Nets(nets) => nets.iter().map(|n| n.to_string()).collect(),
        CertPin::Ip(ip) => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

fn from_result(r: Result<Option<CertPin>, ippin_cert::Error>) -> CertPin {
    match r {
        Ok(Some(pin)) => pin,
        Ok(None) => CertPin::None,
        Err(e) => CertPin::Invalid(e.to_string()),
    }
}
