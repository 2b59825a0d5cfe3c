//! Stripe's invoice events in, end to end on both backends: the emulator pays, fails, voids and
//! marks invoices uncollectible and delivers the events signed to `serve`'s webhook endpoint,
//! which was down while the pass ran (redelivery); redelivered, reordered and foreign events;
//! refused signatures with nothing written.

use std::time::Duration;

use crate::common;
use crate::common::wait_until;

use crate::common::http::{request, Api};
use crate::common::{Backend, TestDb};
use plan_invoicer::stripe::webhook::sign;
use serde_json::{json, Value};

const SECRET: &str = "whsec_plan_invoicer_test";

/// A signed POST to the webhook endpoint.
fn deliver(api: &Api, body: &str, header: &str) -> common::http::Reply {
    request(
        api.port,
        "POST",
        "/v1/stripe/webhook",
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", header),
        ],
        body.as_bytes(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn stripe_events_recorded(db: &TestDb) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = common::connect(db);
    plan_invoicer::with_conn!(&mut conn, c => diesel::sql_query("SELECT COUNT(*) AS n FROM stripe_event")
        .get_result::<N>(c))
    .map(|r| r.n)
    .unwrap_or(-1)
}

#[test]
fn payment_events_reach_the_invoices_and_the_feed() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend) else {
            continue;
        };
        // Anchored 35 days ago by the wall clock (which `serve` runs on): invoiced now, and
        // nothing overdue when `serve` starts.
        let ago = |days: i64| {
            (chrono::Utc::now() - chrono::Duration::days(days))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        common::monthly_plans(&db, 4, &ago(35));
        // The endpoint is down while the pass runs: the finalized events wait for it.
        let port = common::http::free_port();
        db.stripe.set_webhook(
            &format!("http://127.0.0.1:{port}/v1/stripe/webhook"),
            SECRET,
        );
        db.pass(&ago(0));
        let invoices = db.invoices();
        assert_eq!(invoices.len(), 4);
        assert!(invoices.iter().all(|i| i["payment_status"].is_null()));
        let stripe_id = |k: usize| {
            invoices[k]["stripe_invoice_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let api = Api::start_on(&db, port, &[("STRIPE_WEBHOOK_SECRET", SECRET)]);
        assert!(
            wait_until(Duration::from_secs(20), || db.stripe.undelivered() == 0),
            "the finalized events are delivered once the endpoint is up"
        );
        assert!(db.stripe.pay(&stripe_id(0)));
        assert!(db.stripe.fail(&stripe_id(1)));
        assert!(db.stripe.fail(&stripe_id(1)));
        let voided = common::stripe_post(&db, &format!("invoices/{}/void", stripe_id(2)));
        assert_eq!(voided["status"], "void");
        let uncollectible = common::stripe_post(
            &db,
            &format!("invoices/{}/mark_uncollectible", stripe_id(3)),
        );
        assert_eq!(uncollectible["status"], "uncollectible");
        assert!(
            db.stripe.pay(&stripe_id(3)),
            "a late payment of an uncollectible invoice"
        );
        assert!(wait_until(Duration::from_secs(20), || db
            .stripe
            .undelivered()
            == 0));

        let by_id = |v: &Vec<Value>, k: usize| -> Value {
            v.iter()
                .find(|i| i["id"] == invoices[k]["id"])
                .cloned()
                .unwrap_or(Value::Null)
        };
        let after = db.invoices();
        let status = |k: usize| by_id(&after, k)["payment_status"].clone();
        assert_eq!(
            [status(0), status(1), status(2), status(3)],
            [json!("paid"), json!("open"), json!("void"), json!("paid")]
        );
        assert_eq!(by_id(&after, 1)["payment_attempt_count"], 2);
        assert_eq!(by_id(&after, 0)["payment_attempt_count"], 1);
        assert_eq!(
            by_id(&after, 0)["hosted_invoice_url"],
            format!("https://invoice.stripe.test/i/{}", stripe_id(0))
        );
        // The API's invoice list says the same, and filters by status.
        let page = api.get("/v1/invoices?limit=100");
        assert_eq!(page.body["data"].as_array().map(Vec::len), Some(4));
        // The feed tells the host application.
        let feed = api.get("/v1/events?limit=100").body;
        let kinds: Vec<String> = feed["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .filter(|k| k.starts_with("invoice."))
            .collect();
        for k in [
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_failed",
            "invoice.voided",
            "invoice.marked_uncollectible",
        ] {
            assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
        }
        assert_eq!(
            kinds.iter().filter(|k| *k == "invoice.finalized").count(),
            4
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| *k == "invoice.payment_failed")
                .count(),
            2
        );

        // A redelivery changes nothing; an old state arriving late does not reopen an invoice.
        let recorded = stripe_events_recorded(&db);
        let (body, _) = db.stripe.deliveries()[0].clone();
        let again = deliver(&api, &body, &sign(body.as_bytes(), SECRET, now()));
        assert_eq!(
            (again.status, again.body["outcome"].clone()),
            (200, json!("duplicate"))
        );
        let finalized_of_paid = db
            .stripe
            .events()
            .into_iter()
            .find(|e| {
                e["type"] == "invoice.finalized"
                    && e["data"]["object"]["id"] == stripe_id(0).as_str()
            })
            .unwrap_or(Value::Null);
        let mut late = finalized_of_paid.clone();
        late["id"] = json!("evt_late_finalized");
        let late = late.to_string();
        let r = deliver(&api, &late, &sign(late.as_bytes(), SECRET, now()));
        assert_eq!(
            (r.status, r.body["outcome"].clone()),
            (200, json!("unchanged"))
        );
        assert_eq!(by_id(&db.invoices(), 0)["payment_status"], "paid");
        // Another type, and an invoice that is not ours: 200, ignored.
        let other = json!({"id": "evt_other", "type": "customer.created", "created": now(), "data": {"object": {"object": "customer", "id": "cus_x"}}}).to_string();
        let r = deliver(&api, &other, &sign(other.as_bytes(), SECRET, now()));
        assert_eq!(
            (r.status, r.body["outcome"].clone()),
            (200, json!("ignored"))
        );
        let mut foreign = finalized_of_paid.clone();
        foreign["id"] = json!("evt_foreign");
        foreign["data"]["object"]["metadata"] = json!({ "plan_invoicer_invoice_id": "99999" });
        let foreign = foreign.to_string();
        let r = deliver(&api, &foreign, &sign(foreign.as_bytes(), SECRET, now()));
        assert_eq!(
            (r.status, r.body["outcome"].clone()),
            (200, json!("ignored"))
        );
        assert_eq!(stripe_events_recorded(&db), recorded + 3);

        // Refused, with nothing written: a wrong secret, a stale timestamp, a changed body, no
        // header at all.
        let fresh = json!({"id": "evt_refused", "type": "invoice.paid", "created": now(), "data": {"object": finalized_of_paid["data"]["object"].clone()}}).to_string();
        for (body, header) in [
            (fresh.clone(), sign(fresh.as_bytes(), "whsec_wrong", now())),
            (fresh.clone(), sign(fresh.as_bytes(), SECRET, now() - 301)),
            (
                fresh.replace("invoice.paid", "invoice.voided"),
                sign(fresh.as_bytes(), SECRET, now()),
            ),
        ] {
            let r = deliver(&api, &body, &header);
            assert_eq!(r.status, 400, "{r:?}");
        }
        let no_header = request(
            api.port,
            "POST",
            "/v1/stripe/webhook",
            &[("Content-Type", "application/json")],
            fresh.as_bytes(),
        );
        assert_eq!(no_header.status, 400);
        assert_eq!(stripe_events_recorded(&db), recorded + 3, "nothing written");
        // /metrics counts the webhook requests and the unpaid invoices.
        let raw = {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", api.http_port))
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        for line in [
            "plan_invoicer_stripe_webhook_events_total{type=\"invoice.paid\",outcome=\"applied\"} 2",
            "plan_invoicer_stripe_webhook_events_total{type=\"invoice.finalized\",outcome=\"duplicate\"} 1",
            "plan_invoicer_stripe_webhook_events_total{type=\"unknown\",outcome=\"rejected\"} 4",
            "plan_invoicer_unpaid_invoices 1",
        ] {
            assert!(raw.contains(line), "{line} in:\n{raw}");
        }
        // Every delivery was signed as Stripe signs; CI checks them with Stripe's own library.
        if let Ok(path) = std::env::var("PLAN_INVOICER_WEBHOOK_SAMPLES") {
            let samples: Vec<Value> = db
                .stripe
                .deliveries()
                .into_iter()
                .map(|(body, header)| json!({ "body": body, "header": header, "secret": SECRET }))
                .collect();
            let _ = std::fs::write(path, serde_json::to_string(&samples).unwrap_or_default());
        }
    }
}

/// Without a secret the endpoint is off (404), and writes nothing.
#[test]
fn the_webhook_endpoint_is_off_without_a_secret() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let api = Api::start(&db, false);
    let body = r#"{"id":"evt_1","type":"invoice.paid","created":1}"#;
    let r = deliver(&api, body, &sign(body.as_bytes(), SECRET, now()));
    assert_eq!(r.status, 404);
    assert_eq!(stripe_events_recorded(&db), 0);
}

/// Pays, fails twice, voids: the same history on any database.
fn pay_fail_void(db: &TestDb) {
    let ids: Vec<String> = db
        .invoices()
        .iter()
        .filter_map(|i| i["stripe_invoice_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(db.stripe.pay(&ids[0]));
    assert!(db.stripe.fail(&ids[1]));
    assert!(db.stripe.fail(&ids[1]));
    assert_eq!(
        common::stripe_post(db, &format!("invoices/{}/void", ids[2]))["status"],
        "void"
    );
}

/// Each invoice's payment as `invoices list` shows it.
fn payments_of(db: &TestDb) -> Vec<(Value, Value, bool)> {
    db.invoices()
        .iter()
        .map(|i| {
            (
                i["payment_status"].clone(),
                i["payment_attempt_count"].clone(),
                i["hosted_invoice_url"].is_string(),
            )
        })
        .collect()
}

/// A deployment without a webhook endpoint: `sync-payments` reads Stripe's events back and ends
/// in the same state as the webhooks; a second run applies nothing again.
#[test]
fn sync_payments_reaches_the_state_the_webhooks_would_have() {
    let ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (Some(hooked), Some(polled)) = (TestDb::new(backend), TestDb::new(backend)) else {
            continue;
        };
        // With webhooks.
        common::monthly_plans(&hooked, 3, &ago(35));
        let port = common::http::free_port();
        hooked.stripe.set_webhook(
            &format!("http://127.0.0.1:{port}/v1/stripe/webhook"),
            SECRET,
        );
        // The pass runs before `serve` (it holds SQLite's worker lock): its events wait.
        hooked.pass(&ago(0));
        let api = Api::start_on(&hooked, port, &[("STRIPE_WEBHOOK_SECRET", SECRET)]);
        pay_fail_void(&hooked);
        assert!(wait_until(Duration::from_secs(20), || hooked
            .stripe
            .undelivered()
            == 0));
        drop(api);

        // Without: the events are read back.
        common::monthly_plans(&polled, 3, &ago(35));
        polled.pass(&ago(0));
        pay_fail_void(&polled);
        assert!(payments_of(&polled).iter().all(|p| p.0.is_null()));
        let first = polled.ok(None, &["sync-payments"]);
        assert_eq!(first["events"], 7, "{first}");
        assert_eq!(first["applied"], 7, "{first}");
        assert_eq!(payments_of(&polled), payments_of(&hooked));
        assert_eq!(
            payments_of(&polled),
            vec![
                (json!("paid"), json!(1), true),
                (json!("open"), json!(2), true),
                (json!("void"), json!(0), true),
            ]
        );
        let second = polled.ok(None, &["sync-payments"]);
        assert_eq!(
            (second["applied"].clone(), second["duplicate"].clone()),
            (json!(0), json!(7)),
            "{second}"
        );
        // Each applied event is a change in the history, by its own actor; the duplicates none.
        let moved = |db: &TestDb, actor: &str| {
            db.ok(None, &["changes", "list", "--operation", "payment.status"])
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| c["actor"] == actor)
                .collect::<Vec<_>>()
        };
        assert_eq!(moved(&polled, "system:sync-payments"), vec![true; 7]);
        assert_eq!(
            moved(&hooked, "stripe:webhook")
                .iter()
                .filter(|m| **m)
                .count(),
            moved(&hooked, "stripe:webhook").len()
        );
        assert!(!moved(&hooked, "stripe:webhook").is_empty());
        // Stripe's list of events was read with the types and the cursor, as Stripe takes them.
        let reads = polled
            .stripe
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == "/v1/events")
            .count();
        assert!(reads >= 2);
    }
}

/// `serve --sync-payments-schedule` reads the events back on its own.
#[test]
fn serve_syncs_payments_on_a_schedule() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    common::monthly_plans(&db, 1, &ago(35));
    db.pass(&ago(0));
    let id = db.invoices()[0]["stripe_invoice_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(db.stripe.pay(&id));
    let _api = Api::start_with(
        &db,
        false,
        &[("PLAN_INVOICER_SYNC_PAYMENTS_SCHEDULE", "* * * * * *")],
    );
    assert!(
        wait_until(Duration::from_secs(20), || db.invoices()[0]
            ["payment_status"]
            == "paid"),
        "the scheduled sync applied the payment"
    );
}
