//! The overview pages: what needs attention, and revenue.

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use maud::html;

use super::actions::retry_form;
use super::html::{money, months_chart, page, when, when_opt};
use super::session::Viewer;
use super::{ConsoleState, Failure};

/// Plans parked or failing, unpaid invoices, and what the overdue policy would do next: the
/// same facts as `status`.
pub async fn attention(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, Failure> {
    let now = state.clock.now();
    let s = state
        .run(move |c| crate::admin::status_view(c, now))
        .await?;
    let customer = |id: i64| html! { a href=(format!("/customers/{id}")) { "customer " (id) } };
    let body = html! {
        section class="card" aria-labelledby="parked" {
            h2 id="parked" { "Plans that need attention (" (s.needs_attention.len()) ")" }
            @if s.needs_attention.is_empty() { p { "None." } } @else {
                table {
                    thead { tr { th scope="col" { "Plan" } th scope="col" { "Customer" } th scope="col" { "Why" } th scope="col" { "Next invoice" } th scope="col" { "Retry" } } }
                    tbody { @for p in &s.needs_attention {
                        tr { td { (p.plan_id) } td { (customer(p.customer_id)) } td class="bad" { (p.needs_attention.as_deref().unwrap_or("")) } td { (when_opt(p.next_invoice_date)) } td { (retry_form(p.plan_id, &viewer)) } }
                    } }
                }
                p { "Fix the cause first: retrying lets the next pass invoice the plan at once." }
            }
        }
        section class="card" aria-labelledby="failing" {
            h2 id="failing" { "Plans failing and retrying (" (s.retrying.len()) ")" }
            @if s.retrying.is_empty() { p { "None." } } @else {
                table {
                    thead { tr { th scope="col" { "Plan" } th scope="col" { "Customer" } th scope="col" { "Last error" } th scope="col" class="num" { "Errors" } th scope="col" { "Next try" } th scope="col" { "Retry" } } }
                    tbody { @for p in &s.retrying {
                        tr { td { (p.plan_id) } td { (customer(p.customer_id)) } td class="bad" { (p.last_error.as_deref().unwrap_or("")) } td class="num" { (p.error_count) } td { (when_opt(p.next_retry_at)) } td { (retry_form(p.plan_id, &viewer)) } }
                    } }
                }
            }
        }
        section class="card" aria-labelledby="unpaid" {
            h2 id="unpaid" { "Unpaid invoices" }
            p { (s.unpaid_invoices.count) " invoices, " (money(s.unpaid_invoices.amount_cents)) " open or uncollectible"
                @if let Some(o) = &s.unpaid_invoices.oldest { "; the oldest: " a href=(format!("/invoices/{}", o.invoice_id)) { "invoice " (o.invoice_id) } " of " (when(o.event_time)) } "." }
        }
        section class="card" aria-labelledby="overdue" {
            h2 id="overdue" { "What the overdue policy would do now" }
            @if s.overdue.is_empty() { p { "Nothing." } } @else {
                table {
                    thead { tr { th scope="col" { "Customer" } th scope="col" { "Action" } th scope="col" { "Invoices" } th scope="col" { "Why" } } }
                    tbody { @for o in &s.overdue {
                        tr { td { (customer(o.customer_id)) } td { (o.action.unwrap_or("—")) } td { (o.invoices.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")) } td { (o.reason.as_deref().unwrap_or("")) } }
                    } }
                }
            }
        }
    };
    Ok(Html(page("Attention", Some(&viewer), body).into_string()))
}

/// ARR and MRR by tier, billed and paid per month, plans by status: `report revenue`.
pub async fn revenue(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, Failure> {
    let now = state.clock.now();
    let r = state
        .run(move |c| crate::admin::reports::revenue(c, now))
        .await?;
    let months: Vec<(String, i64, i64)> = r
        .months
        .iter()
        .map(|m| (m.month.clone(), m.billed_cents, m.paid_cents))
        .collect();
    let body = html! {
        section class="card" aria-labelledby="recurring" {
            h2 id="recurring" { "Recurring revenue as of " (when(r.as_of)) }
            p { "ARR " strong { (money(r.arr_cents)) } ", MRR " strong { (money(r.mrr_cents)) } " (each live plan's next renewal: licenses × price per license, fixed prices as they are)." }
            table {
                thead { tr { th scope="col" { "Tier" } th scope="col" class="num" { "Live plans" } th scope="col" class="num" { "ARR" } th scope="col" class="num" { "MRR" } } }
                tbody { @for t in &r.tiers {
                    tr { td { (t.tier) } td class="num" { (t.live_plans) } td class="num" { (money(t.arr_cents)) } td class="num" { (money(t.mrr_cents)) } }
                } }
            }
        }
        section class="card" aria-labelledby="months" {
            h2 id="months" { "Billed and paid, last 12 months" }
            (months_chart(&months))
            table {
                thead { tr { th scope="col" { "Month" } th scope="col" class="num" { "Billed" } th scope="col" class="num" { "Paid" } } }
                tbody { @for m in &r.months {
                    tr { td { (m.month) } td class="num" { (money(m.billed_cents)) } td class="num" { (money(m.paid_cents)) } }
                } }
            }
        }
        section class="card" aria-labelledby="statuses" {
            h2 id="statuses" { "Plans by status" }
            table {
                thead { tr { th scope="col" { "Status" } th scope="col" class="num" { "Plans" } } }
                tbody { @for s in &r.plans_by_status { tr { td { (s.status) } td class="num" { (s.plans) } } } }
            }
        }
    };
    Ok(Html(page("Revenue", Some(&viewer), body).into_string()))
}
