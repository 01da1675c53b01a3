//! Integration tests for ippin-cert: one binary, one module per area.

mod ssh;
mod support;
mod x509;
