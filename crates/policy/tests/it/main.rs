//! Integration tests for ippin-policy: decision tables, parsers, property tests.

mod addr;
mod forwarded;
mod pin;
mod roles;
