//! The one evaluation of pins, shared by the full decoder and the fast
//! path so the two cannot drift apart: both check the TBSCertificate's
//! shape ([`check_tbs_shape`]), then feed it the subject attributes and
//! then the extensions, in certificate order.

use std::collections::BTreeSet;
use std::net::IpAddr;

use der::asn1::ObjectIdentifier;
use ipnet::IpNet;

use super::{
    LOGIN_IP_OID, PINNED_ENDPOINT_OID, PINNED_IP_OID, TELEPORT_LOGIN_IP_OID, TELEPORT_PINNED_IP_OID,
};
use crate::ip::{parse_canonical_ip_bytes, parse_canonical_net_reason, parse_canonical_reason};
use crate::{Error, Result};

/// The ASN.1 type of an attribute value, as far as the pin cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttrKind {
    Printable,
    Utf8,
    Other,
}

impl AttrKind {
    pub(crate) fn from_tag_octet(tag: u8) -> AttrKind {
        match tag {
            0x13 => AttrKind::Printable,
            0x0c => AttrKind::Utf8,
            _ => AttrKind::Other,
        }
    }
}

/// What a certificate says about IPs, after the strict checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pins {
    /// The pin: one address (`/32`, `/128`) or, in the ippin layout only, a
    /// network.
    pub(crate) pinned: Option<IpNet>,
    /// The private endpoint the pin is bound to (ippin layout).
    pub(crate) endpoint: Option<String>,
    pub(crate) login: Option<IpAddr>,
    pub(crate) ippin_layout: bool,
    pub(crate) teleport_layout: bool,
}

/// The RFC 5280 shape rules both readers enforce on TBSCertificate, before
/// anything else is read from it: `version` is the Version value (0 = v1),
/// `unique_ids` whether issuerUniqueID or subjectUniqueID is present,
/// `extensions` whether `[3]` is present and, if so, whether its list is
/// empty.
///
/// RFC 5280 4.1: extensions only in v3 ("If present, version MUST be
/// v3"), unique identifiers only in v2 or v3, and `Extensions ::= SEQUENCE
/// SIZE (1..MAX) OF Extension` (present means at least one).
pub(crate) fn check_tbs_shape(
    version: u8,
    unique_ids: bool,
    extensions: Option<ExtensionsPresent>,
) -> Result<()> {
    let bad = |reason| Err(Error::CertificateProfile { reason });
    if version > 2 {
        return bad("version is not v1, v2 or v3");
    }
    if unique_ids && version == 0 {
        return bad("unique identifiers in a v1 certificate (RFC 5280: v2 or v3 only)");
    }
    match extensions {
        Some(_) if version != 2 => bad("extensions in a v1 or v2 certificate (RFC 5280: v3 only)"),
        Some(ExtensionsPresent::Empty) => {
            bad("extensions field present but empty (RFC 5280: SIZE (1..MAX))")
        }
        _ => Ok(()),
    }
}

/// Whether a present extensions list holds anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtensionsPresent {
    /// `[3] { SEQUENCE {} }`.
    Empty,
    /// At least one extension.
    NonEmpty,
}

/// The OIDs of the extensions seen so far, to refuse a second instance of
/// any extension (RFC 5280 4.2). Up to 16 are kept on the stack (a client
/// certificate has about 7); more spill into a set, so the check stays
/// O(n log n) on hostile input.
#[derive(Debug, Default)]
struct SeenOids<'a> {
    inline: [&'a [u8]; 16],
    len: usize,
    spill: BTreeSet<&'a [u8]>,
}

impl<'a> SeenOids<'a> {
    /// Records `oid`; false when it was already there.
    fn insert(&mut self, oid: &'a [u8]) -> bool {
        let seen = self.inline.get(..self.len).unwrap_or_default();
        if seen.contains(&oid) {
            return false;
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = oid;
                self.len += 1;
                true
            }
            None => self.spill.insert(oid),
        }
    }
}

/// The dotted form of an OID given as content octets (hex when it is not
/// a valid OID).
fn dotted(oid: &[u8]) -> String {
    match ObjectIdentifier::from_bytes(oid) {
        Ok(o) => o.to_string(),
        Err(_) => oid.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Whether `content` is a well-formed OBJECT IDENTIFIER encoding: at least
/// one octet, every sub-identifier minimal (no leading 0x80) and complete
/// (the last octet has bit 8 clear). A non-minimal encoding of the pin's
/// OID must not read as "some other extension" (and so "unpinned").
pub(crate) fn valid_oid(content: &[u8]) -> bool {
    let mut at_start = true;
    for &b in content {
        if at_start && b == 0x80 {
            return false;
        }
        at_start = b & 0x80 == 0;
    }
    !content.is_empty() && at_start
}

fn check_oid(oid: &[u8]) -> Result<()> {
    if valid_oid(oid) {
        Ok(())
    } else {
        Err(Error::CertificateProfile {
            reason: "malformed OBJECT IDENTIFIER (empty, a sub-identifier padded with 0x80, or truncated)",
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct PinState<'a> {
    ext_pin: Option<IpNet>,
    ext_endpoint: Option<String>,
    ext_login: Option<IpAddr>,
    tp_pin: Option<IpAddr>,
    tp_login: Option<IpAddr>,
    seen: SeenOids<'a>,
}

impl<'a> PinState<'a> {
    /// One subject attribute: `oid` is the OID's content octets, `value`
    /// the attribute value's content octets, `multi_valued` whether its
    /// RDN holds more than one attribute.
    pub(crate) fn on_attribute(
        &mut self,
        oid: &[u8],
        kind: AttrKind,
        value: &[u8],
        multi_valued: bool,
    ) -> Result<()> {
        check_oid(oid)?;
        let (slot, name) = if oid == TELEPORT_PINNED_IP_OID.as_bytes() {
            (&mut self.tp_pin, "1.3.9999.2.15")
        } else if oid == TELEPORT_LOGIN_IP_OID.as_bytes() {
            (&mut self.tp_login, "1.3.9999.1.9")
        } else {
            return Ok(());
        };
        if multi_valued {
            return Err(Error::AttributeValue {
                oid: name.to_owned(),
                reason: "in a multi-valued RDN; Teleport puts each attribute in its own RDN"
                    .to_owned(),
            });
        }
        if slot.is_some() {
            return Err(Error::DuplicateAttribute {
                oid: name.to_owned(),
            });
        }
        let bad = |reason: String| Error::AttributeValue {
            oid: name.to_owned(),
            reason,
        };
        if kind == AttrKind::Other {
            return Err(bad("expected PrintableString or UTF8String".to_owned()));
        }
        if kind == AttrKind::Printable && !value.iter().all(|b| is_printable(*b)) {
            return Err(bad("character not allowed in PrintableString".to_owned()));
        }
        *slot = Some(parse_canonical_ip_bytes(value).map_err(bad)?);
        Ok(())
    }

    /// One extension: `oid` is the OID's content octets, `value` the
    /// extnValue OCTET STRING's content octets.
    pub(crate) fn on_extension(
        &mut self,
        oid: &'a [u8],
        critical: bool,
        value: &[u8],
    ) -> Result<()> {
        check_oid(oid)?;
        if !self.seen.insert(oid) {
            return Err(Error::DuplicateExtension { oid: dotted(oid) });
        }
        let is_pin = oid == PINNED_IP_OID.as_bytes();
        let is_endpoint = oid == PINNED_ENDPOINT_OID.as_bytes();
        let name = if is_pin {
            "1.3.9999.1.9"
        } else if oid == LOGIN_IP_OID.as_bytes() {
            "1.3.9999.1.9.1"
        } else if is_endpoint {
            "1.3.9999.1.9.3"
        } else if oid.len() > PINNED_IP_OID.as_bytes().len()
            && oid.starts_with(PINNED_IP_OID.as_bytes())
        {
            // Under ippin's arc, unknown to this version: a field a later version adds to
            // narrow a certificate is not dropped by an older reader (fail closed across
            // versions).
            return Err(Error::ExtensionValue {
                oid: dotted(oid),
                reason: "an ippin extension this version does not know".to_owned(),
            });
        } else {
            return Ok(());
        };
        // (A second instance of either OID was refused above by `seen`.)
        if critical {
            return Err(Error::CriticalExtension {
                oid: name.to_owned(),
            });
        }
        let bad = |reason: String| Error::ExtensionValue {
            oid: name.to_owned(),
            reason,
        };
        if is_pin {
            self.ext_pin = Some(decode_net_printable(value).map_err(bad)?);
        } else if is_endpoint {
            let text = printable_text(value).map_err(bad)?;
            if !super::is_endpoint_name(text) {
                return Err(bad(
                    "not an endpoint name (1 to 32 lowercase letters, digits, `-` and `:`)"
                        .to_owned(),
                ));
            }
            self.ext_endpoint = Some(text.to_owned());
        } else {
            self.ext_login = Some(decode_ip_printable(value).map_err(bad)?);
        }
        Ok(())
    }

    /// The result, once every attribute and extension has been seen.
    pub(crate) fn finish(self) -> Result<Pins> {
        if self.ext_endpoint.is_some() && self.ext_pin.is_none() {
            return Err(Error::ExtensionValue {
                oid: "1.3.9999.1.9.3".to_owned(),
                reason: "a private endpoint without the pin it binds (1.3.9999.1.9)".to_owned(),
            });
        }
        let ippin_layout =
            self.ext_pin.is_some() || self.ext_login.is_some() || self.ext_endpoint.is_some();
        let teleport_layout = self.tp_pin.is_some() || self.tp_login.is_some();
        let tp_pin = self.tp_pin.map(IpNet::from);
        if ippin_layout && teleport_layout {
            // A network pin in the ippin extension never equals the Teleport
            // attribute (one address): such a certificate is refused here.
            if self.ext_pin != tp_pin {
                return Err(Error::LayoutMismatch {
                    what: "pinned IP",
                    ippin: self.ext_pin,
                    teleport: tp_pin,
                });
            }
            if self.ext_login != self.tp_login {
                return Err(Error::LayoutMismatch {
                    what: "login IP",
                    ippin: self.ext_login.map(IpNet::from),
                    teleport: self.tp_login.map(IpNet::from),
                });
            }
        }
        Ok(Pins {
            pinned: self.ext_pin.or(tp_pin),
            endpoint: self.ext_endpoint,
            login: self.ext_login.or(self.tp_login),
            ippin_layout,
            teleport_layout,
        })
    }
}

/// PrintableString characters (X.680 41.4).
pub(crate) fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

/// Strictly decodes `PrintableString` holding a canonical IP: exactly one
/// TLV, tag 0x13, minimal definite length, nothing after it.
pub(crate) fn decode_ip_printable(value: &[u8]) -> Result<IpAddr, String> {
    printable_text(value).and_then(parse_canonical_reason)
}

/// As [`decode_ip_printable`] for the pin, which may also be a network in
/// canonical CIDR text (`2001:db8:1:2::/64`; see `docs/cert.md`).
pub(crate) fn decode_net_printable(value: &[u8]) -> Result<IpNet, String> {
    printable_text(value).and_then(parse_canonical_net_reason)
}

/// The text of one DER `PrintableString` TLV: tag 0x13, minimal definite
/// length, nothing after it, PrintableString characters only.
fn printable_text(value: &[u8]) -> Result<&str, String> {
    let (&tag, rest) = value.split_first().ok_or("empty value")?;
    if tag != 0x13 {
        return Err(format!(
            "wrong inner type (tag 0x{tag:02x}); expected PrintableString (0x13)"
        ));
    }
    let (&len0, rest) = rest.split_first().ok_or("truncated length")?;
    let (len, rest) = match len0 {
        0..=0x7f => (usize::from(len0), rest),
        0x81 => {
            let (&l, rest) = rest.split_first().ok_or("truncated length")?;
            if l < 0x80 {
                return Err("non-minimal length".to_owned());
            }
            (usize::from(l), rest)
        }
        0x80 => return Err("indefinite length".to_owned()),
        _ => return Err("length too long for an IP address".to_owned()),
    };
    if rest.len() < len {
        return Err("truncated PrintableString".to_owned());
    }
    if rest.len() > len {
        return Err("trailing bytes after the PrintableString".to_owned());
    }
    if !rest.iter().all(|b| is_printable(*b)) {
        return Err("character not allowed in PrintableString".to_owned());
    }
    // PrintableString characters are ASCII.
    std::str::from_utf8(rest).map_err(|_| "not ASCII text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::valid_oid;

    #[test]
    fn oid_encodings() {
        assert!(valid_oid(&[0x2b, 0xce, 0x0f, 0x01, 0x09])); // 1.3.9999.1.9
        assert!(valid_oid(&[0x00]));
        assert!(!valid_oid(&[]));
        assert!(!valid_oid(&[0x2b, 0x80, 0xce, 0x0f, 0x01, 0x09])); // padded arc
        assert!(!valid_oid(&[0x80, 0x2b])); // padded first arc
        assert!(!valid_oid(&[0x2b, 0xce])); // truncated arc
    }
}
