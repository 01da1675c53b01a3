//! `ippin-load`: runs one measurement of the ippin server and prints its
//! report (text, then one JSON line); exit 0 when every bound holds, 1
//! when one fails, 2 when the run could not be set up.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ippin-load",
    about = "Load, stall, hostile-input and soak runs against ippin"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the real server (`ippin serve`'s code) on CONFIG: used as the
    /// child process of the other subcommands.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the plain mutual-TLS baseline server on CONFIG's files.
    ServePlain {
        #[arg(long)]
        config: PathBuf,
    },
    /// Stalled connections: never-sending and one-byte-per-second.
    Stall {
        /// Connections that never send.
        #[arg(long, default_value_t = 10_000)]
        stalled: usize,
        /// Connections sending one byte per second.
        #[arg(long, default_value_t = 1_000)]
        slow: usize,
        /// The listeners' header_timeout, seconds.
        #[arg(long, default_value_t = 3)]
        header_timeout: u64,
        /// Slack past header_timeout for "closed in time", seconds.
        #[arg(long, default_value_t = 3)]
        margin: u64,
        /// Connections that stall the TLS handshake (past the PROXY stage).
        #[arg(long, default_value_t = 5_000)]
        tls_stalled: usize,
    },
    /// Hostile input: PROXY seeds as prefixes, certificate seeds as
    /// client certificates, at full rate.
    Hostile {
        /// Rounds (each sends every seed once to every target).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The fuzz corpus folder (default: this checkout's).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Handshake throughput: full path vs plain mutual TLS, alternating.
    Throughput {
        /// Seconds per window.
        #[arg(long, default_value_t = 10)]
        window: u64,
        /// Windows per variant.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Client tasks.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// What ippin adds per connection on the server, timed without sockets.
    Cost {
        /// Iterations per step.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
    /// Unauthenticated flood of forward-listener connects and bad logins
    /// from 127.0.0.2-9, while a real user (127.0.0.1) logs in and
    /// accesses through the front: it must never fail.
    Flood {
        /// Connect + one byte to the forward listener, in total.
        #[arg(long, default_value_t = 20_000)]
        forward_connects: usize,
        /// Their pace, connections per second at most.
        #[arg(long, default_value_t = 2_000)]
        forward_rate: usize,
        /// Bad logins in total.
        #[arg(long, default_value_t = 2_000)]
        bad_logins: usize,
        /// Bad logins in flight at once.
        #[arg(long, default_value_t = 16)]
        login_concurrency: usize,
        /// The inner listener's replay_capacity.
        #[arg(long, default_value_t = 65_536)]
        replay_capacity: usize,
        /// Bound on the run, seconds.
        #[arg(long, default_value_t = 300)]
        deadline: u64,
    },
    /// Soak: mixed valid and hostile traffic, memory sampled.
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seconds between memory samples.
        #[arg(long, default_value_t = 5.0)]
        sample_every: f64,
        /// The fuzz corpus folder (default: this checkout's).
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    ippin::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(run(cli.command));
    std::process::exit(code);
}

fn print_report<T: serde::Serialize>(name: &str, report: &T, failures: &[String]) -> i32 {
    println!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_default()
    );
    if failures.is_empty() {
        println!("{name}: PASS");
        0
    } else {
        for f in failures {
            println!("{name}: FAIL: {f}");
        }
        1
    }
}

async fn run(cmd: Cmd) -> i32 {
    let exe = match ippin_loadtest::cluster::own_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match cmd {
        Cmd::Serve { config } => {
            let outcome = ippin::server::serve_command(&config).await;
            print!("{}", outcome.stdout);
            eprint!("{}", outcome.stderr);
            return outcome.code;
        }
        Cmd::ServePlain { config } => match ippin_loadtest::plain::serve(&config).await {
            Ok(()) => return 0,
            Err(e) => Err(e),
        },
        Cmd::Stall {
            stalled,
            slow,
            header_timeout,
            margin,
            tls_stalled,
        } => {
            let p = ippin_loadtest::stall::StallParams {
                stalled,
                slow,
                tls_stalled,
                header_timeout: Duration::from_secs(header_timeout),
                margin: Duration::from_secs(margin),
                connect_concurrency: 256,
            };
            ippin_loadtest::stall::run(&exe, &p)
                .await
                .map(|r| print_report("stall", &r, &r.failures()))
        }
        Cmd::Hostile {
            rounds,
            concurrency,
            corpus,
        } => {
            let p = ippin_loadtest::hostile::HostileParams {
                corpus: corpus.unwrap_or_else(ippin_loadtest::hostile::default_corpus),
                rounds,
                concurrency,
                header_timeout: Duration::from_secs(2),
            };
            ippin_loadtest::hostile::run(&exe, &p)
                .await
                .map(|r| print_report("hostile", &r, &r.failures()))
        }
        Cmd::Throughput {
            window,
            rounds,
            concurrency,
        } => {
            let p = ippin_loadtest::throughput::ThroughputParams {
                window: Duration::from_secs(window),
                rounds,
                concurrency,
            };
            ippin_loadtest::throughput::run(&exe, &p)
                .await
                .map(|r| print_report("throughput", &r, &r.failures()))
        }
        Cmd::Cost { iterations } => ippin_loadtest::cost::run(iterations.clamp(1, 10_000_000))
            .map(|r| print_report("cost", &r, &[])),
        Cmd::Flood {
            forward_connects,
            forward_rate,
            bad_logins,
            login_concurrency,
            replay_capacity,
            deadline,
        } => {
            let p = ippin_loadtest::flood::FloodParams {
                forward_connects: forward_connects.min(1_000_000),
                forward_rate: forward_rate.clamp(1, 100_000),
                bad_logins: bad_logins.min(1_000_000),
                login_concurrency: login_concurrency.clamp(1, 1024),
                replay_capacity,
                deadline: Duration::from_secs(deadline.clamp(1, 24 * 3600)),
            };
            ippin_loadtest::flood::run(&exe, &p)
                .await
                .map(|r| print_report("flood", &r, &r.failures()))
        }
        Cmd::Soak {
            minutes,
            sample_every,
            corpus,
        } => {
            let p = ippin_loadtest::soak::SoakParams {
                duration: Duration::from_secs_f64((minutes * 60.0).clamp(1.0, 24.0 * 3600.0)),
                sample_every: Duration::from_secs_f64(sample_every.clamp(0.1, 600.0)),
                corpus: corpus.unwrap_or_else(ippin_loadtest::hostile::default_corpus),
                concurrency: 32,
                stalled_per_round: 50,
                header_timeout: Duration::from_secs(2),
            };
            ippin_loadtest::soak::run(&exe, &p)
                .await
                .map(|r| print_report("soak", &r, &r.failures()))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
