//! `ratecard serve` as a process: `--demo` on a temporary data directory, the API with the
//! printed key, then SIGKILL and a restart on the same store: everything acknowledged is there.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{get, post, put, serve, serve_with, unbilled};

#[test]
fn the_demo_serves_the_api_and_its_store_survives_a_kill() {
    let dir = std::env::temp_dir().join(format!("ratecard-serve-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let first = serve(&dir, true);
    let key = first.key.clone().expect("the demo prints a key");
    let (status, plans) = get(first.addr, "/v1/plans", &key);
    assert_eq!(status, 200, "{plans}");
    let plans: serde_json::Value = serde_json::from_str(&plans).expect("json");
    let n_plans = plans["plans"].as_array().expect("plans").len();
    assert!(n_plans >= 3);
    assert_eq!(get(first.addr, "/v1/plans", "wrong").0, 401);
    let (status, page) = get(first.addr, "/", &key);
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
    // SIGKILL: no shutdown at all.
    let mut first = first;
    first.child.kill().expect("kill");
    drop(first.child.wait());
    // Restarted without --demo on the same store: nothing reseeded, nothing lost; the key made
    // by the first run still opens the API.
    let second = serve(&dir, false);
    assert!(second.key.is_none());
    let (status, plans) = get(second.addr, "/v1/plans", &key);
    assert_eq!(status, 200, "{plans}");
    let plans: serde_json::Value = serde_json::from_str(&plans).expect("json");
    assert_eq!(plans["plans"].as_array().expect("plans").len(), n_plans);
    drop(second);
    drop(std::fs::remove_dir_all(&dir));
}

/// SIGKILL in the middle of concurrent batched ingests: after a restart every acknowledged event
/// is there, and sending everything again counts nothing twice.
#[test]
fn every_acknowledged_event_survives_a_kill_during_ingest() {
    let dir = std::env::temp_dir().join(format!("ratecard-kill-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let first = serve(&dir, true);
    let key = first.key.clone().expect("a key");
    let addr = first.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 60;
    let batch = move |thread: usize, n: usize| -> String {
        let events: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    r#"{{"id": "k{thread}-{n}-{i}", "customer": "acme", "timestamp": {now}, "code": "durability.test"}}"#
                )
            })
            .collect();
        format!("[{}]", events.join(","))
    };
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let senders: Vec<_> = (0..2)
        .map(|thread| {
            let key = key.clone();
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                for n in 0..1_000 {
                    match post(addr, "/v1/events", &key, &batch(thread, n)) {
                        Ok((200, body)) => {
                            let answer: serde_json::Value =
                                serde_json::from_str(&body).expect("json");
                            assert_eq!(answer["accepted"], 200, "{body}");
                            acknowledged.fetch_add(200, std::sync::atomic::Ordering::SeqCst);
                        }
                        // The server is gone: what was not answered was not acknowledged.
                        _ => return n,
                    }
                }
                1_000
            })
        })
        .collect();
    // Let the ingest run, then kill the server without warning.
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 4_000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut first = first;
    first.child.kill().expect("kill");
    drop(first.child.wait());
    let sent: Vec<usize> = senders
        .into_iter()
        .map(|s| s.join().expect("sender"))
        .collect();
    let acked = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent.iter().all(|&n| n < 1_000),
        "the kill came after the last batch: {sent:?}"
    );

    let second = serve(&dir, false);
    let stored = unbilled(second.addr, &key);
    assert!(stored >= acked, "acknowledged {acked}, stored {stored}");
    // Each thread's batch in flight at the kill may or may not have been committed, whole.
    let attempted: u64 = sent.iter().map(|&n| (n as u64 + 1) * 200).sum();
    assert!(stored <= attempted, "stored {stored} of {attempted} sent");
    assert_eq!(stored % 200, 0, "a batch is committed whole or not at all");
    // The clients retry everything they sent: nothing is counted twice.
    for (thread, &n) in sent.iter().enumerate() {
        for batch_n in 0..=n {
            let (status, body) =
                post(second.addr, "/v1/events", &key, &batch(thread, batch_n)).expect("post");
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_eq!(unbilled(second.addr, &key), attempted);
    drop(second);
    drop(std::fs::remove_dir_all(&dir));
}

/// A store with a plan, 300 customers and November's events, and an operator key made by
/// `ratecard keys create`.
fn november_store(dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ratecard"))
        .args(["keys", "create", "--label", "test", "--data-dir"])
        .arg(dir)
        .output()
        .expect("ratecard keys create");
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(key.starts_with("rk_"), "{key}");
    // Late events are accepted for years: November is still open on today's clock.
    let server = serve_with(dir, &["--grace-hours", "100000"]);
    let plan = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans/saas-api.json"),
    )
    .expect("plan");
    let (status, body) = post(server.addr, "/v1/plans", &key, &plan).expect("post");
    assert_eq!(status, 201, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).expect("json");
    for c in 0..300 {
        let customer = format!(
            r#"{{"timezone": "{}", "subscription": {{"start": "2026-10-01"}}, "plan": {plan}}}"#,
            ["UTC", "America/New_York", "Asia/Tokyo"][c % 3]
        );
        let (status, body) = put(
            server.addr,
            &format!("/v1/customers/c{c:03}"),
            &key,
            &customer,
        )
        .expect("put");
        assert_eq!(status, 200, "{body}");
    }
    let events: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"id": "n{i}", "customer": "c{:03}", "timestamp": "2026-11-{:02}T12:00:00Z", "code": "api.request"}}"#,
                i % 300,
                2 + i % 27
            )
        })
        .collect();
    let (status, body) = post(
        server.addr,
        "/v1/events",
        &key,
        &format!("[{}]", events.join(",")),
    )
    .expect("post");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"{"accepted":3000,"#), "{}", &body[..200]);
    drop(server);
    key
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    drop(std::fs::remove_dir_all(to));
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The final invoices without their collection (issued at each run's own time), each of
/// which must be open for collection: also those a killed close stored before its kill.
fn invoices(addr: SocketAddr, key: &str) -> Vec<serde_json::Value> {
    let (status, body) = get(addr, "/v1/invoices", key);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let mut invoices = list["invoices"].as_array().expect("invoices").clone();
    for invoice in &mut invoices {
        let collection = invoice
            .as_object_mut()
            .expect("an invoice")
            .remove("collection")
            .expect("its collection");
        assert_eq!(collection["state"], "open", "{collection}");
    }
    invoices
}

/// SIGKILL in the middle of a period close, restart, close again: the same invoices with the
/// same numbers as a close that was never interrupted, none twice, none missing.
#[test]
fn a_close_killed_half_way_and_run_again_gives_the_uninterrupted_invoices() {
    let root = std::env::temp_dir().join(format!("ratecard-close-kill-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&root));
    let pristine = root.join("pristine");
    let key = november_store(&pristine);
    let close = r#"{"date": "2026-11-15"}"#;

    // The reference: one close, never interrupted.
    let reference_dir = root.join("reference");
    copy_dir(&pristine, &reference_dir);
    let reference = {
        let server = serve_with(&reference_dir, &["--grace-hours", "1"]);
        let (status, body) = post(server.addr, "/v1/close", &key, close).expect("close");
        assert_eq!(status, 200, "{body}");
        invoices(server.addr, &key)
    };
    assert_eq!(reference.len(), 300);
    let numbers: Vec<i64> = reference
        .iter()
        .map(|i| i["number"].as_i64().expect("n"))
        .collect();
    assert_eq!(numbers, (1..=300).collect::<Vec<i64>>());

    // Kill a close at growing delays until one is caught half-way.
    let mut caught = None;
    for delay_ms in [30u64, 80, 150, 300, 600, 1000] {
        let dir = root.join(format!("killed-{delay_ms}"));
        copy_dir(&pristine, &dir);
        let server = serve_with(&dir, &["--grace-hours", "1"]);
        let addr = server.addr;
        let key_for_close = key.clone();
        let closing = std::thread::spawn(move || post(addr, "/v1/close", &key_for_close, close));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let mut server = server;
        server.child.kill().expect("kill");
        drop(server.child.wait());
        drop(closing.join());
        let restarted = serve_with(&dir, &["--grace-hours", "1"]);
        let before = invoices(restarted.addr, &key);
        if before.is_empty() || before.len() == 300 {
            continue;
        }
        // What was finalized before the kill is whole and numbered from 1 without gaps.
        let numbers: Vec<i64> = before
            .iter()
            .map(|i| i["number"].as_i64().expect("n"))
            .collect();
        assert_eq!(numbers, (1..=before.len() as i64).collect::<Vec<i64>>());
        let (status, body) = post(restarted.addr, "/v1/close", &key, close).expect("close");
        assert_eq!(status, 200, "{body}");
        let after = invoices(restarted.addr, &key);
        assert_eq!(
            after, reference,
            "re-run close after a kill at {delay_ms} ms"
        );
        // And again: nothing changes.
        let (status, _) = post(restarted.addr, "/v1/close", &key, close).expect("close");
        assert_eq!(status, 200);
        assert_eq!(invoices(restarted.addr, &key), reference);
        caught = Some((delay_ms, before.len()));
        break;
    }
    let (delay_ms, done) = caught.expect("no kill landed in the middle of the close");
    eprintln!("close killed after {delay_ms} ms with {done} of 300 invoices final");
    drop(std::fs::remove_dir_all(&root));
}

/// `ratecard serve` runs the dunning steps by itself: with net 0 and a reminder on the due
/// date, every invoice of a close gets its one reminder in the outbox without anyone calling
/// `POST /v1/dunning/run`, and no second one however many times the task runs.
#[test]
fn serve_runs_the_dunning_steps_periodically() {
    let dir = std::env::temp_dir().join(format!("ratecard-serve-dunning-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let key = november_store(&dir);
    let server = serve_with(&dir, &["--grace-hours", "1", "--dunning-every-secs", "1"]);
    let (status, body) = put(
        server.addr,
        "/v1/plans/api-pro-2026/collection",
        &key,
        r#"{"net_days": 0, "dunning": [{"after_days": 0, "action": "remind"}]}"#,
    )
    .expect("put");
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        post(server.addr, "/v1/close", &key, r#"{"date": "2026-11-15"}"#).expect("close");
    assert_eq!(status, 200, "{body}");
    let pending = || {
        let (status, body) = get(server.addr, "/v1/outbox?limit=1000", &key);
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).expect("json");
        list["messages"].as_array().expect("messages").clone()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pending().len() < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} reminders after 30 s",
            pending().len()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A few more runs of the task: still one reminder per invoice.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let messages = pending();
    assert_eq!(messages.len(), 300);
    let mut invoices: Vec<i64> = messages
        .iter()
        .map(|m| m["invoice"].as_i64().expect("invoice"))
        .collect();
    invoices.dedup();
    assert_eq!(invoices, (1..=300).collect::<Vec<i64>>());
    assert!(messages.iter().all(|m| m["kind"] == "invoice.reminder"));
    drop(server);
    drop(std::fs::remove_dir_all(&dir));
}
