//! The HTTP layer: hyper 1, HTTP/1.1 only, one request per connection,
//! small limits.
//!
//! * request head: at most [`MAX_HEAD_BYTES`] (hyper's read buffer bound),
//! * request body: at most [`MAX_BODY_BYTES`], read with a bound,
//! * the head must arrive within [`HEAD_TIMEOUT`], the whole exchange within
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
/// Time allowed for one whole HTTP exchange.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Reads the body of `req` with the [`MAX_BODY_BYTES`] bound and parses it
/// as JSON `T`; the error is a ready 4xx response.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let is_json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                &format!("the body is unreadable or larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("the JSON body is not acceptable: {e}"),
        )
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
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("http connection ended: {e}"),
        Err(_) => tracing::debug!("http connection timed out"),
    }
}
