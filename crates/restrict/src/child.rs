//! Starting a session's process: as an OS login, in a session (`setsid`) of its own, with a
//! pseudo-terminal as its controlling terminal, placed in the session cgroup — all in the
//! forked child, before `exec`, so no code of the user's runs before every step is done.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use nix::unistd::{Gid, Uid};
use rustix::pty::OpenptFlags;

use crate::Error;
use crate::placement::Placement;

/// The most supplementary groups a login may have (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

/// An OS account, as the system's user database (`getpwnam`, `getgrouplist`) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Login {
    /// The login name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Every group it belongs to, the primary one included.
    pub groups: Vec<u32>,
    /// Its home directory.
    pub home: PathBuf,
    /// Its login shell (`/bin/sh` when the database gives none).
    pub shell: PathBuf,
}

impl Login {
    /// Looks `name` up in the system's user database. `Ok(None)`: there is no such account.
    ///
    /// # Errors
    ///
    /// [`Error::Account`] when the database cannot be read or the name cannot be a C string.
    pub fn lookup(name: &str) -> Result<Option<Login>, Error> {
        let bad = |reason: String| Error::Account {
            name: name.chars().take(80).collect(),
            reason,
        };
        let c_name = CString::new(name).map_err(|_| bad("contains a NUL byte".to_owned()))?;
        let Some(user) =
            nix::unistd::User::from_name(name).map_err(|e| bad(format!("getpwnam: {e}")))?
        else {
            return Ok(None);
        };
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| bad(format!("getgrouplist: {e}")))?;
        if groups.len() > MAX_GROUPS {
            return Err(bad(format!("more than {MAX_GROUPS} groups")));
        }
        let shell = if user.shell.as_os_str().is_empty() {
            PathBuf::from("/bin/sh")
        } else {
            user.shell
        };
        Ok(Some(Login {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
            home: user.dir,
            shell,
        }))
    }

    /// The credentials a process of this login runs with.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        }
    }
}

/// The user, group and supplementary groups a child takes before `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The supplementary groups (at most [`MAX_GROUPS`]).
    pub groups: Vec<u32>,
}

/// A pseudo-terminal: the server keeps the controller side, the session's process gets the
/// user side as its standard input, output and error and its controlling terminal.
///
/// Both descriptors are opened close-on-exec, so a pseudo-terminal of one session never
/// leaks into a process of another that is started at the same time.
#[derive(Debug)]
pub struct Pty {
    /// The controller side (`/dev/ptmx`): read the terminal's output, write its input.
    pub controller: OwnedFd,
    /// The user side (`/dev/pts/N`).
    pub user: OwnedFd,
}

impl Pty {
    /// Opens a pseudo-terminal of `cols` × `rows` characters.
    ///
    /// # Errors
    ///
    /// The system's error (no `/dev/ptmx`, too many terminals).
    pub fn open(cols: u16, rows: u16) -> std::io::Result<Pty> {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let controller = rustix::pty::openpt(flags)?;
        rustix::pty::grantpt(&controller)?;
        rustix::pty::unlockpt(&controller)?;
        let user = rustix::pty::ioctl_tiocgptpeer(&controller, flags)?;
        resize(&controller, cols, rows)?;
        Ok(Pty { controller, user })
    }
}

/// The path of the terminal whose controller side is `controller` (`/dev/pts/N`).
///
/// # Errors
///
/// The system's error (`controller` is not a pseudo-terminal's controller side).
pub fn terminal_path(controller: impl AsFd) -> std::io::Result<String> {
    let name = rustix::pty::ptsname(controller, Vec::new())?;
    Ok(name.to_string_lossy().into_owned())
}

/// Sets the size of the terminal behind `fd` (either side): the `window-change` of SSH. The
/// foreground process group gets `SIGWINCH` from the kernel.
///
/// # Errors
///
/// The system's error (`fd` is not a terminal).
pub fn resize(fd: impl AsFd, cols: u16, rows: u16) -> std::io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// What a child does between `fork` and `exec`, in this order:
///
/// 1. enter the session cgroup ([`Placement`]), while still privileged;
/// 2. start a new session (`setsid`): it leads its own process group, which the caller can
///    signal as a whole, and has no controlling terminal of the server's;
/// 3. make the given terminal its controlling terminal (`TIOCSCTTY`);
/// 4. set the file mode creation mask;
/// 5. take the credentials: supplementary groups, then group, then user (`setgroups`,
///    `setgid`, `setuid`), and check that root cannot be regained.
///
/// If any step fails the spawn fails with that step's error, and nothing of the user's runs.
/// Do not also set [`CommandExt::uid`] or `gid` on the command: the standard library applies
/// those before the hooks, and step 1 and 5 would then run in the wrong order.
#[derive(Debug, Default, Clone)]
pub struct ChildSetup {
    placement: Option<Placement>,
    new_session: bool,
    terminal: Option<Arc<OwnedFd>>,
    umask: Option<u32>,
    credentials: Option<(Uid, Gid, Arc<[Gid]>)>,
    directory: Option<Arc<std::ffi::CString>>,
}

impl ChildSetup {
    /// Nothing to do yet.
    pub fn new() -> Self {
        ChildSetup::default()
    }

    /// Enter a session cgroup first ([`crate::Session::placement`]).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Start a new session and process group (`setsid`).
    pub fn new_session(mut self) -> Self {
        self.new_session = true;
        self
    }

    /// Make the terminal behind `terminal` (the user side of a [`Pty`]) the controlling
    /// terminal. Implies [`ChildSetup::new_session`].
    ///
    /// # Errors
    ///
    /// The system's error when the descriptor cannot be duplicated.
    pub fn controlling_terminal(mut self, terminal: impl AsFd) -> std::io::Result<Self> {
        self.terminal = Some(Arc::new(terminal.as_fd().try_clone_to_owned()?));
        self.new_session = true;
        Ok(self)
    }

    /// Set the file mode creation mask (sshd gives `022`).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask & 0o777);
        self
    }

    /// Run as `credentials`. Needs root (or the same credentials as the caller's).
    pub fn credentials(mut self, credentials: &Credentials) -> Self {
        let groups: Vec<Gid> = credentials
            .groups
            .iter()
            .take(MAX_GROUPS)
            .map(|g| Gid::from_raw(*g))
            .collect();
        self.credentials = Some((
            Uid::from_raw(credentials.uid),
            Gid::from_raw(credentials.gid),
            groups.into(),
        ));
        self
    }

    /// Start in `directory`, entered last, as the new credentials (sshd's order: a home the
    /// user cannot enter, or one a link points elsewhere, is not entered with root's rights),
    /// or in `/` when it cannot be entered. A path with a NUL byte is never entered.
    pub fn working_directory(mut self, directory: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        self.directory = std::ffi::CString::new(directory.as_os_str().as_bytes())
            .ok()
            .map(Arc::new)
            .or_else(|| Some(Arc::new(c"/".to_owned())));
        self
    }

    /// Registers the steps on `cmd` (a `tokio::process::Command`: pass `as_std_mut()`).
    pub fn apply(self, cmd: &mut Command) -> &mut Command {
        // SAFETY: `pre_exec` hooks run in the forked child, where only async-signal-safe work
        // is allowed: `in_child` makes system calls only (`write`, `setsid`, `ioctl`, `umask`,
        // `setgroups`, `setgid`, `setuid`, `chdir`) on data prepared before the fork (an open
        // descriptor, a slice of group ids); it allocates nothing, takes no lock, touches no
        // other thread's state, and its errors are `io::Error`s built from `errno` without
        // allocating.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || self.in_child())
        }
    }

    /// The steps, run in the child. Async-signal-safe (see [`ChildSetup::apply`]).
    fn in_child(&self) -> std::io::Result<()> {
        if let Some(placement) = &self.placement {
            placement.place_current_process()?;
        }
        if self.new_session {
            rustix::process::setsid()?;
        }
        if let Some(terminal) = &self.terminal {
            rustix::process::ioctl_tiocsctty(terminal.as_fd())?;
        }
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        if let Some((uid, gid, groups)) = &self.credentials {
            nix::unistd::setgroups(groups)?;
            nix::unistd::setgid(*gid)?;
            nix::unistd::setuid(*uid)?;
            // A process that dropped root must not be able to take it back.
            if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
                return Err(std::io::Error::from_raw_os_error(nix::libc::EPERM));
            }
        }
        if let Some(directory) = &self.directory
            && rustix::process::chdir(directory.as_c_str()).is_err()
        {
            rustix::process::chdir(c"/")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::Stdio;

    #[test]
    fn root_is_in_the_user_database() {
        let root = Login::lookup("root").expect("read").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert!(
            Login::lookup("no-such-login-ippin")
                .expect("read")
                .is_none()
        );
        assert!(matches!(Login::lookup("a\0b"), Err(Error::Account { .. })));
    }

    #[test]
    fn a_child_gets_a_terminal_of_its_own() {
        let pty = Pty::open(100, 40).expect("pty");
        let setup = ChildSetup::new()
            .controlling_terminal(&pty.user)
            .expect("dup");
        let mut cmd = Command::new("sh");
        // Fields 5 and 6 of /proc/PID/stat are the process group and the session.
        cmd.args([
            "-c",
            "stty size; tty; read -r _ _ _ _ pg sid _ < /proc/$$/stat; echo \"$sid $pg\"",
        ])
        .stdin(Stdio::from(pty.user.try_clone().unwrap()))
        .stdout(Stdio::from(pty.user.try_clone().unwrap()))
        .stderr(Stdio::from(pty.user.try_clone().unwrap()));
        setup.apply(&mut cmd);
        let mut child = cmd.spawn().expect("spawn");
        let pid = child.id();
        drop(cmd);
        drop(pty.user);
        let status = child.wait().expect("wait");
        assert!(status.success());
        let mut out = Vec::new();
        let mut controller = std::fs::File::from(pty.controller);
        // Reads until the user side is closed everywhere (EIO on Linux).
        let mut buf = [0u8; 256];
        while let Ok(n) = controller.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("40 100\r\n"), "{out}");
        assert!(out.contains("/dev/pts/"), "{out}");
        let path = terminal_path(&controller).expect("ptsname");
        assert!(out.contains(&path), "{out} {path}");
        // Its own session and process group: both are its pid.
        assert!(out.contains(&format!("{pid} {pid}")), "{out}");
    }

    #[test]
    fn a_child_takes_the_credentials_and_cannot_get_root_back() {
        let creds = Credentials {
            uid: 4242,
            gid: 4243,
            groups: vec![4243, 4244, 4245],
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "id -u; id -g; id -G; umask"]);
        ChildSetup::new()
            .new_session()
            .umask(0o022)
            .credentials(&creds)
            .apply(&mut cmd);
        let out = cmd.output().expect("spawn");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "4242\n4243\n4243 4244 4245\n0022\n"
        );
    }

    /// The working directory is entered with the new credentials, not root's: a folder only
    /// root may enter is not entered (the child starts in `/`), one the user may is.
    #[test]
    fn the_working_directory_is_entered_as_the_user() {
        use std::os::unix::fs::PermissionsExt;
        let creds = Credentials {
            uid: 4242,
            gid: 4243,
            groups: vec![4243],
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let closed = root.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (dir, want) in [
            (&closed, std::path::Path::new("/")),
            (&open, open.as_path()),
        ] {
            let mut cmd = Command::new("pwd");
            ChildSetup::new()
                .credentials(&creds)
                .working_directory(dir)
                .apply(&mut cmd);
            let out = cmd.output().expect("spawn");
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                want.to_string_lossy(),
                "{}",
                dir.display()
            );
        }
    }

    #[test]
    fn a_failed_step_means_nothing_runs() {
        // Making a terminal the controlling one of a process that is not a session leader
        // fails (EPERM): the spawn fails, the program never starts.
        let pty = Pty::open(80, 24).expect("pty");
        let mut setup = ChildSetup::new()
            .controlling_terminal(&pty.user)
            .expect("dup");
        setup.new_session = false;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 0"]);
        setup.apply(&mut cmd);
        assert!(cmd.status().is_err());
    }
}
