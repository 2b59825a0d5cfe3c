//! Worked examples (Zulip's test vectors) and the invariants of docs/RULES.md, on the pure core.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::cycle::{end_of_cycle, plan_parameters, EndOfCycle};
use super::dates::{self, add_months, start_of_next_billing_cycle};
use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2012, 1, 2, 3, 4, 5)
        .single()
        .unwrap_or_default()
}

fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

fn cloud() -> Customer {
    Customer::new(1, "Acme", CustomerKind::Cloud)
}

/// An active annual plan, for other modules' tests.
pub(crate) fn plan_for_tests() -> Plan {
    plan(BillingSchedule::Annual)
}

fn plan(schedule: BillingSchedule) -> Plan {
    Plan {
        id: 1,
        customer_id: 1,
        tier: Tier::CloudStandard,
        status: PlanStatus::Active,
        billing_schedule: schedule,
        fixed_price: None,
        price_per_license: Some(if schedule == BillingSchedule::Annual {
            8000
        } else {
            800
        }),
        discount: None,
        automanage_licenses: true,
        charge_automatically: true,
        billing_cycle_anchor: t0(),
        next_invoice_date: Some(t0() + Duration::days(31)),
        invoiced_through: Some(1),
        end_date: None,
        invoicing_status: InvoicingStatus::Done,
        stale_audit_log_data_email_sent: false,
        reminder_to_review_plan_email_sent: false,
        needs_attention: None,
        credit: 0,
    }
}

fn entry(id: i64, renewal: bool, at: DateTime<Utc>, licenses: i32, next: i32) -> LedgerEntry {
    LedgerEntry {
        id,
        plan_id: 1,
        is_renewal: renewal,
        event_time: at,
        licenses,
        licenses_at_next_renewal: Some(next),
    }
}

fn summary(d: &InvoiceDraft) -> Vec<(&str, i64, i64, i64, i64, i64)> {
    d.lines
        .iter()
        .map(|l| {
            (
                l.kind.name(),
                l.quantity,
                l.unit_amount,
                l.amount,
                l.period_start.timestamp(),
                l.period_end.timestamp(),
            )
        })
        .collect()
}

/// S22: one step at T0+400d gives renewal, +3 and +1 in that creation order.
#[test]
fn s22_additions_renewal_and_addition_after_renewal() {
    let ny = Utc
        .with_ymd_and_hms(2013, 1, 2, 3, 4, 5)
        .single()
        .unwrap_or_default();
    let ledger = vec![
        entry(1, true, t0(), 6, 6),
        entry(2, false, day(100), 9, 9),
        entry(3, false, day(200), 9, 6),
        entry(4, false, day(300), 9, 7),
    ];
    let p = plan(BillingSchedule::Annual);
    // The end-of-cycle update at T0+400d renews at NY with 7 licenses.
    assert_eq!(
        end_of_cycle(&p, &cloud(), &ledger, None, day(400)).ok(),
        Some(EndOfCycle::Renew {
            at: ny,
            licenses: 7
        })
    );
    let mut ledger = ledger;
    ledger.push(entry(5, true, ny, 7, 7));
    ledger.push(entry(6, false, day(400), 8, 8));
    ledger.push(entry(7, false, day(500), 9, 9));
    let draft = invoice_lines(&p, &cloud(), &ledger, day(400)).unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![
            ("renewal", 7, 8000, 56000, 1357095845, 1388631845),
            ("addition", 3, 5814, 17442, 1334113445, 1357095845),
            ("addition", 1, 7255, 7255, 1360033445, 1388631845),
        ]
    );
    assert_eq!(draft.total(), 80697);
    assert_eq!(draft.invoiced_through, Some(6)); // the T0+500d entry waits for a later step
    assert_eq!(draft.lines[0].description, "Zulip Cloud Standard - renewal");
    assert_eq!(
        draft.lines[1].description,
        "Additional Zulip Cloud Standard license"
    );
}

/// S26: a guest promoted to member adds one prorated license.
#[test]
fn s26_one_prorated_license() {
    let ledger = vec![
        entry(1, true, t0(), 6, 6),
        entry(2, false, day(5), 6, 6),
        entry(3, false, day(10), 7, 7),
    ];
    let draft = invoice_lines(&plan(BillingSchedule::Annual), &cloud(), &ledger, day(31))
        .unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![(
            "addition",
            1,
            7781,
            7781,
            day(10).timestamp(),
            day(366).timestamp()
        )]
    );
}

/// S25: nothing to invoice at NM.
#[test]
fn s25_no_lines() {
    let draft = invoice_lines(
        &plan(BillingSchedule::Annual),
        &cloud(),
        &[entry(1, true, t0(), 6, 6)],
        day(31),
    )
    .unwrap_or_default();
    assert!(draft.lines.is_empty());
    assert_eq!(draft.invoiced_through, Some(1));
}

/// S08: the card trial ends at FTE, then renews 15 × 8000; a later addition is prorated.
#[test]
fn s08_free_trial_end() {
    let params = plan_parameters(
        Tier::CloudStandard,
        BillingSchedule::Annual,
        None,
        t0(),
        Some(60),
    )
    .ok();
    let fte = day(60);
    assert_eq!(params.as_ref().map(|p| p.next_invoice_date), Some(fte));
    let mut p = plan(BillingSchedule::Annual);
    p.status = PlanStatus::FreeTrial;
    p.next_invoice_date = Some(fte);
    let ledger = vec![
        entry(1, true, t0(), 6, 6),
        entry(2, false, t0(), 12, 12),
        entry(3, false, day(31), 15, 15),
    ];
    assert_eq!(
        end_of_cycle(&p, &cloud(), &ledger, None, day(31)).ok(),
        Some(EndOfCycle::Nothing)
    );
    assert_eq!(
        end_of_cycle(&p, &cloud(), &ledger, None, fte).ok(),
        Some(EndOfCycle::EndTrial {
            at: fte,
            licenses: 15,
            invoiced_through: 3
        })
    );
    // After the trial: anchor FTE, ACTIVE, renewal at FTE.
    p.status = PlanStatus::Active;
    p.billing_cycle_anchor = fte;
    p.invoiced_through = Some(3);
    let mut ledger = ledger;
    ledger.push(entry(4, true, fte, 15, 15));
    let draft = invoice_lines(&p, &cloud(), &ledger, fte).unwrap_or_default();
    let fte_next = add_months(fte, 12).unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![(
            "renewal",
            15,
            8000,
            120000,
            fte.timestamp(),
            fte_next.timestamp()
        )]
    );
    // Ten months later, 4 more seats: 4 × 1293 = 5172.
    p.invoiced_through = Some(4);
    let later = add_months(fte, 10).unwrap_or_default();
    ledger.push(entry(5, false, later, 19, 19));
    let draft = invoice_lines(&p, &cloud(), &ledger, later).unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![(
            "addition",
            4,
            1293,
            5172,
            later.timestamp(),
            fte_next.timestamp()
        )]
    );
}

/// S14: a downgrade at the end of the cycle ends the plan, leftover additions are billed.
#[test]
fn s14_downgrade_at_end_of_cycle() {
    let mut p = plan(BillingSchedule::Annual);
    p.status = PlanStatus::DowngradeAtEndOfCycle;
    let ledger = vec![entry(1, true, t0(), 6, 6), entry(2, false, t0(), 20, 20)];
    let draft = invoice_lines(&p, &cloud(), &ledger, day(31)).unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![(
            "addition",
            14,
            8000,
            112000,
            t0().timestamp(),
            day(366).timestamp()
        )]
    );
    assert!(matches!(
        end_of_cycle(&p, &cloud(), &ledger, None, day(366)),
        Ok(EndOfCycle::Downgrade {
            close_ledger: false,
            ..
        })
    ));
}

/// Additions on the same day before and after a renewal stay separate lines.
#[test]
fn d3_bundling_never_crosses_a_renewal() {
    let mut p = plan(BillingSchedule::Monthly);
    p.price_per_license = Some(800);
    let boundary = add_months(t0(), 1).unwrap_or_default();
    let morning = boundary - Duration::hours(1);
    let evening = boundary + Duration::hours(1);
    let ledger = vec![
        entry(1, true, t0(), 6, 6),
        entry(2, false, morning, 7, 7),
        entry(3, true, boundary, 7, 7),
        entry(4, false, evening, 8, 8),
        entry(5, false, evening + Duration::minutes(5), 9, 9),
    ];
    let draft =
        invoice_lines(&p, &cloud(), &ledger, evening + Duration::hours(1)).unwrap_or_default();
    let kinds: Vec<_> = draft
        .lines
        .iter()
        .map(|l| (l.kind.name(), l.quantity))
        .collect();
    assert_eq!(
        kinds,
        vec![("renewal", 7), ("addition", 1), ("addition", 2)]
    );
}

#[test]
fn fixed_price_renewals_and_flat_discount() {
    let mut p = plan(BillingSchedule::Monthly);
    p.fixed_price = Some(170000);
    p.price_per_license = None;
    p.invoiced_through = None;
    let ledger = vec![entry(1, true, t0(), 6, 6), entry(2, false, day(3), 9, 9)];
    let draft = invoice_lines(&p, &cloud(), &ledger, day(31)).unwrap_or_default();
    assert_eq!(
        summary(&draft),
        vec![(
            "renewal",
            1,
            14167,
            14167,
            t0().timestamp(),
            day(31).timestamp()
        )]
    );

    let mut c = Customer::new(2, "Self", CustomerKind::SelfHosted);
    c.flat_discounted_months = 12;
    let mut p = plan(BillingSchedule::Annual);
    p.tier = Tier::SelfHostedBasic;
    p.price_per_license = Some(4200);
    p.invoiced_through = None;
    let draft = invoice_lines(&p, &c, &[entry(1, true, t0(), 10, 10)], t0()).unwrap_or_default();
    assert_eq!(draft.total(), 42000 - 24000);
    assert_eq!(draft.flat_months_used, 12);
    assert_eq!(
        draft.lines[1].description,
        "$20.00/month new customer discount"
    );
}

#[test]
fn renewal_blocked_below_minimum() {
    let mut p = plan(BillingSchedule::Annual);
    p.tier = Tier::CloudPlus;
    let ledger = vec![entry(1, true, t0(), 6, 6)];
    assert!(matches!(
        end_of_cycle(&p, &cloud(), &ledger, None, day(366)),
        Err(BillingError::BelowMinimumLicenses {
            licenses: 6,
            minimum: 10
        })
    ));
}

fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
}

proptest! {
    /// Boundaries never drift: every boundary is add_months of the anchor, and the k-th
    /// boundary keeps the anchor's time of day and a day no later than the anchor's.
    #[test]
    fn boundaries_never_drift(anchor in arb_instant(), k in 0i64..400) {
        let b = add_months(anchor, k).unwrap_or_default();
        prop_assert_eq!(b.time(), anchor.time());
        prop_assert!(chrono::Datelike::day(&b) <= chrono::Datelike::day(&anchor));
        let next = start_of_next_billing_cycle(anchor, BillingSchedule::Monthly, b).unwrap_or_default();
        prop_assert_eq!(next, add_months(anchor, k + 1).unwrap_or_default());
    }

    /// A prorated unit price never exceeds the full price, and the lines sum to the total.
    #[test]
    fn additions_prorate_within_price(adds in proptest::collection::vec((1i64..365, 0i32..20), 1..12), annual in any::<bool>()) {
        let schedule = if annual { BillingSchedule::Annual } else { BillingSchedule::Monthly };
        let p = plan(schedule);
        let price = p.price_per_license.unwrap_or_default();
        let mut ledger = vec![entry(1, true, t0(), 5, 5)];
        let mut licenses = 5;
        let mut offsets: Vec<_> = adds.clone();
        offsets.sort();
        for (i, (offset, more)) in offsets.iter().enumerate() {
            licenses += more;
            ledger.push(entry(i as i64 + 2, false, t0() + Duration::hours(*offset * 20), licenses, licenses));
        }
        let horizon = t0() + Duration::days(31);
        let draft = invoice_lines(&p, &cloud(), &ledger, horizon).unwrap_or_default();
        let total: i64 = draft.lines.iter().map(|l| l.quantity * l.unit_amount).sum();
        prop_assert_eq!(total, draft.total());
        for l in &draft.lines {
            prop_assert!(l.unit_amount <= price && l.unit_amount >= 0);
            prop_assert!(l.period_start < l.period_end);
        }
    }

    /// Licenses never fall within a period: a ledger that lowers them is refused, not billed.
    #[test]
    fn licenses_never_fall_within_a_period(drop in 1i32..5) {
        let ledger = vec![entry(1, true, t0(), 10, 10), entry(2, false, day(3), 10 - drop, 10 - drop)];
        prop_assert!(invoice_lines(&plan(BillingSchedule::Annual), &cloud(), &ledger, day(31)).is_err());
    }
}

/// Zulip's `get_amount_to_credit_for_plan_tier_change`: the newest renewal's licenses × the price
/// × the unused fraction of its period, rounded up; additions are not credited (Zulip's test: a
/// monthly Standard plan of 9 licenses at 800 upgraded at its anchor gets 7200 back).
#[test]
fn tier_change_credit_is_zulips() {
    use super::cycle::{is_upgrade, tier_change_credit};
    let p = plan(BillingSchedule::Monthly);
    let renewal = [entry(1, true, t0(), 9, 9)];
    let credit =
        |entries: &[LedgerEntry], at| tier_change_credit(&p, entries, at, None).unwrap_or(-1);
    assert_eq!(credit(&renewal, t0()), 7200);
    // Halfway through a 31-day January: half of it, to the cent.
    assert_eq!(
        credit(&renewal, t0() + Duration::seconds(31 * 86400 / 2)),
        3600
    );
    // 1,000,000 s of 2,678,400 unused: 7200 × 0.37336… = 2688.17 is rounded up, not half up.
    assert_eq!(
        credit(&renewal, t0() + Duration::seconds(2_678_400 - 1_000_000)),
        2689
    );
    // One second used: 7199.997… → 7200.
    assert_eq!(credit(&renewal, t0() + Duration::seconds(1)), 7200);
    // Licenses added on day 10 are not credited: 9 × 800 × 21/31 = 4877.4… → 4878.
    let added = [entry(1, true, t0(), 9, 9), entry(2, false, day(10), 12, 12)];
    assert_eq!(credit(&added, day(10)), 4878);
    // Never more than the renewal's own line billed (the price went up since: 9 × 500).
    assert_eq!(tier_change_credit(&p, &renewal, t0(), Some(4500)), Ok(4500));
    assert_eq!(tier_change_credit(&p, &renewal, t0(), Some(9000)), Ok(7200));
    assert!(is_upgrade(Tier::CloudStandard, Tier::CloudPlus));
    assert!(!is_upgrade(Tier::CloudPlus, Tier::CloudStandard));
    assert!(!is_upgrade(Tier::CloudStandard, Tier::SelfHostedBusiness));
    assert!(is_upgrade(Tier::SelfHostedBasic, Tier::SelfHostedBusiness));
}

proptest! {
    /// A tier upgrade's credit never exceeds what the period's renewal billed, never goes up as
    /// the period passes, and is the whole renewal at the period's start; additions never
    /// change it.
    #[test]
    fn credits_never_exceed_what_the_renewal_billed(
        annual in any::<bool>(),
        price in 1i64..20_000,
        licenses in 1i32..500,
        added in 0i32..50,
        a in 0i64..1_000_000_000,
        b in 0i64..1_000_000_000,
    ) {
        use super::cycle::tier_change_credit;
        let schedule = if annual { BillingSchedule::Annual } else { BillingSchedule::Monthly };
        let p = Plan {
            price_per_license: Some(price),
            ..plan(schedule)
        };
        let entries = [
            entry(1, true, t0(), licenses, licenses),
            entry(2, false, day(10), licenses + added, licenses + added),
        ];
        let end = start_of_next_billing_cycle(t0(), schedule, t0()).unwrap_or_default();
        let period = (end - t0()).num_seconds();
        let (x, y) = (a % period, b % period);
        let (early, late) = (x.min(y), x.max(y));
        let credit = |s: i64| tier_change_credit(&p, &entries, t0() + Duration::seconds(s), None).unwrap_or(-1);
        let billed = price * i64::from(licenses);
        prop_assert!(credit(early) >= credit(late));
        prop_assert!(credit(late) >= 0);
        prop_assert!(credit(early) <= billed, "credit {} > billed {}", credit(early), billed);
        prop_assert_eq!(credit(0), billed);
        prop_assert_eq!(
            tier_change_credit(&p, &entries[..1], t0() + Duration::seconds(late), None),
            Ok(credit(late))
        );
    }

}

/// One event of a random history.
#[derive(Debug, Clone)]
enum Event {
    Seats(i32),
    Discount(i64),
}

proptest! {
    /// A random year of seat changes and discount changes, invoiced month by month as the pass
    /// does, then a tier upgrade: no period is billed twice (one renewal line per period start,
    /// one addition line per ledger entry), no line is negative or priced above the plan's price
    /// at the time, and the upgrade's credit never exceeds what was billed for the period.
    #[test]
    fn a_random_history_keeps_the_invariants(
        events in proptest::collection::vec((1i64..330, prop_oneof![
            (1i32..40).prop_map(Event::Seats),
            (100i64..800).prop_map(Event::Discount),
        ]), 1..20),
        upgrade_after in 0i64..3_000_000,
    ) {
        use super::cycle::tier_change_credit;
        let customer = cloud();
        let mut p = plan(BillingSchedule::Monthly);
        let mut entries = vec![entry(1, true, t0(), 10, 10)];
        let mut events = events;
        events.sort_by_key(|(d, _)| *d);
        let mut lines: Vec<LineDraft> = vec![];
        let mut prices_at: Vec<(Ts, i64)> = vec![(t0(), 800)];
        let mut due = p.next_invoice_date.unwrap_or_default();
        let mut pending = events.into_iter().peekable();
        let horizon = day(335);
        while due <= horizon {
            // Events before this due date, in time order.
            while let Some((d, ev)) = pending.next_if(|(d, _)| day(*d) < due) {
                let at = day(d);
                let last = entries.last().cloned().unwrap_or_else(|| entry(1, true, t0(), 10, 10));
                match ev {
                    Event::Seats(n) => {
                        let id = entries.len() as i64 + 1;
                        entries.push(entry(id, false, at, last.licenses.max(n), n.max(1)));
                    }
                    Event::Discount(price) => {
                        p.price_per_license = Some(price);
                        prices_at.push((at, price));
                    }
                }
            }
            if let EndOfCycle::Renew { at, licenses } = end_of_cycle(&p, &customer, &entries, None, due).unwrap_or(EndOfCycle::Nothing) {
                let id = entries.len() as i64 + 1;
                entries.push(entry(id, true, at, licenses, licenses));
            }
            let draft = invoice_lines(&p, &customer, &entries, due).unwrap_or_default();
            p.invoiced_through = draft.invoiced_through;
            lines.extend(draft.lines);
            due = dates::next_invoice_date_after(p.billing_cycle_anchor, due).unwrap_or(horizon + Duration::days(1));
        }
        let max_price = prices_at.iter().map(|(_, pr)| *pr).max().unwrap_or(800);
        let mut renewals = std::collections::HashSet::new();
        let mut additions = std::collections::HashSet::new();
        for l in &lines {
            prop_assert!(l.amount >= 0 && l.unit_amount <= max_price, "{l:?}");
            match l.kind {
                LineKind::Renewal => prop_assert!(renewals.insert(l.period_start), "period billed twice: {l:?}"),
                LineKind::Addition => prop_assert!(additions.insert(l.ledger_entry_id), "entry billed twice: {l:?}"),
                _ => {}
            }
        }
        // Every month of the year was renewed (the simulation really ran).
        prop_assert!(renewals.len() >= 10, "{} renewals", renewals.len());
        // The upgrade, at or after the newest entry: the credit stays within the period's bill.
        let newest = entries.iter().map(|e| e.event_time).max().unwrap_or_default();
        let now = newest.max(due - Duration::days(31)) + Duration::seconds(upgrade_after);
        let renewal = entries.iter().filter(|e| e.is_renewal).max_by_key(|e| e.id).cloned().unwrap_or_else(|| entry(1, true, t0(), 10, 10));
        let renewal_line = lines.iter().find(|l| l.kind == LineKind::Renewal && l.period_start == renewal.event_time).map(|l| l.amount);
        let credit = tier_change_credit(&p, &entries, now, renewal_line).unwrap_or(-1);
        // What the period's renewal billed (the first period was paid at checkout, at 800).
        let billed = renewal_line.unwrap_or(800 * i64::from(renewal.licenses));
        prop_assert!(credit >= 0);
        prop_assert!(credit <= billed, "credit {credit} > billed {billed}");
        // The upgrade ends the plan at `now`, and its final invoice bills what it still owes:
        // an addition made just before (unbilled) is billed once, prorated up to the switch, and
        // no entry is billed twice over the whole history.
        let ended = Plan { status: PlanStatus::Ended, end_date: Some(now), ..p.clone() };
        // The renewals the pass had not reached yet come first, as the catch-up writes them.
        let step = |at| dates::start_of_next_billing_cycle(ended.billing_cycle_anchor, ended.billing_schedule, at);
        let last_renewal = entries.iter().filter(|e| e.is_renewal).map(|e| e.event_time).max().unwrap_or_default();
        let mut boundary = step(last_renewal).unwrap_or(now + Duration::days(1));
        while boundary <= now {
            let renewed = entries.last().map_or(10, |e| e.licenses_at_next_renewal.unwrap_or(e.licenses));
            let id = entries.len() as i64 + 1;
            entries.push(entry(id, true, boundary, renewed, renewed));
            boundary = step(boundary).unwrap_or(now + Duration::days(1));
        }
        let last = entries.last().cloned().unwrap_or_else(|| entry(1, true, t0(), 10, 10));
        let id = entries.len() as i64 + 1;
        entries.push(entry(id, false, now, last.licenses + 3, last.licenses + 3));
        let final_lines = invoice_lines(&ended, &customer, &entries, now).unwrap_or_default();
        let mut billed_entries = std::collections::HashSet::new();
        for l in lines.iter().chain(final_lines.lines.iter()) {
            if l.kind == LineKind::Addition {
                prop_assert!(billed_entries.insert(l.ledger_entry_id), "entry billed twice: {l:?}");
            }
        }
        prop_assert!(
            final_lines.lines.iter().any(|l| l.ledger_entry_id == Some(id) && l.period_end == now && l.quantity == 3),
            "the unbilled addition is billed up to the switch: {:?}", final_lines.lines
        );
    }
}
