//! What the support console reads and previews, typed: a customer's page, an invoice explained
//! line by line, the search, and an action's money effect (the action and `plan preview`'s own
//! code in one transaction that is rolled back). Writes go through [`super::plan_cmd`] and
//! [`super::customer_cmd`] like every other surface's.

use serde::Serialize;

use crate::db::models::PlanEventRow;
use crate::db::repo::{self, InvoiceFilter};
use crate::db::search::{self as rows, CustomerHit};
use crate::db::{changes, Conn, Db};
use crate::domain::change::{diff, Author};
use crate::domain::lines::addition_fraction;
use crate::domain::{LedgerEntry, Ts};
use crate::error::AppError;
use crate::jobs::preview::{preview_in, Preview};
use crate::ops;
use crate::views::changes::ChangeView;
use crate::views::{CustomerView, InvoiceView, LineView, PlanView};

use super::commands::{CustomerCmd, OfferCmd, PlanCmd};

/// The most search hits shown.
pub const SEARCH_LIMIT: i64 = 50;
/// The newest changes a customer's page shows.
pub const PAGE_CHANGES: i64 = 100;

/// A customer's page: its plans with their ledgers, invoices, plan events and changes.
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customer: CustomerView,
    pub plans: Vec<PlanPage>,
    /// Newest first.
    pub invoices: Vec<InvoiceView>,
    /// Newest first.
    pub events: Vec<PlanEventRow>,
    /// Newest first, at most [`PAGE_CHANGES`].
    pub changes: Vec<ChangeView>,
}

#[derive(Debug, Clone)]
pub struct PlanPage {
    pub plan: PlanView,
    pub ledger: Vec<LedgerEntry>,
}

pub fn customer_page(c: &mut Conn, id: i64) -> Result<CustomerPage, AppError> {
    let customer = ops::customer(c, id)?;
    let plan_ids = repo::plan_ids_of_customer(c, id)?;
    let mut plans = vec![];
    let mut events = vec![];
    for &plan_id in &plan_ids {
        let record = ops::plan(c, plan_id)?;
        let ledger = repo::ledger_of(c, plan_id)?;
        plans.push(PlanPage {
            plan: PlanView::new(&record, &ledger),
            ledger,
        });
        events.extend(repo::events_of_plan(c, plan_id)?);
    }
    events.sort_by_key(|e| std::cmp::Reverse(e.id));
    let filter = InvoiceFilter {
        customer_id: Some(id),
        ..InvoiceFilter::default()
    };
    let mut invoices: Vec<InvoiceView> = repo::list_invoices(c, &filter)?
        .iter()
        .map(InvoiceView::from)
        .collect();
    invoices.reverse();
    let changes = changes::newest_of_customer(c, id, PAGE_CHANGES)?
        .into_iter()
        .map(ChangeView::from)
        .collect();
    Ok(CustomerPage {
        customer: CustomerView::new(&customer, plan_ids),
        plans,
        invoices,
        events,
        changes,
    })
}

/// Each plan's next invoice as `plan preview` computes it (`None`: nothing to preview), on one
/// connection of its own, each in a transaction that is rolled back.
pub fn next_invoices(db: &Db, plan_ids: &[i64]) -> Result<Vec<(i64, Option<Preview>)>, AppError> {
    if plan_ids.is_empty() {
        return Ok(vec![]);
    }
    let dry = db.dedicated()?;
    dry.run(|conn| {
        Ok(plan_ids
            .iter()
            .map(|&id| (id, conn.rolled_back(|c| preview_in(c, id, None)).ok()))
            .collect())
    })
}

/// An invoice with each line's reasons: the ledger entry behind it and, for a license added
/// within a period, the part of the period it pays for.
#[derive(Debug, Clone)]
pub struct InvoicePage {
    pub invoice: InvoiceView,
    pub plan: PlanView,
    pub customer_name: String,
    pub lines: Vec<ExplainedLine>,
}

#[derive(Debug, Clone)]
pub struct ExplainedLine {
    pub line: LineView,
    pub entry: Option<LedgerEntry>,
    /// (seconds remaining, seconds in the period) for a prorated addition.
    pub fraction: Option<(i64, i64)>,
}

pub fn invoice_page(c: &mut Conn, id: i64) -> Result<InvoicePage, AppError> {
    let filter = InvoiceFilter {
        ids: Some(vec![crate::domain::InvoiceId(id)]),
        ..InvoiceFilter::default()
    };
    let record = repo::list_invoices(c, &filter)?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound(format!("invoice {id} does not exist")))?;
    let invoice = InvoiceView::from(&record);
    let plan = ops::plan(c, invoice.plan_id.0)?;
    let ledger = repo::ledger_of(c, invoice.plan_id.0)?;
    let customer = ops::customer(c, invoice.customer_id.0)?;
    let lines = invoice
        .lines
        .iter()
        .map(|line| {
            let entry = line
                .ledger_entry_id
                .and_then(|e| ledger.iter().find(|l| l.id == e).cloned());
            let fraction = match &entry {
                Some(e) if !e.is_renewal => addition_fraction(&plan.plan, &ledger, e)?,
                _ => None,
            };
            Ok(ExplainedLine {
                line: line.clone(),
                entry,
                fraction,
            })
        })
        .collect::<Result<Vec<_>, crate::domain::BillingError>>()?;
    Ok(InvoicePage {
        plan: PlanView::new(&plan, &ledger),
        customer_name: customer.name,
        invoice,
        lines,
    })
}

/// A search hit: the customer, and why it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub customer: CustomerHit,
    pub matched: String,
}

/// Customers by name, email, external reference or Stripe customer id; a number is also tried
/// as a customer, plan and invoice id, and `in_…` as a Stripe invoice id.
pub fn search(c: &mut Conn, text: &str) -> Result<Vec<Hit>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(vec![]);
    }
    let mut hits = vec![];
    let mut push = |c: &mut Conn, id: i64, matched: String| -> Result<(), AppError> {
        if let Some(customer) = rows::customer_hit(c, id)? {
            hits.push(Hit { customer, matched });
        }
        Ok(())
    };
    if let Ok(n) = text.trim_start_matches('#').parse::<i64>() {
        push(c, n, format!("customer {n}"))?;
        if let Some(customer) = rows::customer_of_plan(c, n)? {
            push(c, customer, format!("plan {n}"))?;
        }
        if let Some((invoice, customer)) = rows::invoice_by_reference(c, &n.to_string())? {
            push(c, customer, format!("invoice {invoice}"))?;
        }
    } else if text.starts_with("in_") {
        if let Some((invoice, customer)) = rows::invoice_by_reference(c, text)? {
            push(c, customer, format!("invoice {invoice} ({text})"))?;
        }
    }
    for customer in rows::search_customers(c, text, SEARCH_LIMIT)? {
        if !hits.iter().any(|h| h.customer.id == customer.id) {
            hits.push(Hit {
                customer,
                matched: "name, email or reference".to_string(),
            });
        }
    }
    Ok(hits)
}

/// What an action would do, before it is confirmed: the fields that move, and the next invoice
/// of the customer's live plan before and after.
#[derive(Debug, Clone)]
pub struct Effect {
    /// The fields that move, as they are now and as they would be (the plan's, or the
    /// customer's for a customer action).
    pub was: serde_json::Value,
    pub is: serde_json::Value,
    /// The plan whose next invoice is shown, if there is one.
    pub plan_id: Option<i64>,
    /// Its next invoice's total now (`None`: nothing to invoice).
    pub before_cents: Option<i64>,
    /// Its next invoice's total after the action.
    pub after_cents: Option<i64>,
}

/// A console action: a plan's, a customer's, or an offer.
#[derive(Debug)]
pub enum Action {
    Plan(PlanCmd),
    Customer(CustomerCmd),
    Offer(OfferCmd),
}

/// What an action is about: a plan (and its customer), or a customer (and its live plan).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub customer: i64,
    pub plan: Option<i64>,
}

/// Runs the action and then `plan preview`'s code in one transaction that is rolled back:
/// nothing is written. A refusal of the action is returned as it is (it names its field).
pub fn effect(
    db: &Db,
    target: Target,
    action: Action,
    now: Ts,
    author: &Author,
) -> Result<Effect, AppError> {
    let dry = db.dedicated()?;
    dry.run(|conn| {
        let plan_id = match target.plan {
            Some(p) => Some(p),
            None => repo::live_plan_of(conn, target.customer)?.map(|r| r.plan.id),
        };
        let snapshot = |c: &mut Conn| match target.plan {
            Some(p) => super::history::plan_snapshot(c, Some(p)),
            None => super::history::customer_snapshot(c, Some(target.customer)),
        };
        let next_total = |c: &mut Conn| -> Option<i64> {
            plan_id
                .and_then(|p| preview_in(c, p, None).ok())
                .map(|p| total(&p))
        };
        let (before, before_cents) =
            conn.rolled_back(|c| Ok::<_, AppError>((snapshot(c)?, next_total(c))))?;
        conn.rolled_back(|c| {
            run(c, action, now, author)?;
            // The fields as the action leaves them, before the preview moves the plan on.
            let after = snapshot(c)?;
            let (was, is) = diff(&before, &after);
            Ok(Effect {
                was,
                is,
                plan_id,
                before_cents,
                after_cents: next_total(c),
            })
        })
    })
}

/// Runs the action for real (the same command, the same guards, recorded with `author`).
pub fn run(c: &mut Conn, action: Action, now: Ts, author: &Author) -> Result<(), AppError> {
    match action {
        Action::Plan(cmd) => super::plan_cmd(c, cmd, now, author).map(|_| ()),
        Action::Customer(cmd) => super::customer_cmd(c, cmd, now, author).map(|_| ()),
        Action::Offer(cmd) => super::offer_cmd(c, cmd, now, author).map(|_| ()),
    }
}

fn total(p: &Preview) -> i64 {
    p.invoices.iter().map(|i| i.total_cents).sum()
}
