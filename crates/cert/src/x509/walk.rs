//! The fast path: a hand-written, allocation-free walk over a DER
//! certificate to the two places a pin can be (subject attributes and
//! extensions), with strict DER framing.
//!
//! It checks the framing of every TLV it crosses (known tag at each
//! position, minimal definite lengths, nothing trailing) but does not
//! interpret the fields it skips (serial, algorithms, issuer, validity, key,
//! attribute values other than the pin's). The subject attributes and the
//! extensions it does read go through the same evaluation as the full
//! decoder ([`super::pin::PinState`]), so on every certificate `x509-cert`
//! accepts the two agree exactly, and the fast path never fails where the
//! full decoder succeeds.

use super::pin::{AttrKind, ExtensionsPresent, PinState, Pins, check_tbs_shape};
use crate::{Error, Result};

/// One DER TLV inside the certificate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    /// The first tag octet.
    pub(crate) tag: u8,
    /// The contents.
    pub(crate) value: &'a [u8],
    /// Header and contents (read by issuance, feature `issue`).
    #[cfg_attr(not(feature = "issue"), allow(dead_code))]
    pub(crate) raw: &'a [u8],
    /// Offset of the contents in the whole certificate.
    pub(crate) value_offset: usize,
}

/// A cursor over the contents of one constructed TLV.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    ctx: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, ctx: &'static str) -> Cursor<'a> {
        Cursor {
            buf,
            pos: 0,
            base,
            ctx,
        }
    }

    fn inside(t: &Tlv<'a>, ctx: &'static str) -> Cursor<'a> {
        Cursor::new(t.value, t.value_offset, ctx)
    }

    fn err(&self, reason: &'static str) -> Error {
        Error::DerStructure {
            context: self.ctx,
            offset: self.base.saturating_add(self.pos),
            reason,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads any TLV.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>> {
        let start = self.pos;
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            // High-tag-number form: up to five subsequent octets.
            let mut ended = false;
            for _ in 0..5 {
                if self.byte()? & 0x80 == 0 {
                    ended = true;
                    break;
                }
            }
            if !ended {
                return Err(self.err("tag number too long"));
            }
        }
        let first = self.byte()?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x80 => return Err(self.err("indefinite length")),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                let mut len = 0usize;
                for _ in 0..n {
                    len = (len << 8) | usize::from(self.byte()?);
                }
                let minimal = match n {
                    1 => len >= 0x80,
                    n => len >> (8 * (n - 1)) != 0,
                };
                if !minimal {
                    return Err(self.err("non-minimal length"));
                }
                len
            }
            _ => return Err(self.err("length too long")),
        };
        let value_start = self.pos;
        let end = value_start
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| self.err("length beyond the end of the structure"))?;
        self.pos = end;
        Ok(Tlv {
            tag,
            value: self.buf.get(value_start..end).unwrap_or_default(),
            raw: self.buf.get(start..end).unwrap_or_default(),
            value_offset: self.base.saturating_add(value_start),
        })
    }

    /// Reads a TLV whose first tag octet must be `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>> {
        if self.peek() != Some(tag) {
            return Err(self.err(what));
        }
        self.any()
    }

    /// Requires the cursor to be at the end.
    pub(crate) fn end(&self, what: &'static str) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
}

/// The parts of a certificate the crate needs without a full decode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CertParts<'a> {
    /// The subject Name TLV.
    pub(crate) subject: Tlv<'a>,
    /// The SubjectPublicKeyInfo TLV (read by issuance, feature `issue`).
    #[cfg_attr(not(feature = "issue"), allow(dead_code))]
    pub(crate) spki: Tlv<'a>,
    /// The `SEQUENCE OF Extension` TLV inside `[3]`, when present.
    pub(crate) extensions: Option<Tlv<'a>>,
    /// The Version value (0 = v1, the default when absent).
    pub(crate) version: u8,
    /// Whether issuerUniqueID or subjectUniqueID is present.
    pub(crate) unique_ids: bool,
}

/// Walks the framing of Certificate and TBSCertificate.
pub(crate) fn cert_parts(der: &[u8]) -> Result<CertParts<'_>> {
    let mut top = Cursor::new(der, 0, "Certificate");
    let cert = top.expect(0x30, "expected SEQUENCE")?;
    top.end("trailing bytes after the certificate")?;

    let mut c = Cursor::inside(&cert, "Certificate");
    let tbs = c.expect(0x30, "expected TBSCertificate SEQUENCE")?;
    c.expect(0x30, "expected signatureAlgorithm SEQUENCE")?;
    c.expect(0x03, "expected signature BIT STRING")?;
    c.end("trailing fields in Certificate")?;

    let mut t = Cursor::inside(&tbs, "TBSCertificate");
    // version [0] EXPLICIT INTEGER DEFAULT v1: exactly `02 01 0v` inside.
    let mut version = 0;
    if t.peek() == Some(0xa0) {
        let wrapper = t.any()?;
        let mut v = Cursor::inside(&wrapper, "version");
        let int = v.expect(0x02, "expected version INTEGER")?;
        v.end("trailing bytes after version")?;
        version = match int.value {
            [n] if *n <= 2 => *n,
            _ => return Err(v.err("version is not v1, v2 or v3 (one octet 0, 1 or 2)")),
        };
    }
    t.expect(0x02, "expected serialNumber INTEGER")?;
    t.expect(0x30, "expected signature AlgorithmIdentifier")?;
    t.expect(0x30, "expected issuer Name")?;
    t.expect(0x30, "expected validity SEQUENCE")?;
    let subject = t.expect(0x30, "expected subject Name")?;
    let spki = t.expect(0x30, "expected subjectPublicKeyInfo SEQUENCE")?;
    let mut unique_ids = false;
    if t.peek() == Some(0x81) {
        t.any()?;
        unique_ids = true;
    }
    if t.peek() == Some(0x82) {
        t.any()?;
        unique_ids = true;
    }
    let mut extensions = None;
    if t.peek() == Some(0xa3) {
        let wrapper = t.any()?;
        let mut w = Cursor::inside(&wrapper, "extensions");
        extensions = Some(w.expect(0x30, "expected Extensions SEQUENCE")?);
        w.end("trailing bytes after Extensions")?;
    }
    t.end("unexpected field after subjectPublicKeyInfo")?;
    Ok(CertParts {
        subject,
        spki,
        extensions,
        version,
        unique_ids,
    })
}

/// Feeds every subject attribute to `state`, in order.
pub(crate) fn walk_subject(subject: &Tlv<'_>, state: &mut PinState<'_>) -> Result<()> {
    let mut rdns = Cursor::inside(subject, "subject");
    while !rdns.is_empty() {
        let rdn = rdns.expect(0x31, "expected RelativeDistinguishedName SET")?;
        let mut atvs = Cursor::inside(&rdn, "subject");
        let mut first = true;
        while !atvs.is_empty() {
            let atv = atvs.expect(0x30, "expected AttributeTypeAndValue SEQUENCE")?;
            let multi_valued = !(first && atvs.is_empty());
            first = false;
            let mut a = Cursor::inside(&atv, "subject");
            let oid = a.expect(0x06, "expected attribute type OID")?;
            let value = a.any()?;
            a.end("trailing bytes in AttributeTypeAndValue")?;
            state.on_attribute(
                oid.value,
                AttrKind::from_tag_octet(value.tag),
                value.value,
                multi_valued,
            )?;
        }
    }
    Ok(())
}

/// Feeds every extension to `state`, in order.
pub(crate) fn walk_extensions<'a>(exts: &Tlv<'a>, state: &mut PinState<'a>) -> Result<()> {
    let mut list = Cursor::inside(exts, "extensions");
    while !list.is_empty() {
        let ext = list.expect(0x30, "expected Extension SEQUENCE")?;
        let mut e = Cursor::inside(&ext, "extension");
        let oid = e.expect(0x06, "expected extnID OID")?;
        let mut critical = false;
        if e.peek() == Some(0x01) {
            let b = e.any()?;
            critical = match b.value {
                [0x00] => false,
                [0xff] => true,
                _ => return Err(e.err("BOOLEAN must be one octet 0x00 or 0xFF")),
            };
        }
        let value = e.expect(0x04, "expected extnValue OCTET STRING")?;
        e.end("trailing fields in Extension")?;
        state.on_extension(oid.value, critical, value.value)?;
    }
    Ok(())
}

/// The fast path proper.
pub(crate) fn pins_fast(der: &[u8]) -> Result<Pins> {
    let parts = cert_parts(der)?;
    check_tbs_shape(
        parts.version,
        parts.unique_ids,
        parts.extensions.map(|e| {
            if e.value.is_empty() {
                ExtensionsPresent::Empty
            } else {
                ExtensionsPresent::NonEmpty
            }
        }),
    )?;
    let mut state = PinState::default();
    walk_subject(&parts.subject, &mut state)?;
    if let Some(exts) = &parts.extensions {
        walk_extensions(exts, &mut state)?;
    }
    state.finish()
}
