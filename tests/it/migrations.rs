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

/// The chain heads move between `change_head` and the customers' rows (2026-12-08): a history
/// written before the move stays intact after it, and after a move back and forth.
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
    let reverted = match &mut conn {
        Conn::Pg(c) => c
            .revert_last_migration(PG_MIGRATIONS)
            .map(|m| m.to_string()),
        Conn::Sqlite(c) => c
            .revert_last_migration(SQLITE_MIGRATIONS)
            .map(|m| m.to_string()),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    // 2026-12-08-000000_chain_heads_on_customers
    assert_eq!(reverted, "20261208000000");
    assert_eq!(conn.migrate().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    drop(conn);
    // Each write: two changes in its customer's chain, one in chain 0.
    assert_eq!(verify(&db), (Some(3), Some(2)));
    write(&db, "After");
    assert_eq!(verify(&db), (Some(6), Some(3)));
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
