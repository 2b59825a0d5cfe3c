//! The parameters each emulated endpoint accepts, checked as Stripe checks them: an unknown
//! name or a value of the wrong type is refused with Stripe's error.

use axum::http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::{error, Reply};

/// The parameters each endpoint accepts, with their types.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Text,
    Int,
    Bool,
    Decimal,
    OneOf(&'static [&'static str]),
    /// `name[anything]` (metadata).
    Map,
    /// `name[start]`, `name[end]` as integers.
    Period,
    /// `expand[]` / `expand[0]`.
    List,
    /// `name[field]` with the fields given (scalars), e.g. `price_data[currency]`.
    Object(&'static [(&'static str, Kind)]),
    /// `name[0][field]…`: a list of objects, each checked against the fields given.
    Objects(&'static [(&'static str, Kind)]),
}

pub(super) fn allowed(method: &Method, endpoint: &str) -> Option<&'static [(&'static str, Kind)]> {
    use Kind::*;
    const CUSTOMER_CREATE: &[(&str, Kind)] = &[
        ("name", Text),
        ("email", Text),
        ("description", Text),
        ("phone", Text),
        ("metadata", Map),
        ("expand", List),
    ];
    const INVOICE_CREATE: &[(&str, Kind)] = &[
        ("customer", Text),
        ("auto_advance", Bool),
        (
            "collection_method",
            OneOf(&["charge_automatically", "send_invoice"]),
        ),
        ("days_until_due", Int),
        ("statement_descriptor", Text),
        ("description", Text),
        ("footer", Text),
        ("currency", Text),
        (
            "pending_invoice_items_behavior",
            OneOf(&["exclude", "include"]),
        ),
        ("metadata", Map),
        ("expand", List),
    ];
    const ITEM_CREATE: &[(&str, Kind)] = &[
        ("customer", Text),
        ("invoice", Text),
        ("currency", Text),
        ("description", Text),
        ("quantity", Int),
        ("unit_amount_decimal", Decimal),
        ("amount", Int),
        ("period", Period),
        ("discountable", Bool),
        ("metadata", Map),
        ("expand", List),
    ];
    const FINALIZE: &[(&str, Kind)] = &[("auto_advance", Bool), ("expand", List)];
    const PRICE_DATA: &[(&str, Kind)] = &[
        ("currency", Text),
        ("product", Text),
        ("unit_amount", Int),
        ("unit_amount_decimal", Decimal),
        (
            "tax_behavior",
            OneOf(&["exclusive", "inclusive", "unspecified"]),
        ),
    ];
    const LINE: &[(&str, Kind)] = &[
        ("amount", Int),
        ("description", Text),
        ("discountable", Bool),
        ("invoice_item", Text),
        ("metadata", Map),
        ("period", Period),
        ("price_data", Object(PRICE_DATA)),
        ("quantity", Int),
    ];
    const ADD_LINES: &[(&str, Kind)] = &[
        ("lines", Objects(LINE)),
        ("invoice_metadata", Map),
        ("expand", List),
    ];
    const PRODUCT_CREATE: &[(&str, Kind)] = &[
        ("id", Text),
        ("name", Text),
        ("description", Text),
        ("active", Bool),
        ("metadata", Map),
        ("expand", List),
    ];
    const LIST: &[(&str, Kind)] = &[
        ("customer", Text),
        ("invoice", Text),
        ("limit", Int),
        ("starting_after", Text),
        ("ending_before", Text),
        ("expand", List),
    ];
    const RETRIEVE: &[(&str, Kind)] = &[("expand", List)];
    const EVENT_LIST: &[(&str, Kind)] = &[
        ("type", Text),
        ("types", List),
        (
            "created",
            Object(&[("gt", Int), ("gte", Int), ("lt", Int), ("lte", Int)]),
        ),
        ("limit", Int),
        ("starting_after", Text),
        ("ending_before", Text),
        ("delivery_success", Bool),
        ("expand", List),
    ];
    Some(match (method.as_str(), endpoint) {
        ("POST", "/v1/customers") => CUSTOMER_CREATE,
        ("POST", "/v1/invoices") => INVOICE_CREATE,
        ("POST", "/v1/invoiceitems") => ITEM_CREATE,
        ("POST", "/v1/invoices/{invoice}/finalize") => FINALIZE,
        ("POST", "/v1/invoices/{invoice}/add_lines") => ADD_LINES,
        ("POST", "/v1/products") => PRODUCT_CREATE,
        ("GET", "/v1/products/{product}") => RETRIEVE,
        ("POST", "/v1/invoices/{invoice}/void")
        | ("POST", "/v1/invoices/{invoice}/mark_uncollectible")
        | ("DELETE", "/v1/invoices/{invoice}") => RETRIEVE,
        ("GET", "/v1/invoices") | ("GET", "/v1/invoiceitems") | ("GET", "/v1/customers") => LIST,
        ("GET", "/v1/events") => EVENT_LIST,
        ("GET", "/v1/invoices/{invoice}")
        | ("GET", "/v1/invoiceitems/{invoiceitem}")
        | ("GET", "/v1/customers/{customer}") => RETRIEVE,
        _ => return None,
    })
}

/// Checks every parameter against the endpoint's definition, as Stripe does.
pub(super) fn validate(
    spec: &[(&str, Kind)],
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, Reply> {
    let mut out = Map::new();
    // Objects of a list, by index, as `(field, value)` pairs relative to the object.
    let mut lists: Vec<ListParam<'_>> = vec![];
    for (key, value) in pairs {
        let (base, sub) = match key.find('[') {
            Some(i) => (&key[..i], Some(key[i + 1..].trim_end_matches(']'))),
            None => (key.as_str(), None),
        };
        let Some((_, kind)) = spec.iter().find(|(name, _)| *name == base) else {
            return Err(bad(format!("Received unknown parameter: {base}"), base));
        };
        let parsed = match (kind, sub) {
            (Kind::Map, Some(k)) if !k.is_empty() => {
                let entry = out.entry(base.to_string()).or_insert_with(|| json!({}));
                entry[k] = json!(value);
                continue;
            }
            (Kind::Period, Some(k @ ("start" | "end"))) => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad(format!("Invalid integer: {value}"), key))?;
                let entry = out.entry(base.to_string()).or_insert_with(|| json!({}));
                entry[k] = json!(n);
                continue;
            }
            (Kind::List, Some(_)) => {
                let entry = out.entry(base.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(json!(value));
                }
                continue;
            }
            (Kind::Object(fields), Some(k)) => {
                let Some((_, field_kind)) = fields.iter().find(|(name, _)| *name == k) else {
                    return Err(bad(format!("Received unknown parameter: {key}"), key));
                };
                let v = scalar(*field_kind, key, value)?;
                let entry = out.entry(base.to_string()).or_insert_with(|| json!({}));
                entry[k] = v;
                continue;
            }
            (Kind::Objects(fields), Some(k)) => {
                // `0][price_data][currency` -> object 0, `price_data[currency]`.
                let (index, rest) = k.split_once("][").unwrap_or((k, ""));
                let Ok(index) = index.parse::<usize>() else {
                    return Err(bad(format!("Invalid array index in {key}"), key));
                };
                let rest = match rest.split_once("][") {
                    Some((field, more)) => format!("{field}[{more}]"),
                    None => rest.to_string(),
                };
                if rest.is_empty() || index >= MAX_LIST_OBJECTS {
                    return Err(bad(format!("Invalid {key}"), key));
                }
                let slot = match lists.iter().position(|(name, _, _)| *name == base) {
                    Some(i) => i,
                    None => {
                        lists.push((base, fields, vec![]));
                        lists.len() - 1
                    }
                };
                let objects = &mut lists[slot].2;
                if objects.len() <= index {
                    objects.resize(index + 1, vec![]);
                }
                objects[index].push((rest, value.clone()));
                continue;
            }
            (Kind::Map | Kind::Period | Kind::List | Kind::Object(_) | Kind::Objects(_), _)
            | (_, Some(_)) => {
                return Err(bad(format!("Received unknown parameter: {key}"), key));
            }
            (k, None) => scalar(*k, key, value)?,
        };
        out.insert(base.to_string(), parsed);
    }
    for (name, fields, objects) in lists {
        let mut list = Vec::with_capacity(objects.len());
        for (i, object) in objects.iter().enumerate() {
            if object.is_empty() {
                return Err(bad(
                    format!(
                        "Missing {name}[{i}]: the indexes of {name} must run from 0 without gaps"
                    ),
                    name,
                ));
            }
            let parsed = validate(fields, object).map_err(|mut e| {
                // Name the parameter as the caller sent it: `lines[1][quantity]`.
                if let Some(param) = e.1["error"]["param"].as_str().map(str::to_string) {
                    e.1["error"]["param"] = json!(format!("{name}[{i}][{param}]"));
                }
                e
            })?;
            list.push(Value::Object(parsed));
        }
        out.insert(name.to_string(), Value::Array(list));
    }
    Ok(out)
}

/// A list-of-objects parameter being collected: its name, its objects' fields, and each
/// object's `(field, value)` pairs by index.
type ListParam<'a> = (
    &'a str,
    &'static [(&'static str, Kind)],
    Vec<Vec<(String, String)>>,
);

/// More objects than any list parameter of Stripe's takes (an invoice holds at most 250 items).
const MAX_LIST_OBJECTS: usize = 250;

fn bad(msg: String, param: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        msg,
        Some(param),
    )
}

/// A scalar value of the given kind.
fn scalar(kind: Kind, key: &str, value: &str) -> Result<Value, Reply> {
    Ok(match kind {
        Kind::Text => json!(value),
        Kind::Int => json!(value
            .parse::<i64>()
            .map_err(|_| bad(format!("Invalid integer: {value}"), key))?),
        Kind::Bool => match value {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err(bad(format!("Invalid boolean: {value}"), key)),
        },
        Kind::Decimal => {
            value
                .parse::<Decimal>()
                .map_err(|_| bad(format!("Invalid decimal: {value}"), key))?;
            json!(value)
        }
        Kind::OneOf(options) => {
            if !options.contains(&value) {
                return Err(bad(
                    format!("Invalid {key}: must be one of {}", options.join(", ")),
                    key,
                ));
            }
            json!(value)
        }
        Kind::Map | Kind::Period | Kind::List | Kind::Object(_) | Kind::Objects(_) => {
            return Err(bad(format!("Received unknown parameter: {key}"), key))
        }
    })
}
