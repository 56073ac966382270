//! Prints every golden vector with the native engine's output, as the JSON the wasm vector test
//! (`web/test/vectors.test.mjs`) compares against byte for byte:
//! `[{"name", "plan", "usage", "output" | "error"}]`, where `plan` and `usage` are the JSON texts
//! fed to both engines and `output` is the invoice exactly as the native engine serializes it.
//!
//! `cargo run -p ratecard-wasm --example native_vectors > native-vectors.json`

use std::io::Write;

use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::quote;
use ratecard_engine::usage::Usage;
use serde_json::{Value, json};

/// The native runner of `tests/tests/vectors.rs`: parse, quote, serialize.
fn native(plan: &str, usage: &str) -> (&'static str, String) {
    let plan: Plan = match serde_json::from_str(plan) {
        Ok(plan) => plan,
        Err(error) => return ("error", format!("plan: {error}")),
    };
    let usage: Usage = match serde_json::from_str(usage) {
        Ok(usage) => usage,
        Err(error) => return ("error", format!("usage: {error}")),
    };
    match quote(&plan, &usage, &NoPlugins) {
        Ok(invoice) => match serde_json::to_string(&invoice) {
            Ok(text) => ("output", text),
            Err(error) => ("error", format!("serializing: {error}")),
        },
        Err(error) => ("error", error.to_string()),
    }
}

fn main() -> std::io::Result<()> {
    let vectors: Vec<Value> = ratecard_tests::load_vectors()
        .iter()
        .map(|file| {
            let (plan, usage) = file.inputs();
            let (kind, result) = native(&plan, &usage);
            json!({"name": file.name, "plan": plan, "usage": usage, kind: result})
        })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", Value::Array(vectors))
}
