//! One Stripe request budget for everything a worker sends: a global rate, a rate per endpoint
//! and a cap on requests in flight, shared by all plans of a pass; split evenly across the live
//! workers of a fleet; slowed down on rate-limit 429s and sped up again while traffic is clean
//! (multiplicative decrease, additive increase); and a circuit breaker that says when Stripe
//! cannot be reached at all.
//!
//! Stripe's documented limits are 100 requests/s per account in live mode (25 in a sandbox)
//! and, by default, 25 requests/s per endpoint, counted together with the account's own live
//! traffic; Stripe asks background jobs to stay within a subset of them. The defaults here are
//! 60 % of those limits (see [`Limits::for_key`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget of one account, before it is split across workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second, all endpoints together.
    pub per_second: u32,
    /// Requests per second to one endpoint (method and path template).
    pub per_endpoint: u32,
    /// Requests waiting for an answer at once.
    pub in_flight: u32,
}

impl Limits {
    /// 60 % of Stripe's documented limits: live 100/s per account and 25/s per endpoint; test
    /// mode 25/s per account. In flight: enough for the per-second rate at Stripe's usual
    /// 300 ms round trip, and below its concurrency limiter.
    pub fn for_key(test_mode: bool) -> Limits {
        if test_mode {
            Limits {
                per_second: 15,
                per_endpoint: 15,
                in_flight: 10,
            }
        } else {
            Limits {
                per_second: 60,
                per_endpoint: 15,
                in_flight: 25,
            }
        }
    }
}

/// The slow Stripe round trip the in-flight cap is sized for: with a request taking this long,
/// `per_second × SLOW_ROUND_TRIP` requests are waiting at once.
pub const SLOW_ROUND_TRIP_MS: u32 = 500;

impl Limits {
    /// A per-second budget set by the operator, with the in-flight cap raised to keep it busy
    /// at a slow round trip ([`SLOW_ROUND_TRIP_MS`]), never below this mode's default: a budget
    /// raised to Stripe's full limits is not silently capped by the in-flight default.
    pub fn with_per_second(self, per_second: u32) -> Limits {
        let needed =
            u32::try_from((u64::from(per_second) * u64::from(SLOW_ROUND_TRIP_MS)).div_ceil(1000))
                .unwrap_or(u32::MAX);
        Limits {
            per_second,
            in_flight: self.in_flight.max(needed),
            ..self
        }
    }
}

/// The lowest the AIMD factor goes (5 % of the budget).
const MIN_FACTOR: f64 = 0.05;
/// Additive increase: this fraction of the budget back per second of clean traffic.
const INCREASE_PER_SECOND: f64 = 0.05;
/// At most one decrease per this interval (a burst of 429s is one signal).
const DECREASE_SPACING: Duration = Duration::from_secs(1);
/// The pause every request takes after a rate-limit 429 without `Retry-After`.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct State {
    /// 1 / the number of live workers.
    share: f64,
    /// AIMD: the fraction of this worker's share in use.
    factor: f64,
    global_next: Instant,
    endpoint_next: HashMap<String, Instant>,
    paused_until: Instant,
    last_decrease: Option<Instant>,
    last_increase: Instant,
}

/// The shared budget. Cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct Budget {
    limits: Limits,
    state: Arc<Mutex<State>>,
    in_flight: Arc<Semaphore>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        let now = Instant::now();
        Budget {
            limits,
            state: Arc::new(Mutex::new(State {
                share: 1.0,
                factor: 1.0,
                global_next: now,
                endpoint_next: HashMap::new(),
                paused_until: now,
                last_decrease: None,
                last_increase: now,
            })),
            in_flight: Arc::new(Semaphore::new(limits.in_flight.max(1) as usize)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Splits the budget across `workers` live workers (at least one).
    pub fn set_workers(&self, workers: u32) {
        self.lock().share = 1.0 / f64::from(workers.max(1));
    }

    /// The rates in force now (requests per second: global, per endpoint).
    pub fn current_rates(&self) -> (f64, f64) {
        let s = self.lock();
        let k = s.share * s.factor;
        (
            f64::from(self.limits.per_second) * k,
            f64::from(self.limits.per_endpoint) * k,
        )
    }

    /// Waits for this request's turn in the global and the endpoint's rate (GCRA, a burst of
    /// two), then for a place among the requests in flight, held until the returned permit is
    /// dropped. Nothing is reserved ahead: a request blocked by a busy endpoint never holds
    /// back requests to other endpoints. Cancellation-safe: dropping the future takes nothing.
    pub async fn acquire(&self, endpoint: &str) -> Option<OwnedSemaphorePermit> {
        loop {
            let ready_at = {
                let mut s = self.lock();
                let k = (s.share * s.factor).max(1e-6);
                let global = interval(f64::from(self.limits.per_second) * k);
                let per_endpoint = interval(f64::from(self.limits.per_endpoint) * k);
                let now = Instant::now();
                let endpoint_tat = s.endpoint_next.get(endpoint).copied().unwrap_or(now);
                let ready_at = allowed_from(s.global_next, global)
                    .max(allowed_from(endpoint_tat, per_endpoint))
                    .max(s.paused_until);
                if ready_at <= now {
                    s.global_next = s.global_next.max(now) + global;
                    s.endpoint_next
                        .insert(endpoint.to_string(), endpoint_tat.max(now) + per_endpoint);
                    None
                } else {
                    Some(ready_at)
                }
            };
            match ready_at {
                None => break,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
        // `None` only if the semaphore were closed, which it never is.
        self.in_flight.clone().acquire_owned().await.ok()
    }

    /// A rate-limit 429 (global or endpoint rate or concurrency): halve the rate (once per
    /// second at most) and pause every request for `retry_after` (default one second).
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        let now = Instant::now();
        let cooldown = retry_after.unwrap_or(DEFAULT_COOLDOWN).min(MAX_COOLDOWN);
        s.paused_until = s.paused_until.max(now + cooldown);
        if s.last_decrease
            .is_none_or(|t| now.duration_since(t) >= DECREASE_SPACING)
        {
            s.factor = (s.factor * 0.5).max(MIN_FACTOR);
            s.last_decrease = Some(now);
            s.last_increase = now;
            tracing::warn!(
                factor = s.factor,
                cooldown_ms = cooldown.as_millis() as u64,
                "Stripe rate limit reached: slowing down"
            );
        }
    }

    /// A request went through: give back budget, additively, while traffic stays clean.
    pub fn on_success(&self) {
        let mut s = self.lock();
        if s.factor >= 1.0 {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(s.last_increase).as_secs_f64();
        if elapsed >= 1.0 {
            s.factor = (s.factor + INCREASE_PER_SECOND * elapsed.floor()).min(1.0);
            s.last_increase = now;
        }
    }
}

/// GCRA with a tolerance of one interval: a request may go once the theoretical arrival time
/// is at most one interval ahead.
fn allowed_from(tat: Instant, interval: Duration) -> Instant {
    tat.checked_sub(interval).unwrap_or(tat)
}

fn interval(per_second: f64) -> Duration {
    Duration::from_secs_f64(1.0 / per_second.max(1e-3)).min(Duration::from_secs(3600))
}

/// The method and path with ids replaced (`POST /v1/invoices/{id}/finalize`): what Stripe's
/// per-endpoint limit counts.
pub fn endpoint_of(method: &str, path: &str) -> String {
    let template: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let looks_like_id = seg.contains('_') && seg.chars().any(|c| c.is_ascii_digit());
            if looks_like_id {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", template.join("/"))
}

/// Opens after `threshold` requests in a row could not reach Stripe (connection refused or
/// reset, time-outs); any answer from Stripe closes it.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    in_a_row: AtomicU32,
}

impl Breaker {
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            in_a_row: AtomicU32::new(0),
        }
    }

    pub fn record_unreachable(&self) {
        self.in_a_row.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_answer(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }

    pub fn is_open(&self) -> bool {
        self.in_a_row.load(Ordering::Relaxed) >= self.threshold
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Half-open: the next request is tried again (each pass starts this way).
    pub fn reset(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_cap_follows_a_raised_budget() {
        let live = Limits::for_key(false);
        // Stripe's full live limit: 100/s at 0.5 s needs 50 in flight, not the default 25.
        assert_eq!(live.with_per_second(100).in_flight, 50);
        assert_eq!(live.with_per_second(100).per_second, 100);
        // Never below the default.
        assert_eq!(live.with_per_second(20).in_flight, 25);
        assert_eq!(Limits::for_key(true).with_per_second(25).in_flight, 13);
        assert_eq!(Limits::for_key(true).with_per_second(5).in_flight, 10);
    }

    #[test]
    fn endpoints_are_templated() {
        assert_eq!(
            endpoint_of("POST", "/invoices/in_1Abc2/finalize"),
            "POST /invoices/{id}/finalize"
        );
        assert_eq!(endpoint_of("POST", "/invoiceitems"), "POST /invoiceitems");
        assert_eq!(
            endpoint_of("GET", "/invoices/in_emu00000001"),
            "GET /invoices/{id}"
        );
    }

    #[test]
    fn split_and_aimd() {
        let b = Budget::new(Limits {
            per_second: 100,
            per_endpoint: 25,
            in_flight: 10,
        });
        assert_eq!(b.current_rates(), (100.0, 25.0));
        b.set_workers(4);
        assert_eq!(b.current_rates(), (25.0, 6.25));
        b.on_rate_limited(None);
        assert_eq!(b.current_rates(), (12.5, 3.125));
        // A second 429 within the same second is the same signal.
        b.on_rate_limited(None);
        assert_eq!(b.current_rates(), (12.5, 3.125));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_per_endpoint_and_globally() {
        let b = Budget::new(Limits {
            per_second: 100,
            per_endpoint: 25,
            in_flight: 100,
        });
        let start = Instant::now();
        for _ in 0..26 {
            let _p = b.acquire("POST /invoiceitems").await;
        }
        // 25 per second on one endpoint (a burst of two, then every 40 ms).
        let elapsed = start.elapsed();
        assert!(
            (Duration::from_millis(950)..=Duration::from_millis(1000)).contains(&elapsed),
            "{elapsed:?}"
        );
        let start = Instant::now();
        for i in 0..100 {
            let ep = format!("GET /e{}", i % 10);
            let _p = b.acquire(&ep).await;
        }
        // Ten endpoints: the global 100/s binds (10 ms apart).
        assert!(
            start.elapsed() <= Duration::from_millis(1000),
            "{:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn breaker_opens_after_k_in_a_row() {
        let br = Breaker::new(3);
        br.record_unreachable();
        br.record_unreachable();
        br.record_answer();
        br.record_unreachable();
        br.record_unreachable();
        assert!(!br.is_open());
        br.record_unreachable();
        assert!(br.is_open());
        br.reset();
        assert!(!br.is_open());
    }
}
#[cfg(test)]
mod sim {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn plans_in_flight_reach_the_endpoint_limit() {
        let b = Budget::new(Limits {
            per_second: 100,
            per_endpoint: 25,
            in_flight: 25,
        });
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let items = Arc::new(std::sync::atomic::AtomicU32::new(0));
        for _ in 0..32 {
            let b = b.clone();
            let items = items.clone();
            set.spawn(async move {
                for _ in 0..10 {
                    for ep in [
                        "POST /customers",
                        "POST /invoices",
                        "POST /invoiceitems",
                        "POST /invoiceitems",
                        "POST /invoices/{id}/finalize",
                    ] {
                        let _p = b.acquire(ep).await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if ep == "POST /invoiceitems" {
                            items.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
        let secs = start.elapsed().as_secs_f64();
        let rate = f64::from(items.load(Ordering::Relaxed)) / secs;
        assert!(rate > 22.0, "items/s {rate} over {secs} s");
    }
}
