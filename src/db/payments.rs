//! The payment side: the Stripe events received (by id, for redeliveries) and each invoice's
//! payment row.

use diesel::prelude::*;

use super::models::PaymentRow;
use super::{Conn, DbError};
use crate::domain::{PaymentStatus, Ts};
use crate::with_conn;

/// Records a Stripe event by its id; false when it was recorded before (a redelivery). Runs in
/// a savepoint so that the duplicate does not abort the caller's transaction.
pub fn record_event(
    conn: &mut Conn,
    id: &str,
    kind: &str,
    invoice_id: Option<i64>,
    outcome: &str,
    now: Ts,
) -> Result<bool, DbError> {
    let inserted = conn.transaction(|conn| {
        with_conn!(conn, c => diesel::insert_into(stripe_event::table)
            .values((
                stripe_event::id.eq(id),
                stripe_event::kind.eq(kind),
                stripe_event::invoice_id.eq(invoice_id),
                stripe_event::outcome.eq(outcome),
                stripe_event::received_at.eq(now),
            ))
            .execute(c))
        .map_err(DbError::from)
    });
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the outcome of a recorded event.
pub fn set_event_outcome(conn: &mut Conn, id: &str, outcome: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(stripe_event::table.find(id))
        .set(stripe_event::outcome.eq(outcome))
        .execute(c))?;
    Ok(())
}

pub fn payment_of(conn: &mut Conn, invoice_id: i64) -> Result<Option<PaymentRow>, DbError> {
    Ok(with_conn!(conn, c => invoice_payment::table
        .find(invoice_id)
        .first::<PaymentRow>(c)
        .optional())?)
}

/// An invoice's payment row as it should now be.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub invoice_id: i64,
    pub status: PaymentStatus,
    pub status_at: Ts,
    pub attempt_count: i32,
    pub hosted_invoice_url: Option<&'a str>,
}

pub fn save_payment(conn: &mut Conn, p: &NewPayment<'_>, now: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => {
        let values = (
            invoice_payment::status.eq(p.status.name()),
            invoice_payment::status_at.eq(p.status_at),
            invoice_payment::attempt_count.eq(p.attempt_count),
            invoice_payment::hosted_invoice_url.eq(p.hosted_invoice_url),
            invoice_payment::updated_at.eq(now),
        );
        diesel::insert_into(invoice_payment::table)
            .values((invoice_payment::invoice_id.eq(p.invoice_id), values))
            .on_conflict(invoice_payment::invoice_id)
            .do_update()
            .set(values)
            .execute(c)
    })?;
    Ok(())
}

/// Where `sync-payments` stands (`None`: it never ran).
pub fn synced_through(conn: &mut Conn) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, c => payment_sync::table
        .find(SYNC)
        .select(payment_sync::synced_through)
        .first::<i64>(c)
        .optional())?)
}

/// Moves the sync cursor forward to `through` (never back).
pub fn set_synced_through(conn: &mut Conn, through: i64, now: Ts) -> Result<(), DbError> {
    conn.transaction(|conn| {
        let current = synced_through(conn)?;
        with_conn!(conn, c => match current {
            Some(at) if at >= through => Ok(0),
            Some(_) => diesel::update(payment_sync::table.find(SYNC))
                .set((
                    payment_sync::synced_through.eq(through),
                    payment_sync::updated_at.eq(now),
                ))
                .execute(c),
            None => diesel::insert_into(payment_sync::table)
                .values((
                    payment_sync::name.eq(SYNC),
                    payment_sync::synced_through.eq(through),
                    payment_sync::updated_at.eq(now),
                ))
                .execute(c),
        })?;
        Ok(())
    })
}

const SYNC: &str = "stripe_events";

/// The overdue policy's candidates, in id order: Cloud customers with a Stripe customer and at
/// least one unpaid invoice (every decision but "nothing" needs one), so that `status` and the
/// policy read only the few customers behind, not the whole book.
pub fn overdue_candidates(conn: &mut Conn) -> Result<Vec<crate::domain::Customer>, DbError> {
    use super::models::CustomerRow;
    let unpaid = unpaid_names();
    let rows = with_conn!(conn, c => customer::table
        .filter(customer::stripe_customer_id.is_not_null())
        .filter(customer::kind.eq(crate::domain::CustomerKind::Cloud.name()))
        .filter(customer::id.eq_any(
            invoice::table
                .inner_join(invoice_payment::table)
                .filter(invoice_payment::status.eq_any(&unpaid))
                .select(invoice::customer_id),
        ))
        .order(customer::id)
        .load::<CustomerRow>(c))?;
    rows.into_iter().map(CustomerRow::into_domain).collect()
}

/// A customer's invoice as the overdue policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentInvoice {
    pub id: i64,
    pub stripe_invoice_id: String,
    pub payment_status: Option<PaymentStatus>,
}

/// The customer's invoices sent to Stripe, newest first, with their payment status.
pub fn sent_invoices(conn: &mut Conn, customer_id: i64) -> Result<Vec<SentInvoice>, DbError> {
    let rows: Vec<(i64, Option<String>, Option<String>)> = with_conn!(conn, c => invoice::table
        .left_join(invoice_payment::table)
        .filter(invoice::customer_id.eq(customer_id))
        .filter(invoice::stripe_invoice_id.is_not_null())
        .filter(invoice::status.eq(crate::domain::InvoiceStatus::Sent.name()))
        .order((invoice::event_time.desc(), invoice::id.desc()))
        .select((invoice::id, invoice::stripe_invoice_id, invoice_payment::status.nullable()))
        .load(c))?;
    rows.into_iter()
        .map(|(id, stripe, status)| {
            Ok(SentInvoice {
                id,
                stripe_invoice_id: stripe.unwrap_or_default(),
                payment_status: status
                    .map(PaymentStatus::try_from)
                    .transpose()
                    .map_err(|e| DbError::BadRow(format!("invoice_payment {id}: {e}")))?,
            })
        })
        .collect()
}

/// Asks for these invoices to be voided (inside the decision's transaction); an invoice asked
/// for before keeps its first request.
pub fn request_voids(conn: &mut Conn, ids: &[i64], now: Ts) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    with_conn!(conn, c => {
        let rows: Vec<_> = ids
            .iter()
            .map(|id| (invoice_void::invoice_id.eq(*id), invoice_void::requested_at.eq(now)))
            .collect();
        diesel::insert_into(invoice_void::table)
            .values(&rows)
            .on_conflict(invoice_void::invoice_id)
            .do_nothing()
            .execute(c)
    })?;
    Ok(())
}

/// Voids asked for and not done yet: `(local id, Stripe id)`.
pub fn pending_voids(conn: &mut Conn) -> Result<Vec<(i64, String)>, DbError> {
    let rows: Vec<(i64, Option<String>)> = with_conn!(conn, c => invoice_void::table
        .inner_join(invoice::table)
        .filter(invoice_void::voided_at.is_null())
        .order(invoice_void::invoice_id)
        .select((invoice_void::invoice_id, invoice::stripe_invoice_id))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, s)| Some((id, s?)))
        .collect())
}

/// A void done (or found done, or found impossible: the invoice was paid meanwhile).
pub fn void_done(conn: &mut Conn, invoice_id: i64, now: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(invoice_void::table.find(invoice_id))
        .set(invoice_void::voided_at.eq(now))
        .execute(c))?;
    Ok(())
}

/// Invoices Stripe has not been paid for (open or uncollectible by the webhooks).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Unpaid {
    pub count: i64,
    pub amount_cents: i64,
    /// The oldest one: `(local invoice id, customer id, due date)`.
    pub oldest: Option<(i64, i64, Ts)>,
}

pub fn unpaid(conn: &mut Conn) -> Result<Unpaid, DbError> {
    let unpaid = [
        PaymentStatus::Open.name(),
        PaymentStatus::Uncollectible.name(),
    ];
    let rows: Vec<(i64, i64, Ts, i64)> = with_conn!(conn, c => invoice::table
        .inner_join(invoice_payment::table)
        .filter(invoice_payment::status.eq_any(unpaid))
        .order((invoice::event_time, invoice::id))
        .select((invoice::id, invoice::customer_id, invoice::event_time, invoice::total_cents))
        .load(c))?;
    Ok(Unpaid {
        count: rows.len() as i64,
        amount_cents: rows.iter().map(|r| r.3).sum(),
        oldest: rows.first().map(|r| (r.0, r.1, r.2)),
    })
}

/// The names of the unpaid payment statuses, as stored.
fn unpaid_names() -> Vec<&'static str> {
    PaymentStatus::ALL
        .iter()
        .filter(|s| s.is_unpaid())
        .map(|s| s.name())
        .collect()
}
