//! Integration tests for ippin-cert: one binary, one module per area.

mod interop;
mod prefix;
mod props;
mod reference;
mod seeds;
mod ssh;
mod sshwire;
mod support;
mod vectors;
mod x509;
