//! The API's wire shapes: the query strings and bodies it reads (each refusing unknown fields),
//! the JSON it answers with, pages of lists, and how a JSON document becomes an admin command
//! with a refusal that names its field.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::db::models::PlanEventRow;
use crate::domain::{InvoiceStatus, PlanStatus};
use crate::views::InvoiceView;

/// Lists: at most this many items a page, [`DEFAULT_LIMIT`] unless asked.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 10;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanQuery {
    pub(super) customer: Option<i64>,
    pub(super) status: Option<PlanStatus>,
    #[serde(default)]
    pub(super) due: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewQuery {
    pub(super) at: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InvoiceQuery {
    pub(super) customer: Option<i64>,
    pub(super) plan: Option<i64>,
    pub(super) status: Option<InvoiceStatus>,
    pub(super) since: Option<String>,
    pub(super) starting_after: Option<i64>,
    pub(super) limit: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    pub(super) customer: Option<i64>,
    pub(super) plan: Option<i64>,
    pub(super) actor: Option<String>,
    pub(super) operation: Option<String>,
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    pub(super) starting_after: Option<i64>,
    pub(super) limit: Option<i64>,
}

pub(super) fn limit_of(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(
            ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT} (got {n})"))
                .with_param("limit"),
        ),
    }
}

/// A page of a list: `{"data": [...], "has_more": …}`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct Page<T> {
    pub(super) data: Vec<T>,
    /// Whether items follow the last one (ask again with its id as the cursor).
    pub(super) has_more: bool,
}

pub(super) type InvoicesPage = Page<InvoiceView>;
pub(super) type EventsPage = Page<PlanEventRow>;
pub(super) type ChangesPage = Page<crate::views::ChangeView>;

/// A page from items read with one more than asked.
pub(super) fn page<T: serde::Serialize>(mut items: Vec<T>, limit: i64) -> Value {
    let has_more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    serde_json::to_value(Page {
        data: items,
        has_more,
    })
    .unwrap_or(Value::Null)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    pub(super) after: Option<i64>,
    pub(super) limit: Option<i64>,
    pub(super) consumer: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    pub(super) consumer: String,
    pub(super) through: i64,
}

/// The command `{name: body}` of enum `T` (the CLI's subcommand `name`), with `id` from the
/// path; unknown and missing fields are refused as the CLI refuses unknown flags.
pub(super) fn command<T: serde::de::DeserializeOwned>(
    name: &str,
    id: Option<i64>,
    mut body: Map<String, Value>,
) -> Result<T, ApiError> {
    if let Some(id) = id {
        if body.contains_key("id") {
            return Err(ApiError::invalid(
                "unknown field `id`: the id is in the path",
            ));
        }
        body.insert("id".into(), Value::from(id));
    }
    let mut doc = Map::new();
    doc.insert(name.into(), Value::Object(body));
    from_json(Value::Object(doc))
}

/// A JSON document into `T`; a refusal names the field it is about: the path serde was at, or
/// for serde's own "unknown field"/"missing field" refusals (raised about the enclosing object)
/// the field its fixed message quotes.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let at = e.path().iter().next_back().and_then(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let inner = e.into_inner().to_string();
        match serde_field(&inner).or(at) {
            Some(f) if inner.contains('`') => ApiError::invalid(inner).with_param(&f),
            Some(f) => ApiError::invalid(format!("{f}: {inner}")).with_param(&f),
            None => ApiError::invalid(inner),
        }
    })
}

/// The field serde's own messages quote: ``unknown field `foo`, expected …``, ``missing field
/// `count` ``. Only serde's fixed wording is read; our refusals carry their field.
pub(super) fn serde_field(message: &str) -> Option<String> {
    ["unknown field `", "missing field `"]
        .iter()
        .find_map(|marker| {
            let i = message.find(marker)?;
            message[i + marker.len()..]
                .split('`')
                .next()
                .map(str::to_string)
        })
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::PlanCmd;

    #[test]
    fn a_command_is_built_from_the_path_and_the_body() {
        let body = serde_json::json!({ "count": 12 });
        let Value::Object(map) = body else {
            panic!("an object")
        };
        let cmd: PlanCmd = command("seats", Some(7), map).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(matches!(cmd, PlanCmd::Seats { id: 7, count: 12 }));
    }

    #[test]
    fn unknown_and_missing_fields_and_a_body_id_are_refused() {
        let refused = |v: Value| {
            let Value::Object(map) = v else {
                panic!("an object")
            };
            command::<PlanCmd>("seats", Some(7), map).err()
        };
        let e = refused(serde_json::json!({ "count": 1, "cont": 2 }));
        assert_eq!(e.and_then(|e| e.param).as_deref(), Some("cont"));
        let e = refused(serde_json::json!({}));
        assert_eq!(e.and_then(|e| e.param).as_deref(), Some("count"));
        assert!(refused(serde_json::json!({ "count": 1, "id": 8 })).is_some());
        assert!(refused(serde_json::json!({ "count": "12" })).is_some());
    }

    #[test]
    fn create_bodies_take_the_cli_flags_in_snake_case() {
        let body = serde_json::json!({
            "customer": 1, "tier": "cloud_standard", "schedule": "monthly",
            "licenses": 10, "automanage_licenses": true
        });
        let Value::Object(map) = body else {
            panic!("an object")
        };
        let cmd: PlanCmd = command("create", None, map).unwrap_or_else(|e| panic!("{e:?}"));
        let PlanCmd::Create(p) = cmd else {
            panic!("a create")
        };
        assert_eq!(
            (p.customer, p.licenses, p.automanage_licenses),
            (1, 10, true)
        );
        assert!(!p.invoice_billing);
    }

    #[test]
    fn pages_say_whether_there_is_more() {
        assert_eq!(page(vec![1, 2, 3], 2)["has_more"], true);
        assert_eq!(page(vec![1, 2], 2)["has_more"], false);
        assert_eq!(page(vec![1, 2, 3], 2)["data"], serde_json::json!([1, 2]));
    }
}
