//! The daemon's HTTP endpoints: `/healthz` (alive), `/readyz` (database reachable, schema
//! current) and `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::clock::Clock;
use crate::db::repo::{self, PlanFilter};
use crate::db::Db;
use crate::jobs::PassReport;
use crate::stripe::client::RequestStats;

const BUCKETS: [f64; 10] = [0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Counters the daemon keeps; gauges about plans are read from the database at scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    pub passes: AtomicU64,
    pub passes_failed: AtomicU64,
    pub ticks_skipped: AtomicU64,
    pub plans_invoiced: AtomicU64,
    pub invoices: AtomicU64,
    pub lines: AtomicU64,
    pub plan_failures: AtomicU64,
    pub last_success_unix: AtomicU64,
    /// The findings of the last scheduled audit, and when it finished (0: never).
    pub audit_findings: AtomicU64,
    pub last_audit_unix: AtomicU64,
    /// Cumulative counts per bucket, then the count and the sum in milliseconds.
    histogram: Mutex<([u64; BUCKETS.len()], u64, u64)>,
    pub stripe: Mutex<Option<Arc<RequestStats>>>,
}

impl Metrics {
    pub fn record_pass(&self, result: &Result<PassReport, String>, elapsed_ms: u64, now_unix: u64) {
        self.passes.fetch_add(1, Relaxed);
        match result {
            Ok(r) => {
                self.plans_invoiced
                    .fetch_add(r.plans_invoiced as u64, Relaxed);
                self.invoices.fetch_add(r.invoices_sent as u64, Relaxed);
                self.lines.fetch_add(r.lines_sent as u64, Relaxed);
                self.plan_failures
                    .fetch_add((r.failures_count + r.needs_attention_count) as u64, Relaxed);
                self.last_success_unix.store(now_unix, Relaxed);
            }
            Err(_) => {
                self.passes_failed.fetch_add(1, Relaxed);
            }
        }
        if let Ok(mut h) = self.histogram.lock() {
            let seconds = elapsed_ms as f64 / 1000.0;
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.0[i] += 1;
                }
            }
            h.1 += 1;
            h.2 += elapsed_ms;
        }
    }

    /// Prometheus text exposition. `plans` is (needing attention, started with a live lease,
    /// overdue), when the database answered.
    pub fn render(&self, plans: Option<(usize, usize, usize)>) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "plan_invoicer_passes_total",
                "Invoicing passes run.",
                &self.passes,
            ),
            (
                "plan_invoicer_passes_failed_total",
                "Passes that failed as a whole.",
                &self.passes_failed,
            ),
            (
                "plan_invoicer_ticks_skipped_total",
                "Scheduled ticks skipped because a pass was running.",
                &self.ticks_skipped,
            ),
            (
                "plan_invoicer_plans_invoiced_total",
                "Plans that got at least one invoice in a pass.",
                &self.plans_invoiced,
            ),
            (
                "plan_invoicer_invoices_emitted_total",
                "Invoices emitted.",
                &self.invoices,
            ),
            (
                "plan_invoicer_invoice_lines_emitted_total",
                "Invoice lines emitted.",
                &self.lines,
            ),
            (
                "plan_invoicer_plan_failures_total",
                "Plans that failed or were parked in a pass.",
                &self.plan_failures,
            ),
        ] {
            metric(&mut out, "counter", name, help, value.load(Relaxed));
        }
        metric(
            &mut out,
            "gauge",
            "plan_invoicer_last_successful_pass_timestamp_seconds",
            "When the last pass finished without failing.",
            self.last_success_unix.load(Relaxed),
        );
        self.render_histogram(&mut out);
        self.render_stripe(&mut out);
        if self.last_audit_unix.load(Relaxed) > 0 {
            metric(
                &mut out,
                "gauge",
                "plan_invoicer_audit_findings",
                "Disagreements between Stripe and the local invoices found by the last audit.",
                self.audit_findings.load(Relaxed),
            );
            metric(
                &mut out,
                "gauge",
                "plan_invoicer_last_audit_timestamp_seconds",
                "When the last audit finished.",
                self.last_audit_unix.load(Relaxed),
            );
        }
        metric(
            &mut out,
            "gauge",
            "plan_invoicer_database_up",
            "Whether the database answered this scrape.",
            u8::from(plans.is_some()),
        );
        if let Some((attention, started, overdue)) = plans {
            for (name, help, value) in [
                (
                    "plan_invoicer_plans_needing_attention",
                    "Plans whose invoicing is blocked until someone acts.",
                    attention,
                ),
                (
                    "plan_invoicer_plans_started_with_live_lease",
                    "Plans claimed by a worker right now.",
                    started,
                ),
                (
                    "plan_invoicer_plans_overdue",
                    "Plans whose next invoice date is more than an hour past.",
                    overdue,
                ),
            ] {
                metric(&mut out, "gauge", name, help, value);
            }
        }
        out
    }

    fn render_histogram(&self, out: &mut String) {
        let Ok(h) = self.histogram.lock() else {
            return;
        };
        out.push_str("# HELP plan_invoicer_pass_duration_seconds Duration of invoicing passes.\n# TYPE plan_invoicer_pass_duration_seconds histogram\n");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "plan_invoicer_pass_duration_seconds_bucket{{le=\"{le}\"}} {}",
                h.0[i]
            );
        }
        let _ = writeln!(
            out,
            "plan_invoicer_pass_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.1
        );
        let _ = writeln!(
            out,
            "plan_invoicer_pass_duration_seconds_sum {}",
            h.2 as f64 / 1000.0
        );
        let _ = writeln!(out, "plan_invoicer_pass_duration_seconds_count {}", h.1);
    }

    fn render_stripe(&self, out: &mut String) {
        out.push_str("# HELP plan_invoicer_stripe_requests_total Stripe requests (attempts) by outcome.\n# TYPE plan_invoicer_stripe_requests_total counter\n");
        let stats = self.stripe.lock().ok().and_then(|s| s.clone());
        let count = |f: fn(&RequestStats) -> u64| stats.as_deref().map_or(0, f);
        for (outcome, value) in [
            ("ok", count(|s| s.ok.load(Relaxed))),
            ("retryable", count(|s| s.retryable.load(Relaxed))),
            ("fatal", count(|s| s.fatal.load(Relaxed))),
            ("rate_limited", count(|s| s.rate_limited.load(Relaxed))),
        ] {
            let _ = writeln!(
                out,
                "plan_invoicer_stripe_requests_total{{outcome=\"{outcome}\"}} {value}"
            );
        }
    }
}

/// One metric in Prometheus' text format: its help, its type and its value.
fn metric(out: &mut String, kind: &str, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
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

/// The gauges about plans, counted in the database.
pub fn plan_gauges(db: &Db, now: chrono::DateTime<chrono::Utc>) -> Option<(usize, usize, usize)> {
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
        Ok::<_, crate::db::DbError>((attention, started, overdue))
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
        [("content-type", "text/plain; version=0.0.4")],
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
        m.audit_findings.store(2, Relaxed);
        m.last_audit_unix.store(1_700_000_000, Relaxed);
        let text = m.render(Some((1, 2, 3)));
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
