//! Audit: the sink trait and its fail-closed contract, and a JSON-lines log ([`log`]).
//!
//! The event types live beside the decisions that produce them: [`TlsEvent`](crate::tls::TlsEvent)
//! and [`SshAuditEvent`](crate::ssh::SshAuditEvent). Each serialises (serde) to one JSON object
//! whose `event` field names its kind, ready to be written as a JSON line.

pub mod log;

/// Where audit events go.
///
/// # Contract: fail closed
/// [`record`](AuditSink::record) returns `true` only once the event is durably recorded
/// (written and flushed, or handed to a store that acknowledged it). On `false`, the caller
/// **must not** release the effect the event records: no access is served, no certificate
/// returned, no connection made. A security tool that cannot say what it did must not do it.
/// The functions of this crate that take a sink ([`tls::check`](crate::tls::check), the SSH
/// helpers) follow the contract; code of your own that takes a sink must too.
///
/// The call is made on the connection's task: it must not block for long.
///
/// Implemented for closures `Fn(E) -> bool + Send + Sync`:
///
/// ```
/// use std::sync::Mutex;
/// use ippin_access::audit::AuditSink;
///
/// let lines = Mutex::new(Vec::new());
/// let sink = |e: String| { lines.lock().map(|mut l| l.push(e)).is_ok() };
/// assert!(sink.record("hello".to_owned()));
/// assert_eq!(lines.lock().unwrap().len(), 1);
/// ```
pub trait AuditSink<E>: Send + Sync {
    /// Records one event; `false` when it could not be recorded.
    fn record(&self, event: E) -> bool;
}

impl<E, F: Fn(E) -> bool + Send + Sync> AuditSink<E> for F {
    fn record(&self, event: E) -> bool {
        self(event)
    }
}
