//! [`PaymentGateway`] over async-stripe's typed request builders (`async-stripe-billing`,
//! `async-stripe-core`) and our [`Transport`]: sent with `RequestStrategy::Idempotent(<key>)` (docs/RULES.md §5),
//! retried here with exponential backoff and full jitter (or `Retry-After`) under the same key,
//! paced by the shared [`Budget`], and cut short by the [`Breaker`] when Stripe is unreachable.
//! The transport policy (backoff, retries, classification of failures) is in `client/send.rs`.
//! Responses are read into minimal structs (ids, totals, metadata) so that a Stripe-compatible
//! server need not echo every field of Stripe's objects.

use std::collections::HashMap;
use std::time::Duration;

use super::budget::{Breaker, Budget, Limits};

mod send;
use super::events::{self, INVOICE_EVENT_TYPES};
use super::metadata;
use super::transport::Transport;
use super::{
    keys, ApiKey, Finalized, GatewayError, Installation, NewInvoice, NewLine, PaymentGateway,
    RemoteInvoice, Scope, StripeInvoice, StripeInvoiceStatus, StripeItem,
};
use crate::domain::{Customer, CustomerId, InvoiceEvent, InvoiceId, LineId, Tier};
use stripe_billing::invoice::{
    AddLinesInvoice, AddLinesInvoiceLines, AddLinesInvoiceLinesPriceData, CreateInvoice,
    CreateInvoicePendingInvoiceItemsBehavior, FinalizeInvoiceInvoice, ListInvoice,
    Period as LinePeriod, RetrieveInvoice, VoidInvoiceInvoice,
};
use stripe_billing::invoice_item::ListInvoiceItem;
use stripe_billing::InvoiceCollectionMethod;
use stripe_core::customer::CreateCustomer;
use stripe_core::event::ListEvent;
use stripe_product::product::CreateProduct;

/// Stripe's public API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

/// How the client talks to Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub api_key: ApiKey,
    /// Base URL ending in `/` (Stripe's, or a compatible server such as the emulator).
    pub api_base: String,
    /// Attempts per request (the first included) before giving up until the next pass.
    pub max_attempts: u32,
    /// The first backoff; doubles per attempt, capped at `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The account's budget before it is split across workers (see [`Limits::for_key`]).
    pub limits: Limits,
    /// Requests in a row that could not reach Stripe before the breaker opens.
    pub breaker_threshold: u32,
    pub timeout: Duration,
}

impl StripeConfig {
    /// Defaults that stay within a subset of Stripe's limits for the key's mode.
    pub fn new(api_key: ApiKey, api_base: Option<&str>) -> StripeConfig {
        let limits = Limits::for_key(api_key.is_test_mode());
        let mut base = api_base.unwrap_or(DEFAULT_API_BASE).trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        StripeConfig {
            api_key,
            api_base: base,
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            limits,
            breaker_threshold: 5,
            timeout: Duration::from_secs(30),
        }
    }
}

pub struct StripeGateway {
    client: Transport,
    config: StripeConfig,
    budget: Budget,
    breaker: Breaker,
    /// The database's installation, set by the job that opened it ([`PaymentGateway::set_installation`]):
    /// every key and every created object's metadata names it.
    installation: std::sync::RwLock<Option<Installation>>,
    /// Requests by outcome, for metrics.
    pub stats: std::sync::Arc<RequestStats>,
}

/// Counts of Stripe requests (each attempt) by outcome.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub ok: std::sync::atomic::AtomicU64,
    pub retryable: std::sync::atomic::AtomicU64,
    /// 429s for the account's or an endpoint's rate (also counted in `retryable`).
    pub rate_limited: std::sync::atomic::AtomicU64,
    pub fatal: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("api_base", &self.config.api_base)
            .finish_non_exhaustive()
    }
}

#[derive(miniserde::Deserialize)]
struct Object {
    id: String,
}

#[derive(miniserde::Deserialize)]
struct InvoiceObject {
    id: String,
    total: i64,
    status: Option<String>,
}

impl From<InvoiceObject> for RemoteInvoice {
    fn from(o: InvoiceObject) -> RemoteInvoice {
        RemoteInvoice {
            id: o.id,
            status: StripeInvoiceStatus::parse(o.status.as_deref()),
            total: o.total,
        }
    }
}

impl StripeGateway {
    pub fn new(config: StripeConfig) -> Result<StripeGateway, GatewayError> {
        let client = Transport::new(&config.api_key, &config.api_base, config.timeout)
            .map_err(|e| GatewayError::Fatal(format!("cannot build the Stripe client: {e}")))?;
        Ok(StripeGateway {
            client,
            budget: Budget::new(config.limits),
            breaker: Breaker::new(config.breaker_threshold),
            config,
            installation: std::sync::RwLock::new(None),
            stats: Default::default(),
        })
    }

    /// The installation the keys are made for; a job that did not set one cannot write.
    fn installation(&self) -> Result<Installation, GatewayError> {
        let guard = match self.installation.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.clone().ok_or_else(|| {
            GatewayError::Fatal(
                "no installation set: the job must read it from the database first".into(),
            )
        })
    }

    /// A live key (anything but a test key) bills real cards.
    pub fn is_live(&self) -> bool {
        !self.config.api_key.is_test_mode()
    }
}

impl PaymentGateway for StripeGateway {
    fn unreachable(&self) -> bool {
        self.breaker.is_open()
    }

    fn begin_pass(&self) {
        self.breaker.reset();
    }

    fn set_workers(&self, workers: u32) {
        self.budget.set_workers(workers);
    }

    fn set_installation(&self, installation: &Installation) {
        let mut guard = match self.installation.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some(installation.clone());
    }

    fn invoice_scope(&self, id: InvoiceId) -> Result<Scope, GatewayError> {
        Ok(self.installation()?.invoice(id))
    }

    async fn create_customer(&self, customer: &Customer) -> Result<String, GatewayError> {
        let mut metadata = HashMap::new();
        metadata.insert(metadata::CUSTOMER_ID.to_string(), customer.id.to_string());
        if let Some(r) = &customer.external_ref {
            metadata.insert(metadata::EXTERNAL_REF.to_string(), r.clone());
        }
        let scope = self.installation()?.customer(CustomerId(customer.id));
        scope.tag(&mut metadata);
        let mut req = CreateCustomer::new()
            .name(customer.name.clone())
            .metadata(metadata);
        if let Some(email) = &customer.email {
            req = req.email(email.clone());
        }
        let obj: Object = self
            .send(&req, Some(keys::customer(&scope, CustomerId(customer.id))))
            .await?;
        Ok(obj.id)
    }

    async fn create_invoice(&self, inv: &NewInvoice<'_>) -> Result<String, GatewayError> {
        let scope = self.invoice_scope(inv.local_id)?;
        let mut metadata: HashMap<String, String> = [
            (metadata::INVOICE_ID, inv.local_id.to_string()),
            (metadata::PLAN_ID, inv.plan_id.to_string()),
            (
                metadata::PERIOD_START,
                inv.period_start.timestamp().to_string(),
            ),
            (metadata::PERIOD_END, inv.period_end.timestamp().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        scope.tag(&mut metadata);
        let mut req = CreateInvoice::new()
            .customer(inv.stripe_customer)
            // Off until every item is in: Stripe finalizes an auto-advancing draft about an
            // hour after its creation, and would charge a partial invoice if this worker died
            // before its last item. The finalize call turns it on.
            .auto_advance(false)
            .statement_descriptor(
                inv.statement_descriptor
                    .chars()
                    .take(22)
                    .collect::<String>(),
            )
            .pending_invoice_items_behavior(CreateInvoicePendingInvoiceItemsBehavior::Exclude)
            .metadata(metadata);
        req = if inv.charge_automatically {
            req.collection_method(InvoiceCollectionMethod::ChargeAutomatically)
        } else {
            req.collection_method(InvoiceCollectionMethod::SendInvoice)
                .days_until_due(inv.days_until_due.unwrap_or(15))
        };
        let obj: Object = self
            .send(&req, Some(keys::invoice(&scope, inv.local_id)))
            .await?;
        Ok(obj.id)
    }

    async fn create_product(&self, tier: Tier) -> Result<String, GatewayError> {
        let id = keys::product_id(tier);
        let metadata: HashMap<String, String> =
            [(metadata::TIER.to_string(), tier.name().to_string())].into();
        let req = CreateProduct::new(tier.plan_name())
            .id(id.clone())
            .metadata(metadata);
        match self
            .send::<_, Object>(&req, Some(keys::product(tier)))
            .await
        {
            Ok(obj) => Ok(obj.id),
            // Made before (by another worker, or by an attempt whose key Stripe forgot).
            Err(GatewayError::Exists(_)) => Ok(id),
            Err(e) => Err(e),
        }
    }

    async fn add_lines(
        &self,
        stripe_invoice: &str,
        scope: &Scope,
        key: &str,
        lines: &[NewLine<'_>],
    ) -> Result<HashMap<LineId, String>, GatewayError> {
        let mut params = Vec::with_capacity(lines.len());
        for line in lines {
            params.push(add_lines_param(line, scope)?);
        }
        let req = AddLinesInvoice::new(stripe_invoice, params);
        let answer: LinesAnswer = self.send(&req, Some(key.to_string())).await?;
        let mut ids: HashMap<LineId, String> = answer
            .lines
            .data
            .into_iter()
            .filter_map(|l| Some((l.line_id()?, l.invoice_item()?)))
            .collect();
        // Stripe embeds only the invoice's first lines; the rest are read from the list.
        if lines.iter().any(|l| !ids.contains_key(&l.local_id)) {
            ids = self.find_items(stripe_invoice).await?;
        }
        let wanted: HashMap<LineId, String> = lines
            .iter()
            .filter_map(|l| ids.remove(&l.local_id).map(|id| (l.local_id, id)))
            .collect();
        if wanted.len() != lines.len() {
            return Err(GatewayError::Mismatch(format!(
                "Stripe accepted {} lines for invoice {stripe_invoice} but holds {} of them",
                lines.len(),
                wanted.len()
            )));
        }
        Ok(wanted)
    }

    async fn finalize(
        &self,
        stripe_invoice: &str,
        local_id: InvoiceId,
    ) -> Result<Finalized, GatewayError> {
        let req = FinalizeInvoiceInvoice::new(stripe_invoice).auto_advance(true);
        let scope = self.invoice_scope(local_id)?;
        let inv: InvoiceObject = self
            .send(&req, Some(keys::finalize(&scope, local_id)))
            .await?;
        Ok(Finalized { total: inv.total })
    }

    async fn find_invoice(
        &self,
        stripe_customer: &str,
        local_id: InvoiceId,
    ) -> Result<Option<RemoteInvoice>, GatewayError> {
        let installation = self.installation()?;
        let found = self
            .invoices_of(stripe_customer)
            .await?
            .into_iter()
            .find(|o| {
                o.local_id() == Some(local_id) && installation.owns_metadata(o.metadata.as_ref())
            });
        Ok(found.map(|o| RemoteInvoice {
            status: o.status(),
            total: o.total.unwrap_or_default(),
            id: o.id,
        }))
    }

    async fn retrieve_invoice(
        &self,
        stripe_invoice: &str,
    ) -> Result<Option<RemoteInvoice>, GatewayError> {
        let req = RetrieveInvoice::new(stripe_invoice);
        match self.send::<_, InvoiceObject>(&req, None).await {
            Ok(inv) => Ok(Some(inv.into())),
            Err(GatewayError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every invoice of a Stripe customer (the list endpoint, paginated, paced by the budget).
    async fn invoices_of(&self, customer: &str) -> Result<Vec<StripeInvoice>, GatewayError> {
        let mut out = vec![];
        let mut after: Option<String> = None;
        loop {
            let mut req = ListInvoice::new().customer(customer).limit(100);
            if let Some(a) = &after {
                req = req.starting_after(a.clone());
            }
            let page: InvoicePage = self.send(&req, None).await?;
            let more = page.has_more;
            after = page.data.last().map(|o| o.id.clone());
            out.extend(page.data);
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every item of a Stripe invoice.
    async fn items_of(&self, invoice: &str) -> Result<Vec<StripeItem>, GatewayError> {
        let mut out = vec![];
        let mut after: Option<String> = None;
        loop {
            let mut req = ListInvoiceItem::new().invoice(invoice).limit(100);
            if let Some(a) = &after {
                req = req.starting_after(a.clone());
            }
            let page: ItemPage = self.send(&req, None).await?;
            let more = page.has_more;
            after = page.data.last().map(|o| o.id.clone());
            out.extend(page.data);
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn find_items(
        &self,
        stripe_invoice: &str,
    ) -> Result<HashMap<LineId, String>, GatewayError> {
        Ok(self
            .items_of(stripe_invoice)
            .await?
            .into_iter()
            .filter_map(|i| i.line_id().map(|line| (line, i.id)))
            .collect())
    }
}

/// One line as `add_lines` sends it: per-seat lines priced inline on the tier's product, the
/// others as an amount. Discounts never apply (they are lines of their own).
fn add_lines_param(
    line: &NewLine<'_>,
    scope: &Scope,
) -> Result<AddLinesInvoiceLines, GatewayError> {
    let mut metadata = HashMap::new();
    metadata.insert(metadata::LINE_ID.to_string(), line.local_id.to_string());
    scope.tag(&mut metadata);
    if let Some(entry) = line.ledger_entry_id {
        metadata.insert(metadata::LEDGER_ENTRY_ID.to_string(), entry.to_string());
    }
    let mut p = AddLinesInvoiceLines::new();
    p.description = Some(line.description.to_string());
    p.discountable = Some(false);
    p.metadata = Some(metadata);
    p.period = Some(LinePeriod {
        start: line.period_start.timestamp(),
        end: line.period_end.timestamp(),
    });
    match line.per_seat {
        Some(seat) => {
            let quantity = u64::try_from(seat.quantity)
                .map_err(|_| GatewayError::Fatal(format!("negative quantity {}", seat.quantity)))?;
            let mut price = AddLinesInvoiceLinesPriceData::new(stripe_types::Currency::USD);
            price.product = Some(seat.product.to_string());
            price.unit_amount_decimal = Some(seat.unit_cents.to_string());
            p.price_data = Some(price);
            p.quantity = Some(quantity);
        }
        None => p.amount = Some(line.amount),
    }
    Ok(p)
}

/// The part of `add_lines`' answer (an invoice) that names the new items.
#[derive(miniserde::Deserialize)]
struct LinesAnswer {
    lines: LineList,
}

#[derive(miniserde::Deserialize)]
struct LineList {
    data: Vec<LineObject>,
}

/// An invoice line: its item is `parent.invoice_item_details.invoice_item` (API 2025-03-31 and
/// later) or `invoice_item` (earlier versions).
#[derive(miniserde::Deserialize)]
struct LineObject {
    metadata: Option<HashMap<String, String>>,
    invoice_item: Option<String>,
    parent: Option<LineParent>,
}

#[derive(miniserde::Deserialize)]
struct LineParent {
    invoice_item_details: Option<ItemDetails>,
}

#[derive(miniserde::Deserialize)]
struct ItemDetails {
    invoice_item: Option<String>,
}

impl LineObject {
    fn line_id(&self) -> Option<LineId> {
        metadata::read(self.metadata.as_ref(), metadata::LINE_ID).map(LineId)
    }

    fn invoice_item(self) -> Option<String> {
        self.parent
            .and_then(|p| p.invoice_item_details)
            .and_then(|d| d.invoice_item)
            .or(self.invoice_item)
    }
}

#[derive(miniserde::Deserialize)]
struct InvoicePage {
    data: Vec<StripeInvoice>,
    has_more: bool,
}

#[derive(miniserde::Deserialize)]
struct ItemPage {
    data: Vec<StripeItem>,
    has_more: bool,
}

#[derive(miniserde::Deserialize)]
struct EventPage {
    data: Vec<events::StripeEvent>,
    has_more: bool,
}

impl StripeGateway {
    /// Voids an open or uncollectible invoice (the overdue policy), under a key made of the
    /// local invoice's id. An invoice that cannot be voided any more (paid, or voided already
    /// once the key has expired) is read back: the answer is its status either way.
    pub async fn void_invoice(
        &self,
        stripe_invoice: &str,
        local_id: InvoiceId,
    ) -> Result<StripeInvoiceStatus, GatewayError> {
        let req = VoidInvoiceInvoice::new(stripe_invoice);
        let scope = self.invoice_scope(local_id)?;
        match self
            .send::<_, InvoiceObject>(&req, Some(keys::void(&scope, local_id)))
            .await
        {
            Ok(inv) => Ok(RemoteInvoice::from(inv).status),
            Err(GatewayError::Fatal(_)) => match self.retrieve_invoice(stripe_invoice).await? {
                Some(inv) => Ok(inv.status),
                None => Err(GatewayError::NotFound(format!("invoice {stripe_invoice}"))),
            },
            Err(e) => Err(e),
        }
    }

    /// Stripe's invoice events created at or after `since` (Unix seconds), oldest first: the
    /// list endpoint filtered by type, newest first a page of 100 at a time, paced by the
    /// budget. Stripe keeps 30 days of events.
    pub async fn invoice_events_since(
        &self,
        since: i64,
    ) -> Result<Vec<InvoiceEvent>, GatewayError> {
        let types: Vec<String> = INVOICE_EVENT_TYPES.iter().map(|t| t.to_string()).collect();
        let mut out = vec![];
        let mut after: Option<String> = None;
        loop {
            let mut req = ListEvent::new()
                .types(types.clone())
                .created(stripe_types::RangeQueryTs::gte(since))
                .limit(100);
            if let Some(a) = &after {
                req = req.starting_after(a.clone());
            }
            let page: EventPage = self.send(&req, None).await?;
            let more = page.has_more;
            after = page.data.last().map(|e| e.id().to_string());
            out.extend(page.data.into_iter().filter_map(|e| e.into_event().ok()));
            if !more || after.is_none() {
                out.reverse();
                return Ok(out);
            }
        }
    }
}
