//! Integration tests for ippin-policy: decision tables, parsers, property tests.

mod addr;
mod pin;
mod roles;
