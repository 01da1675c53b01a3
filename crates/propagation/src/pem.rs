//! One-block PEM text, for key and certificate files.

use base64::Engine;

/// The DER bytes of the single PEM block labelled `label` in `text`, or
/// `None` when the text is not exactly one such block (surrounding
/// whitespace allowed) or its base64 does not decode.
pub fn pem_to_der(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let text = text.trim();
    let rest = text.strip_prefix(&begin)?;
    let (body, after) = rest.split_once(&end)?;
    if !after.trim().is_empty() {
        return None;
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// PEM text for `der` with `label`, 64 columns.
pub fn der_to_pem(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let der = [7u8; 100];
        let pem = der_to_pem(&der, "X");
        assert_eq!(pem_to_der(&pem, "X").as_deref(), Some(&der[..]));
        assert_eq!(pem_to_der(&pem, "Y"), None);
        assert_eq!(pem_to_der(&format!("{pem}{pem}"), "X"), None);
        assert_eq!(
            pem_to_der("-----BEGIN X-----\n!!\n-----END X-----\n", "X"),
            None
        );
    }
}
