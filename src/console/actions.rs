//! Support actions: each is an admin command ([`crate::admin::PlanCmd`],
//! [`crate::admin::CustomerCmd`] or [`crate::admin::OfferCmd`]) built from a form. The first POST
//! shows what the action changes and its money effect (the action and `plan preview`'s code in
//! one transaction that is rolled back); the second, with `confirm`, runs it with the same guards
//! and records it in the change history as `console:<email>` with the reason, which is required.
//! A refusal is shown beside the field it concerns.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::html::{money_opt, notice, page};
use super::session::Viewer;
use super::{path_id, ConsoleState, Failure};
use crate::admin::staff::Role;
use crate::admin::support::{self, Action, Target};
use crate::admin::{parse_time, CustomerCmd, OfferCmd, PlanCmd};
use crate::domain::change::Author;
use crate::domain::refusal::{Refusal, Spelling};
use crate::domain::{BillingSchedule, ScheduleChange, Tier};
use crate::error::{refuse, AppError};
use crate::views::PlanView;

/// Whom an action's form is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Plan,
    Customer,
}

/// A field of a form: its name, its label, and whether it may be left empty.
struct Field {
    name: &'static str,
    label: &'static str,
    optional: bool,
}

const fn field(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        optional: false,
    }
}

const fn optional(name: &'static str, label: &'static str) -> Field {
    Field {
        name,
        label,
        optional: true,
    }
}

/// An action's form: its path segment, its title, its fields, and which plans show it.
struct Kind {
    path: &'static str,
    title: &'static str,
    scope: Scope,
    fields: &'static [Field],
    shown: fn(&PlanView) -> bool,
}

fn always(_: &PlanView) -> bool {
    true
}
fn automatic(p: &PlanView) -> bool {
    p.automanage_licenses
}
fn manual(p: &PlanView) -> bool {
    !p.automanage_licenses
}
fn parked(p: &PlanView) -> bool {
    p.needs_attention.is_some() || p.next_retry_at.is_some()
}

const KINDS: &[Kind] = &[
    Kind {
        path: "retry",
        title: "Retry invoicing",
        scope: Scope::Plan,
        fields: &[],
        shown: parked,
    },
    Kind {
        path: "seats",
        title: "Change the seats in use",
        scope: Scope::Plan,
        fields: &[field("count", "Seats in use")],
        shown: automatic,
    },
    Kind {
        path: "buy-licenses",
        title: "Add licenses now",
        scope: Scope::Plan,
        fields: &[field("licenses", "New license count")],
        shown: manual,
    },
    Kind {
        path: "renewal-licenses",
        title: "Licenses at the next renewal",
        scope: Scope::Plan,
        fields: &[field("licenses", "Licenses at the next renewal")],
        shown: manual,
    },
    Kind {
        path: "schedule",
        title: "Schedule a change at the end of the cycle",
        scope: Scope::Plan,
        fields: &[field(
            "change",
            "downgrade_at_end_of_cycle, switch_to_annual, switch_to_monthly, downgrade_at_end_of_free_trial or cancel",
        )],
        shown: always,
    },
    Kind {
        path: "upgrade-tier",
        title: "Upgrade the tier now",
        scope: Scope::Plan,
        fields: &[field("tier", "New tier (e.g. cloud_plus)")],
        shown: always,
    },
    Kind {
        path: "end-date",
        title: "Set the end date",
        scope: Scope::Plan,
        fields: &[field("date", "End date (RFC 3339, e.g. 2027-06-01T00:00:00Z)")],
        shown: always,
    },
    Kind {
        path: "successor",
        title: "Schedule a successor plan from the end date",
        scope: Scope::Plan,
        fields: &[
            optional("fixed_price_cents", "Fixed price for the year, in cents (empty: per license)"),
            optional("tier", "Tier (empty: the plan's)"),
            optional("schedule", "annual or monthly (empty: the plan's)"),
        ],
        shown: always,
    },
    Kind {
        path: "downgrade-now",
        title: "End the plan now",
        scope: Scope::Plan,
        fields: &[],
        shown: always,
    },
    Kind {
        path: "discount",
        title: "Set the discounted prices",
        scope: Scope::Customer,
        fields: &[
            field("monthly_discounted_price_cents", "Monthly price per license, in cents"),
            field("annual_discounted_price_cents", "Annual price per license, in cents"),
        ],
        shown: always,
    },
    Kind {
        path: "minimum-licenses",
        title: "Set the minimum licenses of the next plan",
        scope: Scope::Customer,
        fields: &[optional("count", "Minimum licenses (empty: the tier's own)")],
        shown: always,
    },
    Kind {
        path: "required-tier",
        title: "Set the tier the discount belongs to",
        scope: Scope::Customer,
        fields: &[optional("tier", "Tier (empty: none)")],
        shown: always,
    },
    Kind {
        path: "offer",
        title: "Offer a fixed-price plan",
        scope: Scope::Customer,
        fields: &[
            field("tier", "Tier (e.g. cloud_plus)"),
            field("fixed_price_cents", "Price for the year, in cents"),
        ],
        shown: always,
    },
];

/// The forms of a plan's actions, for staff who may act (support and admin).
pub fn plan_actions(p: &PlanView, viewer: &Viewer) -> Markup {
    if viewer.staff.role < Role::Support || p.status == "ended" || p.status == "never_started" {
        return html! {};
    }
    let kinds = KINDS
        .iter()
        .filter(|k| k.scope == Scope::Plan && (k.shown)(p));
    html! {
        details {
            summary { "Actions on plan " (p.id) }
            @for k in kinds { (form(p.id, k, &HashMap::new(), &viewer.csrf, None, false)) }
        }
    }
}

/// The forms of a customer's actions.
pub fn customer_actions(customer: i64, viewer: &Viewer) -> Markup {
    if viewer.staff.role < Role::Support {
        return html! {};
    }
    html! {
        details {
            summary { "Actions on the customer" }
            @for k in KINDS.iter().filter(|k| k.scope == Scope::Customer) {
                (form(customer, k, &HashMap::new(), &viewer.csrf, None, false))
            }
        }
    }
}

/// The retry form of a plan that needs attention or waits to retry (the Attention page).
pub fn retry_form(plan: i64, viewer: &Viewer) -> Markup {
    match KINDS.iter().find(|k| k.path == "retry") {
        Some(k) if viewer.staff.role >= Role::Support => {
            form(plan, k, &HashMap::new(), &viewer.csrf, None, false)
        }
        _ => html! {},
    }
}

fn action_path(id: i64, k: &Kind) -> String {
    match k.scope {
        Scope::Plan => format!("/plans/{id}/{}", k.path),
        Scope::Customer => format!("/customers/{id}/{}", k.path),
    }
}

/// One action's form; `refusal` (field, message) is shown beside its field, or above the form.
fn form(
    id: i64,
    k: &Kind,
    values: &HashMap<String, String>,
    csrf: &str,
    refusal: Option<(Option<&str>, &str)>,
    confirm: bool,
) -> Markup {
    let prefix = match k.scope {
        Scope::Plan => "p",
        Scope::Customer => "c",
    };
    let dom_id = |f: &str| format!("{prefix}{id}-{}-{f}", k.path);
    let value = |name: &str| {
        values
            .get(name)
            .map(String::as_str)
            .unwrap_or("")
            .to_string()
    };
    let refused = |name: &str| refusal.and_then(|r| r.0).is_some_and(|f| f == name);
    html! {
        form method="post" action=(action_path(id, k)) class="action" {
            h4 { (k.title) }
            input type="hidden" name="csrf" value=(csrf);
            @if let Some((None, message)) = refusal { (notice("error", message)) }
            @for f in k.fields {
                label for=(dom_id(f.name)) { (f.label) }
                @if confirm {
                    input type="hidden" name=(f.name) value=(value(f.name));
                    output id=(dom_id(f.name)) { (value(f.name)) }
                } @else {
                    input id=(dom_id(f.name)) name=(f.name) type="text" required[!f.optional] value=(value(f.name))
                        aria-invalid=[refused(f.name).then_some("true")]
                        aria-describedby=[refused(f.name).then(|| dom_id(&format!("{}-error", f.name)))];
                }
                @if let Some((Some(name), message)) = refusal {
                    @if name == f.name { span id=(dom_id(&format!("{}-error", f.name))) class="field-error" role="alert" { (message) } }
                }
            }
            label for=(dom_id("reason")) { "Reason (kept in the change history)" }
            input id=(dom_id("reason")) name="reason" type="text" required maxlength="1000" value=(value("reason"))
                aria-invalid=[refused("reason").then_some("true")];
            @if let Some((Some("reason"), message)) = refusal { span class="field-error" role="alert" { (message) } }
            @if confirm {
                input type="hidden" name="confirm" value="yes";
                button type="submit" class="danger" { "Confirm" }
            } @else {
                button type="submit" { "Preview" }
            }
        }
    }
}

fn text<'a>(values: &'a HashMap<String, String>, field: &'static str) -> &'a str {
    values.get(field).map(|v| v.trim()).unwrap_or("")
}

fn number(values: &HashMap<String, String>, field: &'static str) -> Result<i64, AppError> {
    text(values, field)
        .parse::<i64>()
        .map_err(|_| refuse(field, "{field} must be a whole number"))
}

/// An optional field: empty is `None`.
fn maybe<T>(
    values: &HashMap<String, String>,
    field: &'static str,
    parse: impl Fn(&str) -> Result<T, AppError>,
) -> Result<Option<T>, AppError> {
    match text(values, field) {
        "" => Ok(None),
        t => parse(t).map(Some),
    }
}

fn tier(field: &'static str) -> impl Fn(&str) -> Result<Tier, AppError> {
    move |t| Tier::parse(t).map_err(|e| refuse(field, e.to_string()))
}

/// The admin command a form asks for.
fn command(target: Target, k: &Kind, v: &HashMap<String, String>) -> Result<Action, AppError> {
    let (customer, id) = (target.customer, target.plan.unwrap_or(0));
    let whole = |t: &str| {
        t.parse::<i64>()
            .map_err(|_| refuse("fixed_price_cents", "{field} must be a whole number"))
    };
    Ok(match k.path {
        "retry" => Action::Plan(PlanCmd::Retry { id }),
        "seats" => Action::Plan(PlanCmd::Seats {
            id,
            count: number(v, "count")?,
        }),
        "buy-licenses" => Action::Plan(PlanCmd::BuyLicenses {
            id,
            licenses: number(v, "licenses")?,
        }),
        "renewal-licenses" => Action::Plan(PlanCmd::RenewalLicenses {
            id,
            licenses: number(v, "licenses")?,
        }),
        "schedule" => Action::Plan(PlanCmd::Schedule {
            id,
            change: ScheduleChange::parse(text(v, "change"))
                .map_err(|e| refuse("change", e.to_string()))?,
        }),
        "upgrade-tier" => Action::Plan(PlanCmd::UpgradeTier {
            id,
            tier: tier("tier")(text(v, "tier"))?,
        }),
        "end-date" => Action::Plan(PlanCmd::SetEndDate {
            id,
            date: parse_time(text(v, "date")).map_err(|e| refuse("date", e))?,
        }),
        "successor" => Action::Plan(PlanCmd::ScheduleSuccessor {
            id,
            fixed_price_cents: maybe(v, "fixed_price_cents", whole)?,
            tier: maybe(v, "tier", tier("tier"))?,
            schedule: maybe(v, "schedule", |t| {
                BillingSchedule::parse(t).map_err(|e| refuse("schedule", e.to_string()))
            })?,
            automanage_licenses: false,
        }),
        "downgrade-now" => Action::Plan(PlanCmd::DowngradeNow { id }),
        "discount" => Action::Customer(CustomerCmd::SetDiscount {
            id: customer,
            monthly_discounted_price_cents: number(v, "monthly_discounted_price_cents")?,
            annual_discounted_price_cents: number(v, "annual_discounted_price_cents")?,
            required_plan_tier: None,
        }),
        "minimum-licenses" => {
            let count = maybe(v, "count", |t| {
                t.parse::<i64>()
                    .map_err(|_| refuse("count", "{field} must be a whole number"))
            })?;
            Action::Customer(CustomerCmd::SetMinimumLicenses {
                id: customer,
                none: count.is_none(),
                count,
            })
        }
        "required-tier" => {
            let tier = maybe(v, "tier", tier("tier"))?;
            Action::Customer(CustomerCmd::SetRequiredPlanTier {
                id: customer,
                none: tier.is_none(),
                tier,
            })
        }
        "offer" => Action::Offer(OfferCmd::Create {
            customer,
            tier: tier("tier")(text(v, "tier"))?,
            fixed_price_cents: number(v, "fixed_price_cents")?,
            sent_invoice_id: None,
        }),
        other => return Err(AppError::NotFound(format!("no action {other:?}"))),
    })
}

fn kind_of(scope: Scope, action: &str) -> Result<&'static Kind, Failure> {
    KINDS
        .iter()
        .find(|k| k.scope == scope && k.path == action)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("no action {action:?}")))
}

/// `POST /plans/{id}/{action}`: the preview, or with `confirm` the action itself.
pub async fn plan_action(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    Form(values): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    viewer.require(Role::Support)?;
    let plan = path_id(&id, "plan")?;
    let kind = kind_of(Scope::Plan, &action)?;
    let customer = state
        .run(move |c| crate::ops::plan(c, plan).map(|r| r.plan.customer_id))
        .await?;
    act(
        &state,
        &viewer,
        Target {
            customer,
            plan: Some(plan),
        },
        kind,
        values,
    )
    .await
}

/// `POST /customers/{id}/{action}`: the preview, or with `confirm` the action itself.
pub async fn customer_action(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    Form(values): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    viewer.require(Role::Support)?;
    let customer = path_id(&id, "customer")?;
    let kind = kind_of(Scope::Customer, &action)?;
    state
        .run(move |c| crate::ops::customer(c, customer))
        .await?;
    act(
        &state,
        &viewer,
        Target {
            customer,
            plan: None,
        },
        kind,
        values,
    )
    .await
}

async fn act(
    state: &ConsoleState,
    viewer: &Viewer,
    target: Target,
    kind: &Kind,
    values: HashMap<String, String>,
) -> Result<Response, Failure> {
    let now = state.clock.now();
    let confirm = values.get("confirm").is_some_and(|v| v == "yes");
    let attempt = (|| {
        let reason = text(&values, "reason");
        if reason.is_empty() {
            return Err(refuse(
                "reason",
                "{field}: say why (it is kept in the change history)",
            ));
        }
        let author = Author::console(&viewer.staff.email, Some(reason))?;
        Ok((command(target, kind, &values)?, author))
    })();
    let (action, author) = match attempt {
        Ok(a) => a,
        Err(e) => return refused(viewer, target, kind, &values, e),
    };
    let id = target.plan.unwrap_or(target.customer);
    if confirm {
        let done = state
            .run(move |c| support::run(c, action, now, &author))
            .await;
        return match done {
            Ok(()) => Ok(
                Redirect::to(&format!("/customers/{}#changes", target.customer)).into_response(),
            ),
            Err(f) if f.status == StatusCode::BAD_REQUEST => refused(
                viewer,
                target,
                kind,
                &values,
                AppError::Invalid(Refusal::new(f.message)),
            ),
            Err(f) => Err(f),
        };
    }
    let effect = match support::effect(&state.db, target, action, now, &author) {
        Ok(e) => e,
        Err(e @ (AppError::Invalid(_) | AppError::Conflict(_) | AppError::Billing(_))) => {
            return refused(viewer, target, kind, &values, e)
        }
        Err(e) => return Err(Failure::from(e)),
    };
    let body = html! {
        section class="card" {
            h2 { "What this changes" }
            @if let serde_json::Value::Object(moved) = &effect.is {
                @if moved.is_empty() { p { "No field moves." } } @else {
                    table {
                        thead { tr { th scope="col" { "Field" } th scope="col" { "Now" } th scope="col" { "After" } } }
                        tbody { @for (name, after) in moved {
                            tr { td { (name) } td { (effect.was.get(name).map(|v| v.to_string()).unwrap_or_default()) } td { (after.to_string()) } }
                        } }
                    }
                }
            }
            @match effect.plan_id {
                Some(plan) => p class="effect" {
                    "The next invoice of plan " (plan) " goes from " strong { (money_opt(effect.before_cents)) } " to " strong { (money_opt(effect.after_cents)) } "."
                },
                None => p class="effect" { "The customer has no live plan: no invoice changes now." },
            }
            (form(id, kind, &values, &viewer.csrf, None, true))
            p { a href=(format!("/customers/{}", target.customer)) { "Cancel" } }
        }
    };
    let title = format!("{}: {}", kind.title, subject(target));
    Ok(Html(page(&title, Some(viewer), body).into_string()).into_response())
}

fn subject(target: Target) -> String {
    match target.plan {
        Some(p) => format!("plan {p}"),
        None => format!("customer {}", target.customer),
    }
}

/// The action's form again, with the refusal beside its field (400).
fn refused(
    viewer: &Viewer,
    target: Target,
    kind: &Kind,
    values: &HashMap<String, String>,
    e: AppError,
) -> Result<Response, Failure> {
    let (field, message) = match &e {
        AppError::Invalid(r) | AppError::Conflict(r) => (r.field(), r.render(Spelling::Wire)),
        AppError::Billing(b) => (None, b.to_string()),
        _ => return Err(Failure::from(e)),
    };
    let id = target.plan.unwrap_or(target.customer);
    let body = html! {
        section class="card" {
            (form(id, kind, values, &viewer.csrf, Some((field, &message)), false))
            p { a href=(format!("/customers/{}", target.customer)) { "Back to the customer" } }
        }
    };
    let title = format!("{}: {}", kind.title, subject(target));
    let mut r = Html(page(&title, Some(viewer), body).into_string()).into_response();
    *r.status_mut() = StatusCode::BAD_REQUEST;
    Ok(r)
}
