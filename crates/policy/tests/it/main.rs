//! Integration tests for ippin-policy: decision tables, parsers, property tests.

mod addr;
mod forwarded;
mod netrestrict;
mod pin;
mod prefix;
mod props;
mod roles;
