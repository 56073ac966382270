//! Time-of-use electricity price: kWh per time-of-use window (the group value of `group_key`,
//! `"tou"` by default: `"peak"`, `"off-peak"`, ...) at that window's rate, plus an optional
//! standing charge per period. A window without a rate is an error.

use std::collections::BTreeMap;

use ratecard_plugin::{
    BreakdownRow, Decimal, PluginError, Price, PriceRequest, PricedLine, Result, format_decimal,
    parse_decimal,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rate per kWh by window.
    pub rates: BTreeMap<String, Decimal>,
    #[serde(default = "default_group_key")]
    pub group_key: String,
    #[serde(default)]
    pub standing_charge: Option<Decimal>,
}

fn default_group_key() -> String {
    "tou".to_owned()
}

#[derive(Debug)]
pub struct TimeOfUse;

impl Price for TimeOfUse {
    type Config = Config;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object","required":["rates"],"properties":{"rates":{"type":"object","additionalProperties":{"type":"string"}},"group_key":{"type":"string"},"standing_charge":{"type":"string"}},"additionalProperties":false}"#;

    fn price(config: Config, request: &PriceRequest) -> Result<Vec<PricedLine>> {
        let mut lines = Vec::new();
        for quantity in &request.quantities {
            let window = quantity
                .group
                .iter()
                .find(|(key, _)| *key == config.group_key)
                .map(|(_, value)| value.as_str())
                .ok_or_else(|| {
                    PluginError::InvalidInput(format!(
                        "a quantity has no `{}` group",
                        config.group_key
                    ))
                })?;
            let rate = config.rates.get(window).ok_or_else(|| {
                PluginError::InvalidInput(format!("no rate for time-of-use window `{window}`"))
            })?;
            let kwh = parse_decimal(&quantity.quantity)?;
            let amount = kwh * rate;
            lines.push(PricedLine {
                description: format!("{window} energy"),
                group: quantity.group.clone(),
                quantity: format_decimal(kwh),
                amount: format_decimal(amount),
                breakdown: vec![BreakdownRow {
                    description: format!(
                        "{} kWh at {} {}/kWh",
                        format_decimal(kwh),
                        format_decimal(*rate),
                        request.currency
                    ),
                    quantity: Some(format_decimal(kwh)),
                    unit_price: Some(format_decimal(*rate)),
                    amount: format_decimal(amount),
                }],
            });
        }
        if let Some(standing_charge) = config.standing_charge {
            lines.push(PricedLine {
                description: "standing charge".to_owned(),
                group: Vec::new(),
                quantity: "1".to_owned(),
                amount: format_decimal(standing_charge),
                breakdown: vec![BreakdownRow {
                    description: "standing charge for the period".to_owned(),
                    quantity: None,
                    unit_price: None,
                    amount: format_decimal(standing_charge),
                }],
            });
        }
        Ok(lines)
    }
}

ratecard_plugin::export_price!(TimeOfUse);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::GroupQuantity;

    fn request(quantities: &[(&str, &str)]) -> PriceRequest {
        PriceRequest {
            plan_id: "home".into(),
            charge_id: "energy".into(),
            currency: "EUR".into(),
            config: String::new(),
            customer_id: "c1".into(),
            customer_attributes: "{}".into(),
            period_start: "2026-11-01T00:00:00Z".into(),
            period_end: "2026-12-01T00:00:00Z".into(),
            quantities: quantities
                .iter()
                .map(|(window, kwh)| GroupQuantity {
                    group: vec![("tou".into(), (*window).into())],
                    quantity: (*kwh).into(),
                })
                .collect(),
        }
    }

    fn config() -> Config {
        Config {
            rates: [
                ("peak".to_owned(), "0.32".parse().unwrap()),
                ("off-peak".to_owned(), "0.12".parse().unwrap()),
            ]
            .into(),
            group_key: default_group_key(),
            standing_charge: Some("9.50".parse().unwrap()),
        }
    }

    #[test]
    fn each_window_at_its_rate_plus_standing_charge() {
        let lines = TimeOfUse::price(
            config(),
            &request(&[("peak", "100"), ("off-peak", "250.5")]),
        )
        .unwrap();
        let amounts: Vec<&str> = lines.iter().map(|l| l.amount.as_str()).collect();
        assert_eq!(amounts, ["32", "30.06", "9.5"]);
    }

    #[test]
    fn a_window_without_rate_is_an_error() {
        let error = TimeOfUse::price(config(), &request(&[("shoulder", "1")])).unwrap_err();
        assert!(matches!(error, PluginError::InvalidInput(_)));
    }
}
