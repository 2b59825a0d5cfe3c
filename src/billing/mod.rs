//! Applies the pure core's decisions to the database, each inside the caller's transaction:
//! the end-of-cycle writes (docs/RULES.md, "End of a billing cycle"), the invoicing step of the
//! pass (one due date: end-of-cycle updates, lines, the write-ahead invoice, the next invoice
//! date). The pass, `plan preview` and the admin operations share these functions, so a rule is
//! applied the same way wherever it is reached.

mod end_of_cycle;
mod invoicing;
pub mod payments;

pub use end_of_cycle::{apply_end_of_cycle, catch_up_cycles, on_schedule, CycleOutcome};
pub use invoicing::{invoice_step, Checks, Step};

use crate::db::models::PlanRecord;
use crate::db::repo;
use crate::db::Conn;
use crate::domain::Customer;
use crate::error::AppError;

pub fn customer(conn: &mut Conn, id: i64) -> Result<Customer, AppError> {
    repo::get_customer(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("customer {id} does not exist")))
}

/// Ends a plan now, with nothing more to invoice: invoiced through its newest ledger entry, no
/// next invoice date. A never-started successor it had scheduled ends with it (it would never
/// start, and would block a later successor). Saves it and returns the status it had.
pub fn end_now(
    conn: &mut Conn,
    p: &mut crate::domain::Plan,
    now: crate::domain::Ts,
) -> Result<crate::domain::PlanStatus, AppError> {
    use crate::domain::{EventKind, PlanStatus};
    let old = p.status;
    if old == PlanStatus::SwitchPlanTierAtPlanEnd {
        if let Some(mut next) = repo::successor_of(conn, p)?.map(|r| r.plan) {
            next.status = PlanStatus::Ended;
            next.next_invoice_date = None;
            repo::save_plan(conn, &next)?;
            let mut e = repo::NewEvent::about(EventKind::PlanEnded, &next, now);
            e.old_status = Some(PlanStatus::NeverStarted);
            e.new_status = Some(PlanStatus::Ended);
            e.message = Some(format!("never started: plan {} ended before it", p.id));
            repo::insert_event(conn, &e, now)?;
        }
    }
    p.status = crate::domain::PlanStatus::Ended;
    p.invoiced_through = repo::ledger_of(conn, p.id)?
        .last()
        .map(|e| e.id)
        .or(p.invoiced_through);
    p.next_invoice_date = None;
    repo::save_plan(conn, p)?;
    Ok(old)
}

pub fn plan(conn: &mut Conn, id: i64) -> Result<PlanRecord, AppError> {
    repo::get_plan(conn, id)?.ok_or_else(|| AppError::NotFound(format!("plan {id} does not exist")))
}
