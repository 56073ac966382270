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
