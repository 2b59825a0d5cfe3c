//! The metadata keys the worker writes on the Stripe objects it creates, and reads back (the
//! audit, the >24 h resume, payment events). One place, so that a writer and its readers cannot
//! drift apart. docs/API.md ("Stripe objects") documents them for the host application.

/// On a customer: the local customer's id.
pub const CUSTOMER_ID: &str = "plan_invoicer_customer_id";
/// On a customer: the host application's reference, when it gave one.
pub const EXTERNAL_REF: &str = "external_ref";
/// On an invoice: the local invoice's id.
pub const INVOICE_ID: &str = "plan_invoicer_invoice_id";
/// On an invoice: the local plan's id.
pub const PLAN_ID: &str = "plan_id";
/// On an invoice: its period, in Unix seconds.
pub const PERIOD_START: &str = "period_start";
pub const PERIOD_END: &str = "period_end";
/// On an item: the local line's id.
pub const LINE_ID: &str = "plan_invoicer_line_id";
/// On an item: the ledger entry the line bills, when there is one.
pub const LEDGER_ENTRY_ID: &str = "ledger_entry_id";
/// On a product: the tier it sells.
pub const TIER: &str = "plan_invoicer_tier";
/// On every customer, invoice and item: the installation that made it.
pub const INSTALLATION: &str = "plan_invoicer_installation";

/// The value of `key` in an object's metadata, parsed.
pub fn read<T: std::str::FromStr>(
    metadata: Option<&std::collections::HashMap<String, String>>,
    key: &str,
) -> Option<T> {
    metadata?.get(key)?.parse().ok()
}
