//! The built-in commands a session can `exec`. There is no shell: a command line is split on
//! white space and the first word names a built-in.
//!
//! | command | output | status |
//! |---|---|---|
//! | `whoami` | `user`, `login` (the OS login, or `none` for a session of the built-ins), `roles`, `observed` (ip:port, provenance, trust), `pinned`, `login_ip`, `session`: one `key: value` line each | 0 |
//! | `echo ARGS…` | the arguments joined by one space, and a newline | 0 |
//! | anything else | a message on stderr | 127 |

use ippin_policy::ObservedAddr;

use ippin_access::ssh::Authorized;

/// The longest command line accepted, in bytes.
pub const MAX_COMMAND_LEN: usize = 4096;

/// What a built-in wrote and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Bytes for the channel's standard output.
    pub stdout: String,
    /// Bytes for the channel's standard error.
    pub stderr: String,
    /// The exit status.
    pub status: u32,
}

/// Runs the built-in named by `command` for the session of `who`, seen at `observed`.
pub fn run_builtin(
    command: &[u8],
    who: &Authorized,
    observed: &ObservedAddr,
    session_id: &str,
) -> ExecResult {
    if command.len() > MAX_COMMAND_LEN {
        return fail(format!(
            "ippin: command line longer than {MAX_COMMAND_LEN} bytes\n"
        ));
    }
    let Ok(text) = std::str::from_utf8(command) else {
        return fail("ippin: the command line is not UTF-8\n".to_owned());
    };
    let mut words = text.split_whitespace();
    match words.next() {
        Some("whoami") => {
            let pinned = if who.pinned.is_empty() {
                "none".to_owned()
            } else {
                who.pinned.join(", ")
            };
            let roles = if who.roles.is_empty() {
                "none".to_owned()
            } else {
                who.roles.join(", ")
            };
            let stdout = format!(
                "user: {}\nlogin: {}\nroles: {}\nobserved: {} ({}, {})\npinned: {}\nlogin_ip: {}\nsession: {}\n",
                who.user,
                who.login.as_deref().unwrap_or("none"),
                roles,
                observed.socket_addr(),
                observed.provenance(),
                if observed.is_trusted() {
                    "trusted"
                } else {
                    "untrusted"
                },
                pinned,
                who.login_ip.as_deref().unwrap_or("none"),
                session_id,
            );
            ok(stdout)
        }
        Some("echo") => {
            let args: Vec<&str> = words.collect();
            ok(format!("{}\n", args.join(" ")))
        }
        Some(other) => fail(format!(
            "ippin: `{other}` is not a built-in command; this server runs `whoami` and `echo`\n"
        )),
        None => fail("ippin: empty command; this server runs `whoami` and `echo`\n".to_owned()),
    }
}

fn ok(stdout: String) -> ExecResult {
    ExecResult {
        stdout,
        stderr: String::new(),
        status: 0,
    }
}

fn fail(stderr: String) -> ExecResult {
    ExecResult {
        stdout: String::new(),
        stderr,
        status: 127,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ippin_policy::Provenance;

    fn alice() -> Authorized {
        Authorized {
            user: "alice".into(),
            login: None,
            roles: vec!["pinned-ip".into()],
            pinned: vec!["127.0.0.1/32".into()],
            key_id: "alice".into(),
            serial: 1,
            login_ip: Some("127.0.0.1".into()),
            force_command: None,
            port_forwarding: true,
            pty: true,
            valid_before: u64::MAX,
            pin: ippin_policy::CertPin::None,
            pinned_endpoint: None,
            observed: seen(),
        }
    }

    fn seen() -> ObservedAddr {
        ObservedAddr::new("127.0.0.1:40000".parse().unwrap(), Provenance::Direct, true)
    }

    #[test]
    fn whoami_names_user_address_and_pin() {
        let r = run_builtin(b"whoami", &alice(), &seen(), "sid-1");
        assert_eq!(r.status, 0);
        assert!(
            r.stdout.contains("user: alice\nlogin: none\n"),
            "{}",
            r.stdout
        );
        let as_deploy = Authorized {
            login: Some("deploy".into()),
            ..alice()
        };
        let r = run_builtin(b"whoami", &as_deploy, &seen(), "sid-1");
        assert!(
            r.stdout.contains("user: alice\nlogin: deploy\n"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("observed: 127.0.0.1:40000 (direct, trusted)\n")
        );
        assert!(r.stdout.contains("pinned: 127.0.0.1/32\n"));
        assert!(r.stdout.contains("session: sid-1\n"));
    }

    #[test]
    fn echo_joins_words() {
        let r = run_builtin(b"echo  a  b\tc", &alice(), &seen(), "s");
        assert_eq!((r.stdout.as_str(), r.status), ("a b c\n", 0));
    }

    #[test]
    fn everything_else_is_refused() {
        for cmd in [&b"sh -c id"[..], b"", b"\xff", &[b'a'; MAX_COMMAND_LEN + 1]] {
            let r = run_builtin(cmd, &alice(), &seen(), "s");
            assert_eq!(r.status, 127);
            assert!(r.stdout.is_empty());
            assert!(r.stderr.starts_with("ippin: "));
        }
    }
}
