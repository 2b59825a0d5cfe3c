//! Licenses: the seat count of automatic plans, bought and renewal licenses of manual plans.

use crate::billing::catch_up_cycles;
use crate::db::claims;
use crate::db::models::PlanRecord;
use crate::db::repo::{self};
use crate::db::Conn;
use crate::domain::cycle::{next_billing_cycle, validate_renewal};
use crate::domain::prices::{billable_licenses, min_licenses_for_plan};
use crate::domain::{BillingError, Customer, LedgerEntry, Plan, PlanStatus};
use crate::error::{invalid, refuse, AppError};

use super::{clamp_i32, current_after_cycle, licenses_arg, live_plan, live_plan_record, Ts};

/// What a seat report did, and the plan as it was and is: the seat report is the host
/// application's hottest write, so it hands the change history the states it read and wrote
/// instead of the history reading them again around it.
#[derive(Debug, Clone)]
pub struct SeatsReport {
    /// The entry written; `None` when the end-of-cycle updates ended the plan.
    pub entry: Option<LedgerEntry>,
    /// The plan's status afterwards.
    pub status: PlanStatus,
    /// The plan's row and newest ledger entry before the report.
    pub before: (PlanRecord, Option<LedgerEntry>),
    /// Whether the entry is all that moved (the row is as `before` says, but for the retry
    /// time, which the history leaves out); not when the end-of-cycle updates crossed a
    /// boundary (the plan changed in more ways: read it again).
    pub only_the_entry_moved: bool,
    /// The seat count as reported (for the customer of `before`'s plan).
    pub seat_count: i32,
}

/// `update_license_ledger_for_automanaged_plan`: the host reports the seat count. The
/// end-of-cycle updates run first; when they end the plan, no entry is written.
pub fn report_seats(
    conn: &mut Conn,
    id: i64,
    seats: i64,
    now: Ts,
) -> Result<SeatsReport, AppError> {
    conn.joined(|c| {
        let report = report_seats_leaving_the_count(c, id, seats, now)?;
        let customer = report.before.0.plan.customer_id;
        repo::set_usage(c, customer, None, Some(report.seat_count))?;
        Ok(report)
    })
}

/// [`report_seats`] but for the customer's seat count, which the caller writes in the same
/// transaction: the change history writes it with its chain head, which is on the customer's
/// row too (`db::changes::WithHead`; on PostgreSQL one round trip fewer). Nothing here reads
/// the count back: the end-of-cycle updates and the new entry take the reported count.
pub fn report_seats_leaving_the_count(
    conn: &mut Conn,
    id: i64,
    seats: i64,
    now: Ts,
) -> Result<SeatsReport, AppError> {
    let seats = licenses_arg("count", seats)?;
    conn.joined(|c| {
        let (record, cust) = live_plan_record(c, id, now)?;
        // The row is locked as read: no retry can be set on it before this commits.
        let retry_pending = record.next_retry_at.is_some();
        let mut p = record.plan.clone();
        if !p.automanage_licenses {
            return Err(invalid(format!(
                "plan {id} has manual license management: use buy-licenses or renewal-licenses"
            )));
        }
        let outcome = catch_up_cycles(c, &mut p, &cust, now)?;
        let status = if outcome.changed {
            // A switch or a successor moved the seats to another plan: this one's status.
            super::plan(c, id)?.plan.status
        } else {
            p.status
        };
        let before = (record, outcome.newest_before.clone());
        let Some(last) = outcome.last_entry else {
            return Ok(SeatsReport {
                entry: None,
                status,
                before,
                only_the_entry_moved: false,
                seat_count: seats,
            });
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
        let entry = repo::insert_license_change(
            c,
            p.id,
            now,
            clamp_i32(licenses)?,
            Some(clamp_i32(at_next)?),
        )?;
        if retry_pending {
            // Fresh data unblocks a plan parked for stale data at the next pass. Skipped when
            // no retry is pending: the seat report is the host's hottest write, and the
            // statement (a round trip on PostgreSQL) would change nothing.
            claims::clear_retry(c, p.id)?;
        }
        Ok(SeatsReport {
            entry: Some(entry),
            status,
            before,
            only_the_entry_moved: !outcome.changed,
            seat_count: seats,
        })
    })
}

/// docs/RULES.md §2 ("Minimum licenses"): a license count a customer asks for is at least the seats in use and the plan's
/// minimum, unless the customer is exempt from the license number check. One rule for
/// `buy-licenses` and `renewal-licenses`.
fn check_license_request(cust: &Customer, p: &Plan, requested: i32) -> Result<(), AppError> {
    if cust.exempt_from_license_number_check {
        return Ok(());
    }
    let minimum = min_licenses_for_plan(cust, p.tier);
    let seats = i64::from(cust.seat_count.unwrap_or(0));
    if i64::from(requested) < minimum {
        return Err(refuse(
            "licenses",
            format!(
                "at least {minimum} licenses are required for {} (got {requested})",
                p.name()
            ),
        ));
    }
    if i64::from(requested) < seats {
        return Err(refuse("licenses", format!(
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
    let (p, _) = live_plan(conn, id, now)?;
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
    let licenses = licenses_arg("licenses", licenses)?;
    conn.joined(|c| {
        let (p, cust, last) = manual_plan(c, id, now)?;
        if p.is_free_trial() {
            return Err(invalid("cannot buy more licenses during a free trial; change the licenses at next renewal instead"));
        }
        if licenses <= last.licenses {
            return Err(refuse("licenses", format!(
                "licenses can only go up within a period: plan {} has {} licenses, {licenses} requested",
                p.id, last.licenses
            )));
        }
        check_license_request(&cust, &p, licenses)?;
        let entry = repo::insert_license_change(c, p.id, now, licenses, Some(licenses))?;
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
    let licenses = licenses_arg("licenses", licenses)?;
    conn.joined(|c| {
        let entry = match manual_plan(c, id, now) {
            Ok((p, cust, last)) => {
                // Zulip's `do_update_plan`: a plan being downgraded does not renew at all.
                if p.status == PlanStatus::DowngradeAtEndOfCycle {
                    return Err(invalid(format!(
                        "plan {} is being downgraded at the end of its cycle: it does not renew, so its licenses at next renewal cannot change (cancel the downgrade first)",
                        p.id
                    )));
                }
                if last.licenses_at_next_renewal == Some(licenses) {
                    return Err(refuse("licenses", format!(
                        "plan {} is already scheduled to renew with {licenses} licenses",
                        p.id
                    )));
                }
                check_license_request(&cust, &p, licenses)?;
                repo::insert_license_change(c, p.id, now, last.licenses, Some(licenses))?
            }
            // The renewal at the last boundary is overdue and blocked by the count it would
            // renew with: renew at that boundary with the operator's count instead.
            Err(AppError::Billing(
                BillingError::ManualPlanShort { .. } | BillingError::BelowMinimumLicenses { .. },
            )) => {
                let (p, cust) = live_plan(c, id, now)?;
                let entries = repo::ledger_of(c, id)?;
                let boundary = next_billing_cycle(&p, &entries)?
                    .filter(|b| *b <= now && p.status == PlanStatus::Active)
                    .ok_or_else(|| invalid(format!("plan {id} has no overdue renewal to fix")))?;
                validate_renewal(&cust, p.tier, p.automanage_licenses, licenses)?;
                repo::insert_renewal(c, p.id, boundary, licenses, Some(licenses))?
            }
            Err(e) => return Err(e),
        };
        claims::clear_retry(c, id)?;
        Ok(entry)
    })
}
