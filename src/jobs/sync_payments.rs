//! `sync-payments`: Stripe's invoice events read back from its list of events (it keeps 30
//! days) and applied by the same code as the webhooks, for a deployment without a public
//! webhook URL or one whose endpoint was down. Events already applied (by a webhook or an
//! earlier sync) are recognized by their id and change nothing.

use serde::Serialize;

use crate::billing::payments::{apply_invoice_event, Outcome, SYNC_ACTOR};
use crate::db::payments;
use crate::db::Db;
use crate::domain::Ts;
use crate::error::AppError;
use crate::stripe::client::StripeGateway;

/// A run reads again the events created this long before where the last one stopped: Stripe's
/// creation times have whole seconds, and an event can become visible in the list a little
/// after its creation time.
pub const OVERLAP_SECONDS: i64 = 300;
/// Without a cursor or `--since`, a first run reads what Stripe still keeps.
pub const FIRST_RUN_DAYS: i64 = 30;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// The events read were created at or after this instant.
    pub since: Option<Ts>,
    pub events: usize,
    pub applied: usize,
    pub unchanged: usize,
    pub duplicate: usize,
    pub ignored: usize,
    /// Events about invoices of another installation on the same Stripe account.
    pub foreign: usize,
    /// The newest event's creation time: where the next run starts (less the overlap).
    pub synced_through: Option<Ts>,
}

pub async fn sync_payments(
    db: &Db,
    gateway: &StripeGateway,
    since: Option<Ts>,
    now: Ts,
) -> Result<SyncReport, AppError> {
    let stored = db.run_async(payments::synced_through).await?;
    let from = match (since, stored) {
        (Some(t), _) => t.timestamp(),
        (None, Some(at)) => at - OVERLAP_SECONDS,
        (None, None) => (now - chrono::Duration::days(FIRST_RUN_DAYS)).timestamp(),
    };
    let events = gateway.invoice_events_since(from).await?;
    let mut report = SyncReport {
        since: chrono::DateTime::from_timestamp(from, 0),
        events: events.len(),
        ..SyncReport::default()
    };
    let mut newest: Option<Ts> = None;
    for e in &events {
        let outcome = db
            .run_async(|c| apply_invoice_event(c, e, now, SYNC_ACTOR))
            .await?;
        match outcome {
            Outcome::Applied => report.applied += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Duplicate => report.duplicate += 1,
            Outcome::Ignored => report.ignored += 1,
            Outcome::Foreign => report.foreign += 1,
        }
        newest = newest.max(Some(e.created));
    }
    if let Some(n) = newest {
        db.run_async(|c| payments::set_synced_through(c, n.timestamp(), now))
            .await?;
    }
    report.synced_through = newest.or(stored.and_then(|s| chrono::DateTime::from_timestamp(s, 0)));
    Ok(report)
}
