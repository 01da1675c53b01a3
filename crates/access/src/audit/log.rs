//! A JSON-lines audit log: one object per line, appended and flushed before the event's
//! effect is released, capped, with repeated refusals summarised, and reopened for log
//! rotation. It implements the fail-closed contract of [`AuditSink`](super::AuditSink):
//! [`AuditLog::record`] returns an error when the line cannot be written, and the caller then
//! refuses what it was about to allow.
//!
//! What an attacker can put in a line is bounded here, so no call site can forget it
//! ([`AuditLog::record`] applies it to every event):
//! - every string of the line is capped at [`MAX_FIELD_BYTES`], cut on a character boundary
//!   and marked `…[+N bytes]` ([`cap_field`]); lists keep at most [`MAX_ITEMS`] entries,
//!   maps [`MAX_FIELDS`]; a line longer than [`MAX_LINE_BYTES`] even so keeps only its event
//!   name;
//! - repeated refusals from one client are summarised ([`Summariser`]): per (client IP, or
//!   IPv6 /64, with the private endpoint it came through; event; reason; the identity, only
//!   when a CA vouched for it), the first [`SUMMARY_FIRST_LINES`] lines of a
//!   [`SUMMARY_WINDOW`] are written, the rest counted, and the count written as one
//!   `audit.suppressed` line ([`Suppressed`]) when the window ends (at the next event, or on
//!   [`AuditLog::flush_summaries`]). Grants of access are never summarised, and when the
//!   summariser's table is full, lines are written, never dropped; one client holds at most
//!   [`SUMMARY_WINDOWS_PER_CLIENT`] windows, so a single client cannot fill it. A session's
//!   denied connections (`session.network`) are counted per user instead (every address they
//!   name is the session's choice): [`SUMMARY_NETWORK_FIRST_LINES`] a window, whatever the
//!   table holds. The refusals
//!   it recognises are ippin's events (see [`SummaryKey`]). A name the client chose (a login's
//!   user name, an SSH user name, an unverified key id) is never part of the key: varying it
//!   would otherwise open a window per attempt;
//! - the characters that JSON leaves raw but that change what a terminal shows (DEL, C1
//!   controls, bidirectional formatting, line separators) are written as `\u{XXXX}` text
//!   ([`neutral`]).
//!
//! Each line is `time` (RFC 3339, milliseconds), `cluster`, `event`, then the event's other
//! fields. The log file is created with mode 0600.
//!
//! ```
//! use ippin_access::audit::log::AuditLog;
//!
//! let log = AuditLog::memory("demo");
//! let event = serde_json::json!({"event": "access_denied", "user": "alice", "reason": "pinned_ip_mismatch", "observed": "192.0.2.7:0"});
//! log.record(std::time::SystemTime::UNIX_EPOCH, &event, None).unwrap();
//! assert!(log.memory_lines()[0].contains("\"event\":\"access_denied\""));
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Refusals of one kind from one client that were counted rather than written (the
/// `audit.suppressed` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "audit.suppressed")]
#[non_exhaustive]
pub struct Suppressed {
    /// The client: its IP (the trusted observed address's, or the TCP peer's; a native IPv6
    /// client's /64), `IP via ENDPOINT` through a cloud private endpoint, or `user:NAME` for a
    /// session's denied connections.
    pub peer: String,
    /// The event that was suppressed (`login_refused`, `ssh.auth.denied`, …).
    pub kind: String,
    /// Its reason code.
    pub reason: String,
    /// The user the suppressed refusals named, when a CA vouched for it; empty otherwise.
    pub user: String,
    /// The SSH key id they named, when the certificate's signature verified; empty otherwise.
    pub key_id: String,
    /// How many lines were not written.
    pub count: u64,
    /// The identities (`user`, or `key_id:` and the key id) that suppressed lines of a
    /// window without one named: a client that holds its share of windows is counted
    /// without the identity, and these keep which credentials it was refused with (at most
    /// [`SUMMARY_IDENTITIES`], sorted; `identities_more` counts the rest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// Identities of suppressed lines beyond those listed (each counted once per line).
    #[serde(skip_serializing_if = "is_zero")]
    pub identities_more: u64,
    /// For a session's denied connections (`session.network`): the destinations
    /// (`ADDR:PORT`, `[ADDR]:PORT` for IPv6) its suppressed lines named, at most
    /// [`SUMMARY_IDENTITIES`], sorted; `destinations_more` counts the lines beyond.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Suppressed lines whose destination is not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub destinations_more: u64,
    /// When the window began (RFC 3339).
    pub window_start: String,
    /// The window's length in seconds.
    pub window_secs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most identities an `audit.suppressed` line lists for a window counted without one.
pub const SUMMARY_IDENTITIES: usize = 16;

/// The audit line could not be written; the action it records must not happen.
#[derive(Debug, thiserror::Error)]
#[error("audit log {file}: cannot write: {source}")]
pub struct AuditError {
    /// The log file ("(memory)" for the in-memory sink).
    pub file: PathBuf,
    /// The operating-system error.
    pub source: std::io::Error,
}

/// `time`, `cluster`, `event`, then the event's other fields (alphabetically).
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    cluster: &'a str,
    event: serde_json::Value,
    #[serde(flatten)]
    fields: &'a serde_json::Value,
}

enum Sink {
    /// The log file, and whether a write to it failed part-way (a line cut short is left
    /// at its end: the next line starts on a new one).
    File(File, bool),
    Memory(Vec<String>),
}

struct Inner {
    sink: Sink,
    summary: Summariser,
}

/// A JSON-lines audit log (cheap to clone; clones share the file).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Inner>>,
    file: PathBuf,
    cluster: Arc<str>,
}

/// The longest string kept whole in an audit line (bytes); longer ones are cut.
pub const MAX_FIELD_BYTES: usize = 256;

/// The most entries kept of a list inside an event.
pub const MAX_ITEMS: usize = 16;

/// The most fields kept of a map inside an event (the events of this crate have at most
/// 12; the bound is for a map built from input).
pub const MAX_FIELDS: usize = 64;

/// The longest audit line (bytes, without the newline). Capping the fields keeps every
/// event of this crate far below it; a line that would still be longer keeps only `time`,
/// `cluster`, `event` and `truncated` (its length).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// `s`, or its first bytes up to [`MAX_FIELD_BYTES`] (cut on a character boundary) followed
/// by `…[+N bytes]`, N the number of bytes left out.
pub fn cap_field(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_FIELD_BYTES {
        return Cow::Borrowed(s);
    }
    let mut cut = MAX_FIELD_BYTES;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…[+{} bytes]", &s[..cut], s.len() - cut))
}

/// `s` with the characters that JSON leaves raw but that change what a terminal or log viewer
/// shows written as `\u{XXXX}` text: DEL and the C1 controls (U+007F to U+009F; a C1 CSI
/// starts terminal escapes as ESC `[` does), the bidirectional formatting characters (U+061C,
/// U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) and the line and paragraph separators
/// (U+2028, U+2029). JSON escapes the C0 controls itself.
pub fn neutral(s: &str) -> Cow<'_, str> {
    fn hidden(c: char) -> bool {
        matches!(c, '\u{7f}'..='\u{9f}' | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    }
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Caps every string (keys included), list and map of `v`, in place, after writing its hidden
/// characters as text ([`neutral`]).
fn cap_value(v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(c) = neutral(s) {
                *s = c;
            }
            if let Cow::Owned(c) = cap_field(s) {
                *s = c;
            }
        }
        Value::Array(items) => {
            if depth >= 4 {
                *v = Value::String(format!("…[{} items]", items.len()));
                return;
            }
            if items.len() > MAX_ITEMS {
                let more = items.len() - MAX_ITEMS;
                items.truncate(MAX_ITEMS);
                items.push(Value::String(format!("…[+{more} items]")));
            }
            for i in items.iter_mut() {
                cap_value(i, depth + 1);
            }
        }
        Value::Object(map) => {
            if depth >= 4 {
                *v = Value::String(format!("…[{} fields]", map.len()));
                return;
            }
            let more = map.len().saturating_sub(MAX_FIELDS);
            let old = std::mem::take(map);
            for (k, mut item) in old.into_iter().take(MAX_FIELDS) {
                cap_value(&mut item, depth + 1);
                map.insert(cap_field(&neutral(&k)).into_owned(), item);
            }
            if more > 0 {
                map.insert("…".into(), Value::String(format!("+{more} fields")));
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The audit line of `event` at `time`, capped (see the module docs), without newline.
/// Also returns the key the summariser counts it under, if it is a refusal.
///
/// # Errors
/// When `event` does not serialise.
pub fn line_text<E: Serialize + ?Sized>(
    time: &str,
    cluster: &str,
    event: &E,
    peer: Option<SocketAddr>,
) -> Result<(String, Option<SummaryKey>), serde_json::Error> {
    line_parts(time, cluster, event, peer).map(|(text, key, _)| (text, key))
}

/// [`line_text`], with the destination a denied `session.network` line names.
fn line_parts<E: Serialize + ?Sized>(
    time: &str,
    cluster: &str,
    event: &E,
    peer: Option<SocketAddr>,
) -> Result<(String, Option<SummaryKey>, Option<String>), serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    if let (Some(peer), serde_json::Value::Object(m)) = (peer, &mut value)
        && !m.contains_key("peer")
    {
        // Canonical, as every address of the line (a dual-stack listener's peer
        // `[::ffff:a.b.c.d]:p` is `a.b.c.d:p`), so a search for one address finds them all.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        m.insert("peer".into(), peer.to_string().into());
    }
    cap_value(&mut value, 0);
    let key = SummaryKey::of(&value);
    let destination = key
        .as_ref()
        .filter(|k| k.is_session_denial())
        .and_then(|_| destination_of(&value));
    let cluster = cap_field(cluster);
    let name = match &mut value {
        serde_json::Value::Object(m) => m.remove("event").unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    let text = serde_json::to_string(&Line {
        time: time.to_owned(),
        cluster: &cluster,
        event: name.clone(),
        fields: &value,
    })?;
    if text.len() <= MAX_LINE_BYTES {
        return Ok((text, key, destination));
    }
    let short = serde_json::to_string(&serde_json::json!({
        "time": time,
        "cluster": cluster,
        "event": name,
        "truncated": text.len(),
    }))?;
    Ok((short, key, destination))
}

// ---- the summariser ----------------------------------------------------------------------

/// The window over which refusals of one kind from one peer are counted.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// How many refusals of one kind from one peer are written per window.
pub const SUMMARY_FIRST_LINES: u32 = 5;

/// How many denied connections of one user's sessions (`session.network`) are written per
/// window: more than other refusals (a session's denials are what an operator reads to see
/// what it tried), still a bound (about 25 KB a minute per user).
pub const SUMMARY_NETWORK_FIRST_LINES: u32 = 60;

/// How many (peer, kind, reason) windows are tracked at once.
pub const SUMMARY_CAPACITY: usize = 4096;

/// What a refusal is counted under: peer IP, event, reason and the identity it was about
/// (each capped). The identity is part of the key so that a summary never hides *which*
/// credential was refused: an attacker who spends the first lines of a window on one stolen
/// certificate still leaves one line for every other one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SummaryKey {
    /// The client, as [`Suppressed::peer`] names it.
    pub peer: String,
    /// The event name.
    pub kind: String,
    /// The reason code.
    pub reason: String,
    /// The user the refusal names, when a CA vouched for it (the CN of a certificate TLS
    /// verified); empty otherwise: a name the client chose (a login's user name, an SSH
    /// user name) is never part of the key, or varying it would defeat the summary.
    pub user: String,
    /// The SSH certificate's key id, when the certificate's CA signature verified; empty
    /// otherwise.
    pub key_id: String,
}

impl SummaryKey {
    /// The key of a refusal line (already capped), `None` for anything else: grants of
    /// access, sessions and relays are never summarised. A session's denied connection
    /// (`session.network` with `action` 1, `T4002I`) is a refusal too, counted under its
    /// user alone and `denied`: a session (or a client opening `direct-tcpip` channels)
    /// that dials denied destinations in a loop writes [`SUMMARY_NETWORK_FIRST_LINES`] lines
    /// a minute and a count, not a line per attempt until the log's disk is full and every
    /// grant fails closed. An allowed one (`action` 0, observed) is a grant, always written.
    pub fn of(line: &serde_json::Value) -> Option<SummaryKey> {
        let event = line.get("event")?.as_str()?;
        let (inner, kind) = match event {
            "login_refused" | "renew_refused" | "access_denied" | "tls_refused"
            | "proxy_refused" | "forward_refused" => (line, event),
            "ssh" => {
                let ssh = line.get("ssh")?;
                let kind = ssh.get("event")?.as_str()?;
                match kind {
                    "ssh.auth.denied" | "ssh.proxy_refused" | "ssh.shed" => (ssh, kind),
                    NETWORK_EVENT => return network_denial_key(ssh),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let reason = inner.get("reason")?.as_str()?;
        // The client the line is about: a trusted observed address (port not 0: behind a
        // load balancer, the client it names, so that one client cannot fill the balancer's
        // window for everyone), else the TCP peer, else the observed address as written.
        let trusted_observed = inner
            .get("observed")
            .and_then(|v| v.as_str())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .filter(|a| a.port() != 0);
        let peer = match trusted_observed {
            // Through a cloud private endpoint the address is the consumer's own network's:
            // the same address behind another endpoint is another client.
            Some(a) => match inner.get("endpoint").and_then(|e| e.as_str()) {
                Some(endpoint) => format!("{} via {endpoint}", client_of(a.ip())),
                None => client_of(a.ip()),
            },
            None => {
                let addr = inner
                    .get("peer")
                    .or_else(|| line.get("peer"))
                    .or_else(|| inner.get("observed"))?
                    .as_str()?;
                addr.parse::<SocketAddr>()
                    .map_or_else(|_| addr.to_owned(), |a| client_of(a.ip()))
            }
        };
        let text = |k: &str| inner.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        // Only identities a CA vouched for: the user of a TLS-verified certificate, the key id
        // of an SSH certificate whose CA signature verified.
        let (user, key_id) = match kind {
            "access_denied" | "renew_refused" => (text("user"), ""),
            "ssh.auth.denied"
                if !matches!(
                    reason,
                    "not_a_certificate" | "untrusted_ca" | "bad_ca_signature"
                ) =>
            {
                ("", text("key_id"))
            }
            _ => ("", ""),
        };
        Some(SummaryKey {
            peer,
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            user: user.to_owned(),
            key_id: key_id.to_owned(),
        })
    }
}

/// The event of a session's connections (`T4002I`).
const NETWORK_EVENT: &str = "session.network";

impl SummaryKey {
    /// Whether this is a session's denied connection, counted per user (more lines a window,
    /// whatever the table holds: see [`SUMMARY_NETWORK_FIRST_LINES`]).
    fn is_session_denial(&self) -> bool {
        self.kind == NETWORK_EVENT
    }
}

/// The key of a `session.network` line that records a denial (`action` 1); `None` for an
/// observed (allowed) connection or a line without its user. Counted under the session's
/// user alone (peer `user:NAME`, so that each user holds windows of its own and no user's
/// flood folds another's into a shared window): every address the line names is the
/// session's choice (a kernel event's `src_addr` is the socket's own, which a process binds
/// to any address of the host), so none may open a window of its own. The destinations of
/// the suppressed lines are kept in the summary ([`Suppressed::destinations`]).
fn network_denial_key(ssh: &serde_json::Value) -> Option<SummaryKey> {
    if ssh.get("action")?.as_u64()? != 1 {
        return None;
    }
    // The session's user: authenticated by its certificate, so vouched for.
    let user = ssh.get("user")?.as_str()?;
    Some(SummaryKey {
        peer: format!("user:{user}"),
        kind: NETWORK_EVENT.to_owned(),
        reason: "denied".to_owned(),
        user: user.to_owned(),
        key_id: String::new(),
    })
}

/// The destination a `session.network` line names: `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
fn destination_of(line: &serde_json::Value) -> Option<String> {
    let ssh = line.get("ssh")?;
    let addr = ssh.get("dst_addr")?.as_str()?;
    let port = ssh.get("dst_port")?.as_u64()?;
    Some(if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    })
}

/// The client a summary counts under: the per-peer key of the lockout
/// ([`crate::lockout::peer_key`]): the IP, or for native IPv6 its /64 (one host commonly holds
/// a whole /64, and would otherwise open a window per address), but an address whose /64 holds
/// other clients (a translator's) alone.
fn client_of(ip: std::net::IpAddr) -> String {
    match crate::lockout::peer_key(ip) {
        std::net::IpAddr::V6(key) if key.segments()[4..] == [0, 0, 0, 0] => {
            format!("{key}/64")
        }
        key => key.to_string(),
    }
}

/// The most windows one client may hold; beyond it, its refusals are counted per (event,
/// reason) only, without the identity, so one client cannot fill the table.
pub const SUMMARY_WINDOWS_PER_CLIENT: usize = 32;

#[derive(Debug)]
struct Window {
    start: SystemTime,
    written: u32,
    suppressed: u64,
    /// For a window counted without the identity: those its suppressed lines named.
    identities: Named,
    /// The destinations its suppressed `session.network` lines named.
    destinations: Named,
}

/// Names kept for a summary: the first [`SUMMARY_IDENTITIES`] distinct ones, and a count of
/// the lines that named another.
#[derive(Debug, Default)]
struct Named {
    names: std::collections::BTreeSet<String>,
    more: u64,
}

impl Named {
    fn note(&mut self, name: Option<String>) {
        let Some(name) = name else { return };
        if self.names.contains(&name) {
            return;
        }
        if self.names.len() < SUMMARY_IDENTITIES {
            self.names.insert(name);
        } else {
            self.more += 1;
        }
    }
}

/// Whether a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admit {
    /// Write it.
    Write,
    /// Count it; it is reported in the window's `audit.suppressed` line.
    Suppress,
}

/// Counts refusals per [`SummaryKey`] and window; pure (time is a parameter), bounded (at
/// most `capacity` windows; when full, new keys are written, never dropped; a session's
/// denials, one window per user, are counted beyond it: the users bound them).
#[derive(Debug)]
pub struct Summariser {
    window: Duration,
    first: u32,
    capacity: usize,
    windows: HashMap<SummaryKey, Window>,
    /// Keys in the order their windows began (so ended windows are found in O(1)).
    order: VecDeque<(SystemTime, SummaryKey)>,
    /// How many windows each client holds.
    per_client: HashMap<String, usize>,
}

impl Default for Summariser {
    fn default() -> Summariser {
        Summariser::new(SUMMARY_WINDOW, SUMMARY_FIRST_LINES, SUMMARY_CAPACITY)
    }
}

impl Summariser {
    /// Writes the first `first` lines per key per `window` (0: every line, nothing is
    /// summarised); tracks at most `capacity` keys.
    pub fn new(window: Duration, first: u32, capacity: usize) -> Summariser {
        Summariser {
            window,
            first,
            capacity,
            windows: HashMap::new(),
            order: VecDeque::new(),
            per_client: HashMap::new(),
        }
    }

    /// The windows that ended by `now` (all of them when `all`), removed, as
    /// `audit.suppressed` events for those that suppressed something.
    pub fn ended(&mut self, now: SystemTime, all: bool) -> Vec<Suppressed> {
        let mut out = Vec::new();
        while let Some((start, _)) = self.order.front() {
            let over = now.duration_since(*start).unwrap_or_default() >= self.window;
            if !all && !over {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            if let Some(n) = self.per_client.get_mut(&key.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_client.remove(&key.peer);
                }
            }
            if let Some(w) = self.windows.remove(&key)
                && w.suppressed > 0
            {
                out.push(Suppressed {
                    peer: key.peer,
                    kind: key.kind,
                    reason: key.reason,
                    user: key.user,
                    key_id: key.key_id,
                    count: w.suppressed,
                    identities: w.identities.names.into_iter().collect(),
                    identities_more: w.identities.more,
                    destinations: w.destinations.names.into_iter().collect(),
                    destinations_more: w.destinations.more,
                    window_start: humantime::format_rfc3339_millis(w.start).to_string(),
                    window_secs: self.window.as_secs(),
                });
            }
        }
        out
    }

    /// Whether a refusal under `key` at `now` is written (call [`Summariser::ended`] first).
    pub fn admit(&mut self, now: SystemTime, key: SummaryKey) -> Admit {
        self.admit_noting(now, key, None)
    }

    /// [`Summariser::admit`], with what the line names beyond its key (a denied
    /// connection's destination), kept (bounded) in the window's summary when the line is
    /// suppressed.
    pub fn admit_noting(
        &mut self,
        now: SystemTime,
        key: SummaryKey,
        destination: Option<String>,
    ) -> Admit {
        // A client that holds its share of windows is counted without the identity, which
        // the window keeps (bounded) for its suppressed lines.
        let (key, folded) = if !self.windows.contains_key(&key)
            && self.per_client.get(&key.peer).copied().unwrap_or(0) >= SUMMARY_WINDOWS_PER_CLIENT
        {
            let identity = if !key.user.is_empty() {
                Some(key.user.clone())
            } else if !key.key_id.is_empty() {
                Some(format!("key_id:{}", key.key_id))
            } else {
                None
            };
            let key = SummaryKey {
                user: String::new(),
                key_id: String::new(),
                ..key
            };
            (key, identity)
        } else {
            (key, None)
        };
        if let Some(w) = self.windows.get_mut(&key) {
            let first = if key.is_session_denial() && self.first > 0 {
                self.first.max(SUMMARY_NETWORK_FIRST_LINES)
            } else {
                self.first
            };
            if w.written < first {
                w.written += 1;
                return Admit::Write;
            }
            w.suppressed += 1;
            w.destinations.note(destination);
            w.identities.note(folded);
            return Admit::Suppress;
        }
        // A session's denials are counted whatever the table holds (one window per user with
        // denials in the minute: the users bound them), so that other refusals filling it
        // cannot bring back a line per denied connection.
        let per_user = key.is_session_denial();
        if self.first == 0 || (self.windows.len() >= self.capacity && !per_user) {
            // Full: write it (never drop a line we cannot count).
            return Admit::Write;
        }
        self.order.push_back((now, key.clone()));
        *self.per_client.entry(key.peer.clone()).or_default() += 1;
        self.windows.insert(
            key,
            Window {
                start: now,
                written: 1,
                suppressed: 0,
                identities: Named::default(),
                destinations: Named::default(),
            },
        );
        Admit::Write
    }

    /// How many windows are tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("file", &self.file)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creates, appends to) the audit log at `path`, mode 0600.
    pub fn open(path: &Path, cluster: &str) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, cluster, Summariser::default())
    }

    /// [`AuditLog::open`] with its own summariser settings.
    pub fn open_with(
        path: &Path,
        cluster: &str,
        summary: Summariser,
    ) -> Result<AuditLog, AuditError> {
        let file = open_log(path)?;
        let torn = ends_torn(&file);
        Ok(AuditLog {
            inner: Arc::new(Mutex::new(Inner {
                sink: Sink::File(file, torn),
                summary,
            })),
            file: path.to_path_buf(),
            cluster: cluster.into(),
        })
    }

    /// An in-memory sink (tests, and the demo's summary).
    pub fn memory(cluster: &str) -> AuditLog {
        AuditLog {
            inner: Arc::new(Mutex::new(Inner {
                sink: Sink::Memory(Vec::new()),
                summary: Summariser::default(),
            })),
            file: PathBuf::from("(memory)"),
            cluster: cluster.into(),
        }
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            file: self.file.clone(),
            source,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, AuditError> {
        self.inner
            .lock()
            .map_err(|_| self.error(std::io::Error::other("audit lock poisoned")))
    }

    /// Appends one event at `now`, capped (module docs), naming the TCP `peer` of the
    /// connection it is about (unless the event names one itself). The line is written with
    /// one `write_all` and flushed; an error means the action must be refused. A refusal that
    /// the summariser counts instead is not written (`Ok`); the `audit.suppressed` lines of
    /// windows that ended are written first.
    ///
    /// # Errors
    /// [`AuditError`] when the line cannot be serialised or written.
    pub fn record<E: Serialize + ?Sized>(
        &self,
        now: SystemTime,
        event: &E,
        peer: Option<SocketAddr>,
    ) -> Result<(), AuditError> {
        let time = humantime::format_rfc3339_millis(now).to_string();
        let (text, key, destination) = line_parts(&time, &self.cluster, event, peer)
            .map_err(|e| self.error(std::io::Error::other(e)))?;
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        self.write_ended(inner, now, false)?;
        if let Some(key) = key
            && inner.summary.admit_noting(now, key, destination) == Admit::Suppress
        {
            return Ok(());
        }
        self.write(&mut inner.sink, text)
    }

    /// Writes the `audit.suppressed` lines of the windows that ended by `now` (of every
    /// window when `all`: at shutdown).
    pub fn flush_summaries(&self, now: SystemTime, all: bool) -> Result<(), AuditError> {
        let mut inner = self.lock()?;
        self.write_ended(&mut inner, now, all)
    }

    fn write_ended(&self, inner: &mut Inner, now: SystemTime, all: bool) -> Result<(), AuditError> {
        let time = humantime::format_rfc3339_millis(now).to_string();
        let mut result = Ok(());
        for summary in inner.summary.ended(now, all) {
            let (text, _) = line_text(&time, &self.cluster, &summary, None)
                .map_err(|e| self.error(std::io::Error::other(e)))?;
            if let Err(e) = self.write(&mut inner.sink, text.clone()) {
                // Not lost silently: the count goes to the error log with the failure.
                tracing::error!("{e}; the summary line was: {text}");
                result = Err(e);
            }
        }
        result
    }

    fn write(&self, sink: &mut Sink, mut text: String) -> Result<(), AuditError> {
        tracing::info!(target: "ippin_access::audit", "{text}");
        text.push('\n');
        match sink {
            Sink::File(f, torn) => {
                // After a failed write (a full disk), part of a line may be in the file: the
                // next one starts on a line of its own, never glued to the fragment.
                if *torn {
                    text.insert(0, '\n');
                }
                match f.write_all(text.as_bytes()).and_then(|()| f.flush()) {
                    Ok(()) => {
                        *torn = false;
                        Ok(())
                    }
                    Err(source) => {
                        *torn = true;
                        Err(self.error(source))
                    }
                }
            }
            Sink::Memory(lines) => {
                lines.push(text);
                Ok(())
            }
        }
    }

    /// Reopens the log at its configured path (creating it, mode 0600), for log rotation:
    /// after logrotate renames the file, the next line goes to a new file at the path. The
    /// swap happens under the lock that every write holds, so no line is split or lost.
    /// When the path cannot be opened, the old file is kept and the error returned.
    pub fn reopen(&self) -> Result<(), AuditError> {
        let mut inner = self.lock()?;
        if let Sink::File(f, torn) = &mut inner.sink {
            *f = open_log(&self.file)?;
            *torn = ends_torn(f);
        }
        Ok(())
    }

    /// The lines recorded by an in-memory sink (empty for a file sink).
    pub fn memory_lines(&self) -> Vec<String> {
        match self.inner.lock().as_deref() {
            Ok(Inner {
                sink: Sink::Memory(lines),
                ..
            }) => lines.clone(),
            _ => Vec::new(),
        }
    }
}

/// Whether the regular file `file` (the log, opened for appending) ends inside a line (a
/// write cut short by a full disk, before a restart or a reopen): the next line then starts
/// on a new one. Read through a read-only descriptor of the same open file
/// (`/proc/self/fd/N`, so neither the path nor what it names now matters), never through
/// the log's own: a FIFO opened for reading would be its own reader, and a write to it
/// could block. Not a regular file, or an end that cannot be read: not torn.
fn ends_torn(file: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if !meta.is_file() || meta.len() == 0 {
            return false;
        }
        let Ok(reader) = File::open(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
            return false;
        };
        let mut last = [0u8; 1];
        matches!(reader.read_at(&mut last, meta.len() - 1), Ok(1) if last != *b"\n")
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}

/// Opens (creates 0600) the log for appending, and refuses a log file or FIFO that users
/// other than root and this process's may change: group or others have write permission, or
/// another user owns it. Whoever can rewrite the log can take their own refusals out of it.
/// Checked on the descriptor opened (`fstat`), at every open and reopen. The last component
/// is never followed (`O_NOFOLLOW`: a symlink planted at the log's name before a reopen
/// would have the server append to any file), a file with other hard links is refused (one
/// planted to another file likewise), and so is a folder others may write without the sticky
/// bit, or that another user owns (they could swap the log). The open itself never waits:
/// a FIFO planted at the name (in a sticky folder such as `/tmp`, after a rotation) with no
/// reader fails at once (`O_NONBLOCK`, cleared once the file is taken), where a plain open
/// would block every audited action behind the log's lock.
fn open_log(path: &Path) -> Result<File, AuditError> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    let err = |source| AuditError {
        file: path.to_path_buf(),
        source,
    };
    let refuse = |what: String| {
        err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            what,
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let meta = std::fs::metadata(folder).map_err(err)?;
        let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
        let sticky = mode & 0o1000 != 0;
        if (mode & 0o022 != 0 && !sticky)
            || (owner != 0 && owner != rustix::process::geteuid().as_raw())
        {
            return Err(refuse(format!(
                "its folder {} (mode {mode:04o}, owner uid {owner}) may be changed by other \
                 users, who could replace the log: refused; make it root's or this user's and \
                 `chmod go-w` it",
                folder.display()
            )));
        }
    }
    let file = opts.open(path).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            refuse("it is a symbolic link: refused; name the file itself".into())
        } else {
            err(e)
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = file.metadata().map_err(err)?;
        let (mode, owner) = (meta.mode() & 0o7777, meta.uid());
        // A character device (`/dev/stderr` on a terminal, `/dev/null`) holds no lines to
        // rewrite; files and FIFOs do, or carry them to a reader.
        let holds_lines = !meta.file_type().is_char_device();
        if holds_lines && meta.file_type().is_file() && meta.nlink() > 1 {
            return Err(refuse(format!(
                "it has {} hard links: refused; the log must be a file of its own",
                meta.nlink()
            )));
        }
        if holds_lines
            && (mode & 0o022 != 0 || (owner != 0 && owner != rustix::process::geteuid().as_raw()))
        {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} (mode {mode:04o}, owner uid {owner}): refused; make it root's or this \
                     user's and `chmod go-w` it",
                    if mode & 0o022 != 0 {
                        "writable by group or others"
                    } else {
                        "owned by another user"
                    }
                ),
            )));
        }
        // Taken: writes block again as for any log (a FIFO's reader sets the pace).
        let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| err(e.into()))?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| err(e.into()))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `audit.suppressed` line of `lines` that `pick` takes, parsed.
    fn summary_line(lines: &[String], pick: impl Fn(&String) -> bool) -> serde_json::Value {
        let line = lines
            .iter()
            .find(|l| l.contains("audit.suppressed") && pick(l))
            .expect("a summary line");
        serde_json::from_str(line).unwrap()
    }

    fn refusal(user: &str, peer: &str) -> serde_json::Value {
        serde_json::json!({"event": "access_denied", "user": user, "observed": peer,
            "reason": "pinned_ip_mismatch"})
    }

    /// The peer a line names is canonical; summaries count a translator's clients apart and
    /// a native IPv6 /64 together.
    #[test]
    fn peers_are_canonical_and_translated_clients_stand_alone() {
        let peer: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
        let event = serde_json::json!({"event": "x"});
        let (text, _) = line_text("t", "c", &event, Some(peer)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["peer"], "192.0.2.7:5000");
        assert_eq!(client_of("2001:db8::1".parse().unwrap()), "2001:db8::/64");
        assert_eq!(client_of("2001:db8::".parse().unwrap()), "2001:db8::/64");
        assert_eq!(client_of("64:ff9b::c000:207".parse().unwrap()), "192.0.2.7");
        assert_eq!(client_of("fe80::1".parse().unwrap()), "fe80::/64");
        assert_ne!(
            client_of("::ffff:0:c000:207".parse().unwrap()),
            client_of("::ffff:0:c000:208".parse().unwrap())
        );
    }

    /// A FIFO with no reader at the log's name (planted after a rotation in a sticky
    /// folder) fails the open at once instead of blocking it, and every audited action
    /// behind the log's lock with it; an operator's FIFO with a reader is taken, and written
    /// in blocking mode.
    #[test]
    fn a_fifo_without_a_reader_fails_the_open_at_once() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let made = std::process::Command::new("mkfifo")
            .arg("-m600")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_log(&p).map(|_| ()));
        });
        let opened = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the open of a FIFO without a reader blocked");
        assert!(opened.is_err(), "{opened:?}");

        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
            .unwrap();
        let file = open_log(&path).unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK), "{flags:?}");
    }

    /// A log others may write is refused, at open and at reopen: its lines could be
    /// rewritten by the users they record.
    #[test]
    fn a_log_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").unwrap();
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = open_log(&path).unwrap_err();
            assert!(e.to_string().contains("writable by group or others"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(open_log(&path).is_ok(), "read by others is fine");
        // Owned by another user (uid 65534), mode 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = open_log(&path).unwrap_err();
        assert!(e.to_string().contains("owned by another user"), "{e}");
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        assert!(open_log(&path).is_ok());

        // A symlink at the log's name (to a root-owned 0644 file, say): never followed.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep\n").unwrap();
        let link = dir.path().join("linked.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_log(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep\n");
        // A hard link to another file.
        let hard = dir.path().join("hard.log");
        std::fs::hard_link(&target, &hard).unwrap();
        let e = open_log(&hard).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");

        // A folder others may write (no sticky bit), or another user's.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open_log(&open.join("audit.log")).unwrap_err();
        assert!(e.to_string().contains("may be changed by other"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            open_log(&open.join("audit.log")).is_ok(),
            "sticky, like /tmp"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&open, Some(65534), None).unwrap();
        let e = open_log(&open.join("audit2.log")).unwrap_err();
        assert!(e.to_string().contains("may be changed by other"), "{e}");
    }

    #[test]
    fn a_file_log_is_0600_one_line_per_event_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, "c").unwrap();
        let t = SystemTime::UNIX_EPOCH;
        log.record(
            t,
            &refusal("alice", "192.0.2.1:5"),
            Some("10.0.0.1:9".parse().unwrap()),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.reopen().unwrap();
        log.record(t, &refusal("bob", "192.0.2.2:5"), None).unwrap();
        let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!((old.lines().count(), new.lines().count()), (1, 1));
        let first: serde_json::Value = serde_json::from_str(old.trim()).unwrap();
        assert_eq!(first["event"], "access_denied");
        assert_eq!(first["cluster"], "c");
        assert_eq!(first["peer"], "10.0.0.1:9");
        assert!(new.contains("\"user\":\"bob\""));
    }

    #[test]
    fn a_write_failure_is_an_error() {
        let log = AuditLog::open(Path::new("/dev/full"), "c").unwrap();
        let err = log
            .record(SystemTime::UNIX_EPOCH, &refusal("a", "192.0.2.1:5"), None)
            .unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    /// A write that failed part-way leaves a fragment at the end of the file: the next line
    /// starts on a line of its own, whole and readable, never glued to it.
    #[test]
    fn the_line_after_a_torn_write_stands_alone() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, "c").unwrap();
        let t = SystemTime::UNIX_EPOCH;
        log.record(t, &refusal("a", "192.0.2.1:5"), None).unwrap();
        // What a full disk leaves: part of a line, and the sink told the write failed.
        {
            let mut inner = log.inner.lock().unwrap();
            let Sink::File(f, torn) = &mut inner.sink else {
                panic!("a file sink");
            };
            f.write_all(br#"{"time":"1970-01-01T00:00:00.000Z","clu"#)
                .unwrap();
            *torn = true;
        }
        log.record(t, &refusal("b", "192.0.2.2:5"), None).unwrap();
        log.record(t, &refusal("c", "192.0.2.3:5"), None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        for (line, user) in [(lines[2], "b"), (lines[3], "c")] {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["user"], user, "{line}");
        }
        // The same after a restart (a new log on the same file) or a reopen: the fragment
        // is found at the file's end.
        for reopen in [false, true] {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(br#"{"time":"1970"#)
                .unwrap();
            let log = if reopen {
                log.reopen().unwrap();
                log.clone()
            } else {
                AuditLog::open(&path, "c").unwrap()
            };
            log.record(t, &refusal("d", "192.0.2.4:5"), None).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let last = text.lines().last().unwrap();
            let v: serde_json::Value = serde_json::from_str(last).unwrap();
            assert_eq!(v["user"], "d", "reopen {reopen}: {text}");
        }
    }

    #[test]
    fn strings_are_neutral_and_capped() {
        assert_eq!(neutral("plain"), "plain");
        assert_eq!(neutral("a\u{9b}b\u{202e}"), "a\\u{009b}b\\u{202e}");
        let long = "é".repeat(200);
        let capped = cap_field(&long);
        assert!(capped.len() < long.len());
        assert!(capped.ends_with("bytes]"), "{capped}");
    }

    #[test]
    fn refusals_are_summarised_per_client_and_verified_identity() {
        let log = AuditLog::memory("c");
        let t = SystemTime::UNIX_EPOCH;
        for _ in 0..20 {
            log.record(t, &refusal("alice", "192.0.2.1:5"), None)
                .unwrap();
        }
        // Another verified identity from the same client: its own window.
        log.record(t, &refusal("carol", "192.0.2.1:5"), None)
            .unwrap();
        log.flush_summaries(t + Duration::from_secs(61), false)
            .unwrap();
        let lines = log.memory_lines();
        let written = lines
            .iter()
            .filter(|l| {
                l.contains("\"event\":\"access_denied\"") && l.contains("\"user\":\"alice\"")
            })
            .count();
        assert_eq!(written, SUMMARY_FIRST_LINES as usize);
        assert!(lines.iter().any(|l| l.contains("\"user\":\"carol\"")));
        let summary = summary_line(&lines, |_| true);
        assert_eq!(summary["count"], 20 - u64::from(SUMMARY_FIRST_LINES));
        assert_eq!(summary["user"], "alice");
        assert_eq!(summary["peer"], "192.0.2.1");
    }

    /// Each user's session denials have a window of their own: 40 other users' denials do not
    /// fold a victim's into a shared window, and a table full of other refusals does not
    /// bring back a line per denial.
    #[test]
    fn each_users_session_denials_are_counted_apart_whatever_the_table_holds() {
        let network = |user: &str| SummaryKey {
            peer: format!("user:{user}"),
            kind: "session.network".into(),
            reason: "denied".into(),
            user: user.into(),
            key_id: String::new(),
        };
        let t = SystemTime::UNIX_EPOCH;
        let mut s = Summariser::new(SUMMARY_WINDOW, SUMMARY_FIRST_LINES, 64);
        // The table filled with other refusals from many clients.
        for i in 0..64 {
            let key = SummaryKey {
                peer: format!("192.0.2.{i}"),
                kind: "login_refused".into(),
                reason: "bad_credentials".into(),
                user: String::new(),
                key_id: String::new(),
            };
            assert_eq!(s.admit(t, key), Admit::Write);
        }
        for i in 0..40 {
            for _ in 0..100 {
                let _ = s.admit_noting(t, network(&format!("u{i}")), Some("10.0.0.1:1".into()));
            }
        }
        let written = (0..1000)
            .filter(|_| s.admit(t, network("victim")) == Admit::Write)
            .count();
        assert_eq!(written, SUMMARY_NETWORK_FIRST_LINES as usize);
        let ended = s.ended(t + SUMMARY_WINDOW, true);
        let victim = ended.iter().find(|e| e.user == "victim").unwrap();
        assert_eq!(victim.count, 1000 - u64::from(SUMMARY_NETWORK_FIRST_LINES));
    }

    /// Through a cloud private endpoint the address is the consumer's own: a client behind
    /// another endpoint with the same address is counted apart.
    #[test]
    fn clients_behind_two_endpoints_with_one_address_are_counted_apart() {
        let log = AuditLog::memory("c");
        let t = SystemTime::UNIX_EPOCH;
        let refused = |endpoint: &str| {
            serde_json::json!({"event": "login_refused", "user": "bob",
                "observed": "10.0.0.5:4000", "endpoint": endpoint, "reason": "bad_credentials"})
        };
        for _ in 0..20 {
            log.record(t, &refused("vpce-a"), None).unwrap();
        }
        log.record(t, &refused("vpce-b"), None).unwrap();
        let lines = log.memory_lines();
        assert_eq!(lines.iter().filter(|l| l.contains("vpce-a")).count(), 5);
        assert_eq!(lines.iter().filter(|l| l.contains("vpce-b")).count(), 1);
    }

    /// A client that holds its share of windows (junk reasons) is counted without the
    /// identity from then on, but the window's summary names the identities it suppressed:
    /// a stolen certificate's refusals cannot be hidden behind the client's own.
    #[test]
    fn a_client_out_of_windows_still_has_its_suppressed_identities_named() {
        let log = AuditLog::memory("c");
        let t = SystemTime::UNIX_EPOCH;
        let denied = |user: &str, reason: &str| {
            serde_json::json!({"event": "access_denied", "user": user,
                "observed": "192.0.2.1:5", "reason": reason})
        };
        for i in 0..SUMMARY_WINDOWS_PER_CLIENT {
            log.record(t, &denied("mallory", &format!("junk_{i}")), None)
                .unwrap();
        }
        // The anonymous window's first lines spent on mallory, then alice's and bob's
        // stolen certificates, and more identities than a summary lists.
        for _ in 0..SUMMARY_FIRST_LINES {
            log.record(t, &denied("mallory", "pinned_ip_mismatch"), None)
                .unwrap();
        }
        for user in ["alice", "bob", "alice"] {
            log.record(t, &denied(user, "pinned_ip_mismatch"), None)
                .unwrap();
        }
        for i in 0..20 {
            log.record(t, &denied(&format!("u{i:02}"), "pinned_ip_mismatch"), None)
                .unwrap();
        }
        log.flush_summaries(t + Duration::from_secs(61), false)
            .unwrap();
        let lines = log.memory_lines();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("\"event\":\"access_denied\"") && l.contains("alice"))
        );
        let summary = summary_line(&lines, |l| l.contains("pinned_ip_mismatch"));
        assert_eq!(summary["user"], "");
        assert_eq!(summary["count"], 23);
        let named: Vec<&str> = summary["identities"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(named.len(), SUMMARY_IDENTITIES);
        assert!(
            named.contains(&"alice") && named.contains(&"bob"),
            "{named:?}"
        );
        assert_eq!(summary["identities_more"], 22 - SUMMARY_IDENTITIES as u64);
    }

    /// A session's denied connections (`session.network`, action 1) in a loop, each from a
    /// socket address of its choosing: sixty lines a window per user, then a count naming
    /// the first destinations suppressed; another user's own window; an allowed (observed)
    /// connection is a grant, every one written.
    #[test]
    fn a_sessions_denied_connections_are_summarised_and_its_allowed_ones_are_not() {
        let log = AuditLog::memory("c");
        let t = SystemTime::UNIX_EPOCH;
        let network = |user: &str, action: u8, port: u16| {
            serde_json::json!({
                "event": "ssh",
                "ssh": {
                    "code": "T4002I", "event": "session.network", "user": user,
                    "login": "dev", "sid": "s1",
                    // The socket's own address, which the session picks: a new one per try.
                    "src_addr": format!("127.0.{}.{}", port / 256, port % 256),
                    "dst_addr": "10.255.0.1", "dst_port": port, "version": 4,
                    "operation": 0, "action": action,
                }
            })
        };
        for port in 1..=1000 {
            log.record(t, &network("alice", 1, port), None).unwrap();
        }
        log.record(t, &network("bob", 1, 22), None).unwrap();
        for port in 1..=20 {
            log.record(t, &network("alice", 0, port), None).unwrap();
        }
        log.flush_summaries(t + Duration::from_secs(61), false)
            .unwrap();
        let lines = log.memory_lines();
        let count = |needle: &[&str]| {
            lines
                .iter()
                .filter(|l| needle.iter().all(|n| l.contains(n)))
                .count()
        };
        assert_eq!(
            count(&["\"action\":1", "\"user\":\"alice\""]),
            SUMMARY_NETWORK_FIRST_LINES as usize
        );
        assert_eq!(count(&["\"action\":1", "\"user\":\"bob\""]), 1);
        assert_eq!(count(&["\"action\":0"]), 20);
        let summary = summary_line(&lines, |_| true);
        assert_eq!(
            summary["count"],
            1000 - u64::from(SUMMARY_NETWORK_FIRST_LINES)
        );
        assert_eq!(summary["user"], "alice");
        assert_eq!(summary["peer"], "user:alice");
        // The first destinations suppressed are named, the rest counted.
        let named = summary["destinations"].as_array().unwrap();
        assert_eq!(named.len(), SUMMARY_IDENTITIES);
        assert!(
            named
                .iter()
                .all(|d| d.as_str().unwrap().starts_with("10.255.0.1:"))
        );
        assert_eq!(
            summary["destinations_more"],
            1000 - u64::from(SUMMARY_NETWORK_FIRST_LINES) - SUMMARY_IDENTITIES as u64
        );
    }
}
