//! The bound on headers in flight ([`HeaderSlots`], [`accept_bounded`]) and
//! the owned listener, over real sockets on 127.0.0.1. Waits are bounded;
//! timing assertions use lower bounds the timer guarantees and upper bounds
//! with a wide margin.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ippin_proxy_protocol::{
    AcceptError, HeaderSlots, ListenerPolicy, ProxyMode, Refusal, accept_bounded,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const V1: &[u8] = b"PROXY TCP4 198.51.100.7 203.0.113.10 51234 443\r\n";

fn policy() -> ListenerPolicy {
    ListenerPolicy::new(ProxyMode::On).with_trusted_proxies(crate::any_peer())
}

/// Polls `cond` every 10 ms for at most 10 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A connected pair: the client socket and the server side with its peer.
async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (server, peer) = accepted.unwrap();
    (client.unwrap(), server, peer)
}

/// Starts `n` silent connections, each in the header stage for `timeout`;
/// returns once all `n` hold a slot. The handles yield each result.
async fn stall(
    listener: &TcpListener,
    slots: &HeaderSlots,
    n: usize,
    timeout: Duration,
) -> Vec<(TcpStream, tokio::task::JoinHandle<Result<(), AcceptError>>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (client, server, peer) = pair(listener).await;
        let slots = slots.clone();
        let task = tokio::spawn(async move {
            accept_bounded(server, peer, &policy(), timeout, &slots)
                .await
                .map(drop)
        });
        out.push((client, task));
    }
    wait_for("the stalled connections to hold their slots", || {
        slots.in_use() == n
    })
    .await;
    out
}

#[tokio::test]
async fn with_every_slot_held_the_next_connections_time_out_waiting() {
    const N: usize = 2;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slots = HeaderSlots::new(N);
    let holders = stall(&listener, &slots, N, Duration::from_secs(4)).await;
    // N + 5 in all: the five past the bound each wait, and their own 700 ms
    // timeout, counted from their accept, ends the wait.
    let timeout = Duration::from_millis(700);
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let (client, server, peer) = pair(&listener).await;
        let slots = slots.clone();
        waiting.push((
            client,
            peer,
            tokio::spawn(async move {
                let start = Instant::now();
                let r = accept_bounded(server, peer, &policy(), timeout, &slots).await;
                (r.map(drop), start.elapsed())
            }),
        ));
    }
    for (client, peer, task) in waiting {
        let (r, elapsed) = task.await.unwrap();
        let err = r.unwrap_err();
        assert!(
            matches!(err, AcceptError::NoSlot { peer: p, waited } if p == peer && waited >= timeout),
            "{err:?}"
        );
        assert_eq!(err.code(), "header_slots_full");
        assert!(err.is_timeout());
        assert!(elapsed >= timeout, "{elapsed:?}");
        // Well before the holders' 4 s run out.
        assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
        drop(client);
    }
    // The bound held throughout, and the holders still hold it.
    assert_eq!(slots.in_use(), N);
    for (client, task) in holders {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.refusal(), Some(&Refusal::Timeout));
        drop(client);
    }
    assert_eq!(slots.in_use(), 0);
}

#[tokio::test]
async fn the_wait_for_a_slot_counts_against_the_header_timeout() {
    const N: usize = 2;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slots = HeaderSlots::new(N);
    let hold = Duration::from_millis(1500);
    let holders_start = Instant::now();
    let holders = stall(&listener, &slots, N, hold).await;
    // A silent connection with a 2.5 s timeout: it gets a slot when the
    // holders time out (about 1.5 s in), then has what is left of its 2.5 s,
    // not 2.5 s more.
    let timeout = Duration::from_millis(2500);
    let (client, server, peer) = pair(&listener).await;
    let start = Instant::now();
    let r = accept_bounded(server, peer, &policy(), timeout, &slots).await;
    let elapsed = start.elapsed();
    let err = r.map(drop).unwrap_err();
    // It got a slot (the holders freed theirs before its deadline), and its
    // header did not come in the time left.
    assert_eq!(
        err,
        AcceptError::Refused {
            peer,
            refusal: Refusal::Timeout
        }
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    // Counted from the slot it would be about 1.5 + 2.5 s.
    let from_slot = hold + timeout - start.duration_since(holders_start);
    assert!(
        elapsed + Duration::from_millis(500) < from_slot,
        "{elapsed:?} vs {from_slot:?}"
    );
    for (c, task) in holders {
        assert!(task.await.unwrap().unwrap_err().is_timeout());
        drop(c);
    }
    drop(client);
}

#[tokio::test]
async fn a_good_connection_behind_stalled_ones_is_served_when_a_slot_frees() {
    const N: usize = 2;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slots = HeaderSlots::new(N);
    let hold = Duration::from_millis(1000);
    let holders_start = Instant::now();
    let holders = stall(&listener, &slots, N, hold).await;
    let (mut client, server, peer) = pair(&listener).await;
    client.write_all(V1).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    let a = accept_bounded(server, peer, &policy(), Duration::from_secs(5), &slots)
        .await
        .unwrap();
    // Not before a holder gave its slot back.
    assert!(holders_start.elapsed() >= hold);
    assert_eq!(a.observed.addr, "198.51.100.7:51234".parse().unwrap());
    let mut stream = a.stream;
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    for (c, task) in holders {
        assert!(task.await.unwrap().unwrap_err().is_timeout());
        drop(c);
    }
}

#[tokio::test]
async fn refusals_come_out_typed_and_give_the_slot_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slots = HeaderSlots::new(1);
    // 127.0.0.1 is not a trusted proxy here.
    let strict = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
    for (policy, sent, want) in [
        (strict, V1, "untrusted_proxy"),
        (ListenerPolicy::new(ProxyMode::Off), V1, "header_forbidden"),
        (policy(), &b"SSH-2.0-x\r\n"[..], "header_required"),
    ] {
        let (mut client, server, peer) = pair(&listener).await;
        client.write_all(sent).await.unwrap();
        let err = accept_bounded(server, peer, &policy, Duration::from_secs(5), &slots)
            .await
            .map(drop)
            .unwrap_err();
        assert!(matches!(err, AcceptError::Refused { peer: p, .. } if p == peer));
        assert_eq!(err.code(), want);
        assert!(!err.is_timeout());
        assert_eq!(slots.in_use(), 0);
    }
}
