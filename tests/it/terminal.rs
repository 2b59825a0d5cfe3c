//! What an operator sees in a terminal: the long commands draw one progress line, keep their
//! INFO lines for `-v`, and end with the summary as the last thing on the screen. Run through a
//! pseudo-terminal (`script`), 120 columns wide, as a person would run them.

use std::process::Command;

use crate::common;
use crate::common::{Backend, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_plan-invoicer");

/// Runs the binary in a pseudo-terminal; returns everything the terminal received.
fn in_terminal(db: &TestDb, args: &[&str]) -> String {
    let quoted: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect();
    let out = db
        .environment(&mut Command::new("script"))
        .args(["-qfec", &quoted.join(" "), "/dev/null"])
        .env_remove("RUST_LOG")
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "120")
        .env("LINES", "40")
        .output()
        .unwrap_or_else(|e| panic!("script: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The screen's lines in the order they were last written: escape sequences removed, each
/// carriage return starting the line over.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split('\n')
        .filter_map(|line| line.rsplit('\r').find(|s| !s.trim().is_empty()))
        .map(|s| s.trim().to_string())
        .collect()
}

const YEAR: [&str; 6] = [
    "backfill",
    "--from",
    "2012-01-02T22:00:00Z",
    "--to",
    "2012-12-01T22:00:00Z",
    "--every",
];

#[test]
fn backfill_on_a_terminal_shows_the_bar_and_ends_with_the_summary() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    common::monthly_plans(&db, 3, "2012-01-02T03:04:05Z");
    let mut args = YEAR.to_vec();
    args.push("1d");
    let raw = in_terminal(&db, &args);
    assert!(
        raw.contains("passes ·") && raw.contains("invoices sent"),
        "the progress line was drawn: {raw:?}"
    );
    assert!(
        !raw.contains("pass finished") && !raw.contains("invoice sent"),
        "no INFO lines on a terminal without -v: {raw:?}"
    );
    let lines = screen_lines(&raw);
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(
            "backfill 2012-01-02T22:00:00Z .. 2012-12-01T22:00:00Z every 1d: 335 passes"
        ),
        "the summary is the last thing on the screen: {lines:?}"
    );
    assert!(last.contains("30 invoices"), "{last}");
    assert_eq!(db.invoices().len(), 30);
}

#[test]
fn verbose_prints_the_info_lines_above_the_bar() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    common::monthly_plans(&db, 1, "2012-01-02T03:04:05Z");
    let mut args = vec!["-v"];
    args.extend(YEAR);
    args.push("7d");
    let raw = in_terminal(&db, &args);
    assert!(
        raw.contains("invoice sent"),
        "-v shows the INFO lines: {raw:?}"
    );
    let lines = screen_lines(&raw);
    assert!(
        lines.last().is_some_and(|l| l.starts_with("backfill ")),
        "the summary is still last: {lines:?}"
    );
}

#[test]
fn run_once_and_audit_on_a_terminal_end_with_their_summaries() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    common::monthly_plans(&db, 3, "2012-01-02T03:04:05Z");
    let raw = in_terminal(&db, &["--now", "2012-02-03T00:00:00Z", "run-once"]);
    assert!(!raw.contains("invoice sent"), "{raw:?}");
    let lines = screen_lines(&raw);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("3 plans considered") || l.contains("plans considered: 3")),
        "{lines:?}"
    );
    let raw = in_terminal(&db, &["audit"]);
    let lines = screen_lines(&raw);
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("audit: 3 customers")),
        "{lines:?}"
    );
}

/// Off a terminal (a pipe, as under systemd or in CI) nothing changes: INFO lines, no bar.
#[test]
fn off_a_terminal_the_log_lines_stay() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    common::monthly_plans(&db, 1, "2012-01-02T03:04:05Z");
    let out = db
        .command()
        .args(["--now", "2012-02-03T00:00:00Z", "run-once"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invoice sent"), "{err}");
    assert!(!err.contains("plans ·"), "no bar off a terminal: {err}");
}
