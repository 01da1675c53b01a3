//! End-to-end tests of the SSH service with the real OpenSSH client (and `sshd`, `ssh-keygen`,
//! HAProxy as peers). Loopback only, ephemeral ports, bounded waits.

pub(crate) mod harness;

mod access;
mod banner;
pub(crate) mod forward;
mod limits;
mod live;
mod login;
pub(crate) mod parity;
mod proxy;
mod relogin;
pub(crate) mod serve;
pub(crate) mod sessions;
