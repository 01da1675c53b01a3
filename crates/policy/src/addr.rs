//! The observed client address: what was seen, how, and whether it can be believed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

/// How the server learned a client address.
///
/// The stable names returned by [`Provenance::as_str`] appear in logs and audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provenance {
    /// The TCP peer of the accepted socket.
    Direct,
    /// A PROXY protocol version 1 (text) header.
    ProxyV1,
    /// A PROXY protocol version 2 (binary) header.
    ProxyV2,
    /// An address propagated by another component with a signature the server verified.
    SignedPropagation,
    /// An `X-Forwarded-For` or RFC 7239 `Forwarded` HTTP header.
    ForwardedHeader,
    /// A PROXY v2 `LOCAL` header: the proxy connected on its own behalf (a health check) and
    /// names no client. The address is the proxy's own; such an observation is never trusted
    /// ([`ObservedAddr::new`] forces it), so it can neither pin nor satisfy a pin.
    ProxyLocal,
}

impl Provenance {
    /// The stable name: `direct`, `proxy_v1`, `proxy_v2`, `signed_propagation`, `forwarded` or
    /// `proxy_local`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provenance::Direct => "direct",
            Provenance::ProxyV1 => "proxy_v1",
            Provenance::ProxyV2 => "proxy_v2",
            Provenance::SignedPropagation => "signed_propagation",
            Provenance::ForwardedHeader => "forwarded",
            Provenance::ProxyLocal => "proxy_local",
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns the canonical form of `ip`: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) becomes
/// the IPv4 address `a.b.c.d`; every other address is returned unchanged.
///
/// The deprecated IPv4-compatible form `::a.b.c.d` is *not* converted: it is a different
/// IPv6 address, not an IPv4 one (this is why [`std::net::Ipv6Addr::to_ipv4`], which converts both, is
/// never used here).
///
/// ```
/// use std::net::IpAddr;
/// use ippin_policy::canonical_ip;
///
/// let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
/// assert_eq!(canonical_ip(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
/// let compatible: IpAddr = "::192.0.2.7".parse().unwrap();
/// assert_eq!(canonical_ip(compatible), compatible);
/// ```
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
    }
}

/// Returns the canonical form of a network used to *match* addresses (pins, trusted proxies).
///
/// An IPv6 network that lies inside `::ffff:0:0/96` (prefix length 96 or more) is rewritten
/// as the IPv4 network it maps: `::ffff:192.0.2.0/120` becomes `192.0.2.0/24`, and
/// `::ffff:0:0/96` itself becomes `0.0.0.0/0`. Other networks are returned unchanged (with host
/// bits cleared), so an IPv6 network wider than /96 such as `::/0` never matches an IPv4
/// address — canonical IPv4 addresses are matched by IPv4 networks only.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V4(v4) => IpNet::V4(v4.trunc()),
        IpNet::V6(v6) => {
            let v6 = v6.trunc();
            if v6.prefix_len() >= 96
                && let Some(v4) = v6.network().to_ipv4_mapped()
                && let Ok(net4) = Ipv4Net::new(v4, v6.prefix_len() - 96)
            {
                return IpNet::V4(net4.trunc());
            }
            IpNet::V6(v6)
        }
    }
}

/// Whether `net` (any form) contains `ip` (any form), comparing canonically.
pub(crate) fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    canonical_net(*net).contains(&canonical_ip(ip))
}

/// The private endpoint a client came through: a cloud load balancer's private link (AWS VPC
/// endpoint, Azure Private Link, GCP Private Service Connect), named as `ippin-proxy-protocol`
/// names it (`vpce-0123456789abcdef0`, `azure:1234`, `gcp:5678`).
///
/// Behind such an endpoint the client's address is an address of the *consumer's* network,
/// which every consumer plans for itself: two clients behind two endpoints may have the same
/// address. So an observation through an endpoint carries it ([`ObservedAddr::with_endpoint`]),
/// a pin issued from it is bound to it, and the pin check refuses the same address through
/// another endpoint, or through none ([`crate::check_pin_at`]).
///
/// ```
/// use ippin_policy::Endpoint;
/// assert_eq!(Endpoint::parse("vpce-0123456789abcdef0").unwrap().as_str(), "vpce-0123456789abcdef0");
/// assert!(Endpoint::parse("VPCE-1").is_none());
/// assert!(Endpoint::parse("").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    buf: [u8; Endpoint::MAX_LEN],
    len: u8,
}

impl Endpoint {
    /// The longest name: 32 bytes (`gcp:` and a 64-bit decimal number is 24).
    pub const MAX_LEN: usize = 32;

    /// `text` as an endpoint name: 1 to [`Endpoint::MAX_LEN`] bytes of lowercase ASCII
    /// letters, digits, `-` and `:`; `None` otherwise.
    pub fn parse(text: &str) -> Option<Endpoint> {
        let bytes = text.as_bytes();
        if bytes.is_empty()
            || bytes.len() > Endpoint::MAX_LEN
            || !bytes
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b':'))
        {
            return None;
        }
        let mut buf = [0; Endpoint::MAX_LEN];
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Endpoint {
            buf,
            len: u8::try_from(bytes.len()).ok()?,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII was stored.
        std::str::from_utf8(self.buf.get(..usize::from(self.len)).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({:?})", self.as_str())
    }
}

/// A client address as the server observed it.
///
/// The IP is canonical (IPv4-mapped IPv6 becomes IPv4 at construction). An observation is
/// *trusted* when the server can believe it names the real client: the socket peer, a PROXY
/// header from a trusted load balancer, a verified signed propagation, or a forwarded header
/// read through trusted proxies. Port 0 marks an untrusted address in the compatible form used
/// by the existing system, so an untrusted observation always has port 0 and an observation
/// with port 0 is never trusted.
///
/// ```
/// use ippin_policy::{ObservedAddr, Provenance};
///
/// let seen = ObservedAddr::new("[::ffff:198.51.100.4]:5000".parse().unwrap(), Provenance::ProxyV2, true);
/// assert_eq!(seen.ip().to_string(), "198.51.100.4");
/// assert!(seen.is_trusted());
///
/// let unsigned = ObservedAddr::new("198.51.100.4:5000".parse().unwrap(), Provenance::ProxyV2, false);
/// assert_eq!(unsigned.port(), 0);
/// assert!(!unsigned.is_trusted());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObservedAddr {
    ip: IpAddr,
    port: u16,
    provenance: Provenance,
    trusted: bool,
    endpoint: Option<Endpoint>,
}

impl ObservedAddr {
    /// Records an observation. The IP is canonicalised; an untrusted observation gets port 0
    /// (the compatible form), and a trusted one with port 0 stays untrusted. A
    /// [`Provenance::ProxyLocal`] observation is never trusted.
    ///
    /// `trusted: true` is the caller's word that the address names the real client: that
    /// the header it came from was sent by a proxy the listener trusts, or its signature
    /// verified. Every pin check believes it. Prefer the constructors that check the
    /// evidence themselves: [`ObservedAddr::socket_peer`] for a direct connection,
    /// [`crate::client_from_forwarded`] and [`crate::client_from_x_forwarded_for`] for
    /// forwarded headers, and in `ippin-access`
    /// `observed::from_proxy` (a PROXY header under a listener policy) and
    /// `observed::from_signed` (a verified signed header). Never pass `true` for an address
    /// read from a header whose sender you did not check.
    pub fn new(addr: SocketAddr, provenance: Provenance, trusted: bool) -> Self {
        let trusted = trusted && addr.port() != 0 && provenance != Provenance::ProxyLocal;
        ObservedAddr {
            ip: canonical_ip(addr.ip()),
            port: if trusted { addr.port() } else { 0 },
            provenance,
            trusted,
            endpoint: None,
        }
    }

    /// This observation, made through the private endpoint `endpoint` (see [`Endpoint`]): a
    /// pin issued from it is bound to the endpoint, and a pin is checked against both.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// The private endpoint the client came through, if the observation names one.
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.endpoint
    }

    /// The socket peer of a direct connection (no proxy in between): trusted, as the TCP
    /// handshake vouches for it.
    pub fn socket_peer(addr: SocketAddr) -> Self {
        ObservedAddr::new(addr, Provenance::Direct, true)
    }

    /// An untrusted observation of `ip` (port 0).
    pub fn untrusted(ip: IpAddr, provenance: Provenance) -> Self {
        ObservedAddr::new(SocketAddr::new(ip, 0), provenance, false)
    }

    /// An untrusted observation that carries no address at all (a forwarded header that says
    /// `unknown` or gives an obfuscated identifier). The IP is the unspecified `0.0.0.0`.
    pub fn unknown(provenance: Provenance) -> Self {
        ObservedAddr::untrusted(IpAddr::V4(Ipv4Addr::UNSPECIFIED), provenance)
    }

    /// The canonical client IP, **trusted or not**: for an untrusted observation it is
    /// whatever the sender claimed (a PROXY header from anyone on an `unspecified` listener,
    /// say). Good for logs; for a decision take [`ObservedAddr::trusted_ip`], or pass the
    /// whole observation to [`crate::check_pin`], which refuses untrusted ones.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The canonical client IP when the observation is trusted, `None` otherwise: what a
    /// decision that takes a bare IP (an SSH certificate's `source-address` check, a
    /// per-client limit) must be given.
    ///
    /// ```
    /// use ippin_policy::{ObservedAddr, Provenance};
    /// let claimed = ObservedAddr::untrusted("192.0.2.7".parse().unwrap(), Provenance::ProxyV1);
    /// assert_eq!(claimed.ip().to_string(), "192.0.2.7");
    /// assert_eq!(claimed.trusted_ip(), None);
    /// let seen = ObservedAddr::new("192.0.2.7:4000".parse().unwrap(), Provenance::Direct, true);
    /// assert_eq!(seen.trusted_ip(), Some("192.0.2.7".parse().unwrap()));
    /// ```
    pub fn trusted_ip(&self) -> Option<IpAddr> {
        self.is_trusted().then_some(self.ip)
    }

    /// The client port; 0 for an untrusted observation.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address in the compatible form: canonical IP and port, port 0 when untrusted.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// How the address was learned.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// Whether the observation can be believed. Always false when the port is 0.
    pub fn is_trusted(&self) -> bool {
        self.trusted && self.port != 0
    }
}

impl std::fmt::Display for ObservedAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}",
            self.ip,
            self.provenance,
            if self.is_trusted() {
                "trusted"
            } else {
                "untrusted"
            }
        )?;
        match self.endpoint {
            Some(e) => write!(f, ", through endpoint {e})"),
            None => f.write_str(")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_net_becomes_ipv4() {
        let n: IpNet = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(canonical_net(n), "192.0.2.0/24".parse::<IpNet>().unwrap());
        let all: IpNet = "::ffff:0:0/96".parse().unwrap();
        assert_eq!(canonical_net(all), "0.0.0.0/0".parse::<IpNet>().unwrap());
        let wide: IpNet = "::/64".parse().unwrap();
        assert_eq!(canonical_net(wide), wide);
        let compat: IpNet = "::192.0.2.0/120".parse().unwrap();
        assert_eq!(canonical_net(compat), compat);
    }
}
