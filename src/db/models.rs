//! Rows as diesel loads them, and their checked conversion into domain values.

use diesel::Queryable;
use serde::Serialize;

use super::DbError;
use crate::domain::{
    BillingSchedule, CollectionMethod, Customer, CustomerId, CustomerKind, InvoiceId,
    InvoiceStatus, InvoicingStatus, LedgerEntry, LineId, OfferStatus, PaymentStatus, Plan, PlanId,
    PlanStatus, Tier, Ts,
};

fn bad<E: std::fmt::Display>(table: &str, id: i64) -> impl FnOnce(E) -> DbError + '_ {
    move |e| DbError::BadRow(format!("{table} {id}: {e}"))
}

#[derive(Debug, Clone, Queryable)]
pub struct CustomerRow {
    pub id: i64,
    pub external_ref: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub kind: String,
    pub stripe_customer_id: Option<String>,
    pub sponsorship_pending: bool,
    pub monthly_discounted_price: i64,
    pub annual_discounted_price: i64,
    pub minimum_licenses: Option<i32>,
    pub required_plan_tier: Option<i16>,
    pub exempt_from_license_number_check: bool,
    pub flat_discount: i64,
    pub flat_discounted_months: i32,
    pub last_usage_report_at: Option<Ts>,
    pub seat_count: Option<i32>,
    pub created_at: Ts,
}

impl CustomerRow {
    pub fn into_domain(self) -> Result<Customer, DbError> {
        let id = self.id;
        Ok(Customer {
            id,
            external_ref: self.external_ref,
            name: self.name,
            email: self.email,
            kind: CustomerKind::parse(&self.kind).map_err(bad("customer", id))?,
            stripe_customer_id: self.stripe_customer_id,
            sponsorship_pending: self.sponsorship_pending,
            monthly_discounted_price: self.monthly_discounted_price,
            annual_discounted_price: self.annual_discounted_price,
            minimum_licenses: self.minimum_licenses,
            required_plan_tier: self
                .required_plan_tier
                .map(|t| Tier::from_code(i64::from(t)))
                .transpose()
                .map_err(bad("customer", id))?,
            exempt_from_license_number_check: self.exempt_from_license_number_check,
            flat_discount: self.flat_discount,
            flat_discounted_months: self.flat_discounted_months,
            last_usage_report_at: self.last_usage_report_at,
            seat_count: self.seat_count,
        })
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct PlanRow {
    pub id: i64,
    pub customer_id: i64,
    pub tier: i16,
    pub status: i16,
    pub billing_schedule: i16,
    pub fixed_price: Option<i64>,
    pub price_per_license: Option<i64>,
    pub discount: Option<String>,
    pub automanage_licenses: bool,
    pub charge_automatically: bool,
    pub billing_cycle_anchor: Ts,
    pub next_invoice_date: Option<Ts>,
    pub invoiced_through_id: Option<i64>,
    pub end_date: Option<Ts>,
    pub invoicing_status: i16,
    pub stale_audit_log_data_email_sent: bool,
    pub reminder_to_review_plan_email_sent: bool,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub needs_attention: Option<String>,
    pub error_count: i32,
    pub last_error: Option<String>,
    pub next_retry_at: Option<Ts>,
    pub created_at: Ts,
    pub claim_token: i64,
    pub credit_cents: i64,
}

/// A plan with the worker's bookkeeping (lease, errors) beside the domain fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub plan: Plan,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub error_count: i32,
    pub last_error: Option<String>,
    pub next_retry_at: Option<Ts>,
}

impl PlanRow {
    pub fn into_record(self) -> Result<PlanRecord, DbError> {
        let id = self.id;
        let plan = Plan {
            id,
            customer_id: self.customer_id,
            tier: Tier::from_code(i64::from(self.tier)).map_err(bad("customer_plan", id))?,
            status: PlanStatus::from_code(i64::from(self.status))
                .map_err(bad("customer_plan", id))?,
            billing_schedule: BillingSchedule::from_code(i64::from(self.billing_schedule))
                .map_err(bad("customer_plan", id))?,
            fixed_price: self.fixed_price,
            price_per_license: self.price_per_license,
            discount: self.discount,
            automanage_licenses: self.automanage_licenses,
            charge_automatically: self.charge_automatically,
            billing_cycle_anchor: self.billing_cycle_anchor,
            next_invoice_date: self.next_invoice_date,
            invoiced_through: self.invoiced_through_id,
            end_date: self.end_date,
            invoicing_status: InvoicingStatus::from_code(i64::from(self.invoicing_status))
                .map_err(bad("customer_plan", id))?,
            stale_audit_log_data_email_sent: self.stale_audit_log_data_email_sent,
            reminder_to_review_plan_email_sent: self.reminder_to_review_plan_email_sent,
            needs_attention: self.needs_attention,
            credit: self.credit_cents,
        };
        Ok(PlanRecord {
            plan,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            error_count: self.error_count,
            last_error: self.last_error,
            next_retry_at: self.next_retry_at,
        })
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct LedgerRow {
    pub id: i64,
    pub plan_id: i64,
    pub is_renewal: bool,
    pub event_time: Ts,
    pub licenses: i32,
    pub licenses_at_next_renewal: Option<i32>,
}

impl From<LedgerRow> for LedgerEntry {
    fn from(r: LedgerRow) -> Self {
        LedgerEntry {
            id: r.id,
            plan_id: r.plan_id,
            is_renewal: r.is_renewal,
            event_time: r.event_time,
            licenses: r.licenses,
            licenses_at_next_renewal: r.licenses_at_next_renewal,
        }
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct OfferRow {
    pub id: i64,
    pub customer_id: i64,
    pub fixed_price: i64,
    pub tier: i16,
    pub status: i16,
    pub sent_invoice_id: Option<String>,
    pub created_at: Ts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: i64,
    pub customer_id: i64,
    pub fixed_price: i64,
    pub tier: Tier,
    pub status: OfferStatus,
    pub sent_invoice_id: Option<String>,
}

impl OfferRow {
    pub fn into_domain(self) -> Result<Offer, DbError> {
        let id = self.id;
        Ok(Offer {
            id,
            customer_id: self.customer_id,
            fixed_price: self.fixed_price,
            tier: Tier::from_code(i64::from(self.tier)).map_err(bad("customer_plan_offer", id))?,
            status: OfferStatus::from_code(i64::from(self.status))
                .map_err(bad("customer_plan_offer", id))?,
            sent_invoice_id: self.sent_invoice_id,
        })
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct InvoiceRow {
    #[diesel(deserialize_as = i64)]
    pub id: InvoiceId,
    #[diesel(deserialize_as = i64)]
    pub plan_id: PlanId,
    #[diesel(deserialize_as = i64)]
    pub customer_id: CustomerId,
    pub event_time: Ts,
    #[diesel(deserialize_as = String)]
    pub status: InvoiceStatus,
    #[diesel(deserialize_as = String)]
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<i32>,
    pub total_cents: i64,
    pub stripe_invoice_id: Option<String>,
    pub stripe_finalized: bool,
    pub created_at: Ts,
    pub sent_at: Option<Ts>,
}

#[derive(Debug, Clone, Queryable)]
pub struct LineRow {
    #[diesel(deserialize_as = i64)]
    pub id: LineId,
    #[diesel(deserialize_as = i64)]
    pub invoice_id: InvoiceId,
    #[diesel(deserialize_as = i64)]
    pub plan_id: PlanId,
    pub position: i32,
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    pub unit_amount_cents: i64,
    pub amount_cents: i64,
    pub amount_only: bool,
    pub period_start: Ts,
    pub period_end: Ts,
    pub ledger_entry_id: Option<i64>,
    pub stripe_invoice_item_id: Option<String>,
}

/// A local invoice with its lines in creation order, and its payment as Stripe's webhooks told
/// it (none before the first event).
#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    pub invoice: InvoiceRow,
    pub lines: Vec<LineRow>,
    pub payment: Option<PaymentRow>,
}

#[derive(Debug, Clone, Queryable)]
pub struct PaymentRow {
    #[diesel(deserialize_as = i64)]
    pub invoice_id: InvoiceId,
    #[diesel(deserialize_as = String)]
    pub status: PaymentStatus,
    pub status_at: Ts,
    pub attempt_count: i32,
    pub hosted_invoice_url: Option<String>,
    pub updated_at: Ts,
}

#[derive(Debug, Clone, Queryable, Serialize, schemars::JsonSchema)]
pub struct PlanEventRow {
    pub id: i64,
    pub kind: String,
    pub plan_id: i64,
    pub customer_id: i64,
    pub old_status: Option<i16>,
    pub new_status: Option<i16>,
    pub old_tier: Option<i16>,
    pub new_tier: Option<i16>,
    pub message: Option<String>,
    pub event_time: Ts,
    pub created_at: Ts,
    pub consumed_at: Option<Ts>,
}

/// A pass as recorded (`status`'s `last_pass`).
#[derive(Debug, Clone, Queryable, Serialize, schemars::JsonSchema)]
pub struct PassRunRow {
    pub id: i64,
    pub worker: String,
    pub now: Ts,
    pub started_at: Ts,
    pub finished_at: Option<Ts>,
    pub plans_considered: i32,
    pub plans_invoiced: i32,
    pub invoices: i32,
    pub needs_attention: i32,
    pub failures: i32,
}
