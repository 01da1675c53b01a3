//! The pin check, and the pins to put in issued and renewed certificates.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addr::{ObservedAddr, canonical_ip, net_contains};

/// The sentence every denial message ends with.
pub const LOG_IN_AGAIN: &str = "log in again to get a new certificate";

/// The source-IP pin a certificate carries, as the certificate code read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertPin {
    /// The certificate carries no pin.
    None,
    /// The certificate is pinned to one IP.
    Ip(IpAddr),
    /// The certificate is pinned to a list of networks (a single IP is a /32 or /128).
    Nets(Vec<IpNet>),
    /// The certificate carries a pin that could not be read. Always denied with
    /// [`DenyReason::InvalidPin`]; the string says what was wrong.
    Invalid(String),
}

impl CertPin {
    /// Whether the certificate carries a pin of any kind (readable or not).
    pub fn is_pinned(&self) -> bool {
        !matches!(self, CertPin::None)
    }

    /// Whether the pin names exactly one host: one IP, or a list of exactly one network of
    /// full length (`/32` or `/128`). Only such a pin satisfies a role that requires a pin
    /// (see [`check_pin`]); a wider pin, or several hosts, still restricts the certificate
    /// but does not count as pinned.
    pub fn is_single_host(&self) -> bool {
        match self {
            CertPin::Ip(_) => true,
            CertPin::Nets(nets) => match nets.as_slice() {
                [one] => one.prefix_len() == one.max_prefix_len(),
                _ => false,
            },
            CertPin::None | CertPin::Invalid(_) => false,
        }
    }

    /// Whether `ip` is inside the pin, comparing canonically. False for [`CertPin::None`] and
    /// [`CertPin::Invalid`].
    pub fn matches(&self, ip: IpAddr) -> bool {
        match self {
            CertPin::None | CertPin::Invalid(_) => false,
            CertPin::Ip(pinned) => canonical_ip(*pinned) == canonical_ip(ip),
            CertPin::Nets(nets) => nets.iter().any(|n| net_contains(n, ip)),
        }
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertPin::None => f.write_str("no pin"),
            CertPin::Ip(ip) => write!(f, "{}", canonical_ip(*ip)),
            CertPin::Nets(nets) => {
                for (i, n) in nets.iter().take(8).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}")?;
                }
                if nets.len() > 8 {
                    write!(f, ", ... ({} networks)", nets.len())?;
                }
                Ok(())
            }
            CertPin::Invalid(why) => {
                let why: String = why.chars().take(120).collect();
                write!(f, "unreadable pin ({why:?})")
            }
        }
    }
}

/// Why access, issue or renewal was refused. The codes from [`DenyReason::code`] are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The roles require a pin and the certificate (or the login) has none.
    PinnedIpMissing,
    /// The observed client IP is outside the certificate's pin.
    PinnedIpMismatch,
    /// A pin must be checked or set, but the client address is missing or not trusted.
    UntrustedClientIp,
    /// The certificate carries a pin that cannot be read.
    InvalidPin,
    /// The roles require a pin to one address, and the certificate's pin is wider (a network
    /// shorter than `/32` or `/128`, or several networks).
    PinTooWide,
    /// A certificate from a trusted cluster maps to no local role, or to one that does not exist.
    RoleMappingFailed,
}

impl DenyReason {
    /// The stable reason code: `pinned_ip_missing`, `pinned_ip_mismatch`,
    /// `untrusted_client_ip`, `invalid_pin`, `pin_too_wide` or `role_mapping_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::PinnedIpMissing => "pinned_ip_missing",
            DenyReason::PinnedIpMismatch => "pinned_ip_mismatch",
            DenyReason::UntrustedClientIp => "untrusted_client_ip",
            DenyReason::InvalidPin => "invalid_pin",
            DenyReason::PinTooWide => "pin_too_wide",
            DenyReason::RoleMappingFailed => "role_mapping_failed",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: a stable reason and a message for the user that ends with [`LOG_IN_AGAIN`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denial {
    /// The stable reason.
    pub reason: DenyReason,
    /// What was observed, what was pinned, and what to do ("log in again ...").
    pub message: String,
}

impl Denial {
    /// A denial whose message is `what` followed by `; ` and [`LOG_IN_AGAIN`].
    pub fn new(reason: DenyReason, what: impl fmt::Display) -> Self {
        Denial {
            reason,
            message: format!("{what}; {LOG_IN_AGAIN}"),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}

impl std::error::Error for Denial {}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused, with the reason.
    Deny(Denial),
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The denial, if any.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d),
        }
    }
}

/// The pin check for an access with a certificate.
///
/// | certificate pin | roles require a pin | observation | decision |
/// |---|---|---|---|
/// | unreadable (`Invalid`, or an empty list of networks) | any | any | deny `invalid_pin` |
/// | none | no | any | allow |
/// | none | yes | any | deny `pinned_ip_missing` |
/// | wider than one host (a network shorter than /32 or /128, or several) | yes | any | deny `pin_too_wide` |
/// | IP or networks | any | untrusted (flag false or port 0) | deny `untrusted_client_ip` |
/// | IP or networks | any | trusted, inside the pin | allow |
/// | IP or networks | any | trusted, outside the pin | deny `pinned_ip_mismatch` |
///
/// A pinned certificate is always checked, whatever the roles say now. Addresses and networks
/// compare canonically (see [`crate::canonical_ip`] and [`crate::canonical_net`]).
pub fn check_pin(requires_pin: bool, pin: &CertPin, observed: &ObservedAddr) -> Decision {
    check_pin_with(
        requires_pin,
        pin,
        observed,
        "your roles require a pinned certificate",
    )
}

pub(crate) fn check_pin_with(
    requires_pin: bool,
    pin: &CertPin,
    observed: &ObservedAddr,
    missing_why: &str,
) -> Decision {
    match pin {
        CertPin::Invalid(why) => Decision::Deny(Denial::new(
            DenyReason::InvalidPin,
            format_args!(
                "the certificate's source-IP pin cannot be read ({:?})",
                why.chars().take(120).collect::<String>()
            ),
        )),
        CertPin::Nets(nets) if nets.is_empty() => Decision::Deny(Denial::new(
            DenyReason::InvalidPin,
            "the certificate's source-IP pin lists no addresses",
        )),
        CertPin::None if requires_pin => Decision::Deny(Denial::new(
            DenyReason::PinnedIpMissing,
            format_args!(
                "{missing_why}, but this certificate has no pinned IP (client {})",
                observed.ip()
            ),
        )),
        CertPin::None => Decision::Allow,
        CertPin::Nets(_) if requires_pin && !pin.is_single_host() => Decision::Deny(Denial::new(
            DenyReason::PinTooWide,
            format_args!(
                "your roles require a certificate pinned to one address, but this \
                     certificate is pinned to {pin}"
            ),
        )),
        CertPin::Ip(_) | CertPin::Nets(_) => {
            if !observed.is_trusted() {
                Decision::Deny(Denial::new(
                    DenyReason::UntrustedClientIp,
                    format_args!(
                        "the certificate is pinned to {pin}, but the client address {} ({}) is not trusted, so the pin cannot be checked",
                        observed.ip(),
                        observed.provenance()
                    ),
                ))
            } else if pin.matches(observed.ip()) {
                Decision::Allow
            } else {
                Decision::Deny(Denial::new(
                    DenyReason::PinnedIpMismatch,
                    format_args!(
                        "client IP {} does not match the certificate's pinned IP {pin}",
                        observed.ip()
                    ),
                ))
            }
        }
    }
}

/// The IP to pin in a certificate issued at login.
///
/// | roles require a pin | observation | result |
/// |---|---|---|
/// | no | any | `Ok(None)`: issue without a pin |
/// | yes | trusted | `Ok(Some(canonical IP))` |
/// | yes | missing | `Err` `untrusted_client_ip` |
/// | yes | untrusted (flag false or port 0) | `Err` `untrusted_client_ip` |
///
/// A certificate without a pin is never issued to a user whose roles require one.
pub fn pin_for_issue(
    requires_pin: bool,
    observed: Option<&ObservedAddr>,
) -> Result<Option<IpAddr>, Denial> {
    if !requires_pin {
        return Ok(None);
    }
    match observed {
        None => Err(Denial::new(
            DenyReason::UntrustedClientIp,
            "your roles require a pinned certificate, but the login's client address is unknown",
        )),
        Some(o) if !o.is_trusted() => Err(Denial::new(
            DenyReason::UntrustedClientIp,
            format_args!(
                "your roles require a pinned certificate, but the login's client address {} ({}) is not trusted",
                o.ip(),
                o.provenance()
            ),
        )),
        Some(o) => Ok(Some(o.ip())),
    }
}

/// The pins a renewed certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPins {
    /// The pinned IP, copied from the presented certificate (canonical).
    pub pinned_ip: Option<IpAddr>,
    /// The login IP, copied from the presented certificate (canonical).
    pub login_ip: Option<IpAddr>,
}

/// The pins for a certificate renewed from a presented one.
///
/// Renewal never drops or moves a pin: the pinned IP and the login IP of the presented
/// certificate are copied, whatever the current address or role set.
///
/// | presented pin | roles require a pin now | observation | result |
/// |---|---|---|---|
/// | some IP | any | trusted, equal to the pin | the presented pins |
/// | some IP | any | trusted, different | `Err` `pinned_ip_mismatch` |
/// | some IP | any | untrusted | `Err` `untrusted_client_ip` |
/// | none | no | any | the presented pins (no pin) |
/// | none | yes | any | `Err` `pinned_ip_missing` |
///
/// The last row is a choice: rather than silently issuing an unpinned certificate (wrong for
/// the roles) or pinning the renewal request's address (a login that never happened), the
/// renewal is refused so that the user logs in again and gets a pin at login.
/// The presented pin is checked here too, so a caller that forgot [`check_pin`] still cannot
/// renew a pinned certificate from another address.
pub fn pins_for_renewal(
    presented_pinned: Option<IpAddr>,
    presented_login: Option<IpAddr>,
    requires_pin_now: bool,
    observed: &ObservedAddr,
) -> Result<RenewalPins, Denial> {
    let pins = RenewalPins {
        pinned_ip: presented_pinned.map(canonical_ip),
        login_ip: presented_login.map(canonical_ip),
    };
    let pin = match pins.pinned_ip {
        Some(ip) => CertPin::Ip(ip),
        None => CertPin::None,
    };
    match check_pin_with(
        requires_pin_now,
        &pin,
        observed,
        "your roles now require a pinned certificate, and it cannot be added at renewal",
    ) {
        Decision::Allow => Ok(pins),
        Decision::Deny(d) => Err(d),
    }
}
