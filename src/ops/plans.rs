//! Plans: creation, the billing-page status changes, end dates and successors.

use crate::billing::on_schedule;
use crate::db::claims;
use crate::db::repo::{self, NewPlan};
use crate::db::successors;
use crate::db::Conn;
use crate::domain::bounds;
use crate::domain::cycle::next_billing_cycle;
use crate::domain::dates::{add_months, trunc_seconds};
use crate::domain::prices::{
    billable_licenses, discount_display, list_price, min_licenses_for_plan, price_per_license,
};
use crate::domain::{
    plan_parameters, BillingSchedule, Customer, InvoicingStatus, LedgerEntry, Plan, PlanStatus,
    Tier,
};
use crate::domain::{CollectionMethod, EventKind, LicenseManagement, ScheduleChange};
use crate::error::{invalid, refuse, AppError};

use super::{
    cents, clamp_i32, current_after_cycle, customer, event, instant_arg, licenses_arg, live_plan,
    plan, require, tier_arg, Ts,
};

#[derive(Debug, Clone)]
pub struct PlanInput {
    pub customer_id: i64,
    pub tier: Tier,
    pub schedule: BillingSchedule,
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

impl PlanInput {
    /// A plan of `tier` billed per license on `schedule`, its first period paid at checkout:
    /// the other fields at their defaults (the CLI's without the flags).
    pub fn new(
        customer_id: i64,
        tier: Tier,
        schedule: BillingSchedule,
        licenses: i64,
    ) -> PlanInput {
        PlanInput {
            customer_id,
            tier,
            schedule,
            licenses,
            licenses_at_next_renewal: None,
            automanage_licenses: false,
            invoice_billing: false,
            anchor: None,
            price_per_license: None,
            fixed_price: None,
            end_date: None,
            free_trial_days: None,
            first_invoice_by_worker: false,
        }
    }
}

/// Zulip's refusal: a customer paying by emailed invoice buys its licenses itself.
const AUTOMATIC_BY_INVOICE: &str =
    "automatic license management is not supported when paying by invoice: use manual license management (or card billing)";

/// A [`PlanInput`] whose flags were each checked on their own and against each other.
struct CheckedPlan {
    tier: Tier,
    schedule: BillingSchedule,
    licenses: i32,
    next_licenses: i32,
    trial_days: Option<u32>,
    fixed: Option<i64>,
    explicit_price: Option<i64>,
    anchor: Ts,
    end_date: Option<Ts>,
}

impl PlanInput {
    fn check(&self, now: Ts) -> Result<CheckedPlan, AppError> {
        let input = self;
        let tier = tier_arg("tier", input.tier)?;
        let schedule = input.schedule;
        let licenses = licenses_arg("licenses", input.licenses)?;
        let next_licenses = licenses_arg(
            "licenses_at_next_renewal",
            input.licenses_at_next_renewal.unwrap_or(input.licenses),
        )?;
        let trial_days = match input.free_trial_days {
            Some(d) => {
                let d = bounds::number("free_trial_days", d, bounds::MAX_FREE_TRIAL_DAYS)?;
                u32::try_from(d).ok().filter(|d| *d > 0)
            }
            None => None,
        };
        if input.invoice_billing && input.automanage_licenses && input.fixed_price.is_none() {
            return Err(refuse("automanage_licenses", AUTOMATIC_BY_INVOICE));
        }
        if trial_days.is_some() && input.invoice_billing {
            return Err(refuse("invoice_billing", "invoice-billed free trials are not supported: a free trial needs card billing (drop {field})"));
        }
        if trial_days.is_some() && input.fixed_price.is_some() {
            return Err(refuse(
                "free_trial_days",
                "fixed-price plans have no free trial (drop {field})",
            ));
        }
        if trial_days.is_some() && input.first_invoice_by_worker {
            return Err(refuse(
                "first_invoice_by_worker",
                "a free trial is billed when it ends: drop {field}",
            ));
        }
        if let (Some(_), Some(_)) = (input.fixed_price, input.price_per_license) {
            return Err(refuse(
                "price_per_license_cents",
                "a plan has a fixed price or a price per license, not both: drop {field}",
            ));
        }
        let fixed = input
            .fixed_price
            .map(|p| cents("fixed_price_cents", p, bounds::MAX_FIXED_PRICE_CENTS))
            .transpose()?;
        let explicit_price = input
            .price_per_license
            .map(|p| {
                cents(
                    "price_per_license_cents",
                    p,
                    bounds::MAX_PRICE_PER_LICENSE_CENTS,
                )
            })
            .transpose()?;
        let anchor = trunc_seconds(instant_arg("anchor", input.anchor.unwrap_or(now))?);
        let end_date = input
            .end_date
            .map(|e| instant_arg("end_date", e).map(trunc_seconds))
            .transpose()?;
        if end_date.is_some_and(|e| e <= anchor) {
            return Err(refuse("end_date", "must be after the plan's anchor"));
        }
        Ok(CheckedPlan {
            tier,
            schedule,
            licenses,
            next_licenses,
            trial_days,
            fixed,
            explicit_price,
            anchor,
            end_date,
        })
    }
}

pub fn create_plan(conn: &mut Conn, input: &PlanInput, now: Ts) -> Result<i64, AppError> {
    let CheckedPlan {
        tier,
        schedule,
        licenses,
        next_licenses,
        trial_days,
        fixed,
        explicit_price,
        anchor,
        end_date,
    } = input.check(now)?;
    conn.joined(|c| {
        let cust = customer(c, input.customer_id)?;
        if let Some(live) = repo::live_plan_of(c, cust.id)? {
            return Err(invalid(format!(
                "customer {} already has a live plan ({}); at most one live plan per customer",
                cust.id, live.plan.id
            )));
        }
        let params = plan_parameters(tier, schedule, Some(&cust), anchor, trial_days)?;
        if !cust.exempt_from_license_number_check {
            let minimum = min_licenses_for_plan(&cust, tier);
            if i64::from(licenses) < minimum {
                return Err(refuse(
                    "licenses",
                    format!(
                        "at least {minimum} licenses are required for {} (got {licenses})",
                        tier.plan_name()
                    ),
                ));
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
        let entry = repo::insert_renewal(c, id, anchor, licenses, Some(next_licenses))?;
        let mut p = plan(c, id)?.plan;
        if !first_by_worker {
            p.invoiced_through = Some(entry.id); // the first period was paid at checkout
            repo::save_plan(c, &p)?;
        }
        let mut e = event(EventKind::PlanStarted, &p, anchor);
        e.new_status = Some(p.status);
        e.new_tier = Some(tier);
        repo::insert_event(c, &e, now)?;
        Ok(id)
    })
}

/// The billing-page status changes, with Zulip's guards.
pub fn schedule_change(
    conn: &mut Conn,
    id: i64,
    change: ScheduleChange,
    now: Ts,
) -> Result<Plan, AppError> {
    conn.joined(|c| {
        let (mut p, cust, last) = current_after_cycle(c, id, now)?;
        let old = p.status;
        if old == PlanStatus::FreeTrial
            && matches!(
                change,
                ScheduleChange::SwitchToAnnual | ScheduleChange::SwitchToMonthly
            )
        {
            let target = if change == ScheduleChange::SwitchToAnnual {
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
            ScheduleChange::DowngradeAtEndOfCycle => {
                require(old == PlanStatus::Active, &p, "only an active plan (not in a free trial) can be downgraded at the end of its cycle")?;
                PlanStatus::DowngradeAtEndOfCycle
            }
            ScheduleChange::SwitchToAnnual => {
                require(old == PlanStatus::Active && p.billing_schedule == BillingSchedule::Monthly && p.fixed_price.is_none(), &p,
                    "only an active monthly plan without a fixed price can switch to annual billing")?;
                PlanStatus::SwitchToAnnualAtEndOfCycle
            }
            ScheduleChange::SwitchToMonthly => {
                require(old == PlanStatus::Active && p.billing_schedule == BillingSchedule::Annual && p.fixed_price.is_none(), &p,
                    "only an active annual plan without a fixed price can switch to monthly billing")?;
                PlanStatus::SwitchToMonthlyAtEndOfCycle
            }
            ScheduleChange::DowngradeAtEndOfFreeTrial => {
                require(old == PlanStatus::FreeTrial && p.charge_automatically, &p,
                    "only a card-billed free trial can be downgraded at its end")?;
                PlanStatus::DowngradeAtEndOfFreeTrial
            }
            ScheduleChange::Cancel => match old {
                PlanStatus::DowngradeAtEndOfFreeTrial => PlanStatus::FreeTrial,
                PlanStatus::DowngradeAtEndOfCycle | PlanStatus::SwitchToAnnualAtEndOfCycle | PlanStatus::SwitchToMonthlyAtEndOfCycle => PlanStatus::Active,
                PlanStatus::SwitchPlanTierAtPlanEnd => {
                    if let Some(mut next) = repo::successor_of(c, &p)?.map(|r| r.plan) {
                        next.status = PlanStatus::Ended;
                        next.next_invoice_date = None;
                        repo::save_plan(c, &next)?;
                    }
                    restore_renewal(c, &p, &cust, &last)?;
                    PlanStatus::Active
                }
                _ => return Err(invalid(format!("plan {} has no scheduled change to cancel (status {old})", p.id))),
            },
        };
        p.status = new;
        repo::save_plan(c, &p)?;
        let mut e = event(EventKind::StatusChanged, &p, now);
        e.old_status = Some(old);
        e.new_status = Some(new);
        repo::insert_event(c, &e, now)?;
        claims::clear_retry(c, p.id)?;
        Ok(p)
    })
}

/// docs/RULES.md §4.5: during a card free trial the schedule changes at once. The trial plan ends; a new
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
    let entry = repo::insert_renewal(c, new_id, now, licenses, Some(licenses))?;
    let mut next = plan(c, new_id)?.plan;
    next.invoiced_through = Some(entry.id);
    repo::save_plan(c, &next)?;
    let mut e = event(EventKind::BillingScheduleSwitched, p, now);
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

/// Ends the plan now; licenses added in the final period are not billed.
pub fn downgrade_now(conn: &mut Conn, id: i64, now: Ts) -> Result<Plan, AppError> {
    conn.joined(|c| {
        let (mut p, _) = live_plan(c, id, now)?;
        let old = crate::billing::end_now(c, &mut p, now)?;
        let mut e = event(EventKind::PlanEnded, &p, now);
        e.old_status = Some(old);
        e.new_status = Some(PlanStatus::Ended);
        e.old_tier = Some(p.tier);
        e.message = Some("downgraded now".into());
        repo::insert_event(c, &e, now)?;
        Ok(p)
    })
}

pub fn set_end_date(conn: &mut Conn, id: i64, date: Ts, now: Ts) -> Result<Plan, AppError> {
    let date = trunc_seconds(instant_arg("date", date)?);
    conn.joined(|c| {
        let (mut p, _) = live_plan(c, id, now)?;
        if p.status != PlanStatus::Active {
            return Err(invalid(format!(
                "only an active plan can get an end date (plan {id} is {})",
                p.status
            )));
        }
        if date <= p.billing_cycle_anchor {
            return Err(refuse("date", "must be after the plan's anchor"));
        }
        if date <= now {
            return Err(refuse(
                "date",
                format!(
                    "must be in the future (after {})",
                    now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
            ));
        }
        if p.end_date.is_some_and(|old| date > old) {
            p.reminder_to_review_plan_email_sent = false;
        }
        p.end_date = Some(date);
        if p.tier.is_complimentary() {
            p.next_invoice_date = Some(date);
        }
        repo::save_plan(c, &p)?;
        let mut e = event(EventKind::EndDateSet, &p, now);
        e.message = Some(format!(
            "end date {}",
            date.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
        repo::insert_event(c, &e, now)?;
        Ok(p)
    })
}

/// The billing mode from the next invoice on (Zulip's `update_billing_modality_of_current_plan`):
/// card on file, or an emailed invoice due in 15 days. Invoices already written keep theirs.
pub fn set_billing_mode(
    conn: &mut Conn,
    id: i64,
    mode: CollectionMethod,
    now: Ts,
) -> Result<Plan, AppError> {
    conn.joined(|c| {
        let (mut p, _) = live_plan(c, id, now)?;
        let card = mode == CollectionMethod::ChargeAutomatically;
        if p.charge_automatically == card {
            return Err(refuse(
                "mode",
                format!("plan {id} is already billed {mode}"),
            ));
        }
        if !card
            && matches!(
                p.status,
                PlanStatus::FreeTrial | PlanStatus::DowngradeAtEndOfFreeTrial
            )
        {
            return Err(invalid(format!(
                "plan {id} is in a free trial: a free trial needs card billing"
            )));
        }
        if !card && p.automanage_licenses && p.fixed_price.is_none() {
            return Err(invalid(format!("plan {id}: {AUTOMATIC_BY_INVOICE}")));
        }
        p.charge_automatically = card;
        repo::save_plan(c, &p)?;
        settings_changed(c, &p, format!("billing mode {mode}"), now)?;
        Ok(p)
    })
}

/// Who keeps the license count from now on: the host's seat reports (`plan seats`) or the
/// customer's purchases (`buy-licenses`, `renewal-licenses`). The ledger is not rewritten; the
/// next renewal's checks follow the new mode.
pub fn set_license_management(
    conn: &mut Conn,
    id: i64,
    mode: LicenseManagement,
    now: Ts,
) -> Result<Plan, AppError> {
    conn.joined(|c| {
        let (mut p, _) = live_plan(c, id, now)?;
        let automatic = mode == LicenseManagement::Automatic;
        if p.automanage_licenses == automatic {
            return Err(refuse(
                "mode",
                format!("plan {id} already has {mode} license management"),
            ));
        }
        if p.fixed_price.is_some() {
            return Err(invalid(format!(
                "plan {id} has a fixed price: its licenses are always managed automatically"
            )));
        }
        if automatic && !p.charge_automatically {
            return Err(invalid(format!("plan {id}: {AUTOMATIC_BY_INVOICE}")));
        }
        p.automanage_licenses = automatic;
        repo::save_plan(c, &p)?;
        settings_changed(c, &p, format!("license management {mode}"), now)?;
        Ok(p)
    })
}

fn settings_changed(c: &mut Conn, p: &Plan, message: String, now: Ts) -> Result<(), AppError> {
    let mut e = event(EventKind::SettingsChanged, p, now);
    e.message = Some(message);
    repo::insert_event(c, &e, now)?;
    claims::clear_retry(c, p.id)?;
    Ok(())
}

/// What `plan schedule-successor` asks for.
#[derive(Debug, Clone, Default)]
pub struct Successor {
    /// A fixed price for the successor's year; `None`: billed per license.
    pub fixed_price: Option<i64>,
    pub tier: Option<Tier>,
    pub schedule: Option<BillingSchedule>,
    /// Per-license successors only.
    pub automanage_licenses: bool,
}

/// A never-started successor that starts at the plan's end date: fixed-price (12 months long)
/// or, without a fixed price, billed per license at the customer's price for its tier and
/// schedule (Zulip's upgrade at the end of complimentary access). The plan becomes
/// `switch_plan_tier_at_plan_end`; for a per-license successor its newest ledger entry renews
/// with the new tier's billable count (docs/RULES.md §4.5).
pub fn schedule_successor(
    conn: &mut Conn,
    id: i64,
    successor: &Successor,
    now: Ts,
) -> Result<i64, AppError> {
    let fixed_price = successor
        .fixed_price
        .map(|f| cents("fixed_price_cents", f, bounds::MAX_FIXED_PRICE_CENTS))
        .transpose()?;
    let tier = successor.tier.map(|t| tier_arg("tier", t)).transpose()?;
    let schedule = successor.schedule;
    if fixed_price.is_some() && successor.automanage_licenses {
        return Err(refuse(
            "automanage_licenses",
            "a fixed-price successor always manages licenses automatically: drop {field}",
        ));
    }
    conn.joined(|c| {
        let (mut p, cust) = live_plan(c, id, now)?;
        let end = successor_start(c, &p)?;
        let tier = tier.unwrap_or(p.tier);
        if !tier.is_paid() {
            return Err(refuse(
                "tier",
                format!("a successor plan needs a paid tier (got {tier})"),
            ));
        }
        let schedule = schedule.unwrap_or(p.billing_schedule);
        let (price, discount, automanage, end_date) = match fixed_price {
            Some(_) => (None, None, true, Some(add_months(end, 12)?)),
            None => {
                let price = price_per_license(tier, schedule, Some(&cust))?;
                let discount = discount_display(list_price(tier, schedule)?, price);
                (Some(price), discount, successor.automanage_licenses, None)
            }
        };
        let new = NewPlan {
            customer_id: p.customer_id,
            tier,
            status: PlanStatus::NeverStarted,
            billing_schedule: schedule.code(),
            fixed_price,
            price_per_license: price,
            discount,
            automanage_licenses: automanage,
            charge_automatically: p.charge_automatically,
            billing_cycle_anchor: end,
            next_invoice_date: Some(end),
            end_date,
            invoicing_status: InvoicingStatus::InitialInvoiceToBeSent,
            created_at: now,
        };
        let new_id = repo::insert_plan(c, &new).map_err(|e| match e.constraint() {
            Some(_) => invalid(format!(
                "customer {} already has a never-started successor plan",
                p.customer_id
            )),
            None => AppError::from(e),
        })?;
        if fixed_price.is_none() {
            // The successor starts with the billable count of its own tier; what the plan
            // renewed with before is kept, for a cancellation to put back.
            if let Some(last) = repo::ledger_of(c, p.id)?.last() {
                let seats = cust.seat_count.map_or(i64::from(last.licenses), i64::from);
                let next = billable_licenses(&cust, tier, seats);
                successors::keep_successor_renewal(
                    c,
                    p.id,
                    last.id,
                    last.licenses_at_next_renewal,
                )?;
                repo::set_licenses_at_next_renewal(c, last.id, clamp_i32(next)?)?;
            }
        }
        let old = p.status;
        p.status = PlanStatus::SwitchPlanTierAtPlanEnd;
        p.next_invoice_date = Some(end);
        repo::save_plan(c, &p)?;
        let mut e = event(EventKind::SuccessorScheduled, &p, now);
        e.old_status = Some(old);
        e.new_status = Some(p.status);
        e.new_tier = Some(tier);
        e.message = Some(format!(
            "plan {new_id} starts at {}",
            end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
        repo::insert_event(c, &e, now)?;
        Ok(new_id)
    })
}

/// A per-license successor cancelled: the plan renews as if it had never been scheduled. The
/// newest ledger entry gets back the licenses at next renewal it had, when it is still the
/// entry the successor changed; when seats were reported since (automatic license management,
/// counted for the successor's tier), the count is that of the plan's own tier for the seats in
/// use; a manual plan's later choice (`renewal-licenses`) stays.
fn restore_renewal(
    c: &mut Conn,
    p: &Plan,
    cust: &Customer,
    last: &LedgerEntry,
) -> Result<(), AppError> {
    let Some((entry_id, before)) = successors::take_successor_renewal(c, p.id)? else {
        return Ok(()); // a fixed-price successor changed nothing
    };
    let restored = if last.id == entry_id {
        before
    } else if p.automanage_licenses {
        let seats = cust.seat_count.map_or(i64::from(last.licenses), i64::from);
        Some(clamp_i32(billable_licenses(cust, p.tier, seats))?)
    } else {
        None
    };
    if let Some(n) = restored {
        repo::set_licenses_at_next_renewal(c, last.id, n)?;
    }
    Ok(())
}

/// Where a successor of `p` starts: its end date, which must be its next cycle boundary
/// (docs/RULES.md §3: the boundary is capped at the end date) unless the plan is complimentary.
fn successor_start(c: &mut Conn, p: &Plan) -> Result<Ts, AppError> {
    let id = p.id;
    let Some(end) = p.end_date else {
        return Err(invalid(format!(
            "plan {id} has no end date: set one with `plan set-end-date` first"
        )));
    };
    if p.status != PlanStatus::Active {
        return Err(invalid(format!(
            "only an active plan can get a successor (plan {id} is {})",
            p.status
        )));
    }
    let entries = repo::ledger_of(c, p.id)?;
    let cycle = next_billing_cycle(p, &entries)?;
    if !p.tier.is_complimentary() && cycle != Some(end) {
        return Err(invalid(format!(
            "plan {id} ends on {} but its next billing cycle starts {}: the end date must be the next cycle boundary",
            end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            cycle.map_or("never".to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        )));
    }
    Ok(end)
}
