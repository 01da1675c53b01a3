//! A 25-second soak: hostile rounds, stalled connections and a valid user.

use std::time::Duration;

use ippin_loadtest::hostile::default_corpus;
use ippin_loadtest::soak::{SoakParams, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_for_25_seconds_keeps_memory_flat_and_users_served() {
    let p = SoakParams {
        duration: Duration::from_secs(25),
        sample_every: Duration::from_millis(500),
        corpus: default_corpus(),
        concurrency: 32,
        stalled_per_round: 50,
        header_timeout: Duration::from_secs(2),
    };
    let r = run(&crate::exe(), &p).await.expect("soak run");
    let failures = r.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{r:#?}");
    assert!(r.rounds >= 2 && r.valid_ok > 0, "{r:#?}");
    assert_eq!(r.stalled_not_closed, 0);
    assert_eq!(r.exit_code, Some(0));
}
