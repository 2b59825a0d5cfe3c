//! `report revenue`: annual and monthly recurring revenue by tier as of now (the rule is in
//! [`crate::domain::revenue`]), the amounts billed and paid in each of the last twelve months,
//! and the plans by status. The console's revenue page and `GET /v1/reports/revenue` show the
//! same document.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, TimeZone, Utc};
use serde::Serialize;

use crate::db::repo::{self, PlanFilter};
use crate::db::{reports, Conn};
use crate::domain::revenue::{annual_recurring_revenue, monthly_from_annual};
use crate::domain::Ts;
use crate::error::AppError;

use super::render::{out, Output};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RevenueReport {
    pub as_of: Ts,
    /// Live plans by tier, with their estimated recurring revenue.
    pub tiers: Vec<TierRevenue>,
    pub arr_cents: i64,
    pub mrr_cents: i64,
    /// The last twelve calendar months (UTC), oldest first, the current month last.
    pub months: Vec<MonthAmounts>,
    /// Every plan, by status.
    pub plans_by_status: Vec<StatusCount>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TierRevenue {
    pub tier: &'static str,
    pub live_plans: i64,
    pub arr_cents: i64,
    pub mrr_cents: i64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MonthAmounts {
    /// `2026-11`.
    pub month: String,
    /// The totals of the invoices sent in the month.
    pub billed_cents: i64,
    /// The part of them Stripe reports paid.
    pub paid_cents: i64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusCount {
    pub status: &'static str,
    pub plans: i64,
}

/// The first instant of the month `back` months before `now`'s.
fn month_start(now: Ts, back: i32) -> Ts {
    let index = now.year() * 12 + now.month0() as i32 - back;
    let (y, m) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

pub fn revenue(c: &mut Conn, now: Ts) -> Result<RevenueReport, AppError> {
    let plans = repo::list_plans(c, &PlanFilter::default())?;
    let renewal: HashMap<i64, Option<i32>> = reports::renewal_licenses(c)?
        .into_iter()
        .map(|r| (r.plan_id, r.licenses_at_next_renewal))
        .collect();
    let mut tiers: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new();
    let mut statuses: BTreeMap<&'static str, i64> = BTreeMap::new();
    for r in &plans {
        let p = &r.plan;
        *statuses.entry(p.status.name()).or_default() += 1;
        if p.status.is_live() {
            let arr = annual_recurring_revenue(p, renewal.get(&p.id).copied().flatten());
            let t = tiers.entry(p.tier.name()).or_default();
            t.0 += 1;
            t.1 = t.1.saturating_add(arr);
        }
    }
    let first = month_start(now, 11);
    let mut months: Vec<MonthAmounts> = (0..12)
        .rev()
        .map(|back| MonthAmounts {
            month: month_start(now, back).format("%Y-%m").to_string(),
            billed_cents: 0,
            paid_cents: 0,
        })
        .collect();
    for (sent_at, total, payment) in reports::sent_since(c, first)? {
        let Some(sent_at) = sent_at.filter(|t| *t <= now) else {
            continue;
        };
        let key = sent_at.format("%Y-%m").to_string();
        if let Some(m) = months.iter_mut().find(|m| m.month == key) {
            m.billed_cents = m.billed_cents.saturating_add(total);
            if payment.as_deref() == Some("paid") {
                m.paid_cents = m.paid_cents.saturating_add(total);
            }
        }
    }
    let tiers: Vec<TierRevenue> = tiers
        .into_iter()
        .map(|(tier, (n, arr))| TierRevenue {
            tier,
            live_plans: n,
            arr_cents: arr,
            mrr_cents: monthly_from_annual(arr),
        })
        .collect();
    let arr = tiers
        .iter()
        .fold(0i64, |a, t| a.saturating_add(t.arr_cents));
    Ok(RevenueReport {
        as_of: now,
        arr_cents: arr,
        mrr_cents: monthly_from_annual(arr),
        tiers,
        months,
        plans_by_status: statuses
            .into_iter()
            .map(|(status, plans)| StatusCount { status, plans })
            .collect(),
    })
}

/// `report revenue`: the document, and a text table.
pub fn revenue_output(c: &mut Conn, now: Ts) -> Result<Output, AppError> {
    let r = revenue(c, now)?;
    let dollars = crate::domain::prices::format_dollars;
    let mut text = format!(
        "recurring revenue as of {}: ARR {}, MRR {}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dollars(r.arr_cents),
        dollars(r.mrr_cents)
    );
    for t in &r.tiers {
        text.push_str(&format!(
            "  {:<24} {:>6} live plans  ARR {:>14}  MRR {:>12}\n",
            t.tier,
            t.live_plans,
            dollars(t.arr_cents),
            dollars(t.mrr_cents)
        ));
    }
    text.push_str("month    billed          paid\n");
    for m in &r.months {
        text.push_str(&format!(
            "{}  {:>14}  {:>14}\n",
            m.month,
            dollars(m.billed_cents),
            dollars(m.paid_cents)
        ));
    }
    let statuses: Vec<String> = r
        .plans_by_status
        .iter()
        .map(|s| format!("{} {}", s.plans, s.status))
        .collect();
    text.push_str(&format!("plans: {}", statuses.join(", ")));
    out(&r, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_count_back_across_years() {
        let now = Utc
            .with_ymd_and_hms(2026, 2, 15, 12, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            month_start(now, 0).to_rfc3339(),
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(
            month_start(now, 2).to_rfc3339(),
            "2025-12-01T00:00:00+00:00"
        );
        assert_eq!(
            month_start(now, 11).to_rfc3339(),
            "2025-03-01T00:00:00+00:00"
        );
    }
}
