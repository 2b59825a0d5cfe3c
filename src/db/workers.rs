//! The workers' own records: the fleet's heartbeats (how many workers share the Stripe
//! budget) and one row per pass (`status` shows the last one).

use diesel::prelude::*;

use super::models::PassRunRow;
use super::{Conn, DbError};
use crate::domain::Ts;
use crate::with_conn;

// ----- workers -----

/// Records that `worker` is alive at `at` and returns how many workers were seen alive since
/// `alive_since` (itself included): the fleet the Stripe budget is split across.
pub fn heartbeat(conn: &mut Conn, worker: &str, at: Ts, alive_since: Ts) -> Result<u32, DbError> {
    let live = with_conn!(conn, c => {
        diesel::insert_into(worker_heartbeat::table)
            .values((worker_heartbeat::worker.eq(worker), worker_heartbeat::seen_at.eq(at)))
            .on_conflict(worker_heartbeat::worker)
            .do_update()
            .set(worker_heartbeat::seen_at.eq(at))
            .execute(c)?;
        worker_heartbeat::table
            .filter(worker_heartbeat::seen_at.ge(alive_since))
            .count()
            .get_result::<i64>(c)
    })?;
    Ok(u32::try_from(live.max(1)).unwrap_or(u32::MAX))
}

/// A worker leaves the fleet (end of a pass).
pub fn leave(conn: &mut Conn, worker: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::delete(worker_heartbeat::table.find(worker)).execute(c))?;
    Ok(())
}

// ----- passes -----

pub fn insert_pass_run(
    conn: &mut Conn,
    worker: &str,
    now: Ts,
    started_at: Ts,
) -> Result<i64, DbError> {
    Ok(with_conn!(conn, c => diesel::insert_into(pass_run::table)
        .values((pass_run::worker.eq(worker), pass_run::now.eq(now), pass_run::started_at.eq(started_at)))
        .returning(pass_run::id)
        .get_result::<i64>(c))?)
}

pub fn finish_pass_run(
    conn: &mut Conn,
    id: i64,
    finished_at: Ts,
    counts: [i32; 5],
) -> Result<(), DbError> {
    let [considered, invoiced, invoices, attention, failures] = counts;
    with_conn!(conn, c => diesel::update(pass_run::table.find(id))
        .set((
            pass_run::finished_at.eq(finished_at),
            pass_run::plans_considered.eq(considered),
            pass_run::plans_invoiced.eq(invoiced),
            pass_run::invoices.eq(invoices),
            pass_run::needs_attention.eq(attention),
            pass_run::failures.eq(failures),
        ))
        .execute(c))?;
    Ok(())
}

pub fn last_pass_run(conn: &mut Conn) -> Result<Option<PassRunRow>, DbError> {
    Ok(
        with_conn!(conn, c => pass_run::table.order(pass_run::id.desc()).first::<PassRunRow>(c).optional())?,
    )
}
