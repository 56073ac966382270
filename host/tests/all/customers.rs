//! Rating with a plugin metric for any number of customers: accumulators beyond the runtime's
//! live instances save their state and drop their instance, so no customer fails for want of a
//! slot, and the invoices do not depend on the run, the thread count or how many instances
//! stay live.

use std::fmt::Write as _;
use std::io::Cursor;

use ratecard_engine::plan::Plan;
use ratecard_engine::rate::PreparedPlan;
use ratecard_host::plugins::{LoadedPlugin, PluginRegistry, PluginRuntime, RuntimeConfig};
use ratecard_host::rating::{Collected, RateRequest, rate_stream};
use ratecard_test_plugins as guests;

const PLAN: &str = r#"{
  "id": "plugin-customers",
  "currency": "USD",
  "interval": "month",
  "metrics": [
    {"code": "bw", "name": "p95 bandwidth", "event": "bw",
     "aggregation": {"type": "custom", "plugin": "p95-bandwidth@1.0.0", "config": {"property": "mbps"}}},
    {"code": "calls", "name": "calls", "event": "bw",
     "aggregation": {"type": "custom", "plugin": "ratecard-guest-hostile@0.0.1", "config": {"attack": "none"}}}
  ],
  "charges": [
    {"id": "bw", "metric": "bw", "model": {"type": "per_unit", "unit_price": "0.75"}},
    {"id": "calls", "metric": "calls", "model": {"type": "per_unit", "unit_price": "0.001"}}
  ]
}"#;

fn registry(max_live_instances: u32) -> PluginRegistry {
    let runtime = PluginRuntime::new(RuntimeConfig {
        max_live_instances: Some(max_live_instances),
        // This file is about scale and determinism; the wall-time limit has its own tests
        // (hostile.rs). At the default 100 ms, one call descheduled on a loaded 2-core CI
        // machine (four rating threads) failed a customer.
        limits: ratecard_host::plugins::Limits {
            wall_time: std::time::Duration::from_secs(10),
            ..ratecard_host::plugins::Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let mut registry = PluginRegistry::new(runtime);
    for (reference, path) in [
        ("p95-bandwidth@1.0.0", guests::P95_BANDWIDTH),
        ("ratecard-guest-hostile@0.0.1", guests::HOSTILE),
    ] {
        registry
            .add(reference, &std::fs::read(path).unwrap(), None)
            .unwrap();
    }
    registry
}

/// `per_customer(c)` events of customer `c`, customers interleaved line by line (so every
/// customer's accumulator is open from the first lines to the last).
fn events(n_customers: usize, per_customer: impl Fn(usize) -> usize) -> String {
    let mut out = String::new();
    let most = (0..n_customers).map(&per_customer).max().unwrap_or(0);
    let mut id = 0;
    for i in 0..most {
        for c in 0..n_customers {
            if i < per_customer(c) {
                id += 1;
                let mbps = (i * 7 + c * 13) % 1000;
                let minute = i % 40_000;
                writeln!(
                    out,
                    r#"{{"id":"e{id}","customer":"c{c:05}","timestamp":"2026-11-01T00:00:00Z","code":"bw","properties":{{"mbps":{mbps},"minute":{minute}}}}}"#
                )
                .unwrap();
            }
        }
    }
    out
}

fn rate(registry: &PluginRegistry, events: &str, threads: usize) -> Collected {
    let plan: Plan = serde_json::from_str(PLAN).unwrap();
    let prepared = PreparedPlan::new(plan).unwrap();
    let request = RateRequest {
        period: "2026-11".into(),
        threads,
        ..RateRequest::default()
    };
    let mut collected = Collected::default();
    rate_stream(
        &prepared,
        Cursor::new(events),
        &request,
        registry,
        |_| {},
        |rated| collected.push(rated),
    )
    .unwrap();
    collected
}

fn invoices(summary: &Collected) -> String {
    assert!(
        summary.failed.is_empty(),
        "{:?}",
        &summary.failed[..summary.failed.len().min(3)]
    );
    serde_json::to_string(&summary.invoices).unwrap()
}

#[test]
fn ten_thousand_customers_on_plugin_metrics() {
    let events = events(10_000, |c| 1 + c % 3);
    let registry = registry(64);
    let first = rate(&registry, &events, 1);
    assert_eq!(first.invoices.len(), 10_000);
    let expected = invoices(&first);
    // Customer c has 1 + c % 3 events: `calls` counts them.
    let calls = |i: usize| {
        first.invoices[i]
            .lines
            .iter()
            .find(|l| l.charge_id == "calls")
            .map(|l| l.quantity.0.to_string())
    };
    assert_eq!(calls(0).as_deref(), Some("1"));
    assert_eq!(calls(2).as_deref(), Some("3"));
    assert_eq!(
        invoices(&rate(&registry, &events, 1)),
        expected,
        "a second run"
    );
    assert_eq!(
        invoices(&rate(&registry, &events, 2)),
        expected,
        "two threads"
    );
    assert_eq!(
        invoices(&rate(&registry, &events, 4)),
        expected,
        "four threads"
    );
    // Every saved state is given back once its accumulator is done.
    assert_eq!(plugin_state_bytes(&registry), 0);
}

/// Customers with several batches each (the engine passes 1,000 events per `update`): with 4
/// live instances almost every accumulator is saved and restored between its batches, with 64
/// many stay live; the p95 (whose state is every sample) and the count are the same.
#[test]
fn saved_and_restored_accumulators_give_the_same_invoices() {
    let events = events(40, |c| 1_500 + 97 * c);
    let live = rate(&registry(64), &events, 1);
    let expected = invoices(&live);
    let parked = registry(4);
    assert_eq!(invoices(&rate(&parked, &events, 1)), expected);
    assert_eq!(invoices(&rate(&parked, &events, 2)), expected);
    let calls = live.invoices[39]
        .lines
        .iter()
        .find(|l| l.charge_id == "calls")
        .map(|l| l.quantity.0);
    assert_eq!(calls, Some((1_500 + 97 * 39).into()));
}

fn plugin_state_bytes(registry: &PluginRegistry) -> usize {
    let plugin: &LoadedPlugin = registry.get("p95-bandwidth@1.0.0").unwrap();
    plugin.state_bytes()
}
