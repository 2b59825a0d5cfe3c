//! The support knobs of a customer, with the guards of Zulip's support actions
//! (`update_customer_minimum_licenses`, `set_required_plan_tier`, the license-check exemption).
//! Each is one transaction; a refusal writes nothing.

use crate::db::customer_settings as settings;
use crate::db::repo;
use crate::db::Conn;
use crate::domain::{Customer, CustomerKind, Tier};
use crate::error::{invalid, refuse, AppError};

use super::{customer, licenses_arg, tier_arg};

/// A customer's minimum licenses (`None`: the tier's own minimum). Zulip sets it only for a
/// customer with a discount and no live plan (a complimentary plan without a scheduled
/// successor aside): it applies to the plan the customer buys next.
pub fn set_minimum_licenses(
    conn: &mut Conn,
    id: i64,
    count: Option<i64>,
) -> Result<Customer, AppError> {
    let minimum = match count {
        Some(n) if n <= 0 => {
            return Err(refuse("count", "must be a positive number (or none)"));
        }
        Some(n) => Some(licenses_arg("count", n)?),
        None => None,
    };
    conn.joined(|c| {
        let cust = customer(c, id)?;
        if cust.monthly_discounted_price == 0 && cust.annual_discounted_price == 0 {
            return Err(invalid(format!(
                "customer {id} has no discount: set one (customer set-discount) before a minimum number of licenses"
            )));
        }
        if let Some(live) = repo::live_plan_of(c, id)? {
            let p = live.plan;
            if !p.tier.is_complimentary() {
                return Err(invalid(format!(
                    "customer {id} already has a live plan ({}): minimum licenses apply to the next plan it buys",
                    p.id
                )));
            }
            if repo::successor_of(c, &p)?.is_some() {
                return Err(invalid(format!(
                    "customer {id} already has a plan scheduled to follow plan {}: cancel it first",
                    p.id
                )));
            }
        }
        settings::set_minimum_licenses(c, id, minimum)?;
        customer(c, id)
    })
}

/// The tier a customer's discounted prices belong to (`None` removes it, only once the
/// discount is 0). Only a tier the customer can buy: Cloud Standard or Plus for a Cloud
/// customer, self-hosted Basic or Business for a self-hosted one.
pub fn set_required_plan_tier(
    conn: &mut Conn,
    id: i64,
    tier: Option<Tier>,
) -> Result<Customer, AppError> {
    let tier = tier.map(|t| tier_arg("tier", t)).transpose()?;
    conn.joined(|c| {
        let cust = customer(c, id)?;
        match tier {
            Some(t) if !billable_for(cust.kind, t) => {
                return Err(refuse("tier", format!(
                    "{t} is not a tier a {} customer can buy (cloud: cloud_standard, cloud_plus; self-hosted: self_hosted_basic, self_hosted_business)",
                    cust.kind.name()
                )));
            }
            None if cust.monthly_discounted_price != 0 || cust.annual_discounted_price != 0 => {
                return Err(invalid(format!(
                    "customer {id} has a discount: set both prices to 0 (customer set-discount) before removing the required plan tier"
                )));
            }
            _ => {}
        }
        settings::set_required_plan_tier(c, id, tier.map(Tier::code))?;
        customer(c, id)
    })
}

/// Whether licenses may be set below the seats in use (and the minimum) for this customer.
pub fn set_exempt(conn: &mut Conn, id: i64, exempt: bool) -> Result<Customer, AppError> {
    conn.joined(|c| {
        customer(c, id)?;
        settings::set_exempt(c, id, exempt)?;
        customer(c, id)
    })
}

/// Zulip's `check_plan_tier_is_billable`: the tiers a customer of this kind can buy.
fn billable_for(kind: CustomerKind, tier: Tier) -> bool {
    match kind {
        CustomerKind::Cloud => matches!(tier, Tier::CloudStandard | Tier::CloudPlus),
        CustomerKind::SelfHosted => {
            matches!(tier, Tier::SelfHostedBasic | Tier::SelfHostedBusiness)
        }
    }
}

/// Lets a plan that needs attention, or waits to retry an error, be invoiced by the next pass:
/// its parking reason and retry time are cleared (an operator fixed the cause). Its error count
/// stays until a pass succeeds.
pub fn retry_plan(conn: &mut Conn, id: i64) -> Result<(), AppError> {
    let record = super::plan(conn, id)?;
    if record.plan.needs_attention.is_none() && record.next_retry_at.is_none() {
        return Err(invalid(format!(
            "plan {id} neither needs attention nor waits to retry: there is nothing to retry"
        )));
    }
    crate::db::claims::clear_attention(conn, id)?;
    Ok(())
}
