//! Putting a process in a session's cgroup, with the session's seccomp filter: what a forked
//! child runs before `exec` ([`crate::ChildSetup`], [`crate::Session::confine`]).

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

/// Puts processes in a session's cgroup. Cheap to clone and to move into a `pre_exec` hook.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The session's `cgroup.procs`, opened (close-on-exec) by this root process.
    pub(crate) procs: Arc<File>,
}

impl Placement {
    /// Moves the calling process into the session cgroup.
    ///
    /// Async-signal-safe: one `write(2)` of `0` to a descriptor opened beforehand, no
    /// allocation, no lock. So it may run in a forked child before `exec` (this is what
    /// [`crate::Session::confine`] does), also after the child dropped root: the kernel checks a
    /// write to `cgroup.procs` against the credentials of whoever opened it. `0` means "the
    /// writing process" to the kernel.
    ///
    /// Then it installs a seccomp filter (for the process and every process it starts) that
    /// kills it at its first system call of another ABI (32-bit or x32: the kernel runs the
    /// `cgroup/setsockopt` program for native calls only), refuses sockets of the families
    /// the hooks do not see and `io_uring_setup(2)` and `request_key(2)` (`compat.rs`). As root no flag is needed; without
    /// `CAP_SYS_ADMIN` the process's `no_new_privs` is set first, as the kernel requires.
    /// On an architecture other than x86-64 and AArch64 this fails (`Unsupported`): the
    /// session cannot be held.
    pub fn place_current_process(&self) -> std::io::Result<()> {
        (&*self.procs).write_all(b"0")?;
        native_calls_only()
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use crate::compat::native_calls_only;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn native_calls_only() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no seccomp filter for this architecture's compat system calls",
    ))
}
