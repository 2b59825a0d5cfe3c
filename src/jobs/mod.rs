//! Jobs: plain functions the CLI, the scheduler and the tests call directly.

pub mod audit;
pub mod backfill;
pub mod invoice_plans;
pub mod overdue;
pub mod preview;
pub mod sync_payments;

pub use invoice_plans::{run_pass, PassOptions, PassReport};

/// Where a long job says how far it got: the terminal's progress line (the binary's), or
/// nowhere. Called from the job's own task, between steps; never blocks.
pub trait Progress: Send + Sync {
    /// How many steps there are (passes, plans, customers), once known.
    fn total(&self, total: u64);
    /// Steps done so far, with the invoices sent and the plans needing attention so far.
    fn done(&self, done: u64, invoices: u64, attention: u64);
}
