//! plan-invoicer: a standalone invoicing worker for seat-based SaaS plans, with Zulip's plan
//! model and numbers.
//!
//! # Layout
//! - [`domain`]: the pure core — tiers, prices, dates, end-of-cycle transitions, invoice lines.
//! - [`db`]: diesel adapters for SQLite and PostgreSQL, schema, embedded migrations.
//! - [`ops`]: the admin operations that write the worker's inputs (customers, plans, ledger).
//! - [`jobs`]: the invoicing pass (`run-once`, scheduled ticks).
//! - [`stripe`]: the payment gateway (async-stripe) and the built-in Stripe emulator.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`cli`]: the command-line contract (`cli.md`).

pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod db;
pub mod devtools;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod ops;
pub mod stripe;
pub mod views;
