//! The server's core over a real store, each test run on both backends (a SQLite data
//! directory, and a database in a throwaway PostgreSQL cluster): plans, customers in
//! several timezones, idempotent batched ingest with bad events, restart, late events and the
//! grace window, preview and period close equal to `ratecard rate` on the same events.

use std::collections::BTreeMap;
use std::io::Cursor;

mod common;

use common::{Backend, data_dir, remove};
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::PreparedPlan;
use ratecard_engine::usage::{CustomerSetup, Subscription};
use ratecard_host::rating::{Collected, RateRequest, rate_stream};
use ratecard_host::server::{CustomerRecord, Database, EventOutcome, ManualClock, PlanRef, Server};
use serde_json::{Value, json};

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

const CUSTOMERS: [(&str, &str); 3] = [
    ("acme", "UTC"),
    ("globex", "America/New_York"),
    ("initech", "Asia/Tokyo"),
];

fn setup(timezone: &str) -> CustomerSetup {
    CustomerSetup {
        timezone: Some(timezone.to_owned()),
        subscription: Some(Subscription {
            start: "2026-10-01".to_owned(),
            billing_anchor: None,
            end: None,
        }),
        ..CustomerSetup::default()
    }
}

/// November events for the three customers, every customer's ids repeated once (a retry).
fn november_events() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..240u32 {
        let (customer, _) = CUSTOMERS[i as usize % 3];
        let day = 3 + (i % 24);
        let event = if i % 10 == 0 {
            json!({"id": format!("s{i}"), "customer": customer,
                   "timestamp": format!("2026-11-{day:02}T12:00:00Z"), "code": "seat.count",
                   "properties": {"seats": 3 + i % 5}})
        } else {
            json!({"id": format!("e{i}"), "customer": customer,
                   "timestamp": format!("2026-11-{day:02}T{:02}:30:00Z", i % 24), "code": "api.request"})
        };
        events.push(event);
    }
    // A retry of the first ten.
    events.extend(events[..10].to_vec());
    events
}

/// An invoice's JSON without its input hash: the server hashes what it stored, a quote the
/// usage document it was given.
fn without_input_hash(invoice: &ratecard_engine::invoice::Invoice) -> Value {
    let mut value = serde_json::to_value(invoice).unwrap();
    value.as_object_mut().unwrap().remove("input_hash");
    value
}

async fn open(database: &Database, now: &str) -> Server {
    Server::open_database(database, Box::new(ManualClock::at(millis(now))), &NoPlugins)
        .await
        .expect("the server opens")
}

async fn subscribe_all(server: &Server, plan: &PlanRef) {
    for (id, timezone) in CUSTOMERS {
        server
            .put_customer(CustomerRecord {
                id: id.to_owned(),
                setup: setup(timezone),
                plan: Some(plan.clone()),
            })
            .await
            .expect("a customer");
    }
}

async fn a_month_ingested_previewed_and_closed_as_ratecard_rate_rates_it(backend: Backend) {
    let dir = data_dir(backend, "month");
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let plan = server.add_plan(plan()).await.expect("the plan");
    assert_eq!(plan.version, 1);
    subscribe_all(&server, &plan).await;

    // A batch with good events, a retry of ten of them, and three bad ones.
    let mut batch = november_events();
    batch.push(json!({"id": "bad-1", "customer": "acme", "code": "api.request"}));
    batch.push(json!({"id": "bad-2", "customer": "nobody", "timestamp": "2026-11-05T00:00:00Z", "code": "api.request"}));
    batch.push(json!({"id": "bad-3", "customer": "acme", "timestamp": "2026-10-05T00:00:00Z", "code": "api.request"}));
    batch.push(json!({"id": "bad-4", "customer": "acme", "timestamp": "2026-09-05T00:00:00Z", "code": "api.request"}));
    let outcomes = server.ingest(batch.clone()).await.expect("ingest");
    assert_eq!(outcomes.len(), batch.len());
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, EventOutcome::Stored { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, EventOutcome::Duplicate { .. }))
        .count();
    assert_eq!((stored, duplicates), (240, 10));
    let rejected: Vec<(usize, Option<String>, String)> = outcomes
        .iter()
        .filter_map(|o| match o {
            EventOutcome::Rejected { index, id, error } => {
                Some((*index, id.clone(), error.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert_eq!(rejected[0].0, 250);
    assert_eq!(rejected[0].1.as_deref(), Some("bad-1"));
    assert!(rejected[0].2.contains("timestamp"), "{}", rejected[0].2);
    assert!(
        rejected[1].2.contains("no subscribed customer `nobody`"),
        "{}",
        rejected[1].2
    );
    assert!(rejected[2].2.contains("too late"), "{}", rejected[2].2);
    assert!(
        rejected[3].2.contains("before the subscription start"),
        "{}",
        rejected[3].2
    );
    assert_eq!(server.store().n_events().await.unwrap(), 240);

    // The whole batch again, after a restart: every good event is a duplicate, nothing is
    // counted twice, the bad ones are refused the same way.
    server.store().close().await;
    drop(server);
    let server = open(&dir, "2026-11-21T00:00:00Z").await;
    let again = server.ingest(batch.clone()).await.expect("ingest");
    assert!(
        again
            .iter()
            .all(|o| !matches!(o, EventOutcome::Stored { .. }))
    );
    assert_eq!(again.iter().filter(|o| o.is_accepted()).count(), 250);
    assert_eq!(server.store().n_events().await.unwrap(), 240);

    // The preview is `ratecard rate` over the same events, byte for byte.
    let prepared = PreparedPlan::new(plan_of(&server, &plan)).unwrap();
    let ndjson: String = november_events()[..240]
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    let customers: BTreeMap<String, CustomerSetup> = CUSTOMERS
        .iter()
        .map(|(id, tz)| (id.to_string(), setup(tz)))
        .collect();
    let request = RateRequest {
        period: "2026-11-15".to_owned(),
        customers,
        ..RateRequest::default()
    };
    let mut rated = Collected::default();
    rate_stream(
        &prepared,
        Cursor::new(ndjson.clone()),
        &request,
        &NoPlugins,
        |_| {},
        |r| rated.push(r),
    )
    .expect("rate_stream");
    assert_eq!(rated.invoices.len(), 3);
    for expected in &rated.invoices {
        let preview = server
            .preview(&expected.customer_id, "2026-11-15")
            .await
            .expect("preview")
            .expect("subscribed");
        assert_eq!(
            serde_json::to_string(&preview).unwrap(),
            serde_json::to_string(expected).unwrap(),
            "{}",
            expected.customer_id
        );
    }

    // Closing before the grace window ends is refused; a late event inside it is taken.
    let error = server.close("2026-11-15").await.expect_err("too early");
    assert!(error.to_string().contains("still open"), "{error}");
    drop(server);
    let server = open(&dir, "2026-12-02T00:00:00Z").await;
    let late = json!({"id": "late-1", "customer": "acme", "timestamp": "2026-11-30T23:00:00Z", "code": "api.request"});
    let outcome = server.ingest(vec![late.clone()]).await.unwrap();
    assert!(
        matches!(outcome[0], EventOutcome::Stored { .. }),
        "{outcome:?}"
    );
    drop(server);

    // After the grace window: close, numbered in customer order; a re-run changes nothing.
    let server = open(&dir, "2026-12-05T00:00:00Z").await;
    let closed = server.close("2026-11-15").await.expect("close");
    let numbers: Vec<(i64, &str)> = closed
        .iter()
        .map(|i| (i.number, i.customer_id.as_str()))
        .collect();
    assert_eq!(numbers, [(1, "acme"), (2, "globex"), (3, "initech")]);
    // Each final invoice is `ratecard rate` over the period's events, the late one included.
    let mut rated_final = Collected::default();
    rate_stream(
        &prepared,
        Cursor::new(format!("{ndjson}{late}\n")),
        &request,
        &NoPlugins,
        |_| {},
        |r| rated_final.push(r),
    )
    .expect("rate_stream");
    for (invoice, expected) in closed.iter().zip(&rated_final.invoices) {
        assert_eq!(invoice.body, serde_json::to_string(expected).unwrap());
    }
    assert_ne!(
        rated_final.invoices[0], rated.invoices[0],
        "the late event counts"
    );
    let rerun = server.close("2026-11-15").await.expect("close again");
    assert_eq!(rerun, closed);
    assert_eq!(server.store().invoices().await.unwrap().len(), 3);
    // The period is closed: a late event for it is refused with the reason.
    let outcome = server
        .ingest(vec![json!({"id": "late-2", "customer": "globex", "timestamp": "2026-11-29T00:00:00Z", "code": "api.request"})])
        .await
        .unwrap();
    assert!(
        matches!(&outcome[0], EventOutcome::Rejected { error, .. } if error.contains("too late") || error.contains("closed")),
        "{outcome:?}"
    );
    remove(&dir);
}

fn plan_of(server: &Server, plan: &PlanRef) -> Plan {
    server
        .plans()
        .into_iter()
        .find(|(r, _)| r == plan)
        .map(|(_, p)| p)
        .expect("the plan version")
}

async fn plans_are_versioned_and_an_invalid_plan_stores_nothing(backend: Backend) {
    let dir = data_dir(backend, "plans");
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let first = server.add_plan(plan()).await.unwrap();
    let mut changed = plan();
    changed.name = "API Pro (2027 prices)".to_owned();
    let second = server.add_plan(changed).await.unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    let mut invalid = plan();
    invalid.currency = "XYZ".to_owned();
    let error = server.add_plan(invalid).await.expect_err("invalid");
    assert!(error.to_string().contains("$.currency"), "{error}");
    drop(server);
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let versions: Vec<i64> = server.plans().iter().map(|(r, _)| r.version).collect();
    assert_eq!(versions, [1, 2]);
    remove(&dir);
}

/// One HTTP/1.1 request over a fresh loopback connection: status and body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let (status, _, body) =
        common::request(addr, method, path, key, Some(content_type), body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn the_http_api_needs_the_key_names_bad_input_and_ingests_batches(backend: Backend) {
    use ratecard_host::server::api;
    let dir = data_dir(backend, "http");
    let server = std::sync::Arc::new(open(&dir, "2026-11-20T00:00:00Z").await);
    server.add_key("k-operator", "test").await.unwrap();
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = Some("k-operator");
    let json_type = "application/json";

    assert_eq!(
        http(addr, "GET", "/healthz", None, json_type, "").await.0,
        200
    );
    // Without a key, or with another, every operator endpoint answers 401.
    for (method, path) in [
        ("GET", "/v1/plans"),
        ("POST", "/v1/events"),
        ("GET", "/v1/invoices"),
        ("POST", "/v1/close"),
    ] {
        assert_eq!(
            http(addr, method, path, None, json_type, "{}").await.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            http(addr, method, path, Some("guess"), json_type, "{}")
                .await
                .0,
            401,
            "{method} {path}"
        );
    }
    // A malformed plan: 400 with the path of each error, nothing stored.
    let (status, body) = http(addr, "POST", "/v1/plans", key, json_type,
        r#"{"id": "p", "currency": "USD", "charges": [{"id": "c", "model": {"type": "flat", "amount": "ten"}}], "colour": 1}"#).await;
    assert_eq!(status, 400, "{body}");
    let paths: Vec<&str> = body["error"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["$.charges[0].model.amount", "$.colour"], "{body}");
    assert!(server.plans().is_empty());
    // A valid one, and customers.
    let (status, created) = http(
        addr,
        "POST",
        "/v1/plans",
        key,
        json_type,
        &serde_json::to_string(&plan()).unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let customer = json!({"timezone": "Europe/Paris", "subscription": {"start": "2026-10-01"}, "plan": {"id": created["id"], "version": 1}});
    let (status, body) = http(
        addr,
        "PUT",
        "/v1/customers/acme",
        key,
        json_type,
        &customer.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // NDJSON with a line that is not JSON and a retried id: the good events are stored.
    let ndjson = [
        r#"{"id": "a1", "customer": "acme", "timestamp": "2026-11-05T10:00:00Z", "code": "api.request"}"#,
        "{not json",
        r#"{"id": "a2", "customer": "acme", "timestamp": "2026-11-06T10:00:00Z", "code": "api.request"}"#,
        r#"{"id": "a1", "customer": "acme", "timestamp": "2026-11-05T10:00:00Z", "code": "api.request"}"#,
    ].join("\n");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/events",
        key,
        "application/x-ndjson",
        &ndjson,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{body}"
    );
    assert_eq!(body["results"][1]["status"], "rejected");
    assert!(
        body["results"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not JSON"),
        "{body}"
    );
    assert_eq!(body["results"][3]["status"], "duplicate");
    assert_eq!(server.store().n_events().await.unwrap(), 2);
    // The preview counts each event once.
    let (status, invoice) = http(
        addr,
        "GET",
        "/v1/customers/acme/invoice?date=2026-11-15",
        key,
        json_type,
        "",
    )
    .await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(invoice["customer_id"], "acme");
    assert_eq!(invoice["period"]["timezone"], "Europe/Paris");
    let (status, _) = http(
        addr,
        "GET",
        "/v1/customers/nobody/invoice?date=2026-11-15",
        key,
        json_type,
        "",
    )
    .await;
    assert_eq!(status, 404);
    remove(&dir);
}

async fn the_demo_seeds_every_example_plan_customers_and_a_month_of_events(backend: Backend) {
    use ratecard_host::server::demo;
    let dir = data_dir(backend, "demo");
    let server = open(&dir, "2026-11-18T15:00:00Z").await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans");
    let mut plans = Vec::new();
    for entry in std::fs::read_dir(examples).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        plans.push(serde_json::from_str::<Plan>(&text).unwrap());
    }
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    let seeded = demo::seed(&server, plans).await.expect("seeded");
    assert!(seeded.n_plans >= 3 && seeded.n_customers == 6, "{seeded:?}");
    assert_eq!(
        server.store().n_events().await.unwrap() as usize,
        seeded.n_events
    );
    for customer in ["acme", "globex", "initech", "umbrella", "hooli", "stark"] {
        let invoice = server
            .preview(customer, "2026-11-15")
            .await
            .unwrap()
            .expect("subscribed");
        assert!(
            invoice.notes.iter().all(|n| !n.contains("rejected")),
            "{customer}: {:?}",
            invoice.notes
        );
        assert!(
            invoice
                .lines
                .iter()
                .any(|l| l.metric.is_some() && !l.quantity.is_zero()),
            "{customer}"
        );
    }
    remove(&dir);
}

/// Live usage, read after each of several batches, is the preview of the period so far (its
/// rater pushed only the new events), with a projection; a customer changed starts afresh.
async fn live_usage_follows_ingest_and_equals_the_preview(backend: Backend) {
    let dir = data_dir(backend, "live");
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let plan = server.add_plan(plan()).await.expect("the plan");
    subscribe_all(&server, &plan).await;
    let events = november_events();
    let mut checked = 0;
    for chunk in events.chunks(70) {
        server.ingest(chunk.to_vec()).await.expect("ingest");
        for (customer, _) in CUSTOMERS {
            let live = server
                .live_usage(customer)
                .await
                .expect("live usage")
                .expect("subscribed");
            let preview = server
                .preview(customer, "2026-11-20")
                .await
                .expect("preview")
                .expect("subscribed");
            assert_eq!(
                live.amount_so_far,
                preview.total.0.to_string(),
                "{customer}"
            );
            assert_eq!(live.period, preview.period, "{customer}");
            let lines: Vec<(String, String)> = live
                .lines
                .iter()
                .map(|l| (l.charge_id.clone(), l.amount.clone()))
                .collect();
            let expected: Vec<(String, String)> = preview
                .lines
                .iter()
                .map(|l| (l.charge_id.clone(), l.amount.0.to_string()))
                .collect();
            assert_eq!(lines, expected, "{customer}");
            let projected: rust_decimal::Decimal = live
                .projected_total
                .as_deref()
                .expect("a projection")
                .parse()
                .expect("decimal");
            let so_far: rust_decimal::Decimal = live.amount_so_far.parse().expect("decimal");
            assert!(projected >= so_far, "{customer}: {projected} < {so_far}");
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
    // Each stored event counted once (the retries in the last chunk are duplicates).
    let counted: u64 = {
        let mut n = 0;
        for (customer, _) in CUSTOMERS {
            n += server.live_usage(customer).await.unwrap().unwrap().events;
        }
        n
    };
    assert_eq!(counted, 240);

    // A new setup (a credit) drops the customer's live state: the next read starts afresh
    // and still equals the preview.
    let mut changed = setup("UTC");
    changed.credits =
        serde_json::from_value(json!([{"id": "welcome", "amount": "5.00"}])).expect("a credit");
    server
        .put_customer(CustomerRecord {
            id: "acme".to_owned(),
            setup: changed,
            plan: Some(plan.clone()),
        })
        .await
        .expect("changed");
    let live = server.live_usage("acme").await.unwrap().unwrap();
    let preview = server.preview("acme", "2026-11-20").await.unwrap().unwrap();
    assert_eq!(live.amount_so_far, preview.total.0.to_string());
    assert_eq!(live.events, 80);
    remove(&dir);
}

/// The usage stream sends the usage on connect and again after an ingest adds to it.
async fn the_usage_stream_sends_an_event_after_each_ingest(backend: Backend) {
    use ratecard_host::server::api;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = data_dir(backend, "sse");
    let server = std::sync::Arc::new(open(&dir, "2026-11-20T00:00:00Z").await);
    server.add_key("k-operator", "test").await.unwrap();
    let plan = server.add_plan(plan()).await.expect("the plan");
    subscribe_all(&server, &plan).await;
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /v1/customers/acme/usage/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k-operator\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = String::new();
    // Reads until `n` usage events arrived; their data lines.
    async fn read_events(
        stream: &mut tokio::net::TcpStream,
        seen: &mut String,
        n: usize,
    ) -> Vec<Value> {
        let mut buf = [0u8; 8192];
        loop {
            let events: Vec<Value> = seen
                .split("event: usage\ndata: ")
                .skip(1)
                .filter_map(|rest| rest.split_once('\n'))
                .filter_map(|(data, _)| serde_json::from_str(data).ok())
                .collect();
            if events.len() >= n {
                return events;
            }
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut buf))
                    .await
                    .expect("an event within 20 s")
                    .expect("read");
            assert!(read > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }
    let first = read_events(&mut stream, &mut seen, 1).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert_eq!(first[0]["events"], 0);
    server
        .ingest(vec![json!({"id": "x1", "customer": "acme",
            "timestamp": "2026-11-10T10:00:00Z", "code": "api.request"})])
        .await
        .unwrap();
    let events = read_events(&mut stream, &mut seen, 2).await;
    assert_eq!(events[1]["events"], 1, "{seen}");
    assert_eq!(events[1]["customer_id"], "acme");
    // Another customer's events do not wake acme's stream with a change of acme's figures.
    server
        .ingest(vec![json!({"id": "y1", "customer": "globex",
            "timestamp": "2026-11-10T10:00:00Z", "code": "api.request"})])
        .await
        .unwrap();
    server
        .ingest(vec![json!({"id": "x2", "customer": "acme",
            "timestamp": "2026-11-10T11:00:00Z", "code": "api.request"})])
        .await
        .unwrap();
    let events = read_events(&mut stream, &mut seen, 3).await;
    assert_eq!(events[2]["events"], 2, "{seen}");
    remove(&dir);
}

/// One HTTP/1.1 request: status, headers and body as text.
async fn http_text(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, String, String) {
    common::request(addr, method, path, key, None, "").await
}

/// `/openapi.json` documents every routed operation: each answers (401 without the key for
/// operator operations), and its schemas come from the Rust types.
async fn the_openapi_document_lists_every_operation_and_each_is_routed(backend: Backend) {
    use ratecard_host::server::api;
    let dir = data_dir(backend, "openapi");
    let server = std::sync::Arc::new(open(&dir, "2026-11-20T00:00:00Z").await);
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, _, body) = http_text(addr, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Plan",
        "Invoice",
        "CustomerRecord",
        "LiveUsage",
        "EventOutcome",
        "ApiError",
    ] {
        assert!(
            schemas.contains_key(name),
            "no schema {name}: {:?}",
            schemas.keys()
        );
    }
    // Every $ref points at a schema that is there.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').expect("closing quote")];
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
    let paths = doc["paths"].as_object().expect("paths");
    let mut n_operations = 0;
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            let concrete = path.replace("{id}", "acme").replace("{number}", "1");
            let (status, _, _) = http_text(addr, &method.to_uppercase(), &concrete, None).await;
            if operation.get("security").is_some() {
                assert_eq!(status, 401, "{method} {path} without a key");
            } else {
                assert_eq!(status, 200, "{method} {path}");
            }
            n_operations += 1;
        }
    }
    assert!(n_operations >= 14, "{n_operations} operations");
    // An undocumented path is not routed (with the key; without, nothing is disclosed: 401).
    server.add_key("k", "test").await.unwrap();
    assert_eq!(
        http_text(addr, "GET", "/v1/nothing", Some("k")).await.0,
        404
    );
    assert_eq!(
        http_text(addr, "DELETE", "/v1/plans", Some("k")).await.0,
        405
    );
    remove(&dir);
}

/// A final invoice prints as an HTML page with its lines and total, every text escaped.
async fn a_final_invoice_has_a_printable_html_page(backend: Backend) {
    use ratecard_host::server::api;
    let dir = data_dir(backend, "html");
    let server = {
        let server = open(&dir, "2026-11-20T00:00:00Z").await;
        let plan = server.add_plan(plan()).await.expect("the plan");
        server
            .put_customer(CustomerRecord {
                id: "o'brien <&> co".to_owned(),
                setup: setup("UTC"),
                plan: Some(plan),
            })
            .await
            .expect("customer");
        let events: Vec<Value> = (0..30)
            .map(|i| {
                json!({"id": format!("h{i}"), "customer": "o'brien <&> co",
                             "timestamp": "2026-11-10T10:00:00Z", "code": "api.request"})
            })
            .collect();
        server.ingest(events).await.expect("ingest");
        drop(server);
        std::sync::Arc::new(open(&dir, "2026-12-10T00:00:00Z").await)
    };
    server.add_key("k", "test").await.unwrap();
    let closed = server.close("2026-11-15").await.expect("close");
    let invoice: ratecard_engine::invoice::Invoice =
        serde_json::from_str(&closed[0].body).expect("an invoice");
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, head, page) = http_text(addr, "GET", "/v1/invoices/1/html", Some("k")).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(page.contains("<h1>Invoice 1</h1>"), "{page}");
    assert!(page.contains("o&#39;brien &lt;&amp;&gt; co"), "{page}");
    assert!(!page.contains("<&>"));
    assert!(page.contains(&format!("{} USD", invoice.total.0)), "{page}");
    for line in &invoice.lines {
        assert!(page.contains(&line.description), "{}", line.description);
    }
    assert!(page.contains("@media print"));
    assert_eq!(
        http_text(addr, "GET", "/v1/invoices/2/html", Some("k"))
            .await
            .0,
        404
    );
    remove(&dir);
}

/// A move to another plan version mid-period is prorated as the engine prorates a usage
/// document's `plan_change`; earlier periods keep the old version, later ones the new. A
/// cancellation bills the current period whole and nothing after it.
async fn a_plan_change_mid_period_is_prorated_and_a_cancellation_ends_the_subscription(
    backend: Backend,
) {
    use ratecard_engine::usage::Usage;
    let dir = data_dir(backend, "change");
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let v1 = server.add_plan(plan()).await.expect("v1");
    let mut dearer = plan();
    let text = serde_json::to_string(&dearer).unwrap();
    assert!(text.contains(r#""amount":"49""#), "{text}");
    dearer = serde_json::from_str(&text.replace(r#""amount":"49""#, r#""amount":"99""#)).unwrap();
    let v2 = server.add_plan(dearer.clone()).await.expect("v2");
    assert_eq!(v2.version, 2);
    server
        .put_customer(CustomerRecord {
            id: "acme".to_owned(),
            setup: setup("Europe/Paris"),
            plan: Some(v1.clone()),
        })
        .await
        .unwrap();
    let events: Vec<Value> = (0..60)
        .map(|i| {
            json!({"id": format!("m{i}"), "customer": "acme",
                         "timestamp": format!("2026-11-{:02}T10:00:00Z", 1 + i % 28),
                         "code": "api.request"})
        })
        .collect();
    server.ingest(events.clone()).await.unwrap();

    let subscription = server
        .change_plan("acme", v2.clone(), "2026-11-16")
        .await
        .expect("a move");
    assert_eq!(subscription.plan.as_ref(), Some(&v2));
    assert_eq!(subscription.changes.len(), 1);
    // One move per period; a plan of another interval; a move back in time.
    let again = server.change_plan("acme", v1.clone(), "2026-11-18").await;
    assert!(
        again
            .unwrap_err()
            .to_string()
            .contains("one move per period")
    );
    let mut yearly = plan();
    yearly.id = "yearly".to_owned();
    yearly.interval = serde_json::from_value(json!("year")).unwrap();
    let yearly = server.add_plan(yearly).await.unwrap();
    let other = server.change_plan("acme", yearly, "2026-12-05").await;
    assert!(other.unwrap_err().to_string().contains("billing interval"));
    let back = server.change_plan("acme", v1.clone(), "2026-11-10").await;
    assert!(back.unwrap_err().to_string().contains("forward in time"));

    // November: the engine's proration of the same move over the same events.
    let preview = server
        .preview("acme", "2026-11-20")
        .await
        .unwrap()
        .expect("subscribed");
    let usage: Usage = serde_json::from_value(json!({
        "customer": {"id": "acme", "timezone": "Europe/Paris"},
        "subscription": {"start": "2026-10-01"},
        "period": {"containing": "2026-11-20"},
        "plan_change": {"at": "2026-11-16", "previous_plan": plan()},
        "events": events,
    }))
    .expect("usage");
    let expected = PreparedPlan::new(dearer.clone())
        .unwrap()
        .quote(&usage, &NoPlugins)
        .expect("a quote");
    assert_eq!(without_input_hash(&preview), without_input_hash(&expected));
    let fee: Vec<String> = preview
        .lines
        .iter()
        .filter(|l| l.charge_id == "platform")
        .map(|l| l.amount.0.to_string())
        .collect();
    assert_eq!(fee.len(), 2, "both plans' platform fees, prorated: {fee:?}");
    // October stays on v1, December is v2 whole.
    let october = server.preview("acme", "2026-10-15").await.unwrap().unwrap();
    assert_eq!(october.plan_id, "api-pro-2026");
    let platform_of = |invoice: &ratecard_engine::invoice::Invoice| {
        invoice
            .lines
            .iter()
            .find(|l| l.charge_id == "platform")
            .map(|l| l.amount.0.to_string())
    };
    assert_eq!(platform_of(&october).as_deref(), Some("49.00"));
    let december = server.preview("acme", "2026-12-15").await.unwrap().unwrap();
    assert_eq!(platform_of(&december).as_deref(), Some("99.00"));
    // Live usage rates the current period the same way.
    let live = server.live_usage("acme").await.unwrap().unwrap();
    assert_eq!(live.amount_so_far, preview.total.0.to_string());

    // Cancel: at the end of November (now is Nov 20): November billed, December not.
    let cancelled = server.cancel("acme", None).await.expect("cancel");
    assert_eq!(
        cancelled.cancelled_from.as_deref(),
        Some("2026-12-01T00:00:00+01:00")
    );
    assert_eq!(
        server.cancel("acme", None).await.unwrap(),
        cancelled,
        "idempotent"
    );
    assert!(
        server
            .preview("acme", "2026-12-15")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        server
            .preview("acme", "2026-11-15")
            .await
            .unwrap()
            .is_some()
    );
    let outcomes = server
        .ingest(vec![
            json!({"id": "late-nov", "customer": "acme", "timestamp": "2026-11-30T10:00:00Z", "code": "api.request"}),
            json!({"id": "dec", "customer": "acme", "timestamp": "2026-12-01T10:00:00Z", "code": "api.request"}),
        ])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], EventOutcome::Stored { .. }),
        "{outcomes:?}"
    );
    match &outcomes[1] {
        EventOutcome::Rejected { error, .. } => assert!(error.contains("cancelled"), "{error}"),
        other => panic!("{other:?}"),
    }
    remove(&dir);
}

/// Cancelling now ends the subscription inside its period: the period is cut there and billed
/// for its part as the engine bills a usage document's `subscription.end` (the flat fee
/// prorated, usage up to the end), events from the end on are refused, later periods bill
/// nothing, and the period closes once the grace window after the end (not after the month) is
/// over.
async fn an_immediate_cancellation_bills_the_period_up_to_its_end(backend: Backend) {
    use ratecard_engine::usage::Usage;
    let dir = data_dir(backend, "cancel-now");
    let server = open(&dir, "2026-11-16T09:30:00Z").await;
    let v1 = server.add_plan(plan()).await.expect("a plan");
    server
        .put_customer(CustomerRecord {
            id: "acme".to_owned(),
            setup: setup("Europe/Paris"),
            plan: Some(v1.clone()),
        })
        .await
        .unwrap();
    let mut events: Vec<Value> = (0..30)
        .map(|i| {
            json!({"id": format!("m{i}"), "customer": "acme",
                   "timestamp": format!("2026-11-{:02}T08:00:00Z", 1 + i % 16),
                   "code": "api.request"})
        })
        .collect();
    server.ingest(events.clone()).await.unwrap();

    // A time that is no instant; an end before the start.
    let bad = server.cancel("acme", Some("soon")).await.unwrap_err();
    assert!(bad.to_string().contains("$.at"), "{bad}");
    let early = server.cancel("acme", Some("2026-09-01")).await.unwrap_err();
    assert!(
        early
            .to_string()
            .contains("is not after the subscription's start"),
        "{early}"
    );
    let cancelled = server.cancel("acme", Some("now")).await.expect("cancel");
    assert_eq!(
        cancelled.cancelled_from.as_deref(),
        Some("2026-11-16T10:30:00+01:00")
    );
    // A retry answers the same; another time is refused.
    assert_eq!(server.cancel("acme", Some("now")).await.unwrap(), cancelled);
    assert_eq!(server.cancel("acme", None).await.unwrap(), cancelled);
    let other = server.cancel("acme", Some("2026-11-20")).await.unwrap_err();
    assert!(other.to_string().contains("already cancelled"), "{other}");

    // An event before the end is still accepted (late); one at the end is not.
    let before = json!({"id": "before", "customer": "acme",
                        "timestamp": "2026-11-16T09:29:59Z", "code": "api.request"});
    let at_end = json!({"id": "at-end", "customer": "acme",
                        "timestamp": "2026-11-16T09:30:00Z", "code": "api.request"});
    let outcomes = server.ingest(vec![before.clone(), at_end]).await.unwrap();
    assert!(
        matches!(outcomes[0], EventOutcome::Stored { .. }),
        "{outcomes:?}"
    );
    match &outcomes[1] {
        EventOutcome::Rejected { error, .. } => assert!(error.contains("cancelled"), "{error}"),
        other => panic!("{other:?}"),
    }
    events.push(before);

    // The preview is the engine's quote of the same events with the subscription's end.
    let preview = server
        .preview("acme", "2026-11-10")
        .await
        .unwrap()
        .expect("billed");
    let usage: Usage = serde_json::from_value(json!({
        "customer": {"id": "acme", "timezone": "Europe/Paris"},
        "subscription": {"start": "2026-10-01", "end": "2026-11-16T09:30:00Z"},
        "period": {"containing": "2026-11-10"},
        "events": events,
    }))
    .expect("usage");
    let expected = PreparedPlan::new(plan())
        .unwrap()
        .quote(&usage, &NoPlugins)
        .expect("a quote");
    assert_eq!(without_input_hash(&preview), without_input_hash(&expected));
    assert_eq!(preview.period.end, "2026-11-16T10:30:00+01:00");
    let platform = preview
        .lines
        .iter()
        .find(|l| l.charge_id == "platform")
        .expect("the platform fee");
    assert_eq!(platform.amount.0.to_string(), "24.50", "49.00 × 15/30 days");
    assert!(
        preview
            .notes
            .iter()
            .any(|n| n.contains("the subscription ends at 2026-11-16T10:30:00+01:00")),
        "{:?}",
        preview.notes
    );
    assert!(
        server
            .preview("acme", "2026-12-15")
            .await
            .unwrap()
            .is_none()
    );
    // From the end on, no subscription is in force: no live usage.
    assert!(server.live_usage("acme").await.unwrap().is_none());

    // Still inside the grace window after the end: not closed yet.
    let early = server.close("2026-11-10").await.unwrap_err();
    assert!(early.to_string().contains("still open"), "{early}");
    server.store().close().await;
    drop(server);
    // Three days and a minute after the end, two weeks before the month's end.
    let server = open(&dir, "2026-11-19T09:31:00Z").await;
    let closed = server.close("2026-11-10").await.expect("close");
    assert_eq!(closed.len(), 1);
    let invoice: ratecard_engine::invoice::Invoice = serde_json::from_str(&closed[0].body).unwrap();
    assert_eq!(without_input_hash(&invoice), without_input_hash(&expected));
    remove(&dir);
}

/// On SQLite, batches arriving together are written in one transaction (group commit); on
/// PostgreSQL each is its own. Either way each caller gets its own outcomes in its own order:
/// an id repeated across batches is stored by the first batch holding it and acknowledged as
/// a duplicate to the others, every event is stored once; a batch arriving alone is a
/// transaction of its own.
async fn concurrent_batches_share_a_commit_and_count_each_event_once(backend: Backend) {
    use ratecard_host::server::store::NewEvent;
    let dir = data_dir(backend, "group");
    let server = open(&dir, "2026-11-20T00:00:00Z").await;
    let store = server.store();
    // Batch k holds ids 200k .. 200k+300: it shares 100 ids with the next batch.
    let batches: Vec<Vec<(NewEvent, i64)>> = (0..8usize)
        .map(|k| {
            (k * 200..k * 200 + 300)
                .map(|i| {
                    let event = NewEvent {
                        customer_id: CUSTOMERS[i % 3].0.to_owned(),
                        event_id: format!("g{i}"),
                        ts: millis("2026-11-10T10:00:00Z") + i as i64,
                        body: format!(r#"{{"id":"g{i}"}}"#),
                    };
                    (event, millis("2026-11-01T00:00:00Z"))
                })
                .collect()
        })
        .collect();
    let before = store.event_commits();
    // Each call queues its batch before its first await: on SQLite the eight go in one
    // transaction.
    let outcomes =
        futures_util::future::join_all(batches.iter().map(|b| store.insert_events(b, 7))).await;
    let grouped = if store.backend() == "sqlite" { 1 } else { 8 };
    assert_eq!(
        store.event_commits() - before,
        grouped,
        "commits for the eight batches"
    );
    let mut stored_by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.expect("stored");
        assert_eq!(outcome.len(), 300);
        for (index, stored) in outcome.into_iter().enumerate() {
            match stored {
                Ok(true) => stored_by.entry(k * 200 + index).or_default().push(k),
                Ok(false) => {}
                Err(start) => panic!("batch {k}, event {index}: refused for {start}"),
            }
            // In one transaction, the ids shared with the batch before were stored by it.
            if grouped == 1 {
                let first_holder = k == 0 || index >= 100;
                assert_eq!(stored, Ok(first_holder), "batch {k}, event {index}");
            }
        }
    }
    // Every id stored exactly once, by one of the batches holding it.
    assert_eq!(stored_by.len(), 1700);
    assert!(stored_by.values().all(|by| by.len() == 1), "{stored_by:?}");
    assert_eq!(store.n_events().await.unwrap(), 1700);
    // A retry of one batch, alone: its own transaction, all duplicates.
    let again = store.insert_events(&batches[3], 8).await.expect("stored");
    assert!(again.iter().all(|o| *o == Ok(false)));
    assert_eq!(store.event_commits() - before, grouped + 1);
    assert_eq!(store.n_events().await.unwrap(), 1700);
    remove(&dir);
}

on_both_backends!(
    a_month_ingested_previewed_and_closed_as_ratecard_rate_rates_it,
    an_immediate_cancellation_bills_the_period_up_to_its_end,
    concurrent_batches_share_a_commit_and_count_each_event_once,
    plans_are_versioned_and_an_invalid_plan_stores_nothing,
    the_http_api_needs_the_key_names_bad_input_and_ingests_batches,
    the_demo_seeds_every_example_plan_customers_and_a_month_of_events,
    live_usage_follows_ingest_and_equals_the_preview,
    the_usage_stream_sends_an_event_after_each_ingest,
    the_openapi_document_lists_every_operation_and_each_is_routed,
    a_final_invoice_has_a_printable_html_page,
    a_plan_change_mid_period_is_prorated_and_a_cancellation_ends_the_subscription,
);

/// The two backends' migrations are the same versions, with the same names: a table added to
/// one is added to the other.
#[test]
fn both_backends_have_the_same_migrations() {
    let names = |backend: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
}
