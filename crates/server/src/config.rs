//! The `serve` configuration: one YAML file, strictly read.
//!
//! * Unknown fields are refused (a typo must not silently drop a setting).
//! * Every error names the file, the line (when YAML gives it, or the line
//!   of the entry a cross-reference check is about) and the field.
//! * Relative paths resolve against the folder of the configuration file.
//! * A listener without `proxy_protocol` is *unspecified*: it accepts both
//!   direct clients and PROXY headers, but nothing it sees is trusted for
//!   pinning. `serve` warns loudly about it at start.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub mod backend;
pub mod propagation;
pub(crate) mod scan;
pub use scan::MAX_DEPTH as MAX_CONFIG_DEPTH;

/// Time allowed for one whole HTTP exchange: the most `login_limits.body_timeout` can be
/// (the HTTP layer ends the exchange there).
pub const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Errors of configuration loading and of the `ca init` / `user add` edits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{file}: {action}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// What was being done ("read", "write").
        action: &'static str,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field is unknown, missing or of the wrong
    /// shape; `message` names the field path.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when YAML gave none).
        line: usize,
        /// 1-based column (0 when YAML gave none).
        column: usize,
        /// What is wrong, with the field path.
        message: String,
    },
    /// A field is well formed but its value is not acceptable.
    #[error("{}{}: field `{field}`: {message}", file.display(), line_suffix(*line))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the entry (0 when it could not be located).
        line: usize,
        /// The field path, as in `users[1].roles`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// `:LINE`, or nothing when the line is unknown (0).
fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// What a listener serves. `forward` comes in a later issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ListenerKind {
    /// HTTPS login: `POST /v1/login` issues (pinned) certificates.
    Login,
    /// Mutual TLS access: `GET /whoami`, `POST /v1/renew`, after the pin check.
    Tls,
    /// SSH access with OpenSSH user certificates (the `ssh` module, docs/ssh.md).
    Ssh,
    /// A front: relays to an upstream ippin listener behind a signed PROXY
    /// v2 header (the `propagation` module, docs/propagation.md).
    Forward,
}

impl ListenerKind {
    /// The name used in the configuration and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Login => "login",
            ListenerKind::Tls => "tls",
            ListenerKind::Ssh => "ssh",
            ListenerKind::Forward => "forward",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PROXY protocol mode of a listener as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyModeSetting {
    /// Every connection must start with a PROXY header from a trusted peer.
    On,
    /// No connection may carry a PROXY header.
    Off,
    /// Field absent: accepted with or without a header, never trusted.
    Unspecified,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// What it serves.
    pub kind: ListenerKind,
    /// Where it listens (port 0 picks an ephemeral port).
    pub listen: SocketAddr,
    /// PROXY protocol mode.
    pub proxy_protocol: ProxyModeSetting,
    /// Peers allowed to send PROXY headers and forwarded headers. Mode `on` and
    /// `trust_x_forwarded_for` require it (or `danger_trust_every_peer`, which sets it to
    /// `0.0.0.0/0` and `::/0`); `None` only in the other cases.
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// `danger_trust_every_peer: true`: every peer may send PROXY and forwarded headers.
    pub trust_every_peer: bool,
    /// How many `X-Forwarded-For` / `Forwarded` entries, from the right, the trusted
    /// proxies write (`forwarded_hops`, default 1): entries further left are the client's
    /// own and never believed.
    pub forwarded_hops: usize,
    /// How long a PROXY header may take to arrive.
    pub header_timeout: Duration,
    /// Whether `X-Forwarded-For` / `Forwarded` from trusted proxies is
    /// believed (login listener only).
    pub trust_x_forwarded_for: bool,
    /// A `forward` listener's upstream and identity.
    pub forward: Option<propagation::ForwardConfig>,
    /// Whether (and how) signed PROXY headers are accepted.
    pub propagation: Option<propagation::PropagationConfig>,
    /// `allowed_endpoints`: only connections whose PROXY header names one of these cloud
    /// endpoints (AWS VPC endpoint, Azure Private Link, GCP Private Service Connect) are
    /// served; `None` when the field is absent. Needs `proxy_protocol: on`.
    pub allowed_endpoints: Option<Vec<ippin_proxy_protocol::EndpointId>>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// Login name; also the SSH principal and the X.509 subject CN.
    pub name: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Role names, resolved against the role files.
    pub roles: Vec<String>,
}

/// Paths of the certificate authority material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// OpenSSH private key of the SSH user CA.
    pub ssh_key: PathBuf,
    /// X.509 CA certificate (PEM).
    pub tls_cert: PathBuf,
    /// X.509 CA private key (PKCS#8 PEM).
    pub tls_key: PathBuf,
}

/// The listeners' own TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsPaths {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A loaded, validated configuration. Paths are absolute or relative to the
/// current directory (already resolved against the configuration's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file itself.
    pub file: PathBuf,
    /// Cluster name (written into the audit log and whoami).
    pub cluster_name: String,
    /// CA material.
    pub ca: CaPaths,
    /// Listener identity.
    pub server_tls: ServerTlsPaths,
    /// Role files.
    pub roles: Vec<PathBuf>,
    /// Users.
    pub users: Vec<UserConfig>,
    /// Lifetime of issued certificates.
    pub cert_ttl: Duration,
    /// How long one login lasts through renewals: a renewed certificate keeps the start of
    /// the login's validity, ends no later than that start plus this, and renewal is refused
    /// (`login_too_old`) past it. At least `cert_ttl`.
    pub max_session_ttl: Duration,
    /// Audit log file (JSON lines, appended).
    pub audit_log: PathBuf,
    /// Listeners.
    pub listeners: Vec<ListenerConfig>,
    /// The `network_restrictions` policy file every outbound dial made for a session goes
    /// through (`None`: every destination allowed). Loaded and watched by the server.
    pub network_restrictions: Option<PathBuf>,
    /// How often the `network_restrictions` file is checked for changes; zero (written
    /// `off`): only on `SIGHUP`. Default 1 s.
    pub network_restrictions_poll: Duration,
    /// Whether allowed outbound connections are audited too (`session.network`, action 0);
    /// denied ones always are.
    pub audit_network_observed: bool,
    /// The SSH listeners' host key (OpenSSH private key file). `None`: a fresh key at every
    /// start, with a warning.
    pub ssh_host_key: Option<PathBuf>,
    /// How long every refused SSH authentication takes, so timing does not tell why.
    pub ssh_auth_rejection_time: Duration,
    /// How often an authenticated SSH connection is checked again (its certificate's
    /// validity, its user and roles): one that no longer passes is ended, with its processes.
    pub ssh_recheck_interval: Duration,
    /// `sessions.cgroup_parent`: the parent cgroup (absolute path in the cgroup v2 file
    /// system) of the restricted sessions' cgroups. `None`: `<cgroup2 mount>/ippin`.
    pub session_cgroup_parent: Option<PathBuf>,
    /// `sessions.sftp_server`: the program run for `subsystem sftp`. `None`: the system's
    /// OpenSSH `sftp-server`, found at start.
    pub sftp_server: Option<PathBuf>,
    /// `sessions.allow_server_login`: a server that is not root may run sessions for its own
    /// login (default false: such a session could read the CA keys).
    pub allow_server_login: bool,
    /// The line of each field that names a file (`ca.ssh_key`, `server_tls.key`, …), so an
    /// error about the file can name the field and its line ([`Config::file_error`]).
    pub file_fields: std::collections::BTreeMap<String, usize>,
    /// Lockout, throttles and timeouts of the login listeners (`login_limits`).
    pub login_limits: LoginLimits,
    /// `backend:`: the store a fleet of nodes shares (roles, users, network restrictions,
    /// lockouts). `None`: the files are the truth, for this node alone.
    pub backend: Option<backend::BackendConfig>,
}

/// `login_limits`: what keeps guessing and single addresses from the login
/// listeners (docs/server.md, docs/security.md, "Login"). Shared by every
/// login listener of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins of one user name within `failure_window` that lock it (default 5).
    pub max_failures: u32,
    /// How long a locked name is refused (default 20m).
    pub lockout: Duration,
    /// Failures count within this time of the first one (default 20m).
    pub failure_window: Duration,
    /// Failed logins from one client address within `peer_window` that throttle it
    /// (default 30).
    pub peer_max_failures: u32,
    /// The window and the throttle of `peer_max_failures` (default 1m).
    pub peer_window: Duration,
    /// Connections one client address may hold open on the login listeners at once
    /// (default 16).
    pub max_connections_per_peer: usize,
    /// Time allowed for a request body once its head arrived (default 5s).
    pub body_timeout: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            max_failures: 5,
            lockout: Duration::from_secs(20 * 60),
            failure_window: Duration::from_secs(20 * 60),
            peer_max_failures: 30,
            peer_window: Duration::from_secs(60),
            max_connections_per_peer: 16,
            body_timeout: Duration::from_secs(5),
        }
    }
}

/// The longest `lockout`, `failure_window` and `peer_window` accepted.
pub const MAX_LOGIN_LIMIT_DURATION: Duration = Duration::from_secs(24 * 3600);

// ---- the raw, serde-facing shape ---------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_name: String,
    ca: RawCa,
    server_tls: RawServerTls,
    #[serde(default)]
    roles: Vec<PathBuf>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default = "default_ttl")]
    cert_ttl: YamlDuration,
    #[serde(default = "default_max_session_ttl")]
    max_session_ttl: YamlDuration,
    audit_log: PathBuf,
    listeners: Vec<RawListener>,
    #[serde(default, deserialize_with = "present_network_restrictions")]
    network_restrictions: Option<PathBuf>,
    #[serde(default = "default_poll")]
    network_restrictions_poll: YamlPoll,
    #[serde(default)]
    audit_network_observed: bool,
    #[serde(default)]
    ssh_host_key: Option<PathBuf>,
    #[serde(default = "default_ssh_rejection")]
    ssh_auth_rejection_time: YamlDuration,
    #[serde(default = "default_ssh_recheck")]
    ssh_recheck_interval: YamlDuration,
    #[serde(default)]
    login_limits: Option<RawLoginLimits>,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default, deserialize_with = "present_backend")]
    backend: Option<backend::RawBackend>,
}

/// `sessions:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    #[serde(default)]
    cgroup_parent: Option<PathBuf>,
    #[serde(default)]
    sftp_server: Option<PathBuf>,
    #[serde(default)]
    allow_server_login: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoginLimits {
    #[serde(default)]
    max_failures: Option<u32>,
    #[serde(default)]
    lockout: Option<YamlDuration>,
    #[serde(default)]
    failure_window: Option<YamlDuration>,
    #[serde(default)]
    peer_max_failures: Option<u32>,
    #[serde(default)]
    peer_window: Option<YamlDuration>,
    #[serde(default)]
    max_connections_per_peer: Option<usize>,
    #[serde(default)]
    body_timeout: Option<YamlDuration>,
}

impl RawLoginLimits {
    /// The limits, each checked against its range: `(field, message)` on error.
    fn check(self) -> Result<LoginLimits, (&'static str, String)> {
        let d = LoginLimits::default();
        let count = |field, v: Option<u32>, default, max: u32| match v {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err((field, format!("{n}: must be between 1 and {max}"))),
        };
        // At least a second: `0s` would end every lock at once, or never let failures add
        // up, and so switch the limit off without saying so.
        let span = |field, v: Option<YamlDuration>, default, max: Duration| match v {
            None => Ok(default),
            Some(YamlDuration(t)) if (Duration::from_secs(1)..=max).contains(&t) => Ok(t),
            Some(YamlDuration(t)) => Err((field, format!("{t:?}: must be between 1s and {max:?}"))),
        };
        let max_day = MAX_LOGIN_LIMIT_DURATION;
        let connections = match self.max_connections_per_peer {
            None => d.max_connections_per_peer,
            Some(n) if (1..=4096).contains(&n) => n,
            Some(n) => {
                return Err((
                    "max_connections_per_peer",
                    format!("{n}: must be between 1 and 4096"),
                ));
            }
        };
        Ok(LoginLimits {
            max_failures: count("max_failures", self.max_failures, d.max_failures, 100)?,
            lockout: span("lockout", self.lockout, d.lockout, max_day)?,
            failure_window: span(
                "failure_window",
                self.failure_window,
                d.failure_window,
                max_day,
            )?,
            peer_max_failures: count(
                "peer_max_failures",
                self.peer_max_failures,
                d.peer_max_failures,
                100_000,
            )?,
            peer_window: span("peer_window", self.peer_window, d.peer_window, max_day)?,
            max_connections_per_peer: connections,
            body_timeout: span(
                "body_timeout",
                self.body_timeout,
                d.body_timeout,
                CONNECTION_TIMEOUT,
            )?,
        })
    }
}

fn default_poll() -> YamlPoll {
    YamlPoll(Duration::from_secs(1))
}

fn default_ssh_rejection() -> YamlDuration {
    YamlDuration(Duration::from_secs(1))
}

fn default_ssh_recheck() -> YamlDuration {
    YamlDuration(DEFAULT_SSH_RECHECK)
}

/// The default `ssh_recheck_interval`.
pub const DEFAULT_SSH_RECHECK: Duration = Duration::from_secs(2);
/// The bounds of `ssh_recheck_interval`.
pub const SSH_RECHECK_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

fn default_ttl() -> YamlDuration {
    YamlDuration(Duration::from_secs(8 * 3600))
}

fn default_max_session_ttl() -> YamlDuration {
    YamlDuration(DEFAULT_MAX_SESSION_TTL)
}

/// The longest `cert_ttl` and `max_session_ttl` taken: 366 days.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

/// The default `max_session_ttl`: a day, after which renewal asks for a login.
pub const DEFAULT_MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    ssh_key: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    kind: ListenerKind,
    listen: SocketAddr,
    #[serde(default)]
    proxy_protocol: Option<YamlProxyMode>,
    #[serde(default, deserialize_with = "present_trusted_proxies")]
    trusted_proxies: Option<Vec<YamlNet>>,
    #[serde(default = "default_header_timeout")]
    header_timeout: YamlDuration,
    #[serde(default)]
    trust_x_forwarded_for: bool,
    #[serde(default)]
    danger_trust_every_peer: bool,
    #[serde(default = "default_forwarded_hops")]
    forwarded_hops: usize,
    #[serde(default)]
    forward: Option<propagation::RawForward>,
    #[serde(default)]
    propagation: Option<propagation::RawPropagation>,
    #[serde(default, deserialize_with = "present_allowed_endpoints")]
    allowed_endpoints: Option<Vec<YamlEndpoint>>,
}

/// A key that is written must have a value: `allowed_endpoints:`, `trusted_proxies:`,
/// `network_restrictions:` or `backend:` with no value (YAML null, also a list or path whose
/// every line is commented out) is refused, not read as the key left out (which would mean
/// "every endpoint", "any peer", "no restriction", "no fleet").
fn present<'de, D, T>(d: D, field: &str) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(format!(
            "`{field}` has no value (null): write the list, or leave the key out"
        ))),
    }
}

fn present_trusted_proxies<'de, D>(d: D) -> Result<Option<Vec<YamlNet>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    present(d, "trusted_proxies")
}

fn present_allowed_endpoints<'de, D>(d: D) -> Result<Option<Vec<YamlEndpoint>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    present(d, "allowed_endpoints")
}

fn present_network_restrictions<'de, D>(d: D) -> Result<Option<PathBuf>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    present(d, "network_restrictions")
}

fn present_backend<'de, D>(d: D) -> Result<Option<backend::RawBackend>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    present(d, "backend")
}

/// What `danger_trust_every_peer` trusts: both families, written out (an IPv6 network never
/// matches an IPv4 peer).
const EVERY_PEER: [&str; 2] = ["0.0.0.0/0", "::/0"];

fn default_forwarded_hops() -> usize {
    1
}

fn default_header_timeout() -> YamlDuration {
    YamlDuration(Duration::from_secs(5))
}

/// A duration written as `5s`, `90s`, `8h`, `1h 30m` (humantime syntax).
struct YamlDuration(Duration);

impl<'de> Deserialize<'de> for YamlDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "duration `{text}`: {e} (write it as `5s`, `10m` or `8h`)"
            ))
        })?;
        if value.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "duration `{text}`: must be greater than zero"
            )));
        }
        Ok(YamlDuration(value))
    }
}

/// A polling interval, or `off` (zero).
struct YamlPoll(Duration);

impl<'de> Deserialize<'de> for YamlPoll {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "off" {
            return Ok(YamlPoll(Duration::ZERO));
        }
        let value = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "interval `{text}`: {e} (write it as `1s` or `500ms`, or `off`)"
            ))
        })?;
        if value.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "interval `{text}`: write `off` to turn polling off"
            )));
        }
        Ok(YamlPoll(value))
    }
}

/// A CIDR (`127.0.0.1/32`) or a single IP; host bits beyond the prefix are
/// refused (`10.0.0.1/8` is a typo for something, not a network).
struct YamlNet(IpNet);

impl<'de> Deserialize<'de> for YamlNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // Strict, as every address list of ippin: no `010.0.0.1` (octal 8 to some tools), no
        // `/08`, no zone index.
        let net = ippin_policy::parse_net(&text).map_err(|why| {
            serde::de::Error::custom(format!(
                "`{}` is not a CIDR (`127.0.0.1/32`) or an IP address: {why}",
                text.chars().take(80).collect::<String>()
            ))
        })?;
        if net.trunc() != net {
            return Err(serde::de::Error::custom(format!(
                "`{text}`: host bits are set beyond the prefix (did you mean `{}`?)",
                net.trunc()
            )));
        }
        Ok(YamlNet(net))
    }
}

/// `0.0.0.0/0` or `::/0` when `nets`, as trust compares them (canonically: a network inside
/// `::ffff:0:0/96` is the IPv4 network it maps; wider IPv6 networks never match IPv4
/// peers), together hold every IPv4 or every IPv6 address (`0.0.0.0/1` and `128.0.0.0/1`
/// do).
fn every_peer(nets: impl Iterator<Item = IpNet>) -> Option<IpNet> {
    let canonical: Vec<IpNet> = nets.map(ippin_policy::canonical_net).collect();
    IpNet::aggregate(&canonical)
        .into_iter()
        .find(|n| n.prefix_len() == 0)
}

/// A cloud endpoint ID in `allowed_endpoints`: `vpce-` and 8 or 17 lowercase hex digits
/// (AWS), `azure:LINKID` (Azure Private Link, decimal u32) or `gcp:ID` (GCP Private Service
/// Connect, decimal u64). Decimal means digits only: no sign, no leading zero, no spaces.
struct YamlEndpoint(ippin_proxy_protocol::EndpointId);

impl<'de> Deserialize<'de> for YamlEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_endpoint(&text).map(YamlEndpoint).map_err(|why| {
            serde::de::Error::custom(format!(
                "endpoint `{text}`: {why} (write `vpce-…`, `azure:LINKID` or `gcp:ID`)"
            ))
        })
    }
}

/// Parses one `allowed_endpoints` entry (see [`YamlEndpoint`]).
pub(crate) fn parse_endpoint(text: &str) -> Result<ippin_proxy_protocol::EndpointId, String> {
    use ippin_proxy_protocol::{AzureLinkId, EndpointId, GcpPscConnectionId};
    fn decimal<T: std::str::FromStr>(digits: &str) -> Result<T, String> {
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return Err("the ID must be decimal digits, with no sign or leading zero".into());
        }
        digits
            .parse()
            .map_err(|_| "the ID is out of range".to_string())
    }
    if let Some(id) = text.strip_prefix("azure:") {
        Ok(EndpointId::Azure(AzureLinkId(decimal(id)?)))
    } else if let Some(id) = text.strip_prefix("gcp:") {
        Ok(EndpointId::Gcp(GcpPscConnectionId(decimal(id)?)))
    } else if text.starts_with("vpce-") {
        text.parse().map(EndpointId::Aws).map_err(|e| {
            format!("an AWS VPC endpoint ID {e}: `vpce-` and 8 or 17 lowercase hex digits")
        })
    } else {
        Err("unknown kind".into())
    }
}

/// `on` / `off` (YAML 1.1 readers may hand these over as booleans).
struct YamlProxyMode(ProxyModeSetting);

impl<'de> Deserialize<'de> for YamlProxyMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = YamlProxyMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`on` or `off` (leave the field out for unspecified)")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(YamlProxyMode(if v {
                    ProxyModeSetting::On
                } else {
                    ProxyModeSetting::Off
                }))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "on" => Ok(YamlProxyMode(ProxyModeSetting::On)),
                    "off" => Ok(YamlProxyMode(ProxyModeSetting::Off)),
                    other => Err(E::custom(format!(
                        "proxy_protocol `{other}`: expected `on` or `off` \
                         (leave the field out for unspecified)"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

// ---- loading -------------------------------------------------------------

/// The fields naming files whose line [`Config::file_fields`] keeps.
const FILE_FIELDS: &[&str] = &[
    "ca.ssh_key",
    "ca.tls_cert",
    "ca.tls_key",
    "server_tls.cert",
    "server_tls.key",
    "audit_log",
    "ssh_host_key",
    "network_restrictions",
    "backend.tls.ca",
    "backend.tls.cert",
    "backend.tls.key",
];

/// The fields of a listener that name files (or the section that holds them), for
/// [`Config::file_error`] as `listeners[i].FIELD`.
const LISTENER_FILE_FIELDS: &[&str] = &[
    "forward",
    "forward.cert",
    "forward.key",
    "propagation",
    "propagation.trusted_ca",
];

/// The upper bound on a configuration file's size.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The most role files a configuration may list (each up to [`MAX_CONFIG_BYTES`]).
pub const MAX_ROLE_FILES: usize = 64;

/// Reads a text file of bounded size.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<String, ConfigError> {
    read_bounded_mode(path, limit).map(|(text, _)| text)
}

/// [`read_bounded`], with the mode of the file read (from its descriptor).
fn read_bounded_mode(path: &Path, limit: u64) -> Result<(String, u32), ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io {
        file: path.to_path_buf(),
        action: "read",
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // The configuration and role files decide who gets in: one that users other than root
    // and this one may change is refused (checked on the file opened, not on the path).
    if let Err(e) = crate::files::only_trusted_writers(path, &file) {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: 0,
            field: "(file)".into(),
            message: e.to_string(),
        });
    }
    let mode = {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.metadata().map_err(io)?.permissions().mode() & 0o7777
        }
        #[cfg(not(unix))]
        0o600
    };
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > limit {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: 0,
            field: "(file)".into(),
            message: format!("larger than {limit} bytes"),
        });
    }
    Ok((text, mode))
}

impl Config {
    /// Reads and validates the configuration at `path`, including that every
    /// user's roles exist in the role files.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, mode) = read_bounded_mode(path, MAX_CONFIG_BYTES)?;
        let config = Config::parse(path, &text)?;
        config.check_roles(&text)?;
        config.check_hashes_private(path, mode)?;
        Ok(config)
    }

    /// Refuses a configuration holding password hashes that group or others may read (`mode`,
    /// of the file read): a hash is a secret (it can be guessed against offline), kept 0600
    /// like the keys.
    fn check_hashes_private(&self, path: &Path, mode: u32) -> Result<(), ConfigError> {
        if self.users.is_empty() || mode & 0o077 == 0 {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            line: 0,
            field: "users".into(),
            message: format!(
                "the file holds password hashes and group or others may read it \
                 (mode {mode:04o}); make it 0600 (chmod 600)"
            ),
        })
    }

    /// Parses configuration `text` as if read from `path`, without reading
    /// the role files.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        // Aliases, a second document and deep nesting are refused before the YAML library
        // sees the text (they would make its work unbounded); the field lines are kept for
        // the errors below.
        let positions = scan::scan(path, text)?;
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let mut message = e.to_string();
            // The position is already in front; drop serde_yaml_ng's copy.
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            ConfigError::Syntax {
                file: path.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        let invalid = |field: String, needle: Option<&str>, message: String| {
            let line = positions
                .line(&field)
                .or_else(|| needle.map(|n| line_of(text, n)))
                .unwrap_or(0);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                field,
                message,
            }
        };
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        if raw.cluster_name.trim().is_empty() {
            return Err(invalid(
                "cluster_name".into(),
                Some("cluster_name:"),
                "must not be empty".into(),
            ));
        }
        for (field, p) in [
            ("sessions.cgroup_parent", &raw.sessions.cgroup_parent),
            ("sessions.sftp_server", &raw.sessions.sftp_server),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                return Err(invalid(
                    field.into(),
                    Some(field.rsplit('.').next().unwrap_or(field)),
                    format!("must be an absolute path, found {}", p.display()),
                ));
            }
        }
        let mut users: Vec<UserConfig> = Vec::with_capacity(raw.users.len());
        let mut user_names = std::collections::HashSet::with_capacity(raw.users.len());
        for (i, u) in raw.users.into_iter().enumerate() {
            if let Err(m) = check_name(&u.name) {
                return Err(invalid(format!("users[{i}].name"), Some(&u.name), m));
            }
            if !user_names.insert(u.name.clone()) {
                return Err(invalid(
                    format!("users[{i}].name"),
                    Some(&u.name),
                    format!("user `{}` is listed twice", u.name),
                ));
            }
            if let Err(m) = check_password_hash(&u.password_hash) {
                return Err(invalid(
                    format!("users[{i}].password_hash"),
                    Some(&u.name),
                    m,
                ));
            }
            users.push(UserConfig {
                name: u.name,
                password_hash: u.password_hash,
                roles: u.roles,
            });
        }
        if raw.roles.len() > MAX_ROLE_FILES {
            return Err(invalid(
                format!("roles[{MAX_ROLE_FILES}]"),
                None,
                format!(
                    "{} role files listed, at most {MAX_ROLE_FILES} (each is read whole, up to \
                     {MAX_CONFIG_BYTES} bytes)",
                    raw.roles.len()
                ),
            ));
        }
        if raw.listeners.is_empty() {
            return Err(invalid(
                "listeners".into(),
                Some("listeners:"),
                "at least one listener is needed".into(),
            ));
        }
        let mut listeners = Vec::with_capacity(raw.listeners.len());
        let mut addresses = std::collections::HashSet::with_capacity(raw.listeners.len());
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let mode = l
                .proxy_protocol
                .map_or(ProxyModeSetting::Unspecified, |m| m.0);
            let here = l.listen.to_string();
            if l.trust_x_forwarded_for && l.kind != ListenerKind::Login {
                return Err(invalid(
                    format!("listeners[{i}].trust_x_forwarded_for"),
                    Some(&here),
                    format!(
                        "only a `login` listener can believe X-Forwarded-For: a `{}` listener \
                         terminates mutual TLS itself, so no HTTP proxy sits in front of it",
                        l.kind
                    ),
                ));
            }
            if l.danger_trust_every_peer && l.trusted_proxies.is_some() {
                return Err(invalid(
                    format!("listeners[{i}].danger_trust_every_peer"),
                    Some(&here),
                    "contradicts `trusted_proxies`: name your proxies, or trust every peer".into(),
                ));
            }
            if l.danger_trust_every_peer && mode != ProxyModeSetting::On && !l.trust_x_forwarded_for
            {
                return Err(invalid(
                    format!("listeners[{i}].danger_trust_every_peer"),
                    Some(&here),
                    "has no effect without `proxy_protocol: on` or `trust_x_forwarded_for`".into(),
                ));
            }
            if l.trust_x_forwarded_for && mode == ProxyModeSetting::On {
                // One `trusted_proxies` list cannot name both the load balancers that send
                // PROXY headers and the HTTP proxies whose headers are read: a client the
                // balancer names from inside that list would be believed about anyone.
                return Err(invalid(
                    format!("listeners[{i}].trust_x_forwarded_for"),
                    Some(&here),
                    "cannot be combined with `proxy_protocol: on`: put the HTTP proxy in \
                     front of a listener with `proxy_protocol: off`, or the load balancer \
                     in front of one without `trust_x_forwarded_for`"
                        .into(),
                ));
            }
            // A network that holds every address of a family names no proxy: it trusts
            // every peer, which only `danger_trust_every_peer` says (and its warning).
            if let Some(every) = every_peer(l.trusted_proxies.iter().flatten().map(|n| n.0)) {
                return Err(invalid(
                    format!("listeners[{i}].trusted_proxies"),
                    Some(&here),
                    format!(
                        "together hold every address of the family of `{every}`: that trusts \
                         every peer; name the proxies, or write `danger_trust_every_peer: true` \
                         when nothing but them can reach this address"
                    ),
                ));
            }
            let unnamed = l.trusted_proxies.is_none() && !l.danger_trust_every_peer;
            if unnamed && mode == ProxyModeSetting::On {
                return Err(invalid(
                    format!("listeners[{i}].trusted_proxies"),
                    Some(&here),
                    "`proxy_protocol: on` needs the load balancers that may send headers named \
                     in `trusted_proxies` (or `danger_trust_every_peer: true`, when nothing but \
                     the load balancers can reach this address)"
                        .into(),
                ));
            }
            if unnamed && l.trust_x_forwarded_for {
                return Err(invalid(
                    format!("listeners[{i}].trusted_proxies"),
                    Some(&here),
                    "`trust_x_forwarded_for` needs the HTTP proxies named in `trusted_proxies` \
                     (or `danger_trust_every_peer: true`, when nothing but the proxies can reach \
                     this address)"
                        .into(),
                ));
            }
            if !(1..=ippin_policy::MAX_FORWARDED_HOPS).contains(&l.forwarded_hops) {
                return Err(invalid(
                    format!("listeners[{i}].forwarded_hops"),
                    Some(&here),
                    format!(
                        "must be 1 to {}: the number of trusted proxies that append to the header",
                        ippin_policy::MAX_FORWARDED_HOPS
                    ),
                ));
            }
            if l.forwarded_hops != 1 && (!l.trust_x_forwarded_for || l.danger_trust_every_peer) {
                return Err(invalid(
                    format!("listeners[{i}].forwarded_hops"),
                    Some(&here),
                    "has no effect without `trust_x_forwarded_for` and `trusted_proxies` (with \
                     `danger_trust_every_peer`, a header must hold exactly one value)"
                        .into(),
                ));
            }
            // Several proxies in a chain: an entry inside a trusted network is read as a proxy
            // reporting the entry to its left, so a client inside a wider network, talking to
            // the last proxy directly, would write any address and be believed. Each proxy
            // of such a chain is named by its own address.
            if l.forwarded_hops > 1
                && let Some(wide) = l
                    .trusted_proxies
                    .iter()
                    .flatten()
                    .map(|n| n.0)
                    .find(|n| n.prefix_len() != n.max_prefix_len())
            {
                return Err(invalid(
                    format!("listeners[{i}].trusted_proxies"),
                    Some(&here),
                    format!(
                        "{wide} is a network: with `forwarded_hops` above 1 every address of \
                         `trusted_proxies` is believed as a proxy reporting the entry to its \
                         left, so a client inside it could name any address; name each proxy \
                         by its own address (/32, /128)"
                    ),
                ));
            }
            if l.trusted_proxies.is_some()
                && mode == ProxyModeSetting::Off
                && !l.trust_x_forwarded_for
            {
                return Err(invalid(
                    format!("listeners[{i}].trusted_proxies"),
                    Some(&here),
                    "has no effect with `proxy_protocol: off` and no `trust_x_forwarded_for`"
                        .into(),
                ));
            }
            if let Some(ids) = &l.allowed_endpoints {
                let field = format!("listeners[{i}].allowed_endpoints");
                if mode != ProxyModeSetting::On {
                    return Err(invalid(
                        field,
                        Some(&here),
                        "needs `proxy_protocol: on`: the endpoint is named by the load \
                         balancer's PROXY header"
                            .into(),
                    ));
                }
                if ids.is_empty() {
                    return Err(invalid(
                        field,
                        Some(&here),
                        "is empty: it would refuse every connection".into(),
                    ));
                }
                if let Some(dup) = ids
                    .iter()
                    .enumerate()
                    .find(|(j, a)| ids.iter().take(*j).any(|b| b.0 == a.0))
                {
                    return Err(invalid(
                        field,
                        Some(&here),
                        format!("names `{}` twice", dup.1.0),
                    ));
                }
            }
            if l.listen.port() != 0 && !addresses.insert(l.listen) {
                return Err(invalid(
                    format!("listeners[{i}].listen"),
                    Some(&here),
                    format!("address {here} is used by two listeners"),
                ));
            }
            let (forward, propagation) =
                propagation::check_listener(l.kind, mode, l.forward, l.propagation, &resolve)
                    .map_err(|(field, m)| {
                        invalid(format!("listeners[{i}].{field}"), Some(&here), m)
                    })?;
            // One replay defence per audience: two listeners with one audience
            // would each accept a header once (docs/propagation.md).
            if let Some(p) = &propagation
                && let Some(j) = listeners.iter().position(|o: &ListenerConfig| {
                    o.propagation
                        .as_ref()
                        .is_some_and(|q| q.audience == p.audience)
                })
            {
                return Err(invalid(
                    format!("listeners[{i}].propagation.audience"),
                    Some(&p.audience),
                    format!(
                        "audience `{}` is also listeners[{j}]'s: each listener that accepts \
                         signed headers needs its own audience (one replay defence each)",
                        p.audience
                    ),
                ));
            }
            listeners.push(ListenerConfig {
                kind: l.kind,
                listen: l.listen,
                proxy_protocol: mode,
                trusted_proxies: if l.danger_trust_every_peer {
                    Some(EVERY_PEER.iter().filter_map(|n| n.parse().ok()).collect())
                } else {
                    l.trusted_proxies
                        .map(|v| v.into_iter().map(|n| n.0).collect())
                },
                trust_every_peer: l.danger_trust_every_peer,
                forwarded_hops: l.forwarded_hops,
                header_timeout: l.header_timeout.0,
                trust_x_forwarded_for: l.trust_x_forwarded_for,
                forward,
                propagation,
                allowed_endpoints: l
                    .allowed_endpoints
                    .map(|v| v.into_iter().map(|e| e.0).collect()),
            });
        }
        let login_limits = match raw.login_limits {
            None => LoginLimits::default(),
            Some(l) => l
                .check()
                .map_err(|(field, m)| invalid(format!("login_limits.{field}"), Some(field), m))?,
        };
        let backend =
            match raw.backend {
                None => None,
                Some(b) => Some(b.check(resolve).map_err(|(field, m)| {
                    invalid(format!("backend.{field}"), Some("backend:"), m)
                })?),
            };
        // A year at most for either: a pinned credential is meant to be short-lived, and
        // times far out overflow what certificates and the clock can say.
        for (field, value) in [
            ("cert_ttl", raw.cert_ttl.0),
            ("max_session_ttl", raw.max_session_ttl.0),
        ] {
            if value > MAX_TTL {
                return Err(invalid(
                    field.to_owned(),
                    Some(field),
                    format!("{value:?} is longer than a year (366d), the most taken"),
                ));
            }
        }
        if raw.max_session_ttl.0 < raw.cert_ttl.0 {
            return Err(invalid(
                "max_session_ttl".to_owned(),
                Some("max_session_ttl"),
                format!(
                    "{:?} is shorter than cert_ttl ({:?}): a login lasts at least one \
                     certificate; raise max_session_ttl (default 24h) or lower cert_ttl",
                    raw.max_session_ttl.0, raw.cert_ttl.0
                ),
            ));
        }
        let recheck = raw.ssh_recheck_interval.0;
        if !(SSH_RECHECK_BOUNDS.0..=SSH_RECHECK_BOUNDS.1).contains(&recheck) {
            return Err(invalid(
                "ssh_recheck_interval".to_owned(),
                Some("ssh_recheck_interval"),
                format!(
                    "{recheck:?}: must be between {:?} and {:?} (a connection whose \
                     certificate expired or whose user lost access is ended within it)",
                    SSH_RECHECK_BOUNDS.0, SSH_RECHECK_BOUNDS.1
                ),
            ));
        }
        let listener_count = listeners.len();
        Ok(Config {
            file: path.to_path_buf(),
            cluster_name: raw.cluster_name,
            ca: CaPaths {
                ssh_key: resolve(raw.ca.ssh_key),
                tls_cert: resolve(raw.ca.tls_cert),
                tls_key: resolve(raw.ca.tls_key),
            },
            server_tls: ServerTlsPaths {
                cert: resolve(raw.server_tls.cert),
                key: resolve(raw.server_tls.key),
            },
            roles: raw.roles.into_iter().map(resolve).collect(),
            users,
            cert_ttl: raw.cert_ttl.0,
            max_session_ttl: raw.max_session_ttl.0,
            audit_log: resolve(raw.audit_log),
            listeners,
            network_restrictions: raw.network_restrictions.map(resolve),
            network_restrictions_poll: raw.network_restrictions_poll.0,
            audit_network_observed: raw.audit_network_observed,
            ssh_host_key: raw.ssh_host_key.map(&resolve),
            ssh_auth_rejection_time: raw.ssh_auth_rejection_time.0,
            ssh_recheck_interval: recheck,
            session_cgroup_parent: raw.sessions.cgroup_parent,
            sftp_server: raw.sessions.sftp_server,
            allow_server_login: raw.sessions.allow_server_login,
            file_fields: FILE_FIELDS
                .iter()
                .map(|f| (*f).to_owned())
                .chain((0..listener_count).flat_map(|i| {
                    LISTENER_FILE_FIELDS
                        .iter()
                        .map(move |f| format!("listeners[{i}].{f}"))
                }))
                .filter_map(|f| {
                    let line = positions.line(&f)?;
                    Some((f, line))
                })
                .collect(),
            login_limits,
            backend,
        })
    }

    /// An error about the file that field `field` names: the configuration file, the
    /// field's line, the field, then `problem` (which names the file and the OS error).
    pub fn file_error(&self, field: &str, problem: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.file_fields.get(field).copied().unwrap_or(0),
            field: field.to_owned(),
            message: problem.to_string(),
        }
    }

    /// Reads the private key that `field` names (`ca.ssh_key`, …), refusing one that group
    /// or others may access ([`crate::files::read_private`]); errors as [`Config::file_error`].
    pub fn read_private(&self, field: &str, path: &Path) -> Result<String, ConfigError> {
        crate::files::read_private(path, MAX_CONFIG_BYTES).map_err(|e| self.file_error(field, e))
    }

    /// Reads the (public) file that `field` names; errors as [`Config::file_error`].
    pub fn read_public(&self, field: &str, path: &Path) -> Result<String, ConfigError> {
        crate::files::read_public(path, MAX_CONFIG_BYTES).map_err(|e| self.file_error(field, e))
    }

    /// Loads the role files and checks every user's roles against them.
    fn check_roles(&self, text: &str) -> Result<(), ConfigError> {
        let roles = load_roles(&self.roles).map_err(|e| match e {
            // A role file that cannot be read: the field that names it and its line.
            ConfigError::Io { file, source, .. } => {
                let i = self.roles.iter().position(|r| *r == file).unwrap_or(0);
                let field = format!("roles[{i}]");
                ConfigError::Invalid {
                    file: self.file.clone(),
                    line: scan::scan(&self.file, text)
                        .ok()
                        .and_then(|p| p.line(&field))
                        .unwrap_or(0),
                    message: format!("{}: cannot read: {source}", file.display()),
                    field,
                }
            }
            other => other,
        })?;
        for (i, u) in self.users.iter().enumerate() {
            if let Err(e) = roles.select(&u.roles) {
                let field = format!("users[{i}].roles");
                let line = scan::scan(&self.file, text)
                    .ok()
                    .and_then(|p| p.line(&field))
                    .unwrap_or_else(|| line_of(text, &u.name));
                return Err(ConfigError::Invalid {
                    file: self.file.clone(),
                    line,
                    field,
                    message: format!("user `{}`: {e}", u.name),
                });
            }
        }
        Ok(())
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Loads and combines the role files.
pub fn load_roles(files: &[PathBuf]) -> Result<ippin_policy::RoleSet, ConfigError> {
    let mut all = Vec::new();
    for f in files {
        let text = read_bounded(f, MAX_CONFIG_BYTES)?;
        let parsed = ippin_policy::parse_roles(&f.display().to_string(), &text).map_err(|e| {
            ConfigError::Invalid {
                file: f.clone(),
                line: 0,
                field: "(role document)".into(),
                message: e.to_string(),
            }
        })?;
        all.extend(parsed);
    }
    ippin_policy::RoleSet::new(all).map_err(|e| ConfigError::Invalid {
        file: files.first().cloned().unwrap_or_default(),
        line: 0,
        field: "roles".into(),
        message: e.to_string(),
    })
}

/// Names of users and roles: letters, digits, `.`, `_`, `-`; 1 to 64 bytes;
/// not starting with `-`. They end up in certificates and YAML.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('-') {
        return Err(format!(
            "name `{}`: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `-`",
            name.escape_default()
        ));
    }
    Ok(())
}

/// The largest argon2 memory cost of a stored hash, in KiB (256 MiB).
pub const MAX_ARGON2_M_KIB: u32 = 256 * 1024;

/// A user's `password_hash` as the configuration and the fleet's user documents accept
/// it: a well-formed argon2id PHC string whose parameters are within bounds (m <= 256 MiB,
/// t <= 10, p <= 8). Every login attempt for the name costs what the hash says, on every
/// node: bounded, so one entry cannot make logins take gigabytes; and a hash that cannot be
/// checked is refused at load, not found out (faster than a real check) at the first login.
pub(crate) fn check_password_hash(hash: &str) -> Result<(), String> {
    if !hash.starts_with("$argon2id$") {
        return Err("must be an argon2id PHC string (`$argon2id$...`); \
                    `ippin user add` writes one"
            .into());
    }
    let parsed = argon2::password_hash::PasswordHash::new(hash)
        .map_err(|e| format!("not a well-formed PHC string: {e}; `ippin user add` writes one"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err("must be an argon2id PHC string".into());
    }
    let (Some(salt), Some(_)) = (parsed.salt, parsed.hash) else {
        return Err("a PHC string with no salt or no hash; `ippin user add` writes one".into());
    };
    // argon2 refuses a salt that is not B64 or shorter than 8 bytes before hashing: such a
    // hash would fail every login at once (faster than a real check).
    let mut buf = [0u8; 64];
    match salt.decode_b64(&mut buf) {
        Ok(bytes) if bytes.len() >= argon2::MIN_SALT_LEN => {}
        Ok(bytes) => {
            return Err(format!(
                "a salt of {} bytes: argon2 needs at least {}",
                bytes.len(),
                argon2::MIN_SALT_LEN
            ));
        }
        Err(e) => return Err(format!("a salt that is not B64: {e}")),
    }
    let params =
        argon2::Params::try_from(&parsed).map_err(|e| format!("argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_ARGON2_M_KIB || params.t_cost() > 10 || params.p_cost() > 8 {
        return Err(format!(
            "argon2 parameters m={} t={} p={} are above the bounds (m <= {MAX_ARGON2_M_KIB} \
             KiB, t <= 10, p <= 8)",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// The 1-based line of the first line containing `needle` (0 if none).
/// Used for errors found after parsing, where YAML no longer has positions.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

/// Adds a user entry to configuration `text` (the `users:` block list),
/// keeping everything else (comments included) as written.
///
/// Refuses a name that is already listed, and a `users:` written as a
/// non-empty flow list (`users: [...]`), which it cannot extend safely.
pub fn add_user_to_text(
    file: &Path,
    text: &str,
    name: &str,
    password_hash: &str,
    roles: &[String],
) -> Result<String, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        line: 0,
        field: field.into(),
        message,
    };
    check_name(name).map_err(|m| invalid("users[].name", m))?;
    for r in roles {
        check_name(r).map_err(|m| invalid("users[].roles", m))?;
    }
    if password_hash.contains(['"', '\\', '\n']) {
        return Err(invalid(
            "users[].password_hash",
            "unexpected characters".into(),
        ));
    }
    let current = Config::parse(file, text)?;
    if current.user(name).is_some() {
        return Err(ConfigError::Invalid {
            file: file.to_path_buf(),
            line: line_of(text, name),
            field: "users".into(),
            message: format!("user `{name}` already exists"),
        });
    }
    // Quoted, so that names like `null`, `true` or `on` stay strings.
    let quoted: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    let entry = format!(
        "  - {{name: \"{name}\", password_hash: \"{password_hash}\", roles: [{}]}}",
        quoted.join(", ")
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 2);
    let users_at = lines.iter().position(|l| l.starts_with("users:"));
    match users_at {
        None => {
            out.extend(lines.iter().map(|l| (*l).to_owned()));
            out.push("users:".into());
            out.push(entry);
        }
        Some(at) => {
            let rest = lines
                .get(at)
                .and_then(|l| l.strip_prefix("users:"))
                .unwrap_or("");
            let rest = rest.split('#').next().unwrap_or("").trim();
            if !(rest.is_empty() || rest == "[]") {
                return Err(ConfigError::Invalid {
                    file: file.to_path_buf(),
                    line: at + 1,
                    field: "users".into(),
                    message: "written as a flow list; rewrite it as a block list \
                              (one `- {...}` per line) to use `ippin user add`"
                        .into(),
                });
            }
            // The block ends at the first non-blank line at column 0 that is
            // not a list item or a comment.
            let mut end = at + 1;
            let mut last_item = at;
            while let Some(l) = lines.get(end) {
                let starts_block = l.starts_with(' ') || l.starts_with('-');
                if l.trim().is_empty() || l.starts_with('#') {
                    end += 1;
                    continue;
                }
                if !starts_block {
                    break;
                }
                last_item = end;
                end += 1;
            }
            for (i, l) in lines.iter().enumerate() {
                if i == at {
                    out.push("users:".into());
                } else {
                    out.push((*l).to_owned());
                }
                if i == last_item {
                    out.push(entry.clone());
                }
            }
        }
    }
    let mut new_text = out.join("\n");
    new_text.push('\n');
    // The result must still be a valid configuration with the new user.
    let check = Config::parse(file, &new_text)?;
    if check.user(name).is_none() {
        return Err(invalid("users", "the edited file lost the new user".into()));
    }
    Ok(new_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"cluster_name: local
ca:
  ssh_key: ca/ssh_user_ca
  tls_cert: ca/tls_ca.pem
  tls_key: ca/tls_ca.key
server_tls: {cert: server.pem, key: server.key}
roles: [roles.yaml]
users:
  - {name: alice, password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg", roles: [pinned-ip]}
cert_ttl: 8h
audit_log: audit.log
listeners:
  - kind: login
    listen: 127.0.0.1:3080
    proxy_protocol: on
    trusted_proxies: [127.0.0.1/32]
    header_timeout: 5s
    trust_x_forwarded_for: false
  - kind: tls
    listen: 127.0.0.1:3443
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ippin/ippin.yaml"), text)
    }

    /// A configuration or role file that users other than its owner may write is refused:
    /// whoever writes it decides who gets in.
    #[test]
    fn files_others_may_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roles.yaml");
        std::fs::write(&path, "kind: role\nversion: v7\nmetadata:\n  name: dev\n").unwrap();
        for (mode, refused) in [(0o600, false), (0o644, false), (0o664, true), (0o646, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = load_roles(std::slice::from_ref(&path));
            assert_eq!(got.is_err(), refused, "{mode:o}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("writable by group or others"), "{e}");
            }
        }
        // Owned by another user: refused too (the tests run as root, which may give it away).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown: run the tests as root");
        let e = load_roles(std::slice::from_ref(&path)).unwrap_err();
        assert!(e.to_string().contains("owned by another user"), "{e}");
    }

    #[test]
    fn login_limits_default_to_five_failures_and_twenty_minutes() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.login_limits, LoginLimits::default());
        assert_eq!(c.login_limits.max_failures, 5);
        assert_eq!(c.login_limits.lockout, Duration::from_secs(1200));
        let text = format!(
            "{GOOD}login_limits:\n  max_failures: 3\n  lockout: 2s\n  max_connections_per_peer: 4\n  body_timeout: 1s\n"
        );
        let l = parse(&text).unwrap().login_limits;
        assert_eq!(
            (
                l.max_failures,
                l.lockout,
                l.max_connections_per_peer,
                l.body_timeout
            ),
            (3, Duration::from_secs(2), 4, Duration::from_secs(1))
        );
        assert_eq!(l.failure_window, Duration::from_secs(1200));
    }

    #[test]
    fn login_limits_out_of_range_are_refused_with_field_and_line() {
        let line = GOOD.lines().count() + 2;
        for (field, value, says) in [
            ("max_failures", "0", "between 1 and 100"),
            ("max_failures", "101", "between 1 and 100"),
            ("lockout", "25h", "between 1s and"),
            ("lockout", "500ms", "between 1s and"),
            ("failure_window", "10ms", "between 1s and"),
            ("peer_window", "2d", "between 1s and"),
            ("peer_max_failures", "0", "between 1"),
            ("max_connections_per_peer", "0", "between 1 and 4096"),
            ("body_timeout", "31s", "between 1s and"),
        ] {
            let text = format!("{GOOD}login_limits:\n  {field}: {value}\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("login_limits.{field}")), "{e}");
            assert!(e.contains(says), "{e}");
            assert!(
                e.starts_with(&format!("/etc/ippin/ippin.yaml:{line}")),
                "{e}"
            );
        }
        // A zero duration is refused while reading (with its line, like every duration).
        let e = parse(&format!("{GOOD}login_limits:\n  lockout: 0s\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("/etc/ippin/ippin.yaml:{line}:")),
            "{e}"
        );
        assert!(e.contains("greater than zero"), "{e}");
        let e = parse(&format!("{GOOD}login_limits: {{lockuot: 1m}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lockuot"), "{e}");
    }

    #[test]
    fn the_documented_shape_parses_and_resolves_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.cluster_name, "local");
        assert_eq!(c.ca.ssh_key, PathBuf::from("/etc/ippin/ca/ssh_user_ca"));
        assert_eq!(c.server_tls.key, PathBuf::from("/etc/ippin/server.key"));
        assert_eq!(c.audit_log, PathBuf::from("/etc/ippin/audit.log"));
        assert_eq!(c.cert_ttl, Duration::from_secs(8 * 3600));
        let l = &c.listeners[0];
        assert_eq!(l.kind, ListenerKind::Login);
        assert_eq!(l.proxy_protocol, ProxyModeSetting::On);
        assert_eq!(l.header_timeout, Duration::from_secs(5));
        assert_eq!(
            l.trusted_proxies,
            Some(vec!["127.0.0.1/32".parse::<IpNet>().unwrap()])
        );
        assert_eq!(c.listeners[1].proxy_protocol, ProxyModeSetting::Unspecified);
        assert_eq!(c.user("alice").unwrap().roles, vec!["pinned-ip".to_owned()]);
    }

    fn line_and_field(r: Result<Config, ConfigError>) -> (usize, String) {
        match r {
            Err(ConfigError::Invalid { line, field, .. }) => (line, field),
            Err(ConfigError::Syntax { line, message, .. }) => (line, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A few kilobytes of aliases used to expand to gigabytes in the YAML library; the
    /// configuration now refuses aliases before it sees them.
    #[test]
    fn aliases_cannot_multiply_the_configuration() {
        let head = "cluster_name: t\nca: {ssh_key: a, tls_cert: b, tls_key: c}\nserver_tls: {cert: d, key: e}\naudit_log: l\nlisteners:\n  - {kind: tls, listen: 127.0.0.1:0}\n";
        let list = vec!["a".repeat(130); 370].join(",");
        let mut text = format!(
            "{head}users:\n  - {{name: u0, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: &r [{list}]}}\n"
        );
        for i in 1..860 {
            text.push_str(&format!(
                "  - {{name: u{i}, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: *r}}\n"
            ));
        }
        let (line, message) = line_and_field(parse(&text));
        assert_eq!(line, 9, "{message}");
        assert!(message.contains("aliases"), "{message}");
    }

    #[test]
    fn deep_nesting_and_second_documents_are_refused_with_a_line() {
        let n = 16_000;
        let text = format!(
            "{GOOD}network_restrictions: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        );
        let (line, message) = line_and_field(parse(&text));
        assert_eq!(line, GOOD.lines().count() + 1, "{message}");
        // Our bound (32 levels) or the YAML scanner's own recursion limit, whichever
        // stops it first: either way at once, and located.
        assert!(
            message.contains("nested deeper") || message.contains("recursion limit"),
            "{message}"
        );
        let (line, message) = line_and_field(parse(&format!("{GOOD}---\nx: 1\n")));
        assert_eq!(line, GOOD.lines().count() + 1, "{message}");
        assert!(message.contains("second YAML document"), "{message}");
    }

    /// Errors found after deserializing name the line of the field itself, not the first
    /// line that happens to contain the same text.
    #[test]
    fn errors_point_at_the_field_line() {
        let text = GOOD.replace(
            "  - {name: alice, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [pinned-ip]}",
            "  - {name: alice, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [pinned-ip]}\n  - name: ca\n    password_hash: plain",
        );
        assert_eq!(
            line_and_field(parse(&text)),
            (11, "users[1].password_hash".to_owned())
        );
        // Two listeners on port 0 (allowed); the second one's error names its own line.
        let text = GOOD.replace(
            "  - kind: tls\n    listen: 127.0.0.1:3443\n",
            "  - kind: tls\n    listen: 127.0.0.1:3443\n  - kind: tls\n    listen: 127.0.0.1:3080\n",
        );
        assert_eq!(
            line_and_field(parse(&text)),
            (22, "listeners[2].listen".to_owned())
        );
        let text = GOOD.replace("cluster_name: local", "\"cluster_name\": \" \"");
        assert_eq!(line_and_field(parse(&text)), (1, "cluster_name".to_owned()));
    }

    #[test]
    fn role_files_are_bounded_in_number() {
        let many = vec!["r.yaml"; MAX_ROLE_FILES + 1].join(", ");
        let text = GOOD.replace("roles: [roles.yaml]", &format!("roles: [{many}]"));
        let (line, field) = line_and_field(parse(&text));
        assert_eq!((line, field.as_str()), (7, "roles[64]"));
        let enough = vec!["r.yaml"; MAX_ROLE_FILES].join(", ");
        let text = GOOD.replace("roles: [roles.yaml]", &format!("roles: [{enough}]"));
        assert_eq!(parse(&text).unwrap().roles.len(), MAX_ROLE_FILES);
    }

    #[test]
    fn many_users_are_checked_for_duplicates_in_one_pass() {
        // alice (line 9), then u0..u19999, then u7 again: users[20001].
        let mut more = String::new();
        for i in 0..20_000 {
            more.push_str(&format!(
                "  - {{name: u{i}, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [r]}}\n"
            ));
        }
        more.push_str("  - {name: u7, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [r]}\n");
        let text = GOOD.replace("cert_ttl: 8h\n", &format!("{more}cert_ttl: 8h\n"));
        assert_eq!(
            line_and_field(parse(&text)),
            (10 + 20_000, "users[20001].name".to_owned())
        );
    }

    #[test]
    fn absolute_paths_stay() {
        let text = GOOD.replace("audit_log: audit.log", "audit_log: /var/log/ippin.log");
        assert_eq!(
            parse(&text).unwrap().audit_log,
            PathBuf::from("/var/log/ippin.log")
        );
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = GOOD.replace(
            "    header_timeout: 5s",
            "    header_timeout: 5s\n    hedaer: 1",
        );
        let err = parse(&text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("/etc/ippin/ippin.yaml:18:5: listeners[0]: unknown field `hedaer`"),
            "{shown}"
        );
        assert!(!shown.contains("at line"), "{shown}");
        assert!(shown.contains("hedaer"), "{shown}");
        assert!(shown.contains("listeners[0]"), "{shown}");
    }

    #[test]
    fn bad_listen_address_is_located() {
        let text = GOOD.replace("127.0.0.1:3443", "127.0.0.1:99999");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.contains("ippin.yaml:20:13: listeners[1].listen"),
            "{shown}"
        );
        assert!(shown.contains("listeners[1].listen"), "{shown}");
    }

    #[test]
    fn a_password_hash_that_cannot_be_checked_is_refused_at_load() {
        let light = crate::users::hash_password_light("pw").unwrap();
        assert_eq!(check_password_hash(&light), Ok(()));
        let salt = "c2FsdHNhbHRzYWx0";
        let out = "aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg";
        for (bad, why) in [
            ("$argon2id$x".to_owned(), "well-formed"),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=1${salt}$aGFzaA"),
                "well-formed",
            ),
            (format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"), "no hash"),
            (
                format!("$argon2i$v=19$m=19456,t=2,p=1${salt}${out}"),
                "argon2id",
            ),
            (
                format!("$argon2id$v=19$m=262145,t=2,p=1${salt}${out}"),
                "above the bounds",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=11,p=1${salt}${out}"),
                "above the bounds",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=9${salt}${out}"),
                "above the bounds",
            ),
            (
                format!("$argon2id$v=19$m=1,t=2,p=1${salt}${out}"),
                "parameters",
            ),
            // "salt": 4 bytes; and a salt B64 cannot decode (length 1 mod 4).
            (
                format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${out}"),
                "at least 8",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c${out}"),
                "B64",
            ),
        ] {
            let got = check_password_hash(&bad).unwrap_err();
            assert!(got.contains(why), "{bad}: {got}");
        }
        // In a configuration: refused at load, naming the field (the hash's output cut
        // below argon2's 10 bytes).
        let bad = GOOD.replace(&format!("{salt}${out}"), &format!("{salt}$aGFzaA"));
        assert_ne!(bad, GOOD);
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("users[0].password_hash"), "{e}");
    }

    #[test]
    fn a_login_lasts_at_least_one_certificate() {
        assert_eq!(
            parse(GOOD).unwrap().max_session_ttl,
            DEFAULT_MAX_SESSION_TTL
        );
        let set = |value: &str| {
            GOOD.replace(
                "cert_ttl: 8h\n",
                &format!("cert_ttl: 8h\nmax_session_ttl: {value}\n"),
            )
        };
        assert_eq!(
            parse(&set("8h")).unwrap().max_session_ttl,
            Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            parse(&set("30d")).unwrap().max_session_ttl,
            Duration::from_secs(30 * 86_400)
        );
        for (too_long, field) in [
            ("367d", "max_session_ttl"),
            ("1000000000d", "max_session_ttl"),
        ] {
            let e = parse(&set(too_long)).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("a year"), "{e}");
        }
        let e = parse(&GOOD.replace(
            "cert_ttl: 8h",
            "cert_ttl: 400d
max_session_ttl: 400d",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cert_ttl") && e.contains("a year"), "{e}");
        let e = parse(&set("7h")).unwrap_err().to_string();
        assert!(
            e.contains("max_session_ttl") && e.contains("cert_ttl"),
            "{e}"
        );
        // cert_ttl over the default needs max_session_ttl raised with it.
        let e = parse(&GOOD.replace("cert_ttl: 8h", "cert_ttl: 25h"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_session_ttl"), "{e}");
    }

    #[test]
    fn the_ssh_recheck_interval_is_bounded() {
        assert_eq!(
            parse(GOOD).unwrap().ssh_recheck_interval,
            DEFAULT_SSH_RECHECK
        );
        for (value, ok) in [
            ("100ms", true),
            ("30s", true),
            ("1h", true),
            ("99ms", false),
            ("1h 1s", false),
            ("365d", false),
        ] {
            let text = GOOD.replace(
                "cert_ttl: 8h\n",
                &format!("cert_ttl: 8h\nssh_recheck_interval: {value}\n"),
            );
            match parse(&text) {
                Ok(c) => {
                    assert!(ok, "{value} taken");
                    assert_eq!(
                        c.ssh_recheck_interval,
                        humantime::parse_duration(value).unwrap()
                    );
                }
                Err(e) => {
                    assert!(!ok, "{value}: {e}");
                    assert!(e.to_string().contains("ssh_recheck_interval"), "{e}");
                }
            }
        }
    }

    #[test]
    fn bad_mode_and_duration_are_refused() {
        let text = GOOD.replace("proxy_protocol: on", "proxy_protocol: maybe");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("proxy_protocol `maybe`"), "{shown}");
        assert!(shown.contains(":15:"), "{shown}");
        let text = GOOD.replace("header_timeout: 5s", "header_timeout: 5 parsecs");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("duration `5 parsecs`"), "{shown}");
        let text = GOOD.replace("cert_ttl: 8h", "cert_ttl: 0s");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("greater than zero")
        );
    }

    #[test]
    fn ipv6_listen_addresses_are_quoted() {
        let text = GOOD.replace("listen: 127.0.0.1:3443", "listen: \"[::1]:3443\"");
        assert_eq!(
            parse(&text).unwrap().listeners[1].listen,
            "[::1]:3443".parse::<SocketAddr>().unwrap()
        );
        let text = GOOD.replace("listen: 127.0.0.1:3443", "listen: [::1]:3443");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("ippin.yaml:20:"), "{shown}");
        assert!(shown.contains("listeners[1]"), "{shown}");
    }

    #[test]
    fn host_bits_in_trusted_proxies_are_refused() {
        let text = GOOD.replace("[127.0.0.1/32]", "[127.0.0.1/8]");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("did you mean `127.0.0.0/8`"), "{shown}");
        let text = GOOD.replace("[127.0.0.1/32]", "[127.0.0.1, \"::1\"]");
        let c = parse(&text).unwrap();
        assert_eq!(
            c.listeners[0].trusted_proxies.as_ref().unwrap()[1],
            "::1/128".parse::<IpNet>().unwrap()
        );
    }

    /// `trusted_proxies` is read as strictly as every address list: leading zeros (octal to
    /// `inet_aton`), a prefix with a leading zero, a zone index or a short form are refused,
    /// not read as some address.
    #[test]
    fn trusted_proxies_are_read_strictly() {
        for bad in [
            "010.0.0.1/32",
            "010.0.0.1",
            "10.0.0.0/08",
            "\"2001:db8::/064\"",
            "\"fe80::1%lo\"",
            "10.1",
            "10.0.0.0/+8",
        ] {
            let text = GOOD.replace("[127.0.0.1/32]", &format!("[{bad}]"));
            let shown = parse(&text).unwrap_err().to_string();
            assert!(shown.contains("is not a CIDR"), "{bad}: {shown}");
        }
    }

    /// A "proxy" network that holds every address of a family trusts every peer: only
    /// `danger_trust_every_peer` may say that.
    #[test]
    fn trusted_proxies_that_hold_every_peer_are_refused() {
        for every in [
            "0.0.0.0/0",
            "\"::/0\"",
            "\"::ffff:0:0/96\"",
            "0.0.0.0/1, 128.0.0.0/1",
            "\"::ffff:0:0/97\", \"::ffff:128.0.0.0/97\"",
            "\"::/1\", \"8000::/1\"",
        ] {
            let text = GOOD.replace("[127.0.0.1/32]", &format!("[127.0.0.1/32, {every}]"));
            let shown = parse(&text).unwrap_err().to_string();
            assert!(
                shown.contains("hold every address of the family")
                    && shown.contains("danger_trust_every_peer"),
                "{every}: {shown}"
            );
        }
        // (An IPv6 network wider than the mapped range never matches an IPv4 peer.)
        for narrower in [
            "0.0.0.0/1",
            "\"::ffff:0:0/97\"",
            "\"2001:db8::/32\"",
            "\"::/1\"",
        ] {
            let text = GOOD.replace("[127.0.0.1/32]", &format!("[{narrower}]"));
            assert!(parse(&text).is_ok(), "{narrower}");
        }
    }

    /// With several proxies in a chain every address of `trusted_proxies` is believed as a
    /// proxy reporting the entry to its left: a network there would let a client inside it
    /// name any address through the last proxy. Each proxy is named by its own address.
    #[test]
    fn a_chain_of_proxies_names_each_proxy() {
        let xff = |nets: &str, hops: usize| {
            GOOD.replace(
                "    proxy_protocol: on\n    trusted_proxies: [127.0.0.1/32]\n    header_timeout: 5s\n    trust_x_forwarded_for: false\n",
                &format!(
                    "    proxy_protocol: off\n    trusted_proxies: [{nets}]\n    trust_x_forwarded_for: true\n    forwarded_hops: {hops}\n"
                ),
            )
        };
        assert!(parse(&xff("10.0.0.0/8", 1)).is_ok());
        assert!(parse(&xff("127.0.0.1/32, \"::1/128\"", 2)).is_ok());
        for wide in [
            "10.0.0.0/8",
            "127.0.0.1/32, 10.1.0.0/31",
            "\"2001:db8::/64\"",
        ] {
            let shown = parse(&xff(wide, 2)).unwrap_err().to_string();
            assert!(
                shown.contains("is a network") && shown.contains("name each proxy"),
                "{wide}: {shown}"
            );
        }
    }

    #[test]
    fn allowed_endpoints_parse_strictly() {
        use ippin_proxy_protocol::{AzureLinkId, EndpointId, GcpPscConnectionId};
        let with = |list: &str| {
            GOOD.replace(
                "    header_timeout: 5s",
                &format!("    header_timeout: 5s\n    allowed_endpoints: {list}"),
            )
        };
        let c = parse(&with(
            "[vpce-0123456789abcdef0, vpce-0a1b2c3d, azure:123, gcp:456]",
        ))
        .unwrap();
        assert_eq!(
            c.listeners[0].allowed_endpoints,
            Some(vec![
                EndpointId::Aws("vpce-0123456789abcdef0".parse().unwrap()),
                EndpointId::Aws("vpce-0a1b2c3d".parse().unwrap()),
                EndpointId::Azure(AzureLinkId(123)),
                EndpointId::Gcp(GcpPscConnectionId(456)),
            ])
        );
        assert_eq!(parse(GOOD).unwrap().listeners[0].allowed_endpoints, None);
        // The policy gets it.
        let policy = crate::accept::listener_policy(&c.listeners[0]);
        assert_eq!(policy.allowed_endpoints, c.listeners[0].allowed_endpoints);
        for (bad, why) in [
            ("[vpce-0123456789ABCDEF0]", "lowercase hex"),
            ("[vpce-012345678]", "wrong length"),
            ("[azure:-1]", "no sign"),
            ("[azure:0123]", "leading zero"),
            ("[azure:4294967296]", "out of range"),
            ("[\"gcp: 1\"]", "decimal digits"),
            ("[gcp:18446744073709551616]", "out of range"),
            ("[aws:vpce-0a1b2c3d]", "unknown kind"),
        ] {
            let shown = parse(&with(bad)).unwrap_err().to_string();
            assert!(shown.contains("ippin.yaml:18:"), "{bad}: {shown}");
            assert!(shown.contains("listeners[0]"), "{bad}: {shown}");
            assert!(shown.contains(why), "{bad}: {shown}");
        }
        for (bad, why) in [
            ("[]", "is empty"),
            ("[azure:1, gcp:2, azure:1]", "names `azure:1` twice"),
        ] {
            let shown = parse(&with(bad)).unwrap_err().to_string();
            assert!(shown.contains("listeners[0].allowed_endpoints"), "{shown}");
            assert!(shown.contains(why), "{bad}: {shown}");
        }
        // Only with `proxy_protocol: on`.
        let text = with("[gcp:1]")
            .replace("proxy_protocol: on", "proxy_protocol: off")
            .replace("    trusted_proxies: [127.0.0.1/32]\n", "");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("listeners[0].allowed_endpoints"), "{shown}");
        assert!(shown.contains("needs `proxy_protocol: on`"), "{shown}");
        // A key with no value is not "no list" (which would allow every endpoint, trust
        // any peer): refused, with its line.
        for null in ["", "~", "null", "\n      # - vpce-0a1b2c3d"] {
            let shown = parse(&with(null)).unwrap_err().to_string();
            assert!(shown.contains("ippin.yaml:1"), "{null:?}: {shown}");
            assert!(
                shown.contains("`allowed_endpoints` has no value"),
                "{null:?}: {shown}"
            );
            let text = GOOD.replace(
                "    trusted_proxies: [127.0.0.1/32]",
                &format!("    trusted_proxies: {null}"),
            );
            let shown = parse(&text).unwrap_err().to_string();
            assert!(
                shown.contains("`trusted_proxies` has no value"),
                "{null:?}: {shown}"
            );
        }
        // The same for the top-level keys whose absence means "no restriction", "no fleet".
        for (key, null) in [
            ("network_restrictions", "~"),
            ("network_restrictions", ""),
            ("backend", "null"),
        ] {
            let text = format!("{GOOD}{key}: {null}\n");
            let shown = parse(&text).unwrap_err().to_string();
            assert!(
                shown.contains(&format!("`{key}` has no value")),
                "{key}: {null:?}: {shown}"
            );
        }
        // Beside `propagation` (an inner behind a balancer that many endpoints reach): the
        // list holds the balancer's header, alone or before a front's signed one.
        let text = with("[gcp:1]").replace(
            "    header_timeout: 5s",
            "    header_timeout: 5s\n    propagation: {audience: inner, key: inner.propkey}",
        );
        // (It reads the key file next: the list itself is not what is refused.)
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("propagation.key"), "{shown}");
        assert!(!shown.contains("allowed_endpoints"), "{shown}");
    }

    #[test]
    fn mode_off_parses() {
        let text = GOOD.replace(
            "proxy_protocol: on\n    trusted_proxies: [127.0.0.1/32]",
            "proxy_protocol: off",
        );
        assert_eq!(
            parse(&text).unwrap().listeners[0].proxy_protocol,
            ProxyModeSetting::Off
        );
    }

    #[test]
    fn semantic_errors_name_the_field_and_line() {
        let text = GOOD.replace("\"$argon2id$v=19", "\"$2b$v=19");
        let err = parse(&text).unwrap_err();
        let ConfigError::Invalid { line, field, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((*line, field.as_str()), (9, "users[0].password_hash"));

        let text = format!("{GOOD}    trust_x_forwarded_for: true\n");
        let err = parse(&text).unwrap_err();
        let ConfigError::Invalid { field, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(field, "listeners[1].trust_x_forwarded_for");

        let text = GOOD.replace("127.0.0.1:3443", "127.0.0.1:3080");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("used by two listeners")
        );

        let text = GOOD.replace("{name: alice", "{name: \"al ice\"");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("users[0].name")
        );
    }

    #[test]
    fn missing_field_is_named() {
        let text = GOOD.replace("audit_log: audit.log\n", "");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.contains("audit_log"), "{shown}");
    }

    #[test]
    fn user_add_appends_to_the_block_and_keeps_comments() {
        let text = GOOD.replace("cluster_name: local", "# my cluster\ncluster_name: local");
        let out = add_user_to_text(
            Path::new("/x/ippin.yaml"),
            &text,
            "bob",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg",
            &["dev".to_owned()],
        )
        .unwrap();
        assert!(out.starts_with("# my cluster\n"));
        let c = Config::parse(Path::new("/x/ippin.yaml"), &out).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.user("bob").unwrap().roles, vec!["dev".to_owned()]);
        // Same name twice is refused.
        let again = add_user_to_text(
            Path::new("/x/ippin.yaml"),
            &out,
            "bob",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg",
            &[],
        );
        assert!(again.unwrap_err().to_string().contains("already exists"));
    }

    #[test]
    fn user_add_to_empty_list() {
        let text = GOOD.replace(
            "users:\n  - {name: alice, password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg\", roles: [pinned-ip]}\n",
            "users: []\n",
        );
        assert!(parse(&text).unwrap().users.is_empty());
        let out =
            add_user_to_text(Path::new("/x/c.yaml"), &text, "carol", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg", &[]).unwrap();
        assert_eq!(
            Config::parse(Path::new("/x/c.yaml"), &out)
                .unwrap()
                .users
                .len(),
            1
        );
    }

    #[test]
    fn user_add_keeps_yaml_keywords_as_strings() {
        for name in ["null", "true", "on", "no", "1"] {
            let out = add_user_to_text(
                Path::new("/x"),
                GOOD,
                name,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg",
                &["off".to_owned(), "null".to_owned()],
            )
            .unwrap();
            let c = Config::parse(Path::new("/x"), &out).unwrap();
            assert_eq!(c.user(name).unwrap().roles, ["off", "null"]);
        }
    }

    #[test]
    fn user_add_refuses_unsafe_names() {
        for bad in ["", "a b", "-x", "a\"b", "é"] {
            assert!(
                add_user_to_text(Path::new("/x"), GOOD, bad, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg", &[]).is_err(),
                "{bad}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any text is an error or a configuration, never a panic.
            #[test]
            fn parse_never_panics(text in "\\PC{0,400}") {
                let _ = Config::parse(Path::new("/x/c.yaml"), &text);
            }

            /// Any single-byte change of a valid file is handled.
            #[test]
            fn mutations_never_panic(at in 0usize..GOOD.len(), byte in any::<u8>()) {
                let mut bytes = GOOD.as_bytes().to_vec();
                bytes[at] = byte;
                if let Ok(text) = String::from_utf8(bytes) {
                    let _ = Config::parse(Path::new("/x/c.yaml"), &text);
                }
            }

            /// `user add` then parse gives back the user as added.
            #[test]
            fn user_add_round_trips(
                name in "[a-z][a-z0-9._-]{0,20}",
                roles in proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 0..4),
            ) {
                prop_assume!(name != "alice");
                let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg";
                let out = add_user_to_text(Path::new("/x/c.yaml"), GOOD, &name, hash, &roles).unwrap();
                let c = Config::parse(Path::new("/x/c.yaml"), &out).unwrap();
                let u = c.user(&name).unwrap();
                prop_assert_eq!(&u.roles, &roles);
                prop_assert_eq!(u.password_hash.as_str(), hash);
                prop_assert_eq!(c.users.len(), 2);
            }
        }
    }
}
