//! The fleet's HTTP endpoints: the admin API on the `tls` listener (`/v1/admin/resources`,
//! after the access decision: the pin check applies to administrators too), and
//! `/healthz` and `/readyz` on the login listener. Above `state` and `fleet`; imported
//! by `server` only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ippin_policy::ObservedAddr;
use serde::Serialize;

use crate::audit::AuditEvent;
use crate::fleet::FleetError;
use crate::fleet::store::Key;
use crate::http::{self, Body};
use crate::state::State;
use ippin_access::tls::TlsVerdict as AccessVerdict;

/// The largest body of a write (the YAML of `ctl create -f`), in bytes.
pub const MAX_ADMIN_BODY: usize = 1 << 20;
/// How long the body of a write may take to arrive.
const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// One resource as `get` shows it.
#[derive(Debug, Serialize)]
pub struct Item {
    /// `role`, `user` or `network_restrictions`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The store revision of its last change.
    pub revision: i64,
    /// The document (a user's `password_hash` left out).
    pub document: String,
}

#[derive(Debug, Serialize)]
struct WriteResult {
    kind: &'static str,
    name: String,
    action: &'static str,
}

#[derive(Debug, Serialize)]
struct WriteAnswer {
    revision: i64,
    results: Vec<WriteResult>,
}

fn kind_of(key: &Key) -> (&'static str, String) {
    match key {
        Key::Role(n) => ("role", n.clone()),
        Key::User(n) => ("user", n.clone()),
        Key::Restrictions => ("network_restrictions", "network_restrictions".into()),
        Key::Lockout(n) => ("lockout", n.clone()),
        Key::Failure(n) => ("failure", n.clone()),
    }
}

/// The key of `kind`/`name` as the API names them (`name` `None`: the kind's prefix).
fn key_for(kind: &str, name: Option<&str>) -> Result<Option<Key>, (&'static str, String)> {
    let bad_name = |n: &str| {
        (
            "bad_request",
            format!("`{}` is not a resource name", n.escape_default()),
        )
    };
    let check = |n: &str| crate::config::check_name(n).map_err(|_| bad_name(n));
    match (kind, name) {
        ("role" | "roles", Some(n)) => check(n).map(|()| Some(Key::Role(n.to_owned()))),
        ("user" | "users", Some(n)) => check(n).map(|()| Some(Key::User(n.to_owned()))),
        ("network_restrictions", None | Some("network_restrictions")) => {
            Ok(Some(Key::Restrictions))
        }
        ("network_restrictions", Some(n)) => Err(bad_name(n)),
        ("role" | "roles" | "user" | "users", None) => Ok(None),
        (other, _) => Err((
            "unknown_kind",
            format!(
                "unknown kind `{}`: use role, user or network_restrictions",
                other.escape_default()
            ),
        )),
    }
}

/// Whether `user`, whose certificate is valid for `validity`, may administer now: the
/// certificate not expired (no validity read: refused), the user's roles now admin ones.
/// Allowed: the guard of the writes this allows (the user and roles the decision read, at
/// the directory's revision), so that a write is made only if the store still holds them
/// as read. Refused: the code and the message.
pub(crate) fn admin_now(
    state: &State,
    user: &str,
    validity: Option<(u64, u64)>,
) -> Result<crate::fleet::Guard, (&'static str, &'static str)> {
    let now = state
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if validity.is_none_or(|(_, not_after)| now > not_after) {
        return Err((
            "expired",
            "your certificate expired during this request; log in again (`ippin login`)",
        ));
    }
    let directory = state.directory.get();
    let roles = directory
        .user(user)
        .map(|u| u.roles.clone())
        .unwrap_or_default();
    if !directory.is_admin(&roles) {
        return Err((
            "not_admin",
            "your roles do not allow administration (a role with spec.options.admin: true)",
        ));
    }
    if directory.revision == 0 {
        // Read from files, not from a store: nothing to hold a store write to.
        return Ok(crate::fleet::Guard::default());
    }
    let mut keys = vec![Key::User(user.to_owned())];
    let mut roles = roles;
    roles.sort_unstable();
    roles.dedup();
    keys.extend(roles.into_iter().map(Key::Role));
    Ok(crate::fleet::Guard {
        keys,
        since: directory.revision,
    })
}

/// The admin API, for a request whose connection the access decision allowed.
pub async fn admin_route(
    state: &State,
    verdict: &AccessVerdict,
    der: &[u8],
    observed: &ObservedAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let refuse = |status: StatusCode, code: &str, message: &str| {
        state.audit(&AuditEvent::AdminRefused {
            user: verdict.user.clone(),
            observed: AuditEvent::addr(observed),
            provenance: observed.provenance().as_str().into(),
            reason: code.to_owned(),
        });
        http::error(status, code, message)
    };
    // The certificate's validity and the roles now, not when the connection was made: asked
    // here and again once a body is read (the head and the body may take their timeouts, and
    // a certificate may expire or an admin be removed meanwhile).
    let guard = match admin_now(state, &verdict.user, verdict.validity) {
        Ok(guard) => guard,
        Err((code, message)) => return refuse(StatusCode::FORBIDDEN, code, message),
    };
    // The access decision already checked the pin against this connection's address; the
    // admin API also requires there to be one, so a stolen admin certificate is useless
    // off the machine it was issued to (a role with `admin: true` should also set
    // `pin_source_ip: true`). One address: a prefix pin (`pin_source_ip_prefix`) is refused.
    if !matches!(verdict.pin, ippin_policy::CertPin::Ip(_)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "admin_pin_required",
            "the admin API requires a certificate pinned to your one address: give the admin \
             role `pin_source_ip: true` without a wider `pin_source_ip_prefix` (a prefix pin \
             is not enough here) and log in again",
        );
    }
    let Some(fleet) = state.fleet.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no_backend",
            "this server has no backend: its resources are its files",
        );
    };
    let key_id: String = ippin_cert::x509::client_identity(der)
        .map(|id| id.serial.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default();
    let changed = |action: &str, key: &Key, revision: i64| {
        let (kind, name) = kind_of(key);
        state.audit(&AuditEvent::AdminChanged {
            user: verdict.user.clone(),
            key_id: key_id.clone(),
            observed: AuditEvent::addr(observed),
            provenance: observed.provenance().as_str().into(),
            action: action.to_owned(),
            kind: kind.to_owned(),
            name,
            revision,
        })
    };
    let backend = |e: FleetError| match e {
        e @ FleetError::Changed(_) => (StatusCode::CONFLICT, "admin_changed", e.to_string()),
        FleetError::Exists(keys) => (
            StatusCode::CONFLICT,
            "already_exists",
            format!("{} already exist; use --force to replace", keys.join(", ")),
        ),
        e @ FleetError::Unknown(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            e.to_string(),
        ),
        // Unreachable, or refused by etcd: not applied.
        e => (
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            format!("{e}; nothing was changed"),
        ),
    };
    let path = req.uri().path().to_owned();
    let rest = match path.strip_prefix("/v1/admin/resources") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_owned(),
        _ => return http::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let force = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "force=1" || p == "force=true"));
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, []) => {
            let body = match read_body(req, MAX_ADMIN_BODY, ADMIN_BODY_TIMEOUT).await {
                Ok(b) => b,
                Err((status, code, message)) => return refuse(status, code, &message),
            };
            let items = match parse_body(&body) {
                Ok(items) => items,
                Err((code, message)) => return refuse(StatusCode::BAD_REQUEST, code, &message),
            };
            let guard = match admin_now(state, &verdict.user, verdict.validity) {
                Ok(guard) => guard,
                Err((code, message)) => return refuse(StatusCode::FORBIDDEN, code, message),
            };
            // etcd takes at most 128 compares in one transaction (`--max-txn-ops`): the guard's
            // two per key, and one per resource of a create-only write.
            let compares = 2 * guard.keys.len() + if force { 0 } else { items.len() };
            if compares > crate::fleet::MAX_TXN_COMPARES {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "too_many_at_once",
                    &format!(
                        "{} resources at once, checked against your user and {} roles, are \
                         more than one etcd transaction takes: write fewer at once",
                        items.len(),
                        guard.keys.len().saturating_sub(1)
                    ),
                );
            }
            // Recorded before it is made: a change the audit log cannot hold is not made.
            if !items.iter().all(|(key, _)| changed("requested", key, 0)) {
                return audit_unavailable();
            }
            let (revision, created) = match fleet.write(&items, force, &guard).await {
                Ok(r) => r,
                Err(e) => {
                    let (status, code, message) = backend(e);
                    return refuse(status, code, &message);
                }
            };
            let mut results = Vec::with_capacity(items.len());
            let mut audited = true;
            for ((key, _), created) in items.iter().zip(created) {
                let action = if created { "created" } else { "updated" };
                audited &= changed(action, key, revision);
                let (kind, name) = kind_of(key);
                results.push(WriteResult { kind, name, action });
            }
            if !audited {
                tracing::error!("an admin change at revision {revision} could not be audited");
            }
            http::json(StatusCode::OK, &WriteAnswer { revision, results })
        }
        (Method::GET, [kind]) | (Method::GET, [kind, _]) => {
            let name = segments.get(1).copied();
            let key = match key_for(kind, name) {
                Ok(k) => k,
                Err((code, message)) => return refuse(StatusCode::BAD_REQUEST, code, &message),
            };
            let rel = match &key {
                Some(k) => k.path(),
                None if kind.starts_with("role") => "roles/".to_owned(),
                None => "users/".to_owned(),
            };
            let found = match fleet.read(&rel).await {
                Ok(f) => f,
                Err(e) => {
                    let (status, code, message) = backend(e);
                    return refuse(status, code, &message);
                }
            };
            let stored = !found.is_empty();
            let mut items: Vec<Item> = found
                .into_iter()
                .filter_map(|(rel, value, revision)| {
                    let key = Key::parse(&rel)?;
                    let (kind, name) = kind_of(&key);
                    let text = String::from_utf8(value).ok()?;
                    // What another etcd client wrote is shown only if it validates.
                    let document = crate::admin::parse_stored(&rel, &text)
                        .ok()?
                        .public_document();
                    Some(Item {
                        kind,
                        name,
                        revision,
                        document,
                    })
                })
                .collect();
            // `GET KIND`: a list (for the network restrictions, of none or one); `GET
            // KIND/NAME`: the one.
            match (&key, name) {
                (_, None) => http::json(StatusCode::OK, &serde_json::json!({ "items": items })),
                (Some(_), Some(_)) if !items.is_empty() => {
                    http::json(StatusCode::OK, &items.swap_remove(0))
                }
                (Some(k), Some(_)) if stored => {
                    let (kind, name) = kind_of(k);
                    http::error(
                        StatusCode::CONFLICT,
                        "invalid_stored_value",
                        &format!(
                            "the store holds a value for {kind} \"{name}\" that does not validate \
                             (written by another etcd client); replace it with `create --force`"
                        ),
                    )
                }
                (Some(k), Some(_)) => {
                    let (kind, name) = kind_of(k);
                    http::error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("{kind} \"{name}\" is not found"),
                    )
                }
                (None, Some(_)) => {
                    http::json(StatusCode::OK, &serde_json::json!({ "items": items }))
                }
            }
        }
        (Method::DELETE, [kind]) | (Method::DELETE, [kind, _]) => {
            let name = segments.get(1).copied();
            let key = match key_for(kind, name) {
                Ok(Some(k)) => k,
                Ok(None) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "name the resource: KIND/NAME",
                    );
                }
                Err((code, message)) => return refuse(StatusCode::BAD_REQUEST, code, &message),
            };
            if key == Key::Restrictions {
                // Removing the policy would lift every restriction on every node, running
                // sessions included: that must be said explicitly, with a document.
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the network restrictions cannot be removed; to allow every destination, \
                     create them with `allow: [{cidr: 0.0.0.0/0}, {cidr: ::/0}]`",
                );
            }
            if !changed("requested_delete", &key, 0) {
                return audit_unavailable();
            }
            match fleet.remove(&key, &guard).await {
                Ok(Some(revision)) => {
                    changed("deleted", &key, revision);
                    http::json(StatusCode::OK, &serde_json::json!({ "revision": revision }))
                }
                Ok(None) => {
                    let (kind, name) = kind_of(&key);
                    http::error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("{kind} \"{name}\" is not found"),
                    )
                }
                Err(e) => {
                    let (status, code, message) = backend(e);
                    refuse(status, code, &message)
                }
            }
        }
        _ => http::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn audit_unavailable() -> Response<Body> {
    http::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit log cannot be written, so nothing is changed; tell the operator",
    )
}

/// A refusal: its reason code and message.
type Refusal = (&'static str, String);

/// The documents of a write, each checked as the file loader checks its kind
/// ([`crate::admin::parse_documents`]); at most [`crate::fleet::MAX_WRITE_RESOURCES`] (one
/// etcd transaction).
fn parse_body(body: &[u8]) -> Result<Vec<(Key, Vec<u8>)>, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ("bad_document", "the body is not UTF-8".to_owned()))?;
    let resources =
        crate::admin::parse_documents("request", text).map_err(|e| (e.code(), e.to_string()))?;
    if resources.len() > crate::fleet::MAX_WRITE_RESOURCES {
        return Err((
            "bad_document",
            format!(
                "{} documents: at most {} in one write",
                resources.len(),
                crate::fleet::MAX_WRITE_RESOURCES
            ),
        ));
    }
    resources
        .iter()
        .map(|r| {
            let key = Key::parse(&r.key())
                .ok_or_else(|| ("bad_document", format!("{}: no key", r.name())))?;
            // The checks of a stored value (sizes included), so the store only ever holds
            // what every node accepts.
            crate::fleet::store::decode(&key, &r.key(), r.document().as_bytes())
                .map_err(|m| ("bad_document", m))?;
            Ok((key, r.document().as_bytes().to_vec()))
        })
        .collect()
}

/// Reads a body of at most `max` bytes within `timeout`; a declared length over `max` is
/// refused before reading.
async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {max} bytes; nothing was changed"),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), max).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {timeout:?}"),
        )),
    }
}

/// A client on this host: the TCP peer a loopback address, and the observed address (after
/// the PROXY stage) trusted and a loopback one (a proxy on another host naming a client
/// local to *it* does not make that client local here).
fn local(peer: std::net::SocketAddr, observed: &ObservedAddr) -> bool {
    peer.ip().is_loopback() && observed.is_trusted() && observed.ip().is_loopback()
}

/// `/metrics`, to a client on this host only: the observed address (after the PROXY
/// stage) trusted and a loopback one. Counts of refusals by reason are not for everyone.
fn metrics(state: &State, local: bool) -> Response<Body> {
    if !local {
        return http::error(
            StatusCode::FORBIDDEN,
            "metrics_local_only",
            "/metrics is served to clients on this host only",
        );
    }
    let text = state
        .metrics
        .as_ref()
        .map(|m| m.render(state.fleet.as_deref()))
        .unwrap_or_default();
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ippin_access::metrics::CONTENT_TYPE),
    );
    resp
}

/// `/healthz` (the process serves), `/readyz` (`ok` in contact with the fleet's store,
/// else `degraded` with 503; a node without a backend is always ready).
pub fn health_route(
    state: &State,
    peer: std::net::SocketAddr,
    observed: &ObservedAddr,
    from_l7_proxy: bool,
    path: &str,
) -> Option<Response<Body>> {
    // A proxy this listener takes forwarded headers from carries other clients' requests:
    // on this host or not, its connections are not a local client's.
    let local = |peer, observed| !from_l7_proxy && local(peer, observed);
    match path {
        "/metrics" => Some(metrics(state, local(peer, observed))),
        "/healthz" => Some(http::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        "/readyz" if !local(peer, observed) => {
            Some(match state.fleet.as_ref().map(|f| f.status()) {
                Some(s) if !s.connected => http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "degraded"}),
                ),
                _ => http::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            })
        }
        "/readyz" => Some(match &state.fleet {
            None => http::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok", "backend": "files"}),
            ),
            Some(f) => {
                let s = f.status();
                let status = if s.connected { "ok" } else { "degraded" };
                let code = if s.connected {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                http::json(
                    code,
                    &serde_json::json!({
                        "status": status,
                        "backend": "etcd",
                        "revision": s.revision,
                        "lag": (s.store_revision - s.revision).max(0),
                        "last_contact": s.last_contact,
                        "error": s.last_error,
                    }),
                )
            }
        }),
        _ => None,
    }
}
