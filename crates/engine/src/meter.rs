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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use rust_decimal::{Decimal, RoundingStrategy};

use crate::plan::{
    Aggregation, Charge, Filter, GroupKey, LevelValues, Metric, PriceModel, QuantityRoundingMode,
};
use crate::plugin::{MetricAccumulator, PluginError, PluginHost};
use crate::usage::{Event, PropValue, Timestamp};

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
    /// The window is empty or its length overflows.
    #[error("the window [{}, {}) is empty or too long", .start.0, .end.0)]
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
        value = value.checked_mul(multiply_by).ok_or_else(overflow)?;
    }
    if let Some(divide_by) = conversion.divide_by {
        if divide_by.is_zero() {
            return Err(zero_divisor(metric));
        }
        value = value.checked_div(divide_by).ok_or_else(overflow)?;
    }
    if let Some(round) = conversion.round {
        let strategy = match round.mode {
            QuantityRoundingMode::Round => RoundingStrategy::MidpointAwayFromZero,
            QuantityRoundingMode::Ceil => RoundingStrategy::ToPositiveInfinity,
            QuantityRoundingMode::Floor => RoundingStrategy::ToNegativeInfinity,
        };
        value = value.round_dp_with_strategy(round.precision, strategy);
    }
    if value.is_zero() {
        // No "-0" from rounding a small negative value toward zero.
        value.set_sign_positive(true);
    }
    Ok(value)
}

fn zero_divisor(metric: &Metric) -> AggregateError {
    AggregateError::InvalidConversion {
        metric: metric.code.clone(),
        message: "`divide_by` is zero".to_owned(),
    }
}

/// What [`Aggregator::push`] needs to know of an event that depends only on the metrics, not
/// on the customer: which metrics select its code, and the hash of its id. Computing it apart
/// (e.g. while parsing, on another thread) keeps the per-customer work small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Range of [`Router`]'s routes holding the slots selecting the code (`None`: no metric).
    route: Option<(usize, usize)>,
    id_hash: u32,
}

/// Routes events to metrics by event code; shared by every aggregator of the same metrics (a
/// [`PreparedPlan`](crate::rate::PreparedPlan) holds one).
#[derive(Clone, Debug)]
pub struct Router {
    /// Event code → range of `routes` holding the indexes of the slots selecting it.
    by_code: FxHashMap<Box<str>, (usize, usize)>,
    routes: Vec<usize>,
}

impl Router {
    pub fn new(metrics: &[Metric]) -> Router {
        let mut by_event_code: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (idx, metric) in metrics.iter().enumerate() {
            by_event_code
                .entry(metric.event_code())
                .or_default()
                .push(idx);
        }
        let mut by_code = FxHashMap::default();
        let mut routes = Vec::with_capacity(metrics.len());
        for (code, idxs) in by_event_code {
            by_code.insert(code.into(), (routes.len(), routes.len() + idxs.len()));
            routes.extend(idxs);
        }
        Router { by_code, routes }
    }

    pub fn route(&self, event: &Event<'_>) -> Routing {
        Routing {
            route: self.by_code.get(event.code.as_ref()).copied(),
            id_hash: StrIndex::hash(&event.id),
        }
    }
}

/// Aggregates one customer's events over one window.
pub struct Aggregator<'p> {
    window: Window,
    /// Where time-weighted integrals start accruing: `max(window.start, billable_from)`.
    accrue_from: Timestamp,
    billable_from: Timestamp,
    plugins: &'p dyn PluginHost,
    slots: Vec<Slot<'p>>,
    router: Cow<'p, Router>,
    seen_ids: IdSet,
    n_counted: u64,
    /// Reused per push, so validation allocates nothing.
    prepared: Vec<Prepared>,
    /// Reused encoded group key.
    key_buf: String,
}

impl fmt::Debug for Aggregator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("window", &self.window)
            .field("billable_from", &self.billable_from)
            .field(
                "metrics",
                &self
                    .slots
                    .iter()
                    .map(|s| &s.metric.code)
                    .collect::<Vec<_>>(),
            )
            .field("n_counted", &self.n_counted)
            .finish_non_exhaustive()
    }
}

/// One metric's state.
struct Slot<'p> {
    metric: &'p Metric,
    /// The numeric property every counted event must carry (sum, max, min, latest, time-weighted).
    numeric_property: Option<&'p str>,
    time_weighted: bool,
    record_transactions: bool,
    carry_in: Decimal,
    groups: Vec<Group>,
    /// Encoded group key → index in `groups` (grouped metrics only).
    group_index: StrIndex,
    /// An accumulator made by `new` to check a grouped custom metric's plugin, used by its
    /// first group.
    spare: Option<Box<dyn MetricAccumulator>>,
    failure: Option<AggregateError>,
}

struct Group {
    key: GroupKey,
    n_events: u64,
    acc: Acc,
    transactions: Option<Vec<Decimal>>,
}

enum Acc {
    Count,
    Sum(Decimal),
    Max(Option<Decimal>),
    Min(Option<Decimal>),
    Unique(StrIndex),
    Latest(Option<(Timestamp, Decimal)>),
    Levels(Vec<(Timestamp, Decimal)>),
    Custom {
        acc: Box<dyn MetricAccumulator>,
        batch: Vec<Event<'static>>,
    },
}

/// A validated event for one slot.
#[derive(Clone, Copy)]
struct Prepared {
    slot: usize,
    value: Option<Decimal>,
}

impl<'p> Aggregator<'p> {
    /// `metrics`: the metrics to aggregate (usually `&plan.metrics`). `charges`: the plan's
    /// charges, used only to find percentage charges with per-transaction bounds, whose metrics
    /// record [`GroupUsage::transactions`]. `billable_from`: events before it (trial) are not
    /// counted. `carry_in`: level at window start of ungrouped time-weighted metrics, by code.
    pub fn new(
        metrics: &'p [Metric],
        charges: &'p [Charge],
        window: Window,
        billable_from: Timestamp,
        carry_in: &BTreeMap<String, Decimal>,
        plugins: &'p dyn PluginHost,
    ) -> Result<Aggregator<'p>, AggregateError> {
        Aggregator::routed(
            metrics,
            charges,
            None,
            window,
            billable_from,
            carry_in,
            plugins,
        )
    }

    /// [`Aggregator::new`] with the router of `metrics` given (`Some`, built by
    /// [`Router::new`] of the same metrics) instead of built for this aggregator alone.
    pub(crate) fn routed(
        metrics: &'p [Metric],
        charges: &'p [Charge],
        router: Option<&'p Router>,
        window: Window,
        billable_from: Timestamp,
        carry_in: &BTreeMap<String, Decimal>,
        plugins: &'p dyn PluginHost,
    ) -> Result<Aggregator<'p>, AggregateError> {
        if window
            .end
            .0
            .checked_sub(window.start.0)
            .is_none_or(|len| len <= 0)
        {
            return Err(AggregateError::InvalidWindow {
                start: window.start,
                end: window.end,
            });
        }
        let mut slots = Vec::with_capacity(metrics.len());
        let mut index_by_code: BTreeMap<&str, usize> = BTreeMap::new();
        for metric in metrics {
            if index_by_code.insert(&metric.code, slots.len()).is_some() {
                return Err(AggregateError::DuplicateMetric(metric.code.clone()));
            }
            slots.push(Slot::new(metric, charges, plugins)?);
        }
        for (code, level) in carry_in {
            let Some(&idx) = index_by_code.get(code.as_str()) else {
                return Err(AggregateError::UnknownMetric(code.clone()));
            };
            let slot = &mut slots[idx];
            let problem = if !slot.time_weighted {
                Some("applies only to time-weighted metrics")
            } else if !slot.metric.group_by.is_empty() {
                Some("applies only to ungrouped metrics")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(AggregateError::CarryIn {
                    metric: code.clone(),
                    message: problem.to_owned(),
                });
            }
            slot.carry_in = *level;
        }
        Ok(Aggregator {
            window,
            accrue_from: window.start.max(billable_from),
            billable_from,
            plugins,
            slots,
            router: match router {
                Some(router) => Cow::Borrowed(router),
                None => Cow::Owned(Router::new(metrics)),
            },
            seen_ids: IdSet::default(),
            n_counted: 0,
            prepared: Vec::new(),
            key_buf: String::new(),
        })
    }

    /// Routes one event (the caller has already chosen the customer); see the module docs for
    /// the order of the checks. A refused event changes nothing.
    pub fn push(&mut self, event: &Event<'_>) -> Result<Outcome, EventError> {
        let routing = self.router.route(event);
        self.push_routed(event, &routing)
    }

    /// [`Aggregator::push`] with the event's [`Routing`] computed beforehand (on any thread) by
    /// a [`Router`] built from the same metrics: the same checks, in the same order, the same
    /// result.
    pub fn push_routed(
        &mut self,
        event: &Event<'_>,
        routing: &Routing,
    ) -> Result<Outcome, EventError> {
        let Some((route_start, route_end)) = routing.route else {
            return Ok(Outcome::NoMetric);
        };
        if !self.window.contains(event.timestamp) {
            return Ok(Outcome::OutsideWindow);
        }
        let id_hash = routing.id_hash;
        if self.seen_ids.contains_hashed(id_hash, &event.id) {
            return Ok(Outcome::Duplicate);
        }
        if !self.seen_ids.has_room_for(&event.id) {
            return Err(EventError {
                event_id: event.id.to_string(),
                metric: None,
                property: None,
                message: format!(
                    "more than {} distinct event ids in one aggregation",
                    IdSet::MAX_IDS
                ),
            });
        }
        let in_trial = event.timestamp < self.billable_from;
        let mut prepared = std::mem::take(&mut self.prepared);
        prepared.clear();
        let validated = self.prepare(route_start, route_end, event, in_trial, &mut prepared);
        let outcome = match validated {
            Err(error) => Err(error),
            Ok(()) if prepared.is_empty() && in_trial => Ok(Outcome::BeforeBillable),
            Ok(()) if prepared.is_empty() => Ok(Outcome::Filtered),
            Ok(()) => {
                self.apply(event, &prepared, !in_trial);
                // Not full: checked above.
                let _ = self.seen_ids.insert_new(id_hash, &event.id);
                if in_trial {
                    Ok(Outcome::BeforeBillable)
                } else {
                    self.n_counted = self.n_counted.saturating_add(1);
                    Ok(Outcome::Counted)
                }
            }
        };
        self.prepared = prepared;
        outcome
    }

    /// Reads the memory [`Aggregator::push_routed`] will first need for this event (its bucket
    /// of the id index, its id and property names, which live in the caller's input) and drops
    /// it. A caller pushing a run of events calls this
    /// for the whole run first: the cache misses of the run then overlap instead of stalling one
    /// after the other (with tens of millions of ids, the index is far bigger than the cache).
    /// Changes nothing.
    pub fn warm(&self, event: &Event<'_>, routing: &Routing) {
        std::hint::black_box(self.seen_ids.warm(routing.id_hash));
        std::hint::black_box(event.id.as_bytes().first().copied());
        for (name, _) in event.properties.iter() {
            std::hint::black_box(name.as_bytes().first().copied());
        }
    }

    /// Number of events counted so far.
    pub fn n_counted(&self) -> u64 {
        self.n_counted
    }

    /// The usage of every metric, or the first metric's failure.
    pub fn finish(self) -> Result<MeteredUsage, AggregateError> {
        let mut metrics = BTreeMap::new();
        for slot in self.slots {
            if let Some(failure) = slot.failure {
                return Err(failure);
            }
            let metric = slot.metric;
            let mut groups = Vec::with_capacity(slot.groups.len());
            for group in slot.groups {
                let raw_value = match group.acc {
                    Acc::Count => Decimal::from(group.n_events),
                    Acc::Sum(sum) => sum,
                    Acc::Max(value) | Acc::Min(value) => value.unwrap_or(Decimal::ZERO),
                    Acc::Unique(values) => Decimal::from(values.len()),
                    Acc::Latest(latest) => latest.map_or(Decimal::ZERO, |(_, value)| value),
                    Acc::Levels(mut levels) => time_weighted(
                        metric,
                        slot.carry_in,
                        &mut levels,
                        self.window,
                        self.accrue_from,
                    )
                    .ok_or_else(|| AggregateError::Overflow {
                        metric: metric.code.clone(),
                    })?,
                    Acc::Custom { mut acc, batch } => {
                        let plugin_error = |source| AggregateError::Plugin {
                            metric: metric.code.clone(),
                            error: source,
                        };
                        acc.finish_with(&batch).map_err(plugin_error)?
                    }
                };
                groups.push(GroupUsage {
                    group: group.key,
                    raw_value,
                    quantity: convert(metric, raw_value)?,
                    n_events: group.n_events,
                    transactions: group.transactions,
                });
            }
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            metrics.insert(metric.code.clone(), groups);
        }
        Ok(MeteredUsage { metrics })
    }

    /// Checks the event against every selecting slot, filling `prepared` with the slots that
    /// take it. In a trial only time-weighted slots take events.
    fn prepare(
        &self,
        route_start: usize,
        route_end: usize,
        event: &Event<'_>,
        in_trial: bool,
        prepared: &mut Vec<Prepared>,
    ) -> Result<(), EventError> {
        let route = self
            .router
            .routes
            .get(route_start..route_end)
            .unwrap_or_default();
        for &slot_idx in route {
            let Some(slot) = self.slots.get(slot_idx) else {
                continue;
            };
            if in_trial && !slot.time_weighted {
                continue;
            }
            if !slot
                .metric
                .filters
                .iter()
                .all(|filter| passes(filter, event))
            {
                continue;
            }
            let value = match slot.numeric_property {
                Some(property) => {
                    Some(read_number(event, property).map_err(|message| EventError {
                        event_id: event.id.to_string(),
                        metric: Some(slot.metric.code.clone()),
                        property: Some(property.to_owned()),
                        message,
                    })?)
                }
                None if slot.record_transactions => Some(Decimal::ONE),
                None => None,
            };
            prepared.push(Prepared {
                slot: slot_idx,
                value,
            });
        }
        Ok(())
    }

    /// Applies a validated event. `counted` is false for a trial event (level changes only).
    fn apply(&mut self, event: &Event<'_>, prepared: &[Prepared], counted: bool) {
        for p in prepared {
            let Some(slot) = self.slots.get_mut(p.slot) else {
                continue;
            };
            if slot.failure.is_some() {
                continue;
            }
            if let Err(failure) =
                slot.take(event, p.value, counted, &mut self.key_buf, self.plugins)
            {
                slot.failure = Some(failure);
            }
        }
    }
}

impl<'p> Slot<'p> {
    fn new(
        metric: &'p Metric,
        charges: &'p [Charge],
        plugins: &dyn PluginHost,
    ) -> Result<Slot<'p>, AggregateError> {
        if let Some(conversion) = &metric.conversion
            && conversion.divide_by.is_some_and(|d| d.is_zero())
        {
            return Err(zero_divisor(metric));
        }
        let (numeric_property, time_weighted) = match &metric.aggregation {
            Aggregation::Sum { property }
            | Aggregation::Max { property }
            | Aggregation::Min { property }
            | Aggregation::Latest { property } => (Some(property.as_str()), false),
            Aggregation::TimeWeightedSum { property, .. }
            | Aggregation::TimeWeightedAverage { property, .. } => (Some(property.as_str()), true),
            Aggregation::Count | Aggregation::UniqueCount { .. } | Aggregation::Custom { .. } => {
                (None, false)
            }
        };
        let per_transaction_charge = charges.iter().find(|charge| {
            charge.metric.as_deref() == Some(metric.code.as_str())
                && matches!(
                    &charge.model,
                    PriceModel::Percentage { min_per_transaction, max_per_transaction, .. }
                        if min_per_transaction.is_some() || max_per_transaction.is_some()
                )
        });
        if let Some(charge) = per_transaction_charge {
            let aggregation = match metric.aggregation {
                Aggregation::UniqueCount { .. } => Some("unique_count"),
                Aggregation::Custom { .. } => Some("custom"),
                _ => None,
            };
            if let Some(aggregation) = aggregation {
                return Err(AggregateError::NoTransactions {
                    metric: metric.code.clone(),
                    charge: charge.id.clone(),
                    aggregation,
                });
            }
        }
        let mut slot = Slot {
            metric,
            numeric_property,
            time_weighted,
            record_transactions: per_transaction_charge.is_some(),
            carry_in: Decimal::ZERO,
            groups: Vec::new(),
            group_index: StrIndex::default(),
            spare: None,
            failure: None,
        };
        // Loading the plugin now reports a missing plugin or a bad config before any push.
        let spare = match &metric.aggregation {
            Aggregation::Custom { plugin, config } => Some(
                plugins
                    .metric(plugin, config)
                    .map_err(|source| AggregateError::Plugin {
                        metric: metric.code.clone(),
                        error: source,
                    })?,
            ),
            _ => None,
        };
        slot.spare = spare;
        if metric.group_by.is_empty() {
            let acc = slot.fresh_acc(plugins)?;
            slot.groups.push(slot.fresh_group(GroupKey::new(), acc));
        }
        Ok(slot)
    }

    fn fresh_acc(&mut self, plugins: &dyn PluginHost) -> Result<Acc, AggregateError> {
        Ok(match &self.metric.aggregation {
            Aggregation::Count => Acc::Count,
            Aggregation::Sum { .. } => Acc::Sum(Decimal::ZERO),
            Aggregation::Max { .. } => Acc::Max(None),
            Aggregation::Min { .. } => Acc::Min(None),
            Aggregation::UniqueCount { .. } => Acc::Unique(StrIndex::default()),
            Aggregation::Latest { .. } => Acc::Latest(None),
            Aggregation::TimeWeightedSum { .. } | Aggregation::TimeWeightedAverage { .. } => {
                Acc::Levels(Vec::new())
            }
            Aggregation::Custom { plugin, config } => {
                let acc =
                    match self.spare.take() {
                        Some(acc) => acc,
                        None => plugins.metric(plugin, config).map_err(|source| {
                            AggregateError::Plugin {
                                metric: self.metric.code.clone(),
                                error: source,
                            }
                        })?,
                    };
                Acc::Custom {
                    acc,
                    batch: Vec::new(),
                }
            }
        })
    }

    fn fresh_group(&self, key: GroupKey, acc: Acc) -> Group {
        Group {
            key,
            n_events: 0,
            acc,
            transactions: self.record_transactions.then(Vec::new),
        }
    }

    /// The index of the event's group, created if new.
    fn group_of(
        &mut self,
        event: &Event<'_>,
        key_buf: &mut String,
        plugins: &dyn PluginHost,
    ) -> Result<usize, AggregateError> {
        if self.metric.group_by.is_empty() {
            return Ok(0);
        }
        // Length-prefixed values, so no two keys encode alike.
        key_buf.clear();
        for property in &self.metric.group_by {
            let text = group_text(event, property);
            push_usize(key_buf, text.len());
            key_buf.push(':');
            key_buf.push_str(&text);
        }
        let key_hash = StrIndex::hash(key_buf);
        if let Some(idx) = self.group_index.find_hashed(key_hash, key_buf) {
            return Ok(idx);
        }
        let key: GroupKey = self
            .metric
            .group_by
            .iter()
            .map(|property| (property.clone(), group_text(event, property).into_owned()))
            .collect();
        let acc = self.fresh_acc(plugins)?;
        let group = self.fresh_group(key, acc);
        // `groups` and `group_index` grow together, so their indexes agree.
        let idx = self
            .group_index
            .insert_new(key_hash, key_buf)
            .ok_or_else(|| AggregateError::TooMany {
                metric: self.metric.code.clone(),
                what: "groups",
            })?;
        self.groups.push(group);
        Ok(idx)
    }

    /// Adds a validated event to its group.
    fn take(
        &mut self,
        event: &Event<'_>,
        value: Option<Decimal>,
        counted: bool,
        key_buf: &mut String,
        plugins: &dyn PluginHost,
    ) -> Result<(), AggregateError> {
        let group_idx = self.group_of(event, key_buf, plugins)?;
        let metric: &'p Metric = self.metric;
        let code = &metric.code;
        let Some(group) = self.groups.get_mut(group_idx) else {
            return Ok(());
        };
        let number = value.unwrap_or(Decimal::ZERO);
        match &mut group.acc {
            Acc::Levels(levels) => levels.push((event.timestamp, number)),
            _ if !counted => return Ok(()),
            Acc::Count => {}
            Acc::Sum(sum) => {
                *sum = sum
                    .checked_add(number)
                    .ok_or_else(|| AggregateError::Overflow {
                        metric: code.clone(),
                    })?;
            }
            Acc::Max(max) => *max = Some(max.map_or(number, |m| m.max(number))),
            Acc::Min(min) => *min = Some(min.map_or(number, |m| m.min(number))),
            Acc::Unique(values) => {
                if let Aggregation::UniqueCount { property } = &metric.aggregation
                    && let Some(text) = event
                        .properties
                        .get(property.as_str())
                        .and_then(PropValue::as_text)
                {
                    values
                        .insert(&text)
                        .ok_or_else(|| AggregateError::TooMany {
                            metric: code.clone(),
                            what: "unique values",
                        })?;
                }
            }
            Acc::Latest(latest) => {
                if latest.is_none_or(|(at, _)| event.timestamp >= at) {
                    *latest = Some((event.timestamp, number));
                }
            }
            Acc::Custom { acc, batch } => {
                batch.push(event.clone().into_owned());
                if batch.len() >= CUSTOM_BATCH_SIZE {
                    let result = acc.update(batch);
                    batch.clear();
                    result.map_err(|source| AggregateError::Plugin {
                        metric: code.clone(),
                        error: source,
                    })?;
                }
            }
        }
        if counted {
            group.n_events = group.n_events.saturating_add(1);
            if let (Some(transactions), Some(value)) = (&mut group.transactions, value) {
                transactions.push(value);
            }
        }
        Ok(())
    }
}

/// The raw value of a time-weighted metric's group, `None` on overflow.
fn time_weighted(
    metric: &Metric,
    carry_in: Decimal,
    levels: &mut [(Timestamp, Decimal)],
    window: Window,
    accrue_from: Timestamp,
) -> Option<Decimal> {
    let (values, per_ms) = match &metric.aggregation {
        Aggregation::TimeWeightedSum { values, per, .. } => {
            (*values, Some(per.seconds().checked_mul(1000)?))
        }
        Aggregation::TimeWeightedAverage { values, .. } => (*values, None),
        _ => return None,
    };
    // Stable: events at one instant apply in push order.
    levels.sort_by_key(|&(at, _)| at);
    let mut integral = Decimal::ZERO;
    let mut level = carry_in;
    let mut cursor = window.start;
    let mut accrue = |level: Decimal, from: Timestamp, to: Timestamp| -> Option<()> {
        let from = from.max(accrue_from);
        if to > from {
            let duration = Decimal::from(to.0.checked_sub(from.0)?);
            integral = integral.checked_add(level.checked_mul(duration)?)?;
        }
        Some(())
    };
    for &(at, value) in levels.iter() {
        accrue(level, cursor, at)?;
        cursor = at;
        level = match values {
            LevelValues::Absolute => value,
            LevelValues::Increment => level.checked_add(value)?,
        };
    }
    accrue(level, cursor, window.end)?;
    let divisor = match per_ms {
        Some(per_ms) => per_ms,
        None => window.end.0.checked_sub(window.start.0)?,
    };
    integral.checked_div(Decimal::from(divisor))
}

fn passes(filter: &Filter, event: &Event<'_>) -> bool {
    let text = event
        .properties
        .get(filter.property.as_str())
        .and_then(PropValue::as_text);
    let matched = text.is_some_and(|text| {
        filter.equals.as_deref().is_none_or(|equals| equals == text)
            && filter
                .one_of
                .as_ref()
                .is_none_or(|one_of| one_of.iter().any(|v| *v == text))
    });
    matched != filter.negate
}

fn read_number(event: &Event<'_>, property: &str) -> Result<Decimal, String> {
    match event.properties.get(property) {
        Some(value) => value.as_decimal(),
        None => Err("missing".to_owned()),
    }
}

fn group_text<'e>(event: &'e Event<'_>, property: &str) -> Cow<'e, str> {
    event
        .properties
        .get(property)
        .and_then(PropValue::as_text)
        .unwrap_or(Cow::Borrowed(MISSING_GROUP_VALUE))
}

/// Appends `n` in decimal without allocating.
fn push_usize(buf: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    for &digit in digits[..len].iter().rev() {
        buf.push(char::from(digit));
    }
}

/// The Fx hash (rustc's), with a final mix: fast, deterministic on every target. Not resistant
/// to crafted collisions; [`StrIndex`] stays correct under collisions, only slower.
#[derive(Clone, Copy, Default)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64, so the low bits used for buckets depend on every input bit.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The event ids of one aggregation, stored exactly: each id once in one arena as its length
/// (LEB128) and its bytes, indexed by an open-addressing table of (hash, arena offset) with
/// linear probing. Unlike [`StrIndex`] ids need no numbers, so there is no offset array: an id
/// costs its text, one length byte (ids under 128 bytes) and 10–21 bytes of table. With tens of
/// millions of ids this set is most of a rating's memory; the arena grows by a quarter, not
/// double (doubling leaves 44 % of it unused on average, a quarter 12 %).
struct IdSet {
    /// At most [`IdSet::MAX_IDS`]; lower in tests.
    max_ids: usize,
    n_ids: usize,
    arena: Vec<u8>,
    /// Entries are arena offsets + 1.
    table: Buckets,
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet {
            max_ids: Self::MAX_IDS,
            n_ids: 0,
            arena: Vec::new(),
            table: Buckets::default(),
        }
    }
}

impl IdSet {
    /// As many as [`StrIndex`] numbers.
    const MAX_IDS: usize = StrIndex::MAX_STRINGS;
    /// Offsets are 32 bits, + 1 in a bucket.
    const MAX_ARENA: usize = u32::MAX as usize - 1;

    /// The id stored at `offset`.
    fn id_at(&self, offset: usize) -> Option<&[u8]> {
        let mut len = 0usize;
        let mut at = offset;
        for shift in (0..35).step_by(7) {
            let byte = *self.arena.get(at)?;
            at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return self.arena.get(at..at.checked_add(len)?);
            }
        }
        None
    }

    /// The bucket holding `id`, or the empty bucket where it would go.
    fn probe(&self, hash: u32, id: &[u8]) -> Result<usize, usize> {
        self.table
            .probe(hash, |entry| self.id_at(entry as usize - 1) == Some(id))
    }

    /// Reads the bucket where a probe for `hash` starts (see [`Aggregator::warm`]).
    fn warm(&self, hash: u32) -> u32 {
        self.table.warm(hash)
    }

    fn contains_hashed(&self, hash: u32, id: &str) -> bool {
        !self.table.is_empty() && self.probe(hash, id.as_bytes()).is_ok()
    }

    /// Whether `id` can be added: it can be counted and its offset addressed.
    fn has_room_for(&self, id: &str) -> bool {
        self.n_ids < self.max_ids && self.arena.len() + id.len() + 5 <= Self::MAX_ARENA
    }

    /// Adds `id`, which `contains_hashed(hash, id)` just did not find; false if there is no room.
    fn insert_new(&mut self, hash: u32, id: &str) -> bool {
        if !self.has_room_for(id) {
            return false;
        }
        self.table.reserve_for(self.n_ids + 1);
        let offset = self.arena.len();
        let needed = id.len() + 5;
        if self.arena.capacity() - offset < needed {
            self.arena.reserve_exact((offset / 4).max(needed).max(256));
        }
        let mut len = id.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.arena.push(byte);
                break;
            }
            self.arena.push(byte | 0x80);
        }
        self.arena.extend_from_slice(id.as_bytes());
        let at = match self.probe(hash, id.as_bytes()) {
            Ok(at) | Err(at) => at,
        };
        // Below MAX_ARENA: fits.
        self.table.set(at, hash, (offset + 1) as u32);
        self.n_ids += 1;
        true
    }
}

/// A set of strings numbered in insertion order, stored exactly in one arena (no allocation per
/// string), indexed by an open-addressing table of (hash, number) with linear probing. A string
/// costs its text, 4 bytes of end offset and 10–21 bytes of table; the text is compared only
/// when the 32-bit hashes are equal. The arena and the offsets grow by a quarter, not double:
/// with tens of millions of event ids they are most of a rating's memory, and doubling leaves
/// on average 44 % of them unused against 12 % (measured at 10 M events: see
/// `docs/benchmarks.md`).
struct StrIndex {
    /// At most [`StrIndex::MAX_STRINGS`]; lower in tests.
    max_strings: usize,
    arena: String,
    /// End of each string in `arena`; string `i` starts where string `i - 1` ends. (32 bits: the
    /// index is full when the arena would pass 4 GiB.)
    ends: Vec<u32>,
    /// Entries are string numbers + 1.
    table: Buckets,
}

impl Default for StrIndex {
    fn default() -> Self {
        StrIndex {
            max_strings: Self::MAX_STRINGS,
            arena: String::new(),
            ends: Vec::new(),
            table: Buckets::default(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    hash: u32,
    /// What the bucket points at + 1 (a string's number, an id's arena offset); 0: empty.
    entry: u32,
}

/// The open-addressing table of [`StrIndex`] and [`IdSet`]: (hash, entry) buckets, linear
/// probing, a power of two long (or empty), kept at most 3/4 full.
#[derive(Default)]
struct Buckets(Vec<Bucket>);

impl Buckets {
    /// The bucket whose entry `is_it` accepts among those of `hash`, or the empty bucket where
    /// it would go. (Empty table: `Err(0)`, to be grown before use.)
    fn probe(&self, hash: u32, is_it: impl Fn(u32) -> bool) -> Result<usize, usize> {
        let mask = self.0.len().wrapping_sub(1);
        let mut at = (hash as usize) & mask;
        loop {
            let Some(bucket) = self.0.get(at) else {
                return Err(at);
            };
            if bucket.entry == 0 {
                return Err(at);
            }
            if bucket.hash == hash && is_it(bucket.entry) {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// Reads the bucket where a probe for `hash` starts (see [`Aggregator::warm`]).
    fn warm(&self, hash: u32) -> u32 {
        let mask = self.0.len().wrapping_sub(1);
        self.0
            .get((hash as usize) & mask)
            .map_or(0, |bucket| bucket.entry)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn entry(&self, at: usize) -> u32 {
        self.0[at].entry
    }

    /// Makes room for the `n`-th entry (doubling past 3/4 full).
    fn reserve_for(&mut self, n: usize) {
        if n * 4 <= self.0.len() * 3 {
            return;
        }
        let capacity = (self.0.len() * 2).max(16);
        let old = std::mem::replace(&mut self.0, vec![Bucket::default(); capacity]);
        let mask = capacity - 1;
        for bucket in old.into_iter().filter(|b| b.entry != 0) {
            let mut at = (bucket.hash as usize) & mask;
            while self.0[at].entry != 0 {
                at = (at + 1) & mask;
            }
            self.0[at] = bucket;
        }
    }

    /// Puts `entry` in the empty bucket `at` that a probe for `hash` returned.
    fn set(&mut self, at: usize, hash: u32, entry: u32) {
        self.0[at] = Bucket { hash, entry };
    }
}

impl StrIndex {
    /// Strings are numbered in 32 bits (buckets are 8 bytes: the index is bound by cache
    /// misses); 4,294,967,294 distinct ids in one aggregation is far beyond any memory.
    const MAX_STRINGS: usize = u32::MAX as usize - 1;

    /// The high half of the Fx hash (the better mixed one).
    fn hash(text: &str) -> u32 {
        let mut hasher = FxHasher::default();
        hasher.write(text.as_bytes());
        (hasher.finish() >> 32) as u32
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn text(&self, idx: usize) -> Option<&str> {
        let start = match idx.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)? as usize,
            None => 0,
        };
        self.arena.get(start..*self.ends.get(idx)? as usize)
    }

    /// The bucket holding `text`, or the empty bucket where it would go.
    fn probe(&self, hash: u32, text: &str) -> Result<usize, usize> {
        self.table
            .probe(hash, |entry| self.text(entry as usize - 1) == Some(text))
    }

    fn find_hashed(&self, hash: u32, text: &str) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        self.probe(hash, text)
            .ok()
            .map(|at| self.table.entry(at) as usize - 1)
    }

    /// The index of `text`, inserted if new; `None` if new and the index is full.
    fn insert(&mut self, text: &str) -> Option<usize> {
        let hash = Self::hash(text);
        match self.find_hashed(hash, text) {
            Some(idx) => Some(idx),
            None => self.insert_new(hash, text),
        }
    }

    /// Whether the index holds as many strings as its buckets can number.
    fn is_full(&self) -> bool {
        self.ends.len() >= self.max_strings
    }

    /// Whether `text` can be inserted: a string can be numbered and its offset addressed.
    fn has_room_for(&self, text: &str) -> bool {
        !self.is_full() && self.arena.len() + text.len() <= Self::MAX_ARENA
    }

    /// Bytes of text an index holds at most: offsets are 32 bits.
    const MAX_ARENA: usize = u32::MAX as usize;

    /// Inserts `text`, which `find_hashed(hash, text)` just did not find (`None`: full).
    fn insert_new(&mut self, hash: u32, text: &str) -> Option<usize> {
        if !self.has_room_for(text) {
            return None;
        }
        self.table.reserve_for(self.ends.len() + 1);
        let idx = self.ends.len();
        if self.arena.capacity() - self.arena.len() < text.len() {
            self.arena
                .reserve_exact((self.arena.len() / 4).max(text.len()).max(256));
        }
        if self.ends.capacity() == self.ends.len() {
            self.ends.reserve_exact((self.ends.len() / 4).max(16));
        }
        self.arena.push_str(text);
        // At most MAX_ARENA: fits.
        self.ends.push(self.arena.len() as u32);
        let at = match self.probe(hash, text) {
            Ok(at) | Err(at) => at,
        };
        // At most MAX_STRINGS: fits.
        self.table.set(at, hash, (idx + 1) as u32);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::plugin::{PriceRequest, PricedLine};

    const DAY: i64 = 86_400_000;

    /// A case: the metrics and what the aggregator is given, as JSON.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        metrics: Vec<Metric>,
        #[serde(default)]
        charges: Vec<Charge>,
        #[serde(default)]
        carry_in: BTreeMap<String, String>,
        #[serde(default)]
        billable_from_day: i64,
        #[serde(default = "thirty")]
        window_days: i64,
    }

    fn thirty() -> i64 {
        30
    }

    /// Runs `case` over `events` (one per line: `id @time code key=value ...`, time as `15d`,
    /// `5h` or `123ms`; values `true`, `false`, `null`, `{}`, `"text"`, a decimal or bare text)
    /// and compares the outcomes and the usage with `expected`, line by line, ignoring
    /// indentation.
    fn check(case: &str, events: &str, expected: &str) {
        let plugins = TestPlugins::default();
        let actual = run(case, events, &plugins);
        let expected: Vec<&str> = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let actual: Vec<&str> = actual.lines().collect();
        assert_eq!(actual, expected, "\nactual:\n{}\n", actual.join("\n"));
    }

    fn run(case: &str, events: &str, plugins: &dyn PluginHost) -> String {
        let case: Case = serde_json::from_str(case).expect("case JSON");
        let carry_in = case
            .carry_in
            .iter()
            .map(|(code, level)| (code.clone(), level.parse::<Decimal>().expect("carry-in")))
            .collect();
        let window = Window {
            start: Timestamp(0),
            end: Timestamp(case.window_days * DAY),
        };
        let billable_from = Timestamp(case.billable_from_day * DAY);
        let mut out = String::new();
        let mut aggregator = match Aggregator::new(
            &case.metrics,
            &case.charges,
            window,
            billable_from,
            &carry_in,
            plugins,
        ) {
            Ok(aggregator) => aggregator,
            Err(error) => return format!("new: {error}"),
        };
        for event in parse_events(events) {
            match aggregator.push(&event) {
                Ok(outcome) => writeln!(out, "{} {outcome:?}", event.id),
                Err(error) => writeln!(out, "{} error: {error}", event.id),
            }
            .unwrap();
        }
        writeln!(out, "counted: {}", aggregator.n_counted()).unwrap();
        match aggregator.finish() {
            Ok(usage) => out.push_str(&render(&usage)),
            Err(error) => writeln!(out, "finish: {error}").unwrap(),
        }
        out
    }

    fn render(usage: &MeteredUsage) -> String {
        let mut out = String::new();
        for (code, groups) in &usage.metrics {
            if groups.is_empty() {
                writeln!(out, "{code}: no groups").unwrap();
            }
            for group in groups {
                let key: Vec<String> = group
                    .group
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                write!(
                    out,
                    "{code} {{{}}} raw={} qty={} n={}",
                    key.join(","),
                    group.raw_value,
                    group.quantity,
                    group.n_events
                )
                .unwrap();
                if let Some(transactions) = &group.transactions {
                    let amounts: Vec<String> = transactions.iter().map(|t| t.to_string()).collect();
                    write!(out, " tx=[{}]", amounts.join(",")).unwrap();
                }
                out.push('\n');
            }
        }
        out
    }

    fn parse_events(text: &str) -> Vec<Event<'static>> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut tokens = line.split_whitespace();
                let id = tokens.next().expect("id").to_owned();
                let at = tokens
                    .next()
                    .and_then(|t| t.strip_prefix('@'))
                    .expect("@time");
                let code = tokens.next().expect("code").to_owned();
                let properties = tokens
                    .map(|token| {
                        let (key, value) = token.split_once('=').expect("key=value");
                        (Cow::Owned(key.to_owned()), parse_value(value))
                    })
                    .collect();
                Event {
                    id: Cow::Owned(id),
                    customer: Cow::Borrowed("c1"),
                    timestamp: Timestamp(parse_time(at)),
                    code: Cow::Owned(code),
                    properties,
                }
            })
            .collect()
    }

    fn parse_time(text: &str) -> i64 {
        let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
            (n, 1)
        } else if let Some(n) = text.strip_suffix('d') {
            (n, DAY)
        } else if let Some(n) = text.strip_suffix('h') {
            (n, 3_600_000)
        } else {
            panic!("time `{text}` needs a unit")
        };
        number.parse::<i64>().expect("time") * unit
    }

    fn parse_value(text: &str) -> PropValue<'static> {
        match text {
            "true" => PropValue::Bool(true),
            "false" => PropValue::Bool(false),
            "null" => PropValue::Null,
            "{}" => PropValue::Other,
            _ => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(quoted) => PropValue::Str(Cow::Owned(quoted.to_owned())),
                None => match crate::decimal::parse_decimal(text) {
                    Ok(number) => PropValue::Num(Ok(number)),
                    Err(_) => PropValue::Str(Cow::Owned(text.to_owned())),
                },
            },
        }
    }

    /// Plugins for tests: `sum@1` sums the property named by its config's `property` (state:
    /// the total as a decimal string), `fail@1` fails on its first batch, `picky@1` rejects
    /// every config.
    #[derive(Default)]
    struct TestPlugins {
        n_updates: Arc<AtomicUsize>,
    }

    struct SumAccumulator {
        property: String,
        total: Decimal,
        n_updates: Arc<AtomicUsize>,
    }

    impl MetricAccumulator for SumAccumulator {
        fn update(&mut self, events: &[Event<'_>]) -> Result<(), PluginError> {
            self.n_updates.fetch_add(1, Ordering::Relaxed);
            for event in events {
                let value = event
                    .properties
                    .get(self.property.as_str())
                    .map_or(Ok(Decimal::ZERO), PropValue::as_decimal)
                    .map_err(|message| PluginError::Failed {
                        plugin: "sum@1".into(),
                        message,
                    })?;
                self.total += value;
            }
            Ok(())
        }

        fn save(&mut self) -> Result<Vec<u8>, PluginError> {
            Ok(self.total.to_string().into_bytes())
        }

        fn merge(&mut self, other_state: &[u8]) -> Result<(), PluginError> {
            let invalid = |message: String| PluginError::InvalidOutput {
                plugin: "sum@1".into(),
                message,
            };
            let text = std::str::from_utf8(other_state).map_err(|e| invalid(e.to_string()))?;
            self.total += crate::decimal::parse_decimal(text).map_err(invalid)?;
            Ok(())
        }

        fn finish(&mut self) -> Result<Decimal, PluginError> {
            Ok(self.total)
        }
    }

    struct FailingAccumulator;

    impl MetricAccumulator for FailingAccumulator {
        fn update(&mut self, _events: &[Event<'_>]) -> Result<(), PluginError> {
            Err(PluginError::Failed {
                plugin: "fail@1".into(),
                message: "boom".into(),
            })
        }

        fn save(&mut self) -> Result<Vec<u8>, PluginError> {
            Ok(Vec::new())
        }

        fn merge(&mut self, _other_state: &[u8]) -> Result<(), PluginError> {
            Ok(())
        }

        fn finish(&mut self) -> Result<Decimal, PluginError> {
            Ok(Decimal::ZERO)
        }
    }

    impl PluginHost for TestPlugins {
        fn metric(
            &self,
            plugin: &str,
            config: &serde_json::Value,
        ) -> Result<Box<dyn MetricAccumulator>, PluginError> {
            match plugin {
                "sum@1" => Ok(Box::new(SumAccumulator {
                    property: config["property"].as_str().unwrap_or("value").to_owned(),
                    total: Decimal::ZERO,
                    n_updates: Arc::clone(&self.n_updates),
                })),
                "fail@1" => Ok(Box::new(FailingAccumulator)),
                "picky@1" => Err(PluginError::InvalidConfig {
                    plugin: plugin.into(),
                    message: "no config is good enough".into(),
                }),
                _ => Err(PluginError::NotFound(plugin.to_owned())),
            }
        }

        fn price(
            &self,
            plugin: &str,
            _request: &PriceRequest,
        ) -> Result<Vec<PricedLine>, PluginError> {
            Err(PluginError::NotFound(plugin.to_owned()))
        }
    }

    const ALL_BUILT_INS: &str = r#"{"metrics": [
        {"code": "calls", "event": "api", "aggregation": {"type": "count"}},
        {"code": "bytes", "event": "api", "aggregation": {"type": "sum", "property": "bytes"}},
        {"code": "peak", "event": "api", "aggregation": {"type": "max", "property": "bytes"}},
        {"code": "low", "event": "api", "aggregation": {"type": "min", "property": "bytes"}},
        {"code": "last", "event": "api", "aggregation": {"type": "latest", "property": "bytes"}},
        {"code": "users", "event": "api", "aggregation": {"type": "unique_count", "property": "user"}},
        {"code": "by_region", "event": "api", "group_by": ["region"],
         "aggregation": {"type": "count"}}
    ]}"#;

    #[test]
    fn each_built_in_aggregation() {
        check(
            ALL_BUILT_INS,
            r#"
            e1 @1d api bytes=10 user=a
            e2 @3d api bytes=5 user=b
            e3 @2d api bytes=7.5 user=a
            e4 @3d api bytes=6 user=null
            e5 @1h api bytes="-1" user=1.50
            e6 @4h api bytes=0 user=1.5
            "#,
            "
            e1 Counted
            e2 Counted
            e3 Counted
            e4 Counted
            e5 Counted
            e6 Counted
            counted: 6
            by_region {region=(none)} raw=6 qty=6 n=6
            bytes {} raw=27.5 qty=27.5 n=6
            calls {} raw=6 qty=6 n=6
            last {} raw=6 qty=6 n=6
            low {} raw=-1 qty=-1 n=6
            peak {} raw=10 qty=10 n=6
            users {} raw=3 qty=3 n=6
            ",
        );
    }

    #[test]
    fn no_events_give_zero_for_ungrouped_and_no_group_for_grouped() {
        check(
            ALL_BUILT_INS,
            "",
            "
            counted: 0
            by_region: no groups
            bytes {} raw=0 qty=0 n=0
            calls {} raw=0 qty=0 n=0
            last {} raw=0 qty=0 n=0
            low {} raw=0 qty=0 n=0
            peak {} raw=0 qty=0 n=0
            users {} raw=0 qty=0 n=0
            ",
        );
    }

    #[test]
    fn filters_equals_in_negate() {
        check(
            r#"{"metrics": [
                {"code": "eu", "event": "api", "aggregation": {"type": "count"},
                 "filters": [{"property": "region", "equals": "eu"}]},
                {"code": "eu_us", "event": "api", "aggregation": {"type": "count"},
                 "filters": [{"property": "region", "in": ["eu", "us"]}]},
                {"code": "not_eu", "event": "api", "aggregation": {"type": "count"},
                 "filters": [{"property": "region", "equals": "eu", "negate": true}]},
                {"code": "eu_gold", "event": "api", "aggregation": {"type": "count"},
                 "filters": [{"property": "region", "equals": "eu"},
                             {"property": "tier", "in": ["1.5", "true"]}]},
                {"code": "only_eu", "event": "other", "aggregation": {"type": "count"},
                 "filters": [{"property": "region", "equals": "eu"}]}
            ]}"#,
            "
            e1 @1d api region=eu tier=1.50
            e2 @1d api region=us
            e3 @1d api region=ap tier=true
            e4 @1d api tier=1.5
            e5 @1d api region=null
            e6 @1d api region=eu tier=false
            e7 @1d other region=us
            e8 @1d other region=eu
            ",
            "
            e1 Counted
            e2 Counted
            e3 Counted
            e4 Counted
            e5 Counted
            e6 Counted
            e7 Filtered
            e8 Counted
            counted: 7
            eu {} raw=2 qty=2 n=2
            eu_gold {} raw=1 qty=1 n=1
            eu_us {} raw=3 qty=3 n=3
            not_eu {} raw=4 qty=4 n=4
            only_eu {} raw=1 qty=1 n=1
            ",
        );
    }

    #[test]
    fn group_by_with_a_missing_property() {
        check(
            r#"{"metrics": [
                {"code": "bytes", "aggregation": {"type": "sum", "property": "n"},
                 "group_by": ["region", "plan"]}
            ]}"#,
            r#"
            e1 @1d bytes n=1 region=eu plan=pro
            e2 @1d bytes n=2 region=us
            e3 @1d bytes n=4 plan=pro
            e4 @1d bytes n=8 region=eu plan=pro
            e5 @1d bytes n=16 region="(none)" plan=pro
            e6 @1d bytes n=32 region={} plan=1.0
            "#,
            "
            e1 Counted
            e2 Counted
            e3 Counted
            e4 Counted
            e5 Counted
            e6 Counted
            counted: 6
            bytes {plan=(none),region=us} raw=2 qty=2 n=1
            bytes {plan=1,region=(none)} raw=32 qty=32 n=1
            bytes {plan=pro,region=(none)} raw=20 qty=20 n=2
            bytes {plan=pro,region=eu} raw=9 qty=9 n=2
            ",
        );
    }

    #[test]
    fn duplicate_ids_count_once_and_refused_ids_stay_free() {
        check(
            r#"{"metrics": [
                {"code": "calls", "aggregation": {"type": "sum", "property": "n"},
                 "filters": [{"property": "ok", "equals": "true"}]}
            ]}"#,
            "
            e1 @1d calls n=1 ok=true
            e1 @2d calls n=10 ok=true
            e2 @1d calls n=100 ok=false
            e2 @1d calls n=1000 ok=true
            e3 @1d calls ok=true
            e3 @1d calls n=10000 ok=true
            e3 @1d calls n=10000 ok=true
            ",
            "
            e1 Counted
            e1 Duplicate
            e2 Filtered
            e2 Counted
            e3 error: event `e3`: metric `calls`: property `n`: missing
            e3 Counted
            e3 Duplicate
            counted: 3
            calls {} raw=11001 qty=11001 n=3
            ",
        );
    }

    #[test]
    fn window_start_is_inclusive_and_end_exclusive() {
        check(
            r#"{"metrics": [{"code": "calls", "aggregation": {"type": "count"}}]}"#,
            "
            e1 @0ms calls
            e2 @-1ms calls
            e3 @2591999999ms calls
            e4 @30d calls
            e5 @1d nobody
            ",
            "
            e1 Counted
            e2 OutsideWindow
            e3 Counted
            e4 OutsideWindow
            e5 NoMetric
            counted: 2
            calls {} raw=2 qty=2 n=2
            ",
        );
    }

    #[test]
    fn trial_events_are_not_counted_but_move_levels() {
        check(
            r#"{"metrics": [
                {"code": "calls", "event": "x", "aggregation": {"type": "sum", "property": "gb"}},
                {"code": "gb_days", "event": "x", "aggregation":
                    {"type": "time_weighted_sum", "property": "gb", "per": "day"}},
                {"code": "gb_avg", "event": "x", "aggregation":
                    {"type": "time_weighted_average", "property": "gb"}}
            ],
            "carry_in": {"gb_days": "10", "gb_avg": "10"},
            "billable_from_day": 10}"#,
            "
            e1 @5d x gb=20
            e2 @6d x gb=true
            e3 @5d other
            e4 @10d x gb=20
            ",
            "
            e1 BeforeBillable
            e2 error: event `e2`: metric `gb_days`: property `gb`: expected a number, found a boolean
            e3 NoMetric
            e4 Counted
            counted: 1
            calls {} raw=20 qty=20 n=1
            gb_avg {} raw=13.333333333333333333333333333 qty=13.333333333333333333333333333 n=1
            gb_days {} raw=400 qty=400 n=1
            ",
        );
    }

    const TIME_WEIGHTED: &str = r#"{"metrics": [
        {"code": "gb_days", "event": "abs", "aggregation":
            {"type": "time_weighted_sum", "property": "gb", "per": "day"}},
        {"code": "gb_hours", "event": "abs", "aggregation":
            {"type": "time_weighted_sum", "property": "gb"}},
        {"code": "gb_avg", "event": "abs", "aggregation":
            {"type": "time_weighted_average", "property": "gb"}},
        {"code": "seat_days", "event": "inc", "aggregation":
            {"type": "time_weighted_sum", "property": "d", "values": "increment", "per": "day"}},
        {"code": "seat_avg", "event": "inc", "aggregation":
            {"type": "time_weighted_average", "property": "d", "values": "increment"}},
        {"code": "by_region", "event": "abs", "group_by": ["region"], "aggregation":
            {"type": "time_weighted_average", "property": "gb"}}
    ],
    "carry_in": {"seat_days": "10", "seat_avg": "10"}}"#;

    #[test]
    fn time_weighted_absolute_and_increment_with_carry_in() {
        // 10 GB for 15 days then 20 GB for 15 days: 450 GB-days, 15 GB on average.
        check(
            TIME_WEIGHTED,
            "
            a2 @15d abs gb=20 region=eu
            a1 @0d abs gb=10 region=eu
            i1 @15d inc d=10
            ",
            "
            a2 Counted
            a1 Counted
            i1 Counted
            counted: 3
            by_region {region=eu} raw=15 qty=15 n=2
            gb_avg {} raw=15 qty=15 n=2
            gb_days {} raw=450 qty=450 n=2
            gb_hours {} raw=10800 qty=10800 n=2
            seat_avg {} raw=15 qty=15 n=1
            seat_days {} raw=450 qty=450 n=1
            ",
        );
    }

    #[test]
    fn time_weighted_events_at_one_instant_apply_in_push_order() {
        check(
            TIME_WEIGHTED,
            "
            a1 @0d abs gb=10
            a2 @15d abs gb=5
            a3 @15d abs gb=20
            i1 @15d inc d=4
            i2 @15d inc d=-4
            i3 @15d inc d=10
            ",
            "
            a1 Counted
            a2 Counted
            a3 Counted
            i1 Counted
            i2 Counted
            i3 Counted
            counted: 6
            by_region {region=(none)} raw=15 qty=15 n=3
            gb_avg {} raw=15 qty=15 n=3
            gb_days {} raw=450 qty=450 n=3
            gb_hours {} raw=10800 qty=10800 n=3
            seat_avg {} raw=15 qty=15 n=3
            seat_days {} raw=450 qty=450 n=3
            ",
        );
    }

    #[test]
    fn time_weighted_without_events_integrates_the_carry_in() {
        check(
            TIME_WEIGHTED,
            "",
            "
            counted: 0
            by_region: no groups
            gb_avg {} raw=0 qty=0 n=0
            gb_days {} raw=0 qty=0 n=0
            gb_hours {} raw=0 qty=0 n=0
            seat_avg {} raw=10 qty=10 n=0
            seat_days {} raw=300 qty=300 n=0
            ",
        );
    }

    #[test]
    fn conversion_bytes_to_gigabytes_rounded_up() {
        check(
            r#"{"metrics": [
                {"code": "gb", "aggregation": {"type": "sum", "property": "bytes"},
                 "conversion": {"divide_by": "1000000000", "round": {"mode": "ceil"}}}
            ]}"#,
            "
            e1 @1d gb bytes=1000000000
            e2 @1d gb bytes=1
            ",
            "
            e1 Counted
            e2 Counted
            counted: 2
            gb {} raw=1000000001 qty=2 n=2
            ",
        );
    }

    #[test]
    fn convert_rounds_with_the_named_strategy() {
        let cases = [
            // (multiply_by, divide_by, mode, precision, raw, expected)
            (None, None, None, 0, "2.5", "2.5"),
            (Some("3"), None, None, 0, "2.5", "7.5"),
            (None, Some("3"), Some("round"), 2, "1", "0.33"),
            (None, None, Some("round"), 0, "2.5", "3"),
            (None, None, Some("round"), 0, "-2.5", "-3"),
            (None, None, Some("round"), 0, "3.5", "4"),
            (None, None, Some("ceil"), 0, "2.1", "3"),
            (None, None, Some("ceil"), 0, "-2.9", "-2"),
            (None, None, Some("ceil"), 0, "-0.4", "0"),
            (None, None, Some("floor"), 1, "2.19", "2.1"),
            (None, None, Some("floor"), 0, "-2.1", "-3"),
            (None, Some("1000"), Some("ceil"), 30, "1", "0.001"),
        ];
        for (multiply_by, divide_by, mode, precision, raw, expected) in cases {
            let mut conversion = serde_json::json!({});
            if let Some(m) = multiply_by {
                conversion["multiply_by"] = m.into();
            }
            if let Some(d) = divide_by {
                conversion["divide_by"] = d.into();
            }
            if let Some(mode) = mode {
                conversion["round"] = serde_json::json!({"mode": mode, "precision": precision});
            }
            let metric: Metric = serde_json::from_value(serde_json::json!({
                "code": "m", "aggregation": {"type": "count"}, "conversion": conversion
            }))
            .unwrap();
            let actual = convert(&metric, raw.parse().unwrap()).unwrap().to_string();
            assert_eq!(actual, expected, "{conversion} of {raw}");
        }
        let overflow: Metric = serde_json::from_value(serde_json::json!({
            "code": "m", "aggregation": {"type": "count"},
            "conversion": {"multiply_by": "79228162514264337593543950335"}
        }))
        .unwrap();
        assert_eq!(
            convert(&overflow, Decimal::TWO).unwrap_err().to_string(),
            "metric `m`: the aggregated value overflows the decimal range"
        );
    }

    #[test]
    fn a_bad_event_changes_nothing_and_the_next_good_event_counts() {
        check(
            r#"{"metrics": [
                {"code": "calls", "event": "api", "aggregation": {"type": "count"}},
                {"code": "users", "event": "api", "aggregation": {"type": "unique_count", "property": "user"}},
                {"code": "by_region", "event": "api", "group_by": ["region"], "aggregation": {"type": "count"}},
                {"code": "bytes", "event": "api", "aggregation": {"type": "sum", "property": "bytes"}}
            ]}"#,
            r#"
            e1 @1d api bytes=1 user=a region=eu
            e2 @1d api bytes=true user=b region=us
            e2 @1d api bytes=abc user=b region=us
            e2 @1d api bytes={} user=b region=us
            e2 @1d api bytes=null user=b region=us
            e2 @1d api bytes="2" user=b region=us
            "#,
            "
            e1 Counted
            e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found a boolean
            e2 error: event `e2`: metric `bytes`: property `bytes`: `abc` is not a decimal number
            e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found an object or array
            e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found null
            e2 Counted
            counted: 2
            by_region {region=eu} raw=1 qty=1 n=1
            by_region {region=us} raw=1 qty=1 n=1
            bytes {} raw=3 qty=3 n=2
            calls {} raw=2 qty=2 n=2
            users {} raw=2 qty=2 n=2
            ",
        );
    }

    #[test]
    fn transactions_only_for_percentage_charges_with_per_transaction_bounds() {
        check(
            r#"{"metrics": [
                {"code": "pay", "aggregation": {"type": "sum", "property": "amount"},
                 "group_by": ["currency"]},
                {"code": "pay_plain", "event": "pay", "aggregation": {"type": "sum", "property": "amount"}},
                {"code": "pay_count", "event": "pay", "aggregation": {"type": "count"}},
                {"code": "pay_capped", "event": "pay", "aggregation": {"type": "max", "property": "amount"}}
            ],
            "charges": [
                {"id": "fee", "metric": "pay", "model": {"type": "percentage", "percent": "2.9", "min_per_transaction": "0.30"}},
                {"id": "plain", "metric": "pay_plain", "model": {"type": "percentage", "percent": "1"}},
                {"id": "count", "metric": "pay_count", "model": {"type": "percentage", "percent": "1", "max_per_transaction": "5"}},
                {"id": "capped", "metric": "pay_capped", "model": {"type": "per_unit", "unit_price": "1"}}
            ]}"#,
            "
            e1 @1d pay amount=10 currency=usd
            e2 @2d pay amount=2.50 currency=eur
            e3 @1d pay amount=7 currency=usd
            e4 @1d pay amount=7 currency=usd
            ",
            "
            e1 Counted
            e2 Counted
            e3 Counted
            e4 Counted
            counted: 4
            pay {currency=eur} raw=2.50 qty=2.50 n=1 tx=[2.50]
            pay {currency=usd} raw=24 qty=24 n=3 tx=[10,7,7]
            pay_capped {} raw=10 qty=10 n=4
            pay_count {} raw=4 qty=4 n=4 tx=[1,1,1,1]
            pay_plain {} raw=26.50 qty=26.50 n=4
            ",
        );
    }

    #[test]
    fn custom_metric_through_a_plugin() {
        check(
            r#"{"metrics": [
                {"code": "total", "event": "job", "aggregation":
                    {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}}},
                {"code": "by_region", "event": "job", "group_by": ["region"], "aggregation":
                    {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}},
                 "filters": [{"property": "region", "equals": "ap", "negate": true}]},
                {"code": "idle", "event": "nothing", "aggregation":
                    {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}}}
            ]}"#,
            "
            e1 @1d job gpu=1.5 region=eu
            e2 @1d job gpu=2 region=us
            e3 @1d job gpu=4 region=eu
            e4 @1d job gpu=8 region=ap
            ",
            "
            e1 Counted
            e2 Counted
            e3 Counted
            e4 Counted
            counted: 4
            by_region {region=eu} raw=5.5 qty=5.5 n=2
            by_region {region=us} raw=2 qty=2 n=1
            idle {} raw=0 qty=0 n=0
            total {} raw=15.5 qty=15.5 n=4
            ",
        );
    }

    #[test]
    fn custom_metric_events_reach_the_plugin_in_batches() {
        let plugins = TestPlugins::default();
        let metrics: Vec<Metric> = serde_json::from_str(
            r#"[{"code": "total", "aggregation":
                {"type": "custom", "plugin": "sum@1", "config": {"property": "n"}}}]"#,
        )
        .unwrap();
        let window = Window {
            start: Timestamp(0),
            end: Timestamp(DAY),
        };
        let mut aggregator = Aggregator::new(
            &metrics,
            &[],
            window,
            Timestamp(0),
            &BTreeMap::new(),
            &plugins,
        )
        .unwrap();
        for i in 0..2500 {
            let event = Event {
                id: Cow::Owned(format!("e{i}")),
                customer: Cow::Borrowed(""),
                timestamp: Timestamp(i),
                code: Cow::Borrowed("total"),
                properties: [(Cow::Borrowed("n"), PropValue::Num(Ok(Decimal::ONE)))].into(),
            };
            assert_eq!(aggregator.push(&event), Ok(Outcome::Counted));
        }
        assert_eq!(plugins.n_updates.load(Ordering::Relaxed), 2);
        let usage = aggregator.finish().unwrap();
        assert_eq!(plugins.n_updates.load(Ordering::Relaxed), 3);
        assert_eq!(usage.metrics["total"][0].quantity, Decimal::from(2500));
    }

    #[test]
    fn custom_metric_failures_name_the_metric() {
        check(
            r#"{"metrics": [{"code": "m", "aggregation": {"type": "custom", "plugin": "nope@1"}}]}"#,
            "",
            "new: metric `m`: plugin `nope@1` is not available",
        );
        check(
            r#"{"metrics": [{"code": "m", "group_by": ["r"],
                "aggregation": {"type": "custom", "plugin": "picky@1"}}]}"#,
            "",
            "new: metric `m`: plugin `picky@1` rejected its config: no config is good enough",
        );
        check(
            r#"{"metrics": [
                {"code": "ok", "event": "e", "aggregation": {"type": "count"}},
                {"code": "m", "event": "e", "aggregation": {"type": "custom", "plugin": "fail@1"}}
            ]}"#,
            "e1 @1d e",
            "
            e1 Counted
            counted: 1
            finish: metric `m`: plugin `fail@1` failed: boom
            ",
        );
    }

    #[test]
    fn a_sum_overflow_fails_the_aggregation() {
        check(
            r#"{"metrics": [{"code": "m", "aggregation": {"type": "sum", "property": "n"}}]}"#,
            r#"
            e1 @1d m n="79228162514264337593543950335"
            e2 @1d m n=1
            "#,
            "
            e1 Counted
            e2 Counted
            counted: 2
            finish: metric `m`: the aggregated value overflows the decimal range
            ",
        );
    }

    #[test]
    fn invalid_setups_are_refused_by_new() {
        let count = r#"{"code": "m", "aggregation": {"type": "count"}}"#;
        let level = r#"{"code": "lvl", "group_by": ["r"],
            "aggregation": {"type": "time_weighted_average", "property": "n"}}"#;
        let cases = [
            (format!(r#"{{"metrics": [{count}, {count}]}}"#), "new: metric `m` is defined twice"),
            (
                format!(r#"{{"metrics": [{count}], "carry_in": {{"x": "1"}}}}"#),
                "new: carry-in given for unknown metric `x`",
            ),
            (
                format!(r#"{{"metrics": [{count}], "carry_in": {{"m": "1"}}}}"#),
                "new: metric `m`: carry-in applies only to time-weighted metrics",
            ),
            (
                format!(r#"{{"metrics": [{level}], "carry_in": {{"lvl": "1"}}}}"#),
                "new: metric `lvl`: carry-in applies only to ungrouped metrics",
            ),
            (
                r#"{"metrics": [{"code": "m", "aggregation": {"type": "count"},
                    "conversion": {"divide_by": "0"}}]}"#
                    .to_owned(),
                "new: metric `m`: invalid conversion: `divide_by` is zero",
            ),
            (
                r#"{"metrics": [{"code": "m", "aggregation": {"type": "unique_count", "property": "u"}}],
                    "charges": [{"id": "c", "metric": "m",
                        "model": {"type": "percentage", "percent": "1", "min_per_transaction": "1"}}]}"#
                    .to_owned(),
                "new: metric `m`: charge `c` needs per-transaction amounts, which a unique_count metric does not have",
            ),
            (
                format!(r#"{{"metrics": [{count}], "window_days": 0}}"#),
                "new: the window [0, 0) is empty or too long",
            ),
        ];
        for (case, expected) in cases {
            check(&case, "", expected);
        }
    }

    #[test]
    fn event_error_display() {
        let error = EventError {
            event_id: "e17".into(),
            metric: Some("storage".into()),
            property: Some("bytes".into()),
            message: "expected a number, found a boolean".into(),
        };
        assert_eq!(
            error.to_string(),
            "event `e17`: metric `storage`: property `bytes`: expected a number, found a boolean"
        );
        let bare = EventError {
            metric: None,
            property: None,
            ..error
        };
        assert_eq!(
            bare.to_string(),
            "event `e17`: expected a number, found a boolean"
        );
    }

    #[test]
    fn a_full_index_refuses_new_strings_and_events() {
        let mut index = StrIndex {
            max_strings: 2,
            ..StrIndex::default()
        };
        assert_eq!(index.insert("a"), Some(0));
        assert_eq!(index.insert("b"), Some(1));
        assert_eq!(index.insert("c"), None);
        assert_eq!(index.insert("a"), Some(0));
        assert_eq!(index.len(), 2);

        // An aggregator whose id index is full refuses new ids with an error and counts
        // nothing of them; repeated ids are still duplicates.
        let metrics: Vec<Metric> = serde_json::from_str(
            r#"[{"code": "calls", "event": "api", "aggregation": {"type": "count"}}]"#,
        )
        .unwrap();
        let window = Window {
            start: Timestamp(0),
            end: Timestamp(DAY),
        };
        let carry_in = BTreeMap::new();
        let mut aggregator = Aggregator::new(
            &metrics,
            &[],
            window,
            Timestamp(0),
            &carry_in,
            &crate::plugin::NoPlugins,
        )
        .unwrap();
        aggregator.seen_ids.max_ids = 1;
        let event = |id: &str| -> Event<'static> {
            serde_json::from_str::<Event<'_>>(&format!(
                r#"{{"id": "{id}", "timestamp": 1000, "code": "api"}}"#
            ))
            .unwrap()
            .into_owned()
        };
        assert_eq!(aggregator.push(&event("e1")), Ok(Outcome::Counted));
        assert_eq!(aggregator.push(&event("e1")), Ok(Outcome::Duplicate));
        let error = aggregator.push(&event("e2")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "event `e2`: more than 4294967294 distinct event ids in one aggregation"
        );
        assert_eq!(aggregator.n_counted(), 1);
    }

    #[test]
    fn id_set_is_exact_under_collisions_and_long_ids() {
        let mut ids = IdSet::default();
        let long = "x".repeat(300); // a two-byte length
        let texts = ["a", "b", "", "ab", long.as_str(), "é"];
        // Every id with the same hash: one probe run, told apart by their text.
        for text in texts {
            assert!(!ids.contains_hashed(7, text));
            assert!(ids.insert_new(7, text));
        }
        for text in texts {
            assert!(ids.contains_hashed(7, text), "{text:?}");
        }
        assert!(!ids.contains_hashed(7, &"x".repeat(299)));
        assert!(!ids.contains_hashed(8, "a"));
        for i in 0..5_000 {
            let id = format!("evt_{i:016}");
            assert!(ids.insert_new(StrIndex::hash(&id), &id));
        }
        for i in 0..5_000 {
            let id = format!("evt_{i:016}");
            assert!(ids.contains_hashed(StrIndex::hash(&id), &id));
        }
        assert_eq!(ids.n_ids, 5_006);
        for text in texts {
            assert!(ids.contains_hashed(7, text), "after growing: {text:?}");
        }
        // Grown by a quarter, not doubled.
        assert!(
            ids.arena.capacity() < ids.arena.len() * 5 / 4 + 512,
            "{}",
            ids.arena.capacity()
        );
        let mut full = IdSet {
            max_ids: 1,
            ..IdSet::default()
        };
        assert!(full.insert_new(1, "a"));
        assert!(!full.has_room_for("b"));
        assert!(!full.insert_new(2, "b"));
        assert!(full.contains_hashed(1, "a"));
    }

    #[test]
    fn str_index_survives_hash_collisions() {
        let mut index = StrIndex::default();
        // Every string with the same hash: one probe run.
        for (i, text) in ["a", "b", "", "ab"].iter().enumerate() {
            assert_eq!(index.find_hashed(7, text), None);
            assert_eq!(index.insert_new(7, text), Some(i));
        }
        assert_eq!(index.find_hashed(7, "b"), Some(1));
        assert_eq!(index.find_hashed(7, ""), Some(2));
        assert_eq!(index.find_hashed(7, "abc"), None);
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.len(), 5);
        // Growing keeps every string findable, colliding or not.
        for i in 0..1000 {
            assert_eq!(index.insert(&format!("id-{i}")), Some(5 + i));
        }
        for i in 0..1000 {
            assert_eq!(index.insert(&format!("id-{i}")), Some(5 + i));
        }
        assert_eq!(index.find_hashed(7, "a"), Some(0));
        assert_eq!(index.find_hashed(7, "ab"), Some(3));
        assert_eq!(index.insert("ab"), Some(4));
        assert_eq!(index.text(2), Some(""));
        assert_eq!(index.len(), 1005);
    }

    fn permutation_case() -> impl Strategy<Value = (Vec<(i64, u32, u8)>, Vec<usize>)> {
        prop::collection::vec((-10_000i64..10_000, 0u32..4, 0u8..5), 0..40).prop_flat_map(
            |values| {
                let order: Vec<usize> = (0..values.len()).collect();
                (Just(values), Just(order).prop_shuffle())
            },
        )
    }

    proptest! {
        /// Count, sum, max, min and unique_count do not depend on push order.
        #[test]
        fn built_ins_ignore_push_order((values, order) in permutation_case()) {
            let case: Case = serde_json::from_str(ALL_BUILT_INS).unwrap();
            let events: Vec<Event<'static>> = values
                .iter()
                .enumerate()
                .map(|(i, &(mantissa, scale, user))| Event {
                    id: Cow::Owned(format!("e{i}")),
                    customer: Cow::Borrowed(""),
                    timestamp: Timestamp(DAY),
                    code: Cow::Borrowed("api"),
                    properties: [
                        (Cow::Borrowed("bytes"), PropValue::Num(Ok(Decimal::new(mantissa, scale)))),
                        (Cow::Borrowed("user"), PropValue::Str(Cow::Owned(format!("u{user}")))),
                    ]
                    .into(),
                })
                .collect();
            let window = Window { start: Timestamp(0), end: Timestamp(30 * DAY) };
            let aggregate = |order: &mut dyn Iterator<Item = usize>| {
                let mut aggregator = Aggregator::new(
                    &case.metrics, &[], window, Timestamp(0), &BTreeMap::new(), &crate::plugin::NoPlugins,
                )
                .unwrap();
                for i in order {
                    assert_eq!(aggregator.push(&events[i]), Ok(Outcome::Counted));
                }
                let mut usage = aggregator.finish().unwrap();
                usage.metrics.remove("last");
                usage
            };
            let in_order = aggregate(&mut (0..events.len()));
            let shuffled = aggregate(&mut order.iter().copied());
            prop_assert_eq!(&in_order, &shuffled);
            let sum: Decimal = values.iter().map(|&(m, s, _)| Decimal::new(m, s)).sum();
            prop_assert_eq!(in_order.metrics["bytes"][0].raw_value, sum);
        }
    }
}
