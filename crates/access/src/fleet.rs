//! The client side of etcd's v3 JSON gateway, sans-IO: requests encoded as a path and a JSON
//! body, responses and watch streams decoded strictly and within bounds.
//!
//! etcd (3.4 and later) serves its v3 API as gRPC and, on the same client URL, as a JSON
//! gateway under `/v3/`: each call is a `POST` of a JSON object. This module holds the part of
//! a client that needs no socket: it never opens a connection, reads a clock or spawns a task.
//! The caller sends [`Request::body`] to [`Request::path`] with any HTTP/1.1 client and hands
//! the answer's body back to the matching decoder.
//!
//! The JSON mapping, as etcd writes it (protobuf's JSON mapping, field names as in the
//! `.proto` files):
//!
//! * keys and values are **base64** (standard alphabet, padded);
//! * revisions, lease ids, TTLs and counts (`int64`) are **decimal strings**: a JSON number
//!   there is refused;
//! * a field at its default (`0`, `false`, empty) is left out, and reads as that default;
//! * fields this module does not know are ignored; a field given twice is refused;
//! * an error is an object with `code` and `message` ([`FleetError::Gateway`]).
//!
//! Every input is bounded: a body over [`MAX_BODY_BYTES`] is refused before parsing, and a
//! [`WatchStream`] holds at most one partial message of at most its bound.
//!
//! ```
//! use ippin_access::fleet::{prefix_end, Range, RangeResponse};
//!
//! // Every key under `/ippin/`: the range [`/ippin/`, `/ippin0`).
//! assert_eq!(prefix_end(b"/ippin/"), b"/ippin0".to_vec());
//! let request = Range::prefix(b"/ippin/").encode();
//! assert_eq!(request.path, "/v3/kv/range");
//!
//! // What etcd answers (here written out): `a` holds `b` since revision 2.
//! let body = br#"{"header":{"revision":"2"},"kvs":[{"key":"YQ==","value":"Yg==",
//!     "create_revision":"2","mod_revision":"2","version":"1"}],"count":"1"}"#;
//! let answer = RangeResponse::decode(body).unwrap();
//! assert_eq!(answer.header.revision, 2);
//! assert_eq!(answer.kvs[0].key, b"a");
//! assert_eq!(answer.kvs[0].value, b"b");
//! ```
//!
//! # What the caller must still do
//!
//! * Bound the HTTP layer too: read at most [`MAX_BODY_BYTES`] of a body before decoding it,
//!   and time out.
//! * Check the HTTP status: a non-2xx answer's body decodes as [`FleetError::Gateway`]
//!   through any decoder, but an empty or foreign body (a proxy's error page) decodes as
//!   [`FleetError::Json`].
//! * Trust what it reads no more than a file: a value written by another etcd client goes
//!   through the same validation as the configuration files.

use std::fmt;

#[cfg(feature = "fleet-tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet-tokio")))]
pub mod client;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The largest response body (and the default bound of a watch message) this module decodes:
/// 4 MiB. etcd refuses requests over 1.5 MiB by default; a range over the whole prefix of a
/// fleet is far below this.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why a response or a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The body (or one watch message) is longer than the bound.
    #[error("{what}: {len} bytes, more than the bound of {max}")]
    TooLarge {
        /// A body or a stream message.
        what: &'static str,
        /// Its length (for a stream message: the bytes seen so far).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not JSON, not an object at the top, or a key given twice.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// etcd (or the gateway) answered with an error.
    #[error("etcd error {code}: {message}")]
    Gateway {
        /// The gRPC status code (for example 3: invalid argument, 5: not found, 11: out of
        /// range, as for a compacted revision in a range).
        code: u64,
        /// etcd's message, as it wrote it.
        message: String,
    },
    /// A field is missing that the answer must have.
    #[error("`{path}` is missing")]
    Missing {
        /// Where, as `field.field[index].field`.
        path: String,
    },
    /// A field has a value of the wrong form.
    #[error("`{path}`: {problem}")]
    Invalid {
        /// Where, as `field.field[index].field`.
        path: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A watch stream holds a byte outside a message that is not JSON whitespace (a message
    /// must be a JSON object).
    #[error("stream: byte {byte:#04x} between messages")]
    Garbage {
        /// The byte.
        byte: u8,
    },
    /// A watch stream ended inside a message.
    #[error("stream: ended inside a message ({len} bytes of it)")]
    Truncated {
        /// The bytes of the unfinished message.
        len: usize,
    },
    /// A watch stream was used again after it refused its input: it stays refused.
    #[error("stream: used after an error")]
    Poisoned,
}

/// What is wrong with a field ([`FleetError::Invalid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Not a JSON string of a decimal `int64` (`-?[0-9]+`, within range).
    #[error("not an int64 as a decimal string")]
    NotDecimal,
    /// A revision (or count) below zero.
    #[error("negative")]
    Negative,
    /// Not a JSON string of standard, padded base64.
    #[error("not base64")]
    NotBase64,
    /// Not a JSON boolean.
    #[error("not a boolean")]
    NotBool,
    /// Not a JSON object.
    #[error("not an object")]
    NotObject,
    /// Not a JSON array.
    #[error("not an array")]
    NotArray,
    /// Not a JSON string.
    #[error("not a string")]
    NotString,
    /// An enum's name that this module does not know (an event type other than `PUT` and
    /// `DELETE`).
    #[error("unknown name")]
    UnknownName,
    /// A union (a transaction's response) with no member or more than one.
    #[error("not exactly one member")]
    NotOneMember,
}

/// A request to the gateway: where to `POST` it and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path on the client URL, under `/v3/`.
    pub path: &'static str,
    /// The JSON body (`Content-Type: application/json`).
    pub body: Vec<u8>,
}

/// The end of the range of every key that starts with `prefix` (etcd's `range_end` for
/// `--prefix`): the prefix with its last byte below `0xff` incremented and what follows it
/// dropped.
///
/// When every byte is `0xff` (or the prefix is empty) no such key exists, and the answer is
/// `[0]`, which etcd reads as "every key from `key` on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(B64.encode(bytes))
}

fn dec(n: i64) -> Value {
    Value::String(n.to_string())
}

fn encode(path: &'static str, body: Map<String, Value>) -> Request {
    Request {
        path,
        // Serialising a map of strings, booleans and nested maps cannot fail.
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
    }
}

/// A range read (`/v3/kv/range`): one key, or the keys in `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (excluded); `None` reads `key` alone.
    pub range_end: Option<Vec<u8>>,
    /// Read at this revision (a consistent snapshot); `None` or 0: the latest.
    pub revision: Option<i64>,
    /// At most this many keys (then [`RangeResponse::more`] says whether there are more);
    /// `None`: no limit.
    pub limit: Option<i64>,
    /// Keys and revisions only, no values (a small answer to "does it exist").
    pub keys_only: bool,
    /// The most recently modified keys first (etcd's `sort_target: MOD`, `sort_order:
    /// DESCEND`); with `limit: 1`, the latest change in the range.
    pub newest_first: bool,
}

impl Range {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/kv/range";

    /// Reads one key.
    pub fn key(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            ..Self::default()
        }
    }

    /// Reads every key that starts with `prefix` (with [`prefix_end`]; an empty prefix reads
    /// every key, as etcd's `--prefix` does).
    pub fn prefix(prefix: &[u8]) -> Self {
        let (key, end) = prefix_range(prefix);
        Self {
            key,
            range_end: Some(end),
            ..Self::default()
        }
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("key".into(), b64(&self.key));
        if let Some(end) = &self.range_end {
            m.insert("range_end".into(), b64(end));
        }
        if let Some(r) = self.revision {
            m.insert("revision".into(), dec(r));
        }
        if let Some(l) = self.limit {
            m.insert("limit".into(), dec(l));
        }
        if self.keys_only {
            m.insert("keys_only".into(), Value::Bool(true));
        }
        if self.newest_first {
            m.insert("sort_order".into(), Value::String("DESCEND".into()));
            m.insert("sort_target".into(), Value::String("MOD".into()));
        }
        m
    }

    /// The request.
    pub fn encode(&self) -> Request {
        encode(Self::PATH, self.fields())
    }
}

fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_end(prefix))
    }
}

/// A write (`/v3/kv/put`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Put {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Attach the key to this lease (it is deleted when the lease ends); `None`: no lease.
    pub lease: Option<i64>,
    /// Return the previous key-value ([`PutResponse::prev_kv`]).
    pub prev_kv: bool,
}

impl Put {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/kv/put";

    /// Writes `value` at `key`, with no lease.
    pub fn new(key: &[u8], value: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Self::default()
        }
    }

    /// The same write, attached to `lease`.
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.lease = Some(lease);
        self
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("key".into(), b64(&self.key));
        m.insert("value".into(), b64(&self.value));
        if let Some(l) = self.lease {
            m.insert("lease".into(), dec(l));
        }
        if self.prev_kv {
            m.insert("prev_kv".into(), Value::Bool(true));
        }
        m
    }

    /// The request.
    pub fn encode(&self) -> Request {
        encode(Self::PATH, self.fields())
    }
}

/// A delete (`/v3/kv/deleterange`): one key, or the keys in `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRange {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (excluded); `None` deletes `key` alone.
    pub range_end: Option<Vec<u8>>,
    /// Return the deleted key-values ([`DeleteRangeResponse::prev_kvs`]).
    pub prev_kv: bool,
}

impl DeleteRange {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/kv/deleterange";

    /// Deletes one key.
    pub fn key(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            ..Self::default()
        }
    }

    /// Deletes every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let (key, end) = prefix_range(prefix);
        Self {
            key,
            range_end: Some(end),
            prev_kv: false,
        }
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("key".into(), b64(&self.key));
        if let Some(end) = &self.range_end {
            m.insert("range_end".into(), b64(end));
        }
        if self.prev_kv {
            m.insert("prev_kv".into(), Value::Bool(true));
        }
        m
    }

    /// The request.
    pub fn encode(&self) -> Request {
        encode(Self::PATH, self.fields())
    }
}

/// One condition of a transaction: a key's revision equals a number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compare {
    /// The key's `create_revision` equals this; `0` means "the key does not exist" (a
    /// create-only write).
    CreateRevision {
        /// The key.
        key: Vec<u8>,
        /// The revision.
        revision: i64,
    },
    /// The key's `mod_revision` equals this (nobody wrote it since it was read).
    ModRevision {
        /// The key.
        key: Vec<u8>,
        /// The revision.
        revision: i64,
    },
    /// The key's `create_revision` is above this; above `0` means "the key exists".
    CreateRevisionAbove {
        /// The key.
        key: Vec<u8>,
        /// The revision.
        revision: i64,
    },
    /// The key's `mod_revision` is below this (nobody wrote it at or after this revision).
    ModRevisionBelow {
        /// The key.
        key: Vec<u8>,
        /// The revision.
        revision: i64,
    },
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: &[u8]) -> Self {
        Self::CreateRevision {
            key: key.to_vec(),
            revision: 0,
        }
    }

    /// The key was last written at `revision`.
    pub fn mod_revision(key: &[u8], revision: i64) -> Self {
        Self::ModRevision {
            key: key.to_vec(),
            revision,
        }
    }

    /// The key exists.
    pub fn exists(key: &[u8]) -> Self {
        Self::CreateRevisionAbove {
            key: key.to_vec(),
            revision: 0,
        }
    }

    /// Nobody wrote the key after `revision` (it was last written at or before it; a key
    /// that does not exist passes too: pair it with [`Compare::exists`]).
    pub fn unchanged_since(key: &[u8], revision: i64) -> Self {
        Self::ModRevisionBelow {
            key: key.to_vec(),
            revision: revision.saturating_add(1),
        }
    }

    fn fields(&self) -> Map<String, Value> {
        let (result, target, field, key, revision) = match self {
            Self::CreateRevision { key, revision } => {
                ("EQUAL", "CREATE", "create_revision", key, revision)
            }
            Self::ModRevision { key, revision } => ("EQUAL", "MOD", "mod_revision", key, revision),
            Self::CreateRevisionAbove { key, revision } => {
                ("GREATER", "CREATE", "create_revision", key, revision)
            }
            Self::ModRevisionBelow { key, revision } => {
                ("LESS", "MOD", "mod_revision", key, revision)
            }
        };
        let mut m = Map::new();
        m.insert("result".into(), Value::String(result.into()));
        m.insert("target".into(), Value::String(target.into()));
        m.insert("key".into(), b64(key));
        m.insert(field.into(), dec(*revision));
        m
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// A range read.
    Range(Range),
    /// A write.
    Put(Put),
    /// A delete.
    DeleteRange(DeleteRange),
}

impl Op {
    fn value(&self) -> Value {
        let (name, fields) = match self {
            Self::Range(r) => ("request_range", r.fields()),
            Self::Put(p) => ("request_put", p.fields()),
            Self::DeleteRange(d) => ("request_delete_range", d.fields()),
        };
        let mut m = Map::new();
        m.insert(name.into(), Value::Object(fields));
        Value::Object(m)
    }
}

/// A transaction (`/v3/kv/txn`): if every comparison holds, the `success` operations, else
/// the `failure` ones, all at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    /// The conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// The operations when they hold.
    pub success: Vec<Op>,
    /// The operations when one does not.
    pub failure: Vec<Op>,
}

impl Txn {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/kv/txn";

    /// The request.
    pub fn encode(&self) -> Request {
        let mut m = Map::new();
        let list = |ops: &[Op]| Value::Array(ops.iter().map(Op::value).collect());
        m.insert(
            "compare".into(),
            Value::Array(
                self.compare
                    .iter()
                    .map(|c| Value::Object(c.fields()))
                    .collect(),
            ),
        );
        m.insert("success".into(), list(&self.success));
        m.insert("failure".into(), list(&self.failure));
        encode(Self::PATH, m)
    }
}

/// A compaction (`/v3/kv/compaction`): history before `revision` is dropped; a watch from an
/// earlier revision is then refused with [`WatchResponse::compact_revision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// The first revision kept.
    pub revision: i64,
    /// Answer only once the space is reclaimed.
    pub physical: bool,
}

impl Compaction {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/kv/compaction";

    /// The request.
    pub fn encode(&self) -> Request {
        let mut m = Map::new();
        m.insert("revision".into(), dec(self.revision));
        if self.physical {
            m.insert("physical".into(), Value::Bool(true));
        }
        encode(Self::PATH, m)
    }
}

/// A lease (`/v3/lease/grant`): keys attached to it are deleted when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Its time to live, in seconds.
    pub ttl: i64,
    /// Ask for this id; `None`: etcd chooses.
    pub id: Option<i64>,
}

impl LeaseGrant {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/lease/grant";

    /// The request.
    pub fn encode(&self) -> Request {
        let mut m = Map::new();
        m.insert("TTL".into(), dec(self.ttl));
        if let Some(id) = self.id {
            m.insert("ID".into(), dec(id));
        }
        encode(Self::PATH, m)
    }
}

/// Ends a lease now (`/v3/lease/revoke`), deleting its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRevoke {
    /// The lease.
    pub id: i64,
}

impl LeaseRevoke {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/lease/revoke";

    /// The request.
    pub fn encode(&self) -> Request {
        let mut m = Map::new();
        m.insert("ID".into(), dec(self.id));
        encode(Self::PATH, m)
    }
}

/// Renews a lease (`/v3/lease/keepalive`, a stream on the gateway: one request, one
/// `{"result": …}` message, decoded by [`LeaseKeepAliveResponse::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKeepAlive {
    /// The lease.
    pub id: i64,
}

impl LeaseKeepAlive {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/lease/keepalive";

    /// The request.
    pub fn encode(&self) -> Request {
        let mut m = Map::new();
        m.insert("ID".into(), dec(self.id));
        encode(Self::PATH, m)
    }
}

/// A watch (`/v3/watch`): the answer is a stream of messages ([`WatchStream`]) that stays
/// open, first `created`, then the events from `start_revision` on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watch {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (excluded); `None` watches `key` alone.
    pub range_end: Option<Vec<u8>>,
    /// Events from this revision on (to resume: the last applied + 1); `None`: from now.
    pub start_revision: Option<i64>,
    /// Ask for progress messages (no events, a header revision) when nothing changes.
    pub progress_notify: bool,
    /// Each event carries the key-value before it ([`Event::prev_kv`]).
    pub prev_kv: bool,
}

impl Watch {
    /// The path of the call.
    pub const PATH: &'static str = "/v3/watch";

    /// Watches every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let (key, end) = prefix_range(prefix);
        Self {
            key,
            range_end: Some(end),
            ..Self::default()
        }
    }

    /// The same watch, from `revision` on.
    pub fn from_revision(mut self, revision: i64) -> Self {
        self.start_revision = Some(revision);
        self
    }

    /// The request (a `create_request`).
    pub fn encode(&self) -> Request {
        let mut c = Map::new();
        c.insert("key".into(), b64(&self.key));
        if let Some(end) = &self.range_end {
            c.insert("range_end".into(), b64(end));
        }
        if let Some(r) = self.start_revision {
            c.insert("start_revision".into(), dec(r));
        }
        if self.progress_notify {
            c.insert("progress_notify".into(), Value::Bool(true));
        }
        if self.prev_kv {
            c.insert("prev_kv".into(), Value::Bool(true));
        }
        let mut m = Map::new();
        m.insert("create_request".into(), Value::Object(c));
        encode(Self::PATH, m)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A JSON value parsed with duplicate keys refused (serde_json keeps the last one silently).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if m.insert(k.clone(), v).is_some() {
                return Err(de::Error::custom(format_args!("key `{k}` given twice")));
            }
        }
        Ok(Value::Object(m))
    }
}

/// Parses a bounded body into its top-level object, turning an error answer into
/// [`FleetError::Gateway`].
fn parse(body: &[u8], what: &'static str) -> Result<Map<String, Value>, FleetError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FleetError::TooLarge {
            what,
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let Strict(v) = serde_json::from_slice(body).map_err(|e| FleetError::Json(e.to_string()))?;
    match v {
        Value::Object(m) => {
            gateway_error(&m)?;
            Ok(m)
        }
        _ => Err(FleetError::Json("the top level is not an object".into())),
    }
}

/// An error answer: `{"error": "…", "code": N, "message": "…"}` (unary calls) or
/// `{"error": {"grpc_code": N, "message": "…", …}}` (in a stream).
fn gateway_error(m: &Map<String, Value>) -> Result<(), FleetError> {
    let inner = match m.get("error") {
        Some(Value::Object(e)) => e,
        Some(_) => m,
        None if m.contains_key("code") => m,
        None => return Ok(()),
    };
    let code = ["code", "grpc_code"]
        .iter()
        .find_map(|k| inner.get(*k).and_then(Value::as_u64))
        .unwrap_or(0);
    let message = ["message", "error"]
        .iter()
        .find_map(|k| inner.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned();
    Err(FleetError::Gateway { code, message })
}

/// A field reader that names the path of what is wrong.
struct Obj<'a> {
    m: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn at(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn invalid(&self, name: &str, problem: Problem) -> FleetError {
        FleetError::Invalid {
            path: self.at(name),
            problem,
        }
    }

    fn int(&self, name: &str) -> Result<i64, FleetError> {
        match self.m.get(name) {
            None => Ok(0),
            Some(Value::String(s)) => {
                parse_decimal(s).ok_or_else(|| self.invalid(name, Problem::NotDecimal))
            }
            Some(_) => Err(self.invalid(name, Problem::NotDecimal)),
        }
    }

    /// A revision or a count: an int64 that is not negative.
    fn count(&self, name: &str) -> Result<i64, FleetError> {
        let n = self.int(name)?;
        if n < 0 {
            return Err(self.invalid(name, Problem::Negative));
        }
        Ok(n)
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>, FleetError> {
        match self.m.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => B64
                .decode(s.as_bytes())
                .map_err(|_| self.invalid(name, Problem::NotBase64)),
            Some(_) => Err(self.invalid(name, Problem::NotBase64)),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, FleetError> {
        match self.m.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid(name, Problem::NotBool)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, FleetError> {
        match self.m.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(name, Problem::NotString)),
        }
    }

    fn obj(&self, name: &str) -> Result<Option<Obj<'a>>, FleetError> {
        match self.m.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Obj {
                m,
                path: self.at(name),
            })),
            Some(_) => Err(self.invalid(name, Problem::NotObject)),
        }
    }

    fn required(&self, name: &str) -> Result<Obj<'a>, FleetError> {
        self.obj(name)?.ok_or_else(|| FleetError::Missing {
            path: self.at(name),
        })
    }

    fn list<T>(
        &self,
        name: &str,
        f: impl Fn(&Obj<'a>) -> Result<T, FleetError>,
    ) -> Result<Vec<T>, FleetError> {
        let items = match self.m.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(self.invalid(name, Problem::NotArray)),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{}[{i}]", self.at(name));
                match v {
                    Value::Object(m) => f(&Obj { m, path }),
                    _ => Err(FleetError::Invalid {
                        path,
                        problem: Problem::NotObject,
                    }),
                }
            })
            .collect()
    }
}

/// `-?[0-9]+` within `i64`, nothing else (no sign `+`, no space, no exponent).
fn parse_decimal(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The header of every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The store's revision when the answer was made (0 when etcd leaves it out, as in a
    /// watch's cancel message).
    pub revision: i64,
}

impl Header {
    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        Ok(Self {
            revision: o.count("revision")?,
        })
    }

    fn of(o: &Obj<'_>) -> Result<Self, FleetError> {
        Self::read(&o.required("header")?)
    }

    /// A header that may be missing (inside a transaction's responses).
    fn optional(o: &Obj<'_>) -> Result<Self, FleetError> {
        o.obj("header")?
            .map_or(Ok(Self::default()), |h| Self::read(&h))
    }
}

/// A key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty in a delete event's `kv`).
    pub value: Vec<u8>,
    /// The revision that created the key (since its last delete).
    pub create_revision: i64,
    /// The revision of its last write.
    pub mod_revision: i64,
    /// How many writes since it was created.
    pub version: i64,
    /// The lease it is attached to; 0: none.
    pub lease: i64,
}

impl KeyValue {
    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        Ok(Self {
            key: o.bytes("key")?,
            value: o.bytes("value")?,
            create_revision: o.count("create_revision")?,
            mod_revision: o.count("mod_revision")?,
            version: o.count("version")?,
            lease: o.int("lease")?,
        })
    }
}

/// The answer to a [`Range`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// The header: the revision read.
    pub header: Header,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// More keys than the limit matched.
    pub more: bool,
    /// How many keys matched.
    pub count: i64,
}

impl RangeResponse {
    /// Decodes the body of the answer.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "range body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        Ok(Self {
            header: Header::of(&o)?,
            ..Self::read(&o)?
        })
    }

    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        Ok(Self {
            header: Header::optional(o)?,
            kvs: o.list("kvs", KeyValue::read)?,
            more: o.bool("more")?,
            count: o.count("count")?,
        })
    }
}

/// The answer to a [`Put`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutResponse {
    /// The header: the revision of the write.
    pub header: Header,
    /// The key-value before the write, when asked and when there was one.
    pub prev_kv: Option<KeyValue>,
}

impl PutResponse {
    /// Decodes the body of the answer.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "put body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        Ok(Self {
            header: Header::of(&o)?,
            ..Self::read(&o)?
        })
    }

    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        Ok(Self {
            header: Header::optional(o)?,
            prev_kv: o
                .obj("prev_kv")?
                .map(|kv| KeyValue::read(&kv))
                .transpose()?,
        })
    }
}

/// The answer to a [`DeleteRange`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRangeResponse {
    /// The header: the revision of the delete.
    pub header: Header,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked.
    pub prev_kvs: Vec<KeyValue>,
}

impl DeleteRangeResponse {
    /// Decodes the body of the answer.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "deleterange body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        Ok(Self {
            header: Header::of(&o)?,
            ..Self::read(&o)?
        })
    }

    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        Ok(Self {
            header: Header::optional(o)?,
            deleted: o.count("deleted")?,
            prev_kvs: o.list("prev_kvs", KeyValue::read)?,
        })
    }
}

/// The answer to one operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResponse {
    /// A range read's.
    Range(RangeResponse),
    /// A write's.
    Put(PutResponse),
    /// A delete's.
    DeleteRange(DeleteRangeResponse),
}

impl OpResponse {
    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        let range = o.obj("response_range")?;
        let put = o.obj("response_put")?;
        let del = o.obj("response_delete_range")?;
        match (range, put, del) {
            (Some(r), None, None) => Ok(Self::Range(RangeResponse::read(&r)?)),
            (None, Some(p), None) => Ok(Self::Put(PutResponse::read(&p)?)),
            (None, None, Some(d)) => Ok(Self::DeleteRange(DeleteRangeResponse::read(&d)?)),
            _ => Err(FleetError::Invalid {
                path: o.path.clone(),
                problem: Problem::NotOneMember,
            }),
        }
    }
}

/// The answer to a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    /// The header: the revision after the transaction.
    pub header: Header,
    /// Every comparison held: the `success` operations ran (else the `failure` ones).
    pub succeeded: bool,
    /// The answers of the operations that ran, in order.
    pub responses: Vec<OpResponse>,
}

impl TxnResponse {
    /// Decodes the body of the answer.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "txn body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        Ok(Self {
            header: Header::of(&o)?,
            succeeded: o.bool("succeeded")?,
            responses: o.list("responses", OpResponse::read)?,
        })
    }
}

/// The answer to a [`Compaction`] or a [`LeaseRevoke`]: a header only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderResponse {
    /// The header.
    pub header: Header,
}

impl HeaderResponse {
    /// Decodes the body of the answer.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        Ok(Self {
            header: Header::of(&o)?,
        })
    }
}

/// The answer to a [`LeaseGrant`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseGrantResponse {
    /// The header.
    pub header: Header,
    /// The lease's id (for [`Put::lease`], [`LeaseKeepAlive`], [`LeaseRevoke`]).
    pub id: i64,
    /// Its time to live, in seconds.
    pub ttl: i64,
}

impl LeaseGrantResponse {
    /// Decodes the body of the answer; a lease id of 0 (none) is refused.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "lease grant body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        let id = o.int("ID")?;
        if id == 0 {
            return Err(FleetError::Missing { path: "ID".into() });
        }
        Ok(Self {
            header: Header::of(&o)?,
            id,
            ttl: o.int("TTL")?,
        })
    }
}

/// The answer to a [`LeaseKeepAlive`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseKeepAliveResponse {
    /// The header.
    pub header: Header,
    /// The lease's id.
    pub id: i64,
    /// Its time to live from now, in seconds; 0 or less: the lease has ended (or never was),
    /// and its keys are gone.
    pub ttl: i64,
}

impl LeaseKeepAliveResponse {
    /// Decodes the body of the answer: one `{"result": …}` stream message (whitespace around
    /// it allowed), or an error.
    pub fn decode(body: &[u8]) -> Result<Self, FleetError> {
        let m = parse(body, "lease keepalive body")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        let r = o.required("result")?;
        Ok(Self {
            header: Header::of(&r)?,
            id: r.int("ID")?,
            ttl: r.int("TTL")?,
        })
    }
}

/// What an [`Event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The key was written (created or changed).
    Put,
    /// The key was deleted (or its lease ended).
    Delete,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key-value after it (for a delete: the key and the revision of the delete).
    pub kv: KeyValue,
    /// The key-value before it, when the watch asked for it and there was one.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    fn read(o: &Obj<'_>) -> Result<Self, FleetError> {
        let kind = match o.string("type")? {
            None | Some("PUT") => EventKind::Put,
            Some("DELETE") => EventKind::Delete,
            Some(_) => return Err(o.invalid("type", Problem::UnknownName)),
        };
        Ok(Self {
            kind,
            kv: KeyValue::read(&o.required("kv")?)?,
            prev_kv: o
                .obj("prev_kv")?
                .map(|kv| KeyValue::read(&kv))
                .transpose()?,
        })
    }
}

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchResponse {
    /// The header: the store's revision (for a progress message: everything up to it has
    /// been sent).
    pub header: Header,
    /// The watch's id on its stream.
    pub watch_id: i64,
    /// The watch was just created (the first message).
    pub created: bool,
    /// The watch was ended by etcd; the stream has nothing more for it.
    pub canceled: bool,
    /// Why it was ended, in etcd's words.
    pub cancel_reason: String,
    /// Non-zero: the asked start revision was compacted; the oldest revision still kept is
    /// this. The events between are lost: read the whole state again.
    pub compact_revision: i64,
    /// This message is a part of a larger one (only when asked for fragments).
    pub fragment: bool,
    /// The changes, in revision order.
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// A progress message: no events and nothing else but the header's revision.
    pub fn is_progress(&self) -> bool {
        !self.created && !self.canceled && self.compact_revision == 0 && self.events.is_empty()
    }

    /// Decodes one stream message: `{"result": …}`, or an error.
    pub fn decode(message: &[u8]) -> Result<Self, FleetError> {
        let m = parse(message, "watch message")?;
        let o = Obj {
            m: &m,
            path: String::new(),
        };
        let r = o.required("result")?;
        Ok(Self {
            header: Header::of(&r)?,
            watch_id: r.int("watch_id")?,
            created: r.bool("created")?,
            canceled: r.bool("canceled")?,
            cancel_reason: r.string("cancel_reason")?.unwrap_or("").to_owned(),
            compact_revision: r.count("compact_revision")?,
            fragment: r.bool("fragment")?,
            events: r.list("events", Event::read)?,
        })
    }
}

/// Splits a byte stream of JSON objects (a watch's answer, after the HTTP layer's chunking
/// is undone) into whole messages, within a bound.
///
/// Bytes come in pieces of any size ([`push`](Self::push)); whole messages come out, the same
/// whatever the pieces. Between messages only JSON whitespace is allowed. The splitter only
/// frames: it counts brackets outside strings (not their kinds), and the JSON decoder checks
/// what is inside a message. It keeps
/// one partial message of at most its bound and refuses a longer one; after a refusal it
/// refuses everything ([`FleetError::Poisoned`]): a stream that went wrong is dropped and
/// reopened, not resynchronised.
#[derive(Debug, Clone)]
pub struct MessageSplitter {
    buf: Vec<u8>,
    max: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    poisoned: bool,
}

impl Default for MessageSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageSplitter {
    /// A splitter with the bound [`MAX_BODY_BYTES`] per message.
    pub fn new() -> Self {
        Self::with_max_message(MAX_BODY_BYTES)
    }

    /// A splitter that refuses a message longer than `max` bytes.
    pub fn with_max_message(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            depth: 0,
            in_string: false,
            escaped: false,
            poisoned: false,
        }
    }

    /// The bytes of the unfinished message held now (at most the bound).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next piece of the stream; returns the messages it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, FleetError> {
        if self.poisoned {
            return Err(FleetError::Poisoned);
        }
        let out = self.scan(chunk);
        if out.is_err() {
            self.poisoned = true;
            self.buf = Vec::new();
        }
        out
    }

    fn scan(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, FleetError> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.depth == 0 {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' => {}
                    _ => return Err(FleetError::Garbage { byte: b }),
                }
            }
            if self.buf.len() >= self.max {
                return Err(FleetError::TooLarge {
                    what: "stream message",
                    len: self.buf.len() + 1,
                    max: self.max,
                });
            }
            self.buf.push(b);
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        out.push(std::mem::take(&mut self.buf));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The stream has ended: an error when it ended inside a message.
    pub fn finish(&self) -> Result<(), FleetError> {
        if self.poisoned {
            return Err(FleetError::Poisoned);
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FleetError::Truncated {
                len: self.buf.len(),
            })
        }
    }
}

/// A watch's answer, decoded as it arrives: [`MessageSplitter`] then
/// [`WatchResponse::decode`] for each message.
///
/// A message that does not decode (an error from etcd included) is returned as the error,
/// and the stream is refused from then on; the good messages of the same `push` are dropped
/// with it. Nothing is lost when the caller does what it must anyway: reopen the watch from
/// the last revision it applied, + 1.
#[derive(Debug, Clone, Default)]
pub struct WatchStream {
    splitter: MessageSplitter,
}

impl WatchStream {
    /// A stream with the bound [`MAX_BODY_BYTES`] per message.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream that refuses a message longer than `max` bytes.
    pub fn with_max_message(max: usize) -> Self {
        Self {
            splitter: MessageSplitter::with_max_message(max),
        }
    }

    /// Takes the next piece of the stream; returns the messages it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<WatchResponse>, FleetError> {
        let messages = self.splitter.push(chunk)?;
        let decoded: Result<Vec<_>, _> =
            messages.iter().map(|m| WatchResponse::decode(m)).collect();
        if decoded.is_err() {
            self.splitter.poisoned = true;
        }
        decoded
    }

    /// The stream has ended: an error when it ended inside a message.
    pub fn finish(&self) -> Result<(), FleetError> {
        self.splitter.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"a\xfe\xff\xff"), b"a\xff");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn put_encodes_base64_and_decimal() {
        let r = Put::new(b"k", b"v").with_lease(7).encode();
        assert_eq!(r.path, "/v3/kv/put");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["key"], "aw==");
        assert_eq!(v["value"], "dg==");
        assert_eq!(v["lease"], "7");
    }

    #[test]
    fn numbers_where_strings_belong_are_refused() {
        let e = RangeResponse::decode(br#"{"header":{"revision":2}}"#).unwrap_err();
        assert_eq!(
            e,
            FleetError::Invalid {
                path: "header.revision".into(),
                problem: Problem::NotDecimal
            }
        );
        for bad in ["+2", " 2", "2 ", "", "-", "1e3", "99999999999999999999"] {
            let body = format!(r#"{{"header":{{"revision":"{bad}"}}}}"#);
            assert!(RangeResponse::decode(body.as_bytes()).is_err(), "{bad}");
        }
        let e = RangeResponse::decode(br#"{"header":{"revision":"-1"}}"#).unwrap_err();
        assert!(matches!(
            e,
            FleetError::Invalid {
                problem: Problem::Negative,
                ..
            }
        ));
    }

    #[test]
    fn bad_base64_names_the_field() {
        let e = RangeResponse::decode(br#"{"header":{},"kvs":[{"key":"YQ=="},{"key":"!"}]}"#)
            .unwrap_err();
        assert_eq!(
            e,
            FleetError::Invalid {
                path: "kvs[1].key".into(),
                problem: Problem::NotBase64
            }
        );
    }

    #[test]
    fn duplicates_refused_unknown_ignored() {
        assert!(matches!(
            HeaderResponse::decode(br#"{"header":{},"header":{}}"#),
            Err(FleetError::Json(_))
        ));
        assert_eq!(
            HeaderResponse::decode(br#"{"header":{"revision":"3","x":[1,{}]},"new":null}"#)
                .unwrap()
                .header
                .revision,
            3
        );
        assert!(matches!(
            HeaderResponse::decode(b"{}"),
            Err(FleetError::Missing { .. })
        ));
    }

    #[test]
    fn errors_are_typed() {
        let unary = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(
            HeaderResponse::decode(unary).unwrap_err(),
            FleetError::Gateway {
                code: 5,
                message: "etcdserver: requested lease not found".into()
            }
        );
        let stream = br#"{"error":{"grpc_code":14,"http_code":503,"message":"unavailable","http_status":"Service Unavailable"}}"#;
        assert_eq!(
            WatchResponse::decode(stream).unwrap_err(),
            FleetError::Gateway {
                code: 14,
                message: "unavailable".into()
            }
        );
    }

    #[test]
    fn oversized_body_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            RangeResponse::decode(&body),
            Err(FleetError::TooLarge { .. })
        ));
    }

    #[test]
    fn splitter_bounds_and_poisons() {
        let mut s = MessageSplitter::with_max_message(8);
        assert_eq!(
            s.push(b" {\"a\":1}\n{").unwrap(),
            vec![b"{\"a\":1}".to_vec()]
        );
        assert!(matches!(
            s.push(b"\"bb\":\"}}}\""),
            Err(FleetError::TooLarge { .. })
        ));
        assert_eq!(s.push(b"{}"), Err(FleetError::Poisoned));
        let mut s = MessageSplitter::new();
        assert_eq!(s.push(b"x"), Err(FleetError::Garbage { byte: b'x' }));
        let mut s = MessageSplitter::new();
        assert_eq!(s.push(br#"{"a":"\"}"#).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(s.finish(), Err(FleetError::Truncated { len: 9 }));
        assert_eq!(s.push(b"\"}").unwrap(), vec![br#"{"a":"\"}"}"#.to_vec()]);
        assert_eq!(s.finish(), Ok(()));
    }

    #[test]
    fn watch_events_decode() {
        let m = br#"{"result":{"header":{"revision":"8"},"events":[{"kv":{"key":"cC9h","create_revision":"4","mod_revision":"4","version":"1","value":"MQ=="}},{"type":"DELETE","kv":{"key":"cC9h","mod_revision":"8"},"prev_kv":{"key":"cC9h","create_revision":"4","mod_revision":"6","version":"3","value":"MQ=="}}]}}"#;
        let w = WatchResponse::decode(m).unwrap();
        assert_eq!(w.events.len(), 2);
        assert_eq!(w.events[0].kind, EventKind::Put);
        assert_eq!(w.events[1].kind, EventKind::Delete);
        assert_eq!(w.events[1].kv.mod_revision, 8);
        assert_eq!(w.events[1].prev_kv.as_ref().unwrap().mod_revision, 6);
        let bad = br#"{"result":{"header":{},"events":[{"type":"MERGE","kv":{}}]}}"#;
        assert_eq!(
            WatchResponse::decode(bad).unwrap_err(),
            FleetError::Invalid {
                path: "result.events[0].type".into(),
                problem: Problem::UnknownName
            }
        );
    }
}
