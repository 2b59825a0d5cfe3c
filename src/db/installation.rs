//! This database's installation: its id in Stripe's keys and metadata (docs/RULES.md §5).

use diesel::prelude::*;

use super::{Conn, DbError};
use crate::stripe::Installation;
use crate::with_conn;

/// The installation row the first `migrate` wrote.
pub fn installation(conn: &mut Conn) -> Result<Installation, DbError> {
    let (id, customers, invoices) = with_conn!(conn, c => installation::table
        .select((
            installation::installation_id,
            installation::legacy_customers_through,
            installation::legacy_invoices_through,
        ))
        .first::<(String, i64, i64)>(c)
        .optional())?
    .ok_or_else(|| {
        DbError::BadRow("the installation row is missing: run `plan-invoicer migrate`".into())
    })?;
    Installation::new(&id, customers, invoices).ok_or_else(|| {
        DbError::BadRow(format!(
            "installation id {id:?} is not 1 to 32 letters or digits"
        ))
    })
}
