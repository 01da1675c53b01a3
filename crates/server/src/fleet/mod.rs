//! A node of a fleet: the roles, users, network restrictions and lockouts that every node
//! shares, kept in etcd (`backend:` in the configuration; docs/fleet.md).
//!
//! At start a node reads the whole prefix at one revision (a consistent snapshot),
//! checks every document as the file loader checks files, and refuses to start when etcd
//! cannot be read or a document does not validate: it never serves with no roles. Then it
//! watches the prefix from the next revision; each batch of changes is checked and put in
//! force at once (roles and users for every later decision, network restrictions for the
//! running sessions through their kernel maps). After a disconnection the watch resumes
//! from the last revision applied, so nothing is missed; a compacted revision means a
//! full read again. A node that cannot reach etcd keeps the last state it applied and says
//! so ([`Fleet::status`], `/readyz`, the log); writes through it fail with
//! [`FleetError::Unavailable`].
//!
//! Imports the configuration's data, the directory and `ippin-access`; not the state (the
//! state holds a [`Fleet`]).

pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ippin_access::egress::LiveRestrictions;
use ippin_access::fleet::FleetError as FleetErrorCodec;
use ippin_access::fleet::client::{ClientError, Endpoint, EtcdClient, client_config_from_pem};
use ippin_access::fleet::{
    Compare, DeleteRange, EventKind, LeaseGrant, LeaseRevoke, Op, OpResponse, Put, Range, Txn,
    Watch,
};
use rustls_pki_types::ServerName;

use crate::config::{Config, LoginLimits};
use crate::directory::LiveDirectory;
use store::{Key, Mirror};

/// The most keys read per range call of a snapshot.
const PAGE: i64 = 500;
/// How long the store may be ahead of the revision in force before the watch counts as
/// stalled (reopened, `/readyz` degraded).
const STALL_AFTER: Duration = Duration::from_secs(5);
/// The most failed logins written to the store per second by one node; beyond, a
/// failure counts on the node only.
const MAX_FAILURE_WRITES_PER_SEC: u32 = 50;
/// The key (below the prefix) that says the store was seeded from a node's files.
const SEEDED: &str = "seeded";
/// The most resources one admin write changes: its transaction holds a read and a write
/// for each, and etcd's default `--max-txn-ops` is 128.
pub const MAX_WRITE_RESOURCES: usize = 64;
/// The most lockout writes in flight on one node (each is a few calls to etcd); failures
/// beyond it count on this node only.
const MAX_LOCKOUT_WRITES: usize = 64;
/// How often a node checks that etcd answers, and how long without an answer makes it
/// degraded.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The most compares etcd takes in one transaction (its `--max-txn-ops` default).
pub const MAX_TXN_COMPARES: usize = 128;

/// What an admin write depends on: the writer's own user and roles, as the decision to let
/// it write read them, at the store revision `since`. The write is made only if none of them
/// was changed or removed since (a removed or demoted admin's write in flight fails).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The keys (`users/NAME`, `roles/NAME`).
    pub keys: Vec<Key>,
    /// The revision they were read at (0 with no keys: no condition).
    pub since: i64,
}

/// Why the fleet's store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// etcd cannot be reached, or did not answer in time.
    #[error("backend unavailable: etcd at {endpoints} cannot be reached: {source}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// The last error.
        source: ClientError,
    },
    /// etcd answered with an error.
    #[error("etcd refused the request: {0}")]
    Refused(ClientError),
    /// A value in the store does not validate (written by another client than ippin).
    #[error("the store's key {key} (revision {revision}) does not validate: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// Its revision.
        revision: i64,
        /// Why.
        message: String,
    },
    /// A write was sent but not confirmed (a timeout, a broken answer): it may or may not
    /// be applied.
    #[error(
        "etcd did not confirm the change ({0}): it may or may not be applied; check with \
         `ippin ctl get`"
    )]
    Unknown(ClientError),
    /// A create-only write found resources that exist.
    #[error("already exists: {}", .0.join(", "))]
    Exists(Vec<String>),
    /// A write's guard failed: a key it depends on (the writer's own user or roles) was
    /// changed or removed in the store after the revision the decision was made at.
    #[error(
        "your user or roles changed in the store since this node read them (revision {0}): \
         nothing was changed; try again"
    )]
    Changed(i64),
    /// The store holds no network restrictions while this node's configuration names them:
    /// the node does not start unrestricted.
    #[error(
        "the store holds no network_restrictions, but this node's configuration names {0}: it \
         does not start without them; create them with `ippin ctl create -f` (or remove \
         `network_restrictions:` from this node's configuration)"
    )]
    NoPolicy(String),
    /// A file to seed the store from cannot be used.
    #[error("{0}")]
    Seed(String),
}

/// What a node knows of its contact with etcd.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// The watch is open and etcd answered the last probe.
    pub connected: bool,
    /// The store revision whose state is in force here.
    pub revision: i64,
    /// The revision of the latest change under the prefix at the last probe (the lag is the
    /// difference).
    pub store_revision: i64,
    /// When etcd last answered (RFC 3339), if ever.
    pub last_contact: Option<String>,
    /// The last error, while not connected.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    watching: bool,
    probe_ok: bool,
    /// The heartbeat revision the watch must deliver, and since when it is awaited.
    pending: Option<(i64, std::time::Instant)>,
    /// Behind for longer than [`STALL_AFTER`]: degraded, the watch is opened again.
    stalled: bool,
    /// The revision of this node's last heartbeat.
    latest: i64,
    revision: i64,
    store_revision: i64,
    last_contact: Option<SystemTime>,
    last_error: Option<String>,
}

/// What a batch of changes touched, so that only that is rebuilt (failed logins, which
/// come often, rebuild nothing).
#[derive(Debug, Clone, Copy, Default)]
struct Changed {
    directory: bool,
    locks: bool,
    restrictions: bool,
    failures: bool,
}

impl Changed {
    fn all() -> Changed {
        Changed {
            directory: true,
            locks: true,
            restrictions: true,
            failures: true,
        }
    }

    fn note(&mut self, rel: &str) {
        match Key::parse(rel) {
            Some(Key::Role(_) | Key::User(_)) => self.directory = true,
            Some(Key::Lockout(_)) => self.locks = true,
            Some(Key::Restrictions) => self.restrictions = true,
            Some(Key::Failure(_)) => self.failures = true,
            None => {}
        }
    }
}

/// A node's handle on the fleet's store.
#[derive(Debug)]
pub struct Fleet {
    client: EtcdClient,
    endpoints: String,
    prefix: String,
    node: String,
    counter: AtomicU64,
    limits: LoginLimits,
    inner: Mutex<Inner>,
    lockout_writes: Arc<tokio::sync::Semaphore>,
    /// The same client for writes: no second endpoint after a time-out.
    writer: EtcdClient,
    /// The lease of this node's heartbeat, and when it was granted.
    heartbeat_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
    /// A policy to write back to the store (it was deleted there), until it is.
    restore: Mutex<Option<Vec<u8>>>,
    /// The policy text in force here, to apply again when a kernel hook failed.
    restore_source: Mutex<Option<Vec<u8>>>,
    /// When this node first saw each lock: user → (the lock's revision, when).
    lock_seen: Mutex<std::collections::HashMap<String, (i64, SystemTime)>>,
    /// Told by the probe when the watch stalled: the watch is opened again.
    reopen: tokio::sync::Notify,
    /// The lease failure keys are written with, reused for a tenth of the failure window.
    failure_lease: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
    /// Failure writes in the current second: (second's start, count).
    failure_rate: Mutex<(std::time::Instant, u32)>,
}

/// A write's error: before anything was sent (no connection, TLS refused) nothing changed;
/// etcd's refusal changed nothing; otherwise (a timeout, a broken or undecodable answer)
/// the write may have been applied.
fn classify_write(endpoints: &str, e: ClientError) -> FleetError {
    match e {
        ClientError::Connect { .. } | ClientError::Tls { .. } | ClientError::NoEndpoint => {
            classify(endpoints, e)
        }
        ClientError::Etcd { .. } | ClientError::Status { .. } | ClientError::BadPath { .. } => {
            FleetError::Refused(e)
        }
        other => FleetError::Unknown(other),
    }
}

fn classify(endpoints: &str, e: ClientError) -> FleetError {
    match e {
        ClientError::Etcd { .. } | ClientError::Status { .. } | ClientError::BadPath { .. } => {
            FleetError::Refused(e)
        }
        other => FleetError::Unavailable {
            endpoints: endpoints.to_owned(),
            source: other,
        },
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Fleet {
    /// A handle on the store of `config.backend` (no call made yet), sharing the lockouts
    /// of `config.login_limits`.
    ///
    /// # Errors
    /// No `backend:`, or TLS material of `backend.tls` that cannot be used (the error names
    /// the field and the file).
    pub fn new(config: &Config) -> Result<Fleet, FleetError> {
        let backend = config
            .backend
            .as_ref()
            .ok_or_else(|| FleetError::Seed("the configuration has no `backend:`".into()))?;
        let endpoints = match &backend.tls {
            None => backend
                .endpoints
                .iter()
                .map(|a| Endpoint::plain(*a))
                .collect(),
            Some(tls) => {
                let bad = |e: crate::config::ConfigError| FleetError::Seed(e.to_string());
                let ca = config.read_public("backend.tls.ca", &tls.ca).map_err(bad)?;
                let client = match (&tls.cert, &tls.key) {
                    (Some(c), Some(k)) => Some((
                        config.read_public("backend.tls.cert", c).map_err(bad)?,
                        config.read_private("backend.tls.key", k).map_err(bad)?,
                    )),
                    _ => None,
                };
                let rustls = client_config_from_pem(
                    ca.as_bytes(),
                    client.as_ref().map(|(c, k)| (c.as_bytes(), k.as_bytes())),
                )
                .map_err(|e| FleetError::Seed(format!("backend.tls: {e}")))?;
                let rustls = Arc::new(rustls);
                let mut out = Vec::with_capacity(backend.endpoints.len());
                for a in &backend.endpoints {
                    let name = match &tls.server_name {
                        Some(n) => ServerName::try_from(n.clone()).map_err(|e| {
                            FleetError::Seed(format!("backend.tls.server_name: {e}"))
                        })?,
                        None => ServerName::IpAddress(a.ip().into()),
                    };
                    out.push(Endpoint::tls(*a, name, rustls.clone()));
                }
                out
            }
        };
        let client = EtcdClient::with_endpoints(endpoints).with_timeout(backend.timeout);
        let writer = client.clone().without_retry_after_timeout();
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| FleetError::Seed(format!("random: {e}")))?;
        let node = id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Ok(Fleet {
            client,
            endpoints: backend
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            prefix: backend.prefix.clone(),
            node,
            counter: AtomicU64::new(0),
            limits: config.login_limits,
            inner: Mutex::new(Inner::default()),
            lockout_writes: Arc::new(tokio::sync::Semaphore::new(MAX_LOCKOUT_WRITES)),
            lock_seen: Mutex::new(std::collections::HashMap::new()),
            writer,
            heartbeat_lease: tokio::sync::Mutex::new(None),
            restore: Mutex::new(None),
            restore_source: Mutex::new(None),
            reopen: tokio::sync::Notify::new(),
            failure_lease: tokio::sync::Mutex::new(None),
            failure_rate: Mutex::new((std::time::Instant::now(), 0)),
        })
    }

    fn err(&self, e: ClientError) -> FleetError {
        let e = classify(&self.endpoints, e);
        if let FleetError::Unavailable { .. } = &e {
            self.contact(Err(e.to_string()));
        }
        e
    }

    fn err_write(&self, e: ClientError) -> FleetError {
        let e = classify_write(&self.endpoints, e);
        if let FleetError::Unavailable { .. } | FleetError::Unknown(_) = &e {
            self.contact(Err(e.to_string()));
        }
        e
    }

    fn key(&self, rel: &str) -> Vec<u8> {
        format!("{}{rel}", self.prefix).into_bytes()
    }

    fn rel<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.prefix.as_str())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contact(&self, result: Result<i64, String>) {
        let mut i = self.lock();
        match result {
            Ok(rev) => {
                i.probe_ok = true;
                i.store_revision = i.store_revision.max(rev);
                i.last_contact = Some(SystemTime::now());
                i.last_error = None;
            }
            Err(e) => {
                i.probe_ok = false;
                i.last_error = Some(e);
            }
        }
    }

    /// The probe wrote this node's heartbeat at revision `written`: the watch must deliver
    /// it (put it in force) within [`STALL_AFTER`]. If it does not, the watch has stalled (a
    /// dead connection that never closes, an etcd member cut off from the others; deletes
    /// included, which no read of the keys would show): degraded, and the watch is opened
    /// again, every [`STALL_AFTER`] while it lasts.
    fn probed(&self, written: i64, in_force_before: i64) {
        let mut i = self.lock();
        if written <= in_force_before {
            // The store is behind what is in force: it went back. The watch is opened
            // again; its first answer shows the store's revision, and the watch reads the
            // whole state again (`spawn`).
            i.last_error = Some(format!(
                "this node's heartbeat was written at revision {written}, not above the \
                 {in_force_before} in force when it was sent: the store went back; watching \
                 it again"
            ));
            tracing::error!("DEGRADED: {}", i.last_error.as_deref().unwrap_or_default());
            i.pending = None;
            drop(i);
            self.reopen.notify_waiters();
            return;
        }
        i.latest = i.latest.max(written);
        let now = std::time::Instant::now();
        match i.pending {
            // The heartbeat awaited is in force: the watch moves. Await this one.
            Some((target, _)) if i.revision >= target => {
                i.stalled = false;
                i.pending = (i.revision < written).then_some((written, now));
            }
            Some((target, since)) if since.elapsed() > STALL_AFTER => {
                i.stalled = true;
                i.pending = Some((written, now));
                i.last_error = Some(format!(
                    "the watch has not delivered revision {target} within {STALL_AFTER:?} \
                     (revision {} in force): opened again",
                    i.revision
                ));
                tracing::error!("DEGRADED: {}", i.last_error.as_deref().unwrap_or_default());
                // Wakes the watch if it waits on a message; one that is connecting will be
                // checked again at the next heartbeat.
                self.reopen.notify_waiters();
            }
            Some(_) => {}
            None => {
                i.stalled = false;
                i.pending = (i.revision < written).then_some((written, now));
            }
        }
    }

    /// The node's contact with etcd now.
    pub fn status(&self) -> Status {
        let i = self.lock();
        Status {
            connected: i.watching && i.probe_ok && !i.stalled,
            revision: i.revision,
            store_revision: i.latest.max(i.revision),
            last_contact: i.last_contact.map(rfc3339),
            last_error: i.last_error.clone(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Seeds an empty cluster: writes the resources of the configuration's files (roles
    /// files, `users:`, `network_restrictions`) with a `seeded` marker, in one transaction,
    /// unless the marker is there (the store is the truth once seeded; see docs/fleet.md).
    /// Returns how many were written (0: seeded before).
    ///
    /// # Errors
    /// etcd cannot be reached, or a roles file cannot be split into its documents.
    pub async fn seed(&self, config: &Config) -> Result<usize, FleetError> {
        let mut items: Vec<(Key, Vec<u8>)> = Vec::new();
        let mut add = |file: &std::path::Path| -> Result<(), FleetError> {
            let text = crate::config::read_bounded(file, crate::config::MAX_CONFIG_BYTES)
                .map_err(|e| FleetError::Seed(e.to_string()))?;
            for r in crate::admin::parse_documents(&file.display().to_string(), &text)
                .map_err(|e| FleetError::Seed(e.to_string()))?
            {
                let key = Key::parse(&r.key())
                    .ok_or_else(|| FleetError::Seed(format!("{}: no key", file.display())))?;
                items.push((key, r.document().as_bytes().to_vec()));
            }
            Ok(())
        };
        for file in &config.roles {
            add(file)?;
        }
        if let Some(path) = &config.network_restrictions {
            add(path)?;
        }
        for u in &config.users {
            let doc = store::user_document(u);
            // The same checks as any stored value (the configuration's are looser on names).
            store::decode(&Key::User(u.name.clone()), "users", doc.as_bytes())
                .map_err(|m| FleetError::Seed(format!("user `{}`: {m}", u.name)))?;
            items.push((Key::User(u.name.clone()), doc.into_bytes()));
        }
        let marker = self.key(SEEDED);
        let seeded = self
            .client
            .range(&Range {
                keys_only: true,
                ..Range::key(&marker)
            })
            .await
            .map_err(|e| self.err(e))?;
        if !seeded.kvs.is_empty() {
            return Ok(0);
        }
        if items.len() >= 127 {
            return Err(FleetError::Seed(format!(
                "the files hold {} resources, more than one transaction writes ({}): load them \
                 with `ippin ctl create -f`",
                items.len(),
                126
            )));
        }
        // Once per cluster: every resource and the `seeded` marker in one transaction, only
        // when the marker is absent. A later start never writes them again, so a resource an
        // administrator deleted does not come back from a node's files.
        let mut success: Vec<Op> = items
            .iter()
            .map(|(key, value)| Op::Put(Put::new(&self.key(&key.path()), value)))
            .collect();
        let stamp = serde_json::json!({"at": rfc3339(SystemTime::now()), "node": self.node});
        success.push(Op::Put(Put::new(&marker, stamp.to_string().as_bytes())));
        let mut compare = vec![Compare::absent(&marker)];
        compare.extend(
            items
                .iter()
                .map(|(key, _)| Compare::absent(&self.key(&key.path()))),
        );
        let txn = Txn {
            compare,
            success,
            failure: Vec::new(),
        };
        let r = self.writer.txn(&txn).await.map_err(|e| self.err(e))?;
        if r.succeeded {
            return Ok(items.len());
        }
        // Seeded before, or the store holds some of these resources already (written by
        // `ctl` or another client): the store is the truth; mark it seeded, write nothing.
        let mark = Txn {
            compare: vec![Compare::absent(&marker)],
            success: vec![Op::Put(Put::new(&marker, stamp.to_string().as_bytes()))],
            failure: Vec::new(),
        };
        let r = self.writer.txn(&mark).await.map_err(|e| self.err(e))?;
        if r.succeeded {
            tracing::warn!(
                "the store holds resources already: the files' roles, users and network \
                 restrictions were not written (the store is the truth)"
            );
        }
        Ok(0)
    }

    /// Reads the whole prefix at one revision, page by page. With `strict`, a value that does
    /// not validate is an error; otherwise it is logged and the value of `previous` (if
    /// any) is kept for that key.
    ///
    /// # Errors
    /// etcd cannot be reached, or (strict) a value does not validate.
    pub async fn snapshot(
        &self,
        strict: bool,
        previous: Option<&Mirror>,
    ) -> Result<Mirror, FleetError> {
        let prefix = self.prefix.as_bytes();
        let end = ippin_access::fleet::prefix_end(prefix);
        let mut mirror = Mirror::default();
        let mut start = prefix.to_vec();
        let mut at: Option<i64> = None;
        let mut page = PAGE;
        loop {
            let req = Range {
                key: start.clone(),
                range_end: Some(end.clone()),
                revision: at,
                limit: Some(page),
                ..Range::default()
            };
            let r = match self.client.range(&req).await {
                // Large values: smaller pages, down to one key (whose value is bounded).
                Err(ClientError::BodyTooLarge { .. }) if page > 1 => {
                    page = (page / 2).max(1);
                    continue;
                }
                other => other.map_err(|e| self.err(e))?,
            };
            let rev = *at.get_or_insert(r.header.revision);
            for kv in &r.kvs {
                let Some(rel) = self.rel(&kv.key) else {
                    continue;
                };
                let source = String::from_utf8_lossy(&kv.key).into_owned();
                if let Err(refused) = mirror.apply(rel, Some(&kv.value), kv.mod_revision, &source) {
                    if strict {
                        return Err(FleetError::Invalid {
                            key: source,
                            revision: refused.revision,
                            message: refused.message,
                        });
                    }
                    // As a watched value: the restrictions and a lock keep their previous
                    // value; a role or user does not (the value refused may narrow it).
                    let keeps = matches!(
                        store::Key::parse(rel),
                        Some(store::Key::Restrictions | store::Key::Lockout(_))
                    );
                    tracing::error!(
                        key = %source, revision = refused.revision,
                        "{}; not applied, {}", refused.message,
                        if keeps { "the previous value stays" } else { "dropped" }
                    );
                    if keeps && let Some(prev) = previous {
                        mirror.copy_from(prev, rel);
                    }
                }
            }
            match (r.more, r.kvs.last()) {
                (true, Some(last)) => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => {
                    // A full read again (after a compaction) that finds no policy where there
                    // was one keeps the last one, as a watched delete does.
                    if let Some(prev) = previous
                        && prev.restrictions().is_some()
                        && mirror.restrictions().is_none()
                    {
                        tracing::error!(
                            "{}network_restrictions is gone from the store; the last policy stays",
                            self.prefix
                        );
                        mirror.copy_from(prev, "network_restrictions");
                        *self
                            .restore
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            mirror.restrictions().map(<[u8]>::to_vec);
                    }
                    mirror.revision = rev;
                    self.contact(Ok(rev));
                    return Ok(mirror);
                }
            }
        }
    }

    /// Keeps `directory` and `restrictions` following the store from `mirror` on: a watch
    /// from `mirror.revision + 1`, resumed after a disconnection, a full read after a
    /// compaction; and a probe every second for [`Fleet::status`].
    pub fn spawn(
        self: Arc<Self>,
        mut mirror: Mirror,
        directory: Arc<LiveDirectory>,
        restrictions: Arc<LiveRestrictions>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.lock().revision = mirror.revision;
        // The policy in force from the start: what a failed kernel update is retried with.
        *self
            .restore_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            mirror.restrictions().map(<[u8]>::to_vec);
        let probe = {
            let this = self.clone();
            let restrictions_probe = restrictions.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROBE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut was_ok = true;
                loop {
                    tick.tick().await;
                    // In force before the write: the write's revision is above it unless the
                    // store went back (what the watch delivers meanwhile, other nodes'
                    // heartbeats in the same batch, may pass it).
                    let before = this.lock().revision;
                    let beat = this.heartbeat().await;
                    match beat {
                        Ok(rev) => {
                            if !was_ok {
                                tracing::warn!("etcd answers again at {}", this.endpoints);
                            }
                            was_ok = true;
                            this.contact(Ok(rev));
                            this.probed(rev, before);
                            this.retry_pending(&restrictions_probe).await;
                        }
                        Err(e) => {
                            if was_ok {
                                tracing::error!(
                                    "DEGRADED: etcd at {} cannot be reached ({e}); serving with \
                                     the state of revision {}; admin writes are refused",
                                    this.endpoints,
                                    this.lock().revision
                                );
                            }
                            was_ok = false;
                            this.contact(Err(e.to_string()));
                        }
                    }
                }
            })
        };
        let watch = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut first = true;
            loop {
                // A watch that ended (an error, a stall, etcd gone and back) is not resumed
                // from the revision after ours unseen: the store may meanwhile have been
                // restored from a backup and written past that revision, with another history
                // (a user removed by the restore, say). The whole state is read again first,
                // and followed from there; until that read succeeds, nothing is watched.
                if !std::mem::take(&mut first)
                    && !self.reread(&mut mirror, &directory, &restrictions).await
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                let req = Watch {
                    progress_notify: true,
                    ..Watch::prefix(self.prefix.as_bytes()).from_revision(mirror.revision + 1)
                };
                match self.client.watch(&req).await {
                    Ok(mut w) => {
                        loop {
                            let msg = tokio::select! {
                                m = w.next() => m,
                                () = self.reopen.notified() => {
                                    tracing::warn!("reopening the watch from revision {}", mirror.revision + 1);
                                    break;
                                }
                            };
                            let Some(msg) = msg else { break };
                            let resp = match msg {
                                Ok(r) => r,
                                // A batch larger than the bound would come back the same at
                                // every reopen: read the whole state instead (page by page).
                                Err(
                                    ClientError::BodyTooLarge { .. }
                                    | ClientError::Decode(FleetErrorCodec::TooLarge { .. }),
                                ) => {
                                    tracing::warn!(
                                        "a watch message over the bound: reading the whole state again"
                                    );
                                    break;
                                }
                                Err(e) => {
                                    self.contact(Err(format!("watch: {e}")));
                                    break;
                                }
                            };
                            // etcd answers at a revision below the one in force: the store
                            // went back in time (restored from a backup, rebuilt, another
                            // cluster behind the endpoint). A watch from the revision after
                            // ours would deliver nothing until the store passed it again:
                            // read the whole state instead, and follow it from there.
                            if resp.header.revision > 0 && resp.header.revision < mirror.revision {
                                let why = format!(
                                    "etcd answers at revision {}, below the {} in force: the \
                                     store went back (restored, rebuilt, or another cluster); \
                                     reading the whole state again",
                                    resp.header.revision, mirror.revision
                                );
                                tracing::error!("DEGRADED: {why}");
                                self.contact(Err(why));
                                break;
                            }
                            if resp.compact_revision > 0 {
                                tracing::warn!(
                                    "revision {} was compacted (oldest kept: {}): reading the \
                                     whole state again",
                                    mirror.revision + 1,
                                    resp.compact_revision
                                );
                                break;
                            }
                            if resp.canceled {
                                self.contact(Err(format!(
                                    "watch canceled: {}",
                                    resp.cancel_reason
                                )));
                                break;
                            }
                            backoff = Duration::from_millis(100);
                            self.lock().watching = true;
                            let mut changed = Changed::default();
                            let mut restore: Option<Vec<u8>> = None;
                            // Failures change one user each: updated one by one below, not
                            // rebuilt whole (a spray of failures would make that cost the
                            // store's size on every message).
                            let mut failed: Vec<String> = Vec::new();
                            for ev in &resp.events {
                                let Some(rel) = self.rel(&ev.kv.key) else {
                                    continue;
                                };
                                match Key::parse(rel) {
                                    Some(Key::Failure(user)) => failed.push(user),
                                    _ => changed.note(rel),
                                }
                                let source = String::from_utf8_lossy(&ev.kv.key).into_owned();
                                let value =
                                    (ev.kind == EventKind::Put).then_some(ev.kv.value.as_slice());
                                if let Err(r) =
                                    mirror.apply(rel, value, ev.kv.mod_revision, &source)
                                {
                                    tracing::error!(
                                        key = %source, revision = r.revision,
                                        "{}; not applied, the previous value stays", r.message
                                    );
                                    if value.is_none() && rel == "network_restrictions" {
                                        restore = mirror.restrictions().map(<[u8]>::to_vec);
                                    }
                                }
                            }
                            // The policy deleted by another client: written back
                            // (create-only), so that a node starting later does not start
                            // with none.
                            if let Some(text) = restore {
                                *self
                                    .restore
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(text);
                            }
                            // Events: the revision of the last one (a batch of a watch that
                            // catches up may be followed by more); a progress message: every
                            // change up to its header's revision has been sent.
                            let last = resp.events.iter().map(|e| e.kv.mod_revision).max();
                            match last {
                                Some(rev) => mirror.revision = mirror.revision.max(rev),
                                None if resp.is_progress() => {
                                    mirror.revision = mirror.revision.max(resp.header.revision);
                                }
                                None => {}
                            }
                            // A policy whose kernel hook failed is applied again at the next
                            // message (progress ones included) until it succeeds.
                            changed.restrictions |= restrictions.last_error().is_some();
                            self.put_in_force(&mirror, &directory, &restrictions, changed);
                            for user in failed {
                                directory.set_user_failed(&user, mirror.has_failures(&user));
                            }
                            self.contact(Ok(resp.header.revision));
                        }
                    }
                    Err(e) => self.contact(Err(format!("watch: {e}"))),
                }
                self.lock().watching = false;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        vec![probe, watch]
    }

    /// The lockouts of `mirror`, each lasting at most `lockout` from when this node first
    /// saw that lock (that key at that revision), whatever `until` a value written by
    /// another client says, and however often the locks are computed again.
    pub fn locks(&self, mirror: &Mirror) -> std::collections::HashMap<String, SystemTime> {
        let now = SystemTime::now();
        let mut seen = self
            .lock_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = mirror.lockouts_at();
        seen.retain(|user, (rev, _)| current.get(user).is_some_and(|(_, r)| r == rev));
        current
            .into_iter()
            .map(|(user, (until, rev))| {
                let first = seen.entry(user.clone()).or_insert((rev, now)).1;
                (user, until.min(first + self.limits.lockout))
            })
            .collect()
    }

    /// Reads the whole state again (after a compaction, or a watch message over the bound)
    /// and puts it in force; on failure the state stays as it was (the watch, reopened from
    /// the same revision, says so again).
    async fn reread(
        &self,
        mirror: &mut Mirror,
        directory: &LiveDirectory,
        restrictions: &LiveRestrictions,
    ) -> bool {
        match self.snapshot(false, Some(mirror)).await {
            Ok(m) => {
                *mirror = m;
                self.put_in_force(mirror, directory, restrictions, Changed::all());
                let (roles, users, locks) = mirror.counts();
                tracing::warn!(
                    revision = mirror.revision,
                    roles,
                    users,
                    lockouts = locks,
                    "state read again from the store"
                );
                true
            }
            Err(e) => {
                tracing::error!("full read: {e}");
                self.contact(Err(format!("full read: {e}")));
                false
            }
        }
    }

    fn put_in_force(
        &self,
        mirror: &Mirror,
        directory: &LiveDirectory,
        restrictions: &LiveRestrictions,
        changed: Changed,
    ) {
        if changed.directory {
            directory.set(mirror.directory());
        }
        if changed.locks {
            directory.set_locks(self.locks(mirror));
        }
        if changed.failures {
            directory.set_failed(mirror.failed_users());
        }
        if changed.restrictions {
            // Held across the update, as the retry below holds it: a retry with the text
            // before this one cannot be put in force after it.
            let mut source = self
                .restore_source
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *source = mirror.restrictions().map(<[u8]>::to_vec);
            match restrictions.set_document(mirror.restrictions()) {
                Ok(true) => tracing::warn!(
                    revision = mirror.revision,
                    "network restrictions updated from the store: in force for every new \
                     connection, running sessions included"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!("{e}; the previous policy stays in force"),
            }
        }
        self.lock().revision = mirror.revision;
    }

    // ---- lockouts -------------------------------------------------------------------

    /// Records a failed login of `user` for the fleet (a leased key for the failure window)
    /// and, when the failures within it reach `max_failures`, locks `user` on every node (a
    /// leased `lockouts/` key). Runs in the background; when too many are in flight the
    /// failure counts on this node only. `locked_here`: this failure locked the name on this
    /// node (its own count reached `max_failures`): the lock is written for the fleet
    /// whatever the caps say.
    ///
    /// A name a user has and a name no user has are treated alike, caps included: were real
    /// users' failures always written and unknown names' capped, a spray of junk names
    /// that spends the cap, then failures of a name on one node and one try on another,
    /// would tell which names exist (the second node answering with a lock or not). The
    /// cost: under such a spray, failures below the lock count on their own node only, so
    /// spread over `n` nodes a name can take up to `n × (max_failures − 1)` guesses before
    /// any node locks it; a lock reached on one node still reaches every node.
    pub fn record_failure(
        self: &Arc<Self>,
        user: &str,
        locked_here: Option<SystemTime>,
        now: SystemTime,
    ) {
        if crate::config::check_name(user).is_err() {
            return;
        }
        if let Some(until) = locked_here {
            // Bounded without a cap: each takes `max_failures` failures on this node, which
            // the per-address limits pace.
            let (this, user) = (self.clone(), user.to_owned());
            tokio::spawn(async move {
                if let Err(e) = this.lock_everywhere(&user, until).await {
                    tracing::error!("recording the lock of {user} in the store: {e}");
                }
            });
            return;
        }
        {
            // At most so many writes a second per node, whoever sends the failures.
            let mut rate = self
                .failure_rate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if rate.0.elapsed() >= Duration::from_secs(1) {
                *rate = (std::time::Instant::now(), 0);
            }
            if rate.1 >= MAX_FAILURE_WRITES_PER_SEC {
                if rate.1 == MAX_FAILURE_WRITES_PER_SEC {
                    tracing::warn!(
                        "more than {MAX_FAILURE_WRITES_PER_SEC} failed logins a second: the \
                         others count on this node only"
                    );
                }
                rate.1 = rate.1.saturating_add(1);
                return;
            }
            rate.1 += 1;
        }
        let Ok(slot) = self.lockout_writes.clone().try_acquire_owned() else {
            tracing::warn!("too many lockout writes in flight: a failure counted here only");
            return;
        };
        let (this, user) = (self.clone(), user.to_owned());
        tokio::spawn(async move {
            if let Err(e) = this.failure(&user, now).await {
                tracing::error!("recording a failed login of {user} in the store: {e}");
            }
            drop(slot);
        });
    }

    /// Writes this node's heartbeat (`heartbeat/NODE`, on a lease of a minute renewed every
    /// half minute): the revision it was written at.
    async fn heartbeat(&self) -> Result<i64, ClientError> {
        let lease = {
            let mut lease = self.heartbeat_lease.lock().await;
            match *lease {
                Some((id, granted)) if granted.elapsed() < Duration::from_secs(30) => id,
                _ => {
                    let granted = std::time::Instant::now();
                    let id = self
                        .client
                        .lease_grant(&LeaseGrant { ttl: 60, id: None })
                        .await?
                        .id;
                    *lease = Some((id, granted));
                    id
                }
            }
        };
        let key = self.key(&format!("heartbeat/{}", self.node));
        let stamp = rfc3339(SystemTime::now());
        match self
            .client
            .put(&Put::new(&key, stamp.as_bytes()).with_lease(lease))
            .await
        {
            Ok(r) => Ok(r.header.revision),
            Err(e) => {
                // A lease etcd no longer knows (revoked, a restored store): a new one next time.
                *self.heartbeat_lease.lock().await = None;
                Err(e)
            }
        }
    }

    /// What a failed step left to do, tried again at each heartbeat: the policy written back
    /// to the store, and the policy put in force again when a kernel hook failed.
    async fn retry_pending(&self, restrictions: &LiveRestrictions) {
        let text = self
            .restore
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(text) = text
            && self.restore_restrictions(&text).await
        {
            *self
                .restore
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        if restrictions.last_error().is_some() {
            let current = self
                .restore_source
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = restrictions.set_document(current.as_deref()) {
                tracing::error!("{e}; the previous policy stays in force");
            }
        }
    }

    /// Writes `text` back as the network restrictions when the store has none (create-only:
    /// a policy written meanwhile wins; every node that saw the delete tries, one succeeds).
    async fn restore_restrictions(&self, text: &[u8]) -> bool {
        let key = self.key(&Key::Restrictions.path());
        let txn = Txn {
            compare: vec![Compare::absent(&key)],
            success: vec![Op::Put(Put::new(&key, text))],
            failure: Vec::new(),
        };
        match self.writer.txn(&txn).await {
            Ok(r) => {
                if r.succeeded {
                    tracing::warn!(
                        "{}network_restrictions was deleted: the last policy is written back",
                        self.prefix
                    );
                }
                true
            }
            Err(e) => {
                tracing::error!("writing the network restrictions back (tried again): {e}");
                false
            }
        }
    }

    /// After a successful login of `user` whose failures the store holds: they are removed,
    /// as a node's own count is (a success ends a run of failures).
    pub fn record_success(self: &Arc<Self>, user: &str) {
        let this = self.clone();
        let failures = self.key(&format!("failures/{user}/"));
        tokio::spawn(async move {
            if let Err(e) = this
                .client
                .delete_range(&DeleteRange::prefix(&failures))
                .await
            {
                tracing::warn!("clearing failed logins in the store: {e}");
            }
        });
    }

    async fn lease(&self, d: Duration) -> Result<i64, FleetError> {
        let ttl = i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let r = self
            .client
            .lease_grant(&LeaseGrant { ttl, id: None })
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.id)
    }

    async fn failure(&self, user: &str, now: SystemTime) -> Result<(), FleetError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // One lease per tenth of the window (it lives 1.2 windows), not one per failure.
        let window = {
            let tenth = self.limits.failure_window / 10;
            let mut lease = self.failure_lease.lock().await;
            match *lease {
                Some((id, asked)) if asked.elapsed() < tenth => id,
                _ => {
                    // The time is taken before asking: the lease lives at least 1.2 windows
                    // from then, reused for a tenth, so a key put within the next tenth (a
                    // call's time included) lives at least one window.
                    let asked = std::time::Instant::now();
                    let id = self.lease(self.limits.failure_window + 2 * tenth).await?;
                    *lease = Some((id, asked));
                    id
                }
            }
        };
        let key = self.key(&format!("failures/{user}/{}-{n}", self.node));
        if let Err(e) = self
            .writer
            .put(&Put::new(&key, b"1").with_lease(window))
            .await
        {
            // A lease etcd no longer knows (revoked, a restored store): a new one next time.
            *self.failure_lease.lock().await = None;
            return Err(self.err(e));
        }
        let failures = self.key(&format!("failures/{user}/"));
        let count = self
            .client
            .range(&Range {
                limit: Some(1),
                ..Range::prefix(&failures)
            })
            .await
            .map_err(|e| self.err(e))?
            .count;
        if count < i64::from(self.limits.max_failures) {
            return Ok(());
        }
        self.lock_everywhere(user, now + self.limits.lockout).await
    }

    /// Locks `user` on every node until `until` (a leased `lockouts/` key), unless a lock is
    /// in force already; the failures counted for it start again either way.
    ///
    /// A lock key whose `until` has passed, ends further off than `lockout` from now (which
    /// the nodes cap), or does not read is replaced, not taken for a lock in force: etcd
    /// renews every lease to its whole time when its leader changes, a lease expires in
    /// coarse steps, and a key may have been written with no lease at all; such a key left
    /// in place, every node would read "not locked" and none could write a new lock, for as
    /// long as it lasts.
    async fn lock_everywhere(&self, user: &str, until: SystemTime) -> Result<(), FleetError> {
        let failures = self.key(&format!("failures/{user}/"));
        let value = serde_json::to_vec(&store::Lockout {
            until: rfc3339(until),
            failures: self.limits.max_failures,
        })
        .unwrap_or_default();
        let left = until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let lease = self.lease(left).await?;
        let lock_key = self.key(&Key::Lockout(user.to_owned()).path());
        // A lock in force is not extended by more failures (they are refused before the
        // password is checked anyway); the counted failures start again.
        let put = |compare| Txn {
            compare: vec![compare],
            success: vec![
                Op::Put(Put::new(&lock_key, &value).with_lease(lease)),
                Op::DeleteRange(DeleteRange::prefix(&failures)),
            ],
            failure: vec![Op::Range(Range::key(&lock_key))],
        };
        let mut compare = Compare::absent(&lock_key);
        // A few rounds: another node may write or remove the key between a read and a write.
        for _ in 0..4 {
            let r = match self.writer.txn(&put(compare)).await {
                Ok(r) => r,
                Err(e) => {
                    // The lease goes only when the write surely did not apply (nothing sent,
                    // or etcd answered an error): after a time-out or a broken exchange the
                    // lock may have been written on it, and revoking would delete it.
                    if matches!(
                        e,
                        ClientError::Connect { .. }
                            | ClientError::Tls { .. }
                            | ClientError::Etcd { .. }
                            | ClientError::NoEndpoint
                    ) {
                        let _ = self.writer.lease_revoke(&LeaseRevoke { id: lease }).await;
                    }
                    return Err(self.err(e));
                }
            };
            if r.succeeded {
                return Ok(());
            }
            let existing = r.responses.into_iter().find_map(|o| match o {
                OpResponse::Range(range) => range.kvs.into_iter().next(),
                _ => None,
            });
            let Some(kv) = existing else {
                // Removed meanwhile: create it.
                compare = Compare::absent(&lock_key);
                continue;
            };
            // In force as the nodes read it: not over, and not ending later than a lock
            // written now would (the nodes hold a lock at most `lockout` from when they saw
            // it, so a key ending further off is one they stopped enforcing).
            let now = SystemTime::now();
            // And not past what this node holds of it: `lockout` from when it first saw this
            // very revision of the key (a key that outlived that is one it stopped enforcing).
            let seen = self
                .lock_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(user)
                .filter(|(rev, _)| *rev == kv.mod_revision)
                .map(|(_, first)| *first);
            let in_force = serde_json::from_slice::<store::Lockout>(&kv.value)
                .ok()
                .and_then(|l| l.until_time())
                .is_some_and(|t| t > now && t <= now + self.limits.lockout)
                && seen.is_none_or(|first| first + self.limits.lockout > now);
            if in_force {
                // Locked already: the lease taken is not needed (no key was put on it); the
                // failures start again.
                let _ = self.writer.lease_revoke(&LeaseRevoke { id: lease }).await;
                self.writer
                    .txn(&Txn {
                        compare: Vec::new(),
                        success: vec![Op::DeleteRange(DeleteRange::prefix(&failures))],
                        failure: Vec::new(),
                    })
                    .await
                    .map_err(|e| self.err(e))?;
                return Ok(());
            }
            // Stale: replaced if it is still the key just read.
            compare = Compare::mod_revision(&lock_key, kv.mod_revision);
        }
        // Other nodes wrote the key at every round: one of them locked the user.
        let _ = self.writer.lease_revoke(&LeaseRevoke { id: lease }).await;
        Ok(())
    }

    // ---- admin ------------------------------------------------------------------------

    /// Writes `items` (already validated) in one transaction: all or nothing. Without
    /// `force`, only when none of them exists. Returns the revision and, per item, whether
    /// it was created (else replaced).
    ///
    /// # Errors
    /// [`FleetError::Exists`] naming the existing ones; etcd unreachable or refusing.
    pub async fn write(
        &self,
        items: &[(Key, Vec<u8>)],
        force: bool,
        guard: &Guard,
    ) -> Result<(i64, Vec<bool>), FleetError> {
        let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| self.key(&k.path())).collect();
        let exists = |k: &Vec<u8>| {
            Op::Range(Range {
                keys_only: true,
                ..Range::key(k)
            })
        };
        // Whether each key exists (keys only: a small answer), then the writes, in one
        // transaction; without `force`, only when none exists.
        let mut success: Vec<Op> = keys.iter().map(exists).collect();
        success.extend(
            items
                .iter()
                .zip(&keys)
                .map(|((_, v), k)| Op::Put(Put::new(k, v))),
        );
        let mut compare = self.guard_compares(guard);
        if !force {
            compare.extend(keys.iter().map(|k| Compare::absent(k)));
        }
        let txn = Txn {
            compare,
            success,
            failure: keys.iter().map(exists).collect(),
        };
        let r = self.writer.txn(&txn).await.map_err(|e| self.err_write(e))?;
        let found: Vec<bool> = r
            .responses
            .iter()
            .take(items.len())
            .map(|resp| matches!(resp, OpResponse::Range(rr) if !rr.kvs.is_empty()))
            .collect();
        if !r.succeeded {
            let existing: Vec<String> = found
                .iter()
                .zip(items)
                .filter(|(found, _)| **found)
                .map(|(_, (k, _))| k.path())
                .collect();
            // None of them exists (or they may be replaced): the guard failed.
            if force || existing.is_empty() {
                return Err(FleetError::Changed(guard.since));
            }
            return Err(FleetError::Exists(existing));
        }
        Ok((r.header.revision, found.iter().map(|f| !f).collect()))
    }

    /// The resources under `rel` (a key, or a prefix ending in `/`): (key below the prefix,
    /// value, revision of its last change).
    ///
    /// # Errors
    /// etcd unreachable or refusing.
    pub async fn read(&self, rel: &str) -> Result<Vec<(String, Vec<u8>, i64)>, FleetError> {
        let k = self.key(rel);
        let req = if rel.ends_with('/') {
            Range::prefix(&k)
        } else {
            Range::key(&k)
        };
        let r = self.client.range(&req).await.map_err(|e| self.err(e))?;
        Ok(r.kvs
            .into_iter()
            .filter_map(|kv| Some((self.rel(&kv.key)?.to_owned(), kv.value, kv.mod_revision)))
            .collect())
    }

    /// Deletes the resource at `key`. Returns the revision, `None` when there was none.
    ///
    /// # Errors
    /// etcd unreachable or refusing.
    pub async fn remove(&self, key: &Key, guard: &Guard) -> Result<Option<i64>, FleetError> {
        let txn = Txn {
            compare: self.guard_compares(guard),
            success: vec![Op::DeleteRange(DeleteRange::key(&self.key(&key.path())))],
            failure: Vec::new(),
        };
        let r = self.writer.txn(&txn).await.map_err(|e| self.err_write(e))?;
        if !r.succeeded {
            return Err(FleetError::Changed(guard.since));
        }
        let deleted = r
            .responses
            .iter()
            .any(|resp| matches!(resp, OpResponse::DeleteRange(d) if d.deleted > 0));
        Ok(deleted.then_some(r.header.revision))
    }

    /// The conditions of `guard`: each of its keys exists and was not written after
    /// `guard.since`.
    fn guard_compares(&self, guard: &Guard) -> Vec<Compare> {
        guard
            .keys
            .iter()
            .flat_map(|k| {
                let key = self.key(&k.path());
                [
                    Compare::exists(&key),
                    Compare::unchanged_since(&key, guard.since),
                ]
            })
            .collect()
    }
}
