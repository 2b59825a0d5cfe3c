//! The HTTP API's own tables: bearer tokens (hashed), the responses kept for idempotency keys,
//! and the cursors of the plan-events feed's consumers.

use diesel::prelude::*;
use serde::Serialize;

use super::models::PlanEventRow;
use super::{Conn, DbError};
use crate::domain::Ts;
use crate::with_conn;

/// How long the first response to an idempotency key is kept and replayed.
pub const IDEMPOTENCY_HOURS: i64 = 24;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub created_at: Ts,
    pub revoked_at: Option<Ts>,
}

pub fn insert_token(
    conn: &mut Conn,
    name: &str,
    scope: &str,
    secret_sha256: &str,
    now: Ts,
) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => diesel::insert_into(api_token::table)
        .values((
            api_token::name.eq(name),
            api_token::scope.eq(scope),
            api_token::secret_sha256.eq(secret_sha256),
            api_token::created_at.eq(now),
        ))
        .returning(api_token::id)
        .get_result::<i64>(c))?)
}

pub fn tokens(conn: &mut Conn) -> Result<Vec<TokenRow>, DbError> {
    Ok(with_conn!(conn, c => api_token::table.order(api_token::id).load::<TokenRow>(c))?)
}

pub fn token(conn: &mut Conn, id: i64) -> Result<Option<TokenRow>, DbError> {
    Ok(with_conn!(conn, c => api_token::table
        .find(id)
        .first::<TokenRow>(c)
        .optional())?)
}

/// Revokes the token named `name`; false if there is none that is not revoked already.
pub fn revoke_token(conn: &mut Conn, name: &str, now: Ts) -> Result<bool, DbError> {
    let n = with_conn!(conn, c => diesel::update(
        api_token::table
            .filter(api_token::name.eq(name))
            .filter(api_token::revoked_at.is_null()),
    )
    .set(api_token::revoked_at.eq(now))
    .execute(c))?;
    Ok(n > 0)
}

/// Whether this process should purge the expired responses now: once per hour of `now`.
fn purge_due(now: Ts) -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_HOUR: AtomicI64 = AtomicI64::new(i64::MIN);
    let hour = now.timestamp().div_euclid(3600);
    LAST_HOUR.swap(hour, Ordering::Relaxed) != hour
}

/// A kept response: the hash of the request that made it, its status and body.
#[derive(Debug, Clone, Queryable)]
pub struct KeptResponse {
    pub request_sha256: String,
    pub status: i32,
    pub body: String,
}

/// Takes `key` for this token inside the caller's transaction. `None`: the key is new (or its
/// response expired) and is now held until the transaction ends; a concurrent request with the
/// same key waits on it and then finds the kept response. `Some`: the kept response.
pub fn take_key(
    conn: &mut Conn,
    token_id: i64,
    key: &str,
    request_sha256: &str,
    now: Ts,
) -> Result<Option<KeptResponse>, DbError> {
    let cutoff = now - chrono::Duration::hours(IDEMPOTENCY_HOURS);
    // This key's expired response goes (the key is free again); the others' expired rows go
    // now and then, not on every request, which would have every write contend for them.
    with_conn!(conn, c => diesel::delete(
        api_idempotency::table
            .filter(api_idempotency::token_id.eq(token_id))
            .filter(api_idempotency::key.eq(key))
            .filter(api_idempotency::created_at.lt(cutoff)),
    )
    .execute(c))?;
    if purge_due(now) {
        with_conn!(conn, c => diesel::delete(
            api_idempotency::table.filter(api_idempotency::created_at.lt(cutoff)),
        )
        .execute(c))?;
    }
    // A savepoint: a unique violation (another request took the key and committed) must not
    // abort the caller's transaction on PostgreSQL.
    let inserted = conn.transaction(|conn| {
        with_conn!(conn, c => diesel::insert_into(api_idempotency::table)
            .values((
                api_idempotency::token_id.eq(token_id),
                api_idempotency::key.eq(key),
                api_idempotency::request_sha256.eq(request_sha256),
                api_idempotency::status.eq(0),
                api_idempotency::body.eq(""),
                api_idempotency::created_at.eq(now),
            ))
            .execute(c))
        .map_err(DbError::from)
    });
    match inserted {
        Ok(_) => Ok(None),
        Err(e) if e.is_unique_violation() => Ok(Some(with_conn!(conn, c => api_idempotency::table
            .filter(api_idempotency::token_id.eq(token_id))
            .filter(api_idempotency::key.eq(key))
            .select((
                api_idempotency::request_sha256,
                api_idempotency::status,
                api_idempotency::body,
            ))
            .first::<KeptResponse>(c))?)),
        Err(e) => Err(e),
    }
}

/// Keeps the response to a key taken with [`take_key`], in the same transaction.
pub fn keep_response(
    conn: &mut Conn,
    token_id: i64,
    key: &str,
    status: i32,
    body: &str,
) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(
        api_idempotency::table
            .filter(api_idempotency::token_id.eq(token_id))
            .filter(api_idempotency::key.eq(key)),
    )
    .set((api_idempotency::status.eq(status), api_idempotency::body.eq(body)))
    .execute(c))?;
    Ok(())
}

/// Plan events after `after` in id order, at most `limit`.
pub fn events_after(conn: &mut Conn, after: i64, limit: i64) -> Result<Vec<PlanEventRow>, DbError> {
    Ok(with_conn!(conn, c => plan_event::table
        .filter(plan_event::id.gt(after))
        .order(plan_event::id)
        .limit(limit)
        .load::<PlanEventRow>(c))?)
}

/// The id a consumer acknowledged last (0: none yet).
pub fn consumer_cursor(conn: &mut Conn, name: &str) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => event_consumer::table
        .find(name)
        .select(event_consumer::acked_through)
        .first::<i64>(c)
        .optional())?
    .unwrap_or(0))
}

/// Moves a consumer's cursor forward to `through` (never back); returns where it stands.
pub fn ack(conn: &mut Conn, name: &str, through: i64, now: Ts) -> Result<i64, DbError> {
    conn.transaction(|conn| {
        let current = with_conn!(conn, c => event_consumer::table
            .find(name)
            .select(event_consumer::acked_through)
            .first::<i64>(c)
            .optional())?;
        match current {
            Some(at) if at >= through => Ok(at),
            Some(_) => {
                with_conn!(conn, c => diesel::update(event_consumer::table.find(name))
                    .set((
                        event_consumer::acked_through.eq(through),
                        event_consumer::updated_at.eq(now),
                    ))
                    .execute(c))?;
                Ok(through)
            }
            None => {
                with_conn!(conn, c => diesel::insert_into(event_consumer::table)
                    .values((
                        event_consumer::name.eq(name),
                        event_consumer::acked_through.eq(through),
                        event_consumer::updated_at.eq(now),
                    ))
                    .execute(c))?;
                Ok(through)
            }
        }
    })
}
