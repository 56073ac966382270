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
