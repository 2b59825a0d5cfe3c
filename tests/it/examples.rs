//! The scenarios of `examples.md`, and a year of time travel per plan kind, through the real
//! binary on SQLite and on PostgreSQL.

use crate::common::{line, lines, TestDb};
use serde_json::Value;

const T0: &str = "2012-01-02T03:04:05Z";
const NM: &str = "2012-02-02T03:04:05Z";
const NY: &str = "2013-01-02T03:04:05Z";
const FTE: &str = "2012-03-02T03:04:05Z";
const STD_ADD: &str = "Additional Zulip Cloud Standard license";
const STD_RENEWAL: &str = "Zulip Cloud Standard - renewal";

fn customer(db: &TestDb) -> i64 {
    db.id(Some(T0), &["customer", "create", "--name", "Acme"])
}

fn standard_plan(db: &TestDb, cust: i64, schedule: &str, licenses: &str, extra: &[&str]) -> i64 {
    let c = cust.to_string();
    let mut args = vec![
        "plan",
        "create",
        "--customer",
        &c,
        "--tier",
        "cloud_standard",
        "--schedule",
        schedule,
        "--licenses",
        licenses,
    ];
    args.extend_from_slice(extra);
    db.id(Some(T0), &args)
}

fn annual_plan(db: &TestDb, cust: i64, licenses: &str, extra: &[&str]) -> i64 {
    standard_plan(db, cust, "annual", licenses, extra)
}

fn seats(db: &TestDb, plan: i64, at: &str, count: i64) -> Value {
    db.ok(
        Some(at),
        &[
            "plan",
            "seats",
            &plan.to_string(),
            "--count",
            &count.to_string(),
        ],
    )
}

fn invoices_of(report: &Value) -> Vec<Value> {
    report["invoices"].as_array().cloned().unwrap_or_default()
}

/// S22 through `run-once`: the same three lines arrive on the invoices of the due dates.
fn s22_additions_renewal_and_later_addition(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    seats(db, plan, "2012-04-11T03:04:05Z", 9);
    seats(db, plan, "2012-07-20T03:04:05Z", 6);
    seats(db, plan, "2012-10-28T03:04:05Z", 7);
    let last = seats(db, plan, "2013-02-05T03:04:05Z", 8);
    assert_eq!(last["ledger_entry"]["licenses"], 8);
    let ledger = db.ok(None, &["plan", "ledger", &plan.to_string()]);
    let renewal = &ledger[4];
    assert_eq!(
        (
            renewal["is_renewal"].as_bool(),
            renewal["event_time"].as_str(),
            renewal["licenses"].as_i64()
        ),
        (Some(true), Some(NY), Some(7))
    );

    let report = db.pass("2013-03-03T00:00:00Z");
    let inv = invoices_of(&report);
    assert_eq!(inv.len(), 3, "{report}");
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_ADD, 3, 5814, 17442, "2012-04-11T03:04:05Z", NY)]
    );
    assert_eq!(inv[0]["event_time"], "2012-05-02T03:04:05Z");
    assert_eq!(
        lines(&inv[1]),
        vec![line(
            STD_RENEWAL,
            7,
            8000,
            56000,
            NY,
            "2014-01-02T03:04:05Z"
        )]
    );
    assert_eq!(
        lines(&inv[2]),
        vec![line(
            STD_ADD,
            1,
            7255,
            7255,
            "2013-02-05T03:04:05Z",
            "2014-01-02T03:04:05Z"
        )]
    );
    let total: i64 = inv
        .iter()
        .map(|i| i["total_cents"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 80697);
    assert!(inv
        .iter()
        .all(|i| i["status"] == "sent" && i["collection_method"] == "charge_automatically"));

    // The same pass again emits nothing.
    let again = db.pass("2013-03-03T00:00:00Z");
    assert_eq!(again["plans_considered"], 0);
    assert_eq!(invoices_of(&again).len(), 0);
    assert_eq!(db.invoices().len(), 3);
    let p = db.plan(plan);
    assert_eq!(p["next_invoice_date"], "2013-04-02T03:04:05Z");
    assert_eq!(p["invoicing_status"], "done");
}

/// S22 with passes running every month while the seats change.
fn s22_with_monthly_passes(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    let mut all = vec![];
    let mut pass = |now: &str| all.extend(invoices_of(&db.pass(now)));
    for month in 2..=4 {
        pass(&format!("2012-{month:02}-02T03:04:05Z"));
    }
    seats(db, plan, "2012-04-11T03:04:05Z", 9);
    for month in 5..=7 {
        pass(&format!("2012-{month:02}-02T03:04:05Z"));
    }
    seats(db, plan, "2012-07-20T03:04:05Z", 6);
    for month in 8..=10 {
        pass(&format!("2012-{month:02}-02T03:04:05Z"));
    }
    seats(db, plan, "2012-10-28T03:04:05Z", 7);
    for month in 11..=12 {
        pass(&format!("2012-{month:02}-02T03:04:05Z"));
    }
    pass(NY);
    pass("2013-02-02T03:04:05Z");
    seats(db, plan, "2013-02-05T03:04:05Z", 8);
    pass("2013-03-02T03:04:05Z");
    let got: Vec<_> = all.iter().flat_map(lines).collect();
    assert_eq!(
        got,
        vec![
            line(STD_ADD, 3, 5814, 17442, "2012-04-11T03:04:05Z", NY),
            line(STD_RENEWAL, 7, 8000, 56000, NY, "2014-01-02T03:04:05Z"),
            line(
                STD_ADD,
                1,
                7255,
                7255,
                "2013-02-05T03:04:05Z",
                "2014-01-02T03:04:05Z"
            ),
        ]
    );
}

/// S08: a 60-day card trial, its end, a renewal, a later addition and the next renewal.
fn s08_free_trial(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(
        db,
        cust,
        "6",
        &["--automanage-licenses", "--free-trial-days", "60"],
    );
    let p = db.plan(plan);
    assert_eq!(
        (
            p["status"].as_str(),
            p["next_invoice_date"].as_str(),
            p["price_per_license_cents"].as_i64()
        ),
        (Some("free_trial"), Some(FTE), Some(8000))
    );
    assert_eq!(seats(db, plan, T0, 12)["ledger_entry"]["licenses"], 12);
    assert_eq!(seats(db, plan, NM, 15)["ledger_entry"]["licenses"], 15);
    assert_eq!(invoices_of(&db.pass(NM)).len(), 0);
    assert_eq!(db.plan(plan)["status"], "free_trial");

    let inv = invoices_of(&db.pass(FTE));
    assert_eq!(inv.len(), 1);
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            STD_RENEWAL,
            15,
            8000,
            120000,
            FTE,
            "2013-03-02T03:04:05Z"
        )]
    );
    assert_eq!(inv[0]["total_cents"], 120000);
    let p = db.plan(plan);
    assert_eq!(
        (
            p["status"].as_str(),
            p["next_invoice_date"].as_str(),
            p["billing_cycle_anchor"].as_str()
        ),
        (Some("active"), Some("2012-04-02T03:04:05Z"), Some(FTE))
    );

    assert_eq!(invoices_of(&db.pass("2012-04-02T03:04:05Z")).len(), 0);
    seats(db, plan, NY, 19);
    let inv = invoices_of(&db.pass(NY));
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_ADD, 4, 1293, 5172, NY, "2013-03-02T03:04:05Z")]
    );
    let inv = invoices_of(&db.pass("2013-03-02T03:04:05Z"));
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            STD_RENEWAL,
            19,
            8000,
            152000,
            "2013-03-02T03:04:05Z",
            "2014-03-02T03:04:05Z"
        )]
    );
    assert_eq!(db.invoices().len(), 3);
}

/// S14: downgrade at the end of the cycle; additions of the last period are billed.
fn s14_downgrade_at_end_of_cycle(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    let p = db.ok(
        Some(T0),
        &[
            "plan",
            "schedule",
            &plan.to_string(),
            "--change",
            "downgrade_at_end_of_cycle",
        ],
    );
    assert_eq!(
        (
            p["licenses"].as_i64(),
            p["licenses_at_next_renewal"].as_i64()
        ),
        (Some(6), None)
    );
    seats(db, plan, T0, 20);
    let inv = invoices_of(&db.pass(NM));
    assert_eq!(inv.len(), 1);
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_ADD, 14, 8000, 112000, T0, NY)]
    );

    let r = seats(db, plan, NY, 30);
    assert_eq!(
        (r["ledger_entry"].is_null(), r["plan_status"].as_str()),
        (true, Some("ended"))
    );
    let ledger = db.ok(None, &["plan", "ledger", &plan.to_string()]);
    assert_eq!(ledger.as_array().map(Vec::len), Some(2));
    assert_eq!(ledger[1]["licenses"], 20);
    let events = db.ok(None, &["plan", "events", &plan.to_string()]);
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "plan_ended")),
        "{events}"
    );
    let err = db.refused(
        Some(NY),
        &["plan", "seats", &plan.to_string(), "--count", "40"],
    );
    assert!(err.contains("not live"), "{err}");

    assert_eq!(invoices_of(&db.pass("2013-02-03T03:04:05Z")).len(), 0);
    assert!(db.plan(plan)["next_invoice_date"].is_null());
    assert_eq!(db.pass("2014-02-07T03:04:05Z")["plans_considered"], 0);
    assert_eq!(db.invoices().len(), 1);
}

/// S14 variant: the pass itself performs the downgrade at the boundary.
fn s14_downgrade_during_invoicing(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    db.ok(
        Some(T0),
        &[
            "plan",
            "schedule",
            &plan.to_string(),
            "--change",
            "downgrade_at_end_of_cycle",
        ],
    );
    let report = db.pass(NY);
    assert_eq!(invoices_of(&report).len(), 0);
    let p = db.plan(plan);
    assert_eq!(
        (p["status"].as_str(), p["next_invoice_date"].is_null()),
        (Some("ended"), true)
    );
}

/// S25: nothing is due a day early; at NM nothing is billed and the date moves a month.
fn s25_no_invoice_needed(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &[]);
    assert_eq!(db.plan(plan)["next_invoice_date"], NM);
    assert_eq!(db.pass("2012-02-01T03:04:05Z")["plans_considered"], 0);
    let report = db.pass(NM);
    assert_eq!(
        (
            report["plans_considered"].as_i64(),
            invoices_of(&report).len()
        ),
        (Some(1), 0)
    );
    assert_eq!(db.plan(plan)["next_invoice_date"], "2012-03-02T03:04:05Z");
}

/// S26: a guest promoted to member adds one prorated license.
fn s26_one_prorated_license(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    seats(db, plan, "2012-01-07T03:04:05Z", 6);
    seats(db, plan, "2012-01-12T03:04:05Z", 7);
    let inv = invoices_of(&db.pass(NM));
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_ADD, 1, 7781, 7781, "2012-01-12T03:04:05Z", NY)]
    );
    assert_eq!(db.plan(plan)["next_invoice_date"], "2012-03-02T03:04:05Z");
}

/// S02 through the CLI: parameters and prices frozen at creation.
fn s02_plan_parameters(db: &TestDb) {
    let plain = db.id(None, &["customer", "create", "--name", "Plain"]);
    let discounted = db.id(
        None,
        &[
            "customer",
            "create",
            "--name",
            "Discounted",
            "--monthly-discounted-price-cents",
            "600",
            "--annual-discounted-price-cents",
            "6000",
            "--required-plan-tier",
            "cloud_standard",
        ],
    );
    let now = Some("2019-12-31T01:02:03.654321Z");
    let make = |cust: i64, tier: &str, schedule: &str| {
        let c = cust.to_string();
        db.id(
            now,
            &[
                "plan",
                "create",
                "--customer",
                &c,
                "--tier",
                tier,
                "--schedule",
                schedule,
                "--licenses",
                "10",
            ],
        )
    };
    let p = db.plan(make(discounted, "cloud_standard", "annual"));
    assert_eq!(p["billing_cycle_anchor"], "2019-12-31T01:02:03Z");
    assert_eq!(p["next_invoice_date"], "2020-01-31T01:02:03Z");
    assert_eq!(
        (
            p["price_per_license_cents"].as_i64(),
            p["discount"].as_str()
        ),
        (Some(6000), Some("25"))
    );
    let p = db.plan(make(plain, "cloud_plus", "monthly"));
    assert_eq!(
        (
            p["price_per_license_cents"].as_i64(),
            p["discount"].is_null()
        ),
        (Some(1200), true)
    );
    let other = db.id(None, &["customer", "create", "--name", "Other"]);
    let err = db.refused(
        now,
        &[
            "plan",
            "create",
            "--customer",
            &other.to_string(),
            "--tier",
            "cloud_enterprise",
            "--schedule",
            "annual",
            "--licenses",
            "5",
        ],
    );
    assert!(err.contains("Unknown tier: 4"), "{err}");
    let err = db.refused(
        now,
        &[
            "plan",
            "create",
            "--customer",
            &other.to_string(),
            "--tier",
            "1",
            "--schedule",
            "1000",
            "--licenses",
            "5",
        ],
    );
    assert!(err.contains("Unknown billing_schedule: 1000"), "{err}");
}

/// A monthly plan over a year: twelve renewals and one prorated addition.
fn monthly_plan_for_a_year(db: &TestDb) {
    let cust = customer(db);
    let plan = standard_plan(db, cust, "monthly", "6", &["--automanage-licenses"]);
    seats(db, plan, "2012-02-16T03:04:05Z", 8);
    let mut all = vec![];
    for month in 2..=13 {
        let (y, m) = if month > 12 {
            (2013, month - 12)
        } else {
            (2012, month)
        };
        all.extend(invoices_of(&db.pass(&format!("{y}-{m:02}-02T03:04:05Z"))));
    }
    let got: Vec<_> = all.iter().flat_map(lines).collect();
    assert_eq!(got.len(), 13, "{got:?}");
    assert_eq!(got[0], line(STD_RENEWAL, 6, 800, 4800, NM, FTE));
    // 15 of the 29 days of February 2012 remain: 800 × 15 / 29 = 413.8 → 414.
    assert_eq!(
        got[2],
        line(STD_ADD, 2, 414, 828, "2012-02-16T03:04:05Z", FTE)
    );
    assert_eq!(
        got[1],
        line(STD_RENEWAL, 8, 800, 6400, FTE, "2012-04-02T03:04:05Z")
    );
    assert_eq!(
        got[12],
        line(STD_RENEWAL, 8, 800, 6400, NY, "2013-02-02T03:04:05Z")
    );
    let total: i64 = all
        .iter()
        .map(|i| i["total_cents"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 4800 + 828 + 11 * 6400);
}

/// A monthly plan switched to annual: the new plan is billed in the same pass (D7).
fn switch_monthly_to_annual(db: &TestDb) {
    let cust = customer(db);
    let plan = standard_plan(db, cust, "monthly", "6", &["--automanage-licenses"]);
    db.ok(
        Some("2012-01-12T00:00:00Z"),
        &[
            "plan",
            "schedule",
            &plan.to_string(),
            "--change",
            "switch_to_annual",
        ],
    );
    let report = db.pass(NM);
    let inv = invoices_of(&report);
    assert_eq!(inv.len(), 1, "{report}");
    let new_plan = inv[0]["plan_id"].as_i64().unwrap_or(0);
    assert_ne!(new_plan, plan);
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            STD_RENEWAL,
            6,
            8000,
            48000,
            NM,
            "2013-02-02T03:04:05Z"
        )]
    );
    let old = db.plan(plan);
    assert_eq!(
        (old["status"].as_str(), old["next_invoice_date"].is_null()),
        (Some("ended"), true)
    );
    let new = db.plan(new_plan);
    assert_eq!(
        (
            new["status"].as_str(),
            new["billing_schedule"].as_str(),
            new["billing_cycle_anchor"].as_str(),
            new["next_invoice_date"].as_str(),
            new["invoicing_status"].as_str()
        ),
        (
            Some("active"),
            Some("annual"),
            Some(NM),
            Some(FTE),
            Some("done")
        )
    );
    // Nothing more until the annual renewal a year later.
    let mut later = 0;
    for month in 3..=12 {
        later += invoices_of(&db.pass(&format!("2012-{month:02}-02T03:04:05Z"))).len();
    }
    assert_eq!(later, 0);
    let inv = invoices_of(&db.pass("2013-02-02T03:04:05Z"));
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            STD_RENEWAL,
            6,
            8000,
            48000,
            "2013-02-02T03:04:05Z",
            "2014-02-02T03:04:05Z"
        )]
    );
}

/// A fixed-price offer accepted monthly: 14167 a month (D2), then the plan ends after a year.
fn fixed_price_plan(db: &TestDb) {
    let cust = customer(db);
    let offer = db.id(
        Some(T0),
        &[
            "offer",
            "create",
            "--customer",
            &cust.to_string(),
            "--tier",
            "cloud_standard",
            "--fixed-price-cents",
            "170000",
        ],
    );
    let plan = db.ok(
        Some(T0),
        &[
            "offer",
            "accept",
            &offer.to_string(),
            "--schedule",
            "monthly",
            "--licenses",
            "20",
        ],
    )["plan_id"]
        .as_i64()
        .unwrap_or(0);
    let err = db.refused(
        Some(T0),
        &[
            "offer",
            "accept",
            &offer.to_string(),
            "--schedule",
            "monthly",
        ],
    );
    assert!(err.contains("already accepted"), "{err}");
    let p = db.plan(plan);
    assert_eq!(
        (
            p["fixed_price_cents"].as_i64(),
            p["end_date"].as_str(),
            p["automanage_licenses"].as_bool()
        ),
        (Some(170000), Some(NY), Some(true))
    );
    seats(db, plan, "2012-03-10T00:00:00Z", 30); // fixed-price plans never bill additions
                                                 // The end-of-plan notice is checked once per pass, at its first due date: a catch-up from
                                                 // February to November (first due date 11 months before the end) writes none ...
    let first = invoices_of(&db.pass("2012-11-10T00:00:00Z"));
    let events = db.ok(None, &["plan", "events", &plan.to_string()]);
    assert!(
        !events.to_string().contains("notice_fixed_price_plan_ends"),
        "{events}"
    );
    // ... the next pass, whose first due date is a month before the end, does.
    let report = db.pass("2013-02-10T00:00:00Z");
    let inv: Vec<Value> = first.into_iter().chain(invoices_of(&report)).collect();
    assert_eq!(inv.len(), 11, "{report}");
    for i in &inv {
        let l = lines(i);
        assert_eq!((l.len(), l[0].0.as_str(), l[0].3), (1, STD_RENEWAL, 14167));
    }
    let p = db.plan(plan);
    assert_eq!(
        (p["status"].as_str(), p["next_invoice_date"].is_null()),
        (Some("ended"), true)
    );
    let events = db.ok(None, &["plan", "events", &plan.to_string()]);
    assert!(
        events.as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["kind"] == "notice_fixed_price_plan_ends")),
        "{events}"
    );
}

/// A plan with an end date and a fixed-price successor: the successor starts and is billed in
/// the same pass.
fn successor_plan(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    let id = plan.to_string();
    let err = db.refused(
        Some(NM),
        &[
            "plan",
            "schedule-successor",
            &id,
            "--fixed-price-cents",
            "100000",
        ],
    );
    assert!(err.contains("no end date"), "{err}");
    db.ok(Some(NM), &["plan", "set-end-date", &id, "--date", NY]);
    let successor = db.id(
        Some(NM),
        &[
            "plan",
            "schedule-successor",
            &id,
            "--fixed-price-cents",
            "100000",
        ],
    );
    assert_eq!(db.plan(successor)["status"], "never_started");
    assert_eq!(db.plan(plan)["status"], "switch_plan_tier_at_plan_end");
    let inv = invoices_of(&db.pass("2013-01-03T00:00:00Z"));
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0]["plan_id"].as_i64(), Some(successor));
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            STD_RENEWAL,
            1,
            100000,
            100000,
            NY,
            "2014-01-02T03:04:05Z"
        )]
    );
    assert_eq!(db.plan(plan)["status"], "ended");
    let s = db.plan(successor);
    assert_eq!(
        (s["status"].as_str(), s["next_invoice_date"].as_str()),
        (Some("active"), Some(NM.replace("2012", "2013").as_str()))
    );
}

/// A worker that missed three months catches up with each due date as the event time.
fn catch_up_after_three_missed_months(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    seats(db, plan, "2012-01-12T03:04:05Z", 7);
    seats(db, plan, "2012-02-11T03:04:05Z", 8);
    seats(db, plan, "2012-03-12T03:04:05Z", 9);
    let report = db.pass("2012-04-11T00:00:00Z");
    let inv = invoices_of(&report);
    let at: Vec<_> = inv
        .iter()
        .map(|i| i["event_time"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        at,
        vec![
            NM.to_string(),
            FTE.to_string(),
            "2012-04-02T03:04:05Z".to_string()
        ]
    );
    // 356/366, 326/366 and 296/366 of 8000.
    let units: Vec<_> = inv.iter().map(|i| lines(i)[0].2).collect();
    assert_eq!(units, vec![7781, 7126, 6470]);
    assert_eq!(db.plan(plan)["next_invoice_date"], "2012-05-02T03:04:05Z");
}

/// A blocked renewal parks that plan with a reason; the other customers are still invoiced.
fn needs_attention_isolated(db: &TestDb) {
    let short = db.id(Some(T0), &["customer", "create", "--name", "Short"]);
    let fine = customer(db);
    let s = short.to_string();
    let manual = standard_plan(db, short, "monthly", "6", &[]);
    let good = standard_plan(db, fine, "monthly", "6", &["--automanage-licenses"]);
    db.ok(
        Some("2012-01-20T00:00:00Z"),
        &["customer", "report-usage", &s, "--seats", "9"],
    );
    let report = db.code(3, Some(NM), &["run-once"]);
    let attention = report["needs_attention"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(attention.len(), 1, "{report}");
    assert_eq!(attention[0]["plan_id"].as_i64(), Some(manual));
    assert!(
        attention[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("9 seats")),
        "{report}"
    );
    let inv = invoices_of(&report);
    assert_eq!((inv.len(), inv[0]["plan_id"].as_i64()), (1, Some(good)));
    let p = db.plan(manual);
    assert!(p["needs_attention"].as_str().is_some(), "{p}");
    assert_eq!(p["next_invoice_date"], NM);
    let status = db.ok(Some(NM), &["status"]);
    assert_eq!(status["needs_attention"].as_array().map(Vec::len), Some(1));
    // `plan retry` lets the next pass take it at once (recorded); twice, there is nothing to retry.
    let retried = db.ok(Some(NM), &["plan", "retry", &manual.to_string()]);
    assert!(retried["needs_attention"].is_null(), "{retried}");
    let change = db.ok(None, &["changes", "list", "--operation", "plan.retry"]);
    assert_eq!(change[0]["plan_id"].as_i64(), Some(manual), "{change}");
    assert!(
        change[0]["before"]["needs_attention"].as_str().is_some(),
        "{change}"
    );
    let again = db.refused(Some(NM), &["plan", "retry", &manual.to_string()]);
    assert!(again.contains("nothing to retry"), "{again}");

    // The operator fixes the licenses; the next pass renews and clears the flag.
    db.ok(
        Some("2012-02-02T12:00:00Z"),
        &[
            "plan",
            "renewal-licenses",
            &manual.to_string(),
            "--licenses",
            "9",
        ],
    );
    let report = db.pass("2012-02-02T13:00:00Z");
    let inv = invoices_of(&report);
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_RENEWAL, 9, 800, 7200, NM, FTE)]
    );
    assert!(db.plan(manual)["needs_attention"].is_null());
}

/// `--dry-run` reports the invoices of the pass and writes nothing.
fn dry_run_writes_nothing(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &["--automanage-licenses"]);
    seats(db, plan, "2012-01-12T03:04:05Z", 7);
    let before = db.plan(plan);
    let dry = db.ok(Some(NM), &["run-once", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        lines(&invoices_of(&dry)[0]),
        vec![line(STD_ADD, 1, 7781, 7781, "2012-01-12T03:04:05Z", NY)]
    );
    assert_eq!(db.plan(plan), before);
    assert!(db.invoices().is_empty());
    assert!(db.ok(Some(NM), &["status"])["last_pass"].is_null());
    let real = db.pass(NM);
    assert_eq!(
        invoices_of(&real).iter().map(lines).collect::<Vec<_>>(),
        invoices_of(&dry).iter().map(lines).collect::<Vec<_>>()
    );
}

/// Manual license management: buying more is prorated; licenses never go down in a period.
fn manual_licenses(db: &TestDb) {
    let cust = customer(db);
    let plan = annual_plan(db, cust, "6", &[]);
    let id = plan.to_string();
    let err = db.refused(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "buy-licenses", &id, "--licenses", "5"],
    );
    assert!(err.contains("only go up"), "{err}");
    let err = db.refused(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "seats", &id, "--count", "9"],
    );
    assert!(err.contains("manual license management"), "{err}");
    db.ok(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "buy-licenses", &id, "--licenses", "10"],
    );
    db.ok(
        Some("2012-06-01T00:00:00Z"),
        &["plan", "renewal-licenses", &id, "--licenses", "8"],
    );
    let inv = invoices_of(&db.pass("2013-01-02T03:04:05Z"));
    let got: Vec<_> = inv.iter().flat_map(lines).collect();
    assert_eq!(
        got,
        vec![
            line(STD_ADD, 4, 7781, 31124, "2012-01-12T03:04:05Z", NY),
            line(STD_RENEWAL, 8, 8000, 64000, NY, "2014-01-02T03:04:05Z")
        ]
    );
}

/// The first period billed by the worker, and the self-hosted flat discount.
fn first_invoice_by_worker_with_flat_discount(db: &TestDb) {
    let (cust, plan) = self_hosted_plan(
        db,
        "self_hosted_basic",
        "monthly",
        "10",
        &["--first-invoice-by-worker"],
    );
    db.ok(Some(T0), &["customer", "report-usage", &cust.to_string()]);
    let c = cust.to_string();
    assert_eq!(
        db.plan(plan)["invoicing_status"],
        "initial_invoice_to_be_sent"
    );
    let inv = invoices_of(&db.pass(T0));
    assert_eq!(
        lines(&inv[0]),
        vec![
            line("Zulip Basic - renewal", 10, 350, 3500, T0, NM),
            line(
                "$20.00/month new customer discount",
                1,
                -2000,
                -2000,
                T0,
                NM
            ),
        ]
    );
    assert_eq!(
        db.ok(None, &["customer", "show", &c])["flat_discounted_months"],
        11
    );
    assert_eq!(db.plan(plan)["invoicing_status"], "done");
    // Stale usage data delays invoicing (D8) until the host reports again; the report unparks
    // the plan at once, before its one-day retry.
    let report = db.code(3, Some(NM), &["run-once"]);
    assert!(
        report["needs_attention"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("usage data")),
        "{report}"
    );
    db.ok(
        Some("2012-02-03T00:00:00Z"),
        &["customer", "report-usage", &c],
    );
    let report = db.pass("2012-02-03T01:00:00Z");
    assert_eq!(
        lines(&invoices_of(&report)[0])[0],
        line("Zulip Basic - renewal", 10, 350, 3500, NM, FTE)
    );
}

/// A self-hosted customer with a plan created at T0: (customer, plan).
fn self_hosted_plan(
    db: &TestDb,
    tier: &str,
    schedule: &str,
    licenses: &str,
    extra: &[&str],
) -> (i64, i64) {
    let cust = db.id(
        Some(T0),
        &[
            "customer",
            "create",
            "--name",
            "Host",
            "--kind",
            "self_hosted",
        ],
    );
    let c = cust.to_string();
    let mut args = vec![
        "plan",
        "create",
        "--customer",
        &c,
        "--tier",
        tier,
        "--schedule",
        schedule,
        "--licenses",
        licenses,
    ];
    args.extend_from_slice(extra);
    (cust, db.id(Some(T0), &args))
}

/// A self-hosted customer on a complimentary (legacy) annual plan at T0: (customer, plan).
fn legacy_plan(db: &TestDb, licenses: &str, extra: &[&str]) -> (i64, i64) {
    self_hosted_plan(db, "self_hosted_legacy", "annual", licenses, extra)
}

/// A complimentary self-hosted plan that ends into a paid fixed-price successor: nothing is
/// billed for the complimentary plan; the successor's first year is billed when it starts.
fn complimentary_plan_into_paid_successor(db: &TestDb) {
    let (cust, plan) = legacy_plan(db, "20", &[]);
    let c = cust.to_string();
    let p = plan.to_string();
    assert_eq!(db.plan(plan)["price_per_license_cents"], 0);
    let end = "2012-06-02T03:04:05Z";
    let shown = db.ok(Some(NM), &["plan", "set-end-date", &p, "--date", end]);
    assert_eq!(
        shown["next_invoice_date"], end,
        "a complimentary plan is next looked at when it ends"
    );
    let next = db.id(
        Some(NM),
        &[
            "plan",
            "schedule-successor",
            &p,
            "--fixed-price-cents",
            "100000",
            "--tier",
            "self_hosted_basic",
        ],
    );
    db.ok(
        Some("2012-06-02T03:30:00Z"),
        &["customer", "report-usage", &c],
    );
    let report = db.pass("2012-06-02T04:00:00Z");
    let inv = invoices_of(&report);
    assert_eq!(inv.len(), 1, "{report}");
    assert_eq!(inv[0]["plan_id"].as_i64(), Some(next));
    assert_eq!(
        lines(&inv[0]),
        vec![line(
            "Zulip Basic - renewal",
            1,
            100000,
            100000,
            end,
            "2013-06-02T03:04:05Z"
        )]
    );
    assert_eq!(db.plan(plan)["status"], "ended");
    assert_eq!(db.plan(next)["status"], "active");
    let events = db.ok(None, &["plan", "events", &p]);
    let ended = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "plan_ended").cloned())
        .unwrap_or_default();
    assert_eq!(
        (ended["old_tier"].as_i64(), ended["new_tier"].as_i64()),
        (Some(101), Some(103))
    );
}

/// Stale usage data is checked once per pass, at the plan's first due date: a host that
/// uploaded after the first missed due date but before the second gets both invoices in one
/// pass (Zulip's job), not the first one and a stale-data wait.
fn usage_checked_once_per_pass(db: &TestDb) {
    let (cust, plan) = self_hosted_plan(db, "self_hosted_basic", "monthly", "10", &[]);
    let c = cust.to_string();
    // The upload comes after the first due date (NM) and before the second (FTE).
    db.ok(
        Some("2012-02-10T00:00:00Z"),
        &["customer", "report-usage", &c],
    );
    let report = db.pass("2012-03-03T00:00:00Z");
    let inv = invoices_of(&report);
    let times: Vec<_> = inv
        .iter()
        .map(|i| i["event_time"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(times, vec![NM.to_string(), FTE.to_string()], "{report}");
    for i in &inv {
        assert_eq!(lines(i)[0].2, 350, "{i}");
    }
    let events = db.ok(None, &["plan", "events", &plan.to_string()]);
    assert!(
        !events.to_string().contains("notice_stale_usage_data"),
        "{events}"
    );
    assert_eq!(db.plan(plan)["next_invoice_date"], "2012-04-02T03:04:05Z");
}

/// `plan set-billing-mode` and `plan set-license-management` act from the next invoice on: the
/// invoice after the change is emailed (due in 15 days, also in Stripe), and a plan switched to
/// manual licenses is held to its bought count at the renewal.
fn billing_mode_and_license_management_changes(db: &TestDb) {
    let cust = customer(db);
    let plan = standard_plan(db, cust, "monthly", "10", &["--automanage-licenses"]);
    let p = plan.to_string();
    // Paying by invoice means buying licenses (Zulip): manual license management first.
    let e = db.refused(
        Some("2012-01-09T00:00:00Z"),
        &["plan", "set-billing-mode", &p, "send_invoice"],
    );
    assert!(e.contains("not supported when paying by invoice"), "{e}");
    db.ok(
        Some("2012-01-09T00:00:00Z"),
        &["plan", "set-license-management", &p, "manual"],
    );
    let shown = db.ok(
        Some("2012-01-10T00:00:00Z"),
        &["plan", "set-billing-mode", &p, "send_invoice"],
    );
    assert_eq!(shown["charge_automatically"], false, "{shown}");
    let inv = invoices_of(&db.pass(NM));
    assert_eq!(
        (
            inv[0]["collection_method"].as_str(),
            inv[0]["days_until_due"].as_i64()
        ),
        (Some("send_invoice"), Some(15)),
        "{inv:?}"
    );
    let remote = db.stripe.invoices();
    assert_eq!(remote[0]["collection_method"], "send_invoice");
    assert_eq!(remote[0]["days_until_due"], 15);
    let events = db.ok(None, &["plan", "events", &p]);
    assert!(
        events.to_string().contains("billing mode send_invoice"),
        "{events}"
    );

    let e = db.refused(
        Some("2012-02-10T00:00:00Z"),
        &["plan", "set-license-management", &p, "automatic"],
    );
    assert!(e.contains("not supported when paying by invoice"), "{e}");
    // Manual: 12 seats in use against 10 licenses blocks the next renewal.
    db.ok(
        Some("2012-02-11T00:00:00Z"),
        &[
            "customer",
            "report-usage",
            &cust.to_string(),
            "--seats",
            "12",
        ],
    );
    let report = db.code(3, Some(FTE), &["run-once"]);
    assert!(
        report["needs_attention"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("12 seats")),
        "{report}"
    );
}

/// `customer set-discount` mid-period: the plan is repriced at once, the later addition and the
/// renewal use the new price, and the flat new-customer months end.
fn discount_given_mid_period(db: &TestDb) {
    let cust = customer(db);
    let plan = standard_plan(db, cust, "monthly", "10", &["--automanage-licenses"]);
    let c = cust.to_string();
    let shown = db.ok(
        Some("2012-01-10T00:00:00Z"),
        &[
            "customer",
            "set-discount",
            &c,
            "--monthly-discounted-price-cents",
            "600",
            "--annual-discounted-price-cents",
            "6000",
            "--required-plan-tier",
            "cloud_standard",
        ],
    );
    assert_eq!(shown["flat_discounted_months"], 0, "{shown}");
    let p = db.plan(plan);
    assert_eq!(
        (
            p["price_per_license_cents"].as_i64(),
            p["discount"].as_str()
        ),
        (Some(600), Some("25")),
        "{p}"
    );
    seats(db, plan, "2012-01-15T00:00:00Z", 12);
    let inv = invoices_of(&db.pass(NM));
    let l = lines(&inv[0]);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(
        l.contains(&line(STD_RENEWAL, 12, 600, 7200, NM, FTE)),
        "{l:?}"
    );
    let add = l
        .iter()
        .find(|x| x.0 == STD_ADD)
        .cloned()
        .unwrap_or_default();
    assert_eq!(add.1, 2, "{l:?}");
    assert!(
        add.2 > 0 && add.2 < 600,
        "prorated from the new price: {l:?}"
    );
}

/// `plan upgrade-tier` (Zulip's SWITCH_PLAN_TIER_NOW test): a monthly Standard plan of 9
/// licenses at 800 upgraded to Plus at its anchor. The old plan ends; the new one starts now
/// with Plus's minimum of 10 licenses; its first invoice carries the renewal (10 × 1200) and
/// the credit for the unused period (−7200): 4800 due.
fn tier_upgraded_now_with_a_credit(db: &TestDb) {
    let cust = customer(db);
    let old = standard_plan(db, cust, "monthly", "9", &[]);
    let new = db.ok(
        Some(T0),
        &[
            "plan",
            "upgrade-tier",
            &old.to_string(),
            "--tier",
            "cloud_plus",
        ],
    );
    let new_id = new["id"].as_i64().unwrap_or(0);
    assert_ne!(new_id, old);
    assert_eq!(
        (
            new["tier"].as_str(),
            new["licenses"].as_i64(),
            new["next_invoice_date"].as_str()
        ),
        (Some("cloud_plus"), Some(10), Some(T0)),
        "{new}"
    );
    assert_eq!(db.plan(old)["status"], "ended");
    let report = db.pass(T0);
    let inv = invoices_of(&report);
    assert_eq!(inv.len(), 1, "{report}");
    assert_eq!(inv[0]["plan_id"].as_i64(), Some(new_id));
    assert_eq!(
        lines(&inv[0]),
        vec![
            line("Zulip Cloud Plus - renewal", 10, 1200, 12000, T0, NM),
            line(
                "Credit from early termination of active plan",
                1,
                -7200,
                -7200,
                T0,
                NM
            ),
        ]
    );
    assert_eq!(inv[0]["total_cents"], 4800);
    // The credit is given once: the next renewal is the plain price.
    let inv = invoices_of(&db.pass(NM));
    assert_eq!(
        lines(&inv[0]),
        vec![line("Zulip Cloud Plus - renewal", 10, 1200, 12000, NM, FTE)]
    );
}

/// Issue 24 (Zulip's `do_change_plan_to_new_tier`, `switch_plan_tier`,
/// `get_amount_to_credit_for_plan_tier_change`), with our own numbers. An automatic monthly
/// Standard plan of 20 licenses at T0 grows to 24 on Jan 12 and shrinks to 12 seats on Jan 20,
/// then moves to Plus on Jan 22 03:04:05:
/// - the old plan ends at the switch and its final invoice bills the 4 added licenses up to
///   the switch: 800 × 875045 s / 2678400 s = 261.36 → 261, × 4 = 1044;
/// - the new plan starts with the seats in use now (12; Plus's minimum is 10), not the old
///   peak of 24: 12 × 1200 = 14400;
/// - the credit is the newest renewal's 20 licenses × 800 × 950400 / 2678400 unused =
///   5677.42, rounded **up** to 5678 (half up would give 5677): 8722 due.
fn tier_upgrade_bills_what_the_old_plan_owes(db: &TestDb) {
    let cust = customer(db);
    let old = standard_plan(db, cust, "monthly", "20", &["--automanage-licenses"]);
    seats(db, old, "2012-01-12T00:00:00Z", 24);
    seats(db, old, "2012-01-20T00:00:00Z", 12);
    let switch = "2012-01-22T03:04:05Z";
    let new = db.ok(
        Some(switch),
        &[
            "plan",
            "upgrade-tier",
            &old.to_string(),
            "--tier",
            "cloud_plus",
        ],
    );
    let new_id = new["id"].as_i64().unwrap_or(0);
    assert_eq!(new["licenses"], 12, "{new}");
    let ended = db.plan(old);
    assert_eq!(
        (ended["status"].as_str(), ended["end_date"].as_str()),
        (Some("ended"), Some(switch))
    );
    let report = db.pass(switch);
    let inv = invoices_of(&report);
    assert_eq!(inv.len(), 2, "{report}");
    assert_eq!(
        inv[0]["plan_id"].as_i64(),
        Some(old),
        "the old plan's bill first"
    );
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_ADD, 4, 261, 1044, "2012-01-12T00:00:00Z", switch)]
    );
    assert_eq!(inv[1]["plan_id"].as_i64(), Some(new_id));
    assert_eq!(
        lines(&inv[1]),
        vec![
            line(
                "Zulip Cloud Plus - renewal",
                12,
                1200,
                14400,
                switch,
                "2012-02-22T03:04:05Z"
            ),
            line(
                "Credit from early termination of active plan",
                1,
                -5678,
                -5678,
                switch,
                "2012-02-22T03:04:05Z"
            ),
        ]
    );
    assert_eq!(inv[1]["total_cents"], 8722);
    assert!(db.plan(old)["next_invoice_date"].is_null());
}

/// Issue 24: an upgrade after a cycle boundary whose renewal the pass has not billed yet. A
/// manual monthly plan of 10 licenses moves to Plus on Feb 5: the old plan's final invoice
/// bills the Feb 2 renewal (10 × 800), and the credit is that renewal's unused part, 26 of
/// February's 29 days: 8000 × 26/29 = 7172.41 → 7173; the new plan 10 × 1200 − 7173 = 4827.
fn tier_upgrade_after_an_unbilled_boundary(db: &TestDb) {
    let cust = customer(db);
    let old = standard_plan(db, cust, "monthly", "10", &[]);
    let switch = "2012-02-05T03:04:05Z";
    let new = db.ok(
        Some(switch),
        &[
            "plan",
            "upgrade-tier",
            &old.to_string(),
            "--tier",
            "cloud_plus",
        ],
    );
    let new_id = new["id"].as_i64().unwrap_or(0);
    let inv = invoices_of(&db.pass(switch));
    assert_eq!(inv.len(), 2, "{inv:?}");
    assert_eq!(
        lines(&inv[0]),
        vec![line(STD_RENEWAL, 10, 800, 8000, NM, switch)]
    );
    assert_eq!(inv[1]["plan_id"].as_i64(), Some(new_id));
    assert_eq!(
        lines(&inv[1]),
        vec![
            line(
                "Zulip Cloud Plus - renewal",
                10,
                1200,
                12000,
                switch,
                "2012-03-05T03:04:05Z"
            ),
            line(
                "Credit from early termination of active plan",
                1,
                -7173,
                -7173,
                switch,
                "2012-03-05T03:04:05Z"
            ),
        ]
    );
    assert_eq!(inv[1]["total_cents"], 4827);
}

/// A per-license plan scheduled for when complimentary access ends (Zulip's
/// `upgrade_when_complimentary_access_plan_ends`): 18 seats, Business annual at 8000. The
/// successor renews with Business's minimum of 25, and the self-hosted customer's flat
/// discount applies: 200000 − 24000 = 176000. Cancelling makes the complimentary plan active
/// again.
fn per_license_successor_after_complimentary_access(db: &TestDb) {
    let (cust, plan) = legacy_plan(db, "18", &["--automanage-licenses"]);
    let c = cust.to_string();
    let p = plan.to_string();
    let end = "2012-06-02T03:04:05Z";
    db.ok(Some(NM), &["plan", "set-end-date", &p, "--date", end]);
    db.ok(Some(NM), &["customer", "report-usage", &c, "--seats", "18"]);
    let schedule = |now| {
        db.id(
            Some(now),
            &[
                "plan",
                "schedule-successor",
                &p,
                "--tier",
                "self_hosted_business",
                "--schedule",
                "annual",
                "--automanage-licenses",
            ],
        )
    };
    let first = schedule(NM);
    let s = db.plan(first);
    assert_eq!(
        (
            s["status"].as_str(),
            s["price_per_license_cents"].as_i64(),
            s["fixed_price_cents"].as_i64(),
            s["billing_cycle_anchor"].as_str()
        ),
        (Some("never_started"), Some(8000), None, Some(end)),
        "{s}"
    );
    assert_eq!(db.plan(plan)["licenses_at_next_renewal"], 25);
    // Cancelled, the complimentary plan is active again; scheduled again, it switches at its end.
    db.ok(Some(NM), &["plan", "schedule", &p, "--change", "cancel"]);
    assert_eq!(db.plan(plan)["status"], "active");
    assert_eq!(db.plan(first)["status"], "ended");
    assert_eq!(
        db.plan(plan)["licenses_at_next_renewal"],
        18,
        "cancelled, the plan renews as if nothing had been scheduled"
    );
    let next = schedule(NM);
    db.ok(
        Some("2012-06-02T03:30:00Z"),
        &["customer", "report-usage", &c],
    );
    let inv = invoices_of(&db.pass("2012-06-02T04:00:00Z"));
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert_eq!(inv[0]["plan_id"].as_i64(), Some(next));
    let year_end = "2013-06-02T03:04:05Z";
    assert_eq!(
        lines(&inv[0]),
        vec![
            line("Zulip Business - renewal", 25, 8000, 200000, end, year_end),
            line(
                "$20.00/month new customer discount",
                1,
                -24000,
                -24000,
                end,
                year_end
            ),
        ]
    );
    assert_eq!(inv[0]["total_cents"], 176000);
    assert_eq!(db.plan(plan)["status"], "ended");
    assert_eq!(db.plan(next)["status"], "active");
}

on_both_backends!(
    per_license_successor_after_complimentary_access,
    tier_upgraded_now_with_a_credit,
    tier_upgrade_bills_what_the_old_plan_owes,
    tier_upgrade_after_an_unbilled_boundary,
    discount_given_mid_period,
    billing_mode_and_license_management_changes,
    usage_checked_once_per_pass,
    complimentary_plan_into_paid_successor,
    s22_additions_renewal_and_later_addition,
    s22_with_monthly_passes,
    s08_free_trial,
    s14_downgrade_at_end_of_cycle,
    s14_downgrade_during_invoicing,
    s25_no_invoice_needed,
    s26_one_prorated_license,
    s02_plan_parameters,
    monthly_plan_for_a_year,
    switch_monthly_to_annual,
    fixed_price_plan,
    successor_plan,
    catch_up_after_three_missed_months,
    needs_attention_isolated,
    dry_run_writes_nothing,
    manual_licenses,
    first_invoice_by_worker_with_flat_discount,
);
