//! The host's integration tests: one binary, a module per concern (wasmtime style). Plugins are
//! built by `ratecard-test-plugins`'s build script; no `.wasm` file is committed.

mod cli;
mod customers;
mod examples;
mod hostile;
mod registry;
mod server_plugins;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use ratecard_engine::Decimal;
use ratecard_engine::usage::{Event, PropValue, Timestamp};
use ratecard_host::plugins::{LoadedPlugin, PluginRuntime, RuntimeConfig};

/// The runtime most tests share (default limits).
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| PluginRuntime::new(RuntimeConfig::default()).unwrap())
}

/// A plugin of `ratecard_test_plugins`, loaded once per test process.
pub fn plugin(path: &'static str) -> &'static LoadedPlugin {
    static PLUGINS: OnceLock<std::sync::Mutex<BTreeMap<&'static str, &'static LoadedPlugin>>> =
        OnceLock::new();
    let mut plugins = PLUGINS.get_or_init(Default::default).lock().unwrap();
    plugins
        .entry(path)
        .or_insert_with(|| Box::leak(Box::new(runtime().load_file(path.as_ref()).unwrap())))
}

/// An event with numeric and string properties.
pub fn event(
    id: usize,
    timestamp_ms: i64,
    code: &str,
    numbers: &[(&str, Decimal)],
    strings: &[(&str, &str)],
) -> Event<'static> {
    let mut properties = BTreeMap::new();
    for (name, value) in numbers {
        properties.insert(Cow::Owned((*name).to_owned()), PropValue::Num(Ok(*value)));
    }
    for (name, value) in strings {
        properties.insert(
            Cow::Owned((*name).to_owned()),
            PropValue::Str(Cow::Owned((*value).to_owned())),
        );
    }
    Event {
        id: Cow::Owned(id.to_string()),
        customer: Cow::Borrowed("c1"),
        timestamp: Timestamp(timestamp_ms),
        code: Cow::Owned(code.to_owned()),
        properties: properties.into_iter().collect(),
    }
}
