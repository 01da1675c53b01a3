//! Roles, observed-address trust, the pin check and network restrictions: pure decisions, no
//! I/O, no clock.
//!
//! ```
//! use ippin_policy::{check_pin, pin_for_issue, CertPin, Decision, ObservedAddr, Provenance};
//!
//! // At login: the roles require a pin and the client address is trusted, so it is pinned.
//! let login = ObservedAddr::new("[::ffff:203.0.113.9]:41000".parse().unwrap(), Provenance::ProxyV2, true);
//! let pinned = pin_for_issue(true, Some(&login)).unwrap().unwrap().addr();
//! assert_eq!(pinned.to_string(), "203.0.113.9");
//!
//! // Later, from the same address (in any form): allowed.
//! let again = ObservedAddr::new("203.0.113.9:52000".parse().unwrap(), Provenance::Direct, true);
//! assert_eq!(check_pin(true, &CertPin::Ip(pinned), &again), Decision::Allow);
//!
//! // From elsewhere: denied with a stable reason code and a message that says what to do.
//! let elsewhere = ObservedAddr::new("198.51.100.1:52000".parse().unwrap(), Provenance::Direct, true);
//! let Decision::Deny(denial) = check_pin(false, &CertPin::Ip(pinned), &elsewhere) else { panic!() };
//! assert_eq!(denial.reason.code(), "pinned_ip_mismatch");
//! assert!(denial.message.ends_with("log in again to get a new certificate"));
//! ```
//!
//! The decision tables are in each function's documentation.
//!
//! # Public API
//!
//! * Observed addresses: [`ObservedAddr`] (address, [`Provenance`], trusted or not),
//!   [`canonical_ip`], [`canonical_net`].
//! * The pin: [`CertPin`] (what a certificate carries), [`PinRequirement`] and [`PinPrefix`]
//!   (what the roles ask: one address, or a network per `pin_source_ip_prefix`),
//!   [`pin_for_issue`] at login,
//!   [`pins_for_renewal`] ([`RenewalPins`]) and [`renewal_validity`] (one login's bound
//!   through renewals), [`check_pin`] at access, which returns a
//!   [`Decision`]: allow, or a [`Denial`] with a stable [`DenyReason`] code and a message
//!   ([`LOG_IN_AGAIN`]).
//! * Roles: [`Role`] ([`RoleVersion`], the document kept as a [`RawValue`]), [`RoleSet`],
//!   [`UserRoles`] (does any role require a pin, which OS logins it allows), [`RoleMap`] /
//!   [`RoleMapping`] for roles from a remote cluster, [`check_pin_remote`] ([`check_pin_remote_at`]
//!   for a pin bound to a private endpoint).
//! * OS logins: a role's `spec.allow.logins` / `spec.deny.logins` ([`Role::allow_logins`],
//!   [`Role::deny_logins`], [`Role::with_logins`] in code), each name checked by
//!   [`check_login`] (no templates); [`allowed_logins`] of several roles (deny wins).
//! * Forwarded headers: [`client_from_x_forwarded_for`] and [`client_from_forwarded`]
//!   under a [`ForwardedMode`], bounded by [`MAX_FORWARDED_BYTES`] and
//!   [`MAX_FORWARDED_HOPS`].
//! * Network restrictions: [`NetworkRestrictions`] ([`from_rules`](NetworkRestrictions::from_rules),
//!   [`decide`](NetworkRestrictions::decide) → [`NetDecision`]), [`kernel_destination`],
//!   [`embedded_ipv4`], and the audit record [`NetworkEvent`] ([`NetOperation`],
//!   [`NetAction`], [`NETWORK_EVENT_CODE`]).
//! * Errors: one [`Error`] enum; messages name the file, line and field where there is one.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `yaml`  | off     | The YAML resource parsers `parse_roles`, `RoleMap::parse`, `NetworkRestrictions::parse` and their limits (`MAX_YAML_*`), over `saphyr-parser` with a bounded loader (node, depth, document and size budgets; no recursion on input). |
//! | `serde` | off     | `serde::Serialize` for [`NetworkEvent`], [`NetOperation`] and [`NetAction`], with the JSON field names of the audit event. |
//!
//! Without features the crate depends on `ipnet` and `thiserror` only, and every decision is
//! available: roles and restrictions can be built in code ([`RoleSet::new`],
//! [`NetworkRestrictions::from_rules`]).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod addr;
mod error;
mod forwarded;
mod netrestrict;
mod pin;
mod roles;
mod yaml;

pub use addr::{Endpoint, ObservedAddr, Provenance, canonical_ip, canonical_net};
pub use error::Error;
pub use forwarded::{
    ForwardedMode, MAX_FORWARDED_BYTES, MAX_FORWARDED_HOPS, client_from_forwarded,
    client_from_x_forwarded_for,
};
pub use netrestrict::{
    MAX_NETWORK_RULES, NETWORK_EVENT_CODE, NetAction, NetDecision, NetOperation, NetworkEvent,
    NetworkRestrictions, embedded_ipv4, kernel_destination, min_allow_len, parse_net,
};
pub use pin::{
    CertPin, Decision, Denial, DenyReason, LOG_IN_AGAIN, PinPrefix, PinRequirement, RenewalPins,
    check_pin, check_pin_at, pin_for_issue, pins_for_renewal, pins_for_renewal_at,
    renewal_validity, stands_alone,
};
#[cfg(feature = "yaml")]
pub use roles::parse_roles;
pub use roles::{
    MAX_LOGIN_LEN, Role, RoleMap, RoleMapping, RoleSet, RoleVersion, UserRoles, allowed_logins,
    check_login, check_pin_remote, check_pin_remote_at,
};
#[cfg(feature = "yaml")]
pub use yaml::{
    MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_DOCUMENTS, MAX_YAML_EXPANDED_BYTES, MAX_YAML_NODES,
};
pub use yaml::{RawValue, yaml_unclear_character};

/// The README's examples, compiled and run as doctests (so that they stay true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
