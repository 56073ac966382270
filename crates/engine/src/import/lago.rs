//! `ratecard import lago`: a Lago plan, as Lago's API returns it (`GET /api/v1/plans/{code}`:
//! `{"plan": {...}}` or the plan object), with its billable metrics (`{"billable_metrics":
//! [...]}` beside `plan`, as `GET /api/v1/billable_metrics` lists them), into one Ratecard plan.
//!
//! | Lago                                                      | Ratecard                                        |
//! |-----------------------------------------------------------|-------------------------------------------------|
//! | `amount_cents`, `pay_in_advance`                          | a `flat` charge `subscription`, advance/arrears |
//! | `interval` weekly / monthly / quarterly / semiannual / yearly | `week` / `month` / `quarter` / 6 months / `year` |
//! | `trial_period` (days)                                     | `trial_days`                                    |
//! | `minimum_commitment.amount_cents`                         | `minimum_commitment`                            |
//! | `taxes[{code, name, rate}]`                               | exclusive `taxes`                               |
//! | charge `standard` (`amount`)                              | `per_unit`                                      |
//! | `graduated` / `volume` ranges (`from_value`–`to_value`)   | `graduated` / `volume`, `tier_ranges: whole_units` |
//! | `volume` (first range's flat amount billed at 0 units)    | `zero_usage: first_tier_flat_fee`               |
//! | `package` (`amount`, `package_size`, `free_units`)        | `package`, rounded up                           |
//! | `percentage` (`rate`, `fixed_amount`, per-transaction min/max, `free_units_per_events`, `free_units_per_total_aggregation`) | `percentage` (`free_events`, `included`: with free events or bounds, spent transaction by transaction as Lago does; alone with a fixed amount, `fixed_fee_within_free_amount: waived`) |
//! | `graduated_percentage` ranges (`rate`, `flat_amount`)     | `percentage` with tiers                         |
//! | charge `min_amount_cents`                                 | charge `minimum`                                |
//! | metric `count_agg` / `sum_agg` / `max_agg` / `unique_count_agg` | `count` / `sum` / `max` / `unique_count`  |
//! | metric `latest_agg`                                       | `latest` with `negative_values: floor_at_zero`  |
//! | a `recurring` `sum_agg`                                   | `sum` with `recurrence: carried_over`           |
//! | a `prorated` standard / volume / graduated charge of a recurring `sum_agg` | `usage_proration: days_held` (graduated: Lago's prorated graduated ranges, event by event; `zero_usage: first_tier_flat_fee` when the first range has a flat amount) |
//! | a `recurring` `unique_count_agg` (`operation_type` add/remove) | `unique_count` with `recurrence: carried_over` (operations read from `operation_type`) |
//! | metric `rounding_function`, `rounding_precision`          | `conversion.round` (negative precision too)     |
//!
//! Everything else is not carried over and is listed by its JSON path in
//! [`Imported::not_carried`] (pay-in-advance charges, other prorated charges, filters, dynamic and custom
//! models, weighted-sum metrics, …): an operator
//! sees every difference instead of a silently different invoice.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;

use super::{ImportError, Imported, NotCarried, err, number, str_field};
use crate::decimal::Dec;
use crate::money::{Currency, RoundingPolicy};
use crate::plan::{
    Aggregation, Charge, Conversion, FeeTiming, FixedFeeWithinFreeAmount, Interval, IntervalUnit,
    Metric, NegativeValues, PackageRounding, Plan, PriceModel, ProrationMode, QuantityRounding,
    QuantityRoundingMode, TaxRate, Tier, TierConvention, TierRanges, ZeroUsage,
};

/// Imports a Lago plan (and the billable metrics given beside it) as a Ratecard plan with the
/// Lago plan's `code` as id, or `plan_id` when given.
pub fn lago_plan(export: &Value, plan_id: Option<&str>) -> Result<Imported, ImportError> {
    let (plan, base) = match export.get("plan") {
        Some(plan) => (plan, "$.plan"),
        None => (export, "$"),
    };
    if !plan.is_object() {
        return Err(err(base, "expected a Lago plan object"));
    }
    let mut not_carried = Vec::new();
    let code = str_field(plan, "amount_currency", base)?.to_ascii_uppercase();
    let currency = Currency::iso(&code).ok_or_else(|| {
        err(
            format!("{base}.amount_currency"),
            format!("`{code}` is not an ISO 4217 currency"),
        )
    })?;
    let minor = currency.minor_units;
    let id = match plan_id {
        Some(id) => id.to_owned(),
        None => str_field(plan, "code", base)?.to_owned(),
    };
    let interval = interval(plan, base)?;
    let metrics_by_code = export
        .get("billable_metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut metrics: Vec<Metric> = Vec::new();
    let mut charges = Vec::new();
    if let Some(amount) = cents(plan, "amount_cents", minor, base)?
        && !amount.is_zero()
    {
        let timing = if plan.get("pay_in_advance").and_then(Value::as_bool) == Some(true) {
            FeeTiming::Advance
        } else {
            FeeTiming::Arrears
        };
        charges.push(Charge {
            id: "subscription".to_owned(),
            description: plan
                .get("invoice_display_name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .or_else(|| plan.get("name").and_then(Value::as_str))
                .unwrap_or("Subscription")
                .to_owned(),
            metric: None,
            model: PriceModel::Flat {
                amount: Dec(amount),
                timing,
                prorate: true,
            },
            included: None,
            minimum: None,
            maximum: None,
            zero_usage: ZeroUsage::Free,
            usage_proration: crate::plan::UsageProration::None,
        });
    }
    let mut whole_unit_ranges = false;
    let empty = Vec::new();
    let lago_charges = plan
        .get("charges")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (charge_idx, charge) in lago_charges.iter().enumerate() {
        let path = format!("{base}.charges[{charge_idx}]");
        let metric_code = str_field(charge, "billable_metric_code", &path)?.to_owned();
        let Some(model) = charge_model(charge, &path, &mut not_carried)? else {
            continue;
        };
        if model.whole_unit_ranges {
            whole_unit_ranges = true;
        }
        if charge.get("pay_in_advance").and_then(Value::as_bool) == Some(true) {
            not_carried.push(NotCarried::new(
                format!("{path}.pay_in_advance"),
                "billed in advance (Ratecard bills usage in arrears)",
            ));
        }
        let prorated = charge.get("prorated").and_then(Value::as_bool) == Some(true);
        // A prorated standard, volume or graduated charge of a recurring sum bills each unit
        // by the days it was held (graduated: Lago's prorated graduated ranges, event by
        // event); Lago's other prorated charges are not carried.
        let days_held = prorated
            && matches!(
                charge.get("charge_model").and_then(Value::as_str),
                Some("standard" | "volume" | "graduated")
            )
            && metrics_by_code.iter().any(|m| {
                m.get("code").and_then(Value::as_str) == Some(metric_code.as_str())
                    && m.get("aggregation_type").and_then(Value::as_str) == Some("sum_agg")
                    && m.get("recurring").and_then(Value::as_bool) == Some(true)
                    && m.get("rounding_function").is_none_or(Value::is_null)
            });
        if prorated && !days_held {
            not_carried.push(NotCarried::new(
                format!("{path}.prorated"),
                "prorated usage (carried for standard, volume and graduated charges of a recurring sum_agg only: priced on the full quantity)",
            ));
        }
        if charge
            .get("filters")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            not_carried.push(NotCarried::new(
                format!("{path}.filters"),
                "charge filters (prices per filter value) are not imported",
            ));
        }
        if !metrics.iter().any(|m| m.code == metric_code) {
            metrics.push(metric(&metric_code, metrics_by_code, &mut not_carried));
        }
        let id = charge
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map_or_else(|| format!("{metric_code}_{charge_idx}"), str::to_owned);
        // Lago's prorated graduated ranges bill the first range's flat amount at zero units
        // (`result_with_flat_amount(0, 0, 0)`).
        let zero_usage = match &model.model {
            PriceModel::Graduated { tiers }
                if days_held && tiers.first().is_some_and(|t| !t.flat_fee.is_zero()) =>
            {
                ZeroUsage::FirstTierFlatFee
            }
            _ => model.zero_usage,
        };
        charges.push(Charge {
            id,
            description: charge
                .get("invoice_display_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            metric: Some(metric_code),
            model: model.model,
            included: model.included.map(Dec),
            minimum: cents(charge, "min_amount_cents", minor, &path)?
                .filter(|m| !m.is_zero())
                .map(Dec),
            maximum: None,
            zero_usage,
            usage_proration: if days_held {
                crate::plan::UsageProration::DaysHeld
            } else {
                crate::plan::UsageProration::None
            },
        });
    }
    let trial_days = match plan.get("trial_period") {
        None | Some(Value::Null) => 0,
        Some(value) => {
            let days = number(value, &format!("{base}.trial_period"))?;
            if !days.fract().is_zero() {
                not_carried.push(NotCarried::new(
                    format!("{base}.trial_period"),
                    format!(
                        "a trial of {days} days: Ratecard trials are whole days, {} kept",
                        days.trunc()
                    ),
                ));
            }
            days.trunc()
                .to_u32()
                .ok_or_else(|| err(format!("{base}.trial_period"), "out of range"))?
        }
    };
    for (field, what) in [
        (
            "bill_charges_monthly",
            "charges billed monthly on a yearly plan",
        ),
        (
            "usage_thresholds",
            "progressive billing thresholds: when to issue an invoice is the caller's; rate each one with the usage's `split_line`",
        ),
    ] {
        match plan.get(field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(_) => not_carried.push(NotCarried::new(format!("{base}.{field}"), what)),
        }
    }
    let minimum_commitment = match plan.get("minimum_commitment") {
        Some(commitment) if commitment.is_object() => cents(
            commitment,
            "amount_cents",
            minor,
            &format!("{base}.minimum_commitment"),
        )?
        .map(Dec),
        _ => None,
    };
    let mut taxes = Vec::new();
    for (tax_idx, tax) in plan
        .get("taxes")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        let path = format!("{base}.taxes[{tax_idx}]");
        taxes.push(TaxRate {
            id: str_field(tax, "code", &path)?.to_owned(),
            name: tax
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            percent: Dec(number(
                tax.get("rate").unwrap_or(&Value::Null),
                &format!("{path}.rate"),
            )?),
            inclusive: false,
        });
    }
    Ok(Imported {
        plan: Plan {
            id,
            name: plan
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            currency: code,
            custom_units: Vec::new(),
            interval,
            rounding: RoundingPolicy::default(),
            tier_convention: TierConvention::UpperInclusive,
            tier_ranges: if whole_unit_ranges {
                TierRanges::WholeUnits
            } else {
                TierRanges::Continuous
            },
            last_tier: crate::plan::LastTier::Unbounded,
            charge_maximum: crate::plan::ChargeMaximum::BeforeDiscounts,
            charge_minimum: crate::plan::ChargeMinimum::BeforeDiscounts,
            proration: ProrationMode::Days,
            trial_days,
            metrics,
            charges,
            minimum_commitment,
            discounts: Vec::new(),
            taxes,
            credits: Vec::new(),
        },
        not_carried,
    })
}

fn interval(plan: &Value, base: &str) -> Result<Interval, ImportError> {
    let (unit, count) = match str_field(plan, "interval", base)? {
        "weekly" => (IntervalUnit::Week, 1),
        "monthly" => (IntervalUnit::Month, 1),
        "quarterly" => (IntervalUnit::Quarter, 1),
        "semiannual" => (IntervalUnit::Month, 6),
        "yearly" => (IntervalUnit::Year, 1),
        other => {
            return Err(err(
                format!("{base}.interval"),
                format!("unknown Lago interval `{other}`"),
            ));
        }
    };
    Ok(Interval { unit, count })
}

/// A charge's model as imported, with what it needs from the plan and charge.
struct ImportedModel {
    model: PriceModel,
    included: Option<Decimal>,
    zero_usage: ZeroUsage,
    whole_unit_ranges: bool,
}

impl ImportedModel {
    fn of(model: PriceModel) -> ImportedModel {
        ImportedModel {
            model,
            included: None,
            zero_usage: ZeroUsage::Free,
            whole_unit_ranges: false,
        }
    }
}

/// The Ratecard model of a Lago charge, or `None` (noted in `not_carried`) for a model Ratecard
/// cannot price.
fn charge_model(
    charge: &Value,
    path: &str,
    not_carried: &mut Vec<NotCarried>,
) -> Result<Option<ImportedModel>, ImportError> {
    let props_path = format!("{path}.properties");
    let empty = Value::Object(serde_json::Map::new());
    let props = charge.get("properties").unwrap_or(&empty);
    let field = |name: &str| -> Result<Option<Decimal>, ImportError> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => number(value, &format!("{props_path}.{name}")).map(Some),
        }
    };
    let required = |name: &str| -> Result<Decimal, ImportError> {
        field(name)?.ok_or_else(|| err(format!("{props_path}.{name}"), "missing"))
    };
    let model = match str_field(charge, "charge_model", path)? {
        "standard" => ImportedModel::of(PriceModel::PerUnit {
            unit_price: Dec(required("amount")?),
        }),
        "package" => ImportedModel::of(PriceModel::Package {
            package_size: Dec(required("package_size")?),
            package_price: Dec(required("amount")?),
            free_units: field("free_units")?.filter(|f| !f.is_zero()).map(Dec),
            rounding: PackageRounding::Up,
        }),
        kind @ ("graduated" | "volume" | "graduated_percentage") => {
            let key = format!("{kind}_ranges");
            let (tiers, whole_units) = ranges(props, &key, &format!("{props_path}.{key}"), kind)?;
            let first_flat = tiers.first().is_some_and(|t| !t.flat_fee.is_zero());
            let model = match kind {
                "graduated" => PriceModel::Graduated { tiers },
                "volume" => PriceModel::Volume { tiers },
                _ => PriceModel::Percentage {
                    percent: None,
                    tiers,
                    fixed_fee: None,
                    min_per_transaction: None,
                    max_per_transaction: None,
                    free_events: None,
                    fixed_fee_within_free_amount: FixedFeeWithinFreeAmount::Charged,
                },
            };
            ImportedModel {
                model,
                included: None,
                // Lago's volume bills the flat amount of the range holding 0 units.
                zero_usage: if kind == "volume" && first_flat {
                    ZeroUsage::FirstTierFlatFee
                } else {
                    ZeroUsage::Free
                },
                whole_unit_ranges: whole_units,
            }
        }
        "percentage" => {
            let mut model = ImportedModel::of(PriceModel::Percentage {
                percent: Some(Dec(required("rate")?)),
                tiers: Vec::new(),
                fixed_fee: field("fixed_amount")?.filter(|f| !f.is_zero()).map(Dec),
                min_per_transaction: field("per_transaction_min_amount")?.map(Dec),
                max_per_transaction: field("per_transaction_max_amount")?.map(Dec),
                free_events: None,
                fixed_fee_within_free_amount: FixedFeeWithinFreeAmount::Charged,
            });
            // With free events or per-transaction bounds, the engine spends `included` on the
            // transactions themselves, as Lago spends its free amount.
            model.included = field("free_units_per_total_aggregation")?.filter(|f| !f.is_zero());
            let free_events = field("free_units_per_events")?
                .filter(|f| !f.is_zero())
                .and_then(|f| f.to_u64());
            if let PriceModel::Percentage {
                free_events: slot,
                fixed_fee,
                min_per_transaction,
                max_per_transaction,
                fixed_fee_within_free_amount,
                ..
            } = &mut model.model
            {
                *slot = free_events;
                // Alone, Lago waives the fixed amount of the transactions whose running total
                // is below the free amount.
                if model.included.is_some()
                    && free_events.is_none()
                    && min_per_transaction.is_none()
                    && max_per_transaction.is_none()
                    && fixed_fee.is_some()
                {
                    *fixed_fee_within_free_amount = FixedFeeWithinFreeAmount::Waived;
                }
            }
            model
        }
        other => {
            not_carried.push(NotCarried::new(
                format!("{path}.charge_model"),
                format!(
                    "charge model `{other}` has no Ratecard equivalent: the charge is not imported"
                ),
            ));
            return Ok(None);
        }
    };
    Ok(Some(model))
}

/// Lago ranges as tiers. `from_value` is copied when it is the previous `to_value` + 1 (Lago's
/// whole-unit ranges, `whole_units` true); adjacent ranges (`from_value` = previous
/// `to_value`) need no `from`.
fn ranges(
    props: &Value,
    key: &str,
    path: &str,
    kind: &str,
) -> Result<(Vec<Tier>, bool), ImportError> {
    let list = props
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, "expected a list of ranges"))?;
    let mut tiers = Vec::with_capacity(list.len());
    let mut whole_units = false;
    let mut previous: Option<Decimal> = None;
    for (idx, range) in list.iter().enumerate() {
        let rpath = format!("{path}[{idx}]");
        let get = |name: &str| -> Result<Option<Decimal>, ImportError> {
            match range.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => number(value, &format!("{rpath}.{name}")).map(Some),
            }
        };
        let from = get("from_value")?.unwrap_or_default();
        let up_to = get("to_value")?;
        let price_field = if kind == "graduated_percentage" {
            "rate"
        } else {
            "per_unit_amount"
        };
        let copied_from = match previous {
            Some(previous) if previous.checked_add(Decimal::ONE) == Some(from) => {
                whole_units = true;
                Some(Dec(from))
            }
            Some(previous) if previous == from => None,
            Some(_) => Some(Dec(from)), // a gap or overlap: the validator reports it
            None => (!from.is_zero()).then_some(Dec(from)),
        };
        tiers.push(Tier {
            from: copied_from,
            up_to: up_to.map(Dec),
            unit_price: Dec(get(price_field)?.unwrap_or_default()),
            flat_fee: Dec(get("flat_amount")?.unwrap_or_default()),
        });
        previous = up_to;
    }
    if whole_units && let Some(first) = tiers.first_mut() {
        first.from = Some(Dec(Decimal::ZERO));
    }
    Ok((tiers, whole_units))
}

/// The Ratecard metric for a Lago billable metric code, from the billable metrics given (a
/// missing one becomes a count, noted).
fn metric(code: &str, given: &[Value], not_carried: &mut Vec<NotCarried>) -> Metric {
    let mut metric = Metric {
        code: code.to_owned(),
        name: String::new(),
        unit: String::new(),
        event: None,
        aggregation: Aggregation::Count,
        filters: Vec::new(),
        group_by: Vec::new(),
        conversion: None,
        negative_values: NegativeValues::Bill,
        recurrence: crate::plan::Recurrence::PerPeriod,
    };
    let Some((idx, lago)) = given
        .iter()
        .enumerate()
        .find(|(_, m)| m.get("code").and_then(Value::as_str) == Some(code))
    else {
        not_carried.push(NotCarried::new(
            "$.billable_metrics",
            format!(
                "billable metric `{code}` is not given: imported as a count of `{code}` events"
            ),
        ));
        return metric;
    };
    let path = format!("$.billable_metrics[{idx}]");
    metric.name = lago
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let property = lago
        .get("field_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match lago.get("aggregation_type").and_then(Value::as_str) {
        Some("count_agg") | None => {}
        Some("sum_agg") => metric.aggregation = Aggregation::Sum { property },
        Some("max_agg") => metric.aggregation = Aggregation::Max { property },
        Some("unique_count_agg") => {
            metric.aggregation = Aggregation::UniqueCount {
                property,
                operation_property: None,
            }
        }
        Some("latest_agg") => {
            metric.aggregation = Aggregation::Latest { property };
            metric.negative_values = NegativeValues::FloorAtZero;
        }
        Some(other) => not_carried.push(NotCarried::new(
            format!("{path}.aggregation_type"),
            format!("aggregation `{other}` is not imported: the metric counts events instead"),
        )),
    }
    let recurring = lago.get("recurring").and_then(Value::as_bool) == Some(true);
    if recurring
        && matches!(
            metric.aggregation,
            Aggregation::Sum { .. } | Aggregation::UniqueCount { .. }
        )
    {
        // Carried: each period's `carry_in` is the previous period's value (a sum) or its
        // active values (a unique count, whose events' `operation_type` adds or removes).
        metric.recurrence = crate::plan::Recurrence::CarriedOver;
    } else if recurring {
        not_carried.push(NotCarried::new(
            format!("{path}.recurring"),
            "a recurring metric (its value carried from period to period) is not imported: each period aggregates its own events",
        ));
    }
    for field in ["filters", "expression"] {
        match lago.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.is_empty() => {}
            Some(Value::String(text)) if text.is_empty() => {}
            Some(_) => not_carried.push(NotCarried::new(
                format!("{path}.{field}"),
                format!("metric `{field}` is not imported"),
            )),
        }
    }
    let mode = match lago.get("rounding_function").and_then(Value::as_str) {
        Some("round") => Some(QuantityRoundingMode::Round),
        Some("ceil") => Some(QuantityRoundingMode::Ceil),
        Some("floor") => Some(QuantityRoundingMode::Floor),
        _ => None,
    };
    if let Some(mode) = mode {
        let precision = lago
            .get("rounding_precision")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0);
        metric.conversion = Some(Conversion {
            multiply_by: None,
            divide_by: None,
            round: Some(QuantityRounding { mode, precision }),
        });
    }
    metric
}

/// `<field>` in minor units (an integer, or its text) → major units of the currency.
fn cents(
    value: &Value,
    field: &str,
    minor_units: u32,
    path: &str,
) -> Result<Option<Decimal>, ImportError> {
    let cents = match value.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => number(v, &format!("{path}.{field}"))?,
    };
    let mut major = cents;
    for _ in 0..minor_units {
        major = major
            .checked_div(Decimal::TEN)
            .ok_or_else(|| err(format!("{path}.{field}"), "amount out of range"))?;
    }
    Ok(Some(major.normalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::NoPlugins;
    use crate::rate::quote;
    use crate::usage::Usage;

    /// The shape of Lago's `GET /api/v1/plans/{code}` (docs.getlago.com/api-reference/plans),
    /// with the billable metrics beside it.
    const STARTUP: &str = r#"{
      "plan": {
        "lago_id": "1a901a90-1a90-1a90-1a90-1a901a901a90", "name": "Startup", "code": "startup",
        "interval": "monthly", "amount_cents": 10000, "amount_currency": "USD",
        "invoice_display_name": "Startup plan", "trial_period": 5, "pay_in_advance": true,
        "bill_charges_monthly": null,
        "minimum_commitment": {"amount_cents": 100000, "interval": "monthly"},
        "taxes": [{"code": "french_standard_vat", "name": "TVA", "rate": 20}],
        "charges": [
          {"billable_metric_code": "requests", "charge_model": "package", "pay_in_advance": false,
           "prorated": false, "min_amount_cents": 3000,
           "properties": {"amount": "30", "free_units": 100, "package_size": 1000}, "filters": []},
          {"billable_metric_code": "cpu", "charge_model": "graduated", "pay_in_advance": false,
           "prorated": false, "min_amount_cents": 0,
           "properties": {"graduated_ranges": [
             {"from_value": 0, "to_value": 10, "flat_amount": "10", "per_unit_amount": "0.5"},
             {"from_value": 11, "to_value": null, "flat_amount": "0", "per_unit_amount": "0.4"}]},
           "filters": []},
          {"billable_metric_code": "payments", "charge_model": "percentage", "pay_in_advance": true,
           "properties": {"rate": "1", "fixed_amount": "0.5", "free_units_per_events": 3}},
          {"billable_metric_code": "tokens", "charge_model": "dynamic", "properties": {}}
        ]
      },
      "billable_metrics": [
        {"code": "requests", "name": "Requests", "aggregation_type": "count_agg"},
        {"code": "cpu", "name": "CPU", "aggregation_type": "sum_agg", "field_name": "cpu",
         "rounding_function": "round", "rounding_precision": -1},
        {"code": "payments", "aggregation_type": "sum_agg", "field_name": "amount", "recurring": true}
      ]
    }"#;

    fn imported() -> Imported {
        lago_plan(&serde_json::from_str(STARTUP).unwrap(), None).unwrap()
    }

    #[test]
    fn a_lago_plan_keeps_its_ranges_and_reports_what_it_leaves_out() {
        let imported = imported();
        let plan = &imported.plan;
        let report = crate::validate::validate_plan(plan);
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(plan.id, "startup");
        assert_eq!(plan.tier_ranges, TierRanges::WholeUnits);
        assert_eq!(plan.trial_days, 5);
        assert_eq!(plan.minimum_commitment, Some(Dec(Decimal::new(1000, 0))));
        let paths: Vec<String> = imported.not_carried.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            paths,
            [
                "$.plan.charges[2].pay_in_advance: billed in advance (Ratecard bills usage in arrears)",
                "$.plan.charges[3].charge_model: charge model `dynamic` has no Ratecard equivalent: the charge is not imported",
            ]
        );
        assert!(matches!(
            plan.charges
                .iter()
                .find(|c| c.id == "payments_2")
                .map(|c| &c.model),
            Some(PriceModel::Percentage {
                free_events: Some(3),
                ..
            })
        ));
        let payments = plan.metrics.iter().find(|m| m.code == "payments").unwrap();
        assert_eq!(payments.recurrence, crate::plan::Recurrence::CarriedOver);
        let cpu = plan.metrics.iter().find(|m| m.code == "cpu").unwrap();
        assert_eq!(
            cpu.conversion
                .as_ref()
                .and_then(|c| c.round)
                .map(|r| r.precision),
            Some(-1)
        );
    }

    #[test]
    fn a_lago_plan_prices_as_lago_computes() {
        let plan = imported().plan;
        let usage: Usage = serde_json::from_str(
            r#"{"subscription":{"start":"2026-11-01"},"period":{"index":1},
                "quantities":{"requests":"2500","cpu":"25","payments":"0"}}"#,
        )
        .unwrap();
        let invoice = quote(&plan, &usage, &NoPlugins).unwrap();
        let amounts: Vec<(String, String)> = invoice
            .lines
            .iter()
            .map(|l| (l.charge_id.clone(), l.amount.0.to_string()))
            .collect();
        // Subscription 100 in advance; requests: 2400 billable → 3 packages × 30 = 90;
        // cpu (Lago: 10 × 0.5 + 10 flat, then 25 − 11 + 1 = 15 × 0.4) = 21; payments 0;
        // commitment 1000 − 211 = 789; TVA 20 %.
        assert_eq!(
            amounts,
            [
                ("subscription", "100.00"),
                ("requests_0", "90.00"),
                ("cpu_1", "21.00"),
                ("payments_2", "0.00"),
                ("minimum_commitment", "789.00"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(invoice.total.0.to_string(), "1200.00");
    }

    #[test]
    fn lago_graduated_percentage_from_its_documentation() {
        // getlago.com/docs/v2/guide/rate-cards/pricing-models/graduated-percentage: 5,050 USD
        // over the period costs 591 USD.
        let export = serde_json::json!({"code": "fintech", "interval": "monthly",
            "amount_cents": 0, "amount_currency": "USD",
            "charges": [{"billable_metric_code": "payment_volume", "charge_model": "graduated_percentage",
              "properties": {"graduated_percentage_ranges": [
                {"from_value": 0, "to_value": 1000, "rate": "1", "flat_amount": "200"},
                {"from_value": 1001, "to_value": 10000, "rate": "2", "flat_amount": "300"},
                {"from_value": 10001, "to_value": null, "rate": "3", "flat_amount": "400"}]}}],
            "billable_metrics": []});
        let imported = lago_plan(
            &serde_json::json!({"plan": export, "billable_metrics": [
            {"code": "payment_volume", "aggregation_type": "sum_agg", "field_name": "amount"}]}),
            Some("f"),
        )
        .unwrap();
        assert!(
            imported.not_carried.is_empty(),
            "{:?}",
            imported.not_carried
        );
        let usage: Usage = serde_json::from_str(
            r#"{"period":{"index":0},"quantities":{"payment_volume":"5050"}}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "591.00");
    }

    /// A free amount combined with free events and per-transaction bounds is carried, and
    /// prices as Lago's spec computes it (getlago/lago-api
    /// `spec/services/charge_models/percentage_service_spec.rb`: 2.691).
    #[test]
    fn lago_free_amount_with_free_events_and_bounds_is_carried() {
        let export = serde_json::json!({"plan": {"code": "p", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "payments", "charge_model": "percentage",
              "properties": {"rate": "2.99", "free_units_per_events": 3,
                             "free_units_per_total_aggregation": "10000",
                             "per_transaction_min_amount": "1.75", "per_transaction_max_amount": "12"}}]},
            "billable_metrics": [{"code": "payments", "aggregation_type": "sum_agg", "field_name": "amount"}]});
        let imported = lago_plan(&export, None).unwrap();
        assert!(
            imported.not_carried.is_empty(),
            "{:?}",
            imported.not_carried
        );
        let charge = &imported.plan.charges[0];
        assert_eq!(charge.included, Some(Dec(Decimal::new(10000, 0))));
        assert!(matches!(
            charge.model,
            PriceModel::Percentage {
                free_events: Some(3),
                ..
            }
        ));
        let report = crate::validate::validate_plan(&imported.plan);
        assert!(report.is_ok(), "{report:?}");
        let usage: Usage = serde_json::from_str(
            r#"{"period":{"index":0},"quantities":{"payments":[
                {"quantity":"10090","transactions":["10","80","10000"]}]}}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "2.69");
    }

    /// A free amount alone with a fixed amount: Lago waives the fixed amount below it
    /// (`percentage_service_spec.rb` "when free_units_per_events is nil": 11.15).
    #[test]
    fn lago_free_amount_alone_with_fixed_amount_is_carried() {
        let export = serde_json::json!({"plan": {"code": "p", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "payments", "charge_model": "percentage",
              "properties": {"rate": "1.3", "fixed_amount": "2.0",
                             "free_units_per_total_aggregation": "250.0"}}]},
            "billable_metrics": [{"code": "payments", "aggregation_type": "sum_agg", "field_name": "amount"}]});
        let imported = lago_plan(&export, None).unwrap();
        assert!(
            imported.not_carried.is_empty(),
            "{:?}",
            imported.not_carried
        );
        let charge = &imported.plan.charges[0];
        assert!(matches!(
            charge.model,
            PriceModel::Percentage {
                fixed_fee_within_free_amount: FixedFeeWithinFreeAmount::Waived,
                ..
            }
        ));
        let report = crate::validate::validate_plan(&imported.plan);
        assert!(report.is_ok(), "{report:?}");
        let usage: Usage = serde_json::from_str(
            r#"{"period":{"index":0},"quantities":{"payments":[
                {"quantity":"800","transactions":["50","100","250","400"]}]}}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "11.15");
    }

    /// A prorated graduated charge of a recurring sum: Lago's prorated graduated ranges
    /// (`prorated_graduated_service_spec.rb` "with negative event that results in changing
    /// range": 125).
    #[test]
    fn lago_prorated_graduated_is_carried() {
        let export = serde_json::json!({"plan": {"code": "p", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "seats", "charge_model": "graduated", "prorated": true,
              "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": 5, "per_unit_amount": "10", "flat_amount": "100"},
                {"from_value": 6, "to_value": null, "per_unit_amount": "5", "flat_amount": "50"}]}}]},
            "billable_metrics": [{"code": "seats", "aggregation_type": "sum_agg", "field_name": "seats", "recurring": true}]});
        let imported = lago_plan(&export, None).unwrap();
        assert!(
            imported.not_carried.is_empty(),
            "{:?}",
            imported.not_carried
        );
        let charge = &imported.plan.charges[0];
        assert_eq!(
            charge.usage_proration,
            crate::plan::UsageProration::DaysHeld
        );
        assert_eq!(charge.zero_usage, ZeroUsage::FirstTierFlatFee);
        let usage: Usage = serde_json::from_str(
            r#"{"subscription":{"start":"2026-10-01"},"period":{"index":1},"events":[
                {"id":"a","customer":"c","timestamp":"2026-11-10T10:00:00Z","code":"seats","properties":{"seats":"5"}},
                {"id":"b","customer":"c","timestamp":"2026-11-16T10:00:00Z","code":"seats","properties":{"seats":"-2"}}],
                "customer":{"id":"c"}}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "125.00");
        let empty: Usage = serde_json::from_str(
            r#"{"subscription":{"start":"2026-10-01"},"period":{"index":1},"customer":{"id":"c"}}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &empty, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "100.00");
    }

    /// A recurring unique count is carried over: the values active at the end of the previous
    /// period are the usage's `carry_in`, and `operation_type` adds or removes values.
    #[test]
    fn lago_recurring_unique_count_is_carried_over() {
        let export = serde_json::json!({"plan": {"code": "seats", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "seats", "charge_model": "standard",
              "properties": {"amount": "10"}}]},
            "billable_metrics": [{"code": "seats", "aggregation_type": "unique_count_agg",
              "field_name": "seat_id", "recurring": true}]});
        let imported = lago_plan(&export, None).unwrap();
        assert!(
            imported.not_carried.is_empty(),
            "{:?}",
            imported.not_carried
        );
        let seats = &imported.plan.metrics[0];
        assert_eq!(seats.recurrence, crate::plan::Recurrence::CarriedOver);
        assert_eq!(
            seats.aggregation.operation_property(seats.recurrence),
            Some("operation_type")
        );
        let usage: Usage = serde_json::from_str(
            r#"{"customer":{"id":"c"},"period":{"index":1},"subscription":{"start":"2026-11-01"},
                "carry_in":{"seats":["a","b"]},
                "events":[
                  {"id":"1","customer":"c","code":"seats","timestamp":"2026-12-02T00:00:00Z",
                   "properties":{"seat_id":"a","operation_type":"remove"}},
                  {"id":"2","customer":"c","code":"seats","timestamp":"2026-12-03T00:00:00Z",
                   "properties":{"seat_id":"c"}}]}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "20.00"); // b and c
        assert_eq!(
            invoice.lines[0].breakdown[0].description,
            "2 values carried over (a, b); 2 active at the end (b, c)"
        );
    }

    /// A prorated standard charge of a recurring sum bills each seat by the days it was held,
    /// here in a first period shortened by calendar billing (anchor on the 1st): a seat added
    /// on Nov 16 holds 15 of November's 30 days, 10 × 0.5 = 5.00 (Lago's prorated sum).
    #[test]
    fn lago_prorated_recurring_sum_is_billed_by_days_held() {
        let export = serde_json::json!({"plan": {"code": "seats", "interval": "monthly", "amount_currency": "USD",
            "charges": [
              {"billable_metric_code": "seats", "charge_model": "standard", "prorated": true,
               "properties": {"amount": "10"}},
              {"billable_metric_code": "seats", "charge_model": "package", "prorated": true,
               "properties": {"amount": "5", "package_size": "10"}}]},
            "billable_metrics": [{"code": "seats", "aggregation_type": "sum_agg",
              "field_name": "seats", "recurring": true}]});
        let mut imported = lago_plan(&export, None).unwrap();
        assert_eq!(
            imported.plan.charges[0].usage_proration,
            crate::plan::UsageProration::DaysHeld
        );
        let paths: Vec<&str> = imported
            .not_carried
            .iter()
            .map(|n| n.path.as_str())
            .collect();
        assert_eq!(paths, ["$.plan.charges[1].prorated"]);
        imported.plan.charges.truncate(1);
        let report = crate::validate::validate_plan(&imported.plan);
        assert!(report.is_ok(), "{report:?}");
        let usage: Usage = serde_json::from_str(
            r#"{"customer":{"id":"c"},"period":{"index":0},
                "subscription":{"start":"2026-11-16","billing_anchor":"2026-11-01"},
                "events":[{"id":"1","customer":"c","code":"seats","timestamp":"2026-11-16T09:00:00Z",
                           "properties":{"seats":"1"}}]}"#,
        )
        .unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.lines[0].quantity.0.to_string(), "0.5");
        assert_eq!(invoice.total.0.to_string(), "5.00");
    }

    #[test]
    fn lago_free_amount_alone_with_a_fixed_amount_waives_it() {
        let export = serde_json::json!({"code": "p", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "amount", "charge_model": "percentage",
              "properties": {"rate": "2", "fixed_amount": "0.5",
                             "free_units_per_total_aggregation": "500"}}]});
        let imported = lago_plan(&export, None).unwrap();
        assert_eq!(
            imported.plan.charges[0].included,
            Some(Dec(Decimal::new(500, 0)))
        );
        assert!(matches!(
            imported.plan.charges[0].model,
            PriceModel::Percentage {
                fixed_fee_within_free_amount: FixedFeeWithinFreeAmount::Waived,
                ..
            }
        ));
        assert!(
            imported
                .not_carried
                .iter()
                .all(|n| !n.path.contains("free_units_per_total_aggregation")),
            "{:?}",
            imported.not_carried
        );
    }

    #[test]
    fn lago_volume_bills_the_first_range_flat_amount_at_zero_and_bad_input_names_its_path() {
        let export = serde_json::json!({"code": "v", "interval": "weekly", "amount_currency": "EUR",
            "charges": [{"billable_metric_code": "seats", "charge_model": "volume",
              "properties": {"volume_ranges": [
                {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
                {"from_value": 101, "to_value": null, "per_unit_amount": "1", "flat_amount": "0"}]}}]});
        let imported = lago_plan(&export, None).unwrap();
        assert_eq!(
            imported.plan.charges[0].zero_usage,
            ZeroUsage::FirstTierFlatFee
        );
        assert_eq!(imported.not_carried[0].path, "$.billable_metrics");
        let usage: Usage =
            serde_json::from_str(r#"{"period":{"index":0},"quantities":{"seats":"0"}}"#).unwrap();
        let invoice = quote(&imported.plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.total.0.to_string(), "1.00");

        let bad = serde_json::json!({"plan": {"code": "x", "interval": "daily", "amount_currency": "USD"}});
        assert_eq!(
            lago_plan(&bad, None).unwrap_err().to_string(),
            "$.plan.interval: unknown Lago interval `daily`"
        );
        let bad_amount = serde_json::json!({"code": "x", "interval": "monthly", "amount_currency": "USD",
            "charges": [{"billable_metric_code": "m", "charge_model": "standard", "properties": {"amount": "abc"}}]});
        assert_eq!(
            lago_plan(&bad_amount, None).unwrap_err().path,
            "$.charges[0].properties.amount"
        );
    }
}
