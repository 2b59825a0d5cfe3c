//! Sending one local invoice to the payment gateway, resumable at every step: the Stripe
//! customer, the draft invoice (found again by metadata after the idempotency window), its
//! items, finalization. Each Stripe id is stored as soon as it is known.

use chrono::Duration;
use tracing::{info, info_span, Instrument};

use crate::billing;
use crate::db::models::{InvoiceRecord, InvoiceRow};
use crate::db::repo::{self, InvoiceFilter};
use crate::domain::{CollectionMethod, InvoiceId, LedgerEntryId};
use crate::error::AppError;
use crate::stripe::{
    GatewayError, NewInvoice, NewItem, PaymentGateway, RemoteInvoice, StripeInvoiceStatus,
};

use super::customer::Held;

pub(super) async fn emit<G: PaymentGateway>(
    held: &Held<'_>,
    gateway: Option<&G>,
    invoice_id: InvoiceId,
) -> Result<usize, AppError> {
    let filter = InvoiceFilter {
        ids: Some(vec![invoice_id]),
        ..InvoiceFilter::default()
    };
    let Some(record) = held
        .read(|c| Ok(repo::list_invoices(c, &filter)?))
        .await?
        .into_iter()
        .next()
    else {
        return Err(AppError::NotFound(format!("invoice {invoice_id} vanished")));
    };
    let inv = &record.invoice;
    if let Some(g) = gateway {
        let span = info_span!("emit", invoice.id = invoice_id.0);
        push_to_gateway(held, g, &record).instrument(span).await?;
    }
    // In a dry run this is undone with everything else; the report says "would_send".
    held.write(|c| Ok(repo::mark_invoice_sent(c, invoice_id, held.now)?))
        .await?;
    if held.opts.dry_run {
        info!(
            invoice.id = invoice_id.0,
            total_cents = inv.total_cents,
            lines = record.lines.len(),
            "invoice computed (dry run: not sent)"
        );
    } else {
        info!(
            invoice.id = invoice_id.0,
            total_cents = inv.total_cents,
            lines = record.lines.len(),
            "invoice sent"
        );
    }
    Ok(record.lines.len())
}

/// Stripe keeps idempotency keys for at least 24 hours; older invoices are looked up first.
const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// What a Stripe invoice found on a resume allows.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// A draft: add the missing items, then finalize.
    Draft,
    /// Finalized with the local total (a previous attempt got that far): nothing to send.
    Finalized,
}

/// Judges the Stripe invoice that a local invoice is resumed into. Anything but a draft or a
/// finalized invoice with the local total means that someone changed it in Stripe (or Stripe
/// finalized a partial invoice): the worker must not go on.
fn judge_resume(
    remote: Option<&RemoteInvoice>,
    stripe_id: &str,
    local: &InvoiceRow,
) -> Result<Resume, GatewayError> {
    let Some(r) = remote else {
        return Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} of local invoice {} no longer exists (deleted in Stripe); it is not sent again automatically",
            local.id
        )));
    };
    match &r.status {
        StripeInvoiceStatus::Draft => Ok(Resume::Draft),
        s if s.stands() && r.total == local.total_cents => Ok(Resume::Finalized),
        s if s.stands() => Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} is {} with a total of {} cents, but local invoice {} totals {} cents",
            r.status, r.total, local.id, local.total_cents
        ))),
        other => Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} of local invoice {} is {other} in Stripe (changed outside plan-invoicer); it is not sent again automatically",
            local.id
        ))),
    }
}

async fn push_to_gateway<G: PaymentGateway>(
    held: &Held<'_>,
    g: &G,
    record: &InvoiceRecord,
) -> Result<(), AppError> {
    let inv = &record.invoice;
    let customer = held
        .read(|c| billing::customer(c, inv.customer_id.0))
        .await?;
    let stripe_customer = match &customer.stripe_customer_id {
        Some(id) => id.clone(),
        None => {
            let id = g.create_customer(&customer).await?;
            held.write(|c| Ok(repo::set_stripe_customer_id(c, customer.id, &id)?))
                .await?;
            id
        }
    };
    let stale = held.now - inv.created_at >= Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
    // A resumed invoice is read back first: only a draft may get items.
    let (stripe_invoice, resume) = match &inv.stripe_invoice_id {
        Some(id) => {
            let remote = g.retrieve_invoice(id).await?;
            (id.clone(), judge_resume(remote.as_ref(), id, inv)?)
        }
        None => {
            let found = if stale {
                g.find_invoice(&stripe_customer, inv.id).await?
            } else {
                None
            };
            let (id, resume) = match found {
                Some(remote) => {
                    let resume = judge_resume(Some(&remote), &remote.id, inv)?;
                    (remote.id, resume)
                }
                None => {
                    let plan = held.read(|c| billing::plan(c, inv.plan_id.0)).await?.plan;
                    let start = record
                        .lines
                        .iter()
                        .map(|l| l.period_start)
                        .min()
                        .unwrap_or(inv.event_time);
                    let end = record
                        .lines
                        .iter()
                        .map(|l| l.period_end)
                        .max()
                        .unwrap_or(inv.event_time);
                    let new = NewInvoice {
                        local_id: inv.id,
                        plan_id: inv.plan_id,
                        stripe_customer: &stripe_customer,
                        charge_automatically: inv.collection_method
                            == CollectionMethod::ChargeAutomatically,
                        days_until_due: inv.days_until_due.and_then(|d| u32::try_from(d).ok()),
                        statement_descriptor: plan.name(),
                        period_start: start,
                        period_end: end,
                    };
                    (g.create_invoice(&new).await?, Resume::Draft)
                }
            };
            held.write(|c| Ok(repo::set_invoice_stripe_id(c, inv.id, &id)?))
                .await?;
            (id, resume)
        }
    };
    let missing: Vec<_> = record
        .lines
        .iter()
        .filter(|l| l.stripe_invoice_item_id.is_none())
        .collect();
    let known = if (stale || resume == Resume::Finalized) && !missing.is_empty() {
        g.find_items(&stripe_invoice).await?
    } else {
        Default::default()
    };
    for line in missing {
        let id = match (known.get(&line.id), &resume) {
            (Some(id), _) => id.clone(),
            (None, Resume::Finalized) => {
                return Err(GatewayError::Mismatch(format!(
                    "Stripe invoice {stripe_invoice} is finalized without an item for line {} of local invoice {}",
                    line.id, inv.id
                ))
                .into())
            }
            (None, Resume::Draft) => {
                let item = NewItem {
                    local_id: line.id,
                    stripe_customer: &stripe_customer,
                    stripe_invoice: &stripe_invoice,
                    description: &line.description,
                    quantity_unit: (!line.amount_only)
                        .then_some((line.quantity, line.unit_amount_cents)),
                    amount: line.amount_cents,
                    period_start: line.period_start,
                    period_end: line.period_end,
                    ledger_entry_id: line.ledger_entry_id.map(LedgerEntryId),
                };
                g.create_item(&item).await?
            }
        };
        held.write(|c| Ok(repo::set_line_stripe_id(c, line.id, &id)?))
            .await?;
    }
    if !inv.stripe_finalized {
        if resume == Resume::Draft {
            let finalized = g.finalize(&stripe_invoice, inv.id).await?;
            if finalized.total != inv.total_cents {
                return Err(GatewayError::Mismatch(format!(
                    "Stripe invoice {stripe_invoice} totals {} cents but local invoice {} totals {} cents",
                    finalized.total, inv.id, inv.total_cents
                ))
                .into());
            }
        }
        held.write(|c| Ok(repo::set_invoice_finalized(c, inv.id)?))
            .await?;
    }
    Ok(())
}
