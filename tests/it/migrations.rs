//! Migrations run up, down and up again on both backends, and `migrate` is idempotent.

use crate::common::{Backend, TestDb};
use plan_invoicer::db::{Conn, DbUrl};

fn round_trip(backend: Backend) {
    let Some(db) = TestDb::empty(backend) else {
        return;
    };
    let url = DbUrl::parse(&db.url).unwrap_or(DbUrl::Sqlite("missing".into()));
    let mut conn = Conn::open(&url, true).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        conn.check_schema().is_err(),
        "an empty database is not current"
    );
    let applied = conn.migrate().unwrap_or_else(|e| panic!("{e}"));
    assert!(!applied.is_empty());
    assert!(conn.check_schema().is_ok());
    assert!(
        conn.migrate().unwrap_or_else(|e| panic!("{e}")).is_empty(),
        "second migrate is a no-op"
    );
    let reverted = conn.revert_all().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reverted.len(), applied.len());
    assert!(conn.check_schema().is_err());
    assert_eq!(conn.migrate().unwrap_or_else(|e| panic!("{e}")), applied);
    drop(conn);
    // And the schema works after the round trip.
    let id = db.id(
        Some("2012-01-02T03:04:05Z"),
        &["customer", "create", "--name", "After"],
    );
    assert_eq!(id, 1);
}

#[test]
fn sqlite_up_down_up() {
    round_trip(Backend::Sqlite);
}

#[test]
fn postgres_up_down_up() {
    round_trip(Backend::Postgres);
}

/// The chain heads move between `change_head` and the customers' rows (2026-12-08), and the rows
/// gain links to the row before (2026-12-10): a history written before the moves stays intact
/// after them, and after a move back and forth.
fn chain_heads_survive_the_move(backend: Backend) {
    use diesel_migrations::MigrationHarness;
    use plan_invoicer::db::{PG_MIGRATIONS, SQLITE_MIGRATIONS};

    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let t = Some("2012-01-02T03:04:05Z");
    let verify = |db: &TestDb| {
        let (code, out, err) = db.run(None, &["changes", "verify"]);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
        (v["rows"].as_i64(), v["chains"].as_i64())
    };
    let write = |db: &TestDb, name: &str| {
        let id = db.id(t, &["customer", "create", "--name", name]);
        db.ok(t, &["customer", "set-exempt", &id.to_string(), "true"]);
        db.ok(
            t,
            &["api-token", "create", "--name", name, "--scope", "read"],
        );
    };
    write(&db, "Before");
    let url = DbUrl::parse(&db.url).unwrap_or(DbUrl::Sqlite("missing".into()));
    let mut conn = Conn::open(&url, false).unwrap_or_else(|e| panic!("{e}"));
    // Back to before 2026-12-08-000000_chain_heads_on_customers, and up again.
    let mut reverted = vec![];
    while reverted.last().map(String::as_str) != Some("20261208000000") {
        let last = match &mut conn {
            Conn::Pg(c) => c
                .revert_last_migration(PG_MIGRATIONS)
                .map(|m| m.to_string()),
            Conn::Sqlite(c) => c
                .revert_last_migration(SQLITE_MIGRATIONS)
                .map(|m| m.to_string()),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            last.as_str() >= "20261208000000",
            "reverted {reverted:?}, {last}"
        );
        reverted.push(last);
    }
    assert_eq!(
        conn.migrate().unwrap_or_else(|e| panic!("{e}")).len(),
        reverted.len()
    );
    drop(conn);
    // Each write: two changes in its customer's chain, one in chain 0. `verify` checks the
    // links to the row before that 2026-12-10 filled in; SQLite reads a customer's by them.
    assert_eq!(verify(&db), (Some(3), Some(2)));
    let (code, out, err) = db.run(None, &["changes", "list", "--customer", "1"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = listed
        .as_array()
        .map(|rows| rows.iter().map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [Some(1), Some(2)]);
    write(&db, "After");
    assert_eq!(verify(&db), (Some(6), Some(3)));
}

/// A worker of the previous release, still running after `migrate` (PostgreSQL allows it),
/// calls `change_append` with sixteen arguments (2026-12-09 added the seat count): its appends
/// still chain, and leave the customer's seat count as it was.
#[test]
fn postgres_the_previous_append_still_chains() {
    use diesel::sql_types::{BigInt, Binary, Nullable, Text, Timestamptz};
    use diesel::RunQueryDsl;
    use plan_invoicer::domain::change::{encode_fields, hash_time};

    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let t = Some("2012-01-02T03:04:05Z");
    let customer = db.id(t, &["customer", "create", "--name", "Old worker"]);
    db.ok(
        t,
        &[
            "customer",
            "report-usage",
            &customer.to_string(),
            "--seats",
            "7",
        ],
    );
    let url = DbUrl::parse(&db.url).unwrap_or(DbUrl::Sqlite("missing".into()));
    let mut conn = Conn::open(&url, false).unwrap_or_else(|e| panic!("{e}"));
    let Conn::Pg(c) = &mut conn else {
        panic!("not PostgreSQL");
    };
    let at = chrono::DateTime::parse_from_rfc3339("2012-01-03T00:00:00Z")
        .unwrap_or_else(|e| panic!("{e}"))
        .to_utc();
    let customer_text = customer.to_string();
    let fields = [
        Some(hash_time(at)),
        Some(hash_time(at)),
        Some("system:old".to_string()),
        None,
        Some("customer.set_exempt".to_string()),
        Some(customer_text.clone()),
        None,
        None,
        None,
        Some("{}".to_string()),
        Some("{}".to_string()),
        Some("{}".to_string()),
        None,
        None,
    ];
    let tail = encode_fields(&fields.iter().map(Option::as_deref).collect::<Vec<_>>());
    let none = None::<String>;
    let none_id = None::<i64>;
    diesel::sql_query(
        "SELECT change_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind::<BigInt, _>(customer)
    .bind::<Timestamptz, _>(at)
    .bind::<Timestamptz, _>(at)
    .bind::<Text, _>("system:old")
    .bind::<Nullable<Text>, _>(&none)
    .bind::<Text, _>("customer.set_exempt")
    .bind::<Nullable<BigInt>, _>(Some(customer))
    .bind::<Nullable<BigInt>, _>(none_id)
    .bind::<Nullable<BigInt>, _>(none_id)
    .bind::<Nullable<BigInt>, _>(none_id)
    .bind::<Text, _>("{}")
    .bind::<Text, _>("{}")
    .bind::<Text, _>("{}")
    .bind::<Nullable<Text>, _>(&none)
    .bind::<Nullable<Text>, _>(&none)
    .bind::<Binary, _>(tail)
    .execute(c)
    .unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    let (code, out, err) = db.run(None, &["changes", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
    // create and report-usage, then the old worker's.
    assert_eq!(v["rows"], 3, "{v}");
    let shown = db.ok(None, &["customer", "show", &customer_text]);
    assert_eq!(shown["seat_count"], 7, "{shown}");
    assert_eq!(shown["last_change"]["actor"], "system:old", "{shown}");
}

#[test]
fn sqlite_chain_heads_survive_the_move() {
    chain_heads_survive_the_move(Backend::Sqlite);
}

#[test]
fn postgres_chain_heads_survive_the_move() {
    chain_heads_survive_the_move(Backend::Postgres);
}

#[test]
fn migrate_twice_via_cli() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let out = db.ok(None, &["migrate"]);
    assert_eq!(out["applied"].as_array().map(Vec::len), Some(0));
}
