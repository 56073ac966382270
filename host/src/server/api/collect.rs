//! The collect routes (see `docs/collect.md`): collection settings per plan, net terms per
//! customer, an invoice's
//! collection (state, due date, ledger), payments, refunds, credit notes, void and
//! uncollectible, charging through the provider, dunning and the outbox.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Api, error, json_response, key_hash, query_param, read_body, server_error};
use crate::server::ServerError;
use crate::server::collect::{
    Book, CollectionSettings, CollectionView, CreditNoteRequest, CreditNoteView, CustomerTerms,
    CustomerTermsRequest, InvoiceState, PaymentRequest, PaymentView, Recorded, RefundRequest,
    RefundView, StateRequest,
};
use crate::server::openapi::{Body, Operation, schema};
use crate::server::store::collect::{Ack, OutboxMessage};

/// The collect operations: documentation and handler.
pub(super) fn operations() -> Vec<(Operation, MethodRouter<Api>)> {
    use Body::Json;
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
            op(
                "get",
                "/v1/customers/{id}/collection",
                "getCustomerTerms",
                "The customer's net terms: their own if set, their plan's, and the one in force",
                Body::None,
                Json(schema::<CustomerTerms>),
            ),
            get(get_customer_terms),
        ),
        (
            op(
                "put",
                "/v1/customers/{id}/collection",
                "putCustomerTerms",
                "Set the customer's own net terms over their plan's (`null`: the plan's again), for invoices issued from now on",
                Json(schema::<CustomerTermsRequest>),
                Json(schema::<CustomerTerms>),
            ),
            axum::routing::put(put_customer_terms),
        ),
        (
            op(
                "get",
                "/v1/plans/{id}/collection",
                "getCollectionSettings",
                "The plan's net terms and dunning schedule (net 30 and no dunning when unset)",
                Body::None,
                Json(schema::<CollectionSettings>),
            ),
            get(get_settings),
        ),
        (
            op(
                "put",
                "/v1/plans/{id}/collection",
                "putCollectionSettings",
                "Set the plan's net terms and dunning schedule (server-side settings of the plan id, for invoices issued from now on)",
                Json(schema::<CollectionSettings>),
                Json(schema::<CollectionSettings>),
            ),
            axum::routing::put(put_settings),
        ),
        (
            op(
                "get",
                "/v1/invoices/{number}/collection",
                "getInvoiceCollection",
                "The invoice's state, due date, payments, refunds, credit notes, transitions and balance",
                Body::None,
                Json(schema::<CollectionView>),
            ),
            get(get_collection),
        ),
        (
            op(
                "post",
                "/v1/invoices/{number}/payments",
                "recordPayment",
                "Record a payment (partial, whole, or beyond the balance: the excess is account credit for the next invoice); idempotent by reference (the same reference again answers the same payment, other figures with it are a conflict)",
                Json(schema::<PaymentRequest>),
                Json(schema::<PaymentResult>),
            ),
            post(record_payment),
        ),
        (
            op(
                "post",
                "/v1/payments/{id}/refunds",
                "refundPayment",
                "Refund part or all of a payment (never more than it has left, nor an overpayment a later invoice already took as credit); idempotent by reference when one is given",
                Json(schema::<RefundRequest>),
                Json(schema::<RefundResult>),
            ),
            post(refund_payment),
        ),
        (
            op(
                "post",
                "/v1/invoices/{number}/credit-notes",
                "addCreditNote",
                "Issue a credit note on a final invoice (numbered in its own sequence; up to the total less what is already credited: beyond the balance it is account credit)",
                Json(schema::<CreditNoteRequest>),
                Json(schema::<CreditNoteResult>),
            ),
            post(add_credit_note),
        ),
        (
            op(
                "post",
                "/v1/invoices/{number}/void",
                "voidInvoice",
                "Void an open or uncollectible invoice with nothing paid on it (body optional: a reason)",
                Json(schema::<StateRequest>),
                Json(schema::<CollectionView>),
            ),
            post(void),
        ),
        (
            op(
                "post",
                "/v1/invoices/{number}/mark-uncollectible",
                "markUncollectible",
                "Mark an open invoice uncollectible (it stays payable; body optional: a reason)",
                Json(schema::<StateRequest>),
                Json(schema::<CollectionView>),
            ),
            post(mark_uncollectible),
        ),
        (
            op(
                "post",
                "/v1/invoices/{number}/collect",
                "collectInvoice",
                "Charge the invoice's balance through the payment provider (402 declined, 504 timed out: nothing recorded, retry with the same idempotency key)",
                Body::None,
                Json(schema::<PaymentResult>),
            ),
            post(collect),
        ),
        (
            op(
                "get",
                "/v1/customers/{id}/account-credit",
                "getAccountCredit",
                "The customer's account credit per currency (overpayments and credit notes beyond a balance, less what closes applied)",
                Body::None,
                Json(schema::<AccountCredit>),
            ),
            get(account_credit),
        ),
        (
            op(
                "post",
                "/v1/dunning/run",
                "runDunning",
                "Run every due dunning step of the overdue open invoices now (also run periodically by `ratecard serve`); idempotent: each step runs once",
                Body::None,
                Json(schema::<DunningResult>),
            ),
            post(run_dunning),
        ),
        (
            Operation {
                query: &[
                    ("all", "`true`: acknowledged messages too", false),
                    (
                        "limit",
                        "at most this many (default 100, at most 1000)",
                        false,
                    ),
                ],
                ..op(
                    "get",
                    "/v1/outbox",
                    "listOutbox",
                    "The outbox's messages not acknowledged yet, by id (reading does not claim)",
                    Body::None,
                    Json(schema::<OutboxList>),
                )
            },
            get(list_outbox),
        ),
        (
            op(
                "post",
                "/v1/outbox/claim",
                "claimOutbox",
                "Claim up to `limit` messages (not acknowledged, not leased): each is leased for `lease_seconds` and comes with its claim number; one not acknowledged before its lease ends is delivered again",
                Json(schema::<ClaimRequest>),
                Json(schema::<OutboxList>),
            ),
            post(claim_outbox),
        ),
        (
            op(
                "post",
                "/v1/outbox/{id}/ack",
                "ackOutbox",
                "Acknowledge a claimed message as delivered (idempotent); a claim superseded by a newer one is a conflict",
                Json(schema::<AckRequest>),
                Json(schema::<AckResult>),
            ),
            post(ack_outbox),
        ),
    ]
}

/// A payment recorded (201) or found by its reference (200), and the invoice's collection.
#[derive(Serialize, JsonSchema)]
struct PaymentResult {
    payment: PaymentView,
    collection: CollectionView,
}

#[derive(Serialize, JsonSchema)]
struct RefundResult {
    refund: RefundView,
    collection: CollectionView,
}

#[derive(Serialize, JsonSchema)]
struct CreditNoteResult {
    credit_note: CreditNoteView,
    collection: CollectionView,
}

#[derive(Serialize, JsonSchema)]
struct AccountCredit {
    customer_id: String,
    /// Currency → amount (decimal string), for every currency the customer was invoiced in.
    balances: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, JsonSchema)]
struct DunningResult {
    /// The steps run now (none already run is run again).
    steps: Vec<DunningStepRun>,
}

#[derive(Serialize, JsonSchema)]
struct DunningStepRun {
    invoice: i64,
    /// From 1, in the invoice's schedule.
    step: usize,
    action: String,
    days_overdue: i64,
}

#[derive(Serialize, JsonSchema)]
struct OutboxList {
    messages: Vec<OutboxMessage>,
}

/// `POST /v1/outbox/claim`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClaimRequest {
    /// 1 to 1000 (default 10).
    #[serde(default = "default_claim_limit")]
    limit: i64,
    /// 1 to 86400 (default 60).
    #[serde(default = "default_lease_seconds")]
    lease_seconds: i64,
}

impl Default for ClaimRequest {
    fn default() -> Self {
        ClaimRequest {
            limit: default_claim_limit(),
            lease_seconds: default_lease_seconds(),
        }
    }
}

fn default_claim_limit() -> i64 {
    10
}

fn default_lease_seconds() -> i64 {
    60
}

/// `POST /v1/outbox/{id}/ack`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    /// The claim number the message was delivered with (`claims`).
    claim: i64,
}

#[derive(Serialize, JsonSchema)]
struct AckResult {
    id: i64,
    acked: bool,
}

/// Who an operator request acts as: `operator:<label of its key>`.
async fn actor(api: &Api, headers: &HeaderMap) -> Result<String, Response> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match api.server.store().key_label(&key_hash(key)).await {
        Ok(Some(label)) => Ok(format!("operator:{label}")),
        // The middleware let it in: the key was revoked in between.
        Ok(None) => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the operator key is no longer valid",
        )),
        Err(failure) => Err(server_error(failure.into())),
    }
}

fn number_of(text: &str, what: &'static str) -> Result<i64, Response> {
    text.parse::<i64>().map_err(|_| {
        server_error(ServerError::NotFound {
            what,
            id: text.to_owned(),
        })
    })
}

fn view_of(book: &Book) -> Result<CollectionView, Response> {
    book.view().map_err(|e| server_error(e.into()))
}

fn view_response(book: Result<Book, ServerError>) -> Response {
    match book {
        Ok(book) => match view_of(&book) {
            Ok(view) => json_response(StatusCode::OK, &view),
            Err(response) => response,
        },
        Err(failure) => server_error(failure),
    }
}

/// A body that may be empty (then `T::default()`).
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    document: &str,
    body: &Bytes,
) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        read_body(document, body)
    }
}

async fn get_settings(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.collection_settings(&id).await {
        Ok(settings) => json_response(StatusCode::OK, &settings),
        Err(failure) => server_error(failure),
    }
}

async fn put_settings(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let settings: CollectionSettings = match read_body("collection_settings", &body) {
        Ok(settings) => settings,
        Err(response) => return response,
    };
    match api.server.put_collection_settings(&id, settings).await {
        Ok(settings) => {
            tracing::info!(plan = %id, net_days = settings.net_days, "collection settings");
            json_response(StatusCode::OK, &settings)
        }
        Err(failure) => server_error(failure),
    }
}

async fn get_customer_terms(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.server.customer_terms(&id).await {
        Ok(terms) => json_response(StatusCode::OK, &terms),
        Err(failure) => server_error(failure),
    }
}

async fn put_customer_terms(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: CustomerTermsRequest = match read_body("customer_terms", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match api.server.put_customer_terms(&id, request.net_days).await {
        Ok(terms) => {
            tracing::info!(customer = %id, net_days = ?terms.net_days, "customer net terms");
            json_response(StatusCode::OK, &terms)
        }
        Err(failure) => server_error(failure),
    }
}

async fn get_collection(State(api): State<Api>, Path(number): Path<String>) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    view_response(api.server.invoice_book(number).await)
}

/// 201 for a new record, 200 for one found by its reference.
fn status_of(recorded: &Recorded) -> StatusCode {
    if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn payment_response(recorded: Result<Recorded, ServerError>) -> Response {
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(failure) => return server_error(failure),
    };
    let collection = match view_of(&recorded.book) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(payment) = collection
        .payments
        .iter()
        .find(|p| p.id == recorded.id)
        .cloned()
    else {
        return server_error(ServerError::Invalid(format!(
            "payment {} is not on invoice {}",
            recorded.id, recorded.book.invoice.number
        )));
    };
    tracing::info!(invoice = recorded.book.invoice.number, payment = payment.id,
        amount = %payment.amount, created = recorded.created, "payment");
    json_response(
        status_of(&recorded),
        &PaymentResult {
            payment,
            collection,
        },
    )
}

async fn record_payment(
    State(api): State<Api>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    let request: PaymentRequest = match read_body("payment", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let actor = match actor(&api, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    payment_response(api.server.record_payment(number, &request, &actor).await)
}

async fn refund_payment(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match number_of(&id, "payment") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let request: RefundRequest = match read_body("refund", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let actor = match actor(&api, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    let recorded = match api.server.refund_payment(id, &request, &actor).await {
        Ok(recorded) => recorded,
        Err(failure) => return server_error(failure),
    };
    let collection = match view_of(&recorded.book) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(refund) = collection
        .refunds
        .iter()
        .find(|r| r.id == recorded.id)
        .cloned()
    else {
        return server_error(ServerError::Invalid(format!(
            "refund {} is not on invoice {}",
            recorded.id, recorded.book.invoice.number
        )));
    };
    tracing::info!(payment = id, refund = refund.id, amount = %refund.amount, "refund");
    json_response(status_of(&recorded), &RefundResult { refund, collection })
}

async fn add_credit_note(
    State(api): State<Api>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    let request: CreditNoteRequest = match read_body("credit_note", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let actor = match actor(&api, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    let recorded = match api.server.add_credit_note(number, &request, &actor).await {
        Ok(recorded) => recorded,
        Err(failure) => return server_error(failure),
    };
    let collection = match view_of(&recorded.book) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(credit_note) = collection
        .credit_notes
        .iter()
        .find(|c| c.number == recorded.id)
        .cloned()
    else {
        return server_error(ServerError::Invalid(format!(
            "credit note {} is not on invoice {number}",
            recorded.id
        )));
    };
    tracing::info!(invoice = number, credit_note = credit_note.number, amount = %credit_note.amount, "credit note");
    json_response(
        StatusCode::CREATED,
        &CreditNoteResult {
            credit_note,
            collection,
        },
    )
}

async fn void(
    State(api): State<Api>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    let request: StateRequest = match optional_body("void", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let actor = match actor(&api, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    view_response(
        api.server
            .void_invoice(number, &request.reason, &actor)
            .await,
    )
}

async fn mark_uncollectible(
    State(api): State<Api>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    let request: StateRequest = match optional_body("mark_uncollectible", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let actor = match actor(&api, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    view_response(
        api.server
            .mark_uncollectible(number, &request.reason, &actor)
            .await,
    )
}

async fn collect(State(api): State<Api>, Path(number): Path<String>) -> Response {
    let number = match number_of(&number, "invoice") {
        Ok(number) => number,
        Err(response) => return response,
    };
    payment_response(api.server.collect(number).await)
}

async fn account_credit(State(api): State<Api>, Path(id): Path<String>) -> Response {
    if let Err(failure) = api.server.customer(&id).await {
        return server_error(failure);
    }
    let books = match api.server.store().books(&id).await {
        Ok(books) => books,
        Err(failure) => return server_error(failure.into()),
    };
    let mut balances = std::collections::BTreeMap::new();
    for book in &books {
        let currency = &book.invoice.currency;
        if balances.contains_key(currency) {
            continue;
        }
        match crate::server::collect::credit_available(&books, currency) {
            Ok(credit) => {
                balances.insert(
                    currency.clone(),
                    crate::server::collect::format_amount(credit, book.invoice.minor_units),
                );
            }
            Err(overflow) => return server_error(overflow.into()),
        }
    }
    json_response(
        StatusCode::OK,
        &AccountCredit {
            customer_id: id,
            balances,
        },
    )
}

async fn run_dunning(State(api): State<Api>) -> Response {
    match api.server.run_dunning().await {
        Ok(ran) => {
            tracing::info!(steps = ran.len(), "dunning run");
            let steps = ran
                .into_iter()
                .map(|(invoice, step)| DunningStepRun {
                    invoice,
                    step: step.step + 1,
                    action: step.action.as_str().to_owned(),
                    days_overdue: step.days_overdue,
                })
                .collect();
            json_response(StatusCode::OK, &DunningResult { steps })
        }
        Err(failure) => server_error(failure),
    }
}

async fn list_outbox(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let all = match query_param(&query, "all").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("?all: `{other}` is not `true` or `false`"),
            );
        }
    };
    let limit = match query_param(&query, "limit") {
        None => 100,
        Some(text) => match text.parse::<i64>() {
            Ok(limit @ 1..=1000) => limit,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("?limit: `{text}` is not a number from 1 to 1000"),
                );
            }
        },
    };
    match api.server.store().outbox(all, limit).await {
        Ok(messages) => json_response(StatusCode::OK, &OutboxList { messages }),
        Err(failure) => server_error(failure.into()),
    }
}

async fn claim_outbox(State(api): State<Api>, body: Bytes) -> Response {
    let request: ClaimRequest = match optional_body("claim", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if !(1..=1000).contains(&request.limit) {
        return server_error(ServerError::Invalid(format!(
            "$.limit: {} is not from 1 to 1000",
            request.limit
        )));
    }
    if !(1..=86_400).contains(&request.lease_seconds) {
        return server_error(ServerError::Invalid(format!(
            "$.lease_seconds: {} is not from 1 to 86400",
            request.lease_seconds
        )));
    }
    match api
        .server
        .store()
        .claim_outbox(
            api.server.now(),
            request.limit,
            request.lease_seconds * 1000,
        )
        .await
    {
        Ok(messages) => json_response(StatusCode::OK, &OutboxList { messages }),
        Err(failure) => server_error(failure.into()),
    }
}

async fn ack_outbox(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match number_of(&id, "message") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let request: AckRequest = match read_body("ack", &body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match api
        .server
        .store()
        .ack_outbox(id, request.claim, api.server.now())
        .await
    {
        Ok(Ack::Acked) => json_response(StatusCode::OK, &AckResult { id, acked: true }),
        Ok(Ack::NotFound) => server_error(ServerError::NotFound {
            what: "message",
            id: id.to_string(),
        }),
        Ok(Ack::Stale { claims }) => server_error(ServerError::Conflict(format!(
            "$.claim: message {id} was claimed again since claim {} (its lease ended): claim {claims} acknowledges it",
            request.claim
        ))),
        Err(failure) => server_error(failure.into()),
    }
}

/// `?state=open&customer=acme` of `GET /v1/invoices`: the state, if given, must be one.
pub(super) fn invoice_filter(
    query: &Option<String>,
) -> Result<(Option<InvoiceState>, Option<String>), Response> {
    let state = match query_param(query, "state") {
        None => None,
        Some(text) => match InvoiceState::parse(&text) {
            Some(state) if state != InvoiceState::Draft => Some(state),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!(
                        "?state: `{text}` is not one of open, paid, void, uncollectible (drafts are previews, not stored)"
                    ),
                ));
            }
        },
    };
    let customer = query_param(query, "customer").map(|c| percent_decoded(&c));
    Ok((state, customer))
}

/// `%XX` and `+` of a query value decoded (invalid escapes kept as they are).
pub(in crate::server) fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        match bytes[idx] {
            b'+' => out.push(b' '),
            b'%' => match text
                .get(idx + 1..idx + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    idx += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        idx += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
