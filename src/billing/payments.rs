//! Applies one Stripe invoice event (from a webhook) to the local invoice it names, in one
//! transaction: the event recorded by id (a redelivery changes nothing), the payment status
//! moved forward only (docs/RULES.md, "Payments"), and each change written to the plan's events
//! so the host application hears of it through the feed.

use crate::db::payments::{self, NewPayment};
use crate::db::repo::{self, InvoiceFilter, NewEvent};
use crate::db::Conn;
pub use crate::domain::InvoiceEvent;
use crate::domain::{EventKind, InvoiceId, PaymentStatus, Ts};
use crate::error::AppError;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded and applied: the invoice's payment row changed.
    Applied,
    /// Recorded; it changed nothing (an older state arriving late).
    Unchanged,
    /// Seen before: nothing done.
    Duplicate,
    /// Another event type, or an invoice that is not ours: recorded, nothing else.
    Ignored,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

pub fn apply_invoice_event(
    conn: &mut Conn,
    e: &InvoiceEvent,
    now: Ts,
) -> Result<Outcome, AppError> {
    conn.transaction(|c| {
        let kind = EventKind::parse(&e.kind)
            .ok()
            .filter(|k| PaymentStatus::handles(*k));
        if !payments::record_event(c, &e.id, &e.kind, e.local_invoice_id, "received", now)? {
            return Ok(Outcome::Duplicate);
        }
        let outcome = apply(c, kind, e, now)?;
        payments::set_event_outcome(c, &e.id, outcome.name())?;
        Ok(outcome)
    })
}

fn apply(
    c: &mut Conn,
    kind: Option<EventKind>,
    e: &InvoiceEvent,
    now: Ts,
) -> Result<Outcome, AppError> {
    let (Some(kind), Some(local)) = (kind, e.local_invoice_id) else {
        return Ok(Outcome::Ignored);
    };
    let filter = InvoiceFilter {
        ids: Some(vec![InvoiceId(local)]),
        ..InvoiceFilter::default()
    };
    let Some(record) = repo::list_invoices(c, &filter)?.into_iter().next() else {
        return Ok(Outcome::Ignored);
    };
    // The metadata names our invoice; Stripe's id must be the one we stored for it.
    if record.invoice.stripe_invoice_id.is_some()
        && record.invoice.stripe_invoice_id != e.stripe_invoice_id
    {
        return Ok(Outcome::Ignored);
    }
    let current = payments::payment_of(c, local)?;
    let status_now = current.as_ref().map(|p| p.status);
    let next = PaymentStatus::after(status_now, kind);
    let attempts_before = current.as_ref().map_or(0, |p| p.attempt_count);
    let attempts = attempts_before.max(e.attempt_count.unwrap_or(0));
    let url = e
        .hosted_invoice_url
        .clone()
        .or_else(|| current.as_ref().and_then(|p| p.hosted_invoice_url.clone()));
    let status = next.or(status_now).unwrap_or(PaymentStatus::Open);
    let failed_attempt = kind == EventKind::InvoicePaymentFailed && attempts > attempts_before;
    let action = kind == EventKind::InvoicePaymentActionRequired && status == PaymentStatus::Open;
    if next.is_none() && !failed_attempt && !action {
        return Ok(Outcome::Unchanged);
    }
    let status_at = match (next, &current) {
        (Some(_), _) | (None, None) => e.created,
        (None, Some(p)) => p.status_at,
    };
    payments::save_payment(
        c,
        &NewPayment {
            invoice_id: local,
            status,
            status_at,
            attempt_count: attempts,
            hosted_invoice_url: url.as_deref(),
        },
        now,
    )?;
    let inv = &record.invoice;
    repo::insert_event(
        c,
        &NewEvent {
            kind,
            plan_id: inv.plan_id.0,
            customer_id: inv.customer_id.0,
            old_status: None,
            new_status: None,
            old_tier: None,
            new_tier: None,
            message: Some(format!(
                "invoice {} ({}): {}, {} cents, attempt {}",
                inv.id,
                e.stripe_invoice_id.as_deref().unwrap_or("-"),
                status.name(),
                inv.total_cents,
                attempts
            )),
            event_time: e.created,
        },
        now,
    )?;
    Ok(Outcome::Applied)
}
