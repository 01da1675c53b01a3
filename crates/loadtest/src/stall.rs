//! Stalled connections: many that never send a byte, some that send a
//! PROXY v2 header one byte per second; each must be closed by the server
//! at `header_timeout`, while a real client keeps logging in and
//! accessing, and the server's descriptors and memory stay bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::LoadError;
use crate::client::ValidUser;
use crate::cluster::{Cluster, Listener, ServerKind, ServerProcess};
use crate::sampler::Sampler;
use crate::stats::Summary;

/// What to run.
#[derive(Debug, Clone)]
pub struct StallParams {
    /// Connections that never send anything.
    pub stalled: usize,
    /// Connections that send a PROXY v2 header one byte per second.
    pub slow: usize,
    /// The listeners' `header_timeout`.
    pub header_timeout: Duration,
    /// Slack allowed past `header_timeout` for "closed in time" (the
    /// client's clock starts at its `connect`; scheduling on a loaded host).
    pub margin: Duration,
    /// Connects in flight at once while opening.
    pub connect_concurrency: usize,
    /// Connections that get past the PROXY stage of the direct TLS listener
    /// (a TLS record header, no header needed there) and stall the TLS
    /// handshake; opened once the memory sample is taken, while the valid
    /// client runs. More than `ippin::server::MAX_HANDSHAKES` of them make
    /// the server shed the oldest.
    pub tls_stalled: usize,
}

/// How one group of attacking connections ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupResult {
    /// Connections opened.
    pub opened: usize,
    /// Connections that could not be opened.
    pub connect_failed: usize,
    /// Closed by the server within `header_timeout + margin` of opening.
    pub closed_in_time: usize,
    /// Closed by the server, but later than that.
    pub closed_late: usize,
    /// Still open when the harness gave up on them (`header_timeout` + 30 s).
    pub never_closed: usize,
    /// When the server closed them, measured from the client's connect.
    pub closed_after: Summary,
}

/// The outcome of a stall run.
#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    /// Parameters: never-sending connections.
    pub stalled_count: usize,
    /// Parameters: one-byte-per-second connections.
    pub slow_count: usize,
    /// Parameters: handshake-stalling connections.
    pub tls_stalled_count: usize,
    /// Parameters: `header_timeout` in ms.
    pub header_timeout_ms: u128,
    /// Never-sending connections.
    pub stalled: GroupResult,
    /// One-byte-per-second connections.
    pub slow: GroupResult,
    /// Handshake-stalling connections; "in time" is within the server's
    /// `HANDSHAKE_TIMEOUT` + margin of opening.
    pub tls_stalled: GroupResult,
    /// Connections the server shed from a full handshake stage (its audit
    /// log's `tls_handshake_shed` lines). Only more than
    /// `ippin::server::MAX_HANDSHAKES` handshakes *at once* make it shed:
    /// how many are at once depends on how fast they are opened against the
    /// 10-second `HANDSHAKE_TIMEOUT`, so this is reported, not asserted.
    pub tls_shed: usize,
    /// Server descriptors and memory.
    pub server: crate::sampler::Usage,
    /// Server RSS growth per pending connection, bytes: (RSS − baseline
    /// RSS) / (descriptors − baseline descriptors), sampled once the server
    /// holds every attacker and before the valid client starts (its argon2
    /// buffers would be counted otherwise). Kernel socket buffers are not
    /// in RSS.
    pub bytes_per_pending: Option<u64>,
    /// Valid logins + accesses completed during the attack.
    pub valid_ok: usize,
    /// Valid logins + accesses that failed during the attack.
    pub valid_failed: usize,
    /// The first failure, if any.
    pub valid_first_error: Option<String>,
    /// Latency of valid logins during the attack.
    pub valid_login: Summary,
    /// Latency of valid accesses during the attack.
    pub valid_access: Summary,
    /// Server still running at the end, and no panic on its stderr.
    pub server_alive: bool,
    /// A panic message was seen on the server's stderr.
    pub server_panicked: bool,
}

impl StallReport {
    /// The bounds that failed, empty when the run passes: every attacking
    /// connection opened and closed in time, descriptors back to the
    /// baseline, at least one valid login + access during the attack and
    /// none failed, server alive without panic, and (when measurable)
    /// under 4 KiB of memory per pending connection (asserted from
    /// [`MEMORY_TARGET_FROM`] connections: below that, the allocator's and
    /// tokio's first slab pages, a fixed cost, dominate the quotient).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, g, want) in [
            ("stalled", &self.stalled, self.stalled_count),
            ("slow", &self.slow, self.slow_count),
            ("tls_stalled", &self.tls_stalled, self.tls_stalled_count),
        ] {
            if g.opened != want {
                out.push(format!("{name}: opened {} of {want}", g.opened));
            }
            if g.closed_in_time != g.opened {
                out.push(format!(
                    "{name}: {} of {} closed in time ({} late, {} never)",
                    g.closed_in_time, g.opened, g.closed_late, g.never_closed
                ));
            }
        }
        out.extend(self.server.failures());
        out.extend(crate::stats::valid_client_failure(
            self.valid_ok,
            self.valid_failed,
            &self.valid_first_error,
        ));
        if !self.server_alive || self.server_panicked {
            out.push(format!(
                "server alive: {}, panicked: {}",
                self.server_alive, self.server_panicked
            ));
        }
        if let Some(b) = self.bytes_per_pending
            && b >= 4096
            && self.stalled_count + self.slow_count >= MEMORY_TARGET_FROM
        {
            out.push(format!("{b} bytes per pending connection (target < 4096)"));
        }
        out
    }
}

/// The run size from which the 4 KiB-per-pending-connection target is
/// checked.
pub const MEMORY_TARGET_FROM: usize = 5_000;

/// Connections the opener lets wait in the server's accept queue.
pub const MAX_UNACCEPTED: usize = 512;

/// How long the harness waits for one attacking connection to be closed.
fn give_up(header_timeout: Duration) -> Duration {
    header_timeout + Duration::from_secs(30)
}

/// Opens a connection that sends a PROXY v2 header one byte per second.
async fn slow_with(
    tcp: TcpStream,
    header_timeout: Duration,
    header: Arc<Vec<u8>>,
) -> Result<Option<Duration>, ()> {
    let t0 = Instant::now();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = async move {
        for b in header.iter() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The whole header went out without being closed: keep waiting.
        std::future::pending::<()>().await;
    };
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(give_up(header_timeout), async {
        tokio::select! {
            _ = rd.read(&mut buf) => {}
            () = writer => {}
        }
    })
    .await;
    Ok(closed.ok().map(|()| t0.elapsed()))
}

fn summarize(results: Vec<Result<Option<Duration>, ()>>, limit: Duration) -> GroupResult {
    let mut g = GroupResult::default();
    let mut times = Vec::new();
    for r in results {
        match r {
            Err(()) => g.connect_failed += 1,
            Ok(None) => {
                g.opened += 1;
                g.never_closed += 1;
            }
            Ok(Some(after)) => {
                g.opened += 1;
                times.push(after);
                if after <= limit {
                    g.closed_in_time += 1;
                } else {
                    g.closed_late += 1;
                }
            }
        }
    }
    g.closed_after = Summary::of(&times);
    g
}

/// Runs the stall measurement against a fresh server started from `exe`.
///
/// # Errors
/// [`LoadError::Setup`] when the server cannot be started, or the valid
/// client fails before the attack starts.
pub async fn run(exe: &std::path::Path, p: &StallParams) -> Result<StallReport, LoadError> {
    crate::procfs::require_nofile((p.stalled + p.slow + p.tls_stalled) as u64 + 512)
        .map_err(LoadError::Setup)?;
    let cluster = Cluster::create(p.header_timeout)?;
    let mut server = ServerProcess::start(exe, ServerKind::Ippin, &cluster)?;
    let targets = [
        server.addr(Listener::LoginDirect),
        server.addr(Listener::TlsDirect),
    ];
    let valid = ValidUser::new(&cluster, targets[0], targets[1]);
    // Warm up (first login allocates the server's lazy state), then the
    // baseline.
    valid.once().await?;
    valid.once().await?;
    let sampler = Sampler::start(server.pid(), Duration::from_millis(200));
    sampler.baseline().await;

    let header = Arc::new(crate::client::proxy_v2(
        "127.0.0.1:40000"
            .parse()
            .map_err(|_| LoadError::Setup("addr".into()))?,
        targets[0],
    ));
    let gate = Arc::new(Semaphore::new(p.connect_concurrency.max(1)));
    let mut stalled = Vec::with_capacity(p.stalled);
    let mut slow = Vec::with_capacity(p.slow);
    let ht = p.header_timeout;
    // Interleave the slow ones among the stalled ones.
    let every = (p.stalled / p.slow.max(1)).max(1);
    let (mut s_left, mut w_left) = (p.stalled, p.slow);
    let mut i = 0usize;
    let closed = Arc::new(AtomicUsize::new(0));
    let base_fds = sampler.snapshot().baseline.fds;
    let pid = server.pid();
    while s_left > 0 || w_left > 0 {
        // Pace the opening to what the server accepts: at most
        // MAX_UNACCEPTED connections may wait in the kernel's accept queue
        // (its backlog is 1024; beyond it Linux drops handshakes, and those
        // clients would wait on the kernel, not on the server).
        if i.is_multiple_of(64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let held = crate::procfs::fd_count(pid)
                    .unwrap_or(0)
                    .saturating_sub(base_fds);
                let gone = closed.load(Ordering::Relaxed);
                if i <= held + gone + MAX_UNACCEPTED || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let addr = targets.get(i % 2).copied().unwrap_or(targets[0]);
        let closed = closed.clone();
        let permit = gate.clone().acquire_owned().await;
        let slow_turn = w_left > 0 && (s_left == 0 || i.is_multiple_of(every));
        if slow_turn {
            w_left -= 1;
            let h = header.clone();
            slow.push(tokio::spawn(async move {
                let r = TcpStream::connect(addr).await;
                drop(permit);
                match r {
                    Ok(tcp) => {
                        let r = slow_with(tcp, ht, h).await;
                        closed.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                    Err(_) => Err(()),
                }
            }));
        } else {
            s_left -= 1;
            stalled.push(tokio::spawn(async move {
                // The permit covers the connect only.
                let r = TcpStream::connect(addr).await;
                drop(permit);
                match r {
                    Ok(tcp) => {
                        let r = stalled_with(tcp, ht).await;
                        closed.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                    Err(_) => Err(()),
                }
            }));
        }
        i += 1;
    }

    // Every attacker is connecting or connected: once the server holds
    // them all (or 2 s passed), measure its memory before the valid client
    // adds its own (argon2 buffers, certificate issuance).
    // The sample with the most descriptors while they still rise (the
    // first ones close at header_timeout while the last ones open).
    let mut loaded = sampler.sample_now();
    let rise_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < rise_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sampler.sample_now();
        match (now, loaded) {
            (Some(n), Some(l)) if n.fds > l.fds => loaded = Some(n),
            (Some(_), Some(_)) => break,
            _ => {}
        }
    }

    // The valid client, until every attacker is done.
    let done = Arc::new(AtomicBool::new(false));
    let valid_task = {
        let done = done.clone();
        let valid = valid.clone();
        tokio::spawn(async move {
            let (mut logins, mut accesses, mut failed, mut first) =
                (Vec::new(), Vec::new(), 0usize, None);
            while !done.load(Ordering::Relaxed) {
                match valid.once().await {
                    Ok(t) => {
                        logins.push(t.login);
                        accesses.push(t.access);
                    }
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (logins, accesses, failed, first)
        })
    };
    // Handshake stallers, while the valid client runs. Each from an address of its own in
    // 127.1.0.0/16 (the server holds at most MAX_TLS_PER_PEER connections of one address:
    // from one, all but that many would be closed at once, and the handshake stage's
    // shedding, which this run measures, would never be reached).
    let mut tls_stalled = Vec::with_capacity(p.tls_stalled);
    for n in 0..p.tls_stalled {
        let permit = gate.clone().acquire_owned().await;
        let addr = targets[1];
        let from = std::net::SocketAddr::from(([127, 1, (n / 250) as u8, (n % 250 + 1) as u8], 0));
        tls_stalled.push(tokio::spawn(async move {
            let r = async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(from)?;
                socket.connect(addr).await
            }
            .await;
            drop(permit);
            match r {
                Ok(tcp) => handshake_stalled_with(tcp).await,
                Err(_) => Err(()),
            }
        }));
    }
    let mut stalled_r = Vec::with_capacity(stalled.len());
    for t in stalled {
        stalled_r.push(t.await.unwrap_or(Err(())));
    }
    let mut slow_r = Vec::with_capacity(slow.len());
    for t in slow {
        slow_r.push(t.await.unwrap_or(Err(())));
    }
    let mut tls_r = Vec::with_capacity(tls_stalled.len());
    for t in tls_stalled {
        tls_r.push(t.await.unwrap_or(Err(())));
    }
    done.store(true, Ordering::Relaxed);
    let (logins, accesses, valid_failed, valid_first_error) = valid_task.await.unwrap_or_default();

    let limit = p.header_timeout + p.margin;
    let tls_shed = std::fs::read_to_string(cluster.audit_log())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"tls_handshake_shed\""))
        .count();
    let usage = sampler.finish_after_settle(Duration::from_secs(15)).await;
    // One more valid login + access after the attack.
    let after = valid.once().await;
    let bytes_per_pending = loaded.and_then(|l| usage.bytes_per_extra_fd_at(l));
    let server_alive = server.is_running();
    let server_panicked = server.panicked();
    let mut report = StallReport {
        stalled_count: p.stalled,
        slow_count: p.slow,
        header_timeout_ms: p.header_timeout.as_millis(),
        stalled: summarize(stalled_r, limit),
        slow: summarize(slow_r, limit),
        tls_stalled_count: p.tls_stalled,
        tls_stalled: summarize(tls_r, ippin::server::HANDSHAKE_TIMEOUT + p.margin),
        tls_shed,
        server: usage,
        bytes_per_pending,
        valid_ok: logins.len(),
        valid_failed,
        valid_first_error,
        valid_login: Summary::of(&logins),
        valid_access: Summary::of(&accesses),
        server_alive,
        server_panicked,
    };
    if let Err(e) = after {
        report.valid_failed += 1;
        report
            .valid_first_error
            .get_or_insert(format!("after the attack: {e}"));
    }
    let _ = server.stop();
    Ok(report)
}

async fn stalled_with(
    mut tcp: TcpStream,
    header_timeout: Duration,
) -> Result<Option<Duration>, ()> {
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(give_up(header_timeout), async {
        let _ = tcp.read(&mut buf).await;
    })
    .await;
    Ok(closed.ok().map(|()| t0.elapsed()))
}

/// Sends a TLS record header announcing a ClientHello that never comes, and
/// waits for the server to close the connection.
async fn handshake_stalled_with(mut tcp: TcpStream) -> Result<Option<Duration>, ()> {
    let t0 = Instant::now();
    if tcp
        .write_all(&[0x16, 0x03, 0x01, 0x01, 0x00])
        .await
        .is_err()
    {
        return Ok(Some(t0.elapsed()));
    }
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        ippin::server::HANDSHAKE_TIMEOUT + Duration::from_secs(30),
        async {
            let _ = tcp.read(&mut buf).await;
        },
    )
    .await;
    Ok(closed.ok().map(|()| t0.elapsed()))
}
