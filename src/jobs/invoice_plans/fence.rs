//! The claim fence of a pass (docs/ARCHITECTURE.md, "Several workers"): a worker writes
//! for a plan only in a transaction that first renews its lease on the plan, and releases the
//! plan with the invoicing status that says what is left. Every writer of the pass (the
//! customer task, the sender) goes through [`Held`]; none imports the other for it.

use tracing::warn;

use crate::billing;
use crate::db::claims::{self, Release};
use crate::db::repo;
use crate::db::{Conn, Db};
use crate::domain::{InvoicingStatus, PlanStatus, Ts};
use crate::error::AppError;

use super::PassOptions;

/// This worker's claim on one plan during a pass, and the clock its lease is renewed by.
pub(super) struct Held<'a> {
    pub(super) claim: claims::Claim,
    pub(super) opts: &'a PassOptions,
    pub(super) now: Ts,
    pub(super) db: &'a Db,
}

impl Held<'_> {
    /// Runs `f` in a transaction that first renews the lease, and only while this claim still
    /// holds the plan (fencing): a worker whose lease was taken over gets
    /// [`AppError::LeaseLost`] and writes nothing.
    pub(super) async fn write<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let lease_now = self.opts.lease_now(self.now);
        self.db
            .run_async(|conn| {
                conn.transaction(|c| {
                    if !claims::renew_claim(c, &self.claim, lease_now, self.opts.lease)? {
                        return Err(AppError::LeaseLost(self.claim.plan_id));
                    }
                    f(c)
                })
            })
            .await
    }

    /// A read outside any transaction.
    pub(super) async fn read<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        self.db.run_async(f).await
    }
}

/// Ends the claim. The invoicing status says what is left: an unsent invoice (STARTED), a first
/// period still to bill (INITIAL_INVOICE_TO_BE_SENT), or nothing (DONE). Returns false when
/// another worker holds the plan now (nothing is written).
pub(super) async fn release(held: &Held<'_>, outcome: Release<'_>) -> Result<bool, AppError> {
    let plan_id = held.claim.plan_id.0;
    let released = held
        .db
        .run_async(|conn| {
            conn.transaction(|c| {
                let p = billing::plan(c, plan_id)?.plan;
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
                Ok::<_, AppError>(claims::release_plan(c, &held.claim, status, outcome)?)
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
