//! The binary driver: the binary with a test's environment, run with `--json` and read back.

use std::process::Command;

use serde_json::Value;

use super::TestDb;

impl TestDb {
    /// The binary with its environment for this test: the database, the emulator as Stripe
    /// with a test key, unpaced and quickly retried, logging warnings, and nothing inherited
    /// that would change its behaviour (`PLAN_INVOICER_NOW`, `STRIPE_API_KEY_FILE`). Callers
    /// override what their test is about.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plan-invoicer"));
        self.environment(&mut cmd);
        cmd
    }

    /// Sets [`TestDb::command`]'s environment on another command (a wrapper such as `script`).
    pub fn environment<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .env_remove("PLAN_INVOICER_NOW")
            .env_remove("STRIPE_API_KEY_FILE")
            .env("STRIPE_API_KEY", "sk_test_plan_invoicer")
            .env("STRIPE_API_BASE", &self.stripe_base)
            .env("STRIPE_MAX_REQUESTS_PER_SECOND", "1000")
            .env("STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT", "1000")
            .env("STRIPE_RETRY_BASE_MS", "10")
    }

    /// Runs the binary; returns (exit code, stdout, stderr).
    pub fn run(&self, now: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.command();
        if let Some(now) = now {
            cmd.args(["--now", now]);
        }
        cmd.arg("--json").args(args);
        let out = cmd.output().expect("run plan-invoicer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the binary, expects exit 0, returns the JSON document.
    pub fn ok(&self, now: Option<&str>, args: &[&str]) -> Value {
        let (code, out, err) = self.run(now, args);
        assert_eq!(code, 0, "{args:?} failed with {code}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Runs the binary, expects `code`, returns the JSON document (passes with exit 3).
    pub fn code(&self, code: i32, now: Option<&str>, args: &[&str]) -> Value {
        let (got, out, err) = self.run(now, args);
        assert_eq!(
            got, code,
            "{args:?}: expected exit {code}, got {got}: {err}"
        );
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    /// Expects a one-line error with exit 2 and returns it.
    pub fn refused(&self, now: Option<&str>, args: &[&str]) -> String {
        let (code, out, err) = self.run(now, args);
        assert_eq!(
            code, 2,
            "{args:?}: expected exit 2, got {code}: {out} {err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: expected one line on stderr, got {err:?}"
        );
        assert!(
            out.trim().is_empty(),
            "{args:?}: nothing on stdout expected, got {out}"
        );
        lines[0].to_string()
    }

    pub fn id(&self, now: Option<&str>, args: &[&str]) -> i64 {
        self.ok(now, args)["id"].as_i64().expect("an id")
    }

    pub fn plan(&self, id: i64) -> Value {
        self.ok(None, &["plan", "show", &id.to_string()])
    }

    pub fn invoices(&self) -> Vec<Value> {
        self.ok(None, &["invoices", "list"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// `count` customers with a monthly automatic Cloud Standard plan of 5 licenses anchored at
/// `anchor`, created through the CLI.
pub fn monthly_plans(db: &TestDb, count: usize, anchor: &str) {
    for i in 0..count {
        let cust = db.id(
            Some(anchor),
            &["customer", "create", "--name", &format!("c{i}")],
        );
        let c = cust.to_string();
        db.id(
            Some(anchor),
            &[
                "plan",
                "create",
                "--customer",
                &c,
                "--tier",
                "cloud_standard",
                "--schedule",
                "monthly",
                "--licenses",
                "5",
                "--automanage-licenses",
            ],
        );
    }
}

/// A command line written as one string (`"plan create --customer 1 …"`), split on spaces:
/// for arguments without spaces.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
