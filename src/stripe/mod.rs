//! Emitting invoices to Stripe: the narrow [`PaymentGateway`] trait the pass drives, its
//! async-stripe implementation ([`client::StripeGateway`]), and the built-in Stripe emulator
//! ([`emulator`]) used by tests and the demo.
//!
//! The pass calls the gateway one object at a time and stores each Stripe id on its local row
//! as soon as it is known; every write carries a deterministic idempotency key (docs/RULES.md §5), so a
//! replay after a crash creates nothing twice.

pub mod budget;
pub mod client;
pub mod events;
pub mod metadata;
pub mod transport;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use crate::domain::{Customer, CustomerId, InvoiceId, LedgerEntryId, LineId, PlanId, Tier, Ts};

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// Worth retrying later (network, timeout, 429, 5xx).
    #[error("transient Stripe error: {0}")]
    Retryable(String),
    /// Stripe refused the request (4xx); the plan needs attention.
    #[error("Stripe refused the request: {0}")]
    Fatal(String),
    /// The object does not exist in Stripe (404), e.g. a draft deleted behind the worker's back.
    #[error("Stripe has no such object: {0}")]
    NotFound(String),
    /// An object with the id asked for exists already (Stripe's `resource_already_exists`).
    #[error("Stripe already has it: {0}")]
    Exists(String),
    /// Stripe holds something other than what the local records say was sent; a person has
    /// to look (the plan needs attention).
    #[error("{0}")]
    Mismatch(String),
    /// Stripe could not be reached for several requests in a row (the circuit breaker is
    /// open); the plan is retried by a later pass.
    #[error("Stripe is unreachable: {0}")]
    Unreachable(String),
}

impl GatewayError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::Retryable(_) | GatewayError::Unreachable(_)
        )
    }
}

/// A Stripe secret key. Never printed: `Debug` shows a redacted form and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into().trim().to_string();
        (!key.is_empty()).then_some(ApiKey(key))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_test_mode(&self) -> bool {
        self.0.starts_with("sk_test_") || self.0.starts_with("rk_test_")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// An invoice to create in Stripe (docs/RULES.md §5).
#[derive(Debug, Clone)]
pub struct NewInvoice<'a> {
    pub local_id: InvoiceId,
    pub plan_id: PlanId,
    pub stripe_customer: &'a str,
    pub charge_automatically: bool,
    pub days_until_due: Option<u32>,
    pub statement_descriptor: &'a str,
    pub period_start: Ts,
    pub period_end: Ts,
}

/// One line of an invoice for Stripe's `add_lines` (docs/RULES.md §5).
#[derive(Debug, Clone)]
pub struct NewLine<'a> {
    pub local_id: LineId,
    pub description: &'a str,
    /// A per-seat line's quantity and unit price, or `None` to send `amount` alone.
    pub per_seat: Option<SeatPrice<'a>>,
    pub amount: i64,
    pub period_start: Ts,
    pub period_end: Ts,
    pub ledger_entry_id: Option<LedgerEntryId>,
}

/// Quantity and unit price of a per-seat line, priced inline (`price_data`) on the plan tier's
/// product.
#[derive(Debug, Clone, Copy)]
pub struct SeatPrice<'a> {
    pub quantity: i64,
    pub unit_cents: i64,
    pub product: &'a str,
}

/// Lines sent in one `add_lines` request. Stripe documents no limit per request, but at most
/// 250 items per invoice; 50 keeps a request's body small (about 30 KiB).
pub const ADD_LINES_MAX: usize = 50;

/// What a finalized invoice looks like in Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub total: i64,
}

/// An invoice's status in Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeInvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
    /// A status this version does not know (or none): never treated as a known state.
    Other(String),
}

impl StripeInvoiceStatus {
    pub fn parse(status: Option<&str>) -> StripeInvoiceStatus {
        match status {
            Some("draft") => StripeInvoiceStatus::Draft,
            Some("open") => StripeInvoiceStatus::Open,
            Some("paid") => StripeInvoiceStatus::Paid,
            Some("void") => StripeInvoiceStatus::Void,
            Some("uncollectible") => StripeInvoiceStatus::Uncollectible,
            other => StripeInvoiceStatus::Other(other.unwrap_or_default().to_string()),
        }
    }

    /// Finalized and not voided: the invoice stands (open or paid).
    pub fn stands(&self) -> bool {
        matches!(self, StripeInvoiceStatus::Open | StripeInvoiceStatus::Paid)
    }
}

impl fmt::Display for StripeInvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StripeInvoiceStatus::Draft => "draft",
            StripeInvoiceStatus::Open => "open",
            StripeInvoiceStatus::Paid => "paid",
            StripeInvoiceStatus::Void => "void",
            StripeInvoiceStatus::Uncollectible => "uncollectible",
            StripeInvoiceStatus::Other(s) if s.is_empty() => "without a status",
            StripeInvoiceStatus::Other(s) => s,
        })
    }
}

/// A Stripe invoice as read back before a resume: its state decides whether the worker may
/// go on adding items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInvoice {
    pub id: String,
    pub status: StripeInvoiceStatus,
    pub total: i64,
}

/// The Stripe calls of a pass, one object each. Shared by every plan in flight, so its futures
/// are `Send`.
pub trait PaymentGateway: Send + Sync {
    fn create_customer(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<String, GatewayError>> + Send;
    fn create_invoice(
        &self,
        invoice: &NewInvoice<'_>,
    ) -> impl Future<Output = Result<String, GatewayError>> + Send;
    /// The product that per-seat lines of `tier` are priced on, created once per tier with a
    /// deterministic id (an existing one is taken as it is). Returns its id.
    fn create_product(
        &self,
        tier: Tier,
    ) -> impl Future<Output = Result<String, GatewayError>> + Send;
    /// Adds `lines` (at most [`ADD_LINES_MAX`]) to a draft in one request under `key`, all or
    /// none; `scope` is the invoice's (the items' installation metadata). Returns the invoice item id of every line, by local line id.
    fn add_lines(
        &self,
        stripe_invoice: &str,
        scope: &Scope,
        key: &str,
        lines: &[NewLine<'_>],
    ) -> impl Future<Output = Result<HashMap<LineId, String>, GatewayError>> + Send;
    fn finalize(
        &self,
        stripe_invoice: &str,
        local_id: InvoiceId,
    ) -> impl Future<Output = Result<Finalized, GatewayError>> + Send;
    /// The Stripe invoice carrying `plan_invoicer_invoice_id = local_id`, found with the list
    /// endpoint filtered by customer (for resumes after Stripe forgot the idempotency key).
    fn find_invoice(
        &self,
        stripe_customer: &str,
        local_id: InvoiceId,
    ) -> impl Future<Output = Result<Option<RemoteInvoice>, GatewayError>> + Send;
    /// The invoice as Stripe holds it now; `None` when Stripe has no such invoice (a deleted
    /// draft).
    fn retrieve_invoice(
        &self,
        stripe_invoice: &str,
    ) -> impl Future<Output = Result<Option<RemoteInvoice>, GatewayError>> + Send;
    /// Every invoice of a Stripe customer (the list endpoint, paginated), for `audit`.
    fn invoices_of(
        &self,
        stripe_customer: &str,
    ) -> impl Future<Output = Result<Vec<StripeInvoice>, GatewayError>> + Send;
    /// Every item of a Stripe invoice, for `audit`.
    fn items_of(
        &self,
        stripe_invoice: &str,
    ) -> impl Future<Output = Result<Vec<StripeItem>, GatewayError>> + Send;
    /// The items of a Stripe invoice by their `plan_invoicer_line_id`.
    fn find_items(
        &self,
        stripe_invoice: &str,
    ) -> impl Future<Output = Result<HashMap<LineId, String>, GatewayError>> + Send;

    /// Stripe could not be reached for several requests in a row: stop claiming plans.
    fn unreachable(&self) -> bool {
        false
    }
    /// A pass starts: try Stripe again even if the previous pass found it unreachable.
    fn begin_pass(&self) {}
    /// The database's installation: every key and created object's metadata names it. A job
    /// sets it once it has read it from the database, before any write.
    fn set_installation(&self, _installation: &Installation) {}
    /// The keys and metadata scope of a local invoice (for the keys the caller makes: lines).
    fn invoice_scope(&self, _id: InvoiceId) -> Result<Scope, GatewayError> {
        Ok(Scope::Legacy)
    }
    /// The fleet has `workers` live workers: take that share of the account's budget.
    fn set_workers(&self, _workers: u32) {}
}

/// A Stripe invoice as `audit` reads it.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct StripeInvoice {
    pub id: String,
    pub status: Option<String>,
    pub total: Option<i64>,
    pub collection_method: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
}

impl StripeInvoice {
    /// The local invoice this Stripe invoice says it carries.
    pub fn status(&self) -> StripeInvoiceStatus {
        StripeInvoiceStatus::parse(self.status.as_deref())
    }

    pub fn local_id(&self) -> Option<InvoiceId> {
        metadata::read(self.metadata.as_ref(), metadata::INVOICE_ID).map(InvoiceId)
    }
}

/// A Stripe invoice item as `audit` reads it.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct StripeItem {
    pub id: String,
    pub amount: Option<i64>,
    pub quantity: Option<i64>,
    /// API versions before 2025-03-31 (and the emulator).
    pub unit_amount_decimal: Option<String>,
    /// API versions from 2025-03-31 on: `pricing.unit_amount_decimal`.
    pub pricing: Option<StripeItemPricing>,
    pub period: Option<StripePeriod>,
    pub metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct StripeItemPricing {
    pub unit_amount_decimal: Option<String>,
}

impl StripeItem {
    /// The unit price in cents as Stripe states it, whichever API version answered.
    pub fn unit_amount_decimal(&self) -> Option<&str> {
        self.pricing
            .as_ref()
            .and_then(|p| p.unit_amount_decimal.as_deref())
            .or(self.unit_amount_decimal.as_deref())
    }

    /// The local line this item says it carries.
    pub fn line_id(&self) -> Option<LineId> {
        metadata::read(self.metadata.as_ref(), metadata::LINE_ID).map(LineId)
    }
}

#[derive(Debug, Clone, Copy, miniserde::Deserialize)]
pub struct StripePeriod {
    pub start: i64,
    pub end: i64,
}

/// The metadata key that names the installation an object was made by.
pub const INSTALLATION_METADATA: &str = metadata::INSTALLATION;

/// This database's installation (docs/RULES.md §5, "Keys and installations"): a random id made
/// by the first `migrate` and kept in the database, put into every idempotency key and into the
/// metadata of every customer, invoice and item the worker creates, so that two databases
/// billing through one Stripe account (two products, two test databases on one test key, a
/// database rebuilt from an import) never share a key. Stripe scopes keys to the account.
///
/// Customers and invoices that existed when the installation was made (a database migrated
/// from a version without installations) keep the keys they were first sent with: an invoice
/// half sent before the upgrade finishes under the keys it started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    id: String,
    legacy_customers_through: i64,
    legacy_invoices_through: i64,
}

/// The keys and metadata one object is sent under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Made before installations existed: `plan-invoicer:…` keys, no installation metadata.
    Legacy,
    /// `plan-invoicer:<installation>:…` keys and `plan_invoicer_installation` metadata.
    Installation(String),
}

impl Installation {
    /// `id` must be 1 to 32 ASCII letters or digits (it goes into keys and metadata).
    pub fn new(
        id: &str,
        legacy_customers_through: i64,
        legacy_invoices_through: i64,
    ) -> Option<Installation> {
        let ok = !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric());
        ok.then(|| Installation {
            id: id.to_string(),
            legacy_customers_through,
            legacy_invoices_through,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn customer(&self, id: CustomerId) -> Scope {
        self.scope(id.0 <= self.legacy_customers_through)
    }

    pub fn invoice(&self, id: InvoiceId) -> Scope {
        self.scope(id.0 <= self.legacy_invoices_through)
    }

    fn scope(&self, legacy: bool) -> Scope {
        if legacy {
            Scope::Legacy
        } else {
            Scope::Installation(self.id.clone())
        }
    }

    /// Whether an object or event whose metadata names `tag` as its installation is this
    /// installation's: its own id, or no tag at all (made before installations existed).
    pub fn owns(&self, tag: Option<&str>) -> bool {
        tag.is_none_or(|t| t == self.id)
    }

    /// [`Installation::owns`] over an object's metadata.
    pub fn owns_metadata(&self, metadata: Option<&HashMap<String, String>>) -> bool {
        self.owns(
            metadata
                .and_then(|m| m.get(INSTALLATION_METADATA))
                .map(String::as_str),
        )
    }
}

impl Scope {
    fn prefix(&self) -> String {
        match self {
            Scope::Legacy => "plan-invoicer".to_string(),
            Scope::Installation(id) => format!("plan-invoicer:{id}"),
        }
    }

    /// Adds the installation's metadata (nothing for a legacy object).
    pub fn tag(&self, metadata: &mut HashMap<String, String>) {
        if let Scope::Installation(id) = self {
            metadata.insert(INSTALLATION_METADATA.to_string(), id.clone());
        }
    }
}

/// The idempotency keys (docs/RULES.md §5).
pub mod keys {
    use super::Scope;
    use crate::domain::{CustomerId, InvoiceId, LineId, Tier};

    pub fn customer(s: &Scope, id: CustomerId) -> String {
        format!("{}:customer:{id}", s.prefix())
    }
    pub fn invoice(s: &Scope, id: InvoiceId) -> String {
        format!("{}:invoice:{id}", s.prefix())
    }
    /// Chunk `chunk` of all of an invoice's lines (the first attempt at them).
    pub fn lines(s: &Scope, id: InvoiceId, chunk: usize) -> String {
        format!("{}:invoice:{id}:lines:{chunk}", s.prefix())
    }
    /// The lines of a resumed invoice that Stripe does not hold yet: named by the lines
    /// themselves, so the same rest gets the same key and another rest another key.
    pub fn rest_of_lines(s: &Scope, id: InvoiceId, lines: &[LineId]) -> String {
        // FNV-1a: stable across builds and Rust versions, unlike `std`'s hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for line in lines {
            for b in line.0.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!(
            "{}:invoice:{id}:lines:rest-{}-{h:016x}",
            s.prefix(),
            lines.len()
        )
    }
    /// Products are the account's catalog, one per tier with an id of our choosing, shared by
    /// every installation on the account: no installation in their key or metadata.
    pub fn product(tier: Tier) -> String {
        format!("plan-invoicer:product:{}", tier.name())
    }
    /// The product's own id in Stripe (Stripe accepts ids of our choosing for products), so
    /// that a second creation, even after the idempotency key expired, finds the first.
    pub fn product_id(tier: Tier) -> String {
        format!("plan_invoicer_{}", tier.name())
    }
    pub fn finalize(s: &Scope, id: InvoiceId) -> String {
        format!("{}:invoice:{id}:finalize", s.prefix())
    }
    /// The overdue policy's void of an invoice.
    pub fn void(s: &Scope, id: InvoiceId) -> String {
        format!("{}:invoice:{id}:void", s.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_never_printed() {
        let key = ApiKey::new("sk_test_secret123").unwrap_or(ApiKey(String::new()));
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!(key.is_test_mode());
        assert!(ApiKey::new("  ").is_none());
    }

    #[test]
    fn keys_follow_the_spec() {
        use crate::domain::{CustomerId, InvoiceId, LineId};
        let legacy = Scope::Legacy;
        assert_eq!(
            keys::customer(&legacy, CustomerId(7)),
            "plan-invoicer:customer:7"
        );
        assert_eq!(
            keys::invoice(&legacy, InvoiceId(3)),
            "plan-invoicer:invoice:3"
        );
        assert_eq!(
            keys::lines(&legacy, InvoiceId(3), 0),
            "plan-invoicer:invoice:3:lines:0"
        );
        let rest = keys::rest_of_lines(&legacy, InvoiceId(3), &[LineId(12), LineId(14)]);
        assert_eq!(
            rest,
            keys::rest_of_lines(&legacy, InvoiceId(3), &[LineId(12), LineId(14)])
        );
        assert_ne!(
            rest,
            keys::rest_of_lines(&legacy, InvoiceId(3), &[LineId(12), LineId(13)])
        );
        assert!(rest.starts_with("plan-invoicer:invoice:3:lines:rest-2-") && rest.len() < 255);
        assert_eq!(
            keys::product(crate::domain::Tier::CloudStandard),
            "plan-invoicer:product:cloud_standard"
        );
        assert_eq!(
            keys::finalize(&legacy, InvoiceId(3)),
            "plan-invoicer:invoice:3:finalize"
        );
    }

    #[test]
    fn an_installation_scopes_every_key_but_its_legacy_objects() {
        use crate::domain::{CustomerId, InvoiceId};
        let i = Installation::new("0123456789abcdef", 2, 5).unwrap_or_else(|| panic!("an id"));
        assert_eq!(i.customer(CustomerId(2)), Scope::Legacy);
        assert_eq!(
            keys::customer(&i.customer(CustomerId(3)), CustomerId(3)),
            "plan-invoicer:0123456789abcdef:customer:3"
        );
        assert_eq!(i.invoice(InvoiceId(5)), Scope::Legacy);
        let s = i.invoice(InvoiceId(6));
        assert_eq!(
            keys::void(&s, InvoiceId(6)),
            "plan-invoicer:0123456789abcdef:invoice:6:void"
        );
        let mut m = HashMap::new();
        s.tag(&mut m);
        assert_eq!(
            m.get(INSTALLATION_METADATA).map(String::as_str),
            Some("0123456789abcdef")
        );
        assert!(i.owns_metadata(Some(&m)));
        assert!(
            i.owns(None),
            "an object without a tag was made before installations"
        );
        assert!(!i.owns(Some("fedcba9876543210")));
        let mut legacy = HashMap::new();
        Scope::Legacy.tag(&mut legacy);
        assert!(legacy.is_empty());
        assert!(Installation::new("", 0, 0).is_none());
        assert!(Installation::new("a:b", 0, 0).is_none());
        assert!(Installation::new(&"a".repeat(33), 0, 0).is_none());
    }
}
