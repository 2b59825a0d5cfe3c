//! The payment side of the emulator: Stripe's invoice events (`invoice.finalized`, `.paid`,
//! `.payment_failed`, `.voided`, `.marked_uncollectible`), the test-only endpoints that pay or
//! fail an invoice (`POST /_emulator/invoices/{id}/pay|fail`), and delivery of every event to a
//! webhook URL signed as Stripe signs it, with redelivery while the endpoint does not answer 2xx.

use std::collections::VecDeque;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::{error, lines, missing, Emulator, Reply, Store};
use crate::stripe::webhook::sign;

/// How often an undelivered event is tried again before it is given up.
const MAX_ATTEMPTS: u32 = 600;
/// The pause between delivery rounds.
const ROUND: Duration = Duration::from_millis(100);

struct Delivery {
    event: Value,
    attempts: u32,
}

#[derive(Default)]
pub(super) struct Events {
    all: Vec<Value>,
    pending: VecDeque<Delivery>,
    webhook: Option<(String, String)>,
    /// What was delivered: the body and the Stripe-Signature header (for CI's check with the
    /// official library).
    delivered: Vec<(String, String)>,
    /// Taken from `pending` and being sent right now.
    in_flight: usize,
    given_up: usize,
}

/// Records an event about an invoice (the whole invoice as its object) and queues it for the
/// webhook.
pub(super) fn emit(store: &mut Store, kind: &str, invoice_id: &str) {
    let Some(inv) = store.invoices.get(invoice_id).cloned() else {
        return;
    };
    let object = lines::invoice_json(store, &inv);
    let n = store.events.all.len() + 1;
    let event = json!({
        "id": format!("evt_emu{n:08}"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": store.now(),
        "livemode": false,
        "pending_webhooks": i32::from(store.events.webhook.is_some()),
        "type": kind,
        "data": { "object": object },
    });
    store.events.all.push(event.clone());
    if store.events.webhook.is_some() {
        store
            .events
            .pending
            .push_back(Delivery { event, attempts: 0 });
    }
}

/// What finalizing does besides the status: the hosted page, the attempt count, the event.
pub(super) fn finalized(store: &mut Store, id: &str) {
    if let Some(inv) = store.invoices.get_mut(id) {
        inv["hosted_invoice_url"] = json!(format!("https://invoice.stripe.test/i/{id}"));
        inv["attempt_count"] = json!(0);
    }
    emit(store, "invoice.finalized", id);
    if store
        .invoices
        .get(id)
        .is_some_and(|i| i["status"] == "paid")
    {
        emit(store, "invoice.paid", id);
    }
}

/// `POST /_emulator/invoices/{id}/pay`: a successful payment of an open or uncollectible
/// invoice.
pub(super) fn pay(store: &mut Store, id: &str) -> Reply {
    let now = store.now();
    let Some(inv) = store.invoices.get_mut(id) else {
        return missing("invoice", id);
    };
    if inv["status"] != "open" && inv["status"] != "uncollectible" {
        return not_payable(inv);
    }
    inv["status"] = json!("paid");
    inv["amount_paid"] = inv["amount_due"].clone();
    inv["amount_remaining"] = json!(0);
    inv["attempt_count"] = json!(inv["attempt_count"].as_i64().unwrap_or(0) + 1);
    inv["status_transitions"]["paid_at"] = json!(now);
    emit(store, "invoice.paid", id);
    current(store, id)
}

/// `POST /_emulator/invoices/{id}/fail`: a failed payment attempt; the invoice stays open.
pub(super) fn fail(store: &mut Store, id: &str) -> Reply {
    let Some(inv) = store.invoices.get_mut(id) else {
        return missing("invoice", id);
    };
    if inv["status"] != "open" {
        return not_payable(inv);
    }
    inv["attempt_count"] = json!(inv["attempt_count"].as_i64().unwrap_or(0) + 1);
    emit(store, "invoice.payment_failed", id);
    current(store, id)
}

/// `POST /v1/invoices/{id}/mark_uncollectible`, as Stripe: open invoices only.
pub(super) fn mark_uncollectible(store: &mut Store, id: &str) -> Reply {
    let Some(inv) = store.invoices.get_mut(id) else {
        return missing("invoice", id);
    };
    if inv["status"] != "open" {
        return not_payable(inv);
    }
    inv["status"] = json!("uncollectible");
    emit(store, "invoice.marked_uncollectible", id);
    current(store, id)
}

/// `GET /v1/events`, as Stripe lists them: newest first, filtered by `type` or `types[]` and
/// `created[gte|gt|lte|lt]`, a page after `starting_after`.
pub(super) fn list_events(store: &Store, p: &serde_json::Map<String, Value>) -> Reply {
    let types: Vec<String> = match (p.get("types"), p.get("type")) {
        (Some(Value::Array(a)), _) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        (_, Some(Value::String(t))) => vec![t.clone()],
        _ => vec![],
    };
    let bound = |k: &str| {
        p.get("created")
            .and_then(|c| c.get(k))
            .and_then(Value::as_i64)
    };
    let (gte, gt, lte, lt) = (bound("gte"), bound("gt"), bound("lte"), bound("lt"));
    let limit = p
        .get("limit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .clamp(1, 100) as usize;
    let after = p.get("starting_after").and_then(Value::as_str);
    let mut matching = store.events.all.iter().rev().filter(|e| {
        let created = e["created"].as_i64().unwrap_or(0);
        (types.is_empty() || types.iter().any(|t| e["type"] == t.as_str()))
            && gte.is_none_or(|b| created >= b)
            && gt.is_none_or(|b| created > b)
            && lte.is_none_or(|b| created <= b)
            && lt.is_none_or(|b| created < b)
    });
    if let Some(after) = after {
        if !store.events.all.iter().any(|e| e["id"] == after) {
            return missing("event", after);
        }
        for e in matching.by_ref() {
            if e["id"] == after {
                break;
            }
        }
    }
    let page: Vec<Value> = matching.by_ref().take(limit).cloned().collect();
    let has_more = matching.next().is_some();
    (
        StatusCode::OK,
        json!({ "object": "list", "url": "/v1/events", "data": page, "has_more": has_more }),
    )
}

fn current(store: &Store, id: &str) -> Reply {
    match store.invoices.get(id) {
        Some(inv) => (StatusCode::OK, lines::invoice_json(store, inv)),
        None => missing("invoice", id),
    }
}

fn not_payable(inv: &Value) -> Reply {
    let status = inv["status"].as_str().unwrap_or("").to_string();
    let mut r = error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        format!("This invoice is {status}: no payment can be made on it."),
        None,
    );
    r.1["error"]["code"] = json!("invoice_not_editable");
    r
}

impl Emulator {
    /// Delivers every event from now on to `url`, signed with `secret`.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        self.lock().events.webhook = Some((url.to_string(), secret.to_string()));
    }

    /// Pays an invoice (as a customer's card would); false if it cannot be paid.
    pub fn pay(&self, invoice: &str) -> bool {
        pay(&mut self.lock(), invoice).0.is_success()
    }

    /// A failed payment attempt; false if the invoice is not open.
    pub fn fail(&self, invoice: &str) -> bool {
        fail(&mut self.lock(), invoice).0.is_success()
    }

    /// Every event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.all.clone()
    }

    /// Events waiting to be delivered (or delivered again), and those being sent.
    pub fn undelivered(&self) -> usize {
        let store = self.lock();
        store.events.pending.len() + store.events.in_flight
    }

    /// What was delivered: `(body, Stripe-Signature header)`.
    pub fn deliveries(&self) -> Vec<(String, String)> {
        self.lock().events.delivered.clone()
    }

    /// Runs the delivery loop in the background (started with the server).
    pub(super) fn spawn_deliveries(&self) {
        let emu = self.clone();
        tokio::spawn(async move { emu.deliver_forever().await });
    }

    async fn deliver_forever(self) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        loop {
            tokio::time::sleep(ROUND).await;
            let (batch, target) = {
                let mut store = self.lock();
                let Some(target) = store.events.webhook.clone() else {
                    continue;
                };
                let batch = store.events.pending.drain(..).collect::<Vec<_>>();
                store.events.in_flight = batch.len();
                (batch, target)
            };
            for d in batch {
                let body = d.event.to_string();
                let header = sign(body.as_bytes(), &target.1, chrono::Utc::now().timestamp());
                let ok = send(&client, &target.0, &body, &header).await;
                let mut store = self.lock();
                store.events.in_flight = store.events.in_flight.saturating_sub(1);
                if ok {
                    store.events.delivered.push((body, header));
                } else if d.attempts + 1 < MAX_ATTEMPTS {
                    store.events.pending.push_back(Delivery {
                        event: d.event,
                        attempts: d.attempts + 1,
                    });
                } else {
                    store.events.given_up += 1;
                }
            }
        }
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: &str,
    header: &str,
) -> bool {
    let Ok(req) = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .body(Full::new(Bytes::from(body.to_string())))
    else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(r)) => {
            let ok = r.status().is_success();
            let _ = r.into_body().collect().await;
            ok
        }
        _ => false,
    }
}
