//! End to end against the built-in Stripe emulator: a pass interrupted before any Stripe call
//! and re-run produces exactly the invoices of an uninterrupted pass; a resume after Stripe
//! forgot its idempotency keys finds what exists instead of creating it again; 429s are retried;
//! the emulator behaves like Stripe on idempotency and unknown parameters.

mod common;

use chrono::Duration;
use common::{at, connect, gateway, Backend, TestDb};
use plan_invoicer::db::Conn;
use plan_invoicer::devtools::emulator::{Emulator, Faults};
use plan_invoicer::jobs::{run_pass, PassOptions, PassReport};
use plan_invoicer::ops::{self, CustomerInput, PlanInput};
use serde_json::Value;

/// Three customers: an annual plan with additions and a renewal, a self-hosted monthly plan
/// billed by invoice with the flat discount, and a monthly fixed-price plan.
fn setup(conn: &mut Conn) {
    let t0 = at("2012-01-02T03:04:05Z");
    let customer = |conn: &mut Conn, name: &str, kind: &str| {
        let input = CustomerInput {
            name: name.into(),
            kind: Some(kind.into()),
            ..CustomerInput::default()
        };
        ops::create_customer(conn, &input, t0).unwrap_or_else(|e| panic!("{e}"))
    };
    let plan = |conn: &mut Conn, input: PlanInput| {
        ops::create_plan(conn, &input, t0).unwrap_or_else(|e| panic!("{e}"))
    };
    let a = customer(conn, "Annual", "cloud");
    let pa = plan(
        conn,
        PlanInput {
            customer_id: a,
            tier: "cloud_standard".into(),
            schedule: "annual".into(),
            licenses: 6,
            automanage_licenses: true,
            ..PlanInput::default()
        },
    );
    for (day, seats) in [(100, 9), (200, 6), (300, 7)] {
        ops::report_seats(conn, pa, seats, t0 + Duration::days(day))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let s = customer(conn, "Self-hosted", "self_hosted");
    ops::report_usage(conn, s, None, at("2013-06-01T00:00:00Z")).unwrap_or_else(|e| panic!("{e}"));
    plan(
        conn,
        PlanInput {
            customer_id: s,
            tier: "self_hosted_basic".into(),
            schedule: "monthly".into(),
            licenses: 10,
            invoice_billing: true,
            ..PlanInput::default()
        },
    );
    let f = customer(conn, "Fixed", "cloud");
    let offer = ops::create_offer(conn, f, "cloud_plus", 170000, None, t0)
        .unwrap_or_else(|e| panic!("{e}"));
    ops::accept_offer(conn, offer, "monthly", Some(12), t0).unwrap_or_else(|e| panic!("{e}"));
}

const HORIZON: &str = "2013-01-10T00:00:00Z";

fn pass(db: &TestDb, _setup: &mut Conn, now: &str, attempts: u32) -> PassReport {
    common::runtime()
        .block_on(run_pass(
            &common::pool(db),
            Some(gateway(db, attempts)),
            at(now),
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn baseline() -> (Vec<Value>, usize) {
    let db = TestDb::new(Backend::Sqlite).unwrap_or_else(|| panic!("sqlite"));
    let mut conn = connect(&db);
    setup(&mut conn);
    let report = pass(&db, &mut conn, HORIZON, 1);
    assert!(
        report.failures.is_empty() && report.needs_attention.is_empty(),
        "{report:?}"
    );
    db.assert_stripe_matches_local();
    let snap = common::stripe_snapshot(&db.stripe);
    assert!(
        snap.len() > 20,
        "the scenario emits many invoices: {}",
        snap.len()
    );
    // Requests per invoice: invoice + one per line + finalize, and one per new customer.
    let lines: usize = snap
        .iter()
        .map(|i| i[7].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(db.stripe.requests().len(), 3 + 2 * snap.len() + lines);
    (snap, db.stripe.requests().len())
}

fn interrupted_at(backend: Backend, k: u64, expected: &[Value]) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let mut conn = connect(&db);
    setup(&mut conn);
    db.stripe.set_faults(Faults {
        fail_requests: vec![k],
        ..Faults::default()
    });
    let first = pass(&db, &mut conn, HORIZON, 1);
    assert_eq!(
        first.failures.len(),
        1,
        "request {k} failed once: {first:?}"
    );
    db.stripe.set_faults(Faults::default());
    let second = pass(&db, &mut conn, "2013-01-10T01:00:00Z", 1);
    assert!(
        second.failures.is_empty() && second.needs_attention.is_empty(),
        "{second:?}"
    );
    assert_eq!(
        common::stripe_snapshot(&db.stripe),
        expected,
        "interrupted at request {k}"
    );
    assert_eq!(
        first.invoices.len() + second.invoices.len(),
        expected.len(),
        "every invoice is reported once, also those sent before the failure (request {k})"
    );
    db.assert_stripe_matches_local();
    assert_eq!(db.stripe.customers().len(), 3);
    let again = pass(&db, &mut conn, "2013-01-10T01:00:00Z", 1);
    assert_eq!(
        (again.plans_considered, again.invoices.len()),
        (0, 0),
        "a re-run emits nothing"
    );
}

/// Cut the pass at every Stripe request in turn (SQLite), then re-run.
#[test]
fn interrupted_at_every_request_then_resumed_sqlite() {
    let (expected, requests) = baseline();
    for k in 1..=requests as u64 {
        interrupted_at(Backend::Sqlite, k, &expected);
    }
}

/// The same on PostgreSQL at the first, a middle and the last request.
#[test]
fn interrupted_then_resumed_postgres() {
    let (expected, requests) = baseline();
    for k in [1, requests as u64 / 2, requests as u64] {
        interrupted_at(Backend::Postgres, k, &expected);
    }
}

/// Resumed more than 24 hours later, after Stripe forgot the idempotency keys, when Stripe
/// created an object but its response was lost: the object is found by its metadata with the
/// list endpoints, not created again.
#[test]
fn resume_after_idempotency_keys_expired() {
    let (expected, _) = baseline();
    // Request 1 creates the first customer, 2 its first invoice, 3 that invoice's item.
    for (backend, lost) in [
        (Backend::Sqlite, 2),
        (Backend::Sqlite, 3),
        (Backend::Postgres, 2),
        (Backend::Postgres, 3),
    ] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let mut conn = connect(&db);
        setup(&mut conn);
        db.stripe.set_faults(Faults {
            lost_responses: vec![lost],
            ..Faults::default()
        });
        let first = pass(&db, &mut conn, HORIZON, 1);
        assert_eq!(first.failures.len(), 1);
        db.stripe.set_faults(Faults::default());
        db.stripe.forget_idempotency_keys();
        // Two days later; the catch-up has nothing new to bill before February.
        let second = pass(&db, &mut conn, "2013-01-12T00:00:00Z", 1);
        assert!(second.failures.is_empty(), "{second:?}");
        assert_eq!(
            common::stripe_snapshot(&db.stripe),
            expected,
            "response {lost} lost"
        );
        db.assert_stripe_matches_local();
        let lookups = db
            .stripe
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count();
        assert!(lookups > 0, "the resume looked objects up");
    }
}

/// Rate limits (429) and server errors are retried with backoff under the same key.
#[test]
fn rate_limits_and_5xx_are_retried() {
    let (expected, _) = baseline();
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let mut conn = connect(&db);
    setup(&mut conn);
    db.stripe.set_faults(Faults {
        rate_limit_every: 3,
        fail_every: 7,
        ..Faults::default()
    });
    let report = pass(&db, &mut conn, HORIZON, 6);
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(common::stripe_snapshot(&db.stripe), expected);
    let statuses: Vec<u16> = db.stripe.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&500));
}

/// A 4xx from Stripe parks the plan with Stripe's message; other customers go on.
#[test]
fn stripe_refusal_parks_only_that_plan() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let mut conn = connect(&db);
    setup(&mut conn);
    let t0 = at("2012-01-02T03:04:05Z");
    let input = CustomerInput {
        name: "Ghost".into(),
        stripe_customer_id: Some("cus_missing".into()),
        ..CustomerInput::default()
    };
    let ghost = ops::create_customer(&mut conn, &input, t0).unwrap_or_else(|e| panic!("{e}"));
    let input = PlanInput {
        customer_id: ghost,
        tier: "cloud_standard".into(),
        schedule: "monthly".into(),
        licenses: 3,
        ..PlanInput::default()
    };
    ops::create_plan(&mut conn, &input, t0).unwrap_or_else(|e| panic!("{e}"));
    let report = pass(&db, &mut conn, "2012-02-03T00:00:00Z", 3);
    assert_eq!(report.needs_attention.len(), 1, "{report:?}");
    assert!(
        report.needs_attention[0]
            .reason
            .contains("No such customer: 'cus_missing'"),
        "{report:?}"
    );
    // The self-hosted and the fixed-price plans are due at 2012-02-02; the annual one is not.
    assert_eq!(
        report.invoices.len(),
        2,
        "the other customers were invoiced"
    );
}

/// The emulator's idempotency: the same key and body replay; another body is refused.
#[test]
fn emulator_idempotency_and_unknown_parameters() {
    // Not recorded: these requests are deliberately wrong and are not the worker's.
    let emu = Emulator::new();
    let addr = common::runtime()
        .block_on(emu.start("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{addr}/");
    let post = |path: &str, key: &str, body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer sk_test_x",
                "-H",
                &format!("Idempotency-Key: {key}"),
                "-d",
                body,
                &format!("{base}v1/{path}"),
            ])
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let a = post("customers", "k1", "name=A");
    let b = post("customers", "k1", "name=A");
    assert_eq!(a["id"], b["id"]);
    assert_eq!(emu.customers().len(), 1);
    let c = post("customers", "k1", "name=B");
    assert_eq!(c["error"]["type"], "idempotency_error");
    let d = post("invoiceitems", "k2", "customer=x&unit_amount=5");
    assert_eq!(
        d["error"]["message"],
        "Received unknown parameter: unit_amount"
    );
}
