//! Authentication at the API's door: the bearer token, its scope, the request log line (naming
//! the token, never showing it), and the guard around every handler ([`super::door`]).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::error::{ApiError, ErrorType};
use super::{door, ApiState, PUBLIC_PATHS, REQUEST_TIMEOUT, TEST_PANIC_HEADER};
use crate::admin::tokens::{self, Caller, Scope};

/// Authenticates the bearer token, checks its scope, logs the request line (naming the token,
/// never showing it) and bounds the request's time. Around the handler ([`door::guard`]): a
/// panic answers 500, every error leaves in the JSON shape, and a connection whose request body
/// was not read says `Connection: close`.
pub(super) async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (mut req, body_read) = door::track_body(req);
    // The document is public; Stripe's webhooks authenticate with their signature.
    let caller = if PUBLIC_PATHS.contains(&path.as_str()) {
        None
    } else {
        let refused = match caller_of(&state, req.headers()).await {
            Ok(c) if c.scope == Scope::Read && !matches!(method, Method::GET | Method::HEAD) => {
                Err((
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        ErrorType::PermissionError,
                        format!(
                            "token {} is read-only: this request needs a write token",
                            c.name
                        ),
                    ),
                    Some(c),
                ))
            }
            Ok(c) => Ok(c),
            Err(e) => Err((e, None)),
        };
        match refused {
            Ok(c) => {
                req.extensions_mut().insert(c.clone());
                Some(c)
            }
            Err((e, c)) => {
                // Read (bounded) and drop the body, so that the connection stays usable.
                door::drain(req.into_body()).await;
                let response = door::finish(e.into_response(), &body_read);
                log(&method, &path, c.as_ref(), response.status(), started);
                return response;
            }
        }
    };
    let test_panic = state.allow_time_travel && req.headers().contains_key(TEST_PANIC_HEADER);
    let db = state.db.clone();
    let handler = async move {
        if test_panic {
            door::panic_in_transaction(&db);
        }
        next.run(req).await
    };
    let response = door::guard(handler, REQUEST_TIMEOUT, &method, &path).await;
    let response = door::finish(response, &body_read);
    log(&method, &path, caller.as_ref(), response.status(), started);
    response
}

fn log(method: &Method, path: &str, caller: Option<&Caller>, status: StatusCode, started: Instant) {
    info!(
        method = %method,
        path,
        status = status.as_u16(),
        token = caller.map(|c| c.name.as_str()).unwrap_or("-"),
        duration_ms = started.elapsed().as_millis() as u64,
        "api request"
    );
}

async fn caller_of(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthenticated)?
        .to_string();
    state
        .run(|c| tokens::authenticate(c, &token))
        .await?
        .ok_or_else(ApiError::unauthenticated)
}
