//! `ippin ssh`: runs the real OpenSSH client with the key and certificate `ippin login` wrote,
//! and when the refusal says the certificate is pinned elsewhere, lacks a pin or has expired,
//! offers to log in again from here and retries once (docs/cli.md, "ippin ssh").
//!
//! - **The identity is ippin's.** `ssh` runs as `ssh -i DIR/ippin_ed25519 -o IdentitiesOnly=yes
//!   [-b IP] USER_ARGS…` (OpenSSH loads `DIR/ippin_ed25519-cert.pub` beside the key). The user's
//!   arguments follow unchanged, but any that would choose another identity (`-i`, `-I`,
//!   `-o IdentityFile`, `CertificateFile`, `IdentitiesOnly`, `IdentityAgent`,
//!   `PKCS11Provider`) are refused before `ssh` runs: OpenSSH adds identity files after ours
//!   and keeps the first value of the others, so they would either be silently ignored or
//!   offer a credential this command does not manage, and the refusal read back could be
//!   another key's.
//! - **Public-key authentication only, no connection sharing** ([`MANAGED_OPTIONS`], given
//!   before the user's, which may not set them): a server must not be able to ask for the
//!   ippin password in ippin's words, and every run must authenticate for the marker below
//!   to mean something.
//! - **The refusal is read, not guessed.** `ssh`'s stderr is forwarded as it comes and scanned
//!   at the same time ([`ippin_access::ssh::refusal::RefusalScan`]: whole lines starting with
//!   the service's `ippin: refused (CODE): `, a known code, bounded). The offer is made only
//!   when `ssh` failed (exit 255, OpenSSH's own failure) and that code is one a login fixes.
//! - **The password goes to the login server only**: the one given with `--server` and
//!   verified with `--ca`, as `ippin login` does; never to the SSH server, whose banner only
//!   triggers the question.
//! - **One retry, default no, on a terminal only**: the answer is one line on stdin, `y` or
//!   `yes`; anything else, end of input or an error is no. Nothing is asked when stdin or
//!   stderr is not a terminal: on a pipe the answer and the password would share a stream
//!   with the remote command's input. The exit status is the last `ssh`'s.
//! - **Only a refusal before authentication counts**: ippin adds `-o PermitLocalCommand=yes
//!   -o LocalCommand=touch MARKER`; OpenSSH runs it once authenticated, so a refusal line
//!   printed by the session (the remote command, a nested `ssh`) never triggers the question
//!   or a second run.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use ippin_access::ssh::SshDenyReason;
use ippin_access::ssh::refusal::RefusalScan;

use crate::Outcome;
use crate::client::LoginArgs;

/// The exit status when the arguments are refused before `ssh` runs.
pub const EXIT_USAGE: i32 = 2;
/// The exit status when `ssh` cannot be started (as a shell's "command not found").
pub const EXIT_NO_SSH: i32 = 127;
/// OpenSSH's own failure status (the only one a refusal can come with).
pub const SSH_FAILED: i32 = 255;
/// The longest answer line read (bytes).
const MAX_ANSWER: u64 = 64;
/// How long the scan of stderr may take to end after `ssh` exited (a process `ssh` left
/// behind, e.g. a `ControlPersist` master, may hold the pipe open).
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// `ippin ssh …`
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The folder `ippin login --out` wrote (`ippin_ed25519`, `ippin_ed25519-cert.pub`); a
    /// login again writes there too.
    #[arg(long, default_value = ".")]
    pub identity: PathBuf,
    /// Never offer to log in again (for scripts): `ssh`'s refusal and status as they are.
    #[arg(long)]
    pub no_relogin: bool,
    /// The login listener for a login again, `https://HOST:PORT` (as `ippin login --server`).
    #[arg(long)]
    pub server: Option<String>,
    /// The ippin user for a login again (as `ippin login --user`).
    #[arg(long)]
    pub user: Option<String>,
    /// The CA that signed the login listener's certificate (as `ippin login --ca`).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The source IP of `ssh` (passed as `-b`) and of a login again (as `ippin login
    /// --bind`). Without it, an `-b IP` or `-o BindAddress=IP` among ssh's arguments is used
    /// for the login again.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// The OpenSSH client to run.
    #[arg(long, default_value = "ssh")]
    pub ssh: PathBuf,
    /// ssh's own arguments, passed unchanged after ippin's: `[OPTIONS] [USER@]HOST [COMMAND…]`
    /// (`--` first when the first of them could be read as one of ippin's).
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SSH_ARGS"
    )]
    pub args: Vec<OsString>,
}

/// What the user's ssh arguments hold that `ippin ssh` needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshArgv {
    /// The source address given with `-b` or `-o BindAddress=` (the last `-b`, OpenSSH's
    /// rule; an `-o` only when there is no `-b`), when it is an IP.
    pub bind: Option<IpAddr>,
    /// A source given that is not an IP (a host name, `-B` interface): a login again cannot
    /// follow it.
    pub bind_other: bool,
}

/// An argument `ippin ssh` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgvError {
    /// An option that chooses another identity than the login's.
    #[error(
        "`{0}`: ippin ssh offers the key and certificate of `ippin login` only; run ssh \
         itself for another identity"
    )]
    Identity(String),
    /// An option that ippin ssh sets itself: how `ssh` authenticates (public key only) and
    /// connection sharing (off).
    #[error(
        "`{0}`: ippin ssh sets this itself (public-key authentication only, no connection \
         sharing); run ssh itself to change it"
    )]
    Managed(String),
    /// An argument that is not UTF-8 where an option is read.
    #[error("an ssh option that is not UTF-8")]
    NotUtf8,
}

/// OpenSSH 9's client options that take a value (its `getopt` string:
/// `1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy`).
const WITH_VALUE: &[u8] = b"bceilmopBDEFIJLOPQRSwW";

/// `-o` keywords that choose the identity (compared without case, as OpenSSH does).
/// `identityfile2` and `smartcarddevice` are OpenSSH's aliases of `identityfile` and
/// `pkcs11provider`; `localcommand` and `permitlocalcommand` are ippin's (the marker that
/// tells a refusal from the session's own output, see [`ssh_command`]).
const IDENTITY_KEYWORDS: &[&str] = &[
    "identityfile",
    "identityfile2",
    "certificatefile",
    "identitiesonly",
    "identityagent",
    "pkcs11provider",
    "smartcarddevice",
    "localcommand",
    "permitlocalcommand",
];

/// `-o` keywords ippin sets itself (compared without case), and why:
///
/// - how `ssh` authenticates: the key and certificate only. A server that offered
///   keyboard-interactive could otherwise ask, in ippin's own words, for the password that
///   only the login server may have (its refusal banner first, to make the question look
///   expected). `challengeresponseauthentication`, `skeyauthentication` and
///   `tisauthentication` are OpenSSH's aliases of `kbdinteractiveauthentication`.
/// - connection sharing: with a master connection `ssh` does not authenticate, so the
///   marker that tells a refusal before login from the session's own output would never be
///   written, and a remote command that printed a refusal line would be offered a relogin
///   and run again.
const MANAGED_KEYWORDS: &[&str] = &[
    "preferredauthentications",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "skeyauthentication",
    "tisauthentication",
    "controlmaster",
    "controlpath",
    "controlpersist",
];

/// The options for [`MANAGED_KEYWORDS`], given before the user's (OpenSSH keeps the first
/// value of each).
const MANAGED_OPTIONS: &[&str] = &[
    "PreferredAuthentications=publickey",
    "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "ControlMaster=no",
    "ControlPath=none",
];

/// Reads the user's ssh arguments as OpenSSH's client does: options (clustered or not, a
/// value attached or in the next argument) up to the destination, options again after it
/// (OpenSSH parses them once more), then the remote command, never read. `--` ends the
/// options. Unknown options are left to `ssh` to refuse.
pub fn read_ssh_argv(args: &[OsString]) -> Result<SshArgv, ArgvError> {
    let mut out = SshArgv::default();
    let mut b_bind: Option<String> = None;
    let mut o_bind: Option<String> = None;
    let mut i = 0;
    let mut destination_seen = false;
    while i < args.len() {
        let arg = args[i].as_encoded_bytes();
        if arg == b"--" {
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            if destination_seen {
                break;
            }
            destination_seen = true;
            i += 1;
            continue;
        }
        let mut j = 1;
        while j < arg.len() {
            let c = arg[j];
            if c == b'M' {
                // `-M` sets ControlMaster whatever came first.
                return Err(ArgvError::Managed("-M".into()));
            }
            if !WITH_VALUE.contains(&c) {
                j += 1;
                continue;
            }
            let value: &OsStr = if j + 1 < arg.len() {
                // The rest of this argument is the value.
                let s = args[i].to_str().ok_or(ArgvError::NotUtf8)?;
                OsStr::new(&s[j + 1..])
            } else {
                i += 1;
                match args.get(i) {
                    Some(v) => v,
                    // A missing value: ssh says so.
                    None => return Ok(out),
                }
            };
            match c {
                b'i' | b'I' => return Err(ArgvError::Identity(format!("-{}", c as char))),
                // `-S` sets ControlPath whatever came first.
                b'S' => return Err(ArgvError::Managed("-S".into())),
                b'b' => b_bind = Some(value.to_str().ok_or(ArgvError::NotUtf8)?.to_owned()),
                b'B' => out.bind_other = true,
                b'o' => {
                    let text = value.to_str().ok_or(ArgvError::NotUtf8)?;
                    // OpenSSH's `strdelim`: blanks and one `=` before the keyword are
                    // skipped, and quotes anywhere in it are dropped.
                    let text = text
                        .trim_start_matches(|c: char| c.is_whitespace())
                        .trim_start_matches('=')
                        .trim_start_matches(|c: char| c.is_whitespace());
                    let end = text
                        .find(|c: char| c == '=' || c.is_whitespace())
                        .unwrap_or(text.len());
                    let key: String = text[..end]
                        .chars()
                        .filter(|c| *c != '"')
                        .collect::<String>()
                        .to_ascii_lowercase();
                    if IDENTITY_KEYWORDS.contains(&key.as_str()) {
                        return Err(ArgvError::Identity(format!("-o {}", &text[..end])));
                    }
                    if MANAGED_KEYWORDS.contains(&key.as_str()) {
                        return Err(ArgvError::Managed(format!("-o {}", &text[..end])));
                    }
                    if key == "bindaddress" && o_bind.is_none() {
                        let v =
                            text[end..].trim_start_matches(|c: char| c == '=' || c.is_whitespace());
                        o_bind = Some(v.trim().trim_matches('"').to_owned());
                    }
                    if key == "bindinterface" {
                        out.bind_other = true;
                    }
                }
                _ => {}
            }
            break;
        }
        i += 1;
    }
    // OpenSSH: `-b` sets the option directly, so it wins over any `-o BindAddress`.
    if let Some(b) = b_bind.or(o_bind) {
        match b.parse::<IpAddr>() {
            Ok(ip) => out.bind = Some(ip),
            Err(_) => out.bind_other = true,
        }
    }
    Ok(out)
}

/// How one `ssh` run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshRun {
    /// Its exit status (128 + the signal when a signal ended it).
    pub code: i32,
    /// The last ippin refusal on its stderr.
    pub refusal: Option<SshDenyReason>,
}

/// The refusal `ippin ssh` offers a new login for after OpenSSH's first run, if any: only
/// when OpenSSH itself failed (255, not a remote command's status), never once the
/// connection authenticated (whatever the remote side then printed, a command's output that
/// reads like a refusal included), never with `--no-relogin`, and only for a refusal a login
/// from here fixes ([`SshDenyReason::relogin_helps`]).
pub(crate) fn relogin_offered(
    run: &SshRun,
    authenticated: bool,
    no_relogin: bool,
) -> Option<SshDenyReason> {
    run.refusal
        .filter(|r| run.code == SSH_FAILED && r.relogin_helps() && !authenticated && !no_relogin)
}

/// What to say before the question, for a refusal a login fixes.
fn why(reason: SshDenyReason) -> &'static str {
    match reason.code() {
        "pinned_ip_mismatch" => "the certificate is pinned to another address",
        "pinned_endpoint_mismatch" => "the certificate is pinned through another private endpoint",
        "pinned_ip_missing" => "the certificate has no pin and your roles require one",
        "pin_too_wide" => "the certificate's pin is wider than your roles allow",
        "expired" => "the certificate has expired",
        _ => "the certificate was refused",
    }
}

/// Whether `answer` (one line) says yes: `y` or `yes`, any case, surrounding blanks ignored.
pub fn is_yes(answer: &str) -> bool {
    let a = answer.trim();
    a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
}

/// Asks `question` on stderr and reads one line of stdin (bounded), both a terminal (the
/// caller checks): yes or no, no on end of input or an error.
fn ask(question: &str) -> bool {
    let mut err = std::io::stderr();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    match std::io::stdin()
        .lock()
        .take(MAX_ANSWER)
        .read_line(&mut line)
    {
        Ok(0) | Err(_) => {
            let _ = err.write_all(b"\n");
            false
        }
        Ok(_) => is_yes(&line),
    }
}

/// Whether the question can be asked: stdin and stderr are a terminal. On a pipe the answer
/// and the password would share one stream with the remote command's input: a first `ssh`
/// that is not refused would forward them to the SSH server, and a program feeding the
/// remote command would answer the question. So without a terminal nothing is asked.
fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The identity folder as an absolute path OpenSSH reads literally (no `~`, `%` or `$`
/// expansion can apply), with the key and its certificate present.
fn identity_key(dir: &Path) -> Result<PathBuf, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = dir.join("ippin_ed25519");
    let text = key
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", key.display()))?;
    if text.contains(['%', '$']) || text.chars().any(char::is_control) {
        return Err(format!(
            "{text}: OpenSSH would expand `%` or `$` in this path; use another folder"
        ));
    }
    for f in [key.clone(), dir.join("ippin_ed25519-cert.pub")] {
        if !f.is_file() {
            return Err(format!(
                "{}: missing; run `ippin login --out {}` first",
                f.display(),
                dir.display()
            ));
        }
    }
    // The key and certificate must be this user's, in a folder of this user's alone:
    // OpenSSH takes a key file another user owns (and a certificate from anyone).
    for name in ["ippin_ed25519", "ippin_ed25519-cert.pub"] {
        crate::client::check_identity_file(&dir, name)?;
    }
    Ok(key)
}

/// Runs `ssh` once: stdin and stdout inherited, stderr forwarded as it comes and scanned.
fn run_ssh(program: &Path, argv: &[OsString]) -> Result<SshRun, String> {
    let mut child = Command::new(program)
        .args(argv)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let mut pipe = child
        .stderr
        .take()
        .ok_or_else(|| "no stderr pipe".to_owned())?;
    let scan = Arc::new(Mutex::new(RefusalScan::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let tee_scan = Arc::clone(&scan);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut out = std::io::stderr();
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                    if let Ok(mut s) = tee_scan.lock() {
                        s.push(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    let _ = done_rx.recv_timeout(STDERR_GRACE);
    let refusal = scan.lock().map(|s| s.clone().finish()).unwrap_or_default();
    Ok(SshRun {
        code: exit_code(status),
        refusal,
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(c) = status.code() {
        return c;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    SSH_FAILED
}

/// `ippin ssh`.
pub async fn ssh_command(args: SshArgs) -> Outcome {
    let usage = |m: String| Outcome::fail(EXIT_USAGE, format!("error: {m}\n"));
    let user_argv = match read_ssh_argv(&args.args) {
        Ok(a) => a,
        Err(e) => return usage(e.to_string()),
    };
    if args.bind.is_some() && (user_argv.bind.is_some() || user_argv.bind_other) {
        return usage(
            "--bind and ssh's own -b / BindAddress / -B / BindInterface: give one".into(),
        );
    }
    let key = match identity_key(&args.identity) {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    // The marker: OpenSSH runs `LocalCommand` once authenticated, before any session, so a
    // refusal read while the marker is absent came before authentication, from the SSH
    // service, never from the remote command's output (or a nested ssh's) on stderr.
    let marker_dir = match tempfile::Builder::new().prefix("ippin-ssh-").tempdir() {
        Ok(d) => d,
        Err(e) => return Outcome::fail(EXIT_NO_SSH, format!("error: a temporary folder: {e}\n")),
    };
    let marker = marker_dir.path().join("authenticated");
    let Some(marker_text) = marker.to_str().filter(|t| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    }) else {
        return Outcome::fail(
            EXIT_NO_SSH,
            format!(
                "error: {}: not a plain path for ssh's LocalCommand\n",
                marker.display()
            ),
        );
    };
    let mut argv: Vec<OsString> = vec!["-i".into(), key.into_os_string()];
    argv.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
    for option in MANAGED_OPTIONS {
        argv.extend(["-o".into(), (*option).into()]);
    }
    argv.extend(["-o".into(), "PermitLocalCommand=yes".into()]);
    argv.extend([
        "-o".into(),
        format!("LocalCommand=touch {marker_text}").into(),
    ]);
    if let Some(ip) = args.bind {
        argv.extend(["-b".into(), ip.to_string().into()]);
    }
    argv.extend(args.args.iter().cloned());

    let first = match run_blocking(&args.ssh, &argv).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(EXIT_NO_SSH, format!("error: {e}\n")),
    };
    let authenticated = marker.exists();
    let Some(reason) = relogin_offered(&first, authenticated, args.no_relogin) else {
        return Outcome::fail(first.code, String::new());
    };
    if !can_ask() {
        return Outcome::fail(
            first.code,
            format!(
                "ippin: {} ({}): log in again with `ippin login --out {}` (no terminal to \
                 ask on: ippin ssh never reads an answer or a password from a pipe)\n",
                why(reason),
                reason.code(),
                args.identity.display()
            ),
        );
    }
    let (Some(server), Some(user), Some(ca)) = (&args.server, &args.user, &args.ca) else {
        return Outcome::fail(
            first.code,
            format!(
                "ippin: {} ({}): log in again with `ippin login --out {}`, or give `ippin \
                 ssh` --server, --user and --ca to be offered it\n",
                why(reason),
                reason.code(),
                args.identity.display()
            ),
        );
    };
    let bind = args.bind.or(user_argv.bind);
    let question = format!(
        "ippin: {} ({}). log in again from here{}? [y/N] ",
        why(reason),
        reason.code(),
        bind.map(|ip| format!(" ({ip})")).unwrap_or_default()
    );
    if !ask(&question) {
        return Outcome::fail(first.code, String::new());
    }
    let login = LoginArgs {
        server: server.clone(),
        user: user.clone(),
        ca: Some(ca.clone()),
        out: args.identity.clone(),
        bind,
    };
    let logged = crate::client::login_command(&login).await;
    // The login's report goes to stderr: stdout is the remote command's.
    let _ = std::io::stderr().write_all(logged.stdout.as_bytes());
    let _ = std::io::stderr().write_all(logged.stderr.as_bytes());
    if logged.code != 0 {
        return Outcome::fail(first.code, String::new());
    }
    let _ = std::fs::remove_file(&marker);
    match run_blocking(&args.ssh, &argv).await {
        Ok(r) => Outcome::fail(r.code, String::new()),
        Err(e) => Outcome::fail(EXIT_NO_SSH, format!("error: {e}\n")),
    }
}

async fn run_blocking(program: &Path, argv: &[OsString]) -> Result<SshRun, String> {
    let program = program.to_owned();
    let argv = argv.to_vec();
    tokio::task::spawn_blocking(move || run_ssh(&program, &argv))
        .await
        .map_err(|e| format!("ssh runner: {e}"))?
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Any arguments, ippin's own options among them in several forms (`-o` joined or
        /// apart, `=` or space), options after the destination, arbitrary text: no panic,
        /// and the same answer each time.
        #[test]
        fn any_arguments_are_read_without_panic(
            args in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "-o", "-oControlMaster=yes", "-OControlPath=x", "IdentityFile=/tmp/k",
                        "-i", "-b", "127.0.0.2", "-l", "alice", "host", "--", "-v", "-p",
                        "22", "-oPubkeyAuthentication no", "-F", "/dev/null", "-S",
                    ]).prop_map(String::from),
                    "\\PC{0,12}",
                ],
                0..12,
            ),
        ) {
            let argv: Vec<std::ffi::OsString> = args.iter().map(std::ffi::OsString::from).collect();
            let first = super::read_ssh_argv(&argv).is_ok();
            proptest::prop_assert_eq!(super::read_ssh_argv(&argv).is_ok(), first);
        }
    }

    /// The relogin is offered only for OpenSSH's own failure (255) with a refusal a login
    /// fixes, before authentication, without `--no-relogin`; every other combination runs
    /// nothing more.
    #[test]
    fn relogin_is_offered_only_where_a_login_fixes_the_refusal() {
        use super::{SshRun, relogin_offered};
        use ippin_access::ssh::SshDenyReason;
        let fixes = [
            "pinned_ip_mismatch",
            "pinned_ip_missing",
            "pin_too_wide",
            "expired",
            "pinned_endpoint_mismatch",
        ];
        let others = [
            "untrusted_client_ip",
            "unknown_user",
            "login_not_allowed",
            "untrusted_ca",
            "not_yet_valid",
        ];
        for code in fixes.iter().chain(&others) {
            let reason = SshDenyReason::from_code(code).unwrap();
            for status in [255, 1, 0, 130] {
                for authenticated in [false, true] {
                    for no_relogin in [false, true] {
                        let run = SshRun {
                            code: status,
                            refusal: Some(reason),
                        };
                        let want =
                            fixes.contains(code) && status == 255 && !authenticated && !no_relogin;
                        assert_eq!(
                            relogin_offered(&run, authenticated, no_relogin),
                            want.then_some(reason),
                            "{code} {status} {authenticated} {no_relogin}"
                        );
                    }
                }
            }
        }
        let none = SshRun {
            code: 255,
            refusal: None,
        };
        assert_eq!(relogin_offered(&none, false, false), None);
    }

    use super::*;

    fn argv(args: &[&str]) -> Result<SshArgv, ArgvError> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        read_ssh_argv(&v)
    }

    #[test]
    fn identity_options_are_refused_wherever_ssh_reads_them() {
        for args in [
            &["-i", "k", "host"][..],
            &["-ik", "host"],
            &["-4vi", "k", "host"],
            &["-I", "pkcs11.so", "host"],
            &["-o", "IdentityFile=k", "host"],
            &["-oIdentityFile=k", "host"],
            &["-o", "identityfile k", "host"],
            &["-o", "  CertificateFile = c", "host"],
            &["-o", "IdentitiesOnly=no", "host"],
            &["-o", "IdentityAgent=/tmp/agent", "host"],
            &["-o", "PKCS11Provider=x", "host"],
            // OpenSSH's `strdelim` drops quotes and a leading `=`, and has aliases.
            &["-o", "\"IdentityFile\" /k", "host"],
            &["-o", "Identity\"File\" /k", "host"],
            &["-o", "=IdentityFile /k", "host"],
            &["-o", "IdentityFile2 /k", "host"],
            &["-o", "SmartcardDevice /p11.so", "host"],
            &["-o", "\"IdentityAgent\" /sock", "host"],
            // ippin's marker of authentication is its own.
            &["-o", "LocalCommand=true", "host"],
            &["-o", "PermitLocalCommand no", "host"],
            // OpenSSH reads options once more after the destination.
            &["host", "-i", "k", "cmd"],
        ] {
            assert!(
                matches!(argv(args), Err(ArgvError::Identity(_))),
                "{args:?}"
            );
        }
    }

    /// How ssh authenticates (public key only: a server must not be able to ask for the
    /// ippin password in ippin's words) and connection sharing (off: the authentication
    /// marker must mean something) are ippin's.
    #[test]
    fn authentication_and_sharing_options_are_refused() {
        for args in [
            &[
                "-o",
                "PreferredAuthentications=keyboard-interactive",
                "host",
            ][..],
            &["-o", "PasswordAuthentication=yes", "host"],
            &["-oKbdInteractiveAuthentication=yes", "host"],
            &["-o", "ChallengeResponseAuthentication yes", "host"],
            &["-o", "SKeyAuthentication=yes", "host"],
            &["-o", "TISAuthentication=yes", "host"],
            &["-o", "ControlMaster=auto", "host"],
            &["-o", "\"ControlPath\" /tmp/c", "host"],
            &["-o", "ControlPersist=10m", "host"],
            &["-M", "host"],
            &["-4M", "host"],
            &["-S", "/tmp/ctl", "host"],
            &["-S/tmp/ctl", "host"],
            &["host", "-M", "cmd"],
        ] {
            assert!(matches!(argv(args), Err(ArgvError::Managed(_))), "{args:?}");
        }
        // ippin's own options come first, so OpenSSH keeps them whatever a config file says.
        for option in MANAGED_OPTIONS {
            let key = option.split('=').next().unwrap().to_ascii_lowercase();
            assert!(MANAGED_KEYWORDS.contains(&key.as_str()), "{option}");
        }
    }

    #[test]
    fn what_is_not_an_identity_option_passes() {
        for args in [
            &["host"][..],
            &["-p", "22", "-l", "alice", "host", "whoami"],
            // Values that look like options are values.
            &["-l", "-i", "host"],
            &["-o", "User=-i", "host"],
            &["-oIdentityFileX=1", "host"],
            // The remote command is never read as options.
            &["host", "whoami", "-i", "k"],
            &["--", "host", "-i"],
            &["-F", "/dev/null", "host", "cat", "-o", "IdentityFile=x"],
        ] {
            assert!(argv(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn the_source_address_is_read_as_ssh_reads_it() {
        assert_eq!(
            argv(&["-b", "127.0.0.2", "h"]).unwrap().bind,
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            argv(&["-4b127.0.0.2", "h"]).unwrap().bind,
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            argv(&["-o", "BindAddress=::1", "h"]).unwrap().bind,
            Some("::1".parse().unwrap())
        );
        // `-b` wins over `-o BindAddress`, the first `-o` over a later one.
        assert_eq!(
            argv(&["-o", "BindAddress 127.0.0.3", "-b", "127.0.0.2", "h"])
                .unwrap()
                .bind,
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            argv(&["-oBindAddress=127.0.0.3", "-oBindAddress=127.0.0.4", "h"])
                .unwrap()
                .bind,
            Some("127.0.0.3".parse().unwrap())
        );
        let named = argv(&["-b", "myhost", "h"]).unwrap();
        assert_eq!(named.bind, None);
        assert!(named.bind_other);
        assert!(argv(&["-B", "eth0", "h"]).unwrap().bind_other);
        assert!(!argv(&["h", "-q"]).unwrap().bind_other);
    }

    #[test]
    fn only_y_or_yes_is_yes() {
        for a in ["y\n", "Y\n", "yes\r\n", " YES "] {
            assert!(is_yes(a), "{a:?}");
        }
        for a in ["", "\n", "n\n", "no", "yy", "ye", "y es", "sure"] {
            assert!(!is_yes(a), "{a:?}");
        }
    }

    #[test]
    fn the_service_banner_reads_back_as_its_reason() {
        use ippin_access::ssh::SshDenial;
        use ippin_policy::DenyReason;
        // The exact line the SSH service sends, scanned as the client gets it.
        for reason in [
            SshDenyReason::Pin(DenyReason::PinnedIpMismatch),
            SshDenyReason::Expired,
            SshDenyReason::UnknownUser,
        ] {
            let line = crate::ssh::refusal_banner(&SshDenial {
                reason,
                message: "ippin: any text (with) parentheses: and \u{1b} escapes".into(),
                pinned: Vec::new(),
                roles: Vec::new(),
            });
            let mut scan = RefusalScan::new();
            scan.push(line.as_bytes());
            assert_eq!(scan.finish(), Some(reason));
        }
    }
}
