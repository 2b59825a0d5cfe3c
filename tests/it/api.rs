//! The HTTP API through real HTTP, on both backends: `serve --api-addr` against the Stripe
//! emulator, driven as a host application would (curl-like requests, bearer tokens), compared
//! with the CLI running the same commands.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::http::{request, Api};
use crate::common::{Backend, TestDb};
use serde_json::{json, Value};

const T0: &str = "2012-01-02T03:04:05Z";

fn backends() -> Vec<TestDb> {
    [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter_map(TestDb::new)
        .collect()
}

/// A customer and a monthly automatic plan of 10 licenses at T0, through the API.
fn customer_and_plan(api: &Api) -> (i64, i64) {
    let customer = api.ok("/v1/customers", None, json!({ "name": "Acme" }))["id"]
        .as_i64()
        .unwrap_or_default();
    let plan = api.ok(
        "/v1/plans",
        Some(T0),
        json!({ "customer": customer, "tier": "cloud_standard", "schedule": "monthly",
                "licenses": 10, "automanage_licenses": true }),
    )["id"]
        .as_i64()
        .unwrap_or_default();
    (customer, plan)
}

/// Every resource answers as the CLI does, and the preview read through the API is the invoice
/// the next pass sends.
#[test]
fn resources_answer_as_the_cli_and_preview_is_the_next_invoice() {
    for db in backends() {
        let api = Api::start(&db, true);
        let (customer, plan) = customer_and_plan(&api);
        let seats = api.ok(
            &format!("/v1/plans/{plan}/seats"),
            Some("2012-01-15T00:00:00Z"),
            json!({ "count": 14 }),
        );
        assert_eq!(seats["ledger_entry"]["licenses"], 14);
        // Reads equal the CLI's --json output for the same command.
        for (path, args) in [
            (format!("/v1/plans/{plan}"), vec!["plan", "show"]),
            (format!("/v1/plans/{plan}/ledger"), vec!["plan", "ledger"]),
            (format!("/v1/plans/{plan}/events"), vec!["plan", "events"]),
            (
                format!("/v1/customers/{customer}"),
                vec!["customer", "show"],
            ),
        ] {
            let mut args = args.clone();
            let id = if path.starts_with("/v1/customers") {
                customer.to_string()
            } else {
                plan.to_string()
            };
            args.push(&id);
            let r = api.get(&path);
            assert_eq!(r.status, 200, "{path}: {r:?}");
            assert_eq!(r.body, db.ok(None, &args), "{path}");
        }
        let listed = api.get(&format!("/v1/plans?customer={customer}"));
        assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
        // Offers: create and accept.
        let offer = api.ok(
            "/v1/offers",
            None,
            json!({ "customer": customer, "tier": "cloud_plus", "fixed_price_cents": 100000 }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let accepted = api.post(
            &format!("/v1/offers/{offer}/accept"),
            Some("2012-01-20T00:00:00Z"),
            json!({ "schedule": "annual" }),
        );
        // The customer has a live plan already: the CLI's guard answers, as a 400.
        assert_eq!(accepted.status, 400, "{accepted:?}");
        // Ends at the end of the cycle: the pass at Feb 2 bills the added seats and ends the
        // plan, so that the serve started after it has no catch-up pass to run.
        let scheduled = api.ok(
            &format!("/v1/plans/{plan}/schedule"),
            Some("2012-01-20T00:00:00Z"),
            json!({ "change": "downgrade_at_end_of_cycle" }),
        );
        assert_eq!(scheduled["status"], "downgrade_at_end_of_cycle");
        let preview = api.get(&format!("/v1/plans/{plan}/preview"));
        assert_eq!(preview.status, 200, "{preview:?}");
        assert_eq!(preview.body["at"], "2012-02-02T03:04:05Z");
        assert_eq!(preview.body["status_after"], "ended", "{preview:?}");
        let status = api.get("/v1/status");
        assert_eq!(status.status, 200);
        assert!(status.body["due"].is_array(), "{status:?}");
        drop(api);

        let report = db.pass("2012-02-02T03:04:05Z");
        assert_eq!(report["invoices_sent"], 1, "{report}");
        let invoices = db.invoices();
        assert_eq!(invoices.len(), 1);
        assert_eq!(
            common::lines(&invoices[0]),
            common::lines(&preview.body["invoices"][0]),
            "the preview is the invoice the pass sent"
        );
        let api = Api::start(&db, true);
        let page = api.get(&format!("/v1/invoices?customer={customer}&status=sent"));
        assert_eq!(page.status, 200, "{page:?}");
        assert_eq!(page.body["data"][0]["id"], invoices[0]["id"]);
        assert_eq!(page.body["has_more"], false);
        let none = api.get("/v1/invoices?status=pending");
        assert_eq!(none.body["data"], json!([]));
    }
}

/// Every guard and every error class: 401, 403, 400 with the CLI's message and the parameter,
/// 404, 405, 413, 415, unknown fields refused, time travel refused unless allowed — and
/// nothing written by a refused request.
#[test]
fn errors_are_typed_and_refused_requests_write_nothing() {
    for db in backends() {
        let api = Api::start(&db, false);
        let no_token = request(api.port, "GET", "/v1/status", &[], b"");
        assert_eq!(no_token.status, 401);
        assert_eq!(no_token.body["error"]["type"], "authentication_error");
        for bad in [
            "Bearer nope",
            "Bearer pit_1_00",
            "Basic abc",
            "Bearer pit_x_y",
        ] {
            let r = request(
                api.port,
                "GET",
                "/v1/status",
                &[("Authorization", bad)],
                b"",
            );
            assert_eq!(r.status, 401, "{bad}");
        }
        // The same token with its last hex digit changed.
        let last = if api.write.ends_with('0') { "1" } else { "0" };
        let wrong_secret = format!("{}{last}", &api.write[..api.write.len() - 1]);
        assert_eq!(
            api.call("GET", "/v1/status", &wrong_secret, None, &Value::Null)
                .status,
            401
        );
        let forbidden = api.call(
            "POST",
            "/v1/customers",
            &api.read,
            None,
            &json!({"name": "x"}),
        );
        assert_eq!(forbidden.status, 403);
        assert_eq!(forbidden.body["error"]["type"], "permission_error");

        let customer = api.ok("/v1/customers", None, json!({ "name": "Acme" }))["id"]
            .as_i64()
            .unwrap_or_default();
        // Time travel is off: the header is refused.
        let travel = api.post(
            "/v1/plans",
            Some(T0),
            json!({ "customer": customer, "tier": "cloud_standard", "schedule": "monthly", "licenses": 10 }),
        );
        assert_eq!(travel.status, 400, "{travel:?}");
        let plan = api.ok(
            "/v1/plans",
            None,
            json!({ "customer": customer, "tier": "cloud_standard", "schedule": "monthly",
                    "licenses": 10, "automanage_licenses": true }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let ledger_before = api.get(&format!("/v1/plans/{plan}/ledger")).body;

        // The CLI's guard and message, as a 400 naming the parameter.
        let negative = api.post(
            &format!("/v1/plans/{plan}/seats"),
            None,
            json!({ "count": -1 }),
        );
        assert_eq!(negative.status, 400);
        assert_eq!(negative.body["error"]["param"], "count");
        // One refusal, its field spelled by each surface: `--count` on the command line,
        // `count` over HTTP (as `param` and in the message).
        let cli = db.refused(None, &["plan", "seats", &plan.to_string(), "--count", "-1"]);
        assert_eq!(cli, "error: --count must not be negative (got -1)");
        assert_eq!(
            negative.body["error"]["message"],
            "count must not be negative (got -1)"
        );
        // A refusal about a field named in the middle of a CLI sentence ("after --now") used
        // to come back with the wrong param; it names the field it refuses.
        let past = api.post(
            &format!("/v1/plans/{plan}/set_end_date"),
            None,
            json!({ "date": "2001-01-01T00:00:00Z" }),
        );
        assert_eq!(
            (past.status, past.body["error"]["param"].clone()),
            (400, json!("date")),
            "{:?}",
            past.body
        );
        assert!(
            !past.body["error"]["message"]
                .as_str()
                .unwrap_or("--")
                .contains("--"),
            "{:?}",
            past.body
        );
        let cli = db.refused(
            None,
            &[
                "plan",
                "set-end-date",
                &plan.to_string(),
                "--date",
                "2001-01-01T00:00:00Z",
            ],
        );
        assert!(cli.starts_with("error: --date must be"), "{cli}");
        let unknown = api.post(
            &format!("/v1/plans/{plan}/seats"),
            None,
            json!({ "count": 3, "cont": 1 }),
        );
        assert_eq!(
            (unknown.status, unknown.body["error"]["param"].clone()),
            (400, json!("cont"))
        );
        let missing = api.post(&format!("/v1/plans/{plan}/seats"), None, json!({}));
        assert_eq!(
            (missing.status, missing.body["error"]["param"].clone()),
            (400, json!("count"))
        );
        let typed = api.post(
            &format!("/v1/plans/{plan}/seats"),
            None,
            json!({ "count": "3" }),
        );
        assert_eq!(typed.status, 400);
        let auth = format!("Bearer {}", api.write);
        let not_json = request(
            api.port,
            "POST",
            &format!("/v1/plans/{plan}/seats"),
            &[("Authorization", &auth), ("Content-Type", "text/plain")],
            b"count=3",
        );
        assert_eq!(not_json.status, 415);
        let broken = request(
            api.port,
            "POST",
            &format!("/v1/plans/{plan}/seats"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            b"{\"count\": ",
        );
        assert_eq!(broken.status, 400);
        let big = format!("{{\"name\": \"{}\"}}", "a".repeat(70_000));
        let too_large = request(
            api.port,
            "POST",
            "/v1/customers",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            big.as_bytes(),
        );
        assert_eq!(too_large.status, 413);
        assert_eq!(api.get("/v1/plans/999999").status, 404);
        assert_eq!(api.get("/v1/plans/abc").status, 404);
        assert_eq!(api.get("/v1/customers/999999").status, 404);
        assert_eq!(
            api.post(
                "/v1/offers/999999/accept",
                None,
                json!({"schedule": "annual"})
            )
            .status,
            404
        );
        assert_eq!(
            api.post(&format!("/v1/plans/{plan}/show"), None, json!({}))
                .status,
            404
        );
        assert_eq!(api.get("/v1/nothing").status, 404);
        assert_eq!(
            api.call("DELETE", "/v1/plans", &api.write, None, &Value::Null)
                .status,
            405
        );
        assert_eq!(api.get("/v1/invoices?limit=1000").status, 400);
        assert_eq!(api.get("/v1/invoices?color=red").status, 400);
        // Every error has the one shape.
        for r in [
            &negative, &unknown, &not_json, &too_large, &forbidden, &no_token,
        ] {
            assert!(r.body["error"]["type"].is_string(), "{r:?}");
            assert!(r.body["error"]["message"].is_string(), "{r:?}");
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/json")
            );
        }
        assert_eq!(
            api.get(&format!("/v1/plans/{plan}/ledger")).body,
            ledger_before
        );

        // Revocation takes effect on the next request.
        let name = db.ok(None, &["api-token", "list"])[0]["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        assert_eq!(api.get("/v1/status").status, 200);
        db.ok(None, &["api-token", "revoke", &name]);
        assert_eq!(
            api.post("/v1/customers", None, json!({"name": "y"})).status,
            401
        );
        // The request log names the token and never shows its secret.
        let log = std::fs::read_to_string(&api.log).unwrap_or_default();
        assert!(log.contains("api request"), "{log}");
        assert!(
            log.contains(&format!("token=\"{name}\"")) || log.contains(&format!("token={name}")),
            "{log}"
        );
        for secret in [&api.write, &api.read] {
            let tail = secret.rsplit('_').next().unwrap_or_default();
            assert!(!log.contains(tail), "a token's secret is in the log");
        }
        drop(api);
    }
}

/// An `Idempotency-Key` replays the first response and writes once; the same key with another
/// body is refused; keys belong to the token that sent them.
#[test]
fn idempotency_keys_replay_and_never_write_twice() {
    for db in backends() {
        let api = Api::start(&db, true);
        let (_, plan) = customer_and_plan(&api);
        let path = format!("/v1/plans/{plan}/seats");
        let auth = format!("Bearer {}", api.write);
        let send = |key: &str, count: i64| {
            request(
                api.port,
                "POST",
                &path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", key),
                    ("Plan-Invoicer-Now", "2012-01-10T00:00:00Z"),
                ],
                json!({ "count": count }).to_string().as_bytes(),
            )
        };
        let first = send("seat-update-1", 13);
        assert_eq!(first.status, 200);
        assert!(!first.headers.contains_key("idempotent-replayed"));
        let again = send("seat-update-1", 13);
        assert_eq!(again.status, 200);
        assert_eq!(
            again.headers.get("idempotent-replayed").map(String::as_str),
            Some("true")
        );
        assert_eq!(again.body, first.body);
        let other = send("seat-update-1", 15);
        assert_eq!(other.status, 400);
        assert_eq!(other.body["error"]["type"], "idempotency_error");
        let ledger = api.get(&format!("/v1/plans/{plan}/ledger")).body;
        assert_eq!(
            ledger.as_array().map(Vec::len),
            Some(2),
            "one entry for the key: {ledger}"
        );
        assert_eq!(ledger[1]["licenses"], 13);
        // A refused request keeps no response: a corrected retry with the same key runs.
        let refused = send("seat-update-2", -5);
        assert_eq!(refused.status, 400);
        let fixed = send("seat-update-2", 16);
        assert_eq!(fixed.status, 200);
        assert!(!fixed.headers.contains_key("idempotent-replayed"));
        let ledger = api.get(&format!("/v1/plans/{plan}/ledger")).body;
        assert_eq!(ledger.as_array().map(Vec::len), Some(3));
    }
}

/// The feed: every plan event in id order across plans, paged with `after` and `limit`; a
/// consumer's acknowledged cursor is kept by the server and never moves back.
#[test]
fn the_events_feed_is_ordered_and_keeps_cursors() {
    for db in backends() {
        let api = Api::start(&db, true);
        let mut plans = vec![];
        for _ in 0..3 {
            plans.push(customer_and_plan(&api).1);
        }
        for p in &plans {
            api.ok(
                &format!("/v1/plans/{p}/set_license_management"),
                Some("2012-01-05T00:00:00Z"),
                json!({ "mode": "manual" }),
            );
        }
        let mut seen = vec![];
        let mut after = 0;
        loop {
            let page = api.get(&format!("/v1/events?after={after}&limit=2"));
            assert_eq!(page.status, 200, "{page:?}");
            let data = page.body["data"].as_array().cloned().unwrap_or_default();
            assert!(data.len() <= 2);
            for e in &data {
                after = e["id"].as_i64().unwrap_or_default();
                seen.push(e.clone());
            }
            if page.body["has_more"] != true {
                break;
            }
        }
        let ids: Vec<i64> = seen.iter().filter_map(|e| e["id"].as_i64()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "in id order, each once");
        assert_eq!(
            seen.len(),
            6,
            "a start and a settings change per plan: {seen:?}"
        );
        for p in &plans {
            let kinds: Vec<&str> = seen
                .iter()
                .filter(|e| e["plan_id"] == *p)
                .filter_map(|e| e["kind"].as_str())
                .collect();
            assert_eq!(kinds, ["plan_started", "settings_changed"], "plan {p}");
        }
        // A consumer's cursor.
        let first = api.get("/v1/events?consumer=crm&limit=4").body;
        assert_eq!(first["data"].as_array().map(Vec::len), Some(4));
        let through = first["data"][3]["id"].clone();
        let acked = api.ok(
            "/v1/events/ack",
            None,
            json!({ "consumer": "crm", "through": through }),
        );
        assert_eq!(acked["acked_through"], through);
        let rest = api.get("/v1/events?consumer=crm").body;
        assert_eq!(rest["data"].as_array().map(Vec::len), Some(2));
        // An older acknowledgement does not move the cursor back.
        let back = api.ok(
            "/v1/events/ack",
            None,
            json!({ "consumer": "crm", "through": 1 }),
        );
        assert_eq!(back["acked_through"], through);
    }
}

/// Every operation of the OpenAPI document is served: none falls through to "no such
/// endpoint" or "method not allowed", none answers 500, every answer is JSON.
#[test]
fn every_documented_operation_is_routed() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let api = Api::start(&db, true);
    customer_and_plan(&api);
    let doc = request(api.port, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let ops = plan_invoicer::api::openapi::operation_list();
    assert!(ops.len() >= 26, "{}", ops.len());
    for (method, path) in ops {
        let path = path.replace("{id}", "1");
        let r = api.call(
            &method.to_uppercase(),
            &path,
            &api.write,
            Some(T0),
            &json!({}),
        );
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.starts_with("no such endpoint"),
            "{method} {path}: {r:?}"
        );
        assert!(r.status != 405 && r.status < 500, "{method} {path}: {r:?}");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "{method} {path}"
        );
        let documented = doc.body["paths"][path.replace("/1", "/{id}").as_str()][method]
            ["responses"][r.status.to_string().as_str()]
        .is_object();
        assert!(
            documented,
            "{method} {path}: status {} is documented",
            r.status
        );
    }
}

/// Seat updates per plan for [`seat_updates_during_a_pass_are_invoiced_once`]: `n` counts at
/// one-second steps after the February boundary, rising and falling.
fn seat_history(plan_index: usize, n: usize) -> Vec<(String, i64)> {
    let start = common::at("2012-02-02T03:04:05Z");
    (0..n)
        .map(|k| {
            let at = start + chrono::Duration::seconds(60 * (k as i64 + 1));
            let count = 5 + ((k * (plan_index + 3)) % 17) as i64;
            (at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), count)
        })
        .collect()
}

/// Sends every plan's history through the API, one client thread per plan.
fn send_histories(api: &Api, plans: &[i64], per_plan: usize) {
    std::thread::scope(|s| {
        for (i, plan) in plans.iter().enumerate() {
            s.spawn(move || {
                for (k, (at, count)) in seat_history(i, per_plan).into_iter().enumerate() {
                    let auth = format!("Bearer {}", api.write);
                    let key = format!("seats-{plan}-{k}");
                    let r = request(
                        api.port,
                        "POST",
                        &format!("/v1/plans/{plan}/seats"),
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                            ("Plan-Invoicer-Now", &at),
                            ("Idempotency-Key", &key),
                        ],
                        json!({ "count": count }).to_string().as_bytes(),
                    );
                    assert_eq!(r.status, 200, "plan {plan} update {k}: {r:?}");
                }
            });
        }
    });
}

/// The invoices of a database as comparable values: per plan, each invoice's date, total and
/// lines.
fn invoice_book(db: &TestDb) -> Vec<(Value, Value, Value, Vec<common::Line>)> {
    let mut book: Vec<_> = db
        .invoices()
        .iter()
        .map(|i| {
            (
                i["plan_id"].clone(),
                i["event_time"].clone(),
                i["total_cents"].clone(),
                common::lines(i),
            )
        })
        .collect();
    book.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    book
}

/// Eight clients send 2,000 seat updates through the API while a pass invoices the same plans
/// on PostgreSQL; the invoices equal those of the same history with no pass running beside it:
/// every ledger entry invoiced once, in its period.
#[test]
fn seat_updates_during_a_pass_are_invoiced_once() {
    const PLANS: usize = 8;
    const PER_PLAN: usize = 250;
    let (Some(live), Some(reference)) = (
        TestDb::new(Backend::Postgres),
        TestDb::new(Backend::Postgres),
    ) else {
        return;
    };
    let mut books = vec![];
    for (db, concurrent) in [(&reference, false), (&live, true)] {
        let api = Api::start(db, true);
        let plans: Vec<i64> = (0..PLANS).map(|_| customer_and_plan(&api).1).collect();
        let pass_at = "2012-02-02T03:04:05Z";
        if concurrent {
            std::thread::scope(|s| {
                let pass = s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(300));
                    db.ok(Some(pass_at), &["run-once"])
                });
                send_histories(&api, &plans, PER_PLAN);
                let report = pass.join().unwrap_or(Value::Null);
                assert_eq!(report["failures"], json!([]), "{report}");
            });
        } else {
            send_histories(&api, &plans, PER_PLAN);
            db.ok(Some(pass_at), &["run-once"]);
        }
        drop(api);
        let march = db.ok(Some("2012-03-02T03:04:05Z"), &["run-once"]);
        assert_eq!(march["failures"], json!([]), "{march}");
        db.assert_stripe_matches_local();
        // Eight clients and the pass wrote the history at once: one unbroken chain, one change
        // per seat update and per pass step.
        let verified = db.ok(None, &["changes", "verify"]);
        assert!(verified["first_break"].is_null(), "{verified}");
        for p in &plans {
            let seats = db.ok(
                None,
                &[
                    "changes",
                    "list",
                    "--plan",
                    &p.to_string(),
                    "--operation",
                    "plan.seats",
                    "--limit",
                    "1000",
                ],
            );
            assert_eq!(seats.as_array().map_or(0, Vec::len), PER_PLAN, "plan {p}");
        }
        // Two tokens, a customer and a plan created per plan, the seat updates, two pass steps
        // per plan.
        assert_eq!(
            verified["rows"],
            2 + PLANS * 2 + PLANS * PER_PLAN + PLANS * 2
        );
        let ledger_entries: usize = plans
            .iter()
            .map(|p| {
                db.ok(None, &["plan", "ledger", &p.to_string()])
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum();
        books.push((invoice_book(db), ledger_entries));
    }
    let (reference_book, reference_entries) = &books[0];
    let (live_book, live_entries) = &books[1];
    assert_eq!(live_entries, reference_entries, "the same ledger");
    assert_eq!(
        reference_book.len(),
        PLANS * 2,
        "a February and a March invoice per plan"
    );
    assert_eq!(
        live_book, reference_book,
        "the same invoices, line for line"
    );
}

/// While the database is unreachable the API answers 503 with Retry-After (never a 500), and
/// the same process answers again once the database is back.
#[test]
fn database_away_is_503_then_recovers() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let api = Api::start(&db, true);
    let (_, plan) = customer_and_plan(&api);
    assert_eq!(api.get(&format!("/v1/plans/{plan}")).status, 200);
    let name = db.url.rsplit('/').next().unwrap_or_default().to_string();
    let admin = common::pg_admin;
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ));
    let mut statuses = vec![];
    for k in 0..6 {
        let r = if k % 2 == 0 {
            api.get(&format!("/v1/plans/{plan}"))
        } else {
            api.post(
                &format!("/v1/plans/{plan}/seats"),
                Some("2012-01-20T00:00:00Z"),
                json!({ "count": 11 }),
            )
        };
        if r.status == 503 {
            assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("5"));
            assert_eq!(r.body["error"]["type"], "service_unavailable");
        }
        statuses.push(r.status);
    }
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let start = Instant::now();
    while api.get(&format!("/v1/plans/{plan}")).status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the API recovers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = api.post(
        &format!("/v1/plans/{plan}/seats"),
        Some("2012-01-20T00:00:00Z"),
        json!({ "count": 11 }),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// The remaining actions of the plan and customer resources, each through HTTP with a valid
/// body, answered as the CLI answers: licenses on a manual plan, license management, the end
/// date, a successor, an upgrade, a downgrade, a discount, a usage report; and an offer accepted
/// by a customer without a plan.
#[test]
fn every_action_works_through_http() {
    for db in backends() {
        let api = Api::start(&db, true);
        let customer = api.ok("/v1/customers", None, json!({ "name": "Manual Co" }))["id"]
            .as_i64()
            .unwrap_or_default();
        let plan = api.ok(
            "/v1/plans",
            Some(T0),
            json!({ "customer": customer, "tier": "cloud_standard", "schedule": "annual", "licenses": 10 }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let at = |d: &str| format!("2012-{d}T00:00:00Z");
        let bought = api.ok(
            &format!("/v1/plans/{plan}/buy_licenses"),
            Some(&at("02-01")),
            json!({ "licenses": 15 }),
        );
        assert_eq!(bought["licenses"], 15, "{bought}");
        let renewal = api.ok(
            &format!("/v1/plans/{plan}/renewal_licenses"),
            Some(&at("02-02")),
            json!({ "licenses": 12 }),
        );
        assert_eq!(renewal["licenses_at_next_renewal"], 12, "{renewal}");
        let managed = api.ok(
            &format!("/v1/plans/{plan}/set_license_management"),
            Some(&at("02-03")),
            json!({ "mode": "automatic" }),
        );
        assert_eq!(managed["automanage_licenses"], true, "{managed}");
        let usage = api.ok(
            &format!("/v1/customers/{customer}/report_usage"),
            Some(&at("02-06")),
            json!({ "seats": 14 }),
        );
        assert_eq!(usage["seat_count"], 14, "{usage}");
        let upgraded = api.ok(
            &format!("/v1/plans/{plan}/upgrade_tier"),
            Some(&at("03-01")),
            json!({ "tier": "cloud_plus" }),
        );
        assert_eq!(upgraded["tier"], "cloud_plus", "{upgraded}");
        let new_plan = upgraded["id"].as_i64().unwrap_or_default();
        assert_eq!(
            api.get(&format!("/v1/plans/{plan}")).body["status"],
            "ended"
        );
        let ended = api.ok(
            &format!("/v1/plans/{new_plan}/set_end_date"),
            Some(&at("03-02")),
            json!({ "date": "2013-03-01T00:00:00Z" }),
        );
        assert_eq!(ended["end_date"], "2013-03-01T00:00:00Z", "{ended}");
        let successor = api.ok(
            &format!("/v1/plans/{new_plan}/schedule_successor"),
            Some(&at("03-03")),
            json!({ "fixed_price_cents": 500000 }),
        );
        assert!(successor["id"].as_i64().is_some(), "{successor}");
        let discounted = api.ok(
            &format!("/v1/customers/{customer}/set_discount"),
            Some(&at("03-04")),
            json!({ "monthly_discounted_price_cents": 1000, "annual_discounted_price_cents": 10000 }),
        );
        assert_eq!(
            discounted["annual_discounted_price_cents"], 10000,
            "{discounted}"
        );
        // The support knobs (issue 24), with the CLI's guards and the refused field named.
        let exempt = api.ok(
            &format!("/v1/customers/{customer}/set_exempt"),
            None,
            json!({ "exempt": true }),
        );
        assert_eq!(exempt["exempt_from_license_number_check"], true, "{exempt}");
        let live = api.post(
            &format!("/v1/customers/{customer}/set_minimum_licenses"),
            None,
            json!({ "count": 30 }),
        );
        assert_eq!(live.status, 400, "{live:?}");
        assert!(live.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already has a live plan")));
        let neither = api.post(
            &format!("/v1/customers/{customer}/set_required_plan_tier"),
            None,
            json!({}),
        );
        assert_eq!(neither.status, 400, "{neither:?}");
        assert_eq!(neither.body["error"]["param"], "tier");
        let enterprise = api.post(
            &format!("/v1/customers/{customer}/set_required_plan_tier"),
            None,
            json!({ "tier": "self_hosted_enterprise" }),
        );
        assert_eq!(enterprise.body["error"]["param"], "tier", "{enterprise:?}");
        // The same reads through the CLI: one source of truth.
        assert_eq!(
            api.get(&format!("/v1/plans/{new_plan}")).body,
            db.ok(None, &["plan", "show", &new_plan.to_string()])
        );
        // An offer accepted by a customer without a plan.
        let other = api.ok("/v1/customers", None, json!({ "name": "Offer Co" }))["id"]
            .as_i64()
            .unwrap_or_default();
        let offer = api.ok(
            "/v1/offers",
            None,
            json!({ "customer": other, "tier": "cloud_standard", "fixed_price_cents": 120000 }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let accepted = api.ok(
            &format!("/v1/offers/{offer}/accept"),
            Some(&at("04-01")),
            json!({ "schedule": "annual" }),
        );
        let offered_plan = accepted["plan_id"].as_i64().unwrap_or_default();
        assert_eq!(
            api.get(&format!("/v1/plans/{offered_plan}")).body["fixed_price_cents"],
            120000
        );
        let down = api.ok(
            &format!("/v1/plans/{offered_plan}/downgrade_now"),
            Some(&at("04-02")),
            json!({}),
        );
        assert_eq!(down["status"], "ended", "{down}");
    }
}

/// Issue 23's classes of input, on both backends: numbers past the bounds and past the integer
/// limits, instants outside the accepted years, control characters in text, a unique value
/// taken, a path that is not UTF-8 — each a typed refusal naming its field, nothing written, and
/// the CLI refusing the same with exit 2.
#[test]
fn hostile_inputs_are_refused_at_the_door() {
    for db in backends() {
        let api = Api::start(&db, true);
        let (customer, plan) = customer_and_plan(&api);
        let other = api.ok(
            "/v1/customers",
            None,
            json!({ "name": "Other", "external_ref": "ref-1" }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        let plan_body = |field: &str, value: Value| {
            let mut b = json!({ "customer": other, "tier": "cloud_standard",
                                "schedule": "monthly", "licenses": 10 });
            b[field] = value;
            b
        };
        let (seats, end_date, discount) = (
            format!("/v1/plans/{plan}/seats"),
            format!("/v1/plans/{plan}/set_end_date"),
            format!("/v1/customers/{customer}/set_discount"),
        );
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/v1/plans",
                plan_body("free_trial_days", json!(2147483648i64)),
                "free_trial_days",
            ),
            (
                "/v1/plans",
                plan_body("free_trial_days", json!(3651)),
                "free_trial_days",
            ),
            (
                "/v1/plans",
                plan_body("licenses", json!(i64::MAX)),
                "licenses",
            ),
            (
                "/v1/plans",
                plan_body("licenses", json!(1_000_001)),
                "licenses",
            ),
            (
                "/v1/plans",
                plan_body("licenses", json!(i64::MIN)),
                "licenses",
            ),
            (
                "/v1/plans",
                plan_body("price_per_license_cents", json!(i64::MAX)),
                "price_per_license_cents",
            ),
            (
                "/v1/plans",
                plan_body("anchor", json!("9999-12-31T23:59:59Z")),
                "anchor",
            ),
            (
                "/v1/plans",
                plan_body("anchor", json!("1969-12-31T23:59:59Z")),
                "anchor",
            ),
            (
                "/v1/plans",
                plan_body("end_date", json!("2200-01-01T00:00:00Z")),
                "end_date",
            ),
            ("/v1/customers", json!({ "name": "A\u{0}B" }), "name"),
            ("/v1/customers", json!({ "name": "\u{1b}[31mred" }), "name"),
            ("/v1/customers", json!({ "name": "  " }), "name"),
            ("/v1/customers", json!({ "name": "x".repeat(201) }), "name"),
            (
                "/v1/customers",
                json!({ "name": "A", "external_ref": "r\u{0}" }),
                "external_ref",
            ),
            (
                "/v1/customers",
                json!({ "name": "A", "email": "a\nb@c" }),
                "email",
            ),
            (
                "/v1/customers",
                json!({ "name": "A", "minimum_licenses": 2147483648i64 }),
                "minimum_licenses",
            ),
            (&seats, json!({ "count": 2147483648i64 }), "count"),
            (
                &end_date,
                json!({ "date": "+10000-01-01T00:00:00Z" }),
                "date",
            ),
            (
                &discount,
                json!({ "monthly_discounted_price_cents": i64::MAX, "annual_discounted_price_cents": 1 }),
                "monthly_discounted_price_cents",
            ),
            (
                "/v1/offers",
                json!({ "customer": other, "tier": "cloud_plus", "fixed_price_cents": i64::MAX }),
                "fixed_price_cents",
            ),
        ];
        let customers_before = api.get(&format!("/v1/customers/{other}")).body;
        for (path, body, param) in &cases {
            let r = api.post(path, Some(T0), body.clone());
            assert_eq!(r.status, 400, "{path} {body}: {r:?}");
            assert_eq!(
                r.body["error"]["type"], "invalid_request_error",
                "{path} {body}"
            );
            assert_eq!(r.body["error"]["param"], *param, "{path} {body}: {r:?}");
        }
        // Nothing was written: the customer still has no plan, no customer was added.
        assert_eq!(
            api.get(&format!("/v1/customers/{other}")).body,
            customers_before
        );
        assert_eq!(api.get("/v1/customers/3").status, 404);

        // A unique value taken is a conflict (409), naming the field.
        let taken = api.post(
            "/v1/customers",
            None,
            json!({ "name": "B", "external_ref": "ref-1" }),
        );
        assert_eq!(taken.status, 409, "{taken:?}");
        assert_eq!(taken.body["error"]["type"], "conflict_error");
        assert_eq!(taken.body["error"]["param"], "external_ref");

        // Names are trimmed (leading and trailing white space, Unicode's too); tabs inside stay.
        let trimmed = api.ok(
            "/v1/customers",
            None,
            json!({ "name": " \u{2003}Tab\there " }),
        )["id"]
            .as_i64()
            .unwrap_or_default();
        assert_eq!(
            api.get(&format!("/v1/customers/{trimmed}")).body["name"],
            "Tab\there"
        );

        // A path id that is not UTF-8, and other undecodable segments: the documented JSON shape.
        for path in [
            "/v1/plans/%FF",
            "/v1/plans/%C0%AF/ledger",
            "/v1/customers/%00",
        ] {
            let r = api.call("GET", path, &api.read, None, &Value::Null);
            assert!(r.status == 400 || r.status == 404, "{path}: {r:?}");
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/json")
            );
            assert_eq!(r.body["error"]["type"], "invalid_request_error", "{path}");
        }

        // The time-travel header and the query's instants are bounded too.
        let far = api.call(
            "GET",
            &format!("/v1/plans/{plan}/preview?at=9999-12-31T23:59:59Z"),
            &api.read,
            None,
            &Value::Null,
        );
        assert_eq!(far.status, 400, "{far:?}");
        assert_eq!(far.body["error"]["param"], "at");
        let travel = api.post(
            &format!("/v1/plans/{plan}/seats"),
            Some("9999-12-31T23:59:59Z"),
            json!({ "count": 12 }),
        );
        assert_eq!(travel.status, 400, "{travel:?}");

        // The CLI refuses the same inputs with exit 2 and one line.
        let create = format!(
            "plan create --customer {other} --tier cloud_standard --schedule monthly --licenses 10"
        );
        for line in [
            format!("{create} --free-trial-days 2147483648"),
            format!("{create} --anchor 9999-12-31T23:59:59Z"),
            "--now +10000-01-01T00:00:00Z status".to_string(),
            "backfill --from 2012-01-01T00:00:00Z --to 2012-02-01T00:00:00Z --every 9223372036854775807w".to_string(),
        ] {
            let refused = db.refused(None, &common::words(&line));
            assert!(refused.starts_with("error"), "{line}: {refused}");
        }
        let escape = db.refused(None, &["customer", "create", "--name", "A\u{1b}B"]);
        assert!(escape.contains("control characters"), "{escape}");
        let dup = db.refused(
            None,
            &common::words("customer create --name C --external-ref ref-1"),
        );
        assert!(dup.contains("--external-ref is taken"), "{dup}");
    }
}

/// A panic inside a request (a test-only hook, inside an open transaction) answers 500
/// `api_error`, is logged, and wedges nothing: the next request, the readiness probe and the
/// next pass all work, on SQLite's one connection as on PostgreSQL's pool.
#[test]
fn a_panicking_request_answers_500_and_wedges_nothing() {
    for db in backends() {
        // A pass every two seconds: the next one must run after the panic.
        let api = Api::start_with(&db, true, &[("PLAN_INVOICER_SCHEDULE", "*/2 * * * * *")]);
        for _ in 0..3 {
            let r = request(
                api.port,
                "POST",
                "/v1/customers",
                &[
                    ("Authorization", &format!("Bearer {}", api.write)),
                    ("Content-Type", "application/json"),
                    ("Plan-Invoicer-Test-Panic", "1"),
                ],
                br#"{"name": "Boom"}"#,
            );
            assert_eq!(r.status, 500, "{r:?}");
            assert_eq!(r.body["error"]["type"], "api_error");
            let after = api.post("/v1/customers", None, json!({ "name": "After" }));
            assert_eq!(after.status, 200, "the next request works: {after:?}");
        }
        assert!(
            api.get("/v1/customers/4").status == 404,
            "the panicking requests wrote nothing"
        );
        let ready = request(api.http_port, "GET", "/readyz", &[], b"");
        assert_eq!(ready.status, 200, "{ready:?}");
        let passes = |api: &Api| {
            let raw = std::process::Command::new("curl")
                .args(["-s", &format!("http://127.0.0.1:{}/metrics", api.http_port)])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            raw.lines()
                .find_map(|l| l.strip_prefix("plan_invoicer_passes_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = passes(&api);
        assert!(
            common::wait_until(Duration::from_secs(15), || passes(&api) > before),
            "a pass ran after the panic"
        );
        let log = std::fs::read_to_string(&api.log).unwrap_or_default();
        assert!(log.contains("api request panicked"), "the panic is logged");
    }
}

/// A refusal before the body was read leaves the connection usable: the body is drained (401,
/// 403, 404, 405) and the next request on the same connection is answered, or the answer says
/// `Connection: close` (413).
#[test]
fn a_refused_request_leaves_the_connection_usable_or_says_close() {
    use std::io::{BufRead, BufReader, Read, Write};
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let api = Api::start(&db, true);
    let (_, plan) = customer_and_plan(&api);
    let write = format!("Bearer {}", api.write);
    let read = format!("Bearer {}", api.read);
    let big = "x".repeat(70 * 1024);
    let cases: Vec<(String, String, String, u16)> = vec![
        (
            "/v1/customers".into(),
            "Bearer nope".into(),
            r#"{"name":"A"}"#.into(),
            401,
        ),
        (
            "/v1/customers".into(),
            read.clone(),
            r#"{"name":"A"}"#.into(),
            403,
        ),
        (
            format!("/v1/plans/{plan}/nonsense"),
            write.clone(),
            r#"{"count":1}"#.into(),
            404,
        ),
        (
            "/v1/nowhere".into(),
            write.clone(),
            r#"{"count":1}"#.into(),
            404,
        ),
        (
            "/v1/invoices".into(),
            write.clone(),
            r#"{"count":1}"#.into(),
            405,
        ),
        (
            "/v1/customers".into(),
            write.clone(),
            format!(r#"{{"name":"{big}"}}"#),
            413,
        ),
    ];
    for (path, auth, body, expected) in cases {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.port))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let first = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(first.as_bytes());
        let mut reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
        let mut status_line = String::new();
        let _ = reader.read_line(&mut status_line);
        assert!(
            status_line.contains(&expected.to_string()),
            "{path}: {status_line}"
        );
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let l = line.trim().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if l == "connection: close" {
                close = true;
            }
        }
        let mut answer = vec![0; length];
        let _ = reader.read_exact(&mut answer);
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        assert!(answer["error"]["type"].is_string(), "{path}: {answer}");
        if close {
            continue; // the client was told to open a new connection
        }
        let second =
            format!("GET /v1/plans/{plan} HTTP/1.1\r\nHost: x\r\nAuthorization: {read}\r\n\r\n");
        let sent = stream.write_all(second.as_bytes());
        let mut next = String::new();
        let _ = reader.read_line(&mut next);
        assert!(
            sent.is_ok() && next.contains("200"),
            "{path} ({expected}): the next request on the connection failed: {next:?}"
        );
    }
}

/// PostgreSQL's backends killed under a stream of API writes: every answer is a 2xx or a 503
/// with Retry-After (never a 500), and the API works again at once.
#[test]
fn terminated_backends_answer_503_never_500() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let api = Api::start(&db, true);
    let (_, plan) = customer_and_plan(&api);
    let name = db.url.rsplit('/').next().unwrap_or_default().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u16, Value)>::new()));
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, statuses, clock) = (stop.clone(), statuses.clone(), clock.clone());
            let (port, token) = (api.port, api.write.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let at = (common::at("2012-01-03T00:00:00Z") + chrono::Duration::seconds(k))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    let r = request(
                        port,
                        "POST",
                        &format!("/v1/plans/{plan}/seats"),
                        &[
                            ("Authorization", &format!("Bearer {token}")),
                            ("Content-Type", "application/json"),
                            ("Plan-Invoicer-Now", &at),
                        ],
                        format!(r#"{{"count": {}}}"#, 10 + k % 5).as_bytes(),
                    );
                    if let Ok(mut s) = statuses.lock() {
                        s.push((r.status, r.body));
                    }
                }
            })
        })
        .collect();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        common::pg_admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let statuses = statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let bad: Vec<_> = statuses
        .iter()
        .filter(|(s, body)| {
            !(*s == 200
                || *s == 503
                || (*s == 400
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("time only moves forward")))
                || *s == 409)
        })
        .collect();
    assert!(
        statuses.len() > 30,
        "a stream of writes: {}",
        statuses.len()
    );
    assert!(bad.is_empty(), "only 2xx and 503: {bad:?}");
    let r = api.post(
        &format!("/v1/plans/{plan}/seats"),
        Some("2012-01-25T00:00:00Z"),
        json!({ "count": 12 }),
    );
    assert_eq!(r.status, 200, "{r:?}");
}
