//! The renewal counts a per-license successor replaced, put back when it is cancelled
//! (docs/RULES.md §4.5).

use diesel::prelude::*;

use super::{Conn, DbError};
use crate::with_conn;

/// Keeps what the plan's newest entry renewed with before a per-license successor changed it.
pub fn keep_successor_renewal(
    conn: &mut Conn,
    plan_id: i64,
    entry_id: i64,
    licenses: Option<i32>,
) -> Result<(), DbError> {
    with_conn!(conn, c => {
        diesel::delete(successor_renewal::table.find(plan_id)).execute(c)?;
        diesel::insert_into(successor_renewal::table)
            .values((
                successor_renewal::plan_id.eq(plan_id),
                successor_renewal::ledger_entry_id.eq(entry_id),
                successor_renewal::licenses_at_next_renewal.eq(licenses),
            ))
            .execute(c)
    })?;
    Ok(())
}

/// Takes (reads and forgets) what [`keep_successor_renewal`] kept: the entry and its count.
pub fn take_successor_renewal(
    conn: &mut Conn,
    plan_id: i64,
) -> Result<Option<(i64, Option<i32>)>, DbError> {
    Ok(with_conn!(conn, c => {
        let kept = successor_renewal::table
            .find(plan_id)
            .select((
                successor_renewal::ledger_entry_id,
                successor_renewal::licenses_at_next_renewal,
            ))
            .first::<(i64, Option<i32>)>(c)
            .optional()?;
        diesel::delete(successor_renewal::table.find(plan_id)).execute(c)?;
        Ok::<_, diesel::result::Error>(kept)
    })?)
}
