//! The admin API's documents (`ippin ctl create -f`, values read from etcd) on arbitrary
//! text: no panic, bounded work, and the documented rules.
//!
//! Accepted: at least one and at most `MAX_DOCUMENTS` resources, distinct (kind, name),
//! names that make the etcd key they are stored under and come back from it, each
//! document parsing back alone to the same resource, and `get`'s renderings never showing a
//! user's password hash. Refused: an error whose line is a line of the text, with a field
//! and a code of the admin API.
#![no_main]

use std::collections::HashSet;

use ippin::admin::{Format, Kind, MAX_DOCUMENTS, parse_documents};
use libfuzzer_sys::fuzz_target;

/// The last line YAML may name in `text` (as in `server_config`): LF, CR, CRLF, and the
/// breaks libyaml also counts; one more when the text does not end with a break.
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    breaks - text.matches("\r\n").count() + 2
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_documents("f.yaml", text) {
        Ok(found) => {
            assert!(!found.is_empty() && found.len() <= MAX_DOCUMENTS);
            let mut ids = HashSet::new();
            for r in &found {
                assert!(ids.insert((r.kind(), r.name().to_owned())), "twice: {r:?}");
                assert!(r.kind().check_name(r.name()).is_ok());
                let key = r.key();
                assert_eq!(Kind::from_key(&key), Some((r.kind(), r.name().to_owned())));
                let again = parse_documents(&key, r.document()).expect("a document parses back");
                assert_eq!(again, vec![r.clone()]);
                for format in [Format::Yaml, Format::Json] {
                    if let Ok(shown) = r.render(format)
                        && r.kind() == Kind::User
                    {
                        assert!(!shown.contains("password_hash"), "{shown}");
                    }
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("f.yaml"), "{shown}");
            assert!(e.line() <= yaml_lines(text), "line {}: {shown}", e.line());
            assert!(!e.field().is_empty());
            assert!(["bad_document", "unknown_kind", "body_too_large"].contains(&e.code()));
        }
    }
});
