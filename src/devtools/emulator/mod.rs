//! A stateful, in-memory Stripe emulator: test equipment and the demo's back end, never a
//! substitute in production.
//!
//! It speaks Stripe's form-encoded v1 API for the objects plan-invoicer writes — customers,
//! invoices (create, retrieve, list, finalize) and invoice items (create, retrieve, list) —
//! returns Stripe-shaped JSON and errors, rejects unknown parameters as Stripe does, honours
//! `Idempotency-Key` (same key and body: the first response again; same key, other body: 400),
//! records every request (in memory and optionally as JSON lines in a file, for the conformance
//! check against Stripe's own API definitions) and can inject latency, 429s and 5xx faults.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

mod lines;
mod params;
mod payments;

use params::{allowed, validate};

/// Faults to inject. Counters are over all requests the emulator received (1-based).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub latency: Duration,
    /// Each response's latency varies by up to this much either way (uniformly).
    pub latency_jitter: Duration,
    /// Every n-th request gets a 429 `lock_timeout` (an object locked by a concurrent
    /// request), which is not a reason to slow down (0: never).
    pub lock_timeout_every: u64,
    /// Every n-th request gets a 502 with an HTML body, as from a proxy (0: never).
    pub html_502_every: u64,
    /// Every n-th request gets a 429 (0: never).
    pub rate_limit_every: u64,
    /// Every n-th request gets a 500 (0: never).
    pub fail_every: u64,
    /// These request numbers get a 500 (one-shot failures at chosen points).
    pub fail_requests: Vec<u64>,
    /// Every request to these endpoints (templates, e.g. `/v1/invoices/{invoice}/add_lines`)
    /// gets a 500 without being carried out.
    pub fail_endpoints: Vec<String>,
    /// These request numbers are carried out, but the response is lost (a 500 instead): the
    /// object exists in Stripe while the client never learns its id.
    pub lost_responses: Vec<u64>,
    /// These request numbers hang for `hang_for` and then get a 500 without being carried out
    /// (a worker can be killed, or its lease can expire, while it waits).
    pub hang_requests: Vec<u64>,
    pub hang_for: Duration,
}

/// One request as received, for tests and the conformance check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub number: u64,
    pub method: String,
    /// The endpoint with ids replaced by placeholders, e.g. `/v1/invoices/{invoice}/finalize`.
    pub endpoint: String,
    pub path: String,
    /// Flat form keys as sent, e.g. `metadata[plan_id]`.
    pub params: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
}

/// Objects of one kind, indexed by id and by their parent (invoices by customer, items by
/// invoice), so that every request is O(1) or O(objects of one parent). Deleted objects stay
/// as tombstones (`"deleted": true`) so that positions never move.
#[derive(Default)]
struct Objects {
    all: Vec<Value>,
    by_id: HashMap<String, usize>,
    by_parent: HashMap<String, Vec<usize>>,
}

impl Objects {
    fn insert(&mut self, value: Value, parent: Option<&str>) {
        let pos = self.all.len();
        if let Some(id) = value["id"].as_str() {
            self.by_id.insert(id.to_string(), pos);
        }
        if let Some(parent) = parent {
            self.by_parent
                .entry(parent.to_string())
                .or_default()
                .push(pos);
        }
        self.all.push(value);
    }

    fn len(&self) -> usize {
        self.all.len()
    }

    fn get(&self, id: &str) -> Option<&Value> {
        self.by_id
            .get(id)
            .and_then(|&i| self.all.get(i))
            .filter(|v| v["deleted"] != true)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        let i = *self.by_id.get(id)?;
        self.all.get_mut(i).filter(|v| v["deleted"] != true)
    }

    /// The live children of `parent`, in creation order.
    fn children<'a>(&'a self, parent: &str) -> impl DoubleEndedIterator<Item = &'a Value> + 'a {
        self.by_parent
            .get(parent)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| self.all.get(i))
            .filter(|v| v["deleted"] != true)
    }

    fn live(&self) -> impl DoubleEndedIterator<Item = &Value> {
        self.all.iter().filter(|v| v["deleted"] != true)
    }
}

/// Request counts for benchmarks: by endpoint and status, with the first and last success.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EndpointCount {
    pub ok: u64,
    pub rate_limited: u64,
    pub other: u64,
    /// Milliseconds since the emulator started, of the first and the last 2xx.
    pub first_ok_ms: Option<u64>,
    pub last_ok_ms: Option<u64>,
}

/// A token bucket (Stripe's limiters are token buckets): `rate` per second, a burst of a
/// fifth of a second's worth.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: Bucket::capacity(rate),
            at: std::time::Instant::now(),
        }
    }

    fn capacity(rate: f64) -> f64 {
        (rate / 5.0).max(1.0)
    }

    fn refill(&mut self, now: std::time::Instant) {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(Bucket::capacity(self.rate));
        self.at = now;
    }
}

/// Stripe's rate limits as the emulator enforces them (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub per_second: u32,
    pub per_endpoint_per_second: u32,
}

#[derive(Default)]
struct Store {
    customers: Objects,
    products: Objects,
    invoices: Objects,
    items: Objects,
    /// Drafts with automatic advancement on (usually none: the worker creates drafts with it
    /// off).
    auto_drafts: std::collections::HashSet<String>,
    /// Keep every request in memory (off for benchmarks: counts only).
    counts_only: bool,
    counts: BTreeMap<String, EndpointCount>,
    started: Option<std::time::Instant>,
    limits: RateLimits,
    global_bucket: Option<Bucket>,
    endpoint_buckets: HashMap<String, Bucket>,
    idempotency: HashMap<String, (String, u16, Value)>,
    requests: Vec<Recorded>,
    faults: Faults,
    counter: u64,
    record_file: Option<PathBuf>,
    /// Added to the wall clock: tests move Stripe's time forward.
    clock_offset: i64,
    /// Stripe finalizes a draft with `auto_advance = true` this long after its creation.
    auto_advance_after: Option<i64>,
    /// Invoice events and their webhook deliveries.
    events: payments::Events,
}

impl Store {
    /// The emulator's time (Unix seconds).
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset
    }

    /// What Stripe does on its own: drafts with automatic advancement on are finalized about
    /// an hour after their creation, with whatever items they have by then.
    fn advance_drafts(&mut self) {
        if self.auto_drafts.is_empty() {
            return;
        }
        let delay = self.auto_advance_after.unwrap_or(DEFAULT_AUTO_ADVANCE_SECS);
        let now = self.now();
        let due: Vec<String> = self
            .auto_drafts
            .iter()
            .filter(|id| {
                self.invoices.get(id).is_some_and(|i| {
                    i["status"] == "draft"
                        && i["auto_advance"] == true
                        && i["created"].as_i64().is_some_and(|c| c + delay <= now)
                })
            })
            .cloned()
            .collect();
        for id in due {
            finalize_invoice(self, &id);
        }
    }

    /// Takes a token from the global and the endpoint's bucket, or says which limit is hit.
    fn rate_limited(&mut self, endpoint: &str) -> Option<&'static str> {
        let now = std::time::Instant::now();
        if self.limits.per_second > 0 {
            let rate = self.limits.per_second;
            let b = self.global_bucket.get_or_insert_with(|| Bucket::new(rate));
            b.refill(now);
            if b.tokens < 1.0 {
                return Some("global-rate");
            }
        }
        if self.limits.per_endpoint_per_second > 0 {
            let rate = self.limits.per_endpoint_per_second;
            let b = self
                .endpoint_buckets
                .entry(endpoint.to_string())
                .or_insert_with(|| Bucket::new(rate));
            b.refill(now);
            if b.tokens < 1.0 {
                return Some("endpoint-rate");
            }
            b.tokens -= 1.0;
        }
        if let Some(b) = self.global_bucket.as_mut() {
            b.tokens -= 1.0;
        }
        None
    }

    fn count(&mut self, endpoint: &str, status: u16) {
        let ms = self
            .started
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64;
        let c = self.counts.entry(endpoint.to_string()).or_default();
        match status {
            200..=299 => {
                c.ok += 1;
                c.first_ok_ms.get_or_insert(ms);
                c.last_ok_ms = Some(ms);
            }
            429 => c.rate_limited += 1,
            _ => c.other += 1,
        }
    }
}

/// Stripe's automatic advancement: about an hour after creation.
pub const DEFAULT_AUTO_ADVANCE_SECS: i64 = 3600;

/// Finalizes a draft: its total is the sum of its items (a total of 0 or less is paid at once).
fn finalize_invoice(store: &mut Store, id: &str) -> Option<Value> {
    let total: i64 = store
        .items
        .children(id)
        .filter_map(|i| i["amount"].as_i64())
        .sum();
    store.auto_drafts.remove(id);
    let inv = store.invoices.get_mut(id)?;
    inv["status"] = json!(if total <= 0 { "paid" } else { "open" });
    inv["subtotal"] = json!(total);
    inv["total"] = json!(total);
    inv["amount_due"] = json!(total.max(0));
    inv["amount_remaining"] = json!(total.max(0));
    inv["number"] = json!(format!(
        "EMU-{:06}",
        id.trim_start_matches("in_emu").parse::<u64>().unwrap_or(0)
    ));
    payments::finalized(store, id);
    store.invoices.get(id).cloned()
}

/// A handle on the emulator's state; clones share it.
#[derive(Clone, Default)]
pub struct Emulator {
    store: Arc<Mutex<Store>>,
}

type Reply = (StatusCode, Value);

fn error(status: StatusCode, kind: &str, message: impl Into<String>, param: Option<&str>) -> Reply {
    let mut e = json!({ "type": kind, "message": message.into() });
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status, json!({ "error": e }))
}

fn missing(what: &str, id: &str) -> Reply {
    let mut r = error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No such {what}: '{id}'"),
        Some("id"),
    );
    r.1["error"]["code"] = json!("resource_missing");
    r
}

impl Emulator {
    pub fn new() -> Emulator {
        Emulator::default()
    }

    /// Also append every request as a JSON line to `path`.
    pub fn record_to(&self, path: impl Into<PathBuf>) {
        self.lock().record_file = Some(path.into());
    }

    /// Forgets every idempotency key, as Stripe does after 24 hours.
    pub fn forget_idempotency_keys(&self) {
        self.lock().idempotency.clear();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Moves the emulator's clock forward (drafts with automatic advancement on finalize once
    /// it passes their creation plus the delay).
    pub fn advance_clock(&self, by: chrono::Duration) {
        let mut store = self.lock();
        store.clock_offset += by.num_seconds();
        store.advance_drafts();
    }

    /// How long after its creation an auto-advancing draft is finalized (default one hour).
    pub fn set_auto_advance_after(&self, after: chrono::Duration) {
        self.lock().auto_advance_after = Some(after.num_seconds());
    }

    /// How many requests have arrived so far (including those still being answered).
    pub fn received(&self) -> u64 {
        self.lock().counter
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.lock().customers.live().cloned().collect()
    }

    /// Invoices in creation order, each with its items (`lines.data`) in creation order.
    pub fn invoices(&self) -> Vec<Value> {
        let store = self.lock();
        store
            .invoices
            .live()
            .map(|i| with_lines(&store, i))
            .collect()
    }

    /// Test fixture: an open invoice made beside the worker (by a person, another tool) whose
    /// metadata claims the local invoice `local_id`. Returns its id.
    pub fn create_invoice_beside(&self, customer: &str, local_id: i64, total: i64) -> String {
        let mut store = self.lock();
        let id = format!("in_emu{:08}", store.invoices.len() + 1);
        let created = store.now();
        let inv = json!({
            "id": id, "object": "invoice", "created": created, "livemode": false,
            "customer": customer, "status": "open", "currency": "usd",
            "collection_method": "charge_automatically", "auto_advance": true,
            "metadata": { "plan_invoicer_invoice_id": local_id.to_string() },
            "subtotal": total, "total": total, "amount_due": total, "amount_paid": 0,
            "amount_remaining": total,
        });
        store.invoices.insert(inv, Some(customer));
        id
    }

    /// Test fixture: an item on a draft that carries local line `line_id`, as a version that
    /// sent items one at a time left it. Returns its id.
    pub fn add_item_beside(&self, invoice: &str, line_id: i64, amount: i64) -> Option<String> {
        let mut store = self.lock();
        let customer = store.invoices.get(invoice)?["customer"].clone();
        let id = format!("ii_emu{:08}", store.items.len() + 1);
        let created = store.now();
        let item = json!({
            "id": id, "object": "invoiceitem", "date": created, "livemode": false,
            "customer": customer, "invoice": invoice, "currency": "usd", "amount": amount,
            "quantity": 1, "discountable": false,
            "metadata": { "plan_invoicer_line_id": line_id.to_string() },
        });
        store.items.insert(item, Some(invoice));
        Some(id)
    }

    /// Test fixture: changes an item's amount behind the worker's back.
    pub fn set_item_amount(&self, item: &str, amount: i64) -> bool {
        let mut store = self.lock();
        match store.items.get_mut(item) {
            Some(i) => {
                i["amount"] = json!(amount);
                true
            }
            None => false,
        }
    }

    /// Request counts by endpoint (method and path template) and outcome.
    pub fn counts(&self) -> BTreeMap<String, EndpointCount> {
        self.lock().counts.clone()
    }

    /// Keep counts only, not every request (benchmarks over many plans).
    pub fn counts_only(&self) {
        self.lock().counts_only = true;
    }

    /// Enforce Stripe's rate limits (token buckets; 429 with `Stripe-Rate-Limited-Reason`).
    pub fn set_rate_limits(&self, limits: RateLimits) {
        let mut store = self.lock();
        store.limits = limits;
        store.global_bucket = None;
        store.endpoint_buckets.clear();
    }

    pub fn products(&self) -> Vec<Value> {
        self.lock().products.live().cloned().collect()
    }

    pub fn items(&self) -> Vec<Value> {
        self.lock().items.live().cloned().collect()
    }

    /// Serves on `addr` (`127.0.0.1:0` for any free port) in the background; returns the
    /// bound address.
    pub async fn start(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        self.spawn_deliveries();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Stripe emulator stopped");
            }
        });
        Ok(local)
    }

    /// Serves on `addr` until the process ends.
    pub async fn serve(&self, addr: &str) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "Stripe emulator listening");
        self.spawn_deliveries();
        axum::serve(listener, self.router()).await
    }

    pub fn router(&self) -> Router {
        let counts = self.clone();
        let payer = self.clone();
        Router::new()
            // Test equipment: a customer pays an open invoice, or a payment attempt fails.
            .route(
                "/_emulator/invoices/{id}/{action}",
                axum::routing::post(
                    move |axum::extract::Path((id, action)): axum::extract::Path<(
                        String,
                        String,
                    )>| {
                        let (status, body) = {
                            let mut store = payer.lock();
                            match action.as_str() {
                                "pay" => payments::pay(&mut store, &id),
                                "fail" => payments::fail(&mut store, &id),
                                _ => missing("action", &action),
                            }
                        };
                        async move { (status, axum::Json(body)) }
                    },
                ),
            )
            // Test equipment's own endpoint (not Stripe's): request counts for benchmarks.
            .route(
                "/_emulator/counts",
                axum::routing::get(move || {
                    let counts = counts.counts();
                    async move { axum::Json(counts) }
                }),
            )
            .fallback(handle)
            .with_state(self.clone())
    }
}

fn with_lines(store: &Store, invoice: &Value) -> Value {
    let id = invoice["id"].as_str().unwrap_or_default();
    let lines: Vec<Value> = store.items.children(id).cloned().collect();
    let mut inv = invoice.clone();
    inv["lines"] = json!({ "object": "list", "data": lines, "has_more": false, "url": format!("/v1/invoices/{id}/lines") });
    inv
}

async fn handle(
    State(emu): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = if method == Method::GET {
        uri.query().unwrap_or("").to_string()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw).unwrap_or_default();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // Bearer, or HTTP Basic with the key as the user name (`curl -u sk_test_…:`).
            ["Bearer ", "Basic "]
                .iter()
                .any(|scheme| v.starts_with(scheme) && v.len() > scheme.len())
        });

    let (number, hang) = {
        let mut store = emu.lock();
        store.counter += 1;
        let number = store.counter;
        let hang = store.faults.hang_requests.contains(&number);
        (number, hang.then_some(store.faults.hang_for))
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    let (response, delay) = respond(&emu, number, &method, &uri, key, authorized, &raw, pairs);
    // The time Stripe takes to answer. Its rate limiters act on arrival, before this.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Carries out one request (after any injected hang): limits, faults, idempotency, dispatch,
/// recording. Returns the response and how long to wait before sending it.
#[allow(clippy::too_many_arguments)]
fn respond(
    emu: &Emulator,
    number: u64,
    method: &Method,
    uri: &Uri,
    key: Option<String>,
    authorized: bool,
    raw: &str,
    pairs: Vec<(String, String)>,
) -> (Response, Duration) {
    let mut store = emu.lock();
    store.advance_drafts();
    let path = uri.path().to_string();
    let endpoint = endpoint_of(&path);
    let limit_key = format!("{method} {endpoint}");
    let mut extra: Vec<(&'static str, &'static str)> = vec![];
    let mut html = false;
    let every = |n: u64| n > 0 && number.is_multiple_of(n);
    let (status, body, replayed) = if !authorized {
        let r = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You did not provide an API key.",
            None,
        );
        (r.0, r.1, false)
    } else if let Some(reason) = store.rate_limited(&limit_key) {
        // Stripe's limiters run before the idempotency layer: nothing is stored under the key.
        extra.push(("stripe-rate-limited-reason", reason));
        let r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
            None,
        );
        (r.0, r.1, false)
    } else if every(store.faults.rate_limit_every) {
        let r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Request rate limit exceeded.",
            None,
        );
        (r.0, r.1, false)
    } else if every(store.faults.lock_timeout_every) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.",
            None,
        );
        r.1["error"]["code"] = json!("lock_timeout");
        (r.0, r.1, false)
    } else if every(store.faults.html_502_every) {
        html = true;
        (StatusCode::BAD_GATEWAY, Value::Null, false)
    } else if store.faults.hang_requests.contains(&number)
        || store.faults.fail_requests.contains(&number)
        || store.faults.fail_endpoints.contains(&endpoint)
        || every(store.faults.fail_every)
    {
        let r = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Injected fault.",
            None,
        );
        (r.0, r.1, false)
    } else {
        let fingerprint = format!("{method} {path} {raw}");
        match key
            .as_ref()
            .filter(|_| method == Method::POST)
            .and_then(|k| store.idempotency.get(k).cloned())
        {
            Some((fp, status, body)) if fp == fingerprint => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                body,
                true,
            ),
            Some(_) => {
                let k = key.clone().unwrap_or_default();
                let mut r = error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."),
                    None,
                );
                r.1["error"]["code"] = json!("idempotency_key_in_use");
                (r.0, r.1, false)
            }
            None => {
                let (status, body) = dispatch(&mut store, method, &path, &pairs);
                // Counts only (benchmarks): no replays kept. A million plans' responses would
                // take tens of GiB, and a benchmark's retries follow 429s, which are answered
                // before this point and never stored.
                if let Some(k) = key.as_ref().filter(|_| {
                    method == Method::POST && status.as_u16() < 500 && !store.counts_only
                }) {
                    store
                        .idempotency
                        .insert(k.clone(), (fingerprint, status.as_u16(), body.clone()));
                }
                if store.faults.lost_responses.contains(&number) {
                    let r = error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        "Injected fault after the request was carried out.",
                        None,
                    );
                    (r.0, r.1, false)
                } else {
                    (status, body, false)
                }
            }
        }
    };
    let recorded = Recorded {
        number,
        method: method.to_string(),
        endpoint,
        path,
        params: pairs.into_iter().collect(),
        idempotency_key: key,
        status: status.as_u16(),
    };
    if let Some(file) = &store.record_file {
        if let Ok(line) = serde_json::to_string(&recorded) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
            {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }
    store.count(&limit_key, status.as_u16());
    if !store.counts_only {
        store.requests.push(recorded);
    }
    let delay = response_delay(&store.faults);
    drop(store);
    let mut response = if html {
        (
            status,
            [("content-type", "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
        )
            .into_response()
    } else {
        (status, axum::Json(body)).into_response()
    };
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
        .headers_mut()
        .insert("request-id", axum::http::HeaderValue::from(number));
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    (response, delay)
}

/// A response's latency: the configured latency, give or take the jitter.
fn response_delay(faults: &Faults) -> Duration {
    use rand::Rng;
    let spread = faults.latency_jitter.as_millis() as i64;
    let delta = if spread > 0 {
        rand::rng().random_range(-spread..=spread)
    } else {
        0
    };
    Duration::from_millis((faults.latency.as_millis() as i64 + delta).max(0) as u64)
}

fn endpoint_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "customers", _] => "/v1/customers/{customer}".into(),
        ["v1", "invoices", _, "finalize"] => "/v1/invoices/{invoice}/finalize".into(),
        ["v1", "invoices", _, "add_lines"] => "/v1/invoices/{invoice}/add_lines".into(),
        ["v1", "products", _] => "/v1/products/{product}".into(),
        ["v1", "invoices", _, "void"] => "/v1/invoices/{invoice}/void".into(),
        ["v1", "invoices", _, "mark_uncollectible"] => {
            "/v1/invoices/{invoice}/mark_uncollectible".into()
        }
        ["v1", "invoices", _] => "/v1/invoices/{invoice}".into(),
        ["v1", "invoiceitems", _] => "/v1/invoiceitems/{invoiceitem}".into(),
        _ => path.to_string(),
    }
}

/// The `customer` parameter, which must name an existing customer.
fn existing_customer(store: &Store, p: &Map<String, Value>) -> Result<String, Reply> {
    let Some(customer) = p.get("customer").and_then(Value::as_str) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: customer.",
            Some("customer"),
        ));
    };
    if store.customers.get(customer).is_none() {
        return Err(missing("customer", customer));
    }
    Ok(customer.to_string())
}

fn dispatch(store: &mut Store, method: &Method, path: &str, pairs: &[(String, String)]) -> Reply {
    let endpoint = endpoint_of(path);
    let Some(spec) = allowed(method, &endpoint) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unrecognized request URL ({method}: {path})."),
            None,
        );
    };
    let p = match validate(spec, pairs) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let id_in_path = path
        .trim_matches('/')
        .split('/')
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let created = store.now();
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    match (method.as_str(), endpoint.as_str()) {
        ("POST", "/v1/customers") => {
            let id = format!("cus_emu{:08}", store.customers.len() + 1);
            let c = json!({
                "id": id, "object": "customer", "created": created, "livemode": false,
                "name": p.get("name"), "email": p.get("email"), "description": p.get("description"),
                "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
            });
            store.customers.insert(c.clone(), None);
            (StatusCode::OK, c)
        }
        ("POST", "/v1/invoices") => {
            let customer = match existing_customer(store, &p) {
                Ok(c) => c,
                Err(e) => return e,
            };
            let method = text("collection_method").unwrap_or_else(|| "charge_automatically".into());
            if method == "send_invoice" && p.get("days_until_due").is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing required param: days_until_due.",
                    Some("days_until_due"),
                );
            }
            if method == "charge_automatically" && p.get("days_until_due").is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "You may only specify days_until_due when collection_method is send_invoice.",
                    Some("days_until_due"),
                );
            }
            if text("statement_descriptor").is_some_and(|s| s.chars().count() > 22) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "The statement descriptor must be at most 22 characters.",
                    Some("statement_descriptor"),
                );
            }
            let id = format!("in_emu{:08}", store.invoices.len() + 1);
            let inv = json!({
                "id": id, "object": "invoice", "created": created, "livemode": false, "customer": customer,
                "status": "draft", "currency": "usd", "collection_method": method,
                "auto_advance": p.get("auto_advance").cloned().unwrap_or(json!(false)),
                "days_until_due": p.get("days_until_due"), "statement_descriptor": p.get("statement_descriptor"),
                "description": p.get("description"), "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
                "subtotal": 0, "total": 0, "amount_due": 0, "amount_paid": 0, "amount_remaining": 0,
            });
            if inv["auto_advance"] == true {
                store.auto_drafts.insert(id.clone());
            }
            store.invoices.insert(inv.clone(), Some(&customer));
            (StatusCode::OK, lines::invoice_json(store, &inv))
        }
        ("POST", "/v1/invoiceitems") => {
            let customer = match existing_customer(store, &p) {
                Ok(c) => c,
                Err(e) => return e,
            };
            let invoice = text("invoice");
            if let Some(inv_id) = &invoice {
                match store.invoices.get(inv_id) {
                    None => return missing("invoice", inv_id),
                    Some(i) if i["status"] != "draft" => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            format!("Invoice {inv_id} is not a draft and cannot have items added."),
                            Some("invoice"),
                        )
                    }
                    Some(i) if i["customer"] != customer.as_str() => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            "The invoice belongs to another customer.",
                            Some("invoice"),
                        )
                    }
                    Some(_) => {}
                }
            }
            let quantity = p.get("quantity").and_then(Value::as_i64);
            let amount = match (
                p.get("amount").and_then(Value::as_i64),
                text("unit_amount_decimal"),
            ) {
                (Some(_), Some(_)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "You may only specify one of amount and unit_amount_decimal.",
                        Some("amount"),
                    )
                }
                (Some(a), None) => a,
                (None, Some(u)) => {
                    let unit = u.parse::<Decimal>().unwrap_or_default();
                    (unit * Decimal::from(quantity.unwrap_or(1)))
                        .round()
                        .to_i64()
                        .unwrap_or(0)
                }
                (None, None) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "Missing required param: amount or unit_amount_decimal.",
                        Some("amount"),
                    )
                }
            };
            if text("currency").is_none() && invoice.is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing required param: currency.",
                    Some("currency"),
                );
            }
            let id = format!("ii_emu{:08}", store.items.len() + 1);
            let item = json!({
                "id": id, "object": "invoiceitem", "date": created, "livemode": false, "customer": customer,
                "invoice": invoice, "currency": text("currency").unwrap_or_else(|| "usd".into()),
                "description": p.get("description"), "quantity": quantity.unwrap_or(1),
                "unit_amount_decimal": text("unit_amount_decimal"), "amount": amount,
                "period": p.get("period").cloned().unwrap_or(json!({ "start": created, "end": created })),
                "discountable": p.get("discountable").cloned().unwrap_or(json!(true)),
                "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
            });
            store.items.insert(item.clone(), invoice.as_deref());
            (StatusCode::OK, item)
        }
        ("POST", "/v1/invoices/{invoice}/add_lines") => {
            lines::add_lines(store, &id_in_path, &p, created)
        }
        ("POST", "/v1/products") => lines::create_product(store, &p, created),
        ("GET", "/v1/products/{product}") => match store.products.get(&id_in_path) {
            Some(product) => (StatusCode::OK, product.clone()),
            None => missing("product", &id_in_path),
        },
        ("POST", "/v1/invoices/{invoice}/finalize") => {
            let Some(inv) = store.invoices.get_mut(&id_in_path) else {
                return missing("invoice", &id_in_path);
            };
            if inv["status"] != "draft" {
                let mut r = error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    None,
                );
                r.1["error"]["code"] = json!("invoice_not_editable");
                return r;
            }
            if let Some(advance) = p.get("auto_advance") {
                inv["auto_advance"] = advance.clone();
            }
            match finalize_invoice(store, &id_in_path) {
                Some(inv) => (StatusCode::OK, lines::invoice_json(store, &inv)),
                None => missing("invoice", &id_in_path),
            }
        }
        ("POST", "/v1/invoices/{invoice}/void") => {
            let Some(inv) = store.invoices.get_mut(&id_in_path) else {
                return missing("invoice", &id_in_path);
            };
            if inv["status"] != "open" && inv["status"] != "uncollectible" {
                let status = inv["status"].as_str().unwrap_or("").to_string();
                let mut r = error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("You can only void open or uncollectible invoices; this invoice is {status}."),
                    None,
                );
                r.1["error"]["code"] = json!("invoice_not_editable");
                return r;
            }
            inv["status"] = json!("void");
            inv["amount_due"] = json!(0);
            inv["amount_remaining"] = json!(0);
            let inv = inv.clone();
            payments::emit(store, "invoice.voided", &id_in_path);
            (StatusCode::OK, lines::invoice_json(store, &inv))
        }
        ("POST", "/v1/invoices/{invoice}/mark_uncollectible") => {
            payments::mark_uncollectible(store, &id_in_path)
        }
        ("DELETE", "/v1/invoices/{invoice}") => {
            let Some(inv) = store.invoices.get_mut(&id_in_path) else {
                return missing("invoice", &id_in_path);
            };
            if inv["status"] != "draft" {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "You can only delete draft invoices.",
                    None,
                );
            }
            inv["deleted"] = json!(true);
            let items: Vec<String> = store
                .items
                .children(&id_in_path)
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect();
            for id in items {
                if let Some(item) = store.items.get_mut(&id) {
                    item["deleted"] = json!(true);
                }
            }
            (
                StatusCode::OK,
                json!({ "id": id_in_path, "object": "invoice", "deleted": true }),
            )
        }
        ("GET", "/v1/events") => payments::list_events(store, &p),
        ("GET", "/v1/invoices") | ("GET", "/v1/invoiceitems") | ("GET", "/v1/customers") => {
            // Newest first, as Stripe lists; through the parent's index when filtered by it.
            let customer = text("customer");
            let invoice = text("invoice");
            let objects = match endpoint.as_str() {
                "/v1/invoices" => &store.invoices,
                "/v1/invoiceitems" => &store.items,
                _ => &store.customers,
            };
            let candidates: Vec<&Value> = match (endpoint.as_str(), &customer, &invoice) {
                ("/v1/invoices", Some(c), _) => objects.children(c).rev().collect(),
                ("/v1/invoiceitems", _, Some(i)) => objects.children(i).rev().collect(),
                _ => objects.live().rev().collect(),
            };
            let filtered: Vec<&Value> = candidates
                .into_iter()
                .filter(|o| {
                    customer
                        .as_ref()
                        .is_none_or(|c| o["customer"] == c.as_str())
                })
                .filter(|o| invoice.as_ref().is_none_or(|i| o["invoice"] == i.as_str()))
                .collect();
            let start = match text("starting_after") {
                Some(after) => filtered
                    .iter()
                    .position(|o| o["id"] == after.as_str())
                    .map_or(filtered.len(), |i| i + 1),
                None => 0,
            };
            let limit = p
                .get("limit")
                .and_then(Value::as_i64)
                .unwrap_or(10)
                .clamp(1, 100) as usize;
            let page: Vec<Value> = filtered
                .iter()
                .skip(start)
                .take(limit)
                .map(|o| {
                    if endpoint == "/v1/invoices" {
                        lines::invoice_json(store, o)
                    } else {
                        (*o).clone()
                    }
                })
                .collect();
            let has_more = start + page.len() < filtered.len();
            (
                StatusCode::OK,
                json!({ "object": "list", "url": endpoint, "has_more": has_more, "data": page }),
            )
        }
        ("GET", "/v1/invoices/{invoice}") => match store.invoices.get(&id_in_path) {
            Some(i) => (StatusCode::OK, lines::invoice_json(store, i)),
            None => missing("invoice", &id_in_path),
        },
        ("GET", "/v1/invoiceitems/{invoiceitem}") => match store.items.get(&id_in_path) {
            Some(i) => (StatusCode::OK, i.clone()),
            None => missing("invoiceitem", &id_in_path),
        },
        ("GET", "/v1/customers/{customer}") => match store.customers.get(&id_in_path) {
            Some(c) => (StatusCode::OK, c.clone()),
            None => missing("customer", &id_in_path),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unrecognized request URL ({method}: {path})."),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let spec = allowed(&Method::POST, "/v1/invoiceitems").unwrap_or(&[]);
        let err = validate(spec, &pairs(&[("customer", "cus_1"), ("unit_amount", "5")])).err();
        assert_eq!(
            err.map(|e| e.1["error"]["message"].clone()),
            Some(json!("Received unknown parameter: unit_amount"))
        );
        let ok = validate(
            spec,
            &pairs(&[
                ("period[start]", "1"),
                ("period[end]", "2"),
                ("metadata[a]", "b"),
                ("discountable", "false"),
            ]),
        );
        assert_eq!(ok.ok().map(|m| m["period"]["end"].clone()), Some(json!(2)));
        assert!(validate(spec, &pairs(&[("period[middle]", "1")])).is_err());
        assert!(validate(spec, &pairs(&[("quantity", "two")])).is_err());
    }

    #[test]
    fn endpoints_are_templated() {
        assert_eq!(
            endpoint_of("/v1/invoices/in_1/finalize"),
            "/v1/invoices/{invoice}/finalize"
        );
        assert_eq!(endpoint_of("/v1/invoiceitems"), "/v1/invoiceitems");
    }
}
