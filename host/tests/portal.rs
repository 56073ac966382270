//! The customer portal and the operator reports through HTTP: the API's router on a loopback
//! port over a real SQLite store, time from a `ManualClock` the tests move (a link's expiry, a
//! period's close), and `ratecard serve --demo` as a process. Portal links open one customer's
//! data and nothing else (the isolation matrix), expire and are revoked; the reports' sums are
//! the invoices' own, and their CSV is RFC 4180.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ratecard_engine::Decimal;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::usage::{CustomerSetup, Subscription, Timestamp};
use ratecard_host::server::{Clock, CustomerRecord, Database, ManualClock, PlanRef, Server, api};
use serde_json::{Value, json};

use common::{Backend, data_dir, remove};

const KEY: &str = "k-operator";

/// A clock the test keeps a handle on.
#[derive(Debug, Clone)]
struct Shared(Arc<ManualClock>);

impl Clock for Shared {
    fn now(&self) -> i64 {
        self.0.now()
    }
}

fn millis(text: &str) -> i64 {
    Timestamp::parse_rfc3339(text).expect("a timestamp").0
}

fn example_plan(file: &str) -> Plan {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/plans")
            .join(file),
    )
    .expect("the example plan");
    serde_json::from_str(&text).expect("a plan")
}

/// One HTTP/1.1 request over a fresh connection: status, head and body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    common::request(addr, method, path, token, Some("application/json"), body).await
}

async fn get_json(addr: std::net::SocketAddr, path: &str, token: &str) -> Value {
    let (status, _, body) = http(addr, "GET", path, Some(token), "").await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// A store with two plans (USD and EUR), three customers (acme and globex on API Pro, initech
/// on storage), October closed (invoices 1–3) and November's events so far; the clock at
/// 2026-11-20.
struct World {
    clock: Arc<ManualClock>,
    server: Arc<Server>,
    addr: std::net::SocketAddr,
    database: Database,
    /// November's `api.request` events per customer.
    november_calls: BTreeMap<&'static str, u64>,
}

impl Drop for World {
    fn drop(&mut self) {
        remove(&self.database);
    }
}

fn api_events(customer: &str, month: &str, n: u32, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{customer}-{i}"), "customer": customer,
                   "timestamp": format!("2026-{month}-{:02}T{:02}:15:00Z", 1 + i % 19, 6 + i % 18),
                   "code": "api.request"})
        })
        .collect()
}

fn storage_events(customer: &str, month: &str, n: u32, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{customer}-{i}"), "customer": customer,
                   "timestamp": format!("2026-{month}-{:02}T10:00:00Z", 1 + i % 19),
                   "code": if i % 3 == 0 { "bucket.size" } else { "egress" },
                   "properties": {"bytes": 1_500_000_000u64 + u64::from(i) * 10_000_000, "region": "eu", "method": "PUT"}})
        })
        .collect()
}

async fn world(backend: Backend, name: &str) -> World {
    let database = data_dir(backend, name);
    let clock = Arc::new(ManualClock::at(millis("2026-10-20T00:00:00Z")));
    let server = Arc::new(
        Server::open_database(&database, Box::new(Shared(clock.clone())), &NoPlugins)
            .await
            .expect("the server opens"),
    );
    server.add_key(KEY, "test").await.expect("a key");
    let api_pro = server
        .add_plan(example_plan("saas-api.json"))
        .await
        .unwrap();
    let storage = server
        .add_plan(example_plan("cloud-storage.json"))
        .await
        .unwrap();
    for (id, timezone, plan) in [
        ("acme", "UTC", &api_pro),
        ("globex", "America/New_York", &api_pro),
        ("initech", "Europe/Paris", &storage),
    ] {
        server
            .put_customer(CustomerRecord {
                id: id.to_owned(),
                setup: CustomerSetup {
                    timezone: Some(timezone.to_owned()),
                    subscription: Some(Subscription {
                        start: "2026-10-01".to_owned(),
                        billing_anchor: None,
                        end: None,
                    }),
                    ..CustomerSetup::default()
                },
                plan: Some(plan.clone()),
            })
            .await
            .expect("a customer");
    }
    let mut october = api_events("acme", "10", 300, "oct");
    october.extend(api_events("globex", "10", 120, "oct"));
    october.extend(storage_events("initech", "10", 30, "oct"));
    server.ingest(october).await.expect("ingest");
    // October closes once its grace window is over.
    clock.set(millis("2026-11-10T00:00:00Z"));
    let closed = server.close("2026-10-15").await.expect("close");
    assert_eq!(closed.len(), 3);
    let november_calls = BTreeMap::from([("acme", 190), ("globex", 57)]);
    let mut november = Vec::new();
    for (customer, n) in &november_calls {
        november.extend(api_events(customer, "11", *n as u32, "nov"));
    }
    november.extend(storage_events("initech", "11", 20, "nov"));
    server.ingest(november).await.expect("ingest");
    clock.set(millis("2026-11-20T00:00:00Z"));
    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    World {
        clock,
        server,
        addr,
        database,
        november_calls,
    }
}

async fn new_link(world: &World, customer: &str, body: &str) -> Value {
    let (status, head, body) = http(
        world.addr,
        "POST",
        &format!("/v1/customers/{customer}/portal-links"),
        Some(KEY),
        body,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    serde_json::from_str(&body).expect("JSON")
}

/// Every portal endpoint, with an invoice number of the customer's where one is needed.
fn portal_paths(own_invoice: i64) -> Vec<String> {
    vec![
        "/portal/v1/account".to_owned(),
        "/portal/v1/usage".to_owned(),
        "/portal/v1/usage/daily".to_owned(),
        "/portal/v1/plan".to_owned(),
        "/portal/v1/invoices".to_owned(),
        "/portal/v1/payments".to_owned(),
        format!("/portal/v1/invoices/{own_invoice}"),
        format!("/portal/v1/invoices/{own_invoice}/html"),
    ]
}

async fn a_portal_token_reads_its_customer_and_nothing_of_another(backend: Backend) {
    let world = world(backend, "isolation").await;
    let addr = world.addr;
    let acme = new_link(&world, "acme", r#"{"expires_in_days": 30}"#).await;
    let token = acme["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("rp_") && token.len() == 3 + 64, "{token}");
    assert_eq!(acme["url"], format!("/portal.html#token={token}"));
    assert_eq!(acme["customer_id"], "acme");
    assert_eq!(acme["expires_at"], "2026-12-20T00:00:00Z");
    let globex = new_link(&world, "globex", "").await;
    let globex_token = globex["token"].as_str().unwrap().to_owned();

    // The same numbers as the operator's API.
    assert_eq!(
        get_json(addr, "/portal/v1/usage", &token).await,
        get_json(addr, "/v1/customers/acme/usage", KEY).await
    );
    assert_eq!(
        get_json(addr, "/portal/v1/usage", &globex_token).await,
        get_json(addr, "/v1/customers/globex/usage", KEY).await
    );
    let account = get_json(addr, "/portal/v1/account", &token).await;
    assert_eq!(account["customer_id"], "acme");
    assert_eq!(account["plan_name"], "API Pro");
    let plan = get_json(addr, "/portal/v1/plan", &token).await;
    assert_eq!(
        (plan["id"].as_str(), plan["version"].as_i64()),
        (Some("api-pro-2026"), Some(1))
    );

    // Only acme's invoices; each is the operator's, JSON and HTML.
    let operator_invoices = get_json(addr, "/v1/invoices", KEY).await;
    let number_of = |customer: &str| {
        operator_invoices["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["customer_id"] == customer)
            .and_then(|i| i["number"].as_i64())
            .expect("an invoice")
    };
    let (acme_number, globex_number, initech_number) =
        (number_of("acme"), number_of("globex"), number_of("initech"));
    let listed = get_json(addr, "/portal/v1/invoices", &token).await;
    let numbers: Vec<i64> = listed["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [acme_number]);
    let own = get_json(addr, &format!("/portal/v1/invoices/{acme_number}"), &token).await;
    let operator_own = get_json(addr, &format!("/v1/invoices/{acme_number}"), KEY).await;
    assert_eq!(own["invoice"], operator_own["invoice"]);
    assert_eq!(
        listed["invoices"][0]["total"],
        operator_own["invoice"]["total"]
    );
    let (status, _, html) = http(
        addr,
        "GET",
        &format!("/portal/v1/invoices/{acme_number}/html"),
        Some(&token),
        "",
    )
    .await;
    let (_, _, operator_html) = http(
        addr,
        "GET",
        &format!("/v1/invoices/{acme_number}/html"),
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(html, operator_html);

    // What is owed and paid, as the operator's books say; a payment of globex's shows in
    // globex's portal only, without the operator's reference or who recorded it.
    let (status, _, body) = http(
        addr,
        "POST",
        &format!("/v1/invoices/{globex_number}/payments"),
        Some(KEY),
        r#"{"amount": "10.00", "method": "card", "reference": "ops-secret-ref"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (customer, number, portal_token) in [
        ("acme", acme_number, &token),
        ("globex", globex_number, &globex_token),
    ] {
        let collection = get_json(addr, &format!("/v1/invoices/{number}/collection"), KEY).await;
        let listed = get_json(addr, "/portal/v1/invoices", portal_token).await;
        let summary = &listed["invoices"][0];
        for field in ["state", "due_at", "paid", "balance"] {
            assert_eq!(summary[field], collection[field], "{customer} {field}");
        }
        let payments = get_json(addr, "/portal/v1/payments", portal_token).await;
        if customer == "acme" {
            assert_eq!(payments["payments"], serde_json::json!([]));
        } else {
            assert_eq!(summary["paid"], "10.00");
            assert_eq!(
                payments["payments"],
                serde_json::json!([{"invoice": globex_number, "at": "2026-11-20T00:00:00Z",
                    "method": "card", "currency": "USD", "amount": "10.00", "refunded": "0.00"}])
            );
            assert!(!payments.to_string().contains("ops-secret-ref"));
        }
    }

    // Another customer's invoice answers exactly as a missing one, JSON and HTML, whatever the
    // guess.
    let (missing_status, missing_head, missing_body) =
        http(addr, "GET", "/portal/v1/invoices/999999", Some(&token), "").await;
    assert_eq!(missing_status, 404);
    assert!(missing_head.contains("cache-control: no-store"));
    for guess in [
        globex_number.to_string(),
        initech_number.to_string(),
        "0".to_owned(),
        "-1".to_owned(),
        "abc".to_owned(),
        format!("{globex_number}.0"),
        "99999999999999999999999".to_owned(),
    ] {
        for suffix in ["", "/html"] {
            let (status, _, body) = http(
                addr,
                "GET",
                &format!("/portal/v1/invoices/{guess}{suffix}"),
                Some(&token),
                "",
            )
            .await;
            assert_eq!(
                (status, body.as_str()),
                (404, missing_body.as_str()),
                "{guess}{suffix}"
            );
        }
    }
    // And globex's token cannot open acme's invoice either.
    let (status, _, body) = http(
        addr,
        "GET",
        &format!("/portal/v1/invoices/{acme_number}"),
        Some(&globex_token),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (404, missing_body.as_str()));

    // Without a token, with a guessed one, with the operator key: every portal endpoint is 401.
    let guessed = format!("rp_{}", "0".repeat(64));
    for path in portal_paths(acme_number) {
        for presented in [None, Some(guessed.as_str()), Some(KEY), Some("")] {
            let (status, _, body) = http(addr, "GET", &path, presented, "").await;
            assert_eq!(status, 401, "{path} with {presented:?}: {body}");
            let error: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(error["error"]["code"], "unauthorized", "{body}");
        }
        let (status, _, _) = http(addr, "GET", &path, Some(&token), "").await;
        assert_eq!(status, 200, "{path}");
    }
    // A portal token opens no operator endpoint.
    for (method, path) in [
        ("GET", "/v1/customers/acme/usage"),
        ("GET", "/v1/customers/acme"),
        ("GET", "/v1/invoices"),
        ("GET", format!("/v1/invoices/{acme_number}").as_str()),
        ("GET", "/v1/customers"),
        ("GET", "/v1/reports/revenue"),
        ("GET", "/v1/reports/revenue.csv"),
        ("POST", "/v1/customers/acme/portal-links"),
        ("GET", "/v1/customers/acme/portal-links"),
        (
            "DELETE",
            format!("/v1/portal-links/{}", acme["id"].as_str().unwrap()).as_str(),
        ),
    ] {
        let (status, _, body) = http(addr, method, path, Some(&token), "").await;
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    // Only the token's hash is at rest: the token appears nowhere in the database (SQLite:
    // in no byte of its files; PostgreSQL: in no portal link row, which holds the hash).
    let hash = ratecard_host::server::api::key_hash(&token);
    let links = world.server.store().portal_links("acme").await.unwrap();
    assert!(
        links.iter().any(|l| l.token_hash == hash),
        "its hash is stored"
    );
    assert!(links.iter().all(|l| l.token_hash != token && l.id != token));
    world.server.store().close().await;
    if let Database::Sqlite(dir) = &world.database {
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let needle = token.as_bytes();
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "the token is stored"
        );
        assert!(
            stored.windows(hash.len()).any(|w| w == hash.as_bytes()),
            "its hash is stored"
        );
    }
}

async fn a_portal_link_expires_on_the_servers_clock_and_is_revoked(backend: Backend) {
    let world = world(backend, "expiry").await;
    let addr = world.addr;
    let short = new_link(&world, "acme", r#"{"expires_in_days": 1}"#).await;
    let long = new_link(&world, "acme", r#"{"expires_in_days": 365}"#).await;
    let (short_token, long_token) = (
        short["token"].as_str().unwrap().to_owned(),
        long["token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        http(addr, "GET", "/portal/v1/usage", Some(&short_token), "")
            .await
            .0,
        200
    );
    // A millisecond before the day is over it opens; at the day's end it does not.
    world.clock.set(millis("2026-11-21T00:00:00Z") - 1);
    assert_eq!(
        http(addr, "GET", "/portal/v1/account", Some(&short_token), "")
            .await
            .0,
        200
    );
    world.clock.set(millis("2026-11-21T00:00:00Z"));
    let (status, _, body) = http(addr, "GET", "/portal/v1/account", Some(&short_token), "").await;
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "link_expired", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Revoked: refused from then on, the other link of the customer unaffected.
    let long_id = long["id"].as_str().unwrap();
    assert_eq!(
        http(addr, "GET", "/portal/v1/usage", Some(&long_token), "")
            .await
            .0,
        200
    );
    let (status, _, body) = http(
        addr,
        "DELETE",
        &format!("/v1/portal-links/{long_id}"),
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let revoked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_at"], "2026-11-21T00:00:00Z");
    let (status, _, body) = http(addr, "GET", "/portal/v1/usage", Some(&long_token), "").await;
    assert_eq!(status, 401);
    assert!(body.contains("link_revoked"), "{body}");
    // Again: the same revocation (idempotent, the first instant kept).
    world.clock.set(millis("2026-11-22T00:00:00Z"));
    let (status, _, body) = http(
        addr,
        "DELETE",
        &format!("/v1/portal-links/{long_id}"),
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"revoked_at\":\"2026-11-21T00:00:00Z\""),
        "{body}"
    );
    let (status, _, body) =
        http(addr, "DELETE", "/v1/portal-links/pl_nothing", Some(KEY), "").await;
    assert_eq!(status, 404, "{body}");

    // The customer's links, newest first, with their state; no token in the list.
    let (status, _, body) = http(
        addr,
        "GET",
        "/v1/customers/acme/portal-links",
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(!body.contains(&short_token) && !body.contains(&long_token));
    let links: Value = serde_json::from_str(&body).unwrap();
    let states: Vec<(&str, &str)> = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(states.len(), 2);
    assert!(
        states.contains(&(short["id"].as_str().unwrap(), "expired")),
        "{states:?}"
    );
    assert!(states.contains(&(long_id, "revoked")), "{states:?}");

    // Bad requests name what is wrong.
    for (body, status, needle) in [
        (r#"{"expires_in_days": 0}"#, 422, "$.expires_in_days"),
        (r#"{"expires_in_days": 366}"#, 422, "$.expires_in_days"),
        (r#"{"expires_in_days": "soon"}"#, 400, "$.expires_in_days"),
        (r#"{"expire": 3}"#, 400, "expire"),
        ("[", 400, "invalid_json"),
    ] {
        let (got, _, answer) = http(
            addr,
            "POST",
            "/v1/customers/acme/portal-links",
            Some(KEY),
            body,
        )
        .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.contains(needle), "{body}: {answer}");
    }
    let (status, _, body) = http(
        addr,
        "POST",
        "/v1/customers/nobody/portal-links",
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("customer `nobody` does not exist"), "{body}");
    let (status, _, _) = http(
        addr,
        "GET",
        "/v1/customers/nobody/portal-links",
        Some(KEY),
        "",
    )
    .await;
    assert_eq!(status, 404);
}

async fn the_portals_days_add_up_and_its_what_if_usage_quotes_the_projected_bill(backend: Backend) {
    let world = world(backend, "days").await;
    let addr = world.addr;
    // A fleet customer: its fuel card fees are priced per transaction, so the what-if usage
    // carries each transaction.
    let fleet = world
        .server
        .add_plan(example_plan("fleet-mileage.json"))
        .await
        .unwrap();
    world
        .server
        .put_customer(CustomerRecord {
            id: "wayne".to_owned(),
            setup: CustomerSetup {
                subscription: Some(Subscription {
                    start: "2026-11-01".to_owned(),
                    billing_anchor: None,
                    end: None,
                }),
                ..CustomerSetup::default()
            },
            plan: Some(fleet),
        })
        .await
        .unwrap();
    let trips: Vec<Value> = (0..12)
        .map(|i| {
            let (code, properties) = if i % 3 == 0 {
                ("fuel.purchase", json!({"amount": format!("{}.40", 30 + i * 7)}))
            } else {
                ("trip.completed", json!({"km": 80 + i * 11, "vehicle_id": format!("v{}", i % 4)}))
            };
            json!({"id": format!("w{i}"), "customer": "wayne", "timestamp": format!("2026-11-{:02}T09:00:00Z", 2 + i),
                   "code": code, "properties": properties})
        })
        .collect();
    let stored = world.server.ingest(trips).await.unwrap();
    assert!(stored.iter().all(|o| o.is_accepted()), "{stored:?}");
    for customer in ["acme", "globex", "initech", "wayne"] {
        let link = new_link(&world, customer, "").await;
        let token = link["token"].as_str().unwrap();
        let days = get_json(addr, "/portal/v1/usage/daily", token).await;
        let live = get_json(addr, "/portal/v1/usage", token).await;
        assert_eq!(days["customer_id"], customer);
        assert_eq!(days["elapsed"], live["elapsed"]);
        assert_eq!(days["period"]["start"], live["period"]["start"]);
        // November 1 to 20 in the customer's timezone: globex's (New York) 20th has begun at
        // 00:00 UTC, acme's (UTC) too; Paris is an hour ahead.
        let list = days["days"].as_array().unwrap();
        assert_eq!(
            list.len(),
            if customer == "globex" { 19 } else { 20 },
            "{customer}"
        );
        assert_eq!(list[0]["date"], "2026-11-01");
        // The days of an additive metric add up to its quantity so far.
        for metric in days["metrics"].as_array().unwrap() {
            let code = metric["code"].as_str().unwrap();
            let last = &list.last().unwrap()["metrics"][code];
            assert_eq!(last["to_date"], metric["quantity"], "{customer} {code}");
            if metric["additive"] == true {
                let sum: Decimal = list
                    .iter()
                    .map(|d| {
                        d["metrics"][code]["day"]
                            .as_str()
                            .unwrap()
                            .parse::<Decimal>()
                            .unwrap()
                    })
                    .sum();
                assert_eq!(
                    sum.normalize().to_string(),
                    metric["quantity"],
                    "{customer} {code}"
                );
            } else {
                assert!(last.get("day").is_none());
            }
        }
        if let Some(&calls) = world.november_calls.get(customer) {
            let api_calls = &days["metrics"][0];
            assert_eq!(api_calls["code"], "api_calls");
            assert_eq!(api_calls["quantity"], calls.to_string());
        }
        // The what-if document at 1× quotes the live projected total, natively.
        let plan = get_json(addr, "/portal/v1/plan", token).await;
        let invoice = ratecard_engine::rate::quote(
            &serde_json::from_value(plan["plan"].clone()).unwrap(),
            &serde_json::from_value(days["what_if"].clone()).unwrap(),
            &NoPlugins,
        )
        .expect("the what-if quotes");
        assert_eq!(
            Value::String(invoice.total.0.to_string()),
            live["projected_total"],
            "{customer}: {}",
            days["what_if"]
        );
    }
}

fn decimal(value: &Value) -> Decimal {
    value
        .as_str()
        .expect("a decimal string")
        .parse()
        .expect("a decimal")
}

async fn reports_sum_the_invoices_exactly_and_export_csv(backend: Backend) {
    let world = world(backend, "reports").await;
    let addr = world.addr;
    // A customer whose id needs quoting in CSV, with an invoice of October.
    let api_pro = PlanRef {
        id: "api-pro-2026".to_owned(),
        version: 1,
    };
    let odd = r#"say "hi", inc"#;
    world
        .server
        .put_customer(CustomerRecord {
            id: odd.to_owned(),
            setup: CustomerSetup {
                subscription: Some(Subscription {
                    start: "2026-11-01".to_owned(),
                    billing_anchor: None,
                    end: None,
                }),
                ..CustomerSetup::default()
            },
            plan: Some(api_pro),
        })
        .await
        .unwrap();
    world
        .server
        .ingest(api_events(odd, "11", 40, "odd"))
        .await
        .unwrap();
    world.clock.set(millis("2026-12-05T00:00:00Z"));
    let closed = world
        .server
        .close("2026-11-15")
        .await
        .expect("close November");
    assert_eq!(closed.len(), 4);

    // Revenue: each row is the exact sum of the invoices of its month, plan and currency.
    let invoices = get_json(addr, "/v1/invoices", KEY).await;
    let mut expected: BTreeMap<(String, String, String), (u64, Decimal)> = BTreeMap::new();
    for item in invoices["invoices"].as_array().unwrap() {
        let invoice = &item["invoice"];
        let key = (
            invoice["period"]["start"].as_str().unwrap()[..7].to_owned(),
            invoice["plan_id"].as_str().unwrap().to_owned(),
            invoice["currency"].as_str().unwrap().to_owned(),
        );
        let entry = expected.entry(key).or_default();
        entry.0 += 1;
        entry.1 += decimal(&invoice["total"]);
    }
    assert_eq!(expected.len(), 4, "{expected:?}");
    let report = get_json(addr, "/v1/reports/revenue", KEY).await;
    let rows: BTreeMap<(String, String, String), (u64, Decimal)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["month"].as_str().unwrap().to_owned(),
                    r["plan_id"].as_str().unwrap().to_owned(),
                    r["currency"].as_str().unwrap().to_owned(),
                ),
                (r["invoices"].as_u64().unwrap(), decimal(&r["total"])),
            )
        })
        .collect();
    assert_eq!(rows, expected);
    // Totals per currency; USD and EUR never added together.
    let totals: Vec<(String, Decimal)> = report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["currency"].as_str().unwrap().to_owned(),
                decimal(&r["total"]),
            )
        })
        .collect();
    let sum_of = |currency: &str| -> Decimal {
        expected
            .iter()
            .filter(|((_, _, c), _)| c == currency)
            .map(|(_, (_, t))| *t)
            .sum()
    };
    assert_eq!(
        totals,
        [
            ("EUR".to_owned(), sum_of("EUR")),
            ("USD".to_owned(), sum_of("USD"))
        ]
    );
    // Amounts keep the invoices' scale: "12.30", never "12.3" or a float.
    for row in report["rows"].as_array().unwrap() {
        let total = row["total"].as_str().unwrap();
        assert_eq!(total.split('.').nth(1).map(str::len), Some(2), "{row}");
    }
    let by_month: Vec<&str> = report["by_month"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["month"].as_str().unwrap())
        .collect();
    assert_eq!(by_month, ["2026-10", "2026-10", "2026-11", "2026-11"]);

    // The CSV: a header, CRLF lines, the same rows.
    let (status, head, csv) = http(addr, "GET", "/v1/reports/revenue.csv", Some(KEY), "").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/csv; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-disposition: attachment; filename=\"revenue.csv\""),
        "{head}"
    );
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "month,plan_id,currency,invoices,total");
    assert_eq!(lines.last(), Some(&""), "ends with CRLF");
    assert_eq!(lines.len(), 2 + expected.len());
    for (line, ((month, plan, currency), (n, total))) in lines[1..].iter().zip(&expected) {
        assert_eq!(*line, format!("{month},{plan},{currency},{n},{total}"));
    }

    // Top customers: by total, the CSV quoting the id with a comma and quotes.
    let top = get_json(addr, "/v1/reports/top-customers?limit=10", KEY).await;
    let customers = top["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 4);
    for pair in customers.windows(2) {
        assert!(
            decimal(&pair[0]["total"]) >= decimal(&pair[1]["total"]),
            "{top}"
        );
    }
    let acme_total: Decimal = invoices["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["customer_id"] == "acme")
        .map(|i| decimal(&i["invoice"]["total"]))
        .sum();
    let acme = customers
        .iter()
        .find(|c| c["customer_id"] == "acme")
        .unwrap();
    assert_eq!(decimal(&acme["total"]), acme_total);
    assert_eq!(acme["invoices"], 2);
    let (_, _, csv) = http(
        addr,
        "GET",
        "/v1/reports/top-customers.csv?limit=1000",
        Some(KEY),
        "",
    )
    .await;
    assert!(
        csv.starts_with("customer_id,currency,invoices,total\r\n"),
        "{csv}"
    );
    assert!(csv.contains("\r\n\"say \"\"hi\"\", inc\",USD,1,"), "{csv}");
    let one = get_json(addr, "/v1/reports/top-customers?limit=1", KEY).await;
    assert_eq!(one["customers"].as_array().unwrap().len(), 1);
    assert_eq!(one["customers"][0], customers[0]);

    // Usage: November's API calls per day add up to the events sent.
    let usage = get_json(addr, "/v1/reports/usage?from=2026-11-01&to=2026-11-30", KEY).await;
    assert_eq!(
        (usage["from"].as_str(), usage["to"].as_str()),
        (Some("2026-11-01"), Some("2026-11-30"))
    );
    let calls: Decimal = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metric"] == "api_calls")
        .map(|r| decimal(&r["quantity"]))
        .sum();
    let sent: u64 = world.november_calls.values().sum::<u64>() + 40;
    assert_eq!(calls, Decimal::from(sent));
    let n_days = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metric"] == "api_calls")
        .count();
    assert_eq!(n_days, 30);
    assert_eq!(usage["omitted"], json!(["seats", "storage_gb_month"]));
    let (_, _, csv) = http(
        addr,
        "GET",
        "/v1/reports/usage.csv?from=2026-11-01&to=2026-11-02",
        Some(KEY),
        "",
    )
    .await;
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "date,metric,unit,quantity");
    // Day 1: every 19th event of acme (190), globex (57) and the odd one (40).
    assert!(lines.contains(&"2026-11-01,api_calls,calls,16"), "{csv}");

    // Bad parameters are 400s naming the parameter.
    for (path, needle) in [
        ("/v1/reports/usage?from=yesterday", "from"),
        ("/v1/reports/usage?from=2026-11-05&to=2026-11-01", "after"),
        ("/v1/reports/usage?from=2020-01-01&to=2026-01-01", "366"),
        ("/v1/reports/top-customers?limit=0", "limit"),
        ("/v1/reports/top-customers.csv?limit=many", "limit"),
        ("/v1/customers?limit=5000", "limit"),
    ] {
        let (status, _, body) = http(addr, "GET", path, Some(KEY), "").await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }

    // The console's customer search.
    let found = get_json(addr, "/v1/customers?search=AC", KEY).await;
    let ids: Vec<&str> = found["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme"]);
    let found = get_json(addr, "/v1/customers?search=say%20%22hi&limit=1", KEY).await;
    assert_eq!(found["customers"][0]["id"], odd);
    let all = get_json(addr, "/v1/customers?limit=2", KEY).await;
    assert_eq!(
        (
            all["customers"].as_array().unwrap().len(),
            all["matched"].as_u64()
        ),
        (2, Some(4))
    );
    assert_eq!(all["customers"][0]["timezone"], "UTC");
}

/// `ratecard serve --demo` as a process: a link made with the printed key opens the demo
/// customer's portal with the operator's numbers; the operator key is no portal token.
#[test]
fn the_demo_server_opens_a_portal_link_with_the_operators_numbers() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("ratecard-portal-serve-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ratecard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--demo", "--data-dir"])
        .arg(&dir)
        .env("RATECARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ratecard serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut addr, mut key): (Option<std::net::SocketAddr>, Option<String>) = (None, None);
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(
            lines.read_line(&mut line).expect("a line") > 0,
            "serve exited"
        );
        if let Some(rest) = line.strip_prefix("operator key (demo): ") {
            key = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Ratecard pages on http://") {
            addr = rest.split('/').next().and_then(|a| a.parse().ok());
        }
    }
    let (addr, key) = (addr.unwrap(), key.expect("a key"));
    let send = |method: &str, path: &str, token: &str, body: &str| -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read");
        let status = text[9..12].parse().expect("status");
        (
            status,
            text.split_once("\r\n\r\n")
                .map_or(String::new(), |(_, b)| b.to_owned()),
        )
    };
    let (status, body) = send(
        "POST",
        "/v1/customers/acme/portal-links",
        &key,
        r#"{"expires_in_days": 7}"#,
    );
    assert_eq!(status, 201, "{body}");
    let link: Value = serde_json::from_str(&body).unwrap();
    let token = link["token"].as_str().unwrap();
    let (status, portal) = send("GET", "/portal/v1/usage", token, "");
    assert_eq!(status, 200, "{portal}");
    let (_, operator) = send("GET", "/v1/customers/acme/usage", &key, "");
    let (portal, operator): (Value, Value) = (
        serde_json::from_str(&portal).unwrap(),
        serde_json::from_str(&operator).unwrap(),
    );
    // Read a moment apart on the system clock: the figures so far are the same.
    for field in [
        "customer_id",
        "amount_so_far",
        "events",
        "period",
        "currency",
    ] {
        assert_eq!(portal[field], operator[field], "{field}");
    }
    assert_eq!(send("GET", "/portal/v1/usage", &key, "").0, 401);
    assert_eq!(send("GET", "/v1/customers/acme/usage", token, "").0, 401);
    // The page is served.
    let (status, page) = send("GET", "/portal.html", "", "");
    assert_eq!(status, 200);
    assert!(page.contains("portal.js"), "{page}");
    drop(child.kill());
    drop(child.wait());
    drop(std::fs::remove_dir_all(&dir));
}

/// The new operations are documented: the portal's behind the portal token, the links' and
/// reports' behind the operator key, the CSV exports as `text/csv`.
async fn the_openapi_document_names_each_operations_credential(backend: Backend) {
    let world = world(backend, "openapi").await;
    let doc = get_json(world.addr, "/openapi.json", KEY).await;
    let mut seen = BTreeMap::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let scheme = operation["security"][0]
                .as_object()
                .and_then(|s| s.keys().next().cloned())
                .unwrap_or_default();
            seen.insert(
                operation["operationId"].as_str().unwrap().to_owned(),
                (method.clone(), path.clone(), scheme),
            );
        }
    }
    for (id, method, path, scheme) in [
        (
            "createPortalLink",
            "post",
            "/v1/customers/{id}/portal-links",
            "operatorKey",
        ),
        (
            "listPortalLinks",
            "get",
            "/v1/customers/{id}/portal-links",
            "operatorKey",
        ),
        (
            "revokePortalLink",
            "delete",
            "/v1/portal-links/{id}",
            "operatorKey",
        ),
        ("portalAccount", "get", "/portal/v1/account", "portalToken"),
        ("portalUsage", "get", "/portal/v1/usage", "portalToken"),
        (
            "portalUsageDaily",
            "get",
            "/portal/v1/usage/daily",
            "portalToken",
        ),
        ("portalPlan", "get", "/portal/v1/plan", "portalToken"),
        (
            "portalInvoices",
            "get",
            "/portal/v1/invoices",
            "portalToken",
        ),
        (
            "portalInvoice",
            "get",
            "/portal/v1/invoices/{number}",
            "portalToken",
        ),
        (
            "portalInvoiceHtml",
            "get",
            "/portal/v1/invoices/{number}/html",
            "portalToken",
        ),
        ("listCustomers", "get", "/v1/customers", "operatorKey"),
        ("revenueReport", "get", "/v1/reports/revenue", "operatorKey"),
        (
            "revenueReportCsv",
            "get",
            "/v1/reports/revenue.csv",
            "operatorKey",
        ),
        (
            "topCustomersReport",
            "get",
            "/v1/reports/top-customers",
            "operatorKey",
        ),
        (
            "topCustomersReportCsv",
            "get",
            "/v1/reports/top-customers.csv",
            "operatorKey",
        ),
        ("usageReport", "get", "/v1/reports/usage", "operatorKey"),
        (
            "usageReportCsv",
            "get",
            "/v1/reports/usage.csv",
            "operatorKey",
        ),
    ] {
        assert_eq!(
            seen.get(id),
            Some(&(method.to_owned(), path.to_owned(), scheme.to_owned())),
            "{id}"
        );
    }
    let csv = &doc["paths"]["/v1/reports/revenue.csv"]["get"]["responses"]["200"]["content"];
    assert!(csv.get("text/csv").is_some(), "{csv}");
    assert!(doc["components"]["securitySchemes"]["portalToken"].is_object());
    assert!(
        doc["paths"]["/v1/customers/{id}/portal-links"]["post"]["responses"]["201"].is_object()
    );
}

on_both_backends!(
    a_portal_token_reads_its_customer_and_nothing_of_another,
    a_portal_link_expires_on_the_servers_clock_and_is_revoked,
    the_portals_days_add_up_and_its_what_if_usage_quotes_the_projected_bill,
    reports_sum_the_invoices_exactly_and_export_csv,
    the_openapi_document_names_each_operations_credential,
);
