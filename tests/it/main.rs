//! The integration tests: one test binary (the library and `tests/it/common` compile once),
//! a module per subject. Every test gets a fresh database (an SQLite file, or a new PostgreSQL
//! database on 127.0.0.1:5432) and drives the real binary, the HTTP API or the library against
//! the Stripe-compatible emulator.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[macro_use]
mod common;

mod api;
mod audit;
mod changes;
mod cli_errors;
mod concurrency;
mod console;
mod daemon;
mod examples;
mod fencing;
mod migrations;
mod operator_safety;
mod overdue;
mod pass_lib;
mod payments;
mod stripe_e2e;
mod terminal;
