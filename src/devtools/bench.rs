//! `bench`: the pass's throughput on a fresh database against the Stripe emulator, which runs
//! as a process of its own in counts-only mode, so that the peak memory reported is the
//! worker's alone (an emulator keeps every object it served: about 1 GB at 10,000 plans).
//! Results and the command line are kept in `docs/BENCHMARKS.md`.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use serde::Serialize;

use crate::db::{Conn, Db, DbUrl};
use crate::domain::{BillingSchedule, Tier};
use crate::error::{invalid, AppError};
use crate::jobs::{run_pass, PassOptions};
use crate::ops::{self, CustomerInput, PlanInput};
use crate::stripe::budget::Limits;
use crate::stripe::client::{StripeConfig, StripeGateway};
use crate::stripe::ApiKey;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub backend: &'static str,
    pub plans: usize,
    pub seed_ms: u64,
    pub pass_ms: u64,
    pub plans_per_second: f64,
    pub invoices: usize,
    pub stripe_requests: usize,
    pub noop_pass_ms: u64,
    /// The worker's own peak resident memory (the emulator is another process).
    pub peak_rss_kib: Option<u64>,
}

/// `plan-invoicer stripe-emulator --counts-only` as a child process, ended on drop.
struct ExternalEmulator {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl ExternalEmulator {
    fn start() -> Result<ExternalEmulator, AppError> {
        let failed =
            |e: &dyn std::fmt::Display| invalid(format!("cannot start the Stripe emulator: {e}"));
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| failed(&e))?;
        let exe = std::env::current_exe().map_err(|e| failed(&e))?;
        let child = std::process::Command::new(exe)
            .args([
                "stripe-emulator",
                "--listen",
                &addr.to_string(),
                "--counts-only",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| failed(&e))?;
        let emulator = ExternalEmulator { child, addr };
        for _ in 0..100 {
            if emulator.counts().is_ok() {
                return Ok(emulator);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(failed(&"it did not answer within 5 seconds"))
    }

    /// The emulator's request counts (`GET /_emulator/counts`): the requests it answered.
    fn counts(&self) -> Result<usize, AppError> {
        use std::io::{Read, Write};
        let failed = |e: &dyn std::fmt::Display| invalid(format!("emulator counts: {e}"));
        let mut s = std::net::TcpStream::connect(self.addr).map_err(|e| failed(&e))?;
        s.write_all(b"GET /_emulator/counts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .map_err(|e| failed(&e))?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).map_err(|e| failed(&e))?;
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let counts: serde_json::Value = serde_json::from_str(body).map_err(|e| failed(&e))?;
        Ok(counts
            .as_object()
            .map(|m| {
                m.values()
                    .map(|c| {
                        ["ok", "rate_limited", "other"]
                            .iter()
                            .filter_map(|k| c[*k].as_u64())
                            .sum::<u64>() as usize
                    })
                    .sum()
            })
            .unwrap_or(0))
    }
}

impl Drop for ExternalEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Seeds `plans` plans that are each due once, then times one pass over them and a second
/// pass that finds nothing to do. `url`: an empty database to use (default: a temporary SQLite
/// file).
pub async fn run(
    plans: usize,
    url: Option<DbUrl>,
    concurrency: usize,
) -> Result<BenchReport, AppError> {
    let dir = std::env::temp_dir().join(format!("plan-invoicer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    let url = url.unwrap_or_else(|| DbUrl::Sqlite(dir.join("bench.db")));
    if let DbUrl::Sqlite(p) = &url {
        let _ = std::fs::remove_file(p);
    }
    let mut conn = Conn::open(&url, true)?;
    conn.migrate()?;
    let t0 = Utc
        .with_ymd_and_hms(2025, 1, 6, 9, 0, 0)
        .single()
        .ok_or_else(|| invalid("bench date"))?;
    let seed = Instant::now();
    for i in 0..plans {
        let input = CustomerInput {
            name: format!("bench-{i}"),
            ..CustomerInput::default()
        };
        let customer_id = ops::create_customer(&mut conn, &input, t0)?;
        let plan = PlanInput {
            automanage_licenses: true,
            ..PlanInput::new(
                customer_id,
                Tier::CloudStandard,
                BillingSchedule::Monthly,
                10,
            )
        };
        let plan_id = ops::create_plan(&mut conn, &plan, t0)?;
        ops::report_seats(&mut conn, plan_id, 12, t0 + Duration::days(10))?;
    }
    let seed_ms = ms(seed);

    let emulator = ExternalEmulator::start()?;
    let addr = emulator.addr;
    let key = ApiKey::new("sk_test_bench").ok_or_else(|| invalid("bench key"))?;
    let mut config = StripeConfig::new(key, Some(&format!("http://{addr}/")));
    config.limits = Limits {
        per_second: 1_000_000,
        per_endpoint: 1_000_000,
        in_flight: 1024,
    };
    let gateway = std::sync::Arc::new(StripeGateway::new(config)?);
    drop(conn);
    let db = Db::connect(&url, crate::config::DEFAULT_POOL_SIZE)?;
    let now = t0 + Duration::days(32);
    let opts = PassOptions {
        worker_id: "bench".into(),
        concurrency,
        ..PassOptions::default()
    };
    let pass = Instant::now();
    let report = run_pass(&db, Some(gateway.clone()), now, &opts).await?;
    let pass_ms = ms(pass);
    let noop = Instant::now();
    run_pass(&db, Some(gateway.clone()), now, &opts).await?;
    let noop_pass_ms = ms(noop);
    Ok(BenchReport {
        backend: if url.is_sqlite() {
            "sqlite"
        } else {
            "postgres"
        },
        plans,
        seed_ms,
        pass_ms,
        plans_per_second: plans as f64 / (pass_ms.max(1) as f64 / 1000.0),
        invoices: report.invoices_sent,
        stripe_requests: emulator.counts()?,
        noop_pass_ms,
        peak_rss_kib: peak_rss_kib(),
    })
}
