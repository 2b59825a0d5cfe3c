//! Who is at the console, and the rules every request passes (docs/CONSOLE.md, "Security"):
//!
//! - a session is a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` unless
//!   the console listens on loopback, or as configured); only its SHA-256 is stored, a new one is
//!   made at each login, and it ends after [`IDLE_MINUTES`] idle or [`ABSOLUTE_HOURS`] in all, or
//!   at logout, on every worker (the row is deleted);
//! - every POST carries the session's CSRF token in its form (the login form a token bound to a
//!   cookie of its own), compared in constant time, and an `Origin` (or `Referer`) of the console
//!   itself;
//! - logins are throttled: [`ACCOUNT_FAILURES`] failures for an account, or [`ADDRESS_FAILURES`]
//!   from an address, within [`FAILURE_WINDOW_MINUTES`] lock it out for that window (logged);
//! - behind a single-sign-on proxy, the email header is trusted only from the configured proxy
//!   addresses, and names a staff account that must exist and be enabled;
//! - every response carries the security headers ([`security_headers`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::{ConsoleState, Failure, FORM_LIMIT};
use crate::admin::staff::{Role, Staff};
use crate::admin::tokens::sha256_hex;
use crate::db::staff as rows;

pub const SESSION_COOKIE: &str = "pi_session";
/// The login form's own CSRF cookie (there is no session yet).
pub const LOGIN_COOKIE: &str = "pi_login";
pub const IDLE_MINUTES: i64 = 30;
pub const ABSOLUTE_HOURS: i64 = 12;
pub const ACCOUNT_FAILURES: i64 = 5;
pub const ADDRESS_FAILURES: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;
/// A request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a session's last-seen time is written (not on every page).
const TOUCH_SECONDS: i64 = 60;

/// The staff member behind a request, and their session's CSRF token.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub staff: Staff,
    pub session_sha256: String,
    pub csrf: String,
}

impl Viewer {
    /// Refuses with 403 unless the staff member's role is `role` or above.
    pub fn require(&self, role: Role) -> Result<(), Failure> {
        if self.staff.role >= role {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {} role; {} is {}",
                    role.name(),
                    self.staff.email,
                    self.staff.role.name()
                ),
            ))
        }
    }
}

/// Paths served without a session.
fn is_public(path: &str) -> bool {
    path == "/login"
        || path == "/favicon.ico"
        || path.starts_with("/setup/")
        || path.starts_with("/static/")
}

/// Every request: the security headers, the time limit, the Origin and CSRF checks of a POST,
/// and the session (or the SSO proxy's header) of every page but the public ones.
pub async fn gate(State(state): State<ConsoleState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, admit(&state, req, next)).await {
        Ok(Ok(r)) => r,
        Ok(Err(f)) => f.into_response(),
        Err(_) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, "the request took too long")
            .into_response(),
    };
    info!(
        method = %method,
        path,
        status = response.status().as_u16(),
        "console request"
    );
    security_headers(response)
}

async fn admit(state: &ConsoleState, req: Request, next: Next) -> Result<Response, Failure> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let post = parts.method == Method::POST;
    let body = if post {
        check_origin(&parts.headers)?;
        axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?
    } else if parts.method == Method::GET || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console takes GET and POST only",
        ));
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if is_public(&path) {
        if post {
            let token = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
            check_token(&body, &token)?;
        }
        return Ok(next.run(Request::from_parts(parts, Body::from(body))).await);
    }
    let mut set_cookie = None;
    let viewer = match sso_viewer(state, &parts.headers, peer).await? {
        Some((viewer, cookie)) => {
            set_cookie = cookie;
            Some(viewer)
        }
        None => session_viewer(state, &parts.headers).await?,
    };
    let Some(viewer) = viewer else {
        if post {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "your session has ended: log in again",
            ));
        }
        let next_path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let to = format!("/login?next={}", urlencode(&next_path));
        return Ok(Redirect::to(&to).into_response());
    };
    if post {
        check_token(&body, &viewer.csrf)?;
    }
    parts.extensions.insert(viewer);
    let mut response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if let Some(c) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// A POST must come from a page of the console: its `Origin` (or, without one, its `Referer`)
/// names the host the request was sent to.
fn check_origin(headers: &HeaderMap) -> Result<(), Failure> {
    let refused = || {
        Failure::new(
            StatusCode::FORBIDDEN,
            "this form did not come from the console",
        )
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(refused)?;
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok())
        .ok_or_else(refused)?;
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(refused)?;
    let origin_host = rest.split('/').next().unwrap_or("");
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The form's `csrf` field must equal `expected` (constant time).
fn check_token(body: &[u8], expected: &str) -> Result<(), Failure> {
    let presented = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v))
        .unwrap_or_default();
    let same: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
    if same && !expected.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::FORBIDDEN,
            "the form's security token is missing or stale: reload the page and try again",
        ))
    }
}

/// The session named by the cookie, if it is live and its staff member is enabled.
async fn session_viewer(
    state: &ConsoleState,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, Failure> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = sha256_hex(&id);
    let now = state.clock.now();
    let found = state.run(|c| rows::session(c, &hash)).await?;
    let Some((session, row)) = found else {
        return Ok(None);
    };
    let idle =
        now.signed_duration_since(session.last_seen_at) > chrono::Duration::minutes(IDLE_MINUTES);
    let old =
        now.signed_duration_since(session.created_at) > chrono::Duration::hours(ABSOLUTE_HOURS);
    if idle || old || row.disabled_at.is_some() {
        state.run(|c| rows::delete_session(c, &hash)).await?;
        return Ok(None);
    }
    if now.signed_duration_since(session.last_seen_at) > chrono::Duration::seconds(TOUCH_SECONDS) {
        state.run(|c| rows::touch_session(c, &hash, now)).await?;
    }
    Ok(Some(Viewer {
        staff: Staff::of(&row)?,
        session_sha256: hash,
        csrf: session.csrf_token,
    }))
}

/// Behind the SSO proxy: the staff member its header names, when the request comes from a
/// trusted proxy address, with a session (made now if there is none for them, with its cookie).
async fn sso_viewer(
    state: &ConsoleState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<(Viewer, Option<HeaderValue>)>, Failure> {
    let Some(name) = &state.config.sso_email_header else {
        return Ok(None);
    };
    let trusted = peer.is_some_and(|p| state.config.trusted_proxies.contains(&p.ip()));
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    if !trusted {
        warn!(peer = ?peer, header = %name, "console: an SSO email header from an untrusted address was ignored");
        return Ok(None);
    }
    let email = value
        .to_str()
        .ok()
        .and_then(|e| crate::admin::staff::normalize_email(e).ok())
        .ok_or_else(|| {
            Failure::new(
                StatusCode::FORBIDDEN,
                "the proxy's email header is not an email",
            )
        })?;
    if let Some(v) = session_viewer(state, headers).await? {
        if v.staff.email == email {
            return Ok(Some((v, None)));
        }
    }
    let row = state
        .run({
            let email = email.clone();
            move |c| rows::staff_by_email(c, &email)
        })
        .await?;
    let Some(row) = row.filter(|r| r.disabled_at.is_none()) else {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("{email} has no enabled staff account (console-user create)"),
        ));
    };
    let staff = Staff::of(&row)?;
    let (viewer, cookie) = start_session(state, staff).await?;
    info!(email = %email, "console: signed in by the SSO proxy");
    Ok(Some((viewer, Some(cookie))))
}

/// A new session for `staff`: its row, and the cookie that carries its id.
pub async fn start_session(
    state: &ConsoleState,
    staff: Staff,
) -> Result<(Viewer, HeaderValue), Failure> {
    let id = crate::admin::staff::secret();
    let csrf = crate::admin::staff::secret();
    let hash = sha256_hex(&id);
    let now = state.clock.now();
    let (h, cs, user) = (hash.clone(), csrf.clone(), staff.id);
    state
        .run(move |c| {
            rows::purge_sessions(
                c,
                now - chrono::Duration::minutes(IDLE_MINUTES),
                now - chrono::Duration::hours(ABSOLUTE_HOURS),
            )?;
            rows::insert_session(c, &h, user, &cs, now)
        })
        .await?;
    let cookie = state.cookie(SESSION_COOKIE, &id, None);
    Ok((
        Viewer {
            staff,
            session_sha256: hash,
            csrf,
        },
        cookie,
    ))
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The headers every console response carries.
pub fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        if name == "cache-control" && h.contains_key(header::CACHE_CONTROL) {
            continue;
        }
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Percent-encodes a path for a query parameter.
pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn origin_must_name_the_console() {
        let ok = headers(&[
            ("host", "console.example.com"),
            ("origin", "https://console.example.com"),
        ]);
        assert!(check_origin(&ok).is_ok());
        let referer = headers(&[
            ("host", "127.0.0.1:8090"),
            ("referer", "http://127.0.0.1:8090/customers/1"),
        ]);
        assert!(check_origin(&referer).is_ok());
        for bad in [
            headers(&[
                ("host", "console.example.com"),
                ("origin", "https://evil.example.com"),
            ]),
            headers(&[("host", "console.example.com"), ("origin", "null")]),
            headers(&[("host", "console.example.com")]),
            headers(&[
                ("host", "console.example.com"),
                ("origin", "https://console.example.com.evil.com"),
            ]),
        ] {
            assert!(check_origin(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_token_must_match() {
        assert!(check_token(b"a=1&csrf=abc", "abc").is_ok());
        assert!(check_token(b"a=1&csrf=abd", "abc").is_err());
        assert!(check_token(b"a=1", "abc").is_err());
        assert!(check_token(b"csrf=", "").is_err());
        assert!(check_token(b"\xff\xfe", "abc").is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; pi_session=xyz; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }
}
