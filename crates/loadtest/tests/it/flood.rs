//! A CI-sized flood: 3,000 forward-listener connects (at most 600/s) and
//! 200 bad logins from 127.0.0.2-9, with the inner's replay capacity
//! (1,000) below the flood's size; the real user at 127.0.0.1 never fails.

use std::time::Duration;

use ippin_loadtest::flood::{FloodParams, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_user_is_served_through_a_flood_of_forward_connects_and_bad_logins() {
    let p = FloodParams {
        forward_connects: 3_000,
        forward_rate: 600,
        bad_logins: 200,
        login_concurrency: 8,
        replay_capacity: 1_000,
        deadline: Duration::from_secs(120),
    };
    let r = run(&crate::exe(), &p).await.expect("flood run");
    let failures = r.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{r:#?}");
    assert!(r.forward_sent >= 2_700, "{r:#?}");
    assert!(r.valid_ok >= 2, "{r:#?}");
    assert_eq!(r.bad_logins.values().sum::<usize>(), 200, "{r:#?}");
    assert!(!r.inner_refused.contains_key("replay_cache_full"), "{r:#?}");
}
