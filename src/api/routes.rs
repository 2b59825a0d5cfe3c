//! The API's resources. Each write names an admin command by its CLI name in snake_case and runs
//! it with [`crate::admin`]'s executor in one transaction, with the idempotency key's record.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorType};
use super::{json_object, path_id, query, ApiState};
use crate::admin::tokens::{sha256_hex, Caller};
use crate::admin::{self, CustomerCmd, OfferCmd, Output, PlanCmd};
use crate::db::api as rows;
use crate::db::models::PlanEventRow;
use crate::db::repo::{self, InvoiceFilter};
use crate::db::Conn;
use crate::domain::{InvoiceStatus, Ts};
use crate::error::AppError;
use crate::views::InvoiceView;

/// The plan commands a `POST /v1/plans/{id}/{action}` runs (the CLI's `plan ACTION`).
pub const PLAN_ACTIONS: &[&str] = &[
    "seats",
    "buy_licenses",
    "renewal_licenses",
    "schedule",
    "downgrade_now",
    "set_billing_mode",
    "set_license_management",
    "upgrade_tier",
    "set_end_date",
    "schedule_successor",
];
/// The customer commands of `POST /v1/customers/{id}/{action}`.
pub const CUSTOMER_ACTIONS: &[&str] = &[
    "set_discount",
    "report_usage",
    "set_minimum_licenses",
    "set_required_plan_tier",
    "set_exempt",
];

/// Lists: at most this many items a page, [`DEFAULT_LIMIT`] unless asked.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 10;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/customers", post(create_customer))
        .route("/v1/customers/{id}", get(show_customer))
        .route("/v1/customers/{id}/{action}", post(customer_action))
        .route("/v1/plans", post(create_plan).get(list_plans))
        .route("/v1/plans/{id}", get(show_plan))
        .route("/v1/plans/{id}/ledger", get(plan_ledger))
        .route("/v1/plans/{id}/events", get(plan_events))
        .route("/v1/plans/{id}/preview", get(plan_preview))
        .route("/v1/plans/{id}/{action}", post(plan_action))
        .route("/v1/offers", post(create_offer))
        .route("/v1/offers/{id}/accept", post(accept_offer))
        .route("/v1/invoices", get(list_invoices))
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/events/ack", post(ack_events))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/stripe/webhook", post(super::webhook::receive))
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| super::openapi::document().to_string());
    json_response(StatusCode::OK, doc.clone())
}

/// A write: which admin command, for the executor.
enum Write {
    Customer(CustomerCmd),
    Plan(PlanCmd),
    Offer(OfferCmd),
    Ack { consumer: String, through: i64 },
}

fn execute(c: &mut Conn, w: Write, now: Ts) -> Result<Value, AppError> {
    let output: Output = match w {
        Write::Customer(cmd) => admin::customer_cmd(c, cmd, now)?,
        Write::Plan(cmd) => admin::plan_cmd(c, cmd, now)?,
        Write::Offer(cmd) => admin::offer_cmd(c, cmd, now)?,
        Write::Ack { consumer, through } => {
            let at = rows::ack(c, &consumer, through, now)?;
            return Ok(serde_json::json!({ "consumer": consumer, "acked_through": at }));
        }
    };
    Ok(output.json)
}

/// The command `{name: body}` of enum `T` (the CLI's subcommand `name`), with `id` from the
/// path; unknown and missing fields are refused as the CLI refuses unknown flags.
fn command<T: serde::de::DeserializeOwned>(
    name: &str,
    id: Option<i64>,
    mut body: Map<String, Value>,
) -> Result<T, ApiError> {
    if let Some(id) = id {
        if body.contains_key("id") {
            return Err(ApiError::invalid(
                "unknown field `id`: the id is in the path",
            ));
        }
        body.insert("id".into(), Value::from(id));
    }
    let mut doc = Map::new();
    doc.insert(name.into(), Value::Object(body));
    from_json(Value::Object(doc))
}

/// A JSON document into `T`; a refusal names the field it is about (the last segment of the
/// path serde was at), or what serde's message names (`unknown field`, `missing field`).
fn from_json<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let field = e.path().iter().next_back().and_then(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let inner = e.into_inner().to_string();
        let error = ApiError::invalid(match &field {
            Some(f) if !inner.contains('`') => format!("{f}: {inner}"),
            _ => inner,
        });
        match (field, &error.param) {
            (Some(f), None) => error.with_param(&f),
            _ => error,
        }
    })
}

/// Runs a write in one transaction. With an `Idempotency-Key`, the key is taken in the same
/// transaction and the response kept with it: a retry gets the first response back
/// (`Idempotent-Replayed: true`), never a second write; the same key with another request is
/// refused.
async fn write(
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
    let request_hash = sha256_hex(&fingerprint);
    let token_id = caller.token_id;
    enum Outcome {
        Fresh(String),
        Kept(rows::KeptResponse),
    }
    let outcome = state
        .run(|c| match &key {
            // As the CLI runs it: the operation's own transaction.
            None => Ok(Outcome::Fresh(execute(c, w, now)?.to_string())),
            Some(k) => c.transaction(|c| {
                if let Some(kept) = rows::take_key(c, token_id, k, &request_hash, now)? {
                    return Ok(Outcome::Kept(kept));
                }
                let body = execute(c, w, now)?.to_string();
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

/// A write named `name` of the command enum `T` (the CLI's subcommand), its body from the request
/// and its id, when there is one, from `path`.
#[allow(clippy::too_many_arguments)]
async fn command_write<T: serde::de::DeserializeOwned>(
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

/// `action` when it is one of `known` (404 otherwise).
fn known_action<'a>(known: &[&str], what: &str, action: &'a str) -> Result<&'a str, ApiError> {
    if known.contains(&action) {
        Ok(action)
    } else {
        Err(ApiError::not_found(format!(
            "no {what} action {action:?}: one of {}",
            known.join(", ")
        )))
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

/// The identity of a request for its idempotency key: method, path and raw body.
fn fingerprint(path: &str, raw: &[u8]) -> String {
    format!("POST {path}\n{}", String::from_utf8_lossy(raw))
}

// ----- customers -----

async fn create_customer(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let path = "/v1/customers";
    command_write(
        &state,
        &caller,
        &headers,
        body,
        "create",
        None,
        path,
        Write::Customer,
    )
    .await
}

async fn show_customer(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "customer")?;
    let now = state.now(&headers)?;
    let out = state
        .run(|c| admin::customer_cmd(c, CustomerCmd::Show { id }, now))
        .await?;
    Ok(ok(&out.json))
}

async fn customer_action(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let action = known_action(CUSTOMER_ACTIONS, "customer", &action)?;
    let id = path_id(&id, "customer")?;
    let path = format!("/v1/customers/{id}/{action}");
    command_write(
        &state,
        &caller,
        &headers,
        body,
        action,
        Some(id),
        &path,
        Write::Customer,
    )
    .await
}

// ----- plans -----

async fn create_plan(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    command_write(
        &state,
        &caller,
        &headers,
        body,
        "create",
        None,
        "/v1/plans",
        Write::Plan,
    )
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanQuery {
    customer: Option<i64>,
    status: Option<String>,
    #[serde(default)]
    due: bool,
}

async fn list_plans(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q: PlanQuery = query(q.as_deref())?;
    let now = state.now(&headers)?;
    let cmd = PlanCmd::List {
        customer: q.customer,
        status: q.status,
        due: q.due,
    };
    let out = state.run(|c| admin::plan_cmd(c, cmd, now)).await?;
    Ok(ok(&out.json))
}

/// A plan read of the CLI (`plan show|ledger|events`).
async fn plan_read(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    cmd: fn(i64) -> PlanCmd,
) -> Result<Response, ApiError> {
    let id = path_id(id, "plan")?;
    let now = state.now(headers)?;
    let out = state.run(|c| admin::plan_cmd(c, cmd(id), now)).await?;
    Ok(ok(&out.json))
}

async fn show_plan(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    plan_read(&state, &headers, &id, |id| PlanCmd::Show { id }).await
}

async fn plan_ledger(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    plan_read(&state, &headers, &id, |id| PlanCmd::Ledger { id }).await
}

async fn plan_events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    plan_read(&state, &headers, &id, |id| PlanCmd::Events { id }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewQuery {
    at: Option<String>,
}

async fn plan_preview(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "plan")?;
    let q: PreviewQuery = query(q.as_deref())?;
    let at =
        q.at.as_deref()
            .map(crate::admin::parse_time)
            .transpose()
            .map_err(|e| ApiError::invalid(e).with_param("at"))?;
    let out = admin::plan(&state.db, PlanCmd::Preview { id, at }, state.clock.now())?;
    Ok(ok(&out.json))
}

async fn plan_action(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let action = known_action(PLAN_ACTIONS, "plan", &action)?;
    let id = path_id(&id, "plan")?;
    let path = format!("/v1/plans/{id}/{action}");
    command_write(
        &state,
        &caller,
        &headers,
        body,
        action,
        Some(id),
        &path,
        Write::Plan,
    )
    .await
}

// ----- offers -----

async fn create_offer(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    command_write(
        &state,
        &caller,
        &headers,
        body,
        "create",
        None,
        "/v1/offers",
        Write::Offer,
    )
    .await
}

async fn accept_offer(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "offer")?;
    let path = format!("/v1/offers/{id}/accept");
    command_write(
        &state,
        &caller,
        &headers,
        body,
        "accept",
        Some(id),
        &path,
        Write::Offer,
    )
    .await
}

// ----- invoices, status -----

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InvoiceQuery {
    customer: Option<i64>,
    plan: Option<i64>,
    status: Option<String>,
    since: Option<String>,
    starting_after: Option<i64>,
    limit: Option<i64>,
}

fn limit_of(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(
            ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT} (got {n})"))
                .with_param("limit"),
        ),
    }
}

/// A page of a list: `{"data": [...], "has_more": …}`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct Page<T> {
    data: Vec<T>,
    /// Whether items follow the last one (ask again with its id as the cursor).
    has_more: bool,
}

pub(super) type InvoicesPage = Page<InvoiceView>;
pub(super) type EventsPage = Page<PlanEventRow>;

/// A page from items read with one more than asked.
fn page<T: serde::Serialize>(mut items: Vec<T>, limit: i64) -> Value {
    let has_more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    serde_json::to_value(Page {
        data: items,
        has_more,
    })
    .unwrap_or(Value::Null)
}

async fn list_invoices(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q: InvoiceQuery = query(q.as_deref())?;
    let limit = limit_of(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(InvoiceStatus::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()).with_param("status"))?;
    let since = q
        .since
        .as_deref()
        .map(crate::admin::parse_time)
        .transpose()
        .map_err(|e| ApiError::invalid(e).with_param("since"))?;
    let filter = InvoiceFilter {
        plan_id: q.plan,
        customer_id: q.customer,
        since,
        status,
        starting_after: q.starting_after,
        limit: Some(limit + 1),
        ..InvoiceFilter::default()
    };
    let records = state
        .run(|c| repo::list_invoices(c, &filter).map_err(AppError::from))
        .await?;
    let views: Vec<InvoiceView> = records.iter().map(InvoiceView::from).collect();
    Ok(ok(&page(views, limit)))
}

async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let now = state.now(&headers)?;
    let out = state.run(|c| admin::status_of(c, now)).await?;
    Ok(ok(&out.json))
}

// ----- the plan-events feed -----

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    after: Option<i64>,
    limit: Option<i64>,
    consumer: Option<String>,
}

/// Plan events in id order across all plans, after `after` (or after the consumer's
/// acknowledged cursor). Ids become visible in their order (docs/API.md), so a consumer that
/// keeps the last id it saw misses nothing.
async fn events(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q: EventsQuery = query(q.as_deref())?;
    let limit = limit_of(q.limit)?;
    let consumer = q.consumer;
    let explicit = q.after;
    let rows = state
        .run(|c| {
            let after = match (explicit, &consumer) {
                (Some(a), _) => a,
                (None, Some(name)) => rows::consumer_cursor(c, name)?,
                (None, None) => 0,
            };
            Ok(rows::events_after(c, after, limit + 1)?)
        })
        .await?;
    Ok(ok(&page(rows, limit)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    consumer: String,
    through: i64,
}

async fn ack_events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, raw) = json_object(&headers, body).await?;
    let ack: AckBody = from_json(Value::Object(body))?;
    let consumer = ack.consumer.trim().to_string();
    if consumer.is_empty() || consumer.len() > 100 {
        return Err(
            ApiError::invalid("consumer must be 1 to 100 characters").with_param("consumer")
        );
    }
    if ack.through < 0 {
        return Err(ApiError::invalid("through must not be negative").with_param("through"));
    }
    let fp = fingerprint("/v1/events/ack", &raw);
    let w = Write::Ack {
        consumer,
        through: ack.through,
    };
    write(&state, &caller, &headers, fp, w).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_built_from_the_path_and_the_body() {
        let body = serde_json::json!({ "count": 12 });
        let Value::Object(map) = body else {
            panic!("an object")
        };
        let cmd: PlanCmd = command("seats", Some(7), map).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(matches!(cmd, PlanCmd::Seats { id: 7, count: 12 }));
    }

    #[test]
    fn unknown_and_missing_fields_and_a_body_id_are_refused() {
        let refused = |v: Value| {
            let Value::Object(map) = v else {
                panic!("an object")
            };
            command::<PlanCmd>("seats", Some(7), map).err()
        };
        let e = refused(serde_json::json!({ "count": 1, "cont": 2 }));
        assert_eq!(e.and_then(|e| e.param).as_deref(), Some("cont"));
        let e = refused(serde_json::json!({}));
        assert_eq!(e.and_then(|e| e.param).as_deref(), Some("count"));
        assert!(refused(serde_json::json!({ "count": 1, "id": 8 })).is_some());
        assert!(refused(serde_json::json!({ "count": "12" })).is_some());
    }

    #[test]
    fn create_bodies_take_the_cli_flags_in_snake_case() {
        let body = serde_json::json!({
            "customer": 1, "tier": "cloud_standard", "schedule": "monthly",
            "licenses": 10, "automanage_licenses": true
        });
        let Value::Object(map) = body else {
            panic!("an object")
        };
        let cmd: PlanCmd = command("create", None, map).unwrap_or_else(|e| panic!("{e:?}"));
        let PlanCmd::Create(p) = cmd else {
            panic!("a create")
        };
        assert_eq!(
            (p.customer, p.licenses, p.automanage_licenses),
            (1, 10, true)
        );
        assert!(!p.invoice_billing);
    }

    #[test]
    fn pages_say_whether_there_is_more() {
        assert_eq!(page(vec![1, 2, 3], 2)["has_more"], true);
        assert_eq!(page(vec![1, 2], 2)["has_more"], false);
        assert_eq!(page(vec![1, 2, 3], 2)["data"], serde_json::json!([1, 2]));
    }
}
