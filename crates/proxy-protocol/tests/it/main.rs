//! Integration tests of ippin-proxy-protocol (one binary, many modules).

mod adapter;
mod adversarial;
mod alloc;
mod bounded;
mod datagram;
mod differential;
mod peers;
mod policy;
mod roundtrip;
mod udp;
mod v1;
mod v2;
mod vectors;

/// Every peer, named explicitly (mode on trusts nobody without a list).
pub(crate) fn any_peer() -> Vec<ipnet::IpNet> {
    vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]
}
