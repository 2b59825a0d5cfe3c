//! Where connections come from: an r2d2 pool over [`Conn`] (both backends), or one dedicated
//! connection (dry runs, which hold one rolled-back transaction for the whole pass).
//!
//! Why r2d2 (diesel's `r2d2` feature) and not deadpool-diesel: our hand-written [`Conn`] enum
//! plugs in with a three-method [`r2d2::ManageConnection`] that keeps `Conn::open`'s readable
//! errors and per-connection PRAGMAs; r2d2 pings a connection (`SELECT 1`) every time it is
//! checked out, so a connection broken by a database restart is replaced instead of handed out,
//! while deadpool-diesel 0.6's default recycling does not ping. The pool is synchronous: async
//! callers go through [`Db::run`], which moves the blocking work off the async worker.
//!
//! A connection is held for one closure — one short transaction — and never across a Stripe
//! call. SQLite gets one connection (one writer at a time; the WAL lets readers in beside it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::r2d2::{self, ManageConnection, Pool};

use super::{Conn, DbError, DbUrl};

/// How long a caller waits for a connection before the step fails (the database is down or
/// every connection is busy).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens [`Conn`]s for the pool and tells it which are still good.
#[derive(Debug)]
pub struct ConnManager {
    url: DbUrl,
}

impl ManageConnection for ConnManager {
    type Connection = Conn;
    type Error = DbError;

    fn connect(&self) -> Result<Conn, DbError> {
        Conn::open(&self.url, false)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), DbError> {
        conn.ping()
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

/// A handle on the database; clones share the pool.
#[derive(Clone)]
pub struct Db {
    source: Source,
    url: DbUrl,
}

#[derive(Clone)]
enum Source {
    Pool(Pool<ConnManager>),
    /// One connection for everything (a dry run's rolled-back transaction).
    Dedicated(Arc<Mutex<Conn>>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.url.redacted())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Checks the URL and the schema with a first connection (so that a missing file, a bad
    /// password or an outdated schema is a precise error), then builds the pool. `size` is the
    /// most connections open at once on PostgreSQL; SQLite always gets one.
    pub fn connect(url: &DbUrl, size: u32) -> Result<Db, DbError> {
        let first = Conn::open_checked(url)?;
        drop(first);
        let size = if url.is_sqlite() { 1 } else { size.max(1) };
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .test_on_check_out(true)
            .error_handler(Box::new(LogErrors))
            .build_unchecked(ConnManager { url: url.clone() });
        Ok(Db {
            source: Source::Pool(pool),
            url: url.clone(),
        })
    }

    /// A handle over one connection of its own, opened now (dry runs).
    pub fn dedicated(&self) -> Result<Db, DbError> {
        Ok(Db {
            source: Source::Dedicated(Arc::new(Mutex::new(Conn::open_checked(&self.url)?))),
            url: self.url.clone(),
        })
    }

    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.is_sqlite()
    }

    /// Runs `f` with a connection: one short unit of work (a query or a transaction), never an
    /// `.await`. On a multi-threaded runtime the blocking work is moved off the async worker.
    pub fn run<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        blocking(|| match &self.source {
            Source::Pool(pool) => {
                let mut conn = pool.get().map_err(|e| E::from(unavailable(&e)))?;
                f(&mut conn)
            }
            Source::Dedicated(conn) => {
                let mut guard = match conn.lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                f(&mut guard)
            }
        })
    }

    /// Whether the database answers through the pool within `wait` (`/readyz`).
    pub fn ready(&self, wait: Duration) -> Result<(), DbError> {
        blocking(|| match &self.source {
            Source::Pool(pool) => {
                let mut conn = pool.get_timeout(wait).map_err(|e| unavailable(&e))?;
                conn.check_schema()
            }
            Source::Dedicated(_) => Ok(()),
        })
    }
}

fn unavailable(e: &r2d2::PoolError) -> DbError {
    DbError::Connect(format!("no database connection: {e}"))
}

/// Runs blocking work without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// r2d2 reports failed connection attempts here; they go to the log once each.
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<DbError> for LogErrors {
    fn handle_error(&self, error: DbError) {
        tracing::warn!(error = %error, "database connection failed");
    }
}
