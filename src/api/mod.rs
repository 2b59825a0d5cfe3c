//! The HTTP API for the host application (docs/API.md): a thin adapter over the admin commands
//! of [`crate::admin`] — the same input types, the same code, the same guards and messages as
//! the CLI — plus the plan-events feed. `serve --api-addr` opens it beside the health address.
//!
//! Every request but `GET /v1/openapi.json` needs a bearer token (`api-token create`); writes
//! need a write token. Bodies are JSON objects of at most [`BODY_LIMIT`] bytes with no unknown
//! fields; every error is `{"error": {"type", "message", "param"}}` ([`error`]).

mod auth;
mod door;
pub mod error;
pub mod openapi;
mod routes;
mod webhook;
mod wire;
mod writes;

pub use webhook::WebhookStats;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::Router;
use serde::de::DeserializeOwned;

use crate::clock::Clock;
use crate::db::Db;
use crate::domain::Ts;
use error::{ApiError, ErrorType};

/// The largest request body accepted (413 above it).
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a request waits for a database connection before it is answered 503.
const DB_WAIT: Duration = Duration::from_secs(5);
/// How long a request may take in all (503 after it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Paths that take no bearer token.
pub const PUBLIC_PATHS: &[&str] = &["/v1/openapi.json", "/v1/stripe/webhook"];
/// The header that moves the API's clock, honoured only under `serve --allow-time-travel`.
pub const NOW_HEADER: &str = "plan-invoicer-now";
/// Why a write is made: kept in the change history with it.
pub const REASON_HEADER: &str = "plan-invoicer-reason";
/// The host application's end user a write is made for: kept in the change history with it.
pub const ON_BEHALF_OF_HEADER: &str = "plan-invoicer-on-behalf-of";
/// Under `serve --allow-time-travel` only: the request panics inside a database transaction
/// before its handler runs (the tests' proof that a panic answers 500 and wedges nothing).
pub const TEST_PANIC_HEADER: &str = "plan-invoicer-test-panic";

#[derive(Clone)]
pub struct ApiState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// `serve --allow-time-travel` (refused with a live Stripe key).
    pub allow_time_travel: bool,
    /// The secrets of `POST /v1/stripe/webhook` (none: the endpoint answers 404).
    pub webhook_secrets: crate::stripe::webhook::WebhookSecrets,
    /// The webhook requests counted for `/metrics`.
    pub webhook_stats: Arc<WebhookStats>,
}

impl ApiState {
    /// Runs `f` on a connection, waiting at most [`DB_WAIT`] for one.
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut crate::db::Conn) -> Result<T, crate::error::AppError>,
    ) -> Result<T, ApiError> {
        self.db.run_within(DB_WAIT, f).map_err(ApiError::from)
    }

    /// The request's `now`: the clock, or the time-travel header when it is allowed.
    fn now(&self, headers: &HeaderMap) -> Result<Ts, ApiError> {
        let Some(value) = headers.get(NOW_HEADER) else {
            return Ok(self.clock.now());
        };
        if !self.allow_time_travel {
            return Err(ApiError::invalid(
                "the Plan-Invoicer-Now header is honoured only by `serve --allow-time-travel` (tests)",
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid("Plan-Invoicer-Now is not text"))?;
        crate::admin::parse_time(text).map_err(ApiError::invalid)
    }
}

/// The API's routes, with authentication, the request log and the time-out around them.
pub fn router(state: ApiState) -> Router {
    routes::routes()
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .with_state(state)
}

async fn unknown_route(body: Body) -> ApiError {
    door::drain(body).await;
    ApiError::not_found("no such endpoint (docs/API.md lists them; GET /v1/openapi.json)")
}

async fn method_not_allowed(body: Body) -> ApiError {
    door::drain(body).await;
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequestError,
        "this endpoint does not take that method",
    )
}

/// A request body: a JSON object (an empty body is `{}`), at most [`BODY_LIMIT`] bytes.
/// Returns the object and the raw bytes (hashed for idempotency keys).
async fn json_object(
    headers: &HeaderMap,
    body: Body,
) -> Result<(serde_json::Map<String, serde_json::Value>, bytes::Bytes), ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequestError,
            format!("the body is larger than {BODY_LIMIT} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| too_large())?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok((serde_json::Map::new(), raw));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::InvalidRequestError,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(map)) => Ok((map, raw)),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// Query parameters into `T` (unknown ones refused).
fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
        let message = e.to_string();
        match wire::serde_field(&message) {
            Some(f) => ApiError::invalid(message).with_param(&f),
            None => ApiError::invalid(message),
        }
    })
}

/// An id from the path: a positive whole number.
fn path_id(text: &str, what: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("{what} {text:?} does not exist")))
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_are_positive_numbers() {
        assert_eq!(path_id("12", "plan").ok(), Some(12));
        assert!(path_id("0", "plan").is_err());
        assert!(path_id("-3", "plan").is_err());
        assert!(path_id("1e3", "plan").is_err());
        assert!(path_id("99999999999999999999", "plan").is_err());
    }
}
