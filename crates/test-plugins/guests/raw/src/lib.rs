//! A plugin written against the raw contract (no SDK types between it and the host), so it can
//! return what the SDK would never produce: decimals in any notation, price lines that break the
//! contract's invariants, a merge that is not associative, saved state of any size, error text of
//! any length. Its config says what to return:
//!
//! - `{"finish": "1e2"}`: `finish` returns that text as the metric's value (default: the number
//!   of events counted);
//! - `{"merge": "replace"}`: `merge` replaces the count with the other partial's (not
//!   associative); default: adds;
//! - `{"state_bytes": 1000}`: `save` returns that many bytes (the count in the first 8);
//! - `{"error_bytes": 100000}`: `update` fails with a message that long;
//! - as a price, `{"lines": [...]}`: `price` returns those lines as they are (fields of the
//!   contract's `priced-line`, decimals as strings, `group` as `[[name, value], ...]`).

use std::cell::RefCell;

use ratecard_plugin::bindings::exports::ratecard::plugin::{meta, metric, price};
use ratecard_plugin::{
    BreakdownRow, EventFields, Metadata, PluginError, PluginKind, PriceRequest, PricedLine,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub finish: Option<String>,
    #[serde(default)]
    pub merge: Option<String>,
    #[serde(default)]
    pub state_bytes: Option<usize>,
    #[serde(default)]
    pub error_bytes: Option<usize>,
}

/// A price's config (other fields, a metric's, are ignored: `plugin check` passes one config to
/// both).
#[derive(Debug, Deserialize)]
pub struct PriceConfig {
    #[serde(default)]
    pub lines: Vec<Line>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub group: Vec<(String, String)>,
    pub quantity: String,
    pub amount: String,
    #[serde(default)]
    pub breakdown: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub quantity: Option<String>,
    #[serde(default)]
    pub unit_price: Option<String>,
    pub amount: String,
}

#[derive(Debug, Default)]
struct State {
    config: Config,
    count: u64,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_state<T>(f: impl FnOnce(&mut State) -> Result<T, PluginError>) -> Result<T, PluginError> {
    STATE.with(|slot| match slot.borrow_mut().as_mut() {
        Some(state) => f(state),
        None => Err(PluginError::Failed("create was not called".into())),
    })
}

/// The number of events in a batch: its first u32 (see `event-batch` in the contract).
fn events_in(batch: &[u8]) -> Result<u64, PluginError> {
    let count: [u8; 4] = batch
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PluginError::InvalidInput("a batch shorter than its header".into()))?;
    Ok(u64::from(u32::from_le_bytes(count)))
}

#[derive(Debug)]
pub struct Raw;

impl meta::Guest for Raw {
    fn describe() -> Metadata {
        Metadata {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            kinds: vec![PluginKind::Metric, PluginKind::Price],
            config_schema: r#"{"type": "object"}"#.into(),
        }
    }
}

impl metric::Guest for Raw {
    fn create(config: String) -> Result<(), PluginError> {
        let config: Config =
            serde_json::from_str(&config).map_err(|e| PluginError::InvalidConfig(e.to_string()))?;
        STATE.with(|slot| *slot.borrow_mut() = Some(State { config, count: 0 }));
        Ok(())
    }

    fn reads() -> EventFields {
        EventFields {
            ids: false,
            customers: false,
            codes: false,
            properties: Some(Vec::new()),
        }
    }

    fn update(events: Vec<u8>) -> Result<(), PluginError> {
        with_state(|state| {
            if let Some(bytes) = state.config.error_bytes {
                return Err(PluginError::Failed("e".repeat(bytes)));
            }
            state.count += events_in(&events)?;
            Ok(())
        })
    }

    fn save() -> Result<Vec<u8>, PluginError> {
        with_state(|state| {
            let mut bytes = state.count.to_le_bytes().to_vec();
            if let Some(size) = state.config.state_bytes {
                bytes.resize(size.max(8), 0);
            }
            Ok(bytes)
        })
    }

    fn merge(saved: Vec<u8>) -> Result<(), PluginError> {
        with_state(|state| {
            let count: [u8; 8] = saved
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| PluginError::InvalidState("shorter than 8 bytes".into()))?;
            let other = u64::from_le_bytes(count);
            state.count = match state.config.merge.as_deref() {
                Some("replace") => other,
                _ => state.count + other,
            };
            Ok(())
        })
    }

    fn finish() -> Result<String, PluginError> {
        with_state(|state| {
            Ok(match &state.config.finish {
                Some(text) => text.clone(),
                None => state.count.to_string(),
            })
        })
    }
}

impl price::Guest for Raw {
    fn price(request: PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        let config: PriceConfig = serde_json::from_str(&request.config)
            .map_err(|e| PluginError::InvalidConfig(e.to_string()))?;
        Ok(config
            .lines
            .into_iter()
            .map(|line| PricedLine {
                description: line.description,
                group: line.group,
                quantity: line.quantity,
                amount: line.amount,
                breakdown: line
                    .breakdown
                    .into_iter()
                    .map(|row| BreakdownRow {
                        description: row.description,
                        quantity: row.quantity,
                        unit_price: row.unit_price,
                        amount: row.amount,
                    })
                    .collect(),
            })
            .collect())
    }
}

#[cfg(target_arch = "wasm32")]
ratecard_plugin::bindings::__export_plugin_world!(Raw with_types_in ratecard_plugin::bindings);
