//! `audit`: does Stripe hold exactly the local invoices? Every Stripe object plan-invoicer writes
//! names its local row in metadata, so each customer's Stripe invoices and items can be matched
//! with the local ones. Read-only: list endpoints only (paced by the same budget as a pass), no
//! database write. One customer at a time, so memory stays flat however large the book.

use std::collections::HashMap;
use std::time::Instant;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::models::InvoiceRecord;
use crate::db::repo::{self, InvoiceFilter};
use crate::db::Db;
use crate::domain::PaymentStatus;
use crate::domain::Ts;
use crate::domain::{InvoiceId, InvoiceStatus, LineId};
use crate::error::AppError;
use crate::stripe::{PaymentGateway, StripeInvoice, StripeInvoiceStatus, StripeItem};

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Only local invoices for due dates at or after this instant.
    pub since: Option<Ts>,
    /// Only this customer.
    pub customer: Option<i64>,
}

/// What an audit finding says (docs/CLI.md, "audit", lists what to do about each).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A local invoice marked sent has no Stripe invoice.
    MissingInStripe,
    /// The Stripe invoice of a sent local invoice is still a draft.
    DraftInStripe,
    /// The Stripe invoice was voided or marked uncollectible.
    Status,
    /// Two Stripe invoices claim one local invoice.
    DoubleSend,
    /// A Stripe invoice names a local invoice that does not exist.
    Orphan,
    /// The totals differ.
    Total,
    /// The collection methods differ.
    CollectionMethod,
    /// The numbers of items and lines differ.
    ItemCount,
    /// An item is missing or differs from its line.
    Item,
    /// A local invoice is not sent and its retries stopped.
    Unsent,
    /// The payment status the webhooks told differs from Stripe's invoice now.
    PaymentStatus,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::MissingInStripe => "missing_in_stripe",
            FindingKind::DraftInStripe => "draft_in_stripe",
            FindingKind::Status => "status",
            FindingKind::DoubleSend => "double_send",
            FindingKind::Orphan => "orphan",
            FindingKind::Total => "total",
            FindingKind::CollectionMethod => "collection_method",
            FindingKind::ItemCount => "item_count",
            FindingKind::Item => "item",
            FindingKind::Unsent => "unsent",
            FindingKind::PaymentStatus => "payment_status",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One disagreement between Stripe and the local records.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub customer_id: i64,
    pub local_invoice_id: Option<InvoiceId>,
    pub stripe_invoice_id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub customers_checked: usize,
    pub local_invoices_checked: usize,
    pub stripe_invoices_checked: usize,
    /// Stripe invoices of another installation on the same account (a Stripe customer shared
    /// by two databases): left out of the comparison.
    pub foreign_stripe_invoices: usize,
    pub findings: Vec<Finding>,
    pub duration_ms: u64,
}

impl AuditReport {
    /// 0 when Stripe and the local records agree, 3 when there is any finding.
    pub fn exit_code(&self) -> i32 {
        if self.findings.is_empty() {
            0
        } else {
            3
        }
    }
}

/// Customers are read in pages of this many.
const PAGE: i64 = 200;

/// Compares Stripe with the local records, customer by customer. `progress` is told after
/// each customer (a progress bar on a terminal).
pub async fn audit<G: PaymentGateway>(
    db: &Db,
    gateway: &G,
    opts: &AuditOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<AuditReport, AppError> {
    let started = Instant::now();
    let mut report = AuditReport {
        customers_checked: 0,
        local_invoices_checked: 0,
        stripe_invoices_checked: 0,
        foreign_stripe_invoices: 0,
        findings: vec![],
        duration_ms: 0,
    };
    let installation = db.run(crate::db::installation::installation)?;
    gateway.set_installation(&installation);
    let total = db.run(|c| repo::count_customers_in_stripe(c, opts.customer))?;
    let mut after = 0;
    loop {
        let page = db.run(|c| repo::customers_in_stripe(c, after, PAGE, opts.customer))?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        for (customer_id, stripe_customer) in page {
            let filter = InvoiceFilter {
                customer_id: Some(customer_id),
                since: opts.since,
                ..InvoiceFilter::default()
            };
            let local = db.run(|c| repo::list_invoices(c, &filter))?;
            let (remote, foreign): (Vec<StripeInvoice>, Vec<StripeInvoice>) = gateway
                .invoices_of(&stripe_customer)
                .await?
                .into_iter()
                .partition(|r| installation.owns_metadata(r.metadata.as_ref()));
            report.foreign_stripe_invoices += foreign.len();
            report.local_invoices_checked += local.len();
            report.stripe_invoices_checked += remote.len();
            let found = compare_customer(db, gateway, customer_id, &local, &remote).await?;
            for f in &found {
                tracing::warn!(
                    kind = f.kind.name(),
                    customer.id = f.customer_id,
                    "{}",
                    f.detail
                );
            }
            report.findings.extend(found);
            report.customers_checked += 1;
            progress(
                report.customers_checked as u64,
                u64::try_from(total).unwrap_or(0),
            );
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

async fn compare_customer<G: PaymentGateway>(
    db: &Db,
    gateway: &G,
    customer_id: i64,
    local: &[InvoiceRecord],
    remote: &[StripeInvoice],
) -> Result<Vec<Finding>, AppError> {
    let mut findings = stripe_side(db, customer_id, local, remote)?;
    let by_id: HashMap<&str, &StripeInvoice> = remote.iter().map(|r| (r.id.as_str(), r)).collect();
    for l in local {
        if let Some(sid) = local_side(db, customer_id, l, &by_id, &mut findings)? {
            let items = gateway.items_of(sid).await?;
            compare_items(customer_id, l, sid, &items, &mut findings);
        }
    }
    Ok(findings)
}

/// Findings about one customer.
fn finder(
    customer_id: i64,
) -> impl Fn(FindingKind, Option<InvoiceId>, Option<&str>, String) -> Finding {
    move |kind, local, stripe, detail| Finding {
        kind,
        customer_id,
        local_invoice_id: local,
        stripe_invoice_id: stripe.map(str::to_string),
        detail,
    }
}

/// Stripe's side: every Stripe invoice that names a local one (orphans, double sends).
fn stripe_side(
    db: &Db,
    customer_id: i64,
    local: &[InvoiceRecord],
    remote: &[StripeInvoice],
) -> Result<Vec<Finding>, AppError> {
    let mut findings = vec![];
    let finding = finder(customer_id);
    let local_by_id: HashMap<InvoiceId, &InvoiceRecord> =
        local.iter().map(|r| (r.invoice.id, r)).collect();
    for r in remote {
        let Some(local_id) = r.local_id() else {
            continue; // not plan-invoicer's
        };
        let claimed = match local_by_id.get(&local_id) {
            Some(l) => Some((l.invoice.status, l.invoice.stripe_invoice_id.clone())),
            // Outside `--since` (or another customer's): looked up by id.
            None => db
                .run(|c| repo::invoice_by_id(c, local_id))?
                .map(|i| (i.status, i.stripe_invoice_id)),
        };
        match claimed {
            None => findings.push(finding(
                FindingKind::Orphan,
                None,
                Some(&r.id),
                format!(
                    "Stripe invoice {} names local invoice {local_id}, which does not exist",
                    r.id
                ),
            )),
            // Still being sent (a pass may run beside the audit): the pass finishes it, and a
            // stuck one is reported as `unsent`.
            Some((status, _)) if status != InvoiceStatus::Sent => {}
            Some((_, sent_as)) if sent_as.as_deref() != Some(r.id.as_str()) => {
                findings.push(finding(
                    FindingKind::DoubleSend,
                    Some(local_id),
                    Some(&r.id),
                    format!(
                    "Stripe invoice {} also claims local invoice {local_id}, which was sent as {}",
                    r.id,
                    sent_as.as_deref().unwrap_or("nothing recorded")
                ),
                ))
            }
            Some(_) => {}
        }
    }

    Ok(findings)
}

/// The local side of one invoice: sent, and found in Stripe as it was sent. Returns the
/// Stripe invoice whose items are to be compared next.
fn local_side<'a>(
    db: &Db,
    customer_id: i64,
    l: &'a InvoiceRecord,
    by_id: &HashMap<&str, &StripeInvoice>,
    findings: &mut Vec<Finding>,
) -> Result<Option<&'a str>, AppError> {
    let finding = finder(customer_id);
    let inv = &l.invoice;
    if inv.status != InvoiceStatus::Sent {
        let plan = db.run(|c| repo::get_plan(c, inv.plan_id.0))?;
        if let Some(reason) = plan.and_then(|p| p.plan.needs_attention) {
            findings.push(finding(
                FindingKind::Unsent,
                Some(inv.id),
                inv.stripe_invoice_id.as_deref(),
                format!(
                    "local invoice {} of plan {} is not sent and its retries stopped: {reason}",
                    inv.id, inv.plan_id
                ),
            ));
        }
        return Ok(None);
    }
    let Some(sid) = inv.stripe_invoice_id.as_deref() else {
        findings.push(finding(
            FindingKind::MissingInStripe,
            Some(inv.id),
            None,
            format!(
                "local invoice {} is marked sent without a Stripe invoice",
                inv.id
            ),
        ));
        return Ok(None);
    };
    let Some(r) = by_id.get(sid) else {
        findings.push(finding(
            FindingKind::MissingInStripe,
            Some(inv.id),
            Some(sid),
            format!("Stripe has no invoice {sid} (local invoice {})", inv.id),
        ));
        return Ok(None);
    };
    let remote_payment = match r.status() {
        StripeInvoiceStatus::Open => Some(PaymentStatus::Open),
        StripeInvoiceStatus::Paid => Some(PaymentStatus::Paid),
        StripeInvoiceStatus::Void => Some(PaymentStatus::Void),
        StripeInvoiceStatus::Uncollectible => Some(PaymentStatus::Uncollectible),
        _ => None,
    };
    let local_payment = l.payment.as_ref().map(|p| p.status);
    match (local_payment, remote_payment) {
        (Some(local), Some(remote)) if local != remote => findings.push(finding(
            FindingKind::PaymentStatus,
            Some(inv.id),
            Some(sid),
            format!(
                "local invoice {} is {local} by the webhooks, Stripe's {sid} is {remote} (run `sync-payments`)",
                inv.id
            ),
        )),
        _ => {}
    }
    match r.status() {
        s if s.stands() => {}
        // Voided or marked uncollectible, and known to be (the overdue policy, or a webhook).
        _ if local_payment.is_some() && local_payment == remote_payment => {}
        StripeInvoiceStatus::Draft => findings.push(finding(
            FindingKind::DraftInStripe,
            Some(inv.id),
            Some(sid),
            format!(
                "Stripe invoice {sid} is still a draft (local invoice {} is sent)",
                inv.id
            ),
        )),
        other => findings.push(finding(
            FindingKind::Status,
            Some(inv.id),
            Some(sid),
            format!(
                "Stripe invoice {sid} is {other} (local invoice {} is sent)",
                inv.id
            ),
        )),
    }
    if r.total != Some(inv.total_cents) {
        findings.push(finding(
            FindingKind::Total,
            Some(inv.id),
            Some(sid),
            format!(
                "Stripe invoice {sid} totals {} cents, local invoice {} {} cents",
                r.total.map_or("no".to_string(), |t| t.to_string()),
                inv.id,
                inv.total_cents
            ),
        ));
    }
    if r.collection_method.as_deref() != Some(inv.collection_method.name()) {
        findings.push(finding(
            FindingKind::CollectionMethod,
            Some(inv.id),
            Some(sid),
            format!(
                "Stripe invoice {sid} is {}, local invoice {} {}",
                r.collection_method
                    .as_deref()
                    .unwrap_or("without a collection method"),
                inv.id,
                inv.collection_method
            ),
        ));
    }
    Ok(Some(sid))
}

/// The items of one sent invoice against its lines.
fn compare_items(
    customer_id: i64,
    l: &InvoiceRecord,
    sid: &str,
    items: &[StripeItem],
    findings: &mut Vec<Finding>,
) {
    let finding = finder(customer_id);
    let inv = &l.invoice;
    if items.len() != l.lines.len() {
        findings.push(finding(
            FindingKind::ItemCount,
            Some(inv.id),
            Some(sid),
            format!(
                "Stripe invoice {sid} has {} items, local invoice {} {} lines",
                items.len(),
                inv.id,
                l.lines.len()
            ),
        ));
    }
    let by_line: HashMap<LineId, &StripeItem> = items
        .iter()
        .filter_map(|i| i.line_id().map(|l| (l, i)))
        .collect();
    for line in &l.lines {
        let Some(item) = by_line.get(&line.id) else {
            findings.push(finding(
                FindingKind::Item,
                Some(inv.id),
                Some(sid),
                format!(
                    "Stripe invoice {sid} has no item for line {} ({})",
                    line.id, line.description
                ),
            ));
            continue;
        };
        let mut differs = vec![];
        if item.amount != Some(line.amount_cents) {
            differs.push(format!(
                "amount {} ≠ {}",
                item.amount.map_or("none".into(), |a| a.to_string()),
                line.amount_cents
            ));
        }
        if !line.amount_only {
            if item.quantity != Some(line.quantity) {
                differs.push(format!(
                    "quantity {} ≠ {}",
                    item.quantity.map_or("none".into(), |q| q.to_string()),
                    line.quantity
                ));
            }
            let unit = item
                .unit_amount_decimal()
                .and_then(|u| u.parse::<Decimal>().ok());
            if unit != Some(Decimal::from(line.unit_amount_cents)) {
                differs.push(format!(
                    "unit price {} ≠ {}",
                    item.unit_amount_decimal().unwrap_or("none"),
                    line.unit_amount_cents
                ));
            }
        }
        let period = item.period.map(|p| (p.start, p.end));
        let local_period = (line.period_start.timestamp(), line.period_end.timestamp());
        if period != Some(local_period) {
            differs.push(format!("period {:?} ≠ {local_period:?}", period));
        }
        if !differs.is_empty() {
            findings.push(finding(
                FindingKind::Item,
                Some(inv.id),
                Some(sid),
                format!(
                    "item {} of Stripe invoice {sid} differs from line {}: {}",
                    item.id,
                    line.id,
                    differs.join(", ")
                ),
            ));
        }
    }
}
