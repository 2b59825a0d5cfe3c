//! The change history's table (docs/ARCHITECTURE.md, "Change history"): [`append`] runs in the
//! transaction of the write it records, [`list`] reads pages of it, [`verify`] walks the chain.
//!
//! The chain: every row stores the hash of the row before it and its own hash over that and its
//! content ([`crate::domain::change::chain_hash`]). `change_head` holds the last id and hash;
//! [`append`] locks it first (`FOR UPDATE` on PostgreSQL; the database's write lock on SQLite)
//! until the write commits, so rows join the chain one at a time, in commit order.
//! Both backends refuse UPDATE and DELETE on `change_log` with a trigger.

use diesel::prelude::*;
use serde::Serialize;

use super::{Conn, DbError};
use crate::domain::change::{chain_hash, hash_time, history_time, Author, Change, GENESIS_HASH};
use crate::domain::Ts;
use crate::with_conn;

/// One row of the history, as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Serialize, schemars::JsonSchema)]
pub struct ChangeRow {
    pub id: i64,
    /// The instant the operation acted at.
    pub at: Ts,
    /// The wall-clock time the row was written.
    pub written_at: Ts,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub operation: String,
    pub customer_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub new_plan_id: Option<i64>,
    pub invoice_id: Option<i64>,
    /// JSON: the objects touched, by kind.
    pub objects: String,
    /// JSON: the fields that changed, as they were.
    pub before: String,
    /// JSON: the fields that changed, as they are.
    pub after: String,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl ChangeRow {
    /// The row's hash as its content says it should be.
    pub fn computed_hash(&self) -> String {
        let (id, at, written) = (
            self.id.to_string(),
            hash_time(self.at),
            hash_time(self.written_at),
        );
        let num = |v: Option<i64>| v.map(|n| n.to_string());
        let (customer, plan, new_plan, invoice) = (
            num(self.customer_id),
            num(self.plan_id),
            num(self.new_plan_id),
            num(self.invoice_id),
        );
        chain_hash(
            &self.prev_hash,
            &[
                Some(&id),
                Some(&at),
                Some(&written),
                Some(&self.actor),
                self.on_behalf_of.as_deref(),
                Some(&self.operation),
                customer.as_deref(),
                plan.as_deref(),
                new_plan.as_deref(),
                invoice.as_deref(),
                Some(&self.objects),
                Some(&self.before),
                Some(&self.after),
                self.reason.as_deref(),
                self.idempotency_key.as_deref(),
            ],
        )
    }
}

/// [`append`], written now by the wall clock: how every write records its change.
pub fn record(conn: &mut Conn, author: &Author, change: &Change) -> Result<i64, DbError> {
    append(conn, author, change, crate::clock::wall_time())
}

/// The row's columns as an insert's values.
macro_rules! insertable {
    ($row:expr) => {
        (
            change_log::id.eq($row.id),
            change_log::at.eq($row.at),
            change_log::written_at.eq($row.written_at),
            change_log::actor.eq(&$row.actor),
            change_log::on_behalf_of.eq(&$row.on_behalf_of),
            change_log::operation.eq(&$row.operation),
            change_log::customer_id.eq($row.customer_id),
            change_log::plan_id.eq($row.plan_id),
            change_log::new_plan_id.eq($row.new_plan_id),
            change_log::invoice_id.eq($row.invoice_id),
            change_log::objects.eq(&$row.objects),
            change_log::before.eq(&$row.before),
            change_log::after.eq(&$row.after),
            change_log::reason.eq(&$row.reason),
            change_log::idempotency_key.eq(&$row.idempotency_key),
            change_log::prev_hash.eq(&$row.prev_hash),
            change_log::hash.eq(&$row.hash),
        )
    };
}

/// Appends a change to the chain. Call it inside the transaction of the write it records, after
/// the write (so the head's lock is held for as short a time as possible).
pub fn append(
    conn: &mut Conn,
    author: &Author,
    change: &Change,
    written_at: Ts,
) -> Result<i64, DbError> {
    // The head, locked: on PostgreSQL `FOR UPDATE` waits for a writer ahead and then reads its
    // committed head; on SQLite the database's write lock serializes writers.
    let (last_id, prev_hash) = match conn {
        Conn::Pg(c) => {
            use super::schema::pg::*;
            change_head::table
                .find(1)
                .select((change_head::last_id, change_head::hash))
                .for_update()
                .first::<(i64, String)>(c)?
        }
        // A write first, so that the transaction holds SQLite's write lock from here on even if
        // it wrote nothing before (a read lock upgraded later fails under WAL).
        Conn::Sqlite(c) => {
            use super::schema::sqlite::*;
            diesel::update(change_head::table.find(1))
                .set(change_head::last_id.eq(change_head::last_id))
                .returning((change_head::last_id, change_head::hash))
                .get_result::<(i64, String)>(c)?
        }
    };
    let mut row = ChangeRow {
        id: last_id + 1,
        at: history_time(change.at),
        written_at: history_time(written_at),
        actor: author.actor.clone(),
        on_behalf_of: author.on_behalf_of.clone(),
        operation: change.operation.clone(),
        customer_id: change.customer_id,
        plan_id: change.plan_id,
        new_plan_id: change.new_plan_id,
        invoice_id: change.invoice_id,
        objects: change.objects.to_string(),
        before: change.before.to_string(),
        after: change.after.to_string(),
        reason: author.reason.clone(),
        idempotency_key: author.idempotency_key.clone(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.computed_hash();
    match conn {
        // One round trip: the row and the head's move in one statement.
        Conn::Pg(c) => insert_and_move_head_pg(c, &row)?,
        Conn::Sqlite(c) => {
            use super::schema::sqlite::*;
            diesel::insert_into(change_log::table)
                .values(insertable!(row))
                .execute(c)?;
            diesel::update(change_head::table.find(1))
                .set((
                    change_head::last_id.eq(row.id),
                    change_head::hash.eq(&row.hash),
                ))
                .execute(c)?;
        }
    }
    Ok(row.id)
}

/// `WITH ins AS (INSERT … RETURNING) UPDATE change_head …`: PostgreSQL's data-modifying CTE, so
/// that appending costs two round trips (the head locked and read, then this).
fn insert_and_move_head_pg(c: &mut diesel::PgConnection, row: &ChangeRow) -> Result<(), DbError> {
    use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
    diesel::sql_query(
        "WITH ins AS (INSERT INTO change_log (id, at, written_at, actor, on_behalf_of, operation, \
         customer_id, plan_id, new_plan_id, invoice_id, objects, before, after, reason, \
         idempotency_key, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17) RETURNING id, hash) \
         UPDATE change_head SET last_id = ins.id, hash = ins.hash FROM ins WHERE change_head.id = 1",
    )
    .bind::<BigInt, _>(row.id)
    .bind::<Timestamptz, _>(row.at)
    .bind::<Timestamptz, _>(row.written_at)
    .bind::<Text, _>(&row.actor)
    .bind::<Nullable<Text>, _>(&row.on_behalf_of)
    .bind::<Text, _>(&row.operation)
    .bind::<Nullable<BigInt>, _>(row.customer_id)
    .bind::<Nullable<BigInt>, _>(row.plan_id)
    .bind::<Nullable<BigInt>, _>(row.new_plan_id)
    .bind::<Nullable<BigInt>, _>(row.invoice_id)
    .bind::<Text, _>(&row.objects)
    .bind::<Text, _>(&row.before)
    .bind::<Text, _>(&row.after)
    .bind::<Nullable<Text>, _>(&row.reason)
    .bind::<Nullable<Text>, _>(&row.idempotency_key)
    .bind::<Text, _>(&row.prev_hash)
    .bind::<Text, _>(&row.hash)
    .execute(c)?;
    Ok(())
}

/// On SQLite, takes the database's write lock now (a no-op UPDATE of the chain's head), for a
/// write that reads before it writes; on PostgreSQL nothing (rows are locked one by one).
pub fn lock_for_write(conn: &mut Conn) -> Result<(), DbError> {
    if let Conn::Sqlite(c) = conn {
        use super::schema::sqlite::*;
        diesel::update(change_head::table.find(1))
            .set(change_head::id.eq(change_head::id))
            .execute(c)?;
    }
    Ok(())
}

/// Which changes to list: every filter given must hold; a page starts after `starting_after`
/// and holds at most `limit` rows, oldest first.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub customer_id: Option<i64>,
    /// Changes of this plan, or that created it.
    pub plan_id: Option<i64>,
    pub actor: Option<String>,
    pub operation: Option<String>,
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    pub starting_after: Option<i64>,
    pub limit: i64,
}

pub fn list(conn: &mut Conn, f: &ChangeFilter) -> Result<Vec<ChangeRow>, DbError> {
    Ok(with_conn!(conn, c => {
        let mut q = change_log::table.order(change_log::id).into_boxed();
        if let Some(id) = f.customer_id {
            q = q.filter(change_log::customer_id.eq(id));
        }
        if let Some(id) = f.plan_id {
            q = q.filter(change_log::plan_id.eq(id).or(change_log::new_plan_id.eq(id)));
        }
        if let Some(a) = &f.actor {
            q = q.filter(change_log::actor.eq(a));
        }
        if let Some(o) = &f.operation {
            q = q.filter(change_log::operation.eq(o));
        }
        if let Some(t) = f.since {
            q = q.filter(change_log::at.ge(t));
        }
        if let Some(t) = f.until {
            q = q.filter(change_log::at.lt(t));
        }
        if let Some(after) = f.starting_after {
            q = q.filter(change_log::id.gt(after));
        }
        q.limit(f.limit).load::<ChangeRow>(c)
    })?)
}

/// The newest change of a customer or of a plan (`show`'s "last change").
pub fn last_of(
    conn: &mut Conn,
    customer_id: Option<i64>,
    plan_id: Option<i64>,
) -> Result<Option<ChangeRow>, DbError> {
    Ok(with_conn!(conn, c => {
        let mut q = change_log::table.order(change_log::id.desc()).into_boxed();
        if let Some(id) = customer_id {
            q = q.filter(change_log::customer_id.eq(id));
        }
        if let Some(id) = plan_id {
            q = q.filter(change_log::plan_id.eq(id));
        }
        q.first::<ChangeRow>(c).optional()
    })?)
}

/// The first break in the chain [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Break {
    /// The row's content does not give its stored hash: it was changed after it was written.
    Altered { id: i64 },
    /// The row does not follow the row before it (`expected_prev` is that row's hash): rows
    /// between were removed, or this one's chain link was rewritten.
    Unlinked { id: i64, expected_id: i64 },
    /// The chain ends before the head says it does: its last rows were removed.
    Truncated { last_id: i64, head_id: i64 },
}

/// What [`verify`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub rows: i64,
    pub last_id: i64,
    pub first_break: Option<Break>,
}

/// How many rows [`verify`] reads at a time: its memory is bounded by one page.
pub const VERIFY_PAGE: i64 = 2_000;

/// Walks the chain from its first row, a page at a time, and stops at the first break.
pub fn verify(conn: &mut Conn) -> Result<Verified, DbError> {
    let (head_id, head_hash) = with_conn!(conn, c => change_head::table
        .find(1)
        .select((change_head::last_id, change_head::hash))
        .first::<(i64, String)>(c))?;
    let (mut prev_id, mut prev_hash) = (0_i64, GENESIS_HASH.to_string());
    let mut rows = 0_i64;
    loop {
        let page = with_conn!(conn, c => change_log::table
            .filter(change_log::id.gt(prev_id))
            .order(change_log::id)
            .limit(VERIFY_PAGE)
            .load::<ChangeRow>(c))?;
        let done = (page.len() as i64) < VERIFY_PAGE;
        for row in page {
            let problem = if row.id != prev_id + 1 || row.prev_hash != prev_hash {
                Some(Break::Unlinked {
                    id: row.id,
                    expected_id: prev_id + 1,
                })
            } else if row.computed_hash() != row.hash {
                Some(Break::Altered { id: row.id })
            } else {
                None
            };
            if let Some(b) = problem {
                return Ok(Verified {
                    rows,
                    last_id: prev_id,
                    first_break: Some(b),
                });
            }
            rows += 1;
            prev_id = row.id;
            prev_hash = row.hash;
        }
        if done {
            break;
        }
    }
    let first_break = (prev_id != head_id || prev_hash != head_hash).then_some(Break::Truncated {
        last_id: prev_id,
        head_id,
    });
    Ok(Verified {
        rows,
        last_id: prev_id,
        first_break,
    })
}
