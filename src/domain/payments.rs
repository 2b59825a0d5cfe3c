//! What a Stripe event says about one of our invoices, read from a webhook or from Stripe's
//! list of events: the same record either way, applied by the same code.

use super::Ts;

/// What a Stripe event says about an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceEvent {
    /// Stripe's event id (`evt_…`).
    pub id: String,
    /// Stripe's event type (`invoice.paid`, …).
    pub kind: String,
    /// When Stripe created the event.
    pub created: Ts,
    /// The invoice object's id (`in_…`).
    pub stripe_invoice_id: Option<String>,
    /// `metadata.plan_invoicer_invoice_id` of the invoice object.
    pub local_invoice_id: Option<i64>,
    pub attempt_count: Option<i32>,
    pub hosted_invoice_url: Option<String>,
}
