//! An immediate tier upgrade (Zulip's `do_change_plan_to_new_tier`, `SWITCH_PLAN_TIER_NOW`).

use crate::db::repo::{self, NewPlan};
use crate::db::Conn;
use crate::domain::cycle::{early_termination_credit, is_upgrade};
use crate::domain::prices::{
    discount_display, list_price, min_licenses_for_plan, price_per_license,
};
use crate::domain::{EventKind, InvoicingStatus, Plan, PlanStatus};
use crate::error::{invalid, AppError};

use super::{clamp_i32, current_after_cycle, event, plan, require, tier_arg, Ts};

/// Ends an active plan at `now` and starts the same plan on a higher tier, anchored at `now`
/// (same schedule, billing mode and license management; the licenses carried over, at least the
/// new tier's minimum). The unused part of the old period is credited on the new plan's first
/// invoice, which the next pass sends at once (docs/RULES.md §4.5). Returns the new plan.
pub fn upgrade_tier(conn: &mut Conn, id: i64, tier: &str, now: Ts) -> Result<Plan, AppError> {
    let tier = tier_arg("--tier", tier)?;
    conn.transaction(|c| {
        let (mut old, cust, last) = current_after_cycle(c, id, now)?;
        require(
            old.status == PlanStatus::Active,
            &old,
            "only an active plan (not a free trial, without a scheduled change) can change tier now",
        )?;
        require(
            old.fixed_price.is_none(),
            &old,
            "a fixed-price plan cannot change tier",
        )?;
        if tier == old.tier {
            return Err(invalid(format!("plan {} is already on {tier}", old.id)));
        }
        if !is_upgrade(old.tier, tier) {
            return Err(invalid(format!(
                "{tier} is not an upgrade of {}: only a higher tier of the same kind can start now",
                old.tier
            )));
        }
        let entries = repo::ledger_of(c, old.id)?;
        let credit = early_termination_credit(&old, &entries, now)?;
        let status = old.status;
        old.status = PlanStatus::Ended;
        old.next_invoice_date = None;
        old.invoiced_through = entries.last().map(|e| e.id).or(old.invoiced_through);
        repo::save_plan(c, &old)?;

        let price = price_per_license(tier, old.billing_schedule, Some(&cust))?;
        let new = NewPlan {
            customer_id: old.customer_id,
            tier,
            status: PlanStatus::Active,
            billing_schedule: old.billing_schedule.code(),
            fixed_price: None,
            price_per_license: Some(price),
            discount: discount_display(list_price(tier, old.billing_schedule)?, price),
            automanage_licenses: old.automanage_licenses,
            charge_automatically: old.charge_automatically,
            billing_cycle_anchor: now,
            next_invoice_date: Some(now),
            end_date: None,
            invoicing_status: InvoicingStatus::InitialInvoiceToBeSent,
            created_at: now,
        };
        let new_id = repo::insert_plan(c, &new)?;
        let minimum = if cust.exempt_from_license_number_check {
            0
        } else {
            min_licenses_for_plan(&cust, tier)
        };
        let licenses = i64::from(last.licenses).max(minimum);
        let next = i64::from(last.licenses_at_next_renewal.unwrap_or(last.licenses)).max(minimum);
        repo::insert_renewal(c, new_id, now, clamp_i32(licenses)?, Some(clamp_i32(next)?))?;
        let mut upgraded = plan(c, new_id)?.plan;
        upgraded.credit = credit;
        repo::save_plan(c, &upgraded)?;

        let mut e = event(EventKind::PlanEnded, &old, now);
        e.old_status = Some(status);
        e.new_status = Some(PlanStatus::Ended);
        e.old_tier = Some(old.tier);
        e.new_tier = Some(tier);
        e.message = Some(format!(
            "upgraded now to plan {new_id}; credit of {credit} cents on its first invoice"
        ));
        repo::insert_event(c, &e, now)?;
        let mut e = event(EventKind::PlanStarted, &upgraded, now);
        e.new_status = Some(PlanStatus::Active);
        e.new_tier = Some(tier);
        repo::insert_event(c, &e, now)?;
        Ok(upgraded)
    })
}
