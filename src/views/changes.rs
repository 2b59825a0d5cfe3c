//! A change of the history as `changes list`, `GET /v1/changes` and `show` present it.

use serde::Serialize;
use serde_json::Value;

use crate::db::changes::ChangeRow;
use crate::domain::Ts;

/// One change as `changes list` and `GET /v1/changes` show it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ChangeView {
    pub id: i64,
    /// The instant the operation acted at.
    pub at: Ts,
    /// When the change was written (the wall clock).
    pub written_at: Ts,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub operation: String,
    pub customer_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub new_plan_id: Option<i64>,
    pub invoice_id: Option<i64>,
    /// The objects touched, by kind.
    pub objects: Value,
    /// The fields that changed, as they were.
    pub before: Value,
    /// The fields that changed, as they are.
    pub after: Value,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// SHA-256 over the previous change's hash and this change.
    pub hash: String,
}

impl From<ChangeRow> for ChangeView {
    fn from(r: ChangeRow) -> ChangeView {
        let json = |s: &str| serde_json::from_str(s).unwrap_or(Value::String(s.to_string()));
        ChangeView {
            id: r.id,
            at: r.at,
            written_at: r.written_at,
            objects: json(&r.objects),
            before: json(&r.before),
            after: json(&r.after),
            actor: r.actor,
            on_behalf_of: r.on_behalf_of,
            operation: r.operation,
            customer_id: r.customer_id,
            plan_id: r.plan_id,
            new_plan_id: r.new_plan_id,
            invoice_id: r.invoice_id,
            reason: r.reason,
            idempotency_key: r.idempotency_key,
            hash: r.hash,
        }
    }
}

/// Who made the newest change of a customer or plan (`show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LastChange {
    pub id: i64,
    pub at: Ts,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub operation: String,
    pub reason: Option<String>,
}

impl From<ChangeRow> for LastChange {
    fn from(r: ChangeRow) -> LastChange {
        LastChange {
            id: r.id,
            at: r.at,
            actor: r.actor,
            on_behalf_of: r.on_behalf_of,
            operation: r.operation,
            reason: r.reason,
        }
    }
}
