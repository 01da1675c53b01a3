//! The cgroup v2 file system: finding it, making, filling and removing session cgroups.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo` (the first `cgroup2` mount).
///
/// On a unified-hierarchy system this is usually `/sys/fs/cgroup`; on a hybrid one
/// `/sys/fs/cgroup/unified`.
pub fn cgroup2_mount() -> Result<PathBuf, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(Error::MountInfo)?;
    find_cgroup2(&text).ok_or(Error::NoCgroup2)
}

/// The mount point of the first `cgroup2` line of a mountinfo text.
pub(crate) fn find_cgroup2(mountinfo: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional fields...] - fstype source ...
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').next() != Some("cgroup2") {
            continue;
        }
        if let Some(mount) = left.split(' ').nth(4) {
            return Some(PathBuf::from(unescape_octal(mount)));
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that `path` is a directory on a cgroup v2 file system.
pub(crate) fn check_parent(path: &Path) -> Result<(), Error> {
    let parent_err = |reason: String| Error::Parent {
        path: path.to_owned(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| parent_err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(parent_err("not a directory".into()));
    }
    let fs = nix::sys::statfs::statfs(path).map_err(|e| parent_err(e.to_string()))?;
    if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(parent_err("not on a cgroup v2 file system".into()));
    }
    if !path.join("cgroup.procs").exists() {
        return Err(parent_err("no cgroup.procs: not a cgroup".into()));
    }
    // A process can move to any cgroup whose common ancestor with its own it may write
    // `cgroup.procs` of: the parent and every ancestor must be root's alone (a cgroup
    // delegated to a user would let the user's sessions move themselves out).
    let mut dir = Some(path);
    while let Some(d) = dir {
        if !d.join("cgroup.procs").exists() {
            break; // above the cgroup file system's root
        }
        for name in ["", "cgroup.procs", "cgroup.threads"] {
            let p = d.join(name);
            let meta = match fs::metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !name.is_empty() => continue,
                Err(e) => return Err(parent_err(format!("{}: {e}", p.display()))),
            };
            if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                return Err(parent_err(format!(
                    "{} is owned by uid {} with mode {:o}: it must be root's and writable by \
                     no one else, or sessions could move themselves out",
                    p.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                )));
            }
        }
        dir = d.parent();
    }
    Ok(())
}

/// This process as the owner of the session cgroups it makes: `PID.STARTTIME` (the start
/// time from `/proc/PID/stat`, so that a reused PID is not taken for the same process).
pub(crate) fn owner_tag() -> Option<String> {
    let pid = std::process::id();
    start_time(pid).map(|t| format!("{pid}.{t}"))
}

/// The start time (field 22 of `/proc/PID/stat`, clock ticks since boot) of `pid`, if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner of a session cgroup named `NAME@PID.STARTTIME` as [`SessionCgroup::create`]
/// names them: `NAME` as sessions are named (`A-Z a-z 0-9 . _ -`, 1 to 64 bytes, not
/// starting with `.`), `PID` and `STARTTIME` decimal digits. `None` for every other name
/// (`getty@tty1.service`, `user@1000.service`: a configured parent may hold cgroups that
/// are not ours), which is never reaped.
fn session_owner(name: &str) -> Option<(u32, u64)> {
    let (session, tag) = name.split_once('@')?;
    let (pid, start) = tag.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
    let name_ok = !session.is_empty()
        && session.len() <= 64
        && !session.starts_with('.')
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok || !digits(pid) || !digits(start) {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Kills and removes the session cgroups under `parent` whose owner (the `@PID.STARTTIME`
/// their name ends with) no longer runs: a server that exited or was killed left them, their
/// programs still attached with the policy of then. Cgroups of a running owner (another
/// server on the same parent, in the same PID namespace) and every directory not named as
/// ours ([`session_owner`]) are left alone. Returns the paths removed; errors are the
/// cgroups that could not be. Every orphan is told to die first, then each is waited for.
pub(crate) fn reap_orphans(parent: &Path, timeout: Duration) -> (Vec<PathBuf>, Vec<Error>) {
    reap(parent, timeout, |pid, start| start_time(pid) != Some(start))
}

/// Kills and removes the session cgroups under `parent` that `owner` (an [`owner_tag`]) made:
/// a server that stops ends its sessions, wherever their parent is (outside the service's own
/// cgroup, nothing else would).
pub(crate) fn reap_owned(
    parent: &Path,
    owner: &str,
    timeout: Duration,
) -> (Vec<PathBuf>, Vec<Error>) {
    reap(parent, timeout, |pid, start| {
        format!("{pid}.{start}") == owner
    })
}

/// Kills and removes the session cgroups under `parent` whose owner `pick` picks (named as
/// ours: [`session_owner`]).
fn reap(
    parent: &Path,
    timeout: Duration,
    pick: impl Fn(u32, u64) -> bool,
) -> (Vec<PathBuf>, Vec<Error>) {
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return (removed, failed);
    };
    let mut orphans = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name.to_str().and_then(session_owner) else {
            continue;
        };
        if !pick(pid, start) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = File::open(&path) else { continue };
        // Told to die at once, all of them; waited for below.
        let _ = write_file(&path.join("cgroup.kill"), b"1");
        orphans.push(SessionCgroup { path, id: 0, dir });
    }
    for cg in orphans {
        match cg.kill_and_remove(timeout) {
            Ok(()) => removed.push(cg.path),
            Err(e) => failed.push(e),
        }
    }
    (removed, failed)
}

/// One session's cgroup directory, made by [`SessionCgroup::create`].
#[derive(Debug)]
pub(crate) struct SessionCgroup {
    pub(crate) path: PathBuf,
    pub(crate) id: u64,
    pub(crate) dir: File,
}

impl SessionCgroup {
    /// Makes `parent/name@OWNER` (`OWNER` this process's [`owner_tag`], which a server
    /// started later reads to kill what a dead one left), owned by root and writable only by
    /// it (mode 0755, the files 0644), so that the session's processes cannot move
    /// themselves out or make children.
    pub(crate) fn create(parent: &Path, name: &str, owner: &str) -> Result<Self, Error> {
        let path = parent.join(format!("{name}@{owner}"));
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| Error::cgroup(&path, "mkdir", e))?;
        let dir = File::open(&path).map_err(|e| Error::cgroup(&path, "open", e))?;
        let id = dir
            .metadata()
            .map_err(|e| Error::cgroup(&path, "stat", e))?
            .ino();
        Ok(SessionCgroup { path, id, dir })
    }

    /// `cgroup.procs`, opened for writing by this (root) process. The kernel checks a write to
    /// it against the credentials of the opener, so a child may write `0` to it after
    /// dropping privileges.
    pub(crate) fn open_procs(&self) -> Result<File, Error> {
        let p = self.path.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| Error::cgroup(p, "open cgroup.procs", e))
    }

    pub(crate) fn pids(&self) -> Result<Vec<u32>, Error> {
        read_pids(&self.path)
    }

    /// Kills every process of the cgroup, waits until it is empty, and removes it. Bounded:
    /// gives up after `timeout` with [`Error::Teardown`].
    pub(crate) fn kill_and_remove(&self, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        let kill = self.path.join("cgroup.kill");
        let have_kill = kill.exists();
        loop {
            if have_kill {
                // cgroup.kill (Linux 5.14): SIGKILL to every process, new ones included.
                if let Err(e) = write_file(&kill, b"1")
                    && e.raw_os_error() != Some(nix::libc::ENOENT)
                {
                    return Err(Error::cgroup(kill, "write cgroup.kill", e));
                }
            } else {
                for pid in self.pids()? {
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            if !self.populated()? {
                match fs::remove_dir(&self.path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {}
                    Err(e) => return Err(Error::cgroup(&self.path, "rmdir", e)),
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::Teardown {
                    path: self.path.clone(),
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `populated` in `cgroup.events`: whether any process is in the cgroup.
    fn populated(&self) -> Result<bool, Error> {
        let p = self.path.join("cgroup.events");
        match fs::read_to_string(&p) {
            Ok(text) => Ok(text.lines().any(|l| l.trim() == "populated 1")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::cgroup(p, "read cgroup.events", e)),
        }
    }
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(data)
}

pub(crate) fn read_pids(dir: &Path) -> Result<Vec<u32>, Error> {
    let p = dir.join("cgroup.procs");
    let text = fs::read_to_string(&p).map_err(|e| Error::cgroup(&p, "read cgroup.procs", e))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Writes `pid` to `cgroup.procs` of `dir`.
pub(crate) fn add_pid(dir: &Path, pid: u32) -> Result<(), Error> {
    let p = dir.join("cgroup.procs");
    write_file(&p, pid.to_string().as_bytes())
        .map_err(|e| Error::cgroup(p, "write cgroup.procs", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_hybrid_and_unified_layouts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup2(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(find_cgroup2(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let escaped = "30 24 0:26 / /mnt/a\\040b rw - cgroup2 none rw\n";
        assert_eq!(find_cgroup2(escaped), Some(PathBuf::from("/mnt/a b")));
        assert_eq!(
            find_cgroup2("31 23 0:28 / /x rw - cgroup cgroup rw\ngarbage\n"),
            None
        );
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn only_names_made_by_create_have_an_owner() {
        assert_eq!(session_owner("s-1@1234.5678"), Some((1234, 5678)));
        assert_eq!(session_owner("a.b_c-d@1.0"), Some((1, 0)));
        for other in [
            "getty@tty1.service",
            "user@1000.service",
            "x@notatag",
            "x@12",
            "x@12.",
            "x@.12",
            "@12.34",
            ".hidden@12.34",
            "s@12.34.56",
            "s@+12.34",
            "s p@12.34",
            "s@123456789012345678901.1",
            "plain",
        ] {
            assert_eq!(session_owner(other), None, "{other}");
        }
        let own = owner_tag().unwrap();
        assert!(session_owner(&format!("s@{own}")).is_some());
    }
}
