//! The audit log: one JSON object per line, appended and flushed before the
//! event's effect is released.
//!
//! Fail closed: [`Audit::record`] returns an error when the line cannot be
//! written, and the callers then refuse what they were about to allow (no
//! certificate is returned, no access is served). A security tool that
//! cannot say what it did must not do it.
//!
//! What an attacker can put in a line is bounded, here and nowhere else, so no call site
//! can forget it ([`Audit::record`] applies it to every event):
//! - every string of the line is capped at [`MAX_FIELD_BYTES`], cut on a character boundary
//!   and marked `…[+N bytes]` ([`cap_field`]); lists keep at most [`MAX_ITEMS`] entries,
//!   maps [`MAX_FIELDS`]; a line longer than [`MAX_LINE_BYTES`] even so keeps only its event name;
//! - repeated refusals from one peer are summarised ([`Summariser`]): per (peer IP, event,
//!   reason), the first [`SUMMARY_FIRST_LINES`] lines of a [`SUMMARY_WINDOW`] are written,
//!   the rest counted, and the count written as one `audit.suppressed` line when the window
//!   ends (at the next event, or on [`Audit::flush_summaries`]). Grants of access are never
//!   summarised, and when the summariser's table is full, lines are written, never dropped.
//!
//! The log is reopened at its configured path by [`Audit::reopen`] (`ippin serve` calls it
//! on `SIGHUP`), between two lines, so logrotate's rename + HUP loses and splits nothing.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ippin_policy::ObservedAddr;
use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// Certificates were issued at login.
    LoginIssued {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Whether it was trusted.
        trusted: bool,
        /// The pinned IP, if any.
        pinned: Option<String>,
        /// Certificate expiry (RFC 3339).
        expires: String,
    },
    /// A login was refused.
    LoginRefused {
        /// The user named in the request ("" if none could be read).
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Reason code.
        reason: String,
    },
    /// Certificates were renewed on the `tls` listener.
    RenewIssued {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The pinned IP carried over, if any.
        pinned: Option<String>,
        /// Certificate expiry (RFC 3339).
        expires: String,
    },
    /// A renewal was refused.
    RenewRefused {
        /// The user.
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// Reason code.
        reason: String,
    },
    /// The TLS handshake failed or timed out (for the `tls` listener: no
    /// client certificate, or one that does not chain to the CA).
    TlsRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// `tls_handshake_failed`, `tls_handshake_timeout` or `tls_handshake_shed`
        /// (the handshake stage was full and this was its oldest connection).
        reason: String,
        /// rustls's description.
        detail: String,
    },
    /// A user name got locked, or a client address throttled, by failed
    /// logins (`crate::lockout`); each refused attempt is a `login_refused`.
    LoginLocked {
        /// The user name of the failure that locked (any name: unknown names
        /// lock too).
        user: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// `user_locked` (the name) or `peer_throttled` (the address).
        reason: String,
        /// The failures that lock.
        failures: u32,
        /// End of the lock (RFC 3339).
        until: String,
    },
    /// A login connection was closed at once: its client address holds
    /// `login_limits.max_connections_per_peer` connections already.
    ConnectionRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// The observed client address ("" when refused before the PROXY stage).
        observed: String,
        /// `too_many_connections`.
        reason: String,
        /// The limit.
        limit: usize,
    },
    /// A connection was refused before TLS, at the PROXY stage.
    ProxyRefused {
        /// The listener kind.
        listener: String,
        /// The TCP peer.
        peer: String,
        /// Reason code from the PROXY layer.
        reason: String,
    },
    /// A `forward` listener relays a connection to its upstream behind a
    /// signed PROXY v2 header (docs/propagation.md).
    Forwarded {
        /// The TCP peer.
        peer: String,
        /// The observed client address the header vouches for.
        observed: String,
        /// How the front observed it.
        provenance: String,
        /// The upstream it connected to.
        upstream: String,
        /// The audience signed for.
        audience: String,
    },
    /// A `forward` listener did not forward (untrusted client address,
    /// upstream unreachable, signing failed).
    ForwardRefused {
        /// The TCP peer.
        peer: String,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The configured upstream.
        upstream: String,
        /// Reason code.
        reason: String,
        /// What happened.
        detail: String,
    },
    /// A relayed connection ended.
    ForwardClosed {
        /// The observed client address.
        observed: String,
        /// The upstream.
        upstream: String,
        /// Bytes from the client to the upstream.
        bytes_up: u64,
        /// Bytes from the upstream to the client.
        bytes_down: u64,
    },
    /// An event of an `ssh` listener, whole under `ssh` (its own `event` names it:
    /// `ssh.auth.allowed`, `ssh.auth.denied`, `ssh.exec`, `session.network`,
    /// `ssh.proxy_refused`; see docs/ssh.md).
    Ssh {
        /// The SSH service's event.
        ssh: serde_json::Value,
    },
    /// Refusals of one kind from one peer that were counted rather than written
    /// ([`Summariser`]).
    #[serde(rename = "audit.suppressed")]
    Suppressed {
        /// The peer's IP (the observed address's, or the TCP peer's).
        peer: String,
        /// The event that was suppressed (`login_refused`, `ssh.auth.denied`, …).
        kind: String,
        /// Its reason code.
        reason: String,
        /// The user (and SSH key id) the suppressed refusals named; empty when none.
        user: String,
        /// How many lines were not written.
        count: u64,
        /// When the window began (RFC 3339).
        window_start: String,
        /// The window's length in seconds.
        window_secs: u64,
    },
    /// An access decision on the `tls` listener (`access_allowed`,
    /// `access_denied`): `ippin-access`'s event, with its own `event` name.
    #[serde(untagged)]
    Tls(ippin_access::tls::TlsEvent),
}

impl AuditEvent {
    /// Formats `observed` as `ip:port` (`[v6]:port`), port 0 when untrusted.
    pub fn addr(observed: &ObservedAddr) -> String {
        observed.socket_addr().to_string()
    }

    /// Formats a TCP peer.
    pub fn peer(peer: SocketAddr) -> String {
        peer.to_string()
    }
}

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
    File(File),
    Memory(Vec<String>),
}

struct Inner {
    sink: Sink,
    summary: Summariser,
}

/// The audit sink shared by all listeners (cheap to clone).
#[derive(Clone)]
pub struct Audit {
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

/// Caps every string (keys included), list and map of `v`, in place.
fn cap_value(v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
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
                map.insert(cap_field(&k).into_owned(), item);
            }
            if more > 0 {
                map.insert("…".into(), Value::String(format!("+{more} fields")));
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

tokio::task_local! {
    /// The TCP peer of the connection being served. The server's accept loop sets it for
    /// each connection's task, so every line written while serving that connection names
    /// who connected (`peer`), whatever the observed address says: behind a proxy, or when
    /// the observation is a client's claim (an untrusted PROXY header), the two differ.
    pub static CONNECTION_PEER: SocketAddr;
}

/// The audit line of `event` at `time`, capped (see the module docs), without newline.
/// Also returns the key the summariser counts it under, if it is a refusal.
fn line_text(
    time: &str,
    cluster: &str,
    event: &AuditEvent,
    peer: Option<SocketAddr>,
) -> Result<(String, Option<SummaryKey>), serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    if let (Some(peer), serde_json::Value::Object(m)) = (peer, &mut value)
        && !m.contains_key("peer")
    {
        m.insert("peer".into(), peer.to_string().into());
    }
    cap_value(&mut value, 0);
    let key = SummaryKey::of(&value);
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
        return Ok((text, key));
    }
    let short = serde_json::to_string(&serde_json::json!({
        "time": time,
        "cluster": cluster,
        "event": name,
        "truncated": text.len(),
    }))?;
    Ok((short, key))
}

// ---- the summariser ----------------------------------------------------------------------

/// The window over which refusals of one kind from one peer are counted.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// How many refusals of one kind from one peer are written per window.
pub const SUMMARY_FIRST_LINES: u32 = 5;

/// How many (peer, kind, reason) windows are tracked at once.
pub const SUMMARY_CAPACITY: usize = 4096;

/// What a refusal is counted under: peer IP, event, reason and the identity it was about
/// (each capped). The identity is part of the key so that a summary never hides *which*
/// credential was refused: an attacker who spends the first lines of a window on one stolen
/// certificate still leaves one line for every other one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SummaryKey {
    /// The peer's IP.
    pub peer: String,
    /// The event name.
    pub kind: String,
    /// The reason code.
    pub reason: String,
    /// The user (and, for SSH, the certificate's key id) the refusal names; empty when none.
    pub user: String,
}

impl SummaryKey {
    /// The key of a refusal line (already capped), `None` for anything else: grants of
    /// access, sessions and relays are never summarised.
    fn of(line: &serde_json::Value) -> Option<SummaryKey> {
        let event = line.get("event")?.as_str()?;
        let (inner, kind) = match event {
            "login_refused" | "renew_refused" | "access_denied" | "tls_refused"
            | "proxy_refused" | "forward_refused" => (line, event),
            "ssh" => {
                let ssh = line.get("ssh")?;
                let kind = ssh.get("event")?.as_str()?;
                match kind {
                    "ssh.auth.denied" | "ssh.proxy_refused" | "ssh.shed" => (ssh, kind),
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
            Some(a) => a.ip().to_string(),
            None => {
                let addr = inner
                    .get("peer")
                    .or_else(|| line.get("peer"))
                    .or_else(|| inner.get("observed"))?
                    .as_str()?;
                addr.parse::<SocketAddr>()
                    .map_or_else(|_| addr.to_owned(), |a| a.ip().to_string())
            }
        };
        let text = |k: &str| inner.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let user = match text("key_id") {
            "" => text("user").to_owned(),
            key_id => format!("{} {key_id}", text("user")),
        };
        Some(SummaryKey {
            peer,
            kind: kind.to_owned(),
            reason: reason.to_owned(),
            user,
        })
    }
}

#[derive(Debug)]
struct Window {
    start: SystemTime,
    written: u32,
    suppressed: u64,
}

/// Whether a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it.
    Write,
    /// Count it; it is reported in the window's `audit.suppressed` line.
    Suppress,
}

/// Counts refusals per [`SummaryKey`] and window; pure (time is a parameter), bounded (at
/// most `capacity` windows; when full, new keys are written, never dropped).
#[derive(Debug)]
pub struct Summariser {
    window: Duration,
    first: u32,
    capacity: usize,
    windows: HashMap<SummaryKey, Window>,
    /// Keys in the order their windows began (so ended windows are found in O(1)).
    order: VecDeque<(SystemTime, SummaryKey)>,
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
        }
    }

    /// The windows that ended by `now` (all of them when `all`), removed, as
    /// `audit.suppressed` events for those that suppressed something.
    pub fn ended(&mut self, now: SystemTime, all: bool) -> Vec<AuditEvent> {
        let mut out = Vec::new();
        while let Some((start, _)) = self.order.front() {
            let over = now.duration_since(*start).unwrap_or_default() >= self.window;
            if !all && !over {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            if let Some(w) = self.windows.remove(&key)
                && w.suppressed > 0
            {
                out.push(AuditEvent::Suppressed {
                    peer: key.peer,
                    kind: key.kind,
                    reason: key.reason,
                    user: key.user,
                    count: w.suppressed,
                    window_start: humantime::format_rfc3339_millis(w.start).to_string(),
                    window_secs: self.window.as_secs(),
                });
            }
        }
        out
    }

    /// Whether a refusal under `key` at `now` is written (call [`Summariser::ended`] first).
    pub fn admit(&mut self, now: SystemTime, key: SummaryKey) -> Admit {
        if let Some(w) = self.windows.get_mut(&key) {
            if w.written < self.first {
                w.written += 1;
                return Admit::Write;
            }
            w.suppressed += 1;
            return Admit::Suppress;
        }
        if self.windows.len() >= self.capacity || self.first == 0 {
            // Full: write it (never drop a line we cannot count).
            return Admit::Write;
        }
        self.order.push_back((now, key.clone()));
        self.windows.insert(
            key,
            Window {
                start: now,
                written: 1,
                suppressed: 0,
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

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("file", &self.file).finish()
    }
}

impl Audit {
    /// Opens (creates, appends to) the audit log at `path`, mode 0600.
    pub fn open(path: &Path, cluster: &str) -> Result<Audit, AuditError> {
        Audit::open_with(path, cluster, Summariser::default())
    }

    /// [`Audit::open`] with its own summariser settings.
    pub fn open_with(path: &Path, cluster: &str, summary: Summariser) -> Result<Audit, AuditError> {
        let file = open_log(path)?;
        Ok(Audit {
            inner: Arc::new(Mutex::new(Inner {
                sink: Sink::File(file),
                summary,
            })),
            file: path.to_path_buf(),
            cluster: cluster.into(),
        })
    }

    /// An in-memory sink (tests, and the demo's summary).
    pub fn memory(cluster: &str) -> Audit {
        Audit {
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

    /// Appends one event at `now`, capped (module docs). The line is written with one
    /// `write_all` and flushed; an error means the action must be refused. A refusal that
    /// the summariser counts instead is not written (`Ok`); the `audit.suppressed` lines of
    /// windows that ended are written first.
    pub fn record(&self, now: SystemTime, event: &AuditEvent) -> Result<(), AuditError> {
        let time = humantime::format_rfc3339_millis(now).to_string();
        let peer = CONNECTION_PEER.try_with(|p| *p).ok();
        let (text, key) = line_text(&time, &self.cluster, event, peer)
            .map_err(|e| self.error(std::io::Error::other(e)))?;
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        self.write_ended(inner, now, false)?;
        if let Some(key) = key
            && inner.summary.admit(now, key) == Admit::Suppress
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
        tracing::info!(target: "ippin::audit", "{text}");
        text.push('\n');
        match sink {
            Sink::File(f) => f
                .write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .map_err(|source| self.error(source)),
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
        if let Sink::File(f) = &mut inner.sink {
            *f = open_log(&self.file)?;
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

fn open_log(path: &Path) -> Result<File, AuditError> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|source| AuditError {
        file: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ippin_access::tls::TlsEvent;
    use ippin_policy::Provenance;
    use std::time::Duration;

    fn event() -> AuditEvent {
        let o = ObservedAddr::new("127.0.0.2:5555".parse().unwrap(), Provenance::Direct, true);
        AuditEvent::Tls(TlsEvent::AccessDenied {
            user: "alice".into(),
            observed: AuditEvent::addr(&o),
            provenance: o.provenance().as_str().into(),
            pinned: Some("127.0.0.1".into()),
            reason: "pinned_ip_mismatch".into(),
            message: "m".into(),
        })
    }

    #[test]
    fn file_sink_writes_one_json_object_per_line() {
        let dir = ippin_test_support::temp_dir();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, "local").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        audit.record(t, &event()).unwrap();
        audit
            .record(
                t,
                &AuditEvent::ProxyRefused {
                    listener: "tls".into(),
                    peer: "127.0.0.4:1000".into(),
                    reason: "untrusted_proxy".into(),
                },
            )
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "access_denied");
        assert_eq!(lines[0]["observed"], "127.0.0.2:5555");
        assert_eq!(lines[0]["reason"], "pinned_ip_mismatch");
        assert_eq!(lines[0]["cluster"], "local");
        assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(lines[1]["event"], "proxy_refused");
        assert_eq!(lines[1]["peer"], "127.0.0.4:1000");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_failure_is_an_error() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let audit = Audit::open(Path::new("/dev/full"), "local").unwrap();
        let err = audit.record(SystemTime::now(), &event()).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    fn refused(user: &str, ip: &str, reason: &str) -> AuditEvent {
        AuditEvent::LoginRefused {
            user: user.into(),
            observed: format!("{ip}:4000"),
            provenance: "direct".into(),
            reason: reason.into(),
        }
    }

    fn lines(audit: &Audit) -> Vec<serde_json::Value> {
        audit
            .memory_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn long_fields_are_cut_on_a_char_boundary_and_marked() {
        assert_eq!(cap_field("alice"), "alice");
        let exact = "a".repeat(MAX_FIELD_BYTES);
        assert_eq!(cap_field(&exact), exact);
        let long = "é".repeat(MAX_FIELD_BYTES); // 2 bytes each
        let c = cap_field(&long);
        let (kept, marker) = c.split_once('…').unwrap();
        assert_eq!(kept.len(), MAX_FIELD_BYTES);
        assert_eq!(marker, format!("[+{} bytes]", long.len() - MAX_FIELD_BYTES));
        let odd = format!("a{}", "é".repeat(MAX_FIELD_BYTES));
        let c = cap_field(&odd);
        let (kept, marker) = c.split_once('…').unwrap();
        assert_eq!(
            kept.len(),
            MAX_FIELD_BYTES - 1,
            "cut before a split character"
        );
        assert_eq!(marker, format!("[+{} bytes]", odd.len() - kept.len()));
    }

    #[test]
    fn a_100_kb_user_name_gives_a_bounded_line() {
        let audit = Audit::memory("c");
        let huge = "A".repeat(100 * 1024);
        audit
            .record(
                SystemTime::now(),
                &refused(&huge, "127.0.0.1", "bad_credentials"),
            )
            .unwrap();
        let text = &audit.memory_lines()[0];
        assert!(text.len() < 1024, "{}", text.len());
        assert!(
            text.contains(r#""cluster":"c","event":"login_refused","observed""#),
            "time, cluster, event, then the fields in order: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(v["user"].as_str().unwrap().ends_with("…[+102144 bytes]"));
        // Inside an SSH event too, lists included.
        let ssh = serde_json::json!({
            "event": "ssh.auth.denied", "user": huge, "observed": "127.0.0.9:1",
            "reason": "unknown_user", "pinned": vec!["x".repeat(5000); 1000],
        });
        audit
            .record(SystemTime::now(), &AuditEvent::Ssh { ssh })
            .unwrap();
        let text = &audit.memory_lines()[1];
        assert!(text.len() < MAX_LINE_BYTES, "{}", text.len());
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["ssh"]["pinned"].as_array().unwrap().len(), MAX_ITEMS + 1);
    }

    #[test]
    fn a_burst_of_refusals_from_one_peer_is_summarised() {
        let audit = Audit::memory("c");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..100 {
            let t = t0 + Duration::from_millis(i * 10);
            audit
                .record(t, &refused("mallory", "198.51.100.7", "bad_credentials"))
                .unwrap();
            // Another peer and another reason have windows of their own.
            if i < 3 {
                audit
                    .record(t, &refused("x", "198.51.100.8", "bad_credentials"))
                    .unwrap();
                audit
                    .record(t, &refused("x", "198.51.100.7", "unknown_user"))
                    .unwrap();
            }
            // Grants are never summarised.
            audit.record(t, &event_allowed()).unwrap();
        }
        let l = lines(&audit);
        let refusals = |ip: &str, reason: &str| {
            l.iter()
                .filter(|v| {
                    v["event"] == "login_refused"
                        && v["observed"].as_str().unwrap().starts_with(ip)
                        && v["reason"] == reason
                })
                .count()
        };
        assert_eq!(refusals("198.51.100.7", "bad_credentials"), 5);
        assert_eq!(refusals("198.51.100.8", "bad_credentials"), 3);
        assert_eq!(refusals("198.51.100.7", "unknown_user"), 3);
        assert_eq!(
            l.iter().filter(|v| v["event"] == "access_allowed").count(),
            100
        );
        assert!(!l.iter().any(|v| v["event"] == "audit.suppressed"));
        // The window ends: the next event (any) writes the summary first.
        let later = t0 + SUMMARY_WINDOW + Duration::from_secs(1);
        audit.record(later, &event_allowed()).unwrap();
        let l = lines(&audit);
        let s: Vec<_> = l
            .iter()
            .filter(|v| v["event"] == "audit.suppressed")
            .collect();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0]["count"], 95);
        assert_eq!(s[0]["peer"], "198.51.100.7");
        assert_eq!(s[0]["kind"], "login_refused");
        assert_eq!(s[0]["reason"], "bad_credentials");
        assert_eq!(s[0]["window_secs"], 60);
        assert_eq!(s[0]["window_start"], "2023-11-14T22:13:20.000Z");
        assert_eq!(l.last().unwrap()["event"], "access_allowed");
        // A new window writes again.
        audit
            .record(
                later,
                &refused("mallory", "198.51.100.7", "bad_credentials"),
            )
            .unwrap();
        assert_eq!(lines(&audit).last().unwrap()["event"], "login_refused");
    }

    fn event_allowed() -> AuditEvent {
        AuditEvent::Tls(TlsEvent::AccessAllowed {
            user: "alice".into(),
            observed: "198.51.100.7:1".into(),
            provenance: "direct".into(),
            pinned: None,
        })
    }

    #[test]
    fn summaries_keep_the_identity_and_the_client_behind_a_balancer() {
        let key = |v: serde_json::Value| SummaryKey::of(&v).expect("a refusal");
        // Two stolen certificates refused from one address: two windows, so the second is
        // written however many times the first was used.
        let alice = key(
            serde_json::json!({"event": "access_denied", "user": "alice",
            "observed": "192.0.2.9:5000", "reason": "pinned_ip_mismatch"}),
        );
        let carol = key(
            serde_json::json!({"event": "access_denied", "user": "carol",
            "observed": "192.0.2.9:5000", "reason": "pinned_ip_mismatch"}),
        );
        assert_ne!(alice, carol);
        assert_eq!(alice.user, "alice");
        // SSH: the key id too.
        let ssh = key(
            serde_json::json!({"event": "ssh", "ssh": {"event": "ssh.auth.denied",
            "user": "bob", "key_id": "bob@ippin/7", "observed": "192.0.2.9:5000",
            "reason": "expired"}}),
        );
        assert_eq!(ssh.user, "bob bob@ippin/7");
        // Behind a load balancer: the client the balancer names, not the balancer.
        let behind = |client: &str| {
            key(
                serde_json::json!({"event": "tls_refused", "peer": "10.0.0.1:4000",
                "observed": client, "reason": "tls_handshake_failed"}),
            )
        };
        assert_eq!(behind("198.51.100.7:5000").peer, "198.51.100.7");
        assert_ne!(behind("198.51.100.7:5000"), behind("198.51.100.8:5000"));
        // An untrusted observation (port 0) is the client's claim: the TCP peer counts.
        assert_eq!(behind("198.51.100.7:0").peer, "10.0.0.1");
        // The connection's TCP peer, added to a line that has none, also keys SSH refusals.
        let ssh = key(serde_json::json!({"event": "ssh", "peer": "10.0.0.9:4000",
            "ssh": {"event": "ssh.auth.denied", "user": "bob", "observed": "198.51.100.7:0",
            "reason": "untrusted_client_ip"}}));
        assert_eq!(ssh.peer, "10.0.0.9");
    }

    #[test]
    fn lines_written_while_serving_a_connection_name_its_tcp_peer() {
        let event = AuditEvent::LoginRefused {
            user: "mallory".into(),
            observed: "198.51.100.99:0".into(),
            provenance: "proxy_v1".into(),
            reason: "bad_credentials".into(),
        };
        let peer: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        let (text, key) = line_text("t", "c", &event, Some(peer)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["peer"], "127.0.0.5:40000");
        assert_eq!(v["observed"], "198.51.100.99:0");
        // The claimed address does not key the summary: the TCP peer does.
        assert_eq!(key.unwrap().peer, "127.0.0.5");
        // A line that has its own `peer` keeps it.
        let own = AuditEvent::ProxyRefused {
            listener: "tls".into(),
            peer: "10.0.0.1:1".into(),
            reason: "timeout".into(),
        };
        let (text, _) = line_text("t", "c", &own, Some(peer)).unwrap();
        assert!(text.contains("\"peer\":\"10.0.0.1:1\""), "{text}");
    }

    #[test]
    fn a_full_summariser_writes_lines_rather_than_dropping_them() {
        let mut s = Summariser::new(Duration::from_secs(60), 1, 2);
        let t = SystemTime::UNIX_EPOCH;
        let key = |p: &str| SummaryKey {
            peer: p.into(),
            kind: "login_refused".into(),
            reason: "r".into(),
            user: String::new(),
        };
        assert_eq!(s.admit(t, key("a")), Admit::Write);
        assert_eq!(s.admit(t, key("b")), Admit::Write);
        assert_eq!(s.admit(t, key("a")), Admit::Suppress);
        // Full: a third peer is written every time.
        for _ in 0..10 {
            assert_eq!(s.admit(t, key("c")), Admit::Write);
        }
        assert_eq!(s.len(), 2);
        let ended = s.ended(t, true);
        assert_eq!(
            ended.len(),
            1,
            "only windows that suppressed something: {ended:?}"
        );
        assert!(s.is_empty());
    }

    #[test]
    fn reopen_sends_new_lines_to_a_fresh_file_at_the_path() {
        let dir = ippin_test_support::temp_dir();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, "c").unwrap();
        audit.record(SystemTime::now(), &event()).unwrap();
        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        audit.record(SystemTime::now(), &event()).unwrap();
        audit.reopen().unwrap();
        audit.record(SystemTime::now(), &event_allowed()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            2
        );
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 1);
        assert!(fresh.contains("access_allowed"));
    }

    fn any_event() -> impl proptest::strategy::Strategy<Value = AuditEvent> {
        use proptest::prelude::*;
        let s = || ".{0,600}|[\\PC\\u{0}-\\u{1f}\"\\\\]{0,3000}";
        prop_oneof![
            (s(), s(), s(), s()).prop_map(|(user, observed, provenance, reason)| {
                AuditEvent::LoginRefused {
                    user,
                    observed,
                    provenance,
                    reason,
                }
            }),
            (s(), s(), s(), s(), s(), proptest::option::of(s())).prop_map(
                |(user, observed, provenance, reason, message, pinned)| {
                    AuditEvent::Tls(TlsEvent::AccessDenied {
                        user,
                        observed,
                        provenance,
                        pinned,
                        reason,
                        message,
                    })
                }
            ),
            (s(), s(), s(), s(), s(), s()).prop_map(
                |(listener, peer, observed, provenance, reason, detail)| {
                    AuditEvent::TlsRefused {
                        listener,
                        peer,
                        observed,
                        provenance,
                        reason,
                        detail,
                    }
                }
            ),
            (s(), s(), proptest::collection::vec(s(), 0..40)).prop_map(|(user, reason, pinned)| {
                AuditEvent::Ssh {
                    ssh: serde_json::json!({
                        "event": "ssh.auth.denied", "user": user, "observed": "127.0.0.1:2",
                        "reason": reason, "pinned": pinned,
                    }),
                }
            }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the strings, a line is one JSON object of at most MAX_LINE_BYTES, every
        /// string in it at most MAX_FIELD_BYTES plus the marker.
        #[test]
        fn no_line_exceeds_the_bound(event in any_event()) {
            let (text, _) = line_text("2023-11-14T22:13:20.000Z", "c", &event, None).unwrap();
            proptest::prop_assert!(text.len() <= MAX_LINE_BYTES, "{}", text.len());
            proptest::prop_assert!(!text.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
                match v {
                    serde_json::Value::String(s) => out.push(s.clone()),
                    serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                    serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            strings(&v, &mut all);
            for s in all {
                proptest::prop_assert!(s.len() <= MAX_FIELD_BYTES + "…[+18446744073709551615 bytes]".len());
            }
        }

        /// Every refusal is either written or counted in exactly one summary: written +
        /// suppressed == recorded, per key, whatever the sequence of peers, reasons and times.
        #[test]
        fn summariser_counts_add_up(
            seq in proptest::collection::vec((0u8..4, 0u8..3, 0u64..200), 0..300),
            first in 0u32..4,
            capacity in 0usize..6,
        ) {
            let window = Duration::from_secs(30);
            let mut s = Summariser::new(window, first, capacity);
            let mut recorded: HashMap<SummaryKey, u64> = HashMap::new();
            let mut accounted: HashMap<SummaryKey, u64> = HashMap::new();
            let mut t = SystemTime::UNIX_EPOCH;
            let count_ended = |ended: Vec<AuditEvent>, acc: &mut HashMap<SummaryKey, u64>| {
                for e in ended {
                    let AuditEvent::Suppressed { peer, kind, reason, user, count, .. } = e else {
                        panic!("not a summary")
                    };
                    *acc.entry(SummaryKey { peer, kind, reason, user }).or_default() += count;
                }
            };
            for (peer, reason, step) in seq {
                t += Duration::from_secs(step);
                let key = SummaryKey {
                    peer: format!("10.0.0.{peer}"),
                    kind: "login_refused".into(),
                    reason: format!("r{reason}"),
                    user: String::new(),
                };
                count_ended(s.ended(t, false), &mut accounted);
                *recorded.entry(key.clone()).or_default() += 1;
                if s.admit(t, key.clone()) == Admit::Write {
                    *accounted.entry(key).or_default() += 1;
                }
                proptest::prop_assert!(s.len() <= capacity);
            }
            count_ended(s.ended(t, true), &mut accounted);
            proptest::prop_assert_eq!(recorded, accounted);
            proptest::prop_assert!(s.is_empty());
        }
    }

    #[test]
    fn unopenable_log_is_an_error() {
        let err = Audit::open(Path::new("/nonexistent-dir/x/audit.log"), "c").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir"));
    }
}
