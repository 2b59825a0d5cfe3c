//! The transport policy of [`StripeGateway`]: one request sent with its idempotency key,
//! paced by the budget, retried under the same key with exponential backoff and full jitter
//! (or `Retry-After`), cut short by the breaker, and its failure classified by status and
//! headers (retryable, fatal, missing, already there).

use std::time::Duration;

use rand::Rng;
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};

use super::StripeGateway;
use crate::stripe::budget::endpoint_of;
use crate::stripe::transport::TransportError;
use crate::stripe::GatewayError;

impl StripeGateway {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .base_backoff
            .saturating_mul(1 << attempt.min(16));
        let cap = exp.min(self.config.max_backoff);
        let jitter = rand::rng().random_range(0..=cap.as_millis().max(1) as u64);
        Duration::from_millis(jitter)
    }

    /// Sends one request with its idempotency key, retrying transient failures under the same
    /// key. GETs go without a key. Every attempt waits for the budget. A rate-limit 429 slows
    /// the whole budget down and is retried after the shared pause (it does not use up the
    /// attempts); a `lock_timeout` 429 is an ordinary retry.
    pub(super) async fn send<R, T>(
        &self,
        request: &R,
        key: Option<String>,
    ) -> Result<T, GatewayError>
    where
        R: StripeRequest,
        T: miniserde::Deserialize,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let strategy = match key {
            Some(k) => RequestStrategy::Idempotent(
                IdempotencyKey::new(&k)
                    .map_err(|e| GatewayError::Fatal(format!("bad idempotency key {k}: {e}")))?,
            ),
            None => RequestStrategy::Once,
        };
        let endpoint = {
            let b = request.build();
            endpoint_of(method_name(&b.method), &b.path)
        };
        let mut attempt = 0;
        let mut rate_limited = 0;
        loop {
            if self.breaker.is_open() {
                return Err(GatewayError::Unreachable(format!(
                    "{} requests in a row failed to connect or timed out",
                    self.breaker.threshold()
                )));
            }
            let permit = self.budget.acquire(&endpoint).await;
            let mut built = request.build();
            built.body = built.body.map(|b| canonical_form(&b));
            let result = built
                .customize::<T>()
                .request_strategy(strategy.clone())
                .send(&self.client)
                .await;
            drop(permit);
            let e = match result {
                Ok(value) => {
                    self.stats.ok.fetch_add(1, Relaxed);
                    self.breaker.record_answer();
                    self.budget.on_success();
                    return Ok(value);
                }
                Err(e) => e,
            };
            match &e {
                TransportError::Connect(_) | TransportError::Timeout(_) => {
                    self.breaker.record_unreachable()
                }
                _ => self.breaker.record_answer(),
            }
            let retry_after = e.retry_after();
            let limited = e.is_rate_limit();
            if limited {
                self.stats.rate_limited.fetch_add(1, Relaxed);
                self.budget.on_rate_limited(retry_after);
                rate_limited += 1;
            }
            let error = classify(e);
            let counter = if error.is_retryable() {
                &self.stats.retryable
            } else {
                &self.stats.fatal
            };
            counter.fetch_add(1, Relaxed);
            if !error.is_retryable() {
                return Err(error);
            }
            if limited && rate_limited < MAX_RATE_LIMITED_RETRIES {
                // The budget's shared pause is the wait; attempts are for real failures.
                tracing::debug!(endpoint, "rate limited; retrying after the shared pause");
                continue;
            }
            attempt += 1;
            if attempt >= self.config.max_attempts {
                return Err(error);
            }
            let delay = retry_after
                .unwrap_or_else(|| self.backoff(attempt - 1))
                .min(MAX_RETRY_AFTER);
            tracing::warn!(attempt, endpoint, delay_ms = delay.as_millis() as u64, error = %error, "Stripe request failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Rate-limit 429s one request may meet before they count as failed attempts.
const MAX_RATE_LIMITED_RETRIES: u32 = 20;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

fn method_name(m: &stripe_client_core::StripeMethod) -> &'static str {
    match m {
        stripe_client_core::StripeMethod::Get => "GET",
        stripe_client_core::StripeMethod::Post => "POST",
        stripe_client_core::StripeMethod::Delete => "DELETE",
    }
}

/// By status and headers, never by the shape of the body: `Stripe-Should-Retry` decides when
/// present; else 429, 409 (a concurrent request with the same key), 424, 5xx, timeouts and
/// connection errors are retryable; 404 is a missing object; other 4xx are Stripe refusing
/// this request.
fn classify(e: TransportError) -> GatewayError {
    match e {
        TransportError::Refused(r) => {
            let msg = redact(&TransportError::Refused(r.clone()).to_string());
            let transient = matches!(r.status, 409 | 424 | 429) || r.status >= 500;
            if r.code.as_deref() == Some("resource_already_exists") {
                return GatewayError::Exists(msg);
            }
            match r.should_retry {
                Some(true) => GatewayError::Retryable(msg),
                Some(false) if r.status == 404 => GatewayError::NotFound(msg),
                Some(false) => GatewayError::Fatal(msg),
                None if transient => GatewayError::Retryable(msg),
                None if r.status == 404 => GatewayError::NotFound(msg),
                None => GatewayError::Fatal(msg),
            }
        }
        TransportError::Timeout(_) | TransportError::Connect(_) => {
            GatewayError::Retryable(redact(&e.to_string()))
        }
        TransportError::Decode(m) => GatewayError::Fatal(format!("unexpected response: {m}")),
    }
}

/// The form body with its pairs sorted. async-stripe takes metadata as a `HashMap`, whose
/// iteration order differs between runs; a retry after a crash must send the same body under
/// the same idempotency key, or Stripe refuses it.
fn canonical_form(body: &str) -> String {
    let mut pairs: Vec<&str> = body.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs.join("&")
}

/// Removes anything that looks like a key from a message.
fn redact(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| {
            if w.contains("sk_") || w.contains("rk_") {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_canonical() {
        assert_eq!(
            canonical_form("metadata[b]=2&customer=c&metadata[a]=1"),
            "customer=c&metadata[a]=1&metadata[b]=2"
        );
    }

    fn refused(status: u16, body: &str, should_retry: Option<&'static str>) -> TransportError {
        let mut h = hyper::header::HeaderMap::new();
        if let Some(v) = should_retry {
            h.insert(
                "stripe-should-retry",
                hyper::header::HeaderValue::from_static(v),
            );
        }
        TransportError::Refused(Box::new(crate::stripe::transport::refusal(
            status,
            &h,
            body.as_bytes(),
        )))
    }

    #[test]
    fn errors_are_classified() {
        assert!(classify(TransportError::Timeout(Duration::from_secs(1))).is_retryable());
        assert!(classify(TransportError::Connect("refused".into())).is_retryable());
        assert!(!classify(TransportError::Decode("x".into())).is_retryable());
        let html = "<html><h1>502 Bad Gateway</h1></html>";
        assert!(classify(refused(502, html, None)).is_retryable());
        assert!(classify(refused(429, "{}", None)).is_retryable());
        let refusal = r#"{"error":{"type":"invalid_request_error","message":"No such customer"}}"#;
        assert!(!classify(refused(400, refusal, None)).is_retryable());
        assert!(matches!(
            classify(refused(404, refusal, None)),
            GatewayError::NotFound(_)
        ));
        assert!(classify(refused(400, refusal, Some("true"))).is_retryable());
        assert!(!classify(refused(500, "{}", Some("false"))).is_retryable());
        assert_eq!(
            redact("bad key sk_test_123 given"),
            "bad key [redacted] given"
        );
    }
}
