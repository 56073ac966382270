//! The `ratecard` binary as a user runs it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn ratecard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ratecard"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("ratecard runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratecard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("temp file");
    file.write_all(contents.as_bytes()).expect("write");
    path
}

#[test]
fn demo_runs_on_the_embedded_default() {
    let output = ratecard(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("plan api-pro-2026"), "{text}");
    assert!(text.contains("Total USD"), "{text}");
    assert!(text.contains("185.48"), "{text}");
    // Breakdown rows are shown whole when they fit the row: the tier's unit price is readable.
    assert!(
        text.contains("tier 2 (1,000,000, 10,000,000]: 1,250,000 × 0.000015"),
        "{text}"
    );
}

#[test]
fn quote_json_is_the_invoice_contract() {
    let output = ratecard(&[
        "quote",
        "--plan",
        "examples/plans/fleet-mileage.json",
        "--usage",
        "examples/usage/fleet-mileage.json",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let invoice: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(invoice["currency"], "GBP");
    assert_eq!(invoice["total"], "313.60");
    assert_eq!(invoice["period"]["start"], "2026-11-10T00:00:00+00:00");
    assert!(
        invoice["input_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
}

#[test]
fn validate_lists_every_error_with_its_path_and_fails() {
    let plan = r#"{"id":"bad","currency":"XYZ","metrics":[],"charges":[
        {"id":"a","metric":"nope","model":{"type":"graduated","tiers":[{"up_to":"10","unit_price":"-1"},{"up_to":"5","unit_price":"1"},{"up_to":null,"unit_price":"1"}]}}]}"#;
    let path = temp_file("bad-plan.json", plan);
    let output = ratecard(&["validate", path.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    let text = stdout(&output);
    for needle in [
        "$.currency",
        "$.charges[0].metric: no metric `nope`",
        "$.charges[0].model.tiers[0].unit_price: the price -1 is negative",
        "$.charges[0].model.tiers[1].up_to: `up_to` 5 is not above the previous bound 10",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn malformed_json_names_the_path() {
    let path = temp_file(
        "typo-plan.json",
        r#"{"id":"p","currency":"USD","charges":[{"id":"c","model":{"type":"per_unit","unit_price":"abc"}}]}"#,
    );
    let output = ratecard(&["validate", path.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    let text = stdout(&output);
    assert!(
        text.contains("error[invalid_json]: $.charges[0].model.unit_price: `abc` is not a decimal"),
        "{text}"
    );
    let output = ratecard(&[
        "quote",
        "--plan",
        path.to_str().expect("utf-8"),
        "--usage",
        "examples/usage/saas-api.json",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("$.charges[0].model.unit_price: `abc` is not a decimal"),
        "{text}"
    );
}

/// `validate` lists every error of a document that does not read as a plan, in one run.
#[test]
fn validate_lists_every_parse_error_in_one_run() {
    let path = temp_file(
        "many-typos.json",
        r#"{"id": "p", "currency": "USD", "trial_days": -3,
            "charges": [
                {"id": "a", "model": {"type": "per_unit", "unit_price": "abc"}},
                {"id": "b", "model": {"type": "per_unit", "unit_price": "1"}},
                {"id": "c", "model": {"type": "flat", "amount": "1.2.3"}},
                {"model": {"type": "flat", "amount": "1"}}
            ],
            "minimum_commitment": "ten"}"#,
    );
    let output = ratecard(&[
        "validate",
        path.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        [
            "$.trial_days",
            "$.charges[0].model.unit_price",
            "$.charges[2].model.amount",
            "$.charges[3]",
            "$.minimum_commitment"
        ]
    );
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["code"] == "invalid_json")
    );
}

#[test]
fn rate_reports_bad_lines_and_keeps_the_good_ones() {
    let events = [
        r#"{"id":"1","customer":"c1","timestamp":"2026-11-03T10:00:00Z","code":"api.request"}"#,
        r#"{"id":"2","customer":"c1","timestamp":"2026-11-03T10:00:01Z","code":"api.request"}"#,
        r#"this is not json"#,
        r#"{"id":"3","customer":"c2","timestamp":"2026-11-04T10:00:00Z","code":"api.request"}"#,
        r#"{"id":"4","customer":"c2","timestamp":"2026-11-04T10:00:00Z","code":"seat.count","properties":{"seats":"many"}}"#,
        r#"{"id":"5","customer":"c2","timestamp":"2026-12-04T10:00:00Z","code":"api.request"}"#,
    ]
    .join("\n");
    let path = temp_file("events.ndjson", &events);
    let output = ratecard(&[
        "rate",
        "--plan",
        "examples/plans/saas-api.json",
        "--events",
        path.to_str().expect("utf-8"),
        "--period",
        "2026-11",
    ]);
    // Rated, with bad lines reported: exit 2.
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("line 3: not a valid event"), "{err}");
    assert!(
        err.contains("line 5: event `4`: metric `seats`: property `seats`"),
        "{err}"
    );
    assert!(
        err.contains("6 lines, 3 events counted, 1 skipped, 2 bad; 2 invoices"),
        "{err}"
    );
    let invoices: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[0]["customer_id"], "c1");
    assert_eq!(invoices[1]["customer_id"], "c2");

    let strict = ratecard(&[
        "rate",
        "--plan",
        "examples/plans/saas-api.json",
        "--events",
        path.to_str().expect("utf-8"),
        "--period",
        "2026-11",
        "--strict",
    ]);
    assert!(!strict.status.success());
    assert!(
        stderr(&strict).contains("stopped at the first bad line"),
        "{}",
        stderr(&strict)
    );
}

#[test]
fn schema_prints_json_schema() {
    let output = ratecard(&["schema", "plan"]);
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(schema["title"], "Plan");
}

#[test]
fn estimates_answer_pricing_page_questions() {
    let at = ratecard(&[
        "estimate",
        "at",
        "--plan",
        "examples/plans/saas-api.json",
        "--usage",
        "api_calls=100000",
        "--usage",
        "seats=1",
    ]);
    assert!(at.status.success(), "{}", stderr(&at));
    // 49 + 0 (allowance) + 12 = 61; 10% off = 54.90; VAT 20% = 10.98 → 65.88
    assert!(stdout(&at).contains("65.88"), "{}", stdout(&at));
    let budget = ratecard(&[
        "estimate",
        "budget",
        "--plan",
        "examples/plans/saas-api.json",
        "--metric",
        "api_calls",
        "--budget",
        "100",
    ]);
    assert!(budget.status.success(), "{}", stderr(&budget));
    // (49 + 20 + 0.000015 × (q − 1,100,000)) × 0.9 × 1.2 ≤ 100 → q ≤ 2,672,839.5 (cents round)
    let quantity: f64 = stdout(&budget).trim().parse().expect("a number");
    assert!((2_672_000.0..2_673_000.0).contains(&quantity), "{quantity}");
}

#[test]
fn import_lago_prints_a_plan_and_what_it_could_not_carry_over() {
    let export = r#"{"plan": {"code": "lago-api", "name": "API", "interval": "monthly",
        "amount_cents": 0, "amount_currency": "USD",
        "charges": [
          {"billable_metric_code": "calls", "charge_model": "graduated", "pay_in_advance": true,
           "properties": {"graduated_ranges": [
             {"from_value": 0, "to_value": 100, "flat_amount": "0", "per_unit_amount": "1"},
             {"from_value": 101, "to_value": 200, "flat_amount": "0", "per_unit_amount": "0.5"},
             {"from_value": 201, "to_value": null, "flat_amount": "0", "per_unit_amount": "0.1"}]}}]},
      "billable_metrics": [{"code": "calls", "aggregation_type": "count_agg"}]}"#;
    let path = temp_file("lago.json", export);
    let output = ratecard(&["import", "lago", path.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not carried over: $.plan.charges[0].pay_in_advance:"),
        "{}",
        stderr(&output)
    );
    let plan_path = temp_file("imported-lago.json", &stdout(&output));
    let usage_path = temp_file(
        "imported-lago-usage.json",
        r#"{"period":{"containing":"2026-11-02"},"quantities":{"calls":"250"}}"#,
    );
    let quote = ratecard(&[
        "quote",
        "--plan",
        plan_path.to_str().expect("utf-8"),
        "--usage",
        usage_path.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(quote.status.success(), "{}", stderr(&quote));
    let invoice: serde_json::Value = serde_json::from_str(&stdout(&quote)).expect("json");
    // Lago's documented example: 250 calls → 100 × 1 + 100 × 0.5 + 50 × 0.1 = 155.
    assert_eq!(invoice["total"], "155.00");
    let no_id = ratecard(&["import", "stripe", path.to_str().expect("utf-8")]);
    assert!(!no_id.status.success());
    assert!(
        stderr(&no_id).contains("`--id` is required"),
        "{}",
        stderr(&no_id)
    );
}

#[test]
fn import_openmeter_prints_a_plan_and_what_it_could_not_carry_over() {
    // OpenMeter's plan shape (api/openapi.yaml `Plan`, `RateCardUsageBased`): a unit price with a
    // maximum spend and a percentage discount, and a one-time fee Ratecard does not carry.
    let export = r#"{"plan": {"key": "om-api", "name": "API", "currency": "USD", "billingCadence": "P1M",
        "phases": [{"key": "default", "name": "Default", "duration": null, "rateCards": [
          {"type": "flat_fee", "key": "setup", "name": "Setup", "billingCadence": null,
           "price": {"type": "flat", "amount": "500"}},
          {"type": "usage_based", "key": "api", "name": "API calls", "featureKey": "api_calls",
           "billingCadence": "P1M", "price": {"type": "unit", "amount": "1", "maximumAmount": "150"},
           "discounts": {"percentage": {"percentage": 10}}}]}]},
      "features": [{"key": "api_calls", "name": "API calls", "meterSlug": "api_requests"}],
      "meters": [{"slug": "api_requests", "aggregation": "COUNT", "eventType": "request"}]}"#;
    let path = temp_file("openmeter.json", export);
    let output = ratecard(&["import", "openmeter", path.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "not carried over: $.plan.phases[0].rateCards[0].billingCadence: a one-time fee"
        ),
        "{}",
        stderr(&output)
    );
    let plan_path = temp_file("imported-openmeter.json", &stdout(&output));
    let usage_path = temp_file(
        "imported-openmeter-usage.json",
        r#"{"period":{"containing":"2026-11-02"},"quantities":{"api_calls":"200"}}"#,
    );
    let quote = ratecard(&[
        "quote",
        "--plan",
        plan_path.to_str().expect("utf-8"),
        "--usage",
        usage_path.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(quote.status.success(), "{}", stderr(&quote));
    let invoice: serde_json::Value = serde_json::from_str(&stdout(&quote)).expect("json");
    // OpenMeter: 200 × 1, 10 % off = 180, then the maximum spend caps it at 150.
    assert_eq!(invoice["total"], "150.00");
    assert_eq!(invoice["discounts"][1]["id"], "api.maximum");
}

#[test]
fn import_stripe_prints_a_plan_that_quotes() {
    let prices = r#"{"object":"list","data":[{"id":"price_api","currency":"usd","nickname":"API","billing_scheme":"tiered","tiers_mode":"volume",
        "recurring":{"interval":"month","usage_type":"metered","meter":"calls"},
        "tiers":[{"up_to":100,"unit_amount_decimal":"2"},{"up_to":"inf","unit_amount_decimal":"1"}]}]}"#;
    let path = temp_file("stripe.json", prices);
    let output = ratecard(&[
        "import",
        "stripe",
        path.to_str().expect("utf-8"),
        "--id",
        "from-stripe",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan_path = temp_file("imported.json", &stdout(&output));
    let usage_path = temp_file(
        "imported-usage.json",
        r#"{"period":{"containing":"2026-11-02"},"quantities":{"calls":"150"}}"#,
    );
    let quote = ratecard(&[
        "quote",
        "--plan",
        plan_path.to_str().expect("utf-8"),
        "--usage",
        usage_path.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(quote.status.success(), "{}", stderr(&quote));
    let invoice: serde_json::Value = serde_json::from_str(&stdout(&quote)).expect("json");
    // Volume: all 150 units at 1¢.
    assert_eq!(invoice["total"], "1.50");
}

#[test]
fn rate_uses_each_customers_setup_and_invoices_customers_without_events() {
    let events =
        r#"{"id":"1","customer":"tokyo","timestamp":"2026-10-31T16:00:00Z","code":"api.request"}"#;
    let events_path = temp_file("setup-events.ndjson", events);
    // tokyo: 2026-10-31T16:00Z is Nov 1, 01:00 in Tokyo (UTC+9), so the event is in November.
    // late: subscribed on Nov 16 (of 30 days): the platform fee is prorated to 15/30 = 24.50.
    let customers = r#"{
        "tokyo": {"timezone": "Asia/Tokyo"},
        "late": {"subscription": {"start": "2026-11-16", "billing_anchor": "2026-11-01"}, "credits": [{"id": "c", "amount": "4.50"}]}
    }"#;
    let customers_path = temp_file("customers.json", customers);
    let output = ratecard(&[
        "rate",
        "--plan",
        "examples/plans/saas-api.json",
        "--events",
        events_path.to_str().expect("utf-8"),
        "--period",
        "2026-11",
        "--customers",
        customers_path.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let invoices: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(invoices.len(), 2);
    let late = &invoices[0];
    assert_eq!(late["customer_id"], "late");
    assert_eq!(late["lines"][0]["amount"], "24.50");
    assert_eq!(late["credits"][0]["applied"], "4.50");
    let tokyo = &invoices[1];
    assert_eq!(tokyo["period"]["start"], "2026-11-01T00:00:00+09:00");
    assert_eq!(tokyo["lines"][1]["metric"], "api_calls");
    assert_eq!(
        tokyo["lines"][1]["quantity"], "0",
        "1 call is inside the 100000 included"
    );
    assert!(
        tokyo["lines"][1]["breakdown"][0]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 units included"))
    );
}

/// Every command ends quietly, with success, when the reader of its output goes away
/// (`ratecard … | head -2`), as ripgrep does: no panic, no "Broken pipe" message.
#[test]
fn every_command_ends_quietly_when_stdout_closes() {
    let events: String = (0..3_000)
        .map(|i| {
            format!(
                "{{\"id\":\"e{i}\",\"customer\":\"c{}\",\"timestamp\":\"2026-11-02T10:00:00Z\",\"code\":\"api.request\",\"properties\":{{}}}}\n",
                i % 1_500
            )
        })
        .collect();
    let events = temp_file("pipe-events.ndjson", &events);
    let stripe = temp_file(
        "pipe-stripe.json",
        r#"[{"id":"price_api","currency":"usd","billing_scheme":"per_unit","unit_amount_decimal":"2",
            "recurring":{"interval":"month","usage_type":"metered","meter":"calls"}}]"#,
    );
    let new_plugin = std::env::temp_dir().join(format!("ratecard-pipe-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&new_plugin);
    let (saas, cloud) = (
        "examples/plans/saas-api.json",
        "examples/plans/cloud-storage.json",
    );
    let commands: Vec<Vec<&str>> = vec![
        vec![],
        vec!["demo"],
        vec![
            "quote",
            "--plan",
            saas,
            "--usage",
            "examples/usage/saas-api.json",
        ],
        vec![
            "quote",
            "--plan",
            saas,
            "--usage",
            "examples/usage/saas-api.json",
            "--format",
            "json",
        ],
        vec!["validate", saas],
        vec!["validate", saas, "--format", "json"],
        vec![
            "rate",
            "--plan",
            saas,
            "--events",
            events.to_str().unwrap(),
            "--period",
            "2026-11",
        ],
        vec![
            "rate",
            "--plan",
            saas,
            "--events",
            events.to_str().unwrap(),
            "--period",
            "2026-11",
            "--format",
            "table",
        ],
        vec!["schema", "plan"],
        vec!["schema", "usage"],
        vec!["schema", "invoice"],
        vec![
            "estimate",
            "at",
            "--plan",
            saas,
            "--usage",
            "api_calls=120000",
        ],
        vec![
            "estimate",
            "curve",
            "--plan",
            saas,
            "--metric",
            "api_calls",
            "--to",
            "5000000",
            "--samples",
            "20000",
        ],
        vec![
            "estimate",
            "break-even",
            "--plan",
            saas,
            "--other",
            saas,
            "--metric",
            "api_calls",
            "--to",
            "1000",
        ],
        vec!["estimate", "cheapest", "--plan", saas, "--plan", cloud],
        vec![
            "estimate",
            "budget",
            "--plan",
            saas,
            "--metric",
            "api_calls",
            "--budget",
            "100",
        ],
        vec![
            "import",
            "stripe",
            stripe.to_str().unwrap(),
            "--id",
            "piped",
        ],
        vec!["plugin", "check", ratecard_test_plugins::P95_BANDWIDTH],
        vec![
            "plugin",
            "new",
            "piped-metric",
            "--dir",
            new_plugin.to_str().unwrap(),
        ],
        vec!["--help"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ratecard"))
            .args(&args)
            .current_dir(repo())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ratecard runs");
        // Close the reading end at once: every write the command makes fails with EPIPE.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("ratecard ends");
        let err = stderr(&output);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            output.status.success(),
            "{args:?}: {:?} {err}",
            output.status
        );
    }
    let _ = std::fs::remove_dir_all(&new_plugin);
}

/// Every command that reads a file, over malformed files: a clear error naming a JSON path or a
/// line, a non-zero exit, never a panic.
#[test]
fn malformed_files_give_clear_errors_never_a_panic() {
    let good_plan = std::fs::read_to_string(repo().join("examples/plans/saas-api.json")).unwrap();
    let mut not_utf8 = good_plan.clone().into_bytes();
    not_utf8.splice(40..40, [0xff, 0xfe]);
    let documents: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good_plan.as_bytes()[..good_plan.len() / 2].to_vec()),
        ("wrong types", br#"{"id": 5, "currency": [], "charges": {}}"#.to_vec()),
        ("not an object", b"[1, 2, 3]".to_vec()),
        ("null", b"null".to_vec()),
        ("huge number", br#"{"id": "p", "currency": "USD", "trial_days": 1e400}"#.to_vec()),
        ("long integer", br#"{"id": "p", "currency": "USD", "trial_days": 123456789012345678901234567890}"#.to_vec()),
        ("huge decimal", br#"{"id": "p", "currency": "USD", "charges": [{"id": "f", "model": {"type": "flat", "amount": "1e40"}}]}"#.to_vec()),
        ("deep nesting", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
        ("not UTF-8", not_utf8),
    ];
    let dir = std::env::temp_dir().join(format!("ratecard-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saas = repo().join("examples/plans/saas-api.json");
    let saas_usage = repo().join("examples/usage/saas-api.json");
    let events = temp_file("malformed-good-events.ndjson", "");
    for (name, bytes) in &documents {
        let file = dir.join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&file, bytes).unwrap();
        let f = file.to_str().unwrap();
        let (saas, saas_usage, events) = (
            saas.to_str().unwrap(),
            saas_usage.to_str().unwrap(),
            events.to_str().unwrap(),
        );
        let commands: Vec<Vec<&str>> = vec![
            vec!["validate", f],
            vec!["quote", "--plan", f, "--usage", saas_usage],
            vec!["quote", "--plan", saas, "--usage", f],
            vec![
                "rate", "--plan", f, "--events", events, "--period", "2026-11",
            ],
            vec![
                "rate",
                "--plan",
                saas,
                "--events",
                events,
                "--period",
                "2026-11",
                "--customers",
                f,
            ],
            vec!["estimate", "at", "--plan", f],
            vec![
                "estimate",
                "curve",
                "--plan",
                f,
                "--metric",
                "api_calls",
                "--to",
                "10",
            ],
            vec![
                "estimate",
                "break-even",
                "--plan",
                saas,
                "--other",
                f,
                "--metric",
                "api_calls",
                "--to",
                "10",
            ],
            vec!["estimate", "cheapest", "--plan", saas, "--plan", f],
            vec![
                "estimate",
                "budget",
                "--plan",
                f,
                "--metric",
                "api_calls",
                "--budget",
                "10",
            ],
            vec!["import", "stripe", f, "--id", "x"],
            vec![
                "--plugins",
                f,
                "quote",
                "--plan",
                saas,
                "--usage",
                saas_usage,
            ],
            vec!["plugin", "check", f],
        ];
        for args in commands {
            let output = ratecard(&args);
            let (out, err) = (stdout(&output), stderr(&output));
            let said = format!("{out}{err}");
            assert!(!said.contains("panicked"), "{name}: {args:?}: {said}");
            assert!(
                !output.status.success(),
                "{name}: {args:?} succeeded: {said}"
            );
            // Where: a JSON path, a line, or the file (for what is not JSON at all).
            assert!(
                said.contains("$") || said.contains("line ") || said.contains(f),
                "{name}: {args:?}: says not where: {said}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Malformed event lines are named by line, the good ones are rated, and the run says so with
/// exit code 2.
#[test]
fn malformed_event_lines_are_named_by_line() {
    let good = r#"{"id":"e1","customer":"c1","timestamp":"2026-11-02T10:00:00Z","code":"api.request","properties":{}}"#;
    let mut bytes = Vec::new();
    for line in [
        good.as_bytes(),
        &good.as_bytes()[..good.len() / 2],
        br#"{"id": 5, "customer": [], "timestamp": {}, "code": null}"#,
        br#"{"id":"e4","customer":"c1","timestamp":"2026-11-02T10:00:00Z","code":"api.request","properties":{"value": 1e400}}"#,
        b"\xff\xfe not text",
        b"[]",
    ] {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    let path =
        std::env::temp_dir().join(format!("ratecard-bad-lines-{}.ndjson", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let output = ratecard(&[
        "rate",
        "--plan",
        "examples/plans/saas-api.json",
        "--events",
        path.to_str().unwrap(),
        "--period",
        "2026-11",
    ]);
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(output.status.code(), Some(2), "{err}");
    for line in 2..=6 {
        assert!(
            err.contains(&format!("line {line}: ")),
            "line {line} not named: {err}"
        );
    }
    assert!(!err.contains("line 1: "), "{err}");
    let invoices: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(invoices.len(), 1);
    std::fs::remove_file(&path).unwrap();
}
