//! Applies one Stripe invoice event (from a webhook) to the local invoice it names, in one
//! transaction: the event recorded by id (a redelivery changes nothing), the payment status
//! moved forward only (docs/RULES.md, "Payments"), and each change written to the plan's events
//! so the host application hears of it through the feed.

use serde_json::{json, Value};

use crate::db::changes;
use crate::db::payments::{self, NewPayment};
use crate::db::repo::{self, InvoiceFilter, NewEvent};
use crate::db::Conn;
use crate::domain::change::{diff, plan_fields, Author, Change};
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
    /// An invoice of another installation on the same Stripe account: recorded, nothing else.
    Foreign,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Foreign => "foreign",
        }
    }
}

/// The webhook's actor in the change history.
pub const WEBHOOK_ACTOR: &str = "stripe:webhook";
/// `sync-payments`' actor in the change history.
pub const SYNC_ACTOR: &str = "system:sync-payments";
/// The overdue policy's actor in the change history.
pub const OVERDUE_ACTOR: &str = "system:overdue";

/// Applies one event; an applied one is recorded in the change history with `actor`
/// ([`WEBHOOK_ACTOR`] or [`SYNC_ACTOR`]).
pub fn apply_invoice_event(
    conn: &mut Conn,
    e: &InvoiceEvent,
    now: Ts,
    actor: &'static str,
) -> Result<Outcome, AppError> {
    conn.transaction(|c| {
        let kind = EventKind::parse(&e.kind)
            .ok()
            .filter(|k| PaymentStatus::handles(*k));
        if !payments::record_event(c, &e.id, &e.kind, e.local_invoice_id, "received", now)? {
            return Ok(Outcome::Duplicate);
        }
        let outcome = apply(c, kind, e, now, actor)?;
        payments::set_event_outcome(c, &e.id, outcome.name())?;
        Ok(outcome)
    })
}

fn apply(
    c: &mut Conn,
    kind: Option<EventKind>,
    e: &InvoiceEvent,
    now: Ts,
    actor: &'static str,
) -> Result<Outcome, AppError> {
    let (Some(kind), Some(local)) = (kind, e.local_invoice_id) else {
        return Ok(Outcome::Ignored);
    };
    // Another database billing through the same Stripe account made this invoice: its local
    // id means nothing here.
    if !crate::db::installation::installation(c)?.owns(e.installation.as_deref()) {
        return Ok(Outcome::Foreign);
    }
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
    let current = record.payment;
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
    let fields = |status: Option<PaymentStatus>, attempts: i32| json!({ "payment_status": status.map(|s| s.name()), "attempt_count": attempts });
    record_invoice_change(
        c,
        actor,
        (inv.id, inv.plan_id.0, inv.customer_id.0),
        "payment.status",
        (
            fields(status_now, attempts_before),
            fields(Some(status), attempts),
        ),
        now,
    )?;
    Ok(Outcome::Applied)
}

/// A change of an invoice's payment side in the history.
fn record_invoice_change(
    c: &mut Conn,
    actor: &'static str,
    (invoice, plan, customer): (InvoiceId, i64, i64),
    operation: &str,
    (before, after): (Value, Value),
    now: Ts,
) -> Result<(), AppError> {
    let (was, is) = diff(&before, &after);
    let change = Change {
        at: now,
        operation: operation.to_string(),
        customer_id: Some(customer),
        plan_id: Some(plan),
        new_plan_id: None,
        invoice_id: Some(invoice.0),
        objects: json!({ "customer": customer, "plan": plan, "invoice": invoice.0 }),
        before: was,
        after: is,
    };
    changes::record(c, &Author::system(actor), &change)?;
    Ok(())
}

/// The overdue policy's decision for a small plan, in one transaction: the plan ends now
/// (invoiced through its newest ledger entry, no next invoice), a
/// `plan.downgraded_for_nonpayment` event tells the host, and the unpaid invoices are asked to
/// be voided. A plan that is no longer live keeps its state; the voids are asked for anyway.
/// Returns whether the plan was ended by this call.
pub fn end_for_nonpayment(
    conn: &mut Conn,
    plan_id: i64,
    unpaid: &[i64],
    now: Ts,
) -> Result<bool, AppError> {
    conn.transaction(|c| {
        let Some(record) = repo::get_plan_locked(c, plan_id)? else {
            return Ok(false);
        };
        let mut p = record.plan;
        let ended = p.status.is_live();
        if ended {
            let before = plan_fields(&p);
            let old = super::end_now(c, &mut p, now)?;
            let (was, is) = diff(&before, &plan_fields(&p));
            let change = Change {
                at: now,
                operation: "overdue.end_plan".to_string(),
                customer_id: Some(p.customer_id),
                plan_id: Some(p.id),
                new_plan_id: None,
                invoice_id: None,
                objects: json!({ "customer": p.customer_id, "plan": p.id, "unpaid_invoices": unpaid }),
                before: was,
                after: is,
            };
            changes::record(c, &Author::system(OVERDUE_ACTOR), &change)?;
            let mut e = NewEvent::about(EventKind::PlanDowngradedForNonpayment, &p, now);
            e.old_status = Some(old);
            e.new_status = Some(p.status);
            e.old_tier = Some(p.tier);
            e.message = Some(format!(
                "{} unpaid invoices: the plan ended and its open invoices are voided",
                unpaid.len()
            ));
            repo::insert_event(c, &e, now)?;
        }
        payments::request_voids(c, unpaid, now)?;
        Ok(ended)
    })
}

/// Records that an invoice was voided in Stripe (the overdue policy's own void; the webhook
/// that follows changes nothing more).
pub fn record_void(conn: &mut Conn, invoice_id: i64, now: Ts) -> Result<(), AppError> {
    conn.transaction(|c| {
        let current = payments::payment_of(c, invoice_id)?;
        if let Some(next) =
            PaymentStatus::after(current.as_ref().map(|p| p.status), EventKind::InvoiceVoided)
        {
            payments::save_payment(
                c,
                &NewPayment {
                    invoice_id,
                    status: next,
                    status_at: now,
                    attempt_count: current.as_ref().map_or(0, |p| p.attempt_count),
                    hosted_invoice_url: current
                        .as_ref()
                        .and_then(|p| p.hosted_invoice_url.as_deref()),
                },
                now,
            )?;
        }
        payments::void_done(c, invoice_id, now)?;
        if let Some(inv) = repo::invoice_by_id(c, InvoiceId(invoice_id))? {
            let status =
                |p: Option<PaymentStatus>| json!({ "payment_status": p.map(|s| s.name()) });
            let was = current.as_ref().map(|p| p.status);
            let is = PaymentStatus::after(was, EventKind::InvoiceVoided).or(was);
            record_invoice_change(
                c,
                OVERDUE_ACTOR,
                (inv.id, inv.plan_id.0, inv.customer_id.0),
                "overdue.void",
                (status(was), status(is)),
                now,
            )?;
        }
        Ok(())
    })
}
