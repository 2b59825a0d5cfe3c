//! Jobs: plain functions the CLI, the scheduler and the tests call directly.

pub mod audit;
pub mod backfill;
pub mod invoice_plans;
pub mod preview;

pub use invoice_plans::{run_pass, PassOptions, PassReport};
