//! The one place that reads the wall clock. Everything else gets `now`, or a [`Clock`], passed
//! in. (The Stripe emulator in `devtools` keeps its own time: it stands in for Stripe.)

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same instant (`--now`, tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// The wall-clock time, for records that say when they were written (the change history's
/// `written_at`), never for billing decisions.
pub fn wall_time() -> DateTime<Utc> {
    SystemClock.now()
}
