//! The pass through the library: crash recovery (D5, D6), idempotent re-runs, and several
//! workers at once on PostgreSQL (D9).

use crate::common;
use crate::common::{at, connect, gateway, Backend, TestDb};
use plan_invoicer::db::claims;
use plan_invoicer::devtools::emulator::Faults;
use plan_invoicer::jobs::{run_pass, PassOptions};

const T0: &str = "2012-01-02T03:04:05Z";

fn setup_plans(db: &TestDb, count: usize) {
    common::monthly_plans(db, count, T0);
    for plan in 1..=count {
        db.ok(
            Some("2012-01-12T03:04:05Z"),
            &["plan", "seats", &plan.to_string(), "--count", "7"],
        );
    }
}

/// A Stripe failure after the write-ahead commit leaves the invoice pending and the plan
/// STARTED; the next pass finishes that invoice without computing it again.
fn failed_emission_is_resumed_exactly_once(db: &TestDb) {
    setup_plans(db, 1);
    let rt = common::runtime();
    let pool = common::pool(db);
    let g = gateway(db, 1);
    // Request 1 creates the customer, 2 the invoice; the first item fails.
    db.stripe.set_faults(Faults {
        fail_requests: vec![3],
        ..Faults::default()
    });
    let now = at("2012-02-02T03:04:05Z");
    let report = rt
        .block_on(run_pass(
            &pool,
            Some(g.clone()),
            now,
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            report.failures.len(),
            report.invoices.len(),
            report.exit_code()
        ),
        (1, 0, 3)
    );
    assert!(report.failures[0].retryable);
    let plan = db.plan(1);
    assert_eq!(plan["invoicing_status"], "started");
    assert!(
        plan["lease_owner"].is_null(),
        "the lease is released: {plan}"
    );
    assert_eq!(db.invoices().len(), 1);
    assert_eq!(db.invoices()[0]["status"], "pending");
    assert!(
        db.invoices()[0]["stripe_invoice_id"].is_string(),
        "the Stripe id was stored at once"
    );

    // Parked until the backoff has passed.
    let early = rt
        .block_on(run_pass(
            &pool,
            Some(g.clone()),
            now,
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(early.plans_considered, 0);
    let later = at("2012-02-02T04:00:00Z");
    let report = rt
        .block_on(run_pass(
            &pool,
            Some(g.clone()),
            later,
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.failures.len(), report.invoices.len()), (0, 1));
    let invoices = db.invoices();
    assert_eq!(invoices.len(), 1, "nothing computed twice");
    assert_eq!(invoices[0]["status"], "sent");
    // Renewal 7 × 800, and 2 licenses for 21 of 31 days: 800 × 21 / 31 = 541.9 → 542.
    assert_eq!(invoices[0]["total_cents"], 7 * 800 + 2 * 542);
    db.assert_stripe_matches_local();
    assert_eq!(db.stripe.customers().len(), 1);
    let plan = db.plan(1);
    assert_eq!(
        (
            plan["invoicing_status"].as_str(),
            plan["error_count"].as_i64()
        ),
        (Some("done"), Some(0))
    );
}

/// A worker that died holding a lease: the plan is resumed once the lease expires.
fn expired_lease_is_resumed(db: &TestDb) {
    setup_plans(db, 1);
    let rt = common::runtime();
    let mut conn = connect(db);
    let now = at("2012-02-02T03:04:05Z");
    // Simulate a crash right after the claim.
    let claimed = conn
        .transaction(|c| {
            let lease = claims::Lease {
                owner: "dead-worker",
                now,
                until: now + chrono::Duration::minutes(10),
            };
            claims::claim_next_due(c, now, claims::ClaimScope::default(), lease)
        })
        .unwrap_or_else(|e: plan_invoicer::db::DbError| panic!("{e}"));
    assert_eq!(claimed.map(|c| c.plan_id.0), Some(1));
    let blocked = rt
        .block_on(run_pass(
            &common::pool(db),
            Some(gateway(db, 3)),
            now,
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blocked.plans_considered, 0, "a live lease is respected");
    let after = at("2012-02-02T03:20:00Z");
    let report = rt
        .block_on(run_pass(
            &common::pool(db),
            Some(gateway(db, 3)),
            after,
            &PassOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.invoices.len(), 1);
    assert_eq!(db.plan(1)["invoicing_status"], "done");
}

on_both_backends!(
    failed_emission_is_resumed_exactly_once,
    expired_lease_is_resumed
);

/// Several workers at once on PostgreSQL: every invoice exactly once.
#[test]
fn concurrent_workers_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    setup_plans(&db, 12);
    let children: Vec<_> = (0..4)
        .map(|_| {
            db.command()
                .args(["--json", "--now", "2012-06-02T03:04:05Z", "run-once"])
                .output()
        })
        .collect();
    let mut invoiced = 0;
    for child in children {
        let out = child.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        invoiced += report["invoices"].as_array().map_or(0, Vec::len);
    }
    let invoices = db.invoices();
    // Each plan: invoices at 2012-02..2012-06 = 5.
    assert_eq!(invoices.len(), 12 * 5);
    assert_eq!(
        invoiced,
        invoices.len(),
        "every invoice reported by exactly one worker"
    );
}
