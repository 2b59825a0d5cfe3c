//! Where a finished local invoice goes. The pass persists invoices first (write-ahead) and then
//! hands each one to a sink; the sink must be idempotent for a given local invoice.

use crate::db::models::InvoiceRecord;
use crate::domain::Customer;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Worth retrying later (network, 429, 5xx).
    #[error("transient error from the invoice sink: {0}")]
    Retryable(String),
    /// The sink refused this invoice; the plan needs attention.
    #[error("the invoice sink refused the invoice: {0}")]
    Fatal(String),
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable(_))
    }
}

/// What a sink reports after emitting an invoice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emitted {
    /// The external (Stripe) customer id, when the sink created one.
    pub customer_external_id: Option<String>,
    pub external_invoice_id: Option<String>,
}

#[allow(async_fn_in_trait)]
pub trait InvoiceSink {
    /// Emits `invoice` for `customer`. Called again for the same invoice after a crash, so it
    /// must not create anything twice.
    async fn emit(
        &self,
        customer: &Customer,
        invoice: &InvoiceRecord,
    ) -> Result<Emitted, SinkError>;
}

/// Keeps invoices in the local database only (the records are the invoices).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalSink;

impl InvoiceSink for LocalSink {
    async fn emit(
        &self,
        _customer: &Customer,
        _invoice: &InvoiceRecord,
    ) -> Result<Emitted, SinkError> {
        Ok(Emitted::default())
    }
}
