//! Oracles: what must hold after a pass (each preview equals what was sent; Stripe holds exactly
//! the local invoices) and the shapes tests compare (invoice lines, Stripe snapshots).

use plan_invoicer::devtools::emulator::Emulator;
use serde_json::Value;

use super::TestDb;

impl TestDb {
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
