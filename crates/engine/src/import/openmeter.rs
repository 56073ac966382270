//! `ratecard import openmeter`: an OpenMeter plan, as OpenMeter's API returns it (`GET
//! /api/v1/plans/{id}`: `{"plan": {...}}` or the plan object), with the features and meters its
//! rate cards name beside it (`{"features": [...], "meters": [...]}`, as `GET
//! /api/v1/features` and `GET /api/v1/meters` list them), into one Ratecard plan.
//!
//! | OpenMeter (`api/openapi.yaml`)                              | Ratecard                                        |
//! |-------------------------------------------------------------|-------------------------------------------------|
//! | plan `key`, `name`, `currency`                              | `id`, `name`, `currency`                        |
//! | plan `billingCadence` (ISO 8601 `P1M`, `P1W`, `P3M`, `P1Y`) | `interval` (day / week / month / year × count)  |
//! | `proRatingConfig` (`enabled`, `prorate_prices`)             | `proration: seconds`, flat fees `prorate`       |
//! | the last phase's `rateCards` (earlier phases: not carried)  | charges, keyed by the rate card `key`           |
//! | `flat_fee` / `flat` price (`amount`, `paymentTerm`)         | `flat` (advance by default, as OpenMeter's)     |
//! | `unit` price (`amount`)                                     | `per_unit`                                      |
//! | `tiered` `graduated` / `volume` (`upToAmount`, `flatPrice`, `unitPrice`) | `graduated` / `volume`, `upper_inclusive` |
//! | a first tier with a flat price (billed at zero usage)       | `zero_usage: first_tier_flat_fee`               |
//! | a last tier with `upToAmount`                               | plan `last_tier: bounded`                       |
//! | `package` (`amount`, `quantityPerPackage`)                  | `package`, rounded up                           |
//! | `dynamic` (`multiplier`, default 1)                         | `per_unit` at the multiplier                    |
//! | `minimumAmount` / `maximumAmount`                           | charge `minimum` / `maximum`                    |
//! | `discounts.percentage.percentage`                           | a discount scoped to the charge                 |
//! | `maximumAmount` with a percentage discount                  | plan `charge_maximum: after_discounts`          |
//! | `minimumAmount` with a percentage discount                  | plan `charge_minimum: after_discounts`          |
//! | `discounts.usage.quantity`                                  | charge `included`                               |
//! | feature `meterSlug`, `meterGroupByFilters`, `advancedMeterGroupByFilters` (`$eq`, `$in`) | metric `filters` |
//! | meter `SUM` / `COUNT` / `UNIQUE_COUNT` / `MAX` / `MIN` / `LATEST`, `eventType`, `valueProperty` `$.x` | `sum` / `count` / `unique_count` / `max` / `min` / `latest`, `event`, property `x` |
//!
//! Everything else is listed by its JSON path in [`Imported::not_carried`]: phases before the
//! last, one-time fees, a rate card billed at another cadence than the plan, entitlements and
//! tax config, `AVG` meters, nested value properties, filters other than `$eq` / `$in`.
//! Progressive billing is not part of an OpenMeter plan (the billing profile's
//! `workflow.invoicing.progressiveBilling`, each invoice's `asOf`): each progressive invoice is
//! a quote whose usage has a `split_line`.

use rust_decimal::Decimal;
use serde_json::Value;

use super::{ImportError, Imported, NotCarried, err, number, str_field};
use crate::decimal::Dec;
use crate::money::{Currency, RoundingPolicy};
use crate::plan::{
    Aggregation, Charge, ChargeMaximum, ChargeMinimum, Discount, FeeTiming, Filter, Interval,
    IntervalUnit, LastTier, Metric, NegativeValues, PackageRounding, Plan, PriceModel,
    ProrationMode, Tier, TierConvention, TierRanges, ZeroUsage,
};

/// Imports an OpenMeter plan (and the features and meters given beside it) as a Ratecard plan
/// with the plan's `key` as id, or `plan_id` when given.
pub fn openmeter_plan(export: &Value, plan_id: Option<&str>) -> Result<Imported, ImportError> {
    let (plan, base) = match export.get("plan") {
        Some(plan) => (plan, "$.plan"),
        None => (export, "$"),
    };
    if !plan.is_object() {
        return Err(err(base, "expected an OpenMeter plan object"));
    }
    let code = plan
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("USD")
        .to_ascii_uppercase();
    if Currency::iso(&code).is_none() {
        return Err(err(
            format!("{base}.currency"),
            format!("`{code}` is not an ISO 4217 currency"),
        ));
    }
    let id = match plan_id {
        Some(id) => id.to_owned(),
        None => str_field(plan, "key", base)?.to_owned(),
    };
    let cadence_text = str_field(plan, "billingCadence", base)?;
    let interval = cadence(cadence_text, &format!("{base}.billingCadence"))?;
    let prorate = prorates(plan);
    let phases = plan
        .get("phases")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err(format!("{base}.phases"), "expected a list of phases"))?;
    let mut importer = Importer {
        export,
        cadence: cadence_text,
        prorate,
        not_carried: Vec::new(),
        metrics: Vec::new(),
        charges: Vec::new(),
        discounts: Vec::new(),
        last_tier: LastTier::Unbounded,
        charge_maximum: ChargeMaximum::BeforeDiscounts,
        charge_minimum: ChargeMinimum::BeforeDiscounts,
    };
    let last_idx = phases.len() - 1;
    for (phase_idx, phase) in phases.iter().enumerate().take(last_idx) {
        let name = phase.get("key").and_then(Value::as_str).unwrap_or_default();
        let duration = phase
            .get("duration")
            .and_then(Value::as_str)
            .unwrap_or("null");
        importer.not_carried.push(NotCarried::new(
            format!("{base}.phases[{phase_idx}]"),
            format!(
                "phase `{name}` (duration {duration}) is not imported: the plan is the last phase; import an earlier phase as a plan of its own"
            ),
        ));
    }
    let phase_path = format!("{base}.phases[{last_idx}]");
    let rate_cards = phases[last_idx]
        .get("rateCards")
        .and_then(Value::as_array)
        .ok_or_else(|| err(format!("{phase_path}.rateCards"), "expected a list"))?;
    for (card_idx, card) in rate_cards.iter().enumerate() {
        importer.rate_card(card, &format!("{phase_path}.rateCards[{card_idx}]"))?;
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
            tier_ranges: TierRanges::Continuous,
            last_tier: importer.last_tier,
            charge_maximum: importer.charge_maximum,
            charge_minimum: importer.charge_minimum,
            proration: ProrationMode::Seconds,
            trial_days: 0,
            metrics: importer.metrics,
            charges: importer.charges,
            minimum_commitment: None,
            discounts: importer.discounts,
            taxes: Vec::new(),
            credits: Vec::new(),
        },
        not_carried: importer.not_carried,
    })
}

/// An ISO 8601 duration of one unit (`P1M`, `P2W`, `P1Y`, `P10D`) as an interval.
fn cadence(text: &str, path: &str) -> Result<Interval, ImportError> {
    let bad = || {
        err(
            path,
            format!("`{text}` is not a billing cadence of days, weeks, months or years"),
        )
    };
    let body = text.strip_prefix('P').ok_or_else(bad)?;
    // By characters: the last byte of untrusted text need not end a character.
    let last = body.chars().last().ok_or_else(bad)?;
    let count = &body[..body.len() - last.len_utf8()];
    let unit = match last {
        'D' => IntervalUnit::Day,
        'W' => IntervalUnit::Week,
        'M' => IntervalUnit::Month,
        'Y' => IntervalUnit::Year,
        _ => return Err(bad()),
    };
    let count: u32 = count.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(bad());
    }
    Ok(Interval { unit, count })
}

/// OpenMeter prorates flat prices unless `proRatingConfig` turns it off (default: enabled,
/// `prorate_prices`).
fn prorates(plan: &Value) -> bool {
    match plan.get("proRatingConfig") {
        Some(config) if config.is_object() => {
            config.get("enabled").and_then(Value::as_bool) != Some(false)
                && config
                    .get("mode")
                    .and_then(Value::as_str)
                    .is_none_or(|m| m == "prorate_prices")
        }
        _ => true,
    }
}

/// What the rate cards build up, and what they could not carry.
struct Importer<'a> {
    export: &'a Value,
    cadence: &'a str,
    prorate: bool,
    not_carried: Vec<NotCarried>,
    metrics: Vec<Metric>,
    charges: Vec<Charge>,
    discounts: Vec<Discount>,
    last_tier: LastTier,
    charge_maximum: ChargeMaximum,
    charge_minimum: ChargeMinimum,
}

impl Importer<'_> {
    fn note(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.not_carried.push(NotCarried::new(path, message));
    }

    /// One rate card: its charge, its discount, and the metric of its feature.
    fn rate_card(&mut self, card: &Value, path: &str) -> Result<(), ImportError> {
        let key = str_field(card, "key", path)?.to_owned();
        let kind = str_field(card, "type", path)?;
        for (field, what) in [
            (
                "entitlementTemplate",
                "entitlements (access, usage limits, grants) are not part of a Ratecard plan",
            ),
            (
                "taxConfig",
                "a rate card's tax config is not imported: add the plan's `taxes`",
            ),
        ] {
            if card.get(field).is_some_and(|v| !v.is_null()) {
                self.note(format!("{path}.{field}"), what);
            }
        }
        match card.get("billingCadence") {
            Some(Value::String(cadence)) if cadence != self.cadence => {
                self.note(
                    format!("{path}.billingCadence"),
                    format!(
                        "billed every {cadence} on a plan billed every {}: the charge is not imported",
                        self.cadence
                    ),
                );
                return Ok(());
            }
            None | Some(Value::Null) if kind == "flat_fee" => {
                self.note(
                    format!("{path}.billingCadence"),
                    "a one-time fee (no billing cadence) is not a recurring charge: the charge is not imported; bill it as a one-off",
                );
                return Ok(());
            }
            _ => {}
        }
        let price = match card.get("price") {
            None | Some(Value::Null) => return Ok(()), // free: nothing is billed
            Some(price) => price,
        };
        let price_path = format!("{path}.price");
        let price_type = str_field(price, "type", &price_path)?;
        let metric = match (kind, price_type) {
            ("flat_fee", _) | (_, "flat") => None,
            ("usage_based", _) => {
                let Some(feature) = card.get("featureKey").and_then(Value::as_str) else {
                    self.note(
                        format!("{path}.featureKey"),
                        "a usage-based rate card without a feature has no usage: the charge is not imported",
                    );
                    return Ok(());
                };
                if !self.metrics.iter().any(|m| m.code == feature) {
                    let metric = self.metric(feature);
                    self.metrics.push(metric);
                }
                Some(feature.to_owned())
            }
            (other, _) => {
                return Err(err(
                    format!("{path}.type"),
                    format!("expected `flat_fee` or `usage_based`, found `{other}`"),
                ));
            }
        };
        let model = self.price(price, price_type, &price_path)?;
        let zero_usage = match &model {
            PriceModel::Graduated { tiers } | PriceModel::Volume { tiers }
                if tiers.first().is_some_and(|t| !t.flat_fee.is_zero()) =>
            {
                ZeroUsage::FirstTierFlatFee
            }
            _ => ZeroUsage::Free,
        };
        let amount = |field: &str| -> Result<Option<Dec>, ImportError> {
            match price.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => number(v, &format!("{price_path}.{field}")).map(|d| Some(Dec(d))),
            }
        };
        let minimum = amount("minimumAmount")?;
        let maximum = amount("maximumAmount")?;
        let discounts_path = format!("{path}.discounts");
        let discounts = card.get("discounts").filter(|d| !d.is_null());
        let percent = match discounts.and_then(|d| d.get("percentage")) {
            None | Some(Value::Null) => None,
            Some(p) => Some(number(
                p.get("percentage").unwrap_or(&Value::Null),
                &format!("{discounts_path}.percentage.percentage"),
            )?),
        };
        let included = match discounts.and_then(|d| d.get("usage")) {
            None | Some(Value::Null) => None,
            Some(u) => {
                let quantity = number(
                    u.get("quantity").unwrap_or(&Value::Null),
                    &format!("{discounts_path}.usage.quantity"),
                )?;
                if metric.is_none() {
                    self.note(
                        format!("{discounts_path}.usage"),
                        "a usage discount of a flat price has no usage to discount",
                    );
                    None
                } else {
                    Some(Dec(quantity))
                }
            }
        };
        if let Some(percent) = percent.filter(|p| !p.is_zero()) {
            if maximum.is_some() {
                // OpenMeter applies the percentage discount, then the maximum spend.
                self.charge_maximum = ChargeMaximum::AfterDiscounts;
            }
            if minimum.is_some() {
                // OpenMeter's minimum spend is net of the percentage discount.
                self.charge_minimum = ChargeMinimum::AfterDiscounts;
            }
            self.discounts.push(Discount {
                id: format!("{key}.discount"),
                description: format!("{percent} % off {key}"),
                percent: Some(Dec(percent)),
                amount: None,
                duration_periods: None,
                charges: Some(vec![key.clone()]),
            });
        }
        self.charges.push(Charge {
            id: key,
            description: card
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            metric,
            model,
            included,
            minimum,
            maximum,
            zero_usage,
            usage_proration: crate::plan::UsageProration::None,
        });
        Ok(())
    }

    /// The Ratecard model of an OpenMeter price.
    fn price(
        &mut self,
        price: &Value,
        price_type: &str,
        path: &str,
    ) -> Result<PriceModel, ImportError> {
        let amount = |value: &Value, field: &str, at: &str| -> Result<Decimal, ImportError> {
            number(
                value.get(field).unwrap_or(&Value::Null),
                &format!("{at}.{field}"),
            )
        };
        Ok(match price_type {
            "flat" => {
                let timing = match price.get("paymentTerm").and_then(Value::as_str) {
                    None | Some("in_advance") => FeeTiming::Advance,
                    Some("in_arrears") => FeeTiming::Arrears,
                    Some(other) => {
                        return Err(err(
                            format!("{path}.paymentTerm"),
                            format!("expected `in_advance` or `in_arrears`, found `{other}`"),
                        ));
                    }
                };
                PriceModel::Flat {
                    amount: Dec(amount(price, "amount", path)?),
                    timing,
                    prorate: self.prorate,
                }
            }
            "unit" => PriceModel::PerUnit {
                unit_price: Dec(amount(price, "amount", path)?),
            },
            "dynamic" => PriceModel::PerUnit {
                unit_price: Dec(match price.get("multiplier") {
                    None | Some(Value::Null) => Decimal::ONE,
                    Some(m) => number(m, &format!("{path}.multiplier"))?,
                }),
            },
            "package" => PriceModel::Package {
                package_size: Dec(amount(price, "quantityPerPackage", path)?),
                package_price: Dec(amount(price, "amount", path)?),
                free_units: None,
                rounding: PackageRounding::Up,
            },
            "tiered" => {
                let tiers = self.tiers(price, path)?;
                match price.get("mode").and_then(Value::as_str) {
                    Some("graduated") => PriceModel::Graduated { tiers },
                    Some("volume") => PriceModel::Volume { tiers },
                    other => {
                        return Err(err(
                            format!("{path}.mode"),
                            format!("expected `graduated` or `volume`, found {other:?}"),
                        ));
                    }
                }
            }
            other => {
                return Err(err(
                    format!("{path}.type"),
                    format!("unknown price type `{other}`"),
                ));
            }
        })
    }

    /// A tiered price's tiers (`upToAmount` inclusive, as Ratecard's `upper_inclusive`).
    fn tiers(&mut self, price: &Value, path: &str) -> Result<Vec<Tier>, ImportError> {
        let list = price
            .get("tiers")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| err(format!("{path}.tiers"), "expected a list of tiers"))?;
        let mut tiers = Vec::with_capacity(list.len());
        for (tier_idx, tier) in list.iter().enumerate() {
            let tpath = format!("{path}.tiers[{tier_idx}]");
            let component = |name: &str| -> Result<Decimal, ImportError> {
                match tier.get(name) {
                    None | Some(Value::Null) => Ok(Decimal::ZERO),
                    Some(c) => number(
                        c.get("amount").unwrap_or(&Value::Null),
                        &format!("{tpath}.{name}.amount"),
                    ),
                }
            };
            let up_to = match tier.get("upToAmount") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Dec(number(v, &format!("{tpath}.upToAmount"))?)),
            };
            tiers.push(Tier {
                from: None,
                up_to,
                unit_price: Dec(component("unitPrice")?),
                flat_fee: Dec(component("flatPrice")?),
            });
        }
        if tiers.last().is_some_and(|t| t.up_to.is_some()) {
            // OpenMeter has no price beyond a bounded last tier; neither has Ratecard with this.
            self.last_tier = LastTier::Bounded;
        }
        Ok(tiers)
    }

    /// The metric of a feature: its meter's aggregation, event type and value property, with
    /// the feature's group-by filters. A feature or meter not given becomes a count of events
    /// of the feature's key, noted.
    fn metric(&mut self, feature_key: &str) -> Metric {
        let mut metric = Metric {
            code: feature_key.to_owned(),
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
        let Some((feature_idx, feature)) = find(self.export, "features", "key", feature_key) else {
            self.note(
                "$.features",
                format!(
                    "feature `{feature_key}` is not given: imported as a count of `{feature_key}` events"
                ),
            );
            return metric;
        };
        let feature_path = format!("$.features[{feature_idx}]");
        metric.name = feature
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.filters(feature, &feature_path, &mut metric.filters);
        let Some(slug) = feature.get("meterSlug").and_then(Value::as_str) else {
            self.note(
                format!("{feature_path}.meterSlug"),
                format!("feature `{feature_key}` has no meter: imported as a count of `{feature_key}` events"),
            );
            return metric;
        };
        let Some((meter_idx, meter)) = find(self.export, "meters", "slug", slug)
            .or_else(|| find(self.export, "meters", "key", slug))
        else {
            self.note(
                "$.meters",
                format!(
                    "meter `{slug}` is not given: imported as a count of `{feature_key}` events"
                ),
            );
            return metric;
        };
        let meter_path = format!("$.meters[{meter_idx}]");
        metric.event = meter
            .get("eventType")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let property = match meter.get("valueProperty").and_then(Value::as_str) {
            Some(path) => match path.strip_prefix("$.") {
                Some(name) if !name.is_empty() && !name.contains(['.', '[']) => name.to_owned(),
                _ => {
                    self.note(
                        format!("{meter_path}.valueProperty"),
                        format!("value property `{path}` is not a top-level property: imported as `{path}`"),
                    );
                    path.to_owned()
                }
            },
            None => String::new(),
        };
        match meter.get("aggregation").and_then(Value::as_str) {
            Some("COUNT") | None => {}
            Some("SUM") => metric.aggregation = Aggregation::Sum { property },
            Some("MAX") => metric.aggregation = Aggregation::Max { property },
            Some("MIN") => metric.aggregation = Aggregation::Min { property },
            Some("UNIQUE_COUNT") => {
                metric.aggregation = Aggregation::UniqueCount {
                    property,
                    operation_property: None,
                }
            }
            Some("LATEST") => metric.aggregation = Aggregation::Latest { property },
            Some(other) => self.note(
                format!("{meter_path}.aggregation"),
                format!("aggregation `{other}` is not imported: the metric counts events instead"),
            ),
        }
        metric
    }

    /// A feature's `meterGroupByFilters` (property → value) and `advancedMeterGroupByFilters`
    /// (`$eq`, `$in`) as metric filters.
    fn filters(&mut self, feature: &Value, path: &str, filters: &mut Vec<Filter>) {
        let filter = |property: &str| Filter {
            property: property.to_owned(),
            equals: None,
            one_of: None,
            negate: false,
        };
        if let Some(simple) = feature
            .get("meterGroupByFilters")
            .and_then(Value::as_object)
        {
            for (property, value) in simple {
                match value.as_str() {
                    Some(value) => filters.push(Filter {
                        equals: Some(value.to_owned()),
                        ..filter(property)
                    }),
                    None => self.note(
                        format!("{path}.meterGroupByFilters.{property}"),
                        "expected a string value: the filter is not imported",
                    ),
                }
            }
        }
        if let Some(advanced) = feature
            .get("advancedMeterGroupByFilters")
            .and_then(Value::as_object)
        {
            for (property, condition) in advanced {
                let eq = condition.get("$eq").and_then(Value::as_str);
                let within = condition
                    .get("$in")
                    .and_then(Value::as_array)
                    .and_then(|v| {
                        v.iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    });
                let single = condition.as_object().is_some_and(|o| o.len() == 1);
                match (eq, within) {
                    (Some(value), None) if single => filters.push(Filter {
                        equals: Some(value.to_owned()),
                        ..filter(property)
                    }),
                    (None, Some(values)) if single => filters.push(Filter {
                        one_of: Some(values),
                        ..filter(property)
                    }),
                    _ => self.note(
                        format!("{path}.advancedMeterGroupByFilters.{property}"),
                        "only `$eq` and `$in` filters are imported: the filter is not imported",
                    ),
                }
            }
        }
    }
}

/// The element of `export[list]` whose `field` is `value`, with its index.
fn find<'v>(export: &'v Value, list: &str, field: &str, value: &str) -> Option<(usize, &'v Value)> {
    export
        .get(list)?
        .as_array()?
        .iter()
        .enumerate()
        .find(|(_, item)| item.get(field).and_then(Value::as_str) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::NoPlugins;
    use crate::rate::quote;
    use crate::usage::Usage;

    /// The shape of OpenMeter's `GET /api/v1/plans/{planId}` (openmeterio/openmeter
    /// `api/openapi.yaml`: `Plan`, `PlanPhase`, `RateCardFlatFee`, `RateCardUsageBased`,
    /// `RateCardUsageBasedPrice`, `Discounts`), with the features and meters its rate cards
    /// name (`Feature`, `Meter`). Prices are those of OpenMeter's own rating tests
    /// (`openmeter/billing/rating/service/rate/*_test.go`).
    const PRO: &str = r#"{
      "plan": {
        "id": "01JBP3SGZ20Y7VRVC351TDFXYZ", "key": "pro", "name": "Pro", "version": 1,
        "currency": "USD", "billingCadence": "P1M", "status": "active",
        "proRatingConfig": {"enabled": true, "mode": "prorate_prices"},
        "phases": [
          {"key": "trial", "name": "Trial", "duration": "P14D", "rateCards": []},
          {"key": "default", "name": "Default", "duration": null, "rateCards": [
            {"type": "flat_fee", "key": "platform", "name": "Platform fee", "billingCadence": "P1M",
             "price": {"type": "flat", "amount": "49", "paymentTerm": "in_advance"}},
            {"type": "flat_fee", "key": "setup", "name": "Setup", "billingCadence": null,
             "price": {"type": "flat", "amount": "500", "paymentTerm": "in_advance"}},
            {"type": "usage_based", "key": "tokens", "name": "GPT-4 tokens", "featureKey": "gpt4_tokens",
             "billingCadence": "P1M", "price": {"type": "dynamic", "multiplier": "1.33333"}},
            {"type": "usage_based", "key": "api", "name": "API calls", "featureKey": "api_calls",
             "billingCadence": "P1M",
             "price": {"type": "unit", "amount": "1", "maximumAmount": "150"},
             "discounts": {"percentage": {"percentage": 10}},
             "entitlementTemplate": {"type": "metered", "issueAfterReset": 100}},
            {"type": "usage_based", "key": "storage", "name": "Storage", "featureKey": "storage_gb",
             "billingCadence": "P1M",
             "price": {"type": "package", "amount": "15", "quantityPerPackage": "10", "minimumAmount": "100"}},
            {"type": "usage_based", "key": "feature", "name": "Feature", "featureKey": "feature",
             "billingCadence": "P1M",
             "price": {"type": "tiered", "mode": "graduated", "tiers": [
               {"upToAmount": "5", "flatPrice": {"type": "flat", "amount": "100"}, "unitPrice": null},
               {"upToAmount": "10", "flatPrice": {"type": "flat", "amount": "50"}, "unitPrice": null},
               {"upToAmount": "15", "flatPrice": null, "unitPrice": {"type": "unit", "amount": "10"}},
               {"flatPrice": null, "unitPrice": {"type": "unit", "amount": "5"}}]}}
          ]}
        ]
      },
      "features": [
        {"key": "gpt4_tokens", "name": "GPT-4 tokens", "meterSlug": "tokens_total",
         "meterGroupByFilters": {"model": "gpt-4"}},
        {"key": "api_calls", "name": "API calls", "meterSlug": "api_requests",
         "advancedMeterGroupByFilters": {"method": {"$in": ["GET", "POST"]}}},
        {"key": "storage_gb", "name": "Storage", "meterSlug": "storage"},
        {"key": "feature", "name": "Feature", "meterSlug": "feature_usage"}
      ],
      "meters": [
        {"slug": "tokens_total", "aggregation": "SUM", "eventType": "prompt", "valueProperty": "$.tokens",
         "groupBy": {"model": "$.model"}},
        {"slug": "api_requests", "aggregation": "COUNT", "eventType": "request"},
        {"slug": "storage", "aggregation": "LATEST", "eventType": "storage", "valueProperty": "$.gb"},
        {"slug": "feature_usage", "aggregation": "AVG", "eventType": "feature", "valueProperty": "$.value"}
      ]
    }"#;

    fn imported() -> Imported {
        openmeter_plan(&serde_json::from_str(PRO).unwrap(), None).unwrap()
    }

    fn total(plan: &Plan, quantities: &str) -> String {
        let usage: Usage = serde_json::from_str(&format!(
            r#"{{"subscription":{{"start":"2026-11-01"}},"period":{{"index":0}},"quantities":{quantities}}}"#
        ))
        .unwrap();
        quote(plan, &usage, &NoPlugins).unwrap().total.0.to_string()
    }

    #[test]
    fn an_openmeter_plan_chooses_the_conventions_and_reports_what_it_leaves_out() {
        let imported = imported();
        let plan = &imported.plan;
        let report = crate::validate::validate_plan(plan);
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(plan.id, "pro");
        assert_eq!(plan.charge_maximum, ChargeMaximum::AfterDiscounts);
        assert_eq!(plan.last_tier, LastTier::Unbounded);
        let feature = plan.charges.iter().find(|c| c.id == "feature").unwrap();
        assert_eq!(feature.zero_usage, ZeroUsage::FirstTierFlatFee);
        let paths: Vec<String> = imported
            .not_carried
            .iter()
            .map(|n| n.path.clone())
            .collect();
        assert_eq!(
            paths,
            [
                "$.plan.phases[0]",
                "$.plan.phases[1].rateCards[1].billingCadence",
                "$.plan.phases[1].rateCards[3].entitlementTemplate",
                "$.meters[3].aggregation",
            ]
        );
        let tokens = plan
            .metrics
            .iter()
            .find(|m| m.code == "gpt4_tokens")
            .unwrap();
        assert_eq!(
            tokens.aggregation,
            Aggregation::Sum {
                property: "tokens".to_owned()
            }
        );
        assert_eq!(tokens.event.as_deref(), Some("prompt"));
        assert_eq!(tokens.filters[0].equals.as_deref(), Some("gpt-4"));
        let calls = plan.metrics.iter().find(|m| m.code == "api_calls").unwrap();
        assert_eq!(calls.aggregation, Aggregation::Count);
        assert_eq!(
            calls.filters[0].one_of,
            Some(vec!["GET".to_owned(), "POST".to_owned()])
        );
        assert_eq!(plan.discounts[0].charges, Some(vec!["api".to_owned()]));
    }

    #[test]
    fn an_openmeter_plan_prices_as_openmeter_computes() {
        let plan = imported().plan;
        // platform 49 in advance; tokens 10 × 1.33333 = 13.33 (dynamic_test.go); api 200 × 1,
        // 10 % off, then capped at 150 (usagebasedline.go); storage 10 GB = 1 package × 15,
        // raised to the minimum spend 100 (package_test.go); feature 22 units = 235
        // (pricegraduatedtiered_test.go "usage in tier 4").
        assert_eq!(
            total(
                &plan,
                r#"{"gpt4_tokens":"10","api_calls":"200","storage_gb":"10","feature":"22"}"#
            ),
            "547.33"
        );
        // No usage: the platform fee, the storage minimum spend, the first tier's flat price
        // ("totals, no usage").
        assert_eq!(
            total(
                &plan,
                r#"{"gpt4_tokens":"0","api_calls":"0","storage_gb":"0","feature":"0"}"#
            ),
            "249.00"
        );
    }

    #[test]
    fn openmeter_volume_usage_discount_and_bounded_last_tier() {
        let export = serde_json::json!({"key": "v", "currency": "EUR", "billingCadence": "P1W",
            "proRatingConfig": {"enabled": false, "mode": "prorate_prices"},
            "phases": [{"key": "default", "rateCards": [
              {"type": "usage_based", "key": "seats", "featureKey": "seats", "billingCadence": "P1W",
               "price": {"type": "tiered", "mode": "volume", "tiers": [
                 {"upToAmount": 100, "unitPrice": {"type": "unit", "amount": "2"}},
                 {"upToAmount": 1000, "unitPrice": {"type": "unit", "amount": "1"}}],
                 "minimumAmount": "10"},
               "discounts": {"usage": {"quantity": "20"}, "percentage": {"percentage": "50"}}},
              {"type": "usage_based", "key": "yearly", "featureKey": "seats", "billingCadence": "P1Y",
               "price": {"type": "unit", "amount": "1"}}]}]});
        let imported = openmeter_plan(&export, Some("weekly")).unwrap();
        let plan = &imported.plan;
        assert!(crate::validate::validate_plan(plan).is_ok());
        assert_eq!(plan.id, "weekly");
        assert_eq!(
            plan.interval,
            Interval {
                unit: IntervalUnit::Week,
                count: 1
            }
        );
        assert_eq!(plan.last_tier, LastTier::Bounded);
        assert_eq!(plan.charges.len(), 1);
        assert_eq!(plan.charges[0].included, Some(Dec(Decimal::new(20, 0))));
        assert_eq!(plan.charge_maximum, ChargeMaximum::BeforeDiscounts);
        assert_eq!(plan.charge_minimum, ChargeMinimum::AfterDiscounts);
        let paths: Vec<&str> = imported
            .not_carried
            .iter()
            .map(|n| n.path.as_str())
            .collect();
        assert_eq!(
            paths,
            ["$.features", "$.phases[0].rateCards[1].billingCadence",]
        );
        // 150 seats − 20 free = 130, the second tier: 130 × 1, half off = 65.
        assert_eq!(total(plan, r#"{"seats":"150"}"#), "65.00");
        // 25 seats − 20 free = 5 × 2 = 10, half off = 5: the minimum spend 10 is net of the
        // discount, a shortfall line of 5 (before the discount, it would bill 5).
        assert_eq!(total(plan, r#"{"seats":"25"}"#), "10.00");
    }

    #[test]
    fn bad_openmeter_input_names_its_path() {
        let bad_cadence = serde_json::json!({"plan": {"key": "x", "billingCadence": "PT1H",
            "phases": [{"key": "p", "rateCards": []}]}});
        assert_eq!(
            openmeter_plan(&bad_cadence, None).unwrap_err().to_string(),
            "$.plan.billingCadence: `PT1H` is not a billing cadence of days, weeks, months or years"
        );
        let bad_amount = serde_json::json!({"key": "x", "billingCadence": "P1M",
            "phases": [{"key": "p", "rateCards": [
              {"type": "usage_based", "key": "a", "featureKey": "a", "billingCadence": "P1M",
               "price": {"type": "tiered", "mode": "graduated", "tiers": [
                 {"upToAmount": null, "unitPrice": {"type": "unit", "amount": "abc"}}]}}]}]});
        assert_eq!(
            openmeter_plan(&bad_amount, None).unwrap_err().path,
            "$.phases[0].rateCards[0].price.tiers[0].unitPrice.amount"
        );
        let no_phases = serde_json::json!({"key": "x", "billingCadence": "P1M", "phases": []});
        assert_eq!(
            openmeter_plan(&no_phases, None).unwrap_err().path,
            "$.phases"
        );
        for garbage in [
            serde_json::json!(null),
            serde_json::json!([1, 2]),
            serde_json::json!({"plan": 3}),
        ] {
            assert!(openmeter_plan(&garbage, None).is_err());
        }
        assert!(cadence("P", "$").is_err());
        assert!(cadence("P0M", "$").is_err());
        assert!(cadence("P1€", "$").is_err());
        assert!(cadence("P€M", "$").is_err());
        assert_eq!(cadence("P3M", "$").unwrap().count, 3);
    }
}
