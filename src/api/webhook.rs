//! `POST /v1/stripe/webhook`: Stripe's invoice events in. No bearer token: the
//! `Stripe-Signature` header is the authentication, checked on the raw body before anything is
//! parsed ([`crate::stripe::webhook`]); a bad or stale signature is a 400 and nothing is written.
//! Other event types and invoices that are not ours are answered 200 and ignored, so that Stripe
//! stops redelivering them.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::error::{ApiError, ErrorType};
use super::ApiState;
use crate::billing::payments::{apply_invoice_event, WEBHOOK_ACTOR};
use crate::stripe::events::StripeEvent;
use crate::stripe::webhook::verify;

/// Webhook requests counted by event type and outcome, for `/metrics`. The rejected count is
/// there from the start (at 0), so that an alert on it has a series to read.
#[derive(Debug)]
pub struct WebhookStats {
    family: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Default for WebhookStats {
    fn default() -> Self {
        let stats = WebhookStats {
            family: Default::default(),
        };
        drop(stats.family.get_or_create(&vec![
            ("type".to_string(), "unknown".to_string()),
            ("outcome".to_string(), "rejected".to_string()),
        ]));
        stats
    }
}

impl WebhookStats {
    pub fn record(&self, kind: &str, outcome: &str) {
        self.family
            .get_or_create(&vec![
                ("type".to_string(), kind.to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ])
            .inc();
    }

    /// A handle on the same counts, for a registry built per scrape.
    pub fn family(
        &self,
    ) -> prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    > {
        self.family.clone()
    }
}

/// Stripe's events carry the whole invoice, lines included: more room than other requests.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub(super) async fn receive(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if state.webhook_secrets.is_empty() {
        return Err(ApiError::not_found(
            "the Stripe webhook endpoint is off: set STRIPE_WEBHOOK_SECRET",
        ));
    }
    let raw = axum::body::to_bytes(body, WEBHOOK_BODY_LIMIT)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequestError,
                format!("the body is larger than {WEBHOOK_BODY_LIMIT} bytes"),
            )
        })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify(
        signature,
        &raw,
        &state.webhook_secrets,
        state.clock.now().timestamp(),
    ) {
        warn!(error = %e, "Stripe webhook refused");
        state.webhook_stats.record("unknown", "rejected");
        return Err(
            ApiError::invalid(format!("signature refused: {e}")).with_param("Stripe-Signature")
        );
    }
    let parsed = StripeEvent::parse(&raw).map_err(|e| ApiError::invalid(e.to_string()));
    let event = match parsed {
        Ok(e) => e,
        Err(e) => {
            state.webhook_stats.record("unknown", "rejected");
            return Err(e);
        }
    };
    let now = state.clock.now();
    let outcome = state
        .run(|c| apply_invoice_event(c, &event, now, WEBHOOK_ACTOR))
        .await?;
    // The type comes from a signed event: Stripe's own, closed list of names.
    state.webhook_stats.record(&event.kind, outcome.name());
    info!(
        event.id = %event.id,
        event.kind = %event.kind,
        invoice.id = ?event.local_invoice_id,
        outcome = outcome.name(),
        "Stripe event"
    );
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "received": true, "outcome": outcome.name() }).to_string(),
    )
        .into_response())
}
