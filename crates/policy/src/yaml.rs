//! A bounded YAML loader over `saphyr-parser` events, keeping line numbers.
//!
//! Why not a serde YAML crate: errors here must name the file, the line and the dotted field
//! path, unknown fields must survive as raw values, and aliases must not expand without bound.
//! The loader builds its own tree from parser events with an explicit stack (no recursion on
//! input), counts every node it materialises (alias copies included) against a budget, caps
//! nesting depth and the number of documents, and rejects duplicate and merge (`<<`) keys.

#[cfg(feature = "yaml")]
use std::borrow::Cow;
#[cfg(feature = "yaml")]
use std::collections::{HashMap, HashSet};
use std::fmt;

#[cfg(feature = "yaml")]
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

#[cfg(feature = "yaml")]
use crate::Error;

#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Largest YAML input accepted, in bytes.
pub const MAX_YAML_BYTES: usize = 1 << 20;
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Most documents accepted in one YAML input.
pub const MAX_YAML_DOCUMENTS: usize = 10_000;
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_YAML_DEPTH: usize = 64;
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Most nodes materialised from one input, counting every copy an alias makes.
pub const MAX_YAML_NODES: usize = 250_000;
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
/// Most bytes of scalar text materialised from one input, counting every copy an alias makes.
pub const MAX_YAML_EXPANDED_BYTES: usize = 16 << 20;

#[cfg(feature = "yaml")]
/// What a subtree costs to materialise.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
}

#[cfg(feature = "yaml")]
impl Cost {
    const ONE: Cost = Cost { nodes: 1, bytes: 0 };

    fn plus(self, other: Cost) -> Cost {
        Cost {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// A YAML value kept as written (after alias expansion), for fields this crate preserves but
/// does not interpret, such as a role's `allow` and `deny` rules.
///
/// Scalars are resolved with the YAML 1.2 core schema: plain `true`/`false` are booleans,
/// plain numbers are integers or floats, plain `null`/`~`/empty is null, everything quoted or
/// written as a block is a string. Mapping keys are kept as their text, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RawValue {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A floating-point number (also `.inf`, `.nan`, and integers too large for 64 bits).
    Float(f64),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<RawValue>),
    /// A mapping, keys in the order written.
    Map(Vec<(String, RawValue)>),
}

impl RawValue {
    /// The value under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        match self {
            RawValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RawValue::String(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(feature = "yaml")]
/// A loaded node: its value and the 1-based line where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) line: usize,
    pub(crate) value: Value,
}

#[cfg(feature = "yaml")]
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// An integer, and whether it was written in plain decimal (digits only, no sign, radix
    /// prefix or leading zero), the one spelling every YAML version reads alike.
    Int(i64, bool),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

#[cfg(feature = "yaml")]
impl Node {
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn to_raw(&self) -> RawValue {
        // Nesting is bounded by MAX_YAML_DEPTH, alias copies included (`load`), so this
        // recursion is bounded too.
        match &self.value {
            Value::Null => RawValue::Null,
            Value::Bool(b) => RawValue::Bool(*b),
            Value::Int(i, _) => RawValue::Int(*i),
            Value::Float(f) => RawValue::Float(*f),
            Value::Str(s) => RawValue::String(s.clone()),
            Value::Seq(items) => RawValue::Seq(items.iter().map(Node::to_raw).collect()),
            Value::Map(entries) => RawValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_raw()))
                    .collect(),
            ),
        }
    }

    /// "a boolean", "string \"yes\"", ... for error messages.
    pub(crate) fn describe(&self) -> Found<'_> {
        Found(self)
    }
}

#[cfg(feature = "yaml")]
pub(crate) struct Found<'a>(&'a Node);

#[cfg(feature = "yaml")]
impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.value {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "boolean {b}"),
            Value::Int(i, _) => write!(f, "integer {i}"),
            Value::Float(x) => write!(f, "number {x}"),
            Value::Str(s) => write!(f, "string {:?}", Clipped(s)),
            Value::Seq(_) => f.write_str("a sequence"),
            Value::Map(_) => f.write_str("a mapping"),
        }
    }
}

/// A string clipped to 60 characters for messages.
pub(crate) struct Clipped<'a>(pub(crate) &'a str);

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len();
        if let Some((i, _)) = self.0.char_indices().nth(60) {
            end = i;
        }
        let head = self.0.get(..end).unwrap_or_default();
        if end < self.0.len() {
            write!(f, "{:?}...", head)
        } else {
            write!(f, "{:?}", head)
        }
    }
}

#[cfg(feature = "yaml")]
enum Frame {
    Seq {
        line: usize,
        anchor: usize,
        size: Cost,
        /// The nesting of the collection so far: 1, or one more than its deepest item.
        height: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        size: Cost,
        /// As for `Seq`.
        height: usize,
        entries: Vec<(String, Node)>,
        key: Option<(String, usize)>,
        seen: HashSet<String>,
    },
}

#[cfg(feature = "yaml")]
struct Loader<'f> {
    file: &'f str,
    stack: Vec<Frame>,
    /// Each anchored node, its cost and its nesting (0 for a scalar).
    anchors: HashMap<usize, (Node, Cost, usize)>,
    spent: Cost,
    docs: Vec<Node>,
}

/// The first character of `text` that YAML readers do not agree on, with its 1-based line
/// and column (counted in characters): a C0 control other than tab, line feed and carriage
/// return; DEL; a C1 control (U+0080 to U+009F, NEL U+0085 included); the line and paragraph
/// separators U+2028 and U+2029; a byte order mark U+FEFF other than the text's first
/// character; U+FFFE and U+FFFF.
///
/// YAML 1.1 readers (libyaml and the YAML libraries over it, PyYAML, go-yaml, and most review
/// tools and browsers for U+2028 and U+2029) break lines at NEL and the two separators; a
/// YAML 1.2 reader (`saphyr-parser`, which this crate reads with) does not. After `#` such a
/// character ends the comment for the first and not for the second, so a line that one
/// reader keeps the other drops: `# note<U+2028>    pin_source_ip: true` is a pinning role to
/// a reviewer and a comment here. Every text a resource parser of this crate reads is
/// refused when it holds one; an application that also reads the text with another YAML
/// library should refuse it too.
///
/// ```
/// assert_eq!(ippin_policy::yaml_unclear_character("a: 1\n# x\u{2028}b: 2\n"), Some((2, 4, '\u{2028}')));
/// assert_eq!(ippin_policy::yaml_unclear_character("\u{feff}a: 1\n"), None);
/// ```
pub fn yaml_unclear_character(text: &str) -> Option<(usize, usize, char)> {
    let (mut line, mut column) = (1usize, 0usize);
    for (at, c) in text.char_indices() {
        column += 1;
        let unclear = match c {
            '\t' | '\n' | '\r' => false,
            '\u{feff}' => at != 0,
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => true,
            '\u{fffe}' | '\u{ffff}' => true,
            _ => false,
        };
        if unclear {
            return Some((line, column, c));
        }
        if c == '\n' {
            line += 1;
            column = 0;
        }
    }
    None
}

#[cfg(feature = "yaml")]
/// Loads every document of `text`. Documents that are empty (null) are skipped.
pub(crate) fn load(file: &str, text: &str) -> Result<Vec<Node>, Error> {
    if text.len() > MAX_YAML_BYTES {
        return Err(Error::limit(
            file,
            0,
            format!(
                "input is {} bytes, at most {MAX_YAML_BYTES} accepted",
                text.len()
            ),
        ));
    }
    if let Some((line, column, c)) = yaml_unclear_character(text) {
        return Err(Error::Syntax {
            file: file.to_owned(),
            line,
            message: format!(
                "column {column}: the character U+{:04X} is not taken: YAML readers disagree on \
                 it (some break lines there), so the text may not mean what it shows",
                u32::from(c)
            ),
        });
    }
    let mut loader = Loader {
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        spent: Cost::default(),
        docs: Vec::new(),
    };
    let mut documents = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Error::Syntax {
            file: file.to_owned(),
            line: e.marker().line(),
            message: e.info().to_owned(),
        })?;
        let line = span.start.line();
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > MAX_YAML_DOCUMENTS {
                    return Err(Error::limit(
                        file,
                        line,
                        format!("more than {MAX_YAML_DOCUMENTS} documents"),
                    ));
                }
                loader.anchors.clear();
            }
            Event::Scalar(text, style, anchor, tag) => {
                let cost = Cost {
                    nodes: 1,
                    bytes: text.len(),
                };
                loader.count(cost, line)?;
                let value = resolve_scalar(text, style, tag.as_deref());
                loader.finish(Node { line, value }, cost, anchor, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                loader.open(line)?;
                loader.stack.push(Frame::Seq {
                    line,
                    anchor,
                    size: Cost::ONE,
                    height: 1,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                loader.open(line)?;
                loader.stack.push(Frame::Map {
                    line,
                    anchor,
                    size: Cost::ONE,
                    height: 1,
                    entries: Vec::new(),
                    key: None,
                    seen: HashSet::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, size, anchor, height) = match loader.stack.pop() {
                    Some(Frame::Seq {
                        line,
                        anchor,
                        size,
                        height,
                        items,
                    }) => (
                        Node {
                            line,
                            value: Value::Seq(items),
                        },
                        size,
                        anchor,
                        height,
                    ),
                    Some(Frame::Map {
                        line,
                        anchor,
                        size,
                        height,
                        entries,
                        ..
                    }) => (
                        Node {
                            line,
                            value: Value::Map(entries),
                        },
                        size,
                        anchor,
                        height,
                    ),
                    None => {
                        return Err(Error::Syntax {
                            file: file.to_owned(),
                            line,
                            message: "unbalanced collection end".to_owned(),
                        });
                    }
                };
                loader.finish(node, size, anchor, height)?;
            }
            Event::Alias(id) => {
                let Some((cost, height)) = loader.anchors.get(&id).map(|(_, c, h)| (*c, *h)) else {
                    return Err(Error::Syntax {
                        file: file.to_owned(),
                        line,
                        message: "alias refers to an anchor that is not complete".to_owned(),
                    });
                };
                // The copy nests as deep as its anchor did, from here: bounded as what is
                // written out is (a chain of aliases would otherwise nest without limit).
                if loader.stack.len() + height > MAX_YAML_DEPTH {
                    return Err(Error::limit(
                        file,
                        line,
                        format!("nesting deeper than {MAX_YAML_DEPTH} (counting alias copies)"),
                    ));
                }
                // Count before copying: the budget bounds what the copy may cost.
                loader.count(cost, line)?;
                let Some((node, _, _)) = loader.anchors.get(&id).cloned() else {
                    return Err(Error::Syntax {
                        file: file.to_owned(),
                        line,
                        message: "alias refers to an anchor that is not complete".to_owned(),
                    });
                };
                loader.finish(node, cost, 0, height)?;
            }
        }
    }
    Ok(loader.docs)
}

#[cfg(feature = "yaml")]
impl Loader<'_> {
    fn count(&mut self, cost: Cost, line: usize) -> Result<(), Error> {
        self.spent = self.spent.plus(cost);
        if self.spent.nodes > MAX_YAML_NODES {
            return Err(Error::limit(
                self.file,
                line,
                format!("more than {MAX_YAML_NODES} nodes (counting alias expansions)"),
            ));
        }
        if self.spent.bytes > MAX_YAML_EXPANDED_BYTES {
            return Err(Error::limit(
                self.file,
                line,
                format!(
                    "more than {MAX_YAML_EXPANDED_BYTES} bytes of text (counting alias expansions)"
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, line: usize) -> Result<(), Error> {
        if self.stack.len() >= MAX_YAML_DEPTH {
            return Err(Error::limit(
                self.file,
                line,
                format!("nesting deeper than {MAX_YAML_DEPTH}"),
            ));
        }
        self.count(Cost::ONE, line)
    }

    /// Attaches a complete node to its parent (or makes it a document).
    /// `height` is the node's nesting (0 for a scalar).
    fn finish(
        &mut self,
        node: Node,
        size: Cost,
        anchor: usize,
        height: usize,
    ) -> Result<(), Error> {
        if anchor != 0 {
            // Keeping a copy for later aliases costs as much as the node itself.
            self.count(size, node.line)?;
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        if let Some(Frame::Seq { height: h, .. } | Frame::Map { height: h, .. }) =
            self.stack.last_mut()
        {
            *h = (*h).max(height + 1);
        }
        let file = self.file;
        match self.stack.last_mut() {
            None => {
                if !matches!(node.value, Value::Null) {
                    self.docs.push(node);
                }
            }
            Some(Frame::Seq {
                items, size: total, ..
            }) => {
                *total = total.plus(size);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                key,
                seen,
                size: total,
                ..
            }) => {
                *total = total.plus(size);
                match key.take() {
                    None => {
                        let text = match node.value {
                            Value::Str(s) => s,
                            Value::Null => String::new(),
                            Value::Bool(b) => b.to_string(),
                            Value::Int(i, _) => i.to_string(),
                            Value::Float(x) => x.to_string(),
                            Value::Seq(_) | Value::Map(_) => {
                                return Err(Error::Syntax {
                                    file: file.to_owned(),
                                    line: node.line,
                                    message: "mapping keys must be scalars".to_owned(),
                                });
                            }
                        };
                        if text == "<<" {
                            return Err(Error::Syntax {
                                file: file.to_owned(),
                                line: node.line,
                                message:
                                    "merge keys (`<<`) are not supported; write the fields out"
                                        .to_owned(),
                            });
                        }
                        if !seen.insert(text.clone()) {
                            return Err(Error::Syntax {
                                file: file.to_owned(),
                                line: node.line,
                                message: format!("duplicate key {:?}", Clipped(&text)),
                            });
                        }
                        *key = Some((text, node.line));
                    }
                    Some((k, _)) => entries.push((k, node)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "yaml")]
fn resolve_scalar(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    let forced_str = match tag {
        Some(t) => (t.is_yaml_core_schema() && t.suffix == "str") || t.handle == "!",
        None => false,
    };
    if style != ScalarStyle::Plain || forced_str {
        return Value::Str(text.into_owned());
    }
    let s: &str = &text;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(v) = resolve_int(s) {
        return v;
    }
    if is_float(s)
        && let Ok(x) = s.parse::<f64>()
    {
        return Value::Float(x);
    }
    Value::Str(text.into_owned())
}

#[cfg(feature = "yaml")]
fn resolve_int(s: &str) -> Option<Value> {
    let (radix, digits, negative) = if let Some(d) = s.strip_prefix("0o") {
        (8, d, false)
    } else if let Some(d) = s.strip_prefix("0x") {
        (16, d, false)
    } else if let Some(d) = s.strip_prefix('-') {
        (10, d, true)
    } else {
        (10, s.strip_prefix('+').unwrap_or(s), false)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = match i128::from_str_radix(digits, radix) {
        Ok(m) => m,
        Err(_) => return s.parse::<f64>().ok().map(Value::Float),
    };
    let value = if negative { -magnitude } else { magnitude };
    let plain = s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0'));
    match i64::try_from(value) {
        Ok(i) => Some(Value::Int(i, plain)),
        Err(_) => Some(Value::Float(value as f64)),
    }
}

#[cfg(feature = "yaml")]
/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac_digits = i - frac_start;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(feature = "yaml")]
/// Typed reads from a node with file/line/path context for errors.
pub(crate) struct Reader<'f> {
    pub(crate) file: &'f str,
}

#[cfg(feature = "yaml")]
impl Reader<'_> {
    pub(crate) fn wrong(&self, node: &Node, path: &str, expected: &str) -> Error {
        Error::field(
            self.file,
            node.line,
            path,
            format!("expected {expected}, found {}", node.describe()),
        )
    }

    pub(crate) fn missing(&self, parent: &Node, path: &str) -> Error {
        Error::field(self.file, parent.line, path, "required field is missing")
    }

    pub(crate) fn map<'n>(
        &self,
        node: &'n Node,
        path: &str,
    ) -> Result<&'n [(String, Node)], Error> {
        match &node.value {
            Value::Map(entries) => Ok(entries),
            _ => Err(self.wrong(node, path, "a mapping")),
        }
    }

    pub(crate) fn seq<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [Node], Error> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.wrong(node, path, "a sequence")),
        }
    }

    pub(crate) fn str<'n>(&self, node: &'n Node, path: &str) -> Result<&'n str, Error> {
        match &node.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.wrong(node, path, "a string")),
        }
    }

    /// An integer written in plain decimal: `24`, not `+24`, `024` (octal to YAML 1.1
    /// readers), `0x18` or `0o30`.
    pub(crate) fn decimal(&self, node: &Node, path: &str) -> Result<i64, Error> {
        match &node.value {
            Value::Int(n, true) => Ok(*n),
            Value::Int(..) => Err(self.wrong(
                node,
                path,
                "an integer in plain decimal (no sign, leading zero or radix prefix)",
            )),
            _ => Err(self.wrong(node, path, "an integer")),
        }
    }

    pub(crate) fn bool(&self, node: &Node, path: &str) -> Result<bool, Error> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong(node, path, "a boolean")),
        }
    }

    /// A required string field.
    pub(crate) fn req_str<'n>(
        &self,
        parent: &'n Node,
        key: &str,
        path: &str,
    ) -> Result<&'n str, Error> {
        match parent.get(key) {
            Some(n) => self.str(n, path),
            None => Err(self.missing(parent, path)),
        }
    }

    /// Checks `kind` and `version` of a resource document; returns the version.
    pub(crate) fn resource<'n>(
        &self,
        doc: &'n Node,
        kind: &str,
        versions: &[&str],
        expected: &'static str,
    ) -> Result<&'n str, Error> {
        self.map(doc, "(document)")?;
        let found_kind = self.req_str(doc, "kind", "kind")?;
        let found_version = self.req_str(doc, "version", "version")?;
        if found_kind != kind || !versions.contains(&found_version) {
            return Err(Error::Unsupported {
                file: self.file.to_owned(),
                line: doc.line,
                kind: format!("{:?}", Clipped(found_kind)),
                version: format!("{:?}", Clipped(found_version)),
                expected,
            });
        }
        Ok(found_version)
    }
}

#[cfg(all(test, feature = "yaml"))]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = load("t.yaml", text).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn core_schema() {
        let n = one("a: true\nb: 'true'\nc: 12\nd: -0x1\ne: 1.5e3\nf: ~\ng: yes\nh: 0o17\ni: .5\n");
        let raw = n.to_raw();
        assert_eq!(raw.get("a"), Some(&RawValue::Bool(true)));
        assert_eq!(raw.get("b"), Some(&RawValue::String("true".into())));
        assert_eq!(raw.get("c"), Some(&RawValue::Int(12)));
        assert_eq!(raw.get("d"), Some(&RawValue::String("-0x1".into())));
        assert_eq!(raw.get("e"), Some(&RawValue::Float(1500.0)));
        assert_eq!(raw.get("f"), Some(&RawValue::Null));
        assert_eq!(raw.get("g"), Some(&RawValue::String("yes".into())));
        assert_eq!(raw.get("h"), Some(&RawValue::Int(15)));
        assert_eq!(raw.get("i"), Some(&RawValue::Float(0.5)));
    }

    #[test]
    fn lines_are_one_based() {
        let n = one("\n\na:\n  b: c\n");
        assert_eq!(n.line, 3);
        assert_eq!(n.get("a").unwrap().get("b").unwrap().line, 4);
    }

    #[test]
    fn duplicate_and_merge_keys_refused() {
        let e = load("t.yaml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.to_string().starts_with("t.yaml:3:"), "{e}");
        let e = load("t.yaml", "x: &x {a: 1}\ny:\n  <<: *x\n").unwrap_err();
        assert!(e.to_string().contains("merge keys"), "{e}");
    }

    /// The characters YAML readers disagree on are refused with their line: after `#`,
    /// NEL, U+2028 and U+2029 end the comment for libyaml's readers (and many review tools)
    /// and not for this one, so a role written `# pinned<U+2028>    pin_source_ip: true`
    /// pins to them and not here.
    #[test]
    fn characters_yaml_readers_disagree_on_are_refused() {
        for c in [
            '\u{85}', '\u{2028}', '\u{2029}', '\u{7f}', '\u{1b}', '\u{feff}', '\u{ffff}',
        ] {
            let e = load("t.yaml", &format!("a: 1\nb: x{c}\n")).unwrap_err();
            assert!(e.to_string().starts_with("t.yaml:2:"), "{c:?}: {e}");
            assert!(e.to_string().contains("YAML readers disagree"), "{e}");
        }
        assert_eq!(yaml_unclear_character("\u{feff}a: 1\r\nb: \"\t\"\n"), None);
        assert_eq!(
            yaml_unclear_character("ab\ncd\u{2028}"),
            Some((2, 3, '\u{2028}'))
        );
        let role = "kind: role\nversion: v7\nmetadata: {name: a}\nspec:\n  options:\n    # pinned\u{2028}    pin_source_ip: true\n";
        assert!(crate::parse_roles("r.yaml", role).is_err());
    }

    /// An alias copies its anchor's nesting where it stands: the depth bound holds for what
    /// the copies build, not only for what is written (a chain of anchors nested ~3,900 deep
    /// within the node budget).
    #[test]
    fn alias_copies_count_against_the_depth() {
        let nest = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let text = format!("a: &a {}\nb: {}\n", nest(40, "1"), nest(40, "*a"));
        let e = load("t.yaml", &text).unwrap_err();
        assert!(e.to_string().contains("counting alias copies"), "{e}");
        assert!(e.to_string().starts_with("t.yaml:2:"), "{e}");
        // Within the bound, the same shape loads.
        let text = format!("a: &a {}\nb: {}\n", nest(20, "1"), nest(20, "*a"));
        assert!(load("t.yaml", &text).is_ok());
        // A chain of anchors, each one level deeper than the last: refused once it passes.
        let mut chain = String::from("x0: &x0 [1]\n");
        for i in 1..100 {
            chain.push_str(&format!("x{i}: &x{i} [*x{}]\n", i - 1));
        }
        let e = load("t.yaml", &chain).unwrap_err();
        assert!(e.to_string().contains("counting alias copies"), "{e}");
    }

    #[test]
    fn aliases_expand_within_budget() {
        let n = one("x: &x [1, 2]\ny: *x\n");
        assert_eq!(
            n.to_raw().get("y"),
            Some(&RawValue::Seq(vec![RawValue::Int(1), RawValue::Int(2)]))
        );
    }
}
