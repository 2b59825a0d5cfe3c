//! The change history on both backends: every surface records its actor and reason, a refused
//! write records nothing, the pass records its own steps, the table refuses UPDATE and DELETE,
//! and `changes verify` finds a row altered or removed behind the triggers' back.

use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

use crate::common::http::{request, Api};
use crate::common::{Backend, TestDb};

const T0: &str = "2012-01-02T03:04:05Z";

/// The binary as user `ann` at `now`, with `--json` and `args`: (exit code, document, stderr).
fn as_ann(db: &TestDb, now: &str, args: &[&str]) -> (i32, Value, String) {
    let out = db
        .command()
        .env("USER", "ann")
        .args(["--json", "--now", now])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn changes(db: &TestDb, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["changes", "list"];
    args.extend_from_slice(filters);
    db.ok(None, &args).as_array().cloned().unwrap_or_default()
}

fn cli_writes_record_their_actor_and_reason(db: &TestDb) {
    let (code, c, err) = as_ann(
        db,
        T0,
        &[
            "customer",
            "create",
            "--name",
            "Acme",
            "--reason",
            "signed up by phone",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let customer = c["id"].as_i64().unwrap_or_default().to_string();
    let (_, p, _) = as_ann(
        db,
        T0,
        &[
            "plan",
            "create",
            "--customer",
            &customer,
            "--tier",
            "cloud_standard",
            "--schedule",
            "monthly",
            "--licenses",
            "5",
            "--automanage-licenses",
        ],
    );
    let plan = p["id"].as_i64().unwrap_or_default().to_string();
    let (code, _, err) = as_ann(
        db,
        "2012-01-10T00:00:00Z",
        &[
            "plan",
            "seats",
            &plan,
            "--count",
            "8",
            "--reason",
            "ticket 4411",
        ],
    );
    assert_eq!(code, 0, "{err}");

    // Refused writes leave no history: a bad count, and a reason with a control character
    // (refused before anything is written: the customer is not created either).
    let before = changes(db, &[]);
    let (code, _, err) = as_ann(
        db,
        "2012-01-11T00:00:00Z",
        &["plan", "seats", &plan, "--count", "-1"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = as_ann(
        db,
        T0,
        &[
            "customer",
            "create",
            "--name",
            "Forged",
            "--reason",
            "ok\nforged line",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--reason must not contain control characters"),
        "{err}"
    );
    assert_eq!(changes(db, &[]), before, "refused writes record nothing");
    assert_ne!(
        db.run(None, &["customer", "show", "2"]).0,
        0,
        "no customer was created"
    );

    let all = changes(db, &[]);
    assert_eq!(all.len(), 3, "{all:?}");
    let ops: Vec<&str> = all.iter().filter_map(|c| c["operation"].as_str()).collect();
    assert_eq!(ops, ["customer.create", "plan.create", "plan.seats"]);
    assert!(all.iter().all(|c| c["actor"] == "cli:ann"), "{all:?}");
    assert_eq!(all[0]["reason"], "signed up by phone");
    assert_eq!(all[0]["after"]["name"], "Acme");
    assert_eq!(all[0]["before"], json!({}));
    let seats = &all[2];
    assert_eq!(seats["reason"], "ticket 4411");
    assert_eq!(seats["at"], "2012-01-10T00:00:00Z");
    assert_eq!(seats["plan_id"].to_string(), plan);
    assert_eq!(seats["customer_id"].to_string(), customer);
    assert_eq!(seats["before"]["licenses"], 5);
    assert_eq!(seats["after"]["licenses"], 8);
    assert!(
        seats["before"].get("tier").is_none(),
        "only moved fields: {seats}"
    );

    // `show` says who made the last change.
    let shown = db.plan(plan.parse().unwrap_or_default());
    assert_eq!(shown["last_change"]["actor"], "cli:ann");
    assert_eq!(shown["last_change"]["operation"], "plan.seats");
    assert_eq!(shown["last_change"]["reason"], "ticket 4411");
    let c = db.ok(None, &["customer", "show", &customer]);
    assert_eq!(c["last_change"]["operation"], "plan.seats");

    // The pass writes its own change, as `system:pass`.
    db.pass("2012-02-02T03:04:05Z");
    let by_pass = changes(db, &["--actor", "system:pass"]);
    assert_eq!(by_pass.len(), 1, "{by_pass:?}");
    assert_eq!(by_pass[0]["operation"], "pass.invoice");
    assert_eq!(
        by_pass[0]["before"]["next_invoice_date"],
        "2012-02-02T03:04:05Z"
    );
    assert_eq!(
        by_pass[0]["after"]["next_invoice_date"],
        "2012-03-02T03:04:05Z"
    );
    assert!(by_pass[0]["invoice_id"].is_i64());

    // Filters and pages.
    assert_eq!(changes(db, &["--plan", &plan]).len(), 3);
    assert_eq!(changes(db, &["--operation", "plan.seats"]).len(), 1);
    let window = changes(
        db,
        &[
            "--since",
            "2012-01-05T00:00:00Z",
            "--until",
            "2012-02-01T00:00:00Z",
        ],
    );
    assert_eq!(window.len(), 1, "{window:?}");
    let first = changes(db, &["--limit", "2"]);
    let last_id = first[1]["id"].to_string();
    let next = changes(db, &["--limit", "2", "--starting-after", &last_id]);
    assert_eq!(
        first
            .iter()
            .chain(&next)
            .map(|c| c["id"].clone())
            .collect::<Vec<_>>(),
        changes(db, &[])
            .iter()
            .map(|c| c["id"].clone())
            .collect::<Vec<_>>()
    );
    let err = db.refused(None, &["changes", "list", "--limit", "0"]);
    assert!(err.contains("--limit must be 1 to 1000"), "{err}");

    let verified = db.ok(None, &["changes", "verify"]);
    assert_eq!(verified["rows"], 4);
    assert!(verified["first_break"].is_null());
}

/// A statement straight on the database, around the binary.
fn sql(db: &TestDb, statement: &str) -> Result<usize, String> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.trim_start_matches("sqlite://");
            let mut c =
                diesel::sqlite::SqliteConnection::establish(path).map_err(|e| e.to_string())?;
            diesel::sql_query(statement)
                .execute(&mut c)
                .map_err(|e| e.to_string())
        }
        Backend::Postgres => {
            let mut c = diesel::pg::PgConnection::establish(&db.url).map_err(|e| e.to_string())?;
            diesel::sql_query(statement)
                .execute(&mut c)
                .map_err(|e| e.to_string())
        }
    }
}

/// Runs `statement` with the history's triggers out of the way, as an intruder with the
/// database's owner rights would.
fn behind_the_triggers(db: &TestDb, statement: &str) {
    let wrapped = match db.backend {
        Backend::Sqlite => vec![
            "DROP TRIGGER IF EXISTS change_log_no_update".to_string(),
            "DROP TRIGGER IF EXISTS change_log_no_delete".to_string(),
            statement.to_string(),
        ],
        Backend::Postgres => vec![
            "ALTER TABLE change_log DISABLE TRIGGER change_log_no_update_or_delete".to_string(),
            statement.to_string(),
            "ALTER TABLE change_log ENABLE TRIGGER change_log_no_update_or_delete".to_string(),
        ],
    };
    for s in wrapped {
        sql(db, &s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn verify(db: &TestDb) -> (i32, Value) {
    let (code, out, err) = db.run(None, &["changes", "verify"]);
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|_| json!({ "stderr": err })),
    )
}

fn the_history_is_append_only_and_tampering_is_found(db: &TestDb) {
    let customer = db
        .id(Some(T0), &["customer", "create", "--name", "Acme"])
        .to_string();
    for cents in ["100", "200", "300", "400"] {
        db.ok(
            Some(T0),
            &[
                "customer",
                "set-discount",
                &customer,
                "--monthly-discounted-price-cents",
                cents,
                "--annual-discounted-price-cents",
                "1000",
                "--required-plan-tier",
                "cloud_standard",
            ],
        );
    }
    assert_eq!(verify(db).0, 0);
    // A write whose change cannot be recorded does not happen: the change is part of its
    // transaction.
    sql(db, "ALTER TABLE change_log RENAME TO change_log_away").unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = db.run(Some(T0), &["customer", "create", "--name", "Unrecorded"]);
    assert_ne!(code, 0, "{err}");
    sql(db, "ALTER TABLE change_log_away RENAME TO change_log").unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        db.run(None, &["customer", "show", "2"]).0,
        0,
        "the customer was rolled back"
    );
    assert_eq!(verify(db).0, 0);
    // The triggers refuse UPDATE and DELETE, whoever asks.
    let update = sql(db, "UPDATE change_log SET reason = 'forged' WHERE id = 2");
    assert!(
        update.as_ref().is_err_and(|e| e.contains("append-only")),
        "{update:?}"
    );
    let delete = sql(db, "DELETE FROM change_log WHERE id = 2");
    assert!(
        delete.as_ref().is_err_and(|e| e.contains("append-only")),
        "{delete:?}"
    );

    // An altered row is named.
    behind_the_triggers(db, "UPDATE change_log SET reason = 'forged' WHERE id = 3");
    let (code, v) = verify(db);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["first_break"], json!({ "problem": "altered", "id": 3 }));
    assert_eq!(v["rows"], 2);
    let text = db
        .command()
        .args(["changes", "verify"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.status.code(), Some(3));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("change 3 was altered"), "{text}");

    // Put back, the chain holds again.
    behind_the_triggers(db, "UPDATE change_log SET reason = NULL WHERE id = 3");
    assert_eq!(verify(db).0, 0);
    // A rewritten link to the row before (not in the hash; SQLite reads a customer's changes
    // by it) is named.
    behind_the_triggers(db, "UPDATE change_log SET prev_id = 1 WHERE id = 3");
    let (code, v) = verify(db);
    assert_eq!(code, 3, "{v}");
    assert_eq!(
        v["first_break"],
        json!({ "problem": "unlinked", "id": 3, "customer_id": 1, "after_id": 2 })
    );
    behind_the_triggers(db, "UPDATE change_log SET prev_id = 2 WHERE id = 3");
    assert_eq!(verify(db).0, 0);
    // A removed row is named.
    behind_the_triggers(db, "DELETE FROM change_log WHERE id = 2");
    let (code, v) = verify(db);
    assert_eq!(code, 3);
    assert_eq!(
        v["first_break"],
        json!({ "problem": "unlinked", "id": 3, "customer_id": 1, "after_id": 1 })
    );
    // The newest rows removed: the chain ends before the head.
    behind_the_triggers(db, "DELETE FROM change_log WHERE id >= 2");
    let (code, v) = verify(db);
    assert_eq!(code, 3);
    assert_eq!(
        v["first_break"],
        json!({ "problem": "truncated", "customer_id": 1, "last_id": 1, "head_id": 5 })
    );
    // A customer's head is on its row: reset, its chain's rows are found without a head.
    sql(
        db,
        "UPDATE customer SET change_last_id = 0, \
         change_hash = '0000000000000000000000000000000000000000000000000000000000000000'",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, v) = verify(db);
    assert_eq!(code, 3);
    assert_eq!(
        v["first_break"],
        json!({ "problem": "truncated", "customer_id": 1, "last_id": 1, "head_id": 0 })
    );
    let text = db
        .command()
        .args(["changes", "verify"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("the head of customer 1's chain was removed or reset"),
        "{text}"
    );
}

/// The seat report hands the history the states it read and wrote instead of the history
/// reading them around it: its change must be the one the reads would give. Each report runs
/// twice on the same state: first through the reading door in a transaction rolled back, then
/// for real; within a cycle, across a renewal, at a trial's end, and when the plan ends. The
/// customer's seat count, which the append writes with the chain's head, is the one
/// `ops::report_seats` writes, and the chains stay intact.
fn the_seat_reports_states_are_the_ones_the_history_reads(db: &TestDb) {
    use plan_invoicer::admin::history::{self, Subject};
    use plan_invoicer::admin::{self, Output, PlanCmd};
    use plan_invoicer::db::changes::{self as rows, ChangeFilter, ChangeRow};
    use plan_invoicer::db::repo;
    use plan_invoicer::domain::change::Author;
    use plan_invoicer::domain::ScheduleChange;
    use plan_invoicer::error::AppError;
    use plan_invoicer::ops::{self, CustomerInput, PlanInput};

    use crate::common::library::{base_plan, connect};

    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_utc()
    };
    let t0 = at("2012-01-02T00:00:00Z");
    let mut c = connect(db);
    let author = Author::system("test");
    let newest = |c: &mut plan_invoicer::db::Conn| -> ChangeRow {
        let filter = ChangeFilter {
            limit: 1000,
            ..ChangeFilter::default()
        };
        let mut all = rows::list(c, &filter).unwrap_or_else(|e| panic!("{e}"));
        all.pop().unwrap_or_else(|| panic!("no change"))
    };
    let mut plans = vec![];
    for (name, trial) in [("in cycle", None), ("trial", Some(20))] {
        let input = CustomerInput {
            name: name.into(),
            ..CustomerInput::default()
        };
        let customer = ops::create_customer(&mut c, &input, t0).unwrap_or_else(|e| panic!("{e}"));
        let plan = PlanInput {
            customer_id: customer,
            licenses: 5,
            automanage_licenses: true,
            free_trial_days: trial,
            ..base_plan()
        };
        plans.push(ops::create_plan(&mut c, &plan, t0).unwrap_or_else(|e| panic!("{e}")));
    }
    let (monthly, trial) = (plans[0], plans[1]);
    let reports = [
        (monthly, 9, "2012-01-10T00:00:00Z"),
        (monthly, 7, "2012-01-20T00:00:00Z"),
        (trial, 12, "2012-01-15T00:00:00Z"),
        // The trial ended on the 22nd: the report crosses it.
        (trial, 14, "2012-02-01T00:00:00Z"),
        // A renewal on 2 February.
        (monthly, 11, "2012-02-05T00:00:00Z"),
        (monthly, 4, "2012-02-06T00:00:00Z"),
    ];
    let seats_of = |c: &mut plan_invoicer::db::Conn, plan: i64| {
        let customer = repo::get_plan(c, plan)
            .ok()
            .flatten()
            .map_or(0, |r| r.plan.customer_id);
        repo::get_customer(c, customer)
            .ok()
            .flatten()
            .map(|cust| cust.seat_count)
    };
    let check = |c: &mut plan_invoicer::db::Conn, id: i64, count: i64, now: &str| {
        let now = at(now);
        // The reading door, rolled back.
        let mut read = None;
        let mut read_seats = None;
        let rolled_back: Result<(), AppError> = c.transaction(|c| {
            history::recorded(c, &author, now, ("plan.seats", Subject::Plan(id)), |c| {
                ops::report_seats(c, id, count, now)?;
                Ok(Output {
                    json: json!({}),
                    text: String::new(),
                    exit_code: 0,
                })
            })?;
            read = Some(newest(c));
            read_seats = seats_of(c, id);
            Err(AppError::Conflict(plan_invoicer::domain::Refusal::new(
                "roll back",
            )))
        });
        assert!(rolled_back.is_err());
        let read = read.unwrap_or_else(|| panic!("no change read"));
        admin::plan_cmd(c, PlanCmd::Seats { id, count }, now, &author)
            .unwrap_or_else(|e| panic!("{e}"));
        let handed = newest(c);
        assert_ne!(read.before, read.after, "the report moved something");
        for (what, r, h) in [
            ("before", &read.before, &handed.before),
            ("after", &read.after, &handed.after),
            ("objects", &read.objects, &handed.objects),
        ] {
            assert_eq!(r, h, "plan {id} at {now}: {what}");
        }
        assert_eq!(
            (read.customer_id, read.plan_id, read.new_plan_id),
            (handed.customer_id, handed.plan_id, handed.new_plan_id)
        );
        let count = i32::try_from(count).ok();
        assert_eq!(
            read_seats,
            Some(count),
            "plan {id} at {now}: the seat count"
        );
        assert_eq!(
            seats_of(c, id),
            read_seats,
            "plan {id} at {now}: the seat count"
        );
        let verified = rows::verify(c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.first_break, None, "plan {id} at {now}");
    };
    for (id, count, now) in reports {
        check(&mut c, id, count, now);
    }
    // A plan that ends at its cycle's end: the report after it writes no entry.
    admin::plan_cmd(
        &mut c,
        PlanCmd::Schedule {
            id: monthly,
            change: ScheduleChange::DowngradeAtEndOfCycle,
        },
        at("2012-02-07T00:00:00Z"),
        &author,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    check(&mut c, monthly, 6, "2012-03-05T00:00:00Z");
}

/// A seat count handed to the append of a change of no customer (chain 0, which has no
/// customer's row to set it on) is refused, not dropped: nothing is written.
fn a_seat_count_needs_the_changes_customer(db: &TestDb) {
    use plan_invoicer::db::changes::{self as rows, WithHead};
    use plan_invoicer::db::DbError;
    use plan_invoicer::domain::change::{Author, Change};

    use crate::common::library::connect;

    let mut c = connect(db);
    let at = chrono::DateTime::parse_from_rfc3339(T0)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_utc();
    let change = Change {
        at,
        operation: "test.seats".into(),
        customer_id: None,
        plan_id: None,
        new_plan_id: None,
        invoice_id: None,
        objects: json!({}),
        before: json!({}),
        after: json!({}),
    };
    let with_head = WithHead {
        seat_count: Some(9),
    };
    let refused =
        c.transaction(|c| rows::record_with_head(c, &Author::system("test"), &change, with_head));
    match refused {
        Err(DbError::BadRow(m)) => assert!(m.contains("no customer"), "{m}"),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(changes(db, &[]).len(), 0);
    // Without the count it is an ordinary change of chain 0.
    c.transaction(|c| rows::record(c, &Author::system("test"), &change))
        .unwrap_or_else(|e: DbError| panic!("{e}"));
    assert_eq!(changes(db, &[]).len(), 1);
}

/// A customer's changes, as `changes list --customer` and `--plan` give them a page at a time,
/// `show`'s last change and the console's newest, are exactly that customer's rows of the whole
/// history, whatever was written between them (SQLite walks the customer's chain by its links;
/// PostgreSQL reads an index).
fn a_customers_changes_are_its_rows_of_the_history(db: &TestDb) {
    use plan_invoicer::db::changes::newest_of_customer;

    use crate::common::library::connect;

    let ids = |rows: &[Value]| -> Vec<i64> {
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap_or_default())
            .collect()
    };
    let customers: Vec<String> = ["Acme", "Globex", "Quiet"]
        .iter()
        .map(|name| {
            db.id(Some(T0), &["customer", "create", "--name", name])
                .to_string()
        })
        .collect();
    let plan = db
        .id(
            Some(T0),
            &[
                "plan",
                "create",
                "--customer",
                &customers[1],
                "--tier",
                "cloud_standard",
                "--schedule",
                "monthly",
                "--licenses",
                "5",
                "--automanage-licenses",
            ],
        )
        .to_string();
    for round in 0..4 {
        for customer in &customers[..2] {
            db.ok(
                Some(T0),
                &[
                    "customer",
                    "set-exempt",
                    customer,
                    &(round % 2 == 0).to_string(),
                ],
            );
        }
        db.ok(
            Some(T0),
            &[
                "api-token",
                "create",
                "--name",
                &format!("t{round}"),
                "--scope",
                "read",
            ],
        );
        db.ok(
            Some(T0),
            &["plan", "seats", &plan, "--count", &(6 + round).to_string()],
        );
    }
    let all = changes(db, &["--limit", "1000"]);
    let mut conn = connect(db);
    for customer in &customers {
        let id: i64 = customer.parse().unwrap_or_default();
        let expected: Vec<i64> = ids(&all)
            .into_iter()
            .zip(&all)
            .filter(|(_, r)| r["customer_id"].as_i64() == Some(id))
            .map(|(n, _)| n)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(
            ids(&changes(db, &["--customer", customer, "--limit", "1000"])),
            expected
        );
        // Pages of two, each starting after the last: the same rows, once each.
        let mut paged = vec![];
        loop {
            let mut args = vec!["--customer", customer, "--limit", "2"];
            let after = paged.last().map(i64::to_string);
            if let Some(after) = &after {
                args.extend(["--starting-after", after.as_str()]);
            }
            let page = ids(&changes(db, &args));
            if page.is_empty() {
                break;
            }
            paged.extend(page);
        }
        assert_eq!(paged, expected, "customer {customer}");
        // Filters within the walk.
        let since_third: Vec<i64> = expected
            .iter()
            .copied()
            .filter(|n| *n > expected[0])
            .collect();
        let after_first = expected[0].to_string();
        assert_eq!(
            ids(&changes(
                db,
                &["--customer", customer, "--starting-after", &after_first]
            )),
            since_third
        );
        let last = db.ok(None, &["customer", "show", customer]);
        assert_eq!(
            last["last_change"]["id"].as_i64(),
            expected.last().copied(),
            "{last}"
        );
        let newest = newest_of_customer(&mut conn, id, 3).unwrap_or_else(|e| panic!("{e}"));
        let newest: Vec<i64> = newest.iter().map(|r| r.id).collect();
        let want: Vec<i64> = expected.iter().rev().take(3).copied().collect();
        assert_eq!(newest, want);
    }
    let plan_id: i64 = plan.parse().unwrap_or_default();
    let of_plan: Vec<i64> = all
        .iter()
        .filter(|r| {
            r["plan_id"].as_i64() == Some(plan_id) || r["new_plan_id"].as_i64() == Some(plan_id)
        })
        .map(|r| r["id"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(of_plan.len(), 5, "created and four seat reports");
    assert_eq!(
        ids(&changes(db, &["--plan", &plan, "--limit", "1000"])),
        of_plan
    );
    let last = db.ok(None, &["plan", "show", &plan]);
    assert_eq!(
        last["last_change"]["id"].as_i64(),
        of_plan.last().copied(),
        "{last}"
    );
    // A customer that does not exist has no changes.
    assert!(changes(db, &["--customer", "999"]).is_empty());
}

/// `bench-changes` seeds its customers and their chains, then lists each customer's and
/// verifies the whole (its seeding once appended to chains whose customers did not exist).
fn the_history_benchmark_runs(db: &TestDb) {
    let out = db
        .command()
        .args([
            "--json",
            "bench-changes",
            "--customers",
            "30",
            "--months",
            "2",
        ])
        .args(["--empty-database-url", &db.url])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(v["rows"], 90, "{v}");
    assert_eq!(v["verified_rows"], 90, "{v}");
    assert_eq!(v["list_queries"], 1000, "{v}");
    assert_eq!(changes(db, &["--customer", "30"]).len(), 3);
}

on_both_backends!(
    the_history_benchmark_runs,
    cli_writes_record_their_actor_and_reason,
    the_history_is_append_only_and_tampering_is_found,
    a_customers_changes_are_its_rows_of_the_history,
    the_seat_reports_states_are_the_ones_the_history_reads,
    a_seat_count_needs_the_changes_customer
);

/// The API records the token, the reason and the end user its headers name; a replayed
/// idempotent write records one change; a read token reads the history; bad headers are
/// refused with nothing written.
#[test]
fn api_writes_record_token_reason_and_on_behalf_of() {
    for db in [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter_map(TestDb::new)
    {
        let api = Api::start(&db, true);
        let customer = api.ok("/v1/customers", None, json!({ "name": "Acme" }))["id"].clone();
        let plan = api.ok(
            "/v1/plans",
            Some(T0),
            json!({ "customer": customer, "tier": "cloud_standard", "schedule": "monthly",
                    "licenses": 10, "automanage_licenses": true }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let auth = format!("Bearer {}", api.write);
        let seats = |headers: &[(&str, &str)], count: i64| {
            let mut h = vec![
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
                ("Plan-Invoicer-Now", "2012-01-10T00:00:00Z"),
            ];
            h.extend_from_slice(headers);
            request(
                api.port,
                "POST",
                &format!("/v1/plans/{plan}/seats"),
                &h,
                json!({ "count": count }).to_string().as_bytes(),
            )
        };
        let said = [
            ("Plan-Invoicer-Reason", "the customer asked in chat"),
            ("Plan-Invoicer-On-Behalf-Of", "ann@acme.example"),
            ("Idempotency-Key", "seats-1"),
        ];
        assert_eq!(seats(&said, 12).status, 200);
        assert_eq!(seats(&said, 12).status, 200, "the replay");
        for bad in [
            ("Plan-Invoicer-Reason", "tab\there"),
            ("Plan-Invoicer-Reason", "   "),
            ("Plan-Invoicer-On-Behalf-Of", &"x".repeat(201)),
        ] {
            let r = seats(&[bad], 13);
            assert_eq!(r.status, 400, "{bad:?}: {r:?}");
            assert_eq!(r.body["error"]["param"], bad.0.to_lowercase(), "{r:?}");
        }

        let page = api.get(&format!("/v1/changes?plan={plan}"));
        assert_eq!(page.status, 200, "a read token reads the history: {page:?}");
        let data = page.body["data"].as_array().cloned().unwrap_or_default();
        let ops: Vec<&str> = data
            .iter()
            .filter_map(|c| c["operation"].as_str())
            .collect();
        assert_eq!(
            ops,
            ["plan.create", "plan.seats"],
            "one change for the replayed key"
        );
        let change = &data[1];
        assert!(
            change["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("api:host-")),
            "{change}"
        );
        assert_eq!(change["reason"], "the customer asked in chat");
        assert_eq!(change["on_behalf_of"], "ann@acme.example");
        assert_eq!(change["idempotency_key"], "seats-1");
        assert_eq!(change["after"]["licenses"], 12);
        // The same history through the CLI.
        let cli = db.ok(None, &["changes", "list", "--plan", &plan.to_string()]);
        assert_eq!(Value::Array(data.clone()), cli);
        // The API's page conventions, and bounds at the door.
        let one = api.get(&format!("/v1/changes?plan={plan}&limit=1"));
        assert_eq!(one.body["has_more"], true);
        let rest = api.get(&format!(
            "/v1/changes?plan={plan}&starting_after={}",
            one.body["data"][0]["id"]
        ));
        assert_eq!(rest.body["data"].as_array().map(Vec::len), Some(1));
        for (q, param) in [
            ("limit=0", "limit"),
            ("since=yesterday", "since"),
            ("until=9999-12-31T00:00:00Z", "until"),
            ("customer=-1", "customer"),
            ("actor=%01", "actor"),
        ] {
            let r = api.get(&format!("/v1/changes?{q}"));
            assert_eq!(r.status, 400, "{q}: {r:?}");
            assert_eq!(r.body["error"]["param"], param, "{q}: {r:?}");
        }
    }
}

/// Writers that append to one customer's chain without holding its row (as two plans of one
/// customer written at once do) race for the head: on PostgreSQL the loser of a race reads the
/// head again and appends after the winner; the chain stays one line, every change in it.
#[test]
fn racing_appends_to_one_chain_stay_one_chain() {
    use plan_invoicer::db::changes;
    use plan_invoicer::db::DbError;
    use plan_invoicer::domain::change::{Author, Change};

    use crate::common::library::connect;

    const WRITERS: usize = 4;
    const EACH: usize = 40;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        let customer = db.id(Some(T0), &["customer", "create", "--name", "Raced"]);
        let at = chrono::DateTime::parse_from_rfc3339(T0)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_utc();
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let db = &db;
                s.spawn(move || {
                    let mut c = connect(db);
                    for i in 0..EACH {
                        let change = Change {
                            at,
                            operation: "test.race".into(),
                            customer_id: Some(customer),
                            plan_id: None,
                            new_plan_id: None,
                            invoice_id: None,
                            objects: json!({ "customer": customer }),
                            before: json!({}),
                            after: json!({ "writer": w, "i": i }),
                        };
                        // SQLite: the write lock first, as every writer takes it (by
                        // writing) before it appends; PostgreSQL: nothing held.
                        c.transaction(|c| {
                            changes::lock_for_write(c)?;
                            changes::record(c, &Author::system("test"), &change)
                        })
                        .unwrap_or_else(|e: DbError| panic!("{e}"));
                    }
                });
            }
        });
        let verified = db.ok(None, &["changes", "verify"]);
        assert!(verified["first_break"].is_null(), "{verified}");
        assert_eq!(verified["rows"], json!(1 + WRITERS * EACH), "{verified}");
        assert_eq!(verified["chains"], json!(1), "{verified}");
    }
}
