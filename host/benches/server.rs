//! The server over loopback: durable batched ingest (dedupe on), single-event ingest, live-usage
//! latency while ingest runs at full speed, and period close. One process: the server on a
//! two-worker runtime and the load generator beside it share this machine's cores, as a server
//! and its clients on one box do.
//!
//! Run: `cargo bench -p ratecard-host --no-default-features --features server --bench server`.
//! Sizes (env): `RATECARD_BENCH_INGEST_EVENTS` (default 200000), `RATECARD_BENCH_CLIENTS` (4),
//! `RATECARD_BENCH_BATCH` (1000), `RATECARD_BENCH_CLOSE` (`customers x events`, default
//! `1000x1000`; the issue's figure is `1000x10000`), `RATECARD_BENCH_BACKENDS` (`sqlite,postgres`
//! by default: the same load on each, then on two replicas sharing the PostgreSQL database;
//! the PostgreSQL cluster is a throwaway one, fsync on, made by the tests' fixture).
//!
//! Baseline, same run: the store alone (`Store::insert_events` of the same rows in the same
//! batches, one after the other, no HTTP, no JSON): the floor one writer pays; the API's ratio
//! to it says what HTTP and parsing cost, less what concurrent clients overlap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::usage::{CustomerSetup, Subscription, Timestamp};
use ratecard_host::server::store::NewEvent;
use ratecard_host::server::{CustomerRecord, Database, ManualClock, Server, api};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "bench-key";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn millis(text: &str) -> i64 {
    Timestamp::parse_rfc3339(text).expect("a timestamp").0
}

/// A persistent HTTP/1.1 connection (keep-alive).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Sends a request and reads the whole answer: status and body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        kind: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await.expect("write");
        self.stream.write_all(body).await.expect("write");
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let status: u16 = head[9..12].parse().expect("a status");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().expect("a length"))
                    .expect("a content-length");
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill().await;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return (status, body);
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 1 << 16];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Event `i` of the run (`tag` keeps runs apart): one of `customers`, in November.
fn event(tag: &str, i: usize, customers: usize) -> String {
    let customer = i % customers;
    let minute = (i / customers) % (24 * 60);
    let day = 2 + (i / customers / (24 * 60)) % 17;
    format!(
        r#"{{"id":"{tag}-{i}","customer":"c{customer}","timestamp":"2026-11-{day:02}T{:02}:{:02}:00Z","code":"api.request","properties":{{"region":"eu-west"}}}}"#,
        minute / 60,
        minute % 60
    )
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn open(database: &Database, now: &str) -> Arc<Server> {
    Arc::new(
        Server::open_database(database, Box::new(ManualClock::at(millis(now))), &NoPlugins)
            .await
            .expect("server"),
    )
}

/// The API of `server` on a loopback port (and, on PostgreSQL, following the other replicas).
async fn serve(server: Arc<Server>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let follower = server.clone();
    tokio::spawn(async move { follower.follow_replicas().await });
    let app = api::router(server);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A server on `database` with the key, the plan and `customers` customers.
async fn start(database: &Database, customers: usize, now: &str) -> (Arc<Server>, SocketAddr) {
    let server = open(database, now).await;
    server.add_key(KEY, "bench").await.expect("key");
    let plan_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plans/saas-api.json"),
    )
    .expect("plan");
    let plan = server
        .add_plan(serde_json::from_str(&plan_text).expect("a plan"))
        .await
        .expect("plan");
    for c in 0..customers {
        server
            .put_customer(CustomerRecord {
                id: format!("c{c}"),
                setup: CustomerSetup {
                    timezone: Some("UTC".to_owned()),
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
            .expect("customer");
    }
    let addr = serve(server.clone()).await;
    (server, addr)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// Where each measurement's store goes.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(ratecard_tests::postgres::Cluster),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "SQLite (WAL, synchronous=FULL)",
            Backend::Postgres(_) => "PostgreSQL 15 (fsync on, synchronous_commit on)",
        }
    }

    fn database(&self, name: &str) -> Database {
        match self {
            Backend::Sqlite(root) => Database::Sqlite(root.join(name)),
            Backend::Postgres(cluster) => Database::Postgres(cluster.create_database(name)),
        }
    }
}

/// What one backend measured.
struct Figures {
    floor: f64,
    batched: f64,
    replicas: Option<f64>,
    close_s: f64,
}

async fn run() {
    let backends =
        std::env::var("RATECARD_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let root = std::env::temp_dir().join(format!("ratecard-bench-server-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&root));
    let mut results = Vec::new();
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "sqlite" => Backend::Sqlite(root.clone()),
            "postgres" => Backend::Postgres(
                ratecard_tests::postgres::Cluster::start_durable().expect("a PostgreSQL cluster"),
            ),
            other => panic!("RATECARD_BENCH_BACKENDS: unknown backend {other:?}"),
        };
        let figures = run_backend(&backend).await;
        results.push((backend.name(), figures));
    }
    drop(std::fs::remove_dir_all(&root));
    if let [(first_name, first), ..] = results.as_slice() {
        println!("backends, ratios to {first_name}:");
        for (name, figures) in &results {
            println!(
                "  {name:<48} store alone {:.2}x, batched HTTP {:.2}x, close {:.2}x faster{}",
                figures.floor / first.floor,
                figures.batched / first.batched,
                first.close_s / figures.close_s,
                figures.replicas.map_or(String::new(), |r| format!(
                    ", two replicas {r:.0} events/s ({:.2}x one)",
                    r / figures.batched
                )),
            );
        }
    }
}

/// Batched NDJSON ingest of `bodies` by `clients` connections spread over `addrs`, with
/// live-usage reads alongside: events/s, batch latencies, live-usage latencies.
async fn batched_ingest(
    addrs: &[SocketAddr],
    bodies: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    customers: usize,
) -> (f64, Vec<Duration>, Vec<Duration>) {
    let n_events: usize = bodies
        .iter()
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .sum();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let reader = {
        let running = running.clone();
        let addr = addrs[addrs.len() - 1];
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut latencies = Vec::new();
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                let path = format!("/v1/customers/c{}/usage", (i * 37) % customers);
                let started = Instant::now();
                let (status, body) = client.request("GET", &path, "application/json", b"").await;
                latencies.push(started.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (bodies, next) = (bodies.clone(), next.clone());
        let addr = addrs[k % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut latencies = Vec::new();
            loop {
                let idx = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(idx) else { break };
                let t = Instant::now();
                let (status, answer) = client
                    .request("POST", "/v1/events", "application/x-ndjson", body)
                    .await;
                latencies.push(t.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                assert!(
                    answer.starts_with(
                        format!(
                            "{{\"accepted\":{}",
                            body.iter().filter(|b| **b == b'\n').count()
                        )
                        .as_bytes()
                    ),
                    "{}",
                    String::from_utf8_lossy(&answer[..200.min(answer.len())])
                );
            }
            latencies
        }));
    }
    let mut batch_latencies = Vec::new();
    for task in tasks {
        batch_latencies.extend(task.await.expect("client"));
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let mut live = reader.await.expect("reader");
    batch_latencies.sort();
    live.sort();
    (
        n_events as f64 / elapsed.as_secs_f64(),
        batch_latencies,
        live,
    )
}

fn ndjson_batches(tag: &str, n_events: usize, batch: usize, customers: usize) -> Arc<Vec<Vec<u8>>> {
    Arc::new(
        (0..n_events)
            .step_by(batch)
            .map(|s| {
                let mut body = String::new();
                for i in s..(s + batch).min(n_events) {
                    body.push_str(&event(tag, i, customers));
                    body.push('\n');
                }
                body.into_bytes()
            })
            .collect(),
    )
}

async fn run_backend(backend: &Backend) -> Figures {
    let n_events = env_or("RATECARD_BENCH_INGEST_EVENTS", 200_000);
    let clients = env_or("RATECARD_BENCH_CLIENTS", 4);
    let batch = env_or("RATECARD_BENCH_BATCH", 1000);
    let customers = 1000;

    // Baseline: the store alone, the same rows in the same batches.
    let floor = {
        let (server, _addr) = start(
            &backend.database("floor"),
            customers,
            "2026-11-20T00:00:00Z",
        )
        .await;
        let period_start = millis("2026-11-01T00:00:00Z");
        // The rows are made before the clock starts: what is timed is the store.
        let batches: Vec<Vec<(NewEvent, i64)>> = (0..n_events)
            .step_by(batch)
            .map(|chunk_start| {
                (chunk_start..(chunk_start + batch).min(n_events))
                    .map(|i| {
                        let body = event("floor", i, customers);
                        let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
                        (
                            NewEvent {
                                customer_id: parsed["customer"]
                                    .as_str()
                                    .expect("customer")
                                    .to_owned(),
                                event_id: parsed["id"].as_str().expect("id").to_owned(),
                                ts: millis(parsed["timestamp"].as_str().expect("ts")),
                                body,
                            },
                            period_start,
                        )
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for rows in &batches {
            server.store().insert_events(rows, 0).await.expect("insert");
        }
        let floor = n_events as f64 / started.elapsed().as_secs_f64();
        server.store().close().await;
        floor
    };

    let api_db = backend.database("api");
    let (server, addr) = start(&api_db, customers, "2026-11-20T00:00:00Z").await;
    let bodies = ndjson_batches("b", n_events, batch, customers);
    let (batched, batch_latencies, live) =
        batched_ingest(&[addr], &bodies, clients, customers).await;
    assert_eq!(
        server.store().n_events().await.expect("count"),
        i64::try_from(n_events).expect("fits")
    );

    // A retry of every batch: all duplicates, none stored twice.
    let started = Instant::now();
    let mut client = Client::connect(addr).await;
    for body in bodies.iter().take(20) {
        let (status, _) = client
            .request("POST", "/v1/events", "application/x-ndjson", body)
            .await;
        assert_eq!(status, 200);
    }
    let retried = (20 * batch).min(n_events) as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        server.store().n_events().await.expect("count"),
        i64::try_from(n_events).expect("fits")
    );

    // Single-event requests.
    let n_single = 4000;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n_single {
                    break;
                }
                let body = event("s", i, customers);
                let t = Instant::now();
                let (status, _) = client
                    .request("POST", "/v1/events", "application/json", body.as_bytes())
                    .await;
                latencies.push(t.elapsed());
                assert_eq!(status, 200);
            }
            latencies
        }));
    }
    let mut single_latencies = Vec::new();
    for task in tasks {
        single_latencies.extend(task.await.expect("client"));
    }
    let single = n_single as f64 / started.elapsed().as_secs_f64();
    single_latencies.sort();

    // Two replicas on one PostgreSQL database: the same load, the clients spread over both.
    let replicas = match backend {
        Backend::Sqlite(_) => None,
        Backend::Postgres(_) => {
            let second = open(&api_db, "2026-11-20T00:00:00Z").await;
            let second_addr = serve(second.clone()).await;
            let bodies = ndjson_batches("r", n_events, batch, customers);
            let (rate, _, _) =
                batched_ingest(&[addr, second_addr], &bodies, clients, customers).await;
            assert_eq!(
                second.store().n_events().await.expect("count"),
                i64::try_from(2 * n_events + n_single).expect("fits")
            );
            Some(rate)
        }
    };
    server.store().close().await;
    drop(server);

    println!(
        "server bench on {}: {n_events} events, {customers} customers, {clients} clients, batches of {batch}",
        backend.name()
    );
    println!("  store alone (baseline)     {floor:>10.0} events/s");
    println!(
        "  batched ingest over HTTP   {batched:>10.0} events/s  ({:.2}x the store alone; {:.1}x Lago's documented 10,000/s; target 50,000: {})  batch p50 {} p99 {}",
        batched / floor,
        batched / 10_000.0,
        if batched >= 50_000.0 { "met" } else { "missed" },
        ms(percentile(&batch_latencies, 0.5)),
        ms(percentile(&batch_latencies, 0.99)),
    );
    if let Some(rate) = replicas {
        println!(
            "  two replicas, batched      {rate:>10.0} events/s  ({:.2}x one replica)",
            rate / batched
        );
    }
    println!("  retried batches (all dup)  {retried:>10.0} events/s");
    println!(
        "  single-event requests      {single:>10.0} events/s  p50 {} p99 {}",
        ms(percentile(&single_latencies, 0.5)),
        ms(percentile(&single_latencies, 0.99)),
    );
    println!(
        "  live usage during ingest   {} reads  p50 {} p99 {}",
        live.len(),
        ms(percentile(&live, 0.5)),
        ms(percentile(&live, 0.99)),
    );

    // Period close.
    let (close_customers, close_events) = std::env::var("RATECARD_BENCH_CLOSE")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once('x')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((1000usize, 1000usize));
    let close_db = backend.database("close");
    let (server, _addr) = start(&close_db, close_customers, "2026-11-20T00:00:00Z").await;
    let total = close_customers * close_events;
    let period_start = millis("2026-11-01T00:00:00Z");
    for chunk_start in (0..total).step_by(5000) {
        let rows: Vec<(NewEvent, i64)> = (chunk_start..(chunk_start + 5000).min(total))
            .map(|i| {
                let customer = i % close_customers;
                (
                    NewEvent {
                        customer_id: format!("c{customer}"),
                        event_id: format!("k-{i}"),
                        ts: period_start + 1000 * i64::try_from(i / close_customers).expect("fits"),
                        body: event("k", i, close_customers),
                    },
                    period_start,
                )
            })
            .collect();
        server
            .store()
            .insert_events(&rows, 0)
            .await
            .expect("insert");
    }
    server.store().close().await;
    drop(server);
    let before = peak_rss_mib();
    let server = open(&close_db, "2026-12-10T00:00:00Z").await;
    let started = Instant::now();
    let invoices = server.close("2026-11-15").await.expect("close");
    let close_time = started.elapsed();
    assert_eq!(invoices.len(), close_customers);
    server.store().close().await;
    println!(
        "  close {close_customers} customers x {close_events} events: {:.2} s ({:.0} events/s), peak RSS of the process {:.0} MiB (before close {before:.0} MiB)",
        close_time.as_secs_f64(),
        total as f64 / close_time.as_secs_f64(),
        peak_rss_mib(),
    );
    Figures {
        floor,
        batched,
        replicas,
        close_s: close_time.as_secs_f64(),
    }
}
