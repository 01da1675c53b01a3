//! The PROXY v2 framing of a signed block: the header a front writes, and the block an
//! inner finds in a parsed header and hands to `ippin-propagation`'s verifier.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ippin_propagation::sign::FrontGrant;
use ippin_propagation::verify::{Verified, Verifier};
use ippin_propagation::wire::{self, NONCE_LEN, TLV_TYPE};
use ippin_propagation::{Error, Link, Reason, Rejection};
use ippin_proxy_protocol as pp;

/// Writes the PROXY v2 header that carries a signed block.
pub trait WriteHeader {
    /// The PROXY v2 header a front writes to its upstream: command PROXY,
    /// `client` → `destination` (TCP4 when both are IPv4, else TCP6 with
    /// IPv4 addresses mapped), and the signed block under this grant for
    /// the connection `link` it is written on (the front's local address
    /// after `connect()` and its peer), written at `now` with `nonce`.
    ///
    /// # Errors
    /// [`Error::Encode`] when the header does not encode.
    fn header(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        self.header_via(client, destination, None, link, now, nonce)
    }

    /// [`WriteHeader::header`] for a client that came through the cloud private endpoint
    /// `endpoint` (the front's observation names it: `ObservedAddr::endpoint`). A front
    /// must pass it: the inner binds pins to it, and a client's address behind an endpoint
    /// says nothing without it.
    ///
    /// # Errors
    /// [`Error::Encode`] when the header does not encode.
    fn header_via(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        endpoint: Option<&str>,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error>;
}

impl WriteHeader for FrontGrant {
    fn header_via(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        endpoint: Option<&str>,
        link: Link,
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let addrs = addresses_for(client, destination);
        let value = self.signed_block_via(client, destination, endpoint, link, now, nonce)?;
        pp::V2Builder::new(pp::Command::Proxy)
            .addresses(addrs)
            .and_then(|b| {
                b.tlv(pp::Tlv::Custom {
                    kind: TLV_TYPE,
                    value: &value,
                })
            })
            .and_then(|b| b.encode())
            .map_err(|e| Error::Encode(e.to_string()))
    }
}

/// The v2 addresses for a client and the address it reached: TCP4 when
/// both are IPv4 (canonical form), otherwise TCP6 with any IPv4 address
/// written IPv4-mapped. Scope ids and flow info are dropped.
pub fn addresses_for(client: SocketAddr, destination: SocketAddr) -> pp::Addresses {
    let c = client.ip().to_canonical();
    let d = destination.ip().to_canonical();
    match (c, d) {
        (IpAddr::V4(cs), IpAddr::V4(ds)) => pp::Addresses::Tcp4 {
            src: SocketAddrV4::new(cs, client.port()),
            dst: SocketAddrV4::new(ds, destination.port()),
        },
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            pp::Addresses::Tcp6 {
                src: SocketAddrV6::new(v6(c), client.port(), 0, 0),
                dst: SocketAddrV6::new(v6(d), destination.port(), 0, 0),
            }
        }
    }
}

fn reject(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// The signed block's TLV value in `header`: `Ok(None)` when the header
/// carries none, an error when it carries more than one.
pub fn signed_tlv<'a>(header: &pp::Header<'a>) -> Result<Option<&'a [u8]>, Rejection> {
    let mut found = None;
    for t in header.tlvs() {
        if let pp::Tlv::Custom { kind, value } = t
            && kind == TLV_TYPE
        {
            if found.is_some() {
                return Err(reject(
                    Reason::Malformed,
                    "two signed blocks (TLV 0xE7) in one header",
                ));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

/// Whether `header` carries the signed block (TLV [`TLV_TYPE`]).
pub fn is_signed(header: &pp::Header<'_>) -> bool {
    header
        .tlvs()
        .any(|t| matches!(t, pp::Tlv::Custom { kind, .. } if kind == TLV_TYPE))
}

/// The family byte and address bytes of a v2 header, exactly as sent.
pub fn header_address_block(header: &pp::Header<'_>) -> Option<Vec<u8>> {
    let pp::Header::V2(v2) = header else {
        return None;
    };
    let bytes = v2.as_bytes();
    let family = *bytes.get(13)?;
    let n = wire::address_len(family)?;
    let addrs = bytes.get(16..16usize.checked_add(n)?)?;
    let mut out = Vec::with_capacity(n + 1);
    out.push(family);
    out.extend_from_slice(addrs);
    Some(out)
}

/// Verifies a parsed PROXY header.
pub trait VerifyHeader {
    /// Verifies the signed header `header` at `now` (unix seconds) and, on
    /// success, records it in the replay state of its link. `link` is the
    /// connection the header arrived on, as this side's socket sees it
    /// (peer = the front, local = this listener). Call it once per header.
    ///
    /// # Errors
    /// The [`Rejection`] of the first failing check: no or two signed
    /// blocks, not a v2 PROXY command with TCP addresses
    /// (`signed_header_malformed`), then [`Verifier::verify_block`]'s.
    fn verify(&self, header: &pp::Header<'_>, link: Link, now: u64) -> Result<Verified, Rejection>;
}

impl VerifyHeader for Verifier {
    fn verify(&self, header: &pp::Header<'_>, link: Link, now: u64) -> Result<Verified, Rejection> {
        let value = signed_tlv(header)?
            .ok_or_else(|| reject(Reason::Malformed, "no signed block (TLV 0xE7)"))?;
        if header.command() != pp::Command::Proxy {
            return Err(reject(
                Reason::Malformed,
                "a signed header must be a PROXY command",
            ));
        }
        let sent = header_address_block(header).ok_or_else(|| {
            reject(
                Reason::Malformed,
                "a signed header must be v2 with TCP over IPv4 or IPv6",
            )
        })?;
        self.verify_block(&sent, value, link, now)
    }
}
