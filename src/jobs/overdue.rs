//! `overdue`: Zulip's policy for small customers behind on payments
//! (`downgrade_small_realms_behind_on_payments_as_needed`, docs/RULES.md "Payments"). For each
//! Cloud customer with a Stripe customer: a plan of fewer than the policy's seats whose newest
//! invoices are all unpaid ends now and its open invoices are voided; a customer without a
//! plan whose newest invoice is unpaid has its open invoices voided; a larger plan is left to a
//! person. The decision and the plan's end are one transaction that also lists the invoices
//! to void; the voids follow, each under a key of its own, so a run cut short is finished by
//! the next run and nothing is voided or ended twice.

use serde::Serialize;
use tracing::info;

use crate::billing::payments::{end_for_nonpayment, record_void};
use crate::db::payments as rows;
use crate::db::repo;
use crate::db::Db;
use crate::domain::{
    overdue_decision, InvoiceId, OverdueDecision, OverdueFacts, OverduePolicy, PaymentStatus, Ts,
};
use crate::error::AppError;
use crate::stripe::client::StripeGateway;
use crate::stripe::StripeInvoiceStatus;

#[derive(Debug, Clone, Default)]
pub struct OverdueOptions {
    pub policy: OverduePolicy,
    /// Decide and report, write and send nothing.
    pub dry_run: bool,
}

pub use crate::views::OverdueAction as Action;

#[derive(Debug, Clone, Default, Serialize)]
pub struct OverdueReport {
    pub dry_run: bool,
    /// Customers with an unpaid invoice (the only ones the policy can act on).
    pub customers_checked: usize,
    /// Plans ended for nonpayment (and their invoices to void).
    pub plans_ended: Vec<Action>,
    /// Customers without a plan whose open invoices are voided.
    pub invoices_only: Vec<Action>,
    /// Customers at or above the seat bound (with or without a live plan): a person decides.
    pub left_to_a_person: Vec<Action>,
    /// Invoices voided in Stripe by this run (including those a cut-short run had asked for).
    pub invoices_voided: usize,
    /// Invoices paid meanwhile: not voided.
    pub found_paid: usize,
}

/// Every customer's decision, from the local records (also `status`'s overdue list).
pub fn decide(
    c: &mut crate::db::Conn,
    policy: &OverduePolicy,
) -> Result<Vec<(OverdueDecision, Action)>, AppError> {
    {
        let mut out = vec![];
        for cust in rows::overdue_candidates(c)? {
            let live_plan = repo::live_plan_of(c, cust.id)?.map(|r| r.plan.id);
            // The seats last reported, else the licenses of the customer's newest plan.
            let seats = match cust.seat_count {
                Some(s) => i64::from(s),
                None => match repo::plan_ids_of_customer(c, cust.id)?.into_iter().max() {
                    Some(newest) => repo::ledger_of(c, newest)?
                        .last()
                        .map_or(0, |e| i64::from(e.licenses)),
                    None => 0,
                },
            };
            let sent = rows::sent_invoices(c, cust.id)?;
            let facts = OverdueFacts {
                kind: cust.kind,
                has_stripe_customer: cust.stripe_customer_id.is_some(),
                seats,
                live_plan,
                newest: sent.iter().map(|i| i.payment_status).collect(),
            };
            let decision = overdue_decision(&facts, policy);
            let reason = match decision {
                OverdueDecision::LeaveToAPerson { seats, .. } => Some(format!(
                    "{seats} seats, at or above the policy's {}: a person decides",
                    policy.seats
                )),
                _ => None,
            };
            let action = Action {
                action: None,
                reason,
                customer_id: cust.id,
                plan_id: live_plan,
                seats: Some(seats),
                invoices: sent
                    .iter()
                    .filter(|i| i.payment_status.is_some_and(PaymentStatus::is_unpaid))
                    .map(|i| i.id)
                    .collect(),
            };
            out.push((decision, action));
        }
        Ok(out)
    }
}

pub async fn overdue(
    db: &Db,
    gateway: Option<&StripeGateway>,
    opts: &OverdueOptions,
    now: Ts,
) -> Result<OverdueReport, AppError> {
    let decisions = db.run(|c| decide(c, &opts.policy))?;
    let mut report = OverdueReport {
        dry_run: opts.dry_run,
        customers_checked: decisions.len(),
        ..OverdueReport::default()
    };
    for (decision, action) in decisions {
        match decision {
            OverdueDecision::Nothing => {}
            OverdueDecision::LeaveToAPerson { .. } => report.left_to_a_person.push(action),
            OverdueDecision::EndPlanAndVoid { plan_id } => {
                if !opts.dry_run {
                    db.run_async(|c| end_for_nonpayment(c, plan_id, &action.invoices, now))
                        .await?;
                    info!(
                        customer.id = action.customer_id,
                        plan.id = plan_id,
                        "plan ended for nonpayment"
                    );
                }
                report.plans_ended.push(action);
            }
            OverdueDecision::VoidOpenInvoices => {
                if !opts.dry_run {
                    db.run_async(|c| {
                        Ok::<_, AppError>(rows::request_voids(c, &action.invoices, now)?)
                    })
                    .await?;
                }
                report.invoices_only.push(action);
            }
        }
    }
    if opts.dry_run {
        return Ok(report);
    }
    // The voids asked for, by this run or by one cut short.
    let pending = db
        .run_async(|c| Ok::<_, AppError>(rows::pending_voids(c)?))
        .await?;
    if pending.is_empty() {
        return Ok(report);
    }
    let Some(gateway) = gateway else {
        return Err(crate::error::invalid(
            "invoices are waiting to be voided: STRIPE_API_KEY is needed",
        ));
    };
    let installation = db.run_async(crate::db::installation::installation).await?;
    crate::stripe::PaymentGateway::set_installation(gateway, &installation);
    for (id, stripe_id) in pending {
        match gateway.void_invoice(&stripe_id, InvoiceId(id)).await? {
            StripeInvoiceStatus::Void => {
                db.run_async(|c| record_void(c, id, now)).await?;
                report.invoices_voided += 1;
            }
            _ => {
                // Paid (or otherwise settled) meanwhile: nothing to void; its webhook tells.
                db.run_async(|c| Ok::<_, AppError>(rows::void_done(c, id, now)?))
                    .await?;
                report.found_paid += 1;
            }
        }
    }
    Ok(report)
}
