//! Plain values of the plan model (docs/RULES.md §1), as the pure core sees them.

use chrono::{DateTime, Utc};

use super::{BillingSchedule, CustomerKind, InvoicingStatus, PlanStatus, Tier};

pub type Ts = DateTime<Utc>;

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: i64,
    pub external_ref: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub kind: CustomerKind,
    pub stripe_customer_id: Option<String>,
    pub sponsorship_pending: bool,
    pub monthly_discounted_price: i64,
    pub annual_discounted_price: i64,
    pub minimum_licenses: Option<i32>,
    pub required_plan_tier: Option<Tier>,
    pub exempt_from_license_number_check: bool,
    pub flat_discount: i64,
    pub flat_discounted_months: i32,
    pub last_usage_report_at: Option<Ts>,
    /// The latest seat count the host reported (`plan seats`), if any.
    pub seat_count: Option<i32>,
}

impl Customer {
    /// A customer with Zulip's defaults, for tests and the CLI.
    pub fn new(id: i64, name: &str, kind: CustomerKind) -> Self {
        Customer {
            id,
            external_ref: None,
            name: name.to_string(),
            email: None,
            kind,
            stripe_customer_id: None,
            sponsorship_pending: false,
            monthly_discounted_price: 0,
            annual_discounted_price: 0,
            minimum_licenses: None,
            required_plan_tier: None,
            exempt_from_license_number_check: false,
            flat_discount: 2000,
            flat_discounted_months: 0,
            last_usage_report_at: None,
            seat_count: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: i64,
    pub customer_id: i64,
    pub tier: Tier,
    pub status: PlanStatus,
    pub billing_schedule: BillingSchedule,
    pub fixed_price: Option<i64>,
    pub price_per_license: Option<i64>,
    pub discount: Option<String>,
    pub automanage_licenses: bool,
    pub charge_automatically: bool,
    pub billing_cycle_anchor: Ts,
    pub next_invoice_date: Option<Ts>,
    pub invoiced_through: Option<i64>,
    pub end_date: Option<Ts>,
    pub invoicing_status: InvoicingStatus,
    pub stale_audit_log_data_email_sent: bool,
    pub reminder_to_review_plan_email_sent: bool,
    pub needs_attention: Option<String>,
    /// A credit in cents for the unused part of the plan this one replaced at once (a tier
    /// upgrade), given on this plan's first invoice with a renewal line.
    pub credit: i64,
}

impl Plan {
    pub fn is_free_trial(&self) -> bool {
        self.status == PlanStatus::FreeTrial
    }

    pub fn name(&self) -> &'static str {
        self.tier.plan_name()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: i64,
    pub plan_id: i64,
    pub is_renewal: bool,
    pub event_time: Ts,
    pub licenses: i32,
    pub licenses_at_next_renewal: Option<i32>,
}
