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
