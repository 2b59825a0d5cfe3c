//! Every admin write through one door: [`recorded`] runs the command and appends its change
//! (author, operation, objects, the fields before and after) in the same transaction, so a write
//! that rolls back leaves no history and one that commits always does. The jobs record their
//! own steps with [`changes::record`].

use serde_json::{json, Value};

use super::commands::{CustomerCmd, OfferCmd, PlanCmd};
use super::render::Output;
use crate::db::changes::{self, WithHead};
use crate::db::models::PlanRecord;
use crate::db::{repo, Conn};
use crate::domain::change::{diff, Author, Change};
use crate::domain::{LedgerEntry, Ts};
use crate::error::AppError;
use crate::views::{CustomerView, PlanView};

/// What a write is about, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Customer(i64),
    Plan(i64),
    Offer(i64),
    /// A new customer (its id comes from the command's answer).
    NewCustomer,
    /// A new plan of this customer.
    NewPlan(i64),
    /// A new offer to this customer.
    NewOffer(i64),
}

/// A write command's operation name (`customer.set_discount`) and subject; `None` for reads.
pub fn customer_write(cmd: &CustomerCmd) -> Option<(&'static str, Subject)> {
    use CustomerCmd::*;
    Some(match cmd {
        Create(_) => ("customer.create", Subject::NewCustomer),
        Show { .. } => return None,
        SetDiscount { id, .. } => ("customer.set_discount", Subject::Customer(*id)),
        SetMinimumLicenses { id, .. } => ("customer.set_minimum_licenses", Subject::Customer(*id)),
        SetRequiredPlanTier { id, .. } => {
            ("customer.set_required_plan_tier", Subject::Customer(*id))
        }
        SetExempt { id, .. } => ("customer.set_exempt", Subject::Customer(*id)),
        ReportUsage { id, .. } => ("customer.report_usage", Subject::Customer(*id)),
    })
}

/// See [`customer_write`].
pub fn plan_write(cmd: &PlanCmd) -> Option<(&'static str, Subject)> {
    use PlanCmd::*;
    Some(match cmd {
        Create(a) => ("plan.create", Subject::NewPlan(a.customer)),
        Show { .. } | List { .. } | Ledger { .. } | Events { .. } | Preview { .. } => return None,
        Seats { id, .. } => ("plan.seats", Subject::Plan(*id)),
        BuyLicenses { id, .. } => ("plan.buy_licenses", Subject::Plan(*id)),
        RenewalLicenses { id, .. } => ("plan.renewal_licenses", Subject::Plan(*id)),
        Schedule { id, .. } => ("plan.schedule", Subject::Plan(*id)),
        DowngradeNow { id } => ("plan.downgrade_now", Subject::Plan(*id)),
        SetBillingMode { id, .. } => ("plan.set_billing_mode", Subject::Plan(*id)),
        SetLicenseManagement { id, .. } => ("plan.set_license_management", Subject::Plan(*id)),
        UpgradeTier { id, .. } => ("plan.upgrade_tier", Subject::Plan(*id)),
        SetEndDate { id, .. } => ("plan.set_end_date", Subject::Plan(*id)),
        ScheduleSuccessor { id, .. } => ("plan.schedule_successor", Subject::Plan(*id)),
        Retry { id } => ("plan.retry", Subject::Plan(*id)),
    })
}

/// See [`customer_write`].
pub fn offer_write(cmd: &OfferCmd) -> (&'static str, Subject) {
    match cmd {
        OfferCmd::Create { customer, .. } => ("offer.create", Subject::NewOffer(*customer)),
        OfferCmd::Accept { id, .. } => ("offer.accept", Subject::Offer(*id)),
    }
}

/// Runs `run` (one admin write) and appends its change, in one transaction.
pub fn recorded(
    c: &mut Conn,
    author: &Author,
    now: Ts,
    write: (&'static str, Subject),
    run: impl FnOnce(&mut Conn) -> Result<Output, AppError>,
) -> Result<Output, AppError> {
    c.transaction(|c| {
        // Locked before the first read, so that the snapshot is the state the write changes
        // (and, on SQLite, so that the transaction holds the write lock from its start: a read
        // lock upgraded later fails under WAL instead of waiting).
        let before = match write.1 {
            // The plan read with its lock: one statement on PostgreSQL.
            Subject::Plan(id) => {
                let plan = repo::get_plan_locked(c, id)?;
                plan_snapshot_of(c, plan)?
            }
            subject => {
                changes::lock_for_write(c)?;
                snapshot_of(c, subject)?
            }
        };
        let out = run(c)?;
        let states = States {
            before,
            after: None,
            with_head: WithHead::default(),
        };
        append(c, author, now, write, states, &out)?;
        Ok(out)
    })
}

/// The states a command read and wrote, handed to the history instead of read around it.
pub struct States {
    pub before: Value,
    /// `None`: the history reads the state afterwards itself.
    pub after: Option<Value>,
    /// What the command left for the append to write on its customer's row.
    pub with_head: WithHead,
}

/// [`recorded`] for a command that hands over its states (the seat report, the hottest write:
/// two statements instead of six). The command must lock what it changes before it reads it,
/// as [`recorded`] does for the others.
pub fn recorded_with_states(
    c: &mut Conn,
    author: &Author,
    now: Ts,
    write: (&'static str, Subject),
    run: impl FnOnce(&mut Conn) -> Result<(Output, States), AppError>,
) -> Result<Output, AppError> {
    c.transaction(|c| {
        let (out, states) = run(c)?;
        append(c, author, now, write, states, &out)?;
        Ok(out)
    })
}

/// Appends the change of a write that ran: its objects from the subject and the command's
/// answer, the fields that moved between `before` and `after` (read now when not given).
fn append(
    c: &mut Conn,
    author: &Author,
    now: Ts,
    (operation, subject): (&'static str, Subject),
    States {
        before,
        after,
        with_head,
    }: States,
    out: &Output,
) -> Result<(), AppError> {
    let answer = |k: &str| out.json.get(k).and_then(Value::as_i64);
    let (mut customer_id, mut plan_id, mut new_plan_id, mut objects) =
        (None, None, None, json!({}));
    let read_after = match subject {
        Subject::Customer(id) => {
            customer_id = Some(id);
            objects["customer"] = id.into();
            After::Customer(Some(id))
        }
        Subject::NewCustomer => {
            customer_id = answer("id");
            objects["customer"] = customer_id.into();
            After::Customer(customer_id)
        }
        Subject::Plan(id) => {
            plan_id = Some(id);
            // An upgrade answers with the new plan; a successor with its id.
            new_plan_id = answer("id").filter(|n| *n != id);
            objects["plan"] = id.into();
            After::Plan(Some(id))
        }
        Subject::NewPlan(customer) => {
            customer_id = Some(customer);
            plan_id = answer("id");
            objects["customer"] = customer.into();
            objects["plan"] = plan_id.into();
            After::Plan(plan_id)
        }
        Subject::NewOffer(customer) => {
            customer_id = Some(customer);
            objects["customer"] = customer.into();
            objects["offer"] = answer("id").into();
            After::Offer(answer("id"))
        }
        Subject::Offer(id) => {
            objects["offer"] = id.into();
            new_plan_id = answer("plan_id");
            After::Offer(Some(id))
        }
    };
    let after = match after {
        Some(after) => after,
        None => match read_after {
            After::Customer(id) => customer_snapshot(c, id)?,
            After::Plan(id) => plan_snapshot(c, id)?,
            After::Offer(id) => offer_snapshot(c, id)?,
        },
    };
    if let Some(new) = new_plan_id {
        objects["new_plan"] = new.into();
    }
    if customer_id.is_none() {
        // A plan's or an offer's snapshot names its customer.
        customer_id = after.get("customer_id").and_then(Value::as_i64);
    }
    let (was, mut is) = diff(&before, &after);
    if let Some(new) = new_plan_id {
        is["new_plan"] = plan_snapshot(c, Some(new))?;
    }
    let change = Change {
        at: now,
        operation: operation.to_string(),
        customer_id,
        plan_id,
        new_plan_id,
        invoice_id: None,
        objects,
        before: was,
        after: is,
    };
    changes::record_with_head(c, author, &change, with_head)?;
    Ok(())
}

/// Which snapshot a write's after-state is.
enum After {
    Customer(Option<i64>),
    Plan(Option<i64>),
    Offer(Option<i64>),
}

fn snapshot_of(c: &mut Conn, subject: Subject) -> Result<Value, AppError> {
    match subject {
        Subject::Customer(id) => customer_snapshot(c, Some(id)),
        Subject::Plan(id) => plan_snapshot(c, Some(id)),
        Subject::Offer(id) => offer_snapshot(c, Some(id)),
        Subject::NewCustomer | Subject::NewPlan(_) | Subject::NewOffer(_) => Ok(json!({})),
    }
}

/// A customer's fields as the history compares them: its view (without the list of plan ids)
/// and its plans' snapshots by id, since a customer's settings reprice its plans.
pub fn customer_snapshot(c: &mut Conn, id: Option<i64>) -> Result<Value, AppError> {
    let Some(customer) = id
        .map(|id| repo::get_customer(c, id))
        .transpose()?
        .flatten()
    else {
        return Ok(json!({}));
    };
    let mut v = to_json(CustomerView::new(&customer, vec![]))?;
    let mut plans = serde_json::Map::new();
    for plan in repo::plan_ids_of_customer(c, customer.id)? {
        plans.insert(plan.to_string(), plan_snapshot(c, Some(plan))?);
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("plan_ids");
        o.insert("plans".into(), Value::Object(plans));
    }
    Ok(v)
}

/// A plan's fields as the history compares them: its view without the worker's bookkeeping
/// (leases, retries), which is not a change anyone made.
pub fn plan_snapshot(c: &mut Conn, id: Option<i64>) -> Result<Value, AppError> {
    let record = id.map(|id| repo::get_plan(c, id)).transpose()?.flatten();
    plan_snapshot_of(c, record)
}

/// [`plan_snapshot`] of a plan already read.
fn plan_snapshot_of(c: &mut Conn, record: Option<PlanRecord>) -> Result<Value, AppError> {
    let Some(record) = record else {
        return Ok(json!({}));
    };
    // The view reads the newest ledger entry only (the plan's licenses).
    let newest = repo::newest_ledger_entry(c, record.plan.id)?;
    plan_state(&record, newest)
}

/// The fields of [`plan_state`] that a new ledger entry alone can move, and the customer (which
/// names the change's chain): two of these compare as the two full states do, for a command
/// that changed nothing of the plan but its ledger.
pub fn plan_licenses_state(record: &PlanRecord, newest: Option<LedgerEntry>) -> Value {
    let newest: Vec<_> = newest.into_iter().collect();
    let v = PlanView::new(record, &newest);
    json!({
        "customer_id": v.customer_id,
        "licenses": v.licenses,
        "licenses_at_next_renewal": v.licenses_at_next_renewal,
    })
}

/// [`plan_snapshot`] of a plan and its newest ledger entry as a command read or wrote them.
pub fn plan_state(record: &PlanRecord, newest: Option<LedgerEntry>) -> Result<Value, AppError> {
    let newest: Vec<_> = newest.into_iter().collect();
    let mut v = to_json(PlanView::new(record, &newest))?;
    if let Some(o) = v.as_object_mut() {
        for k in [
            "lease_owner",
            "lease_expires_at",
            "error_count",
            "last_error",
            "next_retry_at",
            "invoicing_status",
            "last_change",
        ] {
            o.remove(k);
        }
    }
    Ok(v)
}

fn offer_snapshot(c: &mut Conn, id: Option<i64>) -> Result<Value, AppError> {
    let Some(o) = id.map(|id| repo::get_offer(c, id)).transpose()?.flatten() else {
        return Ok(json!({}));
    };
    Ok(json!({
        "id": o.id,
        "customer_id": o.customer_id,
        "tier": o.tier.name(),
        "fixed_price_cents": o.fixed_price,
        "status": o.status.name(),
        "sent_invoice_id": o.sent_invoice_id,
    }))
}

fn to_json(view: impl serde::Serialize) -> Result<Value, AppError> {
    serde_json::to_value(view)
        .map_err(|e| AppError::Internal(format!("a view did not serialize: {e}")))
}
