//! What every request passes on its way in and out, whatever its route: a panic in a handler
//! answers 500 `api_error` (and is logged) instead of dropping the connection; every error —
//! axum's own rejections of a path, a query or a header included — leaves in the one JSON shape
//! of [`super::error`]; and a connection stays usable after a refusal: the body is read
//! (bounded) and dropped, or, where a handler refused before reading it, the response says
//! `Connection: close` so that the client opens a new connection for its next request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body::{Frame, SizeHint};
use tracing::error;

use super::error::{ApiError, ErrorType};
use super::BODY_LIMIT;
use crate::db::Db;

/// How long a refused request's body may take to arrive before the connection is closed.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// The most of a non-JSON error body kept as the message.
const MESSAGE_CHARS: usize = 300;

/// Whether the request came with a body, and whether a handler read it to its end.
pub struct BodyRead {
    had_body: bool,
    done: Arc<AtomicBool>,
}

/// The request with its body wrapped so that reading it to the end is seen.
pub fn track_body(req: Request) -> (Request, BodyRead) {
    let headers = req.headers();
    let had_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let done = Arc::new(AtomicBool::new(!had_body));
    let (parts, body) = req.into_parts();
    let body = Body::new(Tracked {
        inner: body,
        done: done.clone(),
    });
    (
        Request::from_parts(parts, body),
        BodyRead { had_body, done },
    )
}

struct Tracked {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and drops a refused request's body: at most [`BODY_LIMIT`] bytes within
/// [`DRAIN_WAIT`]. A larger or slower body is left, and the response closes the connection.
pub async fn drain(body: Body) {
    let _ = tokio::time::timeout(DRAIN_WAIT, axum::body::to_bytes(body, BODY_LIMIT)).await;
}

/// Runs the handler within `limit`; a panic answers 500 `api_error` and is logged with the
/// request line (the database connection it held was closed by the pool, see `db::pool`).
pub async fn guard(
    handler: impl std::future::Future<Output = Response> + Send,
    limit: Duration,
    method: &Method,
    path: &str,
) -> Response {
    let caught = std::panic::AssertUnwindSafe(handler).catch_unwind();
    match tokio::time::timeout(limit, caught).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(method = %method, path, panic = %what, "api request panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorType::ApiError,
                "internal error: the request failed and changed nothing; it was logged",
            )
            .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            "the request took too long",
        )
        .into_response(),
    }
}

/// The response as it leaves: an error in another shape (axum's plain-text rejections) put
/// into the JSON shape with its status, and `Connection: close` when the request's body was
/// not read to its end.
pub fn finish(response: Response, body: &BodyRead) -> Response {
    let mut response = if response.status().as_u16() >= 400 && !is_json(&response) {
        reshape(response)
    } else {
        response
    };
    if body.had_body && !body.done.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// An error response of axum's (plain text) in the one JSON shape; the text is its message.
fn reshape(response: Response) -> Response {
    let status = response.status();
    let kind = match status {
        StatusCode::UNAUTHORIZED => ErrorType::AuthenticationError,
        StatusCode::FORBIDDEN => ErrorType::PermissionError,
        StatusCode::CONFLICT => ErrorType::ConflictError,
        StatusCode::SERVICE_UNAVAILABLE => ErrorType::ServiceUnavailable,
        s if s.is_server_error() => ErrorType::ApiError,
        _ => ErrorType::InvalidRequestError,
    };
    // axum's rejection texts are short and already in memory; the bound is for safety.
    let text = text_of(response.into_body())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    // 422 (a body axum could not deserialize) is our 400: the request is malformed.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, kind, text).into_response()
}

/// The text of a small, already complete body (axum's rejections), control characters dropped.
fn text_of(body: Body) -> Option<String> {
    use http_body_util::BodyExt;
    let collected = body.collect().now_or_never()?.ok()?.to_bytes();
    let text: String = String::from_utf8_lossy(&collected)
        .chars()
        .filter(|c| !c.is_control())
        .take(MESSAGE_CHARS)
        .collect();
    (!text.trim().is_empty()).then_some(text)
}

/// The test hook of [`super::TEST_PANIC_HEADER`]: a panic inside an open transaction.
pub fn panic_in_transaction(db: &Db) {
    let _ = db.run(|c| {
        c.transaction(|_| -> Result<(), crate::db::DbError> {
            panic!("Plan-Invoicer-Test-Panic: a panic on purpose, inside a transaction")
        })
    });
}
