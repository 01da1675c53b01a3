//! The header sequence on a listener with propagation enabled, sans-IO:
//! like `ippin-proxy-protocol`'s `ListenerPolicy::step`, fed every byte
//! received so far, but allowing one unsigned header followed by one
//! signed header.
//!
//! | headers at the start of the connection | result |
//! |----------------------------------------|--------|
//! | none                                   | the listener's `proxy_protocol` mode decides |
//! | unsigned                               | the mode and `trusted_proxies` decide |
//! | signed                                 | verified → the client it names, `signed_propagation`, trusted |
//! | unsigned, then signed                  | the mode decides on the unsigned one; then the signed one is verified and **replaces** it |
//! | signed, then unsigned                  | refused `unsigned_after_signed` |
//! | signed, then signed                    | refused `two_signed_headers` |
//! | unsigned, then unsigned                | refused `duplicate_header` |
//! | unsigned, signed, then any header      | refused (`two_signed_headers` / `unsigned_after_signed`) |
//!
//! A header is *signed* when it carries the TLV 0xE7, whatever else it
//! says: it is then verified or refused, and its addresses are never used
//! unverified. Verification runs once, when the sequence is complete (the
//! bytes after the last header show no further header), so a nonce is
//! recorded once per connection.

use std::net::SocketAddr;

use ippin_policy::ObservedAddr;
use ippin_proxy_protocol as pp;

use ippin_propagation::verify::Verifier;
use ippin_propagation::{Link, Reason, Rejection};

use super::frame::{VerifyHeader, is_signed, signed_tlv};

/// What [`step`] asks the caller to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeqStep {
    /// Read more bytes (never past [`buffer_limit`] in total) and call again.
    NeedMore,
    /// Accepted: the observed client and how many bytes the headers took.
    Accept {
        /// The client address.
        observed: ObservedAddr,
        /// Bytes taken by the headers; the rest is application data.
        consumed: usize,
    },
    /// Close the connection without writing anything.
    Refuse {
        /// The stable reason code.
        code: &'static str,
        /// A readable explanation, starting with the code.
        message: String,
    },
}

/// The most bytes [`step`] needs: room for three headers (the third only to
/// refuse it) and the look-ahead.
pub fn buffer_limit(listener: &pp::ListenerPolicy) -> usize {
    listener.buffer_limit().saturating_mul(3)
}

fn from_refusal(r: pp::Refusal) -> SeqStep {
    SeqStep::Refuse {
        code: r.code(),
        message: r.to_string(),
    }
}

fn from_rejection(r: Rejection) -> SeqStep {
    SeqStep::Refuse {
        code: r.reason.code(),
        message: r.to_string(),
    }
}

enum Next<'a> {
    More,
    Nothing,
    Header(pp::Header<'a>, usize),
    Bad(pp::Refusal),
}

/// What starts at `rest`: more bytes needed, no header, a header, or a
/// refusal. `full`: the buffer reached its limit.
fn next<'a>(rest: &'a [u8], eof: bool, full: bool, cfg: &pp::ParseConfig) -> Next<'a> {
    match pp::detect(rest) {
        pp::Detection::NotHeader => Next::Nothing,
        pp::Detection::NeedMore if rest.is_empty() && eof => Next::Nothing,
        pp::Detection::NeedMore if eof => Next::Bad(pp::Refusal::Closed {
            received: rest.len(),
        }),
        pp::Detection::NeedMore if full => {
            Next::Bad(pp::Refusal::InvalidHeader(pp::Error::Incomplete {
                needed: None,
            }))
        }
        pp::Detection::NeedMore => Next::More,
        pp::Detection::Header => match pp::parse_with(rest, cfg) {
            Ok((h, n)) => Next::Header(h, n),
            Err(e) if e.is_incomplete() && eof => Next::Bad(pp::Refusal::Closed {
                received: rest.len(),
            }),
            Err(e) if e.is_incomplete() && !full => Next::More,
            Err(e) => Next::Bad(pp::Refusal::InvalidHeader(e)),
        },
        // `pp::Detection` is `#[non_exhaustive]`: bytes it cannot classify are refused.
        _ => Next::Bad(pp::Refusal::UnparsedHeader),
    }
}

fn accept_signed(
    verifier: &Verifier,
    h: &pp::Header<'_>,
    link: Link,
    now: u64,
    consumed: usize,
) -> SeqStep {
    match verifier.verify(h, link, now) {
        Ok(v) => SeqStep::Accept {
            observed: crate::observed::from_signed(&v),
            consumed,
        },
        Err(r) => from_rejection(r),
    }
}

fn signed(h: &pp::Header<'_>) -> Result<bool, SeqStep> {
    signed_tlv(h).map(|v| v.is_some()).map_err(from_rejection)
}

fn third_header(h: &pp::Header<'_>) -> SeqStep {
    if is_signed(h) {
        from_rejection(Rejection {
            reason: Reason::TwoSigned,
            detail: "a header follows the signed one (it is signed too)".into(),
        })
    } else {
        from_rejection(Rejection {
            reason: Reason::UnsignedAfterSigned,
            detail: "an unsigned header follows the signed one".into(),
        })
    }
}

/// Decides the header sequence from every byte received so far (`buf`),
/// whether the peer closed (`eof`) and the time (`now`, unix seconds), on
/// the connection from `peer` to `local` (this listener's address as the
/// socket reports it). Call again with more bytes on [`SeqStep::NeedMore`].
///
/// A signed header is bound to the front → inner connection: alone, it
/// must have been written for `peer` → `local` (a listener with
/// `allowed_endpoints` refuses it, `endpoint_not_allowed`: it names no cloud
/// endpoint); after an unsigned header
/// the listener's mode and trusted proxies accepted (an L4 proxy between
/// front and inner), for the connection that header names.
pub fn step(
    listener: &pp::ListenerPolicy,
    verifier: &Verifier,
    peer: SocketAddr,
    local: SocketAddr,
    buf: &[u8],
    eof: bool,
    now: u64,
) -> SeqStep {
    let full = buf.len() >= buffer_limit(listener);
    let cfg = &listener.parse;
    let observed = |r: Result<pp::Observed, pp::Refusal>, consumed| match r {
        Ok(o) => SeqStep::Accept {
            observed: crate::observed::from_proxy(&o),
            consumed,
        },
        Err(r) => from_refusal(r),
    };
    let (h1, c1) = match next(buf, eof, full, cfg) {
        Next::More => return SeqStep::NeedMore,
        Next::Nothing => return observed(listener.decide(peer, None, buf), 0),
        Next::Bad(r) => return from_refusal(r),
        Next::Header(h, n) => (h, n),
    };
    let signed1 = match signed(&h1) {
        Ok(s) => s,
        Err(step) => return step,
    };
    // An unsigned first header is held to the listener's mode and trusted proxies on every
    // path below (alone, or before a signed one): refused now, not after waiting for a
    // second header (and parsing the first again at every read).
    if !signed1 {
        if listener.mode == pp::ProxyMode::Off {
            return from_refusal(pp::Refusal::HeaderForbidden);
        }
        if !listener.is_trusted_proxy(peer.ip()) {
            return from_refusal(pp::Refusal::UntrustedProxy {
                peer: peer.ip().to_canonical(),
            });
        }
    }
    let rest1 = buf.get(c1..).unwrap_or_default();
    let (h2, c2) = match next(rest1, eof, full, cfg) {
        Next::More => return SeqStep::NeedMore,
        Next::Bad(r) => return from_refusal(r),
        Next::Nothing if signed1 => {
            // A signed header alone came through no balancer's header: a listener that serves
            // only some cloud endpoints refuses it, as it refuses a PROXY header that names
            // none. (The endpoint a signed header may name is the one the front's client came
            // through, not this connection's.)
            if listener.allowed_endpoints.is_some() {
                return from_refusal(pp::Refusal::EndpointNotAllowed { endpoint: None });
            }
            let link = Link {
                front: peer,
                inner: local,
            };
            return accept_signed(verifier, &h1, link, now, c1);
        }
        Next::Nothing => return observed(listener.decide(peer, Some(&h1), rest1), c1),
        Next::Header(h, n) => (h, n),
    };
    if signed1 {
        return third_header(&h2);
    }
    match signed(&h2) {
        Err(step) => return step,
        Ok(false) => return from_refusal(pp::Refusal::DuplicateHeader),
        Ok(true) => {}
    }
    // The unsigned header is still governed by the listener's mode and
    // trusted proxies, even though the signed one replaces its address.
    let outer = match listener.decide(peer, Some(&h1), &[]) {
        Ok(o) => o,
        Err(r) => return from_refusal(r),
    };
    // The connection the front wrote on ended at the proxy that sent the
    // unsigned header: bind to the addresses that header names, when the
    // listener believed it; else to the socket.
    let link = match (
        outer.trusted,
        outer.provenance,
        h1.source(),
        h1.destination(),
    ) {
        (true, pp::Provenance::ProxyV1 | pp::Provenance::ProxyV2, Some(front), Some(inner)) => {
            Link { front, inner }
        }
        _ => Link {
            front: peer,
            inner: local,
        },
    };
    let rest2 = rest1.get(c2..).unwrap_or_default();
    match next(rest2, eof, full, cfg) {
        Next::More => SeqStep::NeedMore,
        Next::Bad(r) => from_refusal(r),
        Next::Header(h3, _) => third_header(&h3),
        Next::Nothing => accept_signed(verifier, &h2, link, now, c1.saturating_add(c2)),
    }
}
