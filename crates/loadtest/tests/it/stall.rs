//! 1,000 never-sending and 100 one-byte-per-second connections.

use std::time::Duration;

use ippin_loadtest::stall::{StallParams, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_at_header_timeout_while_a_client_is_served() {
    let p = StallParams {
        stalled: 1_000,
        slow: 100,
        header_timeout: Duration::from_secs(2),
        margin: Duration::from_secs(4),
        connect_concurrency: 128,
        // More than MAX_HANDSHAKES (4,096): when they are all in the
        // handshake at once the server sheds the oldest (reported).
        tls_stalled: 4_500,
    };
    let r = run(&crate::exe(), &p).await.expect("stall run");
    let failures = r.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{r:#?}");
    // Every attacker was counted, and each one was closed by the server.
    assert_eq!(r.stalled.opened, 1_000);
    assert_eq!(r.slow.opened, 100);
    assert_eq!(r.stalled.closed_in_time + r.slow.closed_in_time, 1_100);
    // They were pending at the same time (not served one batch at a time).
    assert!(
        r.server.peak_fds.fds >= r.server.baseline.fds + 1_000,
        "peak {} baseline {}",
        r.server.peak_fds.fds,
        r.server.baseline.fds
    );
    assert!(r.valid_ok > 0 && r.valid_failed == 0);
    // The handshake stallers: every one closed by the server (shed or at
    // HANDSHAKE_TIMEOUT), and the valid client served meanwhile (above).
    assert_eq!(r.tls_stalled.opened, 4_500);
    assert_eq!(r.tls_stalled.closed_in_time, 4_500);
}
