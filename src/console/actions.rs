//! Support actions on a plan: each is an admin command ([`crate::admin::PlanCmd`] or
//! [`crate::admin::CustomerCmd`]) built from a form. The first POST shows what the action changes
//! and its money effect (the action and `plan preview`'s code in one transaction that is rolled
//! back); the second, with `confirm`, runs it with the same guards and records it in the change
//! history as `console:<email>` with the reason, which is required. A refusal is shown beside the
//! field it concerns.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::html::{money_opt, notice, page};
use super::session::Viewer;
use super::{ConsoleState, Failure};
use crate::admin::staff::Role;
use crate::admin::support::{self, Action};
use crate::admin::{parse_time, CustomerCmd, PlanCmd};
use crate::domain::change::{diff, Author};
use crate::domain::{ScheduleChange, Tier};
use crate::error::{refuse, AppError};
use crate::views::PlanView;

/// An action's form: its path segment, its title, and its fields (name, label, kind).
struct Kind {
    path: &'static str,
    title: &'static str,
    fields: &'static [(&'static str, &'static str, &'static str)],
    /// Shown for plans that follow the seat count (`Some(true)`), buy licenses (`Some(false)`),
    /// or both (`None`).
    automatic: Option<bool>,
}

const KINDS: &[Kind] = &[
    Kind {
        path: "seats",
        title: "Change the seats in use",
        fields: &[("count", "Seats in use", "number")],
        automatic: Some(true),
    },
    Kind {
        path: "buy-licenses",
        title: "Add licenses now",
        fields: &[("licenses", "New license count", "number")],
        automatic: Some(false),
    },
    Kind {
        path: "renewal-licenses",
        title: "Licenses at the next renewal",
        fields: &[("licenses", "Licenses at the next renewal", "number")],
        automatic: Some(false),
    },
    Kind {
        path: "schedule",
        title: "Schedule a change at the end of the cycle",
        fields: &[(
            "change",
            "downgrade_at_end_of_cycle, switch_to_annual, switch_to_monthly, downgrade_at_end_of_free_trial or cancel",
            "text",
        )],
        automatic: None,
    },
    Kind {
        path: "upgrade-tier",
        title: "Upgrade the tier now",
        fields: &[("tier", "New tier (e.g. cloud_plus)", "text")],
        automatic: None,
    },
    Kind {
        path: "end-date",
        title: "Set the end date",
        fields: &[("date", "End date (RFC 3339, e.g. 2027-06-01T00:00:00Z)", "text")],
        automatic: None,
    },
    Kind {
        path: "discount",
        title: "Set the customer's discounted prices",
        fields: &[
            ("monthly_discounted_price_cents", "Monthly price per license, in cents", "number"),
            ("annual_discounted_price_cents", "Annual price per license, in cents", "number"),
        ],
        automatic: None,
    },
    Kind {
        path: "downgrade-now",
        title: "End the plan now",
        fields: &[],
        automatic: None,
    },
];

/// The forms of the actions a plan takes, for staff who may act (support and admin).
pub fn plan_actions(p: &PlanView, viewer: &Viewer) -> Markup {
    if viewer.staff.role < Role::Support || p.status == "ended" || p.status == "never_started" {
        return html! {};
    }
    html! {
        details {
            summary { "Actions" }
            @for k in KINDS.iter().filter(|k| k.automatic.is_none_or(|a| a == p.automanage_licenses)) {
                (form(p.id, k, &HashMap::new(), &viewer.csrf, None, false))
            }
        }
    }
}

/// One action's form; `refusal` (field, message) is shown beside its field, or above the form.
fn form(
    plan: i64,
    k: &Kind,
    values: &HashMap<String, String>,
    csrf: &str,
    refusal: Option<(Option<&str>, &str)>,
    confirm: bool,
) -> Markup {
    let id = |f: &str| format!("p{plan}-{}-{f}", k.path);
    html! {
        form method="post" action=(format!("/plans/{plan}/{}", k.path)) class="action" {
            h4 { (k.title) }
            input type="hidden" name="csrf" value=(csrf);
            @if let Some((None, message)) = refusal { (notice("error", message)) }
            @for (name, label, kind) in k.fields {
                label for=(id(name)) { (label) }
                @if confirm {
                    input type="hidden" name=(name) value=(values.get(*name).map(String::as_str).unwrap_or(""));
                    output id=(id(name)) { (values.get(*name).map(String::as_str).unwrap_or("")) }
                } @else {
                    input id=(id(name)) name=(name) type=(kind) required value=(values.get(*name).map(String::as_str).unwrap_or(""))
                        aria-invalid=[refusal.and_then(|r| r.0).filter(|f| f == name).map(|_| "true")]
                        aria-describedby=[refusal.and_then(|r| r.0).filter(|f| f == name).map(|_| id(&format!("{name}-error")))];
                }
                @if let Some((Some(field), message)) = refusal {
                    @if field == *name { span id=(id(&format!("{name}-error"))) class="field-error" role="alert" { (message) } }
                }
            }
            label for=(id("reason")) { "Reason (kept in the change history)" }
            input id=(id("reason")) name="reason" type="text" required maxlength="1000" value=(values.get("reason").map(String::as_str).unwrap_or(""))
                aria-invalid=[refusal.and_then(|r| r.0).filter(|f| *f == "reason").map(|_| "true")];
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

fn number(values: &HashMap<String, String>, field: &'static str) -> Result<i64, AppError> {
    let text = values.get(field).map(|v| v.trim()).unwrap_or("");
    text.parse::<i64>()
        .map_err(|_| refuse(field, "{field} must be a whole number"))
}

fn text<'a>(values: &'a HashMap<String, String>, field: &'static str) -> &'a str {
    values.get(field).map(|v| v.trim()).unwrap_or("")
}

/// The admin command a form asks for.
fn command(
    plan: i64,
    customer: i64,
    k: &Kind,
    v: &HashMap<String, String>,
) -> Result<Action, AppError> {
    Ok(match k.path {
        "seats" => Action::Plan(PlanCmd::Seats {
            id: plan,
            count: number(v, "count")?,
        }),
        "buy-licenses" => Action::Plan(PlanCmd::BuyLicenses {
            id: plan,
            licenses: number(v, "licenses")?,
        }),
        "renewal-licenses" => Action::Plan(PlanCmd::RenewalLicenses {
            id: plan,
            licenses: number(v, "licenses")?,
        }),
        "schedule" => Action::Plan(PlanCmd::Schedule {
            id: plan,
            change: ScheduleChange::parse(text(v, "change"))
                .map_err(|e| refuse("change", e.to_string()))?,
        }),
        "upgrade-tier" => Action::Plan(PlanCmd::UpgradeTier {
            id: plan,
            tier: Tier::parse(text(v, "tier")).map_err(|e| refuse("tier", e.to_string()))?,
        }),
        "end-date" => Action::Plan(PlanCmd::SetEndDate {
            id: plan,
            date: parse_time(text(v, "date")).map_err(|e| refuse("date", e))?,
        }),
        "discount" => Action::Customer(CustomerCmd::SetDiscount {
            id: customer,
            monthly_discounted_price_cents: number(v, "monthly_discounted_price_cents")?,
            annual_discounted_price_cents: number(v, "annual_discounted_price_cents")?,
            required_plan_tier: None,
        }),
        "downgrade-now" => Action::Plan(PlanCmd::DowngradeNow { id: plan }),
        other => return Err(AppError::NotFound(format!("no action {other:?}"))),
    })
}

/// `POST /plans/{id}/{action}`: the preview, or with `confirm` the action itself.
pub async fn plan_action(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path((id, action)): Path<(String, String)>,
    Form(values): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    viewer.require(Role::Support)?;
    let plan_id = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "no such plan"))?;
    let kind = KINDS
        .iter()
        .find(|k| k.path == action)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("no action {action:?}")))?;
    let before = state.run(move |c| plan_view(c, plan_id)).await?;
    let customer = before.customer_id;
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
        Ok((command(plan_id, customer, kind, &values)?, author))
    })();
    let (action_cmd, author) = match attempt {
        Ok(a) => a,
        Err(e) => return refused(&viewer, &before, kind, &values, e),
    };
    if confirm {
        let done = state
            .run(move |c| support::run(c, action_cmd, now, &author))
            .await;
        return match done {
            Ok(()) => Ok(Redirect::to(&format!("/customers/{customer}#changes")).into_response()),
            Err(f) if f.status == StatusCode::BAD_REQUEST => refused(
                &viewer,
                &before,
                kind,
                &values,
                AppError::Invalid(crate::domain::refusal::Refusal::new(f.message)),
            ),
            Err(f) => Err(f),
        };
    }
    let effect = match support::effect(&state.db, plan_id, action_cmd, now, &author) {
        Ok(e) => e,
        Err(e @ (AppError::Invalid(_) | AppError::Conflict(_) | AppError::Billing(_))) => {
            return refused(&viewer, &before, kind, &values, e)
        }
        Err(e) => return Err(Failure::from(e)),
    };
    let (was, is) = diff(&json(&before), &json(&effect.plan));
    let body = html! {
        section class="card" {
            h2 { "What this changes" }
            @if let serde_json::Value::Object(moved) = &is {
                @if moved.is_empty() { p { "No field of the plan moves." } } @else {
                    table {
                        thead { tr { th scope="col" { "Field" } th scope="col" { "Now" } th scope="col" { "After" } } }
                        tbody { @for (field, after) in moved {
                            tr { td { (field) } td { (was.get(field).map(|v| v.to_string()).unwrap_or_default()) } td { (after.to_string()) } }
                        } }
                    }
                }
            }
            p class="effect" {
                "The next invoice goes from " strong { (money_opt(effect.before_cents)) } " to " strong { (money_opt(effect.after_cents)) } "."
            }
            (form(plan_id, kind, &values, &viewer.csrf, None, true))
            p { a href=(format!("/customers/{customer}")) { "Cancel" } }
        }
    };
    let title = format!("{}: plan {plan_id}", kind.title);
    Ok(Html(page(&title, Some(&viewer), body).into_string()).into_response())
}

/// The action's form again, with the refusal beside its field (400).
fn refused(
    viewer: &Viewer,
    plan: &PlanView,
    kind: &Kind,
    values: &HashMap<String, String>,
    e: AppError,
) -> Result<Response, Failure> {
    let (field, message) = match &e {
        AppError::Invalid(r) | AppError::Conflict(r) => {
            (r.field(), r.render(crate::domain::refusal::Spelling::Wire))
        }
        AppError::Billing(b) => (None, b.to_string()),
        _ => return Err(Failure::from(e)),
    };
    let body = html! {
        section class="card" {
            (form(plan.id, kind, values, &viewer.csrf, Some((field, &message)), false))
            p { a href=(format!("/customers/{}", plan.customer_id)) { "Back to the customer" } }
        }
    };
    let title = format!("{}: plan {}", kind.title, plan.id);
    let mut r = Html(page(&title, Some(viewer), body).into_string()).into_response();
    *r.status_mut() = StatusCode::BAD_REQUEST;
    Ok(r)
}

fn plan_view(c: &mut crate::db::Conn, id: i64) -> Result<PlanView, AppError> {
    let record = crate::ops::plan(c, id)?;
    let ledger = crate::db::repo::ledger_of(c, id)?;
    Ok(PlanView::new(&record, &ledger))
}

fn json(p: &PlanView) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or_default()
}
