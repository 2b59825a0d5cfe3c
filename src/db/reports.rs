//! The figures `report revenue` and the console's revenue page are made of, each one query.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable};

use super::{Conn, DbError};
use crate::domain::Ts;
use crate::with_conn;

#[derive(Debug, QueryableByName)]
pub struct RenewalLicenses {
    #[diesel(sql_type = BigInt)]
    pub plan_id: i64,
    #[diesel(sql_type = Nullable<Integer>)]
    pub licenses_at_next_renewal: Option<i32>,
}

/// Each plan's licenses at the next renewal, as its newest ledger entry says.
pub fn renewal_licenses(conn: &mut Conn) -> Result<Vec<RenewalLicenses>, DbError> {
    const SQL: &str = "SELECT l.plan_id, l.licenses_at_next_renewal FROM license_ledger l \
        JOIN (SELECT plan_id, MAX(id) AS id FROM license_ledger GROUP BY plan_id) newest \
        ON newest.id = l.id";
    Ok(with_conn!(conn, c => diesel::sql_query(SQL).load::<RenewalLicenses>(c))?)
}

/// An invoice sent: when, its total, its payment status.
pub type Sent = (Option<Ts>, i64, Option<String>);

/// Invoices sent since `since`.
pub fn sent_since(conn: &mut Conn, since: Ts) -> Result<Vec<Sent>, DbError> {
    Ok(with_conn!(conn, c => invoice::table
        .left_join(invoice_payment::table)
        .filter(invoice::sent_at.ge(since))
        .select((
            invoice::sent_at,
            invoice::total_cents,
            invoice_payment::status.nullable(),
        ))
        .load::<crate::db::reports::Sent>(c))?)
}
