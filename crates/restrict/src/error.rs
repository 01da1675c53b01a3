//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why enforcement could not be set up, or a session could not be made or ended.
///
/// Every variant names what failed and why, in words a user can act on; none of them is ever
/// turned into "run the session without enforcement" by this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This platform has no cgroup v2 or eBPF cgroup programs (only Linux has).
    #[error("kernel enforcement of network restrictions needs Linux (cgroup v2 and eBPF)")]
    Unsupported,
    /// The process is not root (effective uid 0), which loading the programs, attaching them
    /// and owning the session cgroups need.
    #[error("kernel enforcement needs root: running with effective uid {euid}")]
    NotRoot {
        /// The effective uid of this process.
        euid: u32,
    },
    /// No cgroup v2 file system is mounted (none in `/proc/self/mountinfo`).
    #[error("no cgroup v2 file system is mounted (none in /proc/self/mountinfo)")]
    NoCgroup2,
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] io::Error),
    /// The parent cgroup is missing, is not a directory of a cgroup v2 file system, or it
    /// (or an ancestor) is writable by someone other than root.
    #[error("parent cgroup {}: {reason}", path.display())]
    Parent {
        /// The configured (or default) parent.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The eBPF object could not be loaded, verified or attached.
    #[error("eBPF {what}: {reason}")]
    Bpf {
        /// Which step: `load`, `program connect4`, `attach connect4`, `map allow4`, ...
        what: String,
        /// The loader's or the kernel's reason.
        reason: String,
    },
    /// The enforcer is ending its sessions ([`crate::Enforcer::end_sessions`]): no new one
    /// is made.
    #[error("sessions are ending: the server is stopping")]
    Stopping,
    /// A session name that cannot be a cgroup directory name.
    #[error("session name {name:?}: {reason}")]
    SessionName {
        /// The name, as given (clipped to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cgroup file operation failed.
    #[error("cgroup {}: {op}: {source}", path.display())]
    Cgroup {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`mkdir`, `write cgroup.procs`, `rmdir`, ...).
        op: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A policy could not be written into the kernel maps. The maps may hold part of it; the
    /// decision is then no more permissive than the old and new policies together, and the
    /// caller should retry or end the sessions.
    #[error("network restrictions not written to the kernel: {reason}")]
    Policy {
        /// The kernel's reason.
        reason: String,
    },
    /// An OS account could not be looked up.
    #[error("login {name:?}: {reason}")]
    Account {
        /// The login name, as given (clipped to 80 characters).
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The session's processes were still there after being killed.
    #[error("session cgroup {}: processes still running after cgroup.kill ({waited_ms} ms)", path.display())]
    Teardown {
        /// The session cgroup.
        path: PathBuf,
        /// How long this waited.
        waited_ms: u64,
    },
}

impl Error {
    pub(crate) fn cgroup(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Cgroup {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn bpf(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Bpf {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
