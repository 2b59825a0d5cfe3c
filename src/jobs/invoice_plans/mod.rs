//! The invoicing pass (docs/RULES.md §4, "A pass"): claim due plans in id order, run the catch-up
//! loop with each due date as the event time, persist invoices write-ahead, hand them to the
//! payment gateway, release. One customer's failure never stops the pass.
//!
//! Up to `concurrency` customers are invoiced at once. One task per customer runs that
//! customer's due plans one after the other (so two plans of a customer never interleave);
//! each plan keeps its own claim, its own short transactions and its own Stripe calls, and no
//! database connection is held across a Stripe call.

mod customer;
mod fence;
mod fleet;
mod report;
mod send;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, Instrument};

use crate::clock::{Clock, SystemClock};
use crate::config::{DEFAULT_CONCURRENCY, DEFAULT_LEASE_SECONDS};
use crate::db::claims::{self, ClaimScope};
use crate::db::repo::{self, InvoiceFilter};
use crate::db::Db;
use crate::domain::{CustomerId, InvoiceId, PlanId, Ts};
use crate::error::AppError;
use crate::stripe::PaymentGateway;
use crate::views::{InvoiceView, WOULD_SEND};

use customer::{customer_task, CustomerRun, Outcome};
use fleet::Fleet;
pub use report::{keep_first, Attention, Failure, PassReport, REPORT_SAMPLE};

/// A plan is invoiced for at most this many due dates in one pass. A plan further behind needs
/// attention: most likely `--now` is wrong; a real backlog is caught up with `backfill`.
pub const MAX_CATCH_UP_CYCLES: usize = 36;

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
    pub lease_clock: Option<Arc<dyn Clock>>,
    /// The wall clock, for what is about processes rather than billing time: the pass's
    /// start and end in `pass_run`, the fleet's heartbeats.
    pub wall: Arc<dyn Clock>,
    /// Customers invoiced at once (a dry run uses one).
    pub concurrency: usize,
    /// Told of each finished customer (the terminal's progress line of `run-once`).
    pub progress: Option<Arc<dyn crate::jobs::Progress>>,
}

impl PassOptions {
    /// The instant leases are set and judged at.
    pub(crate) fn lease_now(&self, now: Ts) -> Ts {
        self.lease_clock.as_ref().map_or(now, |c| c.now())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }

    pub(crate) fn lease<'a>(&'a self, now: Ts) -> claims::Lease<'a> {
        let lease_now = self.lease_now(now);
        claims::Lease {
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
            lease: Duration::seconds(DEFAULT_LEASE_SECONDS as i64),
            stop: None,
            lease_clock: None,
            wall: Arc::new(SystemClock),
            concurrency: DEFAULT_CONCURRENCY,
            progress: None,
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
                crate::db::workers::insert_pass_run(c, &opts.worker_id, now, opts.wall.now())
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
                db.run(|c| crate::db::workers::finish_pass_run(c, run_id, opts.wall.now(), counts))?;
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

/// What the claimer knows while a pass runs: the report so far, the customers in flight and
/// those that failed (skipped for the rest of the pass), and the first infrastructure error.
struct Tally {
    report: PassReport,
    /// The first invoices sent, for the report.
    sample: Vec<InvoiceId>,
    in_flight: HashSet<CustomerId>,
    /// Customers whose plan failed or needs attention in this pass: their later plans wait.
    failed_customers: HashSet<CustomerId>,
    error: Option<AppError>,
    progress: Option<Arc<dyn crate::jobs::Progress>>,
}

impl Tally {
    /// Takes in a finished customer task.
    fn absorb(&mut self, done: Result<CustomerRun, tokio::task::JoinError>) {
        let run = match done {
            Ok(run) => run,
            Err(e) => {
                // A panic (or a cancelled task) in a customer's task: a bug, not bad input. Its
                // database connection was closed by the pool; its claim lapses with its lease.
                tracing::error!(error = %e, "a customer task of the pass failed");
                self.error
                    .get_or_insert(AppError::Internal(format!("a plan task failed: {e}")));
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
        if let Some(p) = &self.progress {
            let r = &self.report;
            p.done(
                r.plans_considered as u64,
                r.invoices_sent as u64,
                r.needs_attention_count as u64,
            );
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
        progress: opts.progress.clone(),
    };
    let concurrency = opts.concurrency.max(1);
    if let Some(p) = &opts.progress {
        let due = db.run_async(|c| repo::count_due_plans(c, now)).await?;
        p.total(u64::try_from(due).unwrap_or(0));
    }
    if let Some(g) = &gateway {
        // Every key and every object the pass creates names this database's installation.
        let installation = db.run_async(crate::db::installation::installation).await?;
        g.set_installation(&installation);
    }
    let mut tasks: JoinSet<CustomerRun> = JoinSet::new();
    let mut after = PlanId(0);
    let mut fleet = gateway.as_ref().map(|g| {
        g.begin_pass();
        Fleet {
            db: db.clone(),
            worker: opts.worker_id.clone(),
            wall: opts.wall.clone(),
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
        let exclude: Vec<CustomerId> = tally.in_flight.iter().copied().collect();
        let scope = ClaimScope {
            after_id: after,
            exclude_customers: &exclude,
            passed_over: Some(&tally.failed_customers),
            ..ClaimScope::default()
        };
        let claimed = db
            .run_async(|c| {
                c.transaction(|c| claims::claim_next_due(c, now, scope, opts.lease(now)))
            })
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
        report.invoices = sample_views(db, &sample, opts.dry_run)?;
    }
    Ok(report)
}

/// The report's invoices, in the order they were sent (in a dry run: what would be sent).
fn sample_views(
    db: &Db,
    sample: &[InvoiceId],
    dry_run: bool,
) -> Result<Vec<InvoiceView>, AppError> {
    let filter = InvoiceFilter {
        ids: Some(sample.to_vec()),
        ..InvoiceFilter::default()
    };
    let mut views: Vec<InvoiceView> = db
        .run(|c| repo::list_invoices(c, &filter))?
        .iter()
        .map(InvoiceView::from)
        .collect();
    views.sort_by_key(|v| sample.iter().position(|id| *id == v.id));
    if dry_run {
        // Nothing was sent: say what would be.
        for v in &mut views {
            v.status = WOULD_SEND;
            v.sent_at = None;
        }
    }
    Ok(views)
}
