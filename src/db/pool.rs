//! Where connections come from: a small connection pool over [`Conn`] (both backends), or one
//! dedicated connection (dry runs, which hold one rolled-back transaction for the whole pass).
//!
//! Why our own pool. r2d2 (diesel's `r2d2` feature) was tried first: it opens connections on
//! background threads, and a worker process that exited while such a thread was inside
//! libpq's connect crashed with SIGSEGV (`r2d2-worker-1 … segfault … in libc.so.6`). deadpool's
//! managed pool was tried next, with a `Manager` for [`Conn`] (create opens, recycle pings,
//! a connection left in a broken transaction taken out): every test passed, the database
//! restart under `serve` included, and PostgreSQL kept its speed (10k plans: 228.9 plans/s
//! against 229.5 with this pool), but SQLite lost 10 to 20 % (10k plans, release build, same
//! machine, alternating runs: this pool 494.7–517.8 plans/s; deadpool 409.6–416.5 with its own
//! async wait, 449.6–467.0 with the turns below, 447.3–453.2 with also a first poll that takes
//! an idle connection without entering the runtime). SQLite's one connection is the serial resource of a pass,
//! and the hand-over from one caller to the next costs more through deadpool's semaphore and
//! timer than through a condition variable. docs/BENCHMARKS.md has the runs and the command.
//!
//! This pool opens connections only on the thread that asks for one, pings each connection it
//! hands out after it sat idle for [`FRESH`] or more (so a connection broken by a database
//! restart is replaced, not handed out; a connection given back a moment ago is handed out as
//! it is: the ping was two of the API's twenty round trips per seat update), never keeps a
//! connection whose transaction was left open or failed, and has no threads of its own.
//!
//! A connection is held for one closure — one short transaction — and never across a Stripe
//! call. SQLite gets one connection (one writer at a time; the WAL lets readers in beside it).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Conn, DbError, DbUrl};

/// Async callers allowed into `block_in_place` beyond one per connection: they wait for the
/// connection on a thread, so that it passes to the next caller without a trip through the
/// scheduler (a busy SQLite connection, the serial resource of a pass, stays busy).
const QUEUED_TURNS: u32 = 3;

/// How long a caller waits for a connection before the step fails (the database is down or
/// every connection is busy).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection given back less than this long ago is handed out without a ping. A database
/// restart takes longer, and a connection that broke within this window fails its next
/// statement, is dropped (`is_broken`) and its caller's error is retryable.
const FRESH: Duration = Duration::from_secs(1);

struct Slots {
    /// Idle connections, with when each was given back.
    idle: Vec<(Conn, Instant)>,
    /// Connections that exist: idle, handed out, or being opened.
    open: u32,
}

struct Pool {
    url: DbUrl,
    max: u32,
    slots: Mutex<Slots>,
    returned: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An idle connection that answers a ping, a new one if there is room, or the next one
    /// given back within `wait`.
    fn checkout(&self, wait: Duration) -> Result<Conn, DbError> {
        let deadline = Instant::now() + wait;
        let mut slots = self.lock();
        loop {
            if let Some((mut conn, since)) = slots.idle.pop() {
                drop(slots);
                if since.elapsed() < FRESH || conn.ping().is_ok() {
                    return Ok(conn);
                }
                // Broken (a restarted server): forget it and look again.
                slots = self.lock();
                slots.open = slots.open.saturating_sub(1);
                continue;
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                return Conn::open(&self.url, false).inspect_err(|_| {
                    self.lock().open -= 1;
                    self.returned.notify_one();
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DbError::Connect(
                    "timed out waiting for a free database connection".into(),
                ));
            }
            slots = match self.returned.wait_timeout(slots, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Closes a connection and frees its place.
    fn forget(&self, conn: Conn) {
        drop(conn);
        let mut slots = self.lock();
        slots.open = slots.open.saturating_sub(1);
        drop(slots);
        self.returned.notify_one();
    }

    fn give_back(&self, mut conn: Conn) {
        let keep = !conn.is_broken();
        let mut slots = self.lock();
        if keep {
            slots.idle.push((conn, Instant::now()));
        } else {
            slots.open = slots.open.saturating_sub(1);
        }
        drop(slots);
        self.returned.notify_one();
    }
}

/// A connection handed out for one closure. It goes back to the pool when the closure returns,
/// and is closed — its transaction rolled back by the server, its place in the pool freed —
/// when the closure panics: a panic inside a request or a pass can never keep a connection out
/// of the pool, nor hand on one left in the middle of a transaction.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if std::thread::panicking() {
            self.pool.forget(conn);
        } else {
            self.pool.give_back(conn);
        }
    }
}

/// A handle on the database; clones share the pool.
#[derive(Clone)]
pub struct Db {
    source: Source,
    url: DbUrl,
    /// A permit per connection plus [`QUEUED_TURNS`]: async callers wait here
    /// ([`Db::run_async`]), without a thread, rather than in [`Pool::checkout`] inside
    /// `block_in_place`.
    turns: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone)]
enum Source {
    Pool(Arc<Pool>),
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
    /// password or an outdated schema is a precise error) and keeps it in the pool. `size` is
    /// the most connections open at once on PostgreSQL; SQLite always gets one.
    pub fn connect(url: &DbUrl, size: u32) -> Result<Db, DbError> {
        let first = Conn::open_checked(url)?;
        let max = if url.is_sqlite() { 1 } else { size.max(1) };
        let pool = Pool {
            url: url.clone(),
            max,
            slots: Mutex::new(Slots {
                idle: vec![(first, Instant::now())],
                open: 1,
            }),
            returned: Condvar::new(),
        };
        Ok(Db {
            source: Source::Pool(Arc::new(pool)),
            url: url.clone(),
            turns: Arc::new(tokio::sync::Semaphore::new((max + QUEUED_TURNS) as usize)),
        })
    }

    /// A handle over one connection of its own, opened now (dry runs).
    pub fn dedicated(&self) -> Result<Db, DbError> {
        Ok(Db {
            source: Source::Dedicated(Arc::new(Mutex::new(Conn::open_checked(&self.url)?))),
            url: self.url.clone(),
            turns: Arc::new(tokio::sync::Semaphore::new(1)),
        })
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
        self.run_within(CHECKOUT_TIMEOUT, f)
    }

    /// [`Db::run`] for async code: first waits for a free connection without holding a
    /// thread, so that many customers in flight on SQLite's one connection do not each park a
    /// thread in `block_in_place` (each thread has its own stack and allocator caches; the
    /// memory figures are in docs/BENCHMARKS.md). Do not call it from inside a `run` closure.
    pub async fn run_async<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        // Never closed; were it, the caller would simply wait in `checkout` instead.
        let _turn = self.turns.acquire().await.ok();
        self.run(f)
    }

    /// Like [`Db::run`], but gives up when no connection is to be had within `wait` (the HTTP
    /// endpoints answer quickly while the database is away).
    pub fn run_within<T, E: From<DbError>>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        blocking(|| match &self.source {
            Source::Pool(pool) => {
                let mut lease = Lease {
                    pool,
                    conn: Some(pool.checkout(wait).map_err(E::from)?),
                };
                let result = match lease.conn.as_mut() {
                    Some(conn) => f(conn),
                    None => Err(E::from(DbError::Connect("no connection".into()))),
                };
                // A failed closure may have lost its connection (a terminated backend, a
                // restart): one ping decides whether it goes back, so that the next caller
                // does not meet the same dead connection.
                if result.is_err() {
                    if let Some(mut conn) = lease.conn.take() {
                        if conn.ping().is_ok() {
                            pool.give_back(conn);
                        } else {
                            pool.forget(conn);
                        }
                    }
                }
                result
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

    /// Whether the database answers through the pool within `wait`, with the current schema
    /// (`/readyz`).
    pub fn ready(&self, wait: Duration) -> Result<(), DbError> {
        self.run_within(wait, |c| c.check_schema())
    }
}

/// Runs blocking work without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused_and_bounded() {
        let dir = std::env::temp_dir().join(format!("pi-pool-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let url = DbUrl::Sqlite(dir.join("p.db"));
        let mut c = Conn::open(&url, true).unwrap_or_else(|e| panic!("{e}"));
        c.migrate().unwrap_or_else(|e| panic!("{e}"));
        drop(c);
        let db = Db::connect(&url, 4).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            db.run(|c| c.ping()).unwrap_or_else(|e| panic!("{e}"));
        }
        let Source::Pool(pool) = &db.source else {
            panic!("a pool")
        };
        assert_eq!(pool.lock().open, 1, "SQLite: one connection, reused");
        // Nested use on SQLite would wait for the one connection: it times out instead.
        let nested = db.run(|_| db.run_within(Duration::from_millis(50), |c| c.ping()));
        assert!(nested.is_err());
        // A closure that panics inside a transaction gives its connection's place back: the
        // next caller gets a fresh connection with no transaction open.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.run(|c| c.transaction(|_| -> Result<(), DbError> { panic!("on purpose") }))
        }));
        assert!(panicked.is_err());
        assert_eq!(
            pool.lock().open,
            0,
            "the panicking closure's connection was closed"
        );
        db.run_within(Duration::from_millis(200), |c| c.transaction(|c| c.ping()))
            .unwrap_or_else(|e| panic!("the pool is usable after a panic: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
