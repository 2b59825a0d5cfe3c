//! The daemon: tokio-cron-scheduler decides *when*; the pass is the same function `run-once`
//! calls. A pass never overlaps itself: a tick that arrives while one runs is skipped and
//! counted. SIGTERM/SIGINT stops claiming plans, lets the plan in flight finish, and exits.

pub mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::ServeConfig;
use crate::db::repo::{self, PlanFilter};
use crate::db::Db;
use crate::error::{invalid, AppError};
use crate::jobs::{run_pass, PassOptions};
use crate::stripe::client::StripeGateway;
use http::{HttpState, Metrics};

pub const JOB_NAME: &str = "invoice_plans";

/// Why a pass was started.
#[derive(Debug, Clone, Copy)]
enum Tick {
    Startup,
    Schedule,
}

/// Runs the daemon until SIGTERM or SIGINT. `gateway` is built (and its key checked) by the
/// caller; the database schema is checked here before anything runs.
pub async fn serve(config: ServeConfig, gateway: StripeGateway) -> Result<(), AppError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = Db::connect(&config.database, config.pool_size())?;
    let _lock = crate::db::lock::worker_lock(&config.database)?;
    info!(
        database = %config.database.redacted(),
        schedule = %config.schedule,
        timezone = %config.timezone,
        http_addr = %config.http_addr,
        lease_seconds = config.lease_seconds,
        concurrency = config.concurrency,
        "plan-invoicer serve starting"
    );
    let metrics = Arc::new(Metrics::default());
    if let Ok(mut s) = metrics.stripe.lock() {
        *s = Some(gateway.stats.clone());
    }
    let http_task = start_http(&config, &db, &metrics, &clock).await?;
    let api_task = start_api(&config, &db, &clock, &metrics.webhooks).await?;
    let console_task = start_console(&config, &db, &clock).await?;

    // One pass at a time: the channel holds at most one pending tick.
    let (tx, rx) = mpsc::channel::<Tick>(1);
    let overdue = db.run(|c| {
        repo::count_plans(
            c,
            &PlanFilter {
                due_at: Some(clock.now()),
                ..PlanFilter::default()
            },
        )
    })? > 0;
    if overdue {
        info!("plans are overdue: a catch-up pass runs now");
        let _ = tx.try_send(Tick::Startup);
    }
    // The optional audit, payment sync and overdue policy: their own schedules and tasks.
    let gateway = Arc::new(gateway);
    let (side, side_tasks) = start_side_jobs(&config, &db, &gateway, &metrics, &clock);
    let mut scheduler = schedule(&config, &tx, &side, &metrics).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(tokio::sync::Notify::new());
    let passes = Passes {
        db,
        gateway,
        metrics,
        clock,
        lease: chrono::Duration::seconds(i64::try_from(config.lease_seconds).unwrap_or(i64::MAX)),
        concurrency: config.concurrency,
        stop: stop.clone(),
        stopping: stopping.clone(),
    };
    let worker = tokio::spawn(passes.run(rx));

    wait_for_signal().await;
    info!("stop requested: finishing the plan in flight");
    stop.store(true, Ordering::SeqCst);
    stopping.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(5), scheduler.shutdown()).await;
    drop(side);
    for t in side_tasks {
        t.abort();
    }
    drop(tx);
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    match tokio::time::timeout(grace, worker).await {
        Ok(Ok(())) => info!("stopped cleanly"),
        Ok(Err(e)) => error!(error = %e, "the pass worker panicked"),
        Err(_) => warn!(
            grace_seconds = grace.as_secs(),
            "the plan in flight did not finish in time; its lease lets another worker resume it"
        ),
    }
    http_task.abort();
    for t in [api_task, console_task].into_iter().flatten() {
        t.abort();
    }
    Ok(())
}

/// Binds the API's address, when one is set, and serves it in a task of its own.
async fn start_api(
    config: &ServeConfig,
    db: &Db,
    clock: &Arc<dyn Clock>,
    webhook_stats: &Arc<crate::api::WebhookStats>,
) -> Result<Option<tokio::task::JoinHandle<()>>, AppError> {
    let Some(addr) = config.api_addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Internal(format!("cannot listen on {addr} (API): {e}")))?;
    info!(
        api_addr = %addr,
        time_travel = config.allow_time_travel,
        stripe_webhook = !config.webhook_secrets.is_empty(),
        "API listening"
    );
    let state = crate::api::ApiState {
        db: db.clone(),
        clock: clock.clone(),
        allow_time_travel: config.allow_time_travel,
        webhook_secrets: config.webhook_secrets.clone(),
        webhook_stats: webhook_stats.clone(),
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = crate::api::serve(listener, state).await {
            error!(error = %e, "API server stopped");
        }
    })))
}

/// Binds the console's address, when one is set, and serves it in a task of its own.
async fn start_console(
    config: &ServeConfig,
    db: &Db,
    clock: &Arc<dyn Clock>,
) -> Result<Option<tokio::task::JoinHandle<()>>, AppError> {
    let Some(console) = &config.console else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(console.addr)
        .await
        .map_err(|e| {
            AppError::Internal(format!("cannot listen on {} (console): {e}", console.addr))
        })?;
    info!(
        console_addr = %console.addr,
        secure_cookies = console.secure_cookies,
        sso = console.sso_email_header.is_some(),
        "console listening"
    );
    let state = crate::console::ConsoleState {
        db: db.clone(),
        clock: clock.clone(),
        config: Arc::new(console.clone()),
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = crate::console::serve(listener, state).await {
            error!(error = %e, "console server stopped");
        }
    })))
}

/// Binds the health and metrics address and serves it in a task of its own.
async fn start_http(
    config: &ServeConfig,
    db: &Db,
    metrics: &Arc<Metrics>,
    clock: &Arc<dyn Clock>,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| AppError::Internal(format!("cannot listen on {}: {e}", config.http_addr)))?;
    let app = http::router(HttpState {
        metrics: metrics.clone(),
        db: db.clone(),
        clock: clock.clone(),
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    }))
}

/// The cron jobs: a pass tick on `config.schedule` (skipped and counted while a pass runs),
/// and an audit tick on `config.audit_schedule` when it is set.
async fn schedule(
    config: &ServeConfig,
    tx: &mpsc::Sender<Tick>,
    side: &SideJobs,
    metrics: &Arc<Metrics>,
) -> Result<JobScheduler, AppError> {
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| AppError::Internal(format!("cannot start the scheduler: {e}")))?;
    let tick_tx = tx.clone();
    let tick_metrics = metrics.clone();
    let job = Job::new_async_tz(config.schedule.as_str(), config.timezone, move |_, _| {
        let tx = tick_tx.clone();
        let metrics = tick_metrics.clone();
        Box::pin(async move {
            if tx.try_send(Tick::Schedule).is_err() {
                metrics.ticks_skipped.inc();
                warn!("a pass is still running: this tick is skipped");
            }
        })
    })
    .map_err(|e| invalid(format!("invalid schedule {:?}: {e}", config.schedule)))?;
    scheduler
        .add(job)
        .await
        .map_err(|e| AppError::Internal(format!("cannot schedule the pass: {e}")))?;
    for (name, schedule, tx) in [
        ("audit", &config.audit_schedule, &side.audit),
        ("sync-payments", &config.sync_payments_schedule, &side.sync),
        ("overdue", &config.overdue_schedule, &side.overdue),
    ] {
        let Some(schedule) = schedule else {
            continue;
        };
        let tx = tx.clone();
        let job = Job::new_async_tz(schedule.as_str(), config.timezone, move |_, _| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.try_send(());
            })
        })
        .map_err(|e| invalid(format!("invalid {name} schedule {schedule:?}: {e}")))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| AppError::Internal(format!("cannot schedule {name}: {e}")))?;
        info!(schedule = %schedule, job = name, "scheduled beside the passes");
    }
    scheduler
        .start()
        .await
        .map_err(|e| AppError::Internal(format!("cannot start the scheduler: {e}")))?;
    Ok(scheduler)
}

/// Runs an audit per audit tick and exposes its findings in /metrics.
async fn auditor(
    mut ticks: mpsc::Receiver<()>,
    db: Db,
    gateway: Arc<StripeGateway>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
) {
    while ticks.recv().await.is_some() {
        let opts = crate::jobs::audit::AuditOptions::default();
        match crate::jobs::audit::audit(&db, gateway.as_ref(), &opts, &|_, _| {}).await {
            Ok(r) => {
                metrics.record_audit(r.findings.len(), unix_seconds(clock.now()));
                info!(
                    findings = r.findings.len(),
                    customers = r.customers_checked,
                    "audit done"
                );
            }
            Err(e) => error!(error = %e, "audit failed"),
        }
    }
}

/// The ticks of the jobs that run beside the passes, each on its own schedule.
struct SideJobs {
    audit: mpsc::Sender<()>,
    sync: mpsc::Sender<()>,
    overdue: mpsc::Sender<()>,
}

/// The tasks of the audit (it reads, it never writes), the payment sync and the overdue
/// policy, each waiting for its ticks.
fn start_side_jobs(
    config: &ServeConfig,
    db: &Db,
    gateway: &Arc<StripeGateway>,
    metrics: &Arc<Metrics>,
    clock: &Arc<dyn Clock>,
) -> (SideJobs, Vec<tokio::task::JoinHandle<()>>) {
    let (audit, audit_rx) = mpsc::channel::<()>(1);
    let (sync, sync_rx) = mpsc::channel::<()>(1);
    let (overdue, overdue_rx) = mpsc::channel::<()>(1);
    let tasks = vec![
        tokio::spawn(auditor(
            audit_rx,
            db.clone(),
            gateway.clone(),
            metrics.clone(),
            clock.clone(),
        )),
        tokio::spawn(payment_syncer(
            sync_rx,
            db.clone(),
            gateway.clone(),
            clock.clone(),
        )),
        tokio::spawn(overdue_runner(
            overdue_rx,
            db.clone(),
            gateway.clone(),
            clock.clone(),
            config.overdue_policy,
        )),
    ];
    (
        SideJobs {
            audit,
            sync,
            overdue,
        },
        tasks,
    )
}

/// Runs the overdue policy per tick.
async fn overdue_runner(
    mut ticks: mpsc::Receiver<()>,
    db: Db,
    gateway: Arc<StripeGateway>,
    clock: Arc<dyn Clock>,
    policy: crate::domain::OverduePolicy,
) {
    while ticks.recv().await.is_some() {
        let opts = crate::jobs::overdue::OverdueOptions {
            policy,
            dry_run: false,
        };
        match crate::jobs::overdue::overdue(&db, Some(gateway.as_ref()), &opts, clock.now()).await {
            Ok(r) => info!(
                plans_ended = r.plans_ended.len(),
                invoices_voided = r.invoices_voided,
                left_to_a_person = r.left_to_a_person.len(),
                "overdue policy done"
            ),
            Err(e) => error!(error = %e, "overdue policy failed"),
        }
    }
}

/// Runs `sync-payments` per sync tick.
async fn payment_syncer(
    mut ticks: mpsc::Receiver<()>,
    db: Db,
    gateway: Arc<StripeGateway>,
    clock: Arc<dyn Clock>,
) {
    while ticks.recv().await.is_some() {
        match crate::jobs::sync_payments::sync_payments(&db, gateway.as_ref(), None, clock.now())
            .await
        {
            Ok(r) => info!(
                events = r.events,
                applied = r.applied,
                duplicate = r.duplicate,
                "payment sync done"
            ),
            Err(e) => error!(error = %e, "payment sync failed"),
        }
    }
}

fn unix_seconds(t: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// The pass worker: one pass per tick, on the wall clock, until a stop is requested.
struct Passes {
    db: Db,
    gateway: Arc<StripeGateway>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    lease: chrono::Duration,
    concurrency: usize,
    stop: Arc<AtomicBool>,
    stopping: Arc<tokio::sync::Notify>,
}

impl Passes {
    async fn run(self, mut ticks: mpsc::Receiver<Tick>) {
        loop {
            let tick = tokio::select! {
                tick = ticks.recv() => tick,
                _ = self.stopping.notified() => None,
            };
            let Some(tick) = tick else { break };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.pass(tick).await;
        }
    }

    async fn pass(&self, tick: Tick) {
        let opts = PassOptions {
            lease: self.lease,
            stop: Some(self.stop.clone()),
            lease_clock: Some(self.clock.clone()),
            concurrency: self.concurrency,
            ..PassOptions::default()
        };
        let started = Instant::now();
        let now = self.clock.now();
        // A pass that fails because the database went away ends here with its error; the
        // pool replaces broken connections, so the next tick runs normally once the
        // database is back.
        let result = run_pass(&self.db, Some(self.gateway.clone()), now, &opts)
            .await
            .map_err(|e| e.to_string());
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.metrics
            .record_pass(&result, elapsed, unix_seconds(self.clock.now()));
        match &result {
            Ok(r) => info!(
                ?tick,
                invoices = r.invoices_sent,
                needs_attention = r.needs_attention_count,
                failures = r.failures_count,
                duration_ms = elapsed,
                "scheduled pass done"
            ),
            Err(e) => error!(?tick, error = %e, "pass failed"),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
