//! Text sent to a client's terminal: made safe and bounded. A leaf module.

/// The most characters of a refusal message sent to the client.
pub(crate) const MAX_REFUSAL_MESSAGE: usize = 1024;

/// `text` made safe for the client's terminal and bounded: every control character (C0, DEL,
/// C1 — ESC and CSI included, so no escape sequence) and every bidirectional formatting
/// character is written as its `\u{..}` escape, and the result is cut to
/// [`MAX_REFUSAL_MESSAGE`] characters. Parts of a message can come from the client (the user
/// name) or from a certificate.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::new();
    let mut kept = 0;
    for c in text.chars() {
        if kept >= MAX_REFUSAL_MESSAGE {
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            for e in c.escape_unicode().take(MAX_REFUSAL_MESSAGE - kept) {
                out.push(e);
                kept += 1;
            }
        } else {
            out.push(c);
            kept += 1;
        }
    }
    out
}

/// The Unicode characters that reorder the text around them (Trojan Source, CVE-2021-42574).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}
