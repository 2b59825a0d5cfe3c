//! The daemon's HTTP endpoints: `/healthz` (alive), `/readyz` (database reachable, schema
//! current) and `/metrics` (Prometheus text format).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::Clock;
use crate::db::repo::{self, PlanFilter};
use crate::db::Db;
use crate::jobs::PassReport;
use crate::stripe::client::RequestStats;

/// The bounds of the pass-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// What the daemon counts, in prometheus-client's types; the gauges about plans are read from
/// the database at scrape time. Clones of these handles are registered in a registry built for
/// each scrape, so that the database gauges appear only when the database answered.
#[derive(Debug)]
pub struct Metrics {
    pub passes: Counter,
    pub passes_failed: Counter,
    pub ticks_skipped: Counter,
    pub plans_invoiced: Counter,
    pub invoices: Counter,
    pub lines: Counter,
    pub plan_failures: Counter,
    pub last_success_unix: Gauge,
    /// The findings of the last scheduled audit, and when it finished (0: never).
    pub audit_findings: Gauge,
    pub last_audit_unix: Gauge,
    pass_duration: Histogram,
    pub stripe: Mutex<Option<Arc<RequestStats>>>,
    /// The API's webhook counts (zero while the API does not listen).
    pub webhooks: Arc<crate::api::WebhookStats>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            passes: Counter::default(),
            passes_failed: Counter::default(),
            ticks_skipped: Counter::default(),
            plans_invoiced: Counter::default(),
            invoices: Counter::default(),
            lines: Counter::default(),
            plan_failures: Counter::default(),
            last_success_unix: Gauge::default(),
            audit_findings: Gauge::default(),
            last_audit_unix: Gauge::default(),
            pass_duration: Histogram::new(BUCKETS),
            stripe: Mutex::new(None),
            webhooks: Arc::default(),
        }
    }
}

impl Metrics {
    pub fn record_pass(&self, result: &Result<PassReport, String>, elapsed_ms: u64, now_unix: u64) {
        self.passes.inc();
        match result {
            Ok(r) => {
                self.plans_invoiced.inc_by(r.plans_invoiced as u64);
                self.invoices.inc_by(r.invoices_sent as u64);
                self.lines.inc_by(r.lines_sent as u64);
                self.plan_failures
                    .inc_by((r.failures_count + r.needs_attention_count) as u64);
                self.last_success_unix
                    .set(i64::try_from(now_unix).unwrap_or(i64::MAX));
            }
            Err(_) => {
                self.passes_failed.inc();
            }
        }
        self.pass_duration.observe(elapsed_ms as f64 / 1000.0);
    }

    /// The audit that just finished found `findings` disagreements.
    pub fn record_audit(&self, findings: usize, now_unix: u64) {
        self.audit_findings
            .set(i64::try_from(findings).unwrap_or(i64::MAX));
        self.last_audit_unix
            .set(i64::try_from(now_unix).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition (format 0.0.4). `plans` is (needing attention, started
    /// with a live lease, overdue), when the database answered.
    pub fn render(&self, gauges: Option<DbGauges>) -> String {
        let mut r = Registry::default();
        for (name, help, counter) in [
            ("plan_invoicer_passes", "Invoicing passes run", &self.passes),
            (
                "plan_invoicer_passes_failed",
                "Passes that failed as a whole",
                &self.passes_failed,
            ),
            (
                "plan_invoicer_ticks_skipped",
                "Scheduled ticks skipped because a pass was running",
                &self.ticks_skipped,
            ),
            (
                "plan_invoicer_plans_invoiced",
                "Plans that got at least one invoice in a pass",
                &self.plans_invoiced,
            ),
            (
                "plan_invoicer_invoices_emitted",
                "Invoices emitted",
                &self.invoices,
            ),
            (
                "plan_invoicer_invoice_lines_emitted",
                "Invoice lines emitted",
                &self.lines,
            ),
            (
                "plan_invoicer_plan_failures",
                "Plans that failed or were parked in a pass",
                &self.plan_failures,
            ),
        ] {
            r.register(name, help, counter.clone());
        }
        r.register(
            "plan_invoicer_last_successful_pass_timestamp_seconds",
            "When the last pass finished without failing",
            self.last_success_unix.clone(),
        );
        r.register(
            "plan_invoicer_pass_duration_seconds",
            "Duration of invoicing passes",
            self.pass_duration.clone(),
        );
        r.register(
            "plan_invoicer_stripe_requests",
            "Stripe requests (attempts) by outcome",
            self.stripe_requests(),
        );
        if self.last_audit_unix.get() > 0 {
            r.register(
                "plan_invoicer_audit_findings",
                "Disagreements between Stripe and the local invoices found by the last audit",
                self.audit_findings.clone(),
            );
            r.register(
                "plan_invoicer_last_audit_timestamp_seconds",
                "When the last audit finished",
                self.last_audit_unix.clone(),
            );
        }
        let webhooks = self.webhooks.family();
        r.register(
            "plan_invoicer_stripe_webhook_events",
            "Stripe webhook requests by event type and outcome (applied, unchanged, ignored, duplicate; rejected: a bad signature or body, type unknown)",
            webhooks,
        );
        r.register(
            "plan_invoicer_database_up",
            "Whether the database answered this scrape",
            ConstGauge::new(i64::from(gauges.is_some())),
        );
        if let Some(g) = gauges {
            register_db_gauges(&mut r, &g);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &r);
        out
    }

    /// The gateway's request counts, by outcome (zero before the first pass).
    fn stripe_requests(&self) -> Family<Vec<(String, String)>, Counter> {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        let stats = self.stripe.lock().ok().and_then(|s| s.clone());
        let count = |f: fn(&RequestStats) -> u64| stats.as_deref().map_or(0, f);
        for (outcome, value) in [
            ("ok", count(|s| s.ok.load(Relaxed))),
            ("retryable", count(|s| s.retryable.load(Relaxed))),
            ("fatal", count(|s| s.fatal.load(Relaxed))),
            ("rate_limited", count(|s| s.rate_limited.load(Relaxed))),
        ] {
            family
                .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
                .inc_by(value);
        }
        family
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub db: Db,
    /// The clock the plan gauges count by (the wall clock).
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// GETs `/healthz` on the daemon at `addr` (a wildcard address is reached on loopback), retrying
/// for up to `wait`.
pub async fn check_health(
    addr: &str,
    wait: std::time::Duration,
) -> Result<(), crate::error::AppError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed: std::net::SocketAddr = addr.parse().map_err(|_| {
        crate::error::invalid(format!(
            "invalid HTTP address {addr:?} (expected host:port)"
        ))
    })?;
    let target = if parsed.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], parsed.port()))
    } else {
        parsed
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(target).await?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(response.starts_with(b"HTTP/1.1 200"))
        };
        let healthy = tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await;
        if matches!(healthy, Ok(Ok(true))) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::error::AppError::Busy(format!(
                "plan-invoicer at {target} is not healthy"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Ready when the database answers through the worker's own pool, with the current schema:
/// 503 while it does not, 200 again as soon as it does.
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let db = s.db.clone();
    let result =
        tokio::task::spawn_blocking(move || db.ready(std::time::Duration::from_secs(2))).await;
    match result {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// The gauges read from the database at scrape time (left out when it did not answer).
fn register_db_gauges(r: &mut Registry, g: &DbGauges) {
    r.register(
        "plan_invoicer_unpaid_invoices",
        "Invoices open or uncollectible by Stripe's webhooks",
        ConstGauge::new(g.unpaid_invoices),
    );
    r.register(
        "plan_invoicer_unpaid_invoices_cents",
        "What the unpaid invoices come to, in cents",
        ConstGauge::new(g.unpaid_cents),
    );
    let (attention, started, overdue) = (g.attention, g.started, g.overdue);
    for (name, help, value) in [
        (
            "plan_invoicer_plans_needing_attention",
            "Plans whose invoicing is blocked until someone acts",
            attention,
        ),
        (
            "plan_invoicer_plans_started_with_live_lease",
            "Plans claimed by a worker right now",
            started,
        ),
        (
            "plan_invoicer_plans_overdue",
            "Plans whose next invoice date is more than an hour past",
            overdue,
        ),
    ] {
        r.register(
            name,
            help,
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }
}

/// What the database says at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbGauges {
    pub attention: usize,
    pub started: usize,
    pub overdue: usize,
    pub unpaid_invoices: i64,
    pub unpaid_cents: i64,
}

/// The gauges about plans and payments, counted in the database.
pub fn plan_gauges(db: &Db, now: chrono::DateTime<chrono::Utc>) -> Option<DbGauges> {
    let counts = db.run_within(std::time::Duration::from_secs(1), |c| {
        let mut count = |f: PlanFilter| {
            repo::count_plans(c, &f).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let attention = count(PlanFilter {
            needs_attention: true,
            ..PlanFilter::default()
        })?;
        let started = count(PlanFilter {
            lease_live_at: Some(now),
            ..PlanFilter::default()
        })?;
        let overdue = count(PlanFilter {
            due_at: Some(now - chrono::Duration::hours(1)),
            ..PlanFilter::default()
        })?;
        let unpaid = crate::db::payments::unpaid(c)?;
        Ok::<_, crate::db::DbError>(DbGauges {
            attention,
            started,
            overdue,
            unpaid_invoices: unpaid.count,
            unpaid_cents: unpaid.amount_cents,
        })
    });
    counts.ok()
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let db = s.db.clone();
    let now = s.clock.now();
    let gauges = tokio::task::spawn_blocking(move || plan_gauges(&db, now))
        .await
        .ok()
        .flatten();
    (
        [("content-type", prometheus_text::CONTENT_TYPE)],
        s.metrics.render(gauges),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The families of an exposition: `TYPE` lines, and every sample's name with its labels.
    fn families(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut types = BTreeSet::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                types.insert(t.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
                samples.insert(normalize_le(series));
            }
        }
        (types, samples)
    }

    /// A bucket's bound as a number: `le="1"` and `le="1.0"` are the same bucket (Prometheus 3
    /// reads both as 1; the hand-written exposition wrote `1`, prometheus-client writes `1.0`).
    fn normalize_le(series: &str) -> String {
        match series.split_once("{le=\"") {
            Some((name, rest)) => {
                let bound = rest.trim_end_matches("\"}");
                let bound = bound
                    .parse::<f64>()
                    .map_or(bound.to_string(), |b| format!("{b:?}"));
                format!("{name}{{le=\"{bound}\"}}")
            }
            None => series.to_string(),
        }
    }

    /// The names, types, labels and buckets scraped before the move to prometheus-client; a
    /// dashboard or an alert that names one of them keeps working.
    #[test]
    fn the_families_stay_the_same() {
        let m = Metrics::default();
        m.record_pass(&Err("x".into()), 1200, 1_700_000_000);
        m.record_audit(2, 1_700_000_000);
        m.webhooks.record("invoice.paid", "applied");
        let text = m.render(Some(DbGauges {
            attention: 1,
            started: 2,
            overdue: 3,
            unpaid_invoices: 4,
            unpaid_cents: 5000,
        }));
        let (types, samples) = families(&text);
        let expected_types: BTreeSet<String> = [
            "plan_invoicer_passes_total counter",
            "plan_invoicer_passes_failed_total counter",
            "plan_invoicer_ticks_skipped_total counter",
            "plan_invoicer_plans_invoiced_total counter",
            "plan_invoicer_invoices_emitted_total counter",
            "plan_invoicer_invoice_lines_emitted_total counter",
            "plan_invoicer_plan_failures_total counter",
            "plan_invoicer_stripe_requests_total counter",
            "plan_invoicer_last_successful_pass_timestamp_seconds gauge",
            "plan_invoicer_pass_duration_seconds histogram",
            "plan_invoicer_audit_findings gauge",
            "plan_invoicer_last_audit_timestamp_seconds gauge",
            "plan_invoicer_database_up gauge",
            "plan_invoicer_plans_needing_attention gauge",
            "plan_invoicer_plans_started_with_live_lease gauge",
            "plan_invoicer_plans_overdue gauge",
            "plan_invoicer_unpaid_invoices gauge",
            "plan_invoicer_unpaid_invoices_cents gauge",
            "plan_invoicer_stripe_webhook_events_total counter",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(types, expected_types);
        let mut expected_samples: BTreeSet<String> = expected_types
            .iter()
            .filter(|t| !t.ends_with("histogram") && !t.starts_with("plan_invoicer_stripe"))
            .map(|t| t.split(' ').next().unwrap_or_default().to_string())
            .collect();
        for outcome in ["ok", "retryable", "fatal", "rate_limited"] {
            expected_samples.insert(format!(
                "plan_invoicer_stripe_requests_total{{outcome=\"{outcome}\"}}"
            ));
        }
        for (kind, outcome) in [("invoice.paid", "applied"), ("unknown", "rejected")] {
            expected_samples.insert(format!(
                "plan_invoicer_stripe_webhook_events_total{{type=\"{kind}\",outcome=\"{outcome}\"}}"
            ));
        }
        for le in [
            "0.05", "0.1", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "300.0", "inf",
        ] {
            expected_samples.insert(format!(
                "plan_invoicer_pass_duration_seconds_bucket{{le=\"{le}\"}}"
            ));
        }
        expected_samples.insert("plan_invoicer_pass_duration_seconds_sum".into());
        expected_samples.insert("plan_invoicer_pass_duration_seconds_count".into());
        assert_eq!(samples, expected_samples, "{text}");
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    normalize_le(l.rsplit_once(' ').map_or("", |(s, _)| s))
                        == format!("plan_invoicer_pass_duration_seconds_bucket{{le=\"{le}\"}}")
                })
                .and_then(|l| l.rsplit_once(' ').map(|(_, v)| v.to_string()))
        };
        assert_eq!(bucket("1.0").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("2.5").as_deref(), Some("1"), "{text}");
        assert!(
            text.contains("plan_invoicer_passes_failed_total 1"),
            "{text}"
        );
        assert!(text.contains("plan_invoicer_plans_overdue 3"), "{text}");
        // Without the database, its gauges are left out and database_up says why.
        let (types, _) = families(&m.render(None));
        assert!(types.contains("plan_invoicer_database_up gauge"));
        assert!(!types.contains("plan_invoicer_plans_overdue gauge"));
    }
}
