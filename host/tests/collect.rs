//! Collect end to end through the HTTP API over a real store (docs/collect.md): invoice
//! states and due dates from per-plan net terms, payments (partial, idempotent by reference,
//! overpayment credited to the next invoice through the engine), refunds, credit notes, void
//! and uncollectible, charging through a fake payment provider that declines, times out and
//! answers twice, dunning walked with a manual clock into an outbox consumed exactly once.
//! Each end-to-end test runs on both backends (a SQLite data directory, and a database in a
//! throwaway PostgreSQL cluster).

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::PreparedPlan;
use ratecard_engine::usage::{CustomerSetup, Subscription};
use ratecard_host::rating::{Collected, RateRequest, rate_stream};
use ratecard_host::server::collect::{
    ChargeFuture, ChargeOutcome, ChargeRequest, PaymentMethod, PaymentProvider,
};
use ratecard_host::server::{CustomerRecord, Database, ManualClock, Server, api};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use common::{Backend, data_dir};

const DAY: i64 = 86_400_000;
const KEY: Option<&str> = Some("k-collect");

fn millis(text: &str) -> i64 {
    ratecard_engine::usage::Timestamp::parse_rfc3339(text)
        .expect("a timestamp")
        .0
}

fn plan() -> Plan {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans/saas-api.json"),
    )
    .expect("the example plan");
    serde_json::from_str(&text).expect("a plan")
}

fn setup() -> CustomerSetup {
    CustomerSetup {
        timezone: Some("UTC".to_owned()),
        subscription: Some(Subscription {
            start: "2026-10-01".to_owned(),
            billing_anchor: None,
            end: None,
        }),
        ..CustomerSetup::default()
    }
}

/// A month's events of `customer`: `n` API requests and a seat count.
fn events(customer: &str, month: &str, n: usize) -> Vec<Value> {
    let mut events = vec![
        json!({"id": format!("{customer}-{month}-seats"), "customer": customer,
        "timestamp": format!("{month}-01T00:00:00Z"), "code": "seat.count", "properties": {"seats": 3}}),
    ];
    for i in 0..n {
        events.push(
            json!({"id": format!("{customer}-{month}-{i}"), "customer": customer,
            "timestamp": format!("{month}-{:02}T10:00:00Z", 2 + i % 20), "code": "api.request"}),
        );
    }
    events
}

struct Harness {
    server: Arc<Server>,
    clock: Arc<ManualClock>,
    addr: SocketAddr,
    database: Database,
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A PostgreSQL database goes with its cluster.
        if let Database::Sqlite(dir) = &self.database {
            drop(std::fs::remove_dir_all(dir));
        }
    }
}

/// A server at `now` with the example plan, `customers` subscribed, listening on loopback.
async fn harness(
    backend: Backend,
    name: &str,
    now: &str,
    customers: &[&str],
    provider: Option<Arc<dyn PaymentProvider>>,
) -> Harness {
    let database = data_dir(backend, name);
    let clock = Arc::new(ManualClock::at(millis(now)));
    let mut server = Server::open_database(&database, Box::new(clock.clone()), &NoPlugins)
        .await
        .expect("the server opens")
        .with_provider_timeout(std::time::Duration::from_millis(300));
    if let Some(provider) = provider {
        server = server.with_provider(provider);
    }
    server.add_key("k-collect", "ops-team").await.unwrap();
    let plan = server.add_plan(plan()).await.expect("the plan");
    for id in customers {
        server
            .put_customer(CustomerRecord {
                id: (*id).to_owned(),
                setup: setup(),
                plan: Some(plan.clone()),
            })
            .await
            .expect("a customer");
    }
    let server = Arc::new(server);
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        server,
        clock,
        addr,
        database,
    }
}

impl Harness {
    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = http(self.addr, method, path, KEY, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `call`, asserting the status.
    async fn expect(&self, status: u16, method: &str, path: &str, body: Value) -> Value {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (got, answer) = self.call(method, path, &text).await;
        assert_eq!(got, status, "{method} {path} {text}: {answer}");
        answer
    }

    async fn collection(&self, number: i64) -> Value {
        self.expect(
            200,
            "GET",
            &format!("/v1/invoices/{number}/collection"),
            Value::Null,
        )
        .await
    }

    fn at(&self, text: &str) {
        self.clock.set(millis(text));
    }

    async fn ingest_and_close(&self, customers: &[&str], month: &str, n: usize, close_at: &str) {
        let mut batch = Vec::new();
        for customer in customers {
            batch.extend(events(customer, month, n));
        }
        let outcomes = self.server.ingest(batch).await.expect("ingest");
        assert!(outcomes.iter().all(|o| o.is_accepted()), "{outcomes:?}");
        self.at(close_at);
        self.expect(
            200,
            "POST",
            "/v1/close",
            json!({"date": format!("{month}-15")}),
        )
        .await;
    }
}

/// One HTTP/1.1 request over a fresh loopback connection: status and body text.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (status, _, body) =
        common::request(addr, method, path, key, Some("application/json"), body).await;
    (status, body)
}

fn dec(value: &Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a decimal string: {value}"))
        .parse()
        .expect("a decimal")
}

fn message(answer: &Value) -> String {
    answer["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.to_string())
}

/// The balance invariant, from the API's own figures.
fn check_balance(collection: &Value) {
    let balance = dec(&collection["balance"]);
    let overpaid = dec(&collection["overpaid"]);
    let expected = dec(&collection["total"]) - dec(&collection["paid"])
        + dec(&collection["refunded"])
        - dec(&collection["credited"]);
    if collection["state"] != "void" {
        assert_eq!(balance - overpaid, expected, "{collection}");
    }
    assert!(balance >= Decimal::ZERO && overpaid >= Decimal::ZERO);
}

async fn payments_in_parts_are_idempotent_and_an_overpayment_credits_the_next_invoice(
    backend: Backend,
) {
    let h = harness(backend, "pay", "2026-11-20T00:00:00Z", &["acme"], None).await;
    // Net terms per plan id: server-side settings, validated with paths.
    let settings = h
        .expect(200, "GET", "/v1/plans/api-pro-2026/collection", Value::Null)
        .await;
    assert_eq!(settings, json!({"net_days": 30, "dunning": []}));
    let answer = h
        .expect(
            422,
            "PUT",
            "/v1/plans/api-pro-2026/collection",
            json!({"net_days": 14, "dunning": [{"after_days": 7, "action": "remind"}, {"after_days": 3, "action": "remind"}]}),
        )
        .await;
    assert!(
        message(&answer).starts_with("$.dunning[1].after_days"),
        "{answer}"
    );
    let answer = h
        .expect(
            400,
            "PUT",
            "/v1/plans/api-pro-2026/collection",
            json!({"net_days": 14, "colour": "red"}),
        )
        .await;
    assert!(answer.to_string().contains("$.colour"), "{answer}");
    h.expect(
        404,
        "PUT",
        "/v1/plans/nope/collection",
        json!({"net_days": 14}),
    )
    .await;
    h.expect(
        200,
        "PUT",
        "/v1/plans/api-pro-2026/collection",
        json!({"net_days": 14}),
    )
    .await;

    h.ingest_and_close(&["acme"], "2026-11", 40, "2026-12-05T00:00:00Z")
        .await;
    let invoice = h.expect(200, "GET", "/v1/invoices/1", Value::Null).await;
    let stored = h.server.store().invoice(1).await.unwrap().unwrap();
    assert_eq!(
        invoice["invoice"],
        serde_json::from_str::<Value>(&stored.body).unwrap()
    );
    let collection = &invoice["collection"];
    assert_eq!(collection["state"], "open");
    assert_eq!(collection["issued_at"], "2026-12-05T00:00:00Z");
    assert_eq!(collection["due_at"], "2026-12-19T00:00:00Z");
    assert_eq!(collection["net_days"], 14);
    assert_eq!(collection["total"], invoice["invoice"]["total"]);
    assert_eq!(collection["balance"], collection["total"]);
    let transitions = collection["transitions"].as_array().unwrap();
    assert_eq!(
        (
            &transitions[0]["from"],
            &transitions[0]["to"],
            &transitions[0]["actor"]
        ),
        (&json!("draft"), &json!("open"), &json!("system"))
    );
    let total = dec(&collection["total"]);
    assert!(total > Decimal::from(40), "{total}");

    // Filters.
    let open = h
        .expect(
            200,
            "GET",
            "/v1/invoices?state=open&customer=acme",
            Value::Null,
        )
        .await;
    assert_eq!(open["invoices"].as_array().unwrap().len(), 1);
    let paid = h
        .expect(200, "GET", "/v1/invoices?state=paid", Value::Null)
        .await;
    assert!(paid["invoices"].as_array().unwrap().is_empty());
    let other = h
        .expect(200, "GET", "/v1/invoices?customer=globex", Value::Null)
        .await;
    assert!(other["invoices"].as_array().unwrap().is_empty());
    let bad = h
        .expect(400, "GET", "/v1/invoices?state=pending", Value::Null)
        .await;
    assert!(message(&bad).starts_with("?state"), "{bad}");

    // Bad payments: each names what was wrong, none is stored.
    for (status, body, path) in [
        (
            422,
            json!({"amount": "12.345", "method": "card", "reference": "x"}),
            "$.amount",
        ),
        (
            400,
            json!({"amount": 12.5, "method": "card", "reference": "x"}),
            "$.amount",
        ),
        (
            400,
            json!({"amount": "12.50", "method": "cash", "reference": "x"}),
            "$.method",
        ),
        (
            422,
            json!({"amount": "0", "method": "card", "reference": "x"}),
            "$.amount",
        ),
        (
            422,
            json!({"amount": "-5", "method": "card", "reference": "x"}),
            "$.amount",
        ),
        (
            422,
            json!({"amount": "5", "method": "card", "reference": " "}),
            "$.reference",
        ),
        (
            422,
            json!({"amount": "5", "method": "card", "reference": "x", "currency": "EUR"}),
            "$.currency",
        ),
        (400, json!({"amount": "5", "method": "card"}), "reference"),
    ] {
        let answer = h
            .expect(status, "POST", "/v1/invoices/1/payments", body.clone())
            .await;
        assert!(answer.to_string().contains(path), "{body}: {answer}");
    }
    h.expect(
        404,
        "POST",
        "/v1/invoices/99/payments",
        json!({"amount": "5", "method": "card", "reference": "x"}),
    )
    .await;
    assert!(
        h.collection(1).await["payments"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A partial payment; the same reference again is the same payment; other figures under
    // it are a conflict.
    let first = h
        .expect(
            201,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": "10.00", "method": "bank_transfer", "reference": "ext-1"}),
        )
        .await;
    assert_eq!(first["payment"]["amount"], "10.00");
    assert_eq!(first["payment"]["actor"], "operator:ops-team");
    assert_eq!(first["collection"]["state"], "open");
    assert_eq!(
        dec(&first["collection"]["balance"]),
        total - Decimal::from(10)
    );
    let again = h
        .expect(
            200,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": "10", "method": "bank_transfer", "reference": "ext-1"}),
        )
        .await;
    assert_eq!(again["payment"]["id"], first["payment"]["id"]);
    let conflict = h
        .expect(
            409,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": "11.00", "method": "bank_transfer", "reference": "ext-1"}),
        )
        .await;
    assert!(message(&conflict).starts_with("$.reference"), "{conflict}");
    assert_eq!(
        h.collection(1).await["payments"].as_array().unwrap().len(),
        1
    );

    // The rest and 20.00 more: paid, the excess is account credit.
    let rest = total - Decimal::from(10) + Decimal::from(20);
    let second = h
        .expect(
            201,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": rest.to_string(), "method": "card", "reference": "ext-2"}),
        )
        .await;
    let collection = &second["collection"];
    assert_eq!(collection["state"], "paid");
    assert_eq!(collection["balance"], "0.00");
    assert_eq!(collection["overpaid"], "20.00");
    check_balance(collection);
    let last = collection["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(
        (&last["to"], &last["actor"]),
        (&json!("paid"), &json!("operator:ops-team"))
    );
    let credit = h
        .expect(200, "GET", "/v1/customers/acme/account-credit", Value::Null)
        .await;
    assert_eq!(credit["balances"], json!({"USD": "20.00"}));
    let paid_already = h
        .expect(
            409,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": "1.00", "method": "card", "reference": "ext-3"}),
        )
        .await;
    assert!(message(&paid_already).contains("is paid"), "{paid_already}");

    // A refund is never more than the payment has left.
    let p1 = first["payment"]["id"].as_i64().unwrap();
    let too_much = h
        .expect(
            422,
            "POST",
            &format!("/v1/payments/{p1}/refunds"),
            json!({"amount": "10.01"}),
        )
        .await;
    assert!(message(&too_much).starts_with("$.amount"), "{too_much}");
    h.expect(
        404,
        "POST",
        "/v1/payments/999/refunds",
        json!({"amount": "1"}),
    )
    .await;

    // December: the engine applies the 20.00 as the credit `account_credit`; the invoice is
    // `ratecard rate`'s with that credit in the customer's setup, byte for byte.
    h.ingest_and_close(&["acme"], "2026-12", 10, "2027-01-05T00:00:00Z")
        .await;
    let stored = h
        .server
        .store()
        .invoice(2)
        .await
        .unwrap()
        .expect("invoice 2");
    let body: Value = serde_json::from_str(&stored.body).unwrap();
    let credits = body["credits"].as_array().unwrap();
    let account = credits
        .iter()
        .find(|c| c["id"] == "account_credit")
        .expect("the account credit");
    assert_eq!(account["applied"], "20.00");
    let mut with_credit = setup();
    with_credit.credits = serde_json::from_value(
        json!([{"id": "account_credit", "description": "Account credit", "amount": "20.00"}]),
    )
    .unwrap();
    let request = RateRequest {
        period: "2026-12-15".to_owned(),
        customers: BTreeMap::from([("acme".to_owned(), with_credit)]),
        ..RateRequest::default()
    };
    let ndjson: String = events("acme", "2026-12", 10)
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    let mut rated = Collected::default();
    rate_stream(
        &PreparedPlan::new(plan()).unwrap(),
        Cursor::new(ndjson),
        &request,
        &NoPlugins,
        |_| {},
        |r| rated.push(r),
    )
    .expect("rate_stream");
    assert_eq!(
        stored.body,
        serde_json::to_string(&rated.invoices[0]).unwrap()
    );
    let december = h.collection(2).await;
    assert_eq!(december["credit_applied"], "20.00");
    assert_eq!(december["total"], body["total"]);
    let credit = h
        .expect(200, "GET", "/v1/customers/acme/account-credit", Value::Null)
        .await;
    assert_eq!(credit["balances"], json!({"USD": "0.00"}));

    // The overpayment is spent: refunding it would refund the credit a second time.
    let p2 = second["payment"]["id"].as_i64().unwrap();
    let spent = h
        .expect(
            422,
            "POST",
            &format!("/v1/payments/{p2}/refunds"),
            json!({"amount": "5.00"}),
        )
        .await;
    assert!(message(&spent).contains("account credit"), "{spent}");
    // A refund of the other payment takes from the same (spent) overpayment first: refused
    // the same way.
    h.expect(
        422,
        "POST",
        &format!("/v1/payments/{p1}/refunds"),
        json!({"amount": "1.00"}),
    )
    .await;
    check_balance(&h.collection(1).await);
}

async fn refunds_reopen_credit_notes_are_numbered_and_void_and_uncollectible_follow_their_rules(
    backend: Backend,
) {
    let h = harness(
        backend,
        "notes",
        "2026-11-20T00:00:00Z",
        &["acme", "globex"],
        None,
    )
    .await;
    h.ingest_and_close(&["acme", "globex"], "2026-11", 20, "2026-12-05T00:00:00Z")
        .await;
    let total_1 = dec(&h.collection(1).await["total"]);

    // Pay invoice 1 whole, refund part: open again with that balance; refunds are idempotent
    // by reference.
    let paid = h
        .expect(
            201,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": total_1.to_string(), "method": "digital_wallet", "reference": "w-1"}),
        )
        .await;
    assert_eq!(paid["collection"]["state"], "paid");
    let payment = paid["payment"]["id"].as_i64().unwrap();
    let refund = h
        .expect(
            201,
            "POST",
            &format!("/v1/payments/{payment}/refunds"),
            json!({"amount": "7.50", "reference": "r-1"}),
        )
        .await;
    assert_eq!(refund["refund"]["amount"], "7.50");
    assert_eq!(refund["collection"]["state"], "open");
    assert_eq!(refund["collection"]["balance"], "7.50");
    assert_eq!(refund["collection"]["payments"][0]["refunded"], "7.50");
    check_balance(&refund["collection"]);
    let again = h
        .expect(
            200,
            "POST",
            &format!("/v1/payments/{payment}/refunds"),
            json!({"amount": "7.50", "reference": "r-1"}),
        )
        .await;
    assert_eq!(again["refund"]["id"], refund["refund"]["id"]);
    h.expect(
        409,
        "POST",
        &format!("/v1/payments/{payment}/refunds"),
        json!({"amount": "2.00", "reference": "r-1"}),
    )
    .await;

    // Credit notes: their own sequence across invoices; never beyond the total less what is
    // credited; a reason is needed. A credit note covering the balance pays the invoice.
    let note = |number: i64, amount: &str| {
        (
            format!("/v1/invoices/{number}/credit-notes"),
            json!({"amount": amount, "reason": "service outage"}),
        )
    };
    let (path, body) = note(2, "5.00");
    let first = h.expect(201, "POST", &path, body).await;
    assert_eq!(first["credit_note"]["number"], 1);
    let (path, body) = note(1, "7.50");
    let second = h.expect(201, "POST", &path, body).await;
    assert_eq!(second["credit_note"]["number"], 2);
    assert_eq!(second["collection"]["state"], "paid");
    let (path, body) = note(2, "1.00");
    assert_eq!(
        h.expect(201, "POST", &path, body).await["credit_note"]["number"],
        3
    );
    let (path, _) = note(2, "");
    let answer = h
        .expect(422, "POST", &path, json!({"amount": "1.00", "reason": ""}))
        .await;
    assert!(message(&answer).starts_with("$.reason"), "{answer}");
    let total_2 = dec(&h.collection(2).await["total"]);
    let beyond = total_2 - Decimal::from(6) + Decimal::new(1, 2);
    let (path, body) = note(2, &beyond.to_string());
    let answer = h.expect(422, "POST", &path, body).await;
    assert!(message(&answer).starts_with("$.amount"), "{answer}");
    assert_eq!(
        h.collection(2).await["credit_notes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Void: refused with money on the invoice; once refunded, void with nothing owed, and
    // it takes nothing more.
    let pay_2 = h
        .expect(
            201,
            "POST",
            "/v1/invoices/2/payments",
            json!({"amount": "3.00", "method": "card", "reference": "c-2"}),
        )
        .await;
    let answer = h
        .expect(409, "POST", "/v1/invoices/2/void", Value::Null)
        .await;
    assert!(message(&answer).contains("refund its payments"), "{answer}");
    let pay_2 = pay_2["payment"]["id"].as_i64().unwrap();
    h.expect(
        201,
        "POST",
        &format!("/v1/payments/{pay_2}/refunds"),
        json!({"amount": "3.00"}),
    )
    .await;
    let void = h
        .expect(
            200,
            "POST",
            "/v1/invoices/2/void",
            json!({"reason": "billed in error"}),
        )
        .await;
    assert_eq!(void["state"], "void");
    assert_eq!(void["balance"], "0.00");
    let last = void["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reason"], "billed in error");
    h.expect(
        409,
        "POST",
        "/v1/invoices/2/payments",
        json!({"amount": "1.00", "method": "card", "reference": "c-3"}),
    )
    .await;
    let (path, body) = note(2, "1.00");
    h.expect(409, "POST", &path, body).await;
    h.expect(
        409,
        "POST",
        "/v1/invoices/2/mark-uncollectible",
        Value::Null,
    )
    .await;
    let voided = h
        .expect(200, "GET", "/v1/invoices?state=void", Value::Null)
        .await;
    assert_eq!(voided["invoices"][0]["number"], 2);

    // Uncollectible stays payable; paying it whole makes it paid. (Invoice 1 is paid: reopen
    // it with a refund first.)
    h.expect(
        409,
        "POST",
        "/v1/invoices/1/mark-uncollectible",
        Value::Null,
    )
    .await;
    h.expect(
        201,
        "POST",
        &format!("/v1/payments/{payment}/refunds"),
        json!({"amount": "4.00"}),
    )
    .await;
    let marked = h
        .expect(
            200,
            "POST",
            "/v1/invoices/1/mark-uncollectible",
            Value::Null,
        )
        .await;
    assert_eq!(marked["state"], "uncollectible");
    let settled = h
        .expect(
            201,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": "4.00", "method": "card", "reference": "late"}),
        )
        .await;
    assert_eq!(settled["collection"]["state"], "paid");
    check_balance(&settled["collection"]);
    let states: Vec<(String, String)> = settled["collection"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap().to_owned(),
                t["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let operator = "operator:ops-team".to_owned();
    assert_eq!(
        states,
        [
            ("open".to_owned(), "system".to_owned()),
            ("paid".to_owned(), operator.clone()),
            ("open".to_owned(), operator.clone()),
            ("paid".to_owned(), operator.clone()),
            ("open".to_owned(), operator.clone()),
            ("uncollectible".to_owned(), operator.clone()),
            ("paid".to_owned(), operator),
        ]
    );

    // The printable page shows the state, due date, payments, credit notes and the balance.
    let (status, page) = http(h.addr, "GET", "/v1/invoices/1/html", KEY, "").await;
    assert_eq!(status, 200);
    assert!(page.contains("state-paid"), "{page}");
    assert!(page.contains("Due 2027-01-04T00:00:00Z"), "{page}");
    assert!(page.contains("Payment 1 (digital_wallet)"), "{page}");
    assert!(page.contains("w-1"), "{page}");
    assert!(page.contains("Credit note CN-2: service outage"), "{page}");
    assert!(page.contains("Refund"), "{page}");
    assert!(
        page.contains("<td>Balance due</td><td class=\"n\">0.00 USD</td>"),
        "{page}"
    );
    let (_, page) = http(h.addr, "GET", "/v1/invoices/2/html", KEY, "").await;
    assert!(page.contains("state-void"), "{page}");
}

async fn dunning_walks_an_overdue_invoice_to_uncollectible_through_an_outbox_read_once(
    backend: Backend,
) {
    let h = harness(
        backend,
        "dunning",
        "2026-11-20T00:00:00Z",
        &["acme", "globex"],
        None,
    )
    .await;
    h.expect(
        200,
        "PUT",
        "/v1/plans/api-pro-2026/collection",
        json!({"net_days": 30, "dunning": [
            {"after_days": 3, "action": "remind"},
            {"after_days": 7, "action": "remind"},
            {"after_days": 14, "action": "remind"},
            {"after_days": 21, "action": "mark_uncollectible"}]}),
    )
    .await;
    h.ingest_and_close(&["acme", "globex"], "2026-11", 5, "2026-12-05T00:00:00Z")
        .await;
    let due = millis("2027-01-04T00:00:00Z");
    assert_eq!(h.collection(1).await["due_at"], "2027-01-04T00:00:00Z");
    let run = async || {
        h.expect(200, "POST", "/v1/dunning/run", Value::Null).await["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["invoice"].as_i64().unwrap(),
                    s["step"].as_i64().unwrap(),
                    s["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Not overdue yet, then one day overdue: nothing.
    h.clock.set(due);
    assert!(run().await.is_empty());
    h.clock.set(due + DAY);
    assert!(run().await.is_empty());
    // Three days: the first reminder of each; again: nothing new.
    h.clock.set(due + 3 * DAY);
    let remind = || "remind".to_owned();
    assert_eq!(run().await, [(1, 1, remind()), (2, 1, remind())]);
    assert!(run().await.is_empty());
    // The runner itself (the background task calls the same) is idempotent too.
    assert!(h.server.run_dunning().await.unwrap().is_empty());

    // globex pays: no more reminders for invoice 2.
    let total_2 = h.collection(2).await["balance"].clone();
    h.expect(
        201,
        "POST",
        "/v1/invoices/2/payments",
        json!({"amount": total_2, "method": "bank_transfer", "reference": "g-1"}),
    )
    .await;

    // The outbox: pending until acked; a claim leases; an expired lease is claimed again
    // with a new claim number, and only that claim acks it.
    let pending = h.expect(200, "GET", "/v1/outbox", Value::Null).await;
    let messages = pending["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["kind"], "invoice.reminder");
    assert_eq!(messages[0]["payload"]["days_overdue"], 3);
    assert_eq!(messages[0]["payload"]["step"], 1);
    assert_eq!(
        messages[0]["payload"]["balance"],
        h.collection(1).await["balance"]
    );
    let claimed = h
        .expect(
            200,
            "POST",
            "/v1/outbox/claim",
            json!({"limit": 1, "lease_seconds": 60}),
        )
        .await;
    let first = claimed["messages"][0].clone();
    assert_eq!(first["claims"], 1);
    let id = first["id"].as_i64().unwrap();
    let others = h
        .expect(200, "POST", "/v1/outbox/claim", json!({"limit": 10}))
        .await;
    let others: Vec<i64> = others["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert!(
        !others.contains(&id),
        "a leased message is not claimed again"
    );
    for other in &others {
        h.expect(
            200,
            "POST",
            &format!("/v1/outbox/{other}/ack"),
            json!({"claim": 1}),
        )
        .await;
    }
    h.clock.set(due + 3 * DAY + 61_000);
    let reclaimed = h.expect(200, "POST", "/v1/outbox/claim", Value::Null).await;
    assert_eq!(reclaimed["messages"].as_array().unwrap().len(), 1);
    assert_eq!(reclaimed["messages"][0]["id"], id);
    assert_eq!(reclaimed["messages"][0]["claims"], 2);
    let stale = h
        .expect(
            409,
            "POST",
            &format!("/v1/outbox/{id}/ack"),
            json!({"claim": 1}),
        )
        .await;
    assert!(message(&stale).starts_with("$.claim"), "{stale}");
    h.expect(
        200,
        "POST",
        &format!("/v1/outbox/{id}/ack"),
        json!({"claim": 2}),
    )
    .await;
    h.expect(
        200,
        "POST",
        &format!("/v1/outbox/{id}/ack"),
        json!({"claim": 2}),
    )
    .await;
    h.expect(404, "POST", "/v1/outbox/999/ack", json!({"claim": 1}))
        .await;
    h.expect(422, "POST", "/v1/outbox/claim", json!({"limit": 0}))
        .await;
    h.expect(400, "GET", "/v1/outbox?limit=lots", Value::Null)
        .await;
    let pending = h.expect(200, "GET", "/v1/outbox", Value::Null).await;
    assert!(pending["messages"].as_array().unwrap().is_empty());

    // The rest of the schedule, for invoice 1 only.
    h.clock.set(due + 7 * DAY);
    assert_eq!(run().await, [(1, 2, remind())]);
    h.clock.set(due + 14 * DAY + 3_600_000);
    assert_eq!(run().await, [(1, 3, remind())]);
    h.clock.set(due + 21 * DAY);
    assert_eq!(run().await, [(1, 4, "mark_uncollectible".to_owned())]);
    h.clock.set(due + 60 * DAY);
    assert!(run().await.is_empty());
    let collection = h.collection(1).await;
    assert_eq!(collection["state"], "uncollectible");
    let last = collection["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(last["actor"], "system");
    assert_eq!(last["at"], "2027-01-25T00:00:00Z");
    // Each step produced exactly one message; invoice 2 only its first.
    let all = h
        .expect(200, "GET", "/v1/outbox?all=true", Value::Null)
        .await;
    let produced: Vec<(i64, String, i64)> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["invoice"].as_i64().unwrap(),
                m["kind"].as_str().unwrap().to_owned(),
                m["payload"]["step"].as_i64().unwrap(),
            )
        })
        .collect();
    let reminder = || "invoice.reminder".to_owned();
    assert_eq!(
        produced,
        [
            (1, reminder(), 1),
            (2, reminder(), 1),
            (1, reminder(), 2),
            (1, reminder(), 3),
            (1, "invoice.uncollectible".to_owned(), 4),
        ]
    );
    assert_eq!(h.collection(2).await["state"], "paid");
    // A restart keeps every step run: nothing is produced twice.
    let again = Server::open_database(&h.database, Box::new(h.clock.clone()), &NoPlugins)
        .await
        .unwrap();
    assert!(again.run_dunning().await.unwrap().is_empty());
}

/// What the fake provider does with its next charge.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Decline,
    /// Never answers (the server's timeout ends the wait).
    Hang,
    /// Charges, and answers with the reference it gave that idempotency key before, if any.
    Charge,
    /// Answers with a fixed reference, whatever the key.
    Reference(&'static str),
}

#[derive(Debug, Default)]
struct FakeProvider {
    script: Mutex<VecDeque<Behaviour>>,
    /// Idempotency key → reference of the charge made.
    charges: Mutex<HashMap<String, String>>,
    keys: Mutex<Vec<String>>,
}

impl PaymentProvider for FakeProvider {
    fn charge(&self, request: ChargeRequest) -> ChargeFuture<'_> {
        Box::pin(async move {
            self.keys
                .lock()
                .unwrap()
                .push(request.idempotency_key.clone());
            let behaviour = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Behaviour::Charge);
            match behaviour {
                Behaviour::Decline => ChargeOutcome::Declined {
                    reason: "card declined".to_owned(),
                },
                Behaviour::Hang => {
                    // Charged, but the answer never comes back in time.
                    {
                        let mut charges = self.charges.lock().unwrap();
                        let n = charges.len();
                        charges
                            .entry(request.idempotency_key.clone())
                            .or_insert_with(|| format!("ch_{n}"));
                    }
                    std::future::pending::<()>().await;
                    ChargeOutcome::TimedOut
                }
                Behaviour::Charge => {
                    let mut charges = self.charges.lock().unwrap();
                    let n = charges.len();
                    let reference = charges
                        .entry(request.idempotency_key.clone())
                        .or_insert_with(|| format!("ch_{n}"))
                        .clone();
                    ChargeOutcome::Charged {
                        reference,
                        amount: request.amount,
                        method: PaymentMethod::Card,
                    }
                }
                Behaviour::Reference(reference) => ChargeOutcome::Charged {
                    reference: reference.to_owned(),
                    amount: request.amount,
                    method: PaymentMethod::Card,
                },
            }
        })
    }
}

async fn collect_charges_through_the_provider_and_records_each_charge_once(backend: Backend) {
    // Without a provider: refused.
    let none = harness(
        backend,
        "no-provider",
        "2026-11-20T00:00:00Z",
        &["acme"],
        None,
    )
    .await;
    none.ingest_and_close(&["acme"], "2026-11", 3, "2026-12-05T00:00:00Z")
        .await;
    let answer = none
        .expect(409, "POST", "/v1/invoices/1/collect", Value::Null)
        .await;
    assert!(message(&answer).contains("no payment provider"), "{answer}");
    drop(none);

    let provider = Arc::new(FakeProvider::default());
    provider.script.lock().unwrap().extend([
        Behaviour::Decline,
        Behaviour::Hang,
        Behaviour::Charge,
        Behaviour::Reference("ch_0"),
    ]);
    let h = harness(
        backend,
        "provider",
        "2026-11-20T00:00:00Z",
        &["acme", "globex"],
        Some(provider.clone()),
    )
    .await;
    h.ingest_and_close(&["acme", "globex"], "2026-11", 3, "2026-12-05T00:00:00Z")
        .await;
    let balance = h.collection(1).await["balance"].clone();

    // Declined: 402, nothing paid. Timed out (the provider charged but never answered): 504,
    // nothing paid.
    let declined = h
        .expect(402, "POST", "/v1/invoices/1/collect", Value::Null)
        .await;
    assert!(message(&declined).contains("card declined"), "{declined}");
    let timed_out = h
        .expect(504, "POST", "/v1/invoices/1/collect", Value::Null)
        .await;
    assert!(message(&timed_out).contains("retry"), "{timed_out}");
    let collection = h.collection(1).await;
    assert!(collection["payments"].as_array().unwrap().is_empty());
    assert_eq!(collection["state"], "open");
    // The retry carries the same key: the provider answers the charge it made, recorded once.
    let charged = h
        .expect(201, "POST", "/v1/invoices/1/collect", Value::Null)
        .await;
    assert_eq!(charged["payment"]["reference"], "ch_0");
    assert_eq!(charged["payment"]["actor"], "provider");
    assert_eq!(charged["payment"]["amount"], balance);
    assert_eq!(charged["collection"]["state"], "paid");
    let keys = provider.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    // The provider answers the same charge twice (a webhook after the response): the same
    // payment.
    let twice = h
        .expect(
            200,
            "POST",
            "/v1/invoices/1/payments",
            json!({"amount": balance, "method": "card", "reference": "ch_0"}),
        )
        .await;
    assert_eq!(twice["payment"]["id"], charged["payment"]["id"]);
    assert_eq!(
        h.collection(1).await["payments"].as_array().unwrap().len(),
        1
    );
    // Nothing left to collect.
    h.expect(409, "POST", "/v1/invoices/1/collect", Value::Null)
        .await;
    // A provider answering another invoice's charge with the same reference: a conflict,
    // nothing recorded on invoice 2.
    let clash = h
        .expect(409, "POST", "/v1/invoices/2/collect", Value::Null)
        .await;
    assert!(message(&clash).starts_with("$.reference"), "{clash}");
    assert!(
        h.collection(2).await["payments"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let collected = h
        .expect(201, "POST", "/v1/invoices/2/collect", Value::Null)
        .await;
    assert_eq!(collected["collection"]["state"], "paid");
    assert_eq!(collected["payment"]["reference"], "ch_1");
}

/// The balance invariant over random sequences of payments, refunds, credit notes and voids
/// on the real store (each case on its own customer's invoice): after every request the
/// invoice's figures are the ledger's, to the cent; a refused request changes nothing.
#[test]
fn the_balance_invariant_holds_over_random_ledgers_in_the_store() {
    use proptest::prelude::*;
    use ratecard_host::server::collect::{CreditNoteRequest, PaymentRequest, RefundRequest};

    const CASES: usize = 24;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let customers: Vec<String> = (0..CASES).map(|i| format!("c{i:02}")).collect();
    let names: Vec<&str> = customers.iter().map(String::as_str).collect();
    let h = runtime.block_on(async {
        let h = harness(
            Backend::Sqlite,
            "property",
            "2026-11-20T00:00:00Z",
            &names,
            None,
        )
        .await;
        h.ingest_and_close(&names, "2026-11", 2, "2026-12-05T00:00:00Z")
            .await;
        h
    });
    let next_case = std::cell::Cell::new(0_i64);
    let accepted = std::cell::Cell::new(0_usize);

    #[derive(Clone, Debug)]
    enum Op {
        Pay(i64),
        Refund(usize, i64),
        CreditNote(i64),
        Void,
    }
    let op = prop_oneof![
        4 => (1..12_000i64).prop_map(Op::Pay),
        2 => (0..3usize, 1..12_000i64).prop_map(|(p, a)| Op::Refund(p, a)),
        2 => (1..12_000i64).prop_map(Op::CreditNote),
        1 => Just(Op::Void),
    ];
    let config = ProptestConfig {
        cases: CASES as u32,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op, 1..14))| {
        next_case.set(next_case.get() + 1);
        let number = next_case.get();
        runtime.block_on(async {
            let server = &h.server;
            for (k, op) in ops.iter().enumerate() {
                let before = server.invoice_book(number).await.unwrap();
                let cents = |minor: i64| Decimal::new(minor, 2).to_string();
                let actor = "operator:property";
                let outcome = match op {
                    Op::Pay(minor) => server
                        .record_payment(number, &PaymentRequest {
                            amount: cents(*minor),
                            method: PaymentMethod::Card,
                            reference: format!("p{number}-{k}"),
                            currency: None,
                        }, actor)
                        .await
                        .map(|_| ()),
                    Op::Refund(which, minor) => match before.payments.get(*which) {
                        Some(payment) => server
                            .refund_payment(payment.id, &RefundRequest {
                                amount: cents(*minor),
                                reference: None,
                            }, actor)
                            .await
                            .map(|_| ()),
                        None => Ok(()),
                    },
                    Op::CreditNote(minor) => server
                        .add_credit_note(number, &CreditNoteRequest {
                            amount: cents(*minor),
                            reason: "property".to_owned(),
                        }, actor)
                        .await
                        .map(|_| ()),
                    Op::Void => server.void_invoice(number, "", actor).await.map(|_| ()),
                };
                let after = server.invoice_book(number).await.unwrap();
                match &outcome {
                    Ok(()) => accepted.set(accepted.get() + 1),
                    Err(_) => assert_eq!(after, before, "{op:?} refused but changed the book"),
                }
                let view = after.view().unwrap();
                check_balance(&serde_json::to_value(&view).unwrap());
                let paid: Decimal = after.payments.iter().map(|p| p.amount).sum();
                let refunded: Decimal = after.refunds.iter().map(|r| r.amount).sum();
                let credited: Decimal = after.credit_notes.iter().map(|c| c.amount).sum();
                assert_eq!(dec(&json!(view.paid)), paid);
                assert_eq!(dec(&json!(view.refunded)), refunded);
                assert_eq!(dec(&json!(view.credited)), credited);
                assert!(credited <= after.invoice.total, "credited beyond the total");
                for payment in &after.payments {
                    let back: Decimal = after
                        .refunds
                        .iter()
                        .filter(|r| r.payment_id == payment.id)
                        .map(|r| r.amount)
                        .sum();
                    assert!(back <= payment.amount, "refunded beyond payment {}", payment.id);
                }
                for amount in [&view.balance, &view.overpaid, &view.paid, &view.total] {
                    assert_eq!(amount.split('.').nth(1).map(str::len), Some(2), "{amount}");
                }
                let balance = dec(&json!(view.balance));
                match view.state.as_str() {
                    "paid" => assert!(balance.is_zero(), "paid owing {balance}"),
                    "open" | "uncollectible" => assert!(!balance.is_zero(), "{} owing nothing", view.state),
                    _ => {}
                }
            }
        });
    });
    // The sequences did reach the ledger (not only refusals).
    assert!(accepted.get() > CASES * 2, "{} accepted", accepted.get());
}

/// Account credit larger than the next invoice: the engine applies what the total can take
/// (the total is zero, never below), the invoice is paid at once, and the rest stays credit.
async fn account_credit_never_drives_a_total_below_zero_and_the_rest_carries_over(
    backend: Backend,
) {
    let h = harness(backend, "credit", "2026-11-20T00:00:00Z", &["acme"], None).await;
    h.ingest_and_close(&["acme"], "2026-11", 2, "2026-12-05T00:00:00Z")
        .await;
    let total = dec(&h.collection(1).await["total"]);
    let paid = total + Decimal::from(500);
    h.expect(
        201,
        "POST",
        "/v1/invoices/1/payments",
        json!({"amount": paid.to_string(), "method": "bank_transfer", "reference": "big"}),
    )
    .await;
    h.ingest_and_close(&["acme"], "2026-12", 2, "2027-01-05T00:00:00Z")
        .await;
    let december = h.collection(2).await;
    assert_eq!(december["total"], "0.00");
    assert_eq!(december["state"], "paid");
    assert_eq!(december["balance"], "0.00");
    let applied = dec(&december["credit_applied"]);
    assert!(
        applied > Decimal::ZERO && applied < Decimal::from(500),
        "{applied}"
    );
    let transitions: Vec<&str> = december["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, ["open", "paid"]);
    let body: Value =
        serde_json::from_str(&h.server.store().invoice(2).await.unwrap().unwrap().body).unwrap();
    let credit = body["credits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "account_credit")
        .unwrap()
        .clone();
    assert_eq!(dec(&credit["applied"]), applied);
    assert_eq!(
        dec(&credit["remaining"]),
        Decimal::from(500) - applied,
        "{credit}"
    );
    let left = h
        .expect(200, "GET", "/v1/customers/acme/account-credit", Value::Null)
        .await;
    assert_eq!(dec(&left["balances"]["USD"]), Decimal::from(500) - applied);
    // January takes the rest, and so on until it is spent.
    h.ingest_and_close(&["acme"], "2027-01", 2, "2027-02-05T00:00:00Z")
        .await;
    let january = h.collection(3).await;
    let applied_january = dec(&january["credit_applied"]);
    let left = h
        .expect(200, "GET", "/v1/customers/acme/account-credit", Value::Null)
        .await;
    assert_eq!(
        dec(&left["balances"]["USD"]),
        Decimal::from(500) - applied - applied_january
    );
    check_balance(&january);
}

async fn aging_puts_each_open_balance_in_the_bucket_of_its_days_past_due(backend: Backend) {
    let h = harness(
        backend,
        "aging",
        "2026-11-20T00:00:00Z",
        &["acme", "globex", "initech"],
        None,
    )
    .await;
    h.expect(
        200,
        "PUT",
        "/v1/plans/api-pro-2026/collection",
        json!({"net_days": 30, "dunning": []}),
    )
    .await;
    let all = ["acme", "globex", "initech"];
    // November: invoices 1–3, due 2027-01-04; December: 4–6, due 2027-02-04.
    h.ingest_and_close(&all, "2026-11", 5, "2026-12-05T00:00:00Z")
        .await;
    h.ingest_and_close(&all, "2026-12", 9, "2027-01-05T00:00:00Z")
        .await;
    assert_eq!(h.collection(4).await["due_at"], "2027-02-04T00:00:00Z");
    // globex pays part of November, initech all of it; initech's December is void.
    h.expect(
        201,
        "POST",
        "/v1/invoices/2/payments",
        json!({"amount": "1.00", "method": "card", "reference": "g-1"}),
    )
    .await;
    let initech_november = dec(&h.collection(3).await["total"]);
    h.expect(
        201,
        "POST",
        "/v1/invoices/3/payments",
        json!({"amount": initech_november.to_string(), "method": "bank_transfer", "reference": "i-1"}),
    )
    .await;
    h.expect(
        200,
        "POST",
        "/v1/invoices/6/void",
        json!({"reason": "billed in error"}),
    )
    .await;
    let mut balance = BTreeMap::new();
    for number in 1..=6 {
        balance.insert(number, dec(&h.collection(number).await["balance"]));
    }
    assert!(balance[&2] > Decimal::ZERO && balance[&3] == Decimal::ZERO);

    let aging = async || h.expect(200, "GET", "/v1/reports/aging", Value::Null).await;
    let buckets = |row: &Value| -> Vec<Decimal> {
        row["buckets"].as_array().unwrap().iter().map(dec).collect()
    };
    let row = |report: &Value, customer: &str| -> Value {
        report["customers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer_id"] == customer)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let zero = Decimal::ZERO;
    // Before November's due date: nothing is late.
    h.at("2027-01-04T00:00:00Z");
    let report = aging().await;
    assert_eq!(report["as_of"], "2027-01-04T00:00:00Z");
    assert_eq!(
        report["bucket_names"],
        json!(["current", "1-30", "31-60", "61-90", "90+"])
    );
    assert_eq!(
        buckets(&row(&report, "acme")),
        [balance[&1] + balance[&4], zero, zero, zero, zero]
    );
    assert_eq!(row(&report, "acme")["invoices"], 2);
    // Paid and void invoices owe nothing: initech is not in the report.
    assert_eq!(row(&report, "initech"), Value::Null, "{report}");

    // 2027-02-20: November is 47 days late, December 16.
    h.at("2027-02-20T00:00:00Z");
    let report = aging().await;
    for (customer, november, december) in [("acme", 1, 4), ("globex", 2, 5)] {
        let got = row(&report, customer);
        assert_eq!(
            buckets(&got),
            [zero, balance[&december], balance[&november], zero, zero],
            "{customer}: {got}"
        );
        assert_eq!(dec(&got["total"]), balance[&november] + balance[&december]);
    }
    let totals = &report["totals"].as_array().unwrap()[0];
    assert_eq!(totals["currency"], "USD");
    assert_eq!(totals["invoices"], 4);
    assert_eq!(
        buckets(totals),
        [
            zero,
            balance[&4] + balance[&5],
            balance[&1] + balance[&2],
            zero,
            zero
        ]
    );
    // Exact decimal text at the currency's minor units, as the invoices write them.
    assert!(
        totals["total"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .map(str::len)
            == Some(2),
        "{totals}"
    );

    // Uncollectible is written off: globex's November leaves the report; the rest ages on.
    h.expect(
        200,
        "POST",
        "/v1/invoices/2/mark-uncollectible",
        json!({"reason": "customer gone"}),
    )
    .await;
    h.at("2027-04-20T00:00:00Z");
    let report = aging().await;
    assert_eq!(
        buckets(&row(&report, "acme")),
        [zero, zero, zero, balance[&4], balance[&1]]
    );
    assert_eq!(
        buckets(&row(&report, "globex")),
        [zero, zero, zero, balance[&5], zero]
    );

    let (status, _, csv) =
        common::request(h.addr, "GET", "/v1/reports/aging.csv", KEY, None, "").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "customer_id,currency,invoices,current,1-30,31-60,61-90,90+,total"
    );
    assert_eq!(
        lines[1],
        format!(
            "acme,USD,2,0.00,0.00,0.00,{},{},{}",
            row(&report, "acme")["buckets"][3].as_str().unwrap(),
            row(&report, "acme")["buckets"][4].as_str().unwrap(),
            row(&report, "acme")["total"].as_str().unwrap()
        )
    );
    assert!(lines[2].starts_with("globex,USD,1,"), "{csv}");
    assert_eq!(
        lines.len(),
        4,
        "a header, two rows and the last CRLF: {csv}"
    );
}

async fn a_customers_own_net_terms_set_their_invoices_due_dates(backend: Backend) {
    let h = harness(
        backend,
        "terms",
        "2026-11-20T00:00:00Z",
        &["acme", "globex", "initech"],
        None,
    )
    .await;
    h.expect(
        200,
        "PUT",
        "/v1/plans/api-pro-2026/collection",
        json!({"net_days": 30, "dunning": [{"after_days": 7, "action": "remind"}]}),
    )
    .await;
    assert_eq!(
        h.expect(200, "GET", "/v1/customers/globex/collection", Value::Null)
            .await,
        json!({"customer_id": "globex", "net_days": null, "plan_net_days": 30, "effective_net_days": 30})
    );
    assert_eq!(
        h.expect(
            200,
            "PUT",
            "/v1/customers/acme/collection",
            json!({"net_days": 45})
        )
        .await,
        json!({"customer_id": "acme", "net_days": 45, "plan_net_days": 30, "effective_net_days": 45})
    );
    h.expect(
        200,
        "PUT",
        "/v1/customers/initech/collection",
        json!({"net_days": 0}),
    )
    .await;
    // Refused, by path; an unknown customer is named.
    let answer = h
        .expect(
            422,
            "PUT",
            "/v1/customers/acme/collection",
            json!({"net_days": 4000}),
        )
        .await;
    assert!(message(&answer).contains("$.net_days: 4000"), "{answer}");
    let answer = h
        .expect(
            400,
            "PUT",
            "/v1/customers/acme/collection",
            json!({"net_day": 10}),
        )
        .await;
    assert!(message(&answer).contains("net_day"), "{answer}");
    let answer = h
        .expect(
            404,
            "PUT",
            "/v1/customers/nobody/collection",
            json!({"net_days": 10}),
        )
        .await;
    assert!(message(&answer).contains("nobody"), "{answer}");

    h.ingest_and_close(
        &["acme", "globex", "initech"],
        "2026-11",
        5,
        "2026-12-05T00:00:00Z",
    )
    .await;
    let h = &h;
    let due = async |number| {
        let c = h.collection(number).await;
        (
            c["due_at"].as_str().unwrap().to_owned(),
            c["net_days"].as_i64().unwrap(),
            c["dunning"].clone(),
        )
    };
    let remind = json!([{"after_days": 7, "action": "remind"}]);
    assert_eq!(
        due(1).await,
        ("2027-01-19T00:00:00Z".to_owned(), 45, remind.clone())
    );
    assert_eq!(
        due(2).await,
        ("2027-01-04T00:00:00Z".to_owned(), 30, remind.clone())
    );
    assert_eq!(
        due(3).await,
        ("2026-12-05T00:00:00Z".to_owned(), 0, remind.clone())
    );
    // Back to the plan's: for invoices issued from now on; invoice 1 keeps its terms.
    assert_eq!(
        h.expect(
            200,
            "PUT",
            "/v1/customers/acme/collection",
            json!({"net_days": null})
        )
        .await["effective_net_days"],
        30
    );
    assert_eq!(due(1).await.1, 45);
    h.ingest_and_close(&["acme"], "2026-12", 5, "2027-01-05T00:00:00Z")
        .await;
    assert_eq!(due(4).await.0, "2027-02-04T00:00:00Z");
}

on_both_backends!(
    payments_in_parts_are_idempotent_and_an_overpayment_credits_the_next_invoice,
    refunds_reopen_credit_notes_are_numbered_and_void_and_uncollectible_follow_their_rules,
    dunning_walks_an_overdue_invoice_to_uncollectible_through_an_outbox_read_once,
    collect_charges_through_the_provider_and_records_each_charge_once,
    account_credit_never_drives_a_total_below_zero_and_the_rest_carries_over,
    aging_puts_each_open_balance_in_the_bucket_of_its_days_past_due,
    a_customers_own_net_terms_set_their_invoices_due_dates,
);
