//! Stripe helpers: the emulator's runtime and start, requests to it as an operator would make
//! them, and library gateways and passes pointed at it.

use std::process::Command;
use std::sync::OnceLock;

use plan_invoicer::devtools::emulator::Emulator;
use serde_json::Value;

use super::{at, pool, TestDb};

/// The runtime that serves the tests' Stripe emulators.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A Stripe emulator on a free port. With `PLAN_INVOICER_STRIPE_RECORD` set, it appends every
/// request it receives to that file (for the conformance check in `.ci/run`).
pub fn start_emulator() -> (Emulator, String) {
    let emu = Emulator::new();
    if let Ok(path) = std::env::var("PLAN_INVOICER_STRIPE_RECORD") {
        emu.record_to(path);
    }
    let addr = runtime()
        .block_on(emu.start("127.0.0.1:0"))
        .expect("start the Stripe emulator");
    (emu, format!("http://{addr}/"))
}

/// A request to the test's Stripe emulator as an operator would make it (curl, a test key);
/// returns the JSON answer.
pub fn stripe_request(db: &TestDb, method: &str, path: &str) -> Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            method,
            "-u",
            "sk_test_operator:",
            &format!("{}v1/{path}", db.stripe_base),
        ])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn stripe_post(db: &TestDb, path: &str) -> Value {
    stripe_request(db, "POST", path)
}

/// A gateway to the test's emulator, unpaced, with quick retries.
pub fn gateway(
    db: &TestDb,
    attempts: u32,
) -> std::sync::Arc<plan_invoicer::stripe::client::StripeGateway> {
    let key = plan_invoicer::stripe::ApiKey::new("sk_test_x").expect("a key");
    let mut config = plan_invoicer::stripe::client::StripeConfig::new(key, Some(&db.stripe_base));
    config.max_attempts = attempts;
    config.limits = plan_invoicer::stripe::budget::Limits {
        per_second: 1_000_000,
        per_endpoint: 1_000_000,
        in_flight: 1024,
    };
    config.base_backoff = std::time::Duration::from_millis(2);
    std::sync::Arc::new(
        plan_invoicer::stripe::client::StripeGateway::new(config).expect("a gateway"),
    )
}

/// A pass through the library with its own pool and a quick-retrying gateway.
pub fn pass_with(
    db: &TestDb,
    now: &str,
    opts: &plan_invoicer::jobs::PassOptions,
    attempts: u32,
) -> plan_invoicer::jobs::PassReport {
    runtime()
        .block_on(plan_invoicer::jobs::run_pass(
            &pool(db),
            Some(gateway(db, attempts)),
            at(now),
            opts,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
}
