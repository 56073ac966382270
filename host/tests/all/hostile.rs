//! The hostile-plugin suite: each attack ends in its typed error, the host stays up, and the next
//! call on a good plugin succeeds. (Elapsed times are printed, not asserted: wall time is bounded
//! by the `wall-time` limit itself, whose test is below.)

use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::plugin::{MetricAccumulator, PluginError};
use ratecard_host::plugins::{Limit, Limits, LoadError, PluginRuntime, RuntimeConfig};
use ratecard_test_plugins as guests;
use serde_json::json;

use crate::{event, plugin, runtime};

/// Runs one `update` of the hostile plugin with `attack`, returning the error and elapsed time.
fn attack(runtime: &PluginRuntime, attack: &str) -> PluginError {
    let loaded;
    let hostile = if std::ptr::eq(runtime, crate::runtime()) {
        plugin(guests::HOSTILE)
    } else {
        loaded = runtime.load_file(guests::HOSTILE.as_ref()).unwrap();
        &loaded
    };
    let mut metric = hostile.metric(&json!({ "attack": attack })).unwrap();
    let started = Instant::now();
    let error = metric.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    eprintln!("attack `{attack}`: {error} after {:?}", started.elapsed());
    // The store that trapped is never run again: later calls repeat the error.
    assert_eq!(metric.finish().unwrap_err(), error);
    error
}

fn limit(limit: Limit) -> PluginError {
    PluginError::LimitExceeded {
        plugin: "ratecard-guest-hostile@0.0.1".into(),
        limit: limit.name().into(),
    }
}

/// A good plugin still works after an attack.
fn good_call_succeeds(runtime: &PluginRuntime) {
    let loaded;
    let hostile = if std::ptr::eq(runtime, crate::runtime()) {
        plugin(guests::HOSTILE)
    } else {
        loaded = runtime.load_file(guests::HOSTILE.as_ref()).unwrap();
        &loaded
    };
    let mut metric = hostile.metric(&json!({ "attack": "none" })).unwrap();
    metric
        .update(&[event(1, 0, "x", &[], &[]), event(2, 0, "x", &[], &[])])
        .unwrap();
    assert_eq!(metric.finish().unwrap(), Decimal::from(2));
    let p95 = plugin(guests::P95_BANDWIDTH);
    let mut metric = p95.metric(&json!({})).unwrap();
    metric
        .update(&[event(1, 0, "bw", &[("mbps", Decimal::from(5))], &[])])
        .unwrap();
    assert_eq!(metric.finish().unwrap(), Decimal::from(5));
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    assert_eq!(attack(runtime(), "loop"), limit(Limit::Fuel));
    good_call_succeeds(runtime());
}

#[test]
fn infinite_loop_with_unlimited_fuel_hits_the_wall_time_limit() {
    let runtime = PluginRuntime::new(RuntimeConfig {
        limits: Limits {
            fuel_per_call: u64::MAX / 4,
            wall_time: Duration::from_millis(50),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(attack(&runtime, "loop"), limit(Limit::WallTime));
    good_call_succeeds(&runtime);
}

#[test]
fn memory_grow_bomb_hits_the_memory_limit() {
    assert_eq!(attack(runtime(), "memory"), limit(Limit::Memory));
    good_call_succeeds(runtime());
}

#[test]
fn deep_recursion_hits_the_stack_limit() {
    assert_eq!(attack(runtime(), "recursion"), limit(Limit::Stack));
    good_call_succeeds(runtime());
}

/// `table.grow` in a loop at run time, on a table with no declared maximum (the load-time check
/// cannot see it coming): the resource limiter refuses past `table_elements`. Ending in
/// `table-elements` and not `wall-time` means it ended within the wall-time limit (100 ms).
#[test]
fn table_grow_bomb_at_run_time_hits_the_table_limit() {
    let bomb = plugin(guests::TABLE_GROW);
    let mut metric = bomb.metric(&json!({ "attack": "table" })).unwrap();
    let started = Instant::now();
    let error = metric.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    eprintln!("attack `table`: {error} after {:?}", started.elapsed());
    assert_eq!(error, limit(Limit::TableElements));
    assert_eq!(metric.finish().unwrap_err(), error);
    // The same component without the attack is a good plugin.
    let mut good = bomb.metric(&json!({ "attack": "none" })).unwrap();
    good.update(&[event(1, 0, "x", &[], &[])]).unwrap();
    assert_eq!(good.finish().unwrap(), Decimal::ONE);
    good_call_succeeds(runtime());
}

#[test]
fn panic_is_a_failed_call_not_a_crash() {
    let error = attack(runtime(), "panic");
    let PluginError::Failed { plugin, message } = &error else {
        panic!("unexpected {error:?}")
    };
    assert_eq!(plugin, "ratecard-guest-hostile@0.0.1");
    assert!(message.starts_with("trapped:"), "{message}");
    good_call_succeeds(runtime());
}

#[test]
fn huge_output_hits_the_output_limit() {
    // Enough fuel to serialize 4 MiB: the output limit, not fuel, is under test.
    let runtime = PluginRuntime::new(RuntimeConfig {
        limits: Limits {
            fuel_per_call: 2_000_000_000,
            wall_time: Duration::from_secs(10),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let hostile = runtime.load_file(guests::HOSTILE.as_ref()).unwrap();
    let mut metric = hostile.metric(&json!({ "attack": "output" })).unwrap();
    // The state is saved after every batch, so the batch that makes it too big is the one
    // that fails (on every run, live or not), and the accumulator is ended.
    let error = metric.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    assert_eq!(error, limit(Limit::OutputSize));
    assert_eq!(metric.save().unwrap_err(), limit(Limit::OutputSize));
    good_call_succeeds(&runtime);
}

#[test]
fn plugin_errors_are_typed_values() {
    let hostile = plugin(guests::HOSTILE);
    let mut metric = hostile.metric(&json!({ "attack": "error" })).unwrap();
    let error = metric.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    assert_eq!(
        error,
        PluginError::Failed {
            plugin: "ratecard-guest-hostile@0.0.1".into(),
            message: "invalid input: refused on purpose".into()
        }
    );
    // Not a trap: the accumulator is still usable.
    assert_eq!(metric.finish().unwrap(), Decimal::ONE);
    let error = hostile.metric(&json!({ "nope": 1 })).unwrap_err();
    assert!(
        matches!(error, PluginError::InvalidConfig { .. }),
        "{error:?}"
    );
}

#[test]
fn log_spam_is_capped() {
    let hostile = plugin(guests::HOSTILE);
    let mut metric = hostile.metric(&json!({ "attack": "log" })).unwrap();
    metric.update(&[event(1, 0, "x", &[], &[])]).unwrap();
    assert_eq!(metric.log().len(), Limits::default().log_messages);
    assert_eq!(metric.log()[0].message, "log line 0");
    assert_eq!(metric.log_dropped(), 1_000 - 100);
    good_call_succeeds(runtime());
}

fn load_error(path: &str) -> LoadError {
    let error = runtime().load_file(path.as_ref()).unwrap_err();
    eprintln!("{path}: {error}");
    error
}

#[test]
fn table_growth_is_refused_at_load() {
    let error = load_error(guests::BIG_TABLE);
    assert!(
        matches!(
            error,
            LoadError::LimitExceeded {
                limit: Limit::TableElements,
                ..
            }
        ),
        "{error:?}"
    );
    good_call_succeeds(runtime());
}

#[test]
fn huge_component_is_refused_at_load() {
    let error = load_error(guests::HUGE_COMPONENT);
    assert!(
        matches!(
            error,
            LoadError::LimitExceeded {
                limit: Limit::ComponentSize,
                ..
            }
        ),
        "{error:?}"
    );
    good_call_succeeds(runtime());
}

#[test]
fn wasi_imports_are_refused_at_load() {
    let error = load_error(guests::WASI_IMPORT);
    let LoadError::ForbiddenImport(name) = &error else {
        panic!("unexpected {error:?}")
    };
    assert_eq!(name, "wasi:random/random@0.2.0");
    good_call_succeeds(runtime());
}

#[test]
fn wrong_exports_are_refused_at_load() {
    let error = load_error(guests::WRONG_EXPORTS);
    let LoadError::Contract(message) = &error else {
        panic!("unexpected {error:?}")
    };
    assert!(
        message.contains("missing export `ratecard:plugin/meta@0.1.0`"),
        "{message}"
    );
    good_call_succeeds(runtime());
}

#[test]
fn garbage_bytes_are_refused_at_load() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let error = runtime().load(&garbage).unwrap_err();
    assert!(matches!(error, LoadError::InvalidComponent(_)), "{error:?}");
    // A wasm header followed by garbage.
    let mut truncated = b"\0asm\x0d\0\x01\0".to_vec();
    truncated.extend_from_slice(&garbage[..100]);
    let error = runtime().load(&truncated).unwrap_err();
    assert!(matches!(error, LoadError::InvalidComponent(_)), "{error:?}");
    good_call_succeeds(runtime());
}

#[test]
fn core_modules_are_refused_with_the_reason() {
    let core = b"\0asm\x01\0\0\0";
    let error = runtime().load(core).unwrap_err();
    let LoadError::InvalidComponent(message) = &error else {
        panic!("unexpected {error:?}")
    };
    assert!(message.contains("core module"), "{message}");
}

#[test]
fn same_input_gives_identical_result_and_fuel() {
    let run = || {
        // Fresh store and instance per run; the compiled plugin is shared.
        let p95 = plugin(guests::P95_BANDWIDTH);
        let mut metric = p95.metric(&json!({})).unwrap();
        let events: Vec<_> = (0..500)
            .map(|i| {
                event(
                    i,
                    i as i64 * 60_000,
                    "bw",
                    &[("mbps", Decimal::new(i as i64 * 37 % 1000, 1))],
                    &[],
                )
            })
            .collect();
        metric.update(&events).unwrap();
        let state = metric.save().unwrap();
        let quantity = metric.finish().unwrap();
        (quantity, state, metric.stats().fuel_used)
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
    assert!(first.2 > 0);
}

// Output checks: what a plugin returns is checked against the contract, whatever it is. These
// use `ratecard-guest-raw`, which returns what its config says, bypassing the SDK.

const RAW: &str = "ratecard-guest-raw@0.0.1";

/// The `finish` of a raw metric returning `text` after one event.
fn raw_finish(text: &str) -> Result<Decimal, PluginError> {
    let raw = plugin(guests::RAW);
    let mut metric = raw.metric(&json!({ "finish": text })).unwrap();
    metric.update(&[event(1, 0, "x", &[], &[])]).unwrap();
    metric.finish()
}

#[test]
fn decimals_outside_the_plain_grammar_are_refused() {
    let refused = [
        "1e2",
        "1E-3",
        "+5",
        ".5",
        "5.",
        "-0",
        "-0.00",
        "1__0._5_",
        "1_000",
        "00.5",
        " 1",
        "1 ",
        "1,5",
        "0x10",
        "NaN",
        "inf",
        "",
        "-",
        "١",
        // 29 decimal places: not held exactly, never rounded.
        "0.00499999999999999999999999999",
        "0.0049999999999999999999999999999999999999",
        // Past the 96-bit mantissa.
        "79228162514264337593543950336",
    ];
    for text in refused {
        let error = raw_finish(text).unwrap_err();
        let PluginError::InvalidOutput { plugin, message } = &error else {
            panic!("`{text}`: unexpected {error:?}")
        };
        assert_eq!(plugin, RAW);
        assert!(message.starts_with("`finish`: `"), "`{text}`: {message}");
        assert!(
            message.contains(&format!("`{text}` is refused")),
            "{message}"
        );
    }
    // A long value is named, cut.
    let long = format!("1{}", "0".repeat(10_000));
    let PluginError::InvalidOutput { message, .. } = raw_finish(&long).unwrap_err() else {
        panic!("accepted")
    };
    assert!(
        message.len() < 300,
        "{} bytes: {message:.300}",
        message.len()
    );
    assert!(message.contains("(10001 bytes in all)"), "{message}");
    // The grammar's edges that are plain decimals.
    for (text, value) in [
        ("0", Decimal::ZERO),
        ("-3", Decimal::from(-3)),
        ("12.50", Decimal::new(1250, 2)),
        ("0.0000000000000000000000000001", Decimal::new(1, 28)),
        ("79228162514264337593543950335", Decimal::MAX),
    ] {
        let got = raw_finish(text).unwrap();
        assert_eq!(got, value, "{text}");
        assert_eq!(got.to_string(), text, "kept as written: {text}");
    }
}

fn raw_price(
    lines: serde_json::Value,
) -> Result<Vec<ratecard_engine::plugin::PricedLine>, PluginError> {
    use ratecard_engine::plugin::{GroupedQuantity, PriceRequest};
    let request = PriceRequest {
        plan_id: "plan".into(),
        charge_id: "energy".into(),
        currency: "EUR".into(),
        config: json!({ "lines": lines }),
        customer_id: "c1".into(),
        customer_attributes: serde_json::Map::new(),
        period_start: "2026-11-01T00:00:00Z".into(),
        period_end: "2026-12-01T00:00:00Z".into(),
        quantities: ["peak", "off-peak"]
            .iter()
            .zip([Decimal::new(105, 1), Decimal::from(3)])
            .map(|(window, quantity)| GroupedQuantity {
                group: [("tou".to_owned(), (*window).to_owned())].into(),
                quantity,
            })
            .collect(),
    };
    plugin(guests::RAW).price(&request)
}

fn invalid_price(lines: serde_json::Value) -> String {
    match raw_price(lines).unwrap_err() {
        PluginError::InvalidOutput { plugin, message } => {
            assert_eq!(plugin, RAW);
            message
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn price_results_must_keep_the_contract() {
    let peak = json!([["tou", "peak"]]);
    let line = |quantity: &str, amount: &str| json!({ "group": peak, "quantity": quantity, "amount": amount });
    // Valid: the asked group at its quantity, a charge-wide line, a breakdown that adds up.
    let lines = raw_price(json!([
        { "group": peak, "quantity": "10.5", "amount": "3.36",
          "breakdown": [
              { "quantity": "10", "unit_price": "0.32", "amount": "3.2" },
              { "quantity": "0.5", "unit_price": "0.32", "amount": "0.16" } ] },
        { "description": "standing charge", "quantity": "1", "amount": "9.5" },
    ]))
    .unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].amount, Decimal::new(336, 2));
    assert!(lines[1].group.is_empty());

    let message = invalid_price(json!([line("10.5", "-3.36")]));
    assert_eq!(
        message, "`price`: line 0 amount: `-3.36` is negative",
        "{message}"
    );
    let message = invalid_price(json!([line("-10.5", "3.36")]));
    assert!(
        message.contains("line 0 quantity: `-10.5` is negative"),
        "{message}"
    );
    let message = invalid_price(json!([line("11", "3.36")]));
    assert!(
        message.contains("line 0 quantity: 11, but the group was asked to be priced at 10.5"),
        "{message}"
    );
    let message = invalid_price(json!([
        { "group": [["tou", "shoulder"]], "quantity": "1", "amount": "1" }
    ]));
    assert!(
        message.contains("line 0 is for group {tou: shoulder}, which the request does not have"),
        "{message}"
    );
    let message = invalid_price(json!(vec![line("10.5", "3.36"); 1000]));
    assert!(
        message.contains("line 1 repeats group {tou: peak}"),
        "{message}"
    );
    let message = invalid_price(json!([
        { "group": peak, "quantity": "10.5", "amount": "3.36",
          "breakdown": [ { "amount": "3.2" }, { "amount": "0.15" } ] }
    ]));
    assert!(message.contains("line 0"), "{message}");
    assert!(
        message.contains("3.35") && message.contains("3.36"),
        "{message}"
    );
    let message = invalid_price(json!([
        { "group": peak, "quantity": "10.5", "amount": "3.36",
          "breakdown": [ { "amount": "79228162514264337593543950335" },
                         { "amount": "79228162514264337593543950335" } ] }
    ]));
    assert!(message.contains("overflows"), "{message}");
    let message = invalid_price(json!([line("10.5", "3.36e0")]));
    assert!(
        message.contains("line 0 amount: `3.36e0` is refused"),
        "{message}"
    );
    let message = invalid_price(json!([
        { "group": peak, "quantity": "10.5", "amount": "1",
          "breakdown": [ { "unit_price": "-1", "amount": "1" } ] }
    ]));
    assert!(
        message.contains("breakdown 0 unit price: `-1` is negative"),
        "{message}"
    );
}

#[test]
fn a_merge_that_is_not_the_aggregation_fails_plugin_check() {
    let check = |config: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ratecard"))
            .args(["plugin", "check", guests::RAW, "--config", config])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, text) = check("{}");
    assert!(ok, "{text}");
    assert!(text.contains("ratecard-guest-raw.wasm: ok\n"), "{text}");
    assert!(
        text.contains("merge        8 sample events: one accumulator = every split merged = 8"),
        "{text}"
    );
    let (ok, text) = check(r#"{"merge": "replace"}"#);
    assert!(!ok, "{text}");
    assert!(
        text.contains("merge is not the aggregation of the events together: 8 sample events in one accumulator give 8, split after event 1 and merged they give 7"),
        "{text}"
    );
    assert!(!text.contains(": ok"), "{text}");
}

#[test]
fn saved_state_is_bounded_for_all_accumulators_together() {
    let runtime = PluginRuntime::new(RuntimeConfig {
        limits: Limits {
            total_state_bytes: 1 << 20,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let raw = runtime.load_file(guests::RAW.as_ref()).unwrap();
    let config = json!({ "state_bytes": 300 << 10 });
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut metric = raw.metric(&config).unwrap();
        metric.update(&[event(1, 0, "x", &[], &[])]).unwrap();
        open.push(metric);
    }
    assert_eq!(raw.state_bytes(), 3 * (300 << 10));
    let mut fourth = raw.metric(&config).unwrap();
    let error = fourth.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    assert_eq!(
        error,
        PluginError::LimitExceeded {
            plugin: RAW.into(),
            limit: Limit::TotalState.name().into()
        }
    );
    // Finishing gives the bytes back: the next accumulator fits.
    assert_eq!(open.pop().unwrap().finish().unwrap(), Decimal::ONE);
    drop(fourth);
    let mut fifth = raw.metric(&config).unwrap();
    fifth.update(&[event(1, 0, "x", &[], &[])]).unwrap();
    assert_eq!(fifth.finish().unwrap(), Decimal::ONE);
    assert_eq!(
        raw.state_bytes(),
        2 * (300 << 10),
        "finished, not yet dropped"
    );
    drop(open);
    assert_eq!(raw.state_bytes(), 0);
}

#[test]
fn guest_text_in_errors_is_cut() {
    let raw = plugin(guests::RAW);
    let mut metric = raw.metric(&json!({ "error_bytes": 1 << 20 })).unwrap();
    let error = metric.update(&[event(1, 0, "x", &[], &[])]).unwrap_err();
    let text = error.to_string();
    assert!(text.len() < 400, "{} bytes", text.len());
    assert!(
        text.contains(&format!("({} bytes in all)", 1 << 20)),
        "{text:.400}"
    );
}

#[test]
fn a_mistyped_export_is_a_contract_error_naming_the_function() {
    let error = load_error(guests::MISTYPED);
    let LoadError::Contract(message) = &error else {
        panic!("unexpected {error:?}")
    };
    assert!(
        message.starts_with("export `update` of `ratecard:plugin/metric@0.1.0`"),
        "{message}"
    );
}

#[test]
fn huge_files_are_refused_by_their_size_before_reading() {
    let dir = std::env::temp_dir().join(format!("ratecard-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sparse = dir.join("sparse.wasm");
    // 3 GB, sparse: no disk, and reading it would take seconds and gigabytes.
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(3_000_000_000)
        .unwrap();
    for path in [sparse.as_path(), "/dev/zero".as_ref()] {
        let started = Instant::now();
        let error = runtime().load_file(path).unwrap_err();
        eprintln!("{}: {error} after {:?}", path.display(), started.elapsed());
        assert!(
            matches!(
                error,
                LoadError::LimitExceeded {
                    limit: Limit::ComponentSize,
                    ..
                }
            ),
            "{error:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_pin_is_refused_before_compiling() {
    use ratecard_host::plugins::PluginRegistry;
    let mut registry = PluginRegistry::new(runtime().clone());
    // Garbage under a wrong pin: the hashes differ, so it is never compiled (not "invalid").
    let garbage = vec![0xa5_u8; 4096];
    let error = registry
        .add("p95-bandwidth@1.0.0", &garbage, Some(&"0".repeat(64)))
        .unwrap_err();
    let LoadError::HashMismatch { actual, .. } = &error else {
        panic!("unexpected {error:?}")
    };
    assert_eq!(actual, &ratecard_host::plugins::sha256_hex(&garbage));
    let text = error.to_string();
    assert!(text.contains("differs from the pinned"), "{text}");
    assert!(text.contains("refused before running any of it"), "{text}");
    // A hostile component under a wrong pin: nothing of it runs (its describe would).
    let error = registry
        .add(
            "ratecard-guest-hostile@0.0.1",
            &std::fs::read(guests::HOSTILE).unwrap(),
            Some(&"f".repeat(64)),
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::HashMismatch { .. }), "{error:?}");
}
