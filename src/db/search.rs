//! The support console's search: customers by name, email, reference or Stripe id, and the
//! customer behind a plan or an invoice.

use diesel::prelude::*;
use serde::Serialize;

use super::{Conn, DbError};
use crate::with_conn;

/// A customer a search found.
#[derive(Debug, Clone, Queryable, Serialize)]
pub struct CustomerHit {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub external_ref: Option<String>,
    pub stripe_customer_id: Option<String>,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
diesel::define_sql_function!(
    #[sql_name = "lower"]
    fn lower_or_null(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>
);

/// An expression as it is (SQLite's side of [`search_customers`]).
fn same<T>(x: T) -> T {
    x
}

/// Customers whose name, email or external reference contains `text` (case-insensitive), or
/// whose Stripe customer id is `text`, newest first, at most `limit`. PostgreSQL compares
/// `lower(column) LIKE lower(text)` (measured faster than `ILIKE` over 100,000 customers);
/// SQLite's `LIKE` ignores the case of ASCII letters by itself (`lower()` there only cost time).
pub fn search_customers(
    conn: &mut Conn,
    text: &str,
    limit: i64,
) -> Result<Vec<CustomerHit>, DbError> {
    let pattern = |t: &str| {
        let escaped: String = t
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("%{escaped}%")
    };
    // One query; only the case folding differs.
    macro_rules! hits {
        ($c:ident, $fold:ident, $fold_opt:ident, $pattern:expr) => {{
            let p = $pattern;
            customer::table
                .select((
                    customer::id,
                    customer::name,
                    customer::email,
                    customer::external_ref,
                    customer::stripe_customer_id,
                ))
                .filter(
                    $fold(customer::name)
                        .like(&p)
                        .escape('\\')
                        .or($fold_opt(customer::email).like(&p).escape('\\'))
                        .or($fold_opt(customer::external_ref).like(&p).escape('\\'))
                        .or(customer::stripe_customer_id.eq(text)),
                )
                .order(customer::id.desc())
                .limit(limit)
                .load::<CustomerHit>($c)?
        }};
    }
    Ok(match conn {
        Conn::Pg(c) => {
            use super::schema::pg::*;
            hits!(c, lower, lower_or_null, pattern(&text.to_lowercase()))
        }
        Conn::Sqlite(c) => {
            use super::schema::sqlite::*;
            hits!(c, same, same, pattern(text))
        }
    })
}

/// The customer of plan `id`, if there is such a plan.
pub fn customer_of_plan(conn: &mut Conn, id: i64) -> Result<Option<i64>, DbError> {
    Ok(with_conn!(conn, c => customer_plan::table
        .find(id)
        .select(customer_plan::customer_id)
        .first::<i64>(c)
        .optional())?)
}

/// The invoice whose id or Stripe id is `text`, with its customer.
pub fn invoice_by_reference(conn: &mut Conn, text: &str) -> Result<Option<(i64, i64)>, DbError> {
    let id = text.parse::<i64>().ok();
    Ok(with_conn!(conn, c => {
        let mut q = invoice::table
            .select((invoice::id, invoice::customer_id))
            .into_boxed();
        q = match id {
            Some(id) => q.filter(invoice::id.eq(id)),
            None => q.filter(invoice::stripe_invoice_id.eq(text)),
        };
        q.first::<(i64, i64)>(c).optional()
    })?)
}

/// The customer whose id is `id`, as a search hit.
pub fn customer_hit(conn: &mut Conn, id: i64) -> Result<Option<CustomerHit>, DbError> {
    Ok(with_conn!(conn, c => customer::table
        .find(id)
        .select((
            customer::id,
            customer::name,
            customer::email,
            customer::external_ref,
            customer::stripe_customer_id,
        ))
        .first::<CustomerHit>(c)
        .optional())?)
}
