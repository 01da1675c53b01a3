//! The pin check, and the pins to put in issued and renewed certificates.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::Error;
use crate::addr::{Endpoint, ObservedAddr, canonical_ip, canonical_net, net_contains};

/// How wide a pin may be: the prefix length a certificate issued at login is pinned to, per
/// address family (a role's `spec.options.pin_source_ip_prefix`).
///
/// [`PinPrefix::EXACT`] (`/32` and `/128`) pins one address, which is what a role that sets
/// `pin_source_ip: true` and nothing else asks for. A shorter prefix lets a client move inside
/// its network (an IPv6 host whose privacy addresses change daily inside one `/64`) without a
/// new login. Prefixes shorter than `/8` (IPv4) or `/32` (IPv6) are refused: they span many
/// operators and pin nothing that identifies a client.
///
/// Some IPv6 clients are always pinned to their one address, whatever the prefix, because the
/// other addresses of their network are not theirs ([`PinPrefix::len_for`]): addresses that
/// embed an IPv4 address (NAT64 `64:ff9b::/96` and the local-use `64:ff9b:1::/48`, where the
/// network is every IPv4 client of a translator; Teredo `2001::/32`, every client of one
/// Teredo server; 6to4 `2002::/16`; IPv4-compatible `::a.b.c.d`; SIIT's IPv4-translated
/// `::ffff:0:a.b.c.d`) and link-local `fe80::/10` (every host of every link, the zone being
/// dropped). IPv4 link-local clients (`169.254.0.0/16`) are pinned alone too, and no IPv4
/// network pin reaches into that range.
///
/// ```
/// use ippin_policy::PinPrefix;
/// let p = PinPrefix::new(32, 64).unwrap();
/// assert_eq!(p.network("2001:db8:1:2:aa::1".parse().unwrap()).to_string(), "2001:db8:1:2::/64");
/// assert_eq!(p.network("192.0.2.7".parse().unwrap()).to_string(), "192.0.2.7/32");
/// assert!(PinPrefix::new(0, 64).is_err());
/// assert_eq!(p.narrowest(PinPrefix::EXACT), PinPrefix::EXACT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PinPrefix {
    ipv4: u8,
    ipv6: u8,
}

impl PinPrefix {
    /// One address: `/32` for IPv4, `/128` for IPv6.
    pub const EXACT: PinPrefix = PinPrefix {
        ipv4: 32,
        ipv6: 128,
    };

    /// The shortest IPv4 prefix a pin may have: a `/8`. Shorter networks span many operators'
    /// allocations and identify no client.
    pub const MIN_IPV4: u8 = 8;
    /// The shortest IPv6 prefix a pin may have: a `/32`, the usual allocation to one operator.
    pub const MIN_IPV6: u8 = 32;

    /// A prefix of `ipv4` bits ([`PinPrefix::MIN_IPV4`] to 32) for IPv4 clients and `ipv6`
    /// bits ([`PinPrefix::MIN_IPV6`] to 128) for IPv6 clients.
    ///
    /// # Errors
    /// [`Error::PinPrefix`] when a length is out of its range.
    pub fn new(ipv4: u8, ipv6: u8) -> Result<PinPrefix, Error> {
        if !(Self::MIN_IPV4..=32).contains(&ipv4) {
            return Err(Error::PinPrefix {
                message: format!("ipv4 must be {} to 32, not {ipv4}", Self::MIN_IPV4),
            });
        }
        if !(Self::MIN_IPV6..=128).contains(&ipv6) {
            return Err(Error::PinPrefix {
                message: format!("ipv6 must be {} to 128, not {ipv6}", Self::MIN_IPV6),
            });
        }
        Ok(PinPrefix { ipv4, ipv6 })
    }

    /// The IPv4 prefix length.
    pub fn ipv4(&self) -> u8 {
        self.ipv4
    }

    /// The IPv6 prefix length.
    pub fn ipv6(&self) -> u8 {
        self.ipv6
    }

    /// Whether this is [`PinPrefix::EXACT`].
    pub fn is_exact(&self) -> bool {
        *self == PinPrefix::EXACT
    }

    /// The prefix length for `ip`'s family, after canonicalisation (an IPv4-mapped IPv6
    /// address is IPv4); 32 for an IPv4 address whose network would reach into link-local
    /// `169.254.0.0/16`; 128 for the IPv6 addresses that are always pinned alone (the type's
    /// documentation lists them), and whenever this prefix's network around `ip` would
    /// reach into the translator and tunnel ranges (a /32 around `64:ff9b:2::1`
    /// holds the NAT64 prefixes). `::/64` is the exception: an address there that embeds no
    /// IPv4 address (`::1`, `::1:0:0:1`) gets that network, though it holds the
    /// IPv4-compatible and IPv4-translated addresses, which are themselves pinned alone.
    /// Issue ([`network`](Self::network)) and check ([`admits`](Self::admits)) both ask this
    /// one function, so a pin issued is a pin admitted.
    pub fn len_for(&self, ip: IpAddr) -> u8 {
        match canonical_ip(ip) {
            IpAddr::V4(v4) if reaches_link_local_v4(v4, self.ipv4) => 32,
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(v6) if one_address_only(v6) || reaches_alone(v6, self.ipv6) => 128,
            IpAddr::V6(_) => self.ipv6,
        }
    }

    /// The narrower of two prefixes, per family (the longer length). When several roles pin,
    /// the narrowest wins.
    pub fn narrowest(self, other: PinPrefix) -> PinPrefix {
        PinPrefix {
            ipv4: self.ipv4.max(other.ipv4),
            ipv6: self.ipv6.max(other.ipv6),
        }
    }

    /// The canonical network of this prefix that holds `ip`: the pin issued to a client at
    /// `ip`. Host bits are zero.
    pub fn network(&self, ip: IpAddr) -> IpNet {
        let ip = canonical_ip(ip);
        // The lengths were checked in `new`, so `IpNet::new` cannot fail; the fallback is the
        // one-address network, never a wider one.
        IpNet::new(ip, self.len_for(ip))
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(ip))
    }

    /// Whether `pin` is no wider than this prefix: one IP, or exactly one network whose
    /// prefix length (after canonicalisation) is at least this prefix's length for its
    /// family. Several networks never qualify.
    pub fn admits(&self, pin: &CertPin) -> bool {
        match pin {
            CertPin::Ip(_) => true,
            CertPin::Nets(nets) => match nets.as_slice() {
                [one] => {
                    let one = canonical_net(*one);
                    one.prefix_len() >= self.len_for(one.network())
                }
                _ => false,
            },
            CertPin::None | CertPin::Invalid(_) => false,
        }
    }
}

/// The IPv6 ranges of translators, tunnels and links whose addresses are pinned alone
/// (network, length), and that no network pin may reach into: NAT64 well-known and
/// local-use, Teredo, 6to4, link-local. (`::/64`, the network of `::1`, holds the
/// IPv4-compatible `::a.b.c.d` and SIIT's IPv4-translated `::ffff:0:a.b.c.d`, observed only
/// through a tunnel or translator the server's host configures itself: those clients are
/// pinned alone, but `::1`'s /64 stays a network. Operators' own NAT64 prefixes (RFC 6052
/// network-specific) cannot be told from other addresses: pin them exactly.
/// IPv4-mapped addresses are compared as IPv4, which no IPv6 network holds.)
const ALONE: [(u128, u8); 5] = [
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96),
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32),
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10),
];

/// Whether the network of length `len` around `v4` overlaps IPv4 link-local `169.254.0.0/16`
/// (every host of every link, the zone being dropped), whose addresses are pinned alone.
fn reaches_link_local_v4(v4: std::net::Ipv4Addr, len: u8) -> bool {
    let shorter = u32::MAX
        .checked_shl(32 - u32::from(len.min(16)))
        .unwrap_or(0);
    u32::from(v4) & shorter == 0xa9fe_0000 & shorter
}

/// Whether the network of length `len` around `v6` overlaps one of the [`ALONE`] ranges
/// (two networks overlap when one holds the other).
fn reaches_alone(v6: std::net::Ipv6Addr, len: u8) -> bool {
    let mask = |l: u8| {
        u128::MAX
            .checked_shl(128 - u32::from(l.min(128)))
            .unwrap_or(0)
    };
    let a = u128::from(v6);
    ALONE.iter().any(|&(net, l)| {
        let shorter = mask(l.min(len));
        a & shorter == net & shorter
    })
}

/// Whether the neighbours of `ip` in any IPv6 prefix are other clients, so that it stands for
/// one client alone: IPv6 addresses of translators and tunnels that embed an IPv4 address
/// ([`embedded_ipv4`](crate::embedded_ipv4), and SIIT's IPv4-translated `::ffff:0:a.b.c.d`),
/// the local-use NAT64 prefix `64:ff9b:1::/48`, and link-local addresses. A prefix pin never
/// widens such an address, and per-client limits (`ippin_access::lockout::peer_key`) count it
/// alone, not with its /64. `false` for IPv4.
pub fn stands_alone(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => one_address_only(v6),
        _ => false,
    }
}

/// IPv6 addresses whose neighbours in a prefix are other clients: translators and tunnels
/// that embed an IPv4 address (SIIT's IPv4-translated `::ffff:0:a.b.c.d` among them), the
/// local-use NAT64 prefix, and link-local addresses.
fn one_address_only(v6: std::net::Ipv6Addr) -> bool {
    let a = u128::from(v6);
    crate::netrestrict::embedded_ipv4(IpAddr::V6(v6)).is_some()
        || a >> 32 == 0xffff_0000
        || a >> 80 == 0x0064_ff9b_0001
        || a >> 118 == 0x3fa
}

impl Default for PinPrefix {
    fn default() -> Self {
        PinPrefix::EXACT
    }
}

impl fmt::Display for PinPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{} for IPv4, /{} for IPv6", self.ipv4, self.ipv6)
    }
}

/// What a user's roles require of a certificate's pin.
///
/// `From<bool>` maps `true` to a pin of one address ([`PinPrefix::EXACT`]) and `false` to no
/// requirement, so a caller that only knows "pin required" gets the strict check.
///
/// There is deliberately no conversion from a role's `Option<PinPrefix>`
/// ([`crate::Role::pin_prefix`]): there `None` means "one address" when the role pins, not
/// "no pin". Ask the role or the user's roles ([`crate::Role::pin_requirement`],
/// [`crate::UserRoles::pin_requirement`]):
///
/// ```compile_fail
/// use ippin_policy::{PinPrefix, PinRequirement};
/// let prefix: Option<PinPrefix> = None; // a pinning role without `pin_source_ip_prefix`
/// let wrong: PinRequirement = prefix.into();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PinRequirement {
    /// No role pins: an unpinned certificate is fine (a pinned one is still checked).
    #[default]
    NotRequired,
    /// Some role pins: the certificate must be pinned, no wider than this prefix.
    Required(PinPrefix),
}

impl PinRequirement {
    /// Whether a pin is required.
    pub fn is_required(&self) -> bool {
        matches!(self, PinRequirement::Required(_))
    }

    /// The prefix a required pin may be at most as wide as.
    pub fn prefix(&self) -> Option<PinPrefix> {
        match self {
            PinRequirement::NotRequired => None,
            PinRequirement::Required(p) => Some(*p),
        }
    }
}

impl PinRequirement {
    /// The stricter of two requirements: required when either is, no wider than either's
    /// prefix (per family, the longer length). For a decision that must satisfy two role
    /// sets, e.g. the roles when a connection was allowed and the roles now.
    pub fn strictest(self, other: PinRequirement) -> PinRequirement {
        match (self.prefix(), other.prefix()) {
            (Some(a), Some(b)) => PinRequirement::Required(a.narrowest(b)),
            (Some(p), None) | (None, Some(p)) => PinRequirement::Required(p),
            (None, None) => PinRequirement::NotRequired,
        }
    }
}

impl From<bool> for PinRequirement {
    fn from(required: bool) -> Self {
        if required {
            PinRequirement::Required(PinPrefix::EXACT)
        } else {
            PinRequirement::NotRequired
        }
    }
}

impl From<PinPrefix> for PinRequirement {
    fn from(p: PinPrefix) -> Self {
        PinRequirement::Required(p)
    }
}

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
    /// The roles require a pin, and the certificate's pin is wider than their prefix allows
    /// (by default one address: a network shorter than `/32` or `/128`; with
    /// `pin_source_ip_prefix`, a network shorter than that prefix), or lists several networks.
    PinTooWide,
    /// A certificate from a trusted cluster maps to no local role, or to one that does not exist.
    RoleMappingFailed,
    /// The certificate's pin was issued through one private endpoint and the client came
    /// through another, or through none (or the other way round): the same address behind
    /// two endpoints is two clients ([`crate::Endpoint`]).
    PinnedEndpointMismatch,
}

impl DenyReason {
    /// The stable reason code: `pinned_ip_missing`, `pinned_ip_mismatch`,
    /// `untrusted_client_ip`, `invalid_pin`, `pin_too_wide`, `role_mapping_failed` or
    /// `pinned_endpoint_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::PinnedIpMissing => "pinned_ip_missing",
            DenyReason::PinnedIpMismatch => "pinned_ip_mismatch",
            DenyReason::UntrustedClientIp => "untrusted_client_ip",
            DenyReason::InvalidPin => "invalid_pin",
            DenyReason::PinTooWide => "pin_too_wide",
            DenyReason::RoleMappingFailed => "role_mapping_failed",
            DenyReason::PinnedEndpointMismatch => "pinned_endpoint_mismatch",
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
/// | wider than the required prefix (by default one host; several networks always) | yes | any | deny `pin_too_wide` |
/// | IP or networks | any | untrusted (flag false or port 0) | deny `untrusted_client_ip` |
/// | IP or networks | any | trusted, inside the pin | allow |
/// | IP or networks | any | trusted, outside the pin | deny `pinned_ip_mismatch` |
///
/// A pinned certificate is always checked, whatever the roles say now. Addresses and networks
/// compare canonically (see [`crate::canonical_ip`] and [`crate::canonical_net`]); a network
/// pin admits every address it contains.
///
/// `required` is what the roles ask: `true`/`false`, or a [`PinRequirement`] with the
/// narrowest [`PinPrefix`] of the user's pinning roles ([`crate::UserRoles::pin_requirement`]).
/// `true` means one address, so a caller that passes a bool never accepts a prefix pin for a
/// role that requires a pin.
///
/// This is [`check_pin_at`] for a certificate bound to no private endpoint: a pinned
/// certificate is then refused (`pinned_endpoint_mismatch`) to a client that came through
/// one. A caller whose certificates can carry an endpoint calls [`check_pin_at`].
pub fn check_pin(
    required: impl Into<PinRequirement>,
    pin: &CertPin,
    observed: &ObservedAddr,
) -> Decision {
    check_pin_at(required, pin, None, observed)
}

/// [`check_pin`] for a certificate whose pin may be bound to the private endpoint it was
/// issued through (`pinned_endpoint`, from the certificate; see [`crate::Endpoint`]).
///
/// After every row of [`check_pin`] that allows a pinned certificate, the endpoints must be
/// the same: the certificate's and the observation's ([`ObservedAddr::endpoint`]), both
/// absent or both the same name; otherwise `pinned_endpoint_mismatch`. A certificate that
/// names an endpoint without a pin is `invalid_pin`.
///
/// ```
/// use ippin_policy::{CertPin, Endpoint, ObservedAddr, check_pin_at};
/// let e1 = Endpoint::parse("vpce-0123456789abcdef0").unwrap();
/// let e2 = Endpoint::parse("vpce-00000000000000001").unwrap();
/// let pin = CertPin::Ip("10.0.0.5".parse().unwrap());
/// let via = |e: Endpoint| ObservedAddr::socket_peer("10.0.0.5:4000".parse().unwrap()).with_endpoint(e);
/// assert!(check_pin_at(true, &pin, Some(&e1), &via(e1)).is_allow());
/// let other = check_pin_at(true, &pin, Some(&e1), &via(e2));
/// assert_eq!(other.denial().unwrap().reason.code(), "pinned_endpoint_mismatch");
/// let direct = ObservedAddr::socket_peer("10.0.0.5:4000".parse().unwrap());
/// assert!(!check_pin_at(true, &pin, Some(&e1), &direct).is_allow());
/// assert!(!check_pin_at(true, &pin, None, &via(e1)).is_allow());
/// ```
pub fn check_pin_at(
    required: impl Into<PinRequirement>,
    pin: &CertPin,
    pinned_endpoint: Option<&Endpoint>,
    observed: &ObservedAddr,
) -> Decision {
    check_pin_with(
        required.into(),
        pin,
        pinned_endpoint,
        observed,
        "your roles require a pinned certificate",
    )
}

pub(crate) fn check_pin_with(
    required: PinRequirement,
    pin: &CertPin,
    pinned_endpoint: Option<&Endpoint>,
    observed: &ObservedAddr,
    missing_why: &str,
) -> Decision {
    let decision = check_pin_address(required, pin, observed, missing_why);
    if !decision.is_allow() {
        return decision;
    }
    let seen = observed.endpoint();
    match pin {
        CertPin::None if pinned_endpoint.is_some() => Decision::Deny(Denial::new(
            DenyReason::InvalidPin,
            "the certificate names a private endpoint but carries no pinned IP",
        )),
        CertPin::None => decision,
        _ if pinned_endpoint == seen.as_ref() => decision,
        _ => Decision::Deny(Denial::new(
            DenyReason::PinnedEndpointMismatch,
            format_args!(
                "the certificate is pinned to {pin} {}, but this client came {}",
                pinned_endpoint.map_or_else(
                    || "as seen without a private endpoint".to_owned(),
                    |e| format!("through private endpoint {e}")
                ),
                seen.map_or_else(
                    || "through no private endpoint".to_owned(),
                    |e| format!("through private endpoint {e}")
                ),
            ),
        )),
    }
}

fn check_pin_address(
    required: PinRequirement,
    pin: &CertPin,
    observed: &ObservedAddr,
    missing_why: &str,
) -> Decision {
    let requires_pin = required.is_required();
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
        CertPin::Nets(_) if required.prefix().is_some_and(|prefix| !prefix.admits(pin)) => {
            let prefix = required.prefix().unwrap_or_default();
            if prefix.is_exact() {
                Decision::Deny(Denial::new(
                    DenyReason::PinTooWide,
                    format_args!(
                        "your roles require a certificate pinned to one address, but this \
                         certificate is pinned to {pin}"
                    ),
                ))
            } else {
                Decision::Deny(Denial::new(
                    DenyReason::PinTooWide,
                    format_args!(
                        "your roles require a certificate pinned to one network no wider than \
                         {prefix}, but this certificate is pinned to {pin}"
                    ),
                ))
            }
        }
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

/// The pin of a certificate issued at login: the network of the required prefix that holds
/// the login's client address ([`PinPrefix::network`]; one address, `/32` or `/128`, unless a
/// role sets `pin_source_ip_prefix`).
///
/// | roles require a pin | observation | result |
/// |---|---|---|
/// | no | any | `Ok(None)`: issue without a pin |
/// | yes, prefix `p` | trusted | `Ok(Some(p.network(canonical IP)))` |
/// | yes | missing | `Err` `untrusted_client_ip` |
/// | yes | untrusted (flag false or port 0) | `Err` `untrusted_client_ip` |
///
/// A certificate without a pin is never issued to a user whose roles require one.
pub fn pin_for_issue(
    required: impl Into<PinRequirement>,
    observed: Option<&ObservedAddr>,
) -> Result<Option<IpNet>, Denial> {
    let Some(prefix) = required.into().prefix() else {
        return Ok(None);
    };
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
        Some(o) => Ok(Some(prefix.network(o.ip()))),
    }
}

/// The pins a renewed certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPins {
    /// The pin, copied from the presented certificate (canonical network; one address is a
    /// `/32` or `/128`).
    pub pinned: Option<IpNet>,
    /// The login IP, copied from the presented certificate (canonical).
    pub login_ip: Option<IpAddr>,
    /// The private endpoint the pin is bound to, copied from the presented certificate.
    pub endpoint: Option<Endpoint>,
}

/// The validity, in Unix seconds, of certificates renewed from one whose validity started at
/// `presented_not_before`: `(not_before, not_after)`, or `None` when the login is too old to
/// renew.
///
/// One login lasts `max_session` seconds through renewals: the renewed certificates keep the
/// presented one's `not_before` (for a certificate issued at a login, the start of that
/// login's validity) and end at `now + ttl` or at `not_before + max_session`, whichever comes
/// first. Without such a bound, a certificate that can be renewed (unpinned, or in the hands
/// of someone who shares the pinned address) renews itself for as long as its user exists.
///
/// | `now` | result |
/// |---|---|
/// | more than `ttl` before `not_before + max_session` | `(not_before, now + ttl)` |
/// | within `ttl` of it | `(not_before, not_before + max_session)` |
/// | at or after it (or it overflows) | `None`: the user logs in again |
///
/// ```
/// use ippin_policy::renewal_validity;
/// let login = 1_000_000; // the first certificate's not_before
/// let (hour, day) = (3600, 86_400);
/// assert_eq!(renewal_validity(login, login + 2 * hour, 8 * hour, day), Some((login, login + 10 * hour)));
/// assert_eq!(renewal_validity(login, login + 20 * hour, 8 * hour, day), Some((login, login + day)));
/// assert_eq!(renewal_validity(login, login + day, 8 * hour, day), None);
/// ```
#[must_use]
pub fn renewal_validity(
    presented_not_before: u64,
    now: u64,
    ttl: u64,
    max_session: u64,
) -> Option<(u64, u64)> {
    let end = presented_not_before.checked_add(max_session)?;
    (now < end).then(|| (presented_not_before, now.saturating_add(ttl).min(end)))
}

/// The pins for a certificate renewed from a presented one.
///
/// Renewal never drops, moves, widens or narrows a pin: the pin (address or network, as
/// issued) and the login IP of the presented certificate are copied, whatever the current
/// address or role set.
///
/// | presented pin | roles require a pin now | observation | result |
/// |---|---|---|---|
/// | one address or one network | no wider than required (or not required) | trusted, inside the pin | the presented pins |
/// | one address or one network | wider than the required prefix | any | `Err` `pin_too_wide` |
/// | one address or one network | any | trusted, outside | `Err` `pinned_ip_mismatch` |
/// | one address or one network | any | untrusted | `Err` `untrusted_client_ip` |
/// | unreadable, or several networks | any | any | `Err` `invalid_pin` |
/// | none | no | any | the presented pins (no pin) |
/// | none | yes | any | `Err` `pinned_ip_missing` |
///
/// The last row is a choice: rather than silently issuing an unpinned certificate (wrong for
/// the roles) or pinning the renewal request's address (a login that never happened), the
/// renewal is refused so that the user logs in again and gets a pin at login. The second row
/// likewise: a role narrowed since login is met by a new login, not by a renewal that would
/// re-sign the wider pin. A pin this function cannot carry over as issued (unreadable, or
/// a list of networks, which ippin never issues) is refused rather than dropped.
/// The presented pin is checked here too, so a caller that forgot [`check_pin`] still cannot
/// renew a pinned certificate from another address.
///
/// `presented_pin` is the pin as the certificate code read it ([`CertPin`]), not an
/// `Option`: a caller cannot turn an unreadable pin into "no pin" on the way in.
pub fn pins_for_renewal(
    presented_pin: &CertPin,
    presented_login: Option<IpAddr>,
    required_now: impl Into<PinRequirement>,
    observed: &ObservedAddr,
) -> Result<RenewalPins, Denial> {
    pins_for_renewal_at(presented_pin, None, presented_login, required_now, observed)
}

/// [`pins_for_renewal`] for a certificate whose pin may be bound to a private endpoint
/// (`presented_endpoint`): the endpoint is copied with the pin, and checked as
/// [`check_pin_at`] checks it (a renewal through another endpoint, or through none, is
/// refused `pinned_endpoint_mismatch`).
pub fn pins_for_renewal_at(
    presented_pin: &CertPin,
    presented_endpoint: Option<&Endpoint>,
    presented_login: Option<IpAddr>,
    required_now: impl Into<PinRequirement>,
    observed: &ObservedAddr,
) -> Result<RenewalPins, Denial> {
    let pinned = match presented_pin {
        CertPin::None => None,
        CertPin::Ip(ip) => Some(IpNet::from(*ip)),
        CertPin::Nets(nets) if nets.len() == 1 => nets.first().copied(),
        CertPin::Nets(nets) if nets.is_empty() => {
            return Err(Denial::new(
                DenyReason::InvalidPin,
                "the certificate's pin is an empty list of networks",
            ));
        }
        CertPin::Nets(nets) => {
            return Err(Denial::new(
                DenyReason::InvalidPin,
                format_args!(
                    "the certificate is pinned to {} networks, which a renewal cannot carry over",
                    nets.len()
                ),
            ));
        }
        CertPin::Invalid(_) => {
            return Err(Denial::new(
                DenyReason::InvalidPin,
                format_args!("the certificate carries an {presented_pin}"),
            ));
        }
    };
    let pins = RenewalPins {
        pinned: pinned.map(canonical_net),
        login_ip: presented_login.map(canonical_ip),
        endpoint: presented_endpoint.copied(),
    };
    let pin = match pins.pinned {
        Some(net) if net.prefix_len() == net.max_prefix_len() => CertPin::Ip(net.network()),
        Some(net) => CertPin::Nets(vec![net]),
        None => CertPin::None,
    };
    match check_pin_with(
        required_now.into(),
        &pin,
        presented_endpoint,
        observed,
        "your roles now require a pinned certificate, and it cannot be added at renewal",
    ) {
        Decision::Allow => Ok(pins),
        Decision::Deny(d) => Err(d),
    }
}
