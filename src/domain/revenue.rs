//! Recurring revenue as Zulip's support and activity pages estimate it
//! (`get_annual_recurring_revenue_for_support_data`): a live plan's annual revenue is its fixed
//! price as it is, or else its price per license (the discount is already in it) times the
//! licenses at the next renewal, twelve times for a monthly plan; a plan that renews with no
//! licenses (a downgrade is scheduled), an ended or never-started plan counts zero.
//! Monthly recurring revenue is the annual divided by twelve, rounded half up to the cent.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::{BillingSchedule, Plan, PlanStatus};

/// A plan's estimated annual recurring revenue, in cents (saturating at `i64::MAX`).
pub fn annual_recurring_revenue(plan: &Plan, licenses_at_next_renewal: Option<i32>) -> i64 {
    if !plan.status.is_live() {
        return 0;
    }
    if let Some(fixed) = plan.fixed_price {
        return fixed;
    }
    let renews_with = match plan.status {
        PlanStatus::DowngradeAtEndOfCycle | PlanStatus::DowngradeAtEndOfFreeTrial => None,
        _ => licenses_at_next_renewal,
    };
    let (Some(licenses), Some(price)) = (renews_with, plan.price_per_license) else {
        return 0;
    };
    let months = match plan.billing_schedule {
        BillingSchedule::Annual => 1,
        BillingSchedule::Monthly => 12,
    };
    let cents = i128::from(price) * i128::from(licenses) * months;
    i64::try_from(cents).unwrap_or(i64::MAX)
}

/// Monthly recurring revenue from annual: a twelfth, rounded half up to the cent.
pub fn monthly_from_annual(annual_cents: i64) -> i64 {
    (Decimal::from(annual_cents) / Decimal::from(12))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scenarios::plan_for_tests;

    #[test]
    fn per_license_plans_count_their_renewal() {
        let mut p = plan_for_tests();
        p.fixed_price = None;
        p.price_per_license = Some(667);
        p.billing_schedule = BillingSchedule::Monthly;
        p.status = PlanStatus::Active;
        // 13 licenses at $6.67 a month: $86.71 a month, $1,040.52 a year.
        assert_eq!(annual_recurring_revenue(&p, Some(13)), 104_052);
        p.billing_schedule = BillingSchedule::Annual;
        p.price_per_license = Some(8_000);
        assert_eq!(annual_recurring_revenue(&p, Some(13)), 104_000);
        assert_eq!(annual_recurring_revenue(&p, None), 0);
    }

    #[test]
    fn fixed_prices_count_as_they_are() {
        let mut p = plan_for_tests();
        p.fixed_price = Some(300_000);
        p.price_per_license = None;
        p.billing_schedule = BillingSchedule::Monthly;
        p.status = PlanStatus::Active;
        assert_eq!(annual_recurring_revenue(&p, Some(50)), 300_000);
        // Zulip returns the fixed price before it looks at a scheduled downgrade.
        p.status = PlanStatus::DowngradeAtEndOfCycle;
        assert_eq!(annual_recurring_revenue(&p, None), 300_000);
    }

    #[test]
    fn downgrades_and_dead_plans_count_zero() {
        let mut p = plan_for_tests();
        p.fixed_price = None;
        p.price_per_license = Some(8_000);
        for status in [
            PlanStatus::DowngradeAtEndOfCycle,
            PlanStatus::DowngradeAtEndOfFreeTrial,
            PlanStatus::Ended,
            PlanStatus::NeverStarted,
        ] {
            p.status = status;
            assert_eq!(annual_recurring_revenue(&p, Some(10)), 0, "{status:?}");
        }
    }

    #[test]
    fn monthly_is_a_rounded_twelfth() {
        assert_eq!(monthly_from_annual(104_052), 8_671);
        assert_eq!(monthly_from_annual(100), 8); // 8.33
        assert_eq!(monthly_from_annual(102), 9); // 8.5 rounds up
        assert_eq!(monthly_from_annual(0), 0);
    }

    #[test]
    fn huge_values_saturate() {
        let mut p = plan_for_tests();
        p.fixed_price = None;
        p.price_per_license = Some(i64::MAX);
        p.status = PlanStatus::Active;
        p.billing_schedule = BillingSchedule::Monthly;
        assert_eq!(annual_recurring_revenue(&p, Some(i32::MAX)), i64::MAX);
    }
}
