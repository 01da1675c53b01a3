//! The enforcer (one loaded object, one policy) and its sessions.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ippin_policy::NetworkRestrictions;

use crate::bpf::Loaded;
use crate::cgroup::{self, SessionCgroup};
use crate::placement::Placement;
use crate::{DEFAULT_PARENT, EnforcerConfig, Error, NetEvent};

/// How long [`Session::end`] waits for the killed processes to go.
const TEARDOWN: Duration = Duration::from_secs(5);

/// Loaded programs, one policy, and the parent of the session cgroups.
///
/// Made once per server; cheap to share (`Arc`) between connection handlers. Each
/// [`Session`] keeps what it needs alive, so sessions may outlive the enforcer.
pub struct Enforcer {
    loaded: Arc<Loaded>,
    parent: PathBuf,
    /// This process's owner tag (`PID.STARTTIME`), at the end of its session cgroups' names.
    owner: String,
    queue: usize,
    /// What [`Enforcer::new`] found left by a server that is gone: session cgroups killed and
    /// removed, and those that could not be (still restricted, by the policy of then).
    orphans: (usize, usize),
    /// Set by [`Enforcer::end_sessions`]: no new session.
    stopping: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl Enforcer {
    /// Checks the kernel and the parent cgroup, loads and verifies the programs, and writes
    /// `policy` into their maps.
    ///
    /// # Errors
    ///
    /// [`Error::NotRoot`], [`Error::NoCgroup2`], [`Error::Parent`] (a configured parent that
    /// is missing or not a cgroup v2 directory), [`Error::Bpf`] (the kernel refused the
    /// object), [`Error::Policy`]. There is no partial success: an `Err` means no session can
    /// be made, and a caller with a policy must refuse sessions.
    pub fn new(config: &EnforcerConfig, policy: &NetworkRestrictions) -> Result<Self, Error> {
        // With `create`, a parent or an error (`None` cannot come back).
        let parent = checked_parent(config, true)?.ok_or(Error::NoCgroup2)?;
        let owner = cgroup::owner_tag().ok_or_else(|| Error::Parent {
            path: parent.clone(),
            reason: "cannot read this process's start time in /proc/self/stat".into(),
        })?;
        let loaded = Loaded::load(policy, config.observe)?;
        // What a server that is gone left: its programs are still attached (with its last
        // policy), but no one follows the policy for them any more. Sessions end with their
        // server, so they end now.
        let (removed, failed) = cgroup::reap_orphans(&parent, TEARDOWN);
        Ok(Enforcer {
            loaded,
            parent,
            owner,
            queue: config.event_queue.max(1),
            orphans: (removed.len(), failed.len()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The parent cgroup of the sessions.
    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// Ends every session this process made under the parent that is still there (kills its
    /// processes, removes its cgroup), and makes no new one from then on
    /// ([`Error::Stopping`]): for a server that stops. Without it, sessions under a parent
    /// outside the service's own cgroup would run on, held to the policy of then, until the
    /// next server on the parent ends them. Returns how many were ended and how many could
    /// not be (processes stuck in the kernel).
    pub fn end_sessions(&self) -> (usize, usize) {
        // Set before the parent is listed: a session made meanwhile either exists by then (and
        // is listed) or sees the flag after making its cgroup and removes it itself.
        self.stopping.store(true, Ordering::SeqCst);
        let (removed, failed) = cgroup::reap_owned(&self.parent, &self.owner, TEARDOWN);
        (removed.len(), failed.len())
    }

    /// One line on what is in force, for a server to log at start:
    /// `eBPF connect4/connect6/sendmsg4/sendmsg6 on session cgroups under
    /// /sys/fs/cgroup/ippin; policy: 2 allow, 1 deny rules; protected endpoints: 2; observe:
    /// off`.
    pub fn summary(&self) -> String {
        let (has, allow, deny, observe) = self.loaded.state();
        let policy = if self.loaded.denying_all() {
            "REFUSING EVERYTHING (the last update failed half-way)".to_owned()
        } else if has {
            format!("{allow} allow, {deny} deny rules")
        } else {
            "none (all allowed)".to_owned()
        };
        let orphans = match self.orphans {
            (0, 0) => String::new(),
            (removed, 0) => format!("; sessions left by a server that is gone: {removed} ended"),
            (removed, stuck) => format!(
                "; sessions left by a server that is gone: {removed} ended, {stuck} could not be \
                 (still restricted by the policy of then)"
            ),
        };
        format!(
            "eBPF connect4/connect6/sendmsg4/sendmsg6 on session cgroups under {}; policy: {policy}; protected endpoints: {}; observe: {}{orphans}",
            self.parent.display(),
            self.loaded.protected_count(),
            if observe { "on" } else { "off" }
        )
    }

    /// Replaces the policy for every session, running or future, from their next `connect`
    /// or send. See the crate docs for the order of the update.
    pub fn set_policy(&self, policy: &NetworkRestrictions) -> Result<(), Error> {
        self.loaded.set_policy(policy)
    }

    /// Sets the endpoints (address and port) that no session's process may reach, whatever
    /// the policy, also with none: the access server's own listeners, so that a session
    /// cannot write a PROXY header (or any header) to a listener that trusts this host.
    /// A listener on an unspecified address (`0.0.0.0:P`, `[::]:P`) is its port on every
    /// network of `host_networks` (this host's addresses: loopback, its interfaces' addresses,
    /// "AnyIP" local routes), in both families. Replaces the previous set; every session,
    /// running or future, is held to it from its next `connect` or send.
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] when the kernel map refuses an update, or more than 4,096
    /// endpoints, ports or networks.
    pub fn protect(
        &self,
        endpoints: &[std::net::SocketAddr],
        host_networks: &[ipnet::IpNet],
    ) -> Result<(), Error> {
        self.loaded.set_protected(endpoints, host_networks)
    }

    /// Whether the last policy update failed half-way, so that every session's connects and
    /// sends are refused until an update succeeds ([`Enforcer::set_policy`] says why).
    pub fn denying_all(&self) -> bool {
        self.loaded.denying_all()
    }

    /// Turns reporting of allowed decisions on or off.
    pub fn set_observe(&self, observe: bool) -> Result<(), Error> {
        self.loaded.set_observe(observe)
    }

    /// Events dropped so far: the kernel's ring buffer was full, a session's queue was full,
    /// or the event came from a cgroup with no session (one that just ended).
    pub fn lost_events(&self) -> u64 {
        self.loaded.kernel_lost() + self.loaded.dropped.load(Ordering::Relaxed)
    }

    /// Makes the cgroup `<parent>/<name>` and attaches the programs to it. Place the
    /// session's first process in it with [`Session::confine`] (or [`Session::placement`])
    /// before it runs any code of the user's.
    ///
    /// `name` is 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.` (a session id).
    ///
    /// # Errors
    ///
    /// [`Error::SessionName`], [`Error::Cgroup`] (including a session of that name that
    /// exists), [`Error::Bpf`] when the programs cannot be attached; the cgroup is removed
    /// again then.
    pub fn session(&self, name: &str) -> Result<Session, Error> {
        check_name(name)?;
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Stopping);
        }
        let cg = SessionCgroup::create(&self.parent, name, &self.owner)?;
        if self.stopping.load(Ordering::SeqCst) {
            // `end_sessions` began meanwhile and may have listed the parent before this one
            // existed.
            let _ = fs::remove_dir(&cg.path);
            return Err(Error::Stopping);
        }
        // From here on, a failure removes the cgroup (nothing is in it yet).
        let undo = |e: Error| {
            let _ = fs::remove_dir(&cg.path);
            e
        };
        let procs = cg.open_procs().map_err(undo)?;
        self.loaded.attach(&cg.dir).map_err(undo)?;
        let (tx, rx) = sync_channel(self.queue);
        self.loaded
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cg.id, tx);
        Ok(Session {
            name: name.to_owned(),
            placement: Placement {
                procs: Arc::new(procs),
            },
            events: Mutex::new(Some(rx)),
            state: Mutex::new(Some(Live { cg })),
            loaded: self.loaded.clone(),
        })
    }
}

/// Ends the sessions that a server which no longer runs left under the parent of `config`
/// (the same as [`Enforcer::new`] does first), for a server that starts without enforcement
/// (no policy any more): their programs still hold them to the policy of then, but nobody
/// follows lockouts or user removals for them. Returns how many were ended and how many could
/// not be (processes stuck in the kernel). Without cgroup v2, or without the default parent,
/// there are none.
///
/// # Errors
/// [`Error::NotRoot`], [`Error::NoCgroup2`], [`Error::Parent`] for a configured parent that
/// is not a cgroup v2 directory root alone may write.
pub fn end_orphaned_sessions(config: &EnforcerConfig) -> Result<(usize, usize), Error> {
    let Some(parent) = checked_parent(config, false)? else {
        return Ok((0, 0));
    };
    let (removed, failed) = cgroup::reap_orphans(&parent, TEARDOWN);
    Ok((removed.len(), failed.len()))
}

/// Root, then the parent of `config`, checked ([`cgroup::check_parent`]). The default one
/// (`<cgroup2 mount>/ippin`) is made (mode 0755) when `create`; otherwise `None` when it, or
/// cgroup v2 itself, is not there.
fn checked_parent(config: &EnforcerConfig, create: bool) -> Result<Option<PathBuf>, Error> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    let parent = match &config.parent {
        Some(p) => p.clone(),
        None if create => {
            let p = cgroup::cgroup2_mount()?.join(DEFAULT_PARENT);
            match fs::DirBuilder::new().mode(0o755).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::Parent {
                        path: p,
                        reason: format!("cannot create it: {e}"),
                    });
                }
            }
            p
        }
        None => {
            let Ok(mount) = cgroup::cgroup2_mount() else {
                return Ok(None);
            };
            let p = mount.join(DEFAULT_PARENT);
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    cgroup::check_parent(&parent)?;
    Ok(Some(parent))
}

fn check_name(name: &str) -> Result<(), Error> {
    let bad = |reason| Error::SessionName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("must be 1 to 64 bytes"));
    }
    if name.starts_with('.') {
        return Err(bad("must not start with `.`"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only A-Z a-z 0-9 . _ - are allowed"));
    }
    if name.starts_with("cgroup.") {
        return Err(bad("must not start with `cgroup.`"));
    }
    Ok(())
}

/// A session's cgroup, the programs attached to it until it is removed.
struct Live {
    cg: SessionCgroup,
}

/// One restricted session: its cgroup, with the programs attached, and its events.
/// `Send` and `Sync`: share it (`Arc`) between the tasks of one SSH session.
///
/// Ends with [`Session::end`], or when dropped (the same, with errors ignored).
pub struct Session {
    name: String,
    placement: Placement,
    events: Mutex<Option<Receiver<NetEvent>>>,
    state: Mutex<Option<Live>>,
    loaded: Arc<Loaded>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's name (its cgroup directory's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The session cgroup's directory.
    pub fn path(&self) -> Option<PathBuf> {
        self.live(|l| l.cg.path.clone())
    }

    /// The cgroup id, as [`NetEvent::cgroup_id`] and `bpf_get_current_cgroup_id` report it.
    pub fn cgroup_id(&self) -> Option<u64> {
        self.live(|l| l.cg.id)
    }

    fn live<T>(&self, f: impl FnOnce(&Live) -> T) -> Option<T> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    /// Makes `cmd`'s child enter the session cgroup before it executes the program: after
    /// `fork`, before `exec`, so no code of the user's runs outside it. If entering fails,
    /// the spawn fails (with the error) and nothing runs.
    ///
    /// With `tokio::process::Command`, pass `cmd.as_std_mut()`.
    ///
    /// **The child keeps the caller's user.** Called from a server running as root, it
    /// runs as root, and root is not confined: it can move itself out of the cgroup or
    /// detach the programs (the crate's docs, "Root is not confined"). For a user's session, run the
    /// child as the user: [`crate::ChildSetup`] with [`Session::placement`] and its login
    /// (groups, group, user), which orders the steps; `confine` alone is for a caller that
    /// already runs unprivileged, and for tests.
    pub fn confine<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        crate::ChildSetup::new()
            .placement(self.placement.clone())
            .apply(cmd)
    }

    /// What places processes in this session, for callers that fork by other means (a PTY
    /// library, `posix_spawn` with a helper): call
    /// [`Placement::place_current_process`] in the child before `exec`.
    pub fn placement(&self) -> Placement {
        self.placement.clone()
    }

    /// Moves the process `pid` (with all its threads) into the session. Only safe against
    /// escape for a process that cannot run the user's code yet (stopped, or waiting for
    /// its parent's go-ahead), and it gets no seccomp filter (a 32-bit program it runs
    /// could set options the programs never see: see [`Placement::place_current_process`]):
    /// prefer [`Session::confine`].
    pub fn add_process(&self, pid: u32) -> Result<(), Error> {
        let path = self.path().ok_or(Error::Cgroup {
            path: PathBuf::from(&self.name),
            op: "add process",
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        cgroup::add_pid(&path, pid)
    }

    /// The pids in the session cgroup now (empty after the session ended).
    pub fn processes(&self) -> Result<Vec<u32>, Error> {
        match self.path() {
            Some(p) => cgroup::read_pids(&p),
            None => Ok(Vec::new()),
        }
    }

    /// The session's decisions, as the kernel reports them: denials always, allowed ones
    /// when observing. Given once (then `None`), to whatever writes the audit log: a thread,
    /// or a blocking task of an async server. The queue holds
    /// [`EnforcerConfig::event_queue`](crate::EnforcerConfig::event_queue) events; more are
    /// dropped and counted ([`Enforcer::lost_events`]). It disconnects when the session ends.
    pub fn take_events(&self) -> Option<Receiver<NetEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Ends the session: kills every process left in it (`cgroup.kill`), waits (at most 5 s)
    /// until it is empty, detaches the programs and removes the cgroup. Blocks while it waits
    /// (usually a few milliseconds): an async server calls it from a blocking task.
    ///
    /// # Errors
    ///
    /// [`Error::Teardown`] when processes are still there after 5 s (they stay restricted:
    /// the programs stay attached until the cgroup is gone), [`Error::Cgroup`].
    pub fn end(self) -> Result<(), Error> {
        self.finish()
    }

    fn finish(&self) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(live) = state.take() else {
            return Ok(());
        };
        match live.cg.kill_and_remove(TEARDOWN) {
            Ok(()) => {
                self.loaded
                    .routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&live.cg.id);
                Ok(())
            }
            Err(e) => {
                // The programs stay on the cgroup that is still there.
                *state = Some(live);
                Err(e)
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Processes that survive 5 s of SIGKILL (stuck in the kernel) keep the cgroup, and
        // the programs stay attached to it for as long as it lives.
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Enforcer>();
        send_sync::<Session>();
        send_sync::<Placement>();
    }

    #[test]
    fn session_names_are_plain_directory_names() {
        for ok in ["sid-1", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "cgroup.procs",
            &"x".repeat(65),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
