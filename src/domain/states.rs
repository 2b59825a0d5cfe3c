//! The named states outside Zulip's integer enumerations: plan-event kinds (the outbox's
//! contract with the host application), local invoice states, collection methods and invoice
//! terms, and the billing-page status changes. Each is stored and printed by its snake_case
//! name; [`names!`] gives every one the same `name`, `parse` and `ALL`.

use std::fmt;

use super::{BillingError, Plan};

macro_rules! names {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<Self, BillingError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(BillingError::Invalid(format!(
                        concat!("unknown ", $what, " {:?}: expected {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        /// A string, one of the names.
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": [$($text),+] })
            }
        }

        /// Rows hold the name; a row with another value is refused as bad data.
        impl TryFrom<String> for $name {
            type Error = BillingError;
            fn try_from(text: String) -> Result<Self, BillingError> {
                $name::parse(&text)
            }
        }
    };
}

names! {
    /// What a plan event (an outbox row) says happened. The host application reads these
    /// names (docs/CLI.md, "Plan events"); a new kind is an addition to that contract.
    EventKind, "event kind" {
        /// A plan was created (by `plan create` or an accepted offer).
        PlanStarted = "plan_started",
        /// A billing-page status change (`plan schedule`).
        StatusChanged = "status_changed",
        /// The plan ended and continues on the other schedule as a new plan.
        BillingScheduleSwitched = "billing_schedule_switched",
        /// The plan ended (downgrade, end date, successor start).
        PlanEnded = "plan_ended",
        /// The plan got an end date.
        EndDateSet = "end_date_set",
        /// A free trial ended and the plan is active.
        FreeTrialEnded = "free_trial_ended",
        /// A plan was scheduled to follow this one at its end date.
        SuccessorScheduled = "successor_scheduled",
        /// The billing mode, the license management or the price changed (`message` says which).
        SettingsChanged = "settings_changed",
        /// Staff notice: a fixed-price plan ends soon.
        NoticeFixedPricePlanEnds = "notice_fixed_price_plan_ends",
        /// Staff notice: a self-hosted customer's usage data is stale.
        NoticeStaleUsageData = "notice_stale_usage_data",
        /// Stripe finalized the invoice: it is open, waiting for payment.
        InvoiceFinalized = "invoice.finalized",
        /// The invoice was paid.
        InvoicePaid = "invoice.paid",
        /// A payment attempt failed (the invoice stays open; Stripe retries).
        InvoicePaymentFailed = "invoice.payment_failed",
        /// The customer must act (authentication) before a payment can succeed.
        InvoicePaymentActionRequired = "invoice.payment_action_required",
        /// The invoice was voided: nothing is owed.
        InvoiceVoided = "invoice.voided",
        /// The invoice was marked uncollectible.
        InvoiceMarkedUncollectible = "invoice.marked_uncollectible",
        /// The overdue policy ended a small plan whose newest invoices were all unpaid (the
        /// host limits the organization and tells its owners).
        PlanDowngradedForNonpayment = "plan.downgraded_for_nonpayment",
    }
}

names! {
    /// Where an invoice stands with its payment, as Stripe's webhooks tell it.
    PaymentStatus, "payment status" {
        Open = "open",
        Paid = "paid",
        Void = "void",
        Uncollectible = "uncollectible",
    }
}

impl PaymentStatus {
    /// The status an invoice event leads to, from `current` (docs/RULES.md, "Payments"). A
    /// status only moves forward, whatever order the events arrive in: open → paid, void or
    /// uncollectible; uncollectible → paid or void (Stripe still takes a late payment); paid and
    /// void are final. `None`: the event changes nothing (a failed attempt on an open invoice
    /// changes only its attempt count).
    pub fn after(current: Option<PaymentStatus>, event: EventKind) -> Option<PaymentStatus> {
        use PaymentStatus::*;
        let target = match event {
            EventKind::InvoiceFinalized
            | EventKind::InvoicePaymentFailed
            | EventKind::InvoicePaymentActionRequired => Open,
            EventKind::InvoicePaid => Paid,
            EventKind::InvoiceVoided => Void,
            EventKind::InvoiceMarkedUncollectible => Uncollectible,
            _ => return None,
        };
        let allowed = matches!(
            (current, target),
            (None, _)
                | (Some(Open), Paid | Void | Uncollectible)
                | (Some(Uncollectible), Paid | Void)
        );
        allowed.then_some(target)
    }

    /// Open and uncollectible invoices are unpaid (docs/RULES.md §5.1).
    pub fn is_unpaid(self) -> bool {
        matches!(self, PaymentStatus::Open | PaymentStatus::Uncollectible)
    }

    /// The invoice events Stripe sends that this worker handles.
    pub fn handles(event: EventKind) -> bool {
        matches!(
            event,
            EventKind::InvoiceFinalized
                | EventKind::InvoicePaid
                | EventKind::InvoicePaymentFailed
                | EventKind::InvoicePaymentActionRequired
                | EventKind::InvoiceVoided
                | EventKind::InvoiceMarkedUncollectible
        )
    }
}

names! {
    /// Where a local invoice is: written ahead of Stripe (`pending`) or confirmed sent.
    InvoiceStatus, "invoice status" {
        Pending = "pending",
        Sent = "sent",
    }
}

names! {
    /// How Stripe collects an invoice: from the card on file, or by an emailed invoice.
    CollectionMethod, "collection method" {
        ChargeAutomatically = "charge_automatically",
        SendInvoice = "send_invoice",
    }
}

/// An emailed invoice is due this many days after it is finalized (docs/RULES.md, "Invoices").
pub const DAYS_UNTIL_DUE: i32 = 15;

/// The terms an invoice of a plan is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceTerms {
    pub collection_method: CollectionMethod,
    /// Only for emailed invoices.
    pub days_until_due: Option<i32>,
}

impl InvoiceTerms {
    pub fn of(plan: &Plan) -> InvoiceTerms {
        if plan.charge_automatically {
            InvoiceTerms {
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
            }
        } else {
            InvoiceTerms {
                collection_method: CollectionMethod::SendInvoice,
                days_until_due: Some(DAYS_UNTIL_DUE),
            }
        }
    }
}

names! {
    /// Who keeps a plan's license count: the host's seat reports, or the customer's purchases.
    LicenseManagement, "license management" {
        Automatic = "automatic",
        Manual = "manual",
    }
}

names! {
    /// A billing-page status change (`plan schedule --change`).
    ScheduleChange, "change" {
        DowngradeAtEndOfCycle = "downgrade_at_end_of_cycle",
        SwitchToAnnual = "switch_to_annual",
        SwitchToMonthly = "switch_to_monthly",
        DowngradeAtEndOfFreeTrial = "downgrade_at_end_of_free_trial",
        Cancel = "cancel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_statuses_only_move_forward() {
        use EventKind::*;
        use PaymentStatus::*;
        assert_eq!(PaymentStatus::after(None, InvoiceFinalized), Some(Open));
        assert_eq!(PaymentStatus::after(None, InvoicePaid), Some(Paid));
        assert_eq!(PaymentStatus::after(Some(Open), InvoicePaid), Some(Paid));
        // A finalized event delivered after the payment does not reopen the invoice.
        assert_eq!(PaymentStatus::after(Some(Paid), InvoiceFinalized), None);
        assert_eq!(PaymentStatus::after(Some(Paid), InvoiceVoided), None);
        assert_eq!(PaymentStatus::after(Some(Void), InvoicePaid), None);
        assert_eq!(
            PaymentStatus::after(Some(Uncollectible), InvoicePaid),
            Some(Paid)
        );
        assert_eq!(PaymentStatus::after(Some(Open), InvoicePaymentFailed), None);
        assert_eq!(PaymentStatus::after(Some(Open), PlanStarted), None);
        // Every order of the same events ends in the same status.
        let events = [InvoiceFinalized, InvoicePaymentFailed, InvoicePaid];
        let mut ends = std::collections::BTreeSet::new();
        for order in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut status = None;
            for i in order {
                status = PaymentStatus::after(status, events[i]).or(status);
            }
            ends.insert(status.map(PaymentStatus::name));
        }
        assert_eq!(ends.into_iter().collect::<Vec<_>>(), [Some("paid")]);
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()).ok(), Some(*k));
        }
        assert_eq!(EventKind::ALL.len(), 17);
        // The kinds are a contract with the host application: docs/CLI.md lists every one.
        let docs = include_str!("../../docs/CLI.md");
        for k in EventKind::ALL {
            assert!(
                docs.contains(&format!("| `{}` |", k.name())),
                "docs/CLI.md lacks {k}"
            );
        }
        for c in ScheduleChange::ALL {
            assert_eq!(ScheduleChange::parse(c.name()).ok(), Some(*c));
        }
        let refused = ScheduleChange::parse("later").map_err(|e| e.to_string());
        assert_eq!(
            refused,
            Err("unknown change \"later\": expected downgrade_at_end_of_cycle, switch_to_annual, switch_to_monthly, downgrade_at_end_of_free_trial, cancel".to_string())
        );
        assert!(InvoiceStatus::try_from("lost".to_string()).is_err());
    }
}
