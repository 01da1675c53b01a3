//! The mutual-TLS access decision: a client certificate TLS verified, seen at an observed
//! address, against the user's roles now.
//!
//! | step | check | refused with |
//! |---|---|---|
//! | 1 | the certificate's identity reads (one CN, O attributes, the pin extension strict) | `invalid_pin` when the pin cannot be read, else `invalid_identity` |
//! | 1b | the certificate is valid now (`not_before` ≤ now ≤ `not_after`): TLS checks it on a full handshake, checked again here so that a resumed session or a verifier of your own cannot stretch a certificate's life | `not_yet_valid`, `expired` |
//! | 2 | the user is known now, with roles | `unknown_user` |
//! | 3 | `ippin-policy`'s pin check: the roles' requirement (a single-host pin), the observed address trusted and equal to the pin | `pinned_ip_missing`, `pin_too_wide`, `untrusted_client_ip`, `pinned_ip_mismatch`, `invalid_pin` |
//! | 4 | only [`Decision::Allow`] allows; any other decision | `unknown_decision` |
//!
//! [`decide`] is the pure table; [`check`] adds the audit line, fail closed: when the
//! [`AuditSink`] cannot record the verdict, the connection is refused
//! ([`TlsAccess::AuditUnavailable`]).
//!
//! The chain, signature and validity window are TLS's (see the `rustls` feature's
//! `rustls::server_config`): give [`decide`] only a certificate that your TLS
//! stack verified for this connection.

mod identity;

use std::net::IpAddr;

use ippin_cert::x509::ClientIdentity;
use ippin_policy::{CertPin, Decision, DenyReason, LOG_IN_AGAIN, ObservedAddr, PinRequirement};
use serde::Serialize;

pub use identity::{DEFAULT_CAPACITY, IdentityCache, MAX_CACHED_CERT_LEN};

use crate::audit::AuditSink;
use crate::pin::{pin_text, x509_pin};
use crate::users::UserDirectory;

/// Why a mutual-TLS connection was refused. [`TlsDenyReason::code`] is the stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsDenyReason {
    /// The certificate names no readable user (its pin, if any, did read).
    InvalidIdentity,
    /// The user is not (or no longer) known, or has no usable roles.
    UnknownUser,
    /// The pin check refused (`ippin-policy`'s reason).
    Pin(DenyReason),
    /// The pin check gave a decision this crate does not know: refused (fail closed).
    UnknownDecision,
    /// The connection presented no client certificate (a TLS configuration that made it
    /// optional): refused.
    NoClientCertificate,
    /// The certificate's validity ended before now.
    Expired,
    /// The certificate's validity starts after now.
    NotYetValid,
}

impl TlsDenyReason {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsDenyReason::InvalidIdentity => "invalid_identity",
            TlsDenyReason::UnknownUser => "unknown_user",
            TlsDenyReason::Pin(r) => r.code(),
            TlsDenyReason::UnknownDecision => "unknown_decision",
            TlsDenyReason::NoClientCertificate => "no_client_certificate",
            TlsDenyReason::Expired => "expired",
            TlsDenyReason::NotYetValid => "not_yet_valid",
        }
    }
}

impl std::fmt::Display for TlsDenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The outcome of the decision for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsAccess {
    /// Serve the connection.
    Allow,
    /// Refuse it.
    Deny {
        /// The stable reason.
        reason: TlsDenyReason,
        /// What happened and what to do (log in again), for the client.
        message: String,
    },
    /// Everything passed or failed, but the audit line could not be written: refused.
    AuditUnavailable,
}

impl TlsAccess {
    /// Whether the connection may be served.
    pub fn is_allowed(&self) -> bool {
        matches!(self, TlsAccess::Allow)
    }

    /// The stable code: `allow`, a denial's reason, or `audit_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            TlsAccess::Allow => "allow",
            TlsAccess::Deny { reason, .. } => reason.code(),
            TlsAccess::AuditUnavailable => "audit_unavailable",
        }
    }
}

/// What the decision found and decided for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsVerdict {
    /// The user from the certificate ("" when unreadable).
    pub user: String,
    /// The user's current roles (empty when unknown).
    pub roles: Vec<String>,
    /// What those roles require of the pin (whether one is required, and how wide it may be).
    pub pin_requirement: PinRequirement,
    /// The certificate's pin, as the strict extraction read it.
    pub pin: CertPin,
    /// The private endpoint the pin is bound to, if any (checked with the pin).
    pub pinned_endpoint: Option<ippin_policy::Endpoint>,
    /// The login IP the certificate records (informational, never a pin).
    pub login_ip: Option<IpAddr>,
    /// The certificate's validity, `(not_before, not_after)` in Unix seconds, when it could
    /// be read. An issuer that keeps `not_before` through renewals can bound how long a
    /// login lasts (ippin's server does: `max_session_ttl`).
    pub validity: Option<(u64, u64)>,
    /// The certificate's serial number in hex, when it could be read: audit lines name the
    /// certificate used, not only its user (a stolen one used from the pinned NAT is told
    /// apart from its owner's).
    pub serial: Option<String>,
    /// The outcome.
    pub access: TlsAccess,
}

/// The decision for a client certificate `der`, whose identity `identity` was decoded from it
/// (by [`ippin_cert::x509::client_identity`] or an [`IdentityCache`]), seen at `observed` at
/// `now` (Unix seconds), with the users of `users`. Pure: no I/O, no audit.
pub fn decide(
    identity: Result<&ClientIdentity, &ippin_cert::Error>,
    der: &[u8],
    users: &dyn UserDirectory,
    observed: &ObservedAddr,
    now: u64,
) -> TlsVerdict {
    let mut verdict = TlsVerdict {
        user: String::new(),
        roles: Vec::new(),
        pin_requirement: PinRequirement::NotRequired,
        pin: CertPin::None,
        pinned_endpoint: None,
        login_ip: None,
        validity: None,
        serial: None,
        access: TlsAccess::Allow,
    };
    match identity {
        Ok(id) => {
            // The pin as the full decoder read it: the same as the fast walk on every
            // certificate that decodes (the certificate crate's tests).
            (verdict.pin, verdict.pinned_endpoint) = crate::pin::with_endpoint(
                id.pin.map_or(CertPin::None, crate::pin::network_pin),
                id.pinned_endpoint.clone(),
            );
            verdict.user = id.user.clone();
            verdict.login_ip = id.login_ip;
            verdict.validity = Some((id.not_before, id.not_after));
            verdict.serial = Some(id.serial.iter().map(|b| format!("{b:02x}")).collect());
            if now < id.not_before || now > id.not_after {
                let (reason, when) = if now < id.not_before {
                    (TlsDenyReason::NotYetValid, "is not valid yet")
                } else {
                    (TlsDenyReason::Expired, "has expired")
                };
                verdict.access = TlsAccess::Deny {
                    reason,
                    message: format!("the client certificate {when}; {LOG_IN_AGAIN}"),
                };
                return verdict;
            }
            match crate::users::lookup_usable(users, &id.user) {
                None => {
                    verdict.access = TlsAccess::Deny {
                        reason: TlsDenyReason::UnknownUser,
                        message: format!(
                            "user `{}` is not (or no longer) known here with usable roles; \
                             {LOG_IN_AGAIN}",
                            id.user
                        ),
                    };
                }
                Some(user) => {
                    verdict.pin_requirement = user.pin_requirement();
                    verdict.roles = user.roles;
                    verdict.access = from_decision(ippin_policy::check_pin_at(
                        verdict.pin_requirement,
                        &verdict.pin,
                        verdict.pinned_endpoint.as_ref(),
                        observed,
                    ));
                }
            }
        }
        Err(e) => {
            verdict.pin = x509_pin(der);
            verdict.access = if matches!(verdict.pin, CertPin::Invalid(_)) {
                // An unreadable pin is the policy's `invalid_pin`, whatever else.
                from_decision(ippin_policy::check_pin(true, &verdict.pin, observed))
            } else {
                TlsAccess::Deny {
                    reason: TlsDenyReason::InvalidIdentity,
                    message: format!(
                        "the client certificate's identity cannot be read ({e}); {LOG_IN_AGAIN}"
                    ),
                }
            };
        }
    }
    verdict
}

/// [`decide`] with the identity decoded here (no cache).
pub fn decide_der(
    der: &[u8],
    users: &dyn UserDirectory,
    observed: &ObservedAddr,
    now: u64,
) -> TlsVerdict {
    let identity = ippin_cert::x509::client_identity(der);
    decide(identity.as_ref(), der, users, observed, now)
}

/// The decision and its audit line: [`decide`] (identity from `cache`), then the event
/// recorded to `sink`. Fail closed: when the sink cannot record it, the verdict becomes
/// [`TlsAccess::AuditUnavailable`], whatever it was.
pub fn check(
    cache: &IdentityCache,
    der: &[u8],
    users: &dyn UserDirectory,
    observed: &ObservedAddr,
    now: u64,
    sink: &dyn AuditSink<TlsEvent>,
) -> TlsVerdict {
    let identity = cache.get_or_decode(der);
    audit(
        decide(identity.as_deref(), der, users, observed, now),
        observed,
        sink,
    )
}

/// The verdict for a connection that presented no client certificate: refused
/// (`no_client_certificate`), and audited like any other when passed to a sink.
pub fn without_certificate() -> TlsVerdict {
    TlsVerdict {
        user: String::new(),
        roles: Vec::new(),
        pin_requirement: PinRequirement::NotRequired,
        pin: CertPin::None,
        pinned_endpoint: None,
        login_ip: None,
        validity: None,
        serial: None,
        access: TlsAccess::Deny {
            reason: TlsDenyReason::NoClientCertificate,
            message: format!("no client certificate was presented; {LOG_IN_AGAIN}"),
        },
    }
}

/// Records `verdict`'s event to `sink`; when it cannot, the verdict becomes
/// [`TlsAccess::AuditUnavailable`] (fail closed).
pub fn audit(
    mut verdict: TlsVerdict,
    observed: &ObservedAddr,
    sink: &dyn AuditSink<TlsEvent>,
) -> TlsVerdict {
    if let Some(event) = event(&verdict, observed)
        && !sink.record(event)
    {
        verdict.access = TlsAccess::AuditUnavailable;
    }
    verdict
}

/// Only [`Decision::Allow`] allows: a decision this crate does not know (the enum is
/// `#[non_exhaustive]`) is a denial.
fn from_decision(d: Decision) -> TlsAccess {
    match d {
        Decision::Allow => TlsAccess::Allow,
        Decision::Deny(d) => TlsAccess::Deny {
            reason: TlsDenyReason::Pin(d.reason),
            message: d.message,
        },
        other => TlsAccess::Deny {
            reason: TlsDenyReason::UnknownDecision,
            message: format!(
                "the pin check gave a decision this server does not know ({other:?}); {LOG_IN_AGAIN}"
            ),
        },
    }
}

/// The audit event of a verdict; `None` for [`TlsAccess::AuditUnavailable`] (nothing more
/// can be recorded).
pub fn event(verdict: &TlsVerdict, observed: &ObservedAddr) -> Option<TlsEvent> {
    let observed_text = observed.socket_addr().to_string();
    let provenance = observed.provenance().as_str().to_owned();
    let endpoint = observed.endpoint().map(|e| e.to_string());
    match &verdict.access {
        TlsAccess::Allow => Some(TlsEvent::AccessAllowed {
            user: verdict.user.clone(),
            serial: verdict.serial.clone(),
            observed: observed_text,
            provenance,
            endpoint,
            pinned: pin_text(&verdict.pin),
        }),
        TlsAccess::Deny { reason, message } => Some(TlsEvent::AccessDenied {
            user: verdict.user.clone(),
            serial: verdict.serial.clone(),
            observed: observed_text,
            provenance,
            endpoint,
            pinned: pin_text(&verdict.pin),
            reason: reason.code().to_owned(),
            message: message.clone(),
        }),
        TlsAccess::AuditUnavailable => None,
    }
}

/// The audit events of mutual-TLS access: one JSON object each, `event` naming its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TlsEvent {
    /// Access was allowed after the pin check.
    AccessAllowed {
        /// The user from the client certificate.
        user: String,
        /// The client certificate's serial number, hex.
        #[serde(skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
        /// The observed client address (`ip:port`, port 0 when untrusted).
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The cloud private endpoint the client came through, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// The certificate's pin, as read.
        pinned: Option<String>,
    },
    /// Access was denied.
    AccessDenied {
        /// The user from the client certificate ("" when unreadable).
        user: String,
        /// The client certificate's serial number, hex, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
        /// The observed client address.
        observed: String,
        /// How it was observed.
        provenance: String,
        /// The cloud private endpoint the client came through, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// The certificate's pin, as read.
        pinned: Option<String>,
        /// The stable reason code.
        reason: String,
        /// The message sent to the client.
        message: String,
    },
}
