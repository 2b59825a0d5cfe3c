//! Prices, discounts and minimums (docs/RULES.md §2), in integer cents with exact decimal
//! proration rounded half up, and fixed-price months rounded up.

use rust_decimal::{Decimal, RoundingStrategy};

use super::{BillingError, BillingSchedule, Customer, Tier};

/// List price per license per period (docs/RULES.md §2), in cents.
pub fn list_price(tier: Tier, schedule: BillingSchedule) -> Result<i64, BillingError> {
    use BillingSchedule::*;
    Ok(match (tier, schedule) {
        (Tier::CloudStandard, Annual) => 8000,
        (Tier::CloudStandard, Monthly) => 800,
        (Tier::CloudPlus, Annual) => 12000,
        (Tier::CloudPlus, Monthly) => 1200,
        (Tier::SelfHostedBasic, Annual) => 4200,
        (Tier::SelfHostedBasic, Monthly) => 350,
        (Tier::SelfHostedBusiness, Annual) => 8000,
        (Tier::SelfHostedBusiness, Monthly) => 800,
        (Tier::SelfHostedLegacy, _) => 0,
        (other, _) => return Err(BillingError::UnknownTier(other.code().to_string())),
    })
}

/// The customer's negotiated price for this tier and schedule, if any (0 means none).
pub fn discounted_price(customer: &Customer, tier: Tier, schedule: BillingSchedule) -> Option<i64> {
    if customer.required_plan_tier != Some(tier) {
        return None;
    }
    let price = match schedule {
        BillingSchedule::Annual => customer.annual_discounted_price,
        BillingSchedule::Monthly => customer.monthly_discounted_price,
    };
    (price != 0).then_some(price)
}

/// `price_per_license` frozen into a plan at creation (docs/RULES.md §2).
pub fn price_per_license(
    tier: Tier,
    schedule: BillingSchedule,
    customer: Option<&Customer>,
) -> Result<i64, BillingError> {
    let list = list_price(tier, schedule)?;
    Ok(customer
        .and_then(|c| discounted_price(c, tier, schedule))
        .unwrap_or(list))
}

/// The display-only discount percentage : `"85"`, `"12.50"`, or none at list price.
pub fn discount_display(list: i64, price: i64) -> Option<String> {
    if price == list || list == 0 {
        return None;
    }
    let percent = Decimal::from(list - price) / Decimal::from(list) * Decimal::from(100);
    if percent.fract().is_zero() {
        Some(percent.trunc().to_string())
    } else {
        Some(format!(
            "{:.2}",
            percent.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        ))
    }
}

/// `min_licenses_for_plan(tier)` (docs/RULES.md §2, "Minimum licenses").
pub fn min_licenses_for_plan(customer: &Customer, tier: Tier) -> i64 {
    if let Some(min) = customer.minimum_licenses.filter(|m| *m > 0) {
        return i64::from(min);
    }
    match tier {
        Tier::SelfHostedBasic if customer.flat_discounted_months > 0 => {
            (customer.flat_discount / 350 + 1).min(10)
        }
        Tier::SelfHostedBusiness => 25,
        Tier::CloudPlus => 10,
        _ => 1,
    }
}

/// Billable licenses for a seat count (docs/RULES.md §2).
pub fn billable_licenses(customer: &Customer, tier: Tier, seat_count: i64) -> i64 {
    if customer.exempt_from_license_number_check {
        seat_count
    } else {
        seat_count.max(min_licenses_for_plan(customer, tier))
    }
}

/// The monthly amount of a fixed-price plan: `ceil(fixed_price / 12)` cents (docs/RULES.md §2, "Fixed prices").
pub fn fixed_price_monthly(fixed_price: i64) -> i64 {
    (fixed_price + 11).div_euclid(12)
}

/// The amount of one renewal of a fixed-price plan (docs/RULES.md §2, "Fixed prices").
pub fn fixed_price_per_period(fixed_price: i64, schedule: BillingSchedule) -> i64 {
    match schedule {
        BillingSchedule::Annual => fixed_price,
        BillingSchedule::Monthly => fixed_price_monthly(fixed_price),
    }
}

/// A prorated unit price: `round_half_up(price × remaining / period)` in exact decimal
/// arithmetic, durations in whole seconds, rounded half up.
pub fn prorate(price: i64, remaining_secs: i64, period_secs: i64) -> Result<i64, BillingError> {
    if period_secs <= 0 || remaining_secs < 0 {
        return Err(BillingError::MissingData(format!(
            "cannot prorate over a period of {period_secs} s with {remaining_secs} s remaining"
        )));
    }
    let exact = Decimal::from(price) * Decimal::from(remaining_secs) / Decimal::from(period_secs);
    let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(rounded).map_err(|_| BillingError::AmountOverflow)
}

/// `$X.YY` for a positive amount of cents.
pub fn format_dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BillingSchedule::*;

    fn discounted(monthly: i64, annual: i64, tier: Tier) -> Customer {
        let mut c = Customer::new(1, "c", super::super::CustomerKind::Cloud);
        c.monthly_discounted_price = monthly;
        c.annual_discounted_price = annual;
        c.required_plan_tier = Some(tier);
        c
    }

    /// S02: price lookups, discounts only for the required tier.
    #[test]
    fn s02_price_lookup() {
        let std = Tier::CloudStandard;
        let plus = Tier::CloudPlus;
        let d = discounted(600, 6000, std);
        let plain = Customer::new(2, "p", super::super::CustomerKind::Cloud);
        assert_eq!(price_per_license(std, Annual, None).ok(), Some(8000));
        assert_eq!(price_per_license(std, Annual, Some(&d)).ok(), Some(6000));
        assert_eq!(
            price_per_license(std, Annual, Some(&plain)).ok(),
            Some(8000)
        );
        assert_eq!(price_per_license(plus, Annual, Some(&d)).ok(), Some(12000));
        assert_eq!(price_per_license(std, Monthly, None).ok(), Some(800));
        assert_eq!(price_per_license(std, Monthly, Some(&d)).ok(), Some(600));
        assert_eq!(price_per_license(plus, Monthly, Some(&d)).ok(), Some(1200));
        assert_eq!(
            price_per_license(std, Monthly, Some(&discounted(400, 4000, std))).ok(),
            Some(400)
        );
        assert_eq!(price_per_license(plus, Annual, None).ok(), Some(12000));
        assert_eq!(price_per_license(plus, Monthly, None).ok(), Some(1200));
        assert_eq!(
            price_per_license(plus, Monthly, Some(&discounted(600, 6000, plus))).ok(),
            Some(600)
        );
        assert_eq!(
            price_per_license(Tier::CloudEnterprise, Annual, None).map_err(|e| e.to_string()),
            Err("Unknown tier: 4".to_string())
        );
    }

    #[test]
    fn discount_strings() {
        assert_eq!(discount_display(8000, 1200).as_deref(), Some("85"));
        assert_eq!(discount_display(8000, 6000).as_deref(), Some("25"));
        assert_eq!(discount_display(8000, 4000).as_deref(), Some("50"));
        assert_eq!(discount_display(8000, 7000).as_deref(), Some("12.50"));
        assert_eq!(discount_display(8000, 8000), None);
    }

    /// Proration: Zulip's test vectors (S22, S26, S08).
    #[test]
    fn proration_vectors() {
        let day = 86_400;
        assert_eq!(prorate(8000, 266 * day, 366 * day).ok(), Some(5814));
        assert_eq!(prorate(8000, 331 * day, 365 * day).ok(), Some(7255));
        assert_eq!(prorate(8000, 356 * day, 366 * day).ok(), Some(7781));
        assert_eq!(prorate(8000, 59 * day, 365 * day).ok(), Some(1293));
        assert_eq!(prorate(1, 1, 2).ok(), Some(1)); // half rounds up
        assert!(prorate(8000, 1, 0).is_err());
    }

    /// The fixed-price monthly amount rounds up.
    #[test]
    fn fixed_monthly_rounds_up() {
        assert_eq!(fixed_price_monthly(120000), 10000);
        assert_eq!(fixed_price_monthly(100000), 8334);
        assert_eq!(fixed_price_monthly(170000), 14167);
        assert_eq!(fixed_price_monthly(343), 29);
        assert_eq!(fixed_price_per_period(170000, Annual), 170000);
    }

    #[test]
    fn minimum_licenses() {
        let mut c = Customer::new(1, "c", super::super::CustomerKind::SelfHosted);
        assert_eq!(min_licenses_for_plan(&c, Tier::SelfHostedBasic), 1);
        c.flat_discounted_months = 12;
        assert_eq!(min_licenses_for_plan(&c, Tier::SelfHostedBasic), 6);
        assert_eq!(min_licenses_for_plan(&c, Tier::SelfHostedBusiness), 25);
        assert_eq!(min_licenses_for_plan(&c, Tier::CloudPlus), 10);
        assert_eq!(min_licenses_for_plan(&c, Tier::CloudStandard), 1);
        c.minimum_licenses = Some(50);
        assert_eq!(min_licenses_for_plan(&c, Tier::CloudStandard), 50);
        assert_eq!(billable_licenses(&c, Tier::CloudStandard, 7), 50);
        c.exempt_from_license_number_check = true;
        assert_eq!(billable_licenses(&c, Tier::CloudStandard, 7), 7);
    }

    #[test]
    fn dollars() {
        assert_eq!(format_dollars(2000), "$20.00");
        assert_eq!(format_dollars(1234), "$12.34");
    }
}
