//! Operator safety (issue 9, first part): Zulip's guards on requested license counts, a live
//! key refusing to bill the future, the catch-up bound, dry runs that claim no send, and a
//! `status` that shows work waiting for a retry.

use crate::common;
use crate::common::TestDb;
use plan_invoicer::devtools::emulator::Faults;
use serde_json::Value;

const T0: &str = "2012-01-02T03:04:05Z";

fn run_with(db: &TestDb, key: &str, args: &[&str]) -> (i32, String, String) {
    let out = db
        .command()
        .env("STRIPE_API_KEY", key)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manual_plan(db: &TestDb) {
    db.id(Some(T0), &["customer", "create", "--name", "Manual"]);
    monthly_plan(db, T0, "1", &[]);
}

/// A Cloud Standard monthly plan of 10 licenses for `customer`, created at `at`.
fn monthly_plan(db: &TestDb, at: &str, customer: &str, extra: &[&str]) -> i64 {
    let mut args = vec![
        "plan",
        "create",
        "--customer",
        customer,
        "--tier",
        "cloud_standard",
        "--schedule",
        "monthly",
        "--licenses",
        "10",
    ];
    args.extend_from_slice(extra);
    db.id(Some(at), &args)
}

fn ledger_len(db: &TestDb) -> usize {
    db.ok(None, &["plan", "ledger", "1"])
        .as_array()
        .map_or(0, Vec::len)
}

/// `renewal-licenses` below the seats in use, or equal to the count already scheduled, is
/// refused like `buy-licenses` below the seats in use: one line, exit 2, nothing written.
fn license_requests_respect_seats_and_schedule(db: &TestDb) {
    manual_plan(db);
    let at = Some("2012-01-10T00:00:00Z");
    db.ok(at, &["customer", "report-usage", "1", "--seats", "12"]);
    let before = ledger_len(db);
    let e = db.refused(at, &["plan", "renewal-licenses", "1", "--licenses", "11"]);
    assert!(e.contains("12 seats in use"), "{e}");
    let e = db.refused(at, &["plan", "buy-licenses", "1", "--licenses", "11"]);
    assert!(e.contains("12 seats in use"), "{e}");
    assert_eq!(ledger_len(db), before, "nothing written");
    db.ok(at, &["plan", "renewal-licenses", "1", "--licenses", "12"]);
    let e = db.refused(at, &["plan", "renewal-licenses", "1", "--licenses", "12"]);
    assert!(
        e.contains("already scheduled to renew with 12 licenses"),
        "{e}"
    );
    assert_eq!(ledger_len(db), before + 1);
}

/// A live key refuses a pass in the future (a mistyped `--now`) before anything is written;
/// a test key travels freely.
fn live_key_refuses_to_bill_the_future(db: &TestDb) {
    manual_plan(db);
    let args = ["--json", "--now", "2099-01-01T00:00:00Z", "run-once"];
    let (code, out, err) = run_with(db, "sk_live_plan_invoicer", &args);
    assert_eq!(code, 2, "{out} {err}");
    assert!(out.trim().is_empty());
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("live Stripe key"), "{err}");
    assert_eq!(db.stripe.requests().len(), 0, "nothing sent");
    assert!(db.invoices().is_empty(), "nothing written");
    assert!(
        db.ok(None, &["status"])["last_pass"].is_null(),
        "no pass ran"
    );
    let backfill = [
        "--json",
        "backfill",
        "--from",
        "2012-02-01T00:00:00Z",
        "--to",
        "2099-01-01T00:00:00Z",
        "--every",
        "1w",
    ];
    assert_eq!(run_with(db, "sk_live_plan_invoicer", &backfill).0, 2);
    // A pass as of now with a live key is fine (nothing is due in 2012's book at 2012-01-05).
    let (code, _, err) = run_with(
        db,
        "sk_live_plan_invoicer",
        &["--json", "--now", "2012-01-05T00:00:00Z", "run-once"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_with(db, "sk_test_plan_invoicer", &args);
    assert_ne!(code, 2, "test keys keep time travel: {err}");
}

/// A dry run far in the future stops each plan after 36 cycles with a clear reason, says what
/// would be sent, and claims no send.
fn catch_up_is_bounded_and_dry_runs_are_honest(db: &TestDb) {
    manual_plan(db);
    let report = db.code(3, Some("2099-01-01T00:00:00Z"), &["run-once", "--dry-run"]);
    assert_eq!(report["invoices_sent"], 36);
    let reason = report["needs_attention"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("more than 36 billing cycles behind"),
        "{reason}"
    );
    let invoices = report["invoices"].as_array().cloned().unwrap_or_default();
    assert_eq!(invoices.len(), 36);
    assert!(invoices
        .iter()
        .all(|i| i["status"] == "would_send" && i["sent_at"].is_null()));
    let (code, text, err) = run_with(
        db,
        "sk_test_x",
        &["--now", "2012-03-05T00:00:00Z", "run-once", "--dry-run"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[would_send]"), "{text}");
    assert!(
        !text.contains("[sent]") && !err.contains("invoice sent"),
        "{text}{err}"
    );
    assert!(db.invoices().is_empty(), "a dry run writes nothing");
}

/// `status` shows plans waiting for a retry, unsent invoices and the oldest overdue plan.
fn status_shows_work_waiting_for_a_retry(db: &TestDb) {
    manual_plan(db);
    let before = db.ok(Some("2012-02-03T00:00:00Z"), &["status"]);
    assert_eq!(before["oldest_overdue"]["plan_id"], 1, "{before}");
    // The first item fails (request 3): the invoice is written but not sent.
    db.stripe.set_faults(Faults {
        fail_requests: vec![3, 4, 5, 6, 7],
        ..Faults::default()
    });
    db.code(3, Some("2012-02-03T00:00:00Z"), &["run-once"]);
    let status: Value = db.ok(Some("2012-02-03T00:01:00Z"), &["status"]);
    let retrying = status["retrying"].as_array().cloned().unwrap_or_default();
    assert_eq!(retrying.len(), 1, "{status}");
    assert!(retrying[0]["next_retry_at"].is_string());
    assert!(retrying[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("Injected fault")));
    assert_eq!(status["unsent_invoices"]["count"], 1);
    assert_eq!(status["unsent_invoices"]["oldest"][0]["plan_id"], 1);
    assert_eq!(status["oldest_overdue"]["plan_id"], Value::Null);
    let (_, text, _) = run_with(
        db,
        "sk_test_x",
        &["--now", "2012-02-03T00:01:00Z", "status"],
    );
    assert!(text.contains("plans waiting to retry: 1"), "{text}");
    assert!(text.contains("unsent invoices: 1"), "{text}");
}

/// A seat report unblocks a plan waiting for a retry (its fresh seats are what a retry may
/// have waited for); a plan waiting for nothing is left as it was.
fn a_seat_report_clears_a_pending_retry(db: &TestDb) {
    // Plan 1 is due on 2012-02-02; plan 2, started later, is not due at the pass.
    for (customer, start) in [("1", T0), ("2", "2012-01-20T00:00:00Z")] {
        db.id(Some(start), &["customer", "create", "--name", "Seats"]);
        monthly_plan(db, start, customer, &["--automanage-licenses"]);
    }
    let retrying = |at: &str| -> Vec<i64> {
        let status: Value = db.ok(Some(at), &["status"]);
        let plans = status["retrying"].as_array().cloned().unwrap_or_default();
        plans.iter().filter_map(|p| p["plan_id"].as_i64()).collect()
    };
    // Plan 1's invoice is written but its sending fails: the plan waits for a retry.
    db.stripe.set_faults(Faults {
        fail_requests: vec![3, 4, 5, 6, 7],
        ..Faults::default()
    });
    db.code(3, Some("2012-02-03T00:00:00Z"), &["run-once"]);
    db.stripe.set_faults(Faults::default());
    assert_eq!(retrying("2012-02-03T00:01:00Z"), vec![1]);
    // A plan waiting for nothing takes the report as ever; the waiting one is unblocked.
    for plan in ["2", "1"] {
        db.ok(
            Some("2012-02-03T00:02:00Z"),
            &["plan", "seats", plan, "--count", "12"],
        );
        let ledger = db.ok(None, &["plan", "ledger", plan]);
        let newest = ledger.as_array().and_then(|l| l.last()).cloned();
        assert_eq!(
            newest.map(|e| e["licenses"].clone()),
            Some(12.into()),
            "{plan}"
        );
    }
    assert!(retrying("2012-02-03T00:03:00Z").is_empty());
}

/// §3.4 caps the next boundary at the end date, for a successor as for everything else: an
/// end date at midnight before an anchor of 03:04:05 is the plan's last boundary.
fn successor_at_an_end_date_before_the_boundary(db: &TestDb) {
    db.id(Some(T0), &["customer", "create", "--name", "Annual"]);
    db.id(
        Some(T0),
        &[
            "plan",
            "create",
            "--customer",
            "1",
            "--tier",
            "cloud_standard",
            "--schedule",
            "annual",
            "--licenses",
            "10",
        ],
    );
    let at = Some("2012-06-01T00:00:00Z");
    db.ok(
        at,
        &[
            "plan",
            "set-end-date",
            "1",
            "--date",
            "2013-01-02T00:00:00Z",
        ],
    );
    let id = db.id(
        at,
        &[
            "plan",
            "schedule-successor",
            "1",
            "--fixed-price-cents",
            "100000",
        ],
    );
    let successor = db.plan(id);
    assert_eq!(successor["status"], "never_started");
    assert_eq!(successor["billing_cycle_anchor"], "2013-01-02T00:00:00Z");
}

/// A complimentary plan created with an end date is next looked at when it ends, exactly as
/// when the end date is set later.
fn complimentary_end_date_at_creation(db: &TestDb) {
    db.id(
        Some(T0),
        &[
            "customer",
            "create",
            "--name",
            "Legacy",
            "--kind",
            "self_hosted",
        ],
    );
    let created = db.id(
        Some(T0),
        &[
            "plan",
            "create",
            "--customer",
            "1",
            "--tier",
            "self_hosted_legacy",
            "--schedule",
            "monthly",
            "--licenses",
            "10",
            "--end-date",
            "2012-06-01T00:00:00Z",
        ],
    );
    assert_eq!(
        db.plan(created)["next_invoice_date"],
        "2012-06-01T00:00:00Z"
    );
    db.id(
        Some(T0),
        &[
            "customer",
            "create",
            "--name",
            "Legacy later",
            "--kind",
            "self_hosted",
        ],
    );
    let later = db.id(
        Some(T0),
        &[
            "plan",
            "create",
            "--customer",
            "2",
            "--tier",
            "self_hosted_legacy",
            "--schedule",
            "monthly",
            "--licenses",
            "10",
        ],
    );
    db.ok(
        Some(T0),
        &[
            "plan",
            "set-end-date",
            &later.to_string(),
            "--date",
            "2012-06-01T00:00:00Z",
        ],
    );
    assert_eq!(
        db.plan(later)["next_invoice_date"],
        db.plan(created)["next_invoice_date"]
    );
}

/// §4.9: a card free trial changes its schedule at once; the renewal at the end of the trial is
/// billed on the new schedule.
fn free_trial_switches_schedule_now(db: &TestDb) {
    db.id(Some(T0), &["customer", "create", "--name", "Trial"]);
    db.id(
        Some(T0),
        &[
            "plan",
            "create",
            "--customer",
            "1",
            "--tier",
            "cloud_standard",
            "--schedule",
            "monthly",
            "--licenses",
            "7",
            "--automanage-licenses",
            "--free-trial-days",
            "30",
        ],
    );
    let switched = db.ok(
        Some("2012-01-10T00:00:00Z"),
        &["plan", "schedule", "1", "--change", "switch_to_annual"],
    );
    assert_eq!(switched["id"], 2, "{switched}");
    assert_eq!(switched["billing_schedule"], "annual");
    assert_eq!(switched["status"], "free_trial");
    assert_eq!(switched["next_invoice_date"], "2012-02-01T03:04:05Z");
    assert_eq!(db.plan(1)["status"], "ended");
    // A switch to the schedule the trial already has is refused.
    let e = db.refused(
        Some("2012-01-11T00:00:00Z"),
        &["plan", "schedule", "2", "--change", "switch_to_annual"],
    );
    assert!(e.contains("free trial"), "{e}");
    let report = db.pass("2012-02-02T00:00:00Z");
    let invoices = report["invoices"].as_array().cloned().unwrap_or_default();
    assert_eq!(invoices.len(), 1, "{report}");
    assert_eq!(invoices[0]["plan_id"], 2);
    assert_eq!(
        common::lines(&invoices[0]),
        vec![common::line(
            "Zulip Cloud Standard - renewal",
            7,
            8000,
            56000,
            "2012-02-01T03:04:05Z",
            "2013-02-01T03:04:05Z"
        )]
    );
}

/// Everything the command line writes, to show that a refusal wrote nothing.
fn fingerprint(db: &TestDb) -> Vec<Value> {
    let plans = db.ok(None, &["plan", "list"]);
    let mut out = vec![plans.clone()];
    for p in plans.as_array().cloned().unwrap_or_default() {
        let id = p["id"].to_string();
        out.push(db.ok(None, &["plan", "ledger", &id]));
        out.push(db.ok(None, &["plan", "events", &id]));
    }
    out
}

/// Every guard of the license counts and of the status changes (Zulip's refusals, §2.4, §4.7,
/// §4.9): one line, exit 2, nothing written.
fn every_guard_refuses_cleanly(db: &TestDb) {
    for name in ["Manual", "Automatic", "Trial", "Fixed", "Plus"] {
        db.id(Some(T0), &["customer", "create", "--name", name]);
    }
    let plan = |args: &[&str]| {
        let mut all = vec![
            "plan",
            "create",
            "--tier",
            "cloud_standard",
            "--licenses",
            "10",
        ];
        all.extend_from_slice(args);
        db.id(Some(T0), &all);
    };
    plan(&["--customer", "1", "--schedule", "monthly"]);
    plan(&[
        "--customer",
        "2",
        "--schedule",
        "annual",
        "--automanage-licenses",
    ]);
    plan(&[
        "--customer",
        "3",
        "--schedule",
        "monthly",
        "--free-trial-days",
        "30",
    ]);
    db.id(
        Some(T0),
        &[
            "offer",
            "create",
            "--customer",
            "4",
            "--tier",
            "cloud_standard",
            "--fixed-price-cents",
            "120000",
        ],
    );
    db.ok(
        Some(T0),
        &[
            "offer",
            "accept",
            "1",
            "--schedule",
            "monthly",
            "--licenses",
            "10",
        ],
    );
    db.ok(
        Some(T0),
        &["customer", "report-usage", "1", "--seats", "12"],
    );
    let cases: &[(&str, &str)] = &[
        (
            "plan buy-licenses 1 --licenses 10",
            "licenses can only go up within a period",
        ),
        ("plan buy-licenses 1 --licenses 11", "12 seats in use"),
        ("plan renewal-licenses 1 --licenses 11", "12 seats in use"),
        (
            "plan renewal-licenses 1 --licenses 0",
            "at least 1 licenses are required",
        ),
        (
            "plan buy-licenses 2 --licenses 20",
            "automatic license management",
        ),
        (
            "plan renewal-licenses 2 --licenses 20",
            "automatic license management",
        ),
        ("plan buy-licenses 3 --licenses 20", "during a free trial"),
        ("plan seats 1 --count 5", "manual license management"),
        (
            "plan schedule 3 --change downgrade_at_end_of_cycle",
            "not in a free trial",
        ),
        (
            "plan schedule 2 --change switch_to_annual",
            "only an active monthly plan",
        ),
        (
            "plan schedule 1 --change switch_to_monthly",
            "only an active annual plan",
        ),
        (
            "plan schedule 4 --change switch_to_annual",
            "without a fixed price",
        ),
        (
            "plan schedule 1 --change downgrade_at_end_of_free_trial",
            "card-billed free trial",
        ),
        (
            "plan schedule 1 --change cancel",
            "no scheduled change to cancel",
        ),
        (
            "plan set-end-date 3 --date 2012-06-01T00:00:00Z",
            "only an active plan can get an end date",
        ),
        (
            "plan set-end-date 1 --date 2011-06-01T00:00:00Z",
            "after the plan's anchor",
        ),
        (
            "plan set-end-date 1 --date 2012-01-05T00:00:00Z",
            "must be in the future",
        ),
        (
            "plan schedule-successor 2 --fixed-price-cents 100000",
            "has no end date",
        ),
        (
            "plan create --customer 1 --tier cloud_standard --schedule monthly --licenses 10",
            "already has a live plan",
        ),
        (
            "plan create --customer 5 --tier cloud_plus --schedule monthly --licenses 5",
            "at least 10 licenses are required for Zulip Cloud Plus",
        ),
        ("offer accept 1 --schedule monthly", "already accepted"),
        (
            "plan set-billing-mode 1 charge_automatically",
            "already billed charge_automatically",
        ),
        (
            "plan set-billing-mode 1 by_post",
            "unknown collection method",
        ),
        ("plan set-billing-mode 3 send_invoice", "free trial"),
        ("plan set-license-management 1 manual", "already has manual"),
        ("plan set-license-management 4 manual", "has a fixed price"),
        (
            "plan set-license-management 2 sometimes",
            "unknown license management",
        ),
        (
            "customer set-discount 1 --monthly-discounted-price-cents 600 --annual-discounted-price-cents -1",
            "must not be negative",
        ),
        // Zulip's InvalidTierError: self-hosted Enterprise is refused by every command.
        (
            "plan create --customer 5 --tier self_hosted_enterprise --schedule monthly --licenses 10",
            "is not offered",
        ),
        (
            "offer create --customer 5 --tier self_hosted_enterprise --fixed-price-cents 100",
            "is not offered",
        ),
        ("plan upgrade-tier 1 --tier self_hosted_enterprise", "is not offered"),
        (
            "plan schedule-successor 2 --tier self_hosted_enterprise",
            "is not offered",
        ),
        (
            "customer set-required-plan-tier 1 --tier self_hosted_enterprise",
            "is not offered",
        ),
        (
            "customer create --name E --required-plan-tier 105",
            "is not offered",
        ),
        // Zulip's support actions.
        (
            "customer set-required-plan-tier 1 --tier self_hosted_basic",
            "not a tier a cloud customer can buy",
        ),
        ("customer set-minimum-licenses 5 --count 20", "has no discount"),
        ("customer set-minimum-licenses 5 --count 0", "must be a positive number"),
        ("customer set-exempt 5 maybe", "invalid value"),
        // Paying by invoice means buying licenses: no automatic license management.
        (
            "plan create --customer 5 --tier cloud_standard --schedule monthly --licenses 10 --automanage-licenses --invoice-billing",
            "not supported when paying by invoice",
        ),
        (
            "plan set-billing-mode 2 send_invoice",
            "not supported when paying by invoice",
        ),
        (
            "customer set-discount 4 --monthly-discounted-price-cents 600 --annual-discounted-price-cents 6000",
            "has a fixed price",
        ),
        ("plan upgrade-tier 3 --tier cloud_plus", "only an active plan"),
        ("plan upgrade-tier 4 --tier cloud_plus", "fixed-price plan"),
        ("plan upgrade-tier 1 --tier cloud_standard", "already on cloud_standard"),
        ("plan upgrade-tier 1 --tier self_hosted_business", "not an upgrade"),
        ("plan upgrade-tier 1 --tier gold", "Unknown tier"),
        (
            "plan schedule-successor 2 --fixed-price-cents 100000 --automanage-licenses",
            "drop --automanage-licenses",
        ),
        (
            "plan schedule-successor 2 --tier cloud_plus --schedule weekly",
            "Unknown billing_schedule",
        ),
    ];
    let before = fingerprint(db);
    let customers = db.ok(None, &["customer", "show", "5"]);
    for (command, expected) in cases {
        let args: Vec<&str> = command.split_whitespace().collect();
        let e = db.refused(Some("2012-01-10T00:00:00Z"), &args);
        assert!(e.contains(expected), "{command}: {e}");
        assert_eq!(fingerprint(db), before, "{command} wrote something");
        assert_eq!(
            db.ok(None, &["customer", "show", "5"]),
            customers,
            "{command}"
        );
    }
    // Zulip's do_update_plan: a plan being downgraded does not renew, so its renewal count
    // cannot change.
    db.ok(
        Some("2012-01-10T00:00:00Z"),
        &[
            "plan",
            "schedule",
            "1",
            "--change",
            "downgrade_at_end_of_cycle",
        ],
    );
    let before = fingerprint(db);
    let e = db.refused(
        Some("2012-01-10T00:00:00Z"),
        &["plan", "renewal-licenses", "1", "--licenses", "13"],
    );
    assert!(e.contains("being downgraded"), "{e}");
    assert_eq!(fingerprint(db), before);
    db.ok(
        Some("2012-01-10T00:00:00Z"),
        &["plan", "schedule", "1", "--change", "cancel"],
    );
    // A successor needs the end date at the plan's next boundary (here: after it).
    db.ok(
        Some("2012-01-10T00:00:00Z"),
        &[
            "plan",
            "set-end-date",
            "2",
            "--date",
            "2013-03-01T00:00:00Z",
        ],
    );
    let before = fingerprint(db);
    let e = db.refused(
        Some("2012-01-10T00:00:00Z"),
        &[
            "plan",
            "schedule-successor",
            "2",
            "--fixed-price-cents",
            "100000",
        ],
    );
    assert!(e.contains("must be the next cycle boundary"), "{e}");
    assert_eq!(fingerprint(db), before);
    // Time only moves forward for a plan: nothing is written before its newest ledger entry.
    db.ok(
        Some("2012-01-20T00:00:00Z"),
        &["plan", "seats", "2", "--count", "12"],
    );
    let before = fingerprint(db);
    for command in [
        "plan seats 2 --count 13",
        "plan schedule 2 --change downgrade_at_end_of_cycle",
        "plan downgrade-now 2",
    ] {
        let args: Vec<&str> = command.split_whitespace().collect();
        let e = db.refused(Some("2012-01-15T00:00:00Z"), &args);
        assert!(e.contains("time only moves forward"), "{command}: {e}");
        assert_eq!(fingerprint(db), before, "{command} wrote something");
    }
}

/// Time only moves forward past an invoice too (issue 23): an annual plan's monthly invoice
/// bills the additions up to its date without a ledger entry, and a seat change dated at or
/// before that invoice is refused (it would be billed one invoice late), nothing written.
fn no_write_at_or_before_the_newest_invoice(db: &TestDb) {
    let customer = db.id(None, &["customer", "create", "--name", "Annual Co"]);
    let c = customer.to_string();
    let plan = db.id(
        Some("2012-01-02T03:04:05Z"),
        &[
            "plan",
            "create",
            "--customer",
            &c,
            "--tier",
            "cloud_standard",
            "--schedule",
            "annual",
            "--licenses",
            "10",
            "--automanage-licenses",
        ],
    );
    let p = plan.to_string();
    db.ok(
        Some("2012-01-10T00:00:00Z"),
        &["plan", "seats", &p, "--count", "15"],
    );
    let report = db.pass("2012-02-02T03:04:05Z");
    assert_eq!(
        report["invoices_sent"], 1,
        "the monthly invoice of the addition: {report}"
    );
    let before = fingerprint(db);
    for at in ["2012-01-20T00:00:00Z", "2012-02-02T03:04:05Z"] {
        let e = db.refused(Some(at), &["plan", "seats", &p, "--count", "16"]);
        assert!(
            e.contains("is invoiced through 2012-02-02T03:04:05Z"),
            "{at}: {e}"
        );
        assert!(e.contains("time only moves forward"), "{at}: {e}");
        assert_eq!(fingerprint(db), before, "{at}: nothing written");
    }
    // A moment later the same change is taken, and billed in its own period.
    db.ok(
        Some("2012-02-02T03:04:06Z"),
        &["plan", "seats", &p, "--count", "16"],
    );
}

/// The database keeps instants in one fixed-width form: a year past 9999 cannot be stored, on
/// SQLite (text compared as text: '+10000-…' would sort before '2012-…' and look due) as on
/// PostgreSQL; a plan that would need one is refused at the door instead.
fn instants_past_year_9999_cannot_be_stored(db: &TestDb) {
    use diesel::RunQueryDsl;
    let customer = db.id(None, &["customer", "create", "--name", "Far"]);
    let plan = db.id(
        Some("2012-01-02T03:04:05Z"),
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
            "10",
        ],
    );
    let mut conn = common::connect(db);
    let far = match db.backend {
        common::Backend::Sqlite => "'+10000-01-31 23:59:59+00:00'",
        common::Backend::Postgres => "'10000-01-31T23:59:59Z'",
    };
    for column in ["next_invoice_date", "end_date", "billing_cycle_anchor"] {
        let sql = format!("UPDATE customer_plan SET {column} = {far} WHERE id = {plan}");
        let refused = match &mut conn {
            plan_invoicer::db::Conn::Sqlite(c) => diesel::sql_query(&sql).execute(c).is_err(),
            plan_invoicer::db::Conn::Pg(c) => diesel::sql_query(&sql).execute(c).is_err(),
        };
        assert!(refused, "{column}: a year past 9999 was stored");
    }
    assert_eq!(db.plan(plan)["next_invoice_date"], "2012-02-02T03:04:05Z");
    let due = db.ok(Some("2012-01-03T00:00:00Z"), &["plan", "list", "--due"]);
    assert_eq!(due, serde_json::json!([]), "nothing is due before its date");
}

/// A complimentary self-hosted plan (manual licenses) on `db`, ending at `end`: (customer, plan).
fn complimentary(db: &TestDb, licenses: &str, end: &str, extra: &[&str]) -> (String, String) {
    let c = db
        .id(
            None,
            &common::words("customer create --name Host --kind self_hosted"),
        )
        .to_string();
    let line = format!(
        "plan create --customer {c} --tier self_hosted_legacy --schedule monthly --licenses {licenses} --end-date {end}"
    );
    let mut args = common::words(&line);
    args.extend_from_slice(extra);
    let p = db.id(Some("2012-01-02T03:04:05Z"), &args);
    (c, p.to_string())
}

/// Issue 24: a cancelled per-license successor is undone completely — the plan renews with what
/// it would have without it: the count it had (manual licenses), or, after seats reported for
/// the successor's tier, the plan's own tier's count for those seats (automatic). And a plan
/// ended now (downgrade-now) takes its never-started successor with it.
fn cancelled_and_ended_successors_leave_nothing_behind(db: &TestDb) {
    let end = "2012-06-02T03:04:05Z";
    let (_, p) = complimentary(db, "3", end, &["--licenses-at-next-renewal", "4"]);
    let successor = |p: &str, now: &str| {
        db.id(
            Some(now),
            &[
                "plan",
                "schedule-successor",
                p,
                "--tier",
                "self_hosted_business",
            ],
        )
    };
    let id: i64 = p.parse().unwrap_or_default();
    successor(&p, "2012-02-10T00:00:00Z");
    assert_eq!(
        db.plan(id)["licenses_at_next_renewal"],
        25,
        "the business tier's minimum"
    );
    db.ok(
        Some("2012-02-11T00:00:00Z"),
        &["plan", "schedule", &p, "--change", "cancel"],
    );
    assert_eq!(
        db.plan(id)["licenses_at_next_renewal"],
        4,
        "the manual count is back"
    );

    // Automatic: 30 seats reported after the scheduling are counted for the plan's own tier.
    let (c2, p2) = complimentary(db, "10", end, &["--automanage-licenses"]);
    let id2: i64 = p2.parse().unwrap_or_default();
    successor(&p2, "2012-02-10T00:00:00Z");
    db.ok(
        Some("2012-02-12T00:00:00Z"),
        &["customer", "report-usage", &c2, "--seats", "30"],
    );
    db.ok(
        Some("2012-02-12T00:00:00Z"),
        &["plan", "seats", &p2, "--count", "3"],
    );
    assert_eq!(db.plan(id2)["licenses_at_next_renewal"], 25);
    db.ok(
        Some("2012-02-13T00:00:00Z"),
        &["plan", "schedule", &p2, "--change", "cancel"],
    );
    assert_eq!(
        db.plan(id2)["licenses_at_next_renewal"],
        3,
        "3 seats on the plan's own tier"
    );

    // Ended now, the plan ends its successor too: it never stays in the due list.
    let next = successor(&p2, "2012-02-14T00:00:00Z");
    db.ok(
        Some("2012-02-14T00:00:00Z"),
        &["plan", "downgrade-now", &p2],
    );
    assert_eq!(db.plan(next)["status"], "ended");
    assert!(db.plan(next)["next_invoice_date"].is_null());
    let due = db.ok(Some("2013-01-01T00:00:00Z"), &["plan", "list", "--due"]);
    assert!(
        due.as_array()
            .is_none_or(|d| d.iter().all(|p| p["id"] != next)),
        "{due}"
    );
    let events = db.ok(None, &["plan", "events", &next.to_string()]);
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "plan_ended")),
        "{events}"
    );
}

/// Issue 24: a complimentary plan whose end date falls between two monthly dates ends at its
/// end date, not at the next monthly date.
fn complimentary_plan_ends_at_its_end_date(db: &TestDb) {
    let (_, p) = complimentary(db, "10", "2012-02-15T00:00:00Z", &[]);
    let id: i64 = p.parse().unwrap_or_default();
    db.pass("2012-02-15T00:00:00Z");
    let plan = db.plan(id);
    assert_eq!(plan["status"], "ended", "{plan}");
    assert!(plan["next_invoice_date"].is_null(), "{plan}");
}

/// Issue 24: the support knobs as Zulip's support tools have them — a discount removed with both
/// prices 0 (the live plan back at list prices), the required tier removed only without a
/// discount, a minimum number of licenses for the next plan, the license-check exemption.
fn support_knobs_work_as_zulips(db: &TestDb) {
    let c = db
        .id(None, &["customer", "create", "--name", "Knobs"])
        .to_string();
    let discount = |m: &str, a: &str| {
        db.ok(
            Some(T0),
            &[
                "customer",
                "set-discount",
                &c,
                "--monthly-discounted-price-cents",
                m,
                "--annual-discounted-price-cents",
                a,
                "--required-plan-tier",
                "cloud_standard",
            ],
        )
    };
    discount("600", "6000");
    // A minimum for the next plan: 12 licenses at least.
    let shown = db.ok(
        None,
        &["customer", "set-minimum-licenses", &c, "--count", "12"],
    );
    assert_eq!(shown["minimum_licenses"], 12, "{shown}");
    let create = format!("plan create --customer {c} --tier cloud_standard --schedule monthly");
    let short = db.refused(Some(T0), &common::words(&format!("{create} --licenses 10")));
    assert!(short.contains("at least 12 licenses"), "{short}");
    let plan = db.id(Some(T0), &common::words(&format!("{create} --licenses 12")));
    assert_eq!(db.plan(plan)["price_per_license_cents"], 600);
    // With a live plan, the minimum is Zulip's to refuse.
    let e = db.refused(None, &["customer", "set-minimum-licenses", &c, "--none"]);
    assert!(e.contains("already has a live plan"), "{e}");
    // Removing the required tier needs the discount at 0 first.
    let e = db.refused(None, &["customer", "set-required-plan-tier", &c, "--none"]);
    assert!(e.contains("has a discount"), "{e}");
    // Both prices 0: the discount is gone, the live plan repriced at list price.
    discount("0", "0");
    let p = db.plan(plan);
    assert_eq!(p["price_per_license_cents"], 800, "{p}");
    assert!(p["discount"].is_null(), "{p}");
    let shown = db.ok(None, &["customer", "set-required-plan-tier", &c, "--none"]);
    assert!(shown["required_plan_tier"].is_null(), "{shown}");
    // The exemption: licenses below the seats in use are then allowed.
    db.ok(Some(T0), &["customer", "report-usage", &c, "--seats", "15"]);
    let e = db.refused(
        Some("2012-01-05T00:00:00Z"),
        &[
            "plan",
            "renewal-licenses",
            &plan.to_string(),
            "--licenses",
            "13",
        ],
    );
    assert!(e.contains("15 seats in use"), "{e}");
    let shown = db.ok(None, &["customer", "set-exempt", &c, "true"]);
    assert_eq!(shown["exempt_from_license_number_check"], true, "{shown}");
    db.ok(
        Some("2012-01-05T00:00:00Z"),
        &[
            "plan",
            "renewal-licenses",
            &plan.to_string(),
            "--licenses",
            "13",
        ],
    );
    db.ok(None, &["customer", "set-exempt", &c, "false"]);
}

on_both_backends!(
    support_knobs_work_as_zulips,
    cancelled_and_ended_successors_leave_nothing_behind,
    complimentary_plan_ends_at_its_end_date,
    no_write_at_or_before_the_newest_invoice,
    instants_past_year_9999_cannot_be_stored,
    every_guard_refuses_cleanly,
    free_trial_switches_schedule_now,
    successor_at_an_end_date_before_the_boundary,
    complimentary_end_date_at_creation,
    license_requests_respect_seats_and_schedule,
    live_key_refuses_to_bill_the_future,
    catch_up_is_bounded_and_dry_runs_are_honest,
    status_shows_work_waiting_for_a_retry,
    a_seat_report_clears_a_pending_retry
);
