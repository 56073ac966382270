//! The JSON Schemas of the public formats, generated from the engine's types, are committed in
//! `docs/schema/`. This test fails when they drift; `cargo xtask schemas` (or
//! `UPDATE_EXPECT=1`) regenerates them.

use ratecard_engine::invoice::Invoice;
use ratecard_engine::plan::Plan;
use ratecard_engine::usage::Usage;
use ratecard_tests::{repo_root, updating};

fn check(name: &str, schema: schemars::Schema) {
    let path = repo_root()
        .join("docs/schema")
        .join(format!("{name}.schema.json"));
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    text.push('\n');
    if updating() {
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .expect("creating docs/schema");
        std::fs::write(&path, &text).expect("writing the schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date: run `cargo xtask schemas`",
        path.display()
    );
}

#[test]
fn schemas_are_current() {
    check("plan", schemars::schema_for!(Plan));
    check("usage", schemars::schema_for!(Usage));
    check("invoice", schemars::schema_for!(Invoice));
}

/// Every example plan is valid against the engine (no errors, lint allowed) and every example
/// usage document quotes without error.
#[test]
fn examples_are_valid_and_quote() {
    let plans =
        std::fs::read_dir(repo_root().join("examples/plans")).expect("examples/plans exists");
    let mut n_plans = 0;
    for entry in plans.flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let plan: Plan = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = ratecard_engine::validate::validate_plan(&plan);
        assert!(report.is_ok(), "{name}: {:?}", report.errors);
        let usage_path = repo_root().join("examples/usage").join(&name);
        let usage: Usage = serde_json::from_str(
            &std::fs::read_to_string(&usage_path)
                .unwrap_or_else(|e| panic!("{name} has no usage example: {e}")),
        )
        .unwrap_or_else(|e| panic!("usage {name}: {e}"));
        let invoice =
            ratecard_engine::rate::quote(&plan, &usage, &ratecard_engine::plugin::NoPlugins)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!invoice.lines.is_empty(), "{name}: no lines");
        n_plans += 1;
    }
    assert!(n_plans >= 5, "only {n_plans} example plans");
}
