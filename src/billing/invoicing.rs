//! The invoicing step of the pass: one due date of one plan, in one transaction
//! (docs/RULES.md, "The invoicing pass"): staff notices, the usage-freshness check, the
//! end-of-cycle updates, the invoice lines, the write-ahead invoice, `invoiced_through` and the
//! next invoice date.

use tracing::info;

use serde_json::{json, Value};

use crate::db::changes;
use crate::db::repo::{self, NewEvent};
use crate::db::Conn;
use crate::domain::change::{diff, plan_fields, Author, Change};
use crate::domain::cycle::{fixed_price_review_due, usage_freshness, Freshness};
use crate::domain::dates::next_invoice_date_after;
use crate::domain::{invoice_lines, Customer, Plan, PlanStatus, Ts};
use crate::domain::{EventKind, InvoiceId};
use crate::error::AppError;

/// What one step did.
pub enum Step {
    /// The plan is not due at `now` (or is a successor that its predecessor starts).
    NotDue,
    /// Invoicing waits for someone (stale usage data): the reason.
    Waiting(String),
    /// One due date was processed; the invoice written for it, if it has lines.
    Advanced(Option<InvoiceId>),
}
fn notice(
    conn: &mut Conn,
    plan: &Plan,
    kind: EventKind,
    message: String,
    now: Ts,
) -> Result<(), AppError> {
    info!(notice = kind.name(), "{message}");
    let e = NewEvent {
        message: Some(message),
        ..NewEvent::about(kind, plan, now)
    };
    repo::insert_event(conn, &e, now)?;
    Ok(())
}

/// Which checks a step runs. The staff notice about a fixed-price plan's end and the
/// self-hosted usage-freshness check run once per pass, at the plan's first due date (as
/// Zulip's job does): when they pass, every later due date of the catch-up is invoiced too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    FirstDueDate,
    LaterDueDate,
}

/// One turn of the catch-up loop at the plan's due date, in one transaction, written ahead of
/// Stripe: the checks of the pass (at the first due date), the end-of-cycle updates, the lines,
/// the local invoice, `invoiced_through` and the next invoice date.
pub fn invoice_step(c: &mut Conn, plan_id: i64, now: Ts, checks: Checks) -> Result<Step, AppError> {
    let mut p = super::plan(c, plan_id)?.plan;
    let Some(t) = p.next_invoice_date.filter(|d| *d <= now) else {
        return Ok(Step::NotDue);
    };
    if p.status == PlanStatus::NeverStarted {
        // Started by its predecessor's end-of-cycle update, never on its own (docs/RULES.md §6).
        return Ok(Step::NotDue);
    }
    let customer = super::customer(c, p.customer_id)?;
    let before = plan_fields(&p);
    let mut new_plan_id = None;

    if checks == Checks::FirstDueDate {
        if let Some(reason) = checks_of_the_pass(c, &mut p, &customer, t, now)? {
            return Ok(Step::Waiting(reason));
        }
    }
    if p.status != PlanStatus::SwitchPlanTierNow {
        let mut step = super::apply_end_of_cycle(c, &mut p, &customer, t, now)?;
        // A complimentary plan bills nothing: every boundary up to its due date is crossed in
        // this step, its end date included (its renewal at the monthly date before it, then
        // its end), so that it ends at its end date and not at the next monthly date.
        let mut crossed = 0;
        while p.tier.is_complimentary()
            && step.changed
            && step.new_plan_id.is_none()
            && p.status.is_live()
            && crossed < 36
        {
            step = super::apply_end_of_cycle(c, &mut p, &customer, t, now)?;
            crossed += 1;
        }
        new_plan_id = step.new_plan_id;
    }
    let entries = repo::ledger_of(c, p.id)?;
    let draft = invoice_lines(&p, &customer, &entries, t)?;
    let invoice_id = if draft.lines.is_empty() {
        None
    } else {
        let id = repo::insert_invoice(c, &p, t, &draft, now)?;
        if draft.flat_months_used > 0 {
            repo::set_flat_discounted_months(
                c,
                customer.id,
                customer.flat_discounted_months - draft.flat_months_used,
            )?;
        }
        Some(id)
    };
    p.credit -= draft.credit_used;
    p.invoiced_through = draft.invoiced_through;
    p.next_invoice_date = match p.status {
        PlanStatus::Ended => None,
        // docs/RULES.md §3: computed from the due date being processed, never from a later instant;
        // a complimentary plan is next looked at no later than its end date, so that it ends then
        // (it has nothing to invoice at the monthly dates in between).
        _ => {
            let next = next_invoice_date_after(p.billing_cycle_anchor, t)?;
            Some(match p.end_date {
                Some(end) if p.tier.is_complimentary() && t < end && end < next => end,
                _ => next,
            })
        }
    };
    p.stale_audit_log_data_email_sent = false;
    repo::save_plan(c, &p)?;
    record_step(c, (&before, &p), new_plan_id, invoice_id, now)?;
    Ok(Step::Advanced(invoice_id))
}

/// The step's change in the history (actor `system:pass`): what it did to the plan, named by its
/// outcome — a switch to a new plan, the plan's end, an invoice, or only the plan advanced.
fn record_step(
    c: &mut Conn,
    (before, p): (&Value, &Plan),
    new_plan_id: Option<i64>,
    invoice_id: Option<InvoiceId>,
    now: Ts,
) -> Result<(), AppError> {
    let operation = match (new_plan_id, p.status, invoice_id) {
        (Some(_), _, _) => "pass.switch",
        (None, PlanStatus::Ended, _) => "pass.end",
        (None, _, Some(_)) => "pass.invoice",
        (None, _, None) => "pass.advance",
    };
    let (was, is) = diff(before, &plan_fields(p));
    let mut objects = json!({ "customer": p.customer_id, "plan": p.id });
    if let Some(n) = new_plan_id {
        objects["new_plan"] = n.into();
    }
    if let Some(i) = invoice_id {
        objects["invoice"] = i.0.into();
    }
    let change = Change {
        at: now,
        operation: operation.to_string(),
        customer_id: Some(p.customer_id),
        plan_id: Some(p.id),
        new_plan_id,
        invoice_id: invoice_id.map(|i| i.0),
        objects,
        before: was,
        after: is,
    };
    changes::record(c, &Author::system(PASS_ACTOR), &change)?;
    Ok(())
}

/// The pass's actor in the change history.
pub const PASS_ACTOR: &str = "system:pass";

/// The notices and the usage-freshness check at a plan's first due date in a pass (docs/RULES.md
/// §4): `Some(reason)` when invoicing waits for fresh usage data.
fn checks_of_the_pass(
    c: &mut Conn,
    p: &mut Plan,
    customer: &Customer,
    t: Ts,
    now: Ts,
) -> Result<Option<String>, AppError> {
    if fixed_price_review_due(p) {
        let end = p
            .end_date
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        notice(
            c,
            p,
            EventKind::NoticeFixedPricePlanEnds,
            format!(
                "Fixed-price plan for customer {} ends on {end}",
                customer.name
            ),
            now,
        )?;
        p.reminder_to_review_plan_email_sent = true;
        repo::save_plan(c, p)?;
    }
    match usage_freshness(p, customer, t) {
        Freshness::Proceed => {}
        Freshness::ProceedWithNotice => notice(
            c,
            p,
            EventKind::NoticeStaleUsageData,
            format!("Stale usage data for customer {}'s plan, but invoicing not delayed because the plan has a fixed price", customer.name),
            now,
        )?,
        Freshness::Skip { notify } => {
            let last = customer.last_usage_report_at.map_or("never uploaded".to_string(), |d| format!("last upload {}", d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
            let reason = format!("Unable to verify current licenses in use ({last}), which delays invoicing until fresh usage data arrives");
            if notify {
                notice(c, p, EventKind::NoticeStaleUsageData, reason.clone(), now)?;
                p.stale_audit_log_data_email_sent = true;
                repo::save_plan(c, p)?;
            }
            return Ok(Some(reason));
        }
    }

    Ok(None)
}
