//! Invoice lines as Stripe's newer endpoints speak them: `POST /v1/invoices/{id}/add_lines`
//! (many lines to a draft in one request, all or none), products (`POST /v1/products`, with an
//! id of the caller's choosing) for inline prices, and the `lines` list embedded in an invoice
//! (its first ten lines, as Stripe embeds them).

use axum::http::StatusCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::{error, missing, Reply, Store};

/// Lines Stripe embeds in an invoice object; the rest are read from the lines list.
const EMBEDDED_LINES: usize = 10;
/// Items one invoice may hold (Stripe's limit since API 2016-02-22).
const MAX_ITEMS_PER_INVOICE: usize = 250;

fn invalid(message: impl Into<String>, param: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        Some(param),
    )
}

/// An invoice as the HTTP API returns it: with the first lines embedded, each an invoice line
/// object backed by its invoice item.
pub(super) fn invoice_json(store: &Store, invoice: &Value) -> Value {
    let id = invoice["id"].as_str().unwrap_or_default();
    let items: Vec<&Value> = store.items.children(id).collect();
    let data: Vec<Value> = items
        .iter()
        .take(EMBEDDED_LINES)
        .map(|i| line_of(id, i))
        .collect();
    let mut inv = invoice.clone();
    inv["lines"] = json!({
        "object": "list", "data": data, "has_more": items.len() > EMBEDDED_LINES,
        "total_count": items.len(), "url": format!("/v1/invoices/{id}/lines"),
    });
    inv
}

/// The invoice line of an invoice item.
fn line_of(invoice: &str, item: &Value) -> Value {
    let item_id = item["id"].as_str().unwrap_or_default();
    json!({
        "id": format!("il_{}", item_id.trim_start_matches("ii_")),
        "object": "line_item",
        "invoice": invoice,
        "livemode": false,
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discountable": item["discountable"],
        "metadata": item["metadata"],
        "period": item["period"],
        "quantity": item["quantity"],
        "pricing": item["pricing"],
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": { "invoice_item": item_id, "proration": false },
        },
    })
}

/// `POST /v1/products`: an id may be given (it must be new in the account).
pub(super) fn create_product(store: &mut Store, p: &Map<String, Value>, created: i64) -> Reply {
    let Some(name) = p.get("name").and_then(Value::as_str) else {
        return invalid("Missing required param: name.", "name");
    };
    let id = match p.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("prod_emu{:08}", store.products.len() + 1),
    };
    if store.products.get(&id).is_some() {
        let mut r = invalid(format!("Product already exists: {id}"), "id");
        r.1["error"]["code"] = json!("resource_already_exists");
        return r;
    }
    let product = json!({
        "id": id, "object": "product", "created": created, "livemode": false, "name": name,
        "active": p.get("active").cloned().unwrap_or(json!(true)),
        "description": p.get("description"),
        "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
    });
    store.products.insert(product.clone(), None);
    (StatusCode::OK, product)
}

/// One line of an `add_lines` request, checked: its amount in cents and its pricing.
struct Checked {
    amount: i64,
    quantity: i64,
    unit_amount_decimal: Option<String>,
    pricing: Value,
}

fn check_line(store: &Store, i: usize, line: &Value, currency: &str) -> Result<Checked, Reply> {
    let param = |field: &str| format!("lines[{i}][{field}]");
    if line.get("invoice_item").is_some() {
        // Assigning existing pending items: not something the worker does.
        return Err(invalid(
            "The emulator does not assign existing invoice items.",
            &param("invoice_item"),
        ));
    }
    let quantity = line.get("quantity").and_then(Value::as_i64);
    if quantity.is_some_and(|q| q < 0) {
        return Err(invalid("Invalid non-negative integer.", &param("quantity")));
    }
    match (
        line.get("amount").and_then(Value::as_i64),
        line.get("price_data"),
    ) {
        (Some(_), Some(_)) => Err(invalid(
            "You may only specify one of these parameters: amount, price_data.",
            &param("amount"),
        )),
        (None, None) => Err(invalid(
            "You must specify one of these parameters: amount, price_data.",
            &param("amount"),
        )),
        (Some(_), None) if quantity.is_some() => Err(invalid(
            "You may only specify quantity together with price_data.",
            &param("quantity"),
        )),
        (Some(amount), None) => Ok(Checked {
            amount,
            quantity: 1,
            unit_amount_decimal: None,
            pricing: Value::Null,
        }),
        (None, Some(price)) => {
            let pparam = |field: &str| format!("lines[{i}][price_data][{field}]");
            match price.get("currency").and_then(Value::as_str) {
                None => {
                    return Err(invalid(
                        "Missing required param: currency.",
                        &pparam("currency"),
                    ))
                }
                Some(c) if c != currency => {
                    return Err(invalid(
                        format!("The price's currency ({c}) must be the invoice's ({currency})."),
                        &pparam("currency"),
                    ))
                }
                Some(_) => {}
            }
            let Some(product) = price.get("product").and_then(Value::as_str) else {
                return Err(invalid(
                    "Missing required param: product.",
                    &pparam("product"),
                ));
            };
            if store.products.get(product).is_none() {
                return Err(missing("product", product));
            }
            let unit = match (
                price.get("unit_amount").and_then(Value::as_i64),
                price.get("unit_amount_decimal").and_then(Value::as_str),
            ) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                        &pparam("unit_amount"),
                    ))
                }
                (Some(u), None) if u >= 0 => Decimal::from(u),
                (None, Some(u)) => match u.parse::<Decimal>() {
                    Ok(d) if d >= Decimal::ZERO => d,
                    _ => return Err(invalid("Invalid decimal.", &pparam("unit_amount_decimal"))),
                },
                (Some(_), None) => return Err(invalid("Invalid non-negative integer.", &pparam("unit_amount"))),
                (None, None) => {
                    return Err(invalid(
                        "You must specify one of these parameters: unit_amount, unit_amount_decimal.",
                        &pparam("unit_amount"),
                    ))
                }
            };
            let quantity = quantity.unwrap_or(1);
            let Some(amount) = (unit * Decimal::from(quantity)).round().to_i64() else {
                return Err(invalid(
                    "The amount is too large.",
                    &pparam("unit_amount_decimal"),
                ));
            };
            let unit_text = unit.normalize().to_string();
            Ok(Checked {
                amount,
                quantity,
                unit_amount_decimal: Some(unit_text.clone()),
                pricing: json!({
                    "type": "price_details",
                    "price_details": { "product": product },
                    "unit_amount_decimal": unit_text,
                }),
            })
        }
    }
}

/// `POST /v1/invoices/{invoice}/add_lines`: every line is checked before any is added, so a
/// refused request adds nothing.
pub(super) fn add_lines(
    store: &mut Store,
    invoice_id: &str,
    p: &Map<String, Value>,
    created: i64,
) -> Reply {
    let Some(invoice) = store.invoices.get(invoice_id).cloned() else {
        return missing("invoice", invoice_id);
    };
    if invoice["status"] != "draft" {
        let mut r = invalid(
            format!(
                "Invoice {invoice_id} is not a draft: lines can only be added to a draft invoice."
            ),
            "lines",
        );
        r.1["error"]["code"] = json!("invoice_not_editable");
        return r;
    }
    let lines = match p.get("lines").and_then(Value::as_array) {
        Some(lines) if !lines.is_empty() => lines,
        _ => return invalid("Missing required param: lines.", "lines"),
    };
    let held = store.items.children(invoice_id).count();
    if held + lines.len() > MAX_ITEMS_PER_INVOICE {
        return invalid(
            format!("An invoice can hold at most {MAX_ITEMS_PER_INVOICE} items; it has {held}."),
            "lines",
        );
    }
    let currency = invoice["currency"].as_str().unwrap_or("usd").to_string();
    let mut checked = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match check_line(store, i, line, &currency) {
            Ok(c) => checked.push(c),
            Err(e) => return e,
        }
    }
    let customer = invoice["customer"].clone();
    for (line, c) in lines.iter().zip(checked) {
        let id = format!("ii_emu{:08}", store.items.len() + 1);
        let item = json!({
            "id": id, "object": "invoiceitem", "date": created, "livemode": false,
            "customer": customer, "invoice": invoice_id, "currency": currency,
            "description": line.get("description"), "quantity": c.quantity,
            "unit_amount_decimal": c.unit_amount_decimal, "amount": c.amount,
            "pricing": c.pricing,
            "period": line.get("period").cloned().unwrap_or(json!({ "start": created, "end": created })),
            "discountable": line.get("discountable").cloned().unwrap_or(json!(true)),
            "metadata": line.get("metadata").cloned().unwrap_or(json!({})),
        });
        store.items.insert(item, Some(invoice_id));
    }
    if let Some(Value::Object(extra)) = p.get("invoice_metadata") {
        if let Some(inv) = store.invoices.get_mut(invoice_id) {
            for (k, v) in extra {
                inv["metadata"][k] = v.clone();
            }
        }
    }
    match store.invoices.get(invoice_id) {
        Some(inv) => (StatusCode::OK, invoice_json(store, inv)),
        None => missing("invoice", invoice_id),
    }
}
