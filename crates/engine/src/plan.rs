//! The plan (rate card): Ratecard's public input contract.
//!
//! A plan says what is counted ([`Metric`]), how each count is priced ([`Charge`] = metric +
//! [`PriceModel`]), and how the invoice is finished (discounts, minimum commitment, taxes,
//! prepaid credits, rounding). Every field is documented here; `ratecard schema plan` prints the
//! generated JSON Schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decimal::Dec;
use crate::money::{CustomUnit, RoundingPolicy};

/// A rate card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Stable identifier, e.g. `"api-pro-2026"`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// ISO 4217 code (`"USD"`, `"JPY"`, `"BHD"`) or the code of a declared custom unit.
    pub currency: String,
    /// Custom units (e.g. prepaid `"credits"`) with their declared scale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_units: Vec<CustomUnit>,
    /// The billing interval.
    #[serde(default)]
    pub interval: Interval,
    /// Where amounts are rounded to the currency's minor units, and how.
    #[serde(default)]
    pub rounding: RoundingPolicy,
    /// Which tier a quantity exactly on a boundary belongs to (see [`TierConvention`]).
    #[serde(default)]
    pub tier_convention: TierConvention,
    /// How the optional `from` of a tier or band is read (see [`TierRanges`]): `continuous`
    /// (the default: it repeats the previous `up_to`) or `whole_units` (ranges copied from Lago,
    /// or from Stripe's and Orb's documentation: `0–10, 11–20, 21–∞`). See `docs/conventions.md`.
    #[serde(default, skip_serializing_if = "TierRanges::is_default")]
    pub tier_ranges: TierRanges,
    /// When a charge's `maximum` applies: before the plan's discounts (the default) or after
    /// the discounts given to that charge alone (see [`ChargeMaximum`]).
    #[serde(default, skip_serializing_if = "ChargeMaximum::is_default")]
    pub charge_maximum: ChargeMaximum,
    /// When a charge's `minimum` applies: before the plan's discounts (the default) or to what
    /// is left after the discounts given to that charge alone (see [`ChargeMinimum`]).
    #[serde(default, skip_serializing_if = "ChargeMinimum::is_default")]
    pub charge_minimum: ChargeMinimum,
    /// Whether the last tier (or band) may have an `up_to` (see [`LastTier`]).
    #[serde(default, skip_serializing_if = "LastTier::is_default")]
    pub last_tier: LastTier,
    /// How flat fees are prorated for partial periods.
    #[serde(default)]
    pub proration: ProrationMode,
    /// Days of free trial from the subscription start: recurring fees are prorated out of it and
    /// usage events inside it are not billed.
    #[serde(default)]
    pub trial_days: u32,
    /// What is counted.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// How it is priced. Charges appear on the invoice in this order.
    #[serde(default)]
    pub charges: Vec<Charge>,
    /// A minimum spend per period: if the charges sum to less, a true-up line makes up the
    /// difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_commitment: Option<Dec>,
    /// Discounts, applied to the subtotal in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discounts: Vec<Discount>,
    /// Taxes on the discounted subtotal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taxes: Vec<TaxRate>,
    /// Prepaid credits granted by the plan each period, applied last (a total never goes below 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<Credit>,
}

/// A billing interval: `{"unit": "month", "count": 1}`, or just `"month"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(from = "IntervalRepr")]
pub struct Interval {
    pub unit: IntervalUnit,
    /// How many units make one period (every 2 weeks: `{"unit": "week", "count": 2}`).
    pub count: u32,
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            unit: IntervalUnit::Month,
            count: 1,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
enum IntervalRepr {
    Unit(IntervalUnit),
    Full {
        unit: IntervalUnit,
        #[serde(default = "one")]
        count: u32,
    },
}

fn one() -> u32 {
    1
}

impl From<IntervalRepr> for Interval {
    fn from(repr: IntervalRepr) -> Interval {
        match repr {
            IntervalRepr::Unit(unit) => Interval { unit, count: 1 },
            IntervalRepr::Full { unit, count } => Interval { unit, count },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum IntervalUnit {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// Which tier a quantity exactly on a tier boundary belongs to.
///
/// Tiers are written with `up_to` bounds. Quantities are continuous: 5.5 units is never "between"
/// tiers. The two conventions differ only for a quantity *exactly* on a bound `b`:
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TierConvention {
    /// Tier i covers `(up_to[i-1], up_to[i]]`: `b` belongs to the lower tier. This is Stripe's
    /// inclusive `up_to` and Orb's `last_unit`. Graduated: the first 10 units of a `up_to: 10`
    /// tier are priced there and unit 10.0001 is the next tier's. A tier's flat fee is due once
    /// the quantity is strictly above the tier's lower bound.
    #[default]
    UpperInclusive,
    /// Tier i covers `[up_to[i-1], up_to[i])`: `b` already belongs to the upper tier (ranges with
    /// an inclusive lower bound, "from 10"). Volume and stairstep pick the upper tier at exactly
    /// `b`, and a graduated tier's flat fee is due once the quantity reaches its lower bound.
    LowerInclusive,
}

/// How a tier's (or band's) optional `from` is read. Pricing only ever uses `up_to`; `from` is
/// there so ranges copied from another platform can be pasted as they are and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TierRanges {
    /// `from` is the previous tier's `up_to` (0 for the first): `[0, 10], (10, 20], (20, ∞)`.
    #[default]
    Continuous,
    /// Ranges of whole units, both ends written: `from` is the first unit of the tier, the
    /// previous `up_to` + 1 (the first tier starts at 0 or 1): Lago's `from_value`/`to_value`
    /// (`0–10, 11–20, 21–∞`) and the ranges of Stripe's and Orb's documentation (`1–10, 11–∞`).
    /// Tier 2 of `0–10, 11–20` prices everything above 10 (10.5 units: 10 in tier 1, 0.5 in
    /// tier 2, as Lago computes `units − from + 1`), so this needs `tier_convention`
    /// `upper_inclusive`.
    WholeUnits,
}

impl TierRanges {
    pub fn is_default(&self) -> bool {
        *self == TierRanges::Continuous
    }
}

/// The order of a charge's `maximum` (spend cap) and the discounts of that charge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChargeMaximum {
    /// The charge's lines are capped at its maximum; discounts then apply to the capped amount
    /// (usage 200, maximum 150, 10 % off the charge: 150 − 15 = 135).
    #[default]
    BeforeDiscounts,
    /// The discounts scoped to the charge alone (`discounts[].charges: ["id"]`) apply first,
    /// then the cap, as an extra discount `"<id>.maximum"` bringing the charge's net down to
    /// its maximum (OpenMeter's percentage discount, then maximum spend: 200 − 20 = 180 → 150).
    AfterDiscounts,
}

impl ChargeMaximum {
    pub fn is_default(&self) -> bool {
        *self == ChargeMaximum::BeforeDiscounts
    }
}

/// The order of a charge's `minimum` (minimum spend) and the discounts of that charge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChargeMinimum {
    /// The charge's lines are raised to its minimum; discounts then apply to the raised amount
    /// (usage 80, minimum 100, 10 % off the charge: 100 − 10 = 90).
    #[default]
    BeforeDiscounts,
    /// The minimum is compared with the charge's net after the discounts scoped to it alone
    /// (`discounts[].charges: ["id"]`); a shortfall is a line of origin `charge_minimum`,
    /// which those discounts do not reduce (OpenMeter's minimum spend, net of the rate card's
    /// percentage discount: 80 − 8 = 72, minimum spend line 28, the charge nets 100).
    AfterDiscounts,
}

impl ChargeMinimum {
    pub fn is_default(&self) -> bool {
        *self == ChargeMinimum::BeforeDiscounts
    }
}

/// Whether the last tier or band of a plan's models may be bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LastTier {
    /// The last tier must be unbounded (`up_to: null`), so every quantity has a price.
    #[default]
    Unbounded,
    /// The last tier may carry an `up_to` (Orb's `last_unit` on the last tier, a tier's
    /// maximum units): a quantity beyond it has no price, and rating it is an error naming the
    /// charge, the quantity and the bound, never a silent zero for the excess.
    Bounded,
}

impl LastTier {
    pub fn is_default(&self) -> bool {
        *self == LastTier::Unbounded
    }
}

/// How flat fees are prorated when only part of a period is billed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProrationMode {
    /// By local calendar days: the fraction is days used / days in the period, with a partial
    /// day counted from the start of its local day (Lago, Chargebee).
    #[default]
    Days,
    /// By elapsed seconds between instants (Stripe): a 23-hour DST day weighs less.
    Seconds,
}

/// A metric: what is counted from usage events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Identifier used by charges and aggregated usage (`"api_calls"`).
    pub code: String,
    #[serde(default)]
    pub name: String,
    /// Display unit (`"GB"`, `"calls"`, `"km"`).
    #[serde(default)]
    pub unit: String,
    /// The event code (`"code"` field of events) this metric counts. Defaults to `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// How matching events are aggregated.
    pub aggregation: Aggregation,
    /// Only events whose properties pass every filter are counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Event properties whose values split usage into groups: one invoice line per group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Turns the aggregated value into the billed quantity (bytes → GB, rounding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
    /// What a negative billed quantity becomes (see [`NegativeValues`]).
    #[serde(default, skip_serializing_if = "NegativeValues::is_default")]
    pub negative_values: NegativeValues,
    /// Whether the metric's value starts each period from zero or from the previous period's
    /// value (see [`Recurrence`]).
    #[serde(default, skip_serializing_if = "Recurrence::is_default")]
    pub recurrence: Recurrence,
}

/// Where a metric's value starts each period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Recurrence {
    /// From zero: each period aggregates its own events.
    #[default]
    PerPeriod,
    /// From the previous period's value, given as the usage's `carry_in` (Lago's recurring
    /// `sum_agg`: seats added with positive values and removed with negative ones stay billed
    /// until removed). For an ungrouped `sum`: the value is `carry_in` + the period's events,
    /// and it is the next period's `carry_in`. For an ungrouped `unique_count` (Lago's
    /// recurring `unique_count_agg`): `carry_in` is the list of values active at the end of
    /// the previous period, the period's events add and remove values, and the line's first
    /// breakdown row lists the values active at its end, the next period's `carry_in`.
    CarriedOver,
}

impl Recurrence {
    pub fn is_default(&self) -> bool {
        *self == Recurrence::PerPeriod
    }
}

/// What a metric's negative quantity (a `latest` or `sum` below zero, after conversion)
/// becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NegativeValues {
    /// Aggregated from events, it is priced as it is (a negative line, a credit); given
    /// directly in `quantities`, it is refused.
    #[default]
    Bill,
    /// Billed as 0, whether aggregated from events or given in `quantities` (Lago floors a
    /// negative `latest` at 0). The line's breakdown says so.
    FloorAtZero,
}

impl NegativeValues {
    pub fn is_default(&self) -> bool {
        *self == NegativeValues::Bill
    }

    /// The billed quantity of a converted value under this rule.
    pub fn apply(self, quantity: rust_decimal::Decimal) -> rust_decimal::Decimal {
        match self {
            NegativeValues::Bill => quantity,
            NegativeValues::FloorAtZero => quantity.max(rust_decimal::Decimal::ZERO),
        }
    }
}

impl Metric {
    /// The event code this metric counts.
    pub fn event_code(&self) -> &str {
        self.event.as_deref().unwrap_or(&self.code)
    }
}

/// An aggregation over the events of one customer, metric and group in one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Aggregation {
    /// Number of events.
    Count,
    /// Sum of a numeric property.
    Sum { property: String },
    /// Largest value of a numeric property.
    Max { property: String },
    /// Smallest value of a numeric property.
    Min { property: String },
    /// Number of distinct values of a property (any JSON scalar).
    UniqueCount {
        property: String,
        /// The property holding each event's operation on its value, `add` (also when the
        /// property is missing) or `remove` (Lago's `operation_type`): the count is then of
        /// the values whose latest event (by timestamp, ties in push order) adds them. Default:
        /// none (every value seen counts), `operation_type` with `recurrence` `carried_over`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation_property: Option<String>,
    },
    /// The value of a numeric property on the event with the latest timestamp (ties: last seen
    /// in input order).
    Latest { property: String },
    /// Integral of a level over time, in `per` units (GB-hours, seat-days). Each event sets the
    /// level from its timestamp on (`values: "absolute"`) or changes it by its value
    /// (`values: "increment"`); the level at period start is the usage's `carry_in`, else 0.
    TimeWeightedSum {
        property: String,
        #[serde(default)]
        values: LevelValues,
        #[serde(default)]
        per: TimeUnit,
    },
    /// Average level over the period: the time-weighted sum divided by the period length
    /// (seats or GB stored, prorated by time held).
    TimeWeightedAverage {
        property: String,
        #[serde(default)]
        values: LevelValues,
    },
    /// Computed by a plugin (`"p95@1.0.0"`) with its config.
    Custom {
        plugin: String,
        #[serde(default)]
        config: serde_json::Value,
    },
}

/// How the values of a time-weighted metric's events are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LevelValues {
    /// Each event states the new level (a gauge reading: "42 seats now").
    #[default]
    Absolute,
    /// Each event adds to the level (+1 seat, -1 seat).
    Increment,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Second,
    Minute,
    #[default]
    Hour,
    Day,
}

impl TimeUnit {
    pub fn seconds(self) -> i64 {
        match self {
            TimeUnit::Second => 1,
            TimeUnit::Minute => 60,
            TimeUnit::Hour => 3600,
            TimeUnit::Day => 86_400,
        }
    }
}

/// A filter on an event property: `{"property": "region", "equals": "eu"}` or
/// `{"property": "region", "in": ["eu", "us"]}`. Values compare as strings (numbers by their
/// JSON text); an event without the property fails the filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub property: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Inverts the filter: the event passes when the property is absent or does not match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negate: bool,
}

/// Converts an aggregated value into the billed quantity: `value * multiply_by / divide_by`, then
/// rounded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Conversion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiply_by: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<QuantityRounding>,
}

/// Rounding of a quantity (not money): `{"mode": "ceil", "precision": 0}` bills whole GB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuantityRounding {
    pub mode: QuantityRoundingMode,
    /// Decimal places kept (0 = whole units). Negative rounds left of the decimal point, as
    /// Lago's `rounding_precision` does: -1 to tens (123.4567 → 120), -2 to hundreds.
    #[serde(default)]
    pub precision: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuantityRoundingMode {
    /// Half away from zero.
    Round,
    Ceil,
    Floor,
}

/// A charge: a price model applied to a metric's quantity (or, for flat fees, to nothing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Charge {
    /// Identifier, unique in the plan.
    pub id: String,
    /// Invoice line text. Defaults to the metric's name or the id.
    #[serde(default)]
    pub description: String,
    /// The metric priced. Required for every model but `flat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub model: PriceModel,
    /// An allowance included in the plan: only usage beyond it is priced (overage). With groups,
    /// the allowance is consumed by groups in their sorted order. On a flat percentage with
    /// free events or per-transaction bounds it is a free amount spent on the transactions
    /// themselves, as Lago's `free_units_per_total_aggregation` (the metric ungrouped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included: Option<Dec>,
    /// Minimum spend for this charge per period (the line is raised to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<Dec>,
    /// Maximum for this charge per period (the line is capped at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<Dec>,
    /// What a graduated or volume charge bills when its billable quantity is zero (see
    /// [`ZeroUsage`]); other models always price zero usage at zero.
    #[serde(default, skip_serializing_if = "ZeroUsage::is_default")]
    pub zero_usage: ZeroUsage,
    /// How the charge's units are prorated when only part of the period is billed (a first
    /// shorter period, a trial ending or a plan change inside it).
    #[serde(default, skip_serializing_if = "UsageProration::is_default")]
    pub usage_proration: UsageProration,
}

/// Whether a charge's units are prorated for a partial period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum UsageProration {
    /// Units are billed as they are, whatever part of the period is billed.
    #[default]
    None,
    /// A volume charge's tier is chosen by the full, unprorated units; the units priced are
    /// the full units × the billed share of the period (the share flat fees are prorated by);
    /// the tier's flat fee is not prorated (Lago's prorated volume charge, `volume_service.rb`).
    /// On a per-unit charge, the units × the share.
    TierByFullUnits,
    /// Each unit is billed for the local days it was held (Lago's prorated charge on a
    /// recurring `sum_agg`, `prorated_aggregations/sum_service.rb`): the carried-in value × the
    /// billed days ÷ the cycle's days, plus each event's value × the days from its local date
    /// to the end of the billed part (its own day included) ÷ the cycle's days, rounded up to
    /// 5 decimals; a volume tier is chosen by the full units and its flat fee not prorated.
    /// On graduated tiers, Lago's prorated graduated ranges, event by event
    /// (`prorated_graduated_service.rb`). For an ungrouped carried-over `sum` without
    /// conversion, on volume, graduated and per-unit charges.
    DaysHeld,
}

impl UsageProration {
    pub fn is_default(&self) -> bool {
        *self == UsageProration::None
    }
}

/// What a tiered charge bills at zero usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ZeroUsage {
    /// Nothing: a tier's flat fee is due once the quantity enters the tier, and zero enters
    /// none.
    #[default]
    Free,
    /// The first tier's flat fee, as OpenMeter bills graduated and volume tiers, and Lago
    /// volume ranges: the first tier is "entered" at zero. Any other quantity prices as usual.
    FirstTierFlatFee,
}

impl ZeroUsage {
    pub fn is_default(&self) -> bool {
        *self == ZeroUsage::Free
    }
}

/// Whether a percentage charge's transactions within its free amount (the charge's
/// `included`, without free events or per-transaction bounds) pay the fixed fee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FixedFeeWithinFreeAmount {
    /// Every transaction pays the fixed fee; the free amount is taken off the summed amount.
    #[default]
    Charged,
    /// Lago's free amount alone (`free_units_per_total_aggregation`, `percentage_service.rb`):
    /// the transactions whose running total, in push order, is below the free amount pay no
    /// fixed fee; the free amount is taken off the summed amount.
    Waived,
}

impl FixedFeeWithinFreeAmount {
    pub fn is_default(&self) -> bool {
        *self == FixedFeeWithinFreeAmount::Charged
    }
}

/// A price model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PriceModel {
    /// A recurring fee, independent of usage.
    Flat {
        amount: Dec,
        /// Billed at the start of the period (`advance`) or at its end (`arrears`).
        #[serde(default)]
        timing: FeeTiming,
        /// Prorate for a partial period (trial end, mid-period start or plan change).
        #[serde(default = "yes")]
        prorate: bool,
    },
    /// Every unit at one price.
    PerUnit { unit_price: Dec },
    /// Each tier prices the units that fall in it ("first 50 at 0.10, next 50 at 0.08"), plus
    /// its flat fee once the quantity enters it.
    Graduated { tiers: Vec<Tier> },
    /// All units at the price of the tier the total reaches, plus that tier's flat fee.
    Volume { tiers: Vec<Tier> },
    /// One flat price for the band the total reaches.
    Stairstep { steps: Vec<Step> },
    /// Units sold in packages: `ceil` (or `floor`) of (quantity − free units) / size, each at
    /// `package_price`.
    Package {
        package_size: Dec,
        package_price: Dec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        free_units: Option<Dec>,
        #[serde(default)]
        rounding: PackageRounding,
    },
    /// A percentage of transaction amounts (the metric sums the amounts), plus a fixed fee per
    /// transaction, with optional per-transaction minimum and maximum fees. With `tiers`, the
    /// percentage is graduated on the cumulative amount (each tier's `unit_price` is a percent).
    Percentage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<Dec>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tiers: Vec<Tier>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fixed_fee: Option<Dec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_per_transaction: Option<Dec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_per_transaction: Option<Dec>,
        /// The first N transactions of the period (in the order the events are given) are free:
        /// neither the percentage nor the fixed fee applies to them (Lago's
        /// `free_units_per_events`). Needs the individual transactions. With the charge's
        /// `included`, Lago's free amount and free events together.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        free_events: Option<u64>,
        /// Whether a transaction within the charge's free amount (`included`, without free
        /// events or per-transaction bounds) pays the fixed fee ([`FixedFeeWithinFreeAmount`]).
        #[serde(default, skip_serializing_if = "FixedFeeWithinFreeAmount::is_default")]
        fixed_fee_within_free_amount: FixedFeeWithinFreeAmount,
    },
    /// A unit price per combination of dimension values (region × instance type). The metric
    /// must group by exactly these dimensions.
    Matrix {
        dimensions: Vec<String>,
        prices: Vec<MatrixPrice>,
        /// Price for combinations not listed; without it an unlisted combination is an error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_unit_price: Option<Dec>,
    },
    /// Priced by a plugin (`"tou@1.0.0"`) with its config.
    Custom {
        plugin: String,
        #[serde(default)]
        config: serde_json::Value,
    },
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FeeTiming {
    #[default]
    Advance,
    Arrears,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PackageRounding {
    #[default]
    Up,
    Down,
}

/// A tier of a graduated, volume or percentage model. The last tier has no `up_to` (or `null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Optional lower bound, for ranges copied from platforms that write both ends: it must
    /// equal the previous tier's `up_to` (0 for the first), else the validator reports a gap or
    /// an overlap. Pricing only uses `up_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Dec>,
    #[serde(default)]
    pub up_to: Option<Dec>,
    #[serde(default)]
    pub unit_price: Dec,
    #[serde(default, skip_serializing_if = "Dec::is_zero")]
    pub flat_fee: Dec,
}

/// A band of a stairstep model: one price for any quantity in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Optional lower bound, checked like [`Tier::from`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Dec>,
    #[serde(default)]
    pub up_to: Option<Dec>,
    pub price: Dec,
}

/// One cell of a matrix: the dimension values, in `dimensions` order, and the unit price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MatrixPrice {
    pub values: Vec<String>,
    pub unit_price: Dec,
}

/// A discount on the subtotal: a percentage or a fixed amount, for a number of periods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Discount {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Percent off (`"10"` = 10 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Dec>,
    /// Amount off, in the plan currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Dec>,
    /// Applies to the first N periods of the subscription (period index 0..N); absent = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_periods: Option<u32>,
    /// Only these charges' lines are discounted; absent = the whole subtotal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charges: Option<Vec<String>>,
}

/// A tax rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Percent (`"20"` = 20 %).
    pub percent: Dec,
    /// Prices already include this tax (EU consumer prices): the tax is extracted, not added.
    #[serde(default)]
    pub inclusive: bool,
}

/// A prepaid credit: an amount that pays the total, applied last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Credit {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub amount: Dec,
}

/// Dimension values of one group, by property name. Empty for an ungrouped metric.
pub type GroupKey = BTreeMap<String, String>;

impl Aggregation {
    /// The property naming each event's `add` / `remove` operation, for a unique count that
    /// follows operations: its `operation_property`, else `operation_type` when the metric is
    /// carried over.
    pub fn operation_property(&self, recurrence: Recurrence) -> Option<&str> {
        match self {
            Aggregation::UniqueCount {
                operation_property, ..
            } => operation_property
                .as_deref()
                .or((recurrence == Recurrence::CarriedOver).then_some(LAGO_OPERATION_PROPERTY)),
            _ => None,
        }
    }
}

/// The event property Lago reads a unique count's operation from.
pub const LAGO_OPERATION_PROPERTY: &str = "operation_type";
