//! The invoicing pass (docs/RULES.md §4): claim due plans in id order, run the catch-up
//! loop with each due date as the event time, persist invoices write-ahead, hand them to the
//! payment gateway, release. One customer's failure never stops the pass.
//!
//! Up to `concurrency` customers are invoiced at once. One task per customer runs that
//! customer's due plans one after the other (so two plans of a customer never interleave);
//! each plan keeps its own claim, its own short transactions and its own Stripe calls, and no
//! database connection is held across a Stripe call.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use serde::Serialize;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::db::repo::{self, ClaimScope, InvoiceFilter, NewEvent, Release};
use crate::db::{Conn, Db};
use crate::domain::cycle::{fixed_price_review_due, usage_freshness, Freshness};
use crate::domain::dates::next_invoice_date_after;
use crate::domain::{invoice_lines, InvoicingStatus, Plan, PlanStatus, Ts};
use crate::error::AppError;
use crate::ops;
use crate::stripe::{GatewayError, NewInvoice, NewItem, PaymentGateway};
use crate::views::InvoiceView;

pub const JOB_NAME: &str = "invoice_plans";

/// Plans in flight at once by default: enough to keep Stripe's per-endpoint limit (25/s) busy
/// at its usual 300 ms round trip, where one plan takes three or four sequential requests.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// At most this many invoices are kept in a pass report (the rest are counted).
pub const REPORT_SAMPLE: usize = 1000;

/// Appends `more` to a report's sample until it holds [`REPORT_SAMPLE`] items.
pub fn keep_first<T>(sample: &mut Vec<T>, more: impl IntoIterator<Item = T>) {
    let room = REPORT_SAMPLE.saturating_sub(sample.len());
    sample.extend(more.into_iter().take(room));
}

/// A plan is invoiced for at most this many due dates in one pass. A plan further behind needs
/// attention: most likely `--now` is wrong; a real backlog is caught up with `backfill`.
pub const MAX_CATCH_UP_CYCLES: usize = 36;

/// How often a pass tells the fleet it is alive (and re-reads the fleet's size).
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Workers that start together see each other after this pause (PostgreSQL only).
const FLEET_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
/// A worker not seen for this long no longer counts in the Stripe budget's split.
const HEARTBEAT_TTL_SECS: i64 = 15;

#[derive(Clone)]
pub struct PassOptions {
    pub dry_run: bool,
    /// Names this worker in leases and pass records.
    pub worker_id: String,
    /// How long a claim lasts before another worker may resume the plan.
    pub lease: Duration,
    /// Set to stop claiming plans (graceful shutdown); the plans in flight finish their invoice.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The clock leases are set and judged by. `None`: the pass's `now` (time travel, tests).
    /// Production passes use the wall clock, so that a claim made late in a long pass still
    /// lasts `lease` from the moment it is made.
    pub lease_clock: Option<Arc<dyn crate::clock::Clock>>,
    /// Customers invoiced at once (a dry run uses one).
    pub concurrency: usize,
}

impl PassOptions {
    /// The instant leases are set and judged at.
    fn lease_now(&self, now: Ts) -> Ts {
        self.lease_clock.as_ref().map_or(now, |c| c.now())
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn lease<'a>(&'a self, now: Ts) -> repo::Lease<'a> {
        let lease_now = self.lease_now(now);
        repo::Lease {
            owner: &self.worker_id,
            now: lease_now,
            until: lease_now + self.lease,
        }
    }
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            dry_run: false,
            worker_id: default_worker_id(),
            lease: Duration::minutes(10),
            stop: None,
            lease_clock: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}:{}", std::process::id())
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Attention {
    pub plan_id: i64,
    pub customer_id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub plan_id: i64,
    pub customer_id: i64,
    pub error: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassReport {
    pub now: Ts,
    pub dry_run: bool,
    pub plans_considered: usize,
    pub plans_invoiced: usize,
    /// How many invoices the pass sent (or, in a dry run, would send), and their lines.
    pub invoices_sent: usize,
    pub lines_sent: usize,
    /// The first [`REPORT_SAMPLE`] of them, in the order they were sent.
    pub invoices: Vec<InvoiceView>,
    /// How many plans need attention after this pass, and the first [`REPORT_SAMPLE`] of them.
    pub needs_attention_count: usize,
    pub needs_attention: Vec<Attention>,
    /// How many plans failed and wait for a retry, and the first [`REPORT_SAMPLE`] of them.
    pub failures_count: usize,
    pub failures: Vec<Failure>,
    pub duration_ms: u64,
    /// The pass was asked to stop before it had claimed every due plan.
    pub stopped: bool,
    /// Stripe could not be reached (the circuit breaker opened): the pass stopped claiming
    /// plans and released what it held for a later retry.
    pub stripe_unreachable: bool,
}

impl PassReport {
    fn new(now: Ts, dry_run: bool) -> PassReport {
        PassReport {
            now,
            dry_run,
            plans_considered: 0,
            plans_invoiced: 0,
            invoices_sent: 0,
            lines_sent: 0,
            invoices: vec![],
            needs_attention_count: 0,
            needs_attention: vec![],
            failures_count: 0,
            failures: vec![],
            duration_ms: 0,
            stopped: false,
            stripe_unreachable: false,
        }
    }

    /// Counts a plan that needs attention; keeps the first [`REPORT_SAMPLE`].
    pub fn note_attention(&mut self, a: Attention) {
        self.needs_attention_count += 1;
        keep_first(&mut self.needs_attention, [a]);
    }

    /// Counts a failed plan; keeps the first [`REPORT_SAMPLE`].
    pub fn note_failure(&mut self, f: Failure) {
        self.failures_count += 1;
        keep_first(&mut self.failures, [f]);
    }

    /// `cli.md`: 3 when a plan failed or needs attention, or Stripe was unreachable.
    pub fn exit_code(&self) -> i32 {
        if self.needs_attention_count == 0 && self.failures_count == 0 && !self.stripe_unreachable {
            0
        } else {
            3
        }
    }
}

/// One invoicing pass as of `now`. With `dry_run` everything runs inside one transaction on a
/// connection of its own that is rolled back, without a gateway, one customer at a time: the
/// same code path, nothing written, nothing called. Without a gateway (`None`) the local
/// records are the invoices.
pub async fn run_pass<G: PaymentGateway + 'static>(
    db: &Db,
    gateway: Option<Arc<G>>,
    now: Ts,
    opts: &PassOptions,
) -> Result<PassReport, AppError> {
    let span = info_span!("pass", now = %now, dry_run = opts.dry_run, worker = %opts.worker_id);
    async {
        let started = Instant::now();
        let report = if opts.dry_run {
            let dry = db.dedicated()?;
            dry.run(|c| c.begin().map_err(crate::db::DbError::from))?;
            let opts = PassOptions {
                concurrency: 1,
                ..opts.clone()
            };
            let result = pass::<G>(&dry, None, now, &opts).await;
            dry.run(|c| {
                c.rollback_quietly();
                Ok::<_, AppError>(())
            })?;
            result
        } else {
            let run_id = db.run(|c| {
                repo::insert_pass_run(c, &opts.worker_id, now, chrono::Utc::now())
            })?;
            let result = pass(db, gateway, now, opts).await;
            if let Ok(r) = &result {
                let counts = [
                    r.plans_considered,
                    r.plans_invoiced,
                    r.invoices_sent,
                    r.needs_attention_count,
                    r.failures_count,
                ]
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
                db.run(|c| repo::finish_pass_run(c, run_id, chrono::Utc::now(), counts))?;
            }
            result
        };
        let mut report = report?;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if report.stripe_unreachable {
            error!("Stripe could not be reached: the pass stopped claiming plans; those in flight were released for a later retry");
        }
        info!(
            plans.considered = report.plans_considered,
            plans.invoiced = report.plans_invoiced,
            invoices = report.invoices_sent,
            needs_attention = report.needs_attention_count,
            failures = report.failures_count,
            duration_ms = report.duration_ms,
            "pass finished"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}

/// What became of one claimed plan.
enum Outcome {
    Done,
    /// Needs a person (stale usage data, a blocked renewal, a Stripe refusal). `true`: an error
    /// stopped this customer for the rest of the pass.
    Attention(String, bool),
    /// Failed; retried by a later pass.
    Failed(String),
    /// Another worker took the plan over after this worker's lease expired.
    LeftToOther,
}

struct PlanRun {
    plan_id: i64,
    emitted: Emitted,
    outcome: Outcome,
}

/// The invoices a plan sent in this pass (ids in order) and their lines.
#[derive(Default)]
struct Emitted {
    ids: Vec<i64>,
    lines: usize,
}

/// What one customer's task did; `error` is an infrastructure failure (the database went
/// away) that ends the pass.
struct CustomerRun {
    customer_id: i64,
    plans: Vec<PlanRun>,
    error: Option<AppError>,
}

/// What the claimer knows while a pass runs: the report so far, the customers in flight and
/// those that failed (skipped for the rest of the pass), and the first infrastructure error.
struct Tally {
    report: PassReport,
    /// The first invoices sent, for the report.
    sample: Vec<i64>,
    in_flight: HashSet<i64>,
    /// Customers whose plan failed or needs attention in this pass: their later plans wait.
    failed_customers: HashSet<i64>,
    error: Option<AppError>,
}

impl Tally {
    /// Takes in a finished customer task.
    fn absorb(&mut self, done: Result<CustomerRun, tokio::task::JoinError>) {
        let run = match done {
            Ok(run) => run,
            Err(e) => {
                self.error
                    .get_or_insert(AppError::Invalid(format!("a plan task failed: {e}")));
                return;
            }
        };
        self.in_flight.remove(&run.customer_id);
        self.report.plans_considered += run.plans.len();
        if let Some(e) = run.error {
            self.error.get_or_insert(e);
        }
        for plan in run.plans {
            if !plan.emitted.ids.is_empty() {
                self.report.plans_invoiced += 1;
                self.report.invoices_sent += plan.emitted.ids.len();
                self.report.lines_sent += plan.emitted.lines;
                keep_first(&mut self.sample, plan.emitted.ids);
            }
            let (plan_id, customer_id) = (plan.plan_id, run.customer_id);
            match plan.outcome {
                Outcome::Done | Outcome::LeftToOther => {}
                Outcome::Attention(reason, customer_failed) => {
                    if customer_failed {
                        self.failed_customers.insert(customer_id);
                    }
                    self.report.note_attention(Attention {
                        plan_id,
                        customer_id,
                        reason,
                    });
                }
                Outcome::Failed(error) => {
                    self.failed_customers.insert(customer_id);
                    self.report.note_failure(Failure {
                        plan_id,
                        customer_id,
                        error,
                        retryable: true,
                    });
                }
            }
        }
    }
}

async fn pass<G: PaymentGateway + 'static>(
    db: &Db,
    gateway: Option<Arc<G>>,
    now: Ts,
    opts: &PassOptions,
) -> Result<PassReport, AppError> {
    let mut tally = Tally {
        report: PassReport::new(now, opts.dry_run),
        sample: vec![],
        in_flight: HashSet::new(),
        failed_customers: HashSet::new(),
        error: None,
    };
    let concurrency = opts.concurrency.max(1);
    let mut tasks: JoinSet<CustomerRun> = JoinSet::new();
    let mut after = 0;
    let mut fleet = gateway.as_ref().map(|g| {
        g.begin_pass();
        Fleet {
            db: db.clone(),
            worker: opts.worker_id.clone(),
            last: None,
            settled: db.is_sqlite(),
        }
    });
    loop {
        while let Some(done) = tasks.try_join_next() {
            tally.absorb(done);
        }
        if tally.error.is_some() {
            break;
        }
        if opts.stopping() {
            info!("stop requested: no more plans are claimed in this pass");
            tally.report.stopped = true;
            break;
        }
        if gateway.as_ref().is_some_and(|g| g.unreachable()) {
            tally.report.stripe_unreachable = true;
            break;
        }
        if let (Some(f), Some(g)) = (fleet.as_mut(), gateway.as_ref()) {
            f.beat(g.as_ref());
        }
        if tasks.len() >= concurrency {
            if let Some(done) = tasks.join_next().await {
                tally.absorb(done);
            }
            continue;
        }
        let exclude: Vec<i64> = tally.in_flight.iter().copied().collect();
        let scope = ClaimScope {
            after_id: after,
            exclude_customers: &exclude,
            passed_over: Some(&tally.failed_customers),
            ..ClaimScope::default()
        };
        let claimed = db
            .run_async(|c| c.transaction(|c| repo::claim_next_due(c, now, scope, opts.lease(now))))
            .await;
        let claim = match claimed {
            Ok(Some(claim)) => claim,
            Ok(None) => break,
            Err(e) => {
                tally.error.get_or_insert(e.into());
                break;
            }
        };
        after = claim.plan_id;
        if let (Some(f), Some(g)) = (fleet.as_mut(), gateway.as_ref()) {
            f.settle(g.as_ref()).await;
        }
        tally.in_flight.insert(claim.customer_id);
        tasks.spawn(customer_task(
            db.clone(),
            gateway.clone(),
            now,
            opts.clone(),
            claim,
        ));
    }
    while let Some(done) = tasks.join_next().await {
        tally.absorb(done);
    }
    if let Some(f) = fleet {
        f.leave();
    }
    let Tally {
        mut report,
        sample,
        error,
        ..
    } = tally;
    if let Some(e) = error {
        return Err(e);
    }
    if gateway.as_ref().is_some_and(|g| g.unreachable()) {
        report.stripe_unreachable = true;
    }
    if !sample.is_empty() {
        let filter = InvoiceFilter {
            ids: Some(sample.clone()),
            ..InvoiceFilter::default()
        };
        let mut views: Vec<InvoiceView> = db
            .run(|c| repo::list_invoices(c, &filter))?
            .iter()
            .map(InvoiceView::from)
            .collect();
        // In the order they were sent.
        views.sort_by_key(|v| sample.iter().position(|id| *id == v.id));
        if opts.dry_run {
            // Nothing was sent: say what would be.
            for v in &mut views {
                v.status = "would_send".into();
                v.sent_at = None;
            }
        }
        report.invoices = views;
    }
    Ok(report)
}

/// This worker among the fleet that shares one Stripe account: beats every few seconds and
/// gives the gateway its share of the budget.
struct Fleet {
    db: Db,
    worker: String,
    last: Option<Instant>,
    /// Whether the first share was taken after the settling pause.
    settled: bool,
}

impl Fleet {
    /// Before the first plan goes to Stripe: workers started at the same moment (a CronJob
    /// with several replicas) wait briefly and count again, so that none of them starts with
    /// the whole budget.
    async fn settle<G: PaymentGateway>(&mut self, gateway: &G) {
        if self.settled {
            return;
        }
        self.settled = true;
        tokio::time::sleep(FLEET_SETTLE).await;
        self.last = None;
        self.beat(gateway);
    }

    fn beat<G: PaymentGateway>(&mut self, gateway: &G) {
        if self.last.is_some_and(|t| t.elapsed() < HEARTBEAT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        // Heartbeats follow the wall clock: they are about processes, not billing time.
        let wall = chrono::Utc::now();
        let since = wall - Duration::seconds(HEARTBEAT_TTL_SECS);
        match self
            .db
            .run(|c| repo::heartbeat(c, &self.worker, wall, since))
        {
            Ok(workers) => gateway.set_workers(workers),
            Err(e) => warn!(error = %e, "heartbeat failed; the Stripe budget split is unchanged"),
        }
    }

    fn leave(self) {
        if let Err(e) = self.db.run(|c| repo::leave(c, &self.worker)) {
            warn!(error = %e, "could not leave the fleet; the heartbeat row ages out");
        }
    }
}

/// Invoices one customer: the claimed plan, then the customer's other due plans one after the
/// other (a plan created by a switch or a successor joins here, D7).
async fn customer_task<G: PaymentGateway + 'static>(
    db: Db,
    gateway: Option<Arc<G>>,
    now: Ts,
    opts: PassOptions,
    first: repo::Claim,
) -> CustomerRun {
    let customer_id = first.customer_id;
    let mut run = CustomerRun {
        customer_id,
        plans: vec![],
        error: None,
    };
    let mut claim = first;
    loop {
        let plan_id = claim.plan_id;
        let span = info_span!("plan", plan.id = plan_id, customer.id = customer_id);
        let held = Held {
            claim,
            opts: &opts,
            now,
            db: &db,
        };
        let mut emitted = Emitted::default();
        let result = invoice_claimed_plan(&held, gateway.as_deref(), &mut emitted)
            .instrument(span.clone())
            .await;
        let settled = settle(&held, result).instrument(span).await;
        let outcome = match settled {
            Ok(o) => o,
            Err(e) => {
                run.plans.push(PlanRun {
                    plan_id,
                    emitted,
                    outcome: Outcome::Done,
                });
                run.error = Some(e);
                return run;
            }
        };
        let failed = matches!(outcome, Outcome::Failed(_) | Outcome::Attention(_, true));
        run.plans.push(PlanRun {
            plan_id,
            emitted,
            outcome,
        });
        if failed || opts.stopping() || gateway.as_ref().is_some_and(|g| g.unreachable()) {
            return run;
        }
        // Never the same plan twice in one task (a plan left with an unsent invoice after a
        // dry run's or a failure's release is the next pass's work).
        let done: Vec<i64> = run.plans.iter().map(|p| p.plan_id).collect();
        let scope = ClaimScope {
            customer: Some(customer_id),
            exclude_plans: &done,
            ..ClaimScope::default()
        };
        let next = db
            .run_async(|c| c.transaction(|c| repo::claim_next_due(c, now, scope, opts.lease(now))))
            .await;
        match next {
            Ok(Some(next)) => claim = next,
            Ok(None) => return run,
            Err(e) => {
                run.error = Some(e.into());
                return run;
            }
        }
    }
}

/// Records what became of a claimed plan and ends the claim. `Err`: the release itself failed
/// (the database is gone), which ends the pass.
async fn settle(
    held: &Held<'_>,
    result: Result<Option<String>, AppError>,
) -> Result<Outcome, AppError> {
    let now = held.now;
    // What to record: nothing (success), a reason for a human, or a retry by a later pass.
    let waiting = matches!(result, Ok(Some(_)));
    let (attention, retry_at, message) = match result {
        Ok(None) => {
            release(held, Release::Success).await?;
            return Ok(Outcome::Done);
        }
        Ok(Some(reason)) => (true, now + Duration::days(1), reason),
        Err(AppError::LeaseLost(_)) => {
            warn!("another worker took this plan over after the lease expired; leaving it to that worker");
            return Ok(Outcome::LeftToOther);
        }
        Err(e) if e.is_retryable() => {
            let count = held
                .read(|c| ops::plan(c, held.claim.plan_id))
                .await
                .map(|r| r.error_count)
                .unwrap_or(0);
            let backoff = Duration::minutes(5 * (1i64 << count.clamp(0, 6)));
            (false, now + backoff.min(Duration::hours(6)), e.to_string())
        }
        Err(e) => (true, now + Duration::days(1), e.to_string()),
    };
    let outcome = Release::Failed {
        error: &message,
        needs_attention: attention.then_some(message.as_str()),
        retry_at: Some(retry_at),
    };
    if !release(held, outcome).await? {
        return Ok(Outcome::LeftToOther);
    }
    if attention {
        warn!(reason = %message, "plan needs attention");
        Ok(Outcome::Attention(message, !waiting))
    } else {
        warn!(error = %message, retry_at = %retry_at, "invoicing failed, will retry");
        Ok(Outcome::Failed(message))
    }
}

/// This worker's claim on one plan during a pass, and the clock its lease is renewed by.
struct Held<'a> {
    claim: repo::Claim,
    opts: &'a PassOptions,
    now: Ts,
    db: &'a Db,
}

impl Held<'_> {
    /// Runs `f` in a transaction that first renews the lease, and only while this claim still
    /// holds the plan (fencing): a worker whose lease was taken over gets
    /// [`AppError::LeaseLost`] and writes nothing.
    async fn write<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let lease_now = self.opts.lease_now(self.now);
        self.db
            .run_async(|conn| {
                conn.transaction(|c| {
                    if !repo::renew_claim(c, &self.claim, lease_now, self.opts.lease)? {
                        return Err(AppError::LeaseLost(self.claim.plan_id));
                    }
                    f(c)
                })
            })
            .await
    }

    /// A read outside any transaction.
    async fn read<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        self.db.run_async(f).await
    }
}

/// Ends the claim. The invoicing status says what is left: an unsent invoice (STARTED), a first
/// period still to bill (INITIAL_INVOICE_TO_BE_SENT), or nothing (DONE). Returns false when
/// another worker holds the plan now (nothing is written).
async fn release(held: &Held<'_>, outcome: Release<'_>) -> Result<bool, AppError> {
    let plan_id = held.claim.plan_id;
    let released = held
        .db
        .run_async(|conn| {
            conn.transaction(|c| {
                let p = ops::plan(c, plan_id)?.plan;
                let status = if !repo::pending_invoice_ids(c, plan_id)?.is_empty() {
                    InvoicingStatus::Started
                } else if p.invoiced_through.is_none()
                    && p.tier.is_paid()
                    && p.status != PlanStatus::Ended
                {
                    InvoicingStatus::InitialInvoiceToBeSent
                } else {
                    InvoicingStatus::Done
                };
                Ok::<_, AppError>(repo::release_plan(c, &held.claim, status, outcome)?)
            })
        })
        .await?;
    if !released {
        warn!(
            "another worker took this plan over after the lease expired; leaving it to that worker"
        );
    }
    Ok(released)
}

/// Invoices a claimed plan: finishes unsent invoices, then the catch-up loop. Emitted invoice
/// ids are pushed to `emitted` as they are sent (so a later failure does not hide them).
/// `Ok(Some(reason))`: invoicing waits for someone (stale usage data).
async fn invoice_claimed_plan<G: PaymentGateway>(
    held: &Held<'_>,
    gateway: Option<&G>,
    emitted: &mut Emitted,
) -> Result<Option<String>, AppError> {
    let plan_id = held.claim.plan_id;
    let now = held.now;
    let mut races = 0;
    let mut cycles = 0;
    'resume: loop {
        // A previous worker may have died between the write-ahead commit and Stripe.
        for id in held
            .read(|c| Ok(repo::pending_invoice_ids(c, plan_id)?))
            .await?
        {
            emitted.lines += emit(held, gateway, id).await?;
            emitted.ids.push(id);
        }
        loop {
            if cycles >= MAX_CATCH_UP_CYCLES {
                let plan = held.read(|c| ops::plan(c, plan_id)).await?.plan;
                if let Some(next) = plan.next_invoice_date.filter(|d| *d <= now) {
                    return Ok(Some(format!(
                        "plan {plan_id} is more than {MAX_CATCH_UP_CYCLES} billing cycles behind (next invoice date {}): this pass stopped after {MAX_CATCH_UP_CYCLES}; check --now, or catch up with `backfill` in steps",
                        next.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    )));
                }
            }
            let step = match held.write(|c| invoice_step(c, plan_id, now)).await {
                Err(AppError::Db(e)) if e.is_unique_violation() && races < 3 => {
                    // Another worker wrote this invoice first (a lost race, not an error):
                    // resume what exists if the plan is still ours; the fence says if it is.
                    races += 1;
                    info!(error = %e, "the invoice exists already; resuming it");
                    held.write(|_| Ok(())).await?;
                    continue 'resume;
                }
                other => other?,
            };
            match step {
                Step::NotDue => return Ok(None),
                Step::Waiting(reason) => return Ok(Some(reason)),
                Step::Advanced(None) => cycles += 1,
                Step::Advanced(Some(id)) => {
                    cycles += 1;
                    emitted.lines += emit(held, gateway, id).await?;
                    emitted.ids.push(id);
                    // Stopping between two complete invoices of a catch-up is safe: the plan's
                    // next_invoice_date says where the next pass resumes.
                    if held.opts.stopping() {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

async fn emit<G: PaymentGateway>(
    held: &Held<'_>,
    gateway: Option<&G>,
    invoice_id: i64,
) -> Result<usize, AppError> {
    let filter = InvoiceFilter {
        ids: Some(vec![invoice_id]),
        ..InvoiceFilter::default()
    };
    let Some(record) = held
        .read(|c| Ok(repo::list_invoices(c, &filter)?))
        .await?
        .into_iter()
        .next()
    else {
        return Err(AppError::NotFound(format!("invoice {invoice_id} vanished")));
    };
    let inv = &record.invoice;
    if let Some(g) = gateway {
        let span = info_span!("emit", invoice.id = invoice_id);
        push_to_gateway(held, g, &record).instrument(span).await?;
    }
    // In a dry run this is undone with everything else; the report says "would_send".
    held.write(|c| Ok(repo::mark_invoice_sent(c, invoice_id, held.now)?))
        .await?;
    if held.opts.dry_run {
        info!(
            invoice.id = invoice_id,
            total_cents = inv.total_cents,
            lines = record.lines.len(),
            "invoice computed (dry run: not sent)"
        );
    } else {
        info!(
            invoice.id = invoice_id,
            total_cents = inv.total_cents,
            lines = record.lines.len(),
            "invoice sent"
        );
    }
    Ok(record.lines.len())
}

/// Stripe keeps idempotency keys for at least 24 hours; older invoices are looked up first.
const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// What a Stripe invoice found on a resume allows.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// A draft: add the missing items, then finalize.
    Draft,
    /// Finalized with the local total (a previous attempt got that far): nothing to send.
    Finalized,
}

/// Judges the Stripe invoice that a local invoice is resumed into. Anything but a draft or a
/// finalized invoice with the local total means that someone changed it in Stripe (or Stripe
/// finalized a partial invoice): the worker must not go on.
fn judge_resume(
    remote: Option<&crate::stripe::RemoteInvoice>,
    stripe_id: &str,
    local: &crate::db::models::InvoiceRow,
) -> Result<Resume, GatewayError> {
    let Some(r) = remote else {
        return Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} of local invoice {} no longer exists (deleted in Stripe); it is not sent again automatically",
            local.id
        )));
    };
    match r.status.as_str() {
        "draft" => Ok(Resume::Draft),
        "open" | "paid" if r.total == local.total_cents => Ok(Resume::Finalized),
        "open" | "paid" => Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} is {} with a total of {} cents, but local invoice {} totals {} cents",
            r.status, r.total, local.id, local.total_cents
        ))),
        other => Err(GatewayError::Mismatch(format!(
            "Stripe invoice {stripe_id} of local invoice {} is {other} in Stripe (changed outside plan-invoicer); it is not sent again automatically",
            local.id
        ))),
    }
}

async fn push_to_gateway<G: PaymentGateway>(
    held: &Held<'_>,
    g: &G,
    record: &crate::db::models::InvoiceRecord,
) -> Result<(), AppError> {
    let inv = &record.invoice;
    let customer = held.read(|c| ops::customer(c, inv.customer_id)).await?;
    let stripe_customer = match &customer.stripe_customer_id {
        Some(id) => id.clone(),
        None => {
            let id = g.create_customer(&customer).await?;
            held.write(|c| Ok(repo::set_stripe_customer_id(c, customer.id, &id)?))
                .await?;
            id
        }
    };
    let stale = held.now - inv.created_at >= Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
    // A resumed invoice is read back first: only a draft may get items.
    let (stripe_invoice, resume) = match &inv.stripe_invoice_id {
        Some(id) => {
            let remote = g.retrieve_invoice(id).await?;
            (id.clone(), judge_resume(remote.as_ref(), id, inv)?)
        }
        None => {
            let found = if stale {
                g.find_invoice(&stripe_customer, inv.id).await?
            } else {
                None
            };
            let (id, resume) = match found {
                Some(remote) => {
                    let resume = judge_resume(Some(&remote), &remote.id, inv)?;
                    (remote.id, resume)
                }
                None => {
                    let plan = held.read(|c| ops::plan(c, inv.plan_id)).await?.plan;
                    let start = record
                        .lines
                        .iter()
                        .map(|l| l.period_start)
                        .min()
                        .unwrap_or(inv.event_time);
                    let end = record
                        .lines
                        .iter()
                        .map(|l| l.period_end)
                        .max()
                        .unwrap_or(inv.event_time);
                    let new = NewInvoice {
                        local_id: inv.id,
                        plan_id: inv.plan_id,
                        stripe_customer: &stripe_customer,
                        charge_automatically: inv.collection_method == "charge_automatically",
                        days_until_due: inv.days_until_due.and_then(|d| u32::try_from(d).ok()),
                        statement_descriptor: plan.name(),
                        period_start: start,
                        period_end: end,
                    };
                    (g.create_invoice(&new).await?, Resume::Draft)
                }
            };
            held.write(|c| Ok(repo::set_invoice_stripe_id(c, inv.id, &id)?))
                .await?;
            (id, resume)
        }
    };
    let missing: Vec<_> = record
        .lines
        .iter()
        .filter(|l| l.stripe_invoice_item_id.is_none())
        .collect();
    let known = if (stale || resume == Resume::Finalized) && !missing.is_empty() {
        g.find_items(&stripe_invoice).await?
    } else {
        Default::default()
    };
    for line in missing {
        let id = match (known.get(&line.id), &resume) {
            (Some(id), _) => id.clone(),
            (None, Resume::Finalized) => {
                return Err(GatewayError::Mismatch(format!(
                    "Stripe invoice {stripe_invoice} is finalized without an item for line {} of local invoice {}",
                    line.id, inv.id
                ))
                .into())
            }
            (None, Resume::Draft) => {
                let item = NewItem {
                    local_id: line.id,
                    stripe_customer: &stripe_customer,
                    stripe_invoice: &stripe_invoice,
                    description: &line.description,
                    quantity_unit: (!line.amount_only)
                        .then_some((line.quantity, line.unit_amount_cents)),
                    amount: line.amount_cents,
                    period_start: line.period_start,
                    period_end: line.period_end,
                    ledger_entry_id: line.ledger_entry_id,
                };
                g.create_item(&item).await?
            }
        };
        held.write(|c| Ok(repo::set_line_stripe_id(c, line.id, &id)?))
            .await?;
    }
    if !inv.stripe_finalized {
        if resume == Resume::Draft {
            let finalized = g.finalize(&stripe_invoice, inv.id).await?;
            if finalized.total != inv.total_cents {
                return Err(GatewayError::Mismatch(format!(
                    "Stripe invoice {stripe_invoice} totals {} cents but local invoice {} totals {} cents",
                    finalized.total, inv.id, inv.total_cents
                ))
                .into());
            }
        }
        held.write(|c| Ok(repo::set_invoice_finalized(c, inv.id)?))
            .await?;
    }
    Ok(())
}

enum Step {
    NotDue,
    Waiting(String),
    Advanced(Option<i64>),
}

fn notice(
    conn: &mut Conn,
    plan: &Plan,
    kind: &'static str,
    message: String,
    now: Ts,
) -> Result<(), AppError> {
    info!(notice = kind, "{message}");
    let e = NewEvent {
        message: Some(message),
        ..NewEvent::about(kind, plan, now)
    };
    repo::insert_event(conn, &e, now)?;
    Ok(())
}

/// One turn of the catch-up loop at the plan's due date, in one transaction (D6): end-of-cycle
/// updates, the lines, the local invoice, `invoiced_through` and the next invoice date.
fn invoice_step(c: &mut Conn, plan_id: i64, now: Ts) -> Result<Step, AppError> {
    let mut p = ops::plan(c, plan_id)?.plan;
    let Some(t) = p.next_invoice_date.filter(|d| *d <= now) else {
        return Ok(Step::NotDue);
    };
    if p.status == PlanStatus::NeverStarted {
        // Started by its predecessor's end-of-cycle update, never on its own (§6.14).
        return Ok(Step::NotDue);
    }
    let customer = ops::customer(c, p.customer_id)?;

    if fixed_price_review_due(&p) {
        let end = p
            .end_date
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        notice(
            c,
            &p,
            "notice_fixed_price_plan_ends",
            format!(
                "Fixed-price plan for customer {} ends on {end}",
                customer.name
            ),
            now,
        )?;
        p.reminder_to_review_plan_email_sent = true;
        repo::save_plan(c, &p)?;
    }
    match usage_freshness(&p, &customer, t) {
        Freshness::Proceed => {}
        Freshness::ProceedWithNotice => notice(
            c,
            &p,
            "notice_stale_usage_data",
            format!("Stale usage data for customer {}'s plan, but invoicing not delayed because the plan has a fixed price", customer.name),
            now,
        )?,
        Freshness::Skip { notify } => {
            let last = customer.last_usage_report_at.map_or("never uploaded".to_string(), |d| format!("last upload {}", d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
            let reason = format!("Unable to verify current licenses in use ({last}), which delays invoicing until fresh usage data arrives");
            if notify {
                notice(c, &p, "notice_stale_usage_data", reason.clone(), now)?;
                p.stale_audit_log_data_email_sent = true;
                repo::save_plan(c, &p)?;
            }
            return Ok(Step::Waiting(reason));
        }
    }

    if p.status != PlanStatus::SwitchPlanTierNow {
        ops::apply_end_of_cycle(c, &mut p, &customer, t, now)?;
    }
    let entries = repo::ledger_of(c, p.id)?;
    let draft = invoice_lines(&p, &customer, &entries, t)?;
    let invoice_id = if draft.lines.is_empty() {
        None
    } else {
        let id = repo::insert_invoice(c, &p, t, &draft, now)?;
        if draft.flat_months_used > 0 {
            repo::set_flat_discounted_months(
                c,
                customer.id,
                customer.flat_discounted_months - draft.flat_months_used,
            )?;
        }
        Some(id)
    };
    p.invoiced_through = draft.invoiced_through;
    p.next_invoice_date = match p.status {
        PlanStatus::Ended => None,
        // D4: computed from the due date being processed, never from a later instant.
        _ => Some(next_invoice_date_after(p.billing_cycle_anchor, t)?),
    };
    p.stale_audit_log_data_email_sent = false;
    repo::save_plan(c, &p)?;
    Ok(Step::Advanced(invoice_id))
}

/// What `plan preview` shows: the invoices a plan would get at its next invoice date (or at
/// `at`), and the end-of-cycle changes that would come first.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub plan_id: i64,
    pub at: Ts,
    pub status_before: &'static str,
    pub status_after: &'static str,
    pub changes: Vec<PreviewChange>,
    pub invoices: Vec<InvoiceView>,
    /// Why invoicing would wait (stale usage data, the catch-up bound).
    pub waiting: Option<String>,
}

/// A plan event or notice the pass would write.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewChange {
    pub kind: String,
    pub plan_id: i64,
    pub old_status: Option<&'static str>,
    pub new_status: Option<&'static str>,
    pub message: Option<String>,
    pub event_time: Ts,
}

/// The pass's own step for one plan, inside a transaction that is rolled back: nothing is
/// written, nothing is sent.
pub fn preview(db: &Db, plan_id: i64, at: Option<Ts>) -> Result<Preview, AppError> {
    let dry = db.dedicated()?;
    dry.run(|conn| {
        conn.rolled_back(|c| {
            let p = ops::plan(c, plan_id)?.plan;
            let Some(at) = at.or(p.next_invoice_date) else {
                return Err(crate::error::invalid(format!(
                    "plan {plan_id} has no next invoice date: there is nothing to preview (give --at)"
                )));
            };
            let events = |c: &mut Conn| -> Result<Vec<crate::db::models::PlanEventRow>, AppError> {
                let mut all = vec![];
                for id in repo::plan_ids_of_customer(c, p.customer_id)? {
                    all.extend(repo::events_of_plan(c, id)?);
                }
                Ok(all)
            };
            let seen = events(c)?.iter().map(|e| e.id).max().unwrap_or(0);
            let mut ids = vec![];
            let mut waiting = None;
            for _ in 0..MAX_CATCH_UP_CYCLES {
                match invoice_step(c, plan_id, at)? {
                    Step::NotDue => break,
                    Step::Waiting(reason) => {
                        waiting = Some(reason);
                        break;
                    }
                    Step::Advanced(None) => {}
                    Step::Advanced(Some(id)) => ids.push(id),
                }
            }
            let status = |code: Option<i16>| {
                code.and_then(|s| PlanStatus::from_code(i64::from(s)).ok())
                    .map(PlanStatus::name)
            };
            let changes = events(c)?
                .into_iter()
                .filter(|e| e.id > seen)
                .map(|e| PreviewChange {
                    old_status: status(e.old_status),
                    new_status: status(e.new_status),
                    kind: e.kind,
                    plan_id: e.plan_id,
                    message: e.message,
                    event_time: e.event_time,
                })
                .collect();
            let filter = InvoiceFilter {
                ids: Some(ids),
                ..InvoiceFilter::default()
            };
            let invoices = repo::list_invoices(c, &filter)?
                .iter()
                .map(|r| {
                    let mut v = InvoiceView::from(r);
                    v.status = "would_send".into();
                    v
                })
                .collect();
            let after = ops::plan(c, plan_id)?.plan;
            Ok(Preview {
                plan_id,
                at,
                status_before: p.status.name(),
                status_after: after.status.name(),
                changes,
                invoices,
                waiting,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass over a million failing plans reports counts and the first thousand of each.
    #[test]
    fn the_report_keeps_counts_and_a_bounded_sample() {
        let now = Ts::default();
        let mut r = PassReport::new(now, false);
        assert_eq!(r.exit_code(), 0);
        for i in 0..(REPORT_SAMPLE as i64 + 5) {
            r.note_failure(Failure {
                plan_id: i,
                customer_id: i,
                error: "Stripe answered 402".into(),
                retryable: true,
            });
            r.note_attention(Attention {
                plan_id: i,
                customer_id: i,
                reason: "a reason".into(),
            });
        }
        assert_eq!(
            (r.failures_count, r.failures.len()),
            (REPORT_SAMPLE + 5, REPORT_SAMPLE)
        );
        assert_eq!(
            (r.needs_attention_count, r.needs_attention.len()),
            (REPORT_SAMPLE + 5, REPORT_SAMPLE)
        );
        assert_eq!(r.failures[0].plan_id, 0, "the first ones are kept");
        assert_eq!(r.exit_code(), 3);
    }
}
