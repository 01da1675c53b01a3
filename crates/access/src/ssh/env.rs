//! The environment of a session's process: built fresh, never inherited from the server.
//!
//! Pure: the caller looks the login up and spawns; this module only says what the process
//! gets. A client may set only the variables of [`client_may_set`] (its `env` requests),
//! and nothing it sends overrides what the server sets.
//!
//! | variable | value |
//! |---|---|
//! | `USER`, `LOGNAME` | the login |
//! | `HOME`, `SHELL` | the login's, from the user database |
//! | `PATH` | [`USER_PATH`], or [`ROOT_PATH`] for uid 0 |
//! | `SSH_CONNECTION` | `CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT`, the client as *observed* (after PROXY / trusted proxies), IPv4-mapped addresses as IPv4; when the observation is not trusted, the TCP peer instead ([`client_address`]): an untrusted address is the sender's claim |
//! | `SSH_CLIENT` | `CLIENT_IP CLIENT_PORT SERVER_PORT` |
//! | `TERM`, `SSH_TTY` | with a terminal: the `pty-req` terminal name (when it is a plain name) and the terminal's path |
//! | `LANG`, `LC_*` (and `TERM` without a terminal) | from the client's `env` requests, when the value is a plain locale or terminal name |

use std::net::SocketAddr;

use ippin_policy::{ObservedAddr, canonical_ip};

/// `PATH` of an unprivileged login.
pub const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/games";
/// `PATH` of root.
pub const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most `env` requests kept per channel; more are refused.
pub const MAX_CLIENT_VARS: usize = 32;
/// The longest value of a variable a client sets, in bytes.
pub const MAX_VALUE: usize = 64;

/// Whether a client's `env` request for `name=value` is accepted: `TERM` with a
/// [`plain_terminal_name`], or `LANG` or `LC_` followed by capitals and `_` (`LC_ALL`,
/// `LC_CTYPE`, ...) with a locale name: 1 to 64 bytes of `A-Z a-z 0-9 _ . @ -`. No path
/// (glibc loads locale files from a value with `/`), no control character, nothing a shell
/// start-up file could trip over.
pub fn client_may_set(name: &str, value: &str) -> bool {
    if name == "TERM" {
        return plain_terminal_name(value);
    }
    let locale = name == "LANG"
        || name.strip_prefix("LC_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        });
    locale
        && !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Whether `term` (a `pty-req` terminal name) is a plain terminal name: 1 to 64 bytes of
/// `A-Z a-z 0-9 . _ + -`.
pub fn plain_terminal_name(term: &str) -> bool {
    !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// What the session's process is and where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionEnv<'a> {
    /// The login name.
    pub login: &'a str,
    /// The login's uid (root gets [`ROOT_PATH`]).
    pub uid: u32,
    /// The login's home directory.
    pub home: &'a str,
    /// The login's shell.
    pub shell: &'a str,
    /// The client address as observed (the pinned address is checked against it).
    pub observed: SocketAddr,
    /// The server's address of the connection.
    pub server: SocketAddr,
    /// With a terminal: its `pty-req` name and its path (`/dev/pts/N`).
    pub terminal: Option<(&'a str, &'a str)>,
    /// The accepted `env` requests, in order (later ones replace earlier ones).
    pub client: &'a [(String, String)],
}

/// The client address to tell a session (`SSH_CONNECTION`, `SSH_CLIENT`): the observed one
/// when it is trusted; else the TCP peer, when known; else `0.0.0.0:0`. An untrusted
/// address is its sender's claim (a PROXY header on a listener that trusts none names
/// whoever it likes), and scripts and log shippers read these variables.
///
/// ```
/// use ippin_access::ssh::env::client_address;
/// use ippin_policy::{ObservedAddr, Provenance};
/// let peer = "192.0.2.10:40000".parse().unwrap();
/// let claim = ObservedAddr::untrusted("203.0.113.66".parse().unwrap(), Provenance::ProxyV1);
/// assert_eq!(client_address(&claim, Some(peer)), peer);
/// let seen = ObservedAddr::new("198.51.100.7:5000".parse().unwrap(), Provenance::ProxyV2, true);
/// assert_eq!(client_address(&seen, Some(peer)), seen.socket_addr());
/// assert_eq!(client_address(&claim, None), "0.0.0.0:0".parse().unwrap());
/// ```
pub fn client_address(observed: &ObservedAddr, peer: Option<SocketAddr>) -> SocketAddr {
    if observed.is_trusted() {
        observed.socket_addr()
    } else {
        peer.unwrap_or_else(|| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0))
    }
}

impl<'a> SessionEnv<'a> {
    /// A session of `login` (uid, home, shell) for a client seen at `observed` on `server`,
    /// with no terminal and no client variables.
    pub fn new(
        login: &'a str,
        uid: u32,
        home: &'a str,
        shell: &'a str,
        observed: SocketAddr,
        server: SocketAddr,
    ) -> Self {
        SessionEnv {
            login,
            uid,
            home,
            shell,
            observed,
            server,
            terminal: None,
            client: &[],
        }
    }

    /// With a terminal named `term` at `path`.
    pub fn terminal(mut self, term: &'a str, path: &'a str) -> Self {
        self.terminal = Some((term, path));
        self
    }

    /// With the client's accepted `env` requests.
    pub fn client(mut self, vars: &'a [(String, String)]) -> Self {
        self.client = vars;
        self
    }

    /// The whole environment, sorted by name, each name once.
    pub fn build(&self) -> Vec<(String, String)> {
        let mut env = std::collections::BTreeMap::new();
        for (name, value) in self.client.iter().take(MAX_CLIENT_VARS) {
            if client_may_set(name, value) {
                env.insert(name.clone(), value.clone());
            }
        }
        let client_ip = canonical_ip(self.observed.ip());
        let server_ip = canonical_ip(self.server.ip());
        let set = [
            ("USER", self.login.to_owned()),
            ("LOGNAME", self.login.to_owned()),
            ("HOME", self.home.to_owned()),
            ("SHELL", self.shell.to_owned()),
            (
                "PATH",
                if self.uid == 0 { ROOT_PATH } else { USER_PATH }.to_owned(),
            ),
            (
                "SSH_CONNECTION",
                format!(
                    "{client_ip} {} {server_ip} {}",
                    self.observed.port(),
                    self.server.port()
                ),
            ),
            (
                "SSH_CLIENT",
                format!(
                    "{client_ip} {} {}",
                    self.observed.port(),
                    self.server.port()
                ),
            ),
        ];
        for (name, value) in set {
            env.insert(name.to_owned(), value);
        }
        if let Some((term, path)) = self.terminal {
            if plain_terminal_name(term) {
                env.insert("TERM".to_owned(), term.to_owned());
            }
            env.insert("SSH_TTY".to_owned(), path.to_owned());
        }
        env.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn get<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_environment_is_fresh_and_names_the_observed_client() {
        let vars = vec![
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("LC_ALL".to_owned(), "en_US.UTF-8".to_owned()),
            ("USER".to_owned(), "root".to_owned()),
            ("LD_PRELOAD".to_owned(), "/tmp/x.so".to_owned()),
            ("PATH".to_owned(), "/tmp".to_owned()),
            ("LC_".to_owned(), "x".to_owned()),
            ("LANG2".to_owned(), "x".to_owned()),
        ];
        let env = SessionEnv::new(
            "dev",
            1001,
            "/home/dev",
            "/bin/bash",
            "[::ffff:192.0.2.7]:51000".parse().unwrap(),
            "127.0.0.1:2222".parse().unwrap(),
        )
        .terminal("xterm-256color", "/dev/pts/3")
        .client(&vars)
        .build();
        assert_eq!(get(&env, "USER"), Some("dev"));
        assert_eq!(get(&env, "LOGNAME"), Some("dev"));
        assert_eq!(get(&env, "HOME"), Some("/home/dev"));
        assert_eq!(get(&env, "SHELL"), Some("/bin/bash"));
        assert_eq!(get(&env, "PATH"), Some(USER_PATH));
        assert_eq!(
            get(&env, "SSH_CONNECTION"),
            Some("192.0.2.7 51000 127.0.0.1 2222")
        );
        assert_eq!(get(&env, "SSH_CLIENT"), Some("192.0.2.7 51000 2222"));
        assert_eq!(get(&env, "TERM"), Some("xterm-256color"));
        assert_eq!(get(&env, "SSH_TTY"), Some("/dev/pts/3"));
        assert_eq!(get(&env, "LANG"), Some("C.UTF-8"));
        assert_eq!(get(&env, "LC_ALL"), Some("en_US.UTF-8"));
        for refused in ["LD_PRELOAD", "LC_", "LANG2"] {
            assert_eq!(get(&env, refused), None, "{refused}");
        }
        assert_eq!(env.len(), 11, "{env:?}");
    }

    #[test]
    fn root_gets_the_sbin_path_and_odd_terminal_names_are_dropped() {
        let env = SessionEnv::new(
            "root",
            0,
            "/root",
            "/bin/sh",
            "[::1]:5".parse().unwrap(),
            "[::1]:22".parse().unwrap(),
        )
        .terminal("xterm\u{1b}]0;x", "/dev/pts/0")
        .build();
        assert_eq!(get(&env, "PATH"), Some(ROOT_PATH));
        assert_eq!(get(&env, "TERM"), None);
        assert_eq!(get(&env, "SSH_CONNECTION"), Some("::1 5 ::1 22"));
    }

    #[test]
    fn client_values_are_plain_and_bounded() {
        assert!(client_may_set("LC_CTYPE", "de_DE.UTF-8"));
        assert!(client_may_set("TERM", "screen"));
        assert!(!client_may_set("LANG", "a\nb"));
        assert!(!client_may_set("LANG", "\u{e9}"));
        assert!(!client_may_set("LANG", &"a".repeat(MAX_VALUE + 1)));
        assert!(!client_may_set("LC_ALL", "/tmp/evil"));
        assert!(!client_may_set("LANG", "C UTF-8"));
        assert!(!client_may_set("TERM", "xterm;id"));
        assert!(client_may_set("LC_MESSAGES", "de_DE@euro"));
        assert!(!client_may_set("lc_all", "C"));
        assert!(!client_may_set("LC_all", "C"));
    }

    proptest! {
        /// Whatever the client sends, the names the server sets keep the server's values, and
        /// every variable is one the table allows.
        #[test]
        fn clients_cannot_override_or_add(vars in proptest::collection::vec(("[A-Z_]{1,12}", "\\PC{0,20}"), 0..40)) {
            let env = SessionEnv::new("dev", 1, "/h", "/bin/sh",
                "127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap())
                .client(&vars).build();
            prop_assert_eq!(get(&env, "USER"), Some("dev"));
            prop_assert_eq!(get(&env, "PATH"), Some(USER_PATH));
            prop_assert_eq!(get(&env, "SSH_CONNECTION"), Some("127.0.0.1 1 127.0.0.1 2"));
            for (name, value) in &env {
                let fixed = ["USER", "LOGNAME", "HOME", "SHELL", "PATH", "SSH_CONNECTION", "SSH_CLIENT"];
                prop_assert!(fixed.contains(&name.as_str()) || client_may_set(name, value));
            }
        }
    }
}
