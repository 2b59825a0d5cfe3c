//! Billing dates (docs/RULES.md §3): month arithmetic with Zulip's fixed month-length table, cycle boundaries
//! and the next invoice date. Boundaries are always computed from the original anchor.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use super::{BillingError, BillingSchedule};

/// Zulip's `MAX_DAY_FOR_MONTH`: February is 28 even in leap years.
const MAX_DAY_FOR_MONTH: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// `add_months(dt, n)`: add `n ≥ 0` months, keep the time of day, clamp the day to the table.
pub fn add_months(dt: DateTime<Utc>, months: i64) -> Result<DateTime<Utc>, BillingError> {
    if months < 0 {
        return Err(BillingError::Invalid(format!(
            "add_months: negative month count {months}"
        )));
    }
    let total = i64::from(dt.month0()) + months;
    let year = i64::from(dt.year()) + total / 12;
    let month0 = (total % 12) as usize; // 0..=11
    let day = dt.day().min(MAX_DAY_FOR_MONTH[month0]);
    let year = i32::try_from(year).map_err(|_| BillingError::DateOutOfRange)?;
    NaiveDate::from_ymd_opt(year, month0 as u32 + 1, day)
        .map(|d| d.and_time(dt.time()).and_utc())
        .ok_or(BillingError::DateOutOfRange)
}

/// Truncate to whole seconds (anchors are stored as Stripe keeps them).
pub fn trunc_seconds(dt: DateTime<Utc>) -> DateTime<Utc> {
    dt.with_nanosecond(0).unwrap_or(dt)
}

pub fn months_per_period(schedule: BillingSchedule) -> i64 {
    match schedule {
        BillingSchedule::Annual => 12,
        BillingSchedule::Monthly => 1,
    }
}

/// A lower bound for k such that `add_months(anchor, k·step) ≤ t`, to skip the long walk from
/// the anchor for plans that are decades old. It never overshoots (it stays one period behind).
fn periods_before(anchor: DateTime<Utc>, t: DateTime<Utc>, step: i64) -> i64 {
    let months = (i64::from(t.year()) - i64::from(anchor.year())) * 12 + i64::from(t.month0())
        - i64::from(anchor.month0());
    (months / step - 1).max(0)
}

/// The first `add_months(anchor, k·step)`, k ≥ 0, strictly after `t`.
pub fn first_boundary_after(
    anchor: DateTime<Utc>,
    step: i64,
    t: DateTime<Utc>,
) -> Result<DateTime<Utc>, BillingError> {
    if t < anchor {
        return Ok(anchor);
    }
    let mut k = periods_before(anchor, t, step);
    loop {
        let candidate = add_months(anchor, k * step)?;
        if candidate > t {
            return Ok(candidate);
        }
        k += 1;
    }
}

/// `start_of_next_billing_cycle(plan, t)` (docs/RULES.md §3).
pub fn start_of_next_billing_cycle(
    anchor: DateTime<Utc>,
    schedule: BillingSchedule,
    t: DateTime<Utc>,
) -> Result<DateTime<Utc>, BillingError> {
    first_boundary_after(anchor, months_per_period(schedule), t)
}

/// `get_plan_renewal_or_end_date(plan, t)` (docs/RULES.md §3): the period end of a line starting at `t`.
pub fn renewal_or_end_date(
    anchor: DateTime<Utc>,
    schedule: BillingSchedule,
    end_date: Option<DateTime<Utc>>,
    t: DateTime<Utc>,
) -> Result<DateTime<Utc>, BillingError> {
    let next = start_of_next_billing_cycle(anchor, schedule, t)?;
    Ok(match end_date {
        Some(end) if end < next => end,
        _ => next,
    })
}

/// `next_invoice_date(plan)` (docs/RULES.md §3) for a plan that is not ended: the first monthly step from
/// the anchor strictly after the plan's current `next_invoice_date`, for every schedule.
pub fn next_invoice_date_after(
    anchor: DateTime<Utc>,
    current: DateTime<Utc>,
) -> Result<DateTime<Utc>, BillingError> {
    // k starts at 1: the anchor itself is never the *next* invoice date.
    let first = add_months(anchor, 1)?;
    if first > current {
        return Ok(first);
    }
    first_boundary_after(anchor, 1, current)
}

/// `next_month(anchor, dt)` (docs/RULES.md §3): the boundary 20–40 days after `dt`.
pub fn next_month(anchor: DateTime<Utc>, dt: DateTime<Utc>) -> Result<DateTime<Utc>, BillingError> {
    let days = (dt - anchor).num_days();
    let estimate = ((days as f64) * 12.0 / 365.0).round() as i64; // an estimate only, never money
    for k in (estimate - 1).max(0)..=estimate + 1 {
        let candidate = add_months(anchor, k)?;
        let gap = candidate - dt;
        if gap > chrono::Duration::days(20) && gap < chrono::Duration::days(40) {
            return Ok(candidate);
        }
    }
    Err(BillingError::Invalid(format!(
        "next_month: no boundary of {anchor} follows {dt}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 1, 2, 3)
            .single()
            .unwrap_or_default()
    }

    /// S01: month-end clamping, no drift, February 28 in leap years.
    #[test]
    fn s01_add_months_clamps_to_the_fixed_table() {
        let anchor = at(2019, 12, 31);
        let expected = [
            at(2019, 12, 31),
            at(2020, 1, 31),
            at(2020, 2, 28),
            at(2020, 3, 31),
            at(2020, 4, 30),
            at(2020, 5, 31),
            at(2020, 6, 30),
            at(2020, 7, 31),
            at(2020, 8, 31),
            at(2020, 9, 30),
            at(2020, 10, 31),
            at(2020, 11, 30),
            at(2020, 12, 31),
            at(2021, 1, 31),
            at(2021, 2, 28),
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(add_months(anchor, i as i64).ok(), Some(*want), "i = {i}");
        }
        assert!(add_months(anchor, -1).is_err());
        for i in 0..expected.len() - 1 {
            assert_eq!(next_month(anchor, expected[i]).ok(), Some(expected[i + 1]));
        }
        // Also a century later.
        let later = |d: DateTime<Utc>| add_months(d, 1200).unwrap_or_default();
        for i in 0..expected.len() - 1 {
            assert_eq!(
                next_month(later(anchor), later(expected[i])).ok(),
                Some(later(expected[i + 1]))
            );
        }
    }

    #[test]
    fn leap_day_anchor_gives_feb_28() {
        let anchor = at(2020, 2, 29);
        assert_eq!(add_months(anchor, 12).ok(), Some(at(2021, 2, 28)));
        assert_eq!(add_months(anchor, 1).ok(), Some(at(2020, 3, 29)));
    }

    #[test]
    fn next_cycle_is_strictly_after() {
        let anchor = at(2012, 1, 2);
        let s = BillingSchedule::Annual;
        assert_eq!(
            start_of_next_billing_cycle(anchor, s, anchor).ok(),
            Some(at(2013, 1, 2))
        );
        assert_eq!(
            start_of_next_billing_cycle(anchor, s, at(2013, 1, 2)).ok(),
            Some(at(2014, 1, 2))
        );
        assert_eq!(
            start_of_next_billing_cycle(anchor, s, at(2011, 5, 5)).ok(),
            Some(anchor)
        );
        let m = BillingSchedule::Monthly;
        assert_eq!(
            start_of_next_billing_cycle(anchor, m, at(2012, 3, 1)).ok(),
            Some(at(2012, 3, 2))
        );
    }

    /// S03: the line period end is capped by end_date.
    #[test]
    fn s03_renewal_or_end_date() {
        let a = at(2012, 1, 2);
        let m = BillingSchedule::Monthly;
        let next = add_months(a, 1).unwrap_or_default();
        assert_eq!(renewal_or_end_date(a, m, None, a).ok(), Some(next));
        let end = next - chrono::Duration::days(2);
        assert_eq!(renewal_or_end_date(a, m, Some(end), a).ok(), Some(end));
    }

    /// S25: next_invoice_date steps monthly from the anchor.
    #[test]
    fn s25_next_invoice_date_steps_monthly() {
        let t0 = at(2012, 1, 2);
        let nm = at(2012, 2, 2);
        assert_eq!(next_invoice_date_after(t0, nm).ok(), Some(at(2012, 3, 2)));
        assert_eq!(next_invoice_date_after(t0, t0).ok(), Some(nm));
    }
}
