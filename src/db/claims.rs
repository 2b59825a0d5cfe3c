//! The claim protocol: how a worker takes a due plan, keeps it, and gives it back. A claim
//! is a lease (owner, expiry) plus a token that every claim renews, so that a worker whose
//! lease expired and was taken over can no longer write for the plan (fencing). Each function
//! runs inside the caller's transaction.

use diesel::prelude::*;

use super::{Conn, DbError};
use crate::domain::{CustomerId, InvoicingStatus, PlanId, PlanStatus, Ts};
use crate::with_conn;

/// How a worker claims plans: who it is, and the lease's clock.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    /// The instant leases are judged at (the wall clock in production, even when a long pass
    /// started earlier); leases that expired before it may be taken over.
    pub now: Ts,
    pub until: Ts,
}

/// A worker's hold on one plan: the lease owner and the token of this claim. Every claim takes
/// a new token, so a worker whose lease expired and was taken over no longer matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub owner: String,
    pub token: i64,
}

/// Which due plans a claim may take.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimScope<'a> {
    /// Only plans with a higher id (the pass's cursor).
    pub after_id: PlanId,
    /// Never plans of these customers (in flight in this process): a short list, sent with
    /// the query.
    pub exclude_customers: &'a [CustomerId],
    /// Never plans of these customers either (failed earlier in this pass), checked here
    /// rather than in the query: the set may grow with the book, and its plans are passed
    /// over without counting against the scan.
    pub passed_over: Option<&'a std::collections::HashSet<CustomerId>>,
    /// Only this customer's plans (the customer's next plan, after one is done).
    pub customer: Option<CustomerId>,
    /// Never these plans (done already in this pass).
    pub exclude_plans: &'a [PlanId],
}

/// How many candidates one claim looks at before it gives up for now.
const CLAIM_SCAN: usize = 64;

/// Claims the next plan (in id order) that is due at `now` or left STARTED, skipping leased,
/// parked and locked plans, and plans whose customer is being invoiced elsewhere: on PostgreSQL
/// the plan row is taken with `FOR UPDATE SKIP LOCKED`, then its customer row with
/// `FOR NO KEY UPDATE SKIP LOCKED` (two workers never claim plans of one customer at the same
/// moment), then no other plan of the customer may hold a live lease. Sets the lease and a new
/// claim token. Call inside a transaction.
pub fn claim_next_due(
    conn: &mut Conn,
    now: Ts,
    scope: ClaimScope<'_>,
    lease: Lease<'_>,
) -> Result<Option<Claim>, DbError> {
    let lease_now = lease.now;
    let started = InvoicingStatus::Started.code();
    let mut after_id = scope.after_id.0;
    let exclude_customers: Vec<i64> = scope.exclude_customers.iter().map(|c| c.0).collect();
    let exclude_plans: Vec<i64> = scope.exclude_plans.iter().map(|p| p.0).collect();
    let only_customer = scope.customer.map(|c| c.0);
    macro_rules! candidates {
        () => {{
            customer_plan::table
                .filter(customer_plan::id.gt(after_id))
                .filter(
                    customer_plan::next_invoice_date
                        .le(now)
                        .or(customer_plan::invoicing_status.eq(started)),
                )
                .filter(customer_plan::status.ne(PlanStatus::NeverStarted.code()))
                .filter(
                    customer_plan::lease_expires_at
                        .is_null()
                        .or(customer_plan::lease_expires_at.lt(lease_now)),
                )
                .filter(
                    customer_plan::next_retry_at
                        .is_null()
                        .or(customer_plan::next_retry_at.le(now)),
                )
                .filter(customer_plan::customer_id.ne_all(&exclude_customers))
                .filter(customer_plan::id.ne_all(&exclude_plans))
                .order(customer_plan::id)
                .select((customer_plan::id, customer_plan::customer_id))
        }};
    }
    let mut looked = 0;
    while looked < CLAIM_SCAN {
        let candidate = match conn {
            Conn::Pg(c) => {
                use super::schema::pg::*;
                // The customer filter only when scoped: a filter matching every customer would
                // lead the planner to the customer index instead of the id order.
                let found = match only_customer {
                    Some(only) => candidates!()
                        .filter(customer_plan::customer_id.eq(only))
                        .for_update()
                        .skip_locked()
                        .first::<(i64, i64)>(c)
                        .optional()?,
                    None => candidates!()
                        .for_update()
                        .skip_locked()
                        .first::<(i64, i64)>(c)
                        .optional()?,
                };
                let Some((id, cid)) = found else {
                    return Ok(None);
                };
                let customer_free = customer::table
                    .find(cid)
                    .select(customer::id)
                    .for_no_key_update()
                    .skip_locked()
                    .first::<i64>(c)
                    .optional()?
                    .is_some();
                (id, cid, customer_free)
            }
            Conn::Sqlite(c) => {
                use super::schema::sqlite::*;
                let found = match only_customer {
                    Some(only) => candidates!()
                        .filter(customer_plan::customer_id.eq(only))
                        .first::<(i64, i64)>(c)
                        .optional()?,
                    None => candidates!().first::<(i64, i64)>(c).optional()?,
                };
                let Some((id, cid)) = found else {
                    return Ok(None);
                };
                (id, cid, true)
            }
        };
        let (id, cid, customer_free) = candidate;
        after_id = id;
        if scope
            .passed_over
            .is_some_and(|set| set.contains(&CustomerId(cid)))
        {
            continue;
        }
        looked += 1;
        if !customer_free || sibling_leased(conn, CustomerId(cid), PlanId(id), lease_now)? {
            // Another worker is invoicing this customer; that worker takes this plan after
            // the one it holds.
            continue;
        }
        return take_lease(conn, PlanId(id), CustomerId(cid), lease).map(Some);
    }
    Ok(None)
}

/// Whether another plan of the customer is under a live lease (its worker invoices the customer).
/// Runs in the claim's transaction.
fn sibling_leased(
    conn: &mut Conn,
    customer: CustomerId,
    plan: PlanId,
    lease_now: Ts,
) -> Result<bool, DbError> {
    Ok(with_conn!(conn, c => diesel::select(diesel::dsl::exists(
        customer_plan::table
            .filter(customer_plan::customer_id.eq(customer.0))
            .filter(customer_plan::id.ne(plan.0))
            .filter(customer_plan::lease_expires_at.ge(lease_now)),
    ))
    .get_result::<bool>(c))?)
}

/// Writes the lease on a chosen plan, marks it started and bumps its claim token (the fence).
/// Runs in the claim's transaction.
fn take_lease(
    conn: &mut Conn,
    plan: PlanId,
    customer: CustomerId,
    lease: Lease<'_>,
) -> Result<Claim, DbError> {
    let started = InvoicingStatus::Started.code();
    let token = with_conn!(conn, c => diesel::update(customer_plan::table.find(plan.0))
        .set((
            customer_plan::lease_owner.eq(lease.owner),
            customer_plan::lease_expires_at.eq(lease.until),
            customer_plan::invoicing_status.eq(started),
            customer_plan::claim_token.eq(customer_plan::claim_token + 1),
        ))
        .returning(customer_plan::claim_token)
        .get_result::<i64>(c))?;
    Ok(Claim {
        plan_id: plan,
        customer_id: customer,
        owner: lease.owner.to_string(),
        token,
    })
}

/// Fencing: says whether `claim` still holds the plan, and keeps its lease at least half of
/// `lease` ahead of `now`. Run it first in the transaction of every write made for the claim:
/// the plan row stays locked until that transaction ends, so no other worker can claim the plan
/// between the check and the write.
///
/// PostgreSQL locks the row with `SELECT … FOR NO KEY UPDATE` (the claim's `FOR UPDATE SKIP
/// LOCKED` passes it by) and updates the lease only once half of it has gone: a plan's writes
/// follow each other within seconds, and an UPDATE for each of them left a dead row version and
/// new index entries behind every time (eight per invoiced plan, the busiest statement of a
/// pass). SQLite takes the database's write lock with the UPDATE itself, at once, so a
/// transaction never has to upgrade a read lock (which fails rather than waits under WAL).
pub fn renew_claim(
    conn: &mut Conn,
    claim: &Claim,
    now: Ts,
    lease: chrono::Duration,
) -> Result<bool, DbError> {
    let until = now + lease;
    match conn {
        Conn::Pg(c) => {
            use super::schema::pg::*;
            let expires = customer_plan::table
                .find(claim.plan_id.0)
                .filter(customer_plan::lease_owner.eq(&claim.owner))
                .filter(customer_plan::claim_token.eq(claim.token))
                .select(customer_plan::lease_expires_at)
                .for_no_key_update()
                .first::<Option<Ts>>(c)
                .optional()?;
            let Some(expires) = expires else {
                return Ok(false);
            };
            if expires.is_none_or(|at| at < now + lease / 2) {
                diesel::update(customer_plan::table.find(claim.plan_id.0))
                    .set(customer_plan::lease_expires_at.eq(until))
                    .execute(c)?;
            }
            Ok(true)
        }
        Conn::Sqlite(c) => {
            use super::schema::sqlite::*;
            let n = diesel::update(customer_plan::table.find(claim.plan_id.0))
                .filter(customer_plan::lease_owner.eq(&claim.owner))
                .filter(customer_plan::claim_token.eq(claim.token))
                .set(customer_plan::lease_expires_at.eq(until))
                .execute(c)?;
            Ok(n == 1)
        }
    }
}

/// Ends a claim: the invoicing status, the lease, and the error bookkeeping. Returns false
/// (and writes nothing) when the claim was taken over by another worker.
pub fn release_plan(
    conn: &mut Conn,
    claim: &Claim,
    status: InvoicingStatus,
    outcome: Release<'_>,
) -> Result<bool, DbError> {
    let n = with_conn!(conn, c => {
        let target = customer_plan::table
            .find(claim.plan_id.0)
            .filter(customer_plan::lease_owner.eq(&claim.owner))
            .filter(customer_plan::claim_token.eq(claim.token));
        let base = (
            customer_plan::invoicing_status.eq(status.code()),
            customer_plan::lease_owner.eq(None::<String>),
            customer_plan::lease_expires_at.eq(None::<Ts>),
        );
        match outcome {
            Release::Success => diesel::update(target)
                .set((
                    base,
                    customer_plan::needs_attention.eq(None::<String>),
                    customer_plan::error_count.eq(0),
                    customer_plan::last_error.eq(None::<String>),
                    customer_plan::next_retry_at.eq(None::<Ts>),
                ))
                .execute(c),
            Release::Failed { error, needs_attention, retry_at } => diesel::update(target)
                .set((
                    base,
                    customer_plan::needs_attention.eq(needs_attention),
                    customer_plan::error_count.eq(customer_plan::error_count + 1),
                    customer_plan::last_error.eq(error),
                    customer_plan::next_retry_at.eq(retry_at),
                ))
                .execute(c),
        }
    })?;
    Ok(n == 1)
}

/// How a claim ends: with success (errors cleared) or a failure to record.
pub enum Release<'a> {
    /// Invoicing succeeded: clear needs-attention and errors.
    Success,
    Failed {
        error: &'a str,
        needs_attention: Option<&'a str>,
        retry_at: Option<Ts>,
    },
}

/// A plan that needs attention or waits to retry: both cleared, so that the next pass claims it
/// (`plan retry`).
pub fn clear_attention(conn: &mut Conn, id: i64) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer_plan::table.find(id))
        .set((
            customer_plan::needs_attention.eq(None::<String>),
            customer_plan::next_retry_at.eq(None::<Ts>),
        ))
        .execute(c))?;
    Ok(())
}

/// Lets a parked plan be retried at once (an operator changed something).
pub fn clear_retry(conn: &mut Conn, id: i64) -> Result<(), DbError> {
    // Only a plan that waits for a retry is written: a seat count arrives far more often than a
    // failure, and an UPDATE that changes nothing still writes a new row version.
    with_conn!(conn, c => diesel::update(
        customer_plan::table
            .find(id)
            .filter(customer_plan::next_retry_at.is_not_null()),
    )
    .set(customer_plan::next_retry_at.eq(None::<Ts>))
    .execute(c))?;
    Ok(())
}
