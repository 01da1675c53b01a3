//! Hostile input at full rate: the committed fuzz seeds of the PROXY
//! parser sent as connection prefixes to every listener, and those of the
//! certificate extraction presented as client certificates (as they are,
//! and re-signed by the cluster's CA so that they pass chain verification
//! and reach the pin extraction). No panic, no leak, valid clients served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::LoadError;
use crate::client::{Prober, ValidUser};
use crate::cluster::{Cluster, Listener, ServerKind, ServerProcess};
use crate::sampler::{Sample, Sampler, Usage};
use crate::stats::Summary;

/// The fuzz corpus folder of this checkout.
pub fn default_corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus"))
}

/// The committed seeds (`seed-*`) of the corpus folders whose name starts
/// with `prefix` (`proxy_`, `cert_`), sorted by path.
///
/// # Errors
/// [`LoadError::Setup`] when the corpus cannot be read or has no seed.
pub fn seeds(corpus: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LoadError> {
    let bad = |e: std::io::Error| LoadError::Setup(format!("{}: {e}", corpus.display()));
    let mut out = Vec::new();
    for dir in std::fs::read_dir(corpus).map_err(bad)? {
        let dir = dir.map_err(bad)?;
        let name = dir.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).map_err(bad)? {
            let f = f.map_err(bad)?;
            let file = f.file_name().to_string_lossy().into_owned();
            if file.starts_with("seed-") {
                let bytes = std::fs::read(f.path()).map_err(bad)?;
                out.push((format!("{name}/{file}"), bytes));
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(LoadError::Setup(format!(
            "no {prefix}*/seed-* under {}",
            corpus.display()
        )));
    }
    Ok(out)
}

// ---- DER surgery for re-signing -------------------------------------------

/// One DER element: (tag, whole encoding, content, rest of the input).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((
        tag,
        input.get(..end)?,
        input.get(head..end)?,
        input.get(end..)?,
    ))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let len = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | len.len() as u8);
        out.extend_from_slice(len);
    }
    out.extend_from_slice(content);
    out
}

/// The elements of a certificate's TBSCertificate.
fn tbs_fields(cert: &[u8]) -> Option<Vec<&[u8]>> {
    let (0x30, _, body, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, _, tbs, _) = tlv(body)? else {
        return None;
    };
    let mut fields = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() {
        let (_, whole, _, next) = tlv(rest)?;
        fields.push(whole);
        rest = next;
    }
    Some(fields)
}

/// `seed` with its issuer, signature algorithm, validity and key replaced
/// by those of `template` (a certificate the CA issued) and signed by
/// `ca`; `None` when the seed is not shaped like a certificate.
fn resign(seed: &[u8], template: &[u8], ca: &ippin_cert::x509::X509Ca) -> Option<Vec<u8>> {
    let t = tbs_fields(template)?;
    let s = tbs_fields(seed)?;
    // [0] version, serial, signature, issuer, validity, subject, spki, ...
    let at = usize::from(s.first()?.first() == Some(&0xa0));
    let ta = usize::from(t.first()?.first() == Some(&0xa0));
    let mut tbs = Vec::new();
    if at == 1 {
        tbs.extend_from_slice(s.first()?);
    }
    tbs.extend_from_slice(s.get(at)?); // serial
    tbs.extend_from_slice(t.get(ta + 1)?); // signature algorithm
    tbs.extend_from_slice(ca.subject_der()); // issuer
    tbs.extend_from_slice(t.get(ta + 3)?); // validity
    tbs.extend_from_slice(s.get(at + 4)?); // subject
    tbs.extend_from_slice(t.get(ta + 5)?); // the prober's key
    for rest in s.get(at + 6..)? {
        tbs.extend_from_slice(rest); // unique ids, extensions
    }
    let mut rng = ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng);
    ca.danger_sign_tbs(&der(0x30, &tbs), &mut rng).ok()
}

// ---- the hostile set ---------------------------------------------------------

/// What one round sends.
#[derive(Debug, Clone)]
pub struct HostileSet {
    /// PROXY seeds (name, bytes), sent as connection prefixes.
    pub prefixes: Vec<(String, Vec<u8>)>,
    /// Probers presenting hostile certificates (name, prober).
    pub certs: Vec<(String, Prober)>,
}

impl HostileSet {
    /// Reads the seeds under `corpus` and prepares the probers for
    /// `cluster` (its CA re-signs the certificate seeds).
    ///
    /// # Errors
    /// [`LoadError::Setup`] when the corpus or the CA files cannot be read.
    pub fn load(corpus: &Path, cluster: &Cluster) -> Result<HostileSet, LoadError> {
        let prefixes = seeds(corpus, "proxy_")?;
        let cert_seeds = seeds(corpus, "cert_")?;
        let key = std::fs::read_to_string(cluster.dir.path().join("ca/tls_ca.key"))
            .map_err(|e| LoadError::Setup(format!("ca/tls_ca.key: {e}")))?;
        let ca = ippin_cert::x509::X509Ca::from_pem(&cluster.ca_pem, &key)
            .map_err(|e| LoadError::Setup(format!("CA: {e}")))?;
        let mut rng = ippin_cert::rand_core::UnwrapErr(ippin_cert::getrandom::SysRng);
        let (key_pem, spki_pem) = ippin_cert::x509::generate_key_pair_p256(&mut rng)
            .map_err(|e| LoadError::Setup(format!("key: {e}")))?;
        let spki = ippin_cert::x509::spki_der_from_pem(&spki_pem)
            .map_err(|e| LoadError::Setup(format!("key: {e}")))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let req = ippin_cert::x509::ClientCertRequest::builder("bob", spki)
            .role("dev")
            .validity(now.saturating_sub(60), now + 3600)
            .serial(1)
            .build()
            .map_err(|e| LoadError::Setup(format!("template: {e}")))?;
        let template = ca
            .issue_client(&req, &mut rng)
            .map_err(|e| LoadError::Setup(format!("template: {e}")))?;
        let mut certs = Vec::new();
        for (name, bytes) in cert_seeds {
            if let Some(signed) = resign(&bytes, &template, &ca) {
                let p = Prober::presenting(&cluster.ca_pem, signed, &key_pem)?;
                certs.push((format!("{name} (re-signed)"), p));
            }
            let p = Prober::presenting(&cluster.ca_pem, bytes, &key_pem)?;
            certs.push((name, p));
        }
        Ok(HostileSet { prefixes, certs })
    }

    /// Connections in one round: each prefix to each of the four
    /// listeners, each certificate to the direct tls listener.
    pub fn len(&self) -> usize {
        self.prefixes.len() * 4 + self.certs.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the connections of hostile rounds ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundCounts {
    /// Connections made.
    pub sent: usize,
    /// Closed or refused by the server (EOF, reset, TLS alert).
    pub refused: usize,
    /// Certificates that got an HTTP answer, by status.
    pub answered: std::collections::BTreeMap<u16, usize>,
    /// Connections the server neither answered nor closed in time.
    pub hung: usize,
    /// Names of the first few that hung.
    pub hung_names: Vec<String>,
}

impl RoundCounts {
    fn add(&mut self, other: RoundCounts) {
        self.sent += other.sent;
        self.refused += other.refused;
        for (k, v) in other.answered {
            *self.answered.entry(k).or_default() += v;
        }
        self.hung += other.hung;
        for n in other.hung_names {
            if self.hung_names.len() < 8 {
                self.hung_names.push(n);
            }
        }
    }
}

enum Ended {
    Refused,
    Answered(u16),
    Hung,
}

/// Sends `prefix` then half-closes, and waits for the server to close.
async fn send_prefix(addr: std::net::SocketAddr, prefix: &[u8], bound: Duration) -> Ended {
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        let _ = tcp.write_all(prefix).await;
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 1024];
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return Some(()),
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(bound, attempt).await {
        Ok(_) => Ended::Refused,
        Err(_) => Ended::Hung,
    }
}

/// One round: every connection of `set` once, `concurrency` at a time.
pub async fn round(
    server: &ServerProcess,
    set: &HostileSet,
    concurrency: usize,
    bound: Duration,
) -> RoundCounts {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(set.len());
    let listeners = [
        Listener::LoginDirect,
        Listener::TlsDirect,
        Listener::LoginProxied,
        Listener::TlsProxied,
    ];
    for (name, bytes) in &set.prefixes {
        for l in listeners {
            let addr = server.addr(l);
            let (name, bytes) = (format!("{name} -> {l:?}"), bytes.clone());
            let permit = gate.clone().acquire_owned().await;
            tasks.push(tokio::spawn(async move {
                let _p = permit;
                (name, send_prefix(addr, &bytes, bound).await)
            }));
        }
    }
    let tls = server.addr(Listener::TlsDirect);
    for (name, prober) in &set.certs {
        let (name, prober) = (name.clone(), prober.clone());
        let permit = gate.clone().acquire_owned().await;
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            let ended = match tokio::time::timeout(bound, prober.get(tls, None, "/whoami")).await {
                Ok(Ok(t)) => Ended::Answered(t.status),
                Ok(Err(_)) => Ended::Refused,
                Err(_) => Ended::Hung,
            };
            (name, ended)
        }));
    }
    let mut c = RoundCounts::default();
    for t in tasks {
        c.sent += 1;
        match t.await {
            Ok((_, Ended::Refused)) => c.refused += 1,
            Ok((_, Ended::Answered(s))) => *c.answered.entry(s).or_default() += 1,
            Ok((name, Ended::Hung)) => {
                c.hung += 1;
                if c.hung_names.len() < 8 {
                    c.hung_names.push(name);
                }
            }
            Err(_) => c.hung += 1,
        }
    }
    c
}

/// What a valid user saw while looping.
#[derive(Debug, Clone, Default)]
pub(crate) struct ValidRun {
    pub(crate) logins: Vec<Duration>,
    pub(crate) accesses: Vec<Duration>,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
}

/// A valid user logging in and accessing in a loop until `done`.
pub(crate) fn valid_loop(
    valid: ValidUser,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<ValidRun> {
    tokio::spawn(async move {
        let mut run = ValidRun::default();
        while !done.load(Ordering::Relaxed) {
            match valid.once().await {
                Ok(t) => {
                    run.logins.push(t.login);
                    run.accesses.push(t.access);
                }
                Err(e) => {
                    run.failed += 1;
                    run.first_error.get_or_insert(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run
    })
}

/// Parameters of a hostile-input run.
#[derive(Debug, Clone)]
pub struct HostileParams {
    /// The fuzz corpus folder.
    pub corpus: PathBuf,
    /// Rounds (each sends the whole set once).
    pub rounds: usize,
    /// Connections in flight at once.
    pub concurrency: usize,
    /// The listeners' `header_timeout`.
    pub header_timeout: Duration,
}

/// The outcome of a hostile-input run.
#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    /// PROXY seeds used.
    pub proxy_seeds: usize,
    /// Certificate probers (seeds as they are, and re-signed).
    pub cert_probers: usize,
    /// How the hostile connections ended, all rounds.
    pub counts: RoundCounts,
    /// Hostile connections per second over the rounds.
    pub rate_per_s: f64,
    /// Server descriptors and memory.
    pub server: Usage,
    /// Server memory after each round, once descriptors settled.
    pub after_rounds: Vec<Sample>,
    /// Valid logins + accesses during and after.
    pub valid_ok: usize,
    /// Valid logins + accesses that failed.
    pub valid_failed: usize,
    /// The first failure.
    pub valid_first_error: Option<String>,
    /// Valid login latency during the rounds.
    pub valid_login: Summary,
    /// Valid access latency during the rounds.
    pub valid_access: Summary,
    /// Server process still running.
    pub server_alive: bool,
    /// A panic was printed by the server.
    pub server_panicked: bool,
    /// Exit code of the server on SIGTERM at the end (0: clean).
    pub exit_code: Option<i32>,
}

/// RSS growth allowed as noise between the end of the warm-up (the first
/// half of the rounds: allocator arenas and caches fill up) and the last
/// round: 5% or 4 MiB, whichever is larger (the valid client's argon2
/// buffers, 4 MiB each, settle into new allocator arenas during the first
/// rounds).
pub fn rss_noise_kib(base_kib: u64) -> u64 {
    (base_kib / 20).max(4096)
}

impl HostileReport {
    /// Failed bounds: nothing hung, descriptors back to the baseline after
    /// every round, RSS after the last round within noise of the end of
    /// the warm-up ([`rss_noise_kib`]), valid client served during and after, server
    /// alive without panic and exiting 0 on SIGTERM.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.counts.hung > 0 {
            out.push(format!(
                "{} hostile connections hung: {:?}",
                self.counts.hung, self.counts.hung_names
            ));
        }
        out.extend(self.server.failures());
        let warm = self.after_rounds.len() / 2;
        if let (Some(first), Some(last)) = (self.after_rounds.get(warm), self.after_rounds.last()) {
            let noise = rss_noise_kib(first.rss_kib);
            if last.rss_kib > first.rss_kib + noise {
                out.push(format!(
                    "RSS grew from {} KiB after round {} to {} KiB after the last (noise {noise} KiB)",
                    first.rss_kib,
                    warm + 1,
                    last.rss_kib
                ));
            }
            let base = self.server.baseline.fds + crate::sampler::FD_SLACK;
            if let Some(s) = self.after_rounds.iter().find(|s| s.fds > base) {
                out.push(format!(
                    "{} descriptors after a round (baseline {base})",
                    s.fds
                ));
            }
        }
        out.extend(crate::stats::valid_client_failure(
            self.valid_ok,
            self.valid_failed,
            &self.valid_first_error,
        ));
        out.extend(crate::stats::server_health_failure(
            self.server_alive,
            self.server_panicked,
            self.exit_code,
        ));
        out
    }
}

/// Runs the hostile-input measurement against a fresh server.
///
/// # Errors
/// [`LoadError::Setup`] when the server or the corpus cannot be set up.
pub async fn run(exe: &Path, p: &HostileParams) -> Result<HostileReport, LoadError> {
    let cluster = Cluster::create(p.header_timeout)?;
    let set = HostileSet::load(&p.corpus, &cluster)?;
    let mut server = ServerProcess::start(exe, ServerKind::Ippin, &cluster)?;
    let valid = ValidUser::new(
        &cluster,
        server.addr(Listener::LoginDirect),
        server.addr(Listener::TlsDirect),
    );
    valid.once().await?;
    valid.once().await?;
    let sampler = Sampler::start(server.pid(), Duration::from_millis(500));
    sampler.baseline().await;
    let done = Arc::new(AtomicBool::new(false));
    let valid_task = valid_loop(valid.clone(), done.clone());
    let bound = p.header_timeout + Duration::from_secs(15);
    let mut counts = RoundCounts::default();
    let mut after_rounds = Vec::new();
    let mut busy = Duration::ZERO;
    let base_fds = sampler.snapshot().baseline.fds;
    let pid = server.pid();
    for _ in 0..p.rounds.max(1) {
        let t = Instant::now();
        counts.add(round(&server, &set, p.concurrency, bound).await);
        busy += t.elapsed();
        let _ = crate::cluster::poll_until(Duration::from_secs(10), || {
            crate::procfs::fd_count(pid).is_some_and(|n| n <= base_fds + crate::sampler::FD_SLACK)
        })
        .await;
        if let Some(s) = sampler.sample_now() {
            after_rounds.push(s);
        }
    }
    done.store(true, Ordering::Relaxed);
    let ValidRun {
        logins,
        accesses,
        failed: mut valid_failed,
        first_error: mut first,
    } = valid_task.await.unwrap_or_default();
    let mut valid_ok = logins.len();
    match valid.once().await {
        Ok(_) => valid_ok += 1,
        Err(e) => {
            valid_failed += 1;
            first.get_or_insert(format!("after the rounds: {e}"));
        }
    }
    let usage = sampler.finish_after_settle(Duration::from_secs(10)).await;
    let server_alive = server.is_running();
    let server_panicked = server.panicked();
    let rate_per_s = counts.sent as f64 / busy.as_secs_f64().max(1e-3);
    let exit_code = server.stop();
    Ok(HostileReport {
        proxy_seeds: set.prefixes.len(),
        cert_probers: set.certs.len(),
        counts,
        rate_per_s,
        server: usage,
        after_rounds,
        valid_ok,
        valid_failed,
        valid_first_error: first,
        valid_login: Summary::of(&logins),
        valid_access: Summary::of(&accesses),
        server_alive,
        server_panicked,
        exit_code,
    })
}
