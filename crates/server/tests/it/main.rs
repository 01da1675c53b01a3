//! End-to-end tests of the `ippin` binary with real peers on loopback:
//! curl, HAProxy, nginx. They spawn `ippin serve` on a configuration made by
//! `ippin ca init`, log in with `ippin login`, and check what the peers and
//! the audit log see. A missing peer fails the test (it never skips).

mod attacks;
mod cli;
mod demo;
mod direct;
mod endpoints;
mod faults;
mod files_audit;
mod fleet;
mod fuzzprops;
mod haproxy;
mod joins;
mod login;
mod nginx;
mod prefix;
mod propagation;
mod ssh;
mod support;
