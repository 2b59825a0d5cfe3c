//! Stripe's events, read once: the webhook (`POST /v1/stripe/webhook`) and `sync-payments`
//! (`GET /v1/events`) hand the same JSON object to [`StripeEvent`] and get the same
//! [`InvoiceEvent`] out, with the same bounds on what they keep.

use std::collections::HashMap;

use super::metadata;
use crate::domain::InvoiceEvent;

/// The invoice events the worker reads back from Stripe (`sync-payments`).
pub const INVOICE_EVENT_TYPES: &[&str] = &[
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
];

/// The longest event id kept (Stripe's are about 30 characters).
const MAX_ID_CHARS: usize = 255;
/// The longest event type kept.
const MAX_KIND_CHARS: usize = 100;
/// The longest installation id kept from an object's metadata.
const MAX_INSTALLATION_CHARS: usize = 64;

/// An event that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not a JSON event object: {0}")]
    NotAnEvent(String),
    #[error("the event has no {0}")]
    Missing(&'static str),
}

/// The part of a Stripe event this worker reads.
#[derive(miniserde::Deserialize)]
pub struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(miniserde::Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(miniserde::Deserialize)]
struct EventObject {
    id: Option<String>,
    object: Option<String>,
    metadata: Option<HashMap<String, String>>,
    attempt_count: Option<i64>,
    hosted_invoice_url: Option<String>,
}

impl StripeEvent {
    /// The event's id (the cursor of `GET /v1/events`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An event from its JSON text (a webhook's body).
    pub fn parse(raw: &[u8]) -> Result<InvoiceEvent, EventError> {
        let text = std::str::from_utf8(raw).map_err(|e| EventError::NotAnEvent(e.to_string()))?;
        miniserde::json::from_str::<StripeEvent>(text)
            .map_err(|_| {
                EventError::NotAnEvent("id, type, created and data.object are required".into())
            })?
            .into_event()
    }

    /// What the worker keeps of the event. The local invoice id is read only from invoices.
    pub fn into_event(self) -> Result<InvoiceEvent, EventError> {
        if self.id.is_empty() || self.id.chars().count() > MAX_ID_CHARS {
            return Err(EventError::Missing("id"));
        }
        let created = chrono::DateTime::from_timestamp(self.created, 0)
            .ok_or(EventError::Missing("creation time"))?;
        let o = self.data.object;
        let meta = o.metadata.as_ref();
        let is_invoice = o.object.as_deref() == Some("invoice");
        Ok(InvoiceEvent {
            id: self.id,
            kind: self.kind.chars().take(MAX_KIND_CHARS).collect(),
            created,
            stripe_invoice_id: o.id,
            local_invoice_id: is_invoice
                .then(|| metadata::read(meta, metadata::INVOICE_ID))
                .flatten(),
            installation: meta
                .and_then(|m| m.get(metadata::INSTALLATION))
                .map(|s| s.chars().take(MAX_INSTALLATION_CHARS).collect()),
            attempt_count: o.attempt_count.and_then(|n| i32::try_from(n).ok()),
            hosted_invoice_url: o.hosted_invoice_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoice_event_names_its_local_invoice_and_installation() {
        let raw = br#"{"id":"evt_1","type":"invoice.paid","created":1700000000,"livemode":false,
            "data":{"object":{"id":"in_1","object":"invoice","attempt_count":2,
            "hosted_invoice_url":null,"lines":{"data":[{"x":[1,{"y":null}]}]},
            "metadata":{"plan_invoicer_invoice_id":"42","plan_invoicer_installation":"inst-a"}}}}"#;
        let e = StripeEvent::parse(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.kind, "invoice.paid");
        assert_eq!(e.local_invoice_id, Some(42));
        assert_eq!(e.installation.as_deref(), Some("inst-a"));
        assert_eq!(e.attempt_count, Some(2));
        assert_eq!(e.stripe_invoice_id.as_deref(), Some("in_1"));
    }

    #[test]
    fn other_objects_carry_no_local_invoice_and_broken_events_are_refused() {
        let raw = br#"{"id":"evt_2","type":"customer.updated","created":1,
            "data":{"object":{"id":"cus_1","object":"customer",
            "metadata":{"plan_invoicer_invoice_id":"42"}}}}"#;
        let e = StripeEvent::parse(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.local_invoice_id, None);
        for bad in [
            &b"not json"[..],
            br#"{"type":"invoice.paid","created":1,"data":{"object":{}}}"#,
            br#"{"id":"","type":"invoice.paid","created":1,"data":{"object":{}}}"#,
            br#"{"id":"e","type":"invoice.paid","created":99999999999999,"data":{"object":{}}}"#,
            b"\xff\xfe",
        ] {
            assert!(StripeEvent::parse(bad).is_err(), "{bad:?}");
        }
    }
}
