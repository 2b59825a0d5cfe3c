//! The daemon and the other ways to run the worker: `serve` on a per-second schedule against
//! SQLite and the Stripe emulator (passes, endpoints, a clean stop on SIGTERM in the middle of a
//! pass), start-up validation, `backfill`, `demo`, and the deploy files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{Backend, TestDb};
use plan_invoicer::devtools::emulator::Faults;

const BIN: &str = env!("CARGO_BIN_EXE_plan-invoicer");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19187)
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

fn serve(db: &TestDb, port: u16, extra: &[&str]) -> Child {
    db.command()
        .env("STRIPE_API_KEY", "sk_test_daemon")
        .env("RUST_LOG", "info")
        .args([
            "serve",
            "--schedule",
            "* * * * * *",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn serve: {e}"))
}

use crate::common::wait_until;

/// Plans with one invoice due now (on the wall clock, which `serve` runs on).
fn setup_recent_plans(db: &TestDb, count: usize) {
    let anchor = (chrono::Utc::now() - chrono::Duration::days(35))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    common::monthly_plans(db, count, &anchor);
}

fn setup_plans(db: &TestDb, count: usize) {
    common::monthly_plans(db, count, "2012-01-02T03:04:05Z");
}

fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Passes run on schedule; the endpoints answer; SIGTERM in the middle of a pass finishes the
/// plan in flight and exits 0 with nothing half-sent.
#[test]
fn serve_runs_passes_and_stops_cleanly_mid_pass() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_recent_plans(&db, 6);
    // Each Stripe request takes 150 ms: a pass over six plans takes several seconds.
    db.stripe.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let port = free_port();
    // Two customers at a time: a stop lands while plans are still waiting to be claimed.
    let mut child = serve(&db, port, &["--concurrency", "2"]);
    assert!(
        wait_until(Duration::from_secs(20), || http_get(port, "/healthz")
            .is_some_and(|(s, _)| s == 200)),
        "healthz answers"
    );
    assert_eq!(http_get(port, "/readyz").map(|(s, _)| s), Some(200));
    let healthcheck = |port: u16| {
        Command::new(BIN)
            .args(["healthcheck", "--http-addr", &format!("0.0.0.0:{port}")])
            .status()
            .ok()
            .and_then(|s| s.code())
    };
    assert_eq!(
        healthcheck(port),
        Some(0),
        "the healthcheck command sees the daemon"
    );
    // The start-up catch-up pass is in flight once Stripe has seen a request.
    assert!(
        wait_until(Duration::from_secs(20), || !db.stripe.requests().is_empty()),
        "a pass started"
    );
    let metrics = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let code = terminate(&mut child);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(code, Some(0), "clean exit: {stderr}");
    assert_eq!(healthcheck(port), Some(1), "nobody answers after the stop");
    assert!(stderr.contains("stop requested"), "{stderr}");
    let invoices = db.invoices();
    assert!(!invoices.is_empty(), "the plan in flight was finished");
    assert!(
        invoices.len() < 6,
        "no new plan was claimed after SIGTERM ({} invoices)",
        invoices.len()
    );
    assert!(
        invoices.iter().all(|i| i["status"] == "sent"),
        "nothing half-sent: {invoices:?}"
    );
    db.assert_stripe_matches_local();
    assert!(
        db.stripe.invoices().iter().all(|i| i["status"] != "draft"),
        "no draft left in Stripe"
    );
    let status = db.ok(None, &["status"]);
    assert_eq!(
        status["leased"].as_array().map(Vec::len),
        Some(0),
        "no lease left behind"
    );
    for name in [
        "plan_invoicer_passes_total",
        "plan_invoicer_passes_failed_total",
        "plan_invoicer_pass_duration_seconds_bucket",
        "plan_invoicer_last_successful_pass_timestamp_seconds",
        "plan_invoicer_plans_invoiced_total",
        "plan_invoicer_invoices_emitted_total",
        "plan_invoicer_invoice_lines_emitted_total",
        "plan_invoicer_stripe_requests_total{outcome=\"ok\"}",
        "plan_invoicer_plans_needing_attention",
        "plan_invoicer_plans_started_with_live_lease",
        "plan_invoicer_plans_overdue",
        "plan_invoicer_ticks_skipped_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let leased = metrics
        .lines()
        .find_map(|l| l.strip_prefix("plan_invoicer_plans_started_with_live_lease "))
        .and_then(|v| v.trim().parse::<u32>().ok());
    assert!(
        matches!(leased, Some(1 | 2)),
        "one or two plans in flight (concurrency 2): {leased:?}"
    );

    // Restarted, the daemon finishes the rest, then ticks every second with nothing to do.
    db.stripe.set_faults(Faults::default());
    let mut child = serve(&db, port, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || db.invoices().len() == 6),
        "the remaining plans are invoiced"
    );
    assert!(
        wait_until(Duration::from_secs(10), || http_get(port, "/metrics")
            .is_some_and(|(_, b)| b
                .lines()
                .any(|l| l.starts_with("plan_invoicer_passes_total ")
                    && l != "plan_invoicer_passes_total 0"
                    && l != "plan_invoicer_passes_total 1"))),
        "scheduled passes run every second"
    );
    assert_eq!(terminate(&mut child), Some(0));
    db.assert_stripe_matches_local();
}

fn refused_at_startup(args: &[&str], env: &[(&str, &str)], expect: &str) {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let mut cmd = db.command();
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(expect), "{err}");
}

#[test]
fn bad_configuration_fails_at_startup() {
    refused_at_startup(&["--schedule", "0 22 * * *"], &[], "six cron fields");
    refused_at_startup(&["--schedule", "0 0 25 * * *"], &[], "invalid schedule");
    refused_at_startup(&["--timezone", "Mars/Olympus"], &[], "unknown time zone");
    refused_at_startup(&["--http-addr", "nowhere"], &[], "invalid HTTP address");
    refused_at_startup(&["--api-addr", "nowhere"], &[], "invalid API address");
    refused_at_startup(
        &[
            "--http-addr",
            "127.0.0.1:9187",
            "--api-addr",
            "127.0.0.1:9187",
        ],
        &[],
        "give each its own port",
    );
    refused_at_startup(
        &["--allow-time-travel"],
        &[("STRIPE_API_KEY", "sk_live_x")],
        "refusing --allow-time-travel with a live Stripe key",
    );
    refused_at_startup(
        &[],
        &[("STRIPE_API_KEY", ""), ("STRIPE_API_KEY_FILE", "")],
        "STRIPE_API_KEY",
    );
    refused_at_startup(&[], &[("STRIPE_API_BASE", "ftp://x")], "STRIPE_API_BASE");
    refused_at_startup(
        &[],
        &[("PLAN_INVOICER_LEASE_SECONDS", "soon")],
        "PLAN_INVOICER_LEASE_SECONDS",
    );
}

/// A pass that must emit invoices and has no key fails before touching any plan.
#[test]
fn run_once_without_a_key_is_refused() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_plans(&db, 1);
    let out = db
        .command()
        .env_remove("STRIPE_API_KEY")
        .args(["--now", "2012-03-01T00:00:00Z", "run-once"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRIPE_API_KEY"));
    assert_eq!(
        db.plan(1)["next_invoice_date"],
        "2012-02-02T03:04:05Z",
        "no plan was touched"
    );
    // --dry-run needs no key.
    let dry = db
        .command()
        .env_remove("STRIPE_API_KEY")
        .args([
            "--json",
            "--now",
            "2012-03-01T00:00:00Z",
            "run-once",
            "--dry-run",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dry.status.code(), Some(0));
}

/// The key is read from STRIPE_API_KEY_FILE and never appears in logs.
#[test]
fn key_file_and_no_key_in_logs() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_plans(&db, 1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_path = dir.path().join("key");
    std::fs::write(&key_path, "sk_test_supersecret123\n").unwrap_or_else(|e| panic!("{e}"));
    let out = db
        .command()
        .env_remove("STRIPE_API_KEY")
        .env("STRIPE_API_KEY_FILE", &key_path)
        .env("RUST_LOG", "trace")
        .args([
            "--now",
            "2012-03-01T00:00:00Z",
            "--log-format",
            "json",
            "run-once",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        !all.contains("supersecret"),
        "the key leaked into the output"
    );
    assert!(all.contains("\"plan.id\""), "json logs carry dotted fields");
    assert_eq!(db.invoices().len(), 1);
}

/// `backfill` runs a pass per step and reports the sum; bad steps are refused.
#[test]
fn backfill_daily_over_a_quarter() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_plans(&db, 2);
    let report = db.ok(
        None,
        &[
            "backfill",
            "--from",
            "2012-01-03T22:00:00Z",
            "--to",
            "2012-04-03T22:00:00Z",
            "--every",
            "1d",
        ],
    );
    assert_eq!(report["passes"], 92);
    assert_eq!(
        report["invoices"].as_array().map(Vec::len),
        Some(6),
        "{report}"
    );
    assert_eq!(report["interrupted"], false);
    db.assert_stripe_matches_local();
    let again = db.ok(
        None,
        &[
            "backfill",
            "--from",
            "2012-01-03T22:00:00Z",
            "--to",
            "2012-04-03T22:00:00Z",
        ],
    );
    assert_eq!(
        again["invoices"].as_array().map(Vec::len),
        Some(0),
        "a second backfill emits nothing"
    );
    assert!(db
        .refused(
            None,
            &[
                "backfill",
                "--from",
                "2012-01-01T00:00:00Z",
                "--to",
                "2012-02-01T00:00:00Z",
                "--every",
                "1y"
            ]
        )
        .contains("unit"));
    assert!(db
        .refused(
            None,
            &[
                "backfill",
                "--from",
                "2012-02-01T00:00:00Z",
                "--to",
                "2012-01-01T00:00:00Z"
            ]
        )
        .contains("--to"));
}

/// `demo` on a bare machine: a year of invoices from the emulator, printed.
#[test]
fn demo_prints_a_year_of_invoices() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Acme Corp",
        "Zulip Cloud Standard - renewal",
        "Additional Zulip Cloud Standard license",
        "$20.00/month new customer discount",
        "billed by customer",
        "0 plans needed attention, 0 failures",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle:?}");
    }
    let json = Command::new(BIN)
        .args(["--json", "demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let summary: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_default();
    assert!(summary["invoices"].as_u64() > Some(50), "{summary}");
    assert_eq!(summary["invoices"], summary["stripe_invoices"]);
    assert_eq!(summary["customers"], 12);
}

/// The example environment file documents exactly the variables the program reads.
#[test]
fn env_example_matches_the_configuration() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/plan-invoicer.env"
    ))
    .unwrap_or_default();
    let mut documented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    documented.sort_unstable();
    let mut known = plan_invoicer::config::ENV_VARS.to_vec();
    known.sort_unstable();
    assert_eq!(documented, known);
    for var in known {
        let comment_above = text.lines().collect::<Vec<_>>().windows(2).any(|w| {
            w[0].starts_with("# ") && w[1].trim_start_matches('#').starts_with(&format!("{var}="))
        });
        assert!(comment_above, "{var} has a comment");
    }
}

/// `systemd-analyze verify` on the unit, where the tool exists.
#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/plan-invoicer.service"
    ))
    .unwrap_or_default();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("plan-invoicer.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/plan-invoicer", BIN))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let messages =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{messages}");
    assert!(
        messages.trim().is_empty(),
        "systemd-analyze has remarks: {messages}"
    );
}

/// Ctrl-C (SIGINT) stops a backfill between steps, with a summary of what was done.
#[test]
fn backfill_stops_between_steps_on_ctrl_c() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_plans(&db, 3);
    db.stripe.set_faults(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    });
    let child = db
        .command()
        .args([
            "--json",
            "backfill",
            "--from",
            "2012-01-03T22:00:00Z",
            "--to",
            "2013-01-03T22:00:00Z",
            "--every",
            "1d",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_until(Duration::from_secs(20), || !db.stripe.requests().is_empty()),
        "the backfill started"
    );
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["interrupted"], true, "{report}");
    assert!(report["passes"].as_u64() < Some(367), "{report}");
    let invoices = db.invoices();
    assert!(
        invoices.iter().all(|i| i["status"] == "sent"),
        "nothing half-sent"
    );
    db.assert_stripe_matches_local();
}

/// The database goes away under `serve` (connections refused and every connection of the
/// worker terminated): `/readyz` answers 503, passes fail; once it is back, `/readyz` answers
/// 200 again and a plan made due after the outage is invoiced by the same process.
#[test]
fn serve_survives_the_database_going_away() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    setup_recent_plans(&db, 1);
    let port = free_port();
    let mut child = serve(&db, port, &[]);
    // Sent, not only written: the outage falls between passes. (An invoice cut off half-sent is
    // finished by a later pass once its plan is due for a retry: the kill tests cover that; this
    // test's windows are too short for it, and it failed so under a loaded machine.)
    assert!(
        wait_until(Duration::from_secs(20), || {
            let invoices = db.invoices();
            invoices.len() == 1 && invoices[0]["status"] == "sent"
        }),
        "the first plan is invoiced"
    );
    assert_eq!(http_get(port, "/readyz").map(|(s, _)| s), Some(200));
    let name = db.url.rsplit('/').next().unwrap_or_default().to_string();
    let admin = common::pg_admin;
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ));
    assert!(
        wait_until(Duration::from_secs(20), || http_get(port, "/readyz")
            .is_some_and(|(s, _)| s == 503)),
        "/readyz says the database is gone"
    );
    assert_eq!(
        http_get(port, "/healthz").map(|(s, _)| s),
        Some(200),
        "/healthz is about the process"
    );
    let failed_passes = || {
        http_get(port, "/metrics")
            .and_then(|(_, b)| {
                b.lines()
                    .find_map(|l| l.strip_prefix("plan_invoicer_passes_failed_total "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || failed_passes() > 0),
        "passes fail while the database is away"
    );
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    assert!(
        wait_until(Duration::from_secs(30), || http_get(port, "/readyz")
            .is_some_and(|(s, _)| s == 200)),
        "/readyz recovers"
    );
    // A plan made due after the outage: a customer whose monthly plan began 35 days ago.
    setup_recent_plans(&db, 1);
    assert!(
        wait_until(Duration::from_secs(30), || db.invoices().len() == 2),
        "the same process invoices the new plan"
    );
    assert_eq!(terminate(&mut child), Some(0));
    db.assert_stripe_matches_local();
}

/// `serve --audit-schedule` audits on its own schedule and shows the findings on /metrics.
#[test]
fn serve_audits_on_a_schedule() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    setup_recent_plans(&db, 2);
    let port = free_port();
    let mut child = serve(&db, port, &["--audit-schedule", "*/2 * * * * *"]);
    let gauge = |name: &str| {
        http_get(port, "/metrics").and_then(|(_, b)| {
            b.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || db.invoices().len() == 2
            && gauge("plan_invoicer_last_audit_timestamp_seconds").is_some()
            && gauge("plan_invoicer_audit_findings").as_deref() == Some("0")),
        "an audit ran and found nothing"
    );
    // A Stripe invoice made beside the worker is found by the next audit.
    let customer = db.stripe.invoices()[0]["customer"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    db.stripe.create_invoice_beside(&customer, 1, 100);
    assert!(
        wait_until(Duration::from_secs(30), || gauge(
            "plan_invoicer_audit_findings"
        )
        .as_deref()
            == Some("1")),
        "the double send is counted"
    );
    // Every family is on this scrape now (the audit's too): the dashboard and the alert rules
    // may name only what it exposes. CI lints the same scrape with `promtool check metrics`.
    let scrape = http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert_eq!(terminate(&mut child), Some(0));
    if let Ok(path) = std::env::var("PLAN_INVOICER_METRICS_SCRAPE") {
        std::fs::write(&path, &scrape).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let exposed: std::collections::BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let names_in = |text: &str| -> Vec<String> {
        let mut names = vec![];
        let mut rest = text;
        while let Some(i) = rest.find("plan_invoicer_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    };
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/grafana/plan-invoicer.json").unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("the dashboard is JSON: {e}"));
    let mut exprs = vec![];
    for panel in dashboard["panels"].as_array().cloned().unwrap_or_default() {
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            exprs.push(target["expr"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(exprs.len() >= 12, "the dashboard has its panels: {exprs:?}");
    let alerts = std::fs::read_to_string("deploy/prometheus/alerts.yml").unwrap_or_default();
    let alert_exprs: Vec<&str> = alerts
        .split("expr:")
        .skip(1)
        .map(|e| {
            e.split("for:")
                .next()
                .unwrap_or(e)
                .split("labels:")
                .next()
                .unwrap_or(e)
        })
        .collect();
    assert_eq!(alert_exprs.len(), 7, "seven alert rules");
    for (source, text) in exprs
        .iter()
        .map(|e| ("dashboard", e.as_str()))
        .chain(alert_exprs.iter().map(|e| ("alerts.yml", *e)))
    {
        let names = names_in(text);
        assert!(!names.is_empty(), "{source}: {text} names no metric");
        for name in names {
            assert!(
                exposed.contains(name.as_str()),
                "{source} names {name}, which /metrics does not expose: {text}"
            );
        }
    }
}
