//! Test support, by job: `db` (a fresh database per test), `bin` (the binary driver), `http`
//! (the API driver), `library` (connections and inputs), `stripe` (the emulator and gateways),
//! `oracles` (what must hold after a pass).

pub mod bin;
pub mod db;
pub mod http;
pub mod library;
pub mod oracles;
pub mod stripe;

pub use bin::{monthly_plans, words};
pub use db::{pg_admin, Backend, TestDb};
pub use library::{base_plan, connect, pool};
pub use oracles::{line, lines, stripe_snapshot, Line};
pub use stripe::{gateway, pass_with, runtime, stripe_post, stripe_request};

/// An RFC 3339 instant.
pub fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    plan_invoicer::cli::parse_time(s).expect("an RFC 3339 time")
}

/// Polls `f` every 50 ms until it holds or `timeout` has passed.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Generates one test per backend for a scenario `fn(&TestDb)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { if let Some(db) = $crate::common::TestDb::new($crate::common::Backend::Sqlite) { super::$name(&db) } } )+
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(db) = $crate::common::TestDb::new($crate::common::Backend::Postgres) { super::$name(&db) } } )+
        }
    };
}
