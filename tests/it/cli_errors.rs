//! Bad input gets a one-line error, exit 2, and no write — on both backends.

use crate::common::{Backend, TestDb};

const T0: &str = "2012-01-02T03:04:05Z";

fn plan_count(db: &TestDb) -> usize {
    db.ok(None, &["plan", "list"])
        .as_array()
        .map_or(0, Vec::len)
}

fn bad_inputs_are_refused_without_writes(db: &TestDb) {
    let cust = db.id(Some(T0), &["customer", "create", "--name", "Acme"]);
    let c = cust.to_string();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "create",
            "--customer",
            c.as_str(),
            "--tier",
            "cloud_standard",
            "--schedule",
            "annual",
            "--licenses",
            "6",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let refused = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        db.refused(Some(T0), &refs)
    };
    let mut unknown_tier = create(&[]);
    unknown_tier[5] = "gold".into();
    assert!(refused(unknown_tier).contains("Unknown tier: gold"));
    let mut negative = create(&[]);
    negative[9] = "-3".into();
    assert!(refused(negative).contains("must not be negative"));
    assert!(refused(create(&["--anchor", "yesterday"])).contains("RFC 3339"));
    assert!(refused(create(&[
        "--fixed-price-cents",
        "100",
        "--price-per-license-cents",
        "5"
    ]))
    .contains("not both"));
    assert!(
        refused(create(&["--free-trial-days", "30", "--invoice-billing"])).contains("free trial")
    );
    let mut unknown_customer = create(&[]);
    unknown_customer[3] = "999".into();
    assert!(refused(unknown_customer).contains("customer 999 does not exist"));
    assert_eq!(plan_count(db), 0);

    let plan = db.id(
        Some(T0),
        &create(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(refused(create(&[])).contains("already has a live plan"));
    assert_eq!(plan_count(db), 1);

    let p = plan.to_string();
    assert!(db
        .refused(Some(T0), &["plan", "show", "42"])
        .contains("plan 42 does not exist"));
    assert!(db
        .refused(Some(T0), &["plan", "buy-licenses", &p, "--licenses", "4"])
        .contains("only go up"));
    assert!(db
        .refused(Some(T0), &["plan", "schedule", &p, "--change", "later"])
        .contains("unknown change"));
    assert!(db
        .refused(
            Some(T0),
            &["plan", "schedule", &p, "--change", "switch_to_annual"]
        )
        .contains("monthly"));
    assert!(db
        .refused(Some("not-a-date"), &["plan", "show", &p])
        .contains("RFC 3339"));
    assert!(db
        .refused(None, &["plan", "seats", &p, "--count", "x"])
        .contains("invalid value"));
    assert!(db
        .refused(
            None,
            &["customer", "create", "--name", "X", "--kind", "martian"]
        )
        .contains("unknown customer kind"));
    assert!(db
        .refused(
            None,
            &[
                "offer",
                "create",
                "--customer",
                &c,
                "--tier",
                "self_hosted_legacy",
                "--fixed-price-cents",
                "5"
            ]
        )
        .contains("offers are for"));
    let ledger = db.ok(None, &["plan", "ledger", &p]);
    assert_eq!(
        ledger.as_array().map(Vec::len),
        Some(1),
        "nothing was written: {ledger}"
    );
}

fn unmigrated_database_is_refused(db: &TestDb) {
    let err = db.refused(Some(T0), &["plan", "list"]);
    assert!(err.contains("plan-invoicer migrate"), "{err}");
}

fn bad_database_url(db: &TestDb) {
    let (code, _, err) = std::process::Command::new(env!("CARGO_BIN_EXE_plan-invoicer"))
        .args(["--database-url", "mysql://nope", "status"])
        .output()
        .map(|o| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap_or((None, String::new(), String::new()));
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid database URL"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    let _ = db;
}

on_both_backends!(bad_inputs_are_refused_without_writes, bad_database_url);

#[test]
fn unmigrated_sqlite_and_postgres() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if let Some(db) = TestDb::empty(backend) {
            unmigrated_database_is_refused(&db);
        }
    }
}

#[test]
fn second_sqlite_worker_is_refused() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let path = db.url.trim_start_matches("sqlite://").to_string();
    let url = plan_invoicer::db::DbUrl::parse(&db.url)
        .unwrap_or(plan_invoicer::db::DbUrl::Sqlite(path.into()));
    let held = plan_invoicer::db::lock::worker_lock(&url).ok().flatten();
    assert!(held.is_some(), "the test holds the worker lock");
    let (code, _, err) = db.run(Some(T0), &["run-once"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another plan-invoicer worker"), "{err}");
    drop(held);
    db.ok(Some(T0), &["run-once"]);
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    plan_invoicer::cli::Cli::command().debug_assert();
}

/// Not the caller's fault, not reported as bad input: a listener that cannot be opened (the
/// address is taken) ends `serve` with exit 1 and an "internal error" line, where a bad address
/// is the caller's input (exit 2).
#[test]
fn a_listener_that_cannot_open_is_an_internal_error() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let (code, _, stderr) = db.run(None, &["serve", "--http-addr", &addr]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("internal error: cannot listen on"),
        "{stderr}"
    );
    let (code, _, stderr) = db.run(None, &["serve", "--http-addr", "nowhere"]);
    assert_eq!(code, 2, "{stderr}");
}
