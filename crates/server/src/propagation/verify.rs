//! Verification of a signed PROXY v2 header. The sans-IO core (trust
//! anchor, verifier, decision table) is `ippin_propagation::verify`,
//! re-exported here; this module finds the signed block in a parsed PROXY
//! header (with `ippin-proxy-protocol`) and hands it to the verifier.

use ippin_proxy_protocol as pp;

pub use ippin_propagation::verify::*;
use ippin_propagation::wire::{self, TLV_TYPE};
use ippin_propagation::{Link, Reason, Rejection};

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
