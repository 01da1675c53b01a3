//! The resources of the admin API (`ippin ctl`, docs/cli.md "ippin ctl"), sans-IO: no etcd,
//! no HTTP, no clock.
//!
//! * [`Kind`]: the three resource kinds, their names in the API and their etcd keys relative
//!   to the backend's prefix (`roles/NAME`, `users/NAME`, `network_restrictions`), both ways.
//! * [`parse_documents`]: a multi-document YAML text (`create -f FILE`, or a value read from
//!   etcd) into [`Resource`]s, each document validated by the same code as the files:
//!   roles by `ippin_policy::parse_roles`, network restrictions by
//!   `ippin_policy::NetworkRestrictions::parse` (as `LiveRestrictions::load` reads its file),
//!   users by the configuration's checks of a `users:` entry (`config::check_name`, the
//!   argon2id hash check). Every document first goes through the configuration's scanner
//!   (`config::scan`): no aliases, no nesting deeper than [`crate::config::MAX_CONFIG_DEPTH`],
//!   no key written twice. Errors name `SOURCE:LINE: FIELD: message`, the line counted in the
//!   whole text.
//! * [`Resource::public_document`] and [`Resource::render`]: what `get` shows. A user's
//!   `password_hash` is never part of it.
//!
//! ```
//! use ippin::admin::{Kind, parse_documents};
//! let text = "kind: role\nversion: v7\nmetadata: {name: dev}\n---\n\
//!             kind: network_restrictions\nversion: v4\nspec:\n  deny: [{cidr: 10.0.0.0/8}]\n";
//! let found = parse_documents("policy.yaml", text).unwrap();
//! assert_eq!(found[0].key(), "roles/dev");
//! assert_eq!(Kind::from_key("network_restrictions"), Some((Kind::NetworkRestrictions, "network_restrictions".into())));
//! let bad = parse_documents("policy.yaml", &text.replace("10.0.0.0/8", "10.0.0.1/8")).unwrap_err();
//! assert!(bad.to_string().starts_with("policy.yaml:8: spec.deny[0].cidr: "), "{bad}");
//! ```
//!
//! # How the text is cut into documents
//!
//! At the lines that start with the document markers `---` (a new document) and `...` (the
//! end of one), each followed by a blank or the end of the line, as YAML's scanner does at
//! column 0. Each piece is then parsed alone, so a document's lines are its own plus the
//! number of lines before it. Inside a mapping (the only document accepted) YAML never
//! reads such a line as content, so the cut is the one the YAML library would make.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::config::{self, ConfigError};

/// The most documents one text may hold (empty ones not counted).
pub const MAX_DOCUMENTS: usize = 256;

/// The most pieces (documents, empty ones included) one text is cut into.
const MAX_PIECES: usize = 4 * MAX_DOCUMENTS;

/// The largest text [`parse_documents`] reads, in bytes (the admin API's body bound).
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// The name of the one `network_restrictions` resource.
pub const NETWORK_RESTRICTIONS_NAME: &str = "network_restrictions";

/// The version of the `user` resource this server reads.
pub const USER_VERSION: &str = "v1";

/// The most memory (KiB) a stored user's argon2id hash may ask for: 256 MiB (OWASP's
/// recommendation is 19 MiB).
pub const MAX_ARGON2_M_KIB: u32 = config::MAX_ARGON2_M_KIB;

/// A kind of resource the admin API stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// `role`: a role document, as a roles file holds it.
    Role,
    /// `user`: a user with an argon2id password hash and roles.
    User,
    /// `network_restrictions`: the one network restrictions policy.
    NetworkRestrictions,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Role, Kind::User, Kind::NetworkRestrictions];

    /// The kind named `name` in a request or on the command line: exactly `role`, `user`,
    /// `network_restrictions`, or the plurals `roles` and `users`. Nothing else (no other
    /// case, no spaces).
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "role" | "roles" => Some(Kind::Role),
            "user" | "users" => Some(Kind::User),
            "network_restrictions" => Some(Kind::NetworkRestrictions),
            _ => None,
        }
    }

    /// The kind of a document's `kind:` field: the singular names only.
    fn of_document(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// `role`, `user` or `network_restrictions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::User => "user",
            Kind::NetworkRestrictions => "network_restrictions",
        }
    }

    /// Whether a resource of this kind may be called `name`: for roles and users the names of
    /// the configuration (`config::check_name`: 1 to 64 letters, digits, `.`, `_`, `-`, not
    /// starting with `-`, so never a `/`); the network restrictions are only ever
    /// [`NETWORK_RESTRICTIONS_NAME`].
    pub fn check_name(self, name: &str) -> Result<(), String> {
        match self {
            Kind::Role | Kind::User => config::check_name(name),
            Kind::NetworkRestrictions if name == NETWORK_RESTRICTIONS_NAME => Ok(()),
            Kind::NetworkRestrictions => Err(format!(
                "name `{}`: the network restrictions are one resource, named `{}`",
                name.escape_default(),
                NETWORK_RESTRICTIONS_NAME
            )),
        }
    }

    /// The key range of this kind relative to the prefix: `roles/`, `users/`, or the one key
    /// `network_restrictions`.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Kind::Role => "roles/",
            Kind::User => "users/",
            Kind::NetworkRestrictions => NETWORK_RESTRICTIONS_NAME,
        }
    }

    /// The etcd key of resource `name` relative to the prefix (`roles/dev`), after
    /// [`Kind::check_name`].
    pub fn key(self, name: &str) -> Result<String, String> {
        self.check_name(name)?;
        Ok(match self {
            Kind::NetworkRestrictions => NETWORK_RESTRICTIONS_NAME.to_owned(),
            Kind::Role | Kind::User => format!("{}{name}", self.key_prefix()),
        })
    }

    /// The kind and name a key relative to the prefix stands for: the inverse of
    /// [`Kind::key`]. `None` for every other key (lockouts, failures, anything unknown, a
    /// name [`Kind::check_name`] refuses).
    pub fn from_key(key: &str) -> Option<(Kind, String)> {
        if key == NETWORK_RESTRICTIONS_NAME {
            return Some((Kind::NetworkRestrictions, key.to_owned()));
        }
        [Kind::Role, Kind::User].into_iter().find_map(|kind| {
            let name = key.strip_prefix(kind.key_prefix())?;
            config::check_name(name).ok()?;
            Some((kind, name.to_owned()))
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text of documents was refused. Displayed as `SOURCE:LINE: FIELD: message`, the
/// line counted in the whole text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// A document is not valid: what the file loader would refuse, or a limit of this API.
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        /// The source name given by the caller (a file name, a key).
        file: String,
        /// 1-based line in the whole text.
        line: usize,
        /// The field path (`spec.deny[0].cidr`), or `(document)`, `(yaml)`, `(text)`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A document's `kind` is not one the admin API stores.
    #[error(
        "{file}:{line}: kind: unknown kind `{kind}` (expected `role`, `user` or `network_restrictions`)"
    )]
    UnknownKind {
        /// The source name given by the caller.
        file: String,
        /// 1-based line of the `kind` field.
        line: usize,
        /// The kind found (escaped, clipped to 64 characters).
        kind: String,
    },
    /// The text is larger than [`MAX_TEXT_BYTES`].
    #[error("{file}: {size} bytes, at most {max} accepted", max = MAX_TEXT_BYTES)]
    TooLarge {
        /// The source name given by the caller.
        file: String,
        /// The text's size in bytes.
        size: usize,
    },
}

impl DocError {
    /// The admin API's error code: `unknown_kind`, `body_too_large`, or `bad_document`.
    pub fn code(&self) -> &'static str {
        match self {
            DocError::UnknownKind { .. } => "unknown_kind",
            DocError::TooLarge { .. } => "body_too_large",
            DocError::Invalid { .. } => "bad_document",
        }
    }

    /// The 1-based line in the whole text (0 for [`DocError::TooLarge`]).
    pub fn line(&self) -> usize {
        match self {
            DocError::Invalid { line, .. } | DocError::UnknownKind { line, .. } => *line,
            DocError::TooLarge { .. } => 0,
        }
    }

    /// The field path the error is about.
    pub fn field(&self) -> &str {
        match self {
            DocError::Invalid { field, .. } => field,
            DocError::UnknownKind { .. } => "kind",
            DocError::TooLarge { .. } => "(text)",
        }
    }
}

/// One validated resource: its kind, its name, and the YAML text of its document as written
/// (the document marker line `---` left out; a final line break added when missing).
/// Only [`parse_documents`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    kind: Kind,
    name: String,
    document: String,
}

/// How [`Resource::render`] shows a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The YAML text ([`Resource::public_document`]).
    Yaml,
    /// The document as JSON, pretty-printed ([`document_to_json`]).
    Json,
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The name: `metadata.name` of a role or user, [`NETWORK_RESTRICTIONS_NAME`] for the
    /// network restrictions.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The YAML text of the document, as stored (with a user's password hash: it stays in
    /// the server).
    pub fn document(&self) -> &str {
        &self.document
    }

    /// A user resource's values as the server holds a user (`None` for another kind).
    pub fn user_config(&self) -> Option<crate::config::UserConfig> {
        if self.kind != Kind::User {
            return None;
        }
        // Validated when the resource was made: this reads it again, checks nothing new.
        let raw: RawUser = serde_yaml_ng::from_str(&self.document).ok()?;
        Some(crate::config::UserConfig {
            name: raw.metadata.name,
            password_hash: raw.spec.password_hash,
            roles: raw.spec.roles,
        })
    }

    /// The etcd key relative to the prefix ([`Kind::key`]).
    pub fn key(&self) -> String {
        match self.kind {
            Kind::NetworkRestrictions => NETWORK_RESTRICTIONS_NAME.to_owned(),
            kind => format!("{}{}", kind.key_prefix(), self.name),
        }
    }

    /// The document as the API shows it: as stored for roles and network restrictions; for a
    /// user, written anew without `spec.password_hash` (comments are lost; the hash never
    /// leaves the server).
    pub fn public_document(&self) -> String {
        match self.kind {
            Kind::User => public_user(&self.document, &self.name),
            _ => self.document.clone(),
        }
    }

    /// [`Resource::public_document`] in `format`.
    ///
    /// # Errors
    /// [`DocError::Invalid`] when the document has a value JSON cannot hold (a mapping or
    /// sequence as a mapping key).
    pub fn render(&self, format: Format) -> Result<String, DocError> {
        let shown = self.public_document();
        match format {
            Format::Yaml => Ok(shown),
            Format::Json => {
                let json = document_to_json(&self.key(), &shown)?;
                let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
                text.push('\n');
                Ok(text)
            }
        }
    }
}

/// The user document without its password hash (see [`Resource::public_document`]).
fn public_user(document: &str, name: &str) -> String {
    let minimal = || format!("kind: user\nversion: {USER_VERSION}\nmetadata:\n  name: {name}\n");
    let Ok(mut value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(document) else {
        return minimal();
    };
    let Some(spec) = value
        .get_mut("spec")
        .and_then(serde_yaml_ng::Value::as_mapping_mut)
    else {
        return minimal();
    };
    spec.remove("password_hash");
    serde_yaml_ng::to_string(&value).unwrap_or_else(|_| minimal())
}

/// One YAML document (as [`Resource::public_document`] gives it, or as the admin API sent
/// it) converted to JSON: mappings to objects (scalar keys as their text), sequences to
/// arrays, tags dropped, numbers JSON cannot write (`.nan`, `.inf`) as strings. The text goes
/// through the configuration's scanner first (no aliases, bounded nesting), so the work is
/// bounded by its size; `source` labels errors.
///
/// # Errors
/// [`DocError::Invalid`] for text that is not one such YAML document, or that has a mapping
/// or sequence as a mapping key.
pub fn document_to_json(source: &str, document: &str) -> Result<serde_json::Value, DocError> {
    let invalid = |line: usize, field: &str, message: String| DocError::Invalid {
        file: source.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    if document.len() > MAX_TEXT_BYTES {
        return Err(DocError::TooLarge {
            file: source.to_owned(),
            size: document.len(),
        });
    }
    config::scan::scan(Path::new(source), document).map_err(|e| from_config(e, 1, 1))?;
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(document).map_err(|e| from_serde(source, &e, 1, 1))?;
    yaml_to_json(&value).map_err(|m| invalid(1, "(document)", m))
}

/// Depth is bounded by the scanner (at most `MAX_CONFIG_DEPTH` levels), so this recursion is.
fn yaml_to_json(value: &serde_yaml_ng::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| J::String(n.to_string()), J::Number)
            }
        }
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(items) => J::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Y::Mapping(entries) => {
            let mut object = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Null => "null".to_owned(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Tagged(t) => match &t.value {
                        Y::String(s) => s.clone(),
                        _ => return Err("a mapping key JSON cannot hold".into()),
                    },
                    Y::Sequence(_) | Y::Mapping(_) => {
                        return Err("a mapping or sequence as a mapping key".into());
                    }
                };
                object.insert(key, yaml_to_json(v)?);
            }
            J::Object(object)
        }
        Y::Tagged(t) => yaml_to_json(&t.value)?,
    })
}

/// One piece of the text: its first line (1-based, in the whole text) and its text.
struct Piece<'a> {
    line: usize,
    text: &'a str,
}

/// Whether `rest` (the start of a line) is the marker `ccc` followed by a blank, a line
/// break, NUL or the end (what YAML's scanner reads as a document marker at column 0).
fn is_marker(rest: &[u8], c: u8) -> bool {
    rest.len() >= 3
        && rest[..3] == [c, c, c]
        && rest
            .get(3)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\0'))
}

/// Cuts `text` at the document markers (module docs). Line breaks are LF, CR and CRLF, as
/// YAML counts them. `Err(line)`: more than [`MAX_PIECES`] pieces, at that line.
fn pieces<'a>(text: &'a str) -> Result<Vec<Piece<'a>>, usize> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut start_line) = (0usize, 1usize);
    let (mut pos, mut line) = (0usize, 1usize);
    let push = |from: usize, to: usize, at: usize, out: &mut Vec<Piece<'a>>| {
        if from < to {
            if out.len() >= MAX_PIECES {
                return Err(at);
            }
            // Cut at ASCII bytes (markers, line breaks): always on a character boundary.
            if let Some(t) = text.get(from..to) {
                out.push(Piece { line: at, text: t });
            }
        }
        Ok(())
    };
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if pos != start && is_marker(rest, b'-') {
            push(start, pos, start_line, &mut out)?;
            (start, start_line) = (pos, line);
        }
        let ends = is_marker(rest, b'.');
        let mut next = pos;
        while next < bytes.len() && !matches!(bytes[next], b'\n' | b'\r') {
            next += 1;
        }
        if next < bytes.len() {
            next += if bytes[next] == b'\r' && bytes.get(next + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            line += 1;
        }
        pos = next;
        if ends {
            push(start, pos, start_line, &mut out)?;
            (start, start_line) = (pos, line);
        }
    }
    push(start, bytes.len(), start_line, &mut out)?;
    Ok(out)
}

/// Whether a piece's first line is a bare `---` (blanks or a comment after it): left out of
/// the stored document.
fn bare_marker_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !is_marker(b, b'-') {
        return None;
    }
    let end = b
        .iter()
        .position(|c| matches!(c, b'\n' | b'\r'))
        .unwrap_or(b.len());
    let after = text.get(3..end)?.trim_start_matches([' ', '\t']);
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let brk = match (b.get(end), b.get(end + 1)) {
        (Some(b'\r'), Some(b'\n')) => 2,
        (Some(_), _) => 1,
        (None, _) => 0,
    };
    Some(end + brk)
}

/// A line in a piece (1-based; 0 = unknown) as a line of the whole text (`first` is the
/// piece's first line); unknown becomes `fallback`.
fn shift(line: usize, first: usize, fallback: usize) -> usize {
    if line == 0 {
        fallback
    } else {
        first + line - 1
    }
}

fn from_config(e: ConfigError, first: usize, fallback: usize) -> DocError {
    match e {
        ConfigError::Syntax {
            file,
            line,
            message,
            ..
        } => DocError::Invalid {
            file: file.display().to_string(),
            line: shift(line, first, fallback),
            field: "(yaml)".into(),
            message,
        },
        ConfigError::Invalid {
            file,
            line,
            field,
            message,
        } => DocError::Invalid {
            file: file.display().to_string(),
            line: shift(line, first, fallback),
            field,
            message,
        },
        other => DocError::Invalid {
            file: String::new(),
            line: fallback,
            field: "(document)".into(),
            message: other.to_string(),
        },
    }
}

fn from_policy(
    e: ippin_policy::Error,
    first: usize,
    fallback: usize,
    version_line: usize,
) -> DocError {
    use ippin_policy::Error as P;
    let (file, line, field, message) = match e {
        P::Syntax {
            file,
            line,
            message,
        } => (
            file,
            shift(line, first, fallback),
            "(yaml)".to_owned(),
            format!("YAML syntax error: {message}"),
        ),
        P::Field {
            file,
            line,
            field,
            message,
        } => (file, shift(line, first, fallback), field, message),
        P::Unsupported {
            file,
            kind,
            version,
            expected,
            ..
        } => (
            file,
            version_line,
            "version".to_owned(),
            format!(
                "unsupported resource: kind `{kind}` version `{version}` (expected {expected})"
            ),
        ),
        P::Limit { file, line, what } => (
            file,
            shift(line, first, fallback),
            "(document)".to_owned(),
            format!("limit exceeded: {what}"),
        ),
        other => (
            String::new(),
            fallback,
            "(document)".to_owned(),
            other.to_string(),
        ),
    };
    DocError::Invalid {
        file,
        line,
        field,
        message,
    }
}

/// A serde_yaml_ng error: its line shifted, its message without the position, the field
/// path it starts with (`spec: unknown field ...`) as the field.
fn from_serde(source: &str, e: &serde_yaml_ng::Error, first: usize, fallback: usize) -> DocError {
    let line = e.location().map_or(0, |l| l.line());
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let (field, message) = match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']')
                }) =>
        {
            (path.to_owned(), rest.to_owned())
        }
        _ => ("(document)".to_owned(), message),
    };
    DocError::Invalid {
        file: source.to_owned(),
        line: shift(line, first, fallback),
        field,
        message,
    }
}

/// A `kind: user` document, strictly: unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[allow(dead_code)]
    kind: String,
    version: String,
    metadata: RawMetadata,
    spec: RawUserSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: String,
}

/// The fields of a `users:` entry of the configuration, less the name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserSpec {
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Parses and validates every document of `text` (several YAML documents separated by
/// `---`; empty documents are skipped, a text with none is refused). `source` labels errors (`netpolicy.yaml`, or an etcd
/// key).
///
/// Each document is checked as the file loader checks its kind (module docs), then:
/// a role's and a user's name and a user's role names must pass [`Kind::check_name`] (they
/// become etcd keys); a user's hash must also be a well-formed argon2id PHC string;
/// at most [`MAX_DOCUMENTS`] documents; one (kind, name) at most once.
/// Whether the roles a user names exist is not checked here (the caller checks them against
/// the store).
///
/// The user document (`version: v1`; no other field):
///
/// ```yaml
/// kind: user
/// version: v1
/// metadata:
///   name: alice
/// spec:
///   password_hash: "$argon2id$v=19$m=19456,t=2,p=1$..."
///   roles: [pinned-ip]
/// ```
///
/// # Errors
/// The first problem found, as a [`DocError`]; nothing is returned for the other documents.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Resource>, DocError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(DocError::TooLarge {
            file: source.to_owned(),
            size: text.len(),
        });
    }
    let invalid = |line: usize, field: &str, message: String| DocError::Invalid {
        file: source.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    // The whole text, markers and their comments included: the documents are cut at `---`
    // lines before they are scanned, and a `--- # note<U+2028>key: …` line would otherwise
    // hide what follows the separator from every check (libyaml ends the comment there).
    if let Some((line, column, c)) = ippin_policy::yaml_unclear_character(text) {
        return Err(invalid(
            line,
            "(yaml)",
            format!(
                "column {column}: the character U+{:04X} is not taken: YAML readers disagree \
                 on it (some break lines there), so the text may not mean what it shows",
                u32::from(c)
            ),
        ));
    }
    let pieces = pieces(text).map_err(|line| {
        invalid(
            line,
            "(text)",
            format!("more than {MAX_PIECES} YAML documents (empty ones included)"),
        )
    })?;
    let mut out: Vec<Resource> = Vec::new();
    let mut seen: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for piece in pieces {
        let (first, body) = match bare_marker_len(piece.text) {
            Some(n) => (piece.line + 1, piece.text.get(n..).unwrap_or_default()),
            None => (piece.line, piece.text),
        };
        let Some(found) = parse_one(source, first, body)? else {
            continue;
        };
        let (resource, line) = found;
        if out.len() == MAX_DOCUMENTS {
            return Err(invalid(
                line,
                "(document)",
                format!("more than {MAX_DOCUMENTS} documents in one text"),
            ));
        }
        let id = (resource.kind, resource.name.clone());
        if let Some(before) = seen.get(&id) {
            return Err(invalid(
                line,
                "metadata.name",
                format!(
                    "{} `{}` is also on line {before}: each resource once per text",
                    resource.kind, resource.name
                ),
            ));
        }
        seen.insert(id, line);
        out.push(resource);
    }
    if out.is_empty() {
        return Err(invalid(1, "(text)", "no document".into()));
    }
    Ok(out)
}

/// The resource stored under `key` (relative to the prefix) with value `value`, as read from
/// etcd: validated as [`parse_documents`] validates a file (a value written by another etcd
/// client is trusted no more than a file), and it must be exactly one document whose
/// [`Resource::key`] is `key`. Errors name the key as the source.
///
/// # Errors
/// What [`parse_documents`] refuses; [`DocError::Invalid`] with field `(key)` when the value
/// holds several documents or another resource than its key says.
pub fn parse_stored(key: &str, value: &str) -> Result<Resource, DocError> {
    let mut found = parse_documents(key, value)?;
    match (found.pop(), found.is_empty()) {
        (Some(r), true) if r.key() == key => Ok(r),
        (Some(r), true) => Err(DocError::Invalid {
            file: key.to_owned(),
            line: 1,
            field: "(key)".into(),
            message: format!("holds {} `{}`, whose key is `{}`", r.kind, r.name, r.key()),
        }),
        _ => Err(DocError::Invalid {
            file: key.to_owned(),
            line: 1,
            field: "(key)".into(),
            message: "a stored value is one document".into(),
        }),
    }
}

/// One document (`body`, whose first line is line `first` of the text): `None` when it is
/// empty; else the resource and the line of its name (or of its start).
fn parse_one(
    source: &str,
    first: usize,
    body: &str,
) -> Result<Option<(Resource, usize)>, DocError> {
    let positions =
        config::scan::scan(Path::new(source), body).map_err(|e| from_config(e, first, first))?;
    let Some(root) = positions.line("") else {
        return Ok(None);
    };
    let at = |path: &str| shift(positions.line(path).unwrap_or(root), first, first);
    let invalid = |line: usize, field: &str, message: String| DocError::Invalid {
        file: source.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    let start = shift(root, first, first);
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(body).map_err(|e| from_serde(source, &e, first, start))?;
    let kind = match &value {
        serde_yaml_ng::Value::Null => return Ok(None),
        serde_yaml_ng::Value::Mapping(m) => match m.get("kind") {
            None => {
                return Err(invalid(start, "kind", "required field is missing".into()));
            }
            Some(serde_yaml_ng::Value::String(k)) => match Kind::of_document(k) {
                Some(kind) => kind,
                None => {
                    return Err(DocError::UnknownKind {
                        file: source.to_owned(),
                        line: at("kind"),
                        kind: k
                            .chars()
                            .take(64)
                            .collect::<String>()
                            .escape_default()
                            .to_string(),
                    });
                }
            },
            Some(_) => return Err(invalid(at("kind"), "kind", "expected a string".into())),
        },
        _ => {
            return Err(invalid(
                start,
                "(document)",
                "expected a mapping with `kind`, `version`, `metadata` and `spec`".into(),
            ));
        }
    };
    let name = match kind {
        Kind::Role => {
            let mut roles = ippin_policy::parse_roles(source, body)
                .map_err(|e| from_policy(e, first, start, at("version")))?;
            let (Some(role), true) = (roles.pop(), roles.is_empty()) else {
                return Err(invalid(start, "(document)", "expected one role".into()));
            };
            role.name
        }
        Kind::NetworkRestrictions => {
            ippin_policy::NetworkRestrictions::parse(source, body)
                .map_err(|e| from_policy(e, first, start, at("version")))?;
            NETWORK_RESTRICTIONS_NAME.to_owned()
        }
        Kind::User => {
            let raw: RawUser =
                serde_yaml_ng::from_str(body).map_err(|e| from_serde(source, &e, first, start))?;
            check_user(&raw).map_err(|(field, m)| invalid(at(&field), &field, m))?;
            raw.metadata.name
        }
    };
    let name_line = match kind {
        Kind::NetworkRestrictions => start,
        _ => at("metadata.name"),
    };
    kind.check_name(&name)
        .map_err(|m| invalid(name_line, "metadata.name", m))?;
    let mut document = body.to_owned();
    if !document.ends_with(['\n', '\r']) {
        document.push('\n');
    }
    Ok(Some((
        Resource {
            kind,
            name,
            document,
        },
        name_line,
    )))
}

/// A user document's values, as the configuration checks a `users:` entry, plus: a
/// well-formed argon2id PHC hash and role names that can be keys. `Err((field, message))`.
fn check_user(raw: &RawUser) -> Result<(), (String, String)> {
    if raw.version != USER_VERSION {
        return Err((
            "version".into(),
            format!(
                "unsupported resource: kind `user` version `{}` (expected version {USER_VERSION})",
                raw.version.escape_default()
            ),
        ));
    }
    config::check_name(&raw.metadata.name).map_err(|m| ("metadata.name".to_owned(), m))?;
    let hash = &raw.spec.password_hash;
    config::check_password_hash(hash).map_err(|m| ("spec.password_hash".to_owned(), m))?;
    for (i, role) in raw.spec.roles.iter().enumerate() {
        config::check_name(role).map_err(|m| (format!("spec.roles[{i}]"), m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
