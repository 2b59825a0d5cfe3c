//! The command-line contract (docs/CLI.md): the clap definitions and one exhaustive match.
//! Thin: each command calls one operation of [`crate::ops`] (admin inputs), [`crate::jobs`]
//! (passes, preview, audit) or [`crate::db::repo`] (reads); [`admin`] and [`worker`] hold those
//! calls, [`render`] the text output.

mod admin;
mod render;
mod worker;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{Tuning, DEFAULT_DATABASE_URL};
use crate::domain::Ts;
use crate::error::AppError;

pub use render::{print, Output};

#[derive(Debug, Parser)]
#[command(
    name = "plan-invoicer",
    version,
    about = "Invoicing worker for seat-based SaaS plans (Zulip's plan model)"
)]
pub struct Cli {
    /// sqlite://PATH (embedded, default) or postgres://…
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// The instant this invocation acts at (RFC 3339, UTC); default: the wall clock.
    #[arg(long, global = true, env = "PLAN_INVOICER_NOW", value_parser = parse_time)]
    pub now: Option<Ts>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, env = "PLAN_INVOICER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// On a terminal, also print the INFO lines (each pass, each invoice) above the progress
    /// line; off a terminal they are always printed. RUST_LOG overrides both.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded migrations (idempotent).
    Migrate,
    /// Customers: create, show, report usage.
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// Plans: create, inspect, change licenses and status, preview the next invoice.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Fixed-price offers: create, accept.
    #[command(subcommand)]
    Offer(OfferCmd),
    /// One invoicing pass as of --now.
    RunOnce {
        /// Compute and report; write nothing, call nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// The local invoices.
    #[command(subcommand)]
    Invoices(InvoicesCmd),
    /// Compare Stripe with the local invoices, customer by customer (read-only).
    Audit {
        /// Only local invoices for due dates at or after this instant.
        #[arg(long, value_parser = parse_time)]
        since: Option<Ts>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<i64>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Due plans, leased plans, plans that need attention, the last pass.
    Status,
    /// A pass at each step from --from to --to inclusive, as a cron would have run them.
    Backfill {
        /// The first pass's instant (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        from: Ts,
        /// The last pass's instant (RFC 3339), inclusive.
        #[arg(long, value_parser = parse_time)]
        to: Ts,
        /// Step between passes: 1d, 1h, 30m, …
        #[arg(long, default_value = "1d")]
        every: String,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// The daemon: passes on a cron schedule, /healthz, /readyz and /metrics, graceful stop.
    Serve(ServeCmd),
    /// Exit 0 when the daemon's /healthz answers 200 (for container and systemd health checks).
    Healthcheck {
        /// The daemon's HTTP address.
        #[arg(long, env = "PLAN_INVOICER_HTTP_ADDR", default_value = crate::config::DEFAULT_HTTP_ADDR)]
        http_addr: String,
        /// Keep trying for this many seconds before giving up.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Time a pass over N fresh plans against the in-process Stripe emulator.
    Bench {
        /// How many plans to create and invoice.
        #[arg(long, default_value_t = 1000)]
        plans: usize,
        /// Use this empty database instead of a temporary SQLite file.
        #[arg(long)]
        empty_database_url: Option<String>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// A self-contained tour: SQLite in a fresh directory, the Stripe emulator, a year of passes.
    Demo {
        /// Where to put the demo database (default: a new temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Run the built-in Stripe emulator (test equipment and demo back end, not for production).
    StripeEmulator(EmulatorCmd),
}

#[derive(Debug, Args)]
pub struct ServeCmd {
    /// Six-field cron with seconds (default "0 0 22 * * *": daily at 22:00).
    #[arg(long, env = "PLAN_INVOICER_SCHEDULE")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[arg(long, env = "PLAN_INVOICER_TIMEZONE")]
    pub timezone: Option<String>,
    /// Address of the HTTP endpoints (default 127.0.0.1:9187).
    #[arg(long, env = "PLAN_INVOICER_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Optional TOML file (keys: database_url, schedule, timezone, http_addr, lease_seconds,
    /// shutdown_grace_seconds, concurrency, audit_schedule, the stripe_max_… budget);
    /// flags and environment win over it.
    #[arg(long, env = "PLAN_INVOICER_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Also run `audit` on this six-field cron schedule (off by default).
    #[arg(long, env = "PLAN_INVOICER_AUDIT_SCHEDULE")]
    pub audit_schedule: Option<String>,
    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Args)]
pub struct EmulatorCmd {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    pub listen: String,
    /// Append every request received as a JSON line to this file.
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
    /// Delay every response by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer every n-th request with 429.
    #[arg(long, default_value_t = 0)]
    pub rate_limit_every: u64,
    /// Answer every n-th request with 500.
    #[arg(long, default_value_t = 0)]
    pub fail_every: u64,
    /// Finalize a draft invoice with auto_advance=true this many seconds after its
    /// creation, as Stripe does (about an hour).
    #[arg(long, default_value_t = crate::devtools::emulator::DEFAULT_AUTO_ADVANCE_SECS)]
    pub auto_advance_after_secs: i64,
    /// Vary each response's latency by up to this many milliseconds either way.
    #[arg(long, default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Enforce an account rate limit (token bucket; 429 with Stripe-Rate-Limited-Reason).
    #[arg(long, default_value_t = 0)]
    pub rate_limit_per_second: u32,
    /// Enforce a per-endpoint rate limit (Stripe's default is 25/s).
    #[arg(long, default_value_t = 0)]
    pub endpoint_rate_limit_per_second: u32,
    /// Answer every n-th request with a 429 lock_timeout.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout_every: u64,
    /// Answer every n-th request with a 502 and an HTML body, as a proxy would.
    #[arg(long, default_value_t = 0)]
    pub html_502_every: u64,
    /// Keep request counts only (GET /_emulator/counts), not every request: for benchmarks.
    #[arg(long)]
    pub counts_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCmd {
    /// Create a customer; prints its id.
    Create(CustomerCreate),
    /// A customer's fields and its plans' ids.
    Show {
        /// The customer's id.
        id: i64,
    },
    /// Give or change a customer's negotiated prices; reprices the current plan at once.
    SetDiscount {
        /// The customer's id.
        id: i64,
        /// The monthly price per license, in cents.
        #[arg(long, allow_negative_numbers = true)]
        monthly_discounted_price_cents: i64,
        /// The annual price per license, in cents.
        #[arg(long, allow_negative_numbers = true)]
        annual_discounted_price_cents: i64,
        /// The tier the prices belong to (default: the customer's, else its plan's).
        #[arg(long)]
        required_plan_tier: Option<String>,
    },
    /// Record a usage upload from the host (self-hosted freshness) and optionally a seat count.
    ReportUsage {
        /// The customer's id.
        id: i64,
        /// Seats in use at the upload.
        #[arg(long, allow_negative_numbers = true)]
        seats: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct CustomerCreate {
    /// The customer's name (shown in staff notices).
    #[arg(long)]
    pub name: String,
    /// The billing email given to Stripe.
    #[arg(long)]
    pub email: Option<String>,
    /// Opaque reference to the owner in the host application (unique).
    #[arg(long)]
    pub external_ref: Option<String>,
    /// An existing Stripe customer (otherwise the worker creates one before the first invoice).
    #[arg(long)]
    pub stripe_customer_id: Option<String>,
    /// cloud or self_hosted (self-hosted customers start with the new-customer flat discount).
    #[arg(long, default_value = "cloud")]
    pub kind: String,
    /// A negotiated monthly price per license, in cents.
    #[arg(long, allow_negative_numbers = true)]
    pub monthly_discounted_price_cents: Option<i64>,
    /// A negotiated annual price per license, in cents.
    #[arg(long, allow_negative_numbers = true)]
    pub annual_discounted_price_cents: Option<i64>,
    /// The tier the discounted prices belong to.
    #[arg(long)]
    pub required_plan_tier: Option<String>,
    /// At least this many licenses on every plan of the customer.
    #[arg(long, allow_negative_numbers = true)]
    pub minimum_licenses: Option<i64>,
    /// Licenses may be set below the seats in use.
    #[arg(long)]
    pub exempt_from_license_number_check: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Create a plan with its first renewal ledger entry; prints its id.
    Create(PlanCreate),
    /// A plan's fields, licenses and invoicing state.
    Show {
        /// The plan's id.
        id: i64,
    },
    /// Plans, filtered.
    List {
        /// Only this customer's plans.
        #[arg(long)]
        customer: Option<i64>,
        /// Only plans in this status (name or number).
        #[arg(long)]
        status: Option<String>,
        /// Only plans due at --now.
        #[arg(long)]
        due: bool,
    },
    /// A plan's license ledger.
    Ledger {
        /// The plan's id.
        id: i64,
    },
    /// Automatic license management: the current seat count.
    Seats {
        /// The plan's id.
        id: i64,
        /// Seats in use now.
        #[arg(long, allow_negative_numbers = true)]
        count: i64,
    },
    /// Manual plans: more licenses for the current period.
    BuyLicenses {
        /// The plan's id.
        id: i64,
        /// The new license count (more than today's).
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// Manual plans: licenses for the next renewal.
    RenewalLicenses {
        /// The plan's id.
        id: i64,
        /// Licenses at the next renewal.
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// A billing-page status change, with Zulip's guards.
    Schedule {
        /// The plan's id.
        id: i64,
        /// downgrade_at_end_of_cycle | switch_to_annual | switch_to_monthly |
        /// downgrade_at_end_of_free_trial | cancel
        #[arg(long)]
        change: String,
    },
    /// End the plan at --now (licenses added in the final period are not billed).
    DowngradeNow {
        /// The plan's id.
        id: i64,
    },
    /// Change how the plan's invoices are collected, from the next invoice on.
    SetBillingMode {
        /// The plan's id.
        id: i64,
        /// charge_automatically (the card on file) or send_invoice (emailed, due in 15 days).
        mode: String,
    },
    /// Change who keeps the plan's license count, from now on.
    SetLicenseManagement {
        /// The plan's id.
        id: i64,
        /// automatic (seat reports) or manual (bought licenses).
        mode: String,
    },
    /// Move an active plan to a higher tier now, with a credit for the unused part of its period.
    UpgradeTier {
        /// The plan's id.
        id: i64,
        /// The new tier (higher, of the same kind: cloud_plus over cloud_standard, …).
        #[arg(long)]
        tier: String,
    },
    /// Set the plan's end date.
    SetEndDate {
        /// The plan's id.
        id: i64,
        /// The end date (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        date: Ts,
    },
    /// A never-started successor (fixed-price, or billed per license) from the plan's end date.
    ScheduleSuccessor {
        /// The plan's id.
        id: i64,
        /// A fixed price for the successor's year, in cents (without it: billed per license).
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: Option<i64>,
        /// The successor's tier (default: the plan's; required without a fixed price when the
        /// plan is complimentary).
        #[arg(long)]
        tier: Option<String>,
        /// annual or monthly (default: the plan's schedule).
        #[arg(long)]
        schedule: Option<String>,
        /// Per-license successors: licenses follow the seat count.
        #[arg(long)]
        automanage_licenses: bool,
    },
    /// The outbox rows (plan events and notices) of a plan.
    Events {
        /// The plan's id.
        id: i64,
    },
    /// The invoice the plan would get at its next invoice date (or at --at), and the
    /// end-of-cycle changes that would come first; nothing is written or sent.
    Preview {
        /// The plan's id.
        id: i64,
        /// Preview at this instant instead of the next invoice date.
        #[arg(long, value_parser = parse_time)]
        at: Option<Ts>,
    },
}

#[derive(Debug, Args)]
pub struct PlanCreate {
    /// The customer's id.
    #[arg(long)]
    pub customer: i64,
    /// The tier (name or number): cloud_standard, cloud_plus, self_hosted_business, …
    #[arg(long)]
    pub tier: String,
    /// annual or monthly.
    #[arg(long)]
    pub schedule: String,
    /// Licenses for the first period.
    #[arg(long, allow_negative_numbers = true)]
    pub licenses: i64,
    /// Licenses at the first renewal (default: --licenses).
    #[arg(long, allow_negative_numbers = true)]
    pub licenses_at_next_renewal: Option<i64>,
    /// Licenses follow the seat count (`plan seats`).
    #[arg(long)]
    pub automanage_licenses: bool,
    /// Stripe emails an invoice due in 15 days instead of charging the card.
    #[arg(long)]
    pub invoice_billing: bool,
    /// The billing cycle anchor (default --now).
    #[arg(long, value_parser = parse_time)]
    pub anchor: Option<Ts>,
    /// The price per license in cents (default: from the tier and the customer's discount).
    #[arg(long, allow_negative_numbers = true)]
    pub price_per_license_cents: Option<i64>,
    /// A fixed price for each period, in cents, instead of a price per license.
    #[arg(long, allow_negative_numbers = true)]
    pub fixed_price_cents: Option<i64>,
    /// The plan's end date (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub end_date: Option<Ts>,
    /// Start in a free trial of this many days.
    #[arg(long, allow_negative_numbers = true)]
    pub free_trial_days: Option<i64>,
    /// The next pass bills the first period (default: it was paid at checkout).
    #[arg(long)]
    pub first_invoice_by_worker: bool,
}

#[derive(Debug, Subcommand)]
pub enum OfferCmd {
    /// Offer a fixed-price plan to a customer; prints its id.
    Create {
        /// The customer's id.
        #[arg(long)]
        customer: i64,
        /// The offered tier.
        #[arg(long)]
        tier: String,
        /// The price for each period, in cents.
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: i64,
        /// The Stripe invoice already sent for the offer, if any.
        #[arg(long)]
        sent_invoice_id: Option<String>,
    },
    /// Accept an offer: creates the plan; prints its id.
    Accept {
        /// The offer's id.
        id: i64,
        /// annual or monthly.
        #[arg(long)]
        schedule: String,
        /// Licenses for the first period.
        #[arg(long, allow_negative_numbers = true)]
        licenses: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvoicesCmd {
    /// Local invoices with their lines, filtered.
    List {
        /// Only this plan's invoices.
        #[arg(long)]
        plan: Option<i64>,
        /// Only this customer's invoices.
        #[arg(long)]
        customer: Option<i64>,
        /// Only invoices for due dates at or after this instant.
        #[arg(long, value_parser = parse_time)]
        since: Option<Ts>,
    },
}

pub fn parse_time(s: &str) -> Result<Ts, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2012-01-02T03:04:05Z ({e})"))
}

/// Runs a parsed command. The caller prints the output and exits with its code.
pub async fn run(cli: Cli) -> Result<Output, AppError> {
    let ctx = worker::Context::new(&cli);
    match cli.command {
        Command::Migrate => worker::migrate(&ctx),
        Command::Customer(cmd) => admin::customer(&ctx.db()?, cmd, ctx.now),
        Command::Plan(cmd) => admin::plan(&ctx.db()?, cmd, ctx.now),
        Command::Offer(cmd) => admin::offer(&ctx.db()?, cmd, ctx.now),
        Command::Invoices(cmd) => admin::invoices(&ctx.db()?, cmd),
        Command::Status => admin::status(&ctx.db()?, ctx.now),
        Command::RunOnce { dry_run, tuning } => worker::run_once(&ctx, dry_run, &tuning).await,
        Command::Backfill {
            from,
            to,
            every,
            tuning,
        } => worker::backfill(&ctx, from, to, &every, &tuning).await,
        Command::Audit {
            since,
            customer,
            tuning,
        } => worker::audit(&ctx, since, customer, &tuning).await,
        Command::Serve(cmd) => worker::serve(&ctx, cmd).await,
        Command::Healthcheck { http_addr, wait } => worker::healthcheck(&http_addr, wait).await,
        Command::Bench {
            plans,
            empty_database_url,
            tuning,
        } => worker::bench(plans, empty_database_url.as_deref(), &tuning).await,
        Command::Demo { dir } => worker::demo(dir).await,
        Command::StripeEmulator(cmd) => worker::stripe_emulator(cmd).await,
    }
}
