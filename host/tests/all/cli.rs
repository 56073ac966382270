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
        text.contains("dry run      metric on no events = 0"),
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
