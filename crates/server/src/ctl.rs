//! `ippin ctl`: the client of the admin API (`/v1/admin/resources` on a `tls` listener),
//! with the certificate `ippin login` wrote (docs/cli.md, "ippin ctl").
//!
//! `create -f FILE` validates the file with [`crate::admin::parse_documents`] before
//! anything is sent, so a bad document is reported with its file, line and field and the
//! server never sees it. Output follows Teleport's `tctl`: `role "dev" has been created`,
//! `network restrictions have been updated`. Text that comes from the server is printed with
//! its control characters escaped.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::Outcome;
use crate::admin::{self, Kind, NETWORK_RESTRICTIONS_NAME};
use crate::client::{self, ClientAuth, ClientError, Endpoint};

/// The largest answer `ctl` reads (a `get` of many resources).
pub const MAX_CTL_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The admin API's path.
const RESOURCES: &str = "/v1/admin/resources";

/// `ippin ctl …`
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin API: a `tls` listener, as `HOST:PORT` (or `https://HOST:PORT`).
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// The folder `ippin login --out` wrote (`ippin_tls.pem`, `ippin_tls.key`).
    #[arg(long, global = true, default_value = ".")]
    pub identity: PathBuf,
    /// The CA certificate that signed the listener's certificate (PEM).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The `ippin ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Create the resources of a YAML file (several documents separated by `---`).
    Create {
        /// The file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Replace resources that exist already.
        #[arg(long)]
        force: bool,
    },
    /// Show resources: every one of KIND, or the one named NAME.
    Get {
        /// `role`, `user` or `network_restrictions` (`roles`, `users` also).
        kind: String,
        /// The resource's name.
        name: Option<String>,
        /// How to show them.
        #[arg(long, value_enum, default_value_t = OutputFormat::Yaml)]
        format: OutputFormat,
    },
    /// Delete a resource: `KIND/NAME`, or `network_restrictions`.
    Rm {
        /// `role/NAME`, `user/NAME`, `network_restrictions`.
        resource: String,
    },
}

/// `get --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum OutputFormat {
    /// The documents as YAML, separated by `---`.
    Yaml,
    /// One JSON object (with a NAME) or an array.
    Json,
}

/// `POST` answer.
#[derive(Debug, Deserialize)]
struct Created {
    results: Vec<CreatedOne>,
}

#[derive(Debug, Deserialize)]
struct CreatedOne {
    kind: String,
    name: String,
    action: String,
}

/// A resource as `GET` gives it.
#[derive(Debug, Deserialize)]
struct Item {
    kind: String,
    name: String,
    document: String,
}

#[derive(Debug, Deserialize)]
struct Items {
    items: Vec<Item>,
}

/// Text from the server, safe for a terminal: control characters and bidirectional
/// controls escaped (line breaks and tabs kept when `multiline`).
fn shown(text: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let control = c.is_control() && !(multiline && matches!(c, '\n' | '\t'));
        // U+2028 and U+2029 break lines in some viewers and not in others.
        if control || crate::ssh::text::is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `role "dev" has been created`; `network restrictions have been updated` (also when they
/// were created: there is only ever one).
fn changed(kind: &str, name: &str, action: &str) -> String {
    match Kind::parse(kind) {
        Some(Kind::NetworkRestrictions) => {
            let action = if action == "created" {
                "updated"
            } else {
                action
            };
            format!("network restrictions have been {}", shown(action, false))
        }
        _ => format!(
            "{} \"{}\" has been {}",
            shown(kind, false),
            shown(name, false).replace('"', "\\\""),
            shown(action, false)
        ),
    }
}

/// The lines of `create`'s output from the server's answer.
fn created_output(answer: &[u8]) -> Result<String, String> {
    let created: Created =
        serde_json::from_slice(answer).map_err(|e| format!("unexpected answer: {e}"))?;
    let mut out = String::new();
    for r in &created.results {
        if !matches!(r.action.as_str(), "created" | "updated") {
            return Err(format!(
                "unexpected answer: action `{}`",
                shown(&r.action, false)
            ));
        }
        out.push_str(&changed(&r.kind, &r.name, &r.action));
        out.push('\n');
    }
    Ok(out)
}

/// `get`'s output: the documents (YAML, `---` between them) or JSON (an object for `one`,
/// else an array).
fn get_output(items: &[Item], one: bool, format: OutputFormat) -> Result<String, String> {
    match format {
        OutputFormat::Yaml => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&shown(&item.document, true));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            Ok(out)
        }
        OutputFormat::Json => {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                let source = format!("{}/{}", shown(&item.kind, false), shown(&item.name, false));
                values.push(
                    admin::document_to_json(&source, &item.document)
                        .map_err(|e| format!("unexpected answer: {e}"))?,
                );
            }
            let value = match (one, values.pop()) {
                (true, Some(v)) if values.is_empty() => v,
                (true, _) => return Err("unexpected answer: not one resource".into()),
                (false, last) => {
                    values.extend(last);
                    serde_json::Value::Array(values)
                }
            };
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            Ok(shown(&text, true))
        }
    }
}

/// `KIND/NAME` of `rm` (`network_restrictions` alone is the one resource of its kind).
fn parse_target(text: &str) -> Result<(Kind, String), String> {
    let (kind_text, name) = match text.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (text, None),
    };
    let kind = Kind::parse(kind_text).ok_or_else(|| unknown_kind(kind_text))?;
    let name = match (kind, name) {
        (Kind::NetworkRestrictions, None) => NETWORK_RESTRICTIONS_NAME.to_owned(),
        (_, Some(n)) => n.to_owned(),
        (_, None) => {
            return Err(format!(
                "`{}`: write KIND/NAME, as `role/dev`",
                text.escape_default()
            ));
        }
    };
    kind.check_name(&name)?;
    Ok((kind, name))
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "unknown kind `{}` (expected `role`, `user` or `network_restrictions`)",
        kind.escape_default()
    )
}

/// The server's refusal: its message and code.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (v["error"].as_str(), v["message"].as_str()) {
        (Some(code), Some(m)) if !m.is_empty() => {
            format!("{} ({})", shown(m, false), shown(code, false))
        }
        (Some(code), _) => format!("HTTP {}: {}", status.as_u16(), shown(code, false)),
        _ => format!("HTTP {}", status.as_u16()),
    }
}

/// Where and as whom to call.
struct Target {
    /// As the user wrote it, for messages.
    server: String,
    host: String,
    port: u16,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn read(path: &Path) -> Result<String, String> {
    crate::config::read_bounded(path, crate::config::MAX_CONFIG_BYTES).map_err(|e| e.to_string())
}

impl Target {
    fn new(args: &CtlArgs) -> Result<Target, String> {
        let server = args.server.clone().ok_or(
            "the admin API's address is needed: pass --server HOST:PORT (a `tls` listener)",
        )?;
        let url = if server.starts_with("https://") {
            server.clone()
        } else {
            format!("https://{server}")
        };
        let (host, port) = client::parse_server(&url)?;
        let ca = args.ca.as_ref().ok_or(
            "the CA that signed the server's certificate is needed: pass --ca FILE \
             (ca/tls_ca.pem from `ippin ca init`)",
        )?;
        Ok(Target {
            server,
            host,
            port,
            ca_pem: read(ca)?,
            // The identity folder and its files must be this user's alone (as for `ippin
            // ssh`): a certificate and key planted by another user would make every change
            // theirs.
            cert_pem: client::read_identity_file(&args.identity, "ippin_tls.pem", false)?,
            key_pem: client::read_identity_file(&args.identity, "ippin_tls.key", true)?,
        })
    }

    /// One exchange with the first address of the server that connects.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!("cannot reach the admin API at {}: {e}", self.server)
        };
        let addrs: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
                Ok(addrs) => addrs.take(8).collect(),
                Err(e) => return Err(unreachable(&e)),
            },
        };
        let auth = ClientAuth {
            cert_pem: &self.cert_pem,
            key_pem: &self.key_pem,
        };
        let mut last: Option<ClientError> = None;
        for addr in addrs {
            let mut ep = Endpoint::new(addr, self.ca_pem.clone());
            ep.server_name = self.host.clone();
            if body.is_some() {
                ep = ep.with_header("content-type", "application/yaml");
            }
            let answer = client::request_bounded(
                &ep,
                Some(auth),
                method.clone(),
                path,
                body.clone(),
                MAX_CTL_ANSWER_BYTES,
            )
            .await;
            match answer {
                Ok(a) => return Ok(a),
                // Not connected: the next address.
                Err(e @ ClientError::Io { .. }) => last = Some(e),
                // A local problem (the CA, the identity): not the server's.
                Err(ClientError::Local(m)) => return Err(m),
                Err(e) => return Err(unreachable(&e)),
            }
        }
        Err(match last {
            Some(e) => unreachable(&e),
            None => unreachable(&"no address"),
        })
    }
}

/// Reads the file of `create -f`: at most [`admin::MAX_TEXT_BYTES`] (one byte more is read
/// to tell a larger file), UTF-8.
fn read_documents(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let name = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(admin::MAX_TEXT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() > admin::MAX_TEXT_BYTES {
        return Err(format!(
            "{name}: larger than {} bytes",
            admin::MAX_TEXT_BYTES
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{name}: not UTF-8: {e}"))
}

/// `ippin ctl`.
pub async fn ctl_command(args: &CtlArgs) -> Outcome {
    match run(args).await {
        Ok(out) => Outcome::ok(out),
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
}

async fn run(args: &CtlArgs) -> Result<String, String> {
    match &args.command {
        CtlCommand::Create { file, force } => {
            let text = read_documents(file)?;
            // Checked here first: a bad document is never sent.
            admin::parse_documents(&file.display().to_string(), &text)
                .map_err(|e| e.to_string())?;
            let target = Target::new(args)?;
            let path = if *force {
                format!("{RESOURCES}?force=1")
            } else {
                RESOURCES.to_owned()
            };
            let (status, answer) = target
                .call(Method::POST, &path, Some(text.into_bytes()))
                .await?;
            if status != StatusCode::OK {
                return Err(refusal(status, &answer));
            }
            created_output(&answer)
        }
        CtlCommand::Get { kind, name, format } => {
            let kind = Kind::parse(kind).ok_or_else(|| unknown_kind(kind))?;
            if let Some(n) = name {
                kind.check_name(n)?;
            }
            let target = Target::new(args)?;
            let path = match name {
                Some(n) => format!("{RESOURCES}/{kind}/{n}"),
                None => format!("{RESOURCES}/{kind}"),
            };
            let (status, answer) = target.call(Method::GET, &path, None).await?;
            if status != StatusCode::OK {
                return Err(refusal(status, &answer));
            }
            let items = if name.is_some() {
                vec![
                    serde_json::from_slice::<Item>(&answer)
                        .map_err(|e| format!("unexpected answer: {e}"))?,
                ]
            } else {
                serde_json::from_slice::<Items>(&answer)
                    .map_err(|e| format!("unexpected answer: {e}"))?
                    .items
            };
            get_output(&items, name.is_some(), *format)
        }
        CtlCommand::Rm { resource } => {
            let (kind, name) = parse_target(resource)?;
            let target = Target::new(args)?;
            let path = format!("{RESOURCES}/{kind}/{name}");
            let (status, answer) = target.call(Method::DELETE, &path, None).await?;
            if status != StatusCode::OK {
                return Err(refusal(status, &answer));
            }
            Ok(format!("{}\n", changed(kind.as_str(), &name, "deleted")))
        }
    }
}

#[cfg(test)]
mod tests;
