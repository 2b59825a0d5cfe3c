//! The pure billing core: no database, no HTTP, no clock. Every function takes the instant it
//! acts at as a parameter.

pub mod bounds;
pub mod change;
pub mod cycle;
pub mod dates;
pub mod ids;
pub mod lines;
pub mod model;
pub mod payments;
pub mod prices;
pub mod refusal;
pub mod revenue;
pub mod states;
pub mod types;

#[cfg(test)]
mod scenarios;

pub use cycle::{end_of_cycle, plan_parameters, EndOfCycle, Freshness, PlanParameters};
pub use ids::{CustomerId, InvoiceId, LedgerEntryId, LineId, PlanId};
pub use lines::{invoice_lines, InvoiceDraft, LineDraft, LineKind};
pub use model::{Customer, LedgerEntry, Plan, Ts};
pub use payments::{overdue_decision, InvoiceEvent, OverdueDecision, OverdueFacts, OverduePolicy};
pub use refusal::Refusal;
pub use states::{
    CollectionMethod, EventKind, InvoiceStatus, InvoiceTerms, LicenseManagement, PaymentStatus,
    ScheduleChange, DAYS_UNTIL_DUE,
};
pub use types::{BillingSchedule, CustomerKind, InvoicingStatus, OfferStatus, PlanStatus, Tier};

/// A billing rule refused something. The messages are Zulip's where the spec gives them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    #[error("Unknown tier: {0}")]
    UnknownTier(String),
    #[error("Unknown billing_schedule: {0}")]
    UnknownSchedule(String),
    #[error("Unknown plan status: {0}")]
    UnknownStatus(String),
    #[error("Unknown invoicing status: {0}")]
    UnknownInvoicingStatus(String),
    #[error("Unknown offer status: {0}")]
    UnknownOfferStatus(String),
    #[error(
        "licenses at next renewal ({licenses}) are below the plan's minimum of {minimum} licenses"
    )]
    BelowMinimumLicenses { licenses: i64, minimum: i64 },
    #[error("the plan renews with {licenses} licenses but {seats} seats are in use (manual license management)")]
    ManualPlanShort { licenses: i64, seats: i64 },
    #[error("missing data: {0}")]
    MissingData(String),
    #[error("date out of range")]
    DateOutOfRange,
    #[error("amount overflows 64-bit cents")]
    AmountOverflow,
    #[error("{0}")]
    Invalid(String),
}
