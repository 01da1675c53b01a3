//! Integration tests of ippin-proxy-protocol (one binary, many modules).

mod adapter;
mod adversarial;
mod alloc;
mod differential;
mod peers;
mod policy;
mod roundtrip;
mod v1;
mod v2;
mod vectors;
