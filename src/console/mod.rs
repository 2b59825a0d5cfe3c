//! The support console (docs/CONSOLE.md): server-rendered pages where support and finance staff
//! find a customer, see its plans, invoices and history, and change them — through the same
//! admin commands, guards and change history as the CLI and the API ([`crate::admin`]).
//! `serve --console-addr` opens it on an address of its own.
//!
//! Reading works without JavaScript, and there is none: pages are HTML written with maud
//! (escaped by default), one stylesheet embedded in the binary, charts as SVG. The rules of
//! sessions, CSRF, Origin, throttling and headers are in [`session`].

mod actions;
mod html;
mod login;
mod pages;
mod reports;
pub mod session;
mod staff;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use maud::html;
use tracing::error;

use crate::clock::Clock;
use crate::db::{Conn, Db};
use crate::error::AppError;

/// The largest form accepted.
pub const FORM_LIMIT: usize = 16 * 1024;
/// How long a request waits for a database connection.
const DB_WAIT: Duration = Duration::from_secs(5);
/// The stylesheet, embedded; its path carries a hash of its content, so it is cached for good.
const CSS: &str = include_str!("console.css");
pub const CSS_PATH: &str = "/static/console.css";

pub use crate::config::ConsoleConfig;

#[derive(Clone)]
pub struct ConsoleState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ConsoleConfig>,
}

impl ConsoleState {
    /// Runs `f` on a connection, waiting at most [`DB_WAIT`] for one (off the async workers).
    async fn run<T, E>(&self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, Failure>
    where
        E: From<crate::db::DbError>,
        Failure: From<E>,
    {
        self.db.run_within(DB_WAIT, f).map_err(Failure::from)
    }

    /// A cookie of the console: `HttpOnly`, `SameSite=Strict`, the whole console, `Secure` as
    /// configured; `max_age` `Some(0)` deletes it, `None` keeps it for the browser's session.
    fn cookie(&self, name: &str, value: &str, max_age: Option<u32>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if self.config.secure_cookies {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

/// A page that could not be shown: its status and a one-line message (HTML).
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn internal(message: String) -> Failure {
        error!(error = %message, "console request failed");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: nothing was changed; it was logged",
        )
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Failure {
        match &e {
            AppError::NotFound(m) => Failure::new(StatusCode::NOT_FOUND, m.clone()),
            AppError::Invalid(r) | AppError::Conflict(r) => Failure::new(
                StatusCode::BAD_REQUEST,
                r.render(crate::domain::refusal::Spelling::Wire),
            ),
            AppError::Billing(b) => Failure::new(StatusCode::BAD_REQUEST, b.to_string()),
            e if e.is_retryable() => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("busy, try again: {e}"),
            ),
            _ => Failure::internal(e.to_string()),
        }
    }
}

impl From<crate::db::DbError> for Failure {
    fn from(e: crate::db::DbError) -> Failure {
        Failure::from(AppError::from(e))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            s if s.is_server_error() => "Something went wrong",
            _ => "Refused",
        };
        let body = html! {
            (html::notice("error", &self.message))
            p { a href="/" { "Back to the search" } }
        };
        (
            self.status,
            Html(html::page(title, None, body).into_string()),
        )
            .into_response()
    }
}

/// The console's routes, behind [`session::gate`].
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(pages::search))
        .route("/customers/{id}", get(pages::customer))
        .route("/invoices/{id}", get(pages::invoice))
        .route("/attention", get(reports::attention))
        .route("/revenue", get(reports::revenue))
        .route("/staff", get(staff::staff))
        .route("/staff/{action}", post(staff::manage))
        .route("/plans/{id}/{action}", post(actions::plan_action))
        .route("/customers/{id}/{action}", post(actions::customer_action))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/setup/{token}", get(login::setup_page).post(login::setup))
        .route(CSS_PATH, get(css))
        .route("/favicon.ico", get(not_found))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), session::gate))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// An id from a path: a positive whole number, else 404 (`what` names the object).
fn path_id(text: &str, what: &str) -> Result<i64, Failure> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("there is no {what} {text:?}"),
        )
    })
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "there is no such page")
}

/// Serves the console on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: ConsoleState) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
