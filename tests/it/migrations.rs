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

#[test]
fn migrate_twice_via_cli() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let out = db.ok(None, &["migrate"]);
    assert_eq!(out["applied"].as_array().map(Vec::len), Some(0));
}
