//! `audit` (issue 10): Stripe compared with the local invoices, read-only; and `plan preview`
//! (its equality with what the next pass sends is checked by every `TestDb::pass`).

use crate::common;
use crate::common::TestDb;
use serde_json::Value;

const T0: &str = "2012-01-02T03:04:05Z";

fn billed(db: &TestDb) {
    common::monthly_plans(db, 3, T0);
    db.ok(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "seats", "1", "--count", "7"],
    );
    db.pass("2012-03-05T00:00:00Z");
}

fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_string(),
                f["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Clean passes: Stripe holds exactly the local invoices; audit writes and sends nothing.
fn clean_passes_audit_clean(db: &TestDb) {
    billed(db);
    let requests = db.stripe.requests().len();
    let report = db.ok(None, &["audit"]);
    assert_eq!(findings(&report), vec![], "{report}");
    assert_eq!(report["customers_checked"], 3);
    assert_eq!(report["local_invoices_checked"], 6);
    let audit_requests = &db.stripe.requests()[requests..];
    assert!(!audit_requests.is_empty());
    assert!(
        audit_requests.iter().all(|r| r.method == "GET"),
        "read-only"
    );
    // One customer, and bad input.
    assert_eq!(
        db.ok(None, &["audit", "--customer", "2"])["customers_checked"],
        1
    );
    assert!(db
        .refused(None, &["audit", "--customer", "999"])
        .contains("999"));
}

/// A Stripe invoice made beside the worker that claims an already billed local invoice.
fn double_send_is_found(db: &TestDb) {
    billed(db);
    let local = &db.invoices()[0];
    let customer = db.stripe.invoices()[0]["customer"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let local_id = local["id"].as_i64().unwrap_or(0);
    let beside = db.stripe.create_invoice_beside(&customer, local_id, 100);
    let report = db.code(3, None, &["audit"]);
    let found = findings(&report);
    assert!(
        found.iter().any(|(k, d)| k == "double_send"
            && d.contains(&beside)
            && d.contains(&format!("local invoice {local_id}"))),
        "{found:?}"
    );
}

/// An item whose amount differs from its local line, and an invoice voided in Stripe.
fn changed_items_and_voided_invoices_are_found(db: &TestDb) {
    billed(db);
    // Two February invoices (ids depend on the order of work).
    let invoices: Vec<Value> = db
        .invoices()
        .into_iter()
        .filter(|i| {
            i["event_time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2012-02"))
        })
        .collect();
    assert!(invoices.len() >= 2);
    let item = invoices[0]["lines"][0]["stripe_invoice_item_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(db.stripe.set_item_amount(&item, 1));
    let voided = invoices[1]["stripe_invoice_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        common::stripe_post(db, &format!("invoices/{voided}/void"))["status"],
        "void"
    );
    let report = db.code(3, None, &["audit"]);
    let found = findings(&report);
    assert!(
        found
            .iter()
            .any(|(k, d)| k == "item" && d.contains(&item) && d.contains("amount 1")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(k, d)| k == "status" && d.contains(&voided) && d.contains("void")),
        "{found:?}"
    );
    // --since leaves the February invoices (both changed ones) out: nothing to report.
    let later = db.ok(None, &["audit", "--since", "2012-03-01T00:00:00Z"]);
    assert_eq!(findings(&later), vec![]);
    assert!(later["local_invoices_checked"].as_u64() < report["local_invoices_checked"].as_u64());
}

/// `plan preview` shows the next invoice without writing anything.
fn preview_writes_nothing(db: &TestDb) {
    common::monthly_plans(db, 1, T0);
    db.ok(
        Some("2012-01-12T03:04:05Z"),
        &["plan", "seats", "1", "--count", "7"],
    );
    let before = db.plan(1);
    let preview = db.ok(None, &["plan", "preview", "1"]);
    assert_eq!(preview["at"], "2012-02-02T03:04:05Z");
    let invoices = preview["invoices"].as_array().cloned().unwrap_or_default();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["status"], "would_send");
    assert_eq!(invoices[0]["total_cents"], 7 * 800 + 2 * 542);
    assert_eq!(db.plan(1), before, "nothing written");
    assert!(db.invoices().is_empty());
    assert!(db.stripe.requests().is_empty(), "nothing sent");
    assert!(db.refused(None, &["plan", "preview", "9"]).contains("9"));
}

on_both_backends!(
    clean_passes_audit_clean,
    double_send_is_found,
    changed_items_and_voided_invoices_are_found,
    preview_writes_nothing
);
