//! End to end against the built-in Stripe emulator: a pass interrupted before any Stripe call
//! and re-run produces exactly the invoices of an uninterrupted pass; a resume after Stripe
//! forgot its idempotency keys finds what exists instead of creating it again; 429s are retried;
//! the emulator behaves like Stripe on idempotency and unknown parameters.

use crate::common;
use crate::common::{at, base_plan, connect, gateway, Backend, TestDb};
use chrono::Duration;
use plan_invoicer::db::Conn;
use plan_invoicer::devtools::emulator::{Emulator, Faults};
use plan_invoicer::domain::{BillingSchedule, Tier};
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
            kind: plan_invoicer::domain::CustomerKind::parse(kind)
                .unwrap_or_else(|e| panic!("{e}")),
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
            tier: Tier::CloudStandard,
            schedule: BillingSchedule::Annual,
            licenses: 6,
            automanage_licenses: true,
            ..base_plan()
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
            tier: Tier::SelfHostedBasic,
            schedule: BillingSchedule::Monthly,
            licenses: 10,
            invoice_billing: true,
            ..base_plan()
        },
    );
    let f = customer(conn, "Fixed", "cloud");
    let offer = ops::create_offer(conn, f, Tier::CloudPlus, 170000, None, t0)
        .unwrap_or_else(|e| panic!("{e}"));
    ops::accept_offer(conn, offer, BillingSchedule::Monthly, Some(12), t0)
        .unwrap_or_else(|e| panic!("{e}"));
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
    // Three requests per invoice whatever its number of lines (create, add_lines, finalize),
    // one per new customer and one per tier that has per-seat lines (its product), no more.
    let lines: usize = snap
        .iter()
        .map(|i| i[7].as_array().map_or(0, Vec::len))
        .sum();
    assert!(lines > snap.len(), "some invoices have several lines");
    let requests = db.stripe.requests();
    let count = |endpoint: &str| requests.iter().filter(|r| r.endpoint == endpoint).count();
    assert_eq!(count("/v1/customers"), 3);
    assert_eq!(
        count("/v1/products"),
        2,
        "cloud_standard and self_hosted_basic"
    );
    for endpoint in [
        "/v1/invoices",
        "/v1/invoices/{invoice}/add_lines",
        "/v1/invoices/{invoice}/finalize",
    ] {
        assert_eq!(count(endpoint), snap.len(), "{endpoint}");
    }
    assert_eq!(requests.len(), 5 + 3 * snap.len());
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
    // Request 1 creates the first customer, 2 its first invoice, 3 the product of its tier,
    // 4 adds all of the invoice's lines in one `add_lines` request.
    for (backend, lost) in [
        (Backend::Sqlite, 2),
        (Backend::Sqlite, 3),
        (Backend::Sqlite, 4),
        (Backend::Postgres, 2),
        (Backend::Postgres, 4),
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
        // Each local line exactly once on Stripe's invoice, also the lines of the lost answer.
        let mut line_ids: Vec<String> = db
            .stripe
            .items()
            .iter()
            .filter_map(|i| {
                i["metadata"]["plan_invoicer_line_id"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        let all = line_ids.len();
        line_ids.sort();
        line_ids.dedup();
        assert_eq!(line_ids.len(), all, "no line twice (response {lost} lost)");
        let local_lines: usize = db
            .invoices()
            .iter()
            .map(|i| i["lines"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(all, local_lines, "every line once (response {lost} lost)");
        if lost == 3 {
            assert_eq!(
                db.stripe.products().len(),
                2,
                "the product is not made twice"
            );
        }
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
        tier: Tier::CloudStandard,
        schedule: BillingSchedule::Monthly,
        licenses: 3,
        ..base_plan()
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

/// The emulator's `add_lines` as Stripe's: lines to a draft only, all or none, unknown
/// parameters refused, inline prices on an existing product; products with an id of the
/// caller's choosing, once.
#[test]
fn emulator_add_lines_and_products() {
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
    let product = post("products", "p1", "id=prod_seat&name=Seats");
    assert_eq!(product["id"], "prod_seat");
    let again = post("products", "p2", "id=prod_seat&name=Seats");
    assert_eq!(again["error"]["code"], "resource_already_exists");
    assert_eq!(emu.products().len(), 1);
    let customer = post("customers", "c1", "name=A");
    let cus = customer["id"].as_str().unwrap_or_default().to_string();
    let invoice = post(
        "invoices",
        "i1",
        &format!("customer={cus}&auto_advance=false"),
    );
    let inv = invoice["id"].as_str().unwrap_or_default().to_string();
    let lines = |extra: &str| {
        format!(
            "lines[0][amount]=-500&lines[0][description]=Discount&lines[0][metadata][plan_invoicer_line_id]=1\
             &lines[1][price_data][currency]=usd&lines[1][price_data][product]=prod_seat\
             &lines[1][price_data][unit_amount_decimal]=800&lines[1][quantity]=12\
             &lines[1][period][start]=1&lines[1][period][end]=2{extra}"
        )
    };
    // One bad line refuses the request: nothing is added.
    let refused = post(
        &format!("invoices/{inv}/add_lines"),
        "l1",
        &lines("&lines[2][amount]=1&lines[2][unit_amount]=5"),
    );
    assert_eq!(
        refused["error"]["message"],
        "Received unknown parameter: unit_amount"
    );
    assert_eq!(refused["error"]["param"], "lines[2][unit_amount]");
    let no_product = post(
        &format!("invoices/{inv}/add_lines"),
        "l2",
        "lines[0][price_data][currency]=usd&lines[0][price_data][product]=prod_none&lines[0][price_data][unit_amount]=1",
    );
    assert_eq!(no_product["error"]["code"], "resource_missing");
    assert!(emu.items().is_empty(), "a refused request adds no line");
    let added = post(&format!("invoices/{inv}/add_lines"), "l3", &lines(""));
    assert_eq!(added["lines"]["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(added["lines"]["data"][1]["amount"], 9600);
    assert!(
        added["lines"]["data"][1]["parent"]["invoice_item_details"]["invoice_item"]
            .as_str()
            .is_some_and(|id| id.starts_with("ii_"))
    );
    // Replayed under its key: no second copy.
    let replayed = post(&format!("invoices/{inv}/add_lines"), "l3", &lines(""));
    assert_eq!(replayed["id"], added["id"]);
    assert_eq!(emu.items().len(), 2);
    let finalized = post(&format!("invoices/{inv}/finalize"), "f1", "");
    assert_eq!(finalized["total"], 9100);
    let late = post(
        &format!("invoices/{inv}/add_lines"),
        "l4",
        "lines[0][amount]=1",
    );
    assert_eq!(late["error"]["code"], "invoice_not_editable");
    assert_eq!(emu.items().len(), 2);
}

/// A draft that holds some of its lines already (items made one at a time by an earlier
/// version, then a crash) is completed with the rest only, in one `add_lines` request under a
/// key of its own: no line twice.
#[test]
fn partial_draft_is_completed_not_duplicated() {
    let (expected, _) = baseline();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let mut conn = connect(&db);
        setup(&mut conn);
        // Every `add_lines` fails before Stripe carries it out: each customer's first invoice
        // is left a draft without lines.
        db.stripe.set_faults(Faults {
            fail_endpoints: vec!["/v1/invoices/{invoice}/add_lines".into()],
            ..Faults::default()
        });
        let first = pass(&db, &mut conn, HORIZON, 1);
        assert_eq!(first.failures.len(), 3, "{first:?}");
        db.stripe.set_faults(Faults::default());
        let draft = db
            .invoices()
            .into_iter()
            .find(|i| {
                i["stripe_invoice_id"].is_string()
                    && i["status"] == "pending"
                    && i["lines"].as_array().is_some_and(|l| l.len() >= 2)
            })
            .unwrap_or_else(|| panic!("a draft with several lines was left"));
        let sid = draft["stripe_invoice_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let filter = plan_invoicer::db::repo::InvoiceFilter {
            ids: Some(vec![plan_invoicer::domain::InvoiceId(
                draft["id"].as_i64().unwrap_or_default(),
            )]),
            ..Default::default()
        };
        let record = plan_invoicer::db::repo::list_invoices(&mut conn, &filter)
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0);
        let lines = record.lines;
        assert!(lines.len() >= 2, "the draft has several lines: {draft}");
        db.stripe
            .add_item_beside(&sid, lines[0].id.0, lines[0].amount_cents)
            .unwrap_or_else(|| panic!("the draft exists in Stripe"));
        let second = pass(&db, &mut conn, "2013-01-10T01:00:00Z", 1);
        assert!(
            second.failures.is_empty() && second.needs_attention.is_empty(),
            "{second:?}"
        );
        let on_draft: Vec<Value> = db
            .stripe
            .items()
            .into_iter()
            .filter(|i| i["invoice"] == sid)
            .collect();
        assert_eq!(on_draft.len(), lines.len(), "each line once on {sid}");
        let rest_key = db
            .stripe
            .requests()
            .iter()
            .rev()
            .filter(|r| r.endpoint == "/v1/invoices/{invoice}/add_lines" && r.path.contains(&sid))
            .find_map(|r| r.idempotency_key.clone())
            .unwrap_or_default();
        assert!(rest_key.contains(":lines:rest-"), "{rest_key}");
        // The snapshot compares descriptions, amounts and periods: the fixture's item has the
        // first line's amount, so the invoices are the same as without the crash.
        let totals = |snap: &[Value]| snap.iter().map(|i| i[3].clone()).collect::<Vec<_>>();
        assert_eq!(
            totals(&common::stripe_snapshot(&db.stripe)),
            totals(&expected)
        );
    }
}

/// A customer and a monthly plan of 10 seats at T0 on `db`, 12 seats from day 10, through the
/// CLI; returns the customer's id.
fn small_book(db: &TestDb, extra: &[&str]) -> i64 {
    let mut args = vec!["customer", "create", "--name", "Acme"];
    args.extend_from_slice(extra);
    let c = db.id(None, &args);
    let plan = db.id(
        Some("2012-01-02T03:04:05Z"),
        &[
            "plan",
            "create",
            "--customer",
            &c.to_string(),
            "--tier",
            "cloud_standard",
            "--schedule",
            "monthly",
            "--licenses",
            "10",
            "--automanage-licenses",
        ],
    );
    db.ok(
        Some("2012-01-12T00:00:00Z"),
        &["plan", "seats", &plan.to_string(), "--count", "12"],
    );
    c
}

/// Issue 24: two databases on one Stripe account. Both number their first customer and invoice
/// 1; with keys made of local ids alone the second was refused ("Keys for idempotent requests
/// can only be used with the same parameters"). Each installation's keys and metadata now name
/// it: both invoice correctly, and neither's audit or sync-payments reports or applies the
/// other's objects, even on a Stripe customer they share.
#[test]
fn two_installations_share_one_stripe_account() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(a) = TestDb::new(backend) else {
            continue;
        };
        let Some(mut b) = TestDb::new(backend) else {
            continue;
        };
        b.stripe = a.stripe.clone();
        b.stripe_base = a.stripe_base.clone();
        let (ia, ib) = (
            a.ok(None, &["status"])["installation"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            b.ok(None, &["status"])["installation"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        assert_eq!(ia.len(), 16, "{ia}");
        assert_ne!(ia, ib, "every database has its own installation");
        small_book(&a, &[]);
        small_book(&b, &[]);
        for db in [&a, &b] {
            let report = db.ok(Some("2012-02-02T03:04:05Z"), &["run-once"]);
            assert_eq!(report["invoices_sent"], 1, "{report}");
            assert_eq!(report["needs_attention"], serde_json::json!([]), "{report}");
        }
        // Two customers and two invoices in Stripe, each tagged with its installation.
        let remote = a.stripe.invoices();
        assert_eq!(remote.len(), 2);
        let mut tags: Vec<String> = remote
            .iter()
            .map(|i| {
                i["metadata"]["plan_invoicer_installation"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        tags.sort();
        let mut expected = vec![ia.clone(), ib.clone()];
        expected.sort();
        assert_eq!(tags, expected);
        assert!(a
            .stripe
            .customers()
            .iter()
            .all(|c| c["metadata"]["plan_invoicer_installation"].is_string()));
        assert!(a
            .stripe
            .items()
            .iter()
            .all(|i| i["metadata"]["plan_invoicer_installation"].is_string()));
        assert!(
            a.stripe.requests().iter().all(|r| r.status < 400),
            "no request was refused"
        );
        assert!(a
            .stripe
            .requests()
            .iter()
            .filter_map(|r| r.idempotency_key.as_deref())
            .filter(|k| !k.starts_with("plan-invoicer:product:"))
            .all(|k| k.starts_with(&format!("plan-invoicer:{ia}:"))
                || k.starts_with(&format!("plan-invoicer:{ib}:"))));

        // A third database sharing A's Stripe customer: A's audit leaves C's invoice out.
        let Some(mut c) = TestDb::new(backend) else {
            continue;
        };
        c.stripe = a.stripe.clone();
        c.stripe_base = a.stripe_base.clone();
        let shared = a.ok(None, &["customer", "show", "1"])["stripe_customer_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        small_book(&c, &["--stripe-customer-id", &shared]);
        c.ok(Some("2012-02-02T03:04:05Z"), &["run-once"]);
        for db in [&a, &c] {
            let audit = db.ok(None, &["audit"]);
            assert_eq!(audit["findings"], serde_json::json!([]), "{audit}");
            assert_eq!(audit["foreign_stripe_invoices"], 1, "{audit}");
        }
        // Payments: C's invoice paid; A's sync applies nothing of it, C's applies it.
        let c_invoice = c.invoices()[0]["stripe_invoice_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(a.stripe.pay(&c_invoice));
        let synced = a.ok(None, &["sync-payments"]);
        assert!(synced["foreign"].as_u64().unwrap_or(0) >= 1, "{synced}");
        assert!(a.invoices().iter().all(|i| i["payment_status"] != "paid"));
        c.ok(None, &["sync-payments"]);
        assert_eq!(c.invoices()[0]["payment_status"], "paid");
    }
}

/// Issue 24: an upgrade never sends a request twice. A database of the release before
/// installations (every key made of local ids alone) is left with a half-sent invoice; the
/// migration to installations records what existed, and the resumed invoice finishes under the
/// keys it started with, while what is made after the upgrade carries the installation.
#[test]
fn an_invoice_half_sent_before_the_upgrade_finishes_under_its_old_keys() {
    use diesel::RunQueryDsl;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let sql = |statements: &[&str]| {
            let mut conn = connect(&db);
            for s in statements {
                let r = match &mut conn {
                    Conn::Sqlite(c) => diesel::sql_query(*s).execute(c),
                    Conn::Pg(c) => diesel::sql_query(*s).execute(c),
                };
                r.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        };
        // The release before: no installation in any key.
        sql(&["UPDATE installation SET legacy_customers_through = 9223372036854775807, legacy_invoices_through = 9223372036854775807"]);
        small_book(&db, &[]);
        db.stripe.set_faults(Faults {
            fail_endpoints: vec!["/v1/invoices/{invoice}/finalize".into()],
            ..Faults::default()
        });
        let (code, _, _) = db.run(Some("2012-02-02T03:04:05Z"), &["run-once"]);
        assert_ne!(code, 0, "finalize failed: the invoice is half sent");
        assert_eq!(db.stripe.invoices().len(), 1);
        assert_eq!(db.invoices()[0]["status"], "pending");
        // The upgrade: the installation migration runs on this database as it was.
        sql(&[
            "DROP TABLE successor_renewal",
            "DROP TABLE installation",
            "DELETE FROM __diesel_schema_migrations WHERE version = '20261205100000'",
        ]);
        db.ok(None, &["migrate"]);
        let installation = db.ok(None, &["status"])["installation"]
            .as_str()
            .unwrap_or("")
            .to_string();
        db.stripe.set_faults(Faults::default());
        let report = db.pass("2012-02-03T00:00:00Z");
        assert_eq!(report["needs_attention"], serde_json::json!([]), "{report}");
        assert_eq!(db.invoices()[0]["status"], "sent");
        assert_eq!(db.stripe.invoices().len(), 1, "one Stripe invoice");
        let finalized: Vec<String> = db
            .stripe
            .requests()
            .iter()
            .filter(|r| r.status < 300)
            .filter_map(|r| r.idempotency_key.clone())
            .filter(|k| k.ends_with(":finalize"))
            .collect();
        assert_eq!(
            finalized,
            ["plan-invoicer:invoice:1:finalize"],
            "the old key"
        );
        assert!(
            db.stripe
                .requests()
                .iter()
                .all(|r| !(400..500).contains(&r.status)),
            "nothing refused (only the faults' 500s)"
        );
        // What comes after the upgrade is the installation's.
        small_book(&db, &[]);
        db.pass("2012-03-02T03:04:05Z");
        let keys: Vec<String> = db
            .stripe
            .requests()
            .iter()
            .filter_map(|r| r.idempotency_key.clone())
            .filter(|k| k.contains(":customer:2") || k.contains(":invoice:3"))
            .collect();
        assert!(!keys.is_empty());
        assert!(
            keys.iter()
                .all(|k| k.starts_with(&format!("plan-invoicer:{installation}:"))),
            "{keys:?}"
        );
        db.ok(None, &["audit"]);
    }
}
