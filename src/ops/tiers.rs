//! An immediate tier upgrade (Zulip's `do_change_plan_to_new_tier`, `SWITCH_PLAN_TIER_NOW`).

use crate::db::claims;
use crate::db::repo::{self, NewPlan};
use crate::db::Conn;
use crate::domain::cycle::{is_upgrade, last_renewal, tier_change_credit};
use crate::domain::dates::trunc_seconds;
use crate::domain::prices::{
    discount_display, list_price, min_licenses_for_plan, price_per_license,
};
use crate::domain::{Customer, EventKind, InvoicingStatus, LedgerEntry, Plan, PlanStatus, Tier};
use crate::error::{refuse, AppError};

use super::{clamp_i32, current_after_cycle, event, plan, require, tier_arg, Ts};

/// Zulip's `do_change_plan_to_new_tier` (docs/RULES.md §4.5): the active plan ends at `now`
/// (its `end_date`), and the next pass first sends what it still owes — a renewal at a boundary
/// it had not billed yet, additions prorated up to the switch — then the new plan's first
/// invoice: the same plan on the higher tier, anchored at `now` (same schedule, billing mode and
/// license management), with the licenses of Zulip's `switch_plan_tier`, and the credit of
/// `get_amount_to_credit_for_plan_tier_change` as a line. Returns the new plan.
pub fn upgrade_tier(conn: &mut Conn, id: i64, tier: Tier, now: Ts) -> Result<Plan, AppError> {
    let tier = tier_arg("tier", tier)?;
    conn.joined(|c| {
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
            return Err(refuse("tier", format!("plan {} is already on {tier}", old.id)));
        }
        if !is_upgrade(old.tier, tier) {
            return Err(refuse("tier", format!(
                "{tier} is not an upgrade of {}: only a higher tier of the same kind can start now",
                old.tier
            )));
        }
        let switch = trunc_seconds(now);
        let entries = repo::ledger_of(c, old.id)?;
        let billed = match last_renewal(&entries) {
            Some(r) => repo::renewal_billed(c, r.id)?,
            None => None,
        };
        let credit = tier_change_credit(&old, &entries, switch, billed)?;
        let status = old.status;
        // Ended at the switch, but still due then: its final invoice bills what it owes.
        old.status = PlanStatus::Ended;
        old.end_date = Some(switch);
        old.next_invoice_date = Some(switch);
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
            billing_cycle_anchor: switch,
            next_invoice_date: Some(switch),
            end_date: None,
            invoicing_status: InvoicingStatus::InitialInvoiceToBeSent,
            created_at: now,
        };
        let new_id = repo::insert_plan(c, &new)?;
        let licenses = switched_licenses(&cust, tier, old.automanage_licenses, &last);
        repo::insert_renewal(c, new_id, switch, clamp_i32(licenses)?, Some(clamp_i32(licenses)?))?;
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
        claims::clear_retry(c, old.id)?;
        let mut e = event(EventKind::PlanStarted, &upgraded, now);
        e.new_status = Some(PlanStatus::Active);
        e.new_tier = Some(tier);
        repo::insert_event(c, &e, now)?;
        Ok(upgraded)
    })
}

/// The new plan's licenses (Zulip's `switch_plan_tier` with `get_billable_licenses_for_customer`):
/// an exempt customer keeps the old plan's licenses at next renewal; otherwise the seats in use
/// now (the last reported seat count; without one, the old plan's next-renewal count), at least
/// the new tier's minimum — and a manual plan at least its licenses at next renewal. Never the
/// old period's peak: a customer who shrank is not billed its old size for a new period.
fn switched_licenses(cust: &Customer, tier: Tier, automatic: bool, last: &LedgerEntry) -> i64 {
    let old_next = i64::from(last.licenses_at_next_renewal.unwrap_or(last.licenses));
    if cust.exempt_from_license_number_check {
        return old_next;
    }
    let seats = cust.seat_count.map_or(old_next, i64::from);
    let billable = seats.max(min_licenses_for_plan(cust, tier));
    if automatic {
        billable
    } else {
        billable.max(old_next)
    }
}
