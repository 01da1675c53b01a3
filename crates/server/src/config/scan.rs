//! A first pass over the configuration's YAML events, before it is deserialized.
//!
//! It refuses what the configuration never needs and what would make the YAML library's
//! work unbounded or its reading differ from this scanner's: characters YAML readers disagree
//! on (`ippin_policy::yaml_unclear_character`: NEL and U+2028 end a comment for the
//! configuration's library and not for this scanner, which would then miss what follows),
//! aliases (`*name`: a few kilobytes of them expand to gigabytes), more than
//! one document, and nesting deeper than [`MAX_DEPTH`] (the library's time grows with the
//! square of the depth). Each refusal names its line. It also records the line where each
//! field starts, by the path used in error messages (`users[1].password_hash`), so that
//! errors found after deserializing point at the right line.
//!
//! Linear in the size of the text; the recorded paths are bounded in number (one per event)
//! and in length ([`MAX_PATH_LEN`]).

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser};

use super::ConfigError;

/// The deepest nesting of collections a configuration may use (it needs 4).
pub const MAX_DEPTH: usize = 32;

/// Paths longer than this are not recorded (no field of the configuration has one).
const MAX_PATH_LEN: usize = 256;

/// The line of each field path, from [`scan`].
#[derive(Debug, Default)]
pub(crate) struct Positions(HashMap<String, usize>);

impl Positions {
    /// The 1-based line where `path` starts, if the text has it.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        self.0.get(path).copied()
    }
}

enum Frame {
    Map {
        path: Option<String>,
        key: Option<Option<String>>,
        /// The keys read so far, with their lines (a key written twice is refused).
        seen: HashMap<String, usize>,
    },
    Seq {
        path: Option<String>,
        index: usize,
    },
}

fn join(parent: &Option<String>, child: &str, seq: bool) -> Option<String> {
    let p = match parent {
        Some(p) if p.is_empty() => child.to_owned(),
        Some(p) if seq => format!("{p}{child}"),
        Some(p) => format!("{p}.{child}"),
        None => return None,
    };
    (p.len() <= MAX_PATH_LEN).then_some(p)
}

/// The field being read when the text stopped making sense, as a path.
fn where_in(stack: &[Frame]) -> Option<String> {
    match stack.last()? {
        Frame::Map {
            path,
            key: Some(Some(k)),
            ..
        } => join(path, k, false),
        Frame::Map { path, .. } | Frame::Seq { path, .. } => path.clone().filter(|p| !p.is_empty()),
    }
}

/// Scans `text` (read from `file`): see the module docs.
pub(crate) fn scan(file: &Path, text: &str) -> Result<Positions, ConfigError> {
    let refuse = |line: usize, column: usize, message: String| ConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    if let Some((line, column, c)) = ippin_policy::yaml_unclear_character(text) {
        return Err(refuse(
            line,
            column,
            format!(
                "the character U+{:04X} is not taken: YAML readers disagree on it (some break \
                 lines there), so the text may not mean what it shows",
                u32::from(c)
            ),
        ));
    }
    let mut positions = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let line = e.marker().line();
            let mut message = e.info().to_owned();
            if let Some(at) = where_in(&stack) {
                message = format!("in `{at}`: {message}");
            }
            let text_line = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
            if text_line.contains('[') && text_line.contains("]:") {
                message.push_str(" (an IPv6 address with a port must be quoted: \"[::1]:443\")");
            }
            refuse(line, e.marker().col() + 1, message)
        })?;
        let (line, column) = (span.start.line(), span.start.col() + 1);
        // The path of the node this event starts, and whether it is a map key.
        // The path of the node this event starts (`Err`: a key written twice in one map).
        let mut node_path =
            |stack: &mut Vec<Frame>, scalar: Option<&str>| -> Result<Option<String>, ConfigError> {
                Ok(match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, index }) => {
                        let p = join(path, &format!("[{index}]"), true);
                        *index += 1;
                        p
                    }
                    Some(Frame::Map { path, key, seen }) => match key.take() {
                        // A key: remember it, and where the field starts.
                        None => {
                            let name = scalar.map(str::to_owned);
                            if let Some(n) = &name {
                                if let Some(first) = seen.get(n) {
                                    let field = join(path, n, false).unwrap_or_else(|| n.clone());
                                    return Err(refuse(
                                        line,
                                        column,
                                        format!(
                                            "field `{}` is written twice (first on line {first}): \
                                         YAML keeps only one of them; remove the other",
                                            field.escape_default()
                                        ),
                                    ));
                                }
                                seen.insert(n.clone(), line);
                            }
                            if let Some(p) = name.as_deref().and_then(|n| join(path, n, false)) {
                                positions.entry(p).or_insert(line);
                            }
                            *key = Some(name);
                            None
                        }
                        // The value of the key just read.
                        Some(name) => name.and_then(|n| join(path, &n, false)),
                    },
                })
            };
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(refuse(
                        line,
                        column,
                        "a second YAML document: the configuration is one document".into(),
                    ));
                }
            }
            Event::Alias(_) => {
                return Err(refuse(
                    line,
                    column,
                    "YAML aliases (`*name`) are not accepted in the configuration: write the \
                     value out"
                        .into(),
                ));
            }
            Event::Scalar(value, ..) => {
                if let Some(p) = node_path(&mut stack, Some(&value))? {
                    positions.entry(p).or_insert(line);
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(refuse(
                        line,
                        column,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let path = node_path(&mut stack, None)?;
                if let Some(p) = &path {
                    positions.entry(p.clone()).or_insert(line);
                }
                stack.push(match event {
                    Event::SequenceStart(..) => Frame::Seq { path, index: 0 },
                    _ => Frame::Map {
                        path,
                        key: None,
                        seen: HashMap::new(),
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
            }
        }
    }
    Ok(Positions(positions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> (usize, String) {
        match scan(Path::new("c.yaml"), text) {
            Err(ConfigError::Syntax { line, message, .. }) => (line, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn records_the_line_of_every_field() {
        let text = "cluster_name: x\nusers:\n  - name: ca\n    password_hash: plain\n  - {name: b, roles: [r1, r2]}\nlisteners:\n  - kind: tls\n    propagation:\n      key: k\n";
        let p = scan(Path::new("c.yaml"), text).unwrap();
        assert_eq!(p.line("cluster_name"), Some(1));
        assert_eq!(p.line("users"), Some(2));
        assert_eq!(p.line("users[0]"), Some(3));
        assert_eq!(p.line("users[0].name"), Some(3));
        assert_eq!(p.line("users[0].password_hash"), Some(4));
        assert_eq!(p.line("users[1].roles"), Some(5));
        assert_eq!(p.line("users[1].roles[1]"), Some(5));
        assert_eq!(p.line("listeners[0].propagation.key"), Some(9));
        assert_eq!(p.line("users[2]"), None);
    }

    #[test]
    fn aliases_documents_and_depth_are_refused_with_their_line() {
        let (line, m) = refusal("a: &x [1, 2]\nb: *x\n");
        assert_eq!(line, 2);
        assert!(m.contains("aliases"), "{m}");
        let (line, m) = refusal("a: 1\n---\nb: 2\n");
        assert_eq!(line, 2);
        assert!(m.contains("second YAML document"), "{m}");
        let deep = format!("a: {}{}\n", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let (line, m) = refusal(&deep);
        assert_eq!(line, 1);
        assert!(m.contains("nested deeper"), "{m}");
        let ok = format!(
            "a: {}{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(scan(Path::new("c.yaml"), &ok).is_ok());
    }

    /// NEL and the line and paragraph separators end a comment for serde_yaml_ng (libyaml)
    /// and not for this scanner: what follows them would reach the library unscanned (an
    /// alias bomb, here two aliases). Refused, with their place, like every character YAML
    /// readers disagree on.
    #[test]
    fn characters_yaml_readers_disagree_on_are_refused_with_their_place() {
        for c in ['\u{85}', '\u{2028}', '\u{2029}'] {
            let (line, m) = refusal(&format!("a: &x [1]\n#{c}b: [*x, *x]\n"));
            assert_eq!(line, 2, "{c:?}");
            assert!(m.contains("YAML readers disagree"), "{m}");
        }
        for text in [
            "a: 1\u{7f}\n",
            "a: \u{1b}[2J\n",
            "a: 1\nb: \u{feff}2\n",
            "a: \u{9b}\n",
        ] {
            assert!(scan(Path::new("c.yaml"), text).is_err(), "{text:?}");
        }
        // A byte order mark first, tabs and both line ends are fine.
        assert!(scan(Path::new("c.yaml"), "\u{feff}a: 1\r\nb: \"\t\"\n").is_ok());
    }

    #[test]
    fn a_key_written_twice_is_refused_on_its_second_line() {
        let (line, m) = refusal("cluster_name: a\nx: 1\ncluster_name: b\n");
        assert_eq!(line, 3);
        assert!(
            m.contains("field `cluster_name` is written twice (first on line 1)"),
            "{m}"
        );
        let (line, m) =
            refusal("listeners:\n  - kind: tls\n    proxy_protocol: off\n    proxy_protocol: on\n");
        assert_eq!(line, 4);
        assert!(m.contains("`listeners[0].proxy_protocol`"), "{m}");
        let (line, m) = refusal("ca: {ssh_key: a, ssh_key: b}\n");
        assert_eq!(line, 1);
        assert!(m.contains("`ca.ssh_key`"), "{m}");
        // The same key in two maps is fine.
        assert!(
            scan(
                Path::new("c.yaml"),
                "a: {k: 1}\nb: {k: 2}\nc: [{k: 1}, {k: 2}]\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn deep_nesting_is_refused_however_deep() {
        // 500,000 levels in 1 MB: refused on line 1 (the scanner stops there; the YAML
        // library, which takes time quadratic in the depth, never sees it).
        let n = 500_000;
        let text = format!("roles: {}{}\n", "[".repeat(n), "]".repeat(n));
        let (line, _) = refusal(&text);
        assert_eq!(line, 1);
    }

    #[test]
    fn long_keys_are_not_recorded() {
        let key = "k".repeat(MAX_PATH_LEN + 1);
        let p = scan(Path::new("c.yaml"), &format!("{key}:\n  - a\n  - b\n")).unwrap();
        // Only the document itself (the empty path).
        assert!(p.0.keys().all(String::is_empty), "{:?}", p.0.keys());
    }
}
