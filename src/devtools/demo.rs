//! `demo`: a self-contained tour. An SQLite file in a fresh directory, the built-in Stripe
//! emulator in-process, a dozen customers covering the tiers, schedules, a free trial, a
//! fixed-price plan, a downgrade and switches; then a year of daily passes at 22:00 UTC and a
//! table of the invoices sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::db::repo::{self, InvoiceFilter, PlanFilter};
use crate::db::{Conn, Db, DbUrl};
use crate::devtools::emulator::Emulator;
use crate::domain::{BillingSchedule, CustomerKind, ScheduleChange, Tier, Ts};
use crate::error::{invalid, AppError};
use crate::jobs::{run_pass, PassOptions};
use crate::ops::{self, CustomerInput, PlanInput};
use crate::stripe::budget::Limits;
use crate::stripe::client::{StripeConfig, StripeGateway};
use crate::stripe::ApiKey;

#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub directory: PathBuf,
    pub database_url: String,
    pub customers: usize,
    pub passes: usize,
    pub invoices: usize,
    pub total_billed_cents: i64,
    pub stripe_invoices: usize,
    pub stripe_requests: usize,
    pub needs_attention: usize,
    pub failures: usize,
    pub billed_by_customer: BTreeMap<String, i64>,
}

fn at(date: &str, hour: u32) -> Result<Ts, AppError> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|e| invalid(format!("demo date {date}: {e}")))?;
    d.and_hms_opt(hour, 0, 0)
        .map(|n| Utc.from_utc_datetime(&n))
        .ok_or_else(|| invalid(format!("demo date {date}")))
}

fn customer(c: &mut Conn, name: &str, kind: &str, now: Ts) -> Result<i64, AppError> {
    let input = CustomerInput {
        name: name.into(),
        email: None,
        kind: CustomerKind::parse(kind)?,
        ..CustomerInput::default()
    };
    ops::create_customer(c, &input, now)
}

fn plan(
    c: &mut Conn,
    customer_id: i64,
    tier: &str,
    schedule: &str,
    licenses: i64,
    now: Ts,
    tweak: impl FnOnce(&mut PlanInput),
) -> Result<i64, AppError> {
    let mut input = PlanInput {
        automanage_licenses: true,
        ..PlanInput::new(
            customer_id,
            Tier::parse(tier)?,
            BillingSchedule::parse(schedule)?,
            licenses,
        )
    };
    tweak(&mut input);
    ops::create_plan(c, &input, now)
}

/// Runs the demo; returns the printed text and a summary.
pub async fn run(dir: Option<PathBuf>) -> Result<(String, DemoSummary), AppError> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("plan-invoicer-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
    let db_path = dir.join("demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
    }
    let url = DbUrl::Sqlite(db_path.clone());
    let mut conn = Conn::open(&url, true)?;
    conn.migrate()?;
    let c = &mut conn;

    let emulator = Emulator::new();
    let addr = emulator
        .start("127.0.0.1:0")
        .await
        .map_err(|e| invalid(format!("cannot start the Stripe emulator: {e}")))?;
    let key = ApiKey::new("sk_test_demo").ok_or_else(|| invalid("demo key"))?;
    let mut config = StripeConfig::new(key, Some(&format!("http://{addr}/")));
    config.limits = Limits {
        per_second: 10_000,
        per_endpoint: 10_000,
        in_flight: 64,
    };
    let gateway = std::sync::Arc::new(StripeGateway::new(config)?);
    let db = Db::connect(&url, 1)?;

    // The customers, all starting on 2025-01-06.
    let t0 = at("2025-01-06", 9)?;
    let acme = customer(c, "Acme Corp", "cloud", t0)?;
    let acme_plan = plan(c, acme, "cloud_standard", "annual", 25, t0, |_| {})?;
    let bolt = customer(c, "Bolt Labs", "cloud", t0)?;
    let bolt_plan = plan(c, bolt, "cloud_plus", "monthly", 12, t0, |_| {})?;
    let cobalt = customer(c, "Cobalt Design", "cloud", t0)?;
    let cobalt_plan = plan(c, cobalt, "cloud_standard", "monthly", 8, t0, |p| {
        p.automanage_licenses = false
    })?;
    let delta = customer(c, "Delta Trial", "cloud", t0)?;
    plan(c, delta, "cloud_standard", "annual", 15, t0, |p| {
        p.free_trial_days = Some(30)
    })?;
    let echo = customer(c, "Echo Studio", "cloud", t0)?;
    let echo_plan = plan(c, echo, "cloud_standard", "monthly", 6, t0, |_| {})?;
    let fjord = customer(c, "Fjord Shipping", "cloud", t0)?;
    let fjord_plan = plan(c, fjord, "cloud_plus", "monthly", 20, t0, |_| {})?;
    let gamma = customer(c, "Gamma Negotiated", "cloud", t0)?;
    let offer = ops::create_offer(c, gamma, Tier::CloudStandard, 120_000, None, t0)?;
    ops::accept_offer(c, offer, BillingSchedule::Monthly, Some(40), t0)?;
    let helix = customer(c, "Helix (self-hosted)", "self_hosted", t0)?;
    plan(c, helix, "self_hosted_basic", "monthly", 10, t0, |p| {
        p.first_invoice_by_worker = true
    })?;
    let ion = customer(c, "Ion (self-hosted)", "self_hosted", t0)?;
    // Paying by invoice: licenses bought, not following the seats.
    plan(c, ion, "self_hosted_business", "annual", 30, t0, |p| {
        p.invoice_billing = true;
        p.automanage_licenses = false;
    })?;
    let juno_input = CustomerInput {
        name: "Juno Nonprofit".into(),
        annual_discounted_price: Some(4000),
        required_plan_tier: Some(Tier::CloudStandard),
        ..CustomerInput::default()
    };
    let juno = ops::create_customer(c, &juno_input, t0)?;
    plan(c, juno, "cloud_standard", "annual", 50, t0, |p| {
        p.first_invoice_by_worker = true
    })?;
    let kilo = customer(c, "Kilo Robotics", "cloud", t0)?;
    let kilo_plan = plan(c, kilo, "cloud_standard", "annual", 9, t0, |_| {})?;
    let lumen = customer(c, "Lumen Media", "cloud", t0)?;
    let lumen_plan = plan(c, lumen, "cloud_standard", "monthly", 14, t0, |_| {})?;
    let self_hosted = [helix, ion];

    let mut passes = 0;
    let mut attention = 0;
    let mut failures = 0;
    let opts = PassOptions {
        worker_id: "demo".into(),
        ..PassOptions::default()
    };
    let mut day = t0.date_naive();
    let last = NaiveDate::from_ymd_opt(2026, 1, 10).ok_or_else(|| invalid("demo end"))?;
    while day <= last {
        let noon =
            Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).ok_or_else(|| invalid("noon"))?);
        // What happens during the year, on its day.
        match day.format("%m-%d").to_string().as_str() {
            "02-14" if day.year() == 2025 => {
                ops::report_seats(c, acme_plan, 31, noon)?;
            }
            "03-03" if day.year() == 2025 => {
                ops::buy_licenses(c, cobalt_plan, 12, noon)?;
            }
            "04-20" if day.year() == 2025 => {
                ops::schedule_change(c, echo_plan, ScheduleChange::DowngradeAtEndOfCycle, noon)?;
            }
            "05-11" if day.year() == 2025 => {
                ops::schedule_change(c, fjord_plan, ScheduleChange::SwitchToAnnual, noon)?;
            }
            "06-30" if day.year() == 2025 => {
                ops::report_seats(c, bolt_plan, 18, noon)?;
                ops::report_seats(c, acme_plan, 28, noon)?;
            }
            "07-15" if day.year() == 2025 => {
                ops::schedule_change(c, kilo_plan, ScheduleChange::SwitchToMonthly, noon)?;
            }
            "08-01" if day.year() == 2025 => {
                let end = at("2025-08-06", 9)?;
                ops::set_end_date(c, lumen_plan, end, noon)?;
                ops::schedule_successor(
                    c,
                    lumen_plan,
                    &ops::Successor {
                        fixed_price: Some(150_000),
                        ..ops::Successor::default()
                    },
                    noon,
                )?;
            }
            "09-19" if day.year() == 2025 => {
                ops::report_seats(c, acme_plan, 40, noon)?;
            }
            _ => {}
        }
        for id in self_hosted {
            ops::report_usage(c, id, None, noon)?;
        }
        let evening = Utc.from_utc_datetime(
            &day.and_hms_opt(22, 0, 0)
                .ok_or_else(|| invalid("evening"))?,
        );
        let report = run_pass(&db, Some(gateway.clone()), evening, &opts).await?;
        passes += 1;
        attention += report.needs_attention_count;
        failures += report.failures_count;
        day += Duration::days(1);
    }

    // The table of invoices sent.
    let invoices = repo::list_invoices(c, &InvoiceFilter::default())?;
    let mut names = BTreeMap::new();
    for id in [
        acme, bolt, cobalt, delta, echo, fjord, gamma, helix, ion, juno, kilo, lumen,
    ] {
        names.insert(id, ops::customer(c, id)?.name);
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<22} {:>4}  {:<21} {:<23}  {:>5}  {:>11}",
        "customer", "plan", "tier", "period", "lines", "total"
    );
    let _ = writeln!(text, "{}", "-".repeat(95));
    let mut billed: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    for r in &invoices {
        let inv = &r.invoice;
        let name = names.get(&inv.customer_id.0).cloned().unwrap_or_default();
        let tier = ops::plan(c, inv.plan_id.0)?.plan.tier.name();
        let start = r
            .lines
            .iter()
            .map(|l| l.period_start)
            .min()
            .unwrap_or(inv.event_time);
        let end = r
            .lines
            .iter()
            .map(|l| l.period_end)
            .max()
            .unwrap_or(inv.event_time);
        let _ = writeln!(
            text,
            "{:<22} {:>4}  {:<21} {} .. {}  {:>5}  {:>11}",
            name,
            inv.plan_id,
            tier,
            start.date_naive(),
            end.date_naive(),
            r.lines.len(),
            dollars(inv.total_cents)
        );
        for l in &r.lines {
            let _ = writeln!(
                text,
                "{:>30} {:<44} {:>4} x {:>10} = {:>11}",
                "",
                l.description,
                l.quantity,
                dollars(l.unit_amount_cents),
                dollars(l.amount_cents)
            );
        }
        *billed.entry(name).or_default() += inv.total_cents;
        total += inv.total_cents;
    }
    let ended = repo::list_plans(
        c,
        &PlanFilter {
            status: Some(crate::domain::PlanStatus::Ended),
            ..PlanFilter::default()
        },
    )?
    .len();
    let summary = DemoSummary {
        directory: dir.clone(),
        database_url: url.redacted(),
        customers: names.len(),
        passes,
        invoices: invoices.len(),
        total_billed_cents: total,
        stripe_invoices: emulator.invoices().len(),
        stripe_requests: emulator.requests().len(),
        needs_attention: attention,
        failures,
        billed_by_customer: billed.clone(),
    };
    let _ = writeln!(text, "{}", "-".repeat(95));
    let _ = writeln!(text, "billed by customer:");
    for (name, cents) in &billed {
        let _ = writeln!(text, "  {name:<24} {:>12}", dollars(*cents));
    }
    let _ = writeln!(
        text,
        "\n{} customers, {} daily passes, {} invoices ({} in the Stripe emulator, {} Stripe requests), {} billed; {} plans ended; {} plans needed attention, {} failures.\ndatabase: {}  (try: plan-invoicer --database-url {} invoices list)",
        summary.customers,
        passes,
        summary.invoices,
        summary.stripe_invoices,
        summary.stripe_requests,
        dollars(total),
        ended,
        attention,
        failures,
        db_path.display(),
        url.redacted()
    );
    Ok((text, summary))
}

fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let whole = abs / 100;
    let mut grouped = String::new();
    for (i, ch) in whole.to_string().chars().rev().enumerate() {
        if i > 0 && i % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!(
        "{sign}${}.{:02}",
        grouped.chars().rev().collect::<String>(),
        abs % 100
    )
}
