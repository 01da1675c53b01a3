//! The examples, run against real clients (one test binary, a module per example).

mod axum_observed;
mod common;
mod mtls_gateway;
mod russh_pinned;
