//! Conversions between the engine's types and the contract's. Decimals cross as strings.

use std::collections::BTreeMap;

use ratecard_engine::Decimal;
use ratecard_engine::decimal::Dec;
use ratecard_engine::invoice::BreakdownRow;
use ratecard_engine::plugin::{PluginError, PriceRequest, PricedLine};
use ratecard_engine::usage::{Event, PropValue};

use crate::plugins::bindings::ratecard::plugin::types;

/// What a plugin says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub description: String,
    /// `"metric"` and/or `"price"`.
    pub kinds: Vec<String>,
    /// JSON Schema of the config.
    pub config_schema: serde_json::Value,
}

pub(crate) fn metadata(m: types::Metadata) -> Result<Metadata, String> {
    if m.name.is_empty() || m.name.contains('@') {
        return Err(format!("invalid plugin name `{}`", m.name));
    }
    if m.version.is_empty() || m.version.contains('@') {
        return Err(format!("invalid plugin version `{}`", m.version));
    }
    let config_schema = serde_json::from_str(&m.config_schema)
        .map_err(|e| format!("the config schema is not JSON: {e}"))?;
    Ok(Metadata {
        name: m.name,
        version: m.version,
        description: m.description,
        kinds: m
            .kinds
            .iter()
            .map(|k| match k {
                types::PluginKind::Metric => "metric".to_owned(),
                types::PluginKind::Price => "price".to_owned(),
            })
            .collect(),
        config_schema,
    })
}

/// Writes a decimal for a plugin: plain notation.
pub fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Reads a decimal a plugin returned.
pub fn decimal(text: &str) -> Result<Decimal, String> {
    text.parse::<Decimal>()
        .map_err(|e| format!("`{text}` is not a decimal: {e}"))
}

pub fn event(event: &Event<'_>) -> types::Event {
    types::Event {
        id: event.id.to_string(),
        customer: event.customer.to_string(),
        timestamp_ms: event.timestamp.0,
        code: event.code.to_string(),
        properties: event
            .properties
            .iter()
            .map(|(name, value)| types::Property {
                name: name.to_string(),
                value: match value {
                    PropValue::Str(s) => types::Value::Str(s.to_string()),
                    PropValue::Num(Ok(n)) => types::Value::Num(decimal_text(*n)),
                    PropValue::Num(Err(_)) | PropValue::Other => types::Value::Other,
                    PropValue::Bool(b) => types::Value::Boolean(*b),
                    PropValue::Null => types::Value::Null,
                },
            })
            .collect(),
    }
}

pub fn price_request(request: &PriceRequest) -> types::PriceRequest {
    types::PriceRequest {
        plan_id: request.plan_id.clone(),
        charge_id: request.charge_id.clone(),
        currency: request.currency.clone(),
        config: request.config.to_string(),
        customer_id: request.customer_id.clone(),
        customer_attributes: serde_json::Value::Object(request.customer_attributes.clone())
            .to_string(),
        period_start: request.period_start.clone(),
        period_end: request.period_end.clone(),
        quantities: request
            .quantities
            .iter()
            .map(|q| types::GroupQuantity {
                group: q
                    .group
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                quantity: decimal_text(q.quantity),
            })
            .collect(),
    }
}

pub(crate) fn priced_line_size(line: &types::PricedLine) -> usize {
    line.description.len()
        + line
            .group
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + line.quantity.len()
        + line.amount.len()
        + line
            .breakdown
            .iter()
            .map(|row| {
                row.description.len()
                    + row.quantity.as_ref().map_or(0, String::len)
                    + row.unit_price.as_ref().map_or(0, String::len)
                    + row.amount.len()
            })
            .sum::<usize>()
}

pub(crate) fn priced_line(line: types::PricedLine) -> Result<PricedLine, String> {
    let group: BTreeMap<String, String> = line.group.into_iter().collect();
    let breakdown = line
        .breakdown
        .into_iter()
        .map(|row| {
            Ok(BreakdownRow {
                description: row.description,
                quantity: row.quantity.as_deref().map(decimal).transpose()?.map(Dec),
                unit_price: row.unit_price.as_deref().map(decimal).transpose()?.map(Dec),
                amount: Dec(decimal(&row.amount)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(PricedLine {
        description: line.description,
        group,
        quantity: decimal(&line.quantity)?,
        amount: decimal(&line.amount)?,
        breakdown,
    })
}

pub(crate) fn plugin_error(plugin: &str, error: types::PluginError) -> PluginError {
    let plugin = plugin.to_owned();
    match error {
        types::PluginError::InvalidConfig(message) => {
            PluginError::InvalidConfig { plugin, message }
        }
        types::PluginError::InvalidInput(message) => PluginError::Failed {
            plugin,
            message: format!("invalid input: {message}"),
        },
        types::PluginError::InvalidState(message) => PluginError::Failed {
            plugin,
            message: format!("invalid state: {message}"),
        },
        types::PluginError::Failed(message) => PluginError::Failed { plugin, message },
    }
}
