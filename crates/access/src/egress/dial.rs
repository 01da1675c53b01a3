//! Outbound connections made for a session (`direct-tcpip`), and the policy every dial
//! goes through.
//!
//! The destination the client names is resolved here, and every resolved address is turned
//! into the address the kernel will connect to ([`kernel_destination`]: `0.0.0.0` and `::`
//! are loopback). That address is refused when it is one of the server's own listening
//! sockets (`own_listener`, whatever the policy: a forward into ippin would let the client
//! write the PROXY header of a connection that a listener trusts because it comes from the
//! server's own address), then put to the [`DialPolicy`], and the connection is only made to
//! that very address when the policy allows it. A dial where no address is allowed fails with
//! the reasons, which the client sees in the channel-open failure.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ippin_policy::{NetDecision, NetworkRestrictions, canonical_ip, kernel_destination};
use tokio::net::TcpStream;

/// The longest host name a client may ask to reach (RFC 1035: 253 characters).
pub const MAX_HOST_LEN: usize = 253;

/// How long resolving a destination name may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most addresses tried for one destination name.
pub const MAX_ADDRESSES: usize = 16;

/// The most names being resolved at once, in the whole process. The system resolver blocks a
/// thread of tokio's blocking pool for as long as it takes (a name server that never answers
/// holds it past [`RESOLVE_TIMEOUT`], which only stops the waiting): without a bound, clients
/// naming such hosts would take every thread of the pool, and whatever else runs there
/// (password checks, policy reloads) would wait behind them. A name asked for while this many
/// are being resolved is refused at once; addresses given as IP literals are not resolved.
pub const MAX_RESOLVING: usize = 32;

/// Places for lookups in progress; a place is given back when the system resolver returns,
/// not when the waiting for it times out.
static RESOLVING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_RESOLVING);

/// The most of [`MAX_RESOLVING`] one user's dials ([`dial`]) hold at once: a user naming
/// hosts whose name server never answers takes only their share, not every other user's.
pub const MAX_RESOLVING_PER_USER: usize = 8;

/// Lookups in progress per user.
static RESOLVING_BY_USER: std::sync::LazyLock<crate::lockout::NamedPlaces> =
    std::sync::LazyLock::new(|| crate::lockout::NamedPlaces::new(MAX_RESOLVING_PER_USER));

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

/// The stable reason code of a forward into one of the server's own listening sockets.
pub const OWN_LISTENER: &str = "own_listener";

/// Why one address was not connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The network restrictions denied it.
    Policy(NetDecision),
    /// It is one of the server's own listening sockets.
    OwnListener,
}

impl Refused {
    /// The decision recorded in the `session.network` audit event: denied either way.
    pub fn decision(&self) -> NetDecision {
        match self {
            Refused::Policy(d) => *d,
            Refused::OwnListener => NetDecision::Denied { matched: None },
        }
    }

    fn text(&self, dst: SocketAddr) -> String {
        match self {
            Refused::Policy(d) => denial_text(dst, d),
            Refused::OwnListener => format!(
                "{dst} is a listener of this ippin server ({OWN_LISTENER}): forwarding into \
                 ippin itself is never allowed"
            ),
        }
    }
}

/// Whether a connection to `dst` (a kernel destination) would reach one of the sockets in
/// `own` (the server's bound listeners): same port, and the same address, or a listener on
/// the unspecified address (of either family: a dual-stack `[::]` socket takes IPv4 too) and
/// `dst` one of this host's addresses.
pub fn is_own_listener(own: &[SocketAddr], dst: SocketAddr) -> bool {
    let dst_ip = canonical_ip(dst.ip());
    own.iter().any(|l| {
        // A listener on `[::ffff:0.0.0.0]` is an IPv4 wildcard, as one on `0.0.0.0` is.
        let l_ip = canonical_ip(l.ip());
        l.port() == dst.port() && (l_ip == dst_ip || (l_ip.is_unspecified() && is_local(dst_ip)))
    })
}

/// Whether `ip` is an address of this host: loopback, or one a socket can be bound to.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
        // An IPv6 "AnyIP" local route: delivered here, though no socket can bind to it.
        || (ip.is_ipv6() && crate::host::local_networks().iter().any(|n| n.contains(&ip)))
}

/// Why a dial did not produce a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialFailure {
    /// The request itself is unusable (port out of range, host name too long).
    BadRequest(String),
    /// Resolution failed or gave nothing.
    Resolve(String),
    /// Every resolved address was refused; one entry per address.
    Denied(Vec<(SocketAddr, Refused)>),
    /// Some addresses were allowed, but no connection could be made. `denied` lists the
    /// addresses refused on the way.
    Connect {
        /// What went wrong with the last allowed address.
        error: String,
        /// The addresses refused.
        denied: Vec<(SocketAddr, Refused)>,
    },
}

impl DialFailure {
    /// The reason shown to the client in the channel-open failure.
    pub fn message(&self) -> String {
        match self {
            DialFailure::BadRequest(m) | DialFailure::Resolve(m) => m.clone(),
            DialFailure::Denied(list) => match list.as_slice() {
                [(addr, Refused::OwnListener)] => {
                    format!(
                        "ippin: connection to {addr} refused: {}",
                        Refused::OwnListener.text(*addr)
                    )
                }
                [(addr, why)] => format!(
                    "ippin: connection to {addr} denied by network restrictions: {}",
                    why.text(*addr)
                ),
                _ => {
                    let parts: Vec<String> = list.iter().map(|(a, why)| why.text(*a)).collect();
                    format!("ippin: connection refused: {}", parts.join(", "))
                }
            },
            DialFailure::Connect { error, .. } => format!("ippin: {error}"),
        }
    }

    /// The addresses refused.
    pub fn denied(&self) -> &[(SocketAddr, Refused)] {
        match self {
            DialFailure::Denied(list) | DialFailure::Connect { denied: list, .. } => list,
            _ => &[],
        }
    }
}

/// A connection made, with the addresses refused on the way.
#[derive(Debug)]
#[non_exhaustive]
pub struct Dialed {
    /// The connection.
    pub stream: TcpStream,
    /// The address connected to (the one the policy allowed).
    pub addr: SocketAddr,
    /// The addresses refused before it.
    pub denied: Vec<(SocketAddr, Refused)>,
}

/// Resolves `host`, refuses the server's own listeners (`own`), puts every other address to
/// `policy`, and connects to the first allowed address that answers.
///
/// `own` must hold every socket the server listens on (an empty list refuses nothing as
/// `own_listener`: a forward into a listener that trusts this host could then write the
/// PROXY header of its choice). Whether the user may forward at all (the certificate's
/// `permit-port-forwarding`, [`crate::ssh::Authorized::port_forwarding`]) is the caller's to
/// check before dialing.
pub async fn dial(
    policy: &dyn DialPolicy,
    own: &[SocketAddr],
    user: &str,
    host: &str,
    port: u32,
) -> Result<Dialed, DialFailure> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| DialFailure::BadRequest(format!("ippin: port {port} is out of range")))?;
    let addrs = resolve_within(host, port, &RESOLVING, Some(user)).await?;
    let mut denied = Vec::new();
    let mut last_error = None;
    for addr in addrs {
        if is_own_listener(own, addr) {
            denied.push((addr, Refused::OwnListener));
            continue;
        }
        let decision = policy.decide(user, addr);
        if !decision.is_allowed() {
            denied.push((addr, Refused::Policy(decision)));
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

/// How a [`relay`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayEnd {
    /// One side closed the connection, or it failed.
    Closed,
    /// The policy no longer allows the destination (an update denied it): the decision.
    Denied(NetDecision),
}

/// Copies both ways between `client` and `stream`, the connection [`dial`] made to `dst` for
/// `user`, until one side ends; meanwhile `dst` is put to `policy` again every `every`, and
/// the relay stops as soon as the policy no longer allows it, so that a forward open before
/// a policy update is held to the update as a session's own connections are. Both
/// connections are the caller's to drop (and the denial its to record).
pub async fn relay<C>(
    client: &mut C,
    stream: &mut TcpStream,
    policy: &dyn DialPolicy,
    user: &str,
    dst: SocketAddr,
    every: Duration,
) -> RelayEnd
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    let every = every.max(Duration::from_millis(10));
    let copy = tokio::io::copy_bidirectional(client, stream);
    tokio::pin!(copy);
    loop {
        // The same copy is polled again after each check: nothing is lost or repeated.
        if tokio::time::timeout(every, &mut copy).await.is_ok() {
            return RelayEnd::Closed;
        }
        let decision = policy.decide(user, dst);
        if !decision.is_allowed() {
            return RelayEnd::Denied(decision);
        }
    }
}

/// The addresses a connection to `host` reaches ([`kernel_destination`]: canonical, with
/// `0.0.0.0` and `::` as the loopback addresses the kernel connects them to): an IP literal
/// (brackets allowed around IPv6), otherwise the resolver's answers (which also turn `127.1`,
/// `0x7f.1` or `0` into addresses), de-duplicated, at most [`MAX_ADDRESSES`].
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DialFailure> {
    resolve_within(host, port, &RESOLVING, None).await
}

/// [`resolve`], a name taking one of `places` (and, for a user's dial, one of the user's
/// [`MAX_RESOLVING_PER_USER`]) while the system resolver works on it.
async fn resolve_within(
    host: &str,
    port: u16,
    places: &'static tokio::sync::Semaphore,
    user: Option<&str>,
) -> Result<Vec<SocketAddr>, DialFailure> {
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
        return Ok(vec![SocketAddr::new(kernel_destination(ip), port)]);
    }
    let user_place = match user {
        None => None,
        Some(u) => Some(RESOLVING_BY_USER.take(u).ok_or_else(|| {
            DialFailure::Resolve(format!(
                "ippin: cannot resolve `{host}` now: {MAX_RESOLVING_PER_USER} of your names are \
                 being resolved; try again later, or give an address"
            ))
        })?),
    };
    let Ok(place) = places.try_acquire() else {
        return Err(DialFailure::Resolve(format!(
            "ippin: cannot resolve `{host}` now: {MAX_RESOLVING} names are being resolved; \
             try again later, or give an address"
        )));
    };
    let name = host.to_owned();
    let lookup = tokio::task::spawn_blocking(move || {
        // Held until the resolver returns, however long the caller waits.
        let _place = place;
        let _user_place = user_place;
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
            .map(|found| found.take(4 * MAX_ADDRESSES).collect::<Vec<_>>())
    });
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| {
            DialFailure::Resolve(format!(
                "ippin: resolving `{host}` timed out after {RESOLVE_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| DialFailure::Resolve(format!("ippin: cannot resolve `{host}`: {e}")))?
        .map_err(|e| DialFailure::Resolve(format!("ippin: cannot resolve `{host}`: {e}")))?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in found {
        let addr = SocketAddr::new(kernel_destination(addr.ip()), addr.port());
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

    #[test]
    fn a_listener_on_the_mapped_wildcard_is_every_ipv4_address_of_the_host() {
        let own: Vec<SocketAddr> = vec!["[::ffff:0.0.0.0]:4000".parse().unwrap()];
        for dst in [
            "127.0.0.1:4000",
            "127.0.0.2:4000",
            "[::ffff:127.0.0.1]:4000",
        ] {
            assert!(is_own_listener(&own, dst.parse().unwrap()), "{dst}");
        }
        assert!(!is_own_listener(&own, "127.0.0.1:4001".parse().unwrap()));
        // Also an address given exactly, in either spelling.
        let own: Vec<SocketAddr> = vec!["[::ffff:127.0.0.1]:22".parse().unwrap()];
        assert!(is_own_listener(&own, "127.0.0.1:22".parse().unwrap()));
    }

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
            let e = dial(&policy, &[], "alice", "127.0.0.1", port)
                .await
                .err()
                .unwrap();
            assert!(matches!(e, DialFailure::BadRequest(_)), "{e:?}");
        }
        let long = "a".repeat(MAX_HOST_LEN + 1);
        let e = dial(&policy, &[], "alice", &long, 22).await.err().unwrap();
        assert!(matches!(e, DialFailure::BadRequest(_)), "{e:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn denied_address_is_never_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy =
            NetworkRestrictions::from_rules(&["10.0.0.0/8".parse().unwrap()], &[]).unwrap();
        let e = dial(&policy, &[], "alice", "::ffff:127.0.0.1", u32::from(port))
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

    #[tokio::test]
    async fn a_name_is_refused_at_once_when_every_place_to_resolve_is_taken() {
        static TAKEN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
        let e = resolve_within("localhost", 22, &TAKEN, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DialFailure::Resolve(m) if m.contains("names are being resolved")),
            "{e:?}"
        );
        // An address given as such needs no place.
        let a = resolve_within("127.0.0.1", 22, &TAKEN, None).await.unwrap();
        assert_eq!(a, vec!["127.0.0.1:22".parse::<SocketAddr>().unwrap()]);
        // With a place, the same name resolves, and the place is back once it has.
        static ONE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        assert!(
            !resolve_within("localhost", 22, &ONE, None)
                .await
                .unwrap()
                .is_empty()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ONE.available_permits() != 1 {
            assert!(std::time::Instant::now() < deadline, "the place came back");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn one_user_resolves_at_most_their_share_of_names_at_once() {
        let user = "resolver-share-test";
        let held: Vec<_> = (0..MAX_RESOLVING_PER_USER)
            .map(|_| RESOLVING_BY_USER.take(user).unwrap())
            .collect();
        let e = resolve_within("localhost", 22, &RESOLVING, Some(user))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DialFailure::Resolve(m) if m.contains("of your names")),
            "{e:?}"
        );
        // Another user is not held up; an address needs no place.
        assert!(RESOLVING_BY_USER.take("another-user-of-the-test").is_some());
        assert!(
            resolve_within("127.0.0.1", 22, &RESOLVING, Some(user))
                .await
                .is_ok()
        );
        drop(held);
        assert!(
            resolve_within("localhost", 22, &RESOLVING, Some(user))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn unspecified_destinations_are_the_loopback_the_kernel_reaches() {
        for (host, want) in [
            ("0.0.0.0", "127.0.0.1:22"),
            ("[::]", "[::1]:22"),
            ("::ffff:0.0.0.0", "127.0.0.1:22"),
            ("0", "127.0.0.1:22"),
        ] {
            let a = resolve(host, 22).await.unwrap();
            assert_eq!(a, vec![want.parse::<SocketAddr>().unwrap()], "{host}");
        }
    }

    #[tokio::test]
    async fn own_listeners_are_refused_whatever_the_policy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = [listener.local_addr().unwrap()];
        let port = u32::from(own[0].port());
        for host in ["127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "0"] {
            let e = dial(&AllowAll, &own, "bob", host, port)
                .await
                .err()
                .unwrap();
            assert_eq!(e.denied(), &[(own[0], Refused::OwnListener)], "{host}");
            assert!(e.message().contains(OWN_LISTENER), "{}", e.message());
        }
        // A listener on the unspecified address is reached through any local address.
        let any = ["0.0.0.0:4000".parse().unwrap()];
        assert!(is_own_listener(&any, "127.0.0.7:4000".parse().unwrap()));
        assert!(!is_own_listener(&any, "127.0.0.7:4001".parse().unwrap()));
        assert!(!is_own_listener(&any, "192.0.2.1:4000".parse().unwrap()));
        let any6 = ["[::]:4000".parse().unwrap()];
        assert!(is_own_listener(&any6, "127.0.0.1:4000".parse().unwrap()));
        assert!(is_own_listener(&any6, "[::1]:4000".parse().unwrap()));
        // Another port of the same address is not a listener.
        let other = own[0].port().wrapping_add(1).max(1);
        assert!(!is_own_listener(&own, SocketAddr::new(own[0].ip(), other)));
    }
}
