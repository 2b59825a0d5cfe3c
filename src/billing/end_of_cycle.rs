//! The end-of-cycle updates: [`crate::domain::cycle::end_of_cycle`] decides, this writes the
//! ledger entries, status changes, new plans and plan events.

use crate::db::repo::{self, NewEvent, NewPlan};
use crate::db::Conn;
use crate::domain::cycle::{end_of_cycle, last_entry_at, EndOfCycle};
use crate::domain::prices::{discount_display, list_price, price_per_license};
use crate::domain::EventKind;
use crate::domain::{
    BillingSchedule, Customer, InvoicingStatus, LedgerEntry, Plan, PlanStatus, Ts,
};
use crate::error::{invalid, AppError};

fn event(kind: EventKind, plan: &Plan, at: Ts) -> NewEvent {
    NewEvent::about(kind, plan, at)
}

/// What an end-of-cycle step did, like Zulip's `(new_plan, last_ledger_entry)`.
#[derive(Debug, Clone, Default)]
pub struct CycleOutcome {
    /// The plan that is live afterwards when it is another one (a switch or a successor).
    pub new_plan_id: Option<i64>,
    /// The newest ledger entry at `t` of the live plan; none when the plan ended.
    pub last_entry: Option<LedgerEntry>,
    /// Whether a cycle boundary was crossed (something was written).
    pub changed: bool,
    /// The plan's newest ledger entry (by id) as it was before these updates wrote anything:
    /// the change history's before-state of an operation that runs them first.
    pub newest_before: Option<LedgerEntry>,
}

/// The end-of-cycle updates of every boundary up to `now`, for operations that act at `now`
/// while the worker may be behind (Zulip's web actions take one step; a status change issued
/// months after the last pass would otherwise land in an old cycle). Follows switches.
pub fn catch_up_cycles(
    conn: &mut Conn,
    plan: &mut Plan,
    customer: &Customer,
    now: Ts,
) -> Result<CycleOutcome, AppError> {
    let mut outcome = CycleOutcome::default();
    for step_no in 0..10_000 {
        let step = apply_end_of_cycle(conn, plan, customer, now, now)?;
        if step_no == 0 {
            outcome.newest_before = step.newest_before;
        }
        if let Some(new_id) = step.new_plan_id {
            *plan = super::plan(conn, new_id)?.plan;
            outcome.new_plan_id = Some(new_id);
        }
        outcome.last_entry = step.last_entry;
        outcome.changed |= step.changed;
        if !step.changed || outcome.last_entry.is_none() {
            return Ok(outcome);
        }
    }
    Err(invalid(format!(
        "plan {} crosses too many billing cycles at once",
        plan.id
    )))
}

/// `make_end_of_cycle_updates_if_needed(plan, t)`: decides with the pure core, then writes the
/// ledger entries, status changes, new plans and plan events. Updates `plan` in place.
pub fn apply_end_of_cycle(
    conn: &mut Conn,
    plan: &mut Plan,
    customer: &Customer,
    t: Ts,
    now: Ts,
) -> Result<CycleOutcome, AppError> {
    let entries = repo::ledger_of(conn, plan.id)?;
    let successor = match plan.status {
        PlanStatus::SwitchPlanTierAtPlanEnd => repo::successor_of(conn, plan)?.map(|r| r.plan),
        _ => None,
    };
    let decision = end_of_cycle(plan, customer, &entries, successor.as_ref(), t)?;
    let changed = decision != EndOfCycle::Nothing;
    let old_status = plan.status;
    let ended_event = |plan: &Plan, at: Ts| {
        let mut e = event(EventKind::PlanEnded, plan, at);
        e.old_status = Some(old_status);
        e.new_status = Some(PlanStatus::Ended);
        e.old_tier = Some(plan.tier);
        e
    };
    let outcome = match decision {
        EndOfCycle::Nothing => CycleOutcome {
            new_plan_id: None,
            last_entry: last_entry_at(&entries, t).cloned(),
            ..CycleOutcome::default()
        },
        EndOfCycle::Downgrade {
            at,
            close_ledger,
            newest_entry,
        } => {
            plan.status = PlanStatus::Ended;
            if close_ledger {
                plan.invoiced_through = newest_entry;
                plan.next_invoice_date = None;
            }
            repo::save_plan(conn, plan)?;
            repo::insert_event(conn, &ended_event(plan, at), now)?;
            CycleOutcome::default()
        }
        EndOfCycle::Renew { at, licenses } => {
            let entry = repo::insert_renewal(conn, plan.id, at, licenses, Some(licenses))?;
            CycleOutcome {
                new_plan_id: None,
                last_entry: Some(entry),
                ..CycleOutcome::default()
            }
        }
        EndOfCycle::EndTrial {
            at,
            licenses,
            invoiced_through,
        } => {
            plan.invoiced_through = Some(invoiced_through);
            plan.billing_cycle_anchor = at;
            plan.status = PlanStatus::Active;
            repo::save_plan(conn, plan)?;
            let entry = repo::insert_renewal(conn, plan.id, at, licenses, Some(licenses))?;
            let mut e = event(EventKind::FreeTrialEnded, plan, at);
            e.old_status = Some(old_status);
            e.new_status = Some(PlanStatus::Active);
            e.new_tier = Some(plan.tier);
            repo::insert_event(conn, &e, now)?;
            CycleOutcome {
                new_plan_id: None,
                last_entry: Some(entry),
                ..CycleOutcome::default()
            }
        }
        EndOfCycle::SwitchSchedule {
            at,
            schedule,
            licenses,
        } => switch_schedule(conn, plan, customer, (at, schedule, licenses), now)?,
        EndOfCycle::StartSuccessor { at, licenses } => {
            let next = successor.ok_or_else(|| {
                AppError::Internal(format!("plan {} lost its successor", plan.id))
            })?;
            let mut e = ended_event(plan, at);
            e.new_tier = Some(next.tier);
            e.message = Some(format!("successor plan {} starts", next.id));
            start_successor(conn, plan, next, (at, licenses), e, now)?
        }
    };
    Ok(CycleOutcome {
        changed,
        newest_before: entries.iter().max_by_key(|e| e.id).cloned(),
        ..outcome
    })
}

/// A schedule switch at the end of the cycle: `plan` ends and the same plan on `schedule`
/// starts at `at` with a renewal of `licenses`.
fn switch_schedule(
    conn: &mut Conn,
    plan: &mut Plan,
    customer: &Customer,
    (at, schedule, licenses): (Ts, BillingSchedule, i32),
    now: Ts,
) -> Result<CycleOutcome, AppError> {
    let old_status = plan.status;
    plan.status = PlanStatus::Ended;
    repo::save_plan(conn, plan)?;
    let new = NewPlan {
        billing_cycle_anchor: at,
        next_invoice_date: Some(at),
        invoicing_status: InvoicingStatus::InitialInvoiceToBeSent,
        ..on_schedule(plan, customer, schedule, now)?
    };
    let new_id = repo::insert_plan(conn, &new)?;
    let entry = repo::insert_renewal(conn, new_id, at, licenses, Some(licenses))?;
    let mut e = event(EventKind::BillingScheduleSwitched, plan, at);
    e.old_status = Some(old_status);
    e.new_status = Some(PlanStatus::Ended);
    e.message = Some(format!(
        "plan {} continues as {} plan {new_id}",
        plan.id,
        schedule.name()
    ));
    repo::insert_event(conn, &e, now)?;
    Ok(CycleOutcome {
        new_plan_id: Some(new_id),
        last_entry: Some(entry),
        ..CycleOutcome::default()
    })
}

/// A successor's start: `plan` ends (recorded by `ended`), `next` becomes active at `at` with a
/// renewal of `licenses`.
fn start_successor(
    conn: &mut Conn,
    plan: &mut Plan,
    mut next: Plan,
    (at, licenses): (Ts, i32),
    ended: NewEvent,
    now: Ts,
) -> Result<CycleOutcome, AppError> {
    plan.status = PlanStatus::Ended;
    repo::save_plan(conn, plan)?;
    next.status = PlanStatus::Active;
    repo::save_plan(conn, &next)?;
    let entry = repo::insert_renewal(conn, next.id, at, licenses, Some(licenses))?;
    repo::insert_event(conn, &ended, now)?;
    Ok(CycleOutcome {
        new_plan_id: Some(next.id),
        last_entry: Some(entry),
        ..CycleOutcome::default()
    })
}

/// The same plan (tier, license management, billing mode) on another schedule, priced for it
/// with the customer's discount: active, anchored where `plan` is; callers set the rest.
pub fn on_schedule(
    plan: &Plan,
    customer: &Customer,
    schedule: BillingSchedule,
    now: Ts,
) -> Result<NewPlan, AppError> {
    let price = price_per_license(plan.tier, schedule, Some(customer))?;
    Ok(NewPlan {
        customer_id: plan.customer_id,
        tier: plan.tier,
        status: PlanStatus::Active,
        billing_schedule: schedule.code(),
        fixed_price: None,
        price_per_license: Some(price),
        discount: discount_display(list_price(plan.tier, schedule)?, price),
        automanage_licenses: plan.automanage_licenses,
        charge_automatically: plan.charge_automatically,
        billing_cycle_anchor: plan.billing_cycle_anchor,
        next_invoice_date: None,
        end_date: None,
        invoicing_status: InvoicingStatus::Done,
        created_at: now,
    })
}
