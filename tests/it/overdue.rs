//! The overdue policy end to end, on both backends: Zulip's table of cases
//! (`test_downgrade_small_realms_behind_on_payments_as_needed`) built through the CLI and the
//! Stripe emulator, payments learned with `sync-payments`; a dry run; a rerun that changes
//! nothing; and a run killed while a void hangs in Stripe, then run again: every invoice voided
//! once, every plan ended once.

use std::time::{Duration, Instant};

use crate::common::{Backend, TestDb};
use plan_invoicer::devtools::emulator::Faults;
use serde_json::Value;

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Book {
    /// customer ids by case
    no_stripe: i64,
    no_plan_no_invoices: i64,
    no_plan_one_open: i64,
    /// A former customer of 20 licenses with an open invoice: Zulip never touches it.
    no_plan_large: i64,
    plan_no_invoices: i64,
    one_open: i64,
    two_open_small: i64,
    two_paid: i64,
    two_open_large: i64,
    self_hosted: i64,
    small_plan: i64,
}

fn customer(db: &TestDb, now: &str, args: &[&str]) -> i64 {
    let mut a = vec!["customer", "create"];
    a.extend_from_slice(args);
    db.id(Some(now), &a)
}

fn plan(db: &TestDb, now: &str, customer: i64, licenses: &str) -> i64 {
    db.id(
        Some(now),
        &[
            "plan",
            "create",
            "--customer",
            &customer.to_string(),
            "--tier",
            "cloud_standard",
            "--schedule",
            "monthly",
            "--licenses",
            licenses,
        ],
    )
}

/// Zulip's cases, each its own customer, invoiced by two passes a month apart.
fn book(db: &TestDb) -> Book {
    let now = chrono::Utc::now();
    let t = at(now - chrono::Duration::days(66));
    let t_next = at(now - chrono::Duration::days(66) + chrono::Months::new(1));
    let p1 = at(now - chrono::Duration::days(66) + chrono::Months::new(1));
    let p2 = at(now - chrono::Duration::days(66) + chrono::Months::new(2));
    let no_stripe = customer(db, &t, &["--name", "no stripe id"]);
    let no_plan_no_invoices = customer(
        db,
        &t,
        &["--name", "no plan", "--stripe-customer-id", "cus_none"],
    );
    let no_plan_one_open = customer(db, &t, &["--name", "no plan, one open"]);
    plan(db, &t, no_plan_one_open, "3");
    let no_plan_large = customer(db, &t, &["--name", "no plan, one open, 20 licenses"]);
    plan(db, &t, no_plan_large, "20");
    let plan_no_invoices = customer(
        db,
        &t,
        &[
            "--name",
            "plan, no invoices",
            "--stripe-customer-id",
            "cus_fresh",
        ],
    );
    // Anchored after the second pass: nothing invoiced yet.
    plan(
        db,
        &at(now - chrono::Duration::days(1)),
        plan_no_invoices,
        "3",
    );
    let one_open = customer(db, &t, &["--name", "one open"]);
    plan(db, &t_next, one_open, "3");
    let two_open_small = customer(db, &t, &["--name", "two open, 3 seats"]);
    let small_plan = plan(db, &t, two_open_small, "3");
    let two_paid = customer(db, &t, &["--name", "two paid"]);
    plan(db, &t, two_paid, "3");
    let two_open_large = customer(db, &t, &["--name", "two open, 20 seats"]);
    plan(db, &t, two_open_large, "20");
    let self_hosted = customer(
        db,
        &t,
        &[
            "--name",
            "self-hosted",
            "--kind",
            "self_hosted",
            "--stripe-customer-id",
            "cus_sh",
        ],
    );
    db.pass(&p1);
    // "no plan, …": the plans end at the end of their first invoiced cycle.
    for former in [no_plan_one_open, no_plan_large] {
        let ended = db.ok(None, &["customer", "show", &former.to_string()])["plan_ids"][0]
            .as_i64()
            .unwrap_or_default();
        db.ok(
            Some(&at(now - chrono::Duration::days(66)
                + chrono::Months::new(1)
                + chrono::Duration::days(1))),
            &[
                "plan",
                "schedule",
                &ended.to_string(),
                "--change",
                "downgrade_at_end_of_cycle",
            ],
        );
    }
    db.pass(&p2);
    // The payments: "two paid" pays both of its invoices.
    for inv in db.invoices() {
        if inv["customer_id"] == two_paid {
            assert!(db
                .stripe
                .pay(inv["stripe_invoice_id"].as_str().unwrap_or("")));
        }
    }
    let synced = db.ok(None, &["sync-payments"]);
    assert!(synced["applied"].as_u64().unwrap_or(0) >= 10, "{synced}");
    Book {
        no_stripe,
        no_plan_no_invoices,
        no_plan_one_open,
        no_plan_large,
        plan_no_invoices,
        one_open,
        two_open_small,
        two_paid,
        two_open_large,
        self_hosted,
        small_plan,
    }
}

fn invoices_of(db: &TestDb, customer: i64) -> Vec<Value> {
    db.invoices()
        .into_iter()
        .filter(|i| i["customer_id"] == customer)
        .collect()
}

/// `invoice.voided` events in Stripe.
fn voided_in_stripe(db: &TestDb) -> usize {
    db.stripe
        .events()
        .iter()
        .filter(|e| e["type"] == "invoice.voided")
        .count()
}

/// The plan's `plan.downgraded_for_nonpayment` events.
fn downgrades(db: &TestDb, plan: i64) -> usize {
    db.ok(None, &["plan", "events", &plan.to_string()])
        .as_array()
        .map_or(0, |a| {
            a.iter()
                .filter(|e| e["kind"] == "plan.downgraded_for_nonpayment")
                .count()
        })
}

fn customers(list: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["customer_id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn zulips_table_end_to_end() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let b = book(&db);
        assert_eq!(invoices_of(&db, b.two_open_small).len(), 2);
        assert_eq!(invoices_of(&db, b.one_open).len(), 1);
        assert_eq!(invoices_of(&db, b.no_plan_one_open).len(), 1);
        let before = db.invoices();

        let status = db.ok(None, &["status"]);
        let mut overdue: Vec<(i64, String)> = status["overdue"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["customer_id"].as_i64().unwrap_or(0),
                    a["action"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        overdue.sort();
        assert_eq!(
            overdue,
            vec![
                (b.no_plan_one_open, "void_open_invoices".to_string()),
                (b.no_plan_large, "left_to_a_person".to_string()),
                (b.two_open_small, "end_plan_and_void".to_string()),
                (b.two_open_large, "left_to_a_person".to_string()),
            ]
        );
        let large: Vec<&Value> = status["overdue"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["customer_id"] == b.no_plan_large)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(large[0]["plan_id"], Value::Null, "{large:?}");
        assert_eq!(large[0]["seats"], 20);
        assert!(
            large[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("20 seats")),
            "{large:?}"
        );
        // Unpaid: one of each "no plan, one open", one of "one open", two each of the two-open
        // cases.
        assert_eq!(
            status["unpaid_invoices"]["count"], 7,
            "{}",
            status["unpaid_invoices"]
        );
        let dry = db.ok(None, &["overdue", "--dry-run"]);
        assert_eq!(customers(&dry["plans_ended"]), vec![b.two_open_small]);
        assert_eq!(customers(&dry["invoices_only"]), vec![b.no_plan_one_open]);
        assert_eq!(
            customers(&dry["left_to_a_person"]),
            vec![b.no_plan_large, b.two_open_large]
        );
        assert_eq!(db.invoices(), before, "a dry run writes nothing");
        assert_eq!(db.plan(b.small_plan)["status"], "active");

        let run = db.ok(None, &["overdue"]);
        assert_eq!(customers(&run["plans_ended"]), vec![b.two_open_small]);
        assert_eq!(run["invoices_voided"], 3, "{run}");
        let plan = db.plan(b.small_plan);
        assert_eq!(plan["status"], "ended");
        assert!(plan["next_invoice_date"].is_null());
        for c in [b.two_open_small, b.no_plan_one_open] {
            for inv in invoices_of(&db, c) {
                assert_eq!(inv["payment_status"], "void", "customer {c}: {inv}");
                let sid = inv["stripe_invoice_id"].as_str().unwrap_or("");
                let remote = db.stripe.invoices().into_iter().find(|i| i["id"] == sid);
                assert_eq!(remote.map(|r| r["status"].clone()), Some("void".into()));
            }
        }
        // Everyone else is untouched.
        for c in [b.one_open, b.two_open_large, b.no_plan_large] {
            assert!(invoices_of(&db, c)
                .iter()
                .all(|i| i["payment_status"] == "open"));
        }
        assert!(invoices_of(&db, b.two_paid)
            .iter()
            .all(|i| i["payment_status"] == "paid"));
        for c in [
            b.no_stripe,
            b.no_plan_no_invoices,
            b.plan_no_invoices,
            b.self_hosted,
        ] {
            assert!(invoices_of(&db, c).is_empty());
        }
        assert_eq!(downgrades(&db, b.small_plan), 1);
        // The change history says what the overdue job did, as its own actor: one plan ended and
        // three invoices voided.
        let by_overdue = db.ok(None, &["changes", "list", "--actor", "system:overdue"]);
        let ops = |op: &str| {
            by_overdue
                .as_array()
                .map_or(0, |a| a.iter().filter(|c| c["operation"] == op).count())
        };
        assert_eq!(
            (ops("overdue.end_plan"), ops("overdue.void")),
            (1, 3),
            "{by_overdue}"
        );
        let ended = db.ok(
            None,
            &["changes", "list", "--operation", "overdue.end_plan"],
        );
        assert_eq!(ended[0]["plan_id"], b.small_plan);
        assert_eq!(ended[0]["before"]["status"], "active");
        assert_eq!(ended[0]["after"]["status"], "ended");

        // A rerun changes nothing: the plan has ended, the invoices are void.
        let again = db.ok(None, &["overdue"]);
        assert_eq!(again["invoices_voided"], 0, "{again}");
        assert_eq!(customers(&again["plans_ended"]), Vec::<i64>::new());
        assert_eq!(
            db.ok(None, &["changes", "list", "--actor", "system:overdue"]),
            by_overdue,
            "a rerun records nothing"
        );
        db.ok(None, &["sync-payments"]);
        assert_eq!(voided_in_stripe(&db), 3, "each invoice voided once");
        // `audit`: the voids are known, so no finding; a payment Stripe took that the local
        // records have not heard of yet is one.
        let audit = db.ok(None, &["audit"]);
        assert_eq!(audit["findings"], serde_json::json!([]), "{audit}");
        let open = invoices_of(&db, b.one_open)[0]["stripe_invoice_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(db.stripe.pay(&open));
        let (code, out, _) = db.run(None, &["audit"]);
        let audit: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        assert_ne!(code, 0);
        let kinds: Vec<&str> = audit["findings"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x["kind"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(kinds, ["payment_status"], "{audit}");
        db.ok(None, &["sync-payments"]);
        assert_eq!(db.ok(None, &["audit"])["findings"], serde_json::json!([]));
    }
}

/// A run killed while Stripe holds its first void, then run again: every invoice voided once,
/// the plan ended once.
#[test]
fn a_killed_run_is_finished_by_the_next() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let b = book(&db);
        let first_void = db.stripe.received() + 1;
        db.stripe.set_faults(Faults {
            hang_requests: vec![first_void],
            hang_for: Duration::from_secs(60),
            ..Faults::default()
        });
        let mut child = db
            .command()
            .arg("overdue")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let start = Instant::now();
        while db.stripe.received() < first_void {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the void was sent"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        // Cut short: the plan has ended, nothing is void yet.
        assert_eq!(db.plan(b.small_plan)["status"], "ended");
        db.stripe.set_faults(Faults::default());
        let rerun = db.ok(None, &["overdue"]);
        assert_eq!(rerun["invoices_voided"], 3, "{rerun}");
        assert_eq!(
            customers(&rerun["plans_ended"]),
            Vec::<i64>::new(),
            "ended once"
        );
        for c in [b.two_open_small, b.no_plan_one_open] {
            assert!(invoices_of(&db, c)
                .iter()
                .all(|i| i["payment_status"] == "void"));
        }
        assert_eq!(
            db.stripe
                .events()
                .iter()
                .filter(|e| e["type"] == "invoice.voided")
                .count(),
            3
        );
        let events = db.ok(None, &["plan", "events", &b.small_plan.to_string()]);
        assert_eq!(
            events.as_array().map(|a| a
                .iter()
                .filter(|e| e["kind"] == "plan.downgraded_for_nonpayment")
                .count()),
            Some(1)
        );
    }
}
