//! The invoice lines of one invoicing step (docs/RULES.md §4.2): renewal lines, prorated
//! additional-license lines with same-day bundling, fixed-price renewals and the self-hosted
//! flat-discount line.

use super::dates::{renewal_or_end_date, start_of_next_billing_cycle};
use super::model::Ts;
use super::prices::{fixed_price_per_period, format_dollars, prorate};
use super::{BillingError, BillingSchedule, Customer, CustomerKind, LedgerEntry, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Renewal,
    Addition,
    FlatDiscount,
    /// The unused part of a plan replaced by a tier upgrade.
    Credit,
}

impl LineKind {
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Renewal => "renewal",
            LineKind::Addition => "addition",
            LineKind::FlatDiscount => "flat_discount",
            LineKind::Credit => "credit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDraft {
    pub kind: LineKind,
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub amount: i64,
    /// Priced by `amount` rather than quantity × unit (fixed-price renewals, discounts).
    pub amount_only: bool,
    pub period_start: Ts,
    pub period_end: Ts,
    /// The ledger entry that started the line (none for the discount line).
    pub ledger_entry_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvoiceDraft {
    /// Lines in creation order.
    pub lines: Vec<LineDraft>,
    /// The plan's `invoiced_through` after this step.
    pub invoiced_through: Option<i64>,
    /// Months of flat discount this invoice uses.
    pub flat_months_used: i32,
    /// The plan's credit this invoice gives (then cleared on the plan).
    pub credit_used: i64,
}

/// The description of the credit line, as Zulip words its balance adjustment.
pub const CREDIT_DESCRIPTION: &str = "Credit from early termination of active plan";

impl InvoiceDraft {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.amount).sum()
    }
}

fn addition_unit_price(
    plan: &Plan,
    price: i64,
    entries: &[LedgerEntry],
    e: &LedgerEntry,
) -> Result<i64, BillingError> {
    match addition_fraction(plan, entries, e)? {
        None => Ok(price),
        Some((remaining, period)) => prorate(price, remaining, period),
    }
}

/// The part of its period a license added by ledger entry `e` pays for, as (seconds remaining,
/// seconds in the period); `None` in a free trial, where an addition pays the full price. The
/// console shows it beside each addition line ("why was this customer charged this?").
pub fn addition_fraction(
    plan: &Plan,
    entries: &[LedgerEntry],
    e: &LedgerEntry,
) -> Result<Option<(i64, i64)>, BillingError> {
    if plan.is_free_trial() {
        return Ok(None);
    }
    let renewal = entries
        .iter()
        .filter(|r| r.is_renewal && r.event_time <= e.event_time)
        .max_by_key(|r| r.id)
        .ok_or_else(|| {
            BillingError::MissingData(format!(
                "plan {} has no renewal before ledger entry {}",
                plan.id, e.id
            ))
        })?;
    let (anchor, schedule) = (plan.billing_cycle_anchor, plan.billing_schedule);
    let period_end = renewal_or_end_date(anchor, schedule, plan.end_date, e.event_time)?;
    let next_cycle = start_of_next_billing_cycle(anchor, schedule, e.event_time)?;
    let remaining = (period_end - e.event_time).num_seconds();
    let period = (next_cycle - renewal.event_time).num_seconds();
    Ok(Some((remaining, period)))
}

fn missing_price(plan: &Plan) -> BillingError {
    BillingError::MissingData(format!(
        "plan {} has neither a fixed price nor a price per license",
        plan.id
    ))
}

/// The licenses of the ledger entry the plan is invoiced through (none before its first invoice).
fn licenses_invoiced_through(
    plan: &Plan,
    sorted: &[&LedgerEntry],
) -> Result<Option<i64>, BillingError> {
    let Some(id) = plan.invoiced_through else {
        return Ok(None);
    };
    let entry = sorted.iter().find(|e| e.id == id).ok_or_else(|| {
        BillingError::MissingData(format!(
            "plan {} is invoiced through ledger entry {id}, which is not its own",
            plan.id
        ))
    })?;
    Ok(Some(i64::from(entry.licenses)))
}

/// The renewal line of a renewal entry: licenses × price, or the fixed price for the period.
fn renewal_line(plan: &Plan, e: &LedgerEntry, period_end: Ts) -> Result<LineDraft, BillingError> {
    let licenses = i64::from(e.licenses);
    let (quantity, unit, amount, amount_only) = match plan.fixed_price {
        Some(fixed) => {
            let amount = fixed_price_per_period(fixed, plan.billing_schedule);
            (1, amount, amount, true)
        }
        None => {
            let unit = plan.price_per_license.ok_or_else(|| missing_price(plan))?;
            (licenses, unit, checked_mul(licenses, unit)?, false)
        }
    };
    Ok(LineDraft {
        kind: LineKind::Renewal,
        description: format!("{} - renewal", plan.name()),
        quantity,
        unit_amount: unit,
        amount,
        amount_only,
        period_start: e.event_time,
        period_end,
        ledger_entry_id: Some(e.id),
    })
}

/// The lines of `invoice_plan(plan, t)` for a plan after its end-of-cycle updates. `entries` are
/// the plan's ledger entries (any order, any time); those after `invoiced_through` with
/// `event_time ≤ t` are scanned in id order.
pub fn invoice_lines(
    plan: &Plan,
    customer: &Customer,
    entries: &[LedgerEntry],
    t: Ts,
) -> Result<InvoiceDraft, BillingError> {
    let mut draft = InvoiceDraft {
        invoiced_through: plan.invoiced_through,
        ..InvoiceDraft::default()
    };
    if !plan.tier.is_paid() {
        return Ok(draft);
    }
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.id);
    let mut base = licenses_invoiced_through(plan, &sorted)?;
    let after = plan.invoiced_through.unwrap_or(i64::MIN);
    let name = plan.name();
    let schedule = plan.billing_schedule;
    let price = plan.price_per_license;

    // The pending addition line, and whether a renewal was scanned since it started (same-day additions around a renewal stay apart).
    let mut pending: Option<(LineDraft, bool)> = None;
    let mut renewal_period: Option<(Ts, Ts)> = None;
    for e in sorted
        .into_iter()
        .filter(|e| e.id > after && e.event_time <= t)
    {
        let period_end = renewal_or_end_date(
            plan.billing_cycle_anchor,
            schedule,
            plan.end_date,
            e.event_time,
        )?;
        let licenses = i64::from(e.licenses);
        if e.is_renewal {
            draft.lines.push(renewal_line(plan, e, period_end)?);
            renewal_period.get_or_insert((e.event_time, period_end));
            if let Some((_, sealed)) = pending.as_mut() {
                *sealed = true;
            }
        } else if let (None, Some(b)) = (plan.fixed_price, base) {
            if licenses != b {
                let added = licenses - b;
                if added < 0 {
                    return Err(BillingError::MissingData(format!(
                        "ledger entry {} lowers licenses within a period ({b} → {licenses})",
                        e.id
                    )));
                }
                let same_day = pending.as_ref().is_some_and(|(p, sealed)| {
                    !sealed && p.period_start.date_naive() == e.event_time.date_naive()
                });
                if same_day {
                    if let Some((p, _)) = pending.as_mut() {
                        p.quantity += added;
                        p.amount = checked_mul(p.quantity, p.unit_amount)?;
                    }
                } else {
                    if let Some((p, _)) = pending.take() {
                        draft.lines.push(p);
                    }
                    let unit = addition_unit_price(
                        plan,
                        price.ok_or_else(|| missing_price(plan))?,
                        entries,
                        e,
                    )?;
                    pending = Some((
                        LineDraft {
                            kind: LineKind::Addition,
                            description: format!("Additional {name} license"),
                            quantity: added,
                            unit_amount: unit,
                            amount: checked_mul(added, unit)?,
                            amount_only: false,
                            period_start: e.event_time,
                            period_end,
                            ledger_entry_id: Some(e.id),
                        },
                        false,
                    ));
                }
            }
        }
        base = Some(licenses);
        draft.invoiced_through = Some(e.id);
    }
    if let Some((p, _)) = pending.take() {
        draft.lines.push(p);
    }

    if let Some(period) = renewal_period {
        discount_and_credit_lines(plan, customer, period, &mut draft)?;
    }
    Ok(draft)
}

/// The lines that ride on an invoice with a renewal line, over the renewal's period: the
/// self-hosted new-customer discount (docs/RULES.md §2, "Flat discount") and the credit of a tier
/// upgrade (docs/RULES.md §4.5, on the new plan's first renewal).
fn discount_and_credit_lines(
    plan: &Plan,
    customer: &Customer,
    (start, end): (Ts, Ts),
    draft: &mut InvoiceDraft,
) -> Result<(), BillingError> {
    if customer.kind == CustomerKind::SelfHosted
        && plan.fixed_price.is_none()
        && customer.flat_discounted_months > 0
    {
        let per_invoice = if plan.billing_schedule == BillingSchedule::Annual {
            12
        } else {
            1
        };
        let months = customer.flat_discounted_months.min(per_invoice);
        let amount = -checked_mul(customer.flat_discount, i64::from(months))?;
        draft.lines.push(LineDraft {
            kind: LineKind::FlatDiscount,
            description: format!(
                "{}/month new customer discount",
                format_dollars(customer.flat_discount)
            ),
            quantity: 1,
            unit_amount: amount,
            amount,
            amount_only: true,
            period_start: start,
            period_end: end,
            ledger_entry_id: None,
        });
        draft.flat_months_used = months;
    }
    if plan.credit > 0 {
        draft.lines.push(LineDraft {
            kind: LineKind::Credit,
            description: CREDIT_DESCRIPTION.to_string(),
            quantity: 1,
            unit_amount: -plan.credit,
            amount: -plan.credit,
            amount_only: true,
            period_start: start,
            period_end: end,
            ledger_entry_id: None,
        });
        draft.credit_used = plan.credit;
    }
    Ok(())
}

fn checked_mul(a: i64, b: i64) -> Result<i64, BillingError> {
    a.checked_mul(b).ok_or(BillingError::AmountOverflow)
}
