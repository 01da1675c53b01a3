//! Listener policy: from the socket peer and the parsed header to the
//! observed client address, its provenance and whether it may be trusted.
//! Sans-IO: the caller reads the bytes and hands them over.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::{
    Addresses, CloudTlvError, Command, Detection, EndpointId, Error, Header, MAX_V1_LEN,
    ParseConfig, detect, endpoint_ids, parse_with, starts_with_header,
};

/// Whether a listener expects a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyMode {
    /// A header is required; a connection without one is refused.
    On,
    /// No header may be sent; a connection with one is refused.
    Off,
    /// A header is optional. Its address is used but marked untrusted (port
    /// 0, `trusted: false`), so that it can never satisfy a pin: anyone able
    /// to connect could have written it.
    Unspecified,
}

/// How a listener treats PROXY headers.
///
/// # Decision table
///
/// | mode        | header            | peer in `trusted_proxies` | result: addr, provenance, trusted |
/// |-------------|-------------------|---------------------------|-----------------------------------|
/// | any         | none              | —                         | On: refused `header_required`; else peer, Direct, **true** |
/// | Off         | any               | —                         | refused `header_forbidden` |
/// | On, Unspec. | any               | no (list set; On with no list) | refused `untrusted_proxy` |
/// | On, Unspec. | followed by another header | yes / no list    | refused `duplicate_header` |
/// | On          | PROXY with IP source | yes / no list          | header source, ProxyV1/V2, **true** |
/// | On          | LOCAL             | yes / no list             | peer with port 0, Local, false (a proxy's own address never pins) |
/// | On          | PROXY UNKNOWN/UNSPEC/UNIX | yes / no list     | peer with port 0, ProxyV1/V2, false |
/// | Unspecified | PROXY with IP source | yes / no list          | header source with port 0, ProxyV1/V2, false |
/// | Unspecified | LOCAL             | yes / no list             | peer with port 0, Local, false |
/// | Unspecified | PROXY UNKNOWN/UNSPEC/UNIX | yes / no list     | peer with port 0, ProxyV1/V2, false |
///
/// Addresses are reported in canonical form: an IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`) becomes the IPv4 address, for the peer and for the
/// header alike. The `trusted_proxies` check compares canonically (see
/// [`ListenerPolicy::is_trusted_proxy`]): `::/0` never matches an IPv4 peer.
/// `Some(vec![])` trusts no peer: every header is refused. In mode `On`,
/// `None` trusts no peer either: a listener that requires headers must name
/// the proxies that send them.
///
/// # Endpoint allow-list
///
/// With `allowed_endpoints` set, after the checks above, a connection is
/// accepted only when its header carries a cloud endpoint ID (AWS VPC
/// endpoint, Azure Private Link, GCP Private Service Connect; see
/// [`crate::endpoint_ids`]) and every endpoint ID it carries is in the
/// list. Otherwise it is refused `endpoint_not_allowed`, even from a
/// trusted proxy; so is a connection without a header (it came through no
/// endpoint), and a LOCAL header without an ID. A vendor TLV that is
/// present but malformed is refused `invalid_endpoint_tlv`. `Some(vec![])`
/// refuses every connection. With `None` (the default) the TLVs are not
/// looked at.
///
/// # What the caller must still do
/// * Configure [`ProxyMode::On`] only on listeners that only proxies can
///   reach, and name them in `trusted_proxies` (with `None`, every header is
///   refused `untrusted_proxy`).
/// * Bound the time spent reading the header (the tokio adapter does).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerPolicy {
    /// Whether a header is required, forbidden or optional.
    pub mode: ProxyMode,
    /// When set, only peers in these networks may send a header.
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    /// Parser settings (the header size cap).
    pub parse: ParseConfig,
    /// When set, only connections whose header carries one of these cloud
    /// endpoint IDs are accepted (see "Endpoint allow-list" above).
    ///
    /// The list is only as good as the header: use it with
    /// [`ProxyMode::On`] and `trusted_proxies` naming the load balancers.
    /// In mode unspecified, or with no `trusted_proxies`, any peer's header
    /// is parsed, so a client can name a listed ID itself (its address
    /// stays untrusted, but the endpoint gate does not hold). The same for
    /// datagrams whose sources are not verified
    /// ([`datagram_sources_verified`](Self::datagram_sources_verified)): a
    /// sender that forges a trusted proxy's source writes the TLVs too.
    pub allowed_endpoints: Option<Vec<EndpointId>>,
    /// Whether the network in front of a UDP socket drops datagrams whose
    /// source address is forged (see
    /// [`with_verified_datagram_sources`](Self::with_verified_datagram_sources)).
    /// `false` (the default): every observation of
    /// [`decide_datagram`](Self::decide_datagram) is untrusted. Streams are
    /// not affected.
    pub datagram_sources_verified: bool,
}

/// Where the observed client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provenance {
    /// The socket peer; no header.
    Direct,
    /// A v1 header (for `UNKNOWN`, the peer stands in).
    ProxyV1,
    /// A v2 PROXY header (for UNSPEC or UNIX, the peer stands in).
    ProxyV2,
    /// A v2 LOCAL header: the proxy itself connected; the peer is used.
    Local,
}

/// `net` as it matches canonical addresses: a network inside `::ffff:0:0/96`
/// becomes the IPv4 network it maps; others are unchanged (host bits
/// cleared).
fn canonical_net(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V4(v4) => ipnet::IpNet::V4(v4.trunc()),
        ipnet::IpNet::V6(v6) => {
            let v6 = v6.trunc();
            if v6.prefix_len() >= 96
                && let Some(v4) = v6.network().to_ipv4_mapped()
                && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
            {
                return ipnet::IpNet::V4(n.trunc());
            }
            ipnet::IpNet::V6(v6)
        }
    }
}

/// The client address a connection is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Observed {
    /// The address (canonical form; port 0 when not trusted). **When not trusted it is what
    /// the sender claims** (a header on an `Unspecified` listener, say): good for logs, never
    /// for a decision; check [`Observed::trusted`] first.
    pub addr: SocketAddr,
    /// Where it came from.
    pub provenance: Provenance,
    /// Whether it may be used to issue or satisfy a pin.
    pub trusted: bool,
    /// The cloud endpoint (AWS VPC endpoint, Azure Private Link, GCP Private Service Connect)
    /// the connection came through, on a listener with `allowed_endpoints`: behind such an
    /// endpoint the address belongs to the consumer's own network, which another consumer may
    /// also use, so a pin issued from it must be bound to the endpoint (the first ID the
    /// header carries, in the order AWS, Azure, GCP). `None` on a listener without the list.
    pub endpoint: Option<EndpointId>,
}

impl Observed {
    /// An observation with these fields, as they are. (The policy builds its
    /// own; this is for callers that obtain an address in another way, and for
    /// tests.)
    pub fn new(addr: SocketAddr, provenance: Provenance, trusted: bool) -> Self {
        Observed {
            addr,
            provenance,
            trusted,
            endpoint: None,
        }
    }
}

/// Why a connection is refused. Each has a stable [`code`](Refusal::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Mode on, and the connection did not start with a header.
    HeaderRequired,
    /// Mode off, and the connection started with a header.
    HeaderForbidden,
    /// A header came from a peer outside `trusted_proxies`.
    UntrustedProxy {
        /// The peer (canonical form).
        peer: IpAddr,
    },
    /// Another PROXY header follows the first.
    DuplicateHeader,
    /// The header is malformed.
    InvalidHeader(Error),
    /// The first bytes look like a header but the caller passed none to
    /// [`ListenerPolicy::decide`].
    UnparsedHeader,
    /// The header did not arrive in time.
    Timeout,
    /// The peer closed the connection before the decision could be made.
    Closed {
        /// Bytes received until then.
        received: usize,
    },
    /// Reading from the connection failed.
    Io(std::io::ErrorKind),
    /// `allowed_endpoints` is set, and the connection came through another
    /// cloud endpoint (`Some`) or through none that the header names (`None`).
    EndpointNotAllowed {
        /// The first endpoint ID found that is not in the list, if any.
        endpoint: Option<EndpointId>,
    },
    /// `allowed_endpoints` is set, and a cloud endpoint TLV in the header is
    /// malformed.
    InvalidEndpointTlv(CloudTlvError),
    /// A v2 PROXY header of a stream connection names UDP addresses (family
    /// 0x12 or 0x22): the sender is misconfigured, or its header was written
    /// for another connection. Datagrams ([`ListenerPolicy::decide_datagram`])
    /// take them; streams do not, as HAProxy does not.
    DatagramFamily,
}

impl Refusal {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::HeaderRequired => "header_required",
            Refusal::HeaderForbidden => "header_forbidden",
            Refusal::UntrustedProxy { .. } => "untrusted_proxy",
            Refusal::DuplicateHeader => "duplicate_header",
            Refusal::InvalidHeader(_) => "invalid_header",
            Refusal::UnparsedHeader => "unparsed_header",
            Refusal::Timeout => "timeout",
            Refusal::Closed { .. } => "connection_closed",
            Refusal::Io(_) => "io_error",
            Refusal::EndpointNotAllowed { .. } => "endpoint_not_allowed",
            Refusal::InvalidEndpointTlv(_) => "invalid_endpoint_tlv",
            Refusal::DatagramFamily => "datagram_family",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::HeaderRequired => write!(
                f,
                "header_required: no PROXY header, and this listener requires one"
            ),
            Refusal::HeaderForbidden => write!(
                f,
                "header_forbidden: a PROXY header on a listener that accepts none"
            ),
            Refusal::UntrustedProxy { peer } => write!(
                f,
                "untrusted_proxy: PROXY header from {peer}, which is not a trusted proxy"
            ),
            Refusal::DuplicateHeader => write!(
                f,
                "duplicate_header: a second PROXY header follows the first"
            ),
            Refusal::InvalidHeader(e) => write!(f, "invalid_header: {e}"),
            Refusal::UnparsedHeader => write!(
                f,
                "unparsed_header: the connection starts with a PROXY header that was not parsed"
            ),
            Refusal::Timeout => write!(f, "timeout: the PROXY header did not arrive in time"),
            Refusal::Closed { received } => write!(
                f,
                "connection_closed: the peer closed after {received} bytes, before a decision"
            ),
            Refusal::Io(kind) => write!(f, "io_error: reading the PROXY header failed: {kind}"),
            Refusal::EndpointNotAllowed { endpoint: Some(id) } => write!(
                f,
                "endpoint_not_allowed: the connection came through endpoint {id}, which is not \
                 in allowed_endpoints"
            ),
            Refusal::EndpointNotAllowed { endpoint: None } => write!(
                f,
                "endpoint_not_allowed: the connection names no cloud endpoint, and this \
                 listener allows only some"
            ),
            Refusal::InvalidEndpointTlv(e) => write!(f, "invalid_endpoint_tlv: {e}"),
            Refusal::DatagramFamily => write!(
                f,
                "datagram_family: the PROXY header of a stream connection names UDP addresses"
            ),
        }
    }
}

/// What [`ListenerPolicy::step`] asks the caller to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step<'a> {
    /// Read more bytes (but never past [`ListenerPolicy::buffer_limit`]
    /// in total) and call again with all bytes so far.
    NeedMore,
    /// The connection is accepted.
    Accept {
        /// The client address.
        observed: Observed,
        /// The header, when there was one.
        header: Option<Header<'a>>,
        /// How many bytes the header took; the rest is application data.
        consumed: usize,
    },
    /// The connection must be closed, without writing anything.
    Refuse(Refusal),
}

/// How many bytes past a header may be needed to tell whether a second
/// header starts there (the v2 signature is 12 bytes long).
const DUPLICATE_LOOKAHEAD: usize = 16;

impl ListenerPolicy {
    /// A policy with this mode, no trusted-proxy list and default parser
    /// settings.
    pub fn new(mode: ProxyMode) -> Self {
        ListenerPolicy {
            mode,
            trusted_proxies: None,
            parse: ParseConfig::default(),
            allowed_endpoints: None,
            datagram_sources_verified: false,
        }
    }

    /// This policy with [`datagram_sources_verified`](Self::datagram_sources_verified)
    /// set to `verified`.
    ///
    /// A TCP peer answered the handshake from its address; a datagram's
    /// source is whatever its sender wrote. Anyone who can send to the socket
    /// can name any source, a trusted proxy's included, and with it any
    /// client. So observations from datagrams are untrusted (never enough to
    /// issue or satisfy a pin) unless the network guarantees sources: every
    /// path to the socket filters spoofed ones (ingress filtering at each
    /// edge, a private link that only the load balancers can send on). Say
    /// so here only then. Verified sources do not make an address of this
    /// host a safe proxy: every local process can send from loopback or from
    /// the host's own addresses, so `trusted_proxies` must not hold them.
    ///
    /// ```
    /// use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
    ///
    /// let peer = "192.0.2.7:5000".parse().unwrap();
    /// let open = ListenerPolicy::new(ProxyMode::Off);
    /// let seen = open.decide_datagram(peer, b"query").unwrap().observed;
    /// assert!(!seen.trusted);
    /// let filtered = open.with_verified_datagram_sources(true);
    /// assert!(filtered.decide_datagram(peer, b"query").unwrap().observed.trusted);
    /// ```
    pub fn with_verified_datagram_sources(mut self, verified: bool) -> Self {
        self.datagram_sources_verified = verified;
        self
    }

    /// This policy with `trusted_proxies` set to `nets`.
    ///
    /// ```
    /// use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
    ///
    /// let lb = ListenerPolicy::new(ProxyMode::On)
    ///     .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
    /// assert!(lb.is_trusted_proxy("10.1.2.3".parse().unwrap()));
    /// assert!(!lb.is_trusted_proxy("192.0.2.1".parse().unwrap()));
    /// // Mode on with no list trusts nobody.
    /// assert!(!ListenerPolicy::new(ProxyMode::On).is_trusted_proxy("10.1.2.3".parse().unwrap()));
    /// ```
    pub fn with_trusted_proxies(mut self, nets: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = Some(nets);
        self
    }

    /// This policy with `allowed_endpoints` set to `ids`.
    ///
    /// ```
    /// use ippin_proxy_protocol::{EndpointId, ListenerPolicy, ProxyMode};
    ///
    /// let lb = ListenerPolicy::new(ProxyMode::On)
    ///     .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()])
    ///     .with_allowed_endpoints(vec![EndpointId::Aws("vpce-0123456789abcdef0".parse().unwrap())]);
    /// assert_eq!(lb.allowed_endpoints.as_ref().map(Vec::len), Some(1));
    /// ```
    pub fn with_allowed_endpoints(mut self, ids: Vec<EndpointId>) -> Self {
        self.allowed_endpoints = Some(ids);
        self
    }

    /// The allow-list check on a header's TLVs (or on no header); the endpoint the
    /// connection came through when the list is set.
    fn check_endpoints(&self, header: Option<&Header<'_>>) -> Result<Option<EndpointId>, Refusal> {
        let Some(allowed) = &self.allowed_endpoints else {
            return Ok(None);
        };
        let Some(header) = header else {
            return Err(Refusal::EndpointNotAllowed { endpoint: None });
        };
        let ids = endpoint_ids(header.tlvs()).map_err(Refusal::InvalidEndpointTlv)?;
        let mut first = None;
        for id in ids.into_iter().flatten() {
            if !allowed.contains(&id) {
                return Err(Refusal::EndpointNotAllowed { endpoint: Some(id) });
            }
            first = first.or(Some(id));
        }
        match first {
            Some(id) => Ok(Some(id)),
            None => Err(Refusal::EndpointNotAllowed { endpoint: None }),
        }
    }

    /// This policy with parser settings `parse` (the header size cap).
    pub fn with_parse_config(mut self, parse: ParseConfig) -> Self {
        self.parse = parse;
        self
    }

    /// The most bytes a reader needs to buffer before [`step`](Self::step)
    /// decides: the largest header plus enough to spot a second one.
    pub fn buffer_limit(&self) -> usize {
        self.parse
            .max_header_len
            .max(MAX_V1_LEN)
            .saturating_add(DUPLICATE_LOOKAHEAD)
    }

    /// Whether `peer` may send a header.
    ///
    /// Addresses compare canonically, as the kernel delivers them: an IPv4-mapped IPv6 peer
    /// (`::ffff:127.0.0.1`, as a dual-stack socket reports an IPv4 client) is the IPv4 peer
    /// `127.0.0.1`, and a network written in the mapped form (`::ffff:127.0.0.0/104`) is the
    /// IPv4 network `127.0.0.0/8`. IPv4 peers are matched by IPv4 networks only: `::/0`
    /// trusts every IPv6 peer and no IPv4 peer, also on a dual-stack listener. To trust
    /// every peer, name both `0.0.0.0/0` and `::/0`.
    ///
    /// With no list (`None`), mode [`ProxyMode::On`] trusts nobody (a listener that
    /// requires headers must name who may send them) and mode [`ProxyMode::Unspecified`]
    /// parses headers from anyone (they are never trusted there). An empty list trusts
    /// nobody.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        match &self.trusted_proxies {
            None => self.mode != ProxyMode::On,
            Some(nets) => nets.iter().any(|n| canonical_net(*n).contains(&peer)),
        }
    }

    /// Decides from a parsed header (or none) and the bytes received after
    /// it (`after_header`; with no header, the connection's first bytes).
    ///
    /// `after_header` that begins, or may still begin, a PROXY header is a
    /// refusal: pass enough bytes to decide (see [`crate::detect`]), or use
    /// [`step`](Self::step), which waits for them. An empty `after_header`
    /// cannot show a second header: pass the first application bytes when
    /// there are any.
    ///
    /// # Errors
    /// The [`Refusal`] when the connection must be closed.
    pub fn decide(
        &self,
        peer: SocketAddr,
        header: Option<&Header<'_>>,
        after_header: &[u8],
    ) -> Result<Observed, Refusal> {
        if let Some(h) = header
            && h.command() == Command::Proxy
            && matches!(
                h.addresses(),
                Addresses::Udp4 { .. } | Addresses::Udp6 { .. }
            )
        {
            // Checked after the rules every header is held to (mode, trusted peer),
            // so that an untrusted peer is told `untrusted_proxy` as for any header.
            self.decide_any(peer, header, after_header)?;
            return Err(Refusal::DatagramFamily);
        }
        self.decide_any(peer, header, after_header)
    }

    /// The refusal of a connection from `peer` that no bytes can change, if any: with the
    /// mode `on`, a peer outside the trusted proxies is refused whatever it sends (with a
    /// header `untrusted_proxy`, without one `header_required`), so it is refused
    /// (`untrusted_proxy`) before anything is read or waited for, and holds no header slot.
    pub fn refusal_before_reading(&self, peer: SocketAddr) -> Option<Refusal> {
        (self.mode == ProxyMode::On && !self.is_trusted_proxy(peer.ip())).then(|| {
            Refusal::UntrustedProxy {
                peer: peer.ip().to_canonical(),
            }
        })
    }

    /// [`decide`](Self::decide) for a stream or a datagram: any family.
    pub(crate) fn decide_any(
        &self,
        peer: SocketAddr,
        header: Option<&Header<'_>>,
        after_header: &[u8],
    ) -> Result<Observed, Refusal> {
        let raw_peer = peer.ip();
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Some(header) = header else {
            if starts_with_header(after_header) {
                return Err(match self.mode {
                    ProxyMode::Off => Refusal::HeaderForbidden,
                    _ => Refusal::UnparsedHeader,
                });
            }
            if self.mode == ProxyMode::On {
                return Err(Refusal::HeaderRequired);
            }
            let endpoint = self.check_endpoints(None)?;
            return Ok(Observed {
                addr: peer,
                provenance: Provenance::Direct,
                trusted: true,
                endpoint,
            });
        };
        if self.mode == ProxyMode::Off {
            return Err(Refusal::HeaderForbidden);
        }
        if !self.is_trusted_proxy(raw_peer) {
            return Err(Refusal::UntrustedProxy { peer: peer.ip() });
        }
        if starts_with_header(after_header) {
            return Err(Refusal::DuplicateHeader);
        }
        let endpoint = self.check_endpoints(Some(header))?;
        let strict = self.mode == ProxyMode::On;
        let (addr, provenance, trusted) = match (header.command(), header.source()) {
            // LOCAL: the proxy connected on its own (a health check). The
            // address is real but it is the proxy's, and a proxy's address
            // must never satisfy a pin: untrusted, as for UNKNOWN.
            (Command::Local, _) => (peer, Provenance::Local, false),
            (Command::Proxy, source) => {
                let provenance = if header.version() == 1 {
                    Provenance::ProxyV1
                } else {
                    Provenance::ProxyV2
                };
                match source {
                    Some(src) => (
                        SocketAddr::new(src.ip().to_canonical(), src.port()),
                        provenance,
                        strict,
                    ),
                    // UNKNOWN / UNSPEC / UNIX: the real client is not known;
                    // the proxy stands in, never trusted.
                    None => (peer, provenance, false),
                }
            }
        };
        let addr = if trusted {
            addr
        } else {
            SocketAddr::new(addr.ip(), 0)
        };
        Ok(Observed {
            addr,
            provenance,
            trusted,
            endpoint,
        })
    }

    /// The sans-IO reader: given every byte received so far (`buf`) and
    /// whether the peer has closed (`eof`), says whether to read more,
    /// accept or refuse. Never asks for more than
    /// [`buffer_limit`](Self::buffer_limit) bytes in total.
    ///
    /// A header is refused as soon as the bytes show it must be (a
    /// forbidden header, an untrusted peer, an invalid byte), without
    /// waiting for the rest. After a header, it waits for the first
    /// application bytes, until they show whether a second header starts
    /// there (one byte usually does; a proper prefix of `PROXY` or of the
    /// v2 signature needs more). A proxy typically sends its header before
    /// it relays anything, so deciding on an empty remainder would let a
    /// second header in the next segment through.
    ///
    /// So the client must speak first, before and after the header (SSH,
    /// TLS and HTTP clients do); with a protocol where the server speaks
    /// first, the caller's deadline ends the wait. At end of input
    /// (`eof`), it decides on what it has.
    pub fn step<'a>(&self, peer: SocketAddr, buf: &'a [u8], eof: bool) -> Step<'a> {
        if let Some(refusal) = self.refusal_before_reading(peer) {
            return Step::Refuse(refusal);
        }
        let limit = self.buffer_limit();
        let decided = |r: Result<Observed, Refusal>, header, consumed| match r {
            Ok(observed) => Step::Accept {
                observed,
                header,
                consumed,
            },
            Err(refusal) => Step::Refuse(refusal),
        };
        match detect(buf) {
            Detection::NeedMore if !eof => Step::NeedMore,
            Detection::NeedMore if buf.is_empty() => decided(self.decide(peer, None, buf), None, 0),
            Detection::NeedMore => Step::Refuse(Refusal::Closed {
                received: buf.len(),
            }),
            Detection::NotHeader => decided(self.decide(peer, None, buf), None, 0),
            Detection::Header => {
                if self.mode == ProxyMode::Off {
                    return Step::Refuse(Refusal::HeaderForbidden);
                }
                if !self.is_trusted_proxy(peer.ip()) {
                    return Step::Refuse(Refusal::UntrustedProxy {
                        peer: peer.ip().to_canonical(),
                    });
                }
                match parse_with(buf, &self.parse) {
                    Err(e) if e.is_incomplete() => {
                        if eof {
                            Step::Refuse(Refusal::Closed {
                                received: buf.len(),
                            })
                        } else if buf.len() >= limit {
                            Step::Refuse(Refusal::InvalidHeader(e))
                        } else {
                            Step::NeedMore
                        }
                    }
                    Err(e) => Step::Refuse(Refusal::InvalidHeader(e)),
                    Ok((header, consumed)) => {
                        let rest = buf.get(consumed..).unwrap_or_default();
                        if !eof && detect(rest) == Detection::NeedMore && buf.len() < limit {
                            return Step::NeedMore;
                        }
                        decided(
                            self.decide(peer, Some(&header), rest),
                            Some(header),
                            consumed,
                        )
                    }
                }
            }
        }
    }
}
