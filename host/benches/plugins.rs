//! Plugin runtime benchmarks, all measured in one run so the ratios compare like with like:
//!
//! - fresh instance + call (a fresh `Store`, instantiate from `InstancePre`, one call with a
//!   ~100-byte input), also for a plugin that imports `log`, and a call on a live instance,
//!   p50 / p99;
//! - events/s through the `p95-bandwidth` plugin vs the same metric in native Rust, on batches
//!   of 10,000 events;
//! - the state model: a live instance (the accumulator) vs state passed as bytes per batch;
//! - loading from the on-disk cache vs compiling from scratch.
//!
//! `cargo bench -p ratecard-host --bench plugins` (with `CARGO_TARGET_DIR` as you like); add
//! `-- fresh`, `-- live`, `-- throughput`, `-- state` or `-- load` to run one part (for `perf`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::plugin::MetricAccumulator;
use ratecard_engine::usage::{Event, PropValue, Timestamp};
use ratecard_host::plugins::convert::{BatchWriter, Reads};
use ratecard_host::plugins::{PluginRuntime, RuntimeConfig};
use ratecard_test_plugins as guests;
use serde_json::json;

/// Set in a child run of the `live` part: it prints its p50 and nothing else.
const CHILD: &str = "RATECARD_BENCH_LIVE_CHILD";

/// The live call with `RUST_BACKTRACE` unset and set to 1, in child processes (the standard
/// library reads it once per process), alternating, three each: nothing on a successful call's
/// path may capture a backtrace, so the ratio must be ~1.
fn backtrace_ratio() {
    let exe = std::env::current_exe().unwrap();
    let child = |backtrace: bool| -> f64 {
        let mut command = std::process::Command::new(&exe);
        command.arg("live").env(CHILD, "1");
        command.env_remove("RUST_LIB_BACKTRACE");
        if backtrace {
            command.env("RUST_BACKTRACE", "1");
        } else {
            command.env_remove("RUST_BACKTRACE");
        }
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix(CHILD)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no p50 from the child run: {text}"))
    };
    let (mut unset, mut set) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        unset.push(child(false));
        set.push(child(true));
    }
    let median = |runs: &mut Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let (unset, set) = (median(&mut unset), median(&mut set));
    println!(
        "live call p50, RUST_BACKTRACE unset {unset:.0} ns | RUST_BACKTRACE=1 {set:.0} ns | set/unset {:.2} (3 child runs each, medians)",
        set / unset
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects one part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let run = |part: &str| only.as_deref().is_none_or(|only| only == part);
    let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let p95 = runtime.load_file(guests::P95_BANDWIDTH.as_ref()).unwrap();
    println!(
        "ratecard plugin benchmarks (p95-bandwidth plugin, {} bytes)",
        p95.size()
    );

    // A ~100-byte config: `{"property":"mbps…"}`.
    let property = format!("mbps_{}", "x".repeat(80));
    let config = json!({ "property": property });
    assert_eq!(config.to_string().len(), 100);
    let mut fresh = None;
    if run("fresh") {
        // Beside it, alternating, a plugin that imports `log` (the counting guest): lowering the
        // import needs the guest's memory, so wit-component adds a shim and a fixup module, and
        // every fresh instance has five core instances instead of one.
        let logging = runtime.load_file(guests::HOSTILE.as_ref()).unwrap();
        let none = json!({"attack": "none"});
        // An accumulator gets its instance at its first batch (`create` of a known config is
        // not asked again until then), so a fresh instance + call is `metric` + one raw
        // `update_batch` of one event, already in the contract's shape.
        let one_event = [event(0, 0, &property, Decimal::new(12_345, 2))];
        let first_batch = |plugin: &ratecard_host::plugins::LoadedPlugin,
                           config: &serde_json::Value| {
            let mut metric = plugin.metric(config).unwrap();
            BatchWriter::new(metric.reads().unwrap().clone())
                .write(&one_event)
                .unwrap()
                .to_vec()
        };
        let (p95_batch, logging_batch) = (first_batch(&p95, &config), first_batch(&logging, &none));
        let [created, created_logging] = paired_samples(
            20_000,
            [
                &mut || {
                    let mut metric = p95.metric(&config).unwrap();
                    metric.update_batch(&p95_batch, 1).unwrap();
                    black_box(metric);
                },
                &mut || {
                    let mut metric = logging.metric(&none).unwrap();
                    metric.update_batch(&logging_batch, 1).unwrap();
                    black_box(metric);
                },
            ],
        );
        report(
            "fresh instance + call (create, one-event update, 100-byte config)",
            &created,
        );
        fresh = Some(percentile(&created, 50));
        report(
            "fresh instance + call of a plugin importing `log`",
            &created_logging,
        );
        println!(
            "  importing log / not, alternating: {:.2} (p50)",
            percentile(&created_logging, 50).as_secs_f64() / percentile(&created, 50).as_secs_f64()
        );
        // A whole aggregation of one event in a fresh instance: what a customer with little
        // usage costs.
        let aggregation = samples(20_000, || {
            let mut metric = p95.metric(&config).unwrap();
            metric.update(&one_event).unwrap();
            black_box(metric.finish().unwrap());
        });
        report(
            "fresh aggregation of one event (create, update, finish)",
            &aggregation,
        );
    }

    let mut live_call = None;
    if run("live") {
        let one_event = [event(0, 0, &property, Decimal::new(12_345, 2))];
        let mut live = p95.metric(&config).unwrap();
        // The raw call: one event, already in the contract's shape, on the live instance.
        let mut writer = BatchWriter::new(live.reads().unwrap().clone());
        let batch = writer.write(&one_event).unwrap().to_vec();
        let calls = samples(50_000, || {
            live.update_batch(black_box(&batch), 1).unwrap();
        });
        let mut accumulator = p95.metric(&config).unwrap();
        let updates = samples(50_000, || {
            accumulator.update(black_box(&one_event)).unwrap();
        });
        if std::env::var_os(CHILD).is_some() {
            // A run under another environment, for the parent's comparison.
            println!("{CHILD} {}", percentile(&calls, 50).as_nanos());
            return;
        }
        report("live call (update_batch, one ~100-byte event)", &calls);
        report(
            "live update (convert, update, save: what `update` does per batch)",
            &updates,
        );
        live_call = Some(percentile(&calls, 50));
        backtrace_ratio();
    }

    // Throughput on 10,000-event batches: create, update, finish.
    let batch: Vec<Event<'static>> = (0..10_000)
        .map(|i| {
            event(
                i,
                i as i64 * 60_000,
                "mbps",
                Decimal::new((i as i64 * 7919) % 100_000, 2),
            )
        })
        .collect();
    let mut ratio = None;
    if run("throughput") {
        // Plugin and native runs alternate, so both see the same load on a busy machine.
        let [plugin_runs, native_runs, native_runs_runs] = paired_samples(
            100,
            [
                &mut || {
                    let mut metric = p95.metric(&json!({})).unwrap();
                    metric.update(&batch).unwrap();
                    black_box(metric.finish().unwrap());
                },
                &mut || {
                    black_box(native_p95(black_box(&batch)));
                },
                &mut || {
                    black_box(native_p95_by_runs(black_box(&batch)));
                },
            ],
        );
        let mut check = p95.metric(&json!({})).unwrap();
        check.update(&batch).unwrap();
        assert_eq!(
            check.finish().unwrap(),
            native_p95(&batch),
            "plugin and native disagree"
        );
        assert_eq!(native_p95_by_runs(&batch), native_p95(&batch));
        let per_second = |d: Duration| batch.len() as f64 / d.as_secs_f64();
        let (plugin_p50, native_p50) = (percentile(&plugin_runs, 50), percentile(&native_runs, 50));
        // The 95th-percentile slowest batch, in events/s.
        let (plugin_p95, native_p95_time) =
            (percentile(&plugin_runs, 95), percentile(&native_runs, 95));
        println!(
            "events/s, 10,000-event batches: plugin {:.0} (p50) {:.0} (p95 batch) | native {:.0} (p50) {:.0} (p95 batch) | plugin/native {:.2} (p50) {:.2} (p95)",
            per_second(plugin_p50),
            per_second(plugin_p95),
            per_second(native_p50),
            per_second(native_p95_time),
            native_p50.as_secs_f64() / plugin_p50.as_secs_f64(),
            native_p95_time.as_secs_f64() / plugin_p95.as_secs_f64(),
        );
        let stats = check.stats();
        println!(
            "  one 10,000-event aggregation: {} fuel, peak memory {} bytes, in guest {:?}",
            stats.fuel_used, stats.peak_memory_bytes, stats.call_time
        );
        // The plugin's algorithm (a map search per run of samples in one slot, the rank selected
        // rather than sorted) in native Rust: how far the ratio is from the wasm cost itself.
        let runs_p50 = percentile(&native_runs_runs, 50);
        println!(
            "  native with the plugin's algorithm {:.0} events/s (p50) | plugin/that {:.2} (p50)",
            per_second(runs_p50),
            runs_p50.as_secs_f64() / plugin_p50.as_secs_f64(),
        );
        // The target is judged against native Rust doing the same work the same way.
        ratio = Some((
            runs_p50.as_secs_f64() / plugin_p50.as_secs_f64(),
            native_p50.as_secs_f64() / plugin_p50.as_secs_f64(),
        ));

        // What crossing costs without the metric's own work: a guest that only counts events.
        let counter = runtime.load_file(guests::HOSTILE.as_ref()).unwrap();
        let mut counting = counter.metric(&json!({"attack": "none"})).unwrap();
        let crossing = samples(60, || {
            counting.update(black_box(&batch)).unwrap();
        });
        // The writer as the runtime uses it: one per metric, warm, EVENTS_PER_CALL per call;
        // writing every part of the events (what the counting guest reads), and what p95 reads.
        let write = |reads: Reads| {
            let mut writer = BatchWriter::new(reads);
            samples(60, || {
                for chunk in batch.chunks(ratecard_host::plugins::runtime::EVENTS_PER_CALL) {
                    black_box(writer.write(black_box(chunk)).unwrap());
                }
            })
        };
        let writer_runs = write(Reads::default());
        let p95_writer_runs = write(check.reads().unwrap().clone());
        let mut counting = counter.metric(&json!({"attack": "none"})).unwrap();
        counting.update(&batch).unwrap();
        let counted = counting.stats();
        let per_event =
            |runs: &[Duration]| percentile(runs, 50).as_nanos() as f64 / batch.len() as f64;
        println!(
            "  per event: write the batch {:.0} ns (what p95 reads: {:.0} ns), write + cross into a counting guest {:.0} ns ({} fuel), native p95 {:.0} ns",
            per_event(&writer_runs),
            per_event(&p95_writer_runs),
            per_event(&crossing),
            counted.fuel_used / batch.len() as u64,
            per_event(&native_runs),
        );
    }

    if run("state") {
        // State model: 10 batches of 1,000 events.
        let batches: Vec<&[Event<'static>]> = batch.chunks(1_000).collect();
        let live = samples(40, || {
            let mut metric = p95.metric(&json!({})).unwrap();
            for b in &batches {
                metric.update(b).unwrap();
            }
            black_box(metric.finish().unwrap());
        });
        let bytes = samples(40, || {
            let mut state: Option<Vec<u8>> = None;
            for b in &batches {
                let mut metric = p95.metric(&json!({})).unwrap();
                if let Some(state) = &state {
                    metric.merge(state).unwrap();
                }
                metric.update(b).unwrap();
                state = Some(metric.save().unwrap());
            }
            let mut metric = p95.metric(&json!({})).unwrap();
            metric.merge(state.as_ref().unwrap()).unwrap();
            black_box(metric.finish().unwrap());
        });
        // What the runtime does when no slot is idle: every accumulator parks its saved state
        // after each batch and restores it (`create` + `merge`) at the next.
        let parking = PluginRuntime::new(RuntimeConfig {
            limits: ratecard_host::plugins::Limits {
                idle_memory_bytes: 0,
                ..Default::default()
            },
            ..RuntimeConfig::default()
        })
        .unwrap();
        let parked_p95 = parking.load_file(guests::P95_BANDWIDTH.as_ref()).unwrap();
        let parked = samples(40, || {
            let mut metric = parked_p95.metric(&json!({})).unwrap();
            for b in &batches {
                metric.update(b).unwrap();
            }
            black_box(metric.finish().unwrap());
        });
        let one_event = [event(0, 0, "mbps", Decimal::new(12_345, 2))];
        let mut kept = p95.metric(&json!({})).unwrap();
        let kept_one = samples(20_000, || kept.update(black_box(&one_event)).unwrap());
        let mut parked_metric = parked_p95.metric(&json!({})).unwrap();
        let parked_one = samples(20_000, || {
            parked_metric.update(black_box(&one_event)).unwrap()
        });
        let p50 = |runs: &[Duration]| percentile(runs, 50);
        let ratio = |a: &[Duration], b: &[Duration]| p50(a).as_secs_f64() / p50(b).as_secs_f64();
        println!(
            "state model, 10 x 1,000 events: live instance {:?} | parked between batches (no idle slot) {:?} | bytes per batch by hand {:?} | parked/live {:.2} | by hand/live {:.2} (p50s)",
            p50(&live),
            p50(&parked),
            p50(&bytes),
            ratio(&parked, &live),
            ratio(&bytes, &live),
        );
        println!(
            "  one-event batches on a growing state: kept live {:?} | parked (restore, update, save, drop) {:?} | parked/live {:.2} (p50s)",
            p50(&kept_one),
            p50(&parked_one),
            ratio(&parked_one, &kept_one),
        );
    }

    if run("load") {
        // Cache: compile from scratch vs load from the on-disk cache.
        let bytes = std::fs::read(guests::P95_BANDWIDTH).unwrap();
        let cache_dir =
            std::env::temp_dir().join(format!("ratecard-bench-cache-{}", std::process::id()));
        let cached = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(cache_dir.clone()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        cached.load(&bytes).unwrap(); // fills the cache
        let uncached = samples(5, || {
            black_box(runtime.load(&bytes).unwrap());
        });
        let from_cache = samples(20, || {
            black_box(cached.load(&bytes).unwrap());
        });
        println!(
            "load: compile {:?} (p50) | from disk cache {:?} (p50) | compile/cache {:.1}",
            percentile(&uncached, 50),
            percentile(&from_cache, 50),
            percentile(&uncached, 50).as_secs_f64() / percentile(&from_cache, 50).as_secs_f64()
        );
        std::fs::remove_dir_all(&cache_dir).ok();
    }

    if let (Some(fresh), Some(live_call), Some((same_algorithm, straightforward))) =
        (fresh, live_call, ratio)
    {
        println!(
            "vs targets: fresh+call p50 {fresh:?} (target <= 10us), live call p50 {live_call:?} (target <= 1.5us), plugin/native with the same algorithm {same_algorithm:.2} (target >= 0.33; against the straightforward native {straightforward:.2})",
        );
    }
}

fn samples(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..(n / 10).max(1) {
        f();
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples
}

/// Runs each of `fs` `n` times, alternating, so all see the same load; sorted durations each.
fn paired_samples<const K: usize>(n: usize, mut fs: [&mut dyn FnMut(); K]) -> [Vec<Duration>; K] {
    for _ in 0..(n / 10).max(1) {
        fs.iter_mut().for_each(|f| f());
    }
    let mut runs: [Vec<Duration>; K] = std::array::from_fn(|_| Vec::with_capacity(n));
    for _ in 0..n {
        for (f, runs) in fs.iter_mut().zip(runs.iter_mut()) {
            let started = Instant::now();
            f();
            runs.push(started.elapsed());
        }
    }
    runs.iter_mut().for_each(|runs| runs.sort());
    runs
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() * p).div_ceil(100)).saturating_sub(1)]
}

fn report(what: &str, sorted: &[Duration]) {
    println!(
        "{what}: p50 {:?} p99 {:?} (n = {})",
        percentile(sorted, 50),
        percentile(sorted, 99),
        sorted.len()
    );
}

fn event(id: usize, timestamp_ms: i64, property: &str, value: Decimal) -> Event<'static> {
    let properties = [(property.to_owned().into(), PropValue::Num(Ok(value)))].into();
    Event {
        id: format!("evt_{id:012}").into(),
        customer: "cus_0001".into(),
        timestamp: Timestamp(1_790_000_000_000 + timestamp_ms),
        code: "bandwidth".into(),
        properties,
    }
}

/// The same metric in native Rust, on the engine's events.
fn native_p95(events: &[Event<'_>]) -> Decimal {
    let mut slots: BTreeMap<i64, Decimal> = BTreeMap::new();
    for event in events {
        let rate = event.properties["mbps"].as_decimal().unwrap();
        *slots
            .entry(event.timestamp.0.div_euclid(300_000))
            .or_default() += rate;
    }
    let mut rates: Vec<Decimal> = slots.into_values().collect();
    if rates.is_empty() {
        return Decimal::ZERO;
    }
    rates.sort_unstable();
    rates[(rates.len() * 95).div_ceil(100) - 1]
}

/// The same metric with the plugin's algorithm: the map searched once per run of samples in one
/// slot, the rank selected in linear time.
fn native_p95_by_runs(events: &[Event<'_>]) -> Decimal {
    let mut slots: BTreeMap<i64, Decimal> = BTreeMap::new();
    let mut run: Option<(std::ops::Range<i64>, &mut Decimal)> = None;
    for event in events {
        let rate = event.properties["mbps"].as_decimal().unwrap();
        let t = event.timestamp.0;
        match &mut run {
            Some((run_ms, total)) if run_ms.contains(&t) => **total += rate,
            _ => {
                let total = slots.entry(t.div_euclid(300_000)).or_default();
                *total += rate;
                let into_slot = t.rem_euclid(300_000);
                run = Some((
                    t.saturating_sub(into_slot)..t.saturating_add(300_000 - into_slot),
                    total,
                ));
            }
        }
    }
    let mut rates: Vec<Decimal> = slots.into_values().collect();
    if rates.is_empty() {
        return Decimal::ZERO;
    }
    let rank = (rates.len() * 95).div_ceil(100);
    *rates.select_nth_unstable(rank - 1).1
}
