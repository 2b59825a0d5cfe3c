//! The change history's table (docs/ARCHITECTURE.md, "Change history"): [`append`] runs in the
//! transaction of the write it records, [`list`] reads pages of it, [`verify`] walks the chains.
//!
//! The chains: one per customer (chain 0 for changes of no customer). Every row stores the id
//! and the hash of the row before it in its chain and its own hash over that hash and its
//! content ([`crate::domain::change::chain_hash`]). Each chain's last id and hash, its head,
//! is on its customer's row (`change_last_id`, `change_hash`; chain 0's in `change_head`);
//! [`append`] holds the chain's head (PostgreSQL: the row lock of the head's move;
//! SQLite: the write lock the writer took) until the write commits, so rows join a chain one at
//! a time, in commit order, and writes to different customers do not wait for each other. Ids
//! are global and increasing within a chain (PostgreSQL's sequence may leave gaps: a
//! rolled-back write's id is not reused).
//! Both backends refuse UPDATE and DELETE on `change_log` with a trigger.

use std::borrow::Cow;

use diesel::prelude::*;
use serde::Serialize;

use super::{Conn, DbError};
use crate::domain::change::{
    chain_hash, encode_fields, hash_time, history_time, Author, Change, GENESIS_HASH,
};
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
    /// The id of the row before in its chain, 0 for the chain's first: the link a customer's
    /// changes are walked by on SQLite. Not in the hash; [`verify`] checks it.
    pub prev_id: i64,
}

impl ChangeRow {
    /// The row's hash as its content says it should be.
    pub fn computed_hash(&self) -> String {
        let id = self.id.to_string();
        let rest = self.texts_after_id();
        let mut fields = vec![Some(id.as_str())];
        fields.extend(rest.iter().map(|f| f.as_deref()));
        chain_hash(&self.prev_hash, &fields)
    }

    /// The hash input of the fields after the id ([`encode_fields`]).
    fn tail(&self) -> Vec<u8> {
        let rest = self.texts_after_id();
        encode_fields(&rest.iter().map(|f| f.as_deref()).collect::<Vec<_>>())
    }

    /// The fields after the id, in the hash's order, as text (borrowed where they are text).
    fn texts_after_id(&self) -> [Option<Cow<'_, str>>; 14] {
        let num = |v: Option<i64>| v.map(|n| Cow::Owned(n.to_string()));
        [
            Some(Cow::Owned(hash_time(self.at))),
            Some(Cow::Owned(hash_time(self.written_at))),
            Some(Cow::Borrowed(&self.actor)),
            self.on_behalf_of.as_deref().map(Cow::Borrowed),
            Some(Cow::Borrowed(&self.operation)),
            num(self.customer_id),
            num(self.plan_id),
            num(self.new_plan_id),
            num(self.invoice_id),
            Some(Cow::Borrowed(&self.objects)),
            Some(Cow::Borrowed(&self.before)),
            Some(Cow::Borrowed(&self.after)),
            self.reason.as_deref().map(Cow::Borrowed),
            self.idempotency_key.as_deref().map(Cow::Borrowed),
        ]
    }
}

/// [`append`], written now by the wall clock: how every write records its change.
pub fn record(conn: &mut Conn, author: &Author, change: &Change) -> Result<i64, DbError> {
    record_with_head(conn, author, change, WithHead::default())
}

/// [`record`] for a write that leaves a field of its customer's row for the append to set.
pub fn record_with_head(
    conn: &mut Conn,
    author: &Author,
    change: &Change,
    with_head: WithHead,
) -> Result<i64, DbError> {
    append(conn, author, change, crate::clock::wall_time(), with_head)
}

/// What a write sets on its customer's row along with the chain's head, which is on that row:
/// the seat report's count. On PostgreSQL `change_append` sets it in the head's move (one
/// round trip and one version of the row fewer than an update of its own); on SQLite in the
/// append's one update of that row, which moves the head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WithHead {
    /// The customer's seat count; `None` leaves it. A change of no customer refuses it.
    pub seat_count: Option<i32>,
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
            change_log::prev_id.eq($row.prev_id),
        )
    };
}

/// The chain a change joins: its customer's, or chain 0 for changes of no customer.
pub fn chain_of(customer_id: Option<i64>) -> i64 {
    customer_id.unwrap_or(0)
}

/// Appends a change to its chain. Call it inside the transaction of the write it records, after
/// the write: the chain's head stays locked until the write commits, so only writes to the same
/// customer (which lock its plans anyway) wait for each other.
///
/// PostgreSQL: one round trip, `change_append` (a function of the schema): it reads the head,
/// takes the id from the sequence, finishes the hash and moves the head if it is still the one
/// read (the move locks it; a writer ahead is waited for, and a head it moved is read again,
/// with a new id), setting what `with_head` names on the customer's row in the same move.
/// SQLite: the transaction holds the database's write lock already (it wrote first), so
/// writers come one at a time; the head is read, the id is the next after the newest, one
/// update of the customer's row moves the head and writes `with_head`, and the row is
/// inserted. (A trigger moved the head after the insert until 2026-12-11: a second update of
/// the row, and a trigger's program run at every append, cost about 5 % of the seat updates
/// through the API; docs/BENCHMARKS.md.)
pub fn append(
    conn: &mut Conn,
    author: &Author,
    change: &Change,
    written_at: Ts,
    with_head: WithHead,
) -> Result<i64, DbError> {
    let chain = chain_of(change.customer_id);
    if change.customer_id.is_none() && with_head != WithHead::default() {
        // Chain 0 has no customer's row: the field would be lost, not written.
        return Err(DbError::BadRow(format!(
            "a change of no customer ({}) cannot set a customer's seat count",
            change.operation
        )));
    }
    let mut row = ChangeRow {
        id: 0,
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
        prev_hash: String::new(),
        hash: String::new(),
        prev_id: 0,
    };
    match conn {
        Conn::Pg(c) => append_pg(c, &row, chain, with_head),
        Conn::Sqlite(c) => {
            use super::schema::sqlite::*;
            // The head (its hash and id) and the newest id in one statement.
            let newest = change_log::table
                .select(diesel::dsl::max(change_log::id))
                .single_value();
            let head = match row.customer_id {
                None => change_head::table
                    .find(0)
                    .select((change_head::hash, change_head::last_id, newest))
                    .first::<(String, i64, Option<i64>)>(c)
                    .optional()?,
                Some(id) => customer_chain::table
                    .find(id)
                    .select((
                        customer_chain::change_hash,
                        customer_chain::change_last_id,
                        newest,
                    ))
                    .first::<(String, i64, Option<i64>)>(c)
                    .optional()?,
            };
            let (head, head_id, last) = head.ok_or_else(|| {
                DbError::BadRow(format!(
                    "the change history has no chain {chain}: no such customer"
                ))
            })?;
            row.id = last.unwrap_or(0) + 1;
            row.prev_hash = head;
            row.prev_id = head_id;
            row.hash = row.computed_hash();
            match row.customer_id {
                Some(customer) => MoveCustomerHead {
                    customer,
                    last_id: row.id,
                    hash: &row.hash,
                    seats: with_head.seat_count,
                }
                .execute(c)?,
                None => diesel::update(change_head::table.find(0))
                    .set((
                        change_head::last_id.eq(row.id),
                        change_head::hash.eq(&row.hash),
                    ))
                    .execute(c)?,
            };
            diesel::insert_into(change_log::table)
                .values(insertable!(row))
                .execute(c)?;
            Ok(row.id)
        }
    }
}

/// SQLite: `UPDATE customer SET change_last_id = ?, change_hash = ?, seat_count =
/// coalesce(?, seat_count) WHERE id = ?`, a statement of fixed text that the connection keeps
/// prepared: the head's move and what the write left for it ([`WithHead`]) in one update of
/// the customer's row, which the write has dirtied already.
struct MoveCustomerHead<'a> {
    customer: i64,
    last_id: i64,
    hash: &'a str,
    seats: Option<i32>,
}

impl diesel::query_builder::QueryId for MoveCustomerHead<'_> {
    type QueryId = MoveCustomerHead<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for MoveCustomerHead<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer, Nullable, Text};
        out.push_sql("UPDATE customer SET change_last_id = ");
        out.push_bind_param::<BigInt, _>(&self.last_id)?;
        out.push_sql(", change_hash = ");
        out.push_bind_param::<Text, _>(self.hash)?;
        out.push_sql(", seat_count = coalesce(");
        out.push_bind_param::<Nullable<Integer>, _>(&self.seats)?;
        out.push_sql(", seat_count) WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.customer)?;
        Ok(())
    }
}

impl<C: diesel::Connection> RunQueryDsl<C> for MoveCustomerHead<'_> {}

mod pg_append {
    use diesel::sql_types::{Binary, Nullable, Text, Timestamptz};

    diesel::define_sql_function! {
        /// The schema's `change_append` (PostgreSQL): the row without its id and hashes, the
        /// hash input of its fields after the id and [`super::WithHead`]'s seat count (NULL
        /// leaves it); returns the row's id.
        #[allow(clippy::too_many_arguments)]
        fn change_append(
            chain: diesel::sql_types::BigInt,
            at: Timestamptz,
            written_at: Timestamptz,
            actor: Text,
            on_behalf_of: Nullable<Text>,
            operation: Text,
            customer_id: Nullable<diesel::sql_types::BigInt>,
            plan_id: Nullable<diesel::sql_types::BigInt>,
            new_plan_id: Nullable<diesel::sql_types::BigInt>,
            invoice_id: Nullable<diesel::sql_types::BigInt>,
            objects: Text,
            before: Text,
            after: Text,
            reason: Nullable<Text>,
            idempotency_key: Nullable<Text>,
            tail: Binary,
            seat_count: Nullable<diesel::sql_types::Integer>,
        ) -> diesel::sql_types::BigInt;
    }
}

/// `SELECT change_append(…)`, a statement of the query builder, so that the connection keeps
/// it prepared (a `sql_query` is parsed again at every call).
fn append_pg(
    c: &mut diesel::PgConnection,
    row: &ChangeRow,
    chain: i64,
    with_head: WithHead,
) -> Result<i64, DbError> {
    let call = pg_append::change_append(
        chain,
        row.at,
        row.written_at,
        &row.actor,
        &row.on_behalf_of,
        &row.operation,
        row.customer_id,
        row.plan_id,
        row.new_plan_id,
        row.invoice_id,
        &row.objects,
        &row.before,
        &row.after,
        &row.reason,
        &row.idempotency_key,
        row.tail(),
        with_head.seat_count,
    );
    Ok(diesel::select(call).get_result::<i64>(c)?)
}

/// On SQLite, takes the database's write lock now ([`super::sqlite_write_lock`]), for a write
/// that reads before it writes; on PostgreSQL nothing (rows are locked one by one).
pub fn lock_for_write(conn: &mut Conn) -> Result<(), DbError> {
    if let Conn::Sqlite(c) = conn {
        super::sqlite_write_lock(c)?;
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

/// The customer of a plan: a plan's changes are looked for within its customer's, which each
/// backend finds without a scan ([`OfCustomer`]).
fn customer_of_plan(conn: &mut Conn, plan_id: Option<i64>) -> Result<Option<i64>, DbError> {
    let Some(id) = plan_id else {
        return Ok(None);
    };
    Ok(with_conn!(conn, c => customer_plan::table
        .find(id)
        .select(customer_plan::customer_id)
        .first::<i64>(c)
        .optional())?)
}

/// How a backend narrows the history to one customer's chain, the rows of ids above `after`.
/// PostgreSQL: its index on (customer_id, id). SQLite has no such index (its leaf was a page
/// of its own in every append's commit): the chain is walked from the head on the customer's
/// row, by each row's `prev_id`, newest first, at most `newest` rows (`None`: down to
/// `after`), so a read costs a key lookup per row of that customer's walked, never a scan.
trait OfCustomer: Sized {
    fn of_customer(self, customer: i64, after: i64, newest: Option<i64>) -> Self;
}

impl OfCustomer for super::schema::pg::change_log::BoxedQuery<'_, diesel::pg::Pg> {
    fn of_customer(self, customer: i64, _after: i64, _newest: Option<i64>) -> Self {
        // The caller's own filters and limit bound the index's range.
        self.filter(super::schema::pg::change_log::customer_id.eq(customer))
    }
}

impl OfCustomer for super::schema::sqlite::change_log::BoxedQuery<'_, diesel::sqlite::Sqlite> {
    fn of_customer(self, customer: i64, after: i64, newest: Option<i64>) -> Self {
        use diesel::dsl::sql;
        use diesel::sql_types::{BigInt, Bool};
        // A negative LIMIT is none.
        let walk = sql::<Bool>(
            "change_log.id IN (WITH RECURSIVE chain(id) AS (\
             SELECT change_last_id FROM customer WHERE id = ",
        )
        .bind::<BigInt, _>(customer)
        .sql(" AND change_last_id > ")
        .bind::<BigInt, _>(after)
        .sql(
            " UNION ALL SELECT l.prev_id FROM change_log AS l JOIN chain ON l.id = chain.id \
             WHERE l.prev_id > ",
        )
        .bind::<BigInt, _>(after)
        .sql(" LIMIT ")
        .bind::<BigInt, _>(newest.unwrap_or(-1))
        .sql(") SELECT id FROM chain)");
        self.filter(walk)
    }
}

pub fn list(conn: &mut Conn, f: &ChangeFilter) -> Result<Vec<ChangeRow>, DbError> {
    let plan_customer = customer_of_plan(conn, f.plan_id)?;
    let after = f.starting_after.unwrap_or(0);
    Ok(with_conn!(conn, c => {
        let mut q = change_log::table.order(change_log::id).into_boxed();
        if let Some(id) = f.customer_id.or(plan_customer) {
            q = q.of_customer(id, after, None);
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
        if f.starting_after.is_some() {
            q = q.filter(change_log::id.gt(after));
        }
        q.limit(f.limit).load::<ChangeRow>(c)
    })?)
}

/// A customer's newest changes, newest first (the console's customer page).
pub fn newest_of_customer(
    conn: &mut Conn,
    customer_id: i64,
    limit: i64,
) -> Result<Vec<ChangeRow>, DbError> {
    Ok(with_conn!(conn, c => change_log::table
        .order(change_log::id.desc())
        .into_boxed()
        .of_customer(customer_id, 0, Some(limit))
        .limit(limit)
        .load::<ChangeRow>(c))?)
}

/// The newest change of a customer or of a plan (`show`'s "last change").
pub fn last_of(
    conn: &mut Conn,
    customer_id: Option<i64>,
    plan_id: Option<i64>,
) -> Result<Option<ChangeRow>, DbError> {
    let plan_customer = customer_of_plan(conn, plan_id)?;
    Ok(with_conn!(conn, c => {
        let mut q = change_log::table.order(change_log::id.desc()).into_boxed();
        if let Some(id) = customer_id.or(plan_customer) {
            // A customer's newest is its head; a plan's, the newest of its customer's that is
            // the plan's.
            q = q.of_customer(id, 0, plan_id.is_none().then_some(1));
        }
        if let Some(id) = plan_id {
            q = q.filter(change_log::plan_id.eq(id));
        }
        q.first::<ChangeRow>(c).optional()
    })?)
}

/// The first break in the chains [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Break {
    /// The row's content does not give its stored hash: it was changed after it was written.
    Altered { id: i64 },
    /// The row does not follow the row before it in its customer's chain (`after_id`, 0 for
    /// none): its `prev_hash` or its `prev_id` names another row. A row between was removed,
    /// or this one's link was rewritten.
    Unlinked {
        id: i64,
        customer_id: Option<i64>,
        after_id: i64,
    },
    /// A chain ends before its head says it does: its newest rows were removed.
    Truncated {
        customer_id: Option<i64>,
        last_id: i64,
        head_id: i64,
    },
}

/// What [`verify`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub rows: i64,
    /// The chains walked: one per customer with changes, and chain 0.
    pub chains: i64,
    pub last_id: i64,
    pub first_break: Option<Break>,
}

/// The break when a head is not where its chain ends; takes the chain's end out of `ends`.
fn head_break(
    ends: &mut std::collections::HashMap<i64, (i64, String)>,
    (chain, head_id, head_hash): (i64, i64, String),
) -> Option<Break> {
    let (end_id, end_hash) = ends
        .remove(&chain)
        .unwrap_or_else(|| (0, GENESIS_HASH.to_string()));
    (end_id != head_id || end_hash != head_hash).then_some(Break::Truncated {
        customer_id: (chain != 0).then_some(chain),
        last_id: end_id,
        head_id,
    })
}

/// How many rows [`verify`] reads at a time.
pub const VERIFY_PAGE: i64 = 2_000;

/// Walks every chain at once, in id order, a page at a time, and stops at the first break. Its
/// memory is one page and each chain's last id and hash (about 100 bytes per customer), never
/// the rows.
pub fn verify(conn: &mut Conn) -> Result<Verified, DbError> {
    use std::collections::HashMap;
    let mut ends: HashMap<i64, (i64, String)> = HashMap::new();
    let (mut last_id, mut rows) = (0_i64, 0_i64);
    loop {
        let page = with_conn!(conn, c => change_log::table
            .filter(change_log::id.gt(last_id))
            .order(change_log::id)
            .limit(VERIFY_PAGE)
            .load::<ChangeRow>(c))?;
        let done = (page.len() as i64) < VERIFY_PAGE;
        for row in page {
            let chain = chain_of(row.customer_id);
            let (after_id, expected) = ends
                .get(&chain)
                .map(|(id, hash)| (*id, hash.as_str()))
                .unwrap_or((0, GENESIS_HASH));
            let problem = if row.prev_hash != expected || row.prev_id != after_id {
                Some(Break::Unlinked {
                    id: row.id,
                    customer_id: row.customer_id,
                    after_id,
                })
            } else if row.computed_hash() != row.hash {
                Some(Break::Altered { id: row.id })
            } else {
                None
            };
            if let Some(b) = problem {
                return Ok(Verified {
                    rows,
                    chains: ends.len() as i64,
                    last_id,
                    first_break: Some(b),
                });
            }
            rows += 1;
            last_id = row.id;
            ends.insert(chain, (row.id, row.hash));
        }
        if done {
            break;
        }
    }
    // Every head must be where its chain ends (a head with no rows: its whole chain is gone;
    // a chain with rows and no head: its customer's row is gone).
    let chain_zero = with_conn!(conn, c => change_head::table
        .find(0)
        .select((change_head::chain, change_head::last_id, change_head::hash))
        .first::<(i64, i64, String)>(c)
        .optional())?;
    let chains = ends.len() as i64;
    // Each head checked takes its chain's end out: what is left has no head.
    let mut first_break = chain_zero.and_then(|head| head_break(&mut ends, head));
    let mut after = 0_i64;
    while first_break.is_none() {
        let page = with_conn!(conn, c => customer_chain::table
            .filter(customer_chain::id.gt(after))
            .order(customer_chain::id)
            .select((customer_chain::id, customer_chain::change_last_id, customer_chain::change_hash))
            .limit(VERIFY_PAGE)
            .load::<(i64, i64, String)>(c))?;
        let Some(last) = page.last() else { break };
        after = last.0;
        first_break = page
            .into_iter()
            .find_map(|head| head_break(&mut ends, head));
    }
    if first_break.is_none() {
        // A chain left has rows and no head: as against a head that names none. The lowest
        // such chain, so that the answer does not depend on the map's order.
        let headless = ends.keys().min().copied();
        first_break =
            headless.and_then(|chain| head_break(&mut ends, (chain, 0, GENESIS_HASH.to_string())));
    }
    Ok(Verified {
        rows,
        chains: chains.max(1),
        last_id,
        first_break,
    })
}
