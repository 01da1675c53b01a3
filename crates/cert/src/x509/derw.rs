//! A minimal DER writer for the structures the CA signs.

use der::asn1::ObjectIdentifier;

pub(crate) fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// `tag length content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A constructed TLV of concatenated parts.
pub(crate) fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(0x30, parts)
}

pub(crate) fn oid(oid: &ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, oid.as_bytes())
}

/// A positive INTEGER from unsigned big-endian bytes.
pub(crate) fn uint(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v: Vec<u8> = bytes.get(skip..).unwrap_or_default().to_vec();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// One Extension.
pub(crate) fn extension(id: &ObjectIdentifier, critical: bool, value: &[u8]) -> Vec<u8> {
    let value = tlv(0x04, value);
    if critical {
        seq(&[&oid(id), &[0x01, 0x01, 0xff], &value])
    } else {
        seq(&[&oid(id), &value])
    }
}

/// One single-valued RelativeDistinguishedName.
pub(crate) fn rdn(id: &ObjectIdentifier, string_tag: u8, value: &str) -> Vec<u8> {
    cons(
        0x31,
        &[&seq(&[&oid(id), &tlv(string_tag, value.as_bytes())])],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal() {
        assert_eq!(tlv(4, &[0; 3])[..2], [4, 3]);
        assert_eq!(tlv(4, &[0; 0x80])[..3], [4, 0x81, 0x80]);
        assert_eq!(tlv(4, &[0; 0x100])[..4], [4, 0x82, 1, 0]);
        assert_eq!(uint(&[0, 0, 0x80]), [2, 2, 0, 0x80]);
        assert_eq!(uint(&[0, 1]), [2, 1, 1]);
        assert_eq!(uint(&[]), [2, 1, 0]);
    }
}
