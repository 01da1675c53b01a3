//! Verification of a signed PROXY v2 header. The sans-IO core (trust
//! anchor, verifier, decision table) is `ippin_propagation::verify`, and
//! finding the signed block in a parsed PROXY header is
//! `ippin_access::signed`; both are re-exported here.

pub use ippin_access::signed::{VerifyHeader, header_address_block, is_signed, signed_tlv};
pub use ippin_propagation::verify::*;
