//! The JSON shapes of `cli.md` (plans, customers, ledger entries, invoices, status).

pub mod changes;
mod status;

pub use changes::{ChangeView, LastChange};

pub use status::{
    overdue_action_name, OldestDue, OverdueAction, PlanState, StatusView, UnpaidInvoice,
    UnpaidInvoices, UnsentInvoice, UnsentInvoices,
};

use serde::Serialize;

use crate::db::models::{InvoiceRecord, PlanRecord};
use crate::domain::{
    CollectionMethod, Customer, CustomerId, InvoiceId, LedgerEntry, PaymentStatus, PlanId,
    PlanStatus, Ts,
};

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct PlanView {
    pub id: i64,
    pub customer_id: i64,
    pub tier: &'static str,
    pub status: &'static str,
    pub billing_schedule: &'static str,
    pub automanage_licenses: bool,
    pub charge_automatically: bool,
    pub price_per_license_cents: Option<i64>,
    pub fixed_price_cents: Option<i64>,
    pub discount: Option<String>,
    pub billing_cycle_anchor: Ts,
    pub next_invoice_date: Option<Ts>,
    pub end_date: Option<Ts>,
    pub invoicing_status: &'static str,
    pub licenses: Option<i32>,
    pub licenses_at_next_renewal: Option<i32>,
    pub invoiced_through_ledger_id: Option<i64>,
    pub needs_attention: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub error_count: i32,
    pub last_error: Option<String>,
    pub next_retry_at: Option<Ts>,
    /// Who made the plan's newest change (`plan show`; absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<LastChange>,
}

impl PlanView {
    /// `ledger` is the plan's ledger in id order.
    pub fn new(r: &PlanRecord, ledger: &[LedgerEntry]) -> Self {
        let p = &r.plan;
        let last = ledger.iter().max_by_key(|e| e.id);
        let at_next = match p.status {
            PlanStatus::DowngradeAtEndOfCycle | PlanStatus::DowngradeAtEndOfFreeTrial => None,
            _ => last.and_then(|e| e.licenses_at_next_renewal),
        };
        PlanView {
            id: p.id,
            customer_id: p.customer_id,
            tier: p.tier.name(),
            status: p.status.name(),
            billing_schedule: p.billing_schedule.name(),
            automanage_licenses: p.automanage_licenses,
            charge_automatically: p.charge_automatically,
            price_per_license_cents: p.price_per_license,
            fixed_price_cents: p.fixed_price,
            discount: p.discount.clone(),
            billing_cycle_anchor: p.billing_cycle_anchor,
            next_invoice_date: p.next_invoice_date,
            end_date: p.end_date,
            invoicing_status: p.invoicing_status.name(),
            licenses: last.map(|e| e.licenses),
            licenses_at_next_renewal: at_next,
            invoiced_through_ledger_id: p.invoiced_through,
            needs_attention: p.needs_attention.clone(),
            lease_owner: r.lease_owner.clone(),
            lease_expires_at: r.lease_expires_at,
            error_count: r.error_count,
            last_error: r.last_error.clone(),
            next_retry_at: r.next_retry_at,
            last_change: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct LedgerView {
    pub id: i64,
    pub is_renewal: bool,
    pub event_time: Ts,
    pub licenses: i32,
    pub licenses_at_next_renewal: Option<i32>,
}

impl From<&LedgerEntry> for LedgerView {
    fn from(e: &LedgerEntry) -> Self {
        LedgerView {
            id: e.id,
            is_renewal: e.is_renewal,
            event_time: e.event_time,
            licenses: e.licenses,
            licenses_at_next_renewal: e.licenses_at_next_renewal,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct CustomerView {
    pub id: i64,
    pub external_ref: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub kind: &'static str,
    pub stripe_customer_id: Option<String>,
    pub monthly_discounted_price_cents: i64,
    pub annual_discounted_price_cents: i64,
    pub required_plan_tier: Option<&'static str>,
    pub minimum_licenses: Option<i32>,
    pub exempt_from_license_number_check: bool,
    pub flat_discount_cents: i64,
    pub flat_discounted_months: i32,
    pub last_usage_report_at: Option<Ts>,
    pub seat_count: Option<i32>,
    pub plan_ids: Vec<i64>,
    /// Who made the customer's newest change (`customer show`; absent after a write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<LastChange>,
}

impl CustomerView {
    pub fn new(c: &Customer, plan_ids: Vec<i64>) -> Self {
        CustomerView {
            id: c.id,
            external_ref: c.external_ref.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            kind: c.kind.name(),
            stripe_customer_id: c.stripe_customer_id.clone(),
            monthly_discounted_price_cents: c.monthly_discounted_price,
            annual_discounted_price_cents: c.annual_discounted_price,
            required_plan_tier: c.required_plan_tier.map(|t| t.name()),
            minimum_licenses: c.minimum_licenses,
            exempt_from_license_number_check: c.exempt_from_license_number_check,
            flat_discount_cents: c.flat_discount,
            flat_discounted_months: c.flat_discounted_months,
            last_usage_report_at: c.last_usage_report_at,
            seat_count: c.seat_count,
            plan_ids,
            last_change: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct LineView {
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    pub unit_amount_cents: i64,
    pub amount_cents: i64,
    pub period_start: Ts,
    pub period_end: Ts,
    pub ledger_entry_id: Option<i64>,
    pub stripe_invoice_item_id: Option<String>,
}

/// The status a dry run or a preview shows for an invoice it computed but did not send.
pub const WOULD_SEND: &str = "would_send";

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct InvoiceView {
    pub id: InvoiceId,
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub stripe_invoice_id: Option<String>,
    /// `pending` or `sent`; `would_send` in dry runs and previews ([`WOULD_SEND`]).
    pub status: &'static str,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<i32>,
    pub event_time: Ts,
    pub created_at: Ts,
    pub sent_at: Option<Ts>,
    pub total_cents: i64,
    pub lines: Vec<LineView>,
    /// open, paid, void or uncollectible, as Stripe's webhooks told it (null before the first).
    pub payment_status: Option<PaymentStatus>,
    /// When the payment status last changed.
    pub payment_status_at: Option<Ts>,
    /// Stripe's payment attempts so far.
    pub payment_attempt_count: i32,
    /// Stripe's page where the customer can see and pay the invoice.
    pub hosted_invoice_url: Option<String>,
}

impl From<&InvoiceRecord> for InvoiceView {
    fn from(r: &InvoiceRecord) -> Self {
        let i = &r.invoice;
        InvoiceView {
            id: i.id,
            plan_id: i.plan_id,
            customer_id: i.customer_id,
            stripe_invoice_id: i.stripe_invoice_id.clone(),
            status: i.status.name(),
            collection_method: i.collection_method,
            days_until_due: i.days_until_due,
            event_time: i.event_time,
            created_at: i.created_at,
            sent_at: i.sent_at,
            total_cents: i.total_cents,
            payment_status: r.payment.as_ref().map(|p| p.status),
            payment_status_at: r.payment.as_ref().map(|p| p.status_at),
            payment_attempt_count: r.payment.as_ref().map_or(0, |p| p.attempt_count),
            hosted_invoice_url: r
                .payment
                .as_ref()
                .and_then(|p| p.hosted_invoice_url.clone()),
            lines: r
                .lines
                .iter()
                .map(|l| LineView {
                    kind: l.kind.clone(),
                    description: l.description.clone(),
                    quantity: l.quantity,
                    unit_amount_cents: l.unit_amount_cents,
                    amount_cents: l.amount_cents,
                    period_start: l.period_start,
                    period_end: l.period_end,
                    ledger_entry_id: l.ledger_entry_id,
                    stripe_invoice_item_id: l.stripe_invoice_item_id.clone(),
                })
                .collect(),
        }
    }
}

/// What a create prints: the new row's id.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Created {
    pub id: i64,
}

/// What accepting an offer prints: the plan it created.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Accepted {
    pub plan_id: i64,
}

/// What a seat count prints: the ledger entry written (none when the plan ended or the count
/// changed nothing) and the plan's status afterwards.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SeatsView {
    pub ledger_entry: Option<LedgerView>,
    pub plan_status: &'static str,
}
