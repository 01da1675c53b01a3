//! Unauthenticated flood against a front: connect + one byte to a
//! `forward` listener (each makes the front sign a header to the inner),
//! and bad logins (wrong passwords, random and nonexistent user names),
//! from 127.0.0.2-9, while a real user logs in from 127.0.0.1 and
//! accesses the inner service through the front. Pass when every one of
//! the real user's attempts succeeds, the inner refuses no signed header
//! (in particular never `replay_cache_full`), and the server stays up.
//!
//! One server process holds the three listeners: `login` (direct),
//! `tls` with `propagation` (the inner) and `forward` (the front, relaying
//! to the inner on loopback). Every loop is bounded in count and time.
//!
//! The real user has its own source address (127.0.0.1) and user name
//! (alice), distinct from every flooder's, so per-peer and per-account
//! limits on the login listener do not touch it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::LoadError;
use crate::cluster::{ALICE, BOB, Cluster, ServerKind, ServerProcess};
use crate::stats::Summary;

/// The audience of the inner listener.
pub const AUDIENCE: &str = "inner-tls";

/// The real user's source address.
pub const REAL_USER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The flooders' source addresses: 127.0.0.2 to 127.0.0.9.
pub fn flooder_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8))
}

/// Parameters.
#[derive(Debug, Clone)]
pub struct FloodParams {
    /// Connect + one byte to the forward listener, in total.
    pub forward_connects: usize,
    /// Their pace, connections per second (at most).
    pub forward_rate: usize,
    /// Bad logins in total.
    pub bad_logins: usize,
    /// Bad logins in flight at once.
    pub login_concurrency: usize,
    /// The inner listener's `propagation.replay_capacity`.
    pub replay_capacity: usize,
    /// Bound on the whole run.
    pub deadline: Duration,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// Seconds run.
    pub seconds: f64,
    /// Forward-listener connections that connected and wrote their byte.
    pub forward_sent: usize,
    /// Those that did not (connect refused or timed out).
    pub forward_failed: usize,
    /// Bad logins answered, by outcome (`401`, `429`, `error: …`).
    pub bad_logins: BTreeMap<String, usize>,
    /// Bad logins that were (wrongly) accepted.
    pub bad_logins_accepted: usize,
    /// The real user's login + access rounds that succeeded.
    pub valid_ok: usize,
    /// Those that failed (the first few messages in `valid_errors`).
    pub valid_failed: usize,
    /// The first failures of the real user.
    pub valid_errors: Vec<String>,
    /// The real user's access latency through the front.
    pub valid_access: Summary,
    /// Signed headers the inner accepted and then served or refused at TLS
    /// (the flood's one byte is no TLS): how many flood headers reached it.
    pub inner_signed_seen: usize,
    /// The inner's `proxy_refused` lines, by reason.
    pub inner_refused: BTreeMap<String, usize>,
    /// Whether the run ended within its deadline.
    pub in_time: bool,
    /// Whether the server was still running at the end.
    pub server_alive: bool,
    /// Whether it printed a panic.
    pub server_panicked: bool,
}

impl FloodReport {
    /// The bounds that did not hold.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.valid_failed > 0 {
            f.push(format!(
                "the real user failed {} times: {:?}",
                self.valid_failed, self.valid_errors
            ));
        }
        if self.valid_ok == 0 {
            f.push("the real user never completed a round".into());
        }
        if self.bad_logins_accepted > 0 {
            f.push(format!(
                "{} bad logins were accepted",
                self.bad_logins_accepted
            ));
        }
        if let Some(n) = self.inner_refused.get("replay_cache_full") {
            f.push(format!("the inner reported replay_cache_full {n} times"));
        }
        let signed_refusals: usize = self
            .inner_refused
            .iter()
            .filter(|(r, _)| r.starts_with("signed_") || r.starts_with("proxy_cert"))
            .map(|(_, n)| n)
            .sum();
        if signed_refusals > 0 {
            f.push(format!(
                "the inner refused {signed_refusals} signed headers from the front: {:?}",
                self.inner_refused
            ));
        }
        if self.forward_sent == 0 || self.inner_signed_seen < self.forward_sent / 2 {
            f.push(format!(
                "the flood did not reach the inner: {} sent, {} signed headers seen",
                self.forward_sent, self.inner_signed_seen
            ));
        }
        if !self.in_time {
            f.push("the run did not end within its deadline".into());
        }
        if !self.server_alive {
            f.push("the server exited".into());
        }
        if self.server_panicked {
            f.push("the server printed a panic".into());
        }
        f
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> Result<u16, LoadError> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LoadError::Setup(format!("free port: {e}")))
}

/// The cluster of this run: CA, users, the inner's propagation key, the
/// front's proxy identity, and the three listeners. Returns it with the
/// inner's and the front's addresses.
///
/// # Errors
/// [`LoadError::Setup`] when a file cannot be written.
pub fn create(replay_capacity: usize) -> Result<(Cluster, SocketAddr, SocketAddr), LoadError> {
    let dir = tempfile::Builder::new()
        .prefix("ippin-load-flood-")
        .tempdir()
        .map_err(|e| LoadError::Setup(format!("temporary folder: {e}")))?;
    let mut users = String::new();
    for ((name, password), role) in [(ALICE, "pinned-ip"), (BOB, "dev")] {
        let hash = ippin::users::hash_password_light(password)
            .map_err(|e| LoadError::Setup(format!("password hash: {e}")))?;
        users.push_str(&format!(
            "  - {{name: {name}, password_hash: \"{hash}\", roles: [{role}]}}\n"
        ));
    }
    let head = format!(
        "cluster_name: load\n\
         ca: {{ssh_key: ca/ssh_user_ca, tls_cert: ca/tls_ca.pem, tls_key: ca/tls_ca.key}}\n\
         server_tls: {{cert: server.pem, key: server.key}}\n\
         roles: [roles.yaml]\nusers:\n{users}\
         cert_ttl: 8h\naudit_log: audit.log\nlisteners:\n\
         \x20 - {{kind: login, listen: 127.0.0.1:0, proxy_protocol: off}}\n"
    );
    let now = SystemTime::now();
    let config = ippin::ca::init_at(dir.path(), now, &head)
        .map_err(|e| LoadError::Setup(format!("ca init: {e}")))?;
    ippin::propagation::cmd::write_propagation_key(AUDIENCE, dir.path())
        .map_err(|e| LoadError::Setup(format!("propagation key: {e}")))?;
    ippin::propagation::cmd::issue_proxy_files(
        &config,
        "front",
        Some(dir.path()),
        Duration::from_secs(3600),
        now,
    )
    .map_err(|e| LoadError::Setup(format!("proxy identity: {e}")))?;
    let inner = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let front = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let text = format!(
        "{head}\
         \x20 - {{kind: tls, listen: \"{inner}\", proxy_protocol: off, propagation: \
         {{audience: {AUDIENCE}, key: {AUDIENCE}.propkey, replay_capacity: {replay_capacity}}}}}\n\
         \x20 - {{kind: forward, listen: \"{front}\", proxy_protocol: off, forward: \
         {{upstream: \"{inner}\", audience: {AUDIENCE}, cert: proxy-front.pem, \
         key: proxy-front.key, upstream_key: {AUDIENCE}.propkey.pub}}}}\n"
    );
    std::fs::write(&config, text)
        .map_err(|e| LoadError::Setup(format!("{}: {e}", config.display())))?;
    let ca_pem = std::fs::read_to_string(dir.path().join("ca/tls_ca.pem"))
        .map_err(|e| LoadError::Setup(format!("ca/tls_ca.pem: {e}")))?;
    Ok((
        Cluster {
            dir,
            config,
            ca_pem,
            header_timeout: Duration::from_secs(10),
        },
        inner,
        front,
    ))
}

/// The forward flood: `total` connections from 127.0.0.2-9, at most
/// `rate` per second, each writing one byte (0x16) and closing.
async fn forward_flood(front: SocketAddr, total: usize, rate: usize) -> (usize, usize) {
    let per_tick = rate.div_ceil(10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Late ticks do not burst: the pace never exceeds `rate`.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        if i.is_multiple_of(per_tick) {
            tick.tick().await;
        }
        let from = SocketAddr::new(flooder_ip(i), 0);
        tasks.spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(from).ok()?;
            let mut s = tokio::time::timeout(Duration::from_secs(5), socket.connect(front))
                .await
                .ok()?
                .ok()?;
            s.write_all(b"\x16").await.ok()?;
            Some(())
        });
    }
    let (mut sent, mut failed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        if matches!(r, Ok(Some(()))) {
            sent += 1;
        } else {
            failed += 1;
        }
    }
    (sent, failed)
}

/// The bad-login flood: `total` logins with wrong passwords, for
/// nonexistent names (`nobody-N`) and for bob, from 127.0.0.2-9,
/// `concurrency` at a time. Returns the outcomes and how many succeeded.
async fn login_flood(
    cluster: &Cluster,
    login: SocketAddr,
    total: usize,
    concurrency: usize,
) -> (BTreeMap<String, usize>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let next = next.clone();
        let ca = cluster.ca_pem.clone();
        tasks.spawn(async move {
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let ep = ippin::client::Endpoint::new(login, ca.clone()).from_ip(flooder_ip(i));
                let name = if i.is_multiple_of(4) {
                    BOB.0.to_owned()
                } else {
                    format!("nobody-{i}")
                };
                let outcome = match tokio::time::timeout(
                    Duration::from_secs(30),
                    ippin::client::login(&ep, &name, "not-the-password"),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        accepted += 1;
                        "accepted".to_owned()
                    }
                    Ok(Err(e)) => outcome_of(&e.to_string()),
                    Err(_) => "timeout".to_owned(),
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            (outcomes, accepted)
        });
    }
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((outcomes, a)) = r {
            accepted += a;
            for (k, v) in outcomes {
                *all.entry(k).or_default() += v;
            }
        }
    }
    (all, accepted)
}

/// A short class of a client error: its HTTP status when it names one.
fn outcome_of(message: &str) -> String {
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 3 && w.starts_with(['4', '5']))
        .map_or_else(
            || format!("error: {}", message.chars().take(60).collect::<String>()),
            str::to_owned,
        )
}

/// One round of the real user: log in on `login` from 127.0.0.1 (pinned
/// there), then `GET /whoami` through the front, which must answer as
/// alice, observed at 127.0.0.1 through signed propagation.
async fn real_user_once(
    cluster: &Cluster,
    login: SocketAddr,
    front: SocketAddr,
) -> Result<Duration, String> {
    let ip = IpAddr::V4(REAL_USER_IP);
    let ep = ippin::client::Endpoint::new(login, cluster.ca_pem.clone()).from_ip(ip);
    let creds = ippin::client::login(&ep, ALICE.0, ALICE.1)
        .await
        .map_err(|e| format!("login: {e}"))?;
    if creds.pinned_ip.as_deref() != Some("127.0.0.1") {
        return Err(format!("login: pinned to {:?}", creds.pinned_ip));
    }
    let t = Instant::now();
    let via = ippin::client::Endpoint::new(front, cluster.ca_pem.clone()).from_ip(ip);
    let who = ippin::client::whoami(&via, &creds)
        .await
        .map_err(|e| format!("access through the front: {e}"))?;
    let took = t.elapsed();
    if who.user != ALICE.0
        || who.via != "signed_propagation"
        || !who.observed.starts_with("127.0.0.1:")
    {
        return Err(format!(
            "access through the front: served as {} from {} via {}",
            who.user, who.observed, who.via
        ));
    }
    Ok(took)
}

/// Runs the flood with `exe serve` (the `ippin-load` binary) as the server.
///
/// # Errors
/// [`LoadError::Setup`] when the server cannot be started.
pub async fn run(exe: &std::path::Path, p: &FloodParams) -> Result<FloodReport, LoadError> {
    let (cluster, _inner, front) = create(p.replay_capacity)?;
    let mut server = ServerProcess::start_n(exe, ServerKind::Ippin, &cluster, 3)?;
    let login = server
        .listeners
        .first()
        .copied()
        .ok_or_else(|| LoadError::Setup("no login listener".into()))?;
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let cluster = Arc::new(cluster);

    let real = {
        let (cluster, done) = (cluster.clone(), done.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed, mut errors, mut access) = (0, 0, Vec::new(), Vec::new());
            // At least one round, and rounds until both floods are over.
            loop {
                let finished = done.load(Ordering::Relaxed);
                match real_user_once(&cluster, login, front).await {
                    Ok(t) => {
                        ok += 1;
                        access.push(t);
                    }
                    Err(e) => {
                        failed += 1;
                        if errors.len() < 5 {
                            errors.push(e);
                        }
                    }
                }
                if finished {
                    break;
                }
            }
            (ok, failed, errors, access)
        })
    };
    let floods = async {
        tokio::join!(
            forward_flood(front, p.forward_connects, p.forward_rate),
            login_flood(&cluster, login, p.bad_logins, p.login_concurrency),
        )
    };
    let floods = tokio::time::timeout(p.deadline, floods).await;
    done.store(true, Ordering::Relaxed);
    let in_time = floods.is_ok();
    let ((forward_sent, forward_failed), (bad_logins, bad_logins_accepted)) =
        floods.unwrap_or(((0, 0), (BTreeMap::new(), 0)));
    let real = tokio::time::timeout(Duration::from_secs(60), real).await;
    let in_time = in_time && real.is_ok();
    let (valid_ok, valid_failed, valid_errors, access) = match real {
        Ok(Ok(r)) => r,
        _ => (
            0,
            0,
            vec!["the real user's task did not finish".to_owned()],
            Vec::new(),
        ),
    };
    // The audit lines of connections closed at the end of the flood may
    // land a moment later: wait (bounded) until they stop growing.
    let audit = cluster.audit_log();
    let mut last = 0;
    let _ = crate::cluster::poll_until(Duration::from_secs(10), || {
        let len = std::fs::metadata(&audit).map_or(0, |m| m.len());
        let settled = len == last;
        last = len;
        settled && len > 0
    })
    .await;
    let server_alive = server.is_running();
    let server_panicked = server.panicked();
    // Repeated refusals from one peer are summarised (`audit.suppressed`); the
    // open windows are written when the server stops on SIGTERM.
    let _ = server.stop();
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    let mut inner_refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut inner_signed_seen = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let count = || usize::try_from(v["count"].as_u64().unwrap_or(0)).unwrap_or(usize::MAX);
        if v["event"] == "proxy_refused" && v["listener"] == "tls" {
            let reason = v["reason"].as_str().unwrap_or("?").to_owned();
            *inner_refused.entry(reason).or_default() += 1;
        }
        // A summary does not say which listener: every summarised PROXY refusal counts.
        if v["event"] == "audit.suppressed" && v["kind"] == "proxy_refused" {
            let reason = v["reason"].as_str().unwrap_or("?").to_owned();
            *inner_refused.entry(reason).or_default() += count();
        }
        if (v["event"] == "tls_refused" || v["event"] == "access_allowed")
            && v["provenance"] == "signed_propagation"
        {
            inner_signed_seen += 1;
        }
        // Summarised handshake failures: the flood's connections, relayed by the front.
        if v["event"] == "audit.suppressed"
            && v["kind"] == "tls_refused"
            && v["reason"] == "tls_handshake_failed"
        {
            inner_signed_seen += count();
        }
    }
    Ok(FloodReport {
        seconds: started.elapsed().as_secs_f64(),
        forward_sent,
        forward_failed,
        bad_logins,
        bad_logins_accepted,
        valid_ok,
        valid_failed,
        valid_errors,
        valid_access: Summary::of(&access),
        inner_signed_seen,
        inner_refused,
        in_time,
        server_alive,
        server_panicked,
    })
}
