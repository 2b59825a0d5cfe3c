//! `bench-changes`: the change history at the size of a real book. Seeds `customers` customers
//! with a creation and then one pass change per month for `months` months (each through
//! [`crate::db::changes::append`], so the chain is real), then times `changes list --customer`'s
//! query for a thousand customers and one `changes verify` over the whole chain. Results and the
//! command line are kept in `docs/BENCHMARKS.md`.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::json;

use crate::admin::changes::{list, ChangeQuery};
use crate::db::changes::{append, verify};
use crate::db::{Conn, DbUrl};
use crate::domain::change::{Author, Change};
use crate::error::{invalid, AppError};

#[derive(Debug, Serialize)]
pub struct ChangesBenchReport {
    pub backend: &'static str,
    pub customers: i64,
    pub months: i64,
    pub rows: i64,
    pub seed_ms: u64,
    pub list_queries: usize,
    pub list_p50_ms: f64,
    pub list_p99_ms: f64,
    pub list_max_ms: f64,
    pub verify_ms: u64,
    pub verified_rows: i64,
    pub peak_rss_kib: Option<u64>,
}

/// Rows per seeding transaction.
const BATCH: i64 = 5_000;

pub fn run(
    customers: i64,
    months: i64,
    url: Option<DbUrl>,
) -> Result<ChangesBenchReport, AppError> {
    if !(1..=10_000_000).contains(&customers) || !(0..=98).contains(&months) {
        return Err(invalid(
            "--customers must be 1 to 10,000,000 and --months 0 to 98",
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "plan-invoicer-bench-changes-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    let url = url.unwrap_or_else(|| DbUrl::Sqlite(dir.join("changes.db")));
    if let DbUrl::Sqlite(p) = &url {
        let _ = std::fs::remove_file(p);
    }
    let mut conn = Conn::open(&url, true)?;
    conn.migrate()?;
    let t0 = Utc
        .with_ymd_and_hms(2025, 1, 6, 9, 0, 0)
        .single()
        .ok_or_else(|| invalid("bench date"))?;
    let host = Author::api(
        "host-app",
        Some(("on_behalf_of", "admin@example.com")),
        Some(("reason", "signup")),
        None,
    )?;
    let pass = Author::system("system:pass");

    let seed = Instant::now();
    seed_customers(&mut conn, customers, t0)?;
    let total = customers * (months + 1);
    let mut n = 0;
    while n < total {
        let end = (n + BATCH).min(total);
        conn.transaction(|c| {
            for k in n..end {
                let (month, customer) = (k / customers, k % customers + 1);
                let (author, change) = seeded_change(&host, &pass, customer, month, t0);
                append(c, author, &change, change.at, Default::default())?;
            }
            Ok::<_, AppError>(())
        })?;
        n = end;
    }
    let seed_ms = ms(seed);

    // A thousand customers spread over the book, in a fixed pseudo-random order.
    let mut times = vec![];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let customer = i64::try_from(x % customers as u64).unwrap_or(0) + 1;
        let q = ChangeQuery {
            customer: Some(customer),
            ..ChangeQuery::default()
        };
        let started = Instant::now();
        let rows = list(&mut conn, q, 0)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if rows.len() as i64 != months + 1 {
            return Err(invalid(format!(
                "customer {customer} has {} changes, not {}",
                rows.len(),
                months + 1
            )));
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];

    let started = Instant::now();
    let verified = verify(&mut conn)?;
    let verify_ms = ms(started);
    if verified.first_break.is_some() {
        return Err(invalid(format!("the seeded chain is broken: {verified:?}")));
    }
    Ok(ChangesBenchReport {
        backend: if url.is_sqlite() {
            "sqlite"
        } else {
            "postgres"
        },
        customers,
        months,
        rows: total,
        seed_ms,
        list_queries: times.len(),
        list_p50_ms: at(0.5),
        list_p99_ms: at(0.99),
        list_max_ms: at(1.0),
        verify_ms,
        verified_rows: verified.rows,
        peak_rss_kib: super::bench::peak_rss_kib(),
    })
}

/// The customers whose chains are seeded, ids 1 to `customers` (each chain's head is on its
/// customer's row): the first through the command's code, the others copied from it in one
/// statement.
fn seed_customers(
    conn: &mut Conn,
    customers: i64,
    t0: chrono::DateTime<Utc>,
) -> Result<(), AppError> {
    use diesel::RunQueryDsl;

    let input = crate::ops::CustomerInput {
        name: "bench-1".into(),
        ..Default::default()
    };
    crate::ops::create_customer(conn, &input, t0)?;
    if customers < 2 {
        return Ok(());
    }
    // `customers` is a checked integer, not text from outside.
    let copies = format!(
        "WITH RECURSIVE s(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM s WHERE k < {customers}) \
         INSERT INTO customer (name, kind, sponsorship_pending, monthly_discounted_price, \
         annual_discounted_price, exempt_from_license_number_check, flat_discount, \
         flat_discounted_months, created_at) \
         SELECT 'bench-' || k, t.kind, t.sponsorship_pending, t.monthly_discounted_price, \
         t.annual_discounted_price, t.exempt_from_license_number_check, t.flat_discount, \
         t.flat_discounted_months, t.created_at FROM s, customer t WHERE t.id = 1"
    );
    crate::with_conn!(conn, c => diesel::sql_query(copies).execute(c))
        .map_err(crate::db::DbError::from)?;
    Ok(())
}

/// Month 0: the customer's plan created through the API; later months: the pass's invoice.
fn seeded_change<'a>(
    host: &'a Author,
    pass: &'a Author,
    customer: i64,
    month: i64,
    t0: chrono::DateTime<Utc>,
) -> (&'a Author, Change) {
    let at = t0 + Duration::days(30 * month) + Duration::seconds(customer % 86_400);
    let due = |m: i64| (t0 + Duration::days(30 * m)).to_rfc3339();
    if month == 0 {
        let change = Change {
            at,
            operation: "plan.create".into(),
            customer_id: Some(customer),
            plan_id: Some(customer),
            new_plan_id: None,
            invoice_id: None,
            objects: json!({ "customer": customer, "plan": customer }),
            before: json!({}),
            after: json!({
                "id": customer, "customer_id": customer, "tier": "cloud_standard",
                "status": "active", "billing_schedule": "monthly", "licenses": 10,
                "licenses_at_next_renewal": 10, "price_per_license_cents": 800,
                "next_invoice_date": due(1), "automanage_licenses": true,
            }),
        };
        return (host, change);
    }
    let invoice = customers_invoice(customer, month);
    let change = Change {
        at,
        operation: "pass.invoice".into(),
        customer_id: Some(customer),
        plan_id: Some(customer),
        new_plan_id: None,
        invoice_id: Some(invoice),
        objects: json!({ "customer": customer, "plan": customer, "invoice": invoice }),
        before: json!({ "next_invoice_date": due(month), "invoiced_through_ledger_id": month }),
        after: json!({ "next_invoice_date": due(month + 1), "invoiced_through_ledger_id": month + 1 }),
    };
    (pass, change)
}

fn customers_invoice(customer: i64, month: i64) -> i64 {
    customer * 1000 + month
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
