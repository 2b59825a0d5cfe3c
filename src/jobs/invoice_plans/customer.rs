//! One customer's task within a pass: its due plans one after the other, each under its own
//! claim; the fenced writes ([`Held`]); what becomes of each plan (done, waiting, failed) and
//! the release of its claim.

use std::sync::Arc;

use chrono::Duration;
use tracing::{info, info_span, warn, Instrument};

use crate::billing::{self, invoice_step, Checks, Step};
use crate::db::claims::{self, ClaimScope, Release};
use crate::db::repo;
use crate::db::Db;
use crate::domain::{CustomerId, InvoiceId, PlanId, Ts};
use crate::error::AppError;
use crate::stripe::PaymentGateway;

use super::fence::{release, Held};
use super::send::emit;
use super::{PassOptions, MAX_CATCH_UP_CYCLES};

/// What became of one claimed plan.
pub(super) enum Outcome {
    Done,
    /// Needs a person (stale usage data, a blocked renewal, a Stripe refusal). `true`: an error
    /// stopped this customer for the rest of the pass.
    Attention(String, bool),
    /// Failed; retried by a later pass.
    Failed(String),
    /// Another worker took the plan over after this worker's lease expired.
    LeftToOther,
}

pub(super) struct PlanRun {
    pub(super) plan_id: PlanId,
    pub(super) emitted: Emitted,
    pub(super) outcome: Outcome,
}

/// The invoices a plan sent in this pass (ids in order) and their lines.
#[derive(Default)]
pub(super) struct Emitted {
    pub(super) ids: Vec<InvoiceId>,
    pub(super) lines: usize,
}

/// What one customer's task did; `error` is an infrastructure failure (the database went
/// away) that ends the pass.
pub(super) struct CustomerRun {
    pub(super) customer_id: CustomerId,
    pub(super) plans: Vec<PlanRun>,
    pub(super) error: Option<AppError>,
}

/// Invoices one customer: the claimed plan, then the customer's other due plans one after the
/// other (a plan created by a switch or a successor joins here, in the same pass).
pub(super) async fn customer_task<G: PaymentGateway + 'static>(
    db: Db,
    gateway: Option<Arc<G>>,
    now: Ts,
    opts: PassOptions,
    first: claims::Claim,
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
        let span = info_span!("plan", plan.id = plan_id.0, customer.id = customer_id.0);
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
        let done: Vec<PlanId> = run.plans.iter().map(|p| p.plan_id).collect();
        let scope = ClaimScope {
            customer: Some(customer_id),
            exclude_plans: &done,
            ..ClaimScope::default()
        };
        let next = db
            .run_async(|c| {
                c.transaction(|c| claims::claim_next_due(c, now, scope, opts.lease(now)))
            })
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
                .read(|c| billing::plan(c, held.claim.plan_id.0))
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

/// Invoices a claimed plan: finishes unsent invoices, then the catch-up loop. Emitted invoice
/// ids are pushed to `emitted` as they are sent (so a later failure does not hide them).
/// `Ok(Some(reason))`: invoicing waits for someone (stale usage data).
async fn invoice_claimed_plan<G: PaymentGateway>(
    held: &Held<'_>,
    gateway: Option<&G>,
    emitted: &mut Emitted,
) -> Result<Option<String>, AppError> {
    let plan_id = held.claim.plan_id.0;
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
                let plan = held.read(|c| billing::plan(c, plan_id)).await?.plan;
                if let Some(next) = plan.next_invoice_date.filter(|d| *d <= now) {
                    return Ok(Some(format!(
                        "plan {plan_id} is more than {MAX_CATCH_UP_CYCLES} billing cycles behind (next invoice date {}): this pass stopped after {MAX_CATCH_UP_CYCLES}; check --now, or catch up with `backfill` in steps",
                        next.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    )));
                }
            }
            let checks = if cycles == 0 {
                Checks::FirstDueDate
            } else {
                Checks::LaterDueDate
            };
            let step = match held.write(|c| invoice_step(c, plan_id, now, checks)).await {
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
