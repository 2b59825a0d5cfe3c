//! The concurrent pass (issue 8): the same invoices at any concurrency, a customer's plans
//! never interleaved (within a pass and across workers), several workers within one Stripe
//! budget, transient answers retried, a circuit breaker when Stripe is unreachable, and
//! workers killed at random moments leaving Stripe with exactly the local invoices.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration as StdDuration;

use crate::common;
use crate::common::{at, base_plan, connect, Backend, TestDb};
use chrono::Duration;
use plan_invoicer::db::Conn;
use plan_invoicer::devtools::emulator::{Faults, RateLimits};
use plan_invoicer::domain::{BillingSchedule, Tier};
use plan_invoicer::jobs::{PassOptions, PassReport};
use plan_invoicer::ops::{self, CustomerInput, PlanInput};
use serde_json::Value;

const T0: &str = "2012-01-02T03:04:05Z";

/// `n` customers whose plans are due within the first months of 2012, of four kinds in turn:
/// monthly with more seats later, annual, monthly switching to annual at the end of its first
/// cycle (two plans of one customer invoiced in one pass), and self-hosted monthly billed by
/// invoice with the flat discount.
fn book(conn: &mut Conn, n: usize) {
    let t0 = at(T0);
    for i in 0..n {
        let kind = if i % 4 == 3 { "self_hosted" } else { "cloud" };
        let input = CustomerInput {
            name: format!("c{i}"),
            kind: plan_invoicer::domain::CustomerKind::parse(kind)
                .unwrap_or_else(|e| panic!("{e}")),
            ..CustomerInput::default()
        };
        let c = ops::create_customer(conn, &input, t0).unwrap_or_else(|e| panic!("{e}"));
        let mut plan = PlanInput {
            customer_id: c,
            tier: Tier::CloudStandard,
            schedule: BillingSchedule::Monthly,
            licenses: 5 + (i % 7) as i64,
            automanage_licenses: true,
            ..base_plan()
        };
        match i % 4 {
            1 => plan.schedule = BillingSchedule::Annual,
            3 => {
                plan.tier = Tier::SelfHostedBasic;
                plan.automanage_licenses = false;
                plan.invoice_billing = true;
                plan.licenses = 10 + (i % 5) as i64;
                ops::report_usage(conn, c, None, at("2012-06-01T00:00:00Z"))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            _ => {}
        }
        let p = ops::create_plan(conn, &plan, t0).unwrap_or_else(|e| panic!("{e}"));
        match i % 4 {
            0 => {
                ops::report_seats(conn, p, 9 + (i % 3) as i64, t0 + Duration::days(9))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            2 => {
                // The new annual plan starts at the end of the cycle, and the old plan's last
                // invoice bills the seats added in its final month: two plans, one pass.
                ops::schedule_change(
                    conn,
                    p,
                    plan_invoicer::domain::ScheduleChange::SwitchToAnnual,
                    t0 + Duration::days(3),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                ops::report_seats(conn, p, 12, t0 + Duration::days(12))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            _ => {}
        }
    }
}

fn pass_at(db: &TestDb, now: &str, concurrency: usize, attempts: u32) -> PassReport {
    let opts = PassOptions {
        concurrency,
        ..PassOptions::default()
    };
    common::pass_with(db, now, &opts, attempts)
}

/// Every Stripe request of the pass in arrival order, as (customer id in Stripe, plan id):
/// the plan from the invoice's metadata, found through the idempotency keys.
fn plans_touched_in_order(db: &TestDb) -> Vec<(String, i64)> {
    let invoices = db.invoices();
    let mut plan_of_invoice: HashMap<i64, i64> = HashMap::new();
    let mut invoice_of_line: HashMap<i64, i64> = HashMap::new();
    let mut customer_of_invoice: HashMap<i64, String> = HashMap::new();
    let remote = db.stripe.invoices();
    for inv in &invoices {
        let id = inv["id"].as_i64().unwrap_or(0);
        plan_of_invoice.insert(id, inv["plan_id"].as_i64().unwrap_or(0));
        let sid = inv["stripe_invoice_id"].as_str().unwrap_or_default();
        if let Some(r) = remote.iter().find(|r| r["id"] == sid) {
            customer_of_invoice.insert(id, r["customer"].as_str().unwrap_or_default().into());
        }
        for l in inv["lines"].as_array().cloned().unwrap_or_default() {
            if let Some(item) = l["stripe_invoice_item_id"].as_str() {
                if let Some(ri) = db.stripe.items().iter().find(|i| i["id"] == item) {
                    let line = ri["metadata"]["plan_invoicer_line_id"]
                        .as_str()
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    invoice_of_line.insert(line, id);
                }
            }
        }
    }
    db.stripe
        .requests()
        .iter()
        .filter(|r| r.status < 300)
        .filter_map(|r| {
            let key = r.idempotency_key.as_deref()?;
            let rest = key.strip_prefix("plan-invoicer:")?;
            // `plan-invoicer:<installation>:invoice:…` (the installation's keys).
            let rest = match rest.split_once(':') {
                Some((inst, tail)) if inst.chars().all(|c| c.is_ascii_hexdigit()) => tail,
                _ => rest,
            };
            let invoice = if let Some(line) = rest.strip_prefix("invoice-line:") {
                *invoice_of_line.get(&line.parse::<i64>().ok()?)?
            } else if let Some(inv) = rest.strip_prefix("invoice:") {
                inv.trim_end_matches(":finalize").parse::<i64>().ok()?
            } else {
                return None;
            };
            Some((
                customer_of_invoice.get(&invoice)?.clone(),
                *plan_of_invoice.get(&invoice)?,
            ))
        })
        .collect()
}

/// Within the request log, the requests for one customer's plans come plan after plan: once
/// Stripe has seen a later plan of a customer, an earlier one never appears again. Returns
/// how many customers had two plans invoiced.
fn assert_plans_of_a_customer_never_interleave(db: &TestDb) -> usize {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut done: HashMap<String, Vec<i64>> = HashMap::new();
    for (customer, plan) in plans_touched_in_order(db) {
        match last.get(&customer) {
            Some(&p) if p == plan => {}
            Some(&p) => {
                let finished = done.entry(customer.clone()).or_default();
                assert!(
                    !finished.contains(&plan),
                    "plans of {customer} interleave: {plan} again after {p}"
                );
                finished.push(p);
                last.insert(customer, plan);
            }
            None => {
                last.insert(customer, plan);
            }
        }
    }
    done.values().filter(|v| !v.is_empty()).count()
}

/// 200 plans at concurrency 16 emit exactly what concurrency 1 emits.
fn concurrency_does_not_change_the_invoices(backend: Backend) {
    let mut snapshots = vec![];
    for concurrency in [1, 16] {
        let Some(db) = TestDb::new(backend) else {
            return;
        };
        book(&mut connect(&db), 200);
        let report = pass_at(&db, "2012-03-10T00:00:00Z", concurrency, 3);
        assert_eq!(report.exit_code(), 0, "{:?}", report.failures);
        db.assert_stripe_matches_local();
        let switched = assert_plans_of_a_customer_never_interleave(&db);
        assert!(
            switched >= 40,
            "customers with two plans invoiced: {switched}"
        );
        snapshots.push((common::stripe_snapshot(&db.stripe), report.invoices_sent));
    }
    assert!(snapshots[0].1 >= 250, "many invoices: {}", snapshots[0].1);
    assert_eq!(snapshots[0], snapshots[1]);
}

#[test]
fn concurrency_does_not_change_the_invoices_sqlite() {
    concurrency_does_not_change_the_invoices(Backend::Sqlite);
}

#[test]
fn concurrency_does_not_change_the_invoices_postgres() {
    concurrency_does_not_change_the_invoices(Backend::Postgres);
}

fn worker(db: &TestDb, now: &str, extra: &[&str]) -> Command {
    let mut cmd = db.command();
    cmd.args(["--json", "--now", now])
        .arg("run-once")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Four workers on PostgreSQL, each with the account's whole budget split four ways by the
/// heartbeat table, against an emulator that enforces the limits: every plan invoiced once,
/// a customer's plans never interleaved across workers, and almost no 429.
#[test]
fn four_workers_share_one_budget_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    book(&mut connect(&db), 96);
    db.stripe.set_rate_limits(RateLimits {
        per_second: 100,
        per_endpoint_per_second: 25,
    });
    db.stripe.set_faults(Faults {
        latency: StdDuration::from_millis(60),
        ..Faults::default()
    });
    let budget = [
        "--stripe-max-requests-per-second",
        "100",
        "--stripe-max-requests-per-second-per-endpoint",
        "25",
        "--concurrency",
        "8",
    ];
    let children: Vec<_> = (0..4)
        .map(|_| {
            worker(&db, "2012-03-10T00:00:00Z", &budget)
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut sent = 0;
    for child in children {
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        sent += report["invoices_sent"].as_u64().unwrap_or(0);
    }
    db.assert_stripe_matches_local();
    assert_eq!(sent as usize, db.invoices().len(), "each invoice once");
    assert_plans_of_a_customer_never_interleave(&db);
    let counts = db.stripe.counts();
    let total: u64 = counts
        .values()
        .map(|c| c.ok + c.rate_limited + c.other)
        .sum();
    let limited: u64 = counts.values().map(|c| c.rate_limited).sum();
    assert!(
        limited * 50 <= total,
        "at most 2 % rate-limited: {limited} of {total} ({counts:?})"
    );
}

/// An HTML 502 from a proxy and `lock_timeout` 429s are retried; nothing is parked.
#[test]
fn html_502_and_lock_timeouts_are_retried() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    book(&mut connect(&db), 12);
    db.stripe.set_faults(Faults {
        html_502_every: 5,
        lock_timeout_every: 11,
        ..Faults::default()
    });
    let report = pass_at(&db, "2012-03-10T00:00:00Z", 4, 10);
    assert_eq!(
        (report.failures.len(), report.needs_attention.len()),
        (0, 0),
        "{report:?}"
    );
    db.stripe.set_faults(Faults::default());
    db.assert_stripe_matches_local();
    let statuses: Vec<u16> = db.stripe.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&502) && statuses.contains(&429));
}

/// Stripe unreachable: the pass stops claiming after a few requests, releases what it holds
/// for a later retry and ends with one clear line and exit 3; the next pass sends everything.
#[test]
fn unreachable_stripe_opens_the_breaker() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    book(&mut connect(&db), 20);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| format!("http://{a}/"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = worker(&db, "2012-03-10T00:00:00Z", &["--concurrency", "2"])
        .env("STRIPE_API_BASE", &closed)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["stripe_unreachable"], true);
    let considered = report["plans_considered"].as_u64().unwrap_or(0);
    assert!(
        (1..=6).contains(&considered),
        "stopped claiming: {considered} of 20 plans"
    );
    assert!(report["needs_attention"]
        .as_array()
        .is_some_and(|a| a.is_empty()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("Stripe could not be reached"))
            .count(),
        1,
        "{stderr}"
    );
    // Later, with Stripe back: everything is sent.
    let report = db.ok(Some("2012-03-10T07:00:00Z"), &["run-once"]);
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0));
    db.assert_stripe_matches_local();
}

/// Worker processes killed with SIGKILL at random moments during concurrent passes on
/// PostgreSQL, 24 times, then a calm pass: Stripe holds exactly the local invoices, nothing
/// twice, nothing missing, nothing left pending or parked.
#[test]
fn killed_workers_leave_stripe_exact_postgres() {
    use rand::Rng;
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    book(&mut connect(&db), 24);
    db.stripe.set_faults(Faults {
        latency: StdDuration::from_millis(15),
        latency_jitter: StdDuration::from_millis(10),
        ..Faults::default()
    });
    let start = at("2012-05-10T00:00:00Z");
    let mut rng = rand::rng();
    let mut kills = 0;
    for round in 0..12 {
        // Each round eleven minutes later: the killed workers' leases have expired.
        let now = (start + Duration::minutes(11 * round))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut children: Vec<_> = (0..2)
            .map(|_| {
                worker(&db, &now, &["--concurrency", "6"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        for child in &mut children {
            std::thread::sleep(StdDuration::from_millis(rng.random_range(20..250)));
            if child.kill().is_ok() {
                kills += 1;
            }
            let _ = child.wait();
        }
    }
    assert!(kills >= 20, "{kills} kills");
    db.stripe.set_faults(Faults::default());
    let calm = (start + Duration::hours(4)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let report = db.ok(Some(&calm), &["run-once"]);
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0));
    db.assert_stripe_matches_local();
    let invoices = db.invoices();
    assert!(invoices.len() >= 50, "{} invoices", invoices.len());
    assert!(invoices.iter().all(|i| i["status"] == "sent"));
    let status = db.ok(None, &["status"]);
    assert_eq!(status["needs_attention"].as_array().map(Vec::len), Some(0));
    // And the same book invoiced without any kill gives the same Stripe state.
    let Some(calm_db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    book(&mut connect(&calm_db), 24);
    calm_db.ok(Some(&calm), &["run-once"]);
    assert_eq!(
        common::stripe_snapshot(&db.stripe),
        common::stripe_snapshot(&calm_db.stripe)
    );
}

/// Every PostgreSQL session of the worker plans each statement with its values: a generic
/// plan cached while the invoice tables were still empty kept sequential scans on them, and a
/// 100k-plan pass slowed to a third as they grew (docs/BENCHMARKS.md).
#[test]
fn postgres_sessions_plan_statements_with_their_values() {
    use diesel::RunQueryDsl;
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    let Conn::Pg(mut c) = connect(&db) else {
        panic!("a PostgreSQL connection")
    };
    let s: Setting = diesel::sql_query("SHOW plan_cache_mode")
        .get_result(&mut c)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.plan_cache_mode, "force_custom_plan");
}
