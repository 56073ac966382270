//! Golden vectors: one loader shared by the native, wasm and host test suites.
//!
//! A vector is a JSON file under `tests/vectors/<topic>/<case>.json`:
//!
//! ```json
//! {
//!   "description": "what this case pins down",
//!   "plan": { ... } | "plan_file": "examples/plans/saas-api.json",
//!   "usage": { ... } | "usage_file": "examples/usage/saas-api.json",
//!   "check": { "total": "61.20", "subtotal": "...", "lines": { "api": "45.00" } },
//!   "expected": { ...the whole invoice... }
//!     | "error": { "code": "invalid_plan", "path": "$.currency", "issues": [...] }
//! }
//! ```
//!
//! An error is pinned by what it is and where (the engine's `ErrorReport` without its message:
//! code, document, JSON path, each finding's code and path), so every host compares it the
//! same way whatever its wording; `check.error_contains` pins the words by hand.
//!
//! `check` is written by hand from the arithmetic in `description` and never regenerated;
//! `expected`/`error` is the engine's whole output, refreshed with `UPDATE_EXPECT=1` and reviewed
//! in the diff. Every runner (native, wasm, host) must produce `expected` byte for byte.

use std::path::{Path, PathBuf};

use ratecard_engine::error::ErrorReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A golden vector as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

/// Hand-computed figures a result must show.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal: Option<String>,
    /// Charge id (with `[k=v]` group suffix for grouped lines, `previous_plan:` prefix for the
    /// previous plan's lines) → line amount.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lines: std::collections::BTreeMap<String, String>,
    /// Charge id → billed quantity.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub quantities: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<String>,
    /// A substring the error message must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_contains: Option<String>,
}

/// A vector on disk.
#[derive(Clone, Debug)]
pub struct VectorFile {
    /// Path relative to `tests/vectors`, e.g. `tiers/graduated_boundary.json`.
    pub name: String,
    pub path: PathBuf,
    pub vector: Vector,
}

impl VectorFile {
    /// The plan and usage JSON texts, with `*_file` references resolved.
    pub fn inputs(&self) -> (String, String) {
        let load = |inline: &Option<Value>, file: &Option<String>| -> String {
            match (inline, file) {
                (Some(value), _) => value.to_string(),
                (None, Some(file)) => std::fs::read_to_string(repo_root().join(file))
                    .unwrap_or_else(|e| panic!("{}: reading {file}: {e}", self.name)),
                (None, None) => panic!("{}: no plan or usage", self.name),
            }
        };
        (
            load(&self.vector.plan, &self.vector.plan_file),
            load(&self.vector.usage, &self.vector.usage_file),
        )
    }
}

/// Every vector under `tests/vectors`, sorted by name.
pub fn load_vectors() -> Vec<VectorFile> {
    let root = repo_root().join("tests/vectors");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let vector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            VectorFile { name, path, vector }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// The outcome of running a vector: the invoice JSON, or the error (with its message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Invoice(Value),
    Error(ErrorReport),
}

/// Compares an outcome against a vector's hand checks and golden output. Returns the mismatches.
/// With `UPDATE_EXPECT=1`, `update` rewrites the golden output instead.
pub fn compare(file: &VectorFile, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let vector = &file.vector;
    if let Some(check) = &vector.check {
        check_figures(check, outcome, &mut problems);
    }
    match (outcome, &vector.expected, &vector.error) {
        (Outcome::Invoice(actual), Some(expected), _) if actual != expected => {
            problems.push(format!(
                "invoice differs from expected:\n  expected {}\n  actual   {}",
                expected, actual
            ))
        }
        (Outcome::Error(actual), _, Some(expected))
            if &actual.clone().without_message() != expected =>
        {
            problems.push(format!(
                "error differs:\n  expected {}\n  actual   {} ({})",
                json(expected),
                json(&actual.clone().without_message()),
                actual.message
            ))
        }
        (Outcome::Invoice(_), None, Some(expected)) => {
            problems.push(format!("expected error {}, got an invoice", json(expected)))
        }
        (Outcome::Error(actual), Some(_), None) => problems.push(format!(
            "expected an invoice, got error `{}`",
            actual.message
        )),
        (_, None, None) => {
            problems.push("no `expected` or `error` yet (run with UPDATE_EXPECT=1)".to_owned())
        }
        _ => {}
    }
    problems
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn check_figures(check: &Check, outcome: &Outcome, problems: &mut Vec<String>) {
    let invoice = match outcome {
        Outcome::Invoice(invoice) => invoice,
        Outcome::Error(ErrorReport { message, .. }) => {
            match &check.error_contains {
                Some(needle) if message.contains(needle.as_str()) => {}
                Some(needle) => {
                    problems.push(format!("error `{message}` does not contain `{needle}`"))
                }
                None => problems.push(format!("unexpected error: {message}")),
            }
            return;
        }
    };
    if let Some(needle) = &check.error_contains {
        problems.push(format!(
            "expected an error containing `{needle}`, got an invoice"
        ));
    }
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    for (field, want) in [("total", &check.total), ("subtotal", &check.subtotal)] {
        if let Some(want) = want {
            let got = text(&invoice[field]);
            if &got != want {
                problems.push(format!("{field}: expected {want}, got {got}"));
            }
        }
    }
    for (field, want) in [("start", &check.period_start), ("end", &check.period_end)] {
        if let Some(want) = want {
            let got = text(&invoice["period"][field]);
            if &got != want {
                problems.push(format!("period.{field}: expected {want}, got {got}"));
            }
        }
    }
    let lines = invoice["lines"].as_array().cloned().unwrap_or_default();
    let key = |line: &Value| {
        // A line of the previous plan of a change is `previous_plan:<charge>`.
        let mut key = match line["origin"].as_str() {
            Some("previous_plan") => format!("previous_plan:{}", text(&line["charge_id"])),
            _ => text(&line["charge_id"]),
        };
        if let Some(group) = line["group"].as_object().filter(|g| !g.is_empty()) {
            let parts: Vec<String> = group
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            key = format!("{key}[{}]", parts.join(","));
        }
        key
    };
    for (field, wants) in [("amount", &check.lines), ("quantity", &check.quantities)] {
        for (charge, want) in wants {
            match lines.iter().find(|l| &key(l) == charge) {
                Some(line) => {
                    let got = text(&line[field]);
                    if &got != want {
                        problems.push(format!("line {charge} {field}: expected {want}, got {got}"));
                    }
                }
                None => problems.push(format!(
                    "no line {charge} (lines: {:?})",
                    lines.iter().map(key).collect::<Vec<_>>()
                )),
            }
        }
    }
}

/// Whether golden outputs should be rewritten rather than compared.
pub fn updating() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1")
}

/// Rewrites a vector's golden output from an outcome (keeps `check` untouched).
pub fn update(file: &VectorFile, outcome: &Outcome) {
    let mut vector = file.vector.clone();
    match outcome {
        Outcome::Invoice(invoice) => {
            vector.expected = Some(invoice.clone());
            vector.error = None;
        }
        Outcome::Error(error) => {
            vector.error = Some(error.clone().without_message());
            vector.expected = None;
        }
    }
    let mut text = serde_json::to_string_pretty(&vector).expect("vectors serialize");
    text.push('\n');
    std::fs::write(&file.path, text).unwrap_or_else(|e| panic!("{}: {e}", file.name));
}
pub mod postgres;
