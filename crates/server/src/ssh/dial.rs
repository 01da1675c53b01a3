//! Outbound connections made for a session (`direct-tcpip`), and the policy every dial
//! goes through.
//!
//! The destination the client names is resolved here, every resolved address is put to the
//! [`DialPolicy`], and the connection is only made to an address the policy allows. A dial
//! where no address is allowed fails with the policy's reason, which the client sees in the
//! channel-open failure.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ippin_policy::{NetDecision, NetworkRestrictions, canonical_ip};
use tokio::net::TcpStream;

/// The longest host name a client may ask to reach (RFC 1035: 253 characters).
pub const MAX_HOST_LEN: usize = 253;

/// How long resolving a destination name may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most addresses tried for one destination name.
pub const MAX_ADDRESSES: usize = 16;

/// Decides whether the server may connect to an address on a user's behalf.
///
/// Called once per resolved address, with the address in canonical form (an IPv4-mapped IPv6
/// address is given as IPv4), so an implementation never sees `::ffff:a.b.c.d`. The answer is
/// the policy crate's [`NetDecision`], which also shapes the `session.network` audit event.
pub trait DialPolicy: Send + Sync {
    /// The decision for connecting to `dst` for the session of `user`.
    fn decide(&self, user: &str, dst: SocketAddr) -> NetDecision;
}

/// Allows every destination. For a server with no `network_restrictions` resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl DialPolicy for AllowAll {
    fn decide(&self, _user: &str, _dst: SocketAddr) -> NetDecision {
        NetDecision::Allowed
    }
}

/// A fixed `network_restrictions` policy: deny by default, deny overriding allow.
impl DialPolicy for NetworkRestrictions {
    fn decide(&self, _user: &str, dst: SocketAddr) -> NetDecision {
        NetworkRestrictions::decide(self, dst.ip())
    }
}

impl<F: Fn(&str, SocketAddr) -> NetDecision + Send + Sync> DialPolicy for F {
    fn decide(&self, user: &str, dst: SocketAddr) -> NetDecision {
        self(user, dst)
    }
}

/// Why `decision` denied `dst`, for people.
pub fn denial_text(dst: SocketAddr, decision: &NetDecision) -> String {
    match decision {
        NetDecision::Denied {
            matched: Some(rule),
        } => format!("{} matches the deny rule {rule}", dst.ip()),
        NetDecision::Denied { matched: None } => {
            format!("{} is not in any allow rule", dst.ip())
        }
        _ => format!("{} is allowed", dst.ip()),
    }
}

/// Why a dial did not produce a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// The request itself is unusable (port out of range, host name too long).
    BadRequest(String),
    /// Resolution failed or gave nothing.
    Resolve(String),
    /// Every resolved address was denied by the policy; one entry per address.
    Denied(Vec<(SocketAddr, NetDecision)>),
    /// Some addresses were allowed, but no connection could be made. `denied` lists the
    /// addresses the policy refused on the way.
    Connect {
        /// What went wrong with the last allowed address.
        error: String,
        /// The addresses refused by the policy.
        denied: Vec<(SocketAddr, NetDecision)>,
    },
}

impl DialFailure {
    /// The reason shown to the client in the channel-open failure.
    pub(crate) fn message(&self) -> String {
        match self {
            DialFailure::BadRequest(m) | DialFailure::Resolve(m) => m.clone(),
            DialFailure::Denied(list) => match list.as_slice() {
                [(addr, why)] => format!(
                    "ippin: connection to {addr} denied by network restrictions: {}",
                    denial_text(*addr, why)
                ),
                _ => {
                    let parts: Vec<String> =
                        list.iter().map(|(a, why)| denial_text(*a, why)).collect();
                    format!(
                        "ippin: connection denied by network restrictions: {}",
                        parts.join(", ")
                    )
                }
            },
            DialFailure::Connect { error, .. } => format!("ippin: {error}"),
        }
    }

    /// The addresses the policy refused.
    pub(crate) fn denied(&self) -> &[(SocketAddr, NetDecision)] {
        match self {
            DialFailure::Denied(list) | DialFailure::Connect { denied: list, .. } => list,
            _ => &[],
        }
    }
}

/// A connection made, with the addresses refused on the way.
pub(crate) struct Dialed {
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
    pub(crate) denied: Vec<(SocketAddr, NetDecision)>,
}

/// Resolves `host`, puts every address to `policy`, and connects to the first allowed address
/// that answers.
pub(crate) async fn dial(
    policy: &dyn DialPolicy,
    user: &str,
    host: &str,
    port: u32,
) -> Result<Dialed, DialFailure> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| DialFailure::BadRequest(format!("ippin: port {port} is out of range")))?;
    let addrs = resolve(host, port).await?;
    let mut denied = Vec::new();
    let mut last_error = None;
    for addr in addrs {
        let decision = policy.decide(user, addr);
        if !decision.is_allowed() {
            denied.push((addr, decision));
            continue;
        }
        {
            {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        return Ok(Dialed {
                            stream,
                            addr,
                            denied,
                        });
                    }
                    Ok(Err(e)) => last_error = Some(format!("connect to {addr}: {e}")),
                    Err(_) => {
                        last_error = Some(format!(
                            "connect to {addr}: timed out after {CONNECT_TIMEOUT:?}"
                        ))
                    }
                }
            }
        }
    }
    match last_error {
        Some(error) => Err(DialFailure::Connect { error, denied }),
        None => Err(DialFailure::Denied(denied)),
    }
}

/// The canonical addresses of `host`: an IP literal as is (brackets allowed around IPv6),
/// otherwise the resolver's answers, de-duplicated, at most [`MAX_ADDRESSES`].
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DialFailure> {
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(DialFailure::BadRequest(format!(
            "ippin: destination host name must have 1 to {MAX_HOST_LEN} characters"
        )));
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(canonical_ip(ip), port)]);
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| {
            DialFailure::Resolve(format!(
                "ippin: resolving `{host}` timed out after {RESOLVE_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| DialFailure::Resolve(format!("ippin: cannot resolve `{host}`: {e}")))?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in found {
        let addr = SocketAddr::new(canonical_ip(addr.ip()), addr.port());
        if !out.contains(&addr) {
            out.push(addr);
        }
        if out.len() >= MAX_ADDRESSES {
            break;
        }
    }
    if out.is_empty() {
        return Err(DialFailure::Resolve(format!(
            "ippin: `{host}` resolves to no address"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_are_canonical() {
        let a = resolve("::ffff:127.0.0.1", 22).await.unwrap();
        assert_eq!(a, vec!["127.0.0.1:22".parse::<SocketAddr>().unwrap()]);
        let b = resolve("[::1]", 22).await.unwrap();
        assert_eq!(b, vec!["[::1]:22".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_any_policy_call() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let policy = |_: &str, _: SocketAddr| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            NetDecision::Allowed
        };
        for port in [0u32, 65536, u32::MAX] {
            let e = dial(&policy, "alice", "127.0.0.1", port)
                .await
                .err()
                .unwrap();
            assert!(matches!(e, DialFailure::BadRequest(_)), "{e:?}");
        }
        let long = "a".repeat(MAX_HOST_LEN + 1);
        let e = dial(&policy, "alice", &long, 22).await.err().unwrap();
        assert!(matches!(e, DialFailure::BadRequest(_)), "{e:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn denied_address_is_never_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy =
            NetworkRestrictions::from_rules(&["10.0.0.0/8".parse().unwrap()], &[]).unwrap();
        let e = dial(&policy, "alice", "::ffff:127.0.0.1", u32::from(port))
            .await
            .err()
            .unwrap();
        assert_eq!(e.denied().len(), 1);
        assert!(
            e.message().contains("127.0.0.1 is not in any allow rule"),
            "{}",
            e.message()
        );
        // Nothing reached the listener: the first connection it accepts is ours.
        let ours = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, ours.local_addr().unwrap(), "a denied dial connected");
    }
}
