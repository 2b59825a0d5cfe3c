//! The reading pages: search, a customer, an invoice explained.

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::actions::{customer_actions, plan_actions};
use super::html::{licenses_chart, money, money_opt, page, when, when_opt};
use super::session::Viewer;
use super::{path_id, ConsoleState, Failure};
use crate::admin::support::{self, CustomerPage, InvoicePage};
use crate::views::{InvoiceView, PlanView};

/// The longest search text taken.
const MAX_QUERY_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<SearchQuery>,
) -> Result<Html<String>, Failure> {
    let text: String = query
        .q
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUERY_CHARS)
        .collect();
    let hits = {
        let t = text.clone();
        state.run(move |c| support::search(c, &t)).await?
    };
    let body = html! {
        form method="get" action="/" role="search" class="card" {
            label for="q" { "Customer name, email, external reference, Stripe id, plan or invoice id" }
            div class="row" {
                input id="q" name="q" type="search" value=(text) autofocus;
                button type="submit" { "Search" }
            }
        }
        @if !text.trim().is_empty() {
            @if hits.is_empty() {
                p { "Nothing matches " q { (text) } "." }
            } @else {
                table {
                    caption { (hits.len()) " found" @if hits.len() as i64 >= support::SEARCH_LIMIT { " (the first " (support::SEARCH_LIMIT) ")" } }
                    thead { tr { th scope="col" { "Customer" } th scope="col" { "Email" } th scope="col" { "Reference" } th scope="col" { "Stripe" } th scope="col" { "Found by" } } }
                    tbody {
                        @for h in &hits {
                            tr {
                                td { a href=(format!("/customers/{}", h.customer.id)) { (h.customer.name) " (#" (h.customer.id) ")" } }
                                td { (h.customer.email.as_deref().unwrap_or("—")) }
                                td { (h.customer.external_ref.as_deref().unwrap_or("—")) }
                                td { (h.customer.stripe_customer_id.as_deref().unwrap_or("—")) }
                                td { (h.matched) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(page("Search", Some(&viewer), body).into_string()))
}

pub async fn customer(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Html<String>, Failure> {
    let id = path_id(&id, "customer")?;
    let data = state.run(move |c| support::customer_page(c, id)).await?;
    let due: Vec<i64> = data
        .plans
        .iter()
        .filter(|p| p.plan.next_invoice_date.is_some())
        .map(|p| p.plan.id)
        .collect();
    let previews = support::next_invoices(&state.db, &due)?;
    let now = state.clock.now();
    let title = format!("{} (customer {})", data.customer.name, data.customer.id);
    let body = customer_body(&data, &previews, &viewer, now);
    Ok(Html(page(&title, Some(&viewer), body).into_string()))
}

type Previews = [(i64, Option<crate::jobs::preview::Preview>)];

fn customer_body(
    d: &CustomerPage,
    previews: &Previews,
    viewer: &Viewer,
    now: crate::domain::Ts,
) -> Markup {
    let c = &d.customer;
    html! {
        section class="card" aria-labelledby="who" {
            h2 id="who" { "Customer" }
            dl {
                dt { "Email" } dd { (c.email.as_deref().unwrap_or("—")) }
                dt { "External reference" } dd { (c.external_ref.as_deref().unwrap_or("—")) }
                dt { "Stripe customer" } dd { (c.stripe_customer_id.as_deref().unwrap_or("—")) }
                dt { "Kind" } dd { (c.kind) }
                dt { "Discounted prices (monthly / annual)" } dd { (money(c.monthly_discounted_price_cents)) " / " (money(c.annual_discounted_price_cents)) }
                dt { "Minimum licenses" } dd { (c.minimum_licenses.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) }
                dt { "Required tier" } dd { (c.required_plan_tier.unwrap_or("—")) }
                dt { "Seats in use" } dd { (c.seat_count.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) " (reported " (when_opt(c.last_usage_report_at)) ")" }
            }
            (customer_actions(c.id, viewer))
        }
        @for p in &d.plans {
            section class="card" aria-labelledby=(format!("plan-{}", p.plan.id)) {
                h2 id=(format!("plan-{}", p.plan.id)) { "Plan " (p.plan.id) ": " (p.plan.tier) ", " (p.plan.status) }
                (plan_facts(&p.plan))
                @if let Some((_, preview)) = previews.iter().find(|(id, _)| *id == p.plan.id) {
                    h3 { "Next invoice" }
                    @match preview {
                        Some(pv) if !pv.invoices.is_empty() => {
                            p { "At " (when(pv.at)) ": " strong { (money(pv.invoices.iter().map(|i| i.total_cents).sum())) } }
                            (lines_table(&pv.invoices))
                        }
                        Some(pv) => p { "Nothing to invoice at " (when(pv.at)) @if let Some(w) = &pv.waiting { " (" (w) ")" } "." },
                        None => p { "No preview: the plan has nothing to invoice." },
                    }
                }
                @if let Some(chart) = licenses_chart(&p.ledger, now) { (chart) }
                (plan_actions(&p.plan, viewer))
            }
        }
        section class="card" aria-labelledby="invoices" {
            h2 id="invoices" { "Invoices" }
            @if d.invoices.is_empty() { p { "None yet." } } @else {
                table {
                    thead { tr { th scope="col" { "Invoice" } th scope="col" { "Plan" } th scope="col" { "For" } th scope="col" { "Total" } th scope="col" { "Sent" } th scope="col" { "Payment" } th scope="col" { "Stripe" } } }
                    tbody {
                        @for i in &d.invoices {
                            tr {
                                td { a href=(format!("/invoices/{}", i.id)) { "#" (i.id) } }
                                td { (i.plan_id) }
                                td { (when(i.event_time)) }
                                td class="num" { (money(i.total_cents)) }
                                td { (i.status) }
                                td { (i.payment_status.map(|s| s.name()).unwrap_or("—")) }
                                td { @if let Some(url) = i.hosted_invoice_url.as_deref().filter(|u| u.starts_with("https://")) { a href=(url) rel="noreferrer noopener" { "Stripe's page" } } @else { (i.stripe_invoice_id.as_deref().unwrap_or("—")) } }
                            }
                        }
                    }
                }
            }
        }
        section class="card" aria-labelledby="changes" {
            h2 id="changes" { "Change history" }
            @if d.changes.is_empty() { p { "No changes recorded." } } @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Why" } th scope="col" { "Before" } th scope="col" { "After" } } }
                    tbody {
                        @for ch in &d.changes {
                            tr {
                                td { (when(ch.at)) }
                                td { (ch.actor) @if let Some(b) = &ch.on_behalf_of { " for " (b) } }
                                td { (ch.operation) }
                                td { (ch.reason.as_deref().unwrap_or("—")) }
                                td { code { (ch.before.to_string()) } }
                                td { code { (ch.after.to_string()) } }
                            }
                        }
                    }
                }
            }
        }
        section class="card" aria-labelledby="events" {
            h2 id="events" { "Plan events" }
            @if d.events.is_empty() { p { "None." } } @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Plan" } th scope="col" { "Event" } th scope="col" { "Note" } } }
                    tbody {
                        @for e in d.events.iter().take(100) {
                            tr { td { (when(e.event_time)) } td { (e.plan_id) } td { (e.kind) } td { (e.message.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
    }
}

fn plan_facts(p: &PlanView) -> Markup {
    html! {
        dl {
            dt { "Schedule" } dd { (p.billing_schedule) ", " (if p.charge_automatically { "charged automatically" } else { "sent as an invoice" }) }
            dt { "Licenses" } dd { (p.licenses.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) " now, " (p.licenses_at_next_renewal.map(|n| n.to_string()).unwrap_or_else(|| "—".into())) " at the next renewal" (if p.automanage_licenses { " (follow the seats)" } else { " (bought)" }) }
            dt { "Price" } dd { @if let Some(f) = p.fixed_price_cents { (money(f)) " fixed" } @else { (money_opt(p.price_per_license_cents)) " per license" } @if let Some(d) = &p.discount { " (discount " (d) " %)" } }
            dt { "Anchor" } dd { (when(p.billing_cycle_anchor)) }
            dt { "Next invoice" } dd { (when_opt(p.next_invoice_date)) }
            dt { "End date" } dd { (when_opt(p.end_date)) }
            @if let Some(a) = &p.needs_attention { dt { "Needs attention" } dd class="bad" { (a) } }
            @if let Some(e) = &p.last_error { dt { "Last error" } dd class="bad" { (e) " (" (p.error_count) " so far, next try " (when_opt(p.next_retry_at)) ")" } }
        }
    }
}

fn lines_table(invoices: &[InvoiceView]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Line" } th scope="col" { "Period" } th scope="col" { "Quantity" } th scope="col" { "Unit" } th scope="col" { "Amount" } } }
            tbody {
                @for i in invoices { @for l in &i.lines {
                    tr {
                        td { (l.description) }
                        td { (when(l.period_start)) " – " (when(l.period_end)) }
                        td class="num" { (l.quantity) }
                        td class="num" { (money(l.unit_amount_cents)) }
                        td class="num" { (money(l.amount_cents)) }
                    }
                } }
            }
        }
    }
}

pub async fn invoice(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Html<String>, Failure> {
    let id = path_id(&id, "invoice")?;
    let data = state.run(move |c| support::invoice_page(c, id)).await?;
    let title = format!("Invoice {} of {}", data.invoice.id, data.customer_name);
    Ok(Html(
        page(&title, Some(&viewer), invoice_body(&data)).into_string(),
    ))
}

fn invoice_body(d: &InvoicePage) -> Markup {
    let i = &d.invoice;
    html! {
        section class="card" {
            dl {
                dt { "Customer" } dd { a href=(format!("/customers/{}", i.customer_id)) { (d.customer_name) } }
                dt { "Plan" } dd { (i.plan_id) ", " (d.plan.tier) ", " (d.plan.billing_schedule) }
                dt { "Invoiced at" } dd { (when(i.event_time)) }
                dt { "Status" } dd { (i.status) ", payment " (i.payment_status.map(|s| s.name()).unwrap_or("not reported yet")) }
                dt { "Stripe" } dd { (i.stripe_invoice_id.as_deref().unwrap_or("not sent yet")) }
                dt { "Total" } dd { strong { (money(i.total_cents)) } }
            }
        }
        section class="card" aria-labelledby="lines" {
            h2 id="lines" { "Why this amount" }
            table {
                thead { tr { th scope="col" { "Line" } th scope="col" { "Period" } th scope="col" { "Quantity" } th scope="col" { "Unit price" } th scope="col" { "Amount" } th scope="col" { "Because" } } }
                tbody {
                    @for l in &d.lines {
                        tr {
                            td { (l.line.description) }
                            td { (when(l.line.period_start)) " – " (when(l.line.period_end)) }
                            td class="num" { (l.line.quantity) }
                            td class="num" { (money(l.line.unit_amount_cents)) }
                            td class="num" { (money(l.line.amount_cents)) }
                            td {
                                @if let Some(e) = &l.entry {
                                    "ledger entry " (e.id) ": " (if e.is_renewal { "renewal" } else { "licenses added" }) " at " (when(e.event_time)) ", " (e.licenses) " licenses"
                                    @if let Some((remaining, period)) = l.fraction {
                                        " — prorated " (fraction(remaining, period)) " of the period (" (remaining / 86_400) " of " (period / 86_400) " days left)"
                                    }
                                } @else {
                                    (l.line.kind)
                                }
                            }
                        }
                    }
                }
                tfoot { tr { td colspan="4" { "Total" } td class="num" { strong { (money(i.total_cents)) } } td {} } }
            }
        }
    }
}

/// `remaining / period` as a percentage with two decimals (display only; the amounts come from
/// the exact decimal proration in `domain::prices`).
fn fraction(remaining: i64, period: i64) -> String {
    if period <= 0 {
        return "—".to_string();
    }
    let basis = i128::from(remaining) * 10_000 / i128::from(period);
    format!("{}.{:02} %", basis / 100, basis % 100)
}
