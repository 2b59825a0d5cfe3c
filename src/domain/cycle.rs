//! Plan parameters at creation (docs/RULES.md §3), end-of-cycle transitions (§4.1), renewal
//! validation (§2) and the self-hosted freshness check (§4). Pure: every function gets `t` passed in
//! and returns a decision that an adapter applies.

use chrono::Duration;

use super::dates::{add_months, months_per_period, start_of_next_billing_cycle, trunc_seconds};
use super::model::Ts;
use super::prices::{min_licenses_for_plan, price_per_license};
use super::{
    BillingError, BillingSchedule, Customer, CustomerKind, LedgerEntry, Plan, PlanStatus, Tier,
};

/// Values set when a plan is created (`compute_plan_parameters`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanParameters {
    pub billing_cycle_anchor: Ts,
    pub next_invoice_date: Ts,
    pub period_end: Ts,
    pub price_per_license: i64,
}

pub fn plan_parameters(
    tier: Tier,
    schedule: BillingSchedule,
    customer: Option<&Customer>,
    anchor: Ts,
    free_trial_days: Option<u32>,
) -> Result<PlanParameters, BillingError> {
    let anchor = trunc_seconds(anchor);
    let price = price_per_license(tier, schedule, customer)?;
    let (period_end, next_invoice_date) = match free_trial_days.filter(|d| *d > 0) {
        Some(days) => {
            let end = anchor
                .checked_add_signed(Duration::days(i64::from(days)))
                .ok_or(BillingError::DateOutOfRange)?;
            (end, end)
        }
        None => (
            add_months(anchor, months_per_period(schedule))?,
            add_months(anchor, 1)?,
        ),
    };
    Ok(PlanParameters {
        billing_cycle_anchor: anchor,
        next_invoice_date,
        period_end,
        price_per_license: price,
    })
}

/// What the end of a cycle does to a plan at `t` (one step; the catch-up loop calls it again).
#[derive(Debug, Clone, PartialEq)]
pub enum EndOfCycle {
    /// The cycle has not ended, or the plan has no ledger yet.
    Nothing,
    /// The plan becomes ENDED at `at`. With `close_ledger` (downgrade at the end of a free trial)
    /// `invoiced_through` moves to `newest_entry` and `next_invoice_date` is cleared; otherwise
    /// both stay, so additions of the last period are still billed.
    Downgrade {
        at: Ts,
        close_ledger: bool,
        newest_entry: Option<i64>,
    },
    /// A renewal ledger entry `(renewal, at, licenses, licenses)`.
    Renew { at: Ts, licenses: i32 },
    /// A card-billed free trial ends: `invoiced_through = last`, anchor and renewal at `at`, ACTIVE.
    EndTrial {
        at: Ts,
        licenses: i32,
        invoiced_through: i64,
    },
    /// The plan ends; a new plan on `schedule` starts at `at` with a renewal entry.
    SwitchSchedule {
        at: Ts,
        schedule: BillingSchedule,
        licenses: i32,
    },
    /// The plan ends; its never-started successor becomes ACTIVE with a renewal entry at `at`.
    StartSuccessor { at: Ts, licenses: i32 },
}

/// Newest entry (by id) with `event_time ≤ t`.
pub fn last_entry_at(entries: &[LedgerEntry], t: Ts) -> Option<&LedgerEntry> {
    entries
        .iter()
        .filter(|e| e.event_time <= t)
        .max_by_key(|e| e.id)
}

/// Newest renewal entry (by id), whatever its time.
pub fn last_renewal(entries: &[LedgerEntry]) -> Option<&LedgerEntry> {
    entries.iter().filter(|e| e.is_renewal).max_by_key(|e| e.id)
}

/// `get_next_billing_cycle_for_plan` (docs/RULES.md §3).
pub fn next_billing_cycle(
    plan: &Plan,
    entries: &[LedgerEntry],
) -> Result<Option<Ts>, BillingError> {
    let next = match plan.status {
        PlanStatus::FreeTrial
        | PlanStatus::DowngradeAtEndOfFreeTrial
        | PlanStatus::NeverStarted => plan.next_invoice_date,
        PlanStatus::SwitchPlanTierAtPlanEnd => plan.end_date,
        _ => match last_renewal(entries) {
            Some(r) => Some(start_of_next_billing_cycle(
                plan.billing_cycle_anchor,
                plan.billing_schedule,
                r.event_time,
            )?),
            None => None,
        },
    };
    Ok(match (next, plan.end_date) {
        (Some(n), Some(end)) if end < n => Some(end),
        (n, _) => n,
    })
}

/// `validate_plan_license_management` at renewal (docs/RULES.md §2): Cloud tiers only, skipped if exempt.
pub fn validate_renewal(
    customer: &Customer,
    tier: Tier,
    automanage: bool,
    licenses: i32,
) -> Result<(), BillingError> {
    if !matches!(tier, Tier::CloudStandard | Tier::CloudPlus)
        || customer.exempt_from_license_number_check
    {
        return Ok(());
    }
    let minimum = min_licenses_for_plan(customer, tier);
    if i64::from(licenses) < minimum {
        return Err(BillingError::BelowMinimumLicenses {
            licenses: i64::from(licenses),
            minimum,
        });
    }
    if !automanage {
        if let Some(seats) = customer.seat_count.filter(|s| *s > licenses) {
            return Err(BillingError::ManualPlanShort {
                licenses: i64::from(licenses),
                seats: i64::from(seats),
            });
        }
    }
    Ok(())
}

fn renewal_licenses(plan: &Plan, last: &LedgerEntry) -> Result<i32, BillingError> {
    last.licenses_at_next_renewal.ok_or_else(|| {
        BillingError::MissingData(format!(
            "ledger entry {} of plan {} has no licenses_at_next_renewal",
            last.id, plan.id
        ))
    })
}

/// `make_end_of_cycle_updates_if_needed(plan, t)` as a decision (docs/RULES.md §4.1).
pub fn end_of_cycle(
    plan: &Plan,
    customer: &Customer,
    entries: &[LedgerEntry],
    successor: Option<&Plan>,
    t: Ts,
) -> Result<EndOfCycle, BillingError> {
    let Some(last) = last_entry_at(entries, t) else {
        return Ok(EndOfCycle::Nothing);
    };
    let Some(nbc) = next_billing_cycle(plan, entries)? else {
        return Ok(EndOfCycle::Nothing);
    };
    if nbc > t {
        return Ok(EndOfCycle::Nothing);
    }
    let newest_entry = entries.iter().map(|e| e.id).max();
    Ok(match plan.status {
        PlanStatus::Active if plan.end_date == Some(nbc) => EndOfCycle::Downgrade {
            at: nbc,
            close_ledger: false,
            newest_entry,
        },
        PlanStatus::Active => {
            let licenses = renewal_licenses(plan, last)?;
            validate_renewal(customer, plan.tier, plan.automanage_licenses, licenses)?;
            EndOfCycle::Renew { at: nbc, licenses }
        }
        PlanStatus::FreeTrial if plan.charge_automatically => EndOfCycle::EndTrial {
            at: trunc_seconds(nbc),
            licenses: renewal_licenses(plan, last)?,
            invoiced_through: last.id,
        },
        PlanStatus::FreeTrial => {
            return Err(BillingError::MissingData(format!(
                "Invoice-billed free trial has no invoice: plan {}",
                plan.id
            )))
        }
        PlanStatus::SwitchPlanTierAtPlanEnd => {
            let next = successor.ok_or_else(|| {
                BillingError::MissingData(format!(
                    "plan {} is scheduled to switch at its end but has no never-started successor",
                    plan.id
                ))
            })?;
            let licenses = renewal_licenses(plan, last)?;
            validate_renewal(customer, next.tier, next.automanage_licenses, licenses)?;
            EndOfCycle::StartSuccessor { at: nbc, licenses }
        }
        PlanStatus::SwitchToAnnualAtEndOfCycle | PlanStatus::SwitchToMonthlyAtEndOfCycle => {
            if plan.fixed_price.is_some() {
                return Err(BillingError::Invalid(format!(
                    "plan {} has a fixed price and cannot switch schedule",
                    plan.id
                )));
            }
            let licenses = renewal_licenses(plan, last)?;
            validate_renewal(customer, plan.tier, plan.automanage_licenses, licenses)?;
            let schedule = if plan.status == PlanStatus::SwitchToAnnualAtEndOfCycle {
                BillingSchedule::Annual
            } else {
                BillingSchedule::Monthly
            };
            EndOfCycle::SwitchSchedule {
                at: nbc,
                schedule,
                licenses,
            }
        }
        PlanStatus::DowngradeAtEndOfFreeTrial => EndOfCycle::Downgrade {
            at: nbc,
            close_ledger: true,
            newest_entry,
        },
        PlanStatus::DowngradeAtEndOfCycle => EndOfCycle::Downgrade {
            at: nbc,
            close_ledger: false,
            newest_entry,
        },
        PlanStatus::SwitchPlanTierNow | PlanStatus::Ended | PlanStatus::NeverStarted => {
            EndOfCycle::Nothing
        }
    })
}

/// The self-hosted usage-data freshness check (docs/RULES.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Proceed,
    /// Fixed-price plans are billed anyway; a notice is written every time.
    ProceedWithNotice,
    /// Invoicing waits for fresh data; `notify` says whether to write the (once per period) notice.
    Skip {
        notify: bool,
    },
}

pub fn usage_freshness(plan: &Plan, customer: &Customer, due: Ts) -> Freshness {
    if customer.kind == CustomerKind::Cloud
        || (plan.tier.is_complimentary() && plan.status == PlanStatus::Active)
    {
        return Freshness::Proceed;
    }
    let last = customer.last_usage_report_at;
    if last.is_some_and(|l| due <= l) {
        return Freshness::Proceed;
    }
    if plan.fixed_price.is_some() {
        return Freshness::ProceedWithNotice;
    }
    let recent = last.is_some_and(|l| due - l < Duration::days(1));
    Freshness::Skip {
        notify: !plan.stale_audit_log_data_email_sent && !recent,
    }
}

/// Whether the "fixed-price plan ends soon" notice is due (docs/RULES.md §4, "Notices").
pub fn fixed_price_review_due(plan: &Plan) -> bool {
    match (plan.fixed_price, plan.end_date, plan.next_invoice_date) {
        (Some(_), Some(end), Some(next)) => {
            !plan.reminder_to_review_plan_email_sent && end - next <= Duration::days(62)
        }
        _ => false,
    }
}

/// Whether moving from `old` to `new` is a tier upgrade: the same family (Cloud or self-hosted),
/// a higher tier, and one with a price.
pub fn is_upgrade(old: Tier, new: Tier) -> bool {
    let self_hosted = |t: Tier| t.code() >= 100;
    self_hosted(old) == self_hosted(new) && new.code() > old.code() && new.is_paid()
}

/// Zulip's `get_amount_to_credit_for_plan_tier_change` (docs/RULES.md §4.5): the credit for the
/// unused part of the current period when a plan changes tier at `switch`. The newest renewal
/// entry's licenses × the price per license × the unused fraction of that renewal's period
/// (from the renewal to the next cycle boundary after `switch`), **rounded up** to the cent.
/// Licenses added during the period are not credited. Exact integer arithmetic on
/// microseconds, where Zulip divides floats.
///
/// `renewal_billed`: what the renewal's own invoice line billed (`None`: it was paid at
/// checkout, at the plan's price). The credit is never more than that part of it — Zulip's
/// amount, unless the price per license went up during the period (a discount removed), when
/// Zulip would credit money that was never charged.
pub fn tier_change_credit(
    plan: &Plan,
    entries: &[LedgerEntry],
    switch: Ts,
    renewal_billed: Option<i64>,
) -> Result<i64, BillingError> {
    let (Some(price), Some(renewal)) = (plan.price_per_license, last_renewal(entries)) else {
        return Ok(0);
    };
    let next =
        start_of_next_billing_cycle(plan.billing_cycle_anchor, plan.billing_schedule, switch)?;
    let micros = |d: chrono::TimeDelta| d.num_microseconds().ok_or(BillingError::DateOutOfRange);
    let period = micros(next - renewal.event_time)?;
    if period <= 0 {
        return Ok(0);
    }
    let unused = micros(next - switch)?.clamp(0, period);
    let amount = price
        .checked_mul(i64::from(renewal.licenses))
        .ok_or(BillingError::AmountOverflow)?;
    let amount = renewal_billed.map_or(amount, |billed| amount.min(billed.max(0)));
    let numerator = i128::from(amount) * i128::from(unused);
    let credit = (numerator + i128::from(period) - 1) / i128::from(period);
    i64::try_from(credit).map_err(|_| BillingError::AmountOverflow)
}
