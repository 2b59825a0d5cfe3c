//! Test support: a fresh database per test (an SQLite file in a temp dir, or a new PostgreSQL
//! database dropped afterwards) and a driver for the real binary.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod http;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use plan_invoicer::devtools::emulator::Emulator;

use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL server for tests is (a database per test is created on it).
pub fn pg_base_url() -> String {
    std::env::var("PLAN_INVOICER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// `.ci/run` sets this so that a missing PostgreSQL fails instead of skipping.
pub fn pg_required() -> bool {
    std::env::var("PLAN_INVOICER_REQUIRE_PG").is_ok_and(|v| v == "1")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The runtime that serves the tests' Stripe emulators.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A Stripe emulator on a free port. With `PLAN_INVOICER_STRIPE_RECORD` set, it appends every
/// request it receives to that file (for the conformance check in `.ci/run`).
pub fn start_emulator() -> (Emulator, String) {
    let emu = Emulator::new();
    if let Ok(path) = std::env::var("PLAN_INVOICER_STRIPE_RECORD") {
        emu.record_to(path);
    }
    let addr = runtime()
        .block_on(emu.start("127.0.0.1:0"))
        .expect("start the Stripe emulator");
    (emu, format!("http://{addr}/"))
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub stripe: Emulator,
    pub stripe_base: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A fresh, migrated database; `None` when PostgreSQL is unreachable and not required.
    pub fn new(backend: Backend) -> Option<TestDb> {
        let db = Self::empty(backend)?;
        db.ok(None, &["migrate"]);
        Some(db)
    }

    /// A fresh database without the schema.
    pub fn empty(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                let (stripe, stripe_base) = start_emulator();
                Some(TestDb {
                    backend,
                    url,
                    stripe,
                    stripe_base,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = format!("{}/postgres", pg_base_url());
                let mut conn = match PgConnection::establish(&admin) {
                    Ok(c) => c,
                    Err(e) if !pg_required() => {
                        eprintln!("skipping PostgreSQL test: {e}");
                        return None;
                    }
                    Err(e) => panic!(
                        "PostgreSQL is required (PLAN_INVOICER_REQUIRE_PG=1) but unreachable: {e}"
                    ),
                };
                let name = format!(
                    "pi_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                );
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                let (stripe, stripe_base) = start_emulator();
                Some(TestDb {
                    backend,
                    url: format!("{}/{name}", pg_base_url()),
                    stripe,
                    stripe_base,
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// Runs the binary; returns (exit code, stdout, stderr).
    pub fn run(&self, now: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plan-invoicer"));
        cmd.env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .env_remove("PLAN_INVOICER_NOW")
            .env_remove("STRIPE_API_KEY_FILE")
            .env("STRIPE_API_KEY", "sk_test_plan_invoicer")
            .env("STRIPE_API_BASE", &self.stripe_base)
            .env("STRIPE_MAX_REQUESTS_PER_SECOND", "1000")
            .env("STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT", "1000")
            .env("STRIPE_RETRY_BASE_MS", "10");
        if let Some(now) = now {
            cmd.args(["--now", now]);
        }
        cmd.arg("--json").args(args);
        let out = cmd.output().expect("run plan-invoicer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the binary, expects exit 0, returns the JSON document.
    pub fn ok(&self, now: Option<&str>, args: &[&str]) -> Value {
        let (code, out, err) = self.run(now, args);
        assert_eq!(code, 0, "{args:?} failed with {code}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Runs the binary, expects `code`, returns the JSON document (passes with exit 3).
    pub fn code(&self, code: i32, now: Option<&str>, args: &[&str]) -> Value {
        let (got, out, err) = self.run(now, args);
        assert_eq!(
            got, code,
            "{args:?}: expected exit {code}, got {got}: {err}"
        );
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    /// Expects a one-line error with exit 2 and returns it.
    pub fn refused(&self, now: Option<&str>, args: &[&str]) -> String {
        let (code, out, err) = self.run(now, args);
        assert_eq!(
            code, 2,
            "{args:?}: expected exit 2, got {code}: {out} {err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: expected one line on stderr, got {err:?}"
        );
        assert!(
            out.trim().is_empty(),
            "{args:?}: nothing on stdout expected, got {out}"
        );
        lines[0].to_string()
    }

    pub fn id(&self, now: Option<&str>, args: &[&str]) -> i64 {
        self.ok(now, args)["id"].as_i64().expect("an id")
    }

    /// A pass at `now`; beforehand every due plan is previewed, and afterwards each preview
    /// must equal what the pass sent for that plan, line for line, and Stripe must hold exactly
    /// the local invoices.
    pub fn pass(&self, now: &str) -> Value {
        let due = self.ok(Some(now), &["plan", "list", "--due"]);
        let previews: Vec<(i64, Value)> = due
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            // A never-started successor is invoiced through its predecessor.
            .filter(|p| p["status"] != "never_started")
            .filter_map(|p| p["id"].as_i64())
            .map(|id| {
                let preview = self.ok(None, &["plan", "preview", &id.to_string(), "--at", now]);
                (id, preview)
            })
            .collect();
        let report = self.ok(Some(now), &["run-once"]);
        let sent = report["invoices"].as_array().cloned().unwrap_or_default();
        for (id, preview) in previews {
            let shape = |invoices: Vec<&Value>| -> Vec<(Value, Value, Vec<Line>)> {
                invoices
                    .into_iter()
                    .map(|i| (i["event_time"].clone(), i["total_cents"].clone(), lines(i)))
                    .collect()
            };
            let expected = preview["invoices"].as_array().cloned().unwrap_or_default();
            assert_eq!(
                shape(sent.iter().filter(|i| i["plan_id"] == id).collect()),
                shape(expected.iter().collect()),
                "plan {id} at {now}: the pass sent what the preview showed"
            );
        }
        self.assert_stripe_matches_local();
        report
    }

    /// Every local invoice exists once in Stripe, finalized, with the same lines (amounts,
    /// quantities, unit prices, periods, descriptions) in creation order, and nothing else.
    pub fn assert_stripe_matches_local(&self) {
        let local = self.invoices();
        let remote = self.stripe.invoices();
        assert_eq!(
            remote.len(),
            local.len(),
            "Stripe has {} invoices, local {}",
            remote.len(),
            local.len()
        );
        for inv in &local {
            let sid = inv["stripe_invoice_id"]
                .as_str()
                .expect("a sent invoice has a Stripe id");
            let r = remote
                .iter()
                .find(|r| r["id"] == sid)
                .expect("the Stripe invoice exists");
            assert_eq!(
                r["status"],
                if inv["total_cents"].as_i64() > Some(0) {
                    "open"
                } else {
                    "paid"
                }
            );
            assert_eq!(r["total"], inv["total_cents"]);
            assert_eq!(r["collection_method"], inv["collection_method"]);
            assert_eq!(
                r["metadata"]["plan_invoicer_invoice_id"],
                inv["id"].to_string()
            );
            let rl = r["lines"]["data"].as_array().cloned().unwrap_or_default();
            let ll = inv["lines"].as_array().cloned().unwrap_or_default();
            assert_eq!(rl.len(), ll.len(), "lines of {sid}");
            for (a, b) in rl.iter().zip(ll.iter()) {
                assert_eq!(a["description"], b["description"]);
                assert_eq!(a["amount"], b["amount_cents"]);
                assert_eq!(a["discountable"], false);
                let ts = |v: &Value| {
                    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or(""))
                        .map(|d| d.timestamp())
                        .ok()
                };
                assert_eq!(a["period"]["start"].as_i64(), ts(&b["period_start"]));
                assert_eq!(a["period"]["end"].as_i64(), ts(&b["period_end"]));
                if b["kind"] != "flat_discount"
                    && b["kind"] != "credit"
                    && !(b["kind"] == "renewal" && a["unit_amount_decimal"].is_null())
                {
                    assert_eq!(a["quantity"], b["quantity"]);
                    assert_eq!(a["unit_amount_decimal"], b["unit_amount_cents"].to_string());
                }
                assert_eq!(a["id"], b["stripe_invoice_item_id"]);
            }
        }
        assert_eq!(
            self.stripe.items().len(),
            local
                .iter()
                .map(|i| i["lines"].as_array().map_or(0, Vec::len))
                .sum::<usize>(),
            "no stray invoice items"
        );
    }

    pub fn plan(&self, id: i64) -> Value {
        self.ok(None, &["plan", "show", &id.to_string()])
    }

    pub fn invoices(&self) -> Vec<Value> {
        self.ok(None, &["invoices", "list"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", pg_base_url())) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

/// An RFC 3339 instant.
/// A command line written as one string (`"plan create --customer 1 …"`), split on spaces:
/// for arguments without spaces.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

pub fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    plan_invoicer::cli::parse_time(s).expect("an RFC 3339 time")
}

/// A library connection to the test database.
pub fn connect(db: &TestDb) -> plan_invoicer::db::Conn {
    let url = plan_invoicer::db::DbUrl::parse(&db.url).expect("a database URL");
    plan_invoicer::db::Conn::open_checked(&url).expect("connect")
}

/// The pooled database handle a pass takes.
pub fn pool(db: &TestDb) -> plan_invoicer::db::Db {
    let url = plan_invoicer::db::DbUrl::parse(&db.url).expect("a database URL");
    plan_invoicer::db::Db::connect(&url, 4).expect("connect")
}

/// A gateway to the test's emulator, unpaced, with quick retries.
pub fn gateway(
    db: &TestDb,
    attempts: u32,
) -> std::sync::Arc<plan_invoicer::stripe::client::StripeGateway> {
    let key = plan_invoicer::stripe::ApiKey::new("sk_test_x").expect("a key");
    let mut config = plan_invoicer::stripe::client::StripeConfig::new(key, Some(&db.stripe_base));
    config.max_attempts = attempts;
    config.limits = plan_invoicer::stripe::budget::Limits {
        per_second: 1_000_000,
        per_endpoint: 1_000_000,
        in_flight: 1024,
    };
    config.base_backoff = std::time::Duration::from_millis(2);
    std::sync::Arc::new(
        plan_invoicer::stripe::client::StripeGateway::new(config).expect("a gateway"),
    )
}

/// `count` customers with a monthly automatic Cloud Standard plan of 5 licenses anchored at
/// `anchor`, created through the CLI.
pub fn monthly_plans(db: &TestDb, count: usize, anchor: &str) {
    for i in 0..count {
        let cust = db.id(
            Some(anchor),
            &["customer", "create", "--name", &format!("c{i}")],
        );
        let c = cust.to_string();
        db.id(
            Some(anchor),
            &[
                "plan",
                "create",
                "--customer",
                &c,
                "--tier",
                "cloud_standard",
                "--schedule",
                "monthly",
                "--licenses",
                "5",
                "--automanage-licenses",
            ],
        );
    }
}

/// One line of an invoice as `(description, quantity, unit, amount, period_start, period_end)`.
pub type Line = (String, i64, i64, i64, String, String);

/// One line of an invoice as `(description, quantity, unit, amount, period_start, period_end)`.
pub fn lines(invoice: &Value) -> Vec<(String, i64, i64, i64, String, String)> {
    invoice["lines"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["description"].as_str().unwrap_or("").to_string(),
                        l["quantity"].as_i64().unwrap_or(0),
                        l["unit_amount_cents"].as_i64().unwrap_or(0),
                        l["amount_cents"].as_i64().unwrap_or(0),
                        l["period_start"].as_str().unwrap_or("").to_string(),
                        l["period_end"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn line(
    d: &str,
    q: i64,
    u: i64,
    a: i64,
    s: &str,
    e: &str,
) -> (String, i64, i64, i64, String, String) {
    (d.to_string(), q, u, a, s.to_string(), e.to_string())
}

/// Generates one test per backend for a scenario `fn(&TestDb)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { if let Some(db) = $crate::common::TestDb::new($crate::common::Backend::Sqlite) { super::$name(&db) } } )+
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(db) = $crate::common::TestDb::new($crate::common::Backend::Postgres) { super::$name(&db) } } )+
        }
    };
}

/// A request to the test's Stripe emulator as an operator would make it (curl, a test key);
/// returns the JSON answer.
pub fn stripe_request(db: &TestDb, method: &str, path: &str) -> Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            method,
            "-u",
            "sk_test_operator:",
            &format!("{}v1/{path}", db.stripe_base),
        ])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn stripe_post(db: &TestDb, path: &str) -> Value {
    stripe_request(db, "POST", path)
}

/// Stripe's side without any id (Stripe's or local, which depend on the order of work):
/// per invoice its customer, status, totals, collection and lines; sorted.
pub fn stripe_snapshot(emu: &Emulator) -> Vec<Value> {
    let customers = emu.customers();
    let name = |id: &Value| {
        customers
            .iter()
            .find(|c| c["id"] == *id)
            .map_or(Value::Null, |c| c["name"].clone())
    };
    let mut invoices: Vec<Value> = emu
        .invoices()
        .into_iter()
        .map(|i| {
            let lines: Vec<Value> = i["lines"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|l| {
                    serde_json::json!([
                        l["description"],
                        l["quantity"],
                        l["unit_amount_decimal"],
                        l["amount"],
                        l["period"],
                        l["discountable"]
                    ])
                })
                .collect();
            serde_json::json!([
                name(&i["customer"]),
                i["metadata"]["period_start"],
                i["status"],
                i["total"],
                i["collection_method"],
                i["days_until_due"],
                i["statement_descriptor"],
                lines
            ])
        })
        .collect();
    invoices.sort_by_key(|v| v.to_string());
    invoices
}

/// A pass through the library with its own pool and a quick-retrying gateway.
pub fn pass_with(
    db: &TestDb,
    now: &str,
    opts: &plan_invoicer::jobs::PassOptions,
    attempts: u32,
) -> plan_invoicer::jobs::PassReport {
    runtime()
        .block_on(plan_invoicer::jobs::run_pass(
            &pool(db),
            Some(gateway(db, attempts)),
            at(now),
            opts,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `f` every 50 ms until it holds or `timeout` has passed.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Runs one statement on the PostgreSQL server's `postgres` database (taking a test database
/// away and giving it back).
pub fn pg_admin(sql: &str) {
    let mut conn = PgConnection::establish(&format!("{}/postgres", pg_base_url()))
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query(sql)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A plan input to fill in with struct update syntax: a monthly Cloud Standard plan of no one.
pub fn base_plan() -> plan_invoicer::ops::PlanInput {
    use plan_invoicer::domain::{BillingSchedule, Tier};
    plan_invoicer::ops::PlanInput::new(0, Tier::CloudStandard, BillingSchedule::Monthly, 0)
}
