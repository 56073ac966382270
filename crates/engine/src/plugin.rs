//! The traits plugins implement for the engine: custom metrics and custom prices.
//!
//! The engine stays pure: it only calls these traits. The host implements them with sandboxed
//! WebAssembly components; tests implement them natively. A rating without plugins uses
//! [`NoPlugins`], which refuses every plugin reference with a typed error.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::invoice::BreakdownRow;
use crate::usage::Event;

/// Why a plugin could not produce a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// No plugin of this reference is loaded.
    #[error("plugin `{0}` is not available")]
    NotFound(String),
    /// The plugin rejected its configuration.
    #[error("plugin `{plugin}` rejected its config: {message}")]
    InvalidConfig { plugin: String, message: String },
    /// The plugin reported an error for its input.
    #[error("plugin `{plugin}` failed: {message}")]
    Failed { plugin: String, message: String },
    /// The plugin hit a sandbox limit (fuel, memory, time, output size, ...).
    #[error("plugin `{plugin}` hit its {limit} limit")]
    LimitExceeded { plugin: String, limit: String },
    /// The plugin returned something that is not a valid answer (a bad decimal, ...).
    #[error("plugin `{plugin}` returned an invalid result: {message}")]
    InvalidOutput { plugin: String, message: String },
}

/// A custom metric's accumulator for one customer, metric, group and period: `update` is called
/// with batches of events, `merge` with the serialized state of another partial aggregate, and
/// `finish` once for the quantity.
pub trait MetricAccumulator: Send {
    fn update(&mut self, events: &[Event<'_>]) -> Result<(), PluginError>;
    /// The accumulator's state as bytes, so partial aggregates survive a restart and merge
    /// across workers.
    fn save(&mut self) -> Result<Vec<u8>, PluginError>;
    fn merge(&mut self, other_state: &[u8]) -> Result<(), PluginError>;
    fn finish(&mut self) -> Result<Decimal, PluginError>;
    /// `update` with the last batch (when not empty), then `finish`: an accumulator that saves
    /// its state after every `update` need not save it before finishing.
    fn finish_with(&mut self, last: &[Event<'_>]) -> Result<Decimal, PluginError> {
        if !last.is_empty() {
            self.update(last)?;
        }
        self.finish()
    }
}

/// What a custom price plugin is asked to price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceRequest {
    pub plan_id: String,
    pub charge_id: String,
    pub currency: String,
    pub config: serde_json::Value,
    pub customer_id: String,
    pub customer_attributes: serde_json::Map<String, serde_json::Value>,
    /// RFC 3339 instants.
    pub period_start: String,
    pub period_end: String,
    pub quantities: Vec<GroupedQuantity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupedQuantity {
    pub group: BTreeMap<String, String>,
    pub quantity: Decimal,
}

/// A priced line returned by a custom price plugin (exact amount: the engine rounds it).
#[derive(Clone, Debug, PartialEq)]
pub struct PricedLine {
    pub description: String,
    pub group: BTreeMap<String, String>,
    pub quantity: Decimal,
    pub amount: Decimal,
    pub breakdown: Vec<BreakdownRow>,
}

/// Resolves plugin references (`"name@version"`) for a rating.
pub trait PluginHost: Sync {
    /// A fresh accumulator for a custom metric with its config.
    fn metric(
        &self,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<Box<dyn MetricAccumulator>, PluginError>;

    /// Prices a custom charge.
    fn price(&self, plugin: &str, request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError>;
}

/// The plugin host of a rating that has no plugins.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPlugins;

impl PluginHost for NoPlugins {
    fn metric(
        &self,
        plugin: &str,
        _config: &serde_json::Value,
    ) -> Result<Box<dyn MetricAccumulator>, PluginError> {
        Err(PluginError::NotFound(plugin.to_owned()))
    }

    fn price(&self, plugin: &str, _request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        Err(PluginError::NotFound(plugin.to_owned()))
    }
}
