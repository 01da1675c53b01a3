//! Integration tests of ippin-access: the decisions through their public API, with real
//! certificates from the certificate crate's CAs.

mod fixtures;
#[cfg(feature = "fleet")]
mod fleet;
#[cfg(feature = "fleet-tokio")]
mod fleet_client;
mod props;
mod resumption;
mod tls;
