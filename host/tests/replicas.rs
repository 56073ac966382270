//! Two `ratecard serve` replicas on one PostgreSQL database (a throwaway cluster): the same
//! batches through both, close on both at once, and a replica killed mid-ingest.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Serve, get, invoices, post, put, serve_with, unbilled};
use serde_json::Value;

/// A key made by `ratecard keys create` on `url`.
fn key_for(url: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ratecard"))
        .args(["keys", "create", "--label", "test", "--database", url])
        .output()
        .expect("ratecard keys create");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A replica on `url` (late events accepted for years: November is still open).
fn replica(url: &str, name: &str) -> Serve {
    replica_with_grace(url, name, "100000")
}

fn replica_with_grace(url: &str, name: &str, grace_hours: &str) -> Serve {
    let unused =
        std::env::temp_dir().join(format!("ratecard-replica-{name}-{}", std::process::id()));
    serve_with(&unused, &["--database", url, "--grace-hours", grace_hours])
}

/// Adds the example API plan through `addr` (a new version each time): its `{id, version}`.
fn add_plan(addr: SocketAddr, key: &str) -> Value {
    let plan = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans/saas-api.json"),
    )
    .expect("plan");
    let (status, body) = post(addr, "/v1/plans", key, &plan).expect("post");
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// Subscribes customer `id` (UTC, from 2026-10-01) to `plan` through `addr`.
fn subscribe(addr: SocketAddr, key: &str, id: &str, plan: &Value) {
    let customer = format!(
        r#"{{"timezone": "UTC", "subscription": {{"start": "2026-10-01"}}, "plan": {plan}}}"#
    );
    let (status, body) = put(addr, &format!("/v1/customers/{id}"), key, &customer).expect("put");
    assert_eq!(status, 200, "{body}");
}

/// Now minus a minute, in Unix seconds: an instant of the current period.
fn a_minute_ago() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 60
}

const CUSTOMERS: usize = 60;

/// Batch `n` of 250 events: November's and this period's, spread over the customers.
fn batch(n: usize, now: u64) -> String {
    let events: Vec<String> = (0..250)
        .map(|i| {
            let c = (n * 250 + i) % CUSTOMERS;
            if i % 2 == 0 {
                format!(
                    r#"{{"id": "b{n}-{i}", "customer": "c{c:02}", "timestamp": "2026-11-{:02}T12:00:00Z", "code": "api.request"}}"#,
                    2 + (n + i) % 27
                )
            } else {
                format!(
                    r#"{{"id": "b{n}-{i}", "customer": "c{c:02}", "timestamp": {now}, "code": "api.request"}}"#
                )
            }
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// How many events of an ingest answer were stored now (not duplicates, not rejected).
fn stored(body: &str) -> u64 {
    let answer: Value = serde_json::from_str(body).expect("json");
    assert_eq!(answer["rejected"], 0, "{body}");
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == "stored")
        .count() as u64
}

/// Live usage without its instant (replicas answer at different instants).
fn live(addr: SocketAddr, key: &str, customer: &str) -> Value {
    let (status, body) = get(addr, &format!("/v1/customers/{customer}/usage"), key);
    assert_eq!(status, 200, "{body}");
    let mut usage: Value = serde_json::from_str(&body).expect("json");
    let usage = usage.as_object_mut().expect("an object");
    for instant in ["as_of", "elapsed", "projected_total"] {
        usage.remove(instant);
    }
    for line in usage["lines"].as_array_mut().expect("lines") {
        let line = line.as_object_mut().expect("a line");
        line.remove("projected_quantity");
        line.remove("projected_amount");
    }
    Value::Object(usage.clone())
}

#[test]
fn two_replicas_count_every_event_once_and_close_each_invoice_once() {
    let url = ratecard_tests::postgres::fresh_database("replicas");
    let key = key_for(&url);
    let (a, b) = (replica(&url, "a"), replica(&url, "b"));

    // The plan through A; customers through both (B prepares the plan A added).
    let plan = add_plan(a.addr, &key);
    for c in 0..CUSTOMERS {
        let customer = format!(
            r#"{{"timezone": "{}", "subscription": {{"start": "2026-10-01"}}, "plan": {plan}}}"#,
            ["UTC", "America/New_York", "Asia/Tokyo"][c % 3]
        );
        let via = if c % 2 == 0 { a.addr } else { b.addr };
        let (status, body) =
            put(via, &format!("/v1/customers/c{c:02}"), &key, &customer).expect("put");
        assert_eq!(status, 200, "{body}");
    }

    // Every batch through both replicas at once, from two clients each: each event is
    // stored by exactly one of them, the other answers it as a duplicate.
    let now = a_minute_ago();
    const BATCHES: usize = 40;
    let stored_by: Vec<Arc<Vec<AtomicU64>>> = (0..2)
        .map(|_| Arc::new((0..BATCHES).map(|_| AtomicU64::new(0)).collect()))
        .collect();
    let clients: Vec<_> = [(0, a.addr), (0, a.addr), (1, b.addr), (1, b.addr)]
        .into_iter()
        .enumerate()
        .map(|(client, (replica, addr))| {
            let key = key.clone();
            let stored_by = stored_by[replica].clone();
            std::thread::spawn(move || {
                // The two clients of a replica take the batches in opposite orders.
                let order: Vec<usize> = if client % 2 == 0 {
                    (0..BATCHES).collect()
                } else {
                    (0..BATCHES).rev().collect()
                };
                for n in order {
                    let (status, body) =
                        post(addr, "/v1/events", &key, &batch(n, now)).expect("post");
                    assert_eq!(status, 200, "{body}");
                    stored_by[n].fetch_add(stored(&body), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client");
    }
    for (n, (a_n, b_n)) in stored_by[0].iter().zip(stored_by[1].iter()).enumerate() {
        let (by_a, by_b) = (a_n.load(Ordering::SeqCst), b_n.load(Ordering::SeqCst));
        assert_eq!(by_a + by_b, 250, "batch {n}: A stored {by_a}, B {by_b}");
    }

    // Both replicas answer live usage alike, and as the events sent say.
    for c in 0..CUSTOMERS {
        let customer = format!("c{c:02}");
        let (from_a, from_b) = (live(a.addr, &key, &customer), live(b.addr, &key, &customer));
        assert_eq!(from_a, from_b, "{customer}");
        let expected = (0..BATCHES * 250)
            .filter(|k| k % CUSTOMERS == c && (k % 250) % 2 == 1)
            .count();
        assert_eq!(from_a["events"], expected as u64, "{customer}");
    }

    // November closed on both replicas at once (restarted with a grace window that has
    // passed): each invoice once, numbered 1.. without gaps.
    drop((a, b));
    let (a, b) = (
        replica_with_grace(&url, "a", "1"),
        replica_with_grace(&url, "b", "1"),
    );
    let close = r#"{"date": "2026-11-15"}"#;
    let closers: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .map(|addr| {
            let key = key.clone();
            std::thread::spawn(move || post(addr, "/v1/close", &key, close).expect("close"))
        })
        .collect();
    for closer in closers {
        let (status, body) = closer.join().expect("a close");
        assert_eq!(status, 200, "{body}");
    }
    let (from_a, from_b) = (invoices(a.addr, &key), invoices(b.addr, &key));
    assert_eq!(from_a, from_b);
    assert_eq!(from_a.len(), CUSTOMERS);
    let numbers: Vec<i64> = from_a
        .iter()
        .map(|i| i["number"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, (1..=CUSTOMERS as i64).collect::<Vec<i64>>());
    let mut customers: Vec<&str> = from_a
        .iter()
        .map(|i| i["customer_id"].as_str().expect("a customer"))
        .collect();
    customers.sort_unstable();
    customers.dedup();
    assert_eq!(customers.len(), CUSTOMERS, "one invoice per customer");
    // A November event is now refused by both.
    for addr in [a.addr, b.addr] {
        let late = r#"[{"id": "late", "customer": "c00", "timestamp": "2026-11-20T00:00:00Z", "code": "api.request"}]"#;
        let (status, body) = post(addr, "/v1/events", &key, late).expect("post");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""rejected":1"#), "{body}");
    }
}

#[test]
fn every_event_a_killed_replica_acknowledged_is_in_the_database() {
    let url = ratecard_tests::postgres::fresh_database("replica_kill");
    let key = key_for(&url);
    let (a, b) = (replica(&url, "kill-a"), replica(&url, "kill-b"));
    subscribe(a.addr, &key, "acme", &add_plan(a.addr, &key));

    let now = a_minute_ago();
    let batch = move |replica: usize, n: usize| -> String {
        let events: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    r#"{{"id": "k{replica}-{n}-{i}", "customer": "acme", "timestamp": {now}, "code": "durability.test"}}"#
                )
            })
            .collect();
        format!("[{}]", events.join(","))
    };
    let acknowledged = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .enumerate()
        .map(|(replica, addr)| {
            let (key, acknowledged) = (key.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                for n in 0..400 {
                    match post(addr, "/v1/events", &key, &batch(replica, n)) {
                        Ok((200, _)) => {
                            acknowledged.fetch_add(200, Ordering::SeqCst);
                        }
                        _ => return n,
                    }
                }
                400
            })
        })
        .collect();
    while acknowledged.load(Ordering::SeqCst) < 8_000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut a = a;
    a.child.kill().expect("kill");
    drop(a.child.wait());
    let sent: Vec<usize> = senders
        .into_iter()
        .map(|s| s.join().expect("a sender"))
        .collect();
    assert!(sent[0] < 400, "the kill came after A's last batch");
    assert_eq!(sent[1], 400, "B kept ingesting");
    let acked = acknowledged.load(Ordering::SeqCst);
    let in_db = unbilled(b.addr, &key);
    assert!(
        in_db >= acked,
        "acknowledged {acked}, in the database {in_db}"
    );
    // A's batch in flight at the kill was committed whole or not at all.
    assert!(in_db <= acked + 200, "{in_db} stored, {acked} acknowledged");
    assert_eq!(in_db % 200, 0);
}

#[test]
fn a_change_made_through_one_replica_reaches_the_others_cache() {
    let url = ratecard_tests::postgres::fresh_database("replica_changes");
    let key = key_for(&url);
    let (a, b) = (replica(&url, "changes-a"), replica(&url, "changes-b"));
    let v1 = add_plan(a.addr, &key);
    subscribe(a.addr, &key, "acme", &v1);
    // B reads (and caches) the customer; then A adds version 2 and moves them to it.
    let subscription = |addr| {
        let (status, body) = get(addr, "/v1/customers/acme/subscription", &key);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).expect("json")
    };
    let before = subscription(b.addr);
    assert_eq!(before["plan"], v1, "{before}");
    let v2 = add_plan(a.addr, &key);
    let change = format!(r#"{{"plan": {v2}, "at": "{}"}}"#, common::utc_date());
    let (status, body) =
        post(a.addr, "/v1/customers/acme/plan-change", &key, &change).expect("post");
    assert_eq!(status, 200, "{body}");
    // The announcement reaches B within moments; until then B may answer what it cached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = subscription(b.addr);
        if seen == subscription(a.addr) {
            assert_eq!(seen["plan"], v2, "{seen}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still answers {seen} after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
