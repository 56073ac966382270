//! Plan validation and lint.
//!
//! [`validate_plan`] reports every problem at once, each with the JSON path of the offending
//! value (`$.charges[2].model.tiers[1].up_to`). Errors make a plan unusable; warnings (lint) are
//! valid but surprising: volume cliffs (more usage → a lower bill), unreachable tiers, price jumps
//! of more than 10× between adjacent tiers, metrics never charged.

use std::collections::BTreeSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Currency, MAX_CUSTOM_SCALE};
use crate::plan::{
    Aggregation, Charge, LastTier, Metric, Plan, PriceModel, Step, Tier, TierConvention, TierRanges,
};

/// The most decimal places a unit price may carry.
pub const MAX_PRICE_SCALE: u32 = 12;

/// The most negative quantity rounding precision: -12 rounds to trillions.
pub const MIN_QUANTITY_PRECISION: i32 = -12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// The rule a finding breaks: a stable identifier for tooling, serialized in snake case
/// (`"tier_bounds_not_increasing"`).
/// Serialized as [`IssueCode::as_str`] (the derived `Serialize` of ~40 unit variants is ~6 KB of
/// the browser package, twice); read by the derived `Deserialize`, in the same snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IssueCode {
    /// The document is not JSON, or a value has the wrong type or form (from
    /// [`json::parse`](crate::json::parse)); the other codes are [`validate_plan`]'s rules.
    InvalidJson,
    AmountFinerThanCurrency,
    /// A convention option (`docs/conventions.md`) where it does not apply, or two that
    /// contradict each other.
    BadConvention,
    BadDiscount,
    BadFilter,
    BadMatrix,
    BadPercentage,
    BadPluginRef,
    DiscountNeverApplies,
    DuplicateId,
    EmptyId,
    EmptyProperty,
    FlatWithMetric,
    LastTierBounded,
    MetricNotCharged,
    MinimumAboveMaximum,
    MissingMetric,
    NegativePrice,
    NegativeValue,
    NoTiers,
    NonPositiveFactor,
    PercentOutOfRange,
    PercentageNeedsSum,
    PrecisionTooLarge,
    PriceJump,
    PriceScaleTooLarge,
    TierBoundsNotIncreasing,
    TierGap,
    TierOverlap,
    UnboundedTierNotLast,
    UnitScaleTooLarge,
    UnitShadowsIso,
    UnknownCharge,
    UnknownCurrency,
    UnknownMetric,
    UnreachableTier,
    VolumeCliff,
    ZeroInterval,
}

impl IssueCode {
    /// The code as serialized (`"tier_gap"`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::InvalidJson => "invalid_json",
            IssueCode::AmountFinerThanCurrency => "amount_finer_than_currency",
            IssueCode::BadConvention => "bad_convention",
            IssueCode::BadDiscount => "bad_discount",
            IssueCode::BadFilter => "bad_filter",
            IssueCode::BadMatrix => "bad_matrix",
            IssueCode::BadPercentage => "bad_percentage",
            IssueCode::BadPluginRef => "bad_plugin_ref",
            IssueCode::DiscountNeverApplies => "discount_never_applies",
            IssueCode::DuplicateId => "duplicate_id",
            IssueCode::EmptyId => "empty_id",
            IssueCode::EmptyProperty => "empty_property",
            IssueCode::FlatWithMetric => "flat_with_metric",
            IssueCode::LastTierBounded => "last_tier_bounded",
            IssueCode::MetricNotCharged => "metric_not_charged",
            IssueCode::MinimumAboveMaximum => "minimum_above_maximum",
            IssueCode::MissingMetric => "missing_metric",
            IssueCode::NegativePrice => "negative_price",
            IssueCode::NegativeValue => "negative_value",
            IssueCode::NoTiers => "no_tiers",
            IssueCode::NonPositiveFactor => "non_positive_factor",
            IssueCode::PercentOutOfRange => "percent_out_of_range",
            IssueCode::PercentageNeedsSum => "percentage_needs_sum",
            IssueCode::PrecisionTooLarge => "precision_too_large",
            IssueCode::PriceJump => "price_jump",
            IssueCode::PriceScaleTooLarge => "price_scale_too_large",
            IssueCode::TierBoundsNotIncreasing => "tier_bounds_not_increasing",
            IssueCode::TierGap => "tier_gap",
            IssueCode::TierOverlap => "tier_overlap",
            IssueCode::UnboundedTierNotLast => "unbounded_tier_not_last",
            IssueCode::UnitScaleTooLarge => "unit_scale_too_large",
            IssueCode::UnitShadowsIso => "unit_shadows_iso",
            IssueCode::UnknownCharge => "unknown_charge",
            IssueCode::UnknownCurrency => "unknown_currency",
            IssueCode::UnknownMetric => "unknown_metric",
            IssueCode::UnreachableTier => "unreachable_tier",
            IssueCode::VolumeCliff => "volume_cliff",
            IssueCode::ZeroInterval => "zero_interval",
        }
    }
}

impl Serialize for IssueCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for IssueCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: where, what, and a stable code for tooling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: Severity,
    /// The rule broken (`"tier_bounds_not_increasing"`).
    pub code: IssueCode,
    /// JSON path of the offending value.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A document that could not be read, as an error finding (`invalid_json`): its path, and its
/// line and column when known.
impl From<crate::json::ParseError> for Issue {
    fn from(error: crate::json::ParseError) -> Issue {
        Issue {
            severity: Severity::Error,
            code: IssueCode::InvalidJson,
            message: match (error.line, error.column) {
                (Some(line), Some(column)) => {
                    format!("{} (line {line}, column {column})", error.message)
                }
                _ => error.message,
            },
            path: error.path,
        }
    }
}

/// All findings on a plan, errors first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, code: IssueCode, path: impl fmt::Display, message: impl Into<String>) {
        self.errors.push(Issue {
            severity: Severity::Error,
            code,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, code: IssueCode, path: impl fmt::Display, message: impl Into<String>) {
        self.warnings.push(Issue {
            severity: Severity::Warning,
            code,
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// A JSON path written out only when a finding needs it: `Sub(&"$.charges", Part::Index(2))`
/// displays `$.charges[2]`.
struct Sub<'a>(&'a dyn fmt::Display, Part<'a>);

enum Part<'a> {
    Key(&'a str),
    Index(usize),
}

impl fmt::Display for Sub<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Part::Key(key) => write!(f, "{}.{key}", self.0),
            Part::Index(idx) => write!(f, "{}[{idx}]", self.0),
        }
    }
}

/// Validates and lints a plan written as JSON text: every error the document has, also those
/// that keep it from being read as a plan (then there is no lint), each with its JSON path.
pub fn validate_plan_json(text: &str) -> Report {
    match crate::json::parse::<Plan>(text) {
        Ok(plan) => validate_plan(&plan),
        Err(errors) => Report {
            errors: errors.into_iter().map(Issue::from).collect(),
            warnings: Vec::new(),
        },
    }
}

/// Validates and lints a plan.
pub fn validate_plan(plan: &Plan) -> Report {
    let mut report = Report::default();
    let r = &mut report;
    let minor_units = check_header(r, plan);
    check_metrics(r, plan);
    let charged_metrics = check_charges(r, plan, minor_units);
    lint_uncharged_metrics(r, plan, &charged_metrics);
    check_commitment(r, plan, minor_units);
    check_discounts(r, plan, minor_units);
    check_discounts_of_capped_charges(r, plan);
    check_taxes(r, plan);
    check_credits(r, plan, minor_units);
    report
}

/// The plan's id, custom units, currency and interval: the minor units of its currency (the
/// largest custom scale when the currency is unknown, so amounts are not all reported).
fn check_header(r: &mut Report, plan: &Plan) -> u32 {
    if plan.id.trim().is_empty() {
        r.error(IssueCode::EmptyId, "$.id", "the plan id is empty");
    }
    let mut seen_units = BTreeSet::new();
    for (unit_idx, unit) in plan.custom_units.iter().enumerate() {
        let path = Sub(&"$.custom_units", Part::Index(unit_idx));
        if unit.scale > MAX_CUSTOM_SCALE {
            r.error(
                IssueCode::UnitScaleTooLarge,
                format!("{path}.scale"),
                format!(
                    "scale {} is above the maximum of {MAX_CUSTOM_SCALE}",
                    unit.scale
                ),
            );
        }
        if Currency::iso(&unit.code).is_some() {
            r.error(
                IssueCode::UnitShadowsIso,
                format!("{path}.code"),
                format!(
                    "`{}` is an ISO 4217 currency and cannot be redeclared",
                    unit.code
                ),
            );
        }
        if unit.code.trim().is_empty() {
            r.error(
                IssueCode::EmptyId,
                format!("{path}.code"),
                "the unit code is empty",
            );
        }
        if !seen_units.insert(unit.code.as_str()) {
            r.error(
                IssueCode::DuplicateId,
                format!("{path}.code"),
                format!("unit `{}` is declared twice", unit.code),
            );
        }
    }
    let currency = Currency::resolve(&plan.currency, &plan.custom_units);
    if currency.is_none() {
        r.error(
            IssueCode::UnknownCurrency,
            "$.currency",
            format!(
                "`{}` is neither an ISO 4217 currency nor a declared custom unit",
                plan.currency
            ),
        );
    }
    let minor_units = currency
        .as_ref()
        .map(|c| c.minor_units)
        .unwrap_or(MAX_CUSTOM_SCALE);
    if plan.tier_ranges == TierRanges::WholeUnits
        && plan.tier_convention == TierConvention::LowerInclusive
    {
        r.error(
            IssueCode::BadConvention,
            "$.tier_ranges",
            "`whole_units` ranges (0–10, 11–20) put 10 in the first tier: they need `tier_convention` `upper_inclusive`",
        );
    }
    if plan.interval.count == 0 {
        r.error(
            IssueCode::ZeroInterval,
            "$.interval.count",
            "the interval count must be at least 1",
        );
    }
    minor_units
}

/// `$.metrics`: codes, aggregations, filters, groups, conversions.
fn check_metrics(r: &mut Report, plan: &Plan) {
    let mut metric_codes = BTreeSet::new();
    for (metric_idx, metric) in plan.metrics.iter().enumerate() {
        let path = Sub(&"$.metrics", Part::Index(metric_idx));
        if metric.code.trim().is_empty() {
            r.error(
                IssueCode::EmptyId,
                format!("{path}.code"),
                "the metric code is empty",
            );
        } else if !metric_codes.insert(metric.code.as_str()) {
            r.error(
                IssueCode::DuplicateId,
                format!("{path}.code"),
                format!("metric `{}` is defined twice", metric.code),
            );
        }
        if metric.recurrence != crate::plan::Recurrence::PerPeriod
            && (!matches!(
                metric.aggregation,
                Aggregation::Sum { .. } | Aggregation::UniqueCount { .. }
            ) || !metric.group_by.is_empty())
        {
            r.error(
                IssueCode::BadConvention,
                format!("{path}.recurrence"),
                "`recurrence` `carried_over` applies to ungrouped `sum` and `unique_count` metrics only",
            );
        }
        if let Aggregation::UniqueCount {
            operation_property: Some(operation),
            ..
        } = &metric.aggregation
            && operation.trim().is_empty()
        {
            r.error(
                IssueCode::EmptyProperty,
                format!("{path}.aggregation.operation_property"),
                "the operation property is empty",
            );
        }
        let property = match &metric.aggregation {
            Aggregation::Count | Aggregation::Custom { .. } => None,
            Aggregation::Sum { property }
            | Aggregation::Max { property }
            | Aggregation::Min { property }
            | Aggregation::UniqueCount { property, .. }
            | Aggregation::Latest { property }
            | Aggregation::TimeWeightedSum { property, .. }
            | Aggregation::TimeWeightedAverage { property, .. } => Some(property),
        };
        if property.is_some_and(|p| p.trim().is_empty()) {
            r.error(
                IssueCode::EmptyProperty,
                format!("{path}.aggregation.property"),
                "the aggregated property name is empty",
            );
        }
        if let Aggregation::Custom { plugin, .. } = &metric.aggregation {
            check_plugin_ref(r, &format_args!("{path}.aggregation.plugin"), plugin);
        }
        for (filter_idx, filter) in metric.filters.iter().enumerate() {
            let fpath_list = Sub(&path, Part::Key("filters"));
            let fpath = Sub(&fpath_list, Part::Index(filter_idx));
            match (&filter.equals, &filter.one_of) {
                (Some(_), Some(_)) | (None, None) => r.error(
                    IssueCode::BadFilter,
                    fpath,
                    "a filter needs exactly one of `equals` or `in`",
                ),
                (None, Some(values)) if values.is_empty() => r.error(
                    IssueCode::BadFilter,
                    format!("{fpath}.in"),
                    "`in` lists no values: nothing would ever match",
                ),
                _ => {}
            }
        }
        let mut dims = BTreeSet::new();
        for (dim_idx, dim) in metric.group_by.iter().enumerate() {
            if !dims.insert(dim) {
                r.error(
                    IssueCode::DuplicateId,
                    format!("{path}.group_by[{dim_idx}]"),
                    format!("`{dim}` is listed twice"),
                );
            }
        }
        if let Some(conversion) = &metric.conversion {
            for (name, value) in [
                ("multiply_by", conversion.multiply_by),
                ("divide_by", conversion.divide_by),
            ] {
                if value.is_some_and(|v| v <= Decimal::ZERO) {
                    r.error(
                        IssueCode::NonPositiveFactor,
                        format!("{path}.conversion.{name}"),
                        format!("`{name}` must be greater than 0"),
                    );
                }
            }
            if let Some(rounding) = conversion.round {
                let precision = rounding.precision;
                if precision > MAX_PRICE_SCALE as i32 {
                    r.error(
                        IssueCode::PrecisionTooLarge,
                        format!("{path}.conversion.round.precision"),
                        format!("precision {precision} is above {MAX_PRICE_SCALE}"),
                    );
                } else if precision < MIN_QUANTITY_PRECISION {
                    r.error(
                        IssueCode::PrecisionTooLarge,
                        format!("{path}.conversion.round.precision"),
                        format!("precision {precision} is below {MIN_QUANTITY_PRECISION} (rounding to 10^{} and more units is not supported)", -MIN_QUANTITY_PRECISION),
                    );
                }
            }
        }
    }
}

/// `$.charges`: ids, metrics, bounds and each price model; the metrics charged.
fn check_charges<'p>(r: &mut Report, plan: &'p Plan, minor_units: u32) -> BTreeSet<&'p str> {
    let mut charge_ids = BTreeSet::new();
    let mut charged_metrics = BTreeSet::new();
    for (charge_idx, charge) in plan.charges.iter().enumerate() {
        let path = Sub(&"$.charges", Part::Index(charge_idx));
        if charge.id.trim().is_empty() {
            r.error(
                IssueCode::EmptyId,
                format!("{path}.id"),
                "the charge id is empty",
            );
        } else if !charge_ids.insert(charge.id.as_str()) {
            r.error(
                IssueCode::DuplicateId,
                format!("{path}.id"),
                format!("charge `{}` is defined twice", charge.id),
            );
        }
        let is_flat = matches!(charge.model, PriceModel::Flat { .. });
        let metric = match (&charge.metric, is_flat) {
            (Some(_), true) => {
                r.error(
                    IssueCode::FlatWithMetric,
                    format!("{path}.metric"),
                    "a flat charge is not priced on a metric: remove `metric`",
                );
                None
            }
            (None, false) => {
                r.error(
                    IssueCode::MissingMetric,
                    format!("{path}.metric"),
                    "this price model needs a `metric`",
                );
                None
            }
            (Some(code), false) => {
                charged_metrics.insert(code.as_str());
                let found = plan.metrics.iter().find(|m| &m.code == code);
                if found.is_none() {
                    r.error(
                        IssueCode::UnknownMetric,
                        format!("{path}.metric"),
                        format!("no metric `{code}` in the plan"),
                    );
                }
                found
            }
            (None, true) => None,
        };
        for (name, value) in [
            ("included", charge.included),
            ("minimum", charge.minimum),
            ("maximum", charge.maximum),
        ] {
            if let Some(value) = value
                && value < Decimal::ZERO
            {
                r.error(
                    IssueCode::NegativeValue,
                    format!("{path}.{name}"),
                    format!("`{name}` is negative ({value})"),
                );
            }
        }
        for (name, value) in [("minimum", charge.minimum), ("maximum", charge.maximum)] {
            if let Some(value) = value {
                check_amount_scale(
                    r,
                    &format_args!("{path}.{name}"),
                    value.0,
                    minor_units,
                    &plan.currency,
                );
            }
        }
        if let (Some(min), Some(max)) = (charge.minimum, charge.maximum)
            && min > max
        {
            r.error(
                IssueCode::MinimumAboveMaximum,
                format!("{path}.minimum"),
                format!("minimum {min} is above maximum {max}"),
            );
        }
        if !charge.zero_usage.is_default()
            && !matches!(
                charge.model,
                PriceModel::Graduated { .. } | PriceModel::Volume { .. }
            )
        {
            r.error(
                IssueCode::BadConvention,
                format!("{path}.zero_usage"),
                "`zero_usage` `first_tier_flat_fee` applies to graduated and volume tiers only",
            );
        }
        let days_held = charge.usage_proration == crate::plan::UsageProration::DaysHeld;
        let prorates = match charge.model {
            PriceModel::Volume { .. } | PriceModel::PerUnit { .. } => true,
            PriceModel::Graduated { .. } => days_held,
            _ => false,
        };
        if !charge.usage_proration.is_default() && !prorates {
            r.error(
                IssueCode::BadConvention,
                format!("{path}.usage_proration"),
                if days_held {
                    "`usage_proration` `days_held` applies to volume, graduated and per-unit charges only"
                } else {
                    "`usage_proration` `tier_by_full_units` applies to volume and per-unit charges only"
                },
            );
        }
        // Lago's prorated graduated ranges are whole units, upper bound included.
        if days_held
            && let PriceModel::Graduated { tiers } = &charge.model
            && (plan.tier_convention != TierConvention::UpperInclusive
                || tiers
                    .iter()
                    .any(|t| t.up_to.is_some_and(|u| !Decimal::from(u).fract().is_zero())))
        {
            r.error(
                IssueCode::BadConvention,
                format!("{path}.usage_proration"),
                "`usage_proration` `days_held` on graduated tiers prices them as Lago's prorated graduated ranges: whole-unit `up_to` bounds and `tier_convention` `upper_inclusive`",
            );
        }
        if charge.usage_proration == crate::plan::UsageProration::DaysHeld
            && let Some(metric) = metric
            && (!matches!(metric.aggregation, Aggregation::Sum { .. })
                || metric.recurrence != crate::plan::Recurrence::CarriedOver
                || !metric.group_by.is_empty()
                || metric.conversion.is_some())
        {
            r.error(
                IssueCode::BadConvention,
                format!("{path}.usage_proration"),
                format!("`usage_proration` `days_held` applies to an ungrouped `sum` metric with `recurrence` `carried_over` and no conversion, and `{}` is not one", metric.code),
            );
        }
        check_model(r, plan, charge, metric, &path, minor_units);
    }
    charged_metrics
}

/// The checks of the price model of the charge at `path` (`$.charges[i]`), priced on
/// `metric` when it has a valid one.
fn check_model(
    r: &mut Report,
    plan: &Plan,
    charge: &Charge,
    metric: Option<&Metric>,
    path: &Sub<'_>,
    minor_units: u32,
) {
    let mpath = Sub(path, Part::Key("model"));
    match &charge.model {
        PriceModel::Flat { amount, .. } => {
            check_price(r, &format_args!("{mpath}.amount"), amount.0);
            check_amount_scale(
                r,
                &format_args!("{mpath}.amount"),
                amount.0,
                minor_units,
                &plan.currency,
            );
        }
        PriceModel::PerUnit { unit_price } => {
            check_price(r, &format_args!("{mpath}.unit_price"), unit_price.0)
        }
        PriceModel::Graduated { tiers } | PriceModel::Volume { tiers } => {
            let volume = matches!(charge.model, PriceModel::Volume { .. });
            check_tiers(r, &mpath, tiers, volume, plan);
            lint_tiers(r, &mpath, tiers, volume, charge);
        }
        PriceModel::Stairstep { steps } => {
            check_steps(
                r,
                &mpath,
                steps,
                minor_units,
                &plan.currency,
                BoundRules::of(plan),
            );
        }
        PriceModel::Package {
            package_size,
            package_price,
            free_units,
            ..
        } => {
            if *package_size <= Decimal::ZERO {
                r.error(
                    IssueCode::NonPositiveFactor,
                    format!("{mpath}.package_size"),
                    "the package size must be greater than 0",
                );
            }
            check_price(r, &format_args!("{mpath}.package_price"), package_price.0);
            if free_units.is_some_and(|f| f < Decimal::ZERO) {
                r.error(
                    IssueCode::NegativeValue,
                    format!("{mpath}.free_units"),
                    "free units are negative",
                );
            }
        }
        PriceModel::Percentage {
            percent,
            tiers,
            fixed_fee,
            min_per_transaction,
            max_per_transaction,
            free_events,
            fixed_fee_within_free_amount,
        } => {
            if !fixed_fee_within_free_amount.is_default() {
                let problem = if !tiers.is_empty() {
                    Some("applies to a flat `percent`, not to graduated tiers")
                } else if free_events.is_some()
                    || min_per_transaction.is_some()
                    || max_per_transaction.is_some()
                {
                    Some(
                        "is the free amount alone: with free events or per-transaction bounds the free amount is already spent transaction by transaction, fixed fees included (leave the option out)",
                    )
                } else if charge.included.is_none_or(|i| i.is_zero()) {
                    Some("needs the charge's `included` (the free amount)")
                } else if fixed_fee.is_none_or(|f| f.is_zero()) {
                    Some("needs a `fixed_fee` to waive")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    r.error(
                        IssueCode::BadConvention,
                        format!("{mpath}.fixed_fee_within_free_amount"),
                        format!("`fixed_fee_within_free_amount` `waived` {problem}"),
                    );
                }
            }
            if free_events.is_some() && !tiers.is_empty() {
                r.error(
                    IssueCode::BadPercentage,
                    format!("{mpath}.free_events"),
                    "free events apply to a flat `percent`, not to graduated tiers",
                );
            }
            // An allowance with free events or bounds is spent on the transactions themselves
            // (Lago's free amount), which a grouped metric would have to share among groups.
            if charge.included.is_some()
                && (free_events.is_some()
                    || min_per_transaction.is_some()
                    || max_per_transaction.is_some()
                    || !fixed_fee_within_free_amount.is_default())
                && let Some(metric) = metric
                && !metric.group_by.is_empty()
            {
                r.error(
                    IssueCode::BadPercentage,
                    format!("{path}.included"),
                    format!("a free amount (`included`) with free events or per-transaction bounds is spent transaction by transaction, which needs an ungrouped metric, and `{}` is grouped", metric.code),
                );
            }
            match (percent, tiers.is_empty()) {
                (Some(_), false) | (None, true) => r.error(
                    IssueCode::BadPercentage,
                    mpath.to_string(),
                    "a percentage charge needs exactly one of `percent` or `tiers`",
                ),
                _ => {}
            }
            if let Some(percent) = percent
                && (*percent < Decimal::ZERO || *percent > Decimal::ONE_HUNDRED)
            {
                r.error(
                    IssueCode::PercentOutOfRange,
                    format!("{mpath}.percent"),
                    format!("{percent}% is outside 0 to 100"),
                );
            }
            if !tiers.is_empty() {
                check_tiers(r, &mpath, tiers, false, plan);
                if min_per_transaction.is_some() || max_per_transaction.is_some() {
                    r.error(IssueCode::BadPercentage, mpath.to_string(), "per-transaction minimum and maximum apply to a flat `percent`, not to graduated tiers");
                }
            }
            for (name, value) in [
                ("fixed_fee", fixed_fee),
                ("min_per_transaction", min_per_transaction),
                ("max_per_transaction", max_per_transaction),
            ] {
                if let Some(value) = value {
                    check_price(r, &format_args!("{mpath}.{name}"), value.0);
                }
            }
            if let (Some(min), Some(max)) = (min_per_transaction, max_per_transaction)
                && min > max
            {
                r.error(
                    IssueCode::MinimumAboveMaximum,
                    format!("{mpath}.min_per_transaction"),
                    format!("minimum {min} is above maximum {max}"),
                );
            }
            if let Some(metric) = metric
                && !matches!(metric.aggregation, Aggregation::Sum { .. })
            {
                r.error(IssueCode::PercentageNeedsSum, format!("{path}.metric"), format!("a percentage charge needs a `sum` metric of transaction amounts, and `{}` is not one", metric.code));
            }
        }
        PriceModel::Matrix {
            dimensions,
            prices,
            default_unit_price,
        } => {
            if dimensions.is_empty() {
                r.error(
                    IssueCode::BadMatrix,
                    format!("{mpath}.dimensions"),
                    "a matrix needs at least one dimension",
                );
            }
            if let Some(metric) = metric {
                let want = crate::sort::set_of(dimensions);
                let have = crate::sort::set_of(&metric.group_by);
                if want != have {
                    r.error(IssueCode::BadMatrix, format!("{mpath}.dimensions"), format!("metric `{}` groups by {:?} but the matrix prices {:?}: they must be the same", metric.code, metric.group_by, dimensions));
                }
            }
            let mut combos = BTreeSet::new();
            for (price_idx, price) in prices.iter().enumerate() {
                let ppath_list = Sub(&mpath, Part::Key("prices"));
                let ppath = Sub(&ppath_list, Part::Index(price_idx));
                if price.values.len() != dimensions.len() {
                    r.error(
                        IssueCode::BadMatrix,
                        format!("{ppath}.values"),
                        format!(
                            "{} values for {} dimensions",
                            price.values.len(),
                            dimensions.len()
                        ),
                    );
                }
                if !combos.insert(&price.values) {
                    r.error(
                        IssueCode::DuplicateId,
                        format!("{ppath}.values"),
                        format!("combination {:?} is priced twice", price.values),
                    );
                }
                check_price(r, &format_args!("{ppath}.unit_price"), price.unit_price.0);
            }
            if let Some(price) = default_unit_price {
                check_price(r, &format_args!("{mpath}.default_unit_price"), price.0);
            }
        }
        PriceModel::Custom { plugin, .. } => {
            check_plugin_ref(r, &format_args!("{mpath}.plugin"), plugin)
        }
    }
}

/// Lint: a metric no charge prices.
fn lint_uncharged_metrics(r: &mut Report, plan: &Plan, charged_metrics: &BTreeSet<&str>) {
    for (metric_idx, metric) in plan.metrics.iter().enumerate() {
        if !charged_metrics.contains(metric.code.as_str()) {
            r.warn(
                IssueCode::MetricNotCharged,
                format!("$.metrics[{metric_idx}]"),
                format!("metric `{}` is not priced by any charge", metric.code),
            );
        }
    }
}

fn check_commitment(r: &mut Report, plan: &Plan, minor_units: u32) {
    if let Some(commitment) = plan.minimum_commitment {
        if commitment < Decimal::ZERO {
            r.error(
                IssueCode::NegativeValue,
                "$.minimum_commitment",
                "the minimum commitment is negative",
            );
        }
        check_amount_scale(
            r,
            &"$.minimum_commitment",
            commitment.0,
            minor_units,
            &plan.currency,
        );
    }
}

/// `$.discounts`: one of percent or amount, in range, charges that exist.
/// With `charge_maximum` `after_discounts`, a discount scoped to a capped charge must be that
/// charge's alone: shared between charges, its share of the capped one would be a guess.
/// The same holds for a charge with a minimum under `charge_minimum` `after_discounts`.
fn check_discounts_of_capped_charges(r: &mut Report, plan: &Plan) {
    for (discount_idx, discount) in plan.discounts.iter().enumerate() {
        let Some(ids) = &discount.charges else {
            continue;
        };
        if ids.len() < 2 {
            continue;
        }
        let bounded = ids.iter().find_map(|id| {
            let charge = plan.charges.iter().find(|c| &c.id == id)?;
            if !plan.charge_maximum.is_default() && charge.maximum.is_some() {
                Some((id, "charge_maximum", "maximum"))
            } else if !plan.charge_minimum.is_default() && charge.minimum.is_some() {
                Some((id, "charge_minimum", "minimum"))
            } else {
                None
            }
        });
        if let Some((id, option, bound)) = bounded {
            r.error(
                IssueCode::BadConvention,
                format!("$.discounts[{discount_idx}].charges"),
                format!("with `{option}` `after_discounts`, the discounts of charge `{id}` (which has a {bound}) must name it alone"),
            );
        }
    }
}

fn check_discounts(r: &mut Report, plan: &Plan, minor_units: u32) {
    let mut discount_ids = BTreeSet::new();
    for (discount_idx, discount) in plan.discounts.iter().enumerate() {
        let path = Sub(&"$.discounts", Part::Index(discount_idx));
        if !discount_ids.insert(discount.id.as_str()) {
            r.error(
                IssueCode::DuplicateId,
                format!("{path}.id"),
                format!("discount `{}` is defined twice", discount.id),
            );
        }
        match (discount.percent, discount.amount) {
            (Some(_), Some(_)) | (None, None) => r.error(
                IssueCode::BadDiscount,
                path.to_string(),
                "a discount needs exactly one of `percent` or `amount`",
            ),
            (Some(p), None) if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED => r.error(
                IssueCode::PercentOutOfRange,
                format!("{path}.percent"),
                format!("{p}% is outside (0, 100]"),
            ),
            (None, Some(a)) => {
                if a < Decimal::ZERO {
                    r.error(
                        IssueCode::NegativeValue,
                        format!("{path}.amount"),
                        "the discount amount is negative",
                    );
                }
                check_amount_scale(
                    r,
                    &format_args!("{path}.amount"),
                    a.0,
                    minor_units,
                    &plan.currency,
                );
            }
            _ => {}
        }
        if discount.duration_periods == Some(0) {
            r.warn(
                IssueCode::DiscountNeverApplies,
                format!("{path}.duration_periods"),
                "a duration of 0 periods never applies",
            );
        }
        for (ref_idx, charge_id) in discount.charges.iter().flatten().enumerate() {
            if !plan.charges.iter().any(|c| &c.id == charge_id) {
                r.error(
                    IssueCode::UnknownCharge,
                    format!("{path}.charges[{ref_idx}]"),
                    format!("no charge `{charge_id}` in the plan"),
                );
            }
        }
    }
}

fn check_taxes(r: &mut Report, plan: &Plan) {
    let mut tax_ids = BTreeSet::new();
    for (tax_idx, tax) in plan.taxes.iter().enumerate() {
        let path = Sub(&"$.taxes", Part::Index(tax_idx));
        if !tax_ids.insert(tax.id.as_str()) {
            r.error(
                IssueCode::DuplicateId,
                format!("{path}.id"),
                format!("tax `{}` is defined twice", tax.id),
            );
        }
        if tax.percent < Decimal::ZERO || tax.percent > Decimal::ONE_HUNDRED {
            r.error(
                IssueCode::PercentOutOfRange,
                format!("{path}.percent"),
                format!("{}% is outside 0 to 100", tax.percent),
            );
        }
    }
}

fn check_credits(r: &mut Report, plan: &Plan, minor_units: u32) {
    for (credit_idx, credit) in plan.credits.iter().enumerate() {
        let credit_path = Sub(&"$.credits", Part::Index(credit_idx));
        let path = Sub(&credit_path, Part::Key("amount"));
        if credit.amount < Decimal::ZERO {
            r.error(
                IssueCode::NegativeValue,
                path.to_string(),
                "a credit amount is negative",
            );
        }
        check_amount_scale(r, &path, credit.amount.0, minor_units, &plan.currency);
    }
}

fn check_plugin_ref(r: &mut Report, path: &dyn fmt::Display, plugin: &str) {
    let valid = plugin.split_once('@').is_some_and(|(name, version)| {
        !name.is_empty()
            && !version.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !valid {
        r.error(
            IssueCode::BadPluginRef,
            path,
            format!("`{plugin}` is not a plugin reference of the form `name@version`"),
        );
    }
}

fn check_price(r: &mut Report, path: &dyn fmt::Display, price: Decimal) {
    if price < Decimal::ZERO {
        r.error(
            IssueCode::NegativePrice,
            path,
            format!("the price {price} is negative"),
        );
    }
    if price.normalize().scale() > MAX_PRICE_SCALE {
        r.error(
            IssueCode::PriceScaleTooLarge,
            path,
            format!("{price} has more than {MAX_PRICE_SCALE} decimal places"),
        );
    }
}

fn check_amount_scale(
    r: &mut Report,
    path: &dyn fmt::Display,
    amount: Decimal,
    minor_units: u32,
    currency: &str,
) {
    if amount.normalize().scale() > minor_units {
        r.error(
            IssueCode::AmountFinerThanCurrency,
            path,
            format!("{amount} has more decimals than {currency}'s {minor_units} minor units"),
        );
    }
}

/// Shared checks of tier bounds: `up_to` strictly increasing and positive, only the last
/// unbounded, `from` (when given) equal to the previous bound.
fn check_bounds(
    r: &mut Report,
    path: &dyn fmt::Display,
    bounds: &[(Option<Decimal>, Option<Decimal>)],
    what: &str,
    rules: BoundRules,
) {
    if bounds.is_empty() {
        r.error(
            IssueCode::NoTiers,
            path,
            format!("at least one {what} is needed"),
        );
        return;
    }
    let last_idx = bounds.len() - 1;
    let mut previous = Decimal::ZERO;
    for (idx, (from, up_to)) in bounds.iter().enumerate() {
        let tpath = Sub(&path, Part::Index(idx));
        if let Some(from) = from {
            check_from(r, &tpath, *from, previous, idx, what, rules.ranges);
        }
        match up_to {
            None if idx != last_idx => {
                r.error(
                    IssueCode::UnboundedTierNotLast,
                    format!("{tpath}.up_to"),
                    format!("only the last {what} may be unbounded"),
                );
            }
            Some(_) if idx == last_idx && rules.last_tier == LastTier::Unbounded => {
                r.error(IssueCode::LastTierBounded, format!("{tpath}.up_to"), format!("the last {what} must be unbounded (`up_to`: null) so every quantity has a price, or the plan says `\"last_tier\": \"bounded\"`"));
            }
            Some(up_to) => {
                if *up_to <= previous {
                    r.error(
                        IssueCode::TierBoundsNotIncreasing,
                        format!("{tpath}.up_to"),
                        format!("`up_to` {up_to} is not above the previous bound {previous}"),
                    );
                }
                previous = *up_to;
            }
            None => {}
        }
    }
}

/// The plan's conventions on tier bounds.
#[derive(Clone, Copy)]
struct BoundRules {
    ranges: TierRanges,
    last_tier: LastTier,
}

impl BoundRules {
    fn of(plan: &Plan) -> BoundRules {
        BoundRules {
            ranges: plan.tier_ranges,
            last_tier: plan.last_tier,
        }
    }
}

/// A tier's `from` against the previous bound, read as the plan's [`TierRanges`] says:
/// `continuous` wants the previous `up_to` itself, `whole_units` the next whole unit after it
/// (0 or 1 for the first tier).
fn check_from(
    r: &mut Report,
    tpath: &Sub<'_>,
    from: Decimal,
    previous: Decimal,
    idx: usize,
    what: &str,
    ranges: TierRanges,
) {
    let expected = match ranges {
        TierRanges::Continuous => previous,
        TierRanges::WholeUnits => {
            if !from.fract().is_zero() {
                r.error(
                    IssueCode::TierGap,
                    format!("{tpath}.from"),
                    format!("{what} {} starts at {from}: with `tier_ranges` `whole_units`, `from` is a whole unit", idx + 1),
                );
                return;
            }
            if idx == 0 && from == Decimal::ONE {
                return;
            }
            if idx == 0 {
                previous
            } else {
                match previous.checked_add(Decimal::ONE) {
                    Some(next) => next,
                    None => return,
                }
            }
        }
    };
    let reading = match ranges {
        TierRanges::Continuous
            if previous.checked_add(Decimal::ONE) == Some(from) && previous.fract().is_zero() =>
        {
            " (ranges of whole units such as 0–10, 11–20 are accepted with `\"tier_ranges\": \"whole_units\"`)"
        }
        _ => "",
    };
    if from > expected {
        r.error(
            IssueCode::TierGap,
            format!("{tpath}.from"),
            format!(
                "gap: {what} {} starts at {from} but the previous one ends at {previous}{reading}",
                idx + 1
            ),
        );
    } else if from < expected {
        r.error(
            IssueCode::TierOverlap,
            format!("{tpath}.from"),
            format!(
                "overlap: {what} {} starts at {from} but the previous one ends at {previous}",
                idx + 1
            ),
        );
    }
}

fn check_tiers(
    r: &mut Report,
    path: &dyn fmt::Display,
    tiers: &[Tier],
    _volume: bool,
    plan: &Plan,
) {
    let bounds: Vec<_> = tiers
        .iter()
        .map(|t| (t.from.map(Decimal::from), t.up_to.map(Decimal::from)))
        .collect();
    check_bounds(
        r,
        &format_args!("{path}.tiers"),
        &bounds,
        "tier",
        BoundRules::of(plan),
    );
    let minor_units = Currency::resolve(&plan.currency, &plan.custom_units)
        .map_or(MAX_CUSTOM_SCALE, |c| c.minor_units);
    for (tier_idx, tier) in tiers.iter().enumerate() {
        let tpath_list = Sub(&path, Part::Key("tiers"));
        let tpath = Sub(&tpath_list, Part::Index(tier_idx));
        check_price(r, &format_args!("{tpath}.unit_price"), tier.unit_price.0);
        check_price(r, &format_args!("{tpath}.flat_fee"), tier.flat_fee.0);
        check_amount_scale(
            r,
            &format_args!("{tpath}.flat_fee"),
            tier.flat_fee.0,
            minor_units,
            &plan.currency,
        );
    }
}

fn check_steps(
    r: &mut Report,
    path: &dyn fmt::Display,
    steps: &[Step],
    minor_units: u32,
    currency: &str,
    rules: BoundRules,
) {
    let bounds: Vec<_> = steps
        .iter()
        .map(|s| (s.from.map(Decimal::from), s.up_to.map(Decimal::from)))
        .collect();
    check_bounds(r, &format_args!("{path}.steps"), &bounds, "band", rules);
    for (step_idx, step) in steps.iter().enumerate() {
        let spath_list = Sub(&path, Part::Key("steps"));
        let spath_elem = Sub(&spath_list, Part::Index(step_idx));
        let spath = Sub(&spath_elem, Part::Key("price"));
        check_price(r, &spath, step.price.0);
        check_amount_scale(r, &spath, step.price.0, minor_units, currency);
    }
    for (step_idx, pair) in steps.windows(2).enumerate() {
        if pair[1].price < pair[0].price {
            r.warn(
                IssueCode::VolumeCliff,
                format!("{path}.steps[{}].price", step_idx + 1),
                format!(
                    "band {} costs {} but band {} costs {}: more usage gives a lower bill",
                    step_idx + 2,
                    pair[1].price,
                    step_idx + 1,
                    pair[0].price
                ),
            );
        }
    }
}

fn lint_tiers(
    r: &mut Report,
    path: &dyn fmt::Display,
    tiers: &[Tier],
    volume: bool,
    charge: &Charge,
) {
    for (idx, pair) in tiers.windows(2).enumerate() {
        let (lower, upper) = (&pair[0], &pair[1]);
        let upath = format!("{path}.tiers[{}]", idx + 1);
        if volume && let Some(bound) = lower.up_to {
            // The bill just below and just above the bound.
            let below = bound
                .checked_mul(lower.unit_price.0)
                .and_then(|a| a.checked_add(lower.flat_fee.0));
            let above = bound
                .checked_mul(upper.unit_price.0)
                .and_then(|a| a.checked_add(upper.flat_fee.0));
            if let (Some(below), Some(above)) = (below, above)
                && above < below
            {
                let breakeven = if upper.unit_price.is_zero() {
                    None
                } else {
                    below
                        .checked_sub(upper.flat_fee.0)
                        .and_then(|x| x.checked_div(upper.unit_price.0))
                };
                let hint = breakeven.map_or(String::new(), |q| {
                    format!(
                        "; usage from {} up to {} costs less than {} does",
                        bound.normalize(),
                        q.normalize(),
                        bound.normalize()
                    )
                });
                r.warn(
                    IssueCode::VolumeCliff,
                    upath.to_string(),
                    format!("at {} units the bill drops from {} to {}: more usage gives a lower bill{hint}", bound.normalize(), below.normalize(), above.normalize()),
                );
            }
        }
        if lower.unit_price > Decimal::ZERO && upper.unit_price > Decimal::ZERO {
            let (low, high) = if lower.unit_price < upper.unit_price {
                (lower.unit_price, upper.unit_price)
            } else {
                (upper.unit_price, lower.unit_price)
            };
            if low
                .checked_mul(Decimal::TEN)
                .is_some_and(|ten_low| high > ten_low)
            {
                r.warn(
                    IssueCode::PriceJump,
                    format!("{upath}.unit_price"),
                    format!("unit price changes more than 10× from tier {} ({}) to tier {} ({}): a typo?", idx + 1, lower.unit_price.normalize(), idx + 2, upper.unit_price.normalize()),
                );
            }
        }
    }
    // Tiers the charge's maximum makes unreachable (graduated: the amount at a tier's lower bound
    // already reaches the cap).
    if let (Some(maximum), false) = (charge.maximum, volume) {
        let mut cost = Decimal::ZERO;
        let mut lower = Decimal::ZERO;
        for (tier_idx, tier) in tiers.iter().enumerate() {
            if tier_idx > 0 && cost >= maximum.0 {
                r.warn(
                    IssueCode::UnreachableTier,
                    format!("{path}.tiers[{tier_idx}]"),
                    format!("the charge maximum {} is reached before tier {} starts at {}: this tier never applies", maximum.normalize(), tier_idx + 1, lower.normalize()),
                );
                break;
            }
            let Some(up_to) = tier.up_to else { break };
            let step = up_to
                .checked_sub(lower)
                .and_then(|w| w.checked_mul(tier.unit_price.0))
                .and_then(|a| a.checked_add(tier.flat_fee.0));
            match step.and_then(|s| cost.checked_add(s)) {
                Some(c) => cost = c,
                None => break,
            }
            lower = up_to.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_code_serializes_as_the_text_it_is_read_from() {
        // Every variant: a new one fails to compile in the match until it is listed here.
        let all = [
            IssueCode::InvalidJson,
            IssueCode::AmountFinerThanCurrency,
            IssueCode::BadConvention,
            IssueCode::BadDiscount,
            IssueCode::BadFilter,
            IssueCode::BadMatrix,
            IssueCode::BadPercentage,
            IssueCode::BadPluginRef,
            IssueCode::DiscountNeverApplies,
            IssueCode::DuplicateId,
            IssueCode::EmptyId,
            IssueCode::EmptyProperty,
            IssueCode::FlatWithMetric,
            IssueCode::LastTierBounded,
            IssueCode::MetricNotCharged,
            IssueCode::MinimumAboveMaximum,
            IssueCode::MissingMetric,
            IssueCode::NegativePrice,
            IssueCode::NegativeValue,
            IssueCode::NoTiers,
            IssueCode::NonPositiveFactor,
            IssueCode::PercentOutOfRange,
            IssueCode::PercentageNeedsSum,
            IssueCode::PrecisionTooLarge,
            IssueCode::PriceJump,
            IssueCode::PriceScaleTooLarge,
            IssueCode::TierBoundsNotIncreasing,
            IssueCode::TierGap,
            IssueCode::TierOverlap,
            IssueCode::UnboundedTierNotLast,
            IssueCode::UnitScaleTooLarge,
            IssueCode::UnitShadowsIso,
            IssueCode::UnknownCharge,
            IssueCode::UnknownCurrency,
            IssueCode::UnknownMetric,
            IssueCode::UnreachableTier,
            IssueCode::VolumeCliff,
            IssueCode::ZeroInterval,
        ];
        for code in all {
            match code {
                IssueCode::InvalidJson
                | IssueCode::AmountFinerThanCurrency
                | IssueCode::BadConvention
                | IssueCode::BadDiscount
                | IssueCode::BadFilter
                | IssueCode::BadMatrix
                | IssueCode::BadPercentage
                | IssueCode::BadPluginRef
                | IssueCode::DiscountNeverApplies
                | IssueCode::DuplicateId
                | IssueCode::EmptyId
                | IssueCode::EmptyProperty
                | IssueCode::FlatWithMetric
                | IssueCode::LastTierBounded
                | IssueCode::MetricNotCharged
                | IssueCode::MinimumAboveMaximum
                | IssueCode::MissingMetric
                | IssueCode::NegativePrice
                | IssueCode::NegativeValue
                | IssueCode::NoTiers
                | IssueCode::NonPositiveFactor
                | IssueCode::PercentOutOfRange
                | IssueCode::PercentageNeedsSum
                | IssueCode::PrecisionTooLarge
                | IssueCode::PriceJump
                | IssueCode::PriceScaleTooLarge
                | IssueCode::TierBoundsNotIncreasing
                | IssueCode::TierGap
                | IssueCode::TierOverlap
                | IssueCode::UnboundedTierNotLast
                | IssueCode::UnitScaleTooLarge
                | IssueCode::UnitShadowsIso
                | IssueCode::UnknownCharge
                | IssueCode::UnknownCurrency
                | IssueCode::UnknownMetric
                | IssueCode::UnreachableTier
                | IssueCode::VolumeCliff
                | IssueCode::ZeroInterval => {}
            }
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<IssueCode>(&json).unwrap(), code);
        }
    }

    /// Validates a plan given as JSON and returns `code path` lines, errors then warnings.
    fn check(plan: &str, expected: &[&str]) {
        let plan: Plan = serde_json::from_str(plan).unwrap();
        let report = validate_plan(&plan);
        let actual: Vec<String> = report
            .errors
            .iter()
            .chain(&report.warnings)
            .map(|i| format!("{} {}", i.code, i.path))
            .collect();
        assert_eq!(actual, expected, "{report:#?}");
    }

    fn with_charge(model: &str, extra: &str) -> String {
        format!(
            r#"{{"id":"p","currency":"USD","metrics":[{{"code":"m","aggregation":{{"type":"count"}}}}],
               "charges":[{{"id":"c","metric":"m","model":{model}{extra}}}]}}"#
        )
    }

    #[test]
    fn a_clean_plan_has_no_findings() {
        check(
            &with_charge(
                r#"{"type":"graduated","tiers":[{"up_to":"10","unit_price":"1"},{"up_to":null,"unit_price":"0.5"}]}"#,
                "",
            ),
            &[],
        );
    }

    #[test]
    fn every_tier_error_is_reported_with_its_path() {
        check(
            &with_charge(
                r#"{"type":"graduated","tiers":[{"up_to":"10","unit_price":"-1"},{"from":"12","up_to":"10","unit_price":"1"},{"from":"5","up_to":null,"unit_price":"0.0000000000001"}]}"#,
                "",
            ),
            &[
                "tier_gap $.charges[0].model.tiers[1].from",
                "tier_bounds_not_increasing $.charges[0].model.tiers[1].up_to",
                "tier_overlap $.charges[0].model.tiers[2].from",
                "negative_price $.charges[0].model.tiers[0].unit_price",
                "price_scale_too_large $.charges[0].model.tiers[2].unit_price",
                "price_jump $.charges[0].model.tiers[2].unit_price",
            ],
        );
        check(
            &with_charge(
                r#"{"type":"volume","tiers":[{"up_to":null,"unit_price":"1"},{"up_to":"5","unit_price":"1"}]}"#,
                "",
            ),
            &[
                "unbounded_tier_not_last $.charges[0].model.tiers[0].up_to",
                "last_tier_bounded $.charges[0].model.tiers[1].up_to",
            ],
        );
    }

    #[test]
    fn plan_level_errors_are_all_listed() {
        check(
            r#"{"id":"","currency":"XYZ","metrics":[],"charges":[{"id":"c","metric":"nope","model":{"type":"per_unit","unit_price":"1"}},
               {"id":"c","model":{"type":"flat","amount":"9.999"}}],"discounts":[{"id":"d","percent":"150"}]}"#,
            &[
                "empty_id $.id",
                "unknown_currency $.currency",
                "unknown_metric $.charges[0].metric",
                "duplicate_id $.charges[1].id",
                "percent_out_of_range $.discounts[0].percent",
            ],
        );
        check(
            r#"{"id":"p","currency":"USD","charges":[{"id":"f","model":{"type":"flat","amount":"9.999"}}]}"#,
            &["amount_finer_than_currency $.charges[0].model.amount"],
        );
    }

    #[test]
    fn lint_finds_volume_cliffs_unreachable_tiers_and_uncharged_metrics() {
        // 100 units cost 100.00 but 100.0001 cost 50: a cliff.
        check(
            &with_charge(
                r#"{"type":"volume","tiers":[{"up_to":"100","unit_price":"1"},{"up_to":null,"unit_price":"0.5"}]}"#,
                "",
            ),
            &["volume_cliff $.charges[0].model.tiers[1]"],
        );
        check(
            &with_charge(
                r#"{"type":"stairstep","steps":[{"up_to":"10","price":"50"},{"up_to":null,"price":"40"}]}"#,
                "",
            ),
            &["volume_cliff $.charges[0].model.steps[1].price"],
        );
        // The cap of 10 is reached by the first tier (100 × 1): tier 2 never applies.
        check(
            &with_charge(
                r#"{"type":"graduated","tiers":[{"up_to":"100","unit_price":"1"},{"up_to":null,"unit_price":"0.9"}]}"#,
                r#","maximum":"10""#,
            ),
            &["unreachable_tier $.charges[0].model.tiers[1]"],
        );
        check(
            r#"{"id":"p","currency":"USD","metrics":[{"code":"m","aggregation":{"type":"count"}}]}"#,
            &["metric_not_charged $.metrics[0]"],
        );
    }
}
