//! Customers: creation and the host's usage reports.

use crate::db::claims;
use crate::db::repo::{self, NewCustomer, NewEvent};
use crate::db::Conn;
use crate::domain::prices::{discount_display, list_price, price_per_license};
use crate::domain::{Customer, CustomerKind, EventKind, PlanStatus, Tier};
use crate::error::{conflict, invalid, refuse, AppError};

use super::{cents, customer, licenses_arg, text_arg, tier_arg, Ts};
use crate::domain::bounds;

#[derive(Debug, Clone, Default)]
pub struct CustomerInput {
    pub name: String,
    pub email: Option<String>,
    pub external_ref: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub kind: CustomerKind,
    pub monthly_discounted_price: Option<i64>,
    pub annual_discounted_price: Option<i64>,
    pub required_plan_tier: Option<Tier>,
    pub minimum_licenses: Option<i64>,
    pub exempt_from_license_number_check: bool,
}

pub fn create_customer(conn: &mut Conn, input: &CustomerInput, now: Ts) -> Result<i64, AppError> {
    let name = text_arg("name", &input.name, bounds::MAX_NAME_CHARS)?;
    let optional = |field: &'static str, v: &Option<String>| {
        v.as_deref()
            .map(|v| text_arg(field, v, bounds::MAX_TEXT_CHARS))
            .transpose()
    };
    let email = optional("email", &input.email)?;
    let external_ref = optional("external_ref", &input.external_ref)?;
    let stripe_customer_id = optional("stripe_customer_id", &input.stripe_customer_id)?;
    let kind = input.kind;
    let monthly = cents(
        "monthly_discounted_price_cents",
        input.monthly_discounted_price.unwrap_or(0),
        bounds::MAX_PRICE_PER_LICENSE_CENTS,
    )?;
    let annual = cents(
        "annual_discounted_price_cents",
        input.annual_discounted_price.unwrap_or(0),
        bounds::MAX_PRICE_PER_LICENSE_CENTS,
    )?;
    let tier = input
        .required_plan_tier
        .map(|t| tier_arg("required_plan_tier", t))
        .transpose()?;
    if (monthly > 0 || annual > 0) && tier.is_none() {
        return Err(refuse(
            "required_plan_tier",
            "a discounted price needs {field} (discounts apply to one tier)",
        ));
    }
    let minimum = match input.minimum_licenses {
        Some(m) if m <= 0 => return Err(refuse("minimum_licenses", "must be a positive number")),
        m => m.map(|m| licenses_arg("minimum_licenses", m)).transpose()?,
    };
    // Self-hosted customers start with the $20/month flat discount unless they have a price discount.
    let flat_months = if kind == CustomerKind::SelfHosted && monthly == 0 && annual == 0 {
        12
    } else {
        0
    };
    let new = NewCustomer {
        external_ref,
        name,
        email,
        kind: kind.name(),
        stripe_customer_id,
        monthly_discounted_price: monthly,
        annual_discounted_price: annual,
        minimum_licenses: minimum,
        required_plan_tier: tier.map(Tier::code),
        exempt_from_license_number_check: input.exempt_from_license_number_check,
        flat_discounted_months: flat_months,
        created_at: now,
    };
    conn.joined(|c| repo::insert_customer(c, &new).map_err(AppError::from))
        .map_err(|e| match &e {
            AppError::Db(d) if d.constraint().is_some() => {
                let which = d.constraint().unwrap_or("");
                let field = if which.contains("stripe") {
                    "stripe_customer_id"
                } else {
                    "external_ref"
                };
                conflict(
                    field,
                    format!("is taken: another customer already has it ({which})"),
                )
            }
            _ => e,
        })
}

/// Records what the host reported: a usage upload (self-hosted freshness) and/or a seat count.
pub fn report_usage(conn: &mut Conn, id: i64, seats: Option<i64>, now: Ts) -> Result<(), AppError> {
    let seats = seats.map(|s| licenses_arg("seats", s)).transpose()?;
    conn.joined(|c| {
        customer(c, id)?;
        repo::set_usage(c, id, Some(now), seats)?;
        // Fresh data unblocks plans parked for stale usage data at the next pass.
        for plan_id in repo::plan_ids_of_customer(c, id)? {
            claims::clear_retry(c, plan_id)?;
        }
        Ok(())
    })
}

/// A discount given or changed (Zulip's `attach_discount_to_customer`): the customer's prices
/// for one tier, the end of any flat-discount months, and the current plan repriced at once
/// when it is on that tier — and so is a never-started successor of a complimentary plan.
/// Lines already invoiced keep their prices; later additions and renewals use the new ones.
pub fn set_discount(
    conn: &mut Conn,
    id: i64,
    monthly: i64,
    annual: i64,
    tier: Option<Tier>,
    now: Ts,
) -> Result<Customer, AppError> {
    for (field, price) in [
        ("monthly_discounted_price_cents", monthly),
        ("annual_discounted_price_cents", annual),
    ] {
        // 0: that schedule at list price; both 0 remove the discount (Zulip's support form).
        cents(field, price, bounds::MAX_PRICE_PER_LICENSE_CENTS)?;
    }
    let tier = tier
        .map(|t| tier_arg("required_plan_tier", t))
        .transpose()?;
    conn.joined(|c| {
        let cust = customer(c, id)?;
        // The live plan is repriced below: its row is locked first, then read again.
        if let Some(r) = repo::live_plan_of(c, id)? {
            repo::lock_plan(c, r.plan.id)?;
        }
        let live = repo::live_plan_of(c, id)?.map(|r| r.plan);
        let Some(tier) = tier
            .or(cust.required_plan_tier)
            .or(live.as_ref().map(|p| p.tier))
        else {
            return Err(refuse(
                "required_plan_tier",
                format!("customer {id} has no plan and no required tier: give {{field}}"),
            ));
        };
        repo::set_discount(c, id, monthly, annual, tier)?;
        let cust = customer(c, id)?;
        let mut plans = vec![];
        if let Some(p) = live {
            if p.status == PlanStatus::SwitchPlanTierAtPlanEnd && p.tier.is_complimentary() {
                plans.extend(repo::successor_of(c, &p)?.map(|r| r.plan));
            }
            plans.push(p);
        }
        for mut p in plans.into_iter().filter(|p| p.tier == tier) {
            if p.fixed_price.is_some() {
                return Err(invalid(format!(
                    "plan {} has a fixed price: a discount does not change it",
                    p.id
                )));
            }
            let price = price_per_license(p.tier, p.billing_schedule, Some(&cust))?;
            p.price_per_license = Some(price);
            p.discount = discount_display(list_price(p.tier, p.billing_schedule)?, price);
            repo::save_plan(c, &p)?;
            let mut e = NewEvent::about(EventKind::SettingsChanged, &p, now);
            e.message = Some(format!("price per license {price} cents"));
            repo::insert_event(c, &e, now)?;
        }
        Ok(cust)
    })
}
