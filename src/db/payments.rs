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
        let n = diesel::update(invoice_payment::table.find(p.invoice_id))
            .set((
                invoice_payment::status.eq(p.status.name()),
                invoice_payment::status_at.eq(p.status_at),
                invoice_payment::attempt_count.eq(p.attempt_count),
                invoice_payment::hosted_invoice_url.eq(p.hosted_invoice_url),
                invoice_payment::updated_at.eq(now),
            ))
            .execute(c)?;
        if n == 0 {
            diesel::insert_into(invoice_payment::table)
                .values((
                    invoice_payment::invoice_id.eq(p.invoice_id),
                    invoice_payment::status.eq(p.status.name()),
                    invoice_payment::status_at.eq(p.status_at),
                    invoice_payment::attempt_count.eq(p.attempt_count),
                    invoice_payment::hosted_invoice_url.eq(p.hosted_invoice_url),
                    invoice_payment::updated_at.eq(now),
                ))
                .execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
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
