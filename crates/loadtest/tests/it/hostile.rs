//! Every committed PROXY and certificate seed, ten rounds at full rate.

use std::time::Duration;

use ippin_loadtest::hostile::{HostileParams, default_corpus, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_seeds_as_prefixes_and_client_certificates_neither_crash_nor_leak() {
    let p = HostileParams {
        corpus: default_corpus(),
        rounds: 10,
        concurrency: 32,
        header_timeout: Duration::from_secs(2),
    };
    let r = run(&crate::exe(), &p).await.expect("hostile run");
    let failures = r.failures();
    assert!(failures.is_empty(), "{failures:#?}\n{r:#?}");
    assert!(r.proxy_seeds >= 10 && r.cert_probers >= 10, "{r:#?}");
    // Every hostile connection ended one way or the other, and none of
    // the certificates was served a 200 or a 5xx.
    let answered: usize = r.counts.answered.values().sum();
    assert_eq!(r.counts.sent, r.counts.refused + answered);
    assert_eq!(r.counts.sent, 10 * (4 * r.proxy_seeds + r.cert_probers));
    assert!(
        r.counts.answered.keys().all(|s| *s == 403),
        "{:?}",
        r.counts.answered
    );
    assert_eq!(r.exit_code, Some(0));
}
