//! `rate` over NDJSON event files, against a minimal hand-written parse-and-sum loop over the same
//! file (the physical baseline: reading lines and parsing JSON is the floor any rater pays).
//!
//! Run: `cargo bench -p ratecard-host --bench rate` (release). Sizes: `RATECARD_BENCH_EVENTS`
//! (comma-separated, default `1000000,10000000`); rounds per size: `RATECARD_BENCH_ROUNDS`
//! (default 3, the median is reported). Event files are generated once, deterministically, into
//! `$CARGO_TARGET_DIR/bench-data/` (else `target/bench-data/`) and reused.
//!
//! Each round runs the baseline and `rate_stream` back to back over the same (page-cached) file,
//! so the ratio is measured in the same run on the same machine state.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::PreparedPlan;
use ratecard_host::rating::{Collected, RateRequest, RateSummary, rate_stream};
use serde::Deserialize;

const N_CUSTOMERS: u64 = 1000;
const CODES: [&str; 3] = ["api.request", "storage.write", "compute.run"];
const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
/// Bump when the generator changes, so stale files are not reused.
const FORMAT_VERSION: u32 = 1;
const READ_BUFFER: usize = 1 << 20;

/// The plan rated: a flat fee, a count with an allowance and graduated tiers, a converted sum
/// per unit, and a sum grouped by region with graduated tiers; VAT on top.
const PLAN: &str = r#"{
  "id": "bench-2026",
  "currency": "USD",
  "interval": "month",
  "metrics": [
    {"code": "api_calls", "name": "API calls", "event": "api.request", "aggregation": {"type": "count"}},
    {"code": "storage_kb", "name": "Storage writes", "event": "storage.write",
     "aggregation": {"type": "sum", "property": "value"},
     "conversion": {"divide_by": "1000", "round": {"mode": "ceil", "precision": 0}}},
    {"code": "compute_s", "name": "Compute seconds", "event": "compute.run",
     "aggregation": {"type": "sum", "property": "value"}, "group_by": ["region"]}
  ],
  "charges": [
    {"id": "platform", "description": "Platform fee", "model": {"type": "flat", "amount": "49.00"}},
    {"id": "api", "metric": "api_calls", "included": "100", "model": {"type": "graduated", "tiers": [
      {"up_to": "500", "unit_price": "0.002"},
      {"up_to": "5000", "unit_price": "0.0015"},
      {"up_to": null, "unit_price": "0.001"}
    ]}},
    {"id": "storage", "metric": "storage_kb", "model": {"type": "per_unit", "unit_price": "0.00023"}},
    {"id": "compute", "metric": "compute_s", "model": {"type": "graduated", "tiers": [
      {"up_to": "1000", "unit_price": "0.0004", "flat_fee": "1.00"},
      {"up_to": "10000", "unit_price": "0.0003"},
      {"up_to": null, "unit_price": "0.0002"}
    ]}}
  ],
  "taxes": [{"id": "vat", "name": "VAT", "percent": "20"}]
}"#;

/// SplitMix64: a tiny deterministic PRNG, enough to make varied events.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn data_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    target.join("bench-data")
}

/// Writes `n_events` events for November 2026 (UTC), or reuses the file from an earlier run.
fn events_file(n_events: u64) -> std::io::Result<PathBuf> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("events-v{FORMAT_VERSION}-{n_events}.ndjson"));
    if path.exists() {
        eprintln!("reusing {}", path.display());
        return Ok(path);
    }
    eprintln!("generating {} ({n_events} events)…", path.display());
    let started = Instant::now();
    let partial = path.with_extension("partial");
    let mut out = BufWriter::with_capacity(READ_BUFFER, File::create(&partial)?);
    let mut rng = SplitMix64(0x5EED_0000 ^ n_events);
    for event_idx in 0..n_events {
        // Skewed customers: half the events go to the first tenth of the customers.
        let customer = if rng.below(2) == 0 {
            rng.below(N_CUSTOMERS / 10)
        } else {
            rng.below(N_CUSTOMERS)
        };
        let code_idx = rng.below(10);
        let code_idx = match code_idx {
            0..=5 => 0,
            6..=7 => 1,
            _ => 2,
        };
        let (day, hour, minute, second) = (
            1 + rng.below(30),
            rng.below(24),
            rng.below(60),
            rng.below(60),
        );
        let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        write!(
            out,
            r#"{{"id":"evt-{event_idx:010}","customer":"cust-{customer:04}","timestamp":"2026-11-{day:02}T{hour:02}:{minute:02}:{second:02}Z","code":"{}","properties":{{"value":"#,
            CODES[code_idx]
        )?;
        match code_idx {
            // Latency in ms, bytes written: integers. Compute seconds: a decimal number.
            0 => write!(out, "{}", 5 + rng.below(500))?,
            1 => write!(out, "{}", 1 + rng.below(1_000_000))?,
            _ => write!(out, "{}.{:02}", rng.below(120), rng.below(100))?,
        }
        writeln!(out, r#","region":"{region}"}}}}"#)?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&partial, &path)?;
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    Ok(path)
}

/// What the baseline reads: only the fields it sums, borrowed from the line.
#[derive(Deserialize)]
struct MinimalEvent<'a> {
    #[serde(borrow)]
    customer: &'a str,
    #[serde(borrow)]
    code: &'a str,
    properties: MinimalProperties,
}

#[derive(Deserialize)]
struct MinimalProperties {
    value: f64,
}

#[derive(Default)]
struct Totals {
    count: [u64; 3],
    sum: [f64; 3],
}

/// The physical baseline: read each line, parse it with serde_json into a borrowed struct, sum
/// per customer and code in a `HashMap`.
fn baseline(path: &Path) -> std::io::Result<(u64, HashMap<String, Totals>)> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let mut line = String::new();
    let mut per_customer: HashMap<String, Totals> = HashMap::new();
    let mut n_lines = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        n_lines += 1;
        let event: MinimalEvent<'_> =
            serde_json::from_str(line.trim_end()).map_err(std::io::Error::other)?;
        let Some(code_idx) = CODES.iter().position(|c| *c == event.code) else {
            continue;
        };
        let totals = match per_customer.get_mut(event.customer) {
            Some(totals) => totals,
            None => per_customer.entry(event.customer.to_owned()).or_default(),
        };
        totals.count[code_idx] += 1;
        totals.sum[code_idx] += event.properties.value;
    }
    Ok((n_lines, per_customer))
}

/// `threads`: 1, or 0 for one worker per core.
fn rate(path: &Path, plan: &Plan, threads: usize) -> (RateSummary, Collected) {
    let request = RateRequest {
        period: "2026-11".to_owned(),
        threads,
        ..RateRequest::default()
    };
    let prepared = PreparedPlan::of(plan).expect("a valid plan");
    let file = File::open(path).expect("open events");
    let mut collected = Collected::default();
    let summary = rate_stream(
        &prepared,
        BufReader::with_capacity(READ_BUFFER, file),
        &request,
        &NoPlugins,
        |_| {},
        |rated| collected.push(rated),
    )
    .expect("rate_stream");
    (summary, collected)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn per_second(n: u64, time: Duration) -> f64 {
    n as f64 / time.as_secs_f64()
}

fn bench_size(n_events: u64, rounds: usize, plan: &Plan) -> std::io::Result<()> {
    let path = events_file(n_events)?;
    let size = std::fs::metadata(&path)?.len();
    // Warm the page cache so the first timed pass does not pay for the disk.
    std::io::copy(&mut File::open(&path)?, &mut std::io::sink())?;

    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let (mut baseline_times, mut single_times, mut parallel_times) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut checked = false;
    for round in 0..rounds {
        let started = Instant::now();
        let (n_lines, per_customer) = baseline(&path)?;
        let baseline_time = started.elapsed();
        let started = Instant::now();
        let single = rate(&path, plan, 1);
        let single_time = started.elapsed();
        let started = Instant::now();
        let parallel = rate(&path, plan, 0);
        let parallel_time = started.elapsed();
        eprintln!(
            "  round {}: baseline {:.2} s, rate on 1 thread {:.2} s, rate on {n_cores} threads {:.2} s",
            round + 1,
            baseline_time.as_secs_f64(),
            single_time.as_secs_f64(),
            parallel_time.as_secs_f64(),
        );
        if !checked {
            check(n_lines, &per_customer, &single);
            let invoices = serde_json::to_string(&single.1.invoices).expect("invoices to JSON");
            assert_eq!(
                invoices,
                serde_json::to_string(&parallel.1.invoices).expect("invoices to JSON"),
                "invoices differ between 1 and {n_cores} threads"
            );
            // To compare two builds' invoices (they must be byte-identical).
            eprintln!(
                "  invoices (JSON) sha256 {}",
                hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(
                    <sha2::Sha256 as sha2::Digest>::new(),
                    invoices.as_bytes()
                )))
            );
            checked = true;
        }
        baseline_times.push(baseline_time);
        single_times.push(single_time);
        parallel_times.push(parallel_time);
    }
    let baseline_time = median(baseline_times);
    let baseline_eps = per_second(n_events, baseline_time);
    println!(
        "{n_events:>9} events ({:.0} MB, {N_CUSTOMERS} customers), median of {rounds}: baseline {:>10.0} events/s ({:.2} s)",
        size as f64 / 1e6,
        baseline_eps,
        baseline_time.as_secs_f64(),
    );
    for (label, times) in [
        ("1 thread".to_owned(), single_times),
        (format!("{n_cores} threads"), parallel_times),
    ] {
        let time = median(times);
        let eps = per_second(n_events, time);
        println!(
            "    rate on {label:<10} {eps:>10.0} events/s ({:.2} s) | ratio rate/baseline {:.2}{}",
            time.as_secs_f64(),
            eps / baseline_eps,
            if eps / baseline_eps >= 0.5 {
                " (target ≥ 0.50: met)"
            } else {
                " (target ≥ 0.50: MISSED)"
            }
        );
    }
    Ok(())
}

/// Both loops saw the same file: same lines, same customers, same counts.
fn check(
    n_lines: u64,
    per_customer: &HashMap<String, Totals>,
    (summary, rated): &(RateSummary, Collected),
) {
    assert_eq!(summary.n_lines, n_lines, "line counts differ");
    assert!(
        summary.errors.is_empty(),
        "rate reported errors: {:?}",
        &summary.errors[..summary.errors.len().min(3)]
    );
    assert!(
        rated.failed.is_empty(),
        "invoices failed: {:?}",
        rated.failed
    );
    assert_eq!(summary.n_counted, n_lines, "every event should be counted");
    assert_eq!(
        rated.invoices.len(),
        per_customer.len(),
        "customer counts differ"
    );
    let api_calls: u64 = per_customer.values().map(|t| t.count[0]).sum();
    let api_billed: Decimal = rated
        .invoices
        .iter()
        .flat_map(|i| &i.lines)
        .filter(|l| l.metric.as_deref() == Some("api_calls"))
        .map(|l| l.quantity.0)
        .sum();
    let n_below_allowance: Decimal = per_customer
        .values()
        .map(|t| Decimal::from(t.count[0].min(100)))
        .sum();
    // Billed quantity = calls beyond each customer's 100 included ones.
    assert_eq!(
        api_billed + n_below_allowance,
        Decimal::from(api_calls),
        "api call counts differ"
    );
}

fn main() -> std::io::Result<()> {
    // `cargo bench` passes `--bench`; ignore arguments.
    let sizes: Vec<u64> = std::env::var("RATECARD_BENCH_EVENTS")
        .unwrap_or_else(|_| "1000000,10000000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .expect("RATECARD_BENCH_EVENTS: comma-separated event counts")
        })
        .collect();
    let rounds: usize = std::env::var("RATECARD_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let plan: Plan = serde_json::from_str(PLAN).expect("bench plan");
    let report = ratecard_engine::validate::validate_plan(&plan);
    assert!(report.is_ok(), "bench plan invalid: {:?}", report.errors);
    println!(
        "rate bench: `rate_stream` vs a minimal serde_json parse-and-sum loop over the same NDJSON file"
    );
    for n_events in sizes {
        bench_size(n_events, rounds, &plan)?;
    }
    Ok(())
}
