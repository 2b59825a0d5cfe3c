//! plan-invoicer: a standalone invoicing worker for seat-based SaaS plans, with Zulip's plan
//! model and numbers. docs/ARCHITECTURE.md draws the layout and says where to change what.
//!
//! # Layout
//! - [`domain`]: the pure core — tiers, prices, dates, end-of-cycle decisions, invoice lines,
//!   named states. No database, no HTTP, no clock.
//! - [`billing`]: applies the core's decisions inside a transaction (end-of-cycle writes, the
//!   invoicing step); shared by the pass, `plan preview` and the admin operations.
//! - [`ops`]: the admin operations that write the worker's inputs (customers, plans, licenses,
//!   status changes, offers).
//! - [`admin`]: the admin commands as data and their one executor, shared by the CLI and the API.
//! - [`jobs`]: the invoicing pass, `plan preview`, `audit` and `backfill`.
//! - [`db`]: diesel adapters for SQLite and PostgreSQL, the claim protocol, the pool, schema and
//!   embedded migrations.
//! - [`stripe`]: the payment gateway (async-stripe's requests over our transport), the request
//!   budget and the circuit breaker.
//! - [`daemon`]: `serve` — the cron loop, signals, `/healthz`, `/readyz`, `/metrics`.
//! - [`api`]: the HTTP API for the host application (docs/API.md), over [`admin`].
//! - [`cli`]: the command-line contract (docs/CLI.md).
//! - [`config`]: every setting — flags, environment, TOML, defaults, validation.
//! - [`views`]: the JSON shapes the commands print.
//! - [`error`]: the library's error type and its exit codes.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`devtools`]: test equipment and tours — the Stripe emulator, `demo`, `bench`.

pub mod admin;
pub mod api;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod db;
pub mod devtools;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod ops;
pub mod progress;
pub mod stripe;
pub mod views;
