//! The server's HTTP layer (`ippin::http::serve_one`, hyper with the
//! server's limits, and `read_json` for the body) on arbitrary bytes from a
//! client that then closes its side.
//!
//! Beyond "no panic" and no hang: at most one response per connection (no
//! keep-alive, so the pin check made for the connection covers exactly one
//! request); a response is an HTTP/1.x status line; a request the handler
//! saw but could not use gets the JSON `{error, message}` body with a 4xx
//! status; the handler is called at most once.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;

/// Statuses the handler answers with: 200 for a JSON object body, 400, 413
/// and 415 from `read_json`.
const HANDLER_STATUSES: [&str; 4] = ["200", "400", "413", "415"];

fuzz_target!(|data: &[u8]| {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let answer = ippin::http::serve_bytes(data, move |req| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match ippin::http::read_json::<BTreeMap<String, u64>>(req).await {
                Ok(map) => ippin::http::json(200u16.try_into().expect("status"), &map.len()),
                Err(refusal) => refusal,
            }
        }
    })
    .expect("in-memory exchange");
    let calls = calls.load(Ordering::SeqCst);
    assert!(calls <= 1, "{calls} requests served on one connection");
    if answer.is_empty() {
        assert_eq!(calls, 0, "the handler answered, but nothing was sent");
        return;
    }
    let text = String::from_utf8_lossy(&answer);
    // `Expect: 100-continue` gets the interim answer first, once.
    let text = text
        .strip_prefix("HTTP/1.1 100 Continue\r\n\r\n")
        .unwrap_or(&text);
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    assert!(
        text.starts_with("HTTP/1.1 ") || text.starts_with("HTTP/1.0 "),
        "{text:?}"
    );
    let responses = text.matches("\r\nHTTP/1.").count() + 1;
    assert_eq!(responses, 1, "{text:?}");
    let status = text.get(9..12).expect("status code");
    if calls == 1 {
        assert!(HANDLER_STATUSES.contains(&status), "{text:?}");
        let (_, body) = text.split_once("\r\n\r\n").expect("head ends");
        if status == "200" {
            assert!(body.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        } else {
            assert!(body.starts_with("{\"error\":\"bad_request\",\"message\":\""));
        }
    } else {
        // hyper refused the request before the handler saw it.
        assert!(
            status.starts_with('4') || status.starts_with('5'),
            "{text:?}"
        );
    }
});
