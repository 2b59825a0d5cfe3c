//! Zulip's enumerations (tiers, statuses, schedules) with their integer values and CLI names.

use std::fmt;

use super::BillingError;

/// Declares a `#[repr(i16)]`-like enum with its integer values and snake_case names, plus
/// parsing from either form (`"annual"` or `"1"`).
macro_rules! coded_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, $err:ident { $($variant:ident = $value:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The integer Zulip stores.
            pub fn code(self) -> i16 {
                match self { $($name::$variant => $value),+ }
            }

            /// The lowercase snake_case name used by the CLI and JSON.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_code(code: i64) -> Result<Self, BillingError> {
                match code {
                    $($value => Ok($name::$variant),)+
                    other => Err(BillingError::$err(other.to_string())),
                }
            }

            /// Accepts the snake_case name or the integer.
            pub fn parse(text: &str) -> Result<Self, BillingError> {
                let t = text.trim();
                if let Ok(n) = t.parse::<i64>() {
                    return Self::from_code(n);
                }
                match t {
                    $($text => Ok($name::$variant),)+
                    other => Err(BillingError::$err(other.to_string())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = BillingError;
            fn from_str(s: &str) -> Result<Self, Self::Err> { Self::parse(s) }
        }

        /// JSON takes the name only (the integer is the CLI's shorthand): what the schema says.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                match text.as_ref() {
                    $($text => Ok($name::$variant),)+
                    other => Err(serde::de::Error::custom(format!(
                        concat!("unknown ", $what, " {:?}: expected {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
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
    };
}

coded_enum!(
    /// Plan tiers (`CustomerPlan.tier`).
    Tier, "tier", UnknownTier {
        CloudStandard = 1 => "cloud_standard",
        CloudPlus = 2 => "cloud_plus",
        CloudCommunity = 3 => "cloud_community",
        CloudEnterprise = 4 => "cloud_enterprise",
        SelfHostedBase = 100 => "self_hosted_base",
        SelfHostedLegacy = 101 => "self_hosted_legacy",
        SelfHostedCommunity = 102 => "self_hosted_community",
        SelfHostedBasic = 103 => "self_hosted_basic",
        SelfHostedBusiness = 104 => "self_hosted_business",
        SelfHostedEnterprise = 105 => "self_hosted_enterprise",
    }
);

coded_enum!(
    /// `CustomerPlan.status`. Live plans have a code below 10.
    PlanStatus, "plan status", UnknownStatus {
        Active = 1 => "active",
        DowngradeAtEndOfCycle = 2 => "downgrade_at_end_of_cycle",
        FreeTrial = 3 => "free_trial",
        SwitchToAnnualAtEndOfCycle = 4 => "switch_to_annual_at_end_of_cycle",
        SwitchPlanTierNow = 5 => "switch_plan_tier_now",
        SwitchToMonthlyAtEndOfCycle = 6 => "switch_to_monthly_at_end_of_cycle",
        DowngradeAtEndOfFreeTrial = 7 => "downgrade_at_end_of_free_trial",
        SwitchPlanTierAtPlanEnd = 8 => "switch_plan_tier_at_plan_end",
        Ended = 11 => "ended",
        NeverStarted = 12 => "never_started",
    }
);

coded_enum!(
    /// `CustomerPlan.billing_schedule`.
    BillingSchedule, "billing schedule", UnknownSchedule {
        Annual = 1 => "annual",
        Monthly = 2 => "monthly",
    }
);

coded_enum!(
    /// `CustomerPlan.invoicing_status`.
    InvoicingStatus, "invoicing status", UnknownInvoicingStatus {
        Done = 1 => "done",
        Started = 2 => "started",
        InitialInvoiceToBeSent = 3 => "initial_invoice_to_be_sent",
    }
);

coded_enum!(
    /// `CustomerPlanOffer.status`.
    OfferStatus, "offer status", UnknownOfferStatus {
        Configured = 1 => "configured",
        Processed = 2 => "processed",
    }
);

/// Zulip's `LIVE_STATUS_THRESHOLD`.
pub const LIVE_STATUS_THRESHOLD: i16 = 10;

impl PlanStatus {
    pub fn is_live(self) -> bool {
        self.code() < LIVE_STATUS_THRESHOLD
    }
}

impl Tier {
    /// `PAID_PLAN_TIERS`.
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Tier::CloudStandard
                | Tier::CloudPlus
                | Tier::SelfHostedBasic
                | Tier::SelfHostedBusiness
                | Tier::SelfHostedEnterprise
        )
    }

    /// `COMPLIMENTARY_PLAN_TIERS`.
    pub fn is_complimentary(self) -> bool {
        self == Tier::SelfHostedLegacy
    }

    /// The display name (also the Stripe statement descriptor and line descriptions).
    pub fn display_name(self) -> Option<&'static str> {
        match self {
            Tier::CloudStandard => Some("Zulip Cloud Standard"),
            Tier::CloudPlus => Some("Zulip Cloud Plus"),
            Tier::CloudEnterprise => Some("Zulip Enterprise"),
            Tier::SelfHostedLegacy => Some("Zulip Basic (complimentary)"),
            Tier::SelfHostedCommunity => Some("Community"),
            Tier::SelfHostedBasic => Some("Zulip Basic"),
            Tier::SelfHostedBusiness => Some("Zulip Business"),
            Tier::CloudCommunity | Tier::SelfHostedBase | Tier::SelfHostedEnterprise => None,
        }
    }

    /// The name used on invoices: the display name, or the snake_case name for tiers without one.
    pub fn plan_name(self) -> &'static str {
        self.display_name().unwrap_or(self.name())
    }
}

/// Who owns a customer: a Cloud organization or a self-hosted server (docs/RULES.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKind {
    #[default]
    Cloud,
    SelfHosted,
}

impl fmt::Display for CustomerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl CustomerKind {
    pub fn name(self) -> &'static str {
        match self {
            CustomerKind::Cloud => "cloud",
            CustomerKind::SelfHosted => "self_hosted",
        }
    }

    pub fn parse(text: &str) -> Result<Self, BillingError> {
        match text {
            "cloud" => Ok(CustomerKind::Cloud),
            "self_hosted" => Ok(CustomerKind::SelfHosted),
            other => Err(BillingError::Invalid(format!(
                "unknown customer kind {other:?} (expected cloud or self_hosted)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.name()).ok(), Some(*t));
            assert_eq!(Tier::from_code(t.code() as i64).ok(), Some(*t));
        }
        for s in PlanStatus::ALL {
            assert_eq!(PlanStatus::parse(&s.code().to_string()).ok(), Some(*s));
        }
        assert_eq!(
            BillingSchedule::parse("2").ok(),
            Some(BillingSchedule::Monthly)
        );
    }

    #[test]
    fn unknown_values_are_named() {
        assert_eq!(
            BillingSchedule::from_code(1000).map_err(|e| e.to_string()),
            Err("Unknown billing_schedule: 1000".to_string())
        );
        assert_eq!(
            Tier::parse("gold").map_err(|e| e.to_string()),
            Err("Unknown tier: gold".to_string())
        );
    }

    #[test]
    fn live_threshold() {
        assert!(PlanStatus::SwitchPlanTierAtPlanEnd.is_live());
        assert!(!PlanStatus::Ended.is_live());
        assert!(!PlanStatus::NeverStarted.is_live());
    }
}
