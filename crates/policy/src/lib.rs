//! Roles, observed-address trust, the pin check and network restrictions: pure decisions, no I/O.
#![forbid(unsafe_code)]
