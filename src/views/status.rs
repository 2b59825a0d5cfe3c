//! `status`'s document (`plan-invoicer status --json`, `GET /v1/status`): what the worker is
//! doing and what waits for someone.

use serde::Serialize;

use crate::db::models::{InvoiceRow, PassRunRow, PlanRecord};
use crate::domain::{OverdueDecision, Ts};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusView {
    /// The instant the status is taken at.
    pub now: Ts,
    /// Plans due at `now`.
    pub due: Vec<PlanState>,
    /// Plans a worker holds a lease on.
    pub leased: Vec<PlanState>,
    /// Plans parked until someone acts (the reason is in `needs_attention`).
    pub needs_attention: Vec<PlanState>,
    /// Plans waiting to retry after an error.
    pub retrying: Vec<PlanState>,
    /// This database's installation id (in every Stripe key and object it makes).
    pub installation: String,
    pub unsent_invoices: UnsentInvoices,
    /// The plan due the longest, if any is due.
    pub oldest_overdue: Option<OldestDue>,
    /// The last pass that finished.
    pub last_pass: Option<PassRunRow>,
    /// What the overdue policy would do now, customer by customer.
    pub overdue: Vec<OverdueAction>,
    pub unpaid_invoices: UnpaidInvoices,
}

/// A plan's invoicing state.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlanState {
    pub plan_id: i64,
    pub customer_id: i64,
    pub status: &'static str,
    pub invoicing_status: &'static str,
    pub next_invoice_date: Option<Ts>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub needs_attention: Option<String>,
    pub next_retry_at: Option<Ts>,
    pub error_count: i32,
    pub last_error: Option<String>,
}

impl From<&PlanRecord> for PlanState {
    fn from(r: &PlanRecord) -> PlanState {
        PlanState {
            plan_id: r.plan.id,
            customer_id: r.plan.customer_id,
            status: r.plan.status.name(),
            invoicing_status: r.plan.invoicing_status.name(),
            next_invoice_date: r.plan.next_invoice_date,
            lease_owner: r.lease_owner.clone(),
            lease_expires_at: r.lease_expires_at,
            needs_attention: r.plan.needs_attention.clone(),
            next_retry_at: r.next_retry_at,
            error_count: r.error_count,
            last_error: r.last_error.clone(),
        }
    }
}

/// Invoices written locally and not yet confirmed by Stripe.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnsentInvoices {
    pub count: i64,
    /// The oldest of them (at most 20).
    pub oldest: Vec<UnsentInvoice>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnsentInvoice {
    pub invoice_id: i64,
    pub plan_id: i64,
    pub customer_id: i64,
    pub event_time: Ts,
    pub created_at: Ts,
    pub total_cents: i64,
    pub stripe_invoice_id: Option<String>,
}

impl From<&InvoiceRow> for UnsentInvoice {
    fn from(i: &InvoiceRow) -> UnsentInvoice {
        UnsentInvoice {
            invoice_id: i.id.0,
            plan_id: i.plan_id.0,
            customer_id: i.customer_id.0,
            event_time: i.event_time,
            created_at: i.created_at,
            total_cents: i.total_cents,
            stripe_invoice_id: i.stripe_invoice_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OldestDue {
    pub plan_id: i64,
    pub customer_id: i64,
    pub next_invoice_date: Option<Ts>,
}

/// What the overdue policy does about one customer (`overdue`'s report, `status`'s list).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OverdueAction {
    /// What the policy does (`status` lists it): end_plan_and_void, void_open_invoices or
    /// left_to_a_person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// Why the policy leaves the customer alone (left_to_a_person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub customer_id: i64,
    pub plan_id: Option<i64>,
    pub seats: Option<i64>,
    /// The unpaid invoices to void (local ids).
    pub invoices: Vec<i64>,
}

/// The name of an overdue decision in `status`'s list; `None` when the policy does nothing.
pub fn overdue_action_name(d: &OverdueDecision) -> Option<&'static str> {
    match d {
        OverdueDecision::Nothing => None,
        OverdueDecision::VoidOpenInvoices => Some("void_open_invoices"),
        OverdueDecision::EndPlanAndVoid { .. } => Some("end_plan_and_void"),
        OverdueDecision::LeaveToAPerson { .. } => Some("left_to_a_person"),
    }
}

/// Invoices Stripe says are open or uncollectible.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnpaidInvoices {
    pub count: i64,
    pub amount_cents: i64,
    pub oldest: Option<UnpaidInvoice>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UnpaidInvoice {
    pub invoice_id: i64,
    pub customer_id: i64,
    pub event_time: Ts,
}
