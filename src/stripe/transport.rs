//! Our HTTP transport under async-stripe's typed requests: an implementation of its public
//! `StripeClient` trait over a keep-alive hyper client.
//!
//! async-stripe's own client opens a new connection (and TLS session) for every request, keeps
//! only the parsed body of an error, and turns a non-JSON error body (an HTML 502 from a proxy)
//! into a deserialisation error. This transport makes exactly one attempt per call, reuses
//! pooled connections, and returns every answer's status with the headers that decide a retry
//! (`Stripe-Should-Retry`, `Retry-After`, `Stripe-Rate-Limited-Reason`) and the `Request-Id`, so
//! that [`super::client::StripeGateway`] classifies by status and headers, never by body shape.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeClientErr, StripeMethod};

use super::ApiKey;

/// A non-2xx answer, with what decides whether and when to retry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Stripe's `error.message`, or the start of a body that is not a Stripe error.
    pub message: String,
    /// Stripe's `error.type` (e.g. `rate_limit_error`).
    pub error_type: Option<String>,
    /// Stripe's `error.code` (e.g. `lock_timeout`, `resource_missing`).
    pub code: Option<String>,
    /// `Stripe-Should-Retry`.
    pub should_retry: Option<bool>,
    /// `Retry-After` (seconds).
    pub retry_after: Option<Duration>,
    /// `Stripe-Rate-Limited-Reason` (`global-rate`, `endpoint-rate`, `global-concurrency`, …).
    pub rate_limited_reason: Option<String>,
    pub request_id: Option<String>,
}

/// Why one attempt did not return a success.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("{} ({}){}", .0.message, .0.status, .0.request_id.as_ref().map(|r| format!(", request {r}")).unwrap_or_default())]
    Refused(Box<Refusal>),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made or broke before an answer.
    #[error("cannot reach Stripe: {0}")]
    Connect(String),
    /// A success whose body is not what the request expects.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl TransportError {
    /// `Retry-After`, when the answer had one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TransportError::Refused(r) => r.retry_after,
            _ => None,
        }
    }

    /// A 429 for the account's or an endpoint's rate or concurrency — a reason to slow down.
    /// A `lock_timeout` (an object locked by a concurrent request) is not.
    pub fn is_rate_limit(&self) -> bool {
        match self {
            TransportError::Refused(r) => {
                r.status == 429
                    && r.code.as_deref() != Some("lock_timeout")
                    && r.rate_limited_reason.as_deref() != Some("resource-specific")
            }
            _ => false,
        }
    }
}

impl StripeClientErr for TransportError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        TransportError::Decode(msg.to_string())
    }
}

/// A keep-alive HTTP client for one Stripe base URL and key.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    authorization: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// `base` ends in `/` (Stripe's `https://api.stripe.com/` or a compatible server).
    pub fn new(key: &ApiKey, base: &str, timeout: Duration) -> Result<Transport, String> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| {
                "the Stripe key contains characters not allowed in a header".to_string()
            })?;
        authorization.set_sensitive(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            // Stripe closes idle connections after a while; drop ours before it does, so that
            // a request rarely meets a connection closed under it (and when it does, the
            // gateway retries under the same idempotency key).
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Transport {
            client,
            base: base.to_string(),
            authorization,
            timeout,
        })
    }

    async fn attempt(&self, req: CustomizedStripeRequest) -> Result<Bytes, TransportError> {
        let (builder, config) = req.into_pieces();
        let mut uri = format!("{}v1{}", self.base, builder.path);
        if let Some(query) = builder.query.filter(|q| !q.is_empty()) {
            uri.push('?');
            uri.push_str(&query);
        }
        let method = match builder.method {
            StripeMethod::Get => hyper::Method::GET,
            StripeMethod::Post => hyper::Method::POST,
            StripeMethod::Delete => hyper::Method::DELETE,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(
                USER_AGENT,
                concat!("plan-invoicer/", env!("CARGO_PKG_VERSION")),
            )
            .header("stripe-version", stripe_client_core::VERSION.as_str());
        if let Some(key) = config.request_strategy.as_ref().and_then(|s| s.get_key()) {
            request = request.header("idempotency-key", key.as_str());
        }
        let body = match builder.body {
            Some(b) => {
                request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| TransportError::Decode(format!("cannot build the request: {e}")))?;
        let timeout = config.timeout.unwrap_or(self.timeout);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TransportError::Connect(error_chain(&e)))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| TransportError::Connect(error_chain(&e)))?
                .to_bytes();
            Ok::<_, TransportError>((status, headers, bytes))
        };
        let (status, headers, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout(timeout))??;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        Err(TransportError::Refused(Box::new(refusal(
            status, &headers, &bytes,
        ))))
    }
}

impl StripeClient for Transport {
    type Err = TransportError;

    fn execute(
        &self,
        req: CustomizedStripeRequest,
    ) -> impl std::future::Future<Output = Result<Bytes, TransportError>> + Send {
        self.attempt(req)
    }
}

/// Reads a non-2xx answer: Stripe's error object when the body is one, else the start of the
/// body (an HTML page from a proxy keeps its status, which is what matters).
pub fn refusal(status: u16, headers: &HeaderMap, body: &[u8]) -> Refusal {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed
        .as_ref()
        .map(|v| &v["error"])
        .filter(|e| e.is_object());
    let field = |k: &str| error.and_then(|e| e[k].as_str()).map(str::to_string);
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let short: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = short.chars().take(120).collect();
        if short.is_empty() {
            format!("HTTP {status} without a body")
        } else {
            format!("HTTP {status}: {short}")
        }
    });
    Refusal {
        status,
        message,
        error_type: field("type"),
        code: field("code"),
        should_retry: header("stripe-should-retry").and_then(|v| v.parse().ok()),
        retry_after: header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs),
        rate_limited_reason: header("stripe-rate-limited-reason"),
        request_id: header("request-id"),
    }
}

/// An error with its causes, on one line (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_html_502_keeps_its_status() {
        let r = refusal(
            502,
            &HeaderMap::new(),
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        );
        assert_eq!(r.status, 502);
        assert!(r.message.starts_with("HTTP 502: <html>"), "{}", r.message);
        assert_eq!(r.code, None);
    }

    #[test]
    fn stripe_errors_and_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("stripe-should-retry", HeaderValue::from_static("false"));
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert(
            "stripe-rate-limited-reason",
            HeaderValue::from_static("endpoint-rate"),
        );
        h.insert("request-id", HeaderValue::from_static("req_123"));
        let r = refusal(
            429,
            &h,
            br#"{"error":{"type":"rate_limit_error","code":"lock_timeout","message":"locked"}}"#,
        );
        assert_eq!(r.should_retry, Some(false));
        assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(r.rate_limited_reason.as_deref(), Some("endpoint-rate"));
        assert_eq!(r.code.as_deref(), Some("lock_timeout"));
        assert_eq!(r.message, "locked");
        assert_eq!(
            TransportError::Refused(Box::new(r)).to_string(),
            "locked (429), request req_123"
        );
    }
}
