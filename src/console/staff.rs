//! The Staff page (admins): staff accounts and API tokens, and their management — the same
//! commands as `console-user` and `api-token` ([`crate::admin::staff`], [`crate::admin::tokens`]),
//! recorded in the change history as `console:<email>` with the reason the form asks for. A
//! setup link or a token secret is shown once, on the page that answers its creation.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

use super::html::{notice, page, when, when_opt};
use super::session::Viewer;
use super::{ConsoleState, Failure};
use crate::admin::staff::{ConsoleUserCmd, Role};
use crate::admin::tokens::ApiTokenCmd;
use crate::domain::change::Author;
use crate::domain::refusal::Spelling;
use crate::error::AppError;

/// The roles a staff member can have, as a form offers them.
const ROLES: &[(&str, &str)] = &[
    ("viewer", "viewer (reads)"),
    ("support", "support (reads and acts)"),
    ("admin", "admin (and manages staff and tokens)"),
];

/// A labelled drop-down of `(value, text)` options.
fn choice(id: &str, name: &str, label: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        label for=(id) { (label) }
        select id=(id) name=(name) required {
            @for (value, text) in options { option value=(value) { (text) } }
        }
    }
}

/// `GET /staff`: the accounts and the tokens, with the forms that manage them.
pub async fn staff(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Html<String>, Failure> {
    viewer.require(Role::Admin)?;
    Ok(Html(render(&state, &viewer, None).await?.into_string()))
}

async fn render(
    state: &ConsoleState,
    viewer: &Viewer,
    outcome: Option<Markup>,
) -> Result<Markup, Failure> {
    let (staff, tokens) = state
        .run(|c| {
            Ok::<_, crate::db::DbError>((crate::db::staff::staff(c)?, crate::db::api::tokens(c)?))
        })
        .await?;
    let csrf = viewer.csrf.as_str();
    let reason = |id: String| {
        html! {
            label for=(id) { "Reason" }
            input id=(id) name="reason" type="text" required maxlength="1000";
        }
    };
    let body = html! {
        @if let Some(o) = outcome { (o) }
        section class="card" aria-labelledby="accounts" {
            h2 id="accounts" { "Staff accounts" }
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Created" } } }
                tbody { @for s in &staff {
                    tr { td { (s.email) } td { (s.role) } td { @if s.disabled_at.is_some() { "disabled" } @else if s.password_hash.is_none() { "setup link not used" } @else { "active" } } td { (when(s.created_at)) } }
                } }
            }
            form method="post" action="/staff/create-user" class="action" {
                h4 { "Add a staff member" }
                input type="hidden" name="csrf" value=(csrf);
                label for="new-email" { "Email" }
                input id="new-email" name="email" type="email" required;
                (choice("new-role", "role", "Role", ROLES))
                (reason("new-reason".into()))
                button type="submit" { "Create (shows a one-time setup link)" }
            }
            form method="post" action="/staff/set-role" class="action" {
                h4 { "Change a role, or disable or enable an account" }
                input type="hidden" name="csrf" value=(csrf);
                label for="role-email" { "Email" }
                input id="role-email" name="email" type="email" required;
                (choice("role-role", "role", "New role, or disable, or enable", &[ROLES, &[("disable", "disable the account"), ("enable", "enable the account")]].concat()))
                (reason("role-reason".into()))
                button type="submit" { "Apply" }
            }
        }
        section class="card" aria-labelledby="tokens" {
            h2 id="tokens" { "API tokens" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Scope" } th scope="col" { "Created" } th scope="col" { "Revoked" } } }
                tbody { @for t in &tokens {
                    tr { td { (t.name) } td { (t.scope) } td { (when(t.created_at)) } td { (when_opt(t.revoked_at)) } }
                } }
            }
            form method="post" action="/staff/create-token" class="action" {
                h4 { "Create a token" }
                input type="hidden" name="csrf" value=(csrf);
                label for="token-name" { "Name" }
                input id="token-name" name="name" type="text" required maxlength="100";
                (choice("token-scope", "scope", "Scope", &[("read", "read (GET requests)"), ("write", "write (every request)")]))
                (reason("token-reason".into()))
                button type="submit" { "Create (shows the token once)" }
            }
            form method="post" action="/staff/revoke-token" class="action" {
                h4 { "Revoke a token" }
                input type="hidden" name="csrf" value=(csrf);
                label for="revoke-name" { "Name" }
                input id="revoke-name" name="name" type="text" required;
                (reason("revoke-reason".into()))
                button type="submit" class="danger" { "Revoke" }
            }
        }
    };
    Ok(page("Staff", Some(viewer), body))
}

fn field<'a>(values: &'a HashMap<String, String>, name: &str) -> &'a str {
    values.get(name).map(|v| v.trim()).unwrap_or("")
}

/// `POST /staff/{action}`: create-user, set-role, create-token, revoke-token.
pub async fn manage(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(action): Path<String>,
    Form(values): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    viewer.require(Role::Admin)?;
    let now = state.clock.now();
    let reason = field(&values, "reason");
    let attempt: Result<Markup, AppError> =
        match Author::console(&viewer.staff.email, Some(reason).filter(|r| !r.is_empty())) {
            Err(e) => Err(e.into()),
            Ok(author) if author.reason.is_none() => Err(crate::error::refuse(
                "reason",
                "{field}: say why (it is kept in the change history)",
            )),
            Ok(author) => run(&state, &viewer, &action, &values, now, author).await,
        };
    let outcome = match attempt {
        Ok(m) => m,
        Err(AppError::NotFound(m)) if m.starts_with("no console action") => {
            return Err(Failure::new(StatusCode::NOT_FOUND, m))
        }
        Err(
            e @ (AppError::Invalid(_)
            | AppError::Conflict(_)
            | AppError::NotFound(_)
            | AppError::Billing(_)),
        ) => {
            let message = match &e {
                AppError::Invalid(r) | AppError::Conflict(r) => r.render(Spelling::Wire),
                other => other.to_string(),
            };
            let page = render(&state, &viewer, Some(notice("error", &message))).await?;
            let mut r = Html(page.into_string()).into_response();
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        }
        Err(e) => return Err(Failure::from(e)),
    };
    Ok(Html(render(&state, &viewer, Some(outcome)).await?.into_string()).into_response())
}

async fn run(
    state: &ConsoleState,
    viewer: &Viewer,
    action: &str,
    values: &HashMap<String, String>,
    now: crate::domain::Ts,
    author: Author,
) -> Result<Markup, AppError> {
    let email = field(values, "email").to_string();
    let role_text = field(values, "role").to_string();
    let parse_role = |t: &str| Role::parse(t).map_err(|m| crate::error::refuse("role", m));
    match action {
        "create-user" => {
            let role = parse_role(&role_text)?;
            let cmd = ConsoleUserCmd::Create {
                email,
                role,
                password_stdin: false,
            };
            let out = state
                .db
                .run(|c| crate::admin::staff::run(c, cmd, None, now, &author))?;
            let path = out
                .json
                .get("setup_path")
                .and_then(|p| p.as_str())
                .unwrap_or("");
            Ok(html! {
                section class="card" role="status" {
                    p { (out.text.lines().next().unwrap_or("")) }
                    p { "The setup link, shown only now (valid 24 hours): " code { (path) } " on this console's address." }
                }
            })
        }
        "set-role" => {
            if email.eq_ignore_ascii_case(&viewer.staff.email) {
                return Err(crate::error::refuse(
                    "email",
                    "an admin cannot change or disable their own account here (another admin can)",
                ));
            }
            let cmd = match role_text.as_str() {
                "disable" => ConsoleUserCmd::Disable { email },
                "enable" => ConsoleUserCmd::Enable { email },
                other => ConsoleUserCmd::SetRole {
                    email,
                    role: parse_role(other)?,
                },
            };
            let out = state
                .db
                .run(|c| crate::admin::staff::run(c, cmd, None, now, &author))?;
            Ok(html! { section class="card" role="status" { p { (out.text) } } })
        }
        "create-token" | "revoke-token" => {
            let name = field(values, "name").to_string();
            let cmd = if action == "create-token" {
                ApiTokenCmd::Create {
                    name,
                    scope: crate::admin::tokens::Scope::parse(field(values, "scope"))?,
                }
            } else {
                ApiTokenCmd::Revoke { name }
            };
            let out = state
                .db
                .run(|c| crate::admin::tokens::run(c, cmd, now, &author))?;
            let token = out.json.get("token").and_then(|t| t.as_str());
            Ok(html! {
                section class="card" role="status" {
                    @match token {
                        Some(t) => p { "Token " strong { (out.json.get("name").and_then(|n| n.as_str()).unwrap_or("")) } " created; keep it now, it is not shown again: " code { (t) } },
                        None => p { (out.text) },
                    }
                }
            })
        }
        other => Err(AppError::NotFound(format!("no console action {other:?}"))),
    }
}
