//! What an admin command returns: its JSON document (the CLI's `--json`, the API's body) and
//! its text rendering.

use serde::Serialize;

use crate::domain::Ts;
use crate::error::{invalid, AppError};
use crate::jobs::preview::Preview;
use crate::views::{InvoiceView, StatusView};

/// What a command printed: a JSON document, and its human rendering.
pub struct Output {
    pub json: serde_json::Value,
    pub text: String,
    pub exit_code: i32,
}

pub(crate) fn out<T: Serialize>(value: &T, text: String) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

pub(crate) fn pretty<T: Serialize>(value: &T) -> Result<Output, AppError> {
    let json =
        serde_json::to_value(value).map_err(|e| invalid(format!("cannot render output: {e}")))?;
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    Ok(Output {
        json,
        text,
        exit_code: 0,
    })
}

pub(crate) fn render_preview(p: &Preview) -> String {
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

/// `status` as text.
pub(crate) fn render_status(v: &StatusView) -> String {
    let ts = |t: Option<Ts>| {
        t.map_or("-".to_string(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        })
    };
    let mut text = format!(
        "installation: {}\ndue plans: {}\nleased plans: {}\nplans needing attention: {}\nplans waiting to retry: {}\nunsent invoices: {}\noldest overdue plan: {}\nlast pass: {}",
        v.installation,
        v.due.len(),
        v.leased.len(),
        v.needs_attention.len(),
        v.retrying.len(),
        v.unsent_invoices.count,
        v.oldest_overdue.as_ref().map_or("none".to_string(), |o| format!(
            "plan {} due since {}",
            o.plan_id,
            ts(o.next_invoice_date)
        )),
        v.last_pass.as_ref().map_or("never".to_string(), |p| format!(
            "as of {} ({} considered, {} invoiced, {} invoices, {} need attention, {} failed)",
            ts(Some(p.now)),
            p.plans_considered,
            p.plans_invoiced,
            p.invoices,
            p.needs_attention,
            p.failures
        ))
    );
    for r in &v.retrying {
        text.push_str(&format!(
            "\n  retry: plan {} at {} after {} error(s): {}",
            r.plan_id,
            ts(r.next_retry_at),
            r.error_count,
            r.last_error.as_deref().unwrap_or("")
        ));
    }
    for a in &v.needs_attention {
        text.push_str(&format!(
            "\n  attention: plan {}: {}",
            a.plan_id,
            a.needs_attention.as_deref().unwrap_or("")
        ));
    }
    let unpaid = &v.unpaid_invoices;
    if let (true, Some(oldest)) = (unpaid.count > 0, &unpaid.oldest) {
        text.push_str(&format!(
            "\nunpaid invoices: {} for {} (oldest: invoice {} of customer {}, due {})",
            unpaid.count,
            cents(unpaid.amount_cents),
            oldest.invoice_id,
            oldest.customer_id,
            ts(Some(oldest.event_time))
        ));
    }
    for a in &v.overdue {
        text.push_str(&format!(
            "\n  overdue: customer {} ({}): {} unpaid invoices{}{}",
            a.customer_id,
            a.action.unwrap_or("-"),
            a.invoices.len(),
            a.seats.map(|s| format!(", {s} seats")).unwrap_or_default(),
            a.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    text
}

fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", v.abs() / 100, v.abs() % 100)
}

pub(crate) fn render_invoice(i: &InvoiceView) -> String {
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
