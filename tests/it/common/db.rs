//! Databases: a fresh one per test (an SQLite file in a temporary directory, or a new
//! PostgreSQL database dropped afterwards), each with its own Stripe emulator.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use plan_invoicer::devtools::emulator::Emulator;

use super::stripe::start_emulator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL server for tests is (a database per test is created on it).
pub fn pg_base_url() -> String {
    std::env::var("PLAN_INVOICER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// `.ci/run` sets this so that a missing PostgreSQL fails instead of skipping.
pub fn pg_required() -> bool {
    std::env::var("PLAN_INVOICER_REQUIRE_PG").is_ok_and(|v| v == "1")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub stripe: Emulator,
    pub stripe_base: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A fresh, migrated database; `None` when PostgreSQL is unreachable and not required.
    pub fn new(backend: Backend) -> Option<TestDb> {
        let db = Self::empty(backend)?;
        db.ok(None, &["migrate"]);
        Some(db)
    }

    /// A fresh database without the schema.
    pub fn empty(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                let (stripe, stripe_base) = start_emulator();
                Some(TestDb {
                    backend,
                    url,
                    stripe,
                    stripe_base,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = format!("{}/postgres", pg_base_url());
                let mut conn = match PgConnection::establish(&admin) {
                    Ok(c) => c,
                    Err(e) if !pg_required() => {
                        eprintln!("skipping PostgreSQL test: {e}");
                        return None;
                    }
                    Err(e) => panic!(
                        "PostgreSQL is required (PLAN_INVOICER_REQUIRE_PG=1) but unreachable: {e}"
                    ),
                };
                let name = format!(
                    "pi_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                );
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                let (stripe, stripe_base) = start_emulator();
                Some(TestDb {
                    backend,
                    url: format!("{}/{name}", pg_base_url()),
                    stripe,
                    stripe_base,
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", pg_base_url())) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

/// Runs one statement on the PostgreSQL server's `postgres` database (taking a test database
/// away and giving it back).
pub fn pg_admin(sql: &str) {
    let mut conn = PgConnection::establish(&format!("{}/postgres", pg_base_url()))
        .unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query(sql)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
