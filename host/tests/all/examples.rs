//! Each example plugin against a native Rust implementation of the same metric (written here,
//! independently of the plugin's code), on random events split into random batches, saved and
//! merged across accumulators in a random order.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ratecard_engine::Decimal;
use ratecard_engine::plugin::{GroupedQuantity, MetricAccumulator, PriceRequest};
use ratecard_engine::usage::{Event, PropValue};
use ratecard_host::plugins::LoadedPlugin;
use ratecard_host::plugins::convert::Reads;
use ratecard_host::plugins::runtime::EVENTS_PER_CALL;
use ratecard_test_plugins as guests;
use serde_json::json;

use crate::{event, plugin};

const SLOT_MS: i64 = 300_000;

/// Runs `events` through `workers` accumulators (events dealt by `assignment`, each worker's
/// events in `batch`-sized updates), saves every worker but the first and merges them into the
/// first in `merge_order`.
fn through_plugin(
    plugin: &LoadedPlugin,
    config: serde_json::Value,
    events: &[Event<'static>],
    assignment: &[usize],
    batch: usize,
    merge_order: &[usize],
) -> Result<Decimal, ratecard_engine::plugin::PluginError> {
    let workers = merge_order.len() + 1;
    let mut per_worker: Vec<Vec<Event<'static>>> = vec![Vec::new(); workers];
    for (i, event) in events.iter().enumerate() {
        per_worker[assignment[i % assignment.len()] % workers].push(event.clone());
    }
    let mut accumulators = Vec::new();
    for worker_events in &per_worker {
        let mut accumulator = plugin.metric(&config)?;
        for chunk in worker_events.chunks(batch.max(1)) {
            accumulator.update(chunk)?;
        }
        accumulators.push(accumulator);
    }
    let mut first = accumulators.remove(0);
    let mut states = Vec::new();
    for accumulator in &mut accumulators {
        states.push(accumulator.save()?);
    }
    for &i in merge_order {
        first.merge(&states[i % states.len()])?;
    }
    // Each saved state merged exactly once, whatever the order.
    first.finish()
}

/// A permutation of `0..n` from a random key.
fn permutation(n: usize, keys: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (keys[i % keys.len()].wrapping_mul(i as u64 + 1), i));
    order
}

fn decimal(units: i64, scale: u32) -> Decimal {
    Decimal::new(units, scale)
}

// Native implementations.

fn native_p95(events: &[Event<'_>]) -> Decimal {
    let mut slots: BTreeMap<i64, Decimal> = BTreeMap::new();
    for event in events {
        let rate = event.properties["mbps"].as_decimal().unwrap();
        *slots
            .entry(event.timestamp.0.div_euclid(SLOT_MS))
            .or_default() += rate;
    }
    let mut rates: Vec<Decimal> = slots.into_values().collect();
    if rates.is_empty() {
        return Decimal::ZERO;
    }
    rates.sort();
    let rank = (rates.len() * 95).div_ceil(100);
    rates[rank - 1]
}

fn native_peak_sessions(events: &[Event<'_>]) -> Decimal {
    let mut changes: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|e| match &*e.code {
            "session.start" => Some((e.timestamp.0, 1)),
            "session.end" => Some((e.timestamp.0, -1)),
            _ => None,
        })
        .collect();
    changes.sort();
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, change) in changes {
        open = (open + change).max(0);
        peak = peak.max(open);
    }
    Decimal::from(peak)
}

fn native_gpu_seconds(events: &[Event<'_>], multipliers: &BTreeMap<&str, Decimal>) -> Decimal {
    events
        .iter()
        .map(|e| {
            let ratecard_engine::usage::PropValue::Str(gpu) = &e.properties["gpu_type"] else {
                unreachable!()
            };
            e.properties["seconds"].as_decimal().unwrap() * multipliers[&**gpu]
        })
        .sum()
}

fn native_fleet_km(events: &[Event<'_>]) -> Decimal {
    let mut readings: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
    for e in events {
        let ratecard_engine::usage::PropValue::Str(vehicle) = &e.properties["vehicle_id"] else {
            unreachable!()
        };
        readings
            .entry(vehicle.to_string())
            .or_default()
            .push(e.properties["odometer_km"].as_decimal().unwrap());
    }
    readings
        .values()
        .map(|r| r.iter().max().unwrap() - r.iter().min().unwrap())
        .sum()
}

// Strategies.

fn split() -> impl Strategy<Value = (Vec<usize>, usize, Vec<u64>)> {
    (
        prop::collection::vec(0usize..4, 1..8),
        1usize..40,
        prop::collection::vec(any::<u64>(), 1..4),
    )
}

fn p95_events() -> impl Strategy<Value = Vec<Event<'static>>> {
    prop::collection::vec((0i64..200, 0i64..100_000, 0u32..4), 0..120).prop_map(|samples| {
        samples
            .into_iter()
            .enumerate()
            .map(|(i, (minute, units, scale))| {
                event(
                    i,
                    minute * 60_000,
                    "bw",
                    &[("mbps", decimal(units, scale))],
                    &[],
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn p95_bandwidth_matches_native(events in p95_events(), (assignment, batch, keys) in split()) {
        let order = permutation(keys.len(), &keys);
        let quantity = through_plugin(plugin(guests::P95_BANDWIDTH), json!({}), &events, &assignment, batch, &order).unwrap();
        prop_assert_eq!(quantity, native_p95(&events));
    }

    #[test]
    fn peak_sessions_matches_native(
        changes in prop::collection::vec((0i64..500, any::<bool>()), 0..150),
        (assignment, batch, keys) in split(),
    ) {
        let events: Vec<_> = changes
            .iter()
            .enumerate()
            .map(|(i, (t, start))| event(i, *t, if *start { "session.start" } else { "session.end" }, &[], &[]))
            .collect();
        let order = permutation(keys.len(), &keys);
        let quantity = through_plugin(plugin(guests::PEAK_SESSIONS), json!({}), &events, &assignment, batch, &order).unwrap();
        prop_assert_eq!(quantity, native_peak_sessions(&events));
    }

    #[test]
    fn gpu_seconds_matches_native(
        usage in prop::collection::vec((0usize..3, 0i64..1_000_000, 0u32..3), 0..150),
        (assignment, batch, keys) in split(),
    ) {
        let gpus = ["a100", "h100", "t4"];
        let multipliers: BTreeMap<&str, Decimal> =
            [("a100", decimal(25, 1)), ("h100", decimal(4, 0)), ("t4", decimal(75, 2))].into();
        let events: Vec<_> = usage
            .iter()
            .enumerate()
            .map(|(i, (gpu, units, scale))| {
                event(i, 0, "gpu", &[("seconds", decimal(*units, *scale))], &[("gpu_type", gpus[*gpu])])
            })
            .collect();
        let config = json!({ "multipliers": { "a100": "2.5", "h100": "4", "t4": "0.75" } });
        let order = permutation(keys.len(), &keys);
        let quantity = through_plugin(plugin(guests::GPU_SECONDS), config, &events, &assignment, batch, &order).unwrap();
        prop_assert_eq!(quantity, native_gpu_seconds(&events, &multipliers));
    }

    #[test]
    fn fleet_km_matches_native(
        readings in prop::collection::vec((0usize..5, 0i64..10_000_000), 0..150),
        (assignment, batch, keys) in split(),
    ) {
        let events: Vec<_> = readings
            .iter()
            .enumerate()
            .map(|(i, (vehicle, km))| {
                let vehicle = format!("v{vehicle}");
                event(i, i as i64, "odo", &[("odometer_km", decimal(*km, 1))], &[("vehicle_id", &vehicle)])
            })
            .collect();
        let order = permutation(keys.len(), &keys);
        let quantity = through_plugin(plugin(guests::FLEET_KM), json!(null), &events, &assignment, batch, &order).unwrap();
        prop_assert_eq!(quantity, native_fleet_km(&events));
    }

    #[test]
    fn tou_electricity_matches_native(
        quantities in prop::collection::vec((0usize..2, 0i64..10_000_000, 0u32..4), 0..6),
    ) {
        // A request has each group once (the engine aggregates by group).
        let mut quantities = quantities;
        let mut seen = [false; 2];
        quantities.retain(|(w, _, _)| !std::mem::replace(&mut seen[*w], true));
        let windows = ["peak", "off-peak"];
        let rates = [decimal(32, 2), decimal(1234, 4)];
        let request = PriceRequest {
            plan_id: "home".into(),
            charge_id: "energy".into(),
            currency: "EUR".into(),
            config: json!({ "rates": { "peak": "0.32", "off-peak": "0.1234" }, "standing_charge": "9.5" }),
            customer_id: "c1".into(),
            customer_attributes: serde_json::Map::new(),
            period_start: "2026-11-01T00:00:00Z".into(),
            period_end: "2026-12-01T00:00:00Z".into(),
            quantities: quantities
                .iter()
                .map(|(w, units, scale)| GroupedQuantity {
                    group: [("tou".to_owned(), windows[*w].to_owned())].into(),
                    quantity: decimal(*units, *scale),
                })
                .collect(),
        };
        let lines = plugin(guests::TOU_ELECTRICITY).price(&request).unwrap();
        prop_assert_eq!(lines.len(), quantities.len() + 1);
        for (line, (w, units, scale)) in lines.iter().zip(&quantities) {
            prop_assert_eq!(line.amount, decimal(*units, *scale) * rates[*w]);
            prop_assert_eq!(line.quantity, decimal(*units, *scale));
            prop_assert_eq!(&line.group["tou"], windows[*w]);
            prop_assert_eq!(line.breakdown[0].amount.0, line.amount);
        }
        prop_assert_eq!(lines.last().unwrap().amount, decimal(95, 1));
    }
}

#[test]
fn metric_plugins_refuse_to_price_and_price_plugins_to_aggregate() {
    let error = plugin(guests::TOU_ELECTRICITY)
        .metric(&json!({}))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ratecard_engine::plugin::PluginError::InvalidConfig { .. }
        ),
        "{error:?}"
    );
}

#[test]
fn plugins_describe_themselves() {
    let p95 = plugin(guests::P95_BANDWIDTH);
    assert_eq!(p95.reference(), "p95-bandwidth@1.0.0");
    assert_eq!(p95.metadata().kinds, ["metric"]);
    assert_eq!(
        p95.metadata().config_schema["properties"]["property"]["default"],
        "mbps"
    );
    assert_eq!(plugin(guests::TOU_ELECTRICITY).metadata().kinds, ["price"]);
}

#[test]
fn bad_event_is_an_input_error_naming_the_event() {
    // The plugin does not read ids: it names the event by its place in the batch, the host by
    // its id, past the first call's events as well.
    let gpu = |id: usize, gpu_type: &str| {
        event(
            id,
            0,
            "gpu",
            &[("seconds", Decimal::ONE)],
            &[("gpu_type", gpu_type)],
        )
    };
    for bad_at in [0, 7, EVENTS_PER_CALL + 3] {
        let mut metric = plugin(guests::GPU_SECONDS)
            .metric(&json!({ "multipliers": { "a100": "2" } }))
            .unwrap();
        let events: Vec<Event<'static>> = (0..EVENTS_PER_CALL + 10)
            .map(|i| gpu(1_000 + i, if i == bad_at { "t4" } else { "a100" }))
            .collect();
        let error = metric.update(&events).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "plugin `gpu-seconds@1.0.0` failed: invalid input: event `{}`: no multiplier for GPU type `t4`",
                1_000 + bad_at
            )
        );
    }
}

#[test]
fn metrics_are_passed_only_what_they_read() {
    let mut p95 = plugin(guests::P95_BANDWIDTH)
        .metric(&json!({ "property": "rate" }))
        .unwrap();
    assert_eq!(
        *p95.reads().unwrap(),
        Reads {
            ids: false,
            customers: false,
            codes: false,
            properties: Some(vec!["rate".to_owned()]),
        }
    );
    // Other properties are not passed: the rate is found among them, and its absence named.
    let sample = |id: usize, rate: Option<i64>| {
        let mut numbers = vec![("a", Decimal::ONE), ("zz", Decimal::TWO)];
        numbers.extend(rate.map(|rate| ("rate", Decimal::from(rate))));
        event(id, 0, "bw", &numbers, &[("router", "r1")])
    };
    p95.update(&[sample(1, Some(3)), sample(2, Some(4))])
        .unwrap();
    assert_eq!(p95.finish().unwrap(), Decimal::from(7));
    let mut p95 = plugin(guests::P95_BANDWIDTH)
        .metric(&json!({ "property": "rate" }))
        .unwrap();
    let error = p95
        .update(&[sample(1, Some(3)), sample(2, None)])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin `p95-bandwidth@1.0.0` failed: invalid input: event `2`: no property `rate`"
    );
    // Asked once per config: a second accumulator with the same config makes no call for it.
    // (The loaded plugin is shared by the tests: these configs are this test's alone.)
    let calls = |property: &str| {
        let mut metric = plugin(guests::P95_BANDWIDTH)
            .metric(&json!({ "property": property }))
            .unwrap();
        let mut event = sample(1, None);
        event.properties = [(property.to_owned().into(), PropValue::Num(Ok(Decimal::ONE)))].into();
        metric.update(&[event]).unwrap();
        (metric.stats().calls, metric.reads().unwrap().clone())
    };
    let (first_calls, first_reads) = calls("rate_asked_once");
    assert_eq!(first_calls, 4, "create, reads, update, save");
    assert_eq!(
        calls("rate_asked_once"),
        (3, first_reads),
        "create, update, save"
    );
    let (other_calls, other_reads) = calls("other_asked_once");
    assert_eq!(other_calls, 4);
    assert_eq!(
        other_reads.properties,
        Some(vec!["other_asked_once".to_owned()])
    );
    // A metric that says nothing reads everything.
    let mut counter = plugin(guests::HOSTILE)
        .metric(&json!({ "attack": "none" }))
        .unwrap();
    assert_eq!(*counter.reads().unwrap(), Reads::default());
}
