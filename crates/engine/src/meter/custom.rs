//! Custom (plugin) metrics: one [`MetricAccumulator`] per group from the [`PluginHost`], fed
//! counted events in batches of [`CUSTOM_BATCH_SIZE`] and asked for the raw value at the end.

use rust_decimal::Decimal;

use super::{AggregateError, CUSTOM_BATCH_SIZE};
use crate::plan::Metric;
use crate::plugin::{MetricAccumulator, PluginError, PluginHost};
use crate::usage::Event;

/// One group of a custom metric: its accumulator and the counted events not yet passed to it.
pub(super) struct Custom {
    acc: Box<dyn MetricAccumulator>,
    batch: Vec<Event<'static>>,
}

/// A plugin's failure, naming the metric.
fn plugin_error(metric: &Metric, error: PluginError) -> AggregateError {
    AggregateError::Plugin {
        metric: metric.code.clone(),
        error,
    }
}

/// A new accumulator of `metric`'s plugin (`plugin`, `config`: its aggregation).
pub(super) fn accumulator(
    metric: &Metric,
    plugin: &str,
    config: &serde_json::Value,
    plugins: &dyn PluginHost,
) -> Result<Box<dyn MetricAccumulator>, AggregateError> {
    plugins
        .metric(plugin, config)
        .map_err(|error| plugin_error(metric, error))
}

impl Custom {
    pub(super) fn new(acc: Box<dyn MetricAccumulator>) -> Custom {
        Custom {
            acc,
            batch: Vec::new(),
        }
    }

    /// Copies a counted event into the batch; a full batch goes to the plugin.
    pub(super) fn push(
        &mut self,
        event: &Event<'_>,
        metric: &Metric,
    ) -> Result<(), AggregateError> {
        self.batch.push(event.clone().into_owned());
        if self.batch.len() >= CUSTOM_BATCH_SIZE {
            let result = self.acc.update(&self.batch);
            self.batch.clear();
            result.map_err(|error| plugin_error(metric, error))?;
        }
        Ok(())
    }

    /// The group's raw value: the rest of the batch, then the plugin's `finish`.
    pub(super) fn finish(mut self, metric: &Metric) -> Result<Decimal, AggregateError> {
        self.acc
            .finish_with(&self.batch)
            .map_err(|error| plugin_error(metric, error))
    }
}
