//! The single-worker lock of SQLite (docs/ARCHITECTURE.md, "Several workers"): one worker process at a time holds an exclusive lock
//! on `<database>.lock`. PostgreSQL needs none: plans are claimed row by row.

use std::fs::File;

use super::{DbError, DbUrl};

/// SQLite supports one worker process at a time: an exclusive lock on `<db>.lock`.
pub fn worker_lock(url: &DbUrl) -> Result<Option<File>, DbError> {
    let DbUrl::Sqlite(path) = url else {
        return Ok(None);
    };
    if path.to_str() == Some(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{}.lock", path.display());
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| DbError::Lock(format!("cannot open the worker lock {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbError::Busy(format!(
            "another plan-invoicer worker is running on {} (SQLite supports one worker at a time; use PostgreSQL for several)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(DbError::Lock(format!("cannot lock {lock_path}: {e}")))
        }
    }
}
