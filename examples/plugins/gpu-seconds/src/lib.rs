//! GPU-seconds weighted by GPU type: `sum(seconds x multiplier[gpu_type])`.
//!
//! Events carry `gpu_type` and `seconds`. A GPU type missing from `multipliers` uses
//! `default_multiplier`, or is an error when there is none.

use std::collections::BTreeMap;

use ratecard_plugin::{Decimal, Events, Metric, PluginError, Reads, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub multipliers: BTreeMap<String, Decimal>,
    #[serde(default)]
    pub default_multiplier: Option<Decimal>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GpuSeconds {
    multipliers: BTreeMap<String, Decimal>,
    default_multiplier: Option<Decimal>,
    /// Raw seconds per GPU type: multiplied once, at the end.
    seconds: BTreeMap<String, Decimal>,
}

impl Metric for GpuSeconds {
    type Config = Config;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object","required":["multipliers"],"properties":{"multipliers":{"type":"object","additionalProperties":{"type":"string"}},"default_multiplier":{"type":"string"}},"additionalProperties":false}"#;

    fn new(config: Config) -> Result<Self> {
        if config
            .multipliers
            .values()
            .chain(&config.default_multiplier)
            .any(|m| m.is_sign_negative())
        {
            return Err(PluginError::InvalidConfig(
                "multipliers must not be negative".into(),
            ));
        }
        Ok(GpuSeconds {
            multipliers: config.multipliers,
            default_multiplier: config.default_multiplier,
            seconds: BTreeMap::new(),
        })
    }

    fn reads(&self) -> Reads {
        Reads::timestamps().property("gpu_type").property("seconds")
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        for event in events {
            let gpu_type = event.string("gpu_type")?;
            if !self.multipliers.contains_key(gpu_type) && self.default_multiplier.is_none() {
                return Err(event.invalid(format!("no multiplier for GPU type `{gpu_type}`")));
            }
            let seconds = event.decimal("seconds")?;
            *self.seconds.entry(gpu_type.to_owned()).or_default() += seconds;
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        for (gpu_type, seconds) in other.seconds {
            *self.seconds.entry(gpu_type).or_default() += seconds;
        }
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        let mut total = Decimal::ZERO;
        for (gpu_type, seconds) in &self.seconds {
            let multiplier = self
                .multipliers
                .get(gpu_type)
                .copied()
                .or(self.default_multiplier);
            let multiplier = multiplier.ok_or_else(|| {
                PluginError::InvalidState(format!("no multiplier for GPU type `{gpu_type}`"))
            })?;
            total += seconds * multiplier;
        }
        Ok(total)
    }
}

ratecard_plugin::export_metric!(GpuSeconds);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::{Batch, Event, event, num, string};

    fn config(default_multiplier: Option<&str>) -> Config {
        Config {
            multipliers: [
                ("a100".to_owned(), "2.5".parse().unwrap()),
                ("h100".to_owned(), Decimal::from(4)),
            ]
            .into(),
            default_multiplier: default_multiplier.map(|m| m.parse().unwrap()),
        }
    }

    fn gpu(id: &str, gpu_type: &str, seconds: &str) -> Event<'static> {
        event(
            id,
            0,
            "gpu",
            &[("gpu_type", string(gpu_type)), ("seconds", num(seconds))],
        )
    }

    #[test]
    fn seconds_are_weighted_by_type() {
        let mut metric = GpuSeconds::new(config(None)).unwrap();
        let events = [
            gpu("1", "a100", "10"),
            gpu("2", "h100", "1.5"),
            gpu("3", "a100", "2"),
        ];
        metric
            .update(&Batch::with_reads(&events, &metric.reads()).events())
            .unwrap();
        assert_eq!(metric.finish().unwrap(), Decimal::from(36));
    }

    #[test]
    fn unknown_type_uses_the_default_or_fails() {
        let mut metric = GpuSeconds::new(config(Some("1"))).unwrap();
        let events = [gpu("1", "a100", "1"), gpu("2", "t4", "7")];
        let batch = Batch::with_reads(&events, &metric.reads());
        metric.update(&batch.events()).unwrap();
        assert_eq!(metric.finish().unwrap(), "9.5".parse().unwrap());
        let mut strict = GpuSeconds::new(config(None)).unwrap();
        assert_eq!(
            strict.update(&batch.events()).unwrap_err(),
            batch
                .events()
                .get(1)
                .unwrap()
                .invalid("no multiplier for GPU type `t4`")
        );
    }
}
