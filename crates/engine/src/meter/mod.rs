//! Metering: turns one customer's raw usage events into a quantity per metric and group.
//!
//! An [`Aggregator`] is built for one customer and one [`Window`] (`[start, end)` in Unix ms)
//! from a list of metrics. Events are [pushed](Aggregator::push) one at a time (the caller has
//! already chosen the customer's events); each push says what happened to the event
//! ([`Outcome`]) or why it could not be counted ([`EventError`]). [`Aggregator::finish`] then
//! yields [`MeteredUsage`]: for every metric, one [`GroupUsage`] per group with the raw
//! aggregated value and the billed quantity (after [`convert`]).
//!
//! # Routing a pushed event
//!
//! The checks run in this order; the first that applies decides the outcome:
//!
//! 1. No metric selects the event's `code` (a metric selects the events whose `code` equals
//!    [`Metric::event_code`]): [`Outcome::NoMetric`].
//! 2. The timestamp is outside the window (counted iff `start <= timestamp < end`):
//!    [`Outcome::OutsideWindow`].
//! 3. The event's id was already taken by this aggregator: [`Outcome::Duplicate`]. Ids are
//!    stored exactly (not as hashes); only the ids of events that changed the aggregation are
//!    stored, so an event that was filtered out or refused does not shadow a later one.
//! 4. The timestamp is before `billable_from` (a trial): [`Outcome::BeforeBillable`]. Such an
//!    event is not counted, with one exception: a time-weighted metric still takes its level
//!    change (see below), so seats added during a trial are billed after it. A trial event is
//!    validated against those time-weighted metrics only, and takes its id only if one of them
//!    took it.
//! 5. Every selecting metric's filters reject it: [`Outcome::Filtered`].
//! 6. Otherwise the event is validated against every selecting metric whose filters it passes
//!    and, only if it is valid for all of them, applied to each: [`Outcome::Counted`]. An event
//!    that is bad for any of them (a numeric property missing or not a number) is refused with an
//!    [`EventError`] and changes nothing at all, so a bad event never half-counts.
//!
//! # Filters and groups
//!
//! Filters compare the property's text ([`PropValue::as_text`]: strings as is, numbers by their
//! normalized decimal text, `true`/`false`). A filter matches when the property is present and
//! not null or nested, equals `equals` (if set) and is one of `in` (if set); `negate` inverts the
//! match (so a negated filter passes events without the property). An event must pass every
//! filter of a metric to be counted by it.
//!
//! A metric with `group_by` splits its usage by the text of those properties; a property that is
//! missing, null, nested or an unreadable number gives the value `"(none)"`. An ungrouped metric
//! has exactly one group, with the empty key, even without events; a grouped metric without
//! events has no groups. Groups are sorted by key.
//!
//! # Aggregations
//!
//! The raw value of a group is:
//!
//! - `count`: the number of counted events;
//! - `sum`, `max`, `min`: of a numeric property ([`PropValue::as_decimal`]); `max` and `min` of
//!   no events are 0;
//! - `unique_count`: the number of distinct texts of a property; an event without a readable
//!   text for it is counted (in `n_events`) but adds no distinct value;
//! - `latest`: the value on the event with the greatest timestamp, ties going to the event
//!   pushed last; 0 without events;
//! - `time_weighted_sum`, `time_weighted_average`: the level's integral over time. Events are
//!   sorted by timestamp (stable: events at one instant apply in push order). The level starts at
//!   the metric's `carry_in` (or 0) at the window start; an `absolute` event sets it, an
//!   `increment` event adds its value to it. The integral `Σ level × duration` accrues over
//!   `[max(start, billable_from), end)` in ms: level changes inside a trial move the level but
//!   trial time is not billed. The sum is the integral in `per` units (ms ÷ (`per` seconds ×
//!   1000), e.g. GB-days); the average is the integral divided by the whole window's length (so
//!   a trial prorates it). An ungrouped time-weighted metric without events still integrates its
//!   carry-in. `carry_in` applies to ungrouped time-weighted metrics only. A group reached only
//!   by trial level changes exists with `n_events` 0;
//! - `custom`: one accumulator per group from [`PluginHost::metric`]; counted events are copied
//!   ([`Event::into_owned`]) into batches of [`CUSTOM_BATCH_SIZE`] passed to
//!   [`MetricAccumulator::update`], and [`MetricAccumulator::finish`] gives the raw value.
//!
//! # Quantities and transactions
//!
//! A group's `quantity` is [`convert`] of its raw value: `raw × multiply_by ÷ divide_by`, then
//! rounded to `precision` decimals (`round`: half away from zero, `ceil`: toward +∞, `floor`:
//! toward −∞).
//!
//! For a metric priced by a `percentage` charge with `min_per_transaction` or
//! `max_per_transaction`, each counted event's value (its numeric property, or 1 for `count`) is
//! also recorded in [`GroupUsage::transactions`], in push order; other metrics have `None`.
//!
//! # Failures of the aggregation
//!
//! Problems that are not one event's fault are [`AggregateError`]s. Those found while pushing
//! (a sum overflowing the decimal range, a plugin failing on a batch or refusing to create a
//! group's accumulator) do not make the push fail: the metric stops aggregating and
//! [`Aggregator::finish`] returns the error of the first failed metric (in the order given to
//! [`Aggregator::new`]).
//!
//! Architecture Invariant: the aggregation is deterministic: the same pushes in the same order
//! give the same result, on every target. There is no `RandomState` hashing here, no clock and no
//! float. Nothing panics on input: arithmetic on input values is checked.
//!
//! Architecture Invariant: pushing an event to ungrouped built-in metrics allocates nothing per
//! event beyond amortized growth of the id set (ids live in one arena string); only custom
//! metrics copy the event.
//!
//! # Where each step lives
//!
//! - `route`: [`Router`] and [`Routing`]: the metrics selecting an event's code (step 1) and
//!   the hash of its id, computed once per event, on any thread.
//! - `aggregator`: [`Aggregator`]: the checks in order, validation against every selecting
//!   metric, applying, and finishing into [`MeteredUsage`].
//! - `slot`: one metric's state: its groups (keys, the group index), the accumulator of each
//!   aggregation kind, filters.
//! - `custom`: a custom (plugin) metric's group: its accumulator and the batch of events not
//!   yet passed to it.
//! - `time_weighted`: the level integral of a time-weighted group.
//! - `index`: `StrIndex` (numbered strings: group keys, unique values) and `IdSet` (event ids),
//!   both over one `Buckets` open-addressing table and the Fx hasher.

mod aggregator;
mod custom;
mod index;
mod route;
mod slot;
#[cfg(test)]
mod tests;
mod time_weighted;

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::plan::{GroupKey, Metric, QuantityRoundingMode};
use crate::plugin::PluginError;
#[cfg(doc)]
use crate::plugin::{MetricAccumulator, PluginHost};
use crate::usage::Timestamp;
#[cfg(doc)]
use crate::usage::{Event, PropValue};
use index::StrIndex;

pub use aggregator::Aggregator;
pub use route::{Router, Routing};

/// Number of events a custom metric's accumulator receives per [`MetricAccumulator::update`].
pub const CUSTOM_BATCH_SIZE: usize = 1000;

/// The group value of a property that is missing, null, nested or unreadable.
pub const MISSING_GROUP_VALUE: &str = "(none)";

/// [start, end) in Unix ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// Whether `at` is in `[start, end)`.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// What happened to one pushed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted by every selecting metric whose filters it passes.
    Counted,
    /// Its timestamp is not in `[start, end)`.
    OutsideWindow,
    /// Its timestamp is before `billable_from` (inside a trial).
    BeforeBillable,
    /// No metric selects its code.
    NoMetric,
    /// Every selecting metric filtered it out.
    Filtered,
    /// Its id was already taken by this aggregator.
    Duplicate,
    /// It names another customer (a [`PeriodRater`](crate::rater::PeriodRater)'s answer; an
    /// aggregator, which does not know whose events it counts, never gives it).
    OtherCustomer,
}

/// An event that could not be counted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("event `{event_id}`{}: {message}", location(.metric, .property))]
pub struct EventError {
    pub event_id: String,
    /// The metric that refused it.
    pub metric: Option<String>,
    /// The property that was wrong.
    pub property: Option<String>,
    pub message: String,
}

fn location(metric: &Option<String>, property: &Option<String>) -> String {
    let mut text = String::new();
    if let Some(metric) = metric {
        text.push_str(&format!(": metric `{metric}`"));
    }
    if let Some(property) = property {
        text.push_str(&format!(": property `{property}`"));
    }
    text
}

/// A problem with the aggregation as a whole, naming the metric.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// A custom metric's plugin could not be loaded or failed.
    #[error("metric `{metric}`: {error}")]
    Plugin { metric: String, error: PluginError },
    /// A total or a conversion left the decimal range.
    #[error("metric `{metric}`: the aggregated value overflows the decimal range")]
    Overflow { metric: String },
    /// An index of distinct groups or unique values is full (see [`StrIndex::MAX_STRINGS`]).
    #[error(
        "metric `{metric}`: more than {} distinct {what} in one aggregation",
        StrIndex::MAX_STRINGS
    )]
    TooMany { metric: String, what: &'static str },
    /// `carry_in` names a metric that is not aggregated.
    #[error("carry-in given for unknown metric `{0}`")]
    UnknownMetric(String),
    /// Two metrics have the same code.
    #[error("metric `{0}` is defined twice")]
    DuplicateMetric(String),
    /// `carry_in` names a metric it cannot apply to (not time-weighted, or grouped).
    #[error("metric `{metric}`: carry-in {message}")]
    CarryIn { metric: String, message: String },
    /// The metric's conversion cannot be applied (`divide_by` is zero).
    #[error("metric `{metric}`: invalid conversion: {message}")]
    InvalidConversion { metric: String, message: String },
    /// A charge needs per-transaction values from a metric that has none.
    #[error(
        "metric `{metric}`: charge `{charge}` needs per-transaction amounts, which a {aggregation} metric does not have"
    )]
    NoTransactions {
        metric: String,
        charge: String,
        aggregation: &'static str,
    },
    /// The window ends before it starts or its length overflows (an empty window, a
    /// zero-length period, is valid and takes no event).
    #[error("the window [{}, {}) ends before it starts or is too long", .start.0, .end.0)]
    InvalidWindow { start: Timestamp, end: Timestamp },
}

/// The usage of every metric given to [`Aggregator::new`], by metric code.
#[derive(Clone, Debug, PartialEq)]
pub struct MeteredUsage {
    /// Groups sorted by key; an ungrouped metric has exactly one (empty key).
    pub metrics: BTreeMap<String, Vec<GroupUsage>>,
}

/// The usage of one group of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupUsage {
    pub group: GroupKey,
    /// The aggregated value, before conversion.
    pub raw_value: Decimal,
    /// The billed quantity: [`convert`] of `raw_value`.
    pub quantity: Decimal,
    /// Number of counted events.
    pub n_events: u64,
    /// Each counted event's value in push order, for metrics priced with per-transaction
    /// bounds; `None` for other metrics.
    pub transactions: Option<Vec<Decimal>>,
    /// For a unique count that follows `add` / `remove` operations: the values it started
    /// from and those active at the end; `None` for other metrics.
    pub values: Option<UniqueValues>,
    /// Each counted event's timestamp and value in push order, for metrics priced by the days
    /// each unit was held (`usage_proration` `days_held`); `None` for other metrics.
    pub dated: Option<Vec<(Timestamp, Decimal)>>,
}

/// The values of a unique count that follows `add` / `remove` operations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UniqueValues {
    /// The values carried in (the usage's `carry_in`), sorted.
    pub carried_in: Vec<String>,
    /// The values whose latest event adds them (or carried in and not removed), sorted: the
    /// next period's `carry_in`.
    pub active: Vec<String>,
}

/// Turns a metric's raw value into its billed quantity: `raw × multiply_by ÷ divide_by`, then
/// rounded as the metric's conversion says. Without a conversion the raw value is the quantity.
pub fn convert(metric: &Metric, raw: Decimal) -> Result<Decimal, AggregateError> {
    let Some(conversion) = &metric.conversion else {
        return Ok(raw);
    };
    let overflow = || AggregateError::Overflow {
        metric: metric.code.clone(),
    };
    let mut value = raw;
    if let Some(multiply_by) = conversion.multiply_by {
        value = value.checked_mul(multiply_by.0).ok_or_else(overflow)?;
    }
    if let Some(divide_by) = conversion.divide_by {
        if divide_by.is_zero() {
            return Err(zero_divisor(metric));
        }
        value = value.checked_div(divide_by.0).ok_or_else(overflow)?;
    }
    if let Some(round) = conversion.round {
        let strategy = match round.mode {
            QuantityRoundingMode::Round => RoundingStrategy::MidpointAwayFromZero,
            QuantityRoundingMode::Ceil => RoundingStrategy::ToPositiveInfinity,
            QuantityRoundingMode::Floor => RoundingStrategy::ToNegativeInfinity,
        };
        value = round_quantity(value, round.precision, strategy).ok_or_else(overflow)?;
    }
    if value.is_zero() {
        // No "-0" from rounding a small negative value toward zero.
        value.set_sign_positive(true);
    }
    Ok(value)
}

/// `value` rounded to `precision` decimal places with `strategy`; a negative precision rounds
/// to a power of ten (-2: to hundreds) by rounding `value / 10^-precision` to a whole number.
/// `None` when the power of ten or the product does not fit in a decimal.
fn round_quantity(value: Decimal, precision: i32, strategy: RoundingStrategy) -> Option<Decimal> {
    if let Ok(places) = u32::try_from(precision) {
        return Some(value.round_dp_with_strategy(places, strategy));
    }
    let mut step = Decimal::ONE;
    for _ in 0..precision.unsigned_abs() {
        step = step.checked_mul(Decimal::TEN)?;
    }
    value
        .checked_div(step)?
        .round_dp_with_strategy(0, strategy)
        .checked_mul(step)
}

fn zero_divisor(metric: &Metric) -> AggregateError {
    AggregateError::InvalidConversion {
        metric: metric.code.clone(),
        message: "`divide_by` is zero".to_owned(),
    }
}
