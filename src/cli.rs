//! The command-line contract (`cli.md`): parsing, dispatch and output. Thin: every command
//! calls one function of [`crate::ops`], [`crate::jobs`] or [`crate::db::repo`].

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::clock::{Clock, FixedClock, SystemClock};
use crate::db::lock::worker_lock;
use crate::db::repo::{self, InvoiceFilter, PlanFilter};
use crate::db::{Conn, Db, DbUrl};
use crate::domain::{PlanStatus, Ts};
use crate::error::{invalid, AppError};
use crate::jobs::{self, PassOptions, DEFAULT_CONCURRENCY};
use crate::ops;
use crate::stripe::client::{StripeConfig, StripeGateway};
use crate::stripe::ApiKey;
use crate::views::{CustomerView, InvoiceView, LedgerView, PlanView};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://plan-invoicer.db";

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
    #[command(flatten)]
    pub tuning: Tuning,
    #[command(subcommand)]
    pub command: Command,
}

/// How hard a pass works: plans in flight and the Stripe budget. Flags win over the
/// environment, which wins over `serve --config`'s TOML keys of the same names.
#[derive(Debug, Clone, Default, Args)]
pub struct Tuning {
    /// Customers invoiced at once within one pass (default 32).
    #[arg(long, global = true, env = "PLAN_INVOICER_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,
    /// The Stripe account's request budget per second, shared by all workers (default: 60 for
    /// live keys, 15 for test keys).
    #[arg(long, global = true, env = "STRIPE_MAX_REQUESTS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_per_second: Option<u32>,
    /// The budget per second for one endpoint, shared by all workers (default 15).
    #[arg(long, global = true, env = "STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_per_second_per_endpoint: Option<u32>,
    /// Stripe requests waiting for an answer at once, per worker (default: 25 live, 10 test).
    #[arg(long, global = true, env = "STRIPE_MAX_REQUESTS_IN_FLIGHT", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_in_flight: Option<u32>,
}

impl Tuning {
    /// These settings, with the TOML file's where a flag or variable is missing.
    pub fn or_file(&self, file: &crate::config::FileConfig) -> Tuning {
        Tuning {
            concurrency: self.concurrency.or(file.concurrency),
            stripe_max_requests_per_second: self
                .stripe_max_requests_per_second
                .or(file.stripe_max_requests_per_second),
            stripe_max_requests_per_second_per_endpoint: self
                .stripe_max_requests_per_second_per_endpoint
                .or(file.stripe_max_requests_per_second_per_endpoint),
            stripe_max_requests_in_flight: self
                .stripe_max_requests_in_flight
                .or(file.stripe_max_requests_in_flight),
        }
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.map_or(DEFAULT_CONCURRENCY, |n| n as usize)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded migrations (idempotent).
    Migrate,
    #[command(subcommand)]
    Customer(CustomerCmd),
    #[command(subcommand)]
    Plan(PlanCmd),
    #[command(subcommand)]
    Offer(OfferCmd),
    /// One invoicing pass as of --now.
    RunOnce {
        /// Compute and report; write nothing, call nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
    },
    /// Due plans, leased plans, plans that need attention, the last pass.
    Status,
    /// A pass at each step from --from to --to inclusive, as a cron would have run them.
    Backfill {
        #[arg(long, value_parser = parse_time)]
        from: Ts,
        #[arg(long, value_parser = parse_time)]
        to: Ts,
        /// Step between passes: 1d, 1h, 30m, …
        #[arg(long, default_value = "1d")]
        every: String,
    },
    /// The daemon: passes on a cron schedule, /healthz, /readyz and /metrics, graceful stop.
    Serve {
        /// Six-field cron with seconds (default "0 0 22 * * *": daily at 22:00).
        #[arg(long, env = "PLAN_INVOICER_SCHEDULE")]
        schedule: Option<String>,
        /// IANA time zone of the schedule (default UTC).
        #[arg(long, env = "PLAN_INVOICER_TIMEZONE")]
        timezone: Option<String>,
        /// Address of the HTTP endpoints (default 127.0.0.1:9187).
        #[arg(long, env = "PLAN_INVOICER_HTTP_ADDR")]
        http_addr: Option<String>,
        /// Optional TOML file (keys: database_url, schedule, timezone, http_addr, lease_seconds,
        /// shutdown_grace_seconds, concurrency, audit_schedule, the stripe_max_… budget);
        /// flags and environment win over it.
        #[arg(long, env = "PLAN_INVOICER_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Also run `audit` on this six-field cron schedule (off by default).
        #[arg(long, env = "PLAN_INVOICER_AUDIT_SCHEDULE")]
        audit_schedule: Option<String>,
    },
    /// Exit 0 when the daemon's /healthz answers 200 (for container and systemd health checks).
    Healthcheck {
        #[arg(long, env = "PLAN_INVOICER_HTTP_ADDR", default_value = crate::config::DEFAULT_HTTP_ADDR)]
        http_addr: String,
        /// Keep trying for this many seconds before giving up.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Time a pass over N fresh plans against the in-process Stripe emulator.
    Bench {
        #[arg(long, default_value_t = 1000)]
        plans: usize,
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
    StripeEmulator {
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: String,
        /// Append every request received as a JSON line to this file.
        #[arg(long)]
        record: Option<std::path::PathBuf>,
        /// Delay every response by this many milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Answer every n-th request with 429.
        #[arg(long, default_value_t = 0)]
        rate_limit_every: u64,
        /// Answer every n-th request with 500.
        #[arg(long, default_value_t = 0)]
        fail_every: u64,
        /// Finalize a draft invoice with auto_advance=true this many seconds after its
        /// creation, as Stripe does (about an hour).
        #[arg(long, default_value_t = crate::stripe::emulator::DEFAULT_AUTO_ADVANCE_SECS)]
        auto_advance_after_secs: i64,
        /// Vary each response's latency by up to this many milliseconds either way.
        #[arg(long, default_value_t = 0)]
        latency_jitter_ms: u64,
        /// Enforce an account rate limit (token bucket; 429 with Stripe-Rate-Limited-Reason).
        #[arg(long, default_value_t = 0)]
        rate_limit_per_second: u32,
        /// Enforce a per-endpoint rate limit (Stripe's default is 25/s).
        #[arg(long, default_value_t = 0)]
        endpoint_rate_limit_per_second: u32,
        /// Answer every n-th request with a 429 lock_timeout.
        #[arg(long, default_value_t = 0)]
        lock_timeout_every: u64,
        /// Answer every n-th request with a 502 and an HTML body, as a proxy would.
        #[arg(long, default_value_t = 0)]
        html_502_every: u64,
        /// Keep request counts only (GET /_emulator/counts), not every request: for benchmarks.
        #[arg(long)]
        counts_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomerCmd {
    Create(CustomerCreate),
    Show {
        id: i64,
    },
    /// Record a usage upload from the host (self-hosted freshness) and optionally a seat count.
    ReportUsage {
        id: i64,
        #[arg(long, allow_negative_numbers = true)]
        seats: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct CustomerCreate {
    #[arg(long)]
    name: String,
    #[arg(long)]
    email: Option<String>,
    /// Opaque reference to the owner in the host application (unique).
    #[arg(long)]
    external_ref: Option<String>,
    #[arg(long)]
    stripe_customer_id: Option<String>,
    /// cloud or self_hosted
    #[arg(long, default_value = "cloud")]
    kind: String,
    #[arg(long, allow_negative_numbers = true)]
    monthly_discounted_price_cents: Option<i64>,
    #[arg(long, allow_negative_numbers = true)]
    annual_discounted_price_cents: Option<i64>,
    #[arg(long)]
    required_plan_tier: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    minimum_licenses: Option<i64>,
    #[arg(long)]
    exempt_from_license_number_check: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    Create(PlanCreate),
    Show {
        id: i64,
    },
    List {
        #[arg(long)]
        customer: Option<i64>,
        #[arg(long)]
        status: Option<String>,
        /// Only plans due at --now.
        #[arg(long)]
        due: bool,
    },
    Ledger {
        id: i64,
    },
    /// Automatic license management: the current seat count.
    Seats {
        id: i64,
        #[arg(long, allow_negative_numbers = true)]
        count: i64,
    },
    /// Manual plans: more licenses for the current period.
    BuyLicenses {
        id: i64,
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// Manual plans: licenses for the next renewal.
    RenewalLicenses {
        id: i64,
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// downgrade_at_end_of_cycle | switch_to_annual | switch_to_monthly | downgrade_at_end_of_free_trial | cancel
    Schedule {
        id: i64,
        #[arg(long)]
        change: String,
    },
    DowngradeNow {
        id: i64,
    },
    SetEndDate {
        id: i64,
        #[arg(long, value_parser = parse_time)]
        date: Ts,
    },
    ScheduleSuccessor {
        id: i64,
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: i64,
        #[arg(long)]
        tier: Option<String>,
    },
    /// The outbox rows (plan events and notices) of a plan.
    Events {
        id: i64,
    },
    /// The invoice the plan would get at its next invoice date (or at --at), and the
    /// end-of-cycle changes that would come first; nothing is written or sent.
    Preview {
        id: i64,
        #[arg(long, value_parser = parse_time)]
        at: Option<Ts>,
    },
}

#[derive(Debug, Args)]
pub struct PlanCreate {
    #[arg(long)]
    customer: i64,
    #[arg(long)]
    tier: String,
    #[arg(long)]
    schedule: String,
    #[arg(long, allow_negative_numbers = true)]
    licenses: i64,
    #[arg(long, allow_negative_numbers = true)]
    licenses_at_next_renewal: Option<i64>,
    #[arg(long)]
    automanage_licenses: bool,
    #[arg(long)]
    invoice_billing: bool,
    #[arg(long, value_parser = parse_time)]
    anchor: Option<Ts>,
    #[arg(long, allow_negative_numbers = true)]
    price_per_license_cents: Option<i64>,
    #[arg(long, allow_negative_numbers = true)]
    fixed_price_cents: Option<i64>,
    #[arg(long, value_parser = parse_time)]
    end_date: Option<Ts>,
    #[arg(long, allow_negative_numbers = true)]
    free_trial_days: Option<i64>,
    #[arg(long)]
    first_invoice_by_worker: bool,
}

#[derive(Debug, Subcommand)]
pub enum OfferCmd {
    Create {
        #[arg(long)]
        customer: i64,
        #[arg(long)]
        tier: String,
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: i64,
        #[arg(long)]
        sent_invoice_id: Option<String>,
    },
    Accept {
        id: i64,
        #[arg(long)]
        schedule: String,
        #[arg(long, allow_negative_numbers = true)]
        licenses: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvoicesCmd {
    List {
        #[arg(long)]
        plan: Option<i64>,
        #[arg(long)]
        customer: Option<i64>,
        #[arg(long, value_parser = parse_time)]
        since: Option<Ts>,
    },
}

pub fn parse_time(s: &str) -> Result<Ts, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2012-01-02T03:04:05Z ({e})"))
}

/// What a command printed: a JSON document, and its human rendering.
pub struct Output {
    pub json: serde_json::Value,
    pub text: String,
    pub exit_code: i32,
}

fn out<T: Serialize>(value: &T, text: String) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

fn pretty<T: Serialize>(value: &T) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

/// Runs a parsed command. The caller prints the output and exits with its code.
pub async fn run(cli: Cli) -> Result<Output, AppError> {
    let clock: Box<dyn Clock> = match cli.now {
        Some(t) => Box::new(FixedClock(t)),
        None => Box::new(SystemClock),
    };
    let now = clock.now();
    if let Command::StripeEmulator {
        listen,
        record,
        latency_ms,
        rate_limit_every,
        fail_every,
        auto_advance_after_secs,
        latency_jitter_ms,
        rate_limit_per_second,
        endpoint_rate_limit_per_second,
        lock_timeout_every,
        html_502_every,
        counts_only,
    } = &cli.command
    {
        let emulator = crate::stripe::emulator::Emulator::new();
        emulator.set_auto_advance_after(chrono::Duration::seconds(*auto_advance_after_secs));
        emulator.set_rate_limits(crate::stripe::emulator::RateLimits {
            per_second: *rate_limit_per_second,
            per_endpoint_per_second: *endpoint_rate_limit_per_second,
        });
        if *counts_only {
            emulator.counts_only();
        }
        if let Some(path) = record {
            emulator.record_to(path);
        }
        emulator.set_faults(crate::stripe::emulator::Faults {
            latency: std::time::Duration::from_millis(*latency_ms),
            latency_jitter: std::time::Duration::from_millis(*latency_jitter_ms),
            rate_limit_every: *rate_limit_every,
            fail_every: *fail_every,
            lock_timeout_every: *lock_timeout_every,
            html_502_every: *html_502_every,
            ..crate::stripe::emulator::Faults::default()
        });
        eprintln!("Stripe emulator on http://{listen}/ (test equipment, not Stripe)");
        emulator
            .serve(listen)
            .await
            .map_err(|e| invalid(format!("cannot serve on {listen}: {e}")))?;
        return out(&serde_json::json!({}), String::new());
    }
    if let Command::Healthcheck { http_addr, wait } = &cli.command {
        crate::http::check_health(http_addr, std::time::Duration::from_secs(*wait)).await?;
        return out(
            &serde_json::json!({ "healthy": true }),
            "healthy".to_string(),
        );
    }
    if let Command::Bench {
        plans,
        empty_database_url,
    } = &cli.command
    {
        let url = empty_database_url
            .as_deref()
            .map(DbUrl::parse)
            .transpose()?;
        let report = crate::bench::run(*plans, url, cli.tuning.concurrency()).await?;
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        return out(&report, text);
    }
    if let Command::Demo { dir } = &cli.command {
        let (text, summary) = crate::demo::run(dir.clone()).await?;
        return out(&summary, text);
    }
    if let Command::Serve {
        schedule,
        timezone,
        http_addr,
        config,
        audit_schedule,
    } = &cli.command
    {
        if cli.now.is_some() {
            return Err(invalid("serve runs on the wall clock: --now is for run-once, backfill and the admin commands"));
        }
        let args = crate::config::ServeArgs {
            database_url: cli.database_url.clone(),
            database_url_from_default: cli.database_url == DEFAULT_DATABASE_URL
                && std::env::var("DATABASE_URL").is_err(),
            schedule: schedule.clone(),
            timezone: timezone.clone(),
            http_addr: http_addr.clone(),
            config: config.clone(),
            audit_schedule: audit_schedule.clone(),
        };
        let config = crate::config::ServeConfig::resolve(&args, &cli.tuning)?;
        let gateway = stripe_from_env(&config.tuning)?;
        crate::jobs::serve::serve(config, gateway).await?;
        return out(
            &serde_json::json!({ "stopped": true }),
            "stopped".to_string(),
        );
    }
    let url = DbUrl::parse(&cli.database_url)?;
    if let Command::Migrate = cli.command {
        let mut conn = Conn::open(&url, true)?;
        let applied = conn.migrate()?;
        let text = if applied.is_empty() {
            format!("{}: schema is up to date", url.redacted())
        } else {
            format!("{}: applied {}", url.redacted(), applied.join(", "))
        };
        return out(&serde_json::json!({ "applied": applied }), text);
    }
    let db = Db::connect(&url, crate::config::DEFAULT_POOL_SIZE)?;
    let concurrency = cli.tuning.concurrency();
    match cli.command {
        Command::Migrate
        | Command::StripeEmulator { .. }
        | Command::Demo { .. }
        | Command::Serve { .. }
        | Command::Bench { .. }
        | Command::Healthcheck { .. } => Err(invalid("unreachable")),
        Command::Backfill { from, to, every } => {
            let _lock = worker_lock(&url)?;
            crate::jobs::backfill::parse_every(&every)?;
            let gateway = Arc::new(stripe_from_env(&cli.tuning)?);
            refuse_future_with_live_key(&gateway, to, "--to")?;
            let report = crate::jobs::backfill::backfill(
                &db,
                Some(gateway),
                from,
                to,
                &every,
                // Backfill steps are past instants; claims still last from the wall clock.
                &PassOptions {
                    lease_clock: Some(Arc::new(SystemClock)),
                    concurrency,
                    ..PassOptions::default()
                },
            )
            .await?;
            let text = format!(
                "backfill {} .. {} every {}: {} passes, {} plans considered, {} invoiced, {} invoices, {} need attention, {} failed{} ({} ms)",
                from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                every,
                report.passes,
                report.plans_considered,
                report.plans_invoiced,
                report.invoices_sent,
                report.needs_attention_count,
                report.failures_count,
                if report.interrupted { ", interrupted by Ctrl-C" } else { "" },
                report.duration_ms
            );
            let mut o = out(&report, text)?;
            o.exit_code = report.exit_code();
            Ok(o)
        }
        Command::Customer(cmd) => db.run(|c| customer_cmd(c, cmd, now)),
        Command::Plan(PlanCmd::Preview { id, at }) => {
            let preview = jobs::invoice_plans::preview(&db, id, at)?;
            let text = render_preview(&preview);
            out(&preview, text)
        }
        Command::Plan(cmd) => db.run(|c| plan_cmd(c, cmd, now)),
        Command::Audit { since, customer } => {
            if let Some(id) = customer {
                db.run(|c| ops::customer(c, id))?;
            }
            let gateway = stripe_from_env(&cli.tuning)?;
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let bar = indicatif::ProgressBar::new(0);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} customers audited",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            let progress = |done: u64, total: u64| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(done);
                }
            };
            let opts = jobs::audit::AuditOptions { since, customer };
            let report = jobs::audit::audit(&db, &gateway, &opts, &progress).await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let mut text = format!(
                "audit: {} customers, {} local and {} Stripe invoices checked, {} findings ({} ms)",
                report.customers_checked,
                report.local_invoices_checked,
                report.stripe_invoices_checked,
                report.findings.len(),
                report.duration_ms
            );
            for f in &report.findings {
                text.push_str(&format!("\n{}: {}", f.kind, f.detail));
            }
            let mut o = out(&report, text)?;
            o.exit_code = report.exit_code();
            Ok(o)
        }
        Command::Offer(OfferCmd::Create {
            customer,
            tier,
            fixed_price_cents,
            sent_invoice_id,
        }) => {
            let id = db.run(|c| {
                ops::create_offer(
                    c,
                    customer,
                    &tier,
                    fixed_price_cents,
                    sent_invoice_id.as_deref(),
                    now,
                )
            })?;
            out(
                &serde_json::json!({ "id": id }),
                format!("created offer {id}"),
            )
        }
        Command::Offer(OfferCmd::Accept {
            id,
            schedule,
            licenses,
        }) => {
            let plan_id = db.run(|c| ops::accept_offer(c, id, &schedule, licenses, now))?;
            out(
                &serde_json::json!({ "plan_id": plan_id }),
                format!("offer {id} accepted: plan {plan_id}"),
            )
        }
        Command::RunOnce { dry_run } => {
            let _lock = if dry_run { None } else { worker_lock(&url)? };
            let opts = PassOptions {
                dry_run,
                lease_clock: wall_clock_leases(cli.now),
                concurrency,
                ..PassOptions::default()
            };
            let gateway = if dry_run {
                None
            } else {
                let g = Arc::new(stripe_from_env(&cli.tuning)?);
                refuse_future_with_live_key(&g, now, "--now")?;
                Some(g)
            };
            let report = jobs::run_pass(&db, gateway, now, &opts).await?;
            let mut o = out(&report, render_report(&report))?;
            o.exit_code = report.exit_code();
            Ok(o)
        }
        Command::Invoices(InvoicesCmd::List {
            plan,
            customer,
            since,
        }) => {
            let filter = InvoiceFilter {
                ids: None,
                plan_id: plan,
                customer_id: customer,
                since,
            };
            let views: Vec<InvoiceView> = db
                .run(|c| repo::list_invoices(c, &filter))?
                .iter()
                .map(InvoiceView::from)
                .collect();
            let text = views
                .iter()
                .map(render_invoice)
                .collect::<Vec<_>>()
                .join("\n");
            out(&views, text)
        }
        Command::Status => db.run(|c| status(c, now)),
    }
}

fn customer_cmd(c: &mut Conn, cmd: CustomerCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        CustomerCmd::Create(a) => {
            let input = ops::CustomerInput {
                name: a.name,
                email: a.email,
                external_ref: a.external_ref,
                stripe_customer_id: a.stripe_customer_id,
                kind: Some(a.kind),
                monthly_discounted_price: a.monthly_discounted_price_cents,
                annual_discounted_price: a.annual_discounted_price_cents,
                required_plan_tier: a.required_plan_tier,
                minimum_licenses: a.minimum_licenses,
                exempt_from_license_number_check: a.exempt_from_license_number_check,
            };
            let id = ops::create_customer(c, &input, now)?;
            out(
                &serde_json::json!({ "id": id }),
                format!("created customer {id}"),
            )
        }
        CustomerCmd::Show { id } => {
            let customer = ops::customer(c, id)?;
            let plans = repo::plan_ids_of_customer(c, id)?;
            pretty(&CustomerView::new(&customer, plans))
        }
        CustomerCmd::ReportUsage { id, seats } => {
            ops::report_usage(c, id, seats, now)?;
            let customer = ops::customer(c, id)?;
            let plans = repo::plan_ids_of_customer(c, id)?;
            pretty(&CustomerView::new(&customer, plans))
        }
    }
}

fn plan_view(c: &mut Conn, id: i64) -> Result<PlanView, AppError> {
    let record = ops::plan(c, id)?;
    let ledger = repo::ledger_of(c, id)?;
    Ok(PlanView::new(&record, &ledger))
}

fn plan_cmd(c: &mut Conn, cmd: PlanCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        PlanCmd::Create(a) => {
            let input = ops::PlanInput {
                customer_id: a.customer,
                tier: a.tier,
                schedule: a.schedule,
                licenses: a.licenses,
                licenses_at_next_renewal: a.licenses_at_next_renewal,
                automanage_licenses: a.automanage_licenses,
                invoice_billing: a.invoice_billing,
                anchor: a.anchor,
                price_per_license: a.price_per_license_cents,
                fixed_price: a.fixed_price_cents,
                end_date: a.end_date,
                free_trial_days: a.free_trial_days,
                first_invoice_by_worker: a.first_invoice_by_worker,
            };
            let id = ops::create_plan(c, &input, now)?;
            out(
                &serde_json::json!({ "id": id }),
                format!("created plan {id}"),
            )
        }
        PlanCmd::Show { id } => pretty(&plan_view(c, id)?),
        PlanCmd::List {
            customer,
            status,
            due,
        } => {
            let status = status.as_deref().map(PlanStatus::parse).transpose()?;
            let filter = PlanFilter {
                customer_id: customer,
                status,
                due_at: due.then_some(now),
                ..PlanFilter::default()
            };
            let mut views = vec![];
            for r in repo::list_plans(c, &filter)? {
                let ledger = repo::ledger_of(c, r.plan.id)?;
                views.push(PlanView::new(&r, &ledger));
            }
            pretty(&views)
        }
        PlanCmd::Ledger { id } => {
            ops::plan(c, id)?;
            let ledger: Vec<LedgerView> = repo::ledger_of(c, id)?
                .iter()
                .map(LedgerView::from)
                .collect();
            pretty(&ledger)
        }
        PlanCmd::Seats { id, count } => {
            let entry = ops::report_seats(c, id, count, now)?;
            let plan = plan_view(c, id)?;
            let text = match &entry {
                Some(e) => format!(
                    "ledger entry {}: {} licenses, {} at next renewal",
                    e.id,
                    e.licenses,
                    e.licenses_at_next_renewal.unwrap_or(0)
                ),
                None => format!("plan {id} is now {}: no ledger entry written", plan.status),
            };
            out(
                &serde_json::json!({ "ledger_entry": entry.as_ref().map(LedgerView::from), "plan_status": plan.status }),
                text,
            )
        }
        PlanCmd::BuyLicenses { id, licenses } => {
            pretty(&LedgerView::from(&ops::buy_licenses(c, id, licenses, now)?))
        }
        PlanCmd::RenewalLicenses { id, licenses } => pretty(&LedgerView::from(
            &ops::renewal_licenses(c, id, licenses, now)?,
        )),
        PlanCmd::Schedule { id, change } => {
            let p = ops::schedule_change(c, id, &change, now)?;
            pretty(&plan_view(c, p.id)?)
        }
        PlanCmd::DowngradeNow { id } => {
            ops::downgrade_now(c, id, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::SetEndDate { id, date } => {
            ops::set_end_date(c, id, date, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::ScheduleSuccessor {
            id,
            fixed_price_cents,
            tier,
        } => {
            let new_id = ops::schedule_successor(c, id, fixed_price_cents, tier.as_deref(), now)?;
            out(
                &serde_json::json!({ "id": new_id }),
                format!("scheduled successor plan {new_id}"),
            )
        }
        PlanCmd::Events { id } => {
            ops::plan(c, id)?;
            pretty(&repo::events_of_plan(c, id)?)
        }
        PlanCmd::Preview { .. } => Err(invalid(
            "unreachable: previews run on a connection of their own",
        )),
    }
}

fn render_preview(p: &jobs::invoice_plans::Preview) -> String {
    let mut s = format!(
        "plan {} at {} ({} → {}){}",
        p.plan_id,
        p.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        p.status_before,
        p.status_after,
        if p.invoices.is_empty() {
            ": no invoice"
        } else {
            ""
        }
    );
    for c in &p.changes {
        s.push_str(&format!(
            "\nchange: {} on plan {}{}",
            c.kind,
            c.plan_id,
            c.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    for i in &p.invoices {
        s.push('\n');
        s.push_str(&render_invoice(i));
    }
    if let Some(w) = &p.waiting {
        s.push_str(&format!("\nwaiting: {w}"));
    }
    s
}

fn status(c: &mut Conn, now: Ts) -> Result<Output, AppError> {
    let mut view = |f: PlanFilter| -> Result<Vec<serde_json::Value>, AppError> {
        let mut out = vec![];
        for r in repo::list_plans(c, &f)? {
            out.push(serde_json::json!({
                "plan_id": r.plan.id,
                "customer_id": r.plan.customer_id,
                "status": r.plan.status.name(),
                "invoicing_status": r.plan.invoicing_status.name(),
                "next_invoice_date": r.plan.next_invoice_date,
                "lease_owner": r.lease_owner,
                "lease_expires_at": r.lease_expires_at,
                "needs_attention": r.plan.needs_attention,
                "next_retry_at": r.next_retry_at,
                "error_count": r.error_count,
                "last_error": r.last_error,
            }));
        }
        Ok(out)
    };
    let due = view(PlanFilter {
        due_at: Some(now),
        ..PlanFilter::default()
    })?;
    let leased = view(PlanFilter {
        leased: true,
        ..PlanFilter::default()
    })?;
    let attention = view(PlanFilter {
        needs_attention: true,
        ..PlanFilter::default()
    })?;
    let retrying = view(PlanFilter {
        retrying: true,
        ..PlanFilter::default()
    })?;
    let (unsent_count, unsent) = repo::unsent_invoices(c, 20)?;
    let unsent: Vec<serde_json::Value> = unsent
        .iter()
        .map(|i| {
            serde_json::json!({
                "invoice_id": i.id,
                "plan_id": i.plan_id,
                "customer_id": i.customer_id,
                "event_time": i.event_time,
                "created_at": i.created_at,
                "total_cents": i.total_cents,
                "stripe_invoice_id": i.stripe_invoice_id,
            })
        })
        .collect();
    let oldest = repo::oldest_due_plan(c, now)?.map(|r| {
        serde_json::json!({
            "plan_id": r.plan.id,
            "customer_id": r.plan.customer_id,
            "next_invoice_date": r.plan.next_invoice_date,
        })
    });
    let last = repo::last_pass_run(c)?;
    let ts = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut text = format!(
        "due plans: {}\nleased plans: {}\nplans needing attention: {}\nplans waiting to retry: {}\nunsent invoices: {}\noldest overdue plan: {}\nlast pass: {}",
        due.len(),
        leased.len(),
        attention.len(),
        retrying.len(),
        unsent_count,
        oldest.as_ref().map_or("none".to_string(), |o| format!(
            "plan {} due since {}",
            o["plan_id"],
            ts(&o["next_invoice_date"])
        )),
        last.as_ref().map_or("never".to_string(), |p| format!(
            "as of {} ({} considered, {} invoiced, {} invoices, {} need attention, {} failed)",
            p.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            p.plans_considered,
            p.plans_invoiced,
            p.invoices,
            p.needs_attention,
            p.failures
        ))
    );
    for r in &retrying {
        text.push_str(&format!(
            "\n  retry: plan {} at {} after {} error(s): {}",
            r["plan_id"],
            ts(&r["next_retry_at"]),
            r["error_count"],
            r["last_error"].as_str().unwrap_or("")
        ));
    }
    for a in &attention {
        text.push_str(&format!(
            "\n  attention: plan {}: {}",
            a["plan_id"],
            a["needs_attention"].as_str().unwrap_or("")
        ));
    }
    out(
        &serde_json::json!({
            "now": now,
            "due": due,
            "leased": leased,
            "needs_attention": attention,
            "retrying": retrying,
            "unsent_invoices": { "count": unsent_count, "oldest": unsent },
            "oldest_overdue": oldest,
            "last_pass": last,
        }),
        text,
    )
}

fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", v.abs() / 100, v.abs() % 100)
}

fn render_invoice(i: &InvoiceView) -> String {
    let mut s = format!(
        "invoice {} plan {} customer {} at {} [{}] total {}",
        i.id,
        i.plan_id,
        i.customer_id,
        i.event_time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        i.status,
        cents(i.total_cents)
    );
    for l in &i.lines {
        s.push_str(&format!(
            "\n  {:<45} {:>4} x {:>10} = {:>12}  {} .. {}",
            l.description,
            l.quantity,
            cents(l.unit_amount_cents),
            cents(l.amount_cents),
            l.period_start.date_naive(),
            l.period_end.date_naive()
        ));
    }
    s
}

fn render_report(r: &jobs::PassReport) -> String {
    let mut s = format!(
        "pass at {}{}: {} plans considered, {} invoiced, {} invoices, {} need attention, {} failed ({} ms)",
        r.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        if r.dry_run { " (dry run)" } else { "" },
        r.plans_considered,
        r.plans_invoiced,
        r.invoices_sent,
        r.needs_attention_count,
        r.failures_count,
        r.duration_ms
    );
    for i in &r.invoices {
        s.push('\n');
        s.push_str(&render_invoice(i));
    }
    if r.invoices_sent > r.invoices.len() {
        s.push_str(&format!(
            "\n… and {} more invoices (`invoices list` shows them all)",
            r.invoices_sent - r.invoices.len()
        ));
    }
    if r.stripe_unreachable {
        s.push_str("\nStripe could not be reached: the pass stopped claiming plans; the plans in flight were released and are retried by a later pass");
    }
    for a in &r.needs_attention {
        s.push_str(&format!(
            "\nneeds attention: plan {} (customer {}): {}",
            a.plan_id, a.customer_id, a.reason
        ));
    }
    if r.needs_attention_count > r.needs_attention.len() {
        s.push_str(&format!(
            "\n… and {} more plans that need attention (`status` lists them)",
            r.needs_attention_count - r.needs_attention.len()
        ));
    }
    for f in &r.failures {
        s.push_str(&format!(
            "\nfailed: plan {} (customer {}): {}",
            f.plan_id, f.customer_id, f.error
        ));
    }
    if r.failures_count > r.failures.len() {
        s.push_str(&format!(
            "\n… and {} more failed plans (`status` lists those waiting to retry)",
            r.failures_count - r.failures.len()
        ));
    }
    s
}

/// How far a pass with a live Stripe key may act ahead of this machine's clock (clock skew
/// between the host that schedules and the one that runs).
pub const LIVE_KEY_CLOCK_SKEW_MINUTES: i64 = 5;

/// A live key bills real cards: a pass acting in the future (a mistyped `--now`) would send
/// invoices for periods that have not begun. Test keys and the emulator keep free time travel.
fn refuse_future_with_live_key(
    gateway: &StripeGateway,
    acting_at: Ts,
    flag: &str,
) -> Result<(), AppError> {
    let wall = SystemClock.now();
    if gateway.is_live()
        && acting_at > wall + chrono::Duration::minutes(LIVE_KEY_CLOCK_SKEW_MINUTES)
    {
        return Err(invalid(format!(
            "refusing to bill the future with a live Stripe key: {flag} {} is later than the clock ({}, {LIVE_KEY_CLOCK_SKEW_MINUTES} minutes of skew allowed); use a test key to travel in time",
            acting_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(())
}

/// Leases follow the wall clock unless the command travels in time with `--now`.
fn wall_clock_leases(now: Option<Ts>) -> Option<Arc<dyn Clock>> {
    match now {
        Some(_) => None,
        None => Some(Arc::new(SystemClock)),
    }
}

/// The Stripe gateway from the environment: `STRIPE_API_KEY` or `STRIPE_API_KEY_FILE`,
/// `STRIPE_API_BASE`, and the pacing and retry knobs. A missing key is a configuration error.
pub fn stripe_from_env(tuning: &Tuning) -> Result<StripeGateway, AppError> {
    let key = match (std::env::var("STRIPE_API_KEY").ok(), std::env::var("STRIPE_API_KEY_FILE").ok()) {
        (Some(k), _) if !k.trim().is_empty() => k,
        (_, Some(path)) if !path.trim().is_empty() => std::fs::read_to_string(path.trim())
            .map_err(|e| invalid(format!("cannot read STRIPE_API_KEY_FILE {}: {e}", path.trim())))?,
        _ => {
            return Err(invalid(
                "STRIPE_API_KEY (or STRIPE_API_KEY_FILE) is not set: a pass that emits invoices needs a Stripe key (--dry-run needs none)",
            ))
        }
    };
    let key = ApiKey::new(key).ok_or_else(|| invalid("the Stripe API key is empty"))?;
    let base = std::env::var("STRIPE_API_BASE")
        .ok()
        .filter(|b| !b.trim().is_empty());
    if let Some(b) = &base {
        if !(b.starts_with("http://") || b.starts_with("https://")) {
            return Err(invalid(format!(
                "STRIPE_API_BASE {b:?} is not an http(s) URL"
            )));
        }
    }
    let mut config = StripeConfig::new(key, base.as_deref());
    if let Some(rate) = tuning.stripe_max_requests_per_second {
        config.limits.per_second = rate;
    }
    if let Some(rate) = tuning.stripe_max_requests_per_second_per_endpoint {
        config.limits.per_endpoint = rate;
    }
    if let Some(n) = tuning.stripe_max_requests_in_flight {
        config.limits.in_flight = n;
    }
    if let Some(n) = env_number("STRIPE_MAX_ATTEMPTS")? {
        config.max_attempts = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    }
    if let Some(ms) = env_number("STRIPE_RETRY_BASE_MS")? {
        config.base_backoff = std::time::Duration::from_millis(ms);
    }
    Ok(StripeGateway::new(config)?)
}

fn env_number(name: &str) -> Result<Option<u64>, AppError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("{name} must be a non-negative integer (got {v:?})"))),
        _ => Ok(None),
    }
}

/// Prints an output the way `--json` asks.
pub fn print(output: &Output, json: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        writeln!(stdout, "{}", output.json)
    } else {
        writeln!(stdout, "{}", output.text)
    };
    if written.is_err() {
        // stdout closed (a pipe); nothing sensible left to do.
    }
}
