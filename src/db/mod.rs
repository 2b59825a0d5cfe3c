//! The database adapter: one connection type over SQLite (embedded default) and PostgreSQL,
//! the schema, embedded per-backend migrations, and the queries in [`repo`].
//!
//! Queries are written once with diesel's DSL. [`with_conn!`] runs the same code against the
//! backend's concrete connection, with the backend's schema in scope (the two schemas differ
//! only in the timestamp type). The few statements that differ (`FOR UPDATE SKIP LOCKED`) match
//! on [`Conn`] explicitly.

pub mod api;
pub mod changes;
pub mod claims;
pub mod customer_settings;
pub mod installation;
pub mod lock;
pub mod models;
pub mod payments;
pub mod pool;
pub mod repo;
pub mod reports;
pub mod search;
pub mod staff;
pub mod successors;
pub mod workers;

pub use pool::Db;

use std::path::{Path, PathBuf};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub mod schema {
    pub mod pg {
        pub type TsSql = diesel::sql_types::Timestamptz;
        include!("schema.rs");
    }
    pub mod sqlite {
        pub type TsSql = diesel::sql_types::TimestamptzSqlite;
        include!("schema.rs");
    }
}

/// PostgreSQL sessions wait this long for a row lock before the statement fails.
pub const LOCK_TIMEOUT_SECONDS: u32 = 10;

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Runs `$body` with `$c` bound to the concrete connection and that backend's tables in scope.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Pg($c) => {
                #[allow(unused_imports)]
                use $crate::db::schema::pg::*;
                $body
            }
            $crate::db::Conn::Sqlite($c) => {
                #[allow(unused_imports)]
                use $crate::db::schema::sqlite::*;
                $body
            }
        }
    };
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("invalid database URL {0:?}: expected sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("SQLite database {0} does not exist: run `plan-invoicer migrate` first")]
    Missing(PathBuf),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("the database schema is not up to date: run `plan-invoicer migrate`")]
    SchemaOutdated,
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("bad database row: {0}")]
    BadRow(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// The SQLite worker lock file cannot be opened or locked.
    #[error("{0}")]
    Lock(String),
    /// Another worker holds the SQLite worker lock.
    #[error("{0}")]
    Busy(String),
}

/// What PostgreSQL and libpq say when a connection is lost or refused mid-way: an
/// administrator's `pg_terminate_backend` or a shutdown (SQLSTATE class 57), a server that went
/// away, a command that could not be sent. diesel names only some of these as
/// `ClosedConnection`; the rest arrive as `Unknown` with one of these texts.
const LOST_CONNECTION: &[&str] = &[
    "terminating connection",
    "the database system is",
    "server closed the connection",
    "no connection to the server",
    "could not receive data",
    "could not send data",
    "connection to server",
    "connection is closed",
    "broken pipe",
];

impl DbError {
    /// The database is away: unreachable, restarting, or the connection was lost. The one
    /// classification of a lost connection, used by the API (503 with Retry-After), the pass
    /// (a retry) and the readiness probe.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match self {
            DbError::Connect(_) | DbError::Missing(_) => true,
            DbError::Query(E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _)) => {
                true
            }
            DbError::Query(E::DatabaseError(_, info)) => {
                let message = info.message().to_ascii_lowercase();
                LOST_CONNECTION.iter().any(|m| message.contains(m))
            }
            DbError::Query(E::BrokenTransactionManager) => true,
            _ => false,
        }
    }

    /// Transient failures a later attempt may not meet (serialization, deadlock, lost connection).
    pub fn is_retryable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        if self.is_unavailable() {
            return true;
        }
        match self {
            DbError::Busy(_) => true,
            DbError::Query(E::DatabaseError(kind, _)) => {
                matches!(kind, K::SerializationFailure | K::Unknown)
            }
            _ => false,
        }
    }

    /// A unique constraint refused the write (another writer got there first).
    pub fn is_unique_violation(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        matches!(
            self,
            DbError::Query(E::DatabaseError(K::UniqueViolation, _))
        )
    }

    /// A unique or check constraint refused the write.
    pub fn constraint(&self) -> Option<&str> {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match self {
            DbError::Query(E::DatabaseError(
                K::UniqueViolation | K::CheckViolation | K::ForeignKeyViolation,
                info,
            )) => Some(info.constraint_name().unwrap_or(info.message())),
            _ => None,
        }
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let url = url.trim();
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(DbError::BadUrl(url.to_string()));
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(rest)));
        }
        if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && url.len() > "postgres://".len()
        {
            return Ok(DbUrl::Postgres(url.to_string()));
        }
        Err(DbError::BadUrl(url.to_string()))
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, DbUrl::Sqlite(_))
    }

    /// The URL without a password, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DbUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DbUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &u[s + 3..at];
                    let user = creds.split(':').next().unwrap_or("");
                    format!("{}{}@{}", &u[..s + 3], user, &u[at + 1..])
                }
                _ => u.clone(),
            },
        }
    }
}

/// Takes SQLite's write lock for the rest of the transaction, writing nothing: a DELETE that
/// matches no row (no chain has a negative id) starts a write transaction all the same. The
/// no-op UPDATEs it replaces rewrote a row — one more page in the commit — and, as diesel never
/// keeps an UPDATE prepared, were parsed and planned again at every call: an eighth of a seat
/// update's time on SQLite (docs/BENCHMARKS.md). A DELETE stays prepared.
pub(crate) fn sqlite_write_lock(c: &mut SqliteConnection) -> Result<(), DbError> {
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    use schema::sqlite::change_head;
    diesel::delete(change_head::table.filter(change_head::chain.eq(-1))).execute(c)?;
    Ok(())
}

pub enum Conn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl Conn {
    /// Opens a connection. An SQLite file is created only when `create` is set (by `migrate`).
    pub fn open(url: &DbUrl, create: bool) -> Result<Conn, DbError> {
        match url {
            DbUrl::Sqlite(path) => {
                if !create && !path_exists(path) {
                    return Err(DbError::Missing(path.clone()));
                }
                let mut c = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                c.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
                Ok(Conn::Sqlite(c))
            }
            DbUrl::Postgres(u) => {
                let mut c = PgConnection::establish(u)
                    .map_err(|e| DbError::Connect(first_line(&e.to_string())))?;
                // Plan every statement with its values. diesel prepares each statement once
                // per connection, and after five runs PostgreSQL may keep a generic plan made
                // from the statistics of that moment: a pool connection opened when the invoice
                // tables were nearly empty kept sequential scans on them for its whole life,
                // and long passes slowed down as the tables grew (more so where autovacuum,
                // and with it autoanalyze, lags or is off; docs/BENCHMARKS.md has the figures).
                // A custom plan costs a little planning per statement and follows the tables.
                // A row lock is waited for at most LOCK_TIMEOUT: the pass and the admin
                // operations hold a plan's row for one short transaction, so a longer wait means
                // something is stuck, and the statement fails (retryable) rather than hangs.
                c.batch_execute(&format!(
                    "SET TIME ZONE 'UTC'; SET plan_cache_mode = force_custom_plan; SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"
                ))?;
                Ok(Conn::Pg(c))
            }
        }
    }

    /// Opens a connection and checks that the schema is current.
    pub fn open_checked(url: &DbUrl) -> Result<Conn, DbError> {
        let mut c = Conn::open(url, false)?;
        c.check_schema()?;
        Ok(c)
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Conn::Sqlite(_))
    }

    /// A round trip that fails when the connection is gone (a restarted server).
    pub fn ping(&mut self) -> Result<(), DbError> {
        match self {
            Conn::Pg(c) => c.batch_execute("SELECT 1")?,
            Conn::Sqlite(c) => c.batch_execute("SELECT 1")?,
        }
        Ok(())
    }

    /// A transaction left open or failed: the connection must not go back to the pool.
    pub fn is_broken(&mut self) -> bool {
        match self {
            Conn::Pg(c) => AnsiTransactionManager::is_broken_transaction_manager(c),
            Conn::Sqlite(c) => AnsiTransactionManager::is_broken_transaction_manager(c),
        }
    }

    /// Applies pending migrations; returns their names (empty when up to date).
    pub fn migrate(&mut self) -> Result<Vec<String>, DbError> {
        let applied = match self {
            Conn::Pg(c) => c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
            Conn::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
        };
        applied.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// Reverts every migration (tests of the down migrations).
    pub fn revert_all(&mut self) -> Result<Vec<String>, DbError> {
        let reverted = match self {
            Conn::Pg(c) => c
                .revert_all_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
            Conn::Sqlite(c) => c
                .revert_all_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
        };
        reverted.map_err(|e| DbError::Migration(e.to_string()))
    }

    pub fn check_schema(&mut self) -> Result<(), DbError> {
        let pending = match self {
            Conn::Pg(c) => c.has_pending_migration(PG_MIGRATIONS),
            Conn::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        };
        match pending {
            Ok(false) => Ok(()),
            Ok(true) => Err(DbError::SchemaOutdated),
            // No migrations table at all: an empty database.
            Err(_) => Err(DbError::SchemaOutdated),
        }
    }

    /// Whether a transaction is open on this connection.
    pub fn in_transaction(&mut self) -> bool {
        let depth = match self {
            Conn::Pg(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .map(|d| d.is_some()),
            Conn::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
                .transaction_depth()
                .map(|d| d.is_some()),
        };
        depth.unwrap_or(false)
    }

    /// Runs `f` in the caller's transaction if there is one (no savepoint: an error of `f`
    /// reaches the caller, whose transaction rolls back), or else in a transaction of its own.
    /// For the admin operations (the `ops` module), all or nothing, which never recover from an
    /// error of their parts, and which the change history and the API's idempotency record
    /// wrap: two round trips fewer per write than a savepoint.
    pub fn joined<T, E>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        if self.in_transaction() {
            f(self)
        } else {
            self.transaction(f)
        }
    }

    /// Runs `f` in a transaction (a savepoint when nested): commit on `Ok`, roll back on `Err`.
    pub fn transaction<T, E>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        self.begin().map_err(|e| E::from(e.into()))?;
        match f(self) {
            Ok(value) => {
                if let Err(e) = self.commit() {
                    self.rollback_quietly();
                    return Err(E::from(e.into()));
                }
                Ok(value)
            }
            Err(e) => {
                self.rollback_quietly();
                Err(e)
            }
        }
    }

    /// Runs `f` in a transaction that is always rolled back (dry runs).
    pub fn rolled_back<T, E>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        self.begin().map_err(|e| E::from(e.into()))?;
        let result = f(self);
        self.rollback_quietly();
        result
    }

    pub(crate) fn begin(&mut self) -> diesel::QueryResult<()> {
        match self {
            Conn::Pg(c) => AnsiTransactionManager::begin_transaction(c),
            Conn::Sqlite(c) => AnsiTransactionManager::begin_transaction(c),
        }
    }

    fn commit(&mut self) -> diesel::QueryResult<()> {
        match self {
            Conn::Pg(c) => AnsiTransactionManager::commit_transaction(c),
            Conn::Sqlite(c) => AnsiTransactionManager::commit_transaction(c),
        }
    }

    pub(crate) fn rollback_quietly(&mut self) {
        let result = match self {
            Conn::Pg(c) => AnsiTransactionManager::rollback_transaction(c),
            Conn::Sqlite(c) => AnsiTransactionManager::rollback_transaction(c),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "rollback failed");
        }
    }
}

fn path_exists(path: &Path) -> bool {
    path.to_str() == Some(":memory:") || path.exists()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            DbUrl::parse("sqlite://plan-invoicer.db").ok(),
            Some(DbUrl::Sqlite("plan-invoicer.db".into()))
        );
        assert_eq!(
            DbUrl::parse("sqlite:///tmp/x.db").ok(),
            Some(DbUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(DbUrl::parse("postgres://u@h/db").is_ok());
        assert!(DbUrl::parse("mysql://x").is_err());
        assert!(DbUrl::parse("sqlite://").is_err());
        let url = DbUrl::parse("postgres://user:secret@host:5432/db")
            .unwrap_or(DbUrl::Sqlite("x".into()));
        assert_eq!(url.redacted(), "postgres://user@host:5432/db");
    }
}
