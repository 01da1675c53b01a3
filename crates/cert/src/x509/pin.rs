//! The one evaluation of pins, shared by the full decoder and the fast
//! path so the two cannot drift apart: both feed it the subject attributes
//! and then the extensions, in certificate order.

use std::net::IpAddr;

use super::{LOGIN_IP_OID, PINNED_IP_OID, TELEPORT_LOGIN_IP_OID, TELEPORT_PINNED_IP_OID};
use crate::ip::parse_canonical_ip_bytes;
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pins {
    pub(crate) pinned: Option<IpAddr>,
    pub(crate) login: Option<IpAddr>,
    pub(crate) ippin_layout: bool,
    pub(crate) teleport_layout: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PinState {
    ext_pin: Option<IpAddr>,
    ext_login: Option<IpAddr>,
    tp_pin: Option<IpAddr>,
    tp_login: Option<IpAddr>,
}

impl PinState {
    /// One subject attribute: `oid` is the OID's content octets, `value`
    /// the attribute value's content octets.
    pub(crate) fn on_attribute(&mut self, oid: &[u8], kind: AttrKind, value: &[u8]) -> Result<()> {
        let (slot, name) = if oid == TELEPORT_PINNED_IP_OID.as_bytes() {
            (&mut self.tp_pin, "1.3.9999.2.15")
        } else if oid == TELEPORT_LOGIN_IP_OID.as_bytes() {
            (&mut self.tp_login, "1.3.9999.1.9")
        } else {
            return Ok(());
        };
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
    pub(crate) fn on_extension(&mut self, oid: &[u8], critical: bool, value: &[u8]) -> Result<()> {
        let (slot, name) = if oid == PINNED_IP_OID.as_bytes() {
            (&mut self.ext_pin, "1.3.9999.1.9")
        } else if oid == LOGIN_IP_OID.as_bytes() {
            (&mut self.ext_login, "1.3.9999.1.9.1")
        } else {
            return Ok(());
        };
        if slot.is_some() {
            return Err(Error::DuplicateExtension {
                oid: name.to_owned(),
            });
        }
        if critical {
            return Err(Error::CriticalExtension {
                oid: name.to_owned(),
            });
        }
        let ip = decode_ip_printable(value).map_err(|reason| Error::ExtensionValue {
            oid: name.to_owned(),
            reason: reason.to_owned(),
        })?;
        *slot = Some(ip);
        Ok(())
    }

    /// The result, once every attribute and extension has been seen.
    pub(crate) fn finish(self) -> Result<Pins> {
        let ippin_layout = self.ext_pin.is_some() || self.ext_login.is_some();
        let teleport_layout = self.tp_pin.is_some() || self.tp_login.is_some();
        if ippin_layout && teleport_layout {
            if self.ext_pin != self.tp_pin {
                return Err(Error::LayoutMismatch {
                    what: "pinned IP",
                    ippin: self.ext_pin,
                    teleport: self.tp_pin,
                });
            }
            if self.ext_login != self.tp_login {
                return Err(Error::LayoutMismatch {
                    what: "login IP",
                    ippin: self.ext_login,
                    teleport: self.tp_login,
                });
            }
        }
        Ok(Pins {
            pinned: self.ext_pin.or(self.tp_pin),
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
    parse_canonical_ip_bytes(rest)
}
