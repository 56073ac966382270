//! `ratecard plugin check` and `ratecard plugin run` on built plugins.

use std::process::Command;

use ratecard_test_plugins as guests;

fn ratecard(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ratecard"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn check_reports_the_contract_and_a_dry_run() {
    let (ok, text) = ratecard(&["plugin", "check", guests::P95_BANDWIDTH]);
    assert!(ok, "{text}");
    assert!(text.contains("plugin       p95-bandwidth@1.0.0"), "{text}");
    assert!(
        text.contains("reads        timestamps, properties mbps\n"),
        "{text}"
    );
    assert!(
        text.contains("dry run      metric on no events = 0"),
        "{text}"
    );
    let (ok, text) = ratecard(&[
        "plugin",
        "check",
        guests::HOSTILE,
        "--config",
        r#"{"attack": "none"}"#,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("reads        timestamps, ids, customers, codes, every property\n"),
        "{text}"
    );
}

#[test]
fn check_refuses_a_plugin_with_wasi_imports() {
    let (ok, text) = ratecard(&["plugin", "check", guests::WASI_IMPORT]);
    assert!(!ok);
    assert!(
        text.contains("imports `wasi:random/random@0.2.0`"),
        "{text}"
    );
}

#[test]
fn run_prints_the_result_and_its_costs() {
    let dir = std::env::temp_dir().join(format!("ratecard-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.ndjson");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"id":"e{i}","timestamp":{},"code":"bw","properties":{{"mbps":{}}}}}"#,
                1_790_000_000 + i * 300,
                i + 1
            )
        })
        .collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let (ok, text) = ratecard(&[
        "plugin",
        "run",
        guests::P95_BANDWIDTH,
        "--events",
        events.to_str().unwrap(),
        "--batch",
        "7",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{text}");
    // 40 slots of 1..=40 Mbps: the 95th percentile (rank 38) is 38.
    assert!(
        text.contains("p95-bandwidth@1.0.0: quantity 38 from 40 events"),
        "{text}"
    );
    for cost in ["fuel used", "peak memory", "wall time", "component size"] {
        assert!(text.contains(cost), "{text}");
    }
}

/// A plan whose metric is computed by the p95 plugin and whose price by the time-of-use plugin,
/// quoted by `ratecard quote --plugins manifest.json`, end to end.
#[test]
fn quote_uses_plugins_from_a_manifest() {
    use sha2::Digest;
    let dir = std::env::temp_dir().join(format!("ratecard-plugins-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sha = |path: &str| hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()));
    let manifest = serde_json::json!({"plugins": [
        {"reference": "p95-bandwidth@1.0.0", "path": guests::P95_BANDWIDTH, "sha256": sha(guests::P95_BANDWIDTH)},
        {"reference": "tou-electricity@1.0.0", "path": guests::TOU_ELECTRICITY, "sha256": sha(guests::TOU_ELECTRICITY)},
    ]});
    let plan = serde_json::json!({
        "id": "plugins-e2e", "currency": "USD",
        "metrics": [
            {"code": "bandwidth", "event": "bw", "aggregation": {"type": "custom", "plugin": "p95-bandwidth@1.0.0", "config": {"property": "mbps"}}},
            {"code": "energy", "event": "kwh", "aggregation": {"type": "sum", "property": "kwh"}, "group_by": ["tou"]}
        ],
        "charges": [
            {"id": "bw", "metric": "bandwidth", "model": {"type": "per_unit", "unit_price": "2.00"}},
            {"id": "energy", "metric": "energy", "model": {"type": "custom", "plugin": "tou-electricity@1.0.0",
             "config": {"rates": {"peak": "0.30", "off-peak": "0.10"}}}}
        ]
    });
    // 20 five-minute slots at 1..=20 Mbps: the 95th percentile drops the top slot → 19 Mbps.
    let mut events: Vec<serde_json::Value> = (1..=20)
        .map(|i| serde_json::json!({"id": format!("b{i}"), "timestamp": format!("2026-11-02T{:02}:{:02}:00Z", (i * 5) / 60, (i * 5) % 60), "code": "bw", "properties": {"mbps": i}}))
        .collect();
    events.push(serde_json::json!({"id": "k1", "timestamp": "2026-11-03T18:00:00Z", "code": "kwh", "properties": {"kwh": "10", "tou": "peak"}}));
    events.push(serde_json::json!({"id": "k2", "timestamp": "2026-11-04T03:00:00Z", "code": "kwh", "properties": {"kwh": "20", "tou": "off-peak"}}));
    let usage = serde_json::json!({"period": {"containing": "2026-11-15"}, "events": events});
    let write = |name: &str, value: &serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (manifest, plan, usage) = (
        write("plugins.json", &manifest),
        write("plan.json", &plan),
        write("usage.json", &usage),
    );
    let (ok, text) = ratecard(&[
        "quote",
        "--plugins",
        &manifest,
        "--plan",
        &plan,
        "--usage",
        &usage,
        "--format",
        "json",
    ]);
    assert!(ok, "{text}");
    let invoice: serde_json::Value =
        serde_json::from_str(&text[..text.rfind('}').unwrap() + 1]).unwrap();
    // 19 × 2.00 + (10 × 0.30 + 20 × 0.10) = 38.00 + 5.00
    assert_eq!(invoice["lines"][0]["quantity"], "19", "{invoice:#}");
    assert_eq!(invoice["lines"][0]["amount"], "38.00");
    assert_eq!(invoice["total"], "43.00", "{invoice:#}");
    // Without the manifest the plugin is refused with a typed error naming it.
    let (ok, text) = ratecard(&["quote", "--plan", &plan, "--usage", &usage]);
    assert!(!ok);
    assert!(
        text.contains("plugin `p95-bandwidth@1.0.0` is not available"),
        "{text}"
    );
}
