//! Invoice queries: the write-ahead invoice and its lines, their Stripe ids, Stripe products,
//! and the invoice lists of `status`, `invoice list` and the API.

use diesel::prelude::*;

use crate::db::models::*;
use crate::db::{Conn, DbError};
use crate::domain::{InvoiceDraft, InvoicingStatus, Plan, PlanStatus, Tier, Ts};
use crate::domain::{InvoiceId, InvoiceStatus, InvoiceTerms, LineId};
use crate::with_conn;

/// Stores a computed invoice and its lines (write-ahead, before any Stripe call). The unique constraints refuse a
/// second invoice for the same (plan, event time) and a second line for the same ledger entry.
pub fn insert_invoice(
    conn: &mut Conn,
    plan: &Plan,
    event_time: Ts,
    draft: &InvoiceDraft,
    now: Ts,
) -> Result<InvoiceId, DbError> {
    let terms = InvoiceTerms::of(plan);
    let total = draft.total();
    with_conn!(conn, c => {
        let id = diesel::insert_into(invoice::table)
            .values((
                invoice::plan_id.eq(plan.id),
                invoice::customer_id.eq(plan.customer_id),
                invoice::event_time.eq(event_time),
                invoice::status.eq(InvoiceStatus::Pending.name()),
                invoice::collection_method.eq(terms.collection_method.name()),
                invoice::days_until_due.eq(terms.days_until_due),
                invoice::total_cents.eq(total),
                invoice::created_at.eq(now),
            ))
            .returning(invoice::id)
            .get_result::<i64>(c)?;
        let rows: Vec<_> = draft
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    invoice_line::invoice_id.eq(id),
                    invoice_line::plan_id.eq(plan.id),
                    invoice_line::position.eq(i as i32),
                    invoice_line::kind.eq(l.kind.name()),
                    invoice_line::description.eq(&l.description),
                    invoice_line::quantity.eq(l.quantity),
                    invoice_line::unit_amount_cents.eq(l.unit_amount),
                    invoice_line::amount_cents.eq(l.amount),
                    invoice_line::amount_only.eq(l.amount_only),
                    invoice_line::period_start.eq(l.period_start),
                    invoice_line::period_end.eq(l.period_end),
                    invoice_line::ledger_entry_id.eq(l.ledger_entry_id),
                )
            })
            .collect();
        for row in rows {
            diesel::insert_into(invoice_line::table).values(row).execute(c)?;
        }
        Ok::<_, diesel::result::Error>(InvoiceId(id))
    })
    .map_err(DbError::from)
}

pub fn mark_invoice_sent(conn: &mut Conn, id: InvoiceId, now: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(invoice::table.find(id.0))
        .set((invoice::status.eq(InvoiceStatus::Sent.name()), invoice::sent_at.eq(now)))
        .execute(c))?;
    Ok(())
}

pub fn set_invoice_stripe_id(
    conn: &mut Conn,
    id: InvoiceId,
    stripe_id: &str,
) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(invoice::table.find(id.0))
        .set(invoice::stripe_invoice_id.eq(stripe_id))
        .execute(c))?;
    Ok(())
}

pub fn set_invoice_finalized(conn: &mut Conn, id: InvoiceId) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(invoice::table.find(id.0))
        .set(invoice::stripe_finalized.eq(true))
        .execute(c))?;
    Ok(())
}

pub fn set_line_stripe_id(conn: &mut Conn, id: LineId, stripe_id: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(invoice_line::table.find(id.0))
        .set(invoice_line::stripe_invoice_item_id.eq(stripe_id))
        .execute(c))?;
    Ok(())
}

/// The Stripe product that per-seat lines of `tier` are priced on, once it was created.
pub fn product_of_tier(conn: &mut Conn, tier: Tier) -> Result<Option<String>, DbError> {
    Ok(with_conn!(conn, c => stripe_product::table
        .find(tier.name())
        .select(stripe_product::stripe_product_id)
        .first::<String>(c)
        .optional())?)
}

/// Remembers a tier's Stripe product; a second worker's insert of the same changes nothing.
pub fn remember_stripe_product(conn: &mut Conn, tier: Tier, id: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::insert_into(stripe_product::table)
        .values((stripe_product::tier.eq(tier.name()), stripe_product::stripe_product_id.eq(id)))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Customers with a Stripe id after `after_id` (one page, in id order), or just `only`.
pub fn customers_in_stripe(
    conn: &mut Conn,
    after_id: i64,
    limit: i64,
    only: Option<i64>,
) -> Result<Vec<(i64, String)>, DbError> {
    let (lo, hi) = only.map_or((i64::MIN, i64::MAX), |c| (c, c));
    let rows = with_conn!(conn, c => customer::table
        .filter(customer::id.gt(after_id))
        .filter(customer::id.between(lo, hi))
        .filter(customer::stripe_customer_id.is_not_null())
        .order(customer::id)
        .limit(limit)
        .select((customer::id, customer::stripe_customer_id))
        .load::<(i64, Option<String>)>(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, s)| s.map(|s| (id, s)))
        .collect())
}

pub fn count_customers_in_stripe(conn: &mut Conn, only: Option<i64>) -> Result<i64, DbError> {
    let (lo, hi) = only.map_or((i64::MIN, i64::MAX), |c| (c, c));
    Ok(with_conn!(conn, c => customer::table
        .filter(customer::id.between(lo, hi))
        .filter(customer::stripe_customer_id.is_not_null())
        .count()
        .get_result::<i64>(c))?)
}

pub fn invoice_by_id(conn: &mut Conn, id: InvoiceId) -> Result<Option<InvoiceRow>, DbError> {
    Ok(with_conn!(conn, c => invoice::table.find(id.0).first::<InvoiceRow>(c).optional())?)
}

/// Plans a pass at `now` is about to consider (due, or left started), for its progress line.
pub fn count_due_plans(conn: &mut Conn, now: Ts) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => customer_plan::table
        .filter(
            customer_plan::next_invoice_date
                .le(now)
                .or(customer_plan::invoicing_status.eq(InvoicingStatus::Started.code())),
        )
        .filter(customer_plan::status.ne(PlanStatus::NeverStarted.code()))
        .count()
        .get_result::<i64>(c))?)
}

/// The plan whose invoice has been due the longest at `now`.
pub fn oldest_due_plan(conn: &mut Conn, now: Ts) -> Result<Option<PlanRecord>, DbError> {
    let row = with_conn!(conn, c => customer_plan::table
        .filter(customer_plan::next_invoice_date.le(now))
        .filter(customer_plan::status.ne(PlanStatus::NeverStarted.code()))
        .order((customer_plan::next_invoice_date, customer_plan::id))
        .first::<PlanRow>(c)
        .optional())?;
    row.map(PlanRow::into_record).transpose()
}

/// Local invoices written but not yet sent to Stripe: how many, and the oldest `limit`.
pub fn unsent_invoices(conn: &mut Conn, limit: i64) -> Result<(i64, Vec<InvoiceRow>), DbError> {
    Ok(with_conn!(conn, c => {
        let count = invoice::table
            .filter(invoice::status.eq(InvoiceStatus::Pending.name()))
            .count()
            .get_result::<i64>(c)?;
        let oldest = invoice::table
            .filter(invoice::status.eq(InvoiceStatus::Pending.name()))
            .order(invoice::id)
            .limit(limit)
            .load::<InvoiceRow>(c)?;
        Ok::<_, diesel::result::Error>((count, oldest))
    })?)
}

pub fn pending_invoice_ids(conn: &mut Conn, plan_id: i64) -> Result<Vec<InvoiceId>, DbError> {
    let ids = with_conn!(conn, c => invoice::table
        .filter(invoice::plan_id.eq(plan_id))
        .filter(invoice::status.eq(InvoiceStatus::Pending.name()))
        .order(invoice::id)
        .select(invoice::id)
        .load::<i64>(c))?;
    Ok(ids.into_iter().map(InvoiceId).collect())
}

#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub ids: Option<Vec<InvoiceId>>,
    pub plan_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub since: Option<Ts>,
    pub status: Option<InvoiceStatus>,
    /// A page: invoices after this id, at most `limit` of them.
    pub starting_after: Option<i64>,
    pub limit: Option<i64>,
    /// Leave the payment rows out (the pass sends invoices; it never reads their payments).
    pub without_payments: bool,
}

pub fn list_invoices(conn: &mut Conn, f: &InvoiceFilter) -> Result<Vec<InvoiceRecord>, DbError> {
    let (invoices, lines, payments) = with_conn!(conn, c => {
        let mut q = invoice::table.order(invoice::id).into_boxed();
        if let Some(ids) = &f.ids {
            q = q.filter(invoice::id.eq_any(ids.iter().map(|i| i.0).collect::<Vec<_>>()));
        }
        if let Some(p) = f.plan_id {
            q = q.filter(invoice::plan_id.eq(p));
        }
        if let Some(cu) = f.customer_id {
            q = q.filter(invoice::customer_id.eq(cu));
        }
        if let Some(t) = f.since {
            q = q.filter(invoice::event_time.ge(t));
        }
        if let Some(s) = f.status {
            q = q.filter(invoice::status.eq(s.name()));
        }
        if let Some(after) = f.starting_after {
            q = q.filter(invoice::id.gt(after));
        }
        if let Some(n) = f.limit {
            q = q.limit(n);
        }
        let invoices = q.load::<InvoiceRow>(c)?;
        let ids: Vec<i64> = invoices.iter().map(|i| i.id.0).collect();
        let lines = invoice_line::table
            .filter(invoice_line::invoice_id.eq_any(&ids))
            .order((invoice_line::invoice_id, invoice_line::position))
            .load::<LineRow>(c)?;
        let payments = if f.without_payments {
            vec![]
        } else {
            invoice_payment::table
                .filter(invoice_payment::invoice_id.eq_any(&ids))
                .load::<PaymentRow>(c)?
        };
        Ok::<_, diesel::result::Error>((invoices, lines, payments))
    })?;
    let mut by_invoice: std::collections::HashMap<InvoiceId, Vec<LineRow>> =
        std::collections::HashMap::new();
    for l in lines {
        by_invoice.entry(l.invoice_id).or_default().push(l);
    }
    let mut payment_of: std::collections::HashMap<InvoiceId, PaymentRow> =
        payments.into_iter().map(|p| (p.invoice_id, p)).collect();
    Ok(invoices
        .into_iter()
        .map(|inv| {
            let lines = by_invoice.remove(&inv.id).unwrap_or_default();
            InvoiceRecord {
                payment: payment_of.remove(&inv.id),
                invoice: inv,
                lines,
            }
        })
        .collect())
}
