//! Write Ratecard pricing plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing the contract in `wit/plugin.wit`
//! (`ratecard:plugin@0.1.0`): a **custom metric** (an accumulator fed batches of usage events) and/or
//! a **custom price** (quantities and context in, priced lines out). Plugins import nothing but a
//! log function: no clock, no randomness, no files, no network. Same input, same output.
//!
//! A metric is a type implementing [`Metric`], exported with [`export_metric!`]:
//!
//! ```
//! use ratecard_plugin::{Decimal, Event, EventExt, Metric, Result};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct TotalBytes { property: String, total: Decimal }
//!
//! #[derive(serde::Deserialize)]
//! pub struct Config { property: String }
//!
//! impl Metric for TotalBytes {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self> {
//!         Ok(TotalBytes { property: config.property, total: Decimal::ZERO })
//!     }
//!     fn update(&mut self, events: &[Event]) -> Result<()> {
//!         for event in events {
//!             self.total += event.decimal(&self.property)?;
//!         }
//!         Ok(())
//!     }
//!     fn merge(&mut self, other: Self) -> Result<()> {
//!         self.total += other.total;
//!         Ok(())
//!     }
//!     fn finish(&self) -> Result<Decimal> {
//!         Ok(self.total)
//!     }
//! }
//!
//! ratecard_plugin::export_metric!(TotalBytes);
//! ```
//!
//! Build it for `wasm32-unknown-unknown` and turn it into a component with `ratecard plugin build`
//! (which runs cargo and `wit-component` in-process); `ratecard plugin new NAME` scaffolds a crate.
//! The plugin's name, version and description are its package's (`Cargo.toml`).
//!
//! # State
//!
//! The host keeps one accumulator alive per aggregation (a WIT resource in one store), so `update`
//! never re-reads state. `save` serializes the accumulator with `serde_json` so partial aggregates
//! survive a restart and merge across workers; `merge` reads another partial's saved state and
//! calls [`Metric::merge`]. `merge` must be commutative and associative: the host merges partials
//! in any order.

// The generated bindings name this crate by its public path.
extern crate self as ratecard_plugin;

pub use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "ratecard_plugin::bindings",
        runtime_path: "ratecard_plugin::__rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use serde_json as __serde_json;
#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub use bindings::ratecard::plugin::types::{
    BreakdownRow, Event, GroupQuantity, Metadata, PluginError, PluginKind, PriceRequest,
    PricedLine, Property, Value,
};

/// The result of a plugin function.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// The current version of the plugin contract this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The WIT text of the contract (`ratecard:plugin@0.1.0`).
pub const CONTRACT_WIT: &str = include_str!("../wit/plugin.wit");

/// A custom metric: an accumulator over usage events.
///
/// `merge` must be commutative and associative (partials are merged in any order), and
/// `update(a); update(b)` must equal `update(a ++ b)`.
pub trait Metric: Serialize + DeserializeOwned + 'static {
    /// The config the plugin accepts, read from the plan's JSON.
    type Config: DeserializeOwned;
    /// The JSON Schema of [`Metric::Config`], reported in the plugin's metadata.
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object"}"#;

    fn new(config: Self::Config) -> Result<Self>;
    fn update(&mut self, events: &[Event]) -> Result<()>;
    fn merge(&mut self, other: Self) -> Result<()>;
    fn finish(&self) -> Result<Decimal>;
}

/// A custom price: quantities and context in, priced lines out.
pub trait Price: 'static {
    type Config: DeserializeOwned;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object"}"#;

    fn price(config: Self::Config, request: &PriceRequest) -> Result<Vec<PricedLine>>;
}

/// Reads a JSON config into the plugin's config type.
pub fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C> {
    let text = if config.trim().is_empty() {
        "null"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| PluginError::InvalidConfig(e.to_string()))
}

/// Reads a decimal written in plain notation.
pub fn parse_decimal(text: &str) -> Result<Decimal> {
    text.parse::<Decimal>()
        .map_err(|e| PluginError::InvalidInput(format!("`{text}` is not a decimal: {e}")))
}

/// Writes a decimal for the host: plain notation, trailing zeros removed.
pub fn format_decimal(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Convenient access to an event's properties.
pub trait EventExt {
    fn property(&self, name: &str) -> Option<&Value>;
    /// A numeric property (a JSON number or a string holding a decimal).
    fn decimal(&self, name: &str) -> Result<Decimal>;
    /// A string property.
    fn string(&self, name: &str) -> Result<&str>;
}

impl EventExt for Event {
    fn property(&self, name: &str) -> Option<&Value> {
        self.properties
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.properties[i].value)
    }

    fn decimal(&self, name: &str) -> Result<Decimal> {
        match self.property(name) {
            Some(Value::Num(text) | Value::Str(text)) => parse_decimal(text).map_err(|_| {
                PluginError::InvalidInput(format!(
                    "event `{}`: property `{name}` is not a number: `{text}`",
                    self.id
                ))
            }),
            Some(_) => Err(PluginError::InvalidInput(format!(
                "event `{}`: property `{name}` is not a number",
                self.id
            ))),
            None => Err(PluginError::InvalidInput(format!(
                "event `{}` has no property `{name}`",
                self.id
            ))),
        }
    }

    fn string(&self, name: &str) -> Result<&str> {
        match self.property(name) {
            Some(Value::Str(text)) => Ok(text),
            Some(_) => Err(PluginError::InvalidInput(format!(
                "event `{}`: property `{name}` is not a string",
                self.id
            ))),
            None => Err(PluginError::InvalidInput(format!(
                "event `{}` has no property `{name}`",
                self.id
            ))),
        }
    }
}

/// Builds events in native unit tests of plugins.
pub fn event(id: &str, timestamp_ms: i64, code: &str, properties: &[(&str, Value)]) -> Event {
    let mut properties: Vec<Property> = properties
        .iter()
        .map(|(name, value)| Property {
            name: (*name).to_owned(),
            value: value.clone(),
        })
        .collect();
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    Event {
        id: id.to_owned(),
        customer: String::new(),
        timestamp_ms,
        code: code.to_owned(),
        properties,
    }
}

/// A numeric property value.
pub fn num(text: &str) -> Value {
    Value::Num(text.to_owned())
}

/// A string property value.
pub fn string(text: &str) -> Value {
    Value::Str(text.to_owned())
}

/// Log a message through the host (which may drop it). Only works inside a component.
pub mod log {
    use crate::bindings::ratecard::plugin::log::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The resource the host sees for a [`Metric`]. Used by [`export_metric!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Accumulator<M> {
    state: std::cell::RefCell<M>,
}

impl<M: Metric> Accumulator<M> {
    pub fn create(config: &str) -> Result<Self> {
        let config = parse_config::<M::Config>(config)?;
        Ok(Accumulator {
            state: std::cell::RefCell::new(M::new(config)?),
        })
    }

    pub fn update(&self, events: &[Event]) -> Result<()> {
        self.state.borrow_mut().update(events)
    }

    pub fn save(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&*self.state.borrow())
            .map_err(|e| PluginError::Failed(format!("cannot save state: {e}")))
    }

    pub fn merge(&self, state: &[u8]) -> Result<()> {
        let other: M =
            serde_json::from_slice(state).map_err(|e| PluginError::InvalidState(e.to_string()))?;
        self.state.borrow_mut().merge(other)
    }

    pub fn finish(&self) -> Result<String> {
        self.state.borrow().finish().map(format_decimal)
    }
}

#[doc(hidden)]
pub fn __metadata(
    name: &str,
    version: &str,
    description: &str,
    kinds: Vec<PluginKind>,
    config_schema: &str,
) -> Metadata {
    Metadata {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        kinds,
        config_schema: config_schema.to_owned(),
    }
}

#[doc(hidden)]
pub fn __price<P: Price>(request: PriceRequest) -> Result<Vec<PricedLine>> {
    let config = parse_config::<P::Config>(&request.config)?;
    P::price(config, &request)
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_metric_impl {
    ($plugin:ident, $metric:ty) => {
        impl $crate::bindings::exports::ratecard::plugin::metric::Guest for $plugin {
            type Accumulator = $crate::__MetricResource<$metric>;
        }
    };
}

/// Exports a [`Metric`] as the plugin of this crate (name, version and description from Cargo).
#[macro_export]
macro_rules! export_metric {
    ($metric:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __RatecardPlugin;
        impl $crate::bindings::exports::ratecard::plugin::meta::Guest for __RatecardPlugin {
            fn describe() -> $crate::Metadata {
                $crate::__metadata(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                    vec![$crate::PluginKind::Metric],
                    <$metric as $crate::Metric>::CONFIG_SCHEMA,
                )
            }
        }
        $crate::__export_metric_impl!(__RatecardPlugin, $metric);
        impl $crate::bindings::exports::ratecard::plugin::price::Guest for __RatecardPlugin {
            fn price(
                _request: $crate::PriceRequest,
            ) -> $crate::Result<Vec<$crate::PricedLine>> {
                Err($crate::PluginError::Failed("this plugin is not a price plugin".into()))
            }
        }
        // Only in the component: native builds (unit tests) cannot link these export names.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(
            __RatecardPlugin with_types_in $crate::bindings
        );
    };
}

/// Exports a [`Price`] as the plugin of this crate (name, version and description from Cargo).
#[macro_export]
macro_rules! export_price {
    ($price:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __RatecardPlugin;
        impl $crate::bindings::exports::ratecard::plugin::meta::Guest for __RatecardPlugin {
            fn describe() -> $crate::Metadata {
                $crate::__metadata(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                    vec![$crate::PluginKind::Price],
                    <$price as $crate::Price>::CONFIG_SCHEMA,
                )
            }
        }
        impl $crate::bindings::exports::ratecard::plugin::metric::Guest for __RatecardPlugin {
            type Accumulator = $crate::__NoMetric;
        }
        impl $crate::bindings::exports::ratecard::plugin::price::Guest for __RatecardPlugin {
            fn price(
                request: $crate::PriceRequest,
            ) -> $crate::Result<Vec<$crate::PricedLine>> {
                $crate::__price::<$price>(request)
            }
        }
        // Only in the component: native builds (unit tests) cannot link these export names.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(
            __RatecardPlugin with_types_in $crate::bindings
        );
    };
}

use bindings::exports::ratecard::plugin::metric::{
    Accumulator as AccumulatorHandle, GuestAccumulator,
};

/// The WIT resource wrapping an [`Accumulator`].
#[doc(hidden)]
#[derive(Debug)]
pub struct __MetricResource<M>(Accumulator<M>);

impl<M: Metric> GuestAccumulator for __MetricResource<M> {
    fn create(config: String) -> Result<AccumulatorHandle> {
        Ok(AccumulatorHandle::new(__MetricResource(
            Accumulator::<M>::create(&config)?,
        )))
    }
    fn update(&self, events: Vec<Event>) -> Result<()> {
        self.0.update(&events)
    }
    fn save(&self) -> Result<Vec<u8>> {
        self.0.save()
    }
    fn merge(&self, state: Vec<u8>) -> Result<()> {
        self.0.merge(&state)
    }
    fn finish(&self) -> Result<String> {
        self.0.finish()
    }
}

/// The accumulator of a plugin that is not a metric: refuses to be created.
#[doc(hidden)]
#[derive(Debug)]
pub struct __NoMetric;

impl GuestAccumulator for __NoMetric {
    fn create(_config: String) -> Result<AccumulatorHandle> {
        Err(PluginError::Failed(
            "this plugin is not a metric plugin".into(),
        ))
    }
    fn update(&self, _events: Vec<Event>) -> Result<()> {
        unreachable_state()
    }
    fn save(&self) -> Result<Vec<u8>> {
        unreachable_state()
    }
    fn merge(&self, _state: Vec<u8>) -> Result<()> {
        unreachable_state()
    }
    fn finish(&self) -> Result<String> {
        unreachable_state()
    }
}

fn unreachable_state<T>() -> Result<T> {
    Err(PluginError::Failed(
        "this plugin is not a metric plugin".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Total {
        property: String,
        total: Decimal,
    }

    #[derive(serde::Deserialize)]
    struct Config {
        property: String,
    }

    impl Metric for Total {
        type Config = Config;
        fn new(config: Config) -> Result<Self> {
            Ok(Total {
                property: config.property,
                total: Decimal::ZERO,
            })
        }
        fn update(&mut self, events: &[Event]) -> Result<()> {
            for event in events {
                self.total += event.decimal(&self.property)?;
            }
            Ok(())
        }
        fn merge(&mut self, other: Self) -> Result<()> {
            self.total += other.total;
            Ok(())
        }
        fn finish(&self) -> Result<Decimal> {
            Ok(self.total)
        }
    }

    fn bytes(id: &str, value: Value) -> Event {
        event(id, 0, "x", &[("bytes", value), ("a", string("first"))])
    }

    #[test]
    fn saved_state_merges_into_another_accumulator() {
        let a = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        let b = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        a.update(&[bytes("1", num("1.25"))]).unwrap();
        b.update(&[bytes("2", string("2.50")), bytes("3", num("0.25"))])
            .unwrap();
        a.merge(&b.save().unwrap()).unwrap();
        assert_eq!(a.finish().unwrap(), "4");
    }

    #[test]
    fn bad_config_state_and_properties_are_typed_errors() {
        let error = Accumulator::<Total>::create("{}").unwrap_err();
        assert!(matches!(error, PluginError::InvalidConfig(_)), "{error:?}");
        let a = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        assert!(matches!(
            a.merge(b"not json"),
            Err(PluginError::InvalidState(_))
        ));
        let error = a.update(&[bytes("7", Value::Boolean(true))]).unwrap_err();
        assert_eq!(
            error,
            PluginError::InvalidInput("event `7`: property `bytes` is not a number".into())
        );
        let error = a.update(&[event("8", 0, "x", &[])]).unwrap_err();
        assert_eq!(
            error,
            PluginError::InvalidInput("event `8` has no property `bytes`".into())
        );
    }

    #[test]
    fn properties_are_found_whatever_the_order_given() {
        let e = event(
            "1",
            0,
            "x",
            &[("z", num("1")), ("b", string("s")), ("m", Value::Null)],
        );
        assert_eq!(e.string("b").unwrap(), "s");
        assert_eq!(e.decimal("z").unwrap(), Decimal::ONE);
        assert_eq!(e.property("m"), Some(&Value::Null));
        assert_eq!(format_decimal("1.500".parse().unwrap()), "1.5");
    }
}
