//! Building the SSH service from the server's loaded state, for a `kind: ssh` listener.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ssh_key::PrivateKey;

use super::{
    AllowAll, DialPolicy, LiveRestrictions, SshAudit, SshError, SshService, SshSettings, SshUser,
};
use crate::config::{Config, ListenerKind};
use crate::state::State;

/// The largest host key file read, in bytes.
pub const MAX_HOST_KEY_FILE: u64 = 64 * 1024;

/// What the SSH side of a server shares between its listeners, made once at start.
pub struct SshParts {
    /// The host key of every `ssh` listener.
    pub host_key: PrivateKey,
    /// The policy every outbound dial goes through: the live `network_restrictions`, or
    /// [`AllowAll`] when none is configured.
    pub dial_policy: Arc<dyn DialPolicy>,
    /// The live policy, when one is configured.
    pub restrictions: Option<Arc<LiveRestrictions>>,
    /// How the network restrictions hold the sessions' processes (see
    /// [`super::session::Enforcement`]).
    pub enforcement: Arc<super::session::Enforcement>,
    /// The watcher and `SIGHUP` tasks; abort them to stop reloading.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The bound addresses of every listener of the server, set once they are bound:
    /// forwards into them are refused (`own_listener`).
    pub own_listeners: Vec<std::net::SocketAddr>,
}

impl std::fmt::Debug for SshParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshParts")
            .field("restrictions", &self.restrictions)
            .finish_non_exhaustive()
    }
}

impl SshParts {
    /// Loads the host key (`ssh_host_key`, or a fresh one with a warning when the
    /// configuration has an `ssh` listener) and the `network_restrictions` policy, which is
    /// then watched (every `network_restrictions_poll`, unless zero) and re-read on `SIGHUP`. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// A host key file that cannot be used, a policy that cannot be loaded (file, line and
    /// field named), or a `SIGHUP` handler that cannot be installed: the server does not
    /// start.
    pub fn load(config: &Config) -> Result<SshParts, SshError> {
        SshParts::load_with(config, None)
    }

    /// [`SshParts::load`]; with `fleet` (a fleet's policy, fed by its store) in place of the
    /// configuration's file.
    ///
    /// # Errors
    /// As [`SshParts::load`].
    pub fn load_with(
        config: &Config,
        fleet: Option<Arc<LiveRestrictions>>,
    ) -> Result<SshParts, SshError> {
        let host_key = match &config.ssh_host_key {
            // The error names the configuration file, the field's line and the key file.
            Some(path) => read_host_key(path).map_err(|e| match e {
                SshError::HostKeyFile { path, message } => SshError::HostKeyFile {
                    path,
                    message: config.file_error("ssh_host_key", message).to_string(),
                },
                other => other,
            })?,
            None => {
                if config.listeners.iter().any(|l| l.kind == ListenerKind::Ssh) {
                    tracing::warn!(
                        "WARNING: no `ssh_host_key` configured: the SSH listeners use a host key \
                         generated for this run only, so clients will see a different host key \
                         after every restart; `ippin ca init` writes one \
                         (ssh_host_ed25519_key)"
                    );
                }
                super::generate_host_key()?
            }
        };
        let mut tasks = Vec::new();
        let (dial_policy, restrictions): (Arc<dyn DialPolicy>, _) =
            match (&config.network_restrictions, fleet) {
                (_, Some(live)) => (live.clone(), Some(live)),
                (None, None) => (Arc::new(AllowAll), None),
                (Some(path), None) => {
                    let live = Arc::new(LiveRestrictions::load(path)?);
                    if !config.network_restrictions_poll.is_zero() {
                        tasks.push(live.clone().watch(config.network_restrictions_poll));
                    }
                    tasks.push(live.clone().reload_on_sighup().map_err(SshError::Signal)?);
                    (live.clone(), Some(live))
                }
            };
        let enforcement = Arc::new(enforcement_for(config, restrictions.as_deref()));
        Ok(SshParts {
            own_listeners: Vec::new(),
            host_key,
            dial_policy,
            restrictions,
            enforcement,
            tasks,
        })
    }
}

/// Sets up kernel enforcement when network restrictions are configured (and an `ssh`
/// listener runs sessions): the programs are loaded with the policy in force, and every
/// later policy is written into their maps as soon as the file is re-read. Without
/// restrictions, nothing is loaded. When enforcement cannot be set up, the reason is kept:
/// sessions are then refused, never run unrestricted.
pub fn enforcement_for(
    config: &Config,
    restrictions: Option<&LiveRestrictions>,
) -> super::session::Enforcement {
    use super::session::Enforcement;
    let mut settings =
        ippin_restrict::EnforcerConfig::default().observe(config.audit_network_observed);
    if let Some(parent) = &config.session_cgroup_parent {
        settings = settings.parent(parent);
    }
    if !config.listeners.iter().any(|l| l.kind == ListenerKind::Ssh) {
        // No sessions here now; those a previous server left still end.
        end_orphaned_sessions(&settings);
        return Enforcement::Off;
    }
    let Some(live) = restrictions else {
        // No restrictions: no programs, unless something on this host believes whoever
        // connects from it: a listener that trusts this host's addresses as a proxy (a
        // session's process could write it a PROXY header naming any client), or etcd in
        // clear text on this host (it could write the fleet's users and roles). The
        // programs then run with no policy, only to keep those endpoints out of reach.
        let Some(why) = trusts_this_host(config, &crate::host::local_networks()) else {
            end_orphaned_sessions(&settings);
            return Enforcement::Off;
        };
        return match ippin_restrict::Enforcer::new(
            &settings,
            &ippin_policy::NetworkRestrictions::allow_all(),
        ) {
            Ok(enforcer) => Enforcement::Kernel(Arc::new(enforcer)),
            Err(e) => {
                end_orphaned_sessions(&settings);
                Enforcement::Unavailable(format!(
                    "{why}, and the sessions' processes cannot be kept from it: {e}"
                ))
            }
        };
    };
    // Started from the policy in force and following it with no update in between: a policy
    // that arrives while the programs load reaches them too.
    let started = live.follow(|policy| {
        let enforcer = Arc::new(ippin_restrict::Enforcer::new(&settings, policy)?);
        let follow = enforcer.clone();
        let hook: ippin_access::egress::ChangeHook =
            Box::new(move |policy| follow.set_policy(policy).map_err(|e| e.to_string()));
        Ok::<_, ippin_restrict::Error>((enforcer, hook))
    });
    match started {
        Ok(enforcer) => Enforcement::Kernel(enforcer),
        Err(e) => {
            end_orphaned_sessions(&settings);
            Enforcement::Unavailable(e.to_string())
        }
    }
}

/// Without an enforcer of its own (none needed, or none could be set up), the server still
/// ends the sessions a previous server left (`Enforcer::new` does it otherwise): they are held
/// to that server's last policy, and nobody applies lockouts or user removals to them.
fn end_orphaned_sessions(settings: &ippin_restrict::EnforcerConfig) {
    match ippin_restrict::end_orphaned_sessions(settings) {
        Ok((0, 0)) | Err(ippin_restrict::Error::NotRoot { .. }) => {}
        Ok((ended, stuck)) => tracing::warn!(
            ended,
            stuck,
            "sessions left by a server that is gone were ended"
        ),
        Err(e) => tracing::warn!("sessions left by a server that is gone: {e}"),
    }
}

/// Reads an unencrypted OpenSSH private key (at most [`MAX_HOST_KEY_FILE`] bytes).
///
/// # Errors
/// [`SshError::HostKeyFile`] naming the file.
pub fn read_host_key(path: &Path) -> Result<PrivateKey, SshError> {
    let bad = |message: String| SshError::HostKeyFile {
        path: path.to_owned(),
        message,
    };
    // Refused when group or others may access it, as sshd does.
    let text =
        crate::files::read_private(path, MAX_HOST_KEY_FILE).map_err(|e| bad(e.to_string()))?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| bad(format!("not an OpenSSH private key: {e}")))?;
    if key.is_encrypted() {
        return Err(bad(
            "the key is encrypted; a server host key must be readable at start".to_owned(),
        ));
    }
    Ok(key)
}

/// The users of the configuration with their roles resolved: the role names, whether any
/// of them sets `pin_source_ip`, and the OS logins they allow (allows minus denies). A user whose roles do not resolve is left out, so a
/// certificate for them is refused (`unknown_user`) rather than let in without a pin check.
pub fn users_of(state: &State) -> HashMap<String, SshUser> {
    let directory = state.directory.get();
    state
        .config
        .users
        .iter()
        .filter_map(|u| Some((u.name.clone(), directory.ssh_user(&u.name)?)))
        .collect()
}

/// The SSH service of a server: trusts the server's SSH user CA, knows the configured users
/// and their roles, dials through `dial_policy`, audits to `audit` (allowed connections too
/// with `audit_network_observed`), refuses authentications after
/// `ssh_auth_rejection_time`. The host key is `host_key` when given, else a fresh Ed25519
/// key.
///
/// # Errors
/// When the CA's public key cannot be read back, or the host key cannot be generated.
pub fn service_for(
    state: &State,
    host_key: Option<ssh_key::PrivateKey>,
    dial_policy: Arc<dyn DialPolicy>,
    audit: Arc<SshAudit>,
) -> Result<SshService, SshError> {
    service_with(
        state,
        host_key,
        dial_policy,
        audit,
        Vec::new(),
        Arc::new(super::session::Enforcement::Off),
    )
}

/// Why the sessions' processes must be kept from this host's endpoints even with no
/// `network_restrictions`: a listener that trusts an address of this host as a proxy
/// (`danger_trust_every_peer` trusts them all), or an etcd endpoint of this host that takes
/// clients with no certificate. `None`: nothing here believes a local connection more than
/// any other. `local` is [`crate::host::local_networks`].
pub fn trusts_this_host(config: &Config, local: &[ipnet::IpNet]) -> Option<String> {
    for (i, l) in config.listeners.iter().enumerate() {
        if l.trusted_proxies
            .as_ref()
            .is_some_and(|nets| !crate::host::overlapping(nets, local).is_empty())
        {
            return Some(format!(
                "listener {i} ({} on {}) trusts this host's addresses as a proxy",
                l.kind, l.listen
            ));
        }
    }
    let backend = config.backend.as_ref()?;
    if backend.tls.as_ref().is_some_and(|t| t.cert.is_some()) {
        // etcd asks for a client certificate the sessions do not have.
        return None;
    }
    backend
        .endpoints
        .iter()
        .find(|e| on_this_host(e.ip(), local))
        .map(|e| format!("etcd at {e} is on this host and takes clients with no certificate"))
}

/// The ports of the etcd endpoints on this host (loopback, or one of its addresses), on every
/// address of this host (the unspecified addresses, IPv4 and IPv6): etcd may listen on more
/// of them than the one configured. Kept from the sessions' processes and refused to
/// forwards, as the server's own listeners are.
pub fn local_backend_endpoints(
    config: &Config,
    local: &[ipnet::IpNet],
) -> Vec<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let mut out = Vec::new();
    for e in config.backend.iter().flat_map(|b| &b.endpoints) {
        if on_this_host(e.ip(), local) {
            for any in [
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, e.port())),
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, e.port())),
            ] {
                if !out.contains(&any) {
                    out.push(any);
                }
            }
        }
    }
    out
}

fn on_this_host(ip: std::net::IpAddr, local: &[ipnet::IpNet]) -> bool {
    let ip = ippin_policy::canonical_ip(ip);
    ip.is_loopback() || ip.is_unspecified() || local.iter().any(|n| n.contains(&ip))
}

/// [`service_for`], refusing forwards into `own_listeners` (the server's bound listeners).
///
/// # Errors
/// As [`service_for`].
pub fn service_with(
    state: &State,
    host_key: Option<ssh_key::PrivateKey>,
    dial_policy: Arc<dyn DialPolicy>,
    audit: Arc<SshAudit>,
    own_listeners: Vec<std::net::SocketAddr>,
    enforcement: Arc<super::session::Enforcement>,
) -> Result<SshService, SshError> {
    let ca = ssh_key::PublicKey::from_openssh(state.ca.ssh_public_key().trim())
        .map_err(|e| SshError::TrustedCa(e.to_string()))?;
    let users = crate::directory::LiveUsers(state.directory.clone());
    let mut settings = SshSettings::new(vec![ca], Arc::new(users), audit);
    settings.host_key = host_key;
    settings.dial_policy = dial_policy;
    settings.audit_observed_connections = state.config.audit_network_observed;
    settings.own_listeners = own_listeners;
    settings.auth_rejection_time = state.config.ssh_auth_rejection_time;
    settings.recheck_interval = state.config.ssh_recheck_interval;
    settings.session = super::session::SessionSettings {
        enforcement,
        sftp_server: state.config.sftp_server.clone(),
        server_id: server_id(),
        cluster_name: state.config.cluster_name.clone(),
        allow_server_login: state.config.allow_server_login,
    };
    SshService::new(settings)
}

/// This node's name in audit events: the host name (`/proc/sys/kernel/hostname`), or
/// `ippin` when it cannot be read.
pub fn server_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().chars().take(253).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ippin".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    fn site(listeners: &str, backend: &str) -> Config {
        let text = format!(
            "cluster_name: site\n\
             ca: {{ssh_key: ca/ssh_user_ca, tls_cert: ca/tls_ca.pem, tls_key: ca/tls_ca.key}}\n\
             server_tls: {{cert: server.pem, key: server.key}}\n\
             audit_log: audit.log\n\
             ssh_host_key: ssh_host_ed25519_key\n\
             {backend}listeners:\n\
             \x20 - {{kind: ssh, listen: 127.0.0.1:0, proxy_protocol: off}}\n{listeners}"
        );
        Config::parse(Path::new("/site/ippin.yaml"), &text).unwrap()
    }

    #[test]
    fn what_believes_a_connection_from_this_host_needs_the_sessions_kept_from_it() {
        let local: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
            "10.1.2.3/32".parse().unwrap(),
        ];
        let tls = |extra: &str| {
            format!("  - {{kind: tls, listen: 127.0.0.1:0, proxy_protocol: on, {extra}}}\n")
        };
        // Nothing that trusts this host: no programs needed.
        assert_eq!(trusts_this_host(&site("", ""), &local), None);
        assert_eq!(
            trusts_this_host(&site(&tls("trusted_proxies: [192.0.2.0/24]"), ""), &local),
            None
        );
        // A proxy on this host, by loopback or by one of its addresses (IPv4-mapped too).
        for nets in [
            "[127.0.0.3/32]",
            "[10.1.0.0/16]",
            "[\"::ffff:10.1.2.3/128\"]",
        ] {
            let why =
                trusts_this_host(&site(&tls(&format!("trusted_proxies: {nets}")), ""), &local);
            assert!(why.is_some_and(|w| w.contains("listener 1")), "{nets}");
        }
        // Every peer a proxy: this host's addresses too.
        let every = "  - {kind: tls, listen: 127.0.0.1:0, proxy_protocol: on, danger_trust_every_peer: true}\n";
        assert!(trusts_this_host(&site(every, ""), &local).is_some());
        // etcd on this host in clear text, or with TLS but no client certificate (off
        // loopback the configuration refuses that).
        for backend in [
            "backend: {kind: etcd, endpoints: [127.0.0.1:2379]}\n",
            "backend: {kind: etcd, endpoints: [\"[::1]:2379\"]}\n",
            "backend: {kind: etcd, endpoints: [\"https://127.0.0.1:2379\"], tls: {ca: e.pem}}\n",
        ] {
            let why = trusts_this_host(&site("", backend), &local);
            assert!(why.is_some_and(|w| w.contains("etcd at")), "{backend}");
        }
        // etcd elsewhere, or one that asks for a client certificate: nothing to keep from it.
        for backend in [
            "backend: {kind: etcd, endpoints: [\"https://192.0.2.9:2379\"], tls: {ca: e.pem, cert: c.pem, key: c.key}}\n",
            "backend: {kind: etcd, endpoints: [\"https://127.0.0.1:2379\"], tls: {ca: e.pem, cert: c.pem, key: c.key}}\n",
        ] {
            assert_eq!(
                trusts_this_host(&site("", backend), &local),
                None,
                "{backend}"
            );
        }
    }

    #[test]
    fn etcd_on_this_host_is_its_port_on_every_address() {
        let local: Vec<ipnet::IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.2.3/32".parse().unwrap(),
        ];
        let c = site(
            "",
            "backend: {kind: etcd, endpoints: [\"https://127.0.0.1:2379\", \"https://10.1.2.3:2380\", \"https://192.0.2.9:2381\"], tls: {ca: e.pem, cert: c.pem, key: c.key}}\n",
        );
        let got = local_backend_endpoints(&c, &local);
        let want: Vec<std::net::SocketAddr> =
            ["0.0.0.0:2379", "[::]:2379", "0.0.0.0:2380", "[::]:2380"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        assert_eq!(got, want);
        // Forwards to them are refused on any address of this host.
        assert!(ippin_access::egress::dial::is_own_listener(
            &got,
            "127.0.0.9:2379".parse().unwrap()
        ));
        assert!(ippin_access::egress::dial::is_own_listener(
            &got,
            "[::1]:2380".parse().unwrap()
        ));
        assert!(local_backend_endpoints(&site("", ""), &local).is_empty());
    }

    #[test]
    fn users_and_roles_come_from_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = crate::ca::init(dir.path()).unwrap();
        let hash = crate::users::hash_password_light("pw").unwrap();
        crate::users::add_user(&config_path, "alice", &["pinned-ip".to_owned()], &hash).unwrap();
        crate::users::add_user(&config_path, "bob", &["dev".to_owned()], &hash).unwrap();
        let state = State::load(Config::load(&config_path).unwrap()).unwrap();

        let users = users_of(&state);
        assert_eq!(users.get("alice").map(|u| u.requires_pin), Some(true));
        assert_eq!(users.get("bob").map(|u| u.requires_pin), Some(false));
        assert_eq!(
            users.get("bob").map(|u| u.roles.clone()),
            Some(vec!["dev".to_owned()])
        );
        assert!(users.values().all(|u| u.logins.is_empty()));

        // Roles with logins: the users carry the allows minus the denies.
        let roles_path = dir.path().join("roles.yaml");
        let roles = std::fs::read_to_string(&roles_path).unwrap();
        std::fs::write(
            &roles_path,
            roles.replace(
                "  name: dev\nspec:\n",
                "  name: dev\nspec:\n  allow: {logins: [deploy, root]}\n  deny: {logins: [root]}\n",
            ),
        )
        .unwrap();
        let state = State::load(Config::load(&config_path).unwrap()).unwrap();
        let users = users_of(&state);
        let bob = users.get("bob").unwrap();
        assert_eq!(bob.logins.iter().collect::<Vec<_>>(), ["deploy"]);
        assert!(users.get("alice").unwrap().logins.is_empty());

        let service = service_for(
            &state,
            None,
            Arc::new(super::super::AllowAll),
            Arc::new(|_: super::super::SshAuditEvent| true),
        )
        .unwrap();
        assert_eq!(
            service.host_public_key().algorithm(),
            ssh_key::Algorithm::Ed25519
        );
    }

    #[tokio::test]
    async fn ca_init_writes_a_host_key_that_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = crate::ca::init(dir.path()).unwrap();
        let config = Config::load(&config_path).unwrap();
        assert_eq!(
            config.ssh_host_key.as_deref(),
            Some(dir.path().join("ssh_host_ed25519_key").as_path())
        );
        assert!(
            config
                .listeners
                .iter()
                .any(|l| l.kind == ListenerKind::Ssh && l.listen.to_string() == "127.0.0.1:3022")
        );
        assert_eq!(config.ssh_auth_rejection_time, Duration::from_secs(1));
        let first = SshParts::load(&config).unwrap();
        let second = SshParts::load(&config).unwrap();
        assert_eq!(
            first.host_key.public_key(),
            second.host_key.public_key(),
            "the host key changed between two starts"
        );
        assert!(first.restrictions.is_none());
        assert!(
            first
                .dial_policy
                .decide("u", "192.0.2.1:22".parse().unwrap())
                .is_allowed()
        );

        std::fs::write(dir.path().join("ssh_host_ed25519_key"), "not a key\n").unwrap();
        let e = SshParts::load(&config).unwrap_err().to_string();
        assert!(e.contains("ssh_host_ed25519_key"), "{e}");
    }

    #[tokio::test]
    async fn a_broken_policy_stops_the_start_and_names_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = crate::ca::init(dir.path()).unwrap();
        let text = std::fs::read_to_string(&config_path).unwrap().replace(
            "# network_restrictions: network_restrictions.yaml",
            "network_restrictions: nr.yaml",
        );
        std::fs::write(&config_path, text).unwrap();
        std::fs::write(
            dir.path().join("nr.yaml"),
            "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.1/8\n",
        )
        .unwrap();
        let config = Config::load(&config_path).unwrap();
        assert_eq!(
            config.network_restrictions,
            Some(dir.path().join("nr.yaml"))
        );
        let e = SshParts::load(&config).unwrap_err().to_string();
        assert!(e.contains("nr.yaml:5"), "{e}");
        assert!(e.contains("cidr"), "{e}");

        std::fs::write(
            dir.path().join("nr.yaml"),
            "kind: network_restrictions\nversion: v4\nspec:\n  allow:\n  - cidr: 127.0.0.0/8\n  deny:\n  - cidr: 127.0.0.9/32\n",
        )
        .unwrap();
        let parts = SshParts::load(&config).unwrap();
        assert!(parts.restrictions.is_some());
        assert!(
            parts
                .dial_policy
                .decide("u", "127.0.0.3:1".parse().unwrap())
                .is_allowed()
        );
        assert!(
            !parts
                .dial_policy
                .decide("u", "127.0.0.9:1".parse().unwrap())
                .is_allowed()
        );
        assert!(
            !parts
                .dial_policy
                .decide("u", "10.0.0.1:1".parse().unwrap())
                .is_allowed()
        );
        for t in parts.tasks {
            t.abort();
        }
    }
}
