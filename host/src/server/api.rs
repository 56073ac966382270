//! The HTTP/JSON API of the [`Server`], on axum. Every operator endpoint needs the operator key
//! (`Authorization: Bearer <key>`; only its SHA-256 is kept). Bodies are read with the engine's
//! JSON reader, so a malformed body answers 400 with every error's JSON path and stores nothing.
//!
//! - `GET /healthz`
//! - `POST /v1/plans` (a plan: a new version of its id), `GET /v1/plans`
//! - `PUT /v1/customers/{id}`, `GET /v1/customers/{id}`
//! - `POST /v1/events`: one event, a JSON array, or NDJSON (`Content-Type: application/x-ndjson`);
//!   per-event results, good events committed before the answer
//! - `GET /v1/customers/{id}/invoice?date=2026-11-15`: the preview of the period holding the date
//! - `GET /v1/customers/{id}/usage`: the current period so far and its projected bill,
//!   incremental (see `server::live`); `GET /v1/customers/{id}/usage/stream`: the same as
//!   server-sent events, one on connect and one after each ingest that adds to it
//! - `POST /v1/close` `{"date": "2026-11-15"}`: finalize that period's invoices
//! - `GET /v1/invoices?state=open&customer=acme`, `GET /v1/invoices/{number}` (with its
//!   collection), `GET /v1/invoices/{number}/html`
//! - collect (`api/collect.rs`, `docs/collect.md`): `GET|PUT /v1/plans/{id}/collection`,
//!   `GET /v1/invoices/{number}/collection`, `POST /v1/invoices/{number}/payments`,
//!   `POST /v1/payments/{id}/refunds`, `POST /v1/invoices/{number}/credit-notes`,
//!   `POST /v1/invoices/{number}/void`, `/mark-uncollectible`, `/collect`,
//!   `GET /v1/customers/{id}/account-credit`, `POST /v1/dunning/run`, `GET /v1/outbox`,
//!   `POST /v1/outbox/claim`, `POST /v1/outbox/{id}/ack`

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use ratecard_engine::error::ErrorReport;
use ratecard_engine::plan::Plan;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use ratecard_engine::invoice::Invoice;
use ratecard_engine::usage::Event;
use schemars::JsonSchema;

use super::openapi::{Body, Operation, schema};

mod collect;
use super::{CustomerRecord, EventOutcome, LiveUsage, PlanRef, Server, ServerError, Subscription};

/// The largest request body: 16 MiB (a batch of about 60,000 typical events).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The SHA-256 of an operator key, as kept.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Clone)]
pub(super) struct Api {
    pub(super) server: Arc<Server>,
}

/// Every operation of the API: its documentation and its handler. The router and
/// `/openapi.json` are both made from this list.
fn operations() -> Vec<(Operation, MethodRouter<Api>)> {
    use super::openapi::Body::{EventStream, Events, Json};
    let op = |method, path, id, summary, request, response| Operation {
        method,
        path,
        id,
        summary,
        operator: true,
        query: &[],
        request,
        response,
    };
    #[cfg_attr(not(feature = "plugins"), allow(unused_mut))]
    let mut operations = vec![
        (
            Operation {
                operator: false,
                ..op(
                    "get",
                    "/healthz",
                    "health",
                    "Is the server up",
                    Body::None,
                    Json(schema::<Health>),
                )
            },
            get(health),
        ),
        (
            Operation {
                operator: false,
                ..op(
                    "get",
                    "/openapi.json",
                    "openapi",
                    "This document",
                    Body::None,
                    Body::None,
                )
            },
            get(openapi_document),
        ),
        (
            op(
                "post",
                "/v1/plans",
                "addPlan",
                "Add a plan: version 1 of a new id, or the next version of an existing one (validated; an invalid plan answers every error with its path and stores nothing)",
                Json(schema::<Plan>),
                Json(schema::<PlanRef>),
            ),
            post(add_plan),
        ),
        (
            op(
                "get",
                "/v1/plans",
                "listPlans",
                "Every plan version",
                Body::None,
                Json(schema::<PlanList>),
            ),
            get(list_plans),
        ),
        (
            op(
                "put",
                "/v1/customers/{id}",
                "putCustomer",
                "Create or replace a customer: timezone, attributes, credits, subscription (start, billing anchor) and the plan version they are on",
                Json(schema::<CustomerRecord>),
                Json(schema::<CustomerRecord>),
            ),
            put(put_customer),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}",
                "getCustomer",
                "A customer",
                Body::None,
                Json(schema::<CustomerRecord>),
            ),
            get(get_customer),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}/subscription",
                "getSubscription",
                "The customer's subscription: the plan version they are on, their plan moves and cancellation",
                Body::None,
                Json(schema::<Subscription>),
            ),
            get(get_subscription),
        ),
        (
            op(
                "post",
                "/v1/customers/{id}/plan-change",
                "changePlan",
                "Move the customer to another plan version at an instant: the period holding it is prorated (each plan rates its part), later periods use the new version",
                Json(schema::<PlanChangeRequest>),
                Json(schema::<Subscription>),
            ),
            post(change_plan),
        ),
        (
            op(
                "post",
                "/v1/customers/{id}/cancel",
                "cancelSubscription",
                "Cancel at the end of the current period (no body, or `at` left out: it is billed whole), or at `at` (`\"now\"`, a local date or date-time, an RFC 3339 instant: the period holding it ends there and is billed for its part, flat fees prorated); no later period is billed, no event from the end on is accepted (idempotent)",
                Json(schema::<CancelRequest>),
                Json(schema::<Subscription>),
            ),
            post(cancel),
        ),
        (
            Operation {
                query: &[("date", "a local date inside the period, `2026-11-15`", true)],
                ..op(
                    "get",
                    "/v1/customers/{id}/invoice",
                    "previewInvoice",
                    "The invoice of the customer's period holding the date, from the events stored so far (nothing is stored)",
                    Body::None,
                    Json(schema::<Invoice>),
                )
            },
            get(preview),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}/usage",
                "liveUsage",
                "The current period so far: quantity and amount per line, and the projected bill (incremental: reads only the events stored since the last read)",
                Body::None,
                Json(schema::<LiveUsage>),
            ),
            get(live_usage),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}/usage/stream",
                "liveUsageStream",
                "Live usage as server-sent events (`event: usage`): on connect and after each ingest that adds to it",
                Body::None,
                EventStream(schema::<LiveUsage>),
            ),
            get(usage_stream),
        ),
        (
            op(
                "post",
                "/v1/events",
                "ingestEvents",
                "Ingest one event, a JSON array or NDJSON lines: per-event results (stored, duplicate, rejected with its index, id and reason); good events are committed before the answer",
                Events(schema::<Event<'static>>),
                Json(schema::<IngestResult>),
            ),
            post(ingest),
        ),
        (
            op(
                "post",
                "/v1/close",
                "closePeriod",
                "Finalize the invoices of the period holding the date, for every subscribed customer: idempotent, numbered without gaps",
                Json(schema::<CloseRequest>),
                Json(schema::<CloseResult>),
            ),
            post(close),
        ),
        (
            Operation {
                query: &[
                    (
                        "state",
                        "only invoices in this state: open, paid, void, uncollectible",
                        false,
                    ),
                    ("customer", "only this customer's invoices", false),
                ],
                ..op(
                    "get",
                    "/v1/invoices",
                    "listInvoices",
                    "Final invoices, by number, each with its collection (state, due date, balance)",
                    Body::None,
                    Json(schema::<InvoiceList>),
                )
            },
            get(list_invoices),
        ),
        (
            op(
                "get",
                "/v1/invoices/{number}",
                "getInvoice",
                "A final invoice (`invoice`: the engine's, as issued) and its collection",
                Body::None,
                Json(schema::<FinalInvoice>),
            ),
            get(get_invoice),
        ),
        (
            op(
                "get",
                "/v1/invoices/{number}/html",
                "getInvoiceHtml",
                "A final invoice as a printable HTML page",
                Body::None,
                Body::Html,
            ),
            get(get_invoice_html),
        ),
    ];
    operations.extend(collect::operations());
    #[cfg(feature = "plugins")]
    operations.extend(plugin_operations());
    operations.extend(super::portal::operations());
    operations.extend(super::reports::operations());
    operations
}

/// The plugin operations (a server built with the plugin runtime).
#[cfg(feature = "plugins")]
fn plugin_operations() -> Vec<(Operation, MethodRouter<Api>)> {
    use super::openapi::Body::Json;
    use super::plugins::PluginCheck;
    use super::store::StoredPlugin;
    let op = |method, path, id, summary, request, response| Operation {
        method,
        path,
        id,
        summary,
        operator: true,
        query: &[],
        request,
        response,
    };
    vec![
        (
            Operation {
                query: &[(
                    "config",
                    "the config the dry run gives the plugin, as JSON (URL-encoded; default `{}`): a plugin whose config has required fields needs one",
                    false,
                )],
                ..op(
                    "post",
                    "/v1/plugins",
                    "uploadPlugin",
                    "Upload a plugin component (`application/wasm`): checked as `ratecard plugin check` checks it (contract, limits, dry run) and stored by name@version and sha256, not active yet",
                    Body::Wasm,
                    Json(schema::<PluginCheck>),
                )
            },
            post(upload_plugin),
        ),
        (
            op(
                "get",
                "/v1/plugins",
                "listPlugins",
                "Every uploaded plugin version and which is active",
                Body::None,
                Json(schema::<Vec<StoredPlugin>>),
            ),
            get(list_plugins),
        ),
        (
            op(
                "post",
                "/v1/plugins/{reference}/activate",
                "activatePlugin",
                "Make an uploaded version (by sha256) the one plans naming the reference run",
                Json(schema::<ActivateRequest>),
                Json(schema::<StoredPlugin>),
            ),
            post(activate_plugin),
        ),
    ]
}

/// The OpenAPI 3.1 document of [`router`]'s operations.
pub fn openapi() -> Value {
    let operations: Vec<Operation> = operations().into_iter().map(|(op, _)| op).collect();
    super::openapi::document(&operations)
}

/// The API's routes (see [`operations`]), accepting the operator keys of the server's store.
pub fn router(server: Arc<Server>) -> Router {
    let api = Api { server };
    let mut operator = Router::new();
    let mut public = Router::new();
    for (op, handler) in operations() {
        if op.operator {
            operator = operator.route(op.path, handler);
        } else {
            public = public.route(op.path, handler);
        }
    }
    let operator = operator
        .layer(middleware::from_fn_with_state(api.clone(), require_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    public.merge(operator).with_state(api)
}

#[derive(Serialize, JsonSchema)]
struct Health {
    ok: bool,
}

async fn health() -> Response {
    json_response(StatusCode::OK, &Health { ok: true })
}

async fn openapi_document() -> Response {
    json_response(StatusCode::OK, &openapi())
}

/// `GET /v1/plans`.
#[derive(Serialize, JsonSchema)]
struct PlanList {
    plans: Vec<PlanVersion>,
}

#[derive(Serialize, JsonSchema)]
struct PlanVersion {
    id: String,
    version: i64,
    plan: Plan,
}

/// `POST /v1/events`.
#[derive(Serialize, JsonSchema)]
struct IngestResult {
    accepted: usize,
    rejected: usize,
    /// One per event, in the order given.
    results: Vec<EventOutcome>,
}

/// `POST /v1/close`.
#[derive(Serialize, JsonSchema)]
struct CloseResult {
    invoices: Vec<ClosedInvoice>,
}

#[derive(Serialize, JsonSchema)]
struct ClosedInvoice {
    number: i64,
    customer_id: String,
}

/// A final invoice: its number, the engine's invoice (never changed) and its collection
/// (state, due date, ledger, balance: see `docs/collect.md`).
#[derive(Serialize, JsonSchema)]
struct FinalInvoice {
    number: i64,
    customer_id: String,
    #[schemars(with = "Invoice")]
    invoice: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<super::collect::CollectionView>,
}

#[derive(Serialize, JsonSchema)]
struct InvoiceList {
    invoices: Vec<FinalInvoice>,
}

async fn require_key(State(api): State<Api>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // The key's hash is looked up: what is compared is a SHA-256, not the key.
    let accepted = match given {
        Some(key) => match api.server.store().has_key_hash(&key_hash(key)).await {
            Ok(found) => found,
            Err(failure) => return server_error(failure.into()),
        },
        None => false,
    };
    if !accepted {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an operator key is needed: `Authorization: Bearer <key>` (`ratecard serve --demo` prints one)",
        );
    }
    next.run(request).await
}

pub(super) fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

pub(super) fn server_error(failure: ServerError) -> Response {
    match failure {
        ServerError::Store(store) => {
            log_store_error(&store);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
                "the store could not complete the request; nothing was acknowledged: retry",
            )
        }
        ServerError::Rate(rate) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": ErrorReport::from(&rate)}),
        ),
        ServerError::NotFound { .. } => {
            error(StatusCode::NOT_FOUND, "not_found", &failure.to_string())
        }
        ServerError::Invalid(message) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &message)
        }
        ServerError::Conflict(message) => error(StatusCode::CONFLICT, "conflict", &message),
        ServerError::Payment { timed_out, message } => {
            if timed_out {
                error(StatusCode::GATEWAY_TIMEOUT, "provider_timeout", &message)
            } else {
                error(StatusCode::PAYMENT_REQUIRED, "payment_failed", &message)
            }
        }
    }
}

/// Storage errors are logged (their text may name files, never sent).
fn log_store_error(error: &dyn std::fmt::Display) {
    tracing::error!(%error, "storage");
}

/// Reads a JSON body as `T`, or answers 400 with every error's JSON path.
pub(super) fn read_body<T: serde::de::DeserializeOwned>(
    document: &str,
    body: &Bytes,
) -> Result<T, Response> {
    let text = std::str::from_utf8(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            &format!("the body is not UTF-8: {e}"),
        )
    })?;
    ratecard_engine::json::parse(text).map_err(|errors| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": ErrorReport::invalid_json(document, &errors)}),
        )
    })
}

async fn add_plan(State(api): State<Api>, body: Bytes) -> Response {
    let plan: Plan = match read_body("plan", &body) {
        Ok(plan) => plan,
        Err(response) => return response,
    };
    match api.server.add_plan(plan).await {
        Ok(plan) => json_response(StatusCode::CREATED, &plan),
        Err(failure) => server_error(failure),
    }
}

async fn list_plans(State(api): State<Api>) -> Response {
    let plans = api
        .server
        .plans()
        .into_iter()
        .map(|(r, plan)| PlanVersion {
            id: r.id,
            version: r.version,
            plan,
        })
        .collect();
    json_response(StatusCode::OK, &PlanList { plans })
}

async fn put_customer(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let mut customer: CustomerRecord = match read_body("customer", &body) {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    if !customer.id.is_empty() && customer.id != id {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &format!(
                "$.id: `{}` is not the customer of the URL, `{id}`",
                customer.id
            ),
        );
    }
    customer.id = id;
    match api.server.put_customer(customer.clone()).await {
        Ok(()) => json_response(StatusCode::OK, &customer),
        Err(failure) => server_error(failure),
    }
}

async fn get_customer(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.customer(&id).await {
        Ok(customer) => json_response(StatusCode::OK, &customer),
        Err(failure) => server_error(failure),
    }
}

/// One event, an array of events, or NDJSON lines. A line or element that is not JSON is a
/// rejected event with its index; the others are ingested.
async fn ingest(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let mut unreadable = Vec::new();
    // NDJSON: the line of each event, for the messages of those that cannot be read.
    let mut lines: Vec<usize> = Vec::new();
    // Each event's own text, as sent: no tree is built for a good one.
    let texts: Vec<&str> = if ndjson {
        let mut texts = Vec::new();
        for (line_idx, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.push(line_idx + 1);
            match std::str::from_utf8(line) {
                Ok(text) => texts.push(text),
                Err(e) => {
                    unreadable.push((
                        texts.len(),
                        format!("line {}: not UTF-8: {e}", line_idx + 1),
                    ));
                    texts.push("null");
                }
            }
        }
        texts
    } else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let read = match first {
            Some(b'{') => serde_json::from_slice::<&serde_json::value::RawValue>(&body)
                .map(|one| vec![one.get()]),
            _ => serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body).map(|all| {
                all.into_iter()
                    .map(serde_json::value::RawValue::get)
                    .collect()
            }),
        };
        match read {
            Ok(texts) => texts,
            Err(e) if e.is_data() => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "$: expected an event or an array of events",
                );
            }
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, "invalid_json", &format!("$: {e}"));
            }
        }
    };
    match api.server.ingest_texts(&texts).await {
        Ok(mut outcomes) => {
            // An NDJSON line that was no event says which line, and whether it was JSON at all.
            for (index, outcome) in outcomes.iter_mut().enumerate() {
                if let (Some(line), EventOutcome::Rejected { error, .. }) =
                    (lines.get(index), outcome)
                    && error.starts_with("not a valid event")
                {
                    *error = match serde_json::from_str::<serde::de::IgnoredAny>(texts[index]) {
                        Ok(_) => format!("line {line}: {error}"),
                        Err(e) => format!("line {line}: not JSON: {e}"),
                    };
                }
            }
            for (index, message) in unreadable {
                if let Some(slot) = outcomes.get_mut(index) {
                    *slot = EventOutcome::Rejected {
                        index,
                        id: None,
                        error: message,
                    };
                }
            }
            let accepted = outcomes.iter().filter(|o| o.is_accepted()).count();
            let rejected = outcomes.len() - accepted;
            let duplicates = outcomes
                .iter()
                .filter(|o| matches!(o, EventOutcome::Duplicate { .. }))
                .count();
            tracing::info!(accepted, duplicates, rejected, "ingest");
            json_response(
                StatusCode::OK,
                &IngestResult {
                    accepted,
                    rejected,
                    results: outcomes,
                },
            )
        }
        Err(failure) => server_error(failure),
    }
}

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    query.as_deref()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

async fn preview(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(date) = query_param(&query, "date") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "give the period as `?date=YYYY-MM-DD` (a day inside it)",
        );
    };
    match api.server.preview(&id, &date).await {
        Ok(Some(invoice)) => json_response(StatusCode::OK, &invoice),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_subscribed",
            &format!("customer `{id}` is not subscribed in the period containing {date}"),
        ),
        Err(failure) => server_error(failure),
    }
}

/// `POST /v1/close`: a local date inside the period to close.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    date: String,
}

async fn close(State(api): State<Api>, body: Bytes) -> Response {
    let request: CloseRequest = match read_body("close", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match api.server.close(&request.date).await {
        Ok(invoices) => {
            tracing::info!(date = %request.date, invoices = invoices.len(), "period closed");
            let invoices = invoices
                .iter()
                .map(|i| ClosedInvoice {
                    number: i.number,
                    customer_id: i.customer_id.clone(),
                })
                .collect();
            json_response(StatusCode::OK, &CloseResult { invoices })
        }
        Err(failure) => server_error(failure),
    }
}

fn invoice_json(
    stored: &super::store::StoredInvoice,
    book: Option<&super::collect::Book>,
) -> Result<FinalInvoice, ServerError> {
    Ok(FinalInvoice {
        number: stored.number,
        customer_id: stored.customer_id.clone(),
        invoice: serde_json::from_str::<Value>(&stored.body).unwrap_or(Value::Null),
        collection: book.map(super::collect::Book::view).transpose()?,
    })
}

async fn list_invoices(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let (state, customer) = match collect::invoice_filter(&query) {
        Ok(filter) => filter,
        Err(response) => return response,
    };
    let books = match api.server.invoice_books(state, customer.as_deref()).await {
        Ok(books) => books,
        Err(failure) => return server_error(failure),
    };
    let invoices: Result<Vec<FinalInvoice>, ServerError> = books
        .iter()
        .map(|(invoice, book)| invoice_json(invoice, Some(book)))
        .collect();
    match invoices {
        Ok(invoices) => json_response(StatusCode::OK, &InvoiceList { invoices }),
        Err(failure) => server_error(failure),
    }
}

async fn get_invoice(State(api): State<Api>, Path(number): Path<String>) -> Response {
    let Ok(number) = number.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such invoice");
    };
    let book = match api.server.store().book(number).await {
        Ok(book) => book,
        Err(failure) => return server_error(failure.into()),
    };
    match api.server.store().invoice(number).await {
        Ok(Some(invoice)) => match invoice_json(&invoice, book.as_ref()) {
            Ok(found) => json_response(StatusCode::OK, &found),
            Err(failure) => server_error(failure),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such invoice"),
        Err(failure) => server_error(failure.into()),
    }
}

async fn live_usage(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.live_usage(&id).await {
        Ok(Some(usage)) => json_response(StatusCode::OK, &usage),
        Ok(None) => not_subscribed(&id),
        Err(failure) => server_error(failure),
    }
}

fn not_subscribed(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_subscribed",
        &format!("customer `{id}` has no subscription in force now"),
    )
}

/// Server-sent events of a customer's live usage: `event: usage` with the JSON of
/// `GET /v1/customers/{id}/usage`, on connect and after each ingest that adds to it (bursts of
/// ingests are coalesced: one event per wake-up); a comment every 15 s keeps proxies from
/// closing the stream.
async fn usage_stream(State(api): State<Api>, Path(id): Path<String>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    // The customer must exist before a stream opens (a 404, not an empty stream).
    match api.server.live_usage(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_subscribed(&id),
        Err(failure) => return server_error(failure),
    }
    let changes = api.server.usage_changes();
    let state = (api, id, changes, true);
    let stream = futures_util::stream::unfold(state, |(api, id, mut changes, first)| async move {
        if !first {
            loop {
                match changes.recv().await {
                    Ok(customer) if *customer == *id => break,
                    Ok(_) => {}
                    // Missed announcements: one of them may be ours.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
            // Coalesce a burst: whatever else is already queued is covered by this read.
            while let Ok(_other) = changes.try_recv() {}
        }
        let event = match api.server.live_usage(&id).await {
            Ok(Some(usage)) => Event::default()
                .event("usage")
                .data(serde_json::to_string(&usage).unwrap_or_else(|_| "{}".to_owned())),
            Ok(None) => Event::default().event("ended").data("{}"),
            Err(ServerError::Store(store)) => {
                log_store_error(&store);
                Event::default()
                    .event("error")
                    .data(r#"{"message": "the store could not be read: retry"}"#)
            }
            Err(failure) => Event::default()
                .event("error")
                .data(json!({"message": failure.to_string()}).to_string()),
        };
        Some((
            Ok::<_, std::convert::Infallible>(event),
            (api, id, changes, false),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

async fn get_invoice_html(State(api): State<Api>, Path(number): Path<String>) -> Response {
    let Ok(number) = number.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such invoice");
    };
    let collection = match api.server.store().book(number).await {
        Ok(book) => match book.as_ref().map(super::collect::Book::view).transpose() {
            Ok(view) => view,
            Err(overflow) => return server_error(overflow.into()),
        },
        Err(failure) => return server_error(failure.into()),
    };
    match api.server.store().invoice(number).await {
        Ok(Some(stored)) => match serde_json::from_str::<Invoice>(&stored.body) {
            Ok(invoice) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                super::html::invoice_page(number, &invoice, collection.as_ref()),
            )
                .into_response(),
            Err(failure) => server_error(ServerError::Invalid(format!(
                "stored invoice {number}: {failure}"
            ))),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such invoice"),
        Err(failure) => server_error(failure.into()),
    }
}

/// `POST /v1/customers/{id}/plan-change`.
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanChangeRequest {
    /// The plan version to move to.
    plan: PlanRef,
    /// When: a local date or date-time in the customer's timezone, or an RFC 3339 instant.
    at: String,
}

async fn get_subscription(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.subscription(&id).await {
        Ok(subscription) => json_response(StatusCode::OK, &subscription),
        Err(failure) => server_error(failure),
    }
}

async fn change_plan(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let request: PlanChangeRequest = match read_body("plan_change", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match api.server.change_plan(&id, request.plan, &request.at).await {
        Ok(subscription) => {
            tracing::info!(customer = %id, at = %request.at, "plan changed");
            json_response(StatusCode::OK, &subscription)
        }
        Err(failure) => server_error(failure),
    }
}

/// `POST /v1/customers/{id}/cancel` (the body is optional).
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    /// When the subscription ends: `"now"`, a local date or date-time in the customer's
    /// timezone, or an RFC 3339 instant; left out, the end of the current period.
    #[serde(default)]
    at: Option<String>,
}

async fn cancel(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest { at: None }
    } else {
        match read_body::<CancelRequest>("cancel", &body) {
            Ok(request) => request,
            Err(response) => return response,
        }
    };
    match api.server.cancel(&id, request.at.as_deref()).await {
        Ok(subscription) => {
            tracing::info!(customer = %id, at = ?request.at, "subscription cancelled");
            json_response(StatusCode::OK, &subscription)
        }
        Err(failure) => server_error(failure),
    }
}

#[cfg(feature = "plugins")]
async fn upload_plugin(State(api): State<Api>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let config = match query_param(&query, "config") {
        None => None,
        Some(text) => match serde_json::from_str(&collect::percent_decoded(&text)) {
            Ok(config) => Some(config),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("?config: not JSON ({e})"),
                );
            }
        },
    };
    match api.server.upload_plugin(&body, config).await {
        Ok(check) => {
            tracing::info!(reference = %check.reference, sha256 = %check.sha256, "plugin uploaded");
            json_response(StatusCode::CREATED, &check)
        }
        Err(failure) => server_error(failure),
    }
}

#[cfg(feature = "plugins")]
async fn list_plugins(State(api): State<Api>) -> Response {
    match api.server.plugins_uploaded().await {
        Ok(plugins) => json_response(StatusCode::OK, &plugins),
        Err(failure) => server_error(failure),
    }
}

/// `POST /v1/plugins/{reference}/activate`.
#[cfg(feature = "plugins")]
#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ActivateRequest {
    /// The uploaded version's sha256 (hex).
    sha256: String,
}

#[cfg(feature = "plugins")]
async fn activate_plugin(
    State(api): State<Api>,
    Path(reference): Path<String>,
    body: Bytes,
) -> Response {
    let request: ActivateRequest = match read_body("activate", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match api
        .server
        .activate_plugin(&reference, &request.sha256)
        .await
    {
        Ok(plugin) => {
            tracing::info!(%reference, sha256 = %request.sha256, "plugin activated");
            json_response(StatusCode::OK, &plugin)
        }
        Err(failure) => server_error(failure),
    }
}
