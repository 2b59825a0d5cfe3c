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
    /// `metadata.plan_invoicer_installation` of the invoice object: which database made it.
    pub installation: Option<String>,
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
    /// The customer's latest seat count (Zulip's `get_latest_seat_count`): the seats last
    /// reported, else the licenses of its newest plan.
    pub seats: i64,
    /// The live plan, if any.
    pub live_plan: Option<i64>,
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
    /// A customer with as many seats as the policy's bound or more, whom the policy would
    /// otherwise end or void: a person decides (with or without a live plan).
    LeaveToAPerson {
        plan_id: Option<i64>,
        seats: i64,
    },
}

/// Open and uncollectible invoices are unpaid; paid and void ones are not, and neither is an
/// invoice whose payment nobody has heard of yet.
fn unpaid(s: &Option<PaymentStatus>) -> bool {
    s.is_some_and(PaymentStatus::is_unpaid)
}

/// Zulip's `downgrade_small_realms_behind_on_payments_as_needed`, in its order: a customer at
/// or above the seat bound is never touched, with or without a live plan ("for larger realms,
/// we generally want to talk to the customer before downgrading or cancelling invoices");
/// then a live plan ends only when the newest `invoices` invoices are all unpaid; without a
/// live plan the open invoices are voided. What the policy leaves alone for its size is
/// reported as [`OverdueDecision::LeaveToAPerson`] when it would otherwise have acted.
pub fn overdue_decision(f: &OverdueFacts, policy: &OverduePolicy) -> OverdueDecision {
    if f.kind != CustomerKind::Cloud || !f.has_stripe_customer {
        return OverdueDecision::Nothing;
    }
    let small = match f.live_plan {
        Some(plan_id) => {
            let n = policy.invoices.max(1);
            if f.newest.len() < n || !f.newest.iter().take(n).all(unpaid) {
                OverdueDecision::Nothing
            } else {
                OverdueDecision::EndPlanAndVoid { plan_id }
            }
        }
        None if f.newest.first().is_some_and(unpaid) => OverdueDecision::VoidOpenInvoices,
        None => OverdueDecision::Nothing,
    };
    if f.seats >= policy.seats && small != OverdueDecision::Nothing {
        return OverdueDecision::LeaveToAPerson {
            plan_id: f.live_plan,
            seats: f.seats,
        };
    }
    small
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
            seats: plan.map_or(1, |p| p.1),
            live_plan: plan.map(|p| p.0),
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
                plan_id: Some(1),
                seats: 20
            },
            "two open invoices, 20 seats"
        );
        // The seat bound comes first: a former customer of 5 seats or more keeps its open
        // invoices (Zulip skips it before looking at plans or invoices).
        let former_large = OverdueFacts {
            seats: 5,
            ..facts(None, &[Open, Open])
        };
        assert_eq!(
            overdue_decision(&former_large, &p),
            LeaveToAPerson {
                plan_id: None,
                seats: 5
            },
            "no plan, open invoices, 5 seats"
        );
        let former_small = OverdueFacts {
            seats: 4,
            ..facts(None, &[Open])
        };
        assert_eq!(
            overdue_decision(&former_small, &p),
            VoidOpenInvoices,
            "no plan, 4 seats"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 5)), &[Open, Open]), &p),
            LeaveToAPerson {
                plan_id: Some(1),
                seats: 5
            },
            "exactly the bound"
        );
        assert_eq!(
            overdue_decision(&facts(Some((1, 20)), &[Paid, Open]), &p),
            Nothing,
            "a large customer that is not behind is not listed"
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
