//! The admin commands as data: one enum per resource, with the CLI's flags (clap) and the API's
//! JSON fields (serde) on the same fields, so that both surfaces take the same input and run
//! the same code ([`super::execute`]).

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::domain::{
    BillingSchedule, CollectionMethod, CustomerKind, InvoiceStatus, LicenseManagement, PlanStatus,
    ScheduleChange, Tier, Ts,
};

#[derive(Debug, Subcommand, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CustomerCmd {
    /// Create a customer; prints its id.
    Create(CustomerCreate),
    /// A customer's fields and its plans' ids.
    Show {
        /// The customer's id.
        id: i64,
    },
    /// Give or change a customer's negotiated prices; reprices the current plan at once.
    SetDiscount {
        /// The customer's id.
        id: i64,
        /// The monthly price per license, in cents.
        #[arg(long, allow_negative_numbers = true)]
        monthly_discounted_price_cents: i64,
        /// The annual price per license, in cents.
        #[arg(long, allow_negative_numbers = true)]
        annual_discounted_price_cents: i64,
        /// The tier the prices belong to (default: the customer's, else its plan's).
        #[arg(long, value_parser = Tier::parse)]
        required_plan_tier: Option<Tier>,
    },
    /// The customer's minimum licenses for the next plan it buys (needs a discount and no live
    /// plan, as Zulip's support action).
    SetMinimumLicenses {
        /// The customer's id.
        id: i64,
        /// At least this many licenses on the customer's next plan.
        #[arg(
            long,
            allow_negative_numbers = true,
            conflicts_with = "none",
            required_unless_present = "none"
        )]
        count: Option<i64>,
        /// Remove the customer's own minimum (the tier's minimum applies).
        #[serde(default)]
        #[arg(long)]
        none: bool,
    },
    /// The tier the customer's discounted prices belong to (one it can buy).
    SetRequiredPlanTier {
        /// The customer's id.
        id: i64,
        /// cloud_standard or cloud_plus (Cloud); self_hosted_basic or self_hosted_business.
        #[arg(
            long,
            conflicts_with = "none",
            required_unless_present = "none",
            value_parser = Tier::parse
        )]
        tier: Option<Tier>,
        /// Remove the required tier (only once the discount is 0).
        #[serde(default)]
        #[arg(long)]
        none: bool,
    },
    /// Whether the customer's licenses may be set below its seats in use and its minimum.
    SetExempt {
        /// The customer's id.
        id: i64,
        /// true or false.
        #[arg(action = clap::ArgAction::Set)]
        exempt: bool,
    },
    /// Record a usage upload from the host (self-hosted freshness) and optionally a seat count.
    ReportUsage {
        /// The customer's id.
        id: i64,
        /// Seats in use at the upload.
        #[arg(long, allow_negative_numbers = true)]
        seats: Option<i64>,
    },
}

#[derive(Debug, Args, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerCreate {
    /// The customer's name (shown in staff notices).
    #[arg(long)]
    pub name: String,
    /// The billing email given to Stripe.
    #[arg(long)]
    pub email: Option<String>,
    /// Opaque reference to the owner in the host application (unique).
    #[arg(long)]
    pub external_ref: Option<String>,
    /// An existing Stripe customer (otherwise the worker creates one before the first invoice).
    #[arg(long)]
    pub stripe_customer_id: Option<String>,
    /// cloud or self_hosted (self-hosted customers start with the new-customer flat discount).
    #[arg(long, default_value = "cloud", value_parser = CustomerKind::parse)]
    #[serde(default)]
    pub kind: CustomerKind,
    /// A negotiated monthly price per license, in cents.
    #[arg(long, allow_negative_numbers = true)]
    pub monthly_discounted_price_cents: Option<i64>,
    /// A negotiated annual price per license, in cents.
    #[arg(long, allow_negative_numbers = true)]
    pub annual_discounted_price_cents: Option<i64>,
    /// The tier the discounted prices belong to.
    #[arg(long, value_parser = Tier::parse)]
    pub required_plan_tier: Option<Tier>,
    /// At least this many licenses on every plan of the customer.
    #[arg(long, allow_negative_numbers = true)]
    pub minimum_licenses: Option<i64>,
    /// Licenses may be set below the seats in use.
    #[serde(default)]
    #[arg(long)]
    pub exempt_from_license_number_check: bool,
}

#[derive(Debug, Subcommand, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PlanCmd {
    /// Create a plan with its first renewal ledger entry; prints its id.
    Create(PlanCreate),
    /// A plan's fields, licenses and invoicing state.
    Show {
        /// The plan's id.
        id: i64,
    },
    /// Plans, filtered.
    List {
        /// Only this customer's plans.
        #[arg(long)]
        customer: Option<i64>,
        /// Only plans in this status (name or number).
        #[arg(long, value_parser = PlanStatus::parse)]
        status: Option<PlanStatus>,
        /// Only plans due at --now.
        #[serde(default)]
        #[arg(long)]
        due: bool,
    },
    /// A plan's license ledger.
    Ledger {
        /// The plan's id.
        id: i64,
    },
    /// Automatic license management: the current seat count.
    Seats {
        /// The plan's id.
        id: i64,
        /// Seats in use now.
        #[arg(long, allow_negative_numbers = true)]
        count: i64,
    },
    /// Manual plans: more licenses for the current period.
    BuyLicenses {
        /// The plan's id.
        id: i64,
        /// The new license count (more than today's).
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// Manual plans: licenses for the next renewal.
    RenewalLicenses {
        /// The plan's id.
        id: i64,
        /// Licenses at the next renewal.
        #[arg(long, allow_negative_numbers = true)]
        licenses: i64,
    },
    /// A billing-page status change, with Zulip's guards.
    Schedule {
        /// The plan's id.
        id: i64,
        /// downgrade_at_end_of_cycle | switch_to_annual | switch_to_monthly |
        /// downgrade_at_end_of_free_trial | cancel
        #[arg(long, value_parser = ScheduleChange::parse)]
        change: ScheduleChange,
    },
    /// End the plan at --now (licenses added in the final period are not billed).
    DowngradeNow {
        /// The plan's id.
        id: i64,
    },
    /// Change how the plan's invoices are collected, from the next invoice on.
    SetBillingMode {
        /// The plan's id.
        id: i64,
        /// charge_automatically (the card on file) or send_invoice (emailed, due in 15 days).
        #[arg(value_parser = CollectionMethod::parse)]
        mode: CollectionMethod,
    },
    /// Change who keeps the plan's license count, from now on.
    SetLicenseManagement {
        /// The plan's id.
        id: i64,
        /// automatic (seat reports) or manual (bought licenses).
        #[arg(value_parser = LicenseManagement::parse)]
        mode: LicenseManagement,
    },
    /// Move an active plan to a higher tier now, with a credit for the unused part of its period.
    UpgradeTier {
        /// The plan's id.
        id: i64,
        /// The new tier (higher, of the same kind: cloud_plus over cloud_standard, …).
        #[arg(long, value_parser = Tier::parse)]
        tier: Tier,
    },
    /// Set the plan's end date.
    SetEndDate {
        /// The plan's id.
        id: i64,
        /// The end date (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        #[serde(deserialize_with = "de_time")]
        date: Ts,
    },
    /// A never-started successor (fixed-price, or billed per license) from the plan's end date.
    ScheduleSuccessor {
        /// The plan's id.
        id: i64,
        /// A fixed price for the successor's year, in cents (without it: billed per license).
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: Option<i64>,
        /// The successor's tier (default: the plan's; required without a fixed price when the
        /// plan is complimentary).
        #[arg(long, value_parser = Tier::parse)]
        tier: Option<Tier>,
        /// annual or monthly (default: the plan's schedule).
        #[arg(long, value_parser = BillingSchedule::parse)]
        schedule: Option<BillingSchedule>,
        /// Per-license successors: licenses follow the seat count.
        #[serde(default)]
        #[arg(long)]
        automanage_licenses: bool,
    },
    /// A plan that needs attention, or waits to retry an error, is invoiced by the next pass
    /// (once its cause is fixed).
    Retry {
        /// The plan's id.
        id: i64,
    },
    /// The outbox rows (plan events and notices) of a plan.
    Events {
        /// The plan's id.
        id: i64,
    },
    /// The invoice the plan would get at its next invoice date (or at --at), and the
    /// end-of-cycle changes that would come first; nothing is written or sent.
    Preview {
        /// The plan's id.
        id: i64,
        /// Preview at this instant instead of the next invoice date.
        #[arg(long, value_parser = parse_time)]
        #[serde(default, deserialize_with = "de_opt_time")]
        at: Option<Ts>,
    },
}

#[derive(Debug, Args, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanCreate {
    /// The customer's id.
    #[arg(long)]
    pub customer: i64,
    /// The tier (name or number): cloud_standard, cloud_plus, self_hosted_business, …
    #[arg(long, value_parser = Tier::parse)]
    pub tier: Tier,
    /// annual or monthly.
    #[arg(long, value_parser = BillingSchedule::parse)]
    pub schedule: BillingSchedule,
    /// Licenses for the first period.
    #[arg(long, allow_negative_numbers = true)]
    pub licenses: i64,
    /// Licenses at the first renewal (default: --licenses).
    #[arg(long, allow_negative_numbers = true)]
    pub licenses_at_next_renewal: Option<i64>,
    /// Licenses follow the seat count (`plan seats`).
    #[serde(default)]
    #[arg(long)]
    pub automanage_licenses: bool,
    /// Stripe emails an invoice due in 15 days instead of charging the card.
    #[serde(default)]
    #[arg(long)]
    pub invoice_billing: bool,
    /// The billing cycle anchor (default --now).
    #[arg(long, value_parser = parse_time)]
    #[serde(default, deserialize_with = "de_opt_time")]
    pub anchor: Option<Ts>,
    /// The price per license in cents (default: from the tier and the customer's discount).
    #[arg(long, allow_negative_numbers = true)]
    pub price_per_license_cents: Option<i64>,
    /// A fixed price for each period, in cents, instead of a price per license.
    #[arg(long, allow_negative_numbers = true)]
    pub fixed_price_cents: Option<i64>,
    /// The plan's end date (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    #[serde(default, deserialize_with = "de_opt_time")]
    pub end_date: Option<Ts>,
    /// Start in a free trial of this many days.
    #[arg(long, allow_negative_numbers = true)]
    pub free_trial_days: Option<i64>,
    /// The next pass bills the first period (default: it was paid at checkout).
    #[serde(default)]
    #[arg(long)]
    pub first_invoice_by_worker: bool,
}

#[derive(Debug, Subcommand, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OfferCmd {
    /// Offer a fixed-price plan to a customer; prints its id.
    Create {
        /// The customer's id.
        #[arg(long)]
        customer: i64,
        /// The offered tier.
        #[arg(long, value_parser = Tier::parse)]
        tier: Tier,
        /// The price for each period, in cents.
        #[arg(long, allow_negative_numbers = true)]
        fixed_price_cents: i64,
        /// The Stripe invoice already sent for the offer, if any.
        #[arg(long)]
        sent_invoice_id: Option<String>,
    },
    /// Accept an offer: creates the plan; prints its id.
    Accept {
        /// The offer's id.
        id: i64,
        /// annual or monthly.
        #[arg(long, value_parser = BillingSchedule::parse)]
        schedule: BillingSchedule,
        /// Licenses for the first period.
        #[arg(long, allow_negative_numbers = true)]
        licenses: Option<i64>,
    },
}

#[derive(Debug, Subcommand, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InvoicesCmd {
    /// Local invoices with their lines, filtered.
    List {
        /// Only this plan's invoices.
        #[arg(long)]
        plan: Option<i64>,
        /// Only this customer's invoices.
        #[arg(long)]
        customer: Option<i64>,
        /// Only invoices for due dates at or after this instant.
        #[arg(long, value_parser = parse_time)]
        #[serde(default, deserialize_with = "de_opt_time")]
        since: Option<Ts>,
        /// Only invoices in this state: pending (written, not yet confirmed by Stripe) or sent.
        #[arg(long, value_parser = InvoiceStatus::parse)]
        status: Option<InvoiceStatus>,
    },
}

/// What the API answers to an action: the document the CLI prints for the same command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The plan (`plan show`'s document).
    Plan,
    /// The ledger entry written.
    Ledger,
    /// The seat report's entry and the plan's status.
    Seats,
    /// `{"id"}` of the object created.
    Created,
    /// The customer (`customer show`'s document).
    Customer,
}

/// A command the API runs as `POST /v1/{plans|customers}/{id}/{name}`: the CLI's subcommand in
/// snake_case, and what it answers.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    pub name: &'static str,
    pub reply: Reply,
}

const fn action(name: &'static str, reply: Reply) -> Action {
    Action { name, reply }
}

/// The commands of [`PlanCmd`] that change one plan. The other subcommands have routes of their
/// own ([`PLAN_ROUTED`]); a test keeps the two lists and the enum in step.
pub const PLAN_ACTIONS: &[Action] = &[
    action("seats", Reply::Seats),
    action("buy_licenses", Reply::Ledger),
    action("renewal_licenses", Reply::Ledger),
    action("schedule", Reply::Plan),
    action("downgrade_now", Reply::Plan),
    action("set_billing_mode", Reply::Plan),
    action("set_license_management", Reply::Plan),
    action("upgrade_tier", Reply::Plan),
    action("set_end_date", Reply::Plan),
    action("schedule_successor", Reply::Created),
    action("retry", Reply::Plan),
];
/// The plan subcommands with routes of their own (creation and reads).
#[cfg(test)]
const PLAN_ROUTED: &[&str] = &["create", "show", "list", "ledger", "events", "preview"];

/// The commands of [`CustomerCmd`] that change one customer.
pub const CUSTOMER_ACTIONS: &[Action] = &[
    action("set_discount", Reply::Customer),
    action("report_usage", Reply::Customer),
    action("set_minimum_licenses", Reply::Customer),
    action("set_required_plan_tier", Reply::Customer),
    action("set_exempt", Reply::Customer),
];
/// The customer subcommands with routes of their own.
#[cfg(test)]
const CUSTOMER_ROUTED: &[&str] = &["create", "show"];

/// The action of `actions` named `name`.
pub fn find_action(actions: &[Action], name: &str) -> Option<Action> {
    actions.iter().copied().find(|a| a.name == name)
}

/// An instant from the outside (a flag, a query, a header): RFC 3339, inside the accepted
/// years (docs/CLI.md, "Bounds").
pub fn parse_time(s: &str) -> Result<Ts, String> {
    // clap (or the caller) names the flag; the message is about the value.
    crate::domain::bounds::instant("time", parse_rfc3339(s)?).map_err(|_| {
        format!(
            "{s:?} must lie between {}-01-01T00:00:00Z and {}-01-01T00:00:00Z",
            crate::domain::bounds::EARLIEST_YEAR,
            crate::domain::bounds::END_YEAR
        )
    })
}

/// RFC 3339 only: `2012-01-02T03:04:05Z`, any offset. The bounds are the operation's, which
/// names the field.
fn parse_rfc3339(s: &str) -> Result<Ts, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2012-01-02T03:04:05Z ({e})"))
}

/// serde's side of [`parse_rfc3339`]: a JSON instant is read as the CLI reads the flag
/// (chrono's own serde format accepts more than RFC 3339).
fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
    let s = String::deserialize(d)?;
    parse_rfc3339(&s).map_err(serde::de::Error::custom)
}

fn de_opt_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Ts>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_rfc3339(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subcommands clap derives from the enum, in the API's spelling.
    fn subcommands<T: clap::Subcommand>() -> Vec<String> {
        let mut names: Vec<String> = T::augment_subcommands(clap::Command::new("x"))
            .get_subcommands()
            .map(|c| c.get_name().replace('-', "_"))
            .collect();
        names.sort();
        names
    }

    fn listed(actions: &[Action], routed: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = actions
            .iter()
            .map(|a| a.name.to_string())
            .chain(routed.iter().map(|r| r.to_string()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_subcommand_is_an_action_or_has_a_route_of_its_own() {
        assert_eq!(subcommands::<PlanCmd>(), listed(PLAN_ACTIONS, PLAN_ROUTED));
        assert_eq!(
            subcommands::<CustomerCmd>(),
            listed(CUSTOMER_ACTIONS, CUSTOMER_ROUTED)
        );
    }
}
