//! Runs every golden vector through the native engine.

use ratecard_engine::error::ErrorReport;
use ratecard_engine::json;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::{PreparedPlan, quote};
use ratecard_engine::usage::Usage;
use ratecard_tests::{Outcome, compare, load_vectors, update, updating};

/// The native runner: parse, quote, serialize. The wasm and host runners do the same through
/// their own boundary and must match byte for byte.
fn run(plan: &str, usage: &str) -> Outcome {
    let plan: Plan = match json::parse(plan) {
        Ok(plan) => plan,
        Err(errors) => return Outcome::Error(ErrorReport::invalid_json("plan", &errors)),
    };
    let usage: Usage = match json::parse(usage) {
        Ok(usage) => usage,
        Err(errors) => return Outcome::Error(ErrorReport::invalid_json("usage", &errors)),
    };
    let quoted = quote(&plan, &usage, &NoPlugins);
    // A prepared plan quotes the same invoice, byte for byte, or fails the same way.
    let prepared = PreparedPlan::of(&plan).and_then(|prepared| prepared.quote(&usage, &NoPlugins));
    match (&quoted, &prepared) {
        (Ok(a), Ok(b)) => assert_eq!(
            serde_json::to_string(a).expect("invoices serialize"),
            serde_json::to_string(b).expect("invoices serialize"),
            "prepared plan {}",
            plan.id
        ),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "prepared plan {}", plan.id),
        _ => panic!("prepared plan {}: {quoted:?} vs {prepared:?}", plan.id),
    }
    match quoted {
        Ok(invoice) => {
            Outcome::Invoice(serde_json::to_value(&invoice).expect("invoices serialize"))
        }
        Err(error) => Outcome::Error(ErrorReport::from(&error).in_plan(&plan, &error)),
    }
}

#[test]
fn golden_vectors() {
    let vectors = load_vectors();
    assert!(vectors.len() >= 30, "only {} vectors found", vectors.len());
    let mut failures = Vec::new();
    for file in &vectors {
        let (plan, usage) = file.inputs();
        let outcome = run(&plan, &usage);
        if updating() {
            update(file, &outcome);
            // Hand checks still apply while updating.
            let problems: Vec<String> = compare(file, &outcome)
                .into_iter()
                .filter(|p| !p.contains("differs") && !p.contains("UPDATE_EXPECT"))
                .collect();
            if !problems.is_empty() {
                failures.push(format!("{}:\n  {}", file.name, problems.join("\n  ")));
            }
            continue;
        }
        let problems = compare(file, &outcome);
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", file.name, problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn same_input_gives_byte_identical_output() {
    for file in load_vectors().iter().take(10) {
        let (plan, usage) = file.inputs();
        let first = format!("{:?}", run(&plan, &usage));
        let second = format!("{:?}", run(&plan, &usage));
        assert_eq!(first, second, "{}", file.name);
    }
}

/// A rater's snapshot after each pushed event is the invoice of the events pushed so far (the
/// server's live usage), and its last snapshot is the invoice `finish` gives, byte for byte.
#[test]
fn snapshots_equal_the_invoice_of_the_events_so_far() {
    use ratecard_engine::rater::PeriodRater;
    let without_hash = |mut invoice: serde_json::Value| {
        if let Some(object) = invoice.as_object_mut() {
            object.remove("input_hash");
        }
        invoice
    };
    let mut checked = 0;
    for file in load_vectors() {
        let (plan, usage) = file.inputs();
        let (Ok(plan), Ok(usage)) = (json::parse::<Plan>(&plan), json::parse::<Usage>(&usage))
        else {
            continue;
        };
        let Ok(prepared) = PreparedPlan::of(&plan) else {
            continue;
        };
        let Ok(mut rater) = PeriodRater::open(&prepared, &usage, &NoPlugins) else {
            continue;
        };
        if usage.events.is_empty() {
            continue;
        }
        for (k, event) in usage.events.iter().enumerate() {
            let _outcome = rater.push(event, format_args!("$.events[{k}]"));
            let snapshot = rater.snapshot().expect("no plugin metrics in vectors");
            let prefix = Usage {
                events: usage.events[..=k].to_vec(),
                ..usage.clone()
            };
            let expected = prepared.quote(&prefix, &NoPlugins);
            match (snapshot, expected) {
                (Ok(a), Ok(b)) => assert_eq!(
                    without_hash(serde_json::to_value(&a).expect("serializes")),
                    without_hash(serde_json::to_value(&b).expect("serializes")),
                    "{} after {} events",
                    file.name,
                    k + 1
                ),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", file.name),
                (a, b) => panic!("{} after {} events: {a:?} vs {b:?}", file.name, k + 1),
            }
        }
        let last = rater.snapshot().expect("no plugin metrics");
        let finished = rater.finish();
        assert_eq!(
            last.map(|i| serde_json::to_string(&i).expect("serializes"))
                .map_err(|e| e.to_string()),
            finished
                .map(|i| serde_json::to_string(&i).expect("serializes"))
                .map_err(|e| e.to_string()),
            "{}",
            file.name
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors with events");
}

/// `PreparedPlan::total` takes amounts only (no invoice): it must give the full quote's total of
/// the same typical usage, to the byte, or fail the same way, for every vector's plan at its
/// own quantities, at every breakpoint of each metric (and just around it), at zero and at
/// odd quantities.
#[test]
fn fast_totals_are_the_full_quotes_totals() {
    use std::collections::BTreeMap;

    use ratecard_engine::Decimal;
    use ratecard_engine::estimate::{breakpoints, typical_usage};
    use ratecard_engine::usage::QuantityInput;

    let mut n_checked = 0;
    let mut n_fast_plans = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // SplitMix64: odd quantities with up to 4 decimals.
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Decimal::new((z % 10_000_000_000) as i64, (z % 5) as u32)
    };
    for file in load_vectors() {
        let (plan, usage) = file.inputs();
        let (Ok(plan), Ok(usage)) = (json::parse::<Plan>(&plan), json::parse::<Usage>(&usage))
        else {
            continue;
        };
        let Ok(prepared) = PreparedPlan::of(&plan) else {
            continue;
        };
        let mut cases: Vec<BTreeMap<String, Decimal>> = vec![BTreeMap::new()];
        cases.push(
            usage
                .quantities
                .iter()
                .filter_map(|(code, input)| match input {
                    QuantityInput::Total(q) => Some((code.clone(), q.0)),
                    QuantityInput::Groups(_) => None,
                })
                .collect(),
        );
        for metric in &plan.metrics {
            let mut points = vec![Decimal::ZERO, Decimal::ONE, Decimal::new(-1, 0), next()];
            for point in breakpoints(&plan, &metric.code) {
                points.extend([point, point + Decimal::ONE, point - Decimal::new(5, 1)]);
            }
            for point in points {
                cases.push(BTreeMap::from([(metric.code.clone(), point)]));
            }
        }
        cases.push(
            plan.metrics
                .iter()
                .map(|m| (m.code.clone(), next()))
                .collect(),
        );
        cases.push(BTreeMap::from([(
            "no_such_metric".to_owned(),
            Decimal::ONE,
        )]));
        if prepared.total_is_fast() {
            n_fast_plans += 1;
        }
        for quantities in &cases {
            let fast = prepared.total(quantities, &NoPlugins);
            let full = prepared
                .quote(&typical_usage(quantities), &NoPlugins)
                .map(|invoice| invoice.total.0);
            match (&fast, &full) {
                (Ok(a), Ok(b)) => assert_eq!(
                    a.to_string(),
                    b.to_string(),
                    "{}: at {quantities:?}",
                    file.name
                ),
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{}", file.name)
                }
                _ => panic!("{}: at {quantities:?}: {fast:?} vs {full:?}", file.name),
            }
            n_checked += 1;
        }
    }
    assert!(
        n_fast_plans >= 30,
        "only {n_fast_plans} plans take the fast path"
    );
    assert!(n_checked >= 500, "only {n_checked} totals compared");
}
