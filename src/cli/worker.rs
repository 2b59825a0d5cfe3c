//! The commands that run the worker or its tools: migrate, run-once, backfill, audit, serve,
//! healthcheck, bench, demo and the Stripe emulator.

use std::sync::Arc;

use crate::clock::{Clock, FixedClock, SystemClock};
use crate::config::{ServeArgs, ServeConfig, Tuning, DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE};
use crate::db::lock::worker_lock;
use crate::db::{Conn, Db, DbUrl};
use crate::devtools::emulator::{Emulator, Faults, RateLimits};
use crate::domain::Ts;
use crate::error::{invalid, AppError};
use crate::jobs::{self, PassOptions, Progress};
use crate::progress::TerminalProgress;
use crate::stripe::client::StripeGateway;

use super::render::render_report;
use super::{Cli, EmulatorCmd, ServeCmd};
use crate::admin::{out, Output};
use crate::domain::change::Author;

/// What every command shares: the database URL, `--now` and the clock behind it.
pub(super) struct Context {
    database_url: String,
    /// `--now` when given (time travel): leases then follow it too.
    travel: Option<Ts>,
    pub(super) now: Ts,
    /// `--reason`, for the change history.
    reason: Option<String>,
}

impl Context {
    pub(super) fn new(cli: &Cli) -> Context {
        let clock: Box<dyn Clock> = match cli.now {
            Some(t) => Box::new(FixedClock(t)),
            None => Box::new(SystemClock),
        };
        Context {
            database_url: cli.database_url.clone(),
            travel: cli.now,
            now: clock.now(),
            reason: cli.reason.clone(),
        }
    }

    /// Who writes: `cli:<OS user>` (`$USER`, else `$LOGNAME`), with `--reason`.
    pub(super) fn author(&self) -> Result<Author, AppError> {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        Ok(Author::cli(&user, self.reason.as_deref())?)
    }

    fn url(&self) -> Result<DbUrl, AppError> {
        Ok(DbUrl::parse(&self.database_url)?)
    }

    pub(super) fn db(&self) -> Result<Db, AppError> {
        Ok(Db::connect(&self.url()?, DEFAULT_POOL_SIZE)?)
    }

    /// Leases follow the wall clock unless the command travels in time with `--now`.
    fn lease_clock(&self) -> Option<Arc<dyn Clock>> {
        match self.travel {
            Some(_) => None,
            None => Some(Arc::new(SystemClock)),
        }
    }
}

pub(super) fn migrate(ctx: &Context) -> Result<Output, AppError> {
    let url = ctx.url()?;
    let mut conn = Conn::open(&url, true)?;
    let applied = conn.migrate()?;
    let text = if applied.is_empty() {
        format!("{}: schema is up to date", url.redacted())
    } else {
        format!("{}: applied {}", url.redacted(), applied.join(", "))
    };
    out(&serde_json::json!({ "applied": applied }), text)
}

fn gateway(tuning: &Tuning) -> Result<StripeGateway, AppError> {
    Ok(StripeGateway::new(tuning.stripe()?)?)
}

pub(super) async fn run_once(
    ctx: &Context,
    dry_run: bool,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    let url = ctx.url()?;
    let db = ctx.db()?;
    let _lock = if dry_run { None } else { worker_lock(&url)? };
    let progress = Arc::new(TerminalProgress::start("plans"));
    let opts = PassOptions {
        dry_run,
        lease_clock: ctx.lease_clock(),
        concurrency: tuning.concurrency(),
        progress: Some(progress.clone()),
        ..PassOptions::default()
    };
    let gateway = if dry_run {
        None
    } else {
        let g = Arc::new(gateway(tuning)?);
        refuse_future_with_live_key(&g, ctx.now, "--now")?;
        Some(g)
    };
    let report = jobs::run_pass(&db, gateway, ctx.now, &opts).await;
    drop(opts);
    finish(progress);
    let report = report?;
    let mut o = out(&report, render_report(&report))?;
    o.exit_code = report.exit_code();
    Ok(o)
}

/// Clears the progress line before the summary is printed (the last clone of it goes here).
fn finish(progress: Arc<TerminalProgress>) {
    if let Ok(p) = Arc::try_unwrap(progress) {
        p.finish();
    }
}

pub(super) async fn backfill(
    ctx: &Context,
    from: Ts,
    to: Ts,
    every: &str,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    // Input first: a bad step is refused before the database or the worker lock is touched.
    jobs::backfill::parse_every(every)?;
    let url = ctx.url()?;
    let db = ctx.db()?;
    let _lock = worker_lock(&url)?;
    let gateway = Arc::new(gateway(tuning)?);
    refuse_future_with_live_key(&gateway, to, "--to")?;
    // Backfill steps are past instants; claims still last from the wall clock.
    let progress = Arc::new(TerminalProgress::start("passes"));
    let opts = PassOptions {
        lease_clock: Some(Arc::new(SystemClock)),
        concurrency: tuning.concurrency(),
        progress: Some(progress.clone()),
        ..PassOptions::default()
    };
    let report = jobs::backfill::backfill(&db, Some(gateway), from, to, every, &opts).await;
    drop(opts);
    finish(progress);
    let report = report?;
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

pub(super) async fn sync_payments(
    ctx: &Context,
    since: Option<Ts>,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    let db = ctx.db()?;
    let gateway = gateway(tuning)?;
    let r = jobs::sync_payments::sync_payments(&db, &gateway, since, ctx.now).await?;
    let text = format!(
        "sync-payments: {} events read, {} applied, {} already known, {} unchanged, {} ignored",
        r.events, r.applied, r.duplicate, r.unchanged, r.ignored
    );
    out(&r, text)
}

pub(super) async fn overdue(
    ctx: &Context,
    dry_run: bool,
    args: &super::OverdueArgs,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    let db = ctx.db()?;
    let policy = crate::config::overdue_policy(args.overdue_invoices, args.overdue_seats)?;
    // A dry run reads only the local records; it needs no key.
    let gateway = if dry_run {
        None
    } else {
        Some(gateway(tuning)?)
    };
    let opts = jobs::overdue::OverdueOptions { policy, dry_run };
    let r = jobs::overdue::overdue(&db, gateway.as_ref(), &opts, ctx.now).await?;
    let verb = if dry_run { "would end" } else { "ended" };
    let mut text = format!(
        "overdue: {} customers checked; {verb} {} plans; {} customers without a plan with open invoices; {} customers left to a person; {} invoices voided",
        r.customers_checked,
        r.plans_ended.len(),
        r.invoices_only.len(),
        r.left_to_a_person.len(),
        r.invoices_voided
    );
    for (what, list) in [
        (verb, &r.plans_ended),
        ("left to a person", &r.left_to_a_person),
    ] {
        for a in list {
            let plan = a
                .plan_id
                .map_or_else(|| "no live plan".to_string(), |p| format!("plan {p}"));
            text.push_str(&format!(
                "\n{what}: customer {} ({plan}, {} seats), unpaid invoices {:?}{}",
                a.customer_id,
                a.seats.unwrap_or_default(),
                a.invoices,
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
    }
    out(&r, text)
}

pub(super) async fn audit(
    ctx: &Context,
    since: Option<Ts>,
    customer: Option<i64>,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    let db = ctx.db()?;
    if let Some(id) = customer {
        db.run(|c| crate::ops::customer(c, id))?;
    }
    let gateway = gateway(tuning)?;
    let bar = TerminalProgress::start("customers audited");
    let progress = |done: u64, total: u64| {
        bar.total(total);
        bar.done(done, 0, 0);
    };
    let opts = jobs::audit::AuditOptions { since, customer };
    let report = jobs::audit::audit(&db, &gateway, &opts, &progress).await;
    bar.finish();
    let report = report?;
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

pub(super) async fn serve(ctx: &Context, cmd: ServeCmd) -> Result<Output, AppError> {
    if ctx.travel.is_some() {
        return Err(invalid(
            "serve runs on the wall clock: --now is for run-once, backfill and the admin commands",
        ));
    }
    let args = ServeArgs {
        database_url: ctx.database_url.clone(),
        database_url_from_default: ctx.database_url == DEFAULT_DATABASE_URL
            && std::env::var("DATABASE_URL").is_err(),
        schedule: cmd.schedule,
        timezone: cmd.timezone,
        http_addr: cmd.http_addr,
        api_addr: cmd.api_addr,
        console_addr: cmd.console_addr,
        console_secure_cookies: cmd.console_secure_cookies,
        console_sso_email_header: cmd.console_sso_email_header,
        console_trusted_proxies: cmd.console_trusted_proxies,
        allow_time_travel: cmd.allow_time_travel,
        config: cmd.config,
        audit_schedule: cmd.audit_schedule,
        sync_payments_schedule: cmd.sync_payments_schedule,
        overdue_schedule: cmd.overdue_schedule,
        overdue_invoices: cmd.overdue.overdue_invoices,
        overdue_seats: cmd.overdue.overdue_seats,
    };
    let config = ServeConfig::resolve(&args, &cmd.tuning)?;
    let gateway = gateway(&config.tuning)?;
    if config.allow_time_travel && gateway.is_live() {
        return Err(invalid(
            "refusing --allow-time-travel with a live Stripe key: use a test key to travel in time",
        ));
    }
    crate::daemon::serve(config, gateway).await?;
    out(
        &serde_json::json!({ "stopped": true }),
        "stopped".to_string(),
    )
}

pub(super) async fn healthcheck(http_addr: &str, wait: u64) -> Result<Output, AppError> {
    crate::daemon::http::check_health(http_addr, std::time::Duration::from_secs(wait)).await?;
    out(
        &serde_json::json!({ "healthy": true }),
        "healthy".to_string(),
    )
}

pub(super) async fn bench(
    plans: usize,
    empty_database_url: Option<&str>,
    tuning: &Tuning,
) -> Result<Output, AppError> {
    let url = empty_database_url.map(DbUrl::parse).transpose()?;
    let report = crate::devtools::bench::run(plans, url, tuning.concurrency()).await?;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    out(&report, text)
}

pub(super) fn bench_changes(
    customers: i64,
    months: i64,
    empty_database_url: Option<&str>,
) -> Result<Output, AppError> {
    let url = empty_database_url.map(DbUrl::parse).transpose()?;
    let report = crate::devtools::bench_changes::run(customers, months, url)?;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    out(&report, text)
}

pub(super) async fn demo(dir: Option<std::path::PathBuf>) -> Result<Output, AppError> {
    let (text, summary) = crate::devtools::demo::run(dir).await?;
    out(&summary, text)
}

pub(super) async fn stripe_emulator(cmd: EmulatorCmd) -> Result<Output, AppError> {
    let emulator = Emulator::new();
    emulator.set_auto_advance_after(chrono::Duration::seconds(cmd.auto_advance_after_secs));
    emulator.set_rate_limits(RateLimits {
        per_second: cmd.rate_limit_per_second,
        per_endpoint_per_second: cmd.endpoint_rate_limit_per_second,
    });
    if cmd.counts_only {
        emulator.counts_only();
    }
    if let Some(path) = &cmd.record {
        emulator.record_to(path);
    }
    if let (Some(url), Some(secret)) = (&cmd.webhook_url, &cmd.webhook_secret) {
        emulator.set_webhook(url, secret);
    }
    emulator.set_faults(Faults {
        latency: std::time::Duration::from_millis(cmd.latency_ms),
        latency_jitter: std::time::Duration::from_millis(cmd.latency_jitter_ms),
        rate_limit_every: cmd.rate_limit_every,
        fail_every: cmd.fail_every,
        lock_timeout_every: cmd.lock_timeout_every,
        html_502_every: cmd.html_502_every,
        ..Faults::default()
    });
    let listen = &cmd.listen;
    eprintln!("Stripe emulator on http://{listen}/ (test equipment, not Stripe)");
    emulator
        .serve(listen)
        .await
        .map_err(|e| invalid(format!("cannot serve on {listen}: {e}")))?;
    out(&serde_json::json!({}), String::new())
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

/// The first line of standard input (`console-user create --password-stdin`), without its line
/// ending.
pub(super) fn read_password() -> Result<String, AppError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| invalid(format!("cannot read the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(crate::error::refuse(
            "password",
            "standard input gave no password (give it as the first line)",
        ));
    }
    Ok(password)
}
