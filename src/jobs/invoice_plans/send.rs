//! Sending one local invoice to the payment gateway, resumable at every step: the Stripe
//! customer, the draft invoice (found again by metadata after the idempotency window), its
//! items, finalization. Each Stripe id is stored as soon as it is known.

use chrono::Duration;
use tracing::{info, info_span, Instrument};

use crate::billing;
use crate::db::models::{InvoiceRecord, InvoiceRow, LineRow};
use crate::db::repo::{self, InvoiceFilter};
use crate::domain::{CollectionMethod, InvoiceId, LedgerEntryId, LineId, PlanId};
use crate::error::AppError;
use crate::stripe::{
    keys, GatewayError, NewInvoice, NewLine, PaymentGateway, RemoteInvoice, SeatPrice,
    StripeInvoiceStatus, ADD_LINES_MAX,
};

use super::fence::Held;

pub(super) async fn emit<G: PaymentGateway>(
    held: &Held<'_>,
    gateway: Option<&G>,
    invoice_id: InvoiceId,
) -> Result<usize, AppError> {
    let filter = InvoiceFilter {
        ids: Some(vec![invoice_id]),
        without_payments: true,
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

/// Sends the lines Stripe's invoice lacks, [`ADD_LINES_MAX`] per `add_lines` request, and
/// stores each chunk's item ids in one transaction. A resumed invoice is read first: lines
/// that are there already (an answer lost, or items made one by one by an earlier version)
/// are taken as they are, so nothing is added twice, also after Stripe forgot the keys.
async fn send_lines<G: PaymentGateway>(
    held: &Held<'_>,
    g: &G,
    record: &InvoiceRecord,
    stripe_invoice: &str,
    resumed: bool,
    resume: &Resume,
) -> Result<(), AppError> {
    let inv = &record.invoice;
    let mut missing: Vec<&LineRow> = record
        .lines
        .iter()
        .filter(|l| l.stripe_invoice_item_id.is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if resumed {
        let known = g.find_items(stripe_invoice).await?;
        let found: Vec<(LineId, String)> = missing
            .iter()
            .filter_map(|l| known.get(&l.id).map(|id| (l.id, id.clone())))
            .collect();
        if !found.is_empty() {
            held.write(|c| store_item_ids(c, &found)).await?;
            missing.retain(|l| !known.contains_key(&l.id));
        }
    }
    if let (Some(line), Resume::Finalized) = (missing.first(), resume) {
        return Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_invoice} is finalized without an item for line {} of local invoice {}",
            line.id, inv.id
        ))
        .into());
    }
    if missing.is_empty() {
        return Ok(());
    }
    let product = match missing.iter().any(|l| !l.amount_only) {
        true => Some(product_of(held, g, inv.plan_id).await?),
        false => None,
    };
    let whole = missing.len() == record.lines.len();
    let scope = g.invoice_scope(inv.id)?;
    for (k, chunk) in missing.chunks(ADD_LINES_MAX).enumerate() {
        let key = if whole {
            keys::lines(&scope, inv.id, k)
        } else {
            keys::rest_of_lines(
                &scope,
                inv.id,
                &chunk.iter().map(|l| l.id).collect::<Vec<_>>(),
            )
        };
        let lines: Vec<NewLine<'_>> = chunk
            .iter()
            .map(|l| NewLine {
                local_id: l.id,
                description: &l.description,
                per_seat: product
                    .as_deref()
                    .filter(|_| !l.amount_only)
                    .map(|product| SeatPrice {
                        quantity: l.quantity,
                        unit_cents: l.unit_amount_cents,
                        product,
                    }),
                amount: l.amount_cents,
                period_start: l.period_start,
                period_end: l.period_end,
                ledger_entry_id: l.ledger_entry_id.map(LedgerEntryId),
            })
            .collect();
        let ids = g.add_lines(stripe_invoice, &scope, &key, &lines).await?;
        let ids: Vec<(LineId, String)> = ids.into_iter().collect();
        held.write(|c| store_item_ids(c, &ids)).await?;
    }
    Ok(())
}

fn store_item_ids(c: &mut crate::db::Conn, ids: &[(LineId, String)]) -> Result<(), AppError> {
    for (line, item) in ids {
        repo::set_line_stripe_id(c, *line, item)?;
    }
    Ok(())
}

/// The Stripe product of the plan's tier: remembered in the database, created on first use.
async fn product_of<G: PaymentGateway>(
    held: &Held<'_>,
    g: &G,
    plan_id: PlanId,
) -> Result<String, AppError> {
    let tier = held.read(|c| billing::plan(c, plan_id.0)).await?.plan.tier;
    if let Some(id) = held.read(|c| Ok(repo::product_of_tier(c, tier)?)).await? {
        return Ok(id);
    }
    let id = g.create_product(tier).await?;
    held.write(|c| Ok(repo::remember_stripe_product(c, tier, &id)?))
        .await?;
    Ok(id)
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
    // `resumed`: the Stripe invoice existed before this attempt, and may hold lines already.
    let (stripe_invoice, resume, resumed) = match &inv.stripe_invoice_id {
        Some(id) => {
            let remote = g.retrieve_invoice(id).await?;
            (id.clone(), judge_resume(remote.as_ref(), id, inv)?, true)
        }
        None => {
            let found = if stale {
                g.find_invoice(&stripe_customer, inv.id).await?
            } else {
                None
            };
            let (id, resume, resumed) = match found {
                Some(remote) => {
                    let resume = judge_resume(Some(&remote), &remote.id, inv)?;
                    (remote.id, resume, true)
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
                    (g.create_invoice(&new).await?, Resume::Draft, false)
                }
            };
            held.write(|c| Ok(repo::set_invoice_stripe_id(c, inv.id, &id)?))
                .await?;
            (id, resume, resumed)
        }
    };
    send_lines(held, g, record, &stripe_invoice, resumed, &resume).await?;
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
