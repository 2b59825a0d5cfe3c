//! The command-line contract (docs/CLI.md): the clap definitions and one exhaustive match.
//! Thin: each command calls one operation of [`crate::ops`] (admin inputs), [`crate::jobs`]
//! (passes, preview, audit) or [`crate::db::repo`] (reads); [`admin`] and [`worker`] hold those
//! calls, [`render`] the text output.

mod render;
mod worker;

use clap::{Args, Parser, Subcommand};

use crate::admin::changes::ChangesCmd;
use crate::admin::{self, ApiTokenCmd, CustomerCmd, InvoicesCmd, OfferCmd, PlanCmd};
pub use crate::admin::{parse_time, Output};

use crate::config::{Tuning, DEFAULT_DATABASE_URL};
use crate::domain::Ts;
use crate::error::AppError;

pub use render::print;

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
    /// Why: kept with every change this invocation writes, in the change history
    /// (`changes list`). At most 1,000 characters, no control characters.
    #[arg(long, global = true, value_name = "TEXT")]
    pub reason: Option<String>,
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
    /// The change history: who changed what, when and why (list), and its chain checked (verify).
    #[command(subcommand)]
    Changes(ChangesCmd),
    /// The HTTP API's bearer tokens: create, list, revoke.
    #[command(subcommand)]
    ApiToken(ApiTokenCmd),
    /// The support console's staff accounts: create, list, disable, enable, set-role.
    #[command(subcommand)]
    ConsoleUser(admin::staff::ConsoleUserCmd),
    /// Reports for finance.
    #[command(subcommand)]
    Report(ReportCmd),
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
    /// Read Stripe's invoice events back (the webhook's fallback) and apply the ones not seen.
    SyncPayments {
        /// Read events created at or after this instant (default: where the last run stopped,
        /// or 30 days ago).
        #[arg(long, value_parser = parse_time)]
        since: Option<Ts>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Zulip's policy for small Cloud customers behind on payments: end small plans whose
    /// newest invoices are all unpaid and void their open invoices.
    Overdue {
        /// List what would be done; write and send nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        policy: OverdueArgs,
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
    /// Load the HTTP API with seat counts from keep-alive clients; prints the rate and latencies.
    BenchApi {
        /// The API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A write token.
        #[arg(long, env = "PLAN_INVOICER_API_TOKEN", hide_env_values = true)]
        token: String,
        /// The first plan id to update.
        #[arg(long, default_value_t = 1)]
        first_plan: i64,
        /// The last plan id to update.
        #[arg(long)]
        last_plan: i64,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Requests in all.
        #[arg(long, default_value_t = 10000)]
        requests: usize,
        /// Requests per second in all (0: as fast as answered).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Send Plan-Invoicer-Now from this instant on, one millisecond later per request of a
        /// client (a server under --allow-time-travel).
        #[arg(long, value_parser = parse_time)]
        start_at: Option<Ts>,
    },
    /// Time a pass over N fresh plans against the Stripe emulator (run as a process of its own, so the memory reported is the worker's).
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
    /// Time the change history at a book's size: seeds CUSTOMERS customers with a creation and
    /// a monthly pass change each, then times `changes list --customer` and `changes verify`.
    BenchChanges {
        /// How many customers (each with one plan).
        #[arg(long, default_value_t = 100_000)]
        customers: i64,
        /// Months of history after each creation.
        #[arg(long, default_value_t = 12)]
        months: i64,
        /// Use this empty database instead of a temporary SQLite file.
        #[arg(long)]
        empty_database_url: Option<String>,
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

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// ARR and MRR by tier as of --now, billed and paid per month for the last 12 months, plans
    /// by status.
    Revenue,
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
    /// Address of the HTTP API for the host application (off unless set; docs/API.md).
    #[arg(long, env = "PLAN_INVOICER_API_ADDR")]
    pub api_addr: Option<String>,
    /// Address of the support console for staff (off unless set; docs/CONSOLE.md).
    #[arg(long, env = "PLAN_INVOICER_CONSOLE_ADDR")]
    pub console_addr: Option<String>,
    /// Whether the console's cookies say Secure (HTTPS only); default: yes unless the console
    /// listens on loopback.
    #[arg(long, env = "PLAN_INVOICER_CONSOLE_SECURE_COOKIES")]
    pub console_secure_cookies: Option<bool>,
    /// Behind a single-sign-on proxy: the header carrying the signed-in staff email (e.g.
    /// X-Forwarded-Email), trusted only from --console-trusted-proxy addresses.
    #[arg(long, env = "PLAN_INVOICER_CONSOLE_SSO_EMAIL_HEADER")]
    pub console_sso_email_header: Option<String>,
    /// An address of the SSO proxy (repeat, or separate with commas).
    #[arg(
        long = "console-trusted-proxy",
        env = "PLAN_INVOICER_CONSOLE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub console_trusted_proxies: Vec<String>,
    /// Tests only: the API honours a Plan-Invoicer-Now header (refused with a live Stripe key).
    #[arg(long)]
    pub allow_time_travel: bool,
    /// Optional TOML file (keys: database_url, schedule, timezone, http_addr, api_addr,
    /// console_addr, console_secure_cookies, console_sso_email_header, console_trusted_proxies,
    /// lease_seconds,
    /// shutdown_grace_seconds, concurrency, audit_schedule, sync_payments_schedule,
    /// overdue_schedule, overdue_invoices, overdue_seats, the stripe_max_… budget); flags and
    /// environment win over it.
    #[arg(long, env = "PLAN_INVOICER_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Also run `audit` on this six-field cron schedule (off by default).
    #[arg(long, env = "PLAN_INVOICER_AUDIT_SCHEDULE")]
    pub audit_schedule: Option<String>,
    /// Also run `sync-payments` on this six-field cron schedule (off by default; for a
    /// deployment without Stripe webhooks, or as a safety net beside them).
    #[arg(long, env = "PLAN_INVOICER_SYNC_PAYMENTS_SCHEDULE")]
    pub sync_payments_schedule: Option<String>,
    /// Also run `overdue` on this six-field cron schedule (off by default).
    #[arg(long, env = "PLAN_INVOICER_OVERDUE_SCHEDULE")]
    pub overdue_schedule: Option<String>,
    #[command(flatten)]
    pub overdue: OverdueArgs,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// The overdue policy's bounds (`overdue`, `serve --overdue-schedule`).
#[derive(Debug, Clone, Args)]
pub struct OverdueArgs {
    /// How many of a customer's newest invoices must all be unpaid (default 2).
    #[arg(long = "invoices", env = "PLAN_INVOICER_OVERDUE_INVOICES")]
    pub overdue_invoices: Option<usize>,
    /// Plans with at least this many seats are left to a person (default 5).
    #[arg(long = "seats", env = "PLAN_INVOICER_OVERDUE_SEATS")]
    pub overdue_seats: Option<i64>,
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
    /// Deliver every invoice event to this URL (e.g. http://127.0.0.1:8080/v1/stripe/webhook),
    /// signed as Stripe signs, again until it answers 2xx.
    #[arg(long, requires = "webhook_secret")]
    pub webhook_url: Option<String>,
    /// The endpoint secret that signs the deliveries (whsec_…).
    #[arg(long, requires = "webhook_url", hide_env_values = true)]
    pub webhook_secret: Option<String>,
}

/// Runs a parsed command. The caller prints the output and exits with its code.
pub async fn run(cli: Cli) -> Result<Output, AppError> {
    let ctx = worker::Context::new(&cli);
    match cli.command {
        Command::Migrate => worker::migrate(&ctx),
        Command::Customer(cmd) => admin::customer(&ctx.db()?, cmd, ctx.now, &ctx.author()?),
        Command::Plan(cmd) => admin::plan(&ctx.db()?, cmd, ctx.now, &ctx.author()?),
        Command::Offer(cmd) => admin::offer(&ctx.db()?, cmd, ctx.now, &ctx.author()?),
        Command::Changes(cmd) => admin::changes::run(&ctx.db()?, cmd),
        Command::ApiToken(cmd) => {
            let author = ctx.author()?;
            ctx.db()?
                .run(|c| admin::tokens::run(c, cmd, ctx.now, &author))
        }
        Command::ConsoleUser(cmd) => {
            let author = ctx.author()?;
            let password = match &cmd {
                admin::staff::ConsoleUserCmd::Create {
                    password_stdin: true,
                    ..
                } => Some(worker::read_password()?),
                _ => None,
            };
            ctx.db()?
                .run(|c| admin::staff::run(c, cmd, password, ctx.now, &author))
        }
        Command::Report(ReportCmd::Revenue) => ctx
            .db()?
            .run(|c| admin::reports::revenue_output(c, ctx.now)),
        Command::Invoices(cmd) => admin::invoices(&ctx.db()?, cmd),
        Command::Status => admin::status(&ctx.db()?, ctx.now),
        Command::Overdue {
            dry_run,
            policy,
            tuning,
        } => worker::overdue(&ctx, dry_run, &policy, &tuning).await,
        Command::SyncPayments { since, tuning } => {
            worker::sync_payments(&ctx, since, &tuning).await
        }
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
        Command::BenchChanges {
            customers,
            months,
            empty_database_url,
        } => worker::bench_changes(customers, months, empty_database_url.as_deref()),
        Command::BenchApi {
            url,
            token,
            first_plan,
            last_plan,
            clients,
            requests,
            rate,
            start_at,
        } => {
            let load = crate::devtools::api_load::Load {
                url: url.trim_end_matches('/').to_string(),
                token,
                first_plan,
                last_plan,
                clients,
                requests,
                rate,
                start_at,
            };
            let report = crate::devtools::api_load::run(load).await?;
            let text = format!(
                "{} requests ({} failed) in {} s: {}/s, p50 {} ms, p99 {} ms",
                report.requests,
                report.errors,
                report.seconds,
                report.per_second,
                report.p50_ms,
                report.p99_ms
            );
            admin::out(&report, text)
        }
        Command::Demo { dir } => worker::demo(dir).await,
        Command::StripeEmulator(cmd) => worker::stripe_emulator(cmd).await,
    }
}
