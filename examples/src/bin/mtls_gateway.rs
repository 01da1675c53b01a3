//! A mutual-TLS gateway behind a trusted L4 load balancer, built on `ippin-access`.
//!
//! Every connection must start with a PROXY header from the balancer (127.0.0.1 here), then
//! present a client certificate from our CA. A user whose roles require a pin is served only
//! from the IP pinned in their certificate. Each decision is printed as a JSON audit line.
//!
//! Usage: `mtls_gateway DIR` where DIR holds `ca.pem`, `server.pem`, `server.key` and
//! `users` (one `name` or `name pinned` per line). Prints `listening on ADDR`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ippin_access::tls::{IdentityCache, TlsAccess};
use ippin_access::{User, rustls::check, rustls::server_config_from_pem, tokio::accept};
use ippin_proxy_protocol::{ListenerPolicy, ProxyMode};
use std::io::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: mtls_gateway DIR")?);
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let tls = server_config_from_pem(&read("ca.pem")?, &read("server.pem")?, &read("server.key")?)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    // Who may come in, and whose roles require a pin.
    let mut users = HashMap::new();
    for line in read("users")?.lines() {
        let pinned = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [] => continue,
            [name] => (name, false),
            [name, "pinned"] => (name, true),
            _ => return Err(format!("users: cannot read {line:?}").into()), // fail closed
        };
        // Access comes from roles: a user without any is refused (`unknown_user`).
        let role = if pinned.1 { "pinned" } else { "user" };
        users.insert(pinned.0.to_owned(), User::new(pinned.1, vec![role.into()]));
    }
    let state = Arc::new((users, IdentityCache::default()));
    // Only the balancer may send a PROXY header, and it must.
    let policy = Arc::new(
        ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(vec!["127.0.0.1/32".parse()?]),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
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
        let (acceptor, policy, state) = (acceptor.clone(), policy.clone(), state.clone());
        tokio::spawn(async move {
            let Ok((observed, stream)) = accept(tcp, peer, &policy, Duration::from_secs(5)).await
            else {
                return; // no valid header from the balancer: closed, nothing written
            };
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            // One read of the request (bounded): this gateway answers every request alike.
            let mut request = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut request)).await;
            // Audit lines go to stdout; a failed write refuses the connection (fail closed).
            let sink = |e| {
                let line = serde_json::to_string(&e).unwrap_or_default();
                !line.is_empty() && writeln!(std::io::stdout().lock(), "{line}").is_ok()
            };
            let now = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
            let verdict = check(tls.get_ref().1, &state.1, &state.0, &observed, now, &sink);
            let (status, body) = match &verdict.access {
                TlsAccess::Allow => (
                    "200 OK",
                    format!("hello {} from {}\n", verdict.user, observed.ip()),
                ),
                TlsAccess::Deny { reason, message } => {
                    ("403 Forbidden", format!("{reason}: {message}\n"))
                }
                _ => ("503 Service Unavailable", "audit unavailable\n".to_owned()),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}
