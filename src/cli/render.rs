//! The pass report's text, and how an [`Output`] is printed. The admin commands' text is
//! [`crate::admin`]'s; the JSON shapes live in [`crate::views`] and the reports themselves.

use std::io::Write;

use crate::admin::render_invoice;
use crate::admin::Output;
use crate::jobs::PassReport;

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
