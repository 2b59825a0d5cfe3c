//! `backfill`: a pass at each step from `--from` to `--to` inclusive, as a cron would have run
//! them. Progress goes to `PassOptions::progress` (a line on a terminal); Ctrl-C stops between steps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Duration;
use serde::Serialize;
use tracing::info;

use crate::db::Db;
use crate::domain::Ts;
use crate::error::{invalid, AppError};
use crate::jobs::invoice_plans::{keep_first, Attention, Failure};
use crate::jobs::{run_pass, PassOptions};
use crate::stripe::PaymentGateway;
use crate::views::InvoiceView;

#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub from: Ts,
    pub to: Ts,
    pub every: String,
    pub passes: usize,
    pub plans_considered: usize,
    pub plans_invoiced: usize,
    /// How many invoices the passes sent.
    pub invoices_sent: usize,
    /// The first invoices sent (at most 1000; the rest are counted).
    pub invoices: Vec<InvoiceView>,
    /// How many plans needed attention or failed over all passes, and the first 1000 of each.
    pub needs_attention_count: usize,
    pub needs_attention: Vec<Attention>,
    pub failures_count: usize,
    pub failures: Vec<Failure>,
    pub duration_ms: u64,
    /// Ctrl-C stopped the backfill before `to`.
    pub interrupted: bool,
    /// The last instant a pass ran at.
    pub last_pass_at: Option<Ts>,
    /// Stripe could not be reached: the backfill stopped at that pass.
    pub stripe_unreachable: bool,
}

impl BackfillReport {
    pub fn exit_code(&self) -> i32 {
        if self.needs_attention_count == 0 && self.failures_count == 0 && !self.stripe_unreachable {
            0
        } else {
            3
        }
    }
}

/// `1d`, `12h`, `30m`, `90s`, `1w`.
pub fn parse_every(text: &str) -> Result<Duration, AppError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| {
        invalid(format!(
            "invalid --every {text:?}: expected a number and a unit, e.g. 1d, 1h, 30m"
        ))
    })?;
    // The longest step is a century: beyond it no two steps fit in the accepted years.
    const CENTURY_SECONDS: i64 = 100 * 366 * 86_400;
    let seconds_per = match unit {
        "w" => 7 * 86_400,
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => {
            return Err(invalid(format!(
                "invalid --every {text:?}: the unit must be w, d, h, m or s"
            )))
        }
    };
    let step = n
        .checked_mul(seconds_per)
        .filter(|s| *s <= CENTURY_SECONDS)
        .map(Duration::seconds)
        .ok_or_else(|| invalid(format!("invalid --every {text:?}: at most 100 years")))?;
    if step <= Duration::zero() {
        return Err(invalid(format!(
            "invalid --every {text:?}: must be positive"
        )));
    }
    Ok(step)
}

pub async fn backfill<G: PaymentGateway + 'static>(
    db: &Db,
    gateway: Option<Arc<G>>,
    from: Ts,
    to: Ts,
    every: &str,
    opts: &PassOptions,
) -> Result<BackfillReport, AppError> {
    let step = parse_every(every)?;
    if to < from {
        return Err(invalid("--to must not be before --from"));
    }
    let steps =
        u64::try_from((to - from).num_seconds() / step.num_seconds().max(1) + 1).unwrap_or(1);
    if steps > 1_000_000 {
        return Err(invalid(format!(
            "{steps} passes is too many: use a larger --every"
        )));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    // The progress line counts passes; the passes themselves report nothing.
    let progress = opts.progress.clone();
    if let Some(p) = &progress {
        p.total(steps);
    }
    let pass_opts = PassOptions {
        progress: None,
        ..opts.clone()
    };
    let started = std::time::Instant::now();
    let mut report = BackfillReport {
        from,
        to,
        every: every.to_string(),
        passes: 0,
        plans_considered: 0,
        plans_invoiced: 0,
        invoices_sent: 0,
        invoices: vec![],
        needs_attention_count: 0,
        needs_attention: vec![],
        failures_count: 0,
        failures: vec![],
        duration_ms: 0,
        interrupted: false,
        last_pass_at: None,
        stripe_unreachable: false,
    };
    let mut t = from;
    while t <= to {
        if interrupted.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        let pass = run_pass(db, gateway.clone(), t, &pass_opts).await?;
        report.passes += 1;
        report.plans_considered += pass.plans_considered;
        report.plans_invoiced += pass.plans_invoiced;
        report.needs_attention_count += pass.needs_attention_count;
        report.failures_count += pass.failures_count;
        keep_first(&mut report.needs_attention, pass.needs_attention);
        keep_first(&mut report.failures, pass.failures);
        report.last_pass_at = Some(t);
        if pass.invoices_sent > 0 {
            info!(at = %t, invoices = pass.invoices_sent, "backfill step");
        }
        report.invoices_sent += pass.invoices_sent;
        if let Some(p) = &progress {
            p.done(
                report.passes as u64,
                report.invoices_sent as u64,
                report.needs_attention_count as u64,
            );
        }
        keep_first(&mut report.invoices, pass.invoices);
        if pass.stripe_unreachable {
            report.stripe_unreachable = true;
            break;
        }
        if pass.stopped {
            report.interrupted = true;
            break;
        }
        t += step;
    }
    ctrl_c.abort();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every() {
        assert_eq!(parse_every("1d").ok(), Some(Duration::days(1)));
        assert_eq!(parse_every("30m").ok(), Some(Duration::minutes(30)));
        assert!(parse_every("0h").is_err());
        assert!(parse_every("1y").is_err());
        assert!(parse_every("d").is_err());
        // Past the 64-bit limits of a duration: refused, never a panic.
        assert!(parse_every("9223372036854775807w").is_err());
        assert!(parse_every("99999999999999999999d").is_err());
        assert!(parse_every("5300w").is_err());
    }
}
