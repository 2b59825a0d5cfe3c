//! Seat updates through the library, one after another on one connection: what a seat report
//! costs the database and the code around it, without HTTP, authentication or a pool. On
//! SQLite this is the serial part of the API's seat updates (one writer at a time).
//!
//! ```text
//! T0=2025-01-06T09:00:00Z LINES=1 scripts/seed_book.sh sqlite:///tmp/seats.db 2000
//! cargo run --release --example seat_updates -- sqlite:///tmp/seats.db 2000 20000 2025-02-06T11:00:00Z
//! ```
//!
//! Arguments: the database (seeded by `scripts/seed_book.sh`), the number of plans, the number
//! of updates, and the first update's instant (after the book's due date; each update is a
//! millisecond after the one before, plans in turn). Prints the mean time per update. The
//! updates are recorded in the change history like any other (actor `api:bench`).
//! docs/BENCHMARKS.md has the runs.

use std::error::Error;
use std::time::Instant;

use plan_invoicer::admin::{self, PlanCmd};
use plan_invoicer::db::{Conn, DbUrl};
use plan_invoicer::domain::change::Author;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, plans, updates, start] = args.as_slice() else {
        return Err("usage: seat_updates DATABASE_URL PLANS UPDATES FIRST_INSTANT".into());
    };
    let url = DbUrl::parse(url)?;
    let plans: i64 = plans.parse()?;
    let updates: i64 = updates.parse()?;
    let start: chrono::DateTime<chrono::Utc> = start.parse()?;
    if plans < 1 || updates < 1 {
        return Err("PLANS and UPDATES must be at least 1".into());
    }
    let mut conn = Conn::open_checked(&url)?;
    let author = Author::api("bench", None, None, None).map_err(|r| r.to_string())?;
    let began = Instant::now();
    for i in 0..updates {
        let now = start + chrono::Duration::milliseconds(i);
        let cmd = PlanCmd::Seats {
            id: 1 + i % plans,
            count: 10 + i % 7,
        };
        admin::plan_cmd(&mut conn, cmd, now, &author)?;
    }
    let micros = began.elapsed().as_secs_f64() * 1e6 / updates as f64;
    println!("{{\"updates\": {updates}, \"microseconds_per_update\": {micros:.1}}}");
    Ok(())
}
