//! The `ippin` binary: arguments, logging, runtime; everything else lives in
//! the library part of the crate.
#![forbid(unsafe_code)]

use std::io::Write;

use clap::Parser;

fn main() {
    let cli = ippin::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        // aya warns at every load that it has no type for the socket-storage map, which
        // ippin-restrict loads on purpose (only its programs use it): not the operator's
        // concern. Its errors still show.
        .add_directive(
            "aya::bpf=error"
                .parse()
                .unwrap_or_else(|_| tracing::Level::ERROR.into()),
        );
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
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(ippin::cli::run(cli));
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    std::process::exit(outcome.code);
}
