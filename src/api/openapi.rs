//! The OpenAPI 3.1 document of the API (`GET /v1/openapi.json`), generated from the types the
//! API really reads and writes: request bodies from the admin commands' fields (the same
//! definitions serde deserializes and clap parses), query parameters from the query types,
//! responses from the views. Only the table of operations below is written by hand, and a test
//! sends a request to every one of them.

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::error::ErrorBody;
use super::wire::{
    AckBody, ChangesPage, ChangesQuery, EventsPage, EventsQuery, InvoiceQuery, InvoicesPage,
    PlanQuery, PreviewQuery,
};
use crate::admin::{CustomerCmd, OfferCmd, PlanCmd, Reply, CUSTOMER_ACTIONS, PLAN_ACTIONS};
use crate::db::models::PlanEventRow;
use crate::jobs::preview::Preview;
use crate::views::{Accepted, Created, CustomerView, LedgerView, PlanView, SeatsView, StatusView};

/// One operation: method, path, what it does, and its parts.
struct Op {
    method: &'static str,
    path: String,
    id: String,
    summary: String,
    query: Option<Value>,
    body: Option<Value>,
    response: Value,
}

impl Op {
    /// Whether the operation is an admin write, recorded in the change history.
    fn records_change(&self) -> bool {
        ["/v1/customers", "/v1/plans", "/v1/offers"]
            .iter()
            .any(|p| self.path.starts_with(p))
    }
}

struct Schemas {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
        let settings = |contract| {
            SchemaSettings::draft2020_12().with(|s| {
                s.inline_subschemas = true;
                s.contract = contract;
            })
        };
        Schemas {
            requests: settings(Contract::Deserialize).into_generator(),
            responses: settings(Contract::Serialize).into_generator(),
        }
    }

    fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    fn response<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    /// The body of command `name` of enum `T` (externally tagged: `{name: {...}}`), without the
    /// `id` that the path carries.
    fn command<T: JsonSchema>(&mut self, name: &str) -> Value {
        let whole = self.request::<T>();
        let variants = whole
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut body = variants
            .iter()
            .find_map(|v| v.pointer(&format!("/properties/{name}")).cloned())
            .unwrap_or_else(|| json!({ "type": "object" }));
        if let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("id");
        }
        if let Some(req) = body.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|f| f != "id");
        }
        body
    }
}

fn op(method: &'static str, path: &str, id: &str, summary: &str) -> Op {
    Op {
        method,
        path: path.to_string(),
        id: id.to_string(),
        summary: summary.to_string(),
        query: None,
        body: None,
        response: json!({ "type": "object" }),
    }
}

fn operations() -> Vec<Op> {
    let mut s = Schemas::new();
    let mut ops = customer_operations(&mut s);
    ops.extend(plan_operations(&mut s));
    ops.extend(other_operations(&mut s));
    ops
}

fn customer_operations(s: &mut Schemas) -> Vec<Op> {
    let mut ops = vec![
        Op {
            body: Some(s.command::<CustomerCmd>("create")),
            response: s.response::<Created>(),
            ..op(
                "post",
                "/v1/customers",
                "createCustomer",
                "Create a customer (`customer create`).",
            )
        },
        Op {
            response: s.response::<CustomerView>(),
            ..op(
                "get",
                "/v1/customers/{id}",
                "showCustomer",
                "A customer and its plans' ids (`customer show`).",
            )
        },
    ];
    for action in CUSTOMER_ACTIONS {
        let response = reply(s, action.reply);
        let action = action.name;
        ops.push(Op {
            body: Some(s.command::<CustomerCmd>(action)),
            response,
            ..op(
                "post",
                &format!("/v1/customers/{{id}}/{action}"),
                &format!("customer_{action}"),
                &format!("`customer {}`.", action.replace('_', "-")),
            )
        });
    }
    ops
}

fn plan_operations(s: &mut Schemas) -> Vec<Op> {
    let mut ops = vec![
        Op {
            body: Some(s.command::<PlanCmd>("create")),
            response: s.response::<Created>(),
            ..op(
                "post",
                "/v1/plans",
                "createPlan",
                "Create a plan with its first renewal entry (`plan create`).",
            )
        },
        Op {
            query: Some(s.request::<PlanQuery>()),
            response: s.response::<Vec<PlanView>>(),
            ..op(
                "get",
                "/v1/plans",
                "listPlans",
                "Plans, filtered (`plan list`).",
            )
        },
        Op {
            response: s.response::<PlanView>(),
            ..op(
                "get",
                "/v1/plans/{id}",
                "showPlan",
                "A plan's fields, licenses and invoicing state (`plan show`).",
            )
        },
        Op {
            response: s.response::<Vec<LedgerView>>(),
            ..op(
                "get",
                "/v1/plans/{id}/ledger",
                "planLedger",
                "A plan's license ledger (`plan ledger`).",
            )
        },
        Op {
            response: s.response::<Vec<PlanEventRow>>(),
            ..op(
                "get",
                "/v1/plans/{id}/events",
                "planEvents",
                "A plan's events (`plan events`).",
            )
        },
        Op {
            query: Some(s.request::<PreviewQuery>()),
            response: s.response::<Preview>(),
            ..op(
                "get",
                "/v1/plans/{id}/preview",
                "previewPlan",
                "The invoice the next pass would send, nothing written (`plan preview`).",
            )
        },
    ];
    for action in PLAN_ACTIONS {
        let response = reply(s, action.reply);
        let action = action.name;
        ops.push(Op {
            body: Some(s.command::<PlanCmd>(action)),
            response,
            ..op(
                "post",
                &format!("/v1/plans/{{id}}/{action}"),
                &format!("plan_{action}"),
                &format!("`plan {}`.", action.replace('_', "-")),
            )
        });
    }
    ops
}

/// The schema of what an action answers.
fn reply(s: &mut Schemas, reply: Reply) -> Value {
    match reply {
        Reply::Plan => s.response::<PlanView>(),
        Reply::Ledger => s.response::<LedgerView>(),
        Reply::Seats => s.response::<SeatsView>(),
        Reply::Created => s.response::<Created>(),
        Reply::Customer => s.response::<CustomerView>(),
    }
}

fn other_operations(s: &mut Schemas) -> Vec<Op> {
    vec![
        Op {
            body: Some(s.command::<OfferCmd>("create")),
            response: s.response::<Created>(),
            ..op(
                "post",
                "/v1/offers",
                "createOffer",
                "Offer a fixed-price plan (`offer create`).",
            )
        },
        Op {
            body: Some(s.command::<OfferCmd>("accept")),
            response: s.response::<Accepted>(),
            ..op(
                "post",
                "/v1/offers/{id}/accept",
                "acceptOffer",
                "Accept an offer: creates the plan (`offer accept`).",
            )
        },
        Op {
            query: Some(s.request::<InvoiceQuery>()),
            response: s.response::<InvoicesPage>(),
            ..op(
                "get",
                "/v1/invoices",
                "listInvoices",
                "Local invoices with their lines, a page at a time (`invoices list`).",
            )
        },
        Op {
            query: Some(s.request::<ChangesQuery>()),
            response: s.response::<ChangesPage>(),
            ..op(
                "get",
                "/v1/changes",
                "listChanges",
                "The change history: who changed what, when and why, oldest first, a page at a time (`changes list`).",
            )
        },
        Op {
            response: s.response::<StatusView>(),
            ..op(
                "get",
                "/v1/status",
                "status",
                "Due, leased, retrying and failing plans, unsent and unpaid invoices, the overdue policy's next actions, the last pass (`status`).",
            )
        },
        Op {
            response: s.response::<crate::admin::reports::RevenueReport>(),
            ..op(
                "get",
                "/v1/reports/revenue",
                "revenueReport",
                "ARR and MRR by tier as of now, billed and paid per month for the last 12 months, plans by status (`report revenue`).",
            )
        },
        Op {
            query: Some(s.request::<EventsQuery>()),
            response: s.response::<EventsPage>(),
            ..op(
                "get",
                "/v1/events",
                "listEvents",
                "Plan events of every plan in id order, after a cursor.",
            )
        },
        Op {
            body: Some(s.request::<AckBody>()),
            response: json!({
                "type": "object",
                "properties": { "consumer": { "type": "string" }, "acked_through": { "type": "integer" } },
                "required": ["consumer", "acked_through"]
            }),
            ..op(
                "post",
                "/v1/events/ack",
                "ackEvents",
                "Keep a consumer's cursor on the server.",
            )
        },
        Op {
            body: Some(json!({ "type": "object", "description": "A Stripe event, as Stripe sends it." })),
            response: json!({
                "type": "object",
                "properties": { "received": { "type": "boolean" }, "outcome": { "type": "string" } },
                "required": ["received", "outcome"]
            }),
            ..op(
                "post",
                "/v1/stripe/webhook",
                "stripeWebhook",
                "Stripe's invoice events, authenticated by the Stripe-Signature header, not a token (404 while no endpoint secret is set).",
            )
        },
    ]
}

/// Query parameters from the properties of a query type's schema.
fn query_parameters(schema: &Value) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, s)| {
                    json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": s,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The error schema, once, in `components`: the body with its `type` a reference to one plain
/// `enum` of strings (a `oneOf` of constants defeats client generators).
fn error_schemas() -> (Value, Value) {
    let mut body = Schemas::new().response::<ErrorBody>();
    let kind = Schemas::new().response::<super::error::ErrorType>();
    if let Some(t) = body.pointer_mut("/properties/error/properties/type") {
        *t = json!({ "$ref": "#/components/schemas/ErrorType" });
    }
    (body, kind)
}

fn error_responses(error: &Value, post: bool) -> Map<String, Value> {
    let mut out = Map::new();
    let mut codes = vec![
        (
            "400",
            "Bad input: the CLI's one-line message, and the parameter",
        ),
        ("401", "No valid token"),
        ("404", "No such id"),
        ("500", "A bug: the request changed nothing and was logged"),
        (
            "503",
            "The database is unreachable: retry after Retry-After seconds",
        ),
    ];
    if post {
        codes.extend([
            ("403", "A read token on a write"),
            ("409", "A conflicting concurrent change: retry"),
            ("413", "A body over 64 KiB"),
            ("415", "A body that is not JSON"),
        ]);
    }
    for (code, description) in codes {
        out.insert(
            code.into(),
            json!({
                "description": description,
                "content": { "application/json": { "schema": error } }
            }),
        );
    }
    out
}

/// The whole document.
pub fn document() -> Value {
    let (error_body, error_type) = error_schemas();
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let mut paths = Map::new();
    for o in operations() {
        let mut parameters = vec![];
        if o.path.contains("{id}") {
            parameters.push(json!({
                "name": "id", "in": "path", "required": true,
                "schema": { "type": "integer", "format": "int64", "minimum": 1 }
            }));
        }
        if let Some(q) = &o.query {
            parameters.extend(query_parameters(q));
        }
        let post = o.method == "post";
        if post {
            parameters.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "A retry with the same key gets the first response back (24 hours), never a second write.",
                "schema": { "type": "string", "minLength": 1, "maxLength": 255 }
            }));
        }
        if post && o.records_change() {
            parameters.push(json!({
                "name": "Plan-Invoicer-Reason", "in": "header", "required": false,
                "description": "Why: kept with the write in the change history (`GET /v1/changes`). UTF-8, at most 1,000 characters, no control characters.",
                "schema": { "type": "string", "minLength": 1, "maxLength": 1000 }
            }));
            parameters.push(json!({
                "name": "Plan-Invoicer-On-Behalf-Of", "in": "header", "required": false,
                "description": "The host application's end user the write is made for, kept in the change history. UTF-8, at most 200 characters, no control characters.",
                "schema": { "type": "string", "minLength": 1, "maxLength": 200 }
            }));
        }
        let mut responses = error_responses(&error, post);
        responses.insert(
            "200".into(),
            json!({
                "description": "OK",
                "content": { "application/json": { "schema": o.response } }
            }),
        );
        let public = super::PUBLIC_PATHS.contains(&o.path.as_str());
        let mut operation = json!({
            "operationId": o.id,
            "summary": o.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if public {
            operation["security"] = json!([]);
        }
        if let Some(body) = o.body {
            operation["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": body } }
            });
        }
        let entry = paths.entry(o.path.clone()).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "plan-invoicer API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin commands of plan-invoicer over HTTP, and the plan-events feed. docs/API.md walks through it."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "components": {
            "schemas": { "Error": error_body, "ErrorType": error_type },
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "A token from `plan-invoicer api-token create`." }
            }
        },
        "paths": paths,
    })
}

/// Every operation as `(method, path)`, for the test that calls each one.
pub fn operation_list() -> Vec<(&'static str, String)> {
    operations()
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_the_command_fields_without_the_path_id() {
        let doc = document();
        let seats = &doc["paths"]["/v1/plans/{id}/seats"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        assert!(seats["properties"]["count"].is_object(), "{seats}");
        assert!(seats["properties"].get("id").is_none(), "{seats}");
        assert_eq!(seats["required"], json!(["count"]));
        assert_eq!(seats["additionalProperties"], json!(false), "{seats}");
        let create = &doc["paths"]["/v1/plans"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        for field in [
            "customer",
            "tier",
            "schedule",
            "licenses",
            "automanage_licenses",
        ] {
            assert!(create["properties"][field].is_object(), "{field}: {create}");
        }
    }

    #[test]
    fn the_webhook_is_documented_without_a_token() {
        let doc = document();
        let hook = &doc["paths"]["/v1/stripe/webhook"]["post"];
        assert_eq!(hook["security"], json!([]), "{hook}");
        assert!(hook["responses"]["200"].is_object());
    }

    #[test]
    fn every_operation_has_a_response_schema_and_errors() {
        let doc = document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() >= 20, "{}", paths.len());
        for (path, item) in &paths {
            for (method, o) in item.as_object().cloned().unwrap_or_default() {
                assert!(
                    o["responses"]["200"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path}"
                );
                assert!(o["responses"]["400"].is_object(), "{method} {path}");
            }
        }
        let list = &doc["paths"]["/v1/invoices"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.contains(&"starting_after") && names.contains(&"limit"),
            "{names:?}"
        );
    }
}
