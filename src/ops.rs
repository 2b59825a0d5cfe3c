//! Operations that write the worker's inputs (customers, plans, ledger entries, offers) and the
//! end-of-cycle updates they share with the pass. Each public operation is one transaction:
//! bad input is refused before anything is written.

use chrono::{DateTime, Utc};

use crate::billing::{catch_up_cycles, on_schedule};
use crate::db::claims;
use crate::db::repo::{self, NewCustomer, NewEvent, NewPlan};
use crate::db::Conn;
use crate::domain::cycle::{next_billing_cycle, validate_renewal};
use crate::domain::dates::{add_months, trunc_seconds};
use crate::domain::prices::{
    billable_licenses, discount_display, list_price, min_licenses_for_plan,
};
use crate::domain::{
    plan_parameters, BillingError, BillingSchedule, Customer, CustomerKind, InvoicingStatus,
    LedgerEntry, OfferStatus, Plan, PlanStatus, Tier,
};
use crate::error::{invalid, AppError};

pub use crate::billing::{customer, plan};

type Ts = DateTime<Utc>;

fn event(kind: &'static str, plan: &Plan, at: Ts) -> NewEvent<'static> {
    NewEvent::about(kind, plan, at)
}

// ----- customers -----

#[derive(Debug, Clone, Default)]
pub struct CustomerInput {
    pub name: String,
    pub email: Option<String>,
    pub external_ref: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub kind: Option<String>,
    pub monthly_discounted_price: Option<i64>,
    pub annual_discounted_price: Option<i64>,
    pub required_plan_tier: Option<String>,
    pub minimum_licenses: Option<i64>,
    pub exempt_from_license_number_check: bool,
}

pub fn create_customer(conn: &mut Conn, input: &CustomerInput, now: Ts) -> Result<i64, AppError> {
    if input.name.trim().is_empty() {
        return Err(invalid("--name must not be empty"));
    }
    let kind = CustomerKind::parse(input.kind.as_deref().unwrap_or("cloud"))?;
    let monthly = non_negative(
        "--monthly-discounted-price-cents",
        input.monthly_discounted_price.unwrap_or(0),
    )?;
    let annual = non_negative(
        "--annual-discounted-price-cents",
        input.annual_discounted_price.unwrap_or(0),
    )?;
    let tier = input
        .required_plan_tier
        .as_deref()
        .map(Tier::parse)
        .transpose()?;
    if (monthly > 0 || annual > 0) && tier.is_none() {
        return Err(invalid(
            "a discounted price needs --required-plan-tier (discounts apply to one tier)",
        ));
    }
    let minimum = match input.minimum_licenses {
        Some(m) if m <= 0 || m > i64::from(i32::MAX) => {
            return Err(invalid("--minimum-licenses must be a positive number"))
        }
        m => m.map(|m| m as i32),
    };
    // Self-hosted customers start with the $20/month flat discount unless they have a price discount.
    let flat_months = if kind == CustomerKind::SelfHosted && monthly == 0 && annual == 0 {
        12
    } else {
        0
    };
    let new = NewCustomer {
        external_ref: input.external_ref.clone(),
        name: input.name.trim().to_string(),
        email: input.email.clone(),
        kind: kind.name(),
        stripe_customer_id: input.stripe_customer_id.clone(),
        monthly_discounted_price: monthly,
        annual_discounted_price: annual,
        minimum_licenses: minimum,
        required_plan_tier: tier.map(Tier::code),
        exempt_from_license_number_check: input.exempt_from_license_number_check,
        flat_discounted_months: flat_months,
        created_at: now,
    };
    conn.transaction(|c| repo::insert_customer(c, &new).map_err(AppError::from))
        .map_err(|e| match &e {
            AppError::Db(d) if d.constraint().is_some() => invalid(format!(
                "a customer with that external ref or Stripe customer id already exists ({})",
                d.constraint().unwrap_or("")
            )),
            _ => e,
        })
}

/// Records what the host reported: a usage upload (self-hosted freshness) and/or a seat count.
pub fn report_usage(conn: &mut Conn, id: i64, seats: Option<i64>, now: Ts) -> Result<(), AppError> {
    let seats = seats.map(|s| licenses_arg("--seats", s)).transpose()?;
    conn.transaction(|c| {
        customer(c, id)?;
        repo::set_usage(c, id, Some(now), seats)?;
        // Fresh data unblocks plans parked for stale usage data at the next pass.
        for plan_id in repo::plan_ids_of_customer(c, id)? {
            claims::clear_retry(c, plan_id)?;
        }
        Ok(())
    })
}

fn non_negative(flag: &str, v: i64) -> Result<i64, AppError> {
    if v < 0 {
        return Err(invalid(format!("{flag} must not be negative (got {v})")));
    }
    Ok(v)
}

fn licenses_arg(flag: &str, v: i64) -> Result<i32, AppError> {
    if v < 0 {
        return Err(invalid(format!("{flag} must not be negative (got {v})")));
    }
    i32::try_from(v).map_err(|_| invalid(format!("{flag} is too large (got {v})")))
}

// ----- plans -----

#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub customer_id: i64,
    pub tier: String,
    pub schedule: String,
    pub licenses: i64,
    pub licenses_at_next_renewal: Option<i64>,
    pub automanage_licenses: bool,
    pub invoice_billing: bool,
    pub anchor: Option<Ts>,
    pub price_per_license: Option<i64>,
    pub fixed_price: Option<i64>,
    pub end_date: Option<Ts>,
    pub free_trial_days: Option<i64>,
    pub first_invoice_by_worker: bool,
}

pub fn create_plan(conn: &mut Conn, input: &PlanInput, now: Ts) -> Result<i64, AppError> {
    let tier = Tier::parse(&input.tier)?;
    let schedule = BillingSchedule::parse(&input.schedule)?;
    let licenses = licenses_arg("--licenses", input.licenses)?;
    let next_licenses = licenses_arg(
        "--licenses-at-next-renewal",
        input.licenses_at_next_renewal.unwrap_or(input.licenses),
    )?;
    let trial_days = match input.free_trial_days {
        Some(d) if d < 0 => return Err(invalid("--free-trial-days must not be negative")),
        Some(d) => Some(u32::try_from(d).map_err(|_| invalid("--free-trial-days is too large"))?)
            .filter(|d| *d > 0),
        None => None,
    };
    if trial_days.is_some() && input.invoice_billing {
        return Err(invalid("invoice-billed free trials are not supported: a free trial needs card billing (drop --invoice-billing)"));
    }
    if trial_days.is_some() && input.fixed_price.is_some() {
        return Err(invalid("fixed-price plans have no free trial"));
    }
    if trial_days.is_some() && input.first_invoice_by_worker {
        return Err(invalid(
            "a free trial is billed when it ends: drop --first-invoice-by-worker",
        ));
    }
    if let (Some(_), Some(_)) = (input.fixed_price, input.price_per_license) {
        return Err(invalid(
            "give either --fixed-price-cents or --price-per-license-cents, not both",
        ));
    }
    let fixed = input
        .fixed_price
        .map(|p| non_negative("--fixed-price-cents", p))
        .transpose()?;
    let explicit_price = input
        .price_per_license
        .map(|p| non_negative("--price-per-license-cents", p))
        .transpose()?;
    let anchor = trunc_seconds(input.anchor.unwrap_or(now));
    let end_date = input.end_date.map(trunc_seconds);
    if end_date.is_some_and(|e| e <= anchor) {
        return Err(invalid("--end-date must be after the plan's anchor"));
    }

    conn.transaction(|c| {
        let cust = customer(c, input.customer_id)?;
        if let Some(live) = repo::live_plan_of(c, cust.id)? {
            return Err(invalid(format!(
                "customer {} already has a live plan ({}); at most one live plan per customer",
                cust.id, live.plan.id
            )));
        }
        let params = plan_parameters(tier, schedule, Some(&cust), anchor, trial_days)?;
        if !cust.exempt_from_license_number_check {
            let minimum = min_licenses_for_plan(&cust, tier, false);
            if i64::from(licenses) < minimum {
                return Err(invalid(format!(
                    "at least {minimum} licenses are required for {} (got {licenses})",
                    tier.plan_name()
                )));
            }
        }
        let (price, discount, automanage, end_date) = match fixed {
            Some(_) => (
                None,
                None,
                true,
                Some(end_date.map_or_else(|| add_months(anchor, 12), Ok)?),
            ),
            None => {
                let price = explicit_price.unwrap_or(params.price_per_license);
                (
                    Some(price),
                    discount_display(list_price(tier, schedule)?, price),
                    input.automanage_licenses,
                    end_date,
                )
            }
        };
        let first_by_worker = input.first_invoice_by_worker;
        let new = NewPlan {
            customer_id: cust.id,
            tier,
            status: if trial_days.is_some() {
                PlanStatus::FreeTrial
            } else {
                PlanStatus::Active
            },
            billing_schedule: schedule.code(),
            fixed_price: fixed,
            price_per_license: price,
            discount,
            automanage_licenses: automanage,
            charge_automatically: !input.invoice_billing,
            billing_cycle_anchor: params.billing_cycle_anchor,
            // A first period billed by the worker is due at once; a complimentary plan with
            // an end date is next looked at when it ends (as `plan set-end-date` sets it).
            next_invoice_date: Some(match end_date {
                _ if first_by_worker => anchor,
                Some(end) if tier.is_complimentary() => end,
                _ => params.next_invoice_date,
            }),
            end_date,
            invoicing_status: if first_by_worker {
                InvoicingStatus::InitialInvoiceToBeSent
            } else {
                InvoicingStatus::Done
            },
            created_at: now,
        };
        let id = repo::insert_plan(c, &new).map_err(|e| match e.constraint() {
            Some(_) => invalid(format!("customer {} already has a live plan", cust.id)),
            None => AppError::from(e),
        })?;
        let entry = repo::insert_ledger(c, id, true, anchor, licenses, Some(next_licenses))?;
        let mut p = plan(c, id)?.plan;
        if !first_by_worker {
            p.invoiced_through = Some(entry.id); // the first period was paid at checkout
            repo::save_plan(c, &p)?;
        }
        let mut e = event("plan_started", &p, anchor);
        e.new_status = Some(p.status);
        e.new_tier = Some(tier);
        repo::insert_event(c, &e, now)?;
        Ok(id)
    })
}

/// A live plan (refuses ended and never-started plans).
fn live_plan(conn: &mut Conn, id: i64) -> Result<(Plan, Customer), AppError> {
    let p = plan(conn, id)?.plan;
    if !p.status.is_live() {
        return Err(invalid(format!(
            "plan {id} is not live (status {})",
            p.status
        )));
    }
    let c = customer(conn, p.customer_id)?;
    Ok((p, c))
}

/// Runs the end-of-cycle updates at `now` and returns the plan that is live afterwards, or an
/// error if the plan ended.
fn current_after_cycle(
    conn: &mut Conn,
    id: i64,
    now: Ts,
) -> Result<(Plan, Customer, LedgerEntry), AppError> {
    let (mut p, cust) = live_plan(conn, id)?;
    let outcome = catch_up_cycles(conn, &mut p, &cust, now)?;
    let Some(last) = outcome.last_entry else {
        return Err(invalid(format!(
            "plan {id} has ended (status {})",
            p.status
        )));
    };
    Ok((p, cust, last))
}

/// `update_license_ledger_for_automanaged_plan`: the host reports the seat count. The
/// end-of-cycle updates run first; when they end the plan, no entry is written (`None`).
pub fn report_seats(
    conn: &mut Conn,
    id: i64,
    seats: i64,
    now: Ts,
) -> Result<Option<LedgerEntry>, AppError> {
    let seats = licenses_arg("--count", seats)?;
    conn.transaction(|c| {
        let (mut p, cust) = live_plan(c, id)?;
        if !p.automanage_licenses {
            return Err(invalid(format!(
                "plan {id} has manual license management: use buy-licenses or renewal-licenses"
            )));
        }
        repo::set_usage(c, p.customer_id, None, Some(seats))?;
        let outcome = catch_up_cycles(c, &mut p, &cust, now)?;
        let Some(last) = outcome.last_entry else {
            return Ok(None);
        };
        let cust = Customer {
            seat_count: Some(seats),
            ..cust
        };
        let next_tier = match p.status {
            PlanStatus::SwitchPlanTierAtPlanEnd => {
                repo::successor_of(c, &p)?.map_or(p.tier, |n| n.plan.tier)
            }
            _ => p.tier,
        };
        let at_next = billable_licenses(&cust, next_tier, i64::from(seats));
        let now_billable = billable_licenses(&cust, p.tier, i64::from(seats));
        let licenses = now_billable.max(i64::from(last.licenses));
        let entry = repo::insert_ledger(
            c,
            p.id,
            false,
            now,
            clamp_i32(licenses)?,
            Some(clamp_i32(at_next)?),
        )?;
        claims::clear_retry(c, p.id)?;
        Ok(Some(entry))
    })
}

fn clamp_i32(v: i64) -> Result<i32, AppError> {
    i32::try_from(v).map_err(|_| invalid(format!("license count {v} is too large")))
}

/// §2.4: a license count a customer asks for is at least the seats in use and the plan's
/// minimum, unless the customer is exempt from the license number check. One rule for
/// `buy-licenses` and `renewal-licenses`.
fn check_license_request(cust: &Customer, p: &Plan, requested: i32) -> Result<(), AppError> {
    if cust.exempt_from_license_number_check {
        return Ok(());
    }
    let minimum = min_licenses_for_plan(cust, p.tier, false);
    let seats = i64::from(cust.seat_count.unwrap_or(0));
    if i64::from(requested) < minimum {
        return Err(invalid(format!(
            "at least {minimum} licenses are required for {} (got {requested})",
            p.name()
        )));
    }
    if i64::from(requested) < seats {
        return Err(invalid(format!(
            "customer {} has {seats} seats in use: at least {seats} licenses are required (got {requested})",
            cust.id
        )));
    }
    Ok(())
}

fn manual_plan(
    conn: &mut Conn,
    id: i64,
    now: Ts,
) -> Result<(Plan, Customer, LedgerEntry), AppError> {
    let (p, _) = live_plan(conn, id)?;
    if p.automanage_licenses {
        return Err(invalid(format!(
            "plan {id} has automatic license management: report seats with `plan seats`"
        )));
    }
    current_after_cycle(conn, id, now)
}

/// Manual plans: more licenses for the current period (billed prorated by the next pass).
pub fn buy_licenses(
    conn: &mut Conn,
    id: i64,
    licenses: i64,
    now: Ts,
) -> Result<LedgerEntry, AppError> {
    let licenses = licenses_arg("--licenses", licenses)?;
    conn.transaction(|c| {
        let (p, cust, last) = manual_plan(c, id, now)?;
        if p.is_free_trial() {
            return Err(invalid("cannot buy more licenses during a free trial; change the licenses at next renewal instead"));
        }
        if licenses <= last.licenses {
            return Err(invalid(format!(
                "licenses can only go up within a period: plan {} has {} licenses, {licenses} requested",
                p.id, last.licenses
            )));
        }
        check_license_request(&cust, &p, licenses)?;
        let entry = repo::insert_ledger(c, p.id, false, now, licenses, Some(licenses))?;
        claims::clear_retry(c, p.id)?;
        Ok(entry)
    })
}

/// Manual plans: the licenses to bill at the next renewal.
pub fn renewal_licenses(
    conn: &mut Conn,
    id: i64,
    licenses: i64,
    now: Ts,
) -> Result<LedgerEntry, AppError> {
    let licenses = licenses_arg("--licenses", licenses)?;
    conn.transaction(|c| {
        let entry = match manual_plan(c, id, now) {
            Ok((p, cust, last)) => {
                if last.licenses_at_next_renewal == Some(licenses) {
                    return Err(invalid(format!(
                        "plan {} is already scheduled to renew with {licenses} licenses",
                        p.id
                    )));
                }
                check_license_request(&cust, &p, licenses)?;
                repo::insert_ledger(c, p.id, false, now, last.licenses, Some(licenses))?
            }
            // The renewal at the last boundary is overdue and blocked by the count it would
            // renew with: renew at that boundary with the operator's count instead.
            Err(AppError::Billing(
                BillingError::ManualPlanShort { .. } | BillingError::BelowMinimumLicenses { .. },
            )) => {
                let (p, cust) = live_plan(c, id)?;
                let entries = repo::ledger_of(c, id)?;
                let boundary = next_billing_cycle(&p, &entries)?
                    .filter(|b| *b <= now && p.status == PlanStatus::Active)
                    .ok_or_else(|| invalid(format!("plan {id} has no overdue renewal to fix")))?;
                validate_renewal(&cust, p.tier, p.automanage_licenses, licenses)?;
                repo::insert_ledger(c, p.id, true, boundary, licenses, Some(licenses))?
            }
            Err(e) => return Err(e),
        };
        claims::clear_retry(c, id)?;
        Ok(entry)
    })
}

/// The billing-page status changes, with Zulip's guards.
pub fn schedule_change(conn: &mut Conn, id: i64, change: &str, now: Ts) -> Result<Plan, AppError> {
    conn.transaction(|c| {
        let (mut p, cust, last) = current_after_cycle(c, id, now)?;
        let old = p.status;
        if old == PlanStatus::FreeTrial && matches!(change, "switch_to_annual" | "switch_to_monthly") {
            let target = if change == "switch_to_annual" {
                BillingSchedule::Annual
            } else {
                BillingSchedule::Monthly
            };
            require(
                p.charge_automatically && p.fixed_price.is_none() && p.billing_schedule != target,
                &p,
                "only a card-billed free trial without a fixed price can switch schedules now",
            )?;
            return switch_free_trial_now(c, &mut p, &cust, &last, target, now);
        }
        let new = match change {
            "downgrade_at_end_of_cycle" => {
                require(old == PlanStatus::Active, &p, "only an active plan (not in a free trial) can be downgraded at the end of its cycle")?;
                PlanStatus::DowngradeAtEndOfCycle
            }
            "switch_to_annual" => {
                require(old == PlanStatus::Active && p.billing_schedule == BillingSchedule::Monthly && p.fixed_price.is_none(), &p,
                    "only an active monthly plan without a fixed price can switch to annual billing")?;
                PlanStatus::SwitchToAnnualAtEndOfCycle
            }
            "switch_to_monthly" => {
                require(old == PlanStatus::Active && p.billing_schedule == BillingSchedule::Annual && p.fixed_price.is_none(), &p,
                    "only an active annual plan without a fixed price can switch to monthly billing")?;
                PlanStatus::SwitchToMonthlyAtEndOfCycle
            }
            "downgrade_at_end_of_free_trial" => {
                require(old == PlanStatus::FreeTrial && p.charge_automatically, &p,
                    "only a card-billed free trial can be downgraded at its end")?;
                PlanStatus::DowngradeAtEndOfFreeTrial
            }
            "cancel" => match old {
                PlanStatus::DowngradeAtEndOfFreeTrial => PlanStatus::FreeTrial,
                PlanStatus::DowngradeAtEndOfCycle | PlanStatus::SwitchToAnnualAtEndOfCycle | PlanStatus::SwitchToMonthlyAtEndOfCycle => PlanStatus::Active,
                PlanStatus::SwitchPlanTierAtPlanEnd => {
                    if let Some(mut next) = repo::successor_of(c, &p)?.map(|r| r.plan) {
                        next.status = PlanStatus::Ended;
                        next.next_invoice_date = None;
                        repo::save_plan(c, &next)?;
                    }
                    PlanStatus::Active
                }
                _ => return Err(invalid(format!("plan {} has no scheduled change to cancel (status {old})", p.id))),
            },
            other => return Err(invalid(format!(
                "unknown change {other:?}: expected downgrade_at_end_of_cycle, switch_to_annual, switch_to_monthly, downgrade_at_end_of_free_trial or cancel"
            ))),
        };
        p.status = new;
        repo::save_plan(c, &p)?;
        let mut e = event("status_changed", &p, now);
        e.old_status = Some(old);
        e.new_status = Some(new);
        repo::insert_event(c, &e, now)?;
        claims::clear_retry(c, p.id)?;
        Ok(p)
    })
}

/// §4.9: during a card free trial the schedule changes at once. The trial plan ends; a new
/// free-trial plan on the other schedule keeps the anchor and the next invoice date (the trial's
/// end) and renews with the old plan's next-renewal count, so the renewal at the end of the
/// trial is billed on the new schedule.
fn switch_free_trial_now(
    c: &mut Conn,
    p: &mut Plan,
    cust: &Customer,
    last: &LedgerEntry,
    schedule: BillingSchedule,
    now: Ts,
) -> Result<Plan, AppError> {
    let licenses = last.licenses_at_next_renewal.unwrap_or(last.licenses);
    let old_status = p.status;
    p.status = PlanStatus::Ended;
    let trial_end = p.next_invoice_date;
    p.next_invoice_date = None;
    repo::save_plan(c, p)?;
    let new = NewPlan {
        status: PlanStatus::FreeTrial,
        next_invoice_date: trial_end,
        end_date: p.end_date,
        ..on_schedule(p, cust, schedule, now)?
    };
    let new_id = repo::insert_plan(c, &new)?;
    let entry = repo::insert_ledger(c, new_id, true, now, licenses, Some(licenses))?;
    let mut next = plan(c, new_id)?.plan;
    next.invoiced_through = Some(entry.id);
    repo::save_plan(c, &next)?;
    let mut e = event("billing_schedule_switched", p, now);
    e.old_status = Some(old_status);
    e.new_status = Some(PlanStatus::Ended);
    e.message = Some(format!(
        "free trial plan {} continues as {} plan {new_id}",
        p.id,
        schedule.name()
    ));
    repo::insert_event(c, &e, now)?;
    Ok(next)
}

fn require(ok: bool, p: &Plan, msg: &str) -> Result<(), AppError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{msg} (plan {} is {} {})",
            p.id, p.billing_schedule, p.status
        )))
    }
}

/// Ends the plan now; licenses added in the final period are not billed.
pub fn downgrade_now(conn: &mut Conn, id: i64, now: Ts) -> Result<Plan, AppError> {
    conn.transaction(|c| {
        let (mut p, _) = live_plan(c, id)?;
        let old = p.status;
        p.status = PlanStatus::Ended;
        p.invoiced_through = repo::ledger_of(c, p.id)?
            .last()
            .map(|e| e.id)
            .or(p.invoiced_through);
        p.next_invoice_date = None;
        repo::save_plan(c, &p)?;
        let mut e = event("plan_ended", &p, now);
        e.old_status = Some(old);
        e.new_status = Some(PlanStatus::Ended);
        e.old_tier = Some(p.tier);
        e.message = Some("downgraded now".into());
        repo::insert_event(c, &e, now)?;
        Ok(p)
    })
}

pub fn set_end_date(conn: &mut Conn, id: i64, date: Ts, now: Ts) -> Result<Plan, AppError> {
    let date = trunc_seconds(date);
    conn.transaction(|c| {
        let (mut p, _) = live_plan(c, id)?;
        if p.status != PlanStatus::Active {
            return Err(invalid(format!(
                "only an active plan can get an end date (plan {id} is {})",
                p.status
            )));
        }
        if date <= p.billing_cycle_anchor {
            return Err(invalid("--date must be after the plan's anchor"));
        }
        if p.end_date.is_some_and(|old| date > old) {
            p.reminder_to_review_plan_email_sent = false;
        }
        p.end_date = Some(date);
        if p.tier.is_complimentary() {
            p.next_invoice_date = Some(date);
        }
        repo::save_plan(c, &p)?;
        let mut e = event("end_date_set", &p, now);
        e.message = Some(format!(
            "end date {}",
            date.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
        repo::insert_event(c, &e, now)?;
        Ok(p)
    })
}

/// A never-started fixed-price successor that starts at the plan's end date.
pub fn schedule_successor(
    conn: &mut Conn,
    id: i64,
    fixed_price: i64,
    tier: Option<&str>,
    now: Ts,
) -> Result<i64, AppError> {
    let fixed_price = non_negative("--fixed-price-cents", fixed_price)?;
    let tier = tier.map(Tier::parse).transpose()?;
    conn.transaction(|c| {
        let (mut p, _) = live_plan(c, id)?;
        let Some(end) = p.end_date else {
            return Err(invalid(format!("plan {id} has no end date: set one with `plan set-end-date` first")));
        };
        if p.status != PlanStatus::Active {
            return Err(invalid(format!("only an active plan can get a successor (plan {id} is {})", p.status)));
        }
        let entries = repo::ledger_of(c, p.id)?;
        // The next boundary is capped at the end date (§3.4): an end date at or before the
        // next cycle start is the plan's last boundary.
        let cycle = next_billing_cycle(&p, &entries)?;
        if !p.tier.is_complimentary() && cycle != Some(end) {
            return Err(invalid(format!(
                "plan {id} ends on {} but its next billing cycle starts {}: the end date must be the next cycle boundary",
                end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                cycle.map_or("never".to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            )));
        }
        let tier = tier.unwrap_or(p.tier);
        if !tier.is_paid() {
            return Err(invalid(format!("a successor plan needs a paid tier (got {tier})")));
        }
        let new = NewPlan {
            customer_id: p.customer_id,
            tier,
            status: PlanStatus::NeverStarted,
            billing_schedule: p.billing_schedule.code(),
            fixed_price: Some(fixed_price),
            price_per_license: None,
            discount: None,
            automanage_licenses: true,
            charge_automatically: p.charge_automatically,
            billing_cycle_anchor: end,
            next_invoice_date: Some(end),
            end_date: Some(add_months(end, 12)?),
            invoicing_status: InvoicingStatus::InitialInvoiceToBeSent,
            created_at: now,
        };
        let new_id = repo::insert_plan(c, &new).map_err(|e| match e.constraint() {
            Some(_) => invalid(format!("customer {} already has a never-started successor plan", p.customer_id)),
            None => AppError::from(e),
        })?;
        let old = p.status;
        p.status = PlanStatus::SwitchPlanTierAtPlanEnd;
        p.next_invoice_date = Some(end);
        repo::save_plan(c, &p)?;
        let mut e = event("successor_scheduled", &p, now);
        e.old_status = Some(old);
        e.new_status = Some(p.status);
        e.new_tier = Some(tier);
        e.message = Some(format!("plan {new_id} starts at {}", end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
        repo::insert_event(c, &e, now)?;
        Ok(new_id)
    })
}

// ----- offers -----

pub fn create_offer(
    conn: &mut Conn,
    customer_id: i64,
    tier: &str,
    fixed_price: i64,
    sent_invoice_id: Option<&str>,
    now: Ts,
) -> Result<i64, AppError> {
    let tier = Tier::parse(tier)?;
    if !matches!(
        tier,
        Tier::CloudStandard | Tier::CloudPlus | Tier::SelfHostedBasic | Tier::SelfHostedBusiness
    ) {
        return Err(invalid(format!("offers are for cloud_standard, cloud_plus, self_hosted_basic or self_hosted_business (got {tier})")));
    }
    let fixed_price = non_negative("--fixed-price-cents", fixed_price)?;
    conn.transaction(|c| {
        customer(c, customer_id)?;
        repo::insert_offer(c, customer_id, tier, fixed_price, sent_invoice_id, now).map_err(|e| {
            match e.constraint() {
                Some(_) => invalid(format!(
                    "customer {customer_id} already has a configured offer"
                )),
                None => AppError::from(e),
            }
        })
    })
}

pub fn accept_offer(
    conn: &mut Conn,
    id: i64,
    schedule: &str,
    licenses: Option<i64>,
    now: Ts,
) -> Result<i64, AppError> {
    let schedule_parsed = BillingSchedule::parse(schedule)?;
    conn.transaction(|c| {
        let offer = repo::get_offer(c, id)?
            .ok_or_else(|| AppError::NotFound(format!("offer {id} does not exist")))?;
        if offer.status != OfferStatus::Configured {
            return Err(invalid(format!("offer {id} was already accepted")));
        }
        let cust = customer(c, offer.customer_id)?;
        let licenses = match licenses {
            Some(l) => l,
            None => i64::from(cust.seat_count.unwrap_or(0))
                .max(min_licenses_for_plan(&cust, offer.tier, false)),
        };
        let input = PlanInput {
            customer_id: cust.id,
            tier: offer.tier.code().to_string(),
            schedule: schedule_parsed.code().to_string(),
            licenses,
            automanage_licenses: true,
            invoice_billing: offer.sent_invoice_id.is_some(),
            fixed_price: Some(offer.fixed_price),
            ..PlanInput::default()
        };
        let plan_id = create_plan(c, &input, now)?;
        repo::set_offer_status(c, id, OfferStatus::Processed)?;
        Ok(plan_id)
    })
}
