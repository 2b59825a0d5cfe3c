//! Queries. Each function is one short statement (or a few) over [`Conn`]; transactions are
//! opened by the callers with [`Conn::transaction`].

use diesel::prelude::*;

use super::models::*;
use super::{Conn, DbError};
use crate::domain::EventKind;
use crate::domain::{
    Customer, InvoicingStatus, LedgerEntry, OfferStatus, Plan, PlanStatus, Tier, Ts,
};
use crate::with_conn;

// ----- customers -----

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub external_ref: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub kind: &'static str,
    pub stripe_customer_id: Option<String>,
    pub monthly_discounted_price: i64,
    pub annual_discounted_price: i64,
    pub minimum_licenses: Option<i32>,
    pub required_plan_tier: Option<i16>,
    pub exempt_from_license_number_check: bool,
    pub flat_discounted_months: i32,
    pub created_at: Ts,
}

pub fn insert_customer(conn: &mut Conn, n: &NewCustomer) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => diesel::insert_into(customer::table)
        .values((
            customer::external_ref.eq(&n.external_ref),
            customer::name.eq(&n.name),
            customer::email.eq(&n.email),
            customer::kind.eq(n.kind),
            customer::stripe_customer_id.eq(&n.stripe_customer_id),
            customer::monthly_discounted_price.eq(n.monthly_discounted_price),
            customer::annual_discounted_price.eq(n.annual_discounted_price),
            customer::minimum_licenses.eq(n.minimum_licenses),
            customer::required_plan_tier.eq(n.required_plan_tier),
            customer::exempt_from_license_number_check.eq(n.exempt_from_license_number_check),
            customer::flat_discounted_months.eq(n.flat_discounted_months),
            customer::created_at.eq(n.created_at),
        ))
        .returning(customer::id)
        .get_result::<i64>(c))?)
}

pub fn get_customer(conn: &mut Conn, id: i64) -> Result<Option<Customer>, DbError> {
    let row = with_conn!(conn, c => customer::table.find(id).first::<CustomerRow>(c).optional())?;
    row.map(CustomerRow::into_domain).transpose()
}

pub fn set_flat_discounted_months(conn: &mut Conn, id: i64, months: i32) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id)).set(customer::flat_discounted_months.eq(months)).execute(c))?;
    Ok(())
}

pub fn set_stripe_customer_id(conn: &mut Conn, id: i64, stripe_id: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id)).set(customer::stripe_customer_id.eq(stripe_id)).execute(c))?;
    Ok(())
}

pub fn set_usage(
    conn: &mut Conn,
    id: i64,
    at: Option<Ts>,
    seats: Option<i32>,
) -> Result<(), DbError> {
    with_conn!(conn, c => {
        if let Some(at) = at {
            diesel::update(customer::table.find(id)).set(customer::last_usage_report_at.eq(at)).execute(c)?;
        }
        if let Some(seats) = seats {
            diesel::update(customer::table.find(id)).set(customer::seat_count.eq(seats)).execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// A customer's negotiated prices for one tier; the flat new-customer discount ends with them.
pub fn set_discount(
    conn: &mut Conn,
    id: i64,
    monthly: i64,
    annual: i64,
    tier: Tier,
) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id))
        .set((
            customer::monthly_discounted_price.eq(monthly),
            customer::annual_discounted_price.eq(annual),
            customer::required_plan_tier.eq(Some(tier.code())),
            customer::flat_discounted_months.eq(0),
        ))
        .execute(c))?;
    Ok(())
}

// ----- plans -----

#[derive(Debug, Clone)]
pub struct NewPlan {
    pub customer_id: i64,
    pub tier: Tier,
    pub status: PlanStatus,
    pub billing_schedule: i16,
    pub fixed_price: Option<i64>,
    pub price_per_license: Option<i64>,
    pub discount: Option<String>,
    pub automanage_licenses: bool,
    pub charge_automatically: bool,
    pub billing_cycle_anchor: Ts,
    pub next_invoice_date: Option<Ts>,
    pub end_date: Option<Ts>,
    pub invoicing_status: InvoicingStatus,
    pub created_at: Ts,
}

pub fn insert_plan(conn: &mut Conn, n: &NewPlan) -> Result<i64, DbError> {
    Ok(
        with_conn!(conn, c => diesel::insert_into(customer_plan::table)
        .values((
            customer_plan::customer_id.eq(n.customer_id),
            customer_plan::tier.eq(n.tier.code()),
            customer_plan::status.eq(n.status.code()),
            customer_plan::billing_schedule.eq(n.billing_schedule),
            customer_plan::fixed_price.eq(n.fixed_price),
            customer_plan::price_per_license.eq(n.price_per_license),
            customer_plan::discount.eq(&n.discount),
            customer_plan::automanage_licenses.eq(n.automanage_licenses),
            customer_plan::charge_automatically.eq(n.charge_automatically),
            customer_plan::billing_cycle_anchor.eq(n.billing_cycle_anchor),
            customer_plan::next_invoice_date.eq(n.next_invoice_date),
            customer_plan::end_date.eq(n.end_date),
            customer_plan::invoicing_status.eq(n.invoicing_status.code()),
            customer_plan::created_at.eq(n.created_at),
        ))
        .returning(customer_plan::id)
        .get_result::<i64>(c))?,
    )
}

pub fn get_plan(conn: &mut Conn, id: i64) -> Result<Option<PlanRecord>, DbError> {
    let row = with_conn!(conn, c => customer_plan::table.find(id).first::<PlanRow>(c).optional())?;
    row.map(PlanRow::into_record).transpose()
}

/// Locks a plan's row for the rest of the caller's transaction, before an admin operation reads
/// it: the pass's writes for the plan take the same lock (the claim's fence), so an operation
/// never interleaves with an invoicing step — a ledger entry written beside a step could be
/// passed over by its `invoiced_through`. PostgreSQL: `FOR NO KEY UPDATE`; SQLite: the
/// database's write lock, at once ([`super::sqlite_write_lock`]; a read lock upgraded later
/// fails under WAL instead of waiting). Nothing happens for an unknown id.
pub fn lock_plan(conn: &mut Conn, id: i64) -> Result<(), DbError> {
    match conn {
        Conn::Pg(c) => {
            use super::schema::pg::*;
            customer_plan::table
                .find(id)
                .select(customer_plan::id)
                .for_no_key_update()
                .first::<i64>(c)
                .optional()?;
        }
        Conn::Sqlite(c) => super::sqlite_write_lock(c)?,
    }
    Ok(())
}

/// [`lock_plan`] and [`get_plan`] in one: on PostgreSQL one statement, `SELECT … FOR NO KEY
/// UPDATE`.
pub fn get_plan_locked(conn: &mut Conn, id: i64) -> Result<Option<PlanRecord>, DbError> {
    let row = match conn {
        Conn::Pg(c) => {
            use super::schema::pg::*;
            customer_plan::table
                .find(id)
                .for_no_key_update()
                .first::<PlanRow>(c)
                .optional()?
        }
        Conn::Sqlite(_) => {
            lock_plan(conn, id)?;
            return get_plan(conn, id);
        }
    };
    row.map(PlanRow::into_record).transpose()
}

#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    pub customer_id: Option<i64>,
    pub status: Option<PlanStatus>,
    pub due_at: Option<Ts>,
    pub needs_attention: bool,
    pub leased: bool,
    /// Only plans whose lease is still running at this instant.
    pub lease_live_at: Option<Ts>,
    /// Only plans waiting for a retry after a transient failure (not needing attention).
    pub retrying: bool,
}

/// The plans matching `$f`, as a boxed query on the backend in scope (used inside `with_conn!`).
macro_rules! filtered_plans {
    ($f:expr) => {{
        let f: &PlanFilter = $f;
        let mut q = customer_plan::table.into_boxed();
        if let Some(id) = f.customer_id {
            q = q.filter(customer_plan::customer_id.eq(id));
        }
        if let Some(s) = f.status {
            q = q.filter(customer_plan::status.eq(s.code()));
        }
        if let Some(t) = f.due_at {
            q = q.filter(customer_plan::next_invoice_date.le(t));
        }
        if f.needs_attention {
            q = q.filter(customer_plan::needs_attention.is_not_null());
        }
        if f.leased {
            q = q.filter(customer_plan::lease_owner.is_not_null());
        }
        if let Some(t) = f.lease_live_at {
            q = q.filter(customer_plan::lease_expires_at.gt(t));
        }
        if f.retrying {
            q = q
                .filter(customer_plan::next_retry_at.is_not_null())
                .filter(customer_plan::needs_attention.is_null());
        }
        q
    }};
}

pub fn list_plans(conn: &mut Conn, f: &PlanFilter) -> Result<Vec<PlanRecord>, DbError> {
    let rows =
        with_conn!(conn, c => filtered_plans!(f).order(customer_plan::id).load::<PlanRow>(c))?;
    rows.into_iter().map(PlanRow::into_record).collect()
}

/// How many plans match, without loading them (metrics).
pub fn count_plans(conn: &mut Conn, f: &PlanFilter) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => filtered_plans!(f).count().get_result::<i64>(c))?)
}

/// Writes every mutable field of the plan (not the lease or error bookkeeping).
pub fn save_plan(conn: &mut Conn, p: &Plan) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer_plan::table.find(p.id))
        .set((
            customer_plan::tier.eq(p.tier.code()),
            customer_plan::status.eq(p.status.code()),
            customer_plan::billing_schedule.eq(p.billing_schedule.code()),
            customer_plan::fixed_price.eq(p.fixed_price),
            customer_plan::price_per_license.eq(p.price_per_license),
            customer_plan::discount.eq(&p.discount),
            customer_plan::automanage_licenses.eq(p.automanage_licenses),
            customer_plan::charge_automatically.eq(p.charge_automatically),
            customer_plan::billing_cycle_anchor.eq(p.billing_cycle_anchor),
            customer_plan::next_invoice_date.eq(p.next_invoice_date),
            customer_plan::invoiced_through_id.eq(p.invoiced_through),
            customer_plan::end_date.eq(p.end_date),
            customer_plan::invoicing_status.eq(p.invoicing_status.code()),
            customer_plan::stale_audit_log_data_email_sent.eq(p.stale_audit_log_data_email_sent),
            customer_plan::reminder_to_review_plan_email_sent.eq(p.reminder_to_review_plan_email_sent),
            customer_plan::needs_attention.eq(&p.needs_attention),
            customer_plan::credit_cents.eq(p.credit),
        ))
        .execute(c))?;
    Ok(())
}

/// The live plan of a customer (lowest id with status < 10).
pub fn live_plan_of(conn: &mut Conn, customer_id: i64) -> Result<Option<PlanRecord>, DbError> {
    let row = with_conn!(conn, c => customer_plan::table
        .filter(customer_plan::customer_id.eq(customer_id))
        .filter(customer_plan::status.lt(crate::domain::types::LIVE_STATUS_THRESHOLD))
        .order(customer_plan::id)
        .first::<PlanRow>(c)
        .optional())?;
    row.map(PlanRow::into_record).transpose()
}

/// The never-started plan that starts when `plan` ends.
pub fn successor_of(conn: &mut Conn, plan: &Plan) -> Result<Option<PlanRecord>, DbError> {
    let Some(end) = plan.end_date else {
        return Ok(None);
    };
    let row = with_conn!(conn, c => customer_plan::table
        .filter(customer_plan::customer_id.eq(plan.customer_id))
        .filter(customer_plan::status.eq(PlanStatus::NeverStarted.code()))
        .filter(customer_plan::billing_cycle_anchor.eq(end))
        .order(customer_plan::id)
        .first::<PlanRow>(c)
        .optional())?;
    row.map(PlanRow::into_record).transpose()
}

pub fn plan_ids_of_customer(conn: &mut Conn, customer_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(with_conn!(conn, c => customer_plan::table
        .filter(customer_plan::customer_id.eq(customer_id))
        .order(customer_plan::id)
        .select(customer_plan::id)
        .load::<i64>(c))?)
}

// ----- ledger -----

/// A renewal entry: the licenses of a period that starts at `at` (a plan's start, a cycle
/// boundary, the end of a free trial).
pub fn insert_renewal(
    conn: &mut Conn,
    plan_id: i64,
    at: Ts,
    licenses: i32,
    next: Option<i32>,
) -> Result<LedgerEntry, DbError> {
    insert_ledger(conn, plan_id, true, at, licenses, next)
}

/// A change within a period: more licenses now, or other licenses at the next renewal.
pub fn insert_license_change(
    conn: &mut Conn,
    plan_id: i64,
    at: Ts,
    licenses: i32,
    next: Option<i32>,
) -> Result<LedgerEntry, DbError> {
    insert_ledger(conn, plan_id, false, at, licenses, next)
}

fn insert_ledger(
    conn: &mut Conn,
    plan_id: i64,
    is_renewal: bool,
    at: Ts,
    licenses: i32,
    next: Option<i32>,
) -> Result<LedgerEntry, DbError> {
    let id = with_conn!(conn, c => diesel::insert_into(license_ledger::table)
        .values((
            license_ledger::plan_id.eq(plan_id),
            license_ledger::is_renewal.eq(is_renewal),
            license_ledger::event_time.eq(at),
            license_ledger::licenses.eq(licenses),
            license_ledger::licenses_at_next_renewal.eq(next),
        ))
        .returning(license_ledger::id)
        .get_result::<i64>(c))?;
    Ok(LedgerEntry {
        id,
        plan_id,
        is_renewal,
        event_time: at,
        licenses,
        licenses_at_next_renewal: next,
    })
}

/// Changes the licenses at the next renewal of an entry in place (a per-license successor
/// scheduled at the end of complimentary access renews with the new tier's billable count).
pub fn set_licenses_at_next_renewal(
    conn: &mut Conn,
    entry_id: i64,
    next: i32,
) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(license_ledger::table.find(entry_id))
        .set(license_ledger::licenses_at_next_renewal.eq(Some(next)))
        .execute(c))?;
    Ok(())
}

/// The time of a plan's newest ledger entry, if it has any.
pub fn newest_ledger_time(conn: &mut Conn, plan_id: i64) -> Result<Option<Ts>, DbError> {
    Ok(with_conn!(conn, c => license_ledger::table
        .filter(license_ledger::plan_id.eq(plan_id))
        .order(license_ledger::event_time.desc())
        .select(license_ledger::event_time)
        .first::<Ts>(c)
        .optional())?)
}

/// What a ledger entry's renewal line billed (`None`: no invoice line bills it — a period paid
/// at checkout).
pub fn renewal_billed(conn: &mut Conn, entry_id: i64) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, c => invoice_line::table
        .filter(invoice_line::ledger_entry_id.eq(entry_id))
        .filter(invoice_line::kind.eq("renewal"))
        .select(invoice_line::amount_cents)
        .first::<i64>(c)
        .optional())?)
}

/// The due date of the plan's newest invoice: the instant up to which the plan is billed.
pub fn newest_invoice_time(conn: &mut Conn, plan_id: i64) -> Result<Option<Ts>, DbError> {
    Ok(with_conn!(conn, c => invoice::table
        .filter(invoice::plan_id.eq(plan_id))
        .order(invoice::event_time.desc())
        .select(invoice::event_time)
        .first::<Ts>(c)
        .optional())?)
}

pub fn ledger_of(conn: &mut Conn, plan_id: i64) -> Result<Vec<LedgerEntry>, DbError> {
    let rows = with_conn!(conn, c => license_ledger::table
        .filter(license_ledger::plan_id.eq(plan_id))
        .order(license_ledger::id)
        .load::<LedgerRow>(c))?;
    Ok(rows.into_iter().map(LedgerEntry::from).collect())
}

/// A plan's newest ledger entry (what its view shows as its licenses).
pub fn newest_ledger_entry(conn: &mut Conn, plan_id: i64) -> Result<Option<LedgerEntry>, DbError> {
    let row = with_conn!(conn, c => license_ledger::table
        .filter(license_ledger::plan_id.eq(plan_id))
        .order(license_ledger::id.desc())
        .first::<LedgerRow>(c)
        .optional())?;
    Ok(row.map(LedgerEntry::from))
}

// ----- offers -----

pub fn insert_offer(
    conn: &mut Conn,
    customer_id: i64,
    tier: Tier,
    fixed_price: i64,
    sent_invoice_id: Option<&str>,
    now: Ts,
) -> Result<i64, DbError> {
    Ok(
        with_conn!(conn, c => diesel::insert_into(customer_plan_offer::table)
        .values((
            customer_plan_offer::customer_id.eq(customer_id),
            customer_plan_offer::tier.eq(tier.code()),
            customer_plan_offer::fixed_price.eq(fixed_price),
            customer_plan_offer::status.eq(OfferStatus::Configured.code()),
            customer_plan_offer::sent_invoice_id.eq(sent_invoice_id),
            customer_plan_offer::created_at.eq(now),
        ))
        .returning(customer_plan_offer::id)
        .get_result::<i64>(c))?,
    )
}

pub fn get_offer(conn: &mut Conn, id: i64) -> Result<Option<Offer>, DbError> {
    let row =
        with_conn!(conn, c => customer_plan_offer::table.find(id).first::<OfferRow>(c).optional())?;
    row.map(OfferRow::into_domain).transpose()
}

pub fn set_offer_status(conn: &mut Conn, id: i64, status: OfferStatus) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer_plan_offer::table.find(id)).set(customer_plan_offer::status.eq(status.code())).execute(c))?;
    Ok(())
}

// ----- invoices: in repo/invoices.rs -----

mod invoices;
pub use invoices::*;

// ----- outbox -----

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub plan_id: i64,
    pub customer_id: i64,
    pub old_status: Option<PlanStatus>,
    pub new_status: Option<PlanStatus>,
    pub old_tier: Option<Tier>,
    pub new_tier: Option<Tier>,
    pub message: Option<String>,
    pub event_time: Ts,
}

impl NewEvent {
    /// An event about `plan` at `at`, with nothing else set.
    pub fn about(kind: EventKind, plan: &Plan, at: Ts) -> NewEvent {
        NewEvent {
            kind,
            plan_id: plan.id,
            customer_id: plan.customer_id,
            old_status: None,
            new_status: None,
            old_tier: None,
            new_tier: None,
            message: None,
            event_time: at,
        }
    }
}

pub fn insert_event(conn: &mut Conn, e: &NewEvent, now: Ts) -> Result<(), DbError> {
    if let Conn::Pg(c) = conn {
        // The events feed is read by id (`GET /v1/events?after=`): ids must become visible in
        // their order, or a reader past id 105 would never see a 103 committed later. One
        // transaction-scoped lock orders the writers of events (SQLite has one writer anyway).
        diesel::sql_query("SELECT pg_advisory_xact_lock(7263101)").execute(c)?;
    }
    with_conn!(conn, c => diesel::insert_into(plan_event::table)
        .values((
            plan_event::kind.eq(e.kind.name()),
            plan_event::plan_id.eq(e.plan_id),
            plan_event::customer_id.eq(e.customer_id),
            plan_event::old_status.eq(e.old_status.map(|s| s.code())),
            plan_event::new_status.eq(e.new_status.map(|s| s.code())),
            plan_event::old_tier.eq(e.old_tier.map(|t| t.code())),
            plan_event::new_tier.eq(e.new_tier.map(|t| t.code())),
            plan_event::message.eq(&e.message),
            plan_event::event_time.eq(e.event_time),
            plan_event::created_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

pub fn events_of_plan(conn: &mut Conn, plan_id: i64) -> Result<Vec<PlanEventRow>, DbError> {
    Ok(with_conn!(conn, c => plan_event::table
        .filter(plan_event::plan_id.eq(plan_id))
        .order(plan_event::id)
        .load::<PlanEventRow>(c))?)
}
