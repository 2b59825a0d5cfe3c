//! Logging in and out, and the one-time setup link that sets a new account's password.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;
use tracing::{info, warn};

use super::html::{notice, page};
use super::session::{
    cookie, start_session, Viewer, ACCOUNT_FAILURES, ADDRESS_FAILURES, FAILURE_WINDOW_MINUTES,
    LOGIN_COOKIE, SESSION_COOKIE,
};
use super::{ConsoleState, Failure};
use crate::admin::staff::{self, Staff};
use crate::db::staff as rows;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where to go after login: a path of the console only (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

/// The token of the login and setup forms: the one the browser's cookie already holds, so that
/// a second tab or a request the browser makes on its own (a favicon sent to the login page)
/// does not make the open form's token stale; a new one otherwise.
fn form_token(headers: &HeaderMap) -> String {
    cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(staff::secret)
}

fn login_form(
    state: &ConsoleState,
    headers: &HeaderMap,
    next: &str,
    email: &str,
    problem: Option<&str>,
) -> Response {
    let token = form_token(headers);
    let body = html! {
        @if let Some(p) = problem { (notice("error", p)) }
        form method="post" action="/login" class="card narrow" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(next);
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Log in" }
        }
    };
    let mut response = Html(page("Log in", None, body).into_string()).into_response();
    if problem.is_some() {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, &token, None));
    response
}

pub async fn login_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    login_form(&state, &headers, &safe_next(q.next.as_deref()), "", None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Failure> {
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_lowercase();
    let email = email.chars().take(254).collect::<String>();
    let address = peer.ip().to_string();
    let now = state.clock.now();
    let since = now - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
    let (by_account, by_address) = state
        .run({
            let (e, a) = (email.clone(), address.clone());
            move |c| rows::failures_since(c, &e, &a, since)
        })
        .await?;
    if by_account >= ACCOUNT_FAILURES || by_address >= ADDRESS_FAILURES {
        warn!(email = %email, address = %address, "console login refused: locked out after repeated failures");
        let msg = format!("too many failed logins: try again in {FAILURE_WINDOW_MINUTES} minutes");
        let mut r = login_form(&state, &headers, &next, &email, Some(&msg));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return Ok(r);
    }
    let row = state
        .run({
            let e = email.clone();
            move |c| rows::staff_by_email(c, &e)
        })
        .await?;
    let stored = row.as_ref().and_then(|r| r.password_hash.clone());
    let password = form.password;
    let matches =
        tokio::task::spawn_blocking(move || staff::verify_password(stored.as_deref(), &password))
            .await
            .unwrap_or(false);
    let row = row.filter(|r| matches && r.disabled_at.is_none());
    let Some(row) = row else {
        state
            .run({
                let (e, a) = (email.clone(), address.clone());
                move |c| rows::insert_failure(c, &e, &a, now)
            })
            .await?;
        if by_account + 1 >= ACCOUNT_FAILURES {
            warn!(email = %email, address = %address, "console account locked out after repeated failed logins");
        } else {
            info!(email = %email, address = %address, "console login failed");
        }
        return Ok(login_form(
            &state,
            &headers,
            &next,
            &email,
            Some("wrong email or password"),
        ));
    };
    state
        .run({
            let e = email.clone();
            move |c| rows::clear_failures(c, &e, now - chrono::Duration::days(1))
        })
        .await?;
    let (_, session) = start_session(&state, Staff::of(&row)?).await?;
    info!(email = %email, address = %address, "console login");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(header::SET_COOKIE, session);
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, "", Some(0)));
    Ok(response)
}

pub async fn logout(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Failure> {
    let hash = viewer.session_sha256.clone();
    state.run(move |c| rows::delete_session(c, &hash)).await?;
    info!(email = %viewer.staff.email, "console logout");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(SESSION_COOKIE, "", Some(0)),
    );
    Ok(response)
}

/// `/setup/<id>_<secret>`: the account's id and the secret printed by `console-user create`.
fn setup_parts(token: &str) -> Option<(i64, &str)> {
    let (id, secret) = token.split_once('_')?;
    Some((id.parse().ok()?, secret))
}

async fn setup_account(
    state: &ConsoleState,
    token: &str,
) -> Result<crate::db::staff::StaffRow, Failure> {
    let expired = || {
        Failure::new(
            StatusCode::NOT_FOUND,
            "this setup link is unknown, used or expired: ask an admin for a new account",
        )
    };
    let (id, secret) = setup_parts(token).ok_or_else(expired)?;
    let row = state.run(move |c| rows::staff_by_id(c, id)).await?;
    let now = state.clock.now();
    row.filter(|r| staff::setup_matches(r, secret, now))
        .ok_or_else(expired)
}

fn setup_form(token: &str, email: &str, csrf: &str, problem: Option<&str>) -> Html<String> {
    let body = html! {
        @if let Some(p) = problem { (notice("error", p)) }
        form method="post" action=(format!("/setup/{token}")) class="card narrow" {
            input type="hidden" name="csrf" value=(csrf);
            p { "Choose the password of " strong { (email) } " (at least " (staff::MIN_PASSWORD_CHARS) " characters)." }
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="new-password" required minlength=(staff::MIN_PASSWORD_CHARS);
            button type="submit" { "Set the password" }
        }
    };
    Html(page("Set your password", None, body).into_string())
}

pub async fn setup_page(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let row = setup_account(&state, &token).await?;
    let csrf = form_token(&headers);
    let mut response = setup_form(&token, &row.email, &csrf, None).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, &csrf, None));
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    password: String,
}

pub async fn setup(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, Failure> {
    let row = setup_account(&state, &token).await?;
    let password = form.password;
    let hashed = tokio::task::spawn_blocking(move || staff::hash_password(&password))
        .await
        .map_err(|e| Failure::internal(format!("argon2 task: {e}")))?;
    let hashed = match hashed {
        Ok(h) => h,
        Err(e) => {
            let csrf = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
            let mut r = setup_form(&token, &row.email, &csrf, Some(&e.to_string())).into_response();
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        }
    };
    let (id, email, now) = (row.id, row.email.clone(), state.clock.now());
    state
        .run(move |c| {
            c.transaction(|c| {
                rows::set_password(c, id, &hashed)?;
                let change = crate::domain::change::Change::of_objects(
                    now,
                    "console_user.setup",
                    serde_json::json!({ "staff": email }),
                    serde_json::json!({ "password_set": false }),
                    serde_json::json!({ "password_set": true }),
                );
                let author = crate::domain::change::Author::console(&email, None)?;
                crate::db::changes::record(c, &author, &change)?;
                Ok::<_, crate::error::AppError>(())
            })
        })
        .await?;
    info!(email = %row.email, "console account set up");
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookie(LOGIN_COOKIE, "", Some(0)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_console() {
        assert_eq!(safe_next(Some("/customers/3")), "/customers/3");
        for bad in ["//evil.com", "https://evil.com", "/\\evil.com", "evil"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn setup_tokens_split() {
        assert_eq!(setup_parts("12_abc"), Some((12, "abc")));
        assert_eq!(setup_parts("x_abc"), None);
        assert_eq!(setup_parts("12abc"), None);
    }
}
