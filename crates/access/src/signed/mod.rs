//! Signed propagation of the observed client address between services (front → inner), as a
//! stage of the observation pipeline: the PROXY v2 framing of `ippin-propagation`'s signed
//! block, and the header sequence of a listener that takes one.
//!
//! `ippin-propagation` is the sans-IO core (keys, grants, the per-connection MAC, the
//! verifier with time passed in). This module joins it to `ippin-proxy-protocol`:
//! - a front writes its header with [`WriteHeader::header`] (implemented for
//!   `ippin_propagation::sign::FrontGrant`);
//! - an inner verifies a parsed header with [`VerifyHeader::verify`] (implemented for
//!   `ippin_propagation::verify::Verifier`), or runs the whole sequence of headers at the
//!   start of a connection with [`step`] (sans-IO: feed it the bytes read so far), which
//!   answers with the [`ObservedAddr`](crate::observed::ObservedAddr) to use.
//!
//! A header that carries the signed block is verified or refused; its addresses are never
//! used unverified.

mod frame;
mod sequence;

pub use frame::{
    VerifyHeader, WriteHeader, addresses_for, header_address_block, is_signed, signed_tlv,
};
pub use sequence::{SeqStep, buffer_limit, step};
