//! Text output of the commands, and how an [`Output`] is printed. The JSON shapes live in
//! [`crate::views`] and the reports themselves.

use std::io::Write;

use serde::Serialize;

use crate::db::models::PassRunRow;
use crate::error::{invalid, AppError};
use crate::jobs::preview::Preview;
use crate::jobs::PassReport;
use crate::views::InvoiceView;

/// What a command printed: a JSON document, and its human rendering.
pub struct Output {
    pub json: serde_json::Value,
    pub text: String,
    pub exit_code: i32,
}

pub(super) fn out<T: Serialize>(value: &T, text: String) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

pub(super) fn pretty<T: Serialize>(value: &T) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

pub(super) fn render_preview(p: &Preview) -> String {
    let mut s = format!(
        "plan {} at {} ({} → {}){}",
        p.plan_id,
        p.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        p.status_before,
        p.status_after,
        if p.invoices.is_empty() {
            ": no invoice"
        } else {
            ""
        }
    );
    for c in &p.changes {
        s.push_str(&format!(
            "\nchange: {} on plan {}{}",
            c.kind,
            c.plan_id,
            c.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    for i in &p.invoices {
        s.push('\n');
        s.push_str(&render_invoice(i));
    }
    if let Some(w) = &p.waiting {
        s.push_str(&format!("\nwaiting: {w}"));
    }
    s
}

/// `status` as text, from its JSON document.
pub(super) fn render_status(doc: &serde_json::Value, last: Option<&PassRunRow>) -> String {
    let list = |key: &str| doc[key].as_array().map(Vec::as_slice).unwrap_or_default();
    let count = |key: &str| list(key).len();
    let ts = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut text = format!(
        "due plans: {}\nleased plans: {}\nplans needing attention: {}\nplans waiting to retry: {}\nunsent invoices: {}\noldest overdue plan: {}\nlast pass: {}",
        count("due"),
        count("leased"),
        count("needs_attention"),
        count("retrying"),
        doc["unsent_invoices"]["count"],
        match &doc["oldest_overdue"] {
            serde_json::Value::Null => "none".to_string(),
            o => format!(
            "plan {} due since {}",
            o["plan_id"],
            ts(&o["next_invoice_date"])
        ),
        },
        last.map_or("never".to_string(), |p| format!(
            "as of {} ({} considered, {} invoiced, {} invoices, {} need attention, {} failed)",
            p.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            p.plans_considered,
            p.plans_invoiced,
            p.invoices,
            p.needs_attention,
            p.failures
        ))
    );
    for r in list("retrying") {
        text.push_str(&format!(
            "\n  retry: plan {} at {} after {} error(s): {}",
            r["plan_id"],
            ts(&r["next_retry_at"]),
            r["error_count"],
            r["last_error"].as_str().unwrap_or("")
        ));
    }
    for a in list("needs_attention") {
        text.push_str(&format!(
            "\n  attention: plan {}: {}",
            a["plan_id"],
            a["needs_attention"].as_str().unwrap_or("")
        ));
    }
    text
}

fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", v.abs() / 100, v.abs() % 100)
}

pub(super) fn render_invoice(i: &InvoiceView) -> String {
    let mut s = format!(
        "invoice {} plan {} customer {} at {} [{}] total {}",
        i.id,
        i.plan_id,
        i.customer_id,
        i.event_time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        i.status,
        cents(i.total_cents)
    );
    for l in &i.lines {
        s.push_str(&format!(
            "\n  {:<45} {:>4} x {:>10} = {:>12}  {} .. {}",
            l.description,
            l.quantity,
            cents(l.unit_amount_cents),
            cents(l.amount_cents),
            l.period_start.date_naive(),
            l.period_end.date_naive()
        ));
    }
    s
}

pub(super) fn render_report(r: &PassReport) -> String {
    let mut s = format!(
        "pass at {}{}: {} plans considered, {} invoiced, {} invoices, {} need attention, {} failed ({} ms)",
        r.now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        if r.dry_run { " (dry run)" } else { "" },
        r.plans_considered,
        r.plans_invoiced,
        r.invoices_sent,
        r.needs_attention_count,
        r.failures_count,
        r.duration_ms
    );
    for i in &r.invoices {
        s.push('\n');
        s.push_str(&render_invoice(i));
    }
    if r.invoices_sent > r.invoices.len() {
        s.push_str(&format!(
            "\n… and {} more invoices (`invoices list` shows them all)",
            r.invoices_sent - r.invoices.len()
        ));
    }
    if r.stripe_unreachable {
        s.push_str("\nStripe could not be reached: the pass stopped claiming plans; the plans in flight were released and are retried by a later pass");
    }
    for a in &r.needs_attention {
        s.push_str(&format!(
            "\nneeds attention: plan {} (customer {}): {}",
            a.plan_id, a.customer_id, a.reason
        ));
    }
    if r.needs_attention_count > r.needs_attention.len() {
        s.push_str(&format!(
            "\n… and {} more plans that need attention (`status` lists them)",
            r.needs_attention_count - r.needs_attention.len()
        ));
    }
    for f in &r.failures {
        s.push_str(&format!(
            "\nfailed: plan {} (customer {}): {}",
            f.plan_id, f.customer_id, f.error
        ));
    }
    if r.failures_count > r.failures.len() {
        s.push_str(&format!(
            "\n… and {} more failed plans (`status` lists those waiting to retry)",
            r.failures_count - r.failures.len()
        ));
    }
    s
}

/// Prints an output the way `--json` asks.
pub fn print(output: &Output, json: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        writeln!(stdout, "{}", output.json)
    } else {
        writeln!(stdout, "{}", output.text)
    };
    if written.is_err() {
        // stdout closed (a pipe); nothing sensible left to do.
    }
}
