//! Command-line arguments (clap) and their dispatch. `main` only parses,
//! sets up logging and the runtime, and calls [`run`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Outcome;
pub use crate::client::LoginArgs;

/// ippin: source-IP pinning for SSH and TLS credentials.
#[derive(Debug, Parser)]
#[command(name = "ippin", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play the whole story on loopback with an ephemeral CA: login, pinned
    /// access, refusal from another IP, login again, a load balancer, a
    /// spoofed PROXY header.
    Demo,
    /// Certificate authority commands.
    #[command(subcommand)]
    Ca(CaCommand),
    /// User commands.
    #[command(subcommand)]
    User(UserCommand),
    /// Run the listeners of a configuration until interrupted.
    Serve {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Log in: get SSH and X.509 certificates (pinned when your roles say so).
    Login(LoginArgs),
    /// Run OpenSSH with the certificate from `ippin login`; when it is refused as pinned
    /// elsewhere, unpinned or expired, offer to log in again from here and retry once.
    Ssh(crate::openssh::SshArgs),
    /// Inspect a PROXY header or a certificate.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Run the pin check on a certificate for a client seen at an address.
    Check(CheckCli),
    /// Manage the fleet's roles, users and network restrictions through the admin API,
    /// with the certificate from `ippin login` (docs/cli.md).
    Ctl(crate::ctl::CtlArgs),
}

/// `ippin ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create an SSH user CA, an X.509 CA, the listeners' TLS identity, a
    /// role file and a working `ippin.yaml` in DIR.
    Init {
        /// The folder (created if missing; must not already hold a config).
        dir: PathBuf,
    },
    /// Issue a front's identity for a `kind: forward` listener: an Ed25519
    /// key and a certificate from the X.509 CA with CN `proxy:NAME` and role
    /// `proxy` (docs/propagation.md).
    IssueProxy {
        /// The configuration file (its X.509 CA signs).
        #[arg(long)]
        config: PathBuf,
        /// The front's name.
        name: String,
        /// Where to write `proxy-NAME.pem` and `proxy-NAME.key` (default:
        /// the configuration's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Lifetime of the certificate.
        #[arg(long, default_value = "90d")]
        ttl: String,
    },
    /// Create an inner listener's static X25519 key pair for signed
    /// propagation: `AUDIENCE.propkey` (secret, mode 0600; the inner's
    /// `propagation.key`) and `AUDIENCE.propkey.pub` (the fronts'
    /// `forward.upstream_key`) (docs/propagation.md).
    PropagationKey {
        /// The inner listener's audience (names the files).
        #[arg(long)]
        audience: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// `ippin user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user: the password is read from the terminal (or from stdin
    /// when it is not one) and its argon2id hash written into the config.
    Add {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The user name.
        name: String,
        /// A role (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

/// `ippin inspect …`
#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Parse one PROXY header from the start of FILE (or stdin: `-` or none).
    Proxy {
        /// The file, `-` for stdin.
        file: Option<PathBuf>,
    },
    /// Show the pin and identity of an OpenSSH or X.509 certificate.
    Cert {
        /// The certificate file (OpenSSH, PEM or DER).
        file: PathBuf,
    },
}

/// `ippin check …`
#[derive(Debug, Args)]
pub struct CheckCli {
    /// The certificate (OpenSSH, X.509 PEM or DER).
    #[arg(long)]
    pub cert: PathBuf,
    /// The observed client address: `ip`, `ip:port` or `[v6]:port`.
    #[arg(long)]
    pub observed: String,
    /// A role file; the roles in all of them are the user's role set.
    #[arg(long = "roles")]
    pub roles: Vec<PathBuf>,
    /// Treat the observed address as untrusted.
    #[arg(long)]
    pub untrusted: bool,
    /// The private endpoint the client came through (`vpce-…`, `azure:N`, `gcp:N`), as a
    /// listener with `allowed_endpoints` sees it.
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// The upper bound on what `inspect` reads.
const MAX_INPUT: u64 = 1024 * 1024;

/// Reads `file` (or stdin for `None` / `-`), refusing more than [`MAX_INPUT`]
/// bytes: one byte more is read so that a larger input is refused rather
/// than silently cut.
fn read_input(file: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = Vec::new();
    let name = match file {
        None => {
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("stdin: {e}"))?;
            "stdin".to_owned()
        }
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("stdin: {e}"))?;
            "stdin".to_owned()
        }
        Some(p) => {
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            p.display().to_string()
        }
    };
    if buf.len() as u64 > MAX_INPUT {
        return Err(format!("{name}: larger than {MAX_INPUT} bytes"));
    }
    Ok(buf)
}

/// `ippin check`: reads the files, then the other engineer's `check::run`.
/// Unreadable files are unusable input (exit 2).
fn check_command(args: CheckCli) -> Outcome {
    let cert = match read_input(Some(&args.cert)) {
        Ok(b) => b,
        Err(e) => return Outcome::fail(2, format!("error: {e}\n")),
    };
    let mut roles = Vec::with_capacity(args.roles.len());
    for f in &args.roles {
        match crate::config::read_bounded(f, MAX_INPUT) {
            Ok(text) => roles.push((f.display().to_string(), text)),
            Err(e) => return Outcome::fail(2, format!("error: {e}\n")),
        }
    }
    crate::check::run(&crate::check::CheckArgs {
        cert,
        observed: args.observed,
        roles,
        untrusted: args.untrusted,
        endpoint: args.endpoint,
    })
}

/// Runs a parsed command line and returns what to print and the exit code.
pub async fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Demo => crate::demo::run().await,
        Command::Ca(CaCommand::Init { dir }) => match crate::ca::init(&dir) {
            Ok(config) => Outcome::ok(format!(
                "created {}\nnext: ippin user add --config {} NAME --role pinned-ip\n",
                config.display(),
                config.display()
            )),
            Err(e) => Outcome::fail(1, format!("error: {e}\n")),
        },
        Command::Ca(CaCommand::IssueProxy {
            config,
            name,
            out,
            ttl,
        }) => crate::propagation::cmd::issue_proxy_command(&config, &name, out.as_deref(), &ttl),
        Command::Ca(CaCommand::PropagationKey { audience, out }) => {
            crate::propagation::cmd::propagation_key_command(&audience, &out)
        }
        Command::User(UserCommand::Add {
            config,
            name,
            roles,
        }) => crate::users::add_command(&config, &name, &roles),
        Command::Serve { config } => crate::server::serve_command(&config).await,
        Command::Login(args) => crate::client::login_command(&args).await,
        Command::Ssh(args) => crate::openssh::ssh_command(args).await,
        Command::Inspect(InspectCommand::Proxy { file }) => match read_input(file.as_deref()) {
            Ok(bytes) => crate::inspect::proxy(&bytes),
            Err(e) => Outcome::fail(1, format!("error: {e}\n")),
        },
        Command::Inspect(InspectCommand::Cert { file }) => match read_input(Some(&file)) {
            Ok(bytes) => crate::inspect::cert(&bytes),
            Err(e) => Outcome::fail(1, format!("error: {e}\n")),
        },
        Command::Check(args) => check_command(args),
        Command::Ctl(args) => crate::ctl::ctl_command(&args).await,
    }
}
