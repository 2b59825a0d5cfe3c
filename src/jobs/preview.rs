//! `plan preview`: the pass's own step for one plan, inside a transaction that is rolled back.

use serde::Serialize;

use crate::billing::{self, invoice_step, Checks, Step};
use crate::db::repo::{self, InvoiceFilter};
use crate::db::{Conn, Db};
use crate::domain::{PlanStatus, Ts};
use crate::error::AppError;
use crate::jobs::invoice_plans::MAX_CATCH_UP_CYCLES;
use crate::views::{InvoiceView, WOULD_SEND};

/// What `plan preview` shows: the invoices a plan would get at its next invoice date (or at
/// `at`), and the end-of-cycle changes that would come first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Preview {
    pub plan_id: i64,
    pub at: Ts,
    pub status_before: &'static str,
    pub status_after: &'static str,
    pub changes: Vec<PreviewChange>,
    pub invoices: Vec<InvoiceView>,
    /// Why invoicing would wait (stale usage data, the catch-up bound).
    pub waiting: Option<String>,
}

/// A plan event or notice the pass would write.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PreviewChange {
    pub kind: String,
    pub plan_id: i64,
    pub old_status: Option<&'static str>,
    pub new_status: Option<&'static str>,
    pub message: Option<String>,
    pub event_time: Ts,
}

/// The pass's own step for one plan, inside a transaction that is rolled back: nothing is
/// written, nothing is sent.
pub fn preview(db: &Db, plan_id: i64, at: Option<Ts>) -> Result<Preview, AppError> {
    let dry = db.dedicated()?;
    dry.run(|conn| conn.rolled_back(|c| preview_in(c, plan_id, at)))
}

/// [`preview`]'s work inside the caller's transaction, which the caller must roll back (the
/// console previews an action's effect: the action and this, in one rolled-back transaction).
pub fn preview_in(c: &mut Conn, plan_id: i64, at: Option<Ts>) -> Result<Preview, AppError> {
    let p = billing::plan(c, plan_id)?.plan;
    let Some(at) = at.or(p.next_invoice_date) else {
        return Err(crate::error::refuse(
            "at",
            format!("plan {plan_id} has no next invoice date: there is nothing to preview (give {{field}})"),
        ));
    };
    let events = |c: &mut Conn| -> Result<Vec<crate::db::models::PlanEventRow>, AppError> {
        let mut all = vec![];
        for id in repo::plan_ids_of_customer(c, p.customer_id)? {
            all.extend(repo::events_of_plan(c, id)?);
        }
        Ok(all)
    };
    let seen = events(c)?.iter().map(|e| e.id).max().unwrap_or(0);
    let mut ids = vec![];
    let mut waiting = None;
    for n in 0..MAX_CATCH_UP_CYCLES {
        let checks = if n == 0 {
            Checks::FirstDueDate
        } else {
            Checks::LaterDueDate
        };
        match invoice_step(c, plan_id, at, checks)? {
            Step::NotDue => break,
            Step::Waiting(reason) => {
                waiting = Some(reason);
                break;
            }
            Step::Advanced(None) => {}
            Step::Advanced(Some(id)) => ids.push(id),
        }
    }
    let status = |code: Option<i16>| {
        code.and_then(|s| PlanStatus::from_code(i64::from(s)).ok())
            .map(PlanStatus::name)
    };
    let changes = events(c)?
        .into_iter()
        .filter(|e| e.id > seen)
        .map(|e| PreviewChange {
            old_status: status(e.old_status),
            new_status: status(e.new_status),
            kind: e.kind,
            plan_id: e.plan_id,
            message: e.message,
            event_time: e.event_time,
        })
        .collect();
    let filter = InvoiceFilter {
        ids: Some(ids),
        ..InvoiceFilter::default()
    };
    let invoices = repo::list_invoices(c, &filter)?
        .iter()
        .map(|r| {
            let mut v = InvoiceView::from(r);
            v.status = WOULD_SEND;
            v
        })
        .collect();
    let after = billing::plan(c, plan_id)?.plan;
    Ok(Preview {
        plan_id,
        at,
        status_before: p.status.name(),
        status_after: after.status.name(),
        changes,
        invoices,
        waiting,
    })
}
