//! What a pass reports: counts, and the first [`REPORT_SAMPLE`] invoices, plans that need
//! attention and failures (a pass over a million plans keeps a bounded report).

use serde::Serialize;

use crate::domain::{CustomerId, PlanId, Ts};
use crate::views::InvoiceView;

/// At most this many invoices are kept in a pass report (the rest are counted).
pub const REPORT_SAMPLE: usize = 1000;

/// Appends `more` to a report's sample until it holds [`REPORT_SAMPLE`] items.
pub fn keep_first<T>(sample: &mut Vec<T>, more: impl IntoIterator<Item = T>) {
    let room = REPORT_SAMPLE.saturating_sub(sample.len());
    sample.extend(more.into_iter().take(room));
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Attention {
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
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
    pub(super) fn new(now: Ts, dry_run: bool) -> PassReport {
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
                plan_id: PlanId(i),
                customer_id: CustomerId(i),
                error: "Stripe answered 402".into(),
                retryable: true,
            });
            r.note_attention(Attention {
                plan_id: PlanId(i),
                customer_id: CustomerId(i),
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
        assert_eq!(r.failures[0].plan_id, PlanId(0), "the first ones are kept");
        assert_eq!(r.exit_code(), 3);
    }
}
