//! Never a partial invoice, and never two workers on one plan (issue 7): Stripe invoices are
//! created with automatic advancement off and finalized with it on; a resumed invoice is read
//! back first; a worker whose lease was taken over stops at its next write.

use std::time::Duration as StdDuration;

use crate::common;
use crate::common::TestDb;
use chrono::Duration;
use plan_invoicer::devtools::emulator::Faults;
use plan_invoicer::jobs::{PassOptions, PassReport};

const T0: &str = "2012-01-02T03:04:05Z";
const DUE: &str = "2012-02-02T03:04:05Z";

/// One customer with a monthly plan whose seat count changed, so that its invoice at `DUE`
/// has two lines. Stripe requests of its first pass: 1 customer, 2 invoice, 3 and 4 the
/// items, 5 finalize.
fn setup(db: &TestDb) {
    common::monthly_plans(db, 1, T0);
    db.ok(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "seats", "1", "--count", "7"],
    );
}

fn endpoints(db: &TestDb) -> Vec<(String, String)> {
    db.stripe
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.endpoint.clone()))
        .collect()
}

fn wait_for_request(db: &TestDb, n: u64) {
    for _ in 0..500 {
        if db.stripe.received() >= n {
            return;
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
    panic!("request {n} never arrived");
}

/// A worker killed (SIGKILL) after creating the Stripe invoice and before its items; Stripe's
/// clock passes the auto-advance delay; the resume completes the same invoice with every item.
fn killed_before_items_then_resumed_after_an_hour(db: &TestDb) {
    setup(db);
    db.stripe.set_faults(Faults {
        hang_requests: vec![3],
        hang_for: StdDuration::from_secs(3),
        ..Faults::default()
    });
    let mut child = db
        .command()
        .env("RUST_LOG", "off")
        .args(["--json", "--now", DUE, "run-once"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_request(db, 3);
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    db.stripe.set_faults(Faults::default());
    assert_eq!(
        endpoints(db)[..2],
        [
            ("POST".into(), "/v1/customers".into()),
            ("POST".into(), "/v1/invoices".into())
        ]
    );
    let created = &db.stripe.requests()[1];
    assert_eq!(
        created.params.get("auto_advance").map(String::as_str),
        Some("false"),
        "the draft is created without automatic advancement"
    );

    // Two hours later (past Stripe's automatic advancement and the lease).
    db.stripe.advance_clock(Duration::hours(2));
    let drafts = db.stripe.invoices();
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0]["status"], "draft", "Stripe did not finalize it");
    let report = db.pass("2012-02-02T05:04:05Z");
    assert_eq!(report["invoices"].as_array().map(Vec::len), Some(1));
    let invoices = db.stripe.invoices();
    assert_eq!(invoices.len(), 1, "the same Stripe invoice was completed");
    assert_eq!(
        invoices[0]["lines"]["data"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(invoices[0]["status"], "open");
    assert_eq!(invoices[0]["auto_advance"], true, "collection proceeds");
    let finalize = db
        .stripe
        .requests()
        .into_iter()
        .find(|r| r.endpoint.ends_with("/finalize"))
        .unwrap_or_else(|| panic!("finalized"));
    assert_eq!(
        finalize.params.get("auto_advance").map(String::as_str),
        Some("true")
    );
    let gets = endpoints(db)
        .iter()
        .filter(|(m, e)| m == "GET" && e == "/v1/invoices/{invoice}")
        .count();
    assert_eq!(gets, 1, "the resume read the invoice back first");
}

fn pass(db: &TestDb, worker: &str, now: &str, attempts: u32) -> PassReport {
    let opts = PassOptions {
        worker_id: worker.into(),
        ..PassOptions::default()
    };
    common::pass_with(db, now, &opts, attempts)
}

/// Worker A stalls on Stripe until its lease has expired; worker B claims the plan and
/// finishes the invoice. A notices at its next write that the plan is no longer its own and
/// leaves it: one invoice, no needs-attention, both passes clean.
fn lease_taken_over_under_a_slow_worker(db: &TestDb) {
    setup(db);
    db.stripe.set_faults(Faults {
        hang_requests: vec![3],
        hang_for: StdDuration::from_millis(1500),
        ..Faults::default()
    });
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| pass(db, "worker-a", DUE, 3));
        wait_for_request(db, 3);
        // Eleven minutes later by the pass clock: A's ten-minute lease has expired.
        let b = pass(db, "worker-b", "2012-02-02T03:15:05Z", 3);
        (a.join().unwrap_or_else(|_| panic!("worker A")), b)
    });
    assert_eq!((b.invoices.len(), b.exit_code()), (1, 0), "{b:?}");
    assert_eq!(
        (a.invoices.len(), a.exit_code()),
        (0, 0),
        "A left the plan to B without an error: {a:?}"
    );
    db.assert_stripe_matches_local();
    assert_eq!(db.stripe.invoices().len(), 1);
    let plan = db.plan(1);
    assert!(plan["needs_attention"].is_null(), "{plan}");
    assert!(plan["lease_owner"].is_null(), "{plan}");
    assert_eq!(plan["invoicing_status"], "done");
}

/// A Stripe invoice voided (or a draft deleted) behind the worker's back before the resume:
/// the plan is parked with a reason that names the invoice; nothing is created again.
fn changed_in_stripe_before_the_resume(db: &TestDb) {
    setup(db);
    // The finalize (request 5) is carried out but its response is lost.
    db.stripe.set_faults(Faults {
        lost_responses: vec![5],
        ..Faults::default()
    });
    let first = pass(db, "w", DUE, 1);
    assert_eq!(first.failures.len(), 1, "{first:?}");
    db.stripe.set_faults(Faults::default());
    let sid = db.stripe.invoices()[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let voided = common::stripe_post(db, &format!("invoices/{sid}/void"));
    assert_eq!(voided["status"], "void", "{voided}");
    let second = pass(db, "w", "2012-02-02T04:04:05Z", 1);
    assert_eq!(second.exit_code(), 3);
    assert_eq!(second.needs_attention.len(), 1, "{second:?}");
    let reason = &second.needs_attention[0].reason;
    assert!(
        reason.contains(&sid) && reason.contains("void"),
        "the reason names the invoice: {reason}"
    );
    assert_eq!(db.stripe.invoices().len(), 1, "nothing created again");
    assert_eq!(db.invoices()[0]["status"], "pending");
    assert!(db.plan(1)["needs_attention"].is_string());
}

fn deleted_draft_is_parked(db: &TestDb) {
    setup(db);
    db.stripe.set_faults(Faults {
        fail_requests: vec![4],
        ..Faults::default()
    });
    let first = pass(db, "w", DUE, 1);
    assert_eq!(first.failures.len(), 1, "{first:?}");
    db.stripe.set_faults(Faults::default());
    let sid = db.stripe.invoices()[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deleted = common::stripe_request(db, "DELETE", &format!("invoices/{sid}"));
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let second = pass(db, "w", "2012-02-02T04:04:05Z", 1);
    assert_eq!(second.needs_attention.len(), 1, "{second:?}");
    let reason = &second.needs_attention[0].reason;
    assert!(
        reason.contains(&sid) && reason.contains("no longer exists"),
        "{reason}"
    );
    assert!(db.stripe.invoices().is_empty(), "nothing created again");
}

/// The fence's lease contract: every write made for a claim finds the claim still held and
/// leaves its lease at least half a lease ahead (PostgreSQL extends it only once half has
/// gone, SQLite at every write); a claim taken over after expiry is refused.
fn writes_keep_the_lease_ahead(db: &TestDb) {
    use plan_invoicer::db::claims::{self, ClaimScope, Lease};
    setup(db);
    let at = common::at;
    let lease = Duration::minutes(10);
    let now = at(DUE);
    let mut c = common::connect(db);
    let claim = |c: &mut plan_invoicer::db::Conn, owner: &str, now| {
        c.transaction(|c| {
            claims::claim_next_due(
                c,
                now,
                ClaimScope::default(),
                Lease {
                    owner,
                    now,
                    until: now + lease,
                },
            )
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let held = claim(&mut c, "worker-a", now).unwrap_or_else(|| panic!("plan 1 is due"));
    let expires = |db: &TestDb| at(db.plan(1)["lease_expires_at"].as_str().unwrap_or_default());
    for minutes in [1, 4, 6, 9, 14] {
        let t = now + Duration::minutes(minutes);
        let kept = c
            .transaction(|c| claims::renew_claim(c, &held, t, lease))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(kept, "still held at +{minutes} min");
        let left = expires(db) - t;
        assert!(
            left >= lease / 2 && left <= lease,
            "at +{minutes} min the lease has {left} left"
        );
    }
    // Worker B takes the plan over once the lease has run out; A's next write is refused.
    let later = expires(db) + Duration::seconds(1);
    let taken = claim(&mut c, "worker-b", later).unwrap_or_else(|| panic!("expired lease"));
    assert_eq!(taken.plan_id, held.plan_id);
    let kept = c
        .transaction(|c| claims::renew_claim(c, &held, later, lease))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!kept, "A's claim was taken over");
    assert!(c
        .transaction(|c| claims::renew_claim(c, &taken, later, lease))
        .unwrap_or_else(|e| panic!("{e}")));
}

on_both_backends!(
    writes_keep_the_lease_ahead,
    killed_before_items_then_resumed_after_an_hour,
    lease_taken_over_under_a_slow_worker,
    changed_in_stripe_before_the_resume,
    deleted_draft_is_parked
);
