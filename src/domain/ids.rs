//! Ids that cross module boundaries where a mix-up would send or skip something: the local
//! invoice and line ids that make Stripe's idempotency keys and metadata, and the plan and
//! customer ids of the claim protocol. Each is its own type, so that a line id cannot be passed
//! where an invoice id is meant; the number inside is the database's.

use std::fmt;

macro_rules! ids {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        /// Rows hold the number.
        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                $name(id)
            }
        }
    )+};
}

ids! {
    /// A plan (`customer_plan.id`).
    PlanId,
    /// A customer (`customer.id`).
    CustomerId,
    /// A local invoice (`invoice.id`).
    InvoiceId,
    /// A line of a local invoice (`invoice_line.id`).
    LineId,
    /// A license ledger entry (`license_ledger.id`).
    LedgerEntryId,
}
