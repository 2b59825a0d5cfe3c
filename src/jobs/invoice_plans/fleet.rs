//! The fleet of workers that share one Stripe account: each pass beats a heartbeat row, and
//! the gateway's request budget is split by the number of live workers.

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use tracing::warn;

use crate::clock::Clock;
use crate::db::workers;
use crate::db::Db;
use crate::stripe::PaymentGateway;

/// How often a pass tells the fleet it is alive (and re-reads the fleet's size).
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Workers that start together see each other after this pause (PostgreSQL only).
const FLEET_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
/// A worker not seen for this long no longer counts in the Stripe budget's split.
const HEARTBEAT_TTL_SECS: i64 = 15;

/// This worker among the fleet that shares one Stripe account: beats every few seconds and
/// gives the gateway its share of the budget.
pub(super) struct Fleet {
    pub(super) db: Db,
    pub(super) worker: String,
    pub(super) wall: Arc<dyn Clock>,
    pub(super) last: Option<Instant>,
    /// Whether the first share was taken after the settling pause.
    pub(super) settled: bool,
}

impl Fleet {
    /// Before the first plan goes to Stripe: workers started at the same moment (a CronJob
    /// with several replicas) wait briefly and count again, so that none of them starts with
    /// the whole budget.
    pub(super) async fn settle<G: PaymentGateway>(&mut self, gateway: &G) {
        if self.settled {
            return;
        }
        self.settled = true;
        tokio::time::sleep(FLEET_SETTLE).await;
        self.last = None;
        self.beat(gateway);
    }

    pub(super) fn beat<G: PaymentGateway>(&mut self, gateway: &G) {
        if self.last.is_some_and(|t| t.elapsed() < HEARTBEAT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        // Heartbeats follow the wall clock: they are about processes, not billing time.
        let wall = self.wall.now();
        let since = wall - Duration::seconds(HEARTBEAT_TTL_SECS);
        match self
            .db
            .run(|c| workers::heartbeat(c, &self.worker, wall, since))
        {
            Ok(workers) => gateway.set_workers(workers),
            Err(e) => warn!(error = %e, "heartbeat failed; the Stripe budget split is unchanged"),
        }
    }

    pub(super) fn leave(self) {
        if let Err(e) = self.db.run(|c| workers::leave(c, &self.worker)) {
            warn!(error = %e, "could not leave the fleet; the heartbeat row ages out");
        }
    }
}
