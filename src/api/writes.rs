//! The API's writes: each runs one admin command in one transaction, as the CLI runs it, and
//! with an `Idempotency-Key` takes the key and keeps the response in that same transaction, so
//! that a retry gets the first answer back and never a second write (docs/API.md,
//! "Idempotency").

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::error::{ApiError, ErrorType};
use super::wire::{command, json_response};
use super::{json_object, ApiState};
use super::{ON_BEHALF_OF_HEADER, REASON_HEADER};
use crate::admin::tokens::{sha256_hex, Caller};
use crate::admin::{self, CustomerCmd, OfferCmd, Output, PlanCmd};
use crate::db::api as rows;
use crate::db::Conn;
use crate::domain::change::Author;
use crate::domain::Ts;
use crate::error::AppError;

/// A write: which admin command, for the executor.
pub(super) enum Write {
    Customer(CustomerCmd),
    Plan(PlanCmd),
    Offer(OfferCmd),
    Ack { consumer: String, through: i64 },
}

fn execute(c: &mut Conn, w: Write, now: Ts, author: &Author) -> Result<Value, AppError> {
    let output: Output = match w {
        Write::Customer(cmd) => admin::customer_cmd(c, cmd, now, author)?,
        Write::Plan(cmd) => admin::plan_cmd(c, cmd, now, author)?,
        Write::Offer(cmd) => admin::offer_cmd(c, cmd, now, author)?,
        Write::Ack { consumer, through } => {
            let at = rows::ack(c, &consumer, through, now)?;
            return Ok(serde_json::json!({ "consumer": consumer, "acked_through": at }));
        }
    };
    Ok(output.json)
}

/// Runs a write in one transaction. With an `Idempotency-Key`, the key is taken in the same
/// transaction and the response kept with it: a retry gets the first response back
/// (`Idempotent-Replayed: true`), never a second write; the same key with another request is
/// refused.
pub(super) async fn write(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    fingerprint: String,
    w: Write,
) -> Result<Response, ApiError> {
    let now = state.now(headers)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::invalid("Idempotency-Key must be 1 to 255 characters of text")
                })?;
            Some(k.to_string())
        }
    };
    let author = author_of(caller, headers, key.clone())?;
    let request_hash = sha256_hex(&fingerprint);
    let token_id = caller.token_id;
    enum Outcome {
        Fresh(String),
        Kept(rows::KeptResponse),
    }
    let outcome = state
        .run(|c| match &key {
            // As the CLI runs it: the operation's own transaction.
            None => Ok(Outcome::Fresh(execute(c, w, now, &author)?.to_string())),
            Some(k) => c.transaction(|c| {
                if let Some(kept) = rows::take_key(c, token_id, k, &request_hash, now)? {
                    return Ok(Outcome::Kept(kept));
                }
                let body = execute(c, w, now, &author)?.to_string();
                rows::keep_response(c, token_id, k, 200, &body)?;
                Ok(Outcome::Fresh(body))
            }),
        })
        .await?;
    match outcome {
        Outcome::Fresh(body) => Ok(json_response(StatusCode::OK, body)),
        Outcome::Kept(kept) if kept.request_sha256 != request_hash => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::IdempotencyError,
            "this Idempotency-Key was used with another request: keys can only be reused with the same request",
        )),
        Outcome::Kept(kept) => {
            let status = u16::try_from(kept.status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let mut r = json_response(status, kept.body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(r)
        }
    }
}

/// Who writes, for the change history: the token's name, and what the request says in
/// `Plan-Invoicer-On-Behalf-Of` (the host application's end user) and `Plan-Invoicer-Reason`.
fn author_of(
    caller: &Caller,
    headers: &HeaderMap,
    key: Option<String>,
) -> Result<Author, ApiError> {
    let header = |name: &'static str| -> Result<Option<(&'static str, &str)>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v.as_bytes())
                .map(|text| Some((name, text)))
                .map_err(|_| {
                    ApiError::invalid(format!("{name} is not UTF-8 text")).with_param(name)
                }),
        }
    };
    Ok(Author::api(
        &caller.name,
        header(ON_BEHALF_OF_HEADER)?,
        header(REASON_HEADER)?,
        key,
    )
    .map_err(AppError::from)?)
}

/// A write named `name` of the command enum `T` (the CLI's subcommand), its body from the request
/// and its id, when there is one, from `path`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn command_write<T: serde::de::DeserializeOwned>(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    name: &str,
    id: Option<i64>,
    path: &str,
    wrap: fn(T) -> Write,
) -> Result<Response, ApiError> {
    let (body, raw) = json_object(headers, body).await?;
    let cmd = command::<T>(name, id, body)?;
    write(state, caller, headers, fingerprint(path, &raw), wrap(cmd)).await
}

/// The identity of a request for its idempotency key: method, path and raw body.
pub(super) fn fingerprint(path: &str, raw: &[u8]) -> String {
    format!("POST {path}\n{}", String::from_utf8_lossy(raw))
}
