//! From a connection to a source-IP pin verdict, for any Rust access tool.
//!
//! A certificate issued at login carries the client IP observed then; every later use from
//! another IP is refused. `ippin-access` joins the sans-IO foundation crates
//! (`ippin-proxy-protocol`, `ippin-cert`, `ippin-policy`, `ippin-propagation`) to a real
//! connection, in four steps:
//!
//! 1. **Observe** the client address, with its provenance and trust ([`observed`]): the socket
//!    peer, a PROXY v1/v2 header from a trusted load balancer (the `tokio`
//!    feature reads it), `X-Forwarded-For`/`Forwarded` from a trusted proxy, or a signed
//!    header from another service ([`signed`]). One type, [`ObservedAddr`], carries all of
//!    them.
//! 2. **Read the pin** of the client's certificate ([`pin`]): an X.509 certificate or an
//!    OpenSSH certificate becomes a [`CertPin`]; a pin that cannot be read is invalid, never
//!    absent.
//! 3. **Decide**, as a pure function with stable reason codes: the mutual-TLS verdict
//!    ([`tls::decide`]) or the SSH certificate authorisation table ([`ssh::authorize`]), with
//!    the user's roles now from a [`UserDirectory`]. Only an explicit allow allows.
//! 4. **Audit** the decision to an [`AuditSink`](audit::AuditSink), fail closed: an event that
//!    cannot be recorded turns the verdict into a refusal.
//!
//! ```
//! use std::collections::HashMap;
//! use ippin_access::{observed::{ObservedAddr, Provenance}, tls, users::User};
//!
//! // alice's roles require a pin. Her certificate (here: bytes that do not decode) is
//! // refused, with a stable reason, whatever the address.
//! let users = HashMap::from([("alice".to_owned(), User::new(true, vec!["ops".into()]))]);
//! // The socket peer of a direct connection; behind a proxy, `observed::from_proxy` (a PROXY
//! // header under the listener's policy) or `observed::from_signed` decide what to believe.
//! let seen = ObservedAddr::socket_peer("192.0.2.7:50000".parse().unwrap());
//! let now = 1_700_000_000; // Unix seconds: the clock is yours
//! // The certificate must be one your TLS stack verified for this connection (chain,
//! // signature, validity): `decide` reads it, it does not verify it. Never pass a
//! // certificate a client or a proxy handed you in a header.
//! let verdict = tls::decide_der(b"not a certificate", &users, &seen, now);
//! assert!(!verdict.access.is_allowed());
//! # let _ = Provenance::Direct;
//! ```
//!
//! # Public API
//!
//! | module | what |
//! |---|---|
//! | [`observed`] | [`ObservedAddr`], [`Provenance`](observed::Provenance), [`from_proxy`](observed::from_proxy), [`from_forwarded`](observed::from_forwarded), [`from_signed`](observed::from_signed) |
//! | [`pin`] | [`x509_pin`](pin::x509_pin), [`x509_cert_pin`](pin::x509_cert_pin), [`ssh_pin`](pin::ssh_pin), audit text helpers |
//! | [`users`] | [`User`] (roles, pin requirement, allowed OS logins), [`UserDirectory`] |
//! | [`tls`] | [`decide`](tls::decide), [`decide_der`](tls::decide_der), [`check`](tls::check) (with audit), [`TlsVerdict`](tls::TlsVerdict), [`TlsAccess`](tls::TlsAccess), [`TlsDenyReason`](tls::TlsDenyReason), [`TlsEvent`](tls::TlsEvent), [`IdentityCache`](tls::IdentityCache) |
//! | [`ssh`] | [`authorize`](ssh::authorize), [`refusal`](ssh::refusal) (the refusal banner read back on the client: [`RefusalScan`](ssh::refusal::RefusalScan)), [`AuthContext`](ssh::AuthContext) (its [`CertIdentity`](ssh::CertIdentity): where a certificate's user is read), [`Authorized`](ssh::Authorized) (the user, and the OS `login`), [`SshDenial`](ssh::SshDenial), [`SshDenyReason`](ssh::SshDenyReason), [`SshAuditEvent`](ssh::SshAuditEvent) and its records |
//! | [`audit`] | [`AuditSink`](audit::AuditSink) and its fail-closed contract |
//! | [`lockout`] | sans-IO login lockout and per-address throttling, bounded tables |
//! | [`host`] | this host's own networks (loopback, interfaces, AnyIP routes), to refuse dials into itself |
//! | [`signed`] | [`WriteHeader`](signed::WriteHeader), [`VerifyHeader`](signed::VerifyHeader), [`step`](signed::step) (the header sequence of a listener with signed propagation) |
//!
//! # Features
//!
//! None is on by default; the decisions need none of them.
//!
//! | feature | module | what |
//! |---|---|---|
//! | `tokio` | `tokio`, `egress`, `shed`, `cut` | `accept`: a PROXY-aware accept that yields the stream and its observed address, bounded in bytes and time; outbound dials held to network restrictions (kernel destination, own listeners refused, live rules); oldest-first shedding of unauthenticated connections; a stream cut from outside its task |
//! | `rustls` | `rustls` | a mutual-TLS `ServerConfig` over a client CA, and the pin check of a finished handshake |
//! | `russh` | `russh` | `certificate`: the SSH table for a russh `Handler`'s `auth_openssh_certificate`, audited fail closed (and what stock russh loses) |
//! | `axum` | `axum` | `ObservedListener`: a PROXY-aware `axum::serve::Listener` with concurrent bounded stages and optional mutual TLS; the extractors `Observed` and `Verified` |
//! | `fleet` | `fleet` | etcd's v3 JSON gateway, sans-IO: requests (range, put, delete, txn with revision compares, compaction, leases, watch) encoded as a path and a body; answers and watch streams decoded strictly and within bounds |
//! | `fleet-tokio` | `fleet::client` | an async etcd client over `fleet` (tokio, hyper HTTP/1.1): one method per request, per-request timeout, bodies bounded while read, typed errors, a watch read message by message; several member endpoints with failover, each clear-text (loopback only) or TLS with an optional client certificate |
//! | `metrics` | `metrics` | the Prometheus text format 0.0.4 without dependencies: counters keyed by one bounded label, histograms of seconds, gauges, lock-free recording, a registry that renders them |
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod host;
pub mod lockout;
pub mod observed;
pub mod pin;
pub mod signed;
pub mod ssh;
pub mod tls;
pub mod users;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod cut;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod egress;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod shed;

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod rustls;

#[cfg(feature = "russh")]
#[cfg_attr(docsrs, doc(cfg(feature = "russh")))]
pub mod russh;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;

#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
pub mod fleet;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;

pub use ippin_policy::CertPin;
pub use observed::ObservedAddr;
pub use users::{User, UserDirectory};
