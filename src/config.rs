//! Typed configuration of the daemon: flags and environment, then an optional TOML file, then
//! defaults. Validated once at start-up; a bad value is a one-line error before anything runs.

use std::net::SocketAddr;
use std::path::Path;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::db::DbUrl;
use crate::error::{invalid, AppError};

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
    "PLAN_INVOICER_LEASE_SECONDS",
    "PLAN_INVOICER_SHUTDOWN_GRACE_SECONDS",
    "STRIPE_API_KEY",
    "STRIPE_API_KEY_FILE",
    "STRIPE_API_BASE",
    "PLAN_INVOICER_CONCURRENCY",
    "PLAN_INVOICER_AUDIT_SCHEDULE",
    "STRIPE_MAX_REQUESTS_PER_SECOND",
    "STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT",
    "STRIPE_MAX_REQUESTS_IN_FLIGHT",
    "STRIPE_MAX_ATTEMPTS",
    "STRIPE_RETRY_BASE_MS",
];

pub const DEFAULT_SCHEDULE: &str = "0 0 22 * * *";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9187";

/// Connections a PostgreSQL pool opens at most (SQLite: one). A connection is held for one
/// short transaction, never across a Stripe call, so a few serve many plans in flight.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// The optional TOML file (`--config`); every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub http_addr: Option<String>,
    pub lease_seconds: Option<u64>,
    pub shutdown_grace_seconds: Option<u64>,
    pub concurrency: Option<u32>,
    pub audit_schedule: Option<String>,
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

/// The daemon's validated configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: DbUrl,
    pub schedule: String,
    pub timezone: Tz,
    pub http_addr: SocketAddr,
    pub lease_seconds: u64,
    pub shutdown_grace_seconds: u64,
    /// Customers invoiced at once within a pass.
    pub concurrency: usize,
    /// Concurrency and the Stripe budget, flags and environment over the file.
    pub tuning: crate::cli::Tuning,
    /// When to run `audit` beside the passes (off by default).
    pub audit_schedule: Option<String>,
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
    pub config: Option<std::path::PathBuf>,
    pub audit_schedule: Option<String>,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs, tuning: &crate::cli::Tuning) -> Result<ServeConfig, AppError> {
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
        let audit_schedule = args.audit_schedule.clone().or(file.audit_schedule);
        if let Some(s) = &audit_schedule {
            validate_schedule(s)?;
        }
        Ok(ServeConfig {
            audit_schedule,
            concurrency: tuning.concurrency(),
            tuning,
            database: DbUrl::parse(&database_url)?,
            schedule,
            timezone,
            http_addr,
            lease_seconds: env_or("PLAN_INVOICER_LEASE_SECONDS", file.lease_seconds, 600)?,
            shutdown_grace_seconds: env_or(
                "PLAN_INVOICER_SHUTDOWN_GRACE_SECONDS",
                file.shutdown_grace_seconds,
                60,
            )?,
        })
    }
}

fn env_or(name: &str, file: Option<u64>, default: u64) -> Result<u64, AppError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{name} must be a whole number (got {v:?})"))),
        _ => Ok(file.unwrap_or(default)),
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
            ServeConfig::resolve(args, &crate::cli::Tuning::default())
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
