//! Every setting in one place: the flags and environment variables of the tuning knobs, the
//! daemon's TOML file, the Stripe settings, their defaults and their validation. The order is
//! always the same: a flag wins over its environment variable, which wins over the TOML key of
//! the same name, which wins over the default here. A bad value is a one-line error before
//! anything runs.
//!
//! To add a setting: a field on [`Tuning`] (a flag of the commands that talk to Stripe) or on
//! `serve`'s flags and [`FileConfig`], its default below, its variable in [`ENV_VARS`] and in
//! `deploy/plan-invoicer.env` (a test keeps the two equal).

use std::net::SocketAddr;
use std::path::Path;

use chrono_tz::Tz;
use clap::Args;
use serde::Deserialize;

use crate::db::DbUrl;
use crate::domain::OverduePolicy;
use crate::error::{invalid, AppError};
use crate::stripe::client::StripeConfig;
use crate::stripe::webhook::WebhookSecrets;
use crate::stripe::ApiKey;

/// Every environment variable plan-invoicer reads. `deploy/plan-invoicer.env` documents each one
/// (a test keeps the two in sync).
pub const ENV_VARS: &[&str] = &[
    "DATABASE_URL",
    "PLAN_INVOICER_NOW",
    "PLAN_INVOICER_LOG_FORMAT",
    "RUST_LOG",
    "PLAN_INVOICER_CONFIG",
    "PLAN_INVOICER_SCHEDULE",
    "PLAN_INVOICER_TIMEZONE",
    "PLAN_INVOICER_HTTP_ADDR",
    "PLAN_INVOICER_API_ADDR",
    "PLAN_INVOICER_CONSOLE_ADDR",
    "PLAN_INVOICER_CONSOLE_SECURE_COOKIES",
    "PLAN_INVOICER_CONSOLE_SSO_EMAIL_HEADER",
    "PLAN_INVOICER_CONSOLE_TRUSTED_PROXIES",
    "PLAN_INVOICER_LEASE_SECONDS",
    "PLAN_INVOICER_SHUTDOWN_GRACE_SECONDS",
    "STRIPE_API_KEY",
    "STRIPE_API_KEY_FILE",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET_FILE",
    "PLAN_INVOICER_CONCURRENCY",
    "PLAN_INVOICER_AUDIT_SCHEDULE",
    "PLAN_INVOICER_SYNC_PAYMENTS_SCHEDULE",
    "PLAN_INVOICER_OVERDUE_SCHEDULE",
    "PLAN_INVOICER_OVERDUE_INVOICES",
    "PLAN_INVOICER_OVERDUE_SEATS",
    "STRIPE_MAX_REQUESTS_PER_SECOND",
    "STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT",
    "STRIPE_MAX_REQUESTS_IN_FLIGHT",
    "STRIPE_MAX_ATTEMPTS",
    "STRIPE_RETRY_BASE_MS",
];

/// The embedded database next to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://plan-invoicer.db";
pub const DEFAULT_SCHEDULE: &str = "0 0 22 * * *";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9187";

/// Customers invoiced at once by default: enough to keep Stripe's per-endpoint limit (25/s)
/// busy at its usual 300 ms round trip, where one plan takes three or four sequential requests.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// How long a claim on a plan lasts before another worker may resume it.
pub const DEFAULT_LEASE_SECONDS: u64 = 600;

/// How long `serve` waits for the plans in flight after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 60;

/// Connections a PostgreSQL pool opens at most (SQLite: one). A connection is held for one
/// short transaction, never across a Stripe call, so a few serve many plans in flight.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// How hard a pass works: customers in flight and the Stripe budget. A flag of the commands
/// that talk to Stripe (`run-once`, `backfill`, `serve`, `audit`, `bench`).
#[derive(Debug, Clone, Default, Args)]
pub struct Tuning {
    /// Customers invoiced at once within one pass [default: 32]
    #[arg(long, env = "PLAN_INVOICER_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,
    /// The Stripe account's request budget per second, shared by all workers [default: 60
    /// for a live key, 15 for a test key]
    #[arg(long, env = "STRIPE_MAX_REQUESTS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_per_second: Option<u32>,
    /// The budget per second of one Stripe endpoint, shared by all workers [default: 15]
    #[arg(long, env = "STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_per_second_per_endpoint: Option<u32>,
    /// Stripe requests waiting for an answer at once, per worker [default: 25 live, 10 test;
    /// half the per-second budget when that is set and larger]
    #[arg(long, env = "STRIPE_MAX_REQUESTS_IN_FLIGHT", value_parser = clap::value_parser!(u32).range(1..))]
    pub stripe_max_requests_in_flight: Option<u32>,
}

impl Tuning {
    /// These settings, with the TOML file's where a flag or variable is missing.
    pub fn or_file(&self, file: &FileConfig) -> Tuning {
        Tuning {
            concurrency: self.concurrency.or(file.concurrency),
            stripe_max_requests_per_second: self
                .stripe_max_requests_per_second
                .or(file.stripe_max_requests_per_second),
            stripe_max_requests_per_second_per_endpoint: self
                .stripe_max_requests_per_second_per_endpoint
                .or(file.stripe_max_requests_per_second_per_endpoint),
            stripe_max_requests_in_flight: self
                .stripe_max_requests_in_flight
                .or(file.stripe_max_requests_in_flight),
        }
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.map_or(DEFAULT_CONCURRENCY, |n| n as usize)
    }

    /// The Stripe settings: `STRIPE_API_KEY` or `STRIPE_API_KEY_FILE`, `STRIPE_API_BASE`, this
    /// budget, and the retry knobs `STRIPE_MAX_ATTEMPTS` and `STRIPE_RETRY_BASE_MS`. A missing
    /// key is a configuration error.
    pub fn stripe(&self) -> Result<StripeConfig, AppError> {
        let key = match (env("STRIPE_API_KEY"), env("STRIPE_API_KEY_FILE")) {
            (Some(k), _) => k,
            (_, Some(path)) => std::fs::read_to_string(path.trim()).map_err(|e| {
                invalid(format!("cannot read STRIPE_API_KEY_FILE {}: {e}", path.trim()))
            })?,
            _ => {
                return Err(invalid(
                    "STRIPE_API_KEY (or STRIPE_API_KEY_FILE) is not set: a pass that emits invoices needs a Stripe key (--dry-run needs none)",
                ))
            }
        };
        let key = ApiKey::new(key).ok_or_else(|| invalid("the Stripe API key is empty"))?;
        let base = env("STRIPE_API_BASE");
        if let Some(b) = &base {
            if !(b.starts_with("http://") || b.starts_with("https://")) {
                return Err(invalid(format!(
                    "STRIPE_API_BASE {b:?} is not an http(s) URL"
                )));
            }
        }
        let mut config = StripeConfig::new(key, base.as_deref());
        if let Some(rate) = self.stripe_max_requests_per_second {
            // The in-flight cap follows the budget unless it is set explicitly (below).
            config.limits = config.limits.with_per_second(rate);
        }
        if let Some(rate) = self.stripe_max_requests_per_second_per_endpoint {
            config.limits.per_endpoint = rate;
        }
        if let Some(n) = self.stripe_max_requests_in_flight {
            config.limits.in_flight = n;
        }
        if let Some(n) = env_number("STRIPE_MAX_ATTEMPTS")? {
            config.max_attempts = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(ms) = env_number("STRIPE_RETRY_BASE_MS")? {
            config.base_backoff = std::time::Duration::from_millis(ms);
        }
        Ok(config)
    }
}

/// An environment variable that is set and not blank.
/// The overdue policy's bounds: flags and environment (clap reads both), then the TOML file,
/// then Zulip's 2 invoices and 5 seats. Both at least 1.
pub fn overdue_policy(
    invoices: Option<usize>,
    seats: Option<i64>,
) -> Result<OverduePolicy, AppError> {
    let d = OverduePolicy::default();
    let policy = OverduePolicy {
        invoices: invoices.unwrap_or(d.invoices),
        seats: seats.unwrap_or(d.seats),
    };
    if policy.invoices == 0 || policy.seats < 1 {
        return Err(invalid(
            "the overdue policy needs at least 1 invoice and 1 seat (--invoices, --seats)",
        ));
    }
    Ok(policy)
}

/// The webhook endpoint's secrets: `STRIPE_WEBHOOK_SECRET` (several separated by commas during a
/// rotation) or `STRIPE_WEBHOOK_SECRET_FILE` (one per line). None: `POST /v1/stripe/webhook`
/// answers 404.
pub fn webhook_secrets() -> Result<WebhookSecrets, AppError> {
    match (
        env("STRIPE_WEBHOOK_SECRET"),
        env("STRIPE_WEBHOOK_SECRET_FILE"),
    ) {
        (Some(s), _) => Ok(WebhookSecrets::parse(&s)),
        (_, Some(path)) => std::fs::read_to_string(path.trim())
            .map(|s| WebhookSecrets::parse(&s))
            .map_err(|e| {
                invalid(format!(
                    "cannot read STRIPE_WEBHOOK_SECRET_FILE {}: {e}",
                    path.trim()
                ))
            }),
        _ => Ok(WebhookSecrets::default()),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>, AppError> {
    env(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| invalid(format!("{name} must be a non-negative integer (got {v:?})")))
        })
        .transpose()
}

/// The optional TOML file (`--config`); every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub http_addr: Option<String>,
    pub api_addr: Option<String>,
    pub console_addr: Option<String>,
    pub console_secure_cookies: Option<bool>,
    pub console_sso_email_header: Option<String>,
    pub console_trusted_proxies: Option<Vec<String>>,
    pub lease_seconds: Option<u64>,
    pub shutdown_grace_seconds: Option<u64>,
    pub concurrency: Option<u32>,
    pub audit_schedule: Option<String>,
    pub sync_payments_schedule: Option<String>,
    pub overdue_schedule: Option<String>,
    pub overdue_invoices: Option<usize>,
    pub overdue_seats: Option<i64>,
    pub stripe_max_requests_per_second: Option<u32>,
    pub stripe_max_requests_per_second_per_endpoint: Option<u32>,
    pub stripe_max_requests_in_flight: Option<u32>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, AppError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read config file {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            invalid(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().lines().next().unwrap_or("invalid TOML")
            ))
        })
    }
}

/// How the console is served (`serve --console-addr`, docs/CONSOLE.md).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub addr: SocketAddr,
    /// Cookies say `Secure` (HTTPS only): by default unless the console listens on loopback.
    pub secure_cookies: bool,
    /// Behind a single-sign-on proxy: the header that carries the signed-in email...
    pub sso_email_header: Option<axum::http::HeaderName>,
    /// ... trusted only from these addresses.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The daemon's validated configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: DbUrl,
    pub schedule: String,
    pub timezone: Tz,
    pub http_addr: SocketAddr,
    /// The HTTP API's address (off unless set).
    pub api_addr: Option<SocketAddr>,
    /// The support console (off unless its address is set).
    pub console: Option<ConsoleConfig>,
    /// The API honours a `Plan-Invoicer-Now` header (tests only; never with a live key).
    pub allow_time_travel: bool,
    /// The secrets of `POST /v1/stripe/webhook` (none: the endpoint is off).
    pub webhook_secrets: WebhookSecrets,
    pub lease_seconds: u64,
    pub shutdown_grace_seconds: u64,
    /// Customers invoiced at once within a pass.
    pub concurrency: usize,
    /// Concurrency and the Stripe budget, flags and environment over the file.
    pub tuning: Tuning,
    /// When to run `audit` beside the passes (off by default).
    pub audit_schedule: Option<String>,
    /// When to run `sync-payments` beside the passes (off by default).
    pub sync_payments_schedule: Option<String>,
    /// When to run `overdue` beside the passes (off by default), and its bounds.
    pub overdue_schedule: Option<String>,
    pub overdue_policy: OverduePolicy,
}

impl ServeConfig {
    pub fn pool_size(&self) -> u32 {
        DEFAULT_POOL_SIZE
    }
}

/// What the command line and environment gave (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    pub database_url: String,
    pub database_url_from_default: bool,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub http_addr: Option<String>,
    pub api_addr: Option<String>,
    pub console_addr: Option<String>,
    pub console_secure_cookies: Option<bool>,
    pub console_sso_email_header: Option<String>,
    pub console_trusted_proxies: Vec<String>,
    pub allow_time_travel: bool,
    pub config: Option<std::path::PathBuf>,
    pub audit_schedule: Option<String>,
    pub sync_payments_schedule: Option<String>,
    pub overdue_schedule: Option<String>,
    pub overdue_invoices: Option<usize>,
    pub overdue_seats: Option<i64>,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs, tuning: &Tuning) -> Result<ServeConfig, AppError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        for (name, value) in [
            ("concurrency", file.concurrency),
            (
                "stripe_max_requests_per_second",
                file.stripe_max_requests_per_second,
            ),
            (
                "stripe_max_requests_per_second_per_endpoint",
                file.stripe_max_requests_per_second_per_endpoint,
            ),
            (
                "stripe_max_requests_in_flight",
                file.stripe_max_requests_in_flight,
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(format!("config file: {name} must be at least 1")));
            }
        }
        let tuning = tuning.or_file(&file);
        let console_keys = FileConfig {
            console_addr: file.console_addr.clone(),
            console_secure_cookies: file.console_secure_cookies,
            console_sso_email_header: file.console_sso_email_header.clone(),
            console_trusted_proxies: file.console_trusted_proxies.clone(),
            ..FileConfig::default()
        };
        let database_url = match (&file.database_url, args.database_url_from_default) {
            (Some(f), true) => f.clone(),
            _ => args.database_url.clone(),
        };
        let schedule = args
            .schedule
            .clone()
            .or(file.schedule)
            .unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
        validate_schedule(&schedule)?;
        let tz_name = args
            .timezone
            .clone()
            .or(file.timezone)
            .unwrap_or_else(|| "UTC".to_string());
        let timezone: Tz = tz_name.parse().map_err(|_| {
            invalid(format!(
                "unknown time zone {tz_name:?} (use an IANA name such as UTC or Europe/Paris)"
            ))
        })?;
        let addr = args
            .http_addr
            .clone()
            .or(file.http_addr)
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
        let http_addr: SocketAddr = addr.parse().map_err(|_| {
            invalid(format!(
                "invalid HTTP address {addr:?} (expected host:port such as 127.0.0.1:9187)"
            ))
        })?;
        let api_addr = api_address(args.api_addr.clone().or(file.api_addr.clone()), http_addr)?;
        let console = console_config(args, &console_keys, http_addr, api_addr)?;
        let [audit_schedule, sync_payments_schedule, overdue_schedule] = [
            args.audit_schedule.clone().or(file.audit_schedule.clone()),
            args.sync_payments_schedule
                .clone()
                .or(file.sync_payments_schedule.clone()),
            args.overdue_schedule
                .clone()
                .or(file.overdue_schedule.clone()),
        ];
        for s in [&audit_schedule, &sync_payments_schedule, &overdue_schedule]
            .into_iter()
            .flatten()
        {
            validate_schedule(s)?;
        }
        let overdue_policy = overdue_policy(
            args.overdue_invoices.or(file.overdue_invoices),
            args.overdue_seats.or(file.overdue_seats),
        )?;
        Ok(ServeConfig {
            audit_schedule,
            sync_payments_schedule,
            overdue_schedule,
            overdue_policy,
            concurrency: tuning.concurrency(),
            tuning,
            database: DbUrl::parse(&database_url)?,
            schedule,
            timezone,
            http_addr,
            api_addr,
            console,
            allow_time_travel: args.allow_time_travel,
            webhook_secrets: webhook_secrets()?,
            lease_seconds: env_or(
                "PLAN_INVOICER_LEASE_SECONDS",
                file.lease_seconds,
                DEFAULT_LEASE_SECONDS,
            )?,
            shutdown_grace_seconds: env_or(
                "PLAN_INVOICER_SHUTDOWN_GRACE_SECONDS",
                file.shutdown_grace_seconds,
                DEFAULT_SHUTDOWN_GRACE_SECONDS,
            )?,
        })
    }
}

/// The API's address, when one is given: never the health and metrics address.
fn api_address(
    addr: Option<String>,
    http_addr: SocketAddr,
) -> Result<Option<SocketAddr>, AppError> {
    let Some(a) = addr else {
        return Ok(None);
    };
    let api: SocketAddr = a.parse().map_err(|_| {
        invalid(format!(
            "invalid API address {a:?} (expected host:port such as 127.0.0.1:8080)"
        ))
    })?;
    if api == http_addr {
        return Err(invalid(format!(
            "the API address {http_addr} is also the health and metrics address: give each its own port"
        )));
    }
    Ok(Some(api))
}

/// The console's settings, when its address is given: its own port; `Secure` cookies unless
/// it listens on loopback (or as set); the SSO header only with the proxies it is trusted from.
fn console_config(
    args: &ServeArgs,
    file: &FileConfig,
    http_addr: SocketAddr,
    api_addr: Option<SocketAddr>,
) -> Result<Option<ConsoleConfig>, AppError> {
    let Some(a) = args.console_addr.clone().or(file.console_addr.clone()) else {
        return Ok(None);
    };
    let addr: SocketAddr = a.parse().map_err(|_| {
        invalid(format!(
            "invalid console address {a:?} (expected host:port such as 127.0.0.1:8090)"
        ))
    })?;
    if addr == http_addr || Some(addr) == api_addr {
        return Err(invalid(format!(
            "the console address {addr} is also the health or the API address: give each its own port"
        )));
    }
    let secure_cookies = args
        .console_secure_cookies
        .or(file.console_secure_cookies)
        .unwrap_or(!addr.ip().is_loopback());
    let header = args
        .console_sso_email_header
        .clone()
        .or(file.console_sso_email_header.clone())
        .map(|h| {
            axum::http::HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| invalid(format!("invalid console SSO email header name {h:?}")))
        })
        .transpose()?;
    let proxies = if args.console_trusted_proxies.is_empty() {
        file.console_trusted_proxies.clone().unwrap_or_default()
    } else {
        args.console_trusted_proxies.clone()
    };
    let trusted_proxies = proxies
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<std::net::IpAddr>().map_err(|_| {
                invalid(format!(
                    "invalid trusted proxy address {p:?} (expected an IP address)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if header.is_some() == trusted_proxies.is_empty() {
        return Err(invalid(
            "the console's SSO email header and its trusted proxy addresses go together: give both or neither",
        ));
    }
    Ok(Some(ConsoleConfig {
        addr,
        secure_cookies,
        sso_email_header: header,
        trusted_proxies,
    }))
}

fn env_or(name: &str, file: Option<u64>, default: u64) -> Result<u64, AppError> {
    match env(name) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{name} must be a whole number (got {v:?})"))),
        None => Ok(file.unwrap_or(default)),
    }
}

/// A six-field cron expression with seconds, as tokio-cron-scheduler parses it.
pub fn validate_schedule(schedule: &str) -> Result<(), AppError> {
    let fields = schedule.split_whitespace().count();
    if fields != 6 {
        return Err(invalid(format!(
            "invalid schedule {schedule:?}: expected six cron fields with seconds, e.g. \"0 0 22 * * *\" (got {fields})"
        )));
    }
    tokio_cron_scheduler::Job::new_async_tz(schedule, chrono::Utc, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| {
            invalid(format!(
                "invalid schedule {schedule:?}: not a cron expression"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ServeConfig {
        fn resolve_test(args: &ServeArgs) -> Result<ServeConfig, AppError> {
            ServeConfig::resolve(args, &Tuning::default())
        }
    }

    #[test]
    fn schedules() {
        assert!(validate_schedule("0 0 22 * * *").is_ok());
        assert!(validate_schedule("* * * * * *").is_ok());
        assert!(validate_schedule("0 22 * * *").is_err());
        assert!(validate_schedule("0 0 25 * * *").is_err());
        assert!(validate_schedule("every day").is_err());
    }

    #[test]
    fn resolution_and_errors() {
        let args = ServeArgs {
            database_url: "sqlite://x.db".into(),
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve_test(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.schedule.as_str(), c.timezone, c.http_addr.port()),
            (DEFAULT_SCHEDULE, Tz::UTC, 9187)
        );
        let bad_tz = ServeArgs {
            timezone: Some("Mars/Olympus".into()),
            ..args.clone()
        };
        assert!(ServeConfig::resolve_test(&bad_tz).is_err());
        let bad_addr = ServeArgs {
            http_addr: Some("localhost".into()),
            ..args.clone()
        };
        assert!(ServeConfig::resolve_test(&bad_addr).is_err());
        let paris = ServeArgs {
            timezone: Some("Europe/Paris".into()),
            ..args
        };
        assert_eq!(
            ServeConfig::resolve_test(&paris).map(|c| c.timezone).ok(),
            Some(chrono_tz::Europe::Paris)
        );
    }
}
