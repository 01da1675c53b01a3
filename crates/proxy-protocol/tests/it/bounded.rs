//! The bound on headers in flight ([`HeaderSlots`], [`accept_bounded`]) and
//! the owned listener, over real sockets on 127.0.0.1. Waits are bounded;
//! timing assertions use lower bounds the timer guarantees and upper bounds
//! with a wide margin.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ippin_proxy_protocol::{
    AcceptError, Accepted, HeaderSlots, ListenerOptions, ListenerPolicy, ProxyListener, ProxyMode,
    Refusal, accept_bounded,
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

// The owned listener.

/// A client that connects, sends `sent`, then reads until the server closes;
/// yields what it read and how long after its connect began the close came.
fn client(addr: SocketAddr, sent: &'static [u8]) -> tokio::task::JoinHandle<(Vec<u8>, Duration)> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let mut got = Vec::new();
        // A reset counts as the close too.
        let _ = s.read_to_end(&mut got).await;
        (got, start.elapsed())
    })
}

/// The next result of `listener`, within 10 s.
async fn next(listener: &mut ProxyListener) -> Result<Accepted<TcpStream>, AcceptError> {
    tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the listener yielded nothing in 10 s")
}

async fn listener(policy: ListenerPolicy, options: ListenerOptions) -> ProxyListener {
    ProxyListener::bind("127.0.0.1:0", policy, options)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_listener_ends_each_silent_connection_within_its_own_timeout() {
    const N: usize = 2;
    let timeout = Duration::from_millis(1000);
    let options = ListenerOptions::default()
        .with_max_pending(N)
        .with_header_timeout(timeout);
    let mut l = listener(policy(), options).await;
    let clients: Vec<_> = (0..N + 5).map(|_| client(l.local_addr(), b"")).collect();
    let mut refused_in_stage = 0;
    for _ in 0..N + 5 {
        let err = next(&mut l).await.map(drop).unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        if err.refusal() == Some(&Refusal::Timeout) {
            refused_in_stage += 1;
        }
        assert!(l.header_slots().in_use() <= N);
    }
    // The first N had slots at once; the others waited, and whether a slot
    // freed before their deadline or not, their own timeout ended them.
    assert!(refused_in_stage >= N, "{refused_in_stage}");
    for c in clients {
        let (got, elapsed) = c.await.unwrap();
        assert!(got.is_empty());
        assert!(elapsed >= timeout, "{elapsed:?}");
        // Counted from a slot, the waiting ones would last about 2 s.
        assert!(elapsed < Duration::from_millis(1700), "{elapsed:?}");
    }
}

#[tokio::test]
async fn a_slow_header_does_not_block_a_fast_one() {
    let mut l = listener(policy(), ListenerOptions::default()).await;
    let slow = client(l.local_addr(), b"PROXY TCP4 198.51");
    wait_for("the slow header to be in its stage", || {
        l.header_slots().in_use() == 1
    })
    .await;
    let fast = client(
        l.local_addr(),
        b"PROXY TCP4 192.0.2.1 203.0.113.10 4000 443\r\nhi",
    );
    let a = next(&mut l).await.unwrap();
    assert_eq!(a.observed.addr, "192.0.2.1:4000".parse().unwrap());
    assert!(a.observed.trusted);
    let mut stream = a.stream;
    let mut got = [0u8; 2];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hi");
    stream.write_all(b"bye").await.unwrap();
    drop(stream);
    assert_eq!(fast.await.unwrap().0, b"bye");
    // The slow one is still in its stage (default timeout 5 s).
    assert_eq!(l.header_slots().in_use(), 1);
    drop(l);
    // Dropping the listener closes it.
    let (got, elapsed) = slow.await.unwrap();
    assert!(got.is_empty());
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_good_connection_behind_stalled_ones_is_served_through_the_listener() {
    const N: usize = 2;
    let timeout = Duration::from_millis(1500);
    let options = ListenerOptions::default()
        .with_max_pending(N)
        .with_header_timeout(timeout);
    let mut l = listener(policy(), options).await;
    let start = Instant::now();
    let stalled: Vec<_> = (0..N).map(|_| client(l.local_addr(), b"")).collect();
    wait_for("the stalled connections to hold every slot", || {
        l.header_slots().in_use() == N
    })
    .await;
    // Arriving 0.5 s later, it has 0.5 s left when their slots free.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let good = client(
        l.local_addr(),
        b"PROXY TCP4 192.0.2.9 203.0.113.10 4000 443\r\nSSH-2.0-x\r\n",
    );
    let mut served = None;
    let mut timeouts = 0;
    for _ in 0..N + 1 {
        match next(&mut l).await {
            Ok(a) => served = Some((a, start.elapsed())),
            Err(e) => {
                assert_eq!(e.refusal(), Some(&Refusal::Timeout));
                timeouts += 1;
            }
        }
    }
    assert_eq!(timeouts, N);
    let (a, at) = served.expect("the good connection was served");
    // Only once a stalled one gave its slot back.
    assert!(at >= timeout, "{at:?}");
    assert_eq!(a.observed.addr, "192.0.2.9:4000".parse().unwrap());
    assert_eq!(a.stream.buffered(), b"SSH-2.0-x\r\n");
    drop(a);
    assert!(good.await.unwrap().0.is_empty());
    for s in stalled {
        assert!(s.await.unwrap().0.is_empty());
    }
}

#[tokio::test]
async fn the_listener_yields_the_policy_refusals_typed() {
    let strict = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
    for (policy, sent, want) in [
        (strict, V1, "untrusted_proxy"),
        (ListenerPolicy::new(ProxyMode::Off), V1, "header_forbidden"),
        (policy(), &b"SSH-2.0-x\r\n"[..], "header_required"),
        (
            policy(),
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 443\r\n"[..],
            "invalid_header",
        ),
    ] {
        let mut l = listener(policy, ListenerOptions::default()).await;
        let c = client(l.local_addr(), sent);
        let err = next(&mut l).await.map(drop).unwrap_err();
        assert!(matches!(err, AcceptError::Refused { .. }), "{err:?}");
        assert_eq!(err.code(), want);
        // Closed without a byte written.
        assert!(c.await.unwrap().0.is_empty());
    }
}

// The rule, on paused time (exact instants): N connections stall in the
// header stage for `hold`; another arrives `offset` later with `timeout`.
// Its deadline is `offset + timeout` from the start, whatever it waited.
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn the_deadline_covers_the_wait_for_a_slot(
        n in 1usize..4,
        hold_ms in 1u64..5000,
        offset_ms in 0u64..5000,
        timeout_ms in 1u64..5000,
        good: bool,
    ) {
        proptest::prop_assume!(offset_ms < hold_ms);
        proptest::prop_assume!(offset_ms + timeout_ms != hold_ms);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let (hold, offset, timeout) = (
                Duration::from_millis(hold_ms),
                Duration::from_millis(offset_ms),
                Duration::from_millis(timeout_ms),
            );
            let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
            let slots = HeaderSlots::new(n);
            let mut keep = Vec::new();
            for _ in 0..n {
                let (client, server) = tokio::io::duplex(64);
                keep.push(client);
                let slots = slots.clone();
                tokio::spawn(async move {
                    accept_bounded(server, peer, &policy(), hold, &slots).await.map(drop)
                });
            }
            while slots.in_use() < n {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(offset).await;
            let (mut client, server) = tokio::io::duplex(256);
            if good {
                client.write_all(V1).await.unwrap();
                client.write_all(b"x").await.unwrap();
            }
            let start = tokio::time::Instant::now();
            let r = accept_bounded(server, peer, &policy(), timeout, &slots).await.map(drop);
            let took = start.elapsed();
            let (want, want_took) = if hold < offset + timeout {
                // A slot frees at `hold`, before its deadline.
                if good {
                    (Ok(()), hold - offset)
                } else {
                    (Err(AcceptError::Refused { peer, refusal: Refusal::Timeout }), timeout)
                }
            } else {
                (Err(AcceptError::NoSlot { peer, waited: took }), timeout)
            };
            assert_eq!(r, want);
            let diff = took.abs_diff(want_took);
            assert!(diff <= Duration::from_millis(2), "{took:?} vs {want_took:?}");
            drop((client, keep));
        });
    }
}

/// A flood of refused connections nobody takes from the listener does not queue ahead of
/// a good one: refusals take a place in the hand-over queue only when there is room (at
/// most 64 of them), so the good connection comes out after at most that many.
#[tokio::test]
async fn a_flood_of_refusals_does_not_queue_ahead_of_a_good_connection() {
    const FLOOD: usize = 150;
    let mut l = listener(policy(), ListenerOptions::default()).await;
    // Mode on: a connection that starts with anything but a header is refused at once.
    let refused: Vec<_> = (0..FLOOD)
        .map(|_| client(l.local_addr(), b"SSH-2.0-x\r\n"))
        .collect();
    for c in refused {
        let (got, _) = c.await.unwrap();
        assert!(got.is_empty());
    }
    wait_for("every refused connection decided", || {
        l.header_slots().in_use() == 0
    })
    .await;
    let good = client(
        l.local_addr(),
        b"PROXY TCP4 192.0.2.1 203.0.113.10 4000 443\r\nhi",
    );
    let mut reports = 0u64;
    let accepted = loop {
        match next(&mut l).await {
            Ok(a) => break a,
            Err(e) => {
                assert_eq!(e.refusal(), Some(&Refusal::HeaderRequired), "{e:?}");
                reports += 1;
            }
        }
    };
    assert_eq!(accepted.observed.addr, "192.0.2.1:4000".parse().unwrap());
    assert!(
        reports <= 64,
        "{reports} refusals came out before the good connection"
    );
    // None is lost without a trace: those not reported one by one are counted.
    wait_for("every refusal reported or counted", || {
        reports + l.unreported_refusals() == FLOOD as u64
    })
    .await;
    drop(accepted);
    let _ = good.await;
}

/// With the mode `on`, a peer outside the trusted proxies is refused whatever it would
/// send: at once, before a slot is taken or a byte read, even with every slot held; so
/// such peers cannot hold the slots trusted proxies need.
#[tokio::test]
async fn an_untrusted_peer_of_a_mode_on_listener_is_refused_without_a_slot() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slots = HeaderSlots::new(1);
    let holders = stall(&listener, &slots, 1, Duration::from_secs(4)).await;
    assert_eq!(slots.in_use(), 1);
    let only_elsewhere = ListenerPolicy::new(ProxyMode::On)
        .with_trusted_proxies(vec!["192.0.2.0/24".parse().unwrap()]);
    let (_client, server, peer) = pair(&listener).await;
    let start = Instant::now();
    let err = accept_bounded(
        server,
        peer,
        &only_elsewhere,
        Duration::from_secs(3),
        &slots,
    )
    .await
    .map(drop)
    .unwrap_err();
    assert!(
        matches!(
            &err,
            AcceptError::Refused {
                refusal: Refusal::UntrustedProxy { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        slots.in_use(),
        1,
        "the held slot is still the stalled one's"
    );
    // The sans-IO step says the same before any byte.
    assert!(matches!(
        only_elsewhere.step(peer, b"", false),
        ippin_proxy_protocol::Step::Refuse(Refusal::UntrustedProxy { .. })
    ));
    for (client, task) in holders {
        let _ = task.await;
        drop(client);
    }
}
