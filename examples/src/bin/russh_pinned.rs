//! An SSH server on russh that lets users in with OpenSSH certificates from a trusted CA, and
//! refuses a pinned certificate (`source-address`) used from another address, with the reason
//! in its audit log.
//!
//! ```text
//! russh_pinned --host-key HOST_KEY --user-ca CA.pub --user alice [--user bob ...]
//!              [--listen 127.0.0.1:0]
//! ```
//!
//! Every `--user` must use a pinned certificate whose key id names them as ippin's CA writes it
//! (`USER@ippin/SERIAL`, e.g. `ssh-keygen -s CA -I alice@ippin/1 -z 1 -n alice …`): the user is
//! read from the key id, never from the SSH user name. It prints `listening on ADDR`, then one JSON
//! audit line per authentication on stdout. `ssh alice@HOST whoami` answers with the user and
//! the observed address.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ippin_access::russh::{Connection, certificate, other_method, reject};
use ippin_access::ssh::{AuthContext, Authorized, CertIdentity, SshAuditEvent};
use ippin_access::{User, tokio::accept};
use ippin_cert::ssh_key::{Certificate, Fingerprint, HashAlg, PrivateKey, PublicKey};
use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};

/// What every connection's handler shares.
struct Settings {
    trusted_cas: Vec<Fingerprint>,
    users: HashMap<String, User>,
}

/// One connection.
struct Handler {
    settings: Arc<Settings>,
    conn: Connection,
    user: Option<Authorized>,
}

/// The audit log: one JSON line per event on stdout, flushed. `false` when it cannot be
/// written, and then the library refuses the login (fail closed).
fn audit(event: SshAuditEvent) -> bool {
    let Ok(line) = serde_json::to_string(&event) else {
        return false;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

impl Handler {
    /// The authorized user, checked again now: one connection (OpenSSH's connection sharing)
    /// can outlive its certificate, its user or a role's pin requirement, so every new
    /// channel and command asks again. A denial is audited and ends what it was asked for.
    fn still_allowed(&self) -> Option<&Authorized> {
        let who = self.user.as_ref()?;
        let now = UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
        match who.recheck(&self.settings.users, now) {
            None => Some(who),
            Some(denial) => {
                let line = serde_json::json!({
                    "event": "ssh.connection.refused",
                    "user": who.user,
                    "reason": denial.reason.code(),
                    "message": denial.message,
                });
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                None
            }
        }
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    // The certificate is the only way in: the library runs the whole table (CA, signature,
    // window, principal, options, the user's pin against the observed address) and audits it.
    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        cert: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let ctx = AuthContext {
            identity: CertIdentity::IppinKeyId,
            trusted_cas: &self.settings.trusted_cas,
            users: &self.settings.users,
            honours_force_command: false,
        };
        let now = UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
        let decided = certificate(&ctx, &self.conn, &audit, user, cert, now);
        self.user = decided.outcome.ok();
        Ok(decided.auth)
    }

    // A plain key or a password: refused (`not_a_certificate`) and audited.
    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(other_method(&self.conn, &audit, user, "publickey").auth)
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(other_method(&self.conn, &audit, user, "password").auth)
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject()) // the probe every client starts with: not audited
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.still_allowed().is_some() {
            reply.accept().await;
        }
        Ok(())
    }

    // Any command answers with who and where the user is.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(who) = self.still_allowed() else {
            return session.channel_failure(channel);
        };
        let text = format!("{} from {}\n", who.user, self.conn.observed.socket_addr());
        session.channel_success(channel)?;
        session.data(channel, text.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

fn arg(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

fn one(args: &[String], name: &str) -> Result<String, String> {
    arg(args, name)
        .pop()
        .ok_or_else(|| format!("missing {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let host_key = PrivateKey::from_openssh(std::fs::read_to_string(one(&args, "--host-key")?)?)?;
    let ca = PublicKey::from_openssh(&std::fs::read_to_string(one(&args, "--user-ca")?)?)?;
    let listen = one(&args, "--listen").unwrap_or_else(|_| "127.0.0.1:0".into());
    let settings = Arc::new(Settings {
        trusted_cas: vec![ca.fingerprint(HashAlg::Sha256)],
        // Each user's role requires a pin: an unpinned certificate is refused too.
        users: arg(&args, "--user")
            .into_iter()
            .map(|name| (name, User::new(true, vec!["pinned".into()])))
            .collect(),
    });
    let config = Arc::new(russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        // No version in the identification string.
        server_id: russh::SshId::Standard("SSH-2.0-example".into()),
        // A connection that says nothing for two minutes goes (keepalives keep a quiet one).
        // (A production server also bounds the time to authenticate; ippin's own ends a
        // connection not authenticated within its `login_grace_time`.)
        inactivity_timeout: Some(Duration::from_secs(120)),
        keepalive_interval: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    // At most 16 connections per client address, so that one client cannot hold every
    // descriptor of the process.
    let places = ippin_access::lockout::PeerPlaces::new(16);

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Clients connect directly: no PROXY header is accepted, the socket peer is the observed
    // address (put a trusted load balancer's networks here to read its headers instead).
    let policy = Arc::new(ListenerPolicy::new(ProxyMode::Off));
    let mut session = 0u64;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, say: one client's problem is not the service's end.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(place) = places.take(peer.ip()) else {
            continue; // dropped: closed at once
        };
        session += 1;
        let (settings, config, policy) = (settings.clone(), config.clone(), policy.clone());
        tokio::spawn(async move {
            let _place = place;
            let Ok((observed, stream)) = accept(tcp, peer, &policy, Duration::from_secs(5)).await
            else {
                return;
            };
            let handler = Handler {
                settings,
                conn: Connection::new(format!("s{session}"), Some(peer), observed),
                user: None,
            };
            if let Ok(running) = russh::server::run_stream(config, stream, handler).await {
                let _ = running.await;
            }
        });
    }
}
