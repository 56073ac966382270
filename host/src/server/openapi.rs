//! The OpenAPI 3.1 document of the API (`GET /openapi.json`), made from the same table of
//! operations the router is built from (see `api::operations`), with the request and response
//! schemas generated from the Rust types (schemars, JSON Schema 2020-12, which OpenAPI 3.1
//! uses as it is). An operation cannot be routed without being documented, nor documented
//! without being routed.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

/// A request or response body.
#[derive(Clone, Copy)]
pub(super) enum Body {
    None,
    /// `application/json` of a type.
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// One event as JSON, an array of them, or NDJSON lines.
    Events(fn(&mut SchemaGenerator) -> Schema),
    /// `text/event-stream`, each event's data of a type.
    EventStream(fn(&mut SchemaGenerator) -> Schema),
    /// `text/html`.
    Html,
    /// `text/csv` (RFC 4180).
    Csv,
    /// `application/wasm`: a WebAssembly component.
    #[cfg_attr(not(feature = "plugins"), allow(dead_code))]
    Wasm,
}

/// The schema of `T`, as a reference into `components.schemas` where it has a name.
pub(super) fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One documented operation.
pub(super) struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// Needs the operator key.
    pub operator: bool,
    /// Query parameters: name, description, required.
    pub query: &'static [(&'static str, &'static str, bool)],
    pub request: Body,
    pub response: Body,
}

fn content(body: Body, generator: &mut SchemaGenerator) -> Option<Value> {
    Some(match body {
        Body::None => return None,
        Body::Json(schema) => json!({"application/json": {"schema": schema(generator)}}),
        Body::Events(schema) => {
            let one = schema(generator);
            json!({
                "application/json": {"schema": {"oneOf": [one, {"type": "array", "items": one}]}},
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one event per line"}
                }
            })
        }
        Body::EventStream(schema) => json!({"text/event-stream": {
            "schema": {"type": "string", "description": "server-sent events; each `data:` is the JSON below"},
            "x-event-data": schema(generator)
        }}),
        Body::Html => json!({"text/html": {"schema": {"type": "string"}}}),
        Body::Csv => json!({"text/csv": {"schema": {"type": "string"}}}),
        Body::Wasm => {
            json!({"application/wasm": {"schema": {"type": "string", "format": "binary"}}})
        }
    })
}

/// The document of `operations`.
pub(super) fn document(operations: &[Operation]) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for op in operations {
        let mut operation = Map::new();
        operation.insert("operationId".into(), op.id.into());
        operation.insert("summary".into(), op.summary.into());
        let mut parameters: Vec<Value> = Vec::new();
        for segment in op.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                parameters.push(json!({"name": name, "in": "path", "required": true,
                                       "schema": {"type": "string"}}));
            }
        }
        for (name, description, required) in op.query {
            parameters.push(json!({"name": name, "in": "query", "required": required,
                                   "description": description, "schema": {"type": "string"}}));
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), parameters.into());
        }
        if let Some(content) = content(op.request, &mut generator) {
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": content}),
            );
        }
        let mut responses = Map::new();
        let mut ok = json!({"description": "success"});
        if let Some(content) = content(op.response, &mut generator) {
            ok["content"] = content;
        }
        let ok_status = if op.method == "post"
            && (matches!(
                op.path,
                "/v1/plans"
                    | "/v1/plugins"
                    | "/v1/invoices/{number}/payments"
                    | "/v1/payments/{id}/refunds"
                    | "/v1/invoices/{number}/credit-notes"
            ) || op.path.ends_with("/portal-links"))
        {
            "201"
        } else {
            "200"
        };
        responses.insert(ok_status.into(), ok);
        let error = json!({"description": "the error, with its code and (for bad input) the JSON path",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}});
        if op.request.is_some() {
            responses.insert("400".into(), error.clone());
            responses.insert("422".into(), error.clone());
        }
        // Portal operations take a customer's portal token instead (`server::portal`).
        let portal = op.path.starts_with("/portal/");
        if op.operator || portal {
            responses.insert("401".into(), error.clone());
            let scheme = if portal { "portalToken" } else { "operatorKey" };
            let mut requirement = Map::new();
            requirement.insert(scheme.into(), json!([]));
            operation.insert("security".into(), json!([requirement]));
        }
        if op.path.contains('{') {
            responses.insert("404".into(), error.clone());
        }
        if op.operator {
            responses.insert("503".into(), error);
        }
        operation.insert("responses".into(), responses.into());
        let entry = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(op.method.to_owned(), operation.into());
        }
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(
        "ApiError".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "`unauthorized`, `invalid_json`, `invalid_plan`, `not_found`, `invalid`, `conflict` (409), `payment_failed` (402), `provider_timeout` (504), `storage`, ..."},
                    "message": {"type": "string"},
                    "document": {"type": "string"},
                    "path": {"type": "string", "description": "the JSON path of what was wrong"},
                    "issues": {"type": "array", "items": {"type": "object"}}
                }
            }}
        }),
    );
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Ratecard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Usage-based billing: plans and their versions, customers, idempotent event ingest, live usage, invoice previews and period close, collection (invoice states, payments, refunds, credit notes, dunning, an outbox). Amounts are decimal strings."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"operatorKey": {"type": "http", "scheme": "bearer",
                "description": "an operator key (`ratecard keys create`; `ratecard serve --demo` prints one)"},
                "portalToken": {"type": "http", "scheme": "bearer",
                "description": "a customer's portal token (`POST /v1/customers/{id}/portal-links`): opens only `/portal/v1/…`, only that customer's data"}}
        }
    })
}

impl Body {
    fn is_some(self) -> bool {
        !matches!(self, Body::None)
    }
}
