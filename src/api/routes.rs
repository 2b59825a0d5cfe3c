//! The API's resources. Each write names an admin command by its CLI name in snake_case and runs
//! it with [`crate::admin`]'s executor in one transaction, with the idempotency key's record.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;

use super::error::ApiError;
use super::wire::{
    from_json, json_response, limit_of, ok, page, AckBody, ChangesQuery, EventsQuery, InvoiceQuery,
    PlanQuery, PreviewQuery,
};
use super::writes::{command_write, fingerprint, write, Write};
use super::{json_object, path_id, query, ApiState};
use crate::admin::changes::ChangeQuery;
use crate::admin::tokens::Caller;
use crate::admin::{
    self, find_action, Action, CustomerCmd, PlanCmd, CUSTOMER_ACTIONS, PLAN_ACTIONS,
};
use crate::db::api as rows;
use crate::db::repo::{self, InvoiceFilter};
use crate::error::AppError;
use crate::views::InvoiceView;

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
        .route("/v1/changes", get(list_changes))
        .route("/v1/status", get(status))
        .route("/v1/reports/revenue", get(revenue))
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
        .run(|c| admin::customer_read(c, CustomerCmd::Show { id }, now))
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
    let action = known_action(CUSTOMER_ACTIONS, "customer", &action)?.name;
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
    let out = state.run(|c| admin::plan_read(c, cmd, now)).await?;
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
    let out = state.run(|c| admin::plan_read(c, cmd(id), now)).await?;
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
    let out = admin::plan_preview(&state.db, id, at)?;
    Ok(ok(&out.json))
}

async fn plan_action(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let action = known_action(PLAN_ACTIONS, "plan", &action)?.name;
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

async fn list_invoices(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q: InvoiceQuery = query(q.as_deref())?;
    let limit = limit_of(q.limit)?;
    let status = q.status;
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

/// `GET /v1/changes`: `changes list`'s filters and page, the API's cursor (`starting_after`).
async fn list_changes(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q: ChangesQuery = query(q.as_deref())?;
    let limit = limit_of(q.limit)?;
    let time = |field: &'static str, v: Option<String>| {
        v.as_deref()
            .map(crate::admin::parse_time)
            .transpose()
            .map_err(|e| ApiError::invalid(e).with_param(field))
    };
    let changes = ChangeQuery {
        customer: q.customer,
        plan: q.plan,
        actor: q.actor,
        operation: q.operation,
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        limit: Some(limit),
        starting_after: q.starting_after,
    };
    let views = state
        .run(|c| crate::admin::changes::list(c, changes, 1))
        .await?;
    Ok(ok(&page(views, limit)))
}

async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let now = state.now(&headers)?;
    let out = state.run(|c| admin::status_of(c, now)).await?;
    Ok(ok(&out.json))
}

/// `GET /v1/reports/revenue`: `report revenue`'s document.
async fn revenue(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let now = state.now(&headers)?;
    let report = state
        .run(|c| crate::admin::reports::revenue(c, now))
        .await?;
    let json = serde_json::to_value(&report).map_err(|e| {
        ApiError::from(AppError::Internal(format!(
            "the report did not serialize: {e}"
        )))
    })?;
    Ok(ok(&json))
}

// ----- the plan-events feed -----

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

/// The action of `known` named `action` (404 otherwise).
fn known_action(known: &[Action], what: &str, action: &str) -> Result<Action, ApiError> {
    find_action(known, action).ok_or_else(|| {
        let names: Vec<&str> = known.iter().map(|a| a.name).collect();
        ApiError::not_found(format!(
            "no {what} action {action:?}: one of {}",
            names.join(", ")
        ))
    })
}
