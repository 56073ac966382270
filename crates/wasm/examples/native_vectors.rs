//! Prints every golden vector with the native engine's output, as the JSON the wasm vector test
//! (`web/test/vectors.test.mjs`) compares against byte for byte:
//! `{"vectors": [case], "timezone_vectors": [vector], "timezone_outputs": {zone: {name: result}}}`,
//! a case being `{"name", "plan", "usage", "output" | "error"}`: `plan` and `usage` are the JSON
//! texts fed to both engines and `output` is the invoice exactly as the native engine serializes
//! it. Every vector whose customer has a timezone is also quoted natively in every IANA zone
//! (the full database): the browser build keeps only some zones, and each it keeps must give
//! these results.
//!
//! `cargo run -p ratecard-wasm --example native_vectors > native.json`

use std::io::Write;

use ratecard_engine::error::ErrorReport;
use ratecard_engine::json;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::quote;
use ratecard_engine::usage::Usage;
use serde_json::{Value, json};

/// The native runner of `tests/tests/vectors.rs`: parse, quote, serialize; an error is the
/// engine's `ErrorReport` as JSON.
fn native(plan: &str, usage: &str) -> (&'static str, String) {
    let report =
        |report: ErrorReport| ("error", serde_json::to_string(&report).unwrap_or_default());
    let plan: Plan = match json::parse(plan) {
        Ok(plan) => plan,
        Err(errors) => return report(ErrorReport::invalid_json("plan", &errors)),
    };
    let usage: Usage = match json::parse(usage) {
        Ok(usage) => usage,
        Err(errors) => return report(ErrorReport::invalid_json("usage", &errors)),
    };
    match quote(&plan, &usage, &NoPlugins) {
        Ok(invoice) => match serde_json::to_string(&invoice) {
            Ok(text) => ("output", text),
            Err(error) => ("output", format!("serializing: {error}")),
        },
        Err(error) => report(ErrorReport::from(&error).in_plan(&plan, &error)),
    }
}

fn case(name: &str, plan: String, usage: String) -> Value {
    let (kind, result) = native(&plan, &usage);
    json!({"name": name, "plan": plan, "usage": usage, kind: result})
}

fn main() -> std::io::Result<()> {
    let files = ratecard_tests::load_vectors();
    let mut vectors = Vec::new();
    let mut timezone_vectors = Vec::new();
    let mut by_zone = serde_json::Map::new();
    for file in &files {
        let (plan, usage) = file.inputs();
        vectors.push(case(&file.name, plan.clone(), usage.clone()));
        let Ok(mut usage) = serde_json::from_str::<Value>(&usage) else {
            continue;
        };
        if usage.pointer("/customer/timezone").is_none() {
            continue;
        }
        timezone_vectors.push(json!({"name": file.name, "plan": plan, "usage": usage.to_string()}));
        for zone in chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()) {
            usage["customer"]["timezone"] = Value::String(zone.to_owned());
            let (kind, result) = native(&plan, &usage.to_string());
            let outputs = by_zone
                .entry(zone)
                .or_insert_with(|| Value::Object(Default::default()));
            outputs[&file.name] = json!({ kind: result });
        }
    }
    let mut out = std::io::stdout().lock();
    let all = json!({
        "vectors": vectors,
        "timezone_vectors": timezone_vectors,
        "timezone_outputs": by_zone,
    });
    writeln!(out, "{all}")
}
