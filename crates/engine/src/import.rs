//! Importers: rate cards from other billing platforms, so a migrating operator can reproduce
//! their old invoices.
//!
//! [`stripe_prices`] turns Stripe Price objects (as returned by `GET /v1/prices`, or a list of
//! them, or a `{"data": [...]}` page) into one Ratecard [`Plan`], one charge per price:
//!
//! | Stripe                                                   | Ratecard                                   |
//! |----------------------------------------------------------|--------------------------------------------|
//! | `billing_scheme: per_unit`, `unit_amount(_decimal)`      | `per_unit` (licensed: metric `quantity`)   |
//! | `per_unit` + `transform_quantity {divide_by, round}`     | `package` (size `divide_by`, round up/down)|
//! | `billing_scheme: tiered`, `tiers_mode: graduated/volume` | `graduated` / `volume`                     |
//! | tier `up_to` (integer, `null` or `"inf"`)                | `up_to`, with `tier_convention: upper_inclusive` |
//! | `unit_amount_decimal`, `flat_amount_decimal` (minor units) | major units (÷ 10^minor units), exact    |
//! | `recurring.interval` / `interval_count`                  | `interval`                                 |
//! | `recurring.usage_type: metered`, `recurring.meter`       | a metric summing the meter events' `value` |
//! | a price with `recurring: null` (one-time)                | refused: not a recurring charge            |
//!
//! Stripe writes amounts in minor units (cents), and `unit_amount_decimal` may carry up to 12
//! decimals: the conversion divides exactly by 10^minor units of the currency.

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

mod lago;
mod openmeter;

pub use lago::lago_plan;
pub use openmeter::openmeter_plan;

use crate::decimal::{Dec, parse_decimal};
use crate::money::{Currency, RoundingPolicy};
use crate::plan::{
    Aggregation, Charge, Interval, IntervalUnit, Metric, PackageRounding, Plan, PriceModel,
    ProrationMode, Tier, TierConvention,
};

/// Why an export could not be imported: the JSON path and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ImportError {
    pub path: String,
    pub message: String,
}

/// An imported plan and every part of the source it could not carry over.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub plan: Plan,
    /// What the importer left out or changed, by JSON path in the source document: the
    /// differences an operator must know of before billing with the plan.
    pub not_carried: Vec<NotCarried>,
}

/// A part of the source the importer could not carry over, at its JSON path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotCarried {
    pub path: String,
    pub message: String,
}

impl NotCarried {
    fn new(path: impl Into<String>, message: impl Into<String>) -> NotCarried {
        NotCarried {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for NotCarried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        path: path.into(),
        message: message.into(),
    }
}

/// Imports Stripe prices as one plan with id `plan_id`.
pub fn stripe_prices(export: &Value, plan_id: &str) -> Result<Plan, ImportError> {
    let (prices, base) = match export {
        Value::Array(prices) => (prices.as_slice(), "$".to_owned()),
        Value::Object(object)
            if object.get("object").and_then(Value::as_str) == Some("list")
                || object.contains_key("data") =>
        {
            match object.get("data") {
                Some(Value::Array(prices)) => (prices.as_slice(), "$.data".to_owned()),
                _ => return Err(err("$.data", "expected a list of prices")),
            }
        }
        Value::Object(_) => (std::slice::from_ref(export), String::new()),
        _ => {
            return Err(err(
                "$",
                "expected a Stripe price, a list of prices, or a list page",
            ));
        }
    };
    if prices.is_empty() {
        return Err(err(base, "no prices to import"));
    }
    let path_of = |idx: usize| {
        if base.is_empty() {
            "$".to_owned()
        } else {
            format!("{base}[{idx}]")
        }
    };

    let mut currency: Option<(String, Currency)> = None;
    let mut interval: Option<Interval> = None;
    let mut metrics: Vec<Metric> = Vec::new();
    let mut charges = Vec::new();
    for (idx, price) in prices.iter().enumerate() {
        let path = path_of(idx);
        let id = str_field(price, "id", &path)?;
        let code = str_field(price, "currency", &path)?.to_ascii_uppercase();
        let this_currency = Currency::iso(&code).ok_or_else(|| {
            err(
                format!("{path}.currency"),
                format!("`{code}` is not an ISO 4217 currency"),
            )
        })?;
        match &currency {
            None => currency = Some((code.clone(), this_currency.clone())),
            Some((first, _)) if *first != code => {
                return Err(err(
                    format!("{path}.currency"),
                    format!(
                        "{code} differs from the first price's {first}: a plan has one currency"
                    ),
                ));
            }
            Some(_) => {}
        }
        let recurring = price
            .get("recurring")
            .filter(|r| !r.is_null())
            .ok_or_else(|| {
                err(
                    format!("{path}.recurring"),
                    "a one-time price is not a recurring charge",
                )
            })?;
        let unit = match str_field(recurring, "interval", &format!("{path}.recurring"))? {
            "day" => IntervalUnit::Day,
            "week" => IntervalUnit::Week,
            "month" => IntervalUnit::Month,
            "year" => IntervalUnit::Year,
            other => {
                return Err(err(
                    format!("{path}.recurring.interval"),
                    format!("unknown interval `{other}`"),
                ));
            }
        };
        let count = recurring
            .get("interval_count")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let count = u32::try_from(count)
            .map_err(|_| err(format!("{path}.recurring.interval_count"), "too large"))?;
        let this_interval = Interval { unit, count };
        match interval {
            None => interval = Some(this_interval),
            Some(first) if first != this_interval => {
                return Err(err(
                    format!("{path}.recurring"),
                    "the interval differs from the first price's: a plan has one interval",
                ));
            }
            Some(_) => {}
        }
        let minor = this_currency.minor_units;
        let metered = recurring.get("usage_type").and_then(Value::as_str) == Some("metered");
        let metric_code = if metered {
            recurring
                .get("meter")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{id}_usage"))
        } else {
            "quantity".to_owned()
        };
        if !metrics.iter().any(|m| m.code == metric_code) {
            metrics.push(Metric {
                code: metric_code.clone(),
                name: if metered {
                    format!("Usage of {metric_code}")
                } else {
                    "Licensed quantity".to_owned()
                },
                unit: String::new(),
                event: None,
                aggregation: if metered {
                    Aggregation::Sum {
                        property: "value".to_owned(),
                    }
                } else {
                    Aggregation::Latest {
                        property: "quantity".to_owned(),
                    }
                },
                filters: Vec::new(),
                group_by: Vec::new(),
                conversion: None,
                negative_values: crate::plan::NegativeValues::Bill,
                recurrence: crate::plan::Recurrence::PerPeriod,
            });
        }
        let model =
            match price
                .get("billing_scheme")
                .and_then(Value::as_str)
                .unwrap_or("per_unit")
            {
                "per_unit" => {
                    let unit_price =
                        minor_amount(price, "unit_amount", minor, &path)?.unwrap_or_default();
                    match price.get("transform_quantity").filter(|t| !t.is_null()) {
                        Some(transform) => {
                            let tpath = format!("{path}.transform_quantity");
                            let divide_by = transform
                                .get("divide_by")
                                .and_then(Value::as_u64)
                                .filter(|d| *d > 0)
                                .ok_or_else(|| {
                                    err(format!("{tpath}.divide_by"), "expected a positive integer")
                                })?;
                            let rounding = match transform.get("round").and_then(Value::as_str) {
                                Some("down") => PackageRounding::Down,
                                Some("up") | None => PackageRounding::Up,
                                Some(other) => {
                                    return Err(err(
                                        format!("{tpath}.round"),
                                        format!("unknown rounding `{other}`"),
                                    ));
                                }
                            };
                            PriceModel::Package {
                                package_size: Dec(Decimal::from(divide_by)),
                                package_price: Dec(unit_price),
                                free_units: None,
                                rounding,
                            }
                        }
                        None => PriceModel::PerUnit {
                            unit_price: Dec(unit_price),
                        },
                    }
                }
                "tiered" => {
                    let tiers_value = price.get("tiers").and_then(Value::as_array).ok_or_else(
                    || {
                        err(
                            format!("{path}.tiers"),
                            "tiered prices need `tiers` (retrieve the price with `expand[]=tiers`)",
                        )
                    },
                )?;
                    let mut tiers = Vec::with_capacity(tiers_value.len());
                    for (tier_idx, tier) in tiers_value.iter().enumerate() {
                        let tpath = format!("{path}.tiers[{tier_idx}]");
                        let up_to = match tier.get("up_to") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(s)) if s == "inf" => None,
                            Some(Value::Number(n)) => Some(
                                parse_decimal(&n.to_string())
                                    .map_err(|m| err(format!("{tpath}.up_to"), m))?,
                            ),
                            Some(other) => {
                                return Err(err(
                                    format!("{tpath}.up_to"),
                                    format!("expected an integer or \"inf\", found {other}"),
                                ));
                            }
                        };
                        tiers.push(Tier {
                            from: None,
                            up_to: up_to.map(Dec),
                            unit_price: Dec(minor_amount(tier, "unit_amount", minor, &tpath)?
                                .unwrap_or_default()),
                            flat_fee: Dec(minor_amount(tier, "flat_amount", minor, &tpath)?
                                .unwrap_or_default()),
                        });
                    }
                    match price.get("tiers_mode").and_then(Value::as_str) {
                        Some("graduated") => PriceModel::Graduated { tiers },
                        Some("volume") => PriceModel::Volume { tiers },
                        other => {
                            return Err(err(
                                format!("{path}.tiers_mode"),
                                format!("expected `graduated` or `volume`, found {other:?}"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(err(
                        format!("{path}.billing_scheme"),
                        format!("unknown billing scheme `{other}`"),
                    ));
                }
            };
        let description = price
            .get("nickname")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| id.to_owned());
        charges.push(Charge {
            id: id.to_owned(),
            description,
            metric: Some(metric_code),
            model,
            included: None,
            minimum: None,
            maximum: None,
            zero_usage: crate::plan::ZeroUsage::Free,
            usage_proration: crate::plan::UsageProration::None,
        });
    }
    let code = currency.map(|(code, _)| code).unwrap_or_default();
    Ok(Plan {
        id: plan_id.to_owned(),
        name: format!("Imported from Stripe ({} prices)", prices.len()),
        currency: code,
        custom_units: Vec::new(),
        interval: interval.unwrap_or_default(),
        rounding: RoundingPolicy::default(),
        tier_convention: TierConvention::UpperInclusive,
        tier_ranges: crate::plan::TierRanges::Continuous,
        last_tier: crate::plan::LastTier::Unbounded,
        charge_maximum: crate::plan::ChargeMaximum::BeforeDiscounts,
        charge_minimum: crate::plan::ChargeMinimum::BeforeDiscounts,
        proration: ProrationMode::Seconds,
        trial_days: 0,
        metrics,
        charges,
        minimum_commitment: None,
        discounts: Vec::new(),
        taxes: Vec::new(),
        credits: Vec::new(),
    })
}

/// A JSON number or a decimal string (Lago writes amounts as strings and bounds
/// as numbers; OpenMeter writes `Money` and `Numeric` as strings).
pub(crate) fn number(value: &Value, path: &str) -> Result<Decimal, ImportError> {
    match value {
        Value::String(text) => parse_decimal(text).map_err(|m| err(path, m)),
        Value::Number(n) => parse_decimal(&n.to_string()).map_err(|m| err(path, m)),
        other => Err(err(path, format!("expected a number, found {other}"))),
    }
}

fn str_field<'v>(value: &'v Value, field: &str, path: &str) -> Result<&'v str, ImportError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.{field}"), "expected a string"))
}

/// `<field>_decimal` (a string, preferred) or `<field>` (an integer), in minor units → major.
fn minor_amount(
    value: &Value,
    field: &str,
    minor_units: u32,
    path: &str,
) -> Result<Option<Decimal>, ImportError> {
    let decimal_field = format!("{field}_decimal");
    let minor = match (value.get(&decimal_field), value.get(field)) {
        (Some(Value::String(text)), _) => {
            Some(parse_decimal(text).map_err(|m| err(format!("{path}.{decimal_field}"), m))?)
        }
        (_, Some(Value::Number(n))) => {
            Some(parse_decimal(&n.to_string()).map_err(|m| err(format!("{path}.{field}"), m))?)
        }
        (_, None | Some(Value::Null)) => None,
        (_, Some(other)) => {
            return Err(err(
                format!("{path}.{field}"),
                format!("expected an integer, found {other}"),
            ));
        }
    };
    let Some(minor) = minor else { return Ok(None) };
    let scale = Decimal::from(10u64.pow(minor_units));
    minor
        .checked_div(scale)
        .map(|major| Some(major.normalize()))
        .ok_or_else(|| err(format!("{path}.{field}"), "amount out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::NoPlugins;
    use crate::rate::quote;
    use crate::usage::Usage;

    const GRADUATED: &str = r#"{
      "id": "price_api", "object": "price", "currency": "usd", "nickname": "API calls",
      "billing_scheme": "tiered", "tiers_mode": "graduated",
      "recurring": {"interval": "month", "interval_count": 1, "usage_type": "metered", "meter": "api_calls"},
      "tiers": [
        {"up_to": 1000, "unit_amount": null, "unit_amount_decimal": "0.5", "flat_amount": 500, "flat_amount_decimal": "500"},
        {"up_to": null, "unit_amount": null, "unit_amount_decimal": "0.25", "flat_amount": null, "flat_amount_decimal": null}
      ]
    }"#;

    #[test]
    fn stripe_graduated_tiers_reproduce_a_stripe_invoice() {
        let price: Value = serde_json::from_str(GRADUATED).unwrap();
        let plan = stripe_prices(&price, "imported").unwrap();
        assert!(crate::validate::validate_plan(&plan).is_ok());
        let usage: Usage = serde_json::from_str(
            r#"{"period":{"containing":"2026-11-10"},"quantities":{"api_calls":"1500"}}"#,
        )
        .unwrap();
        let invoice = quote(&plan, &usage, &NoPlugins).unwrap();
        // Stripe: 1000 × 0.5¢ + $5.00 flat + 500 × 0.25¢ = $5.00 + $5.00 + $1.25 = $11.25
        assert_eq!(invoice.total.0.to_string(), "11.25");
    }

    #[test]
    fn stripe_transform_quantity_becomes_a_package_and_jpy_has_no_minor_units() {
        let price: Value = serde_json::from_str(
            r#"{"id":"price_pkg","currency":"jpy","billing_scheme":"per_unit","unit_amount":100,
                "transform_quantity":{"divide_by":1000,"round":"up"},
                "recurring":{"interval":"month","usage_type":"metered"}}"#,
        )
        .unwrap();
        let plan = stripe_prices(&Value::Array(vec![price]), "p").unwrap();
        let usage: Usage = serde_json::from_str(
            r#"{"period":{"containing":"2026-11-10"},"quantities":{"price_pkg_usage":"2001"}}"#,
        )
        .unwrap();
        // 2001 units → 3 packages × ¥100
        assert_eq!(
            quote(&plan, &usage, &NoPlugins)
                .unwrap()
                .total
                .0
                .to_string(),
            "300"
        );
    }

    #[test]
    fn mismatched_or_unsupported_prices_name_their_path() {
        let list: Value = serde_json::from_str(&format!(
            r#"{{"object":"list","data":[{GRADUATED},{{"id":"p2","currency":"eur","recurring":{{"interval":"month"}}}}]}}"#
        ))
        .unwrap();
        let error = stripe_prices(&list, "p").unwrap_err();
        assert_eq!(
            error.to_string(),
            "$.data[1].currency: EUR differs from the first price's USD: a plan has one currency"
        );
        let one_time: Value =
            serde_json::from_str(r#"{"id":"p","currency":"usd","recurring":null}"#).unwrap();
        assert_eq!(
            stripe_prices(&one_time, "p").unwrap_err().path,
            "$.recurring"
        );
    }
}
