//! The admin operations: they write the worker's inputs (customers, plans, licenses, status
//! changes, offers). Each public operation is one transaction, and bad input is refused before
//! anything is written. The end-of-cycle updates they run first are [`crate::billing`]'s.

mod customers;
mod licenses;
mod offers;
mod plans;
mod support;
mod tiers;

use chrono::{DateTime, Utc};

use crate::billing::catch_up_cycles;
use crate::db::models::PlanRecord;
use crate::db::repo::{self, NewEvent};
use crate::db::Conn;
use crate::domain::bounds;
use crate::domain::EventKind;
use crate::domain::{Customer, LedgerEntry, Plan, Tier};
use crate::error::{invalid, refuse, AppError};

pub use crate::billing::{customer, plan};
pub use customers::{create_customer, report_usage, set_discount, CustomerInput};
pub use licenses::{
    buy_licenses, renewal_licenses, report_seats, report_seats_leaving_the_count, SeatsReport,
};
pub use offers::{accept_offer, create_offer};
pub use plans::{
    create_plan, downgrade_now, schedule_change, schedule_successor, set_billing_mode,
    set_end_date, set_license_management, PlanInput, Successor,
};
pub use support::{retry_plan, set_exempt, set_minimum_licenses, set_required_plan_tier};
pub use tiers::upgrade_tier;

type Ts = DateTime<Utc>;

fn event(kind: EventKind, plan: &Plan, at: Ts) -> NewEvent {
    NewEvent::about(kind, plan, at)
}

/// A price in cents: `0..=max` (docs/CLI.md, "Bounds").
fn cents(field: &'static str, v: i64, max: i64) -> Result<i64, AppError> {
    Ok(bounds::number(field, v, max)?)
}

/// A license, seat or minimum count: `0..=bounds::MAX_LICENSES`.
fn licenses_arg(field: &'static str, v: i64) -> Result<i32, AppError> {
    Ok(bounds::licenses(field, v)?)
}

/// An instant given by the caller (an anchor, an end date, `--now`): inside the accepted years.
pub fn instant_arg(field: &'static str, t: Ts) -> Result<Ts, AppError> {
    Ok(bounds::instant(field, t)?)
}

/// A tier a command takes: a known name or number, and one that is offered —
/// `self_hosted_enterprise` is refused everywhere, as Zulip's `InvalidTierError` refuses it.
fn tier_arg(field: &'static str, tier: Tier) -> Result<Tier, AppError> {
    if tier == Tier::SelfHostedEnterprise {
        return Err(refuse(field, format!(
            "{tier} is not offered: self-hosted Enterprise is sold by contract, not by these commands"
        )));
    }
    Ok(tier)
}

/// A text field, trimmed, without control characters, at most `max` characters.
fn text_arg(field: &'static str, v: &str, max: usize) -> Result<String, AppError> {
    Ok(bounds::text(field, v, max)?)
}

fn clamp_i32(v: i64) -> Result<i32, AppError> {
    i32::try_from(v).map_err(|_| invalid(format!("license count {v} is too large")))
}

/// A live plan (refuses ended and never-started plans).
///
/// Time only moves forward for a plan (docs/RULES.md §4.4): an operation acting before the
/// plan's newest ledger entry is refused, so that entries stay in time order and no change is
/// prorated from an instant the plan has already passed.
///
/// The plan's row is locked as it is read ([`repo::get_plan_locked`]): callers run inside a
/// transaction.
fn live_plan(conn: &mut Conn, id: i64, now: Ts) -> Result<(Plan, Customer), AppError> {
    let (record, customer) = live_plan_record(conn, id, now)?;
    Ok((record.plan, customer))
}

/// [`live_plan`] with the whole row as read (its lease and retry bookkeeping too).
fn live_plan_record(conn: &mut Conn, id: i64, now: Ts) -> Result<(PlanRecord, Customer), AppError> {
    let record = repo::get_plan_locked(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("plan {id} does not exist")))?;
    let p = &record.plan;
    if !p.status.is_live() {
        return Err(invalid(format!(
            "plan {id} is not live (status {})",
            p.status
        )));
    }
    let show = |t: Ts| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    if let Some(newest) = repo::newest_ledger_time(conn, id)?.filter(|t| *t > now) {
        return Err(invalid(format!(
            "plan {id} has a ledger entry at {}, after the change at {}: time only moves forward for a plan",
            show(newest),
            show(now)
        )));
    }
    // An invoice bills every change up to its date, so a change dated at or before it would
    // be billed one invoice late (an annual plan's monthly invoice writes no ledger entry).
    if let Some(billed) = repo::newest_invoice_time(conn, id)?.filter(|t| *t >= now) {
        return Err(invalid(format!(
            "plan {id} is invoiced through {}, at or after the change at {}: time only moves forward for a plan",
            show(billed),
            show(now)
        )));
    }
    let c = customer(conn, p.customer_id)?;
    Ok((record, c))
}

/// Runs the end-of-cycle updates at `now` and returns the plan that is live afterwards, or an
/// error if the plan ended.
fn current_after_cycle(
    conn: &mut Conn,
    id: i64,
    now: Ts,
) -> Result<(Plan, Customer, LedgerEntry), AppError> {
    let (mut p, cust) = live_plan(conn, id, now)?;
    let outcome = catch_up_cycles(conn, &mut p, &cust, now)?;
    let Some(last) = outcome.last_entry else {
        return Err(invalid(format!(
            "plan {id} has ended (status {})",
            p.status
        )));
    };
    Ok((p, cust, last))
}

fn require(ok: bool, p: &Plan, msg: &str) -> Result<(), AppError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{msg} (plan {} is {} {})",
            p.id, p.billing_schedule, p.status
        )))
    }
}
