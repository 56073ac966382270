//! Every golden vector through the `ratecard quote` binary: the host must print exactly the
//! invoice the engine's native runner pins (same JSON, byte for byte once compacted), or fail
//! with the error it pins (same code, document and paths), parse errors included.

use std::process::Command;

use ratecard_engine::error::ErrorReport;
use ratecard_tests::{Outcome, compare, load_vectors};

#[test]
fn golden_vectors_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("ratecard-host-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let vectors = load_vectors();
    assert!(!vectors.is_empty());
    let mut failures = Vec::new();
    let (mut n_invoices, mut n_errors) = (0, 0);
    for file in &vectors {
        let (plan, usage) = file.inputs();
        let plan_path = dir.join("plan.json");
        let usage_path = dir.join("usage.json");
        std::fs::write(&plan_path, plan).expect("write plan");
        std::fs::write(&usage_path, usage).expect("write usage");
        let output = Command::new(env!("CARGO_BIN_EXE_ratecard"))
            .args(["quote", "--format", "json", "--plan"])
            .arg(&plan_path)
            .arg("--usage")
            .arg(&usage_path)
            .output()
            .expect("ratecard runs");
        if !output.status.success() {
            // Error vectors: with `--format json` the CLI reports the error as the engine's
            // `ErrorReport` (code, document, path, findings, message) on standard error, checked
            // as the native runner's is.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let report = stderr
                .lines()
                .last()
                .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .and_then(|value| {
                    serde_json::from_value::<ErrorReport>(value["error"].clone()).ok()
                });
            match report {
                Some(report) => {
                    n_errors += 1;
                    let problems = compare(file, &Outcome::Error(report));
                    if !problems.is_empty() {
                        failures.push(format!("{}:\n  {}", file.name, problems.join("\n  ")));
                    }
                }
                None => failures.push(format!("{}: no error report in: {stderr}", file.name)),
            }
            continue;
        }
        let printed: serde_json::Value = match serde_json::from_slice(&output.stdout) {
            Ok(value) => value,
            Err(error) => {
                failures.push(format!("{}: not JSON: {error}", file.name));
                continue;
            }
        };
        n_invoices += 1;
        let problems = compare(file, &Outcome::Invoice(printed.clone()));
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", file.name, problems.join("\n  ")));
        }
        if let Some(expected) = &file.vector.expected {
            let (a, b) = (
                serde_json::to_string(expected).expect("json"),
                serde_json::to_string(&printed).expect("json"),
            );
            if a != b {
                failures.push(format!("{}: bytes differ", file.name));
            }
        }
    }
    assert!(n_invoices > 0 && n_errors > 0);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
