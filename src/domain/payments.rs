//! What a Stripe event says about one of our invoices, read from a webhook or from Stripe's
//! list of events: the same record either way, applied by the same code.

use super::Ts;
use super::{CustomerKind, PaymentStatus};

/// What a Stripe event says about an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceEvent {
    /// Stripe's event id (`evt_…`).
    pub id: String,
    /// Stripe's event type (`invoice.paid`, …).
    pub kind: String,
    /// When Stripe created the event.
    pub created: Ts,
    /// The invoice object's id (`in_…`).
    pub stripe_invoice_id: Option<String>,
    /// `metadata.plan_invoicer_invoice_id` of the invoice object.
    pub local_invoice_id: Option<i64>,
    pub attempt_count: Option<i32>,
    pub hosted_invoice_url: Option<String>,
}

/// Zulip's policy for small customers behind on payments (docs/RULES.md, "Payments"): how many
/// newest invoices must all be unpaid, and the seat count from which a person decides instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverduePolicy {
    pub invoices: usize,
    pub seats: i64,
}

impl Default for OverduePolicy {
    fn default() -> Self {
        OverduePolicy {
            invoices: 2,
            seats: 5,
        }
    }
}

/// What the policy looks at for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueFacts {
    pub kind: CustomerKind,
    pub has_stripe_customer: bool,
    /// The live plan and the seats in use on it.
    pub live_plan: Option<(i64, i64)>,
    /// The payment status of the customer's invoices sent to Stripe, newest first (`None`:
    /// nothing heard yet).
    pub newest: Vec<Option<PaymentStatus>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverdueDecision {
    Nothing,
    /// No live plan and the newest invoice unpaid: void the open invoices.
    VoidOpenInvoices,
    /// A small plan whose newest invoices are all unpaid: end it now (nothing more invoiced)
    /// and void the open invoices.
    EndPlanAndVoid {
        plan_id: i64,
    },
    /// A plan with as many seats as the policy's bound or more: a person decides.
    LeaveToAPerson {
        plan_id: i64,
        seats: i64,
    },
}

/// Open and uncollectible invoices are unpaid; paid and void ones are not, and neither is an
/// invoice whose payment nobody has heard of yet.
fn unpaid(s: &Option<PaymentStatus>) -> bool {
    s.is_some_and(PaymentStatus::is_unpaid)
}

pub fn overdue_decision(f: &OverdueFacts, policy: &OverduePolicy) -> OverdueDecision {
    if f.kind != CustomerKind::Cloud || !f.has_stripe_customer {
        return OverdueDecision::Nothing;
    }
    match f.live_plan {
        Some((plan_id, seats)) => {
            let n = policy.invoices.max(1);
            if f.newest.len() < n || !f.newest.iter().take(n).all(unpaid) {
                OverdueDecision::Nothing
            } else if seats < policy.seats {
                OverdueDecision::EndPlanAndVoid { plan_id }
            } else {
                OverdueDecision::LeaveToAPerson { plan_id, seats }
            }
        }
        None if f.newest.first().is_some_and(unpaid) => OverdueDecision::VoidOpenInvoices,
        None => OverdueDecision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OverdueDecision::*;
    use PaymentStatus::*;

    fn facts(plan: Option<(i64, i64)>, newest: &[PaymentStatus]) -> OverdueFacts {
        OverdueFacts {
            kind: CustomerKind::Cloud,
            has_stripe_customer: true,
            live_plan: plan,
            newest: newest.iter().map(|s| Some(*s)).collect(),
        }
    }

    /// Zulip's table of cases (its test_downgrade_small_realms_behind_on_payments_as_needed).
    #[test]
    fn zulips_table() {
        let p = OverduePolicy::default();
        let no_stripe = OverdueFacts {
            has_stripe_customer: false,
            ..facts(None, &[Open])
        };
        assert_eq!(overdue_decision(&no_stripe, &p), Nothing, "no Stripe id");
        assert_eq!(
            overdue_decision(&facts(None, &[]), &p),
            Nothing,
            "no plan, no invoices"
        );
        assert_eq!(
            overdue_decision(&facts(None, &[Open]), &p),
            VoidOpenInvoices,
            "no plan, one open invoice"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[]), &p),
            Nothing,
            "a plan, no invoices"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Open]), &p),
            Nothing,
            "one open invoice"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Open, Open]), &p),
            EndPlanAndVoid { plan_id: 1 },
            "two open invoices, 3 seats"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Paid, Paid]), &p),
            Nothing,
            "two paid invoices"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 20)), &[Open, Open]), &p),
            LeaveToAPerson {
                plan_id: 1,
                seats: 20
            },
            "two open invoices, 20 seats"
        );
        let self_hosted = OverdueFacts {
            kind: CustomerKind::SelfHosted,
            ..facts(Some((1, 3)), &[Open, Open])
        };
        assert_eq!(overdue_decision(&self_hosted, &p), Nothing, "self-hosted");
    }

    #[test]
    fn only_the_newest_invoices_count_and_unknown_is_not_unpaid() {
        let p = OverduePolicy::default();
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Paid, Open, Open]), &p),
            Nothing
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Open, Uncollectible, Paid]), &p),
            EndPlanAndVoid { plan_id: 1 }
        );
        let unknown = OverdueFacts {
            newest: vec![None, Some(Open)],
            ..facts(Some((1, 3)), &[])
        };
        assert_eq!(overdue_decision(&unknown, &p), Nothing);
        assert_eq!(overdue_decision(&facts(None, &[Paid, Open]), &p), Nothing);
        let three = OverduePolicy {
            invoices: 3,
            seats: 5,
        };
        assert_eq!(
            overdue_decision(&facts(Some((1, 3)), &[Open, Open]), &three),
            Nothing
        );
    }
}
