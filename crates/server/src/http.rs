//! The HTTP layer: hyper 1, HTTP/1.1 only, one request per connection,
//! small limits.
//!
//! * request head: at most [`MAX_HEAD_BYTES`] (hyper's read buffer bound),
//! * request body: at most [`MAX_BODY_BYTES`], read with a bound,
//! * the head must arrive within [`HEAD_TIMEOUT`], the body then within
//!   its own, shorter timeout ([`BODY_TIMEOUT`] by default; `login_limits.
//!   body_timeout` on login listeners), the whole exchange within
//!   [`CONNECTION_TIMEOUT`],
//! * no keep-alive: each connection serves one request, so the pin check
//!   made for the connection covers exactly that request.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

/// Upper bound on a request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Upper bound on a request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time allowed for the request head once the connection is ready.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a request body once the head has arrived (408
/// `body_timeout` beyond it), unless the caller sets its own.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole HTTP exchange (defined beside the settings it bounds).
pub use crate::config::CONNECTION_TIMEOUT;

/// The response body type.
pub type Body = Full<Bytes>;

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `{error, message}` body of every refusal.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable reason code.
    pub error: &'a str,
    /// Human-readable explanation.
    pub message: &'a str,
}

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: code,
            message,
        },
    )
}

/// Why a request body was not accepted: a ready 4xx answer with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRefusal {
    /// HTTP status (400, 408, 413, 415).
    pub status: StatusCode,
    /// Stable reason code: `bad_request`, or `body_timeout` when the body did
    /// not arrive in time.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl BodyRefusal {
    /// The JSON error answer.
    pub fn into_response(self) -> Response<Body> {
        error(self.status, self.code, &self.message)
    }
}

/// Reads the body of `req` with the [`MAX_BODY_BYTES`] bound, within
/// [`BODY_TIMEOUT`], and parses it as JSON `T`; the error is a ready 4xx
/// response.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    read_json_within(req, BODY_TIMEOUT)
        .await
        .map_err(BodyRefusal::into_response)
}

/// [`read_json`] with the body due within `timeout` of the call (a body that
/// trickles in is cut at `timeout`, answered 408 `body_timeout`).
pub async fn read_json_within<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    timeout: Duration,
) -> Result<T, BodyRefusal> {
    let is_json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(BodyRefusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "bad_request",
            message: "the body must be JSON (Content-Type: application/json)".into(),
        });
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => {
            return Err(BodyRefusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "bad_request",
                message: format!("the body is unreadable or larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        Err(_) => {
            return Err(BodyRefusal {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "body_timeout",
                message: format!("the request body did not arrive within {timeout:?}"),
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| BodyRefusal {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: format!("the JSON body is not acceptable: {e}"),
    })
}

/// Serves one HTTP/1.1 exchange on `io` with `handler`, within the limits
/// above. Errors (timeouts, malformed requests) just close the connection.
pub async fn serve_one<S, F, Fut>(io: S, handler: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        // A client that closes its sending side after the request (as
        // `nc -N` or a script may) still gets the answer; the timeouts
        // above bound how long such a connection lives.
        .half_close(true)
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("http connection ended: {e}"),
        Err(_) => tracing::debug!("http connection timed out"),
    }
}

/// Serves one exchange over an in-memory connection: the client sends
/// `request` and closes its side, and the result is every byte the server
/// wrote back (empty when it closed without answering).
///
/// The same [`serve_one`], limits included, on its own current-thread
/// runtime: for tests and fuzzing of the HTTP layer without sockets. The
/// client reads while it writes, so a server that answers before the whole
/// request is sent (431, 413) is read too.
///
/// # Errors
/// The runtime cannot start, or the in-memory connection fails.
pub fn serve_bytes<F, Fut>(request: &[u8], handler: F) -> std::io::Result<Vec<u8>>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(MAX_HEAD_BYTES);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async {
            // A server that stops reading ends the write with an error;
            // what it answered is still read below.
            if to_server.write_all(request).await.is_ok() {
                let _ = to_server.shutdown().await;
            }
            drop(to_server);
        };
        let mut answer = Vec::new();
        let receive = from_server.read_to_end(&mut answer);
        let ((), (), received) = tokio::join!(serve_one(server, handler), send, receive);
        received.map(|_| answer)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Serves `request` with a handler that reads a JSON body and answers
    /// 200 with it; returns the answer and how often the handler ran.
    fn exchange(request: &[u8]) -> (String, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let answer = serve_bytes(request, move |req| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                match read_json::<serde_json::Value>(req).await {
                    Ok(value) => json(StatusCode::OK, &value),
                    Err(refusal) => refusal,
                }
            }
        })
        .expect("in-memory exchange");
        let text = String::from_utf8(answer).expect("UTF-8 answer");
        (text, calls.load(Ordering::SeqCst))
    }

    fn post(content_type: &str, body: &str) -> Vec<u8> {
        format!(
            "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn status(answer: &str) -> &str {
        answer.get(9..12).unwrap_or("")
    }

    fn body(answer: &str) -> &str {
        answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[test]
    fn answers_a_json_request_of_a_client_that_then_half_closes() {
        let (answer, calls) = exchange(&post("application/json", r#"{"user":"alice"}"#));
        assert_eq!(calls, 1);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert_eq!(body(&answer), r#"{"user":"alice"}"#);
    }

    #[test]
    fn one_request_per_connection() {
        let mut two = post("application/json", "1");
        two.extend_from_slice(&post("application/json", "2"));
        let (answer, calls) = exchange(&two);
        assert_eq!(calls, 1, "the second request is not served");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert_eq!(body(&answer), "1");
    }

    #[test]
    fn refusals_are_json_4xx() {
        let cases = [
            (post("text/plain", "{}"), "415"),
            (post("application/json", "{"), "400"),
            (
                post("application/json", &" ".repeat(MAX_BODY_BYTES + 1)),
                "413",
            ),
        ];
        for (request, want) in cases {
            let (answer, calls) = exchange(&request);
            assert_eq!(calls, 1);
            assert_eq!(status(&answer), want, "{answer}");
            let refusal: serde_json::Value =
                serde_json::from_str(body(&answer)).expect("JSON body");
            assert_eq!(refusal["error"], "bad_request", "{answer}");
            assert!(refusal["message"].is_string(), "{answer}");
        }
    }

    #[test]
    fn a_head_over_the_bound_never_reaches_the_handler() {
        let big = format!(
            "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let (answer, calls) = exchange(big.as_bytes());
        assert_eq!(calls, 0);
        assert_eq!(status(&answer), "431", "{answer}");
        // Just under the bound is served.
        let fits = format!(
            "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES / 2)
        );
        let (answer, calls) = exchange(fits.as_bytes());
        assert_eq!(calls, 1);
        assert_eq!(status(&answer), "415", "{answer}");
    }

    /// A body that trickles in (head complete, body dribbled and never
    /// finished) is cut at the body timeout with 408 `body_timeout`, long
    /// before the connection timeout.
    #[tokio::test]
    async fn a_dribbled_body_is_cut_at_the_body_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let timeout = Duration::from_millis(300);
        let (mut client, server) = tokio::io::duplex(MAX_HEAD_BYTES);
        let serve = tokio::spawn(serve_one(server, move |req| async move {
            match read_json_within::<serde_json::Value>(req, timeout).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(r) => r.into_response(),
            }
        }));
        let started = std::time::Instant::now();
        client
            .write_all(&post("application/json", &" ".repeat(100))[..120])
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        // Keep dribbling one byte every 50 ms: each byte arrives well within
        // any per-read timeout, the whole body never does.
        loop {
            tokio::select! {
                n = client.read(&mut buf) => {
                    let n = n.unwrap();
                    if n == 0 { break; }
                    answer.extend_from_slice(&buf[..n]);
                }
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    let _ = client.write_all(b" ").await;
                }
            }
            assert!(started.elapsed() < HEAD_TIMEOUT, "not cut");
        }
        serve.await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert_eq!(status(&answer), "408", "{answer}");
        let refusal: serde_json::Value = serde_json::from_str(body(&answer)).unwrap();
        assert_eq!(refusal["error"], "body_timeout");
        assert!(started.elapsed() >= timeout);
    }

    #[test]
    fn incomplete_requests_get_no_answer_and_no_wait() {
        let started = std::time::Instant::now();
        for request in [
            &b""[..],
            b"GET /whoami HTT",
            b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n{",
        ] {
            let (answer, calls) = exchange(request);
            assert_eq!(calls, usize::from(request.ends_with(b"{")), "{request:?}");
            assert!(
                answer.is_empty() || status(&answer).starts_with('4'),
                "{answer}"
            );
        }
        // The client's close ends them, not the head timeout.
        assert!(started.elapsed() < HEAD_TIMEOUT);
    }
}
