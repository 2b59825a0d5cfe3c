//! `bench-api`: a load generator for the HTTP API's busiest request, the seat count. Keep-alive
//! clients (hyper's pooled client) each own a share of the plans and send
//! `POST /v1/plans/{id}/seats` one after another, optionally paced to a total rate; prints
//! the rate achieved and the latency percentiles.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::error::{invalid, AppError};

/// What to send.
#[derive(Debug, Clone)]
pub struct Load {
    /// The API's base URL, `http://host:port`.
    pub url: String,
    pub token: String,
    /// Plans `first..=last` get the updates, shared out among the clients.
    pub first_plan: i64,
    pub last_plan: i64,
    pub clients: usize,
    pub requests: usize,
    /// Requests per second in all (0: as fast as the answers come).
    pub rate: u32,
    /// `Plan-Invoicer-Now` of the first request (for a server under `--allow-time-travel`); each
    /// later request of a client is one millisecond later, so a plan's times only move forward.
    pub start_at: Option<crate::domain::Ts>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub requests: usize,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn run(load: Load) -> Result<LoadReport, AppError> {
    if load.clients == 0 || load.last_plan < load.first_plan {
        return Err(invalid("bench-api needs at least one client and one plan"));
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let per_client = load.requests.div_ceil(load.clients);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..load.clients {
        let client = client.clone();
        let load = load.clone();
        tasks.spawn(async move { one_client(&client, &load, n, per_client).await });
    }
    let mut latencies = vec![];
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    while let Some(done) = tasks.join_next().await {
        let (lat, good, bad, err) = done.map_err(|e| invalid(format!("a client failed: {e}")))?;
        latencies.extend(lat);
        ok += good;
        errors += bad;
        first_error = first_error.or(err);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        (latencies[i.min(latencies.len() - 1)] * 100.0).round() / 100.0
    };
    Ok(LoadReport {
        requests: ok + errors,
        ok,
        errors,
        first_error,
        seconds: (seconds * 100.0).round() / 100.0,
        per_second: ((ok + errors) as f64 / seconds * 10.0).round() / 10.0,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}

type ClientResult = (Vec<f64>, usize, usize, Option<String>);

async fn one_client(
    client: &Client<HttpConnector, Full<Bytes>>,
    load: &Load,
    n: usize,
    count: usize,
) -> ClientResult {
    let plans: Vec<i64> = (load.first_plan..=load.last_plan)
        .filter(|p| (*p - load.first_plan) as usize % load.clients == n)
        .collect();
    let mut out: ClientResult = (Vec::with_capacity(count), 0, 0, None);
    if plans.is_empty() {
        return out;
    }
    // Each client sends its share of the total rate.
    let gap = (load.rate > 0)
        .then(|| Duration::from_secs_f64(load.clients as f64 / f64::from(load.rate)));
    let begin = tokio::time::Instant::now();
    for k in 0..count {
        if let Some(gap) = gap {
            tokio::time::sleep_until(begin + gap * k as u32).await;
        }
        let plan = plans[k % plans.len()];
        let count_value = 10 + (k / plans.len()) % 7;
        let mut req = Request::post(format!("{}/v1/plans/{plan}/seats", load.url))
            .header("authorization", format!("Bearer {}", load.token))
            .header("content-type", "application/json");
        if let Some(t) = load.start_at {
            let at = t + chrono::Duration::milliseconds(k as i64 + 1);
            req = req.header(
                "plan-invoicer-now",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
        let Ok(req) = req.body(Full::new(Bytes::from(format!(
            "{{\"count\": {count_value}}}"
        )))) else {
            out.2 += 1;
            continue;
        };
        let sent = Instant::now();
        let result = match client.request(req).await {
            Ok(r) => {
                let status = r.status();
                let body = r.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b))),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        out.0.push(sent.elapsed().as_secs_f64() * 1000.0);
        match result {
            Ok(()) => out.1 += 1,
            Err(e) => {
                out.2 += 1;
                out.3.get_or_insert(e);
            }
        }
    }
    out
}
