//! The [`Aggregator`]: one customer, one window; routes each pushed event through the checks
//! the module doc of [`crate::meter`] lists, validates it against every selecting metric, then
//! applies it to each metric's [`Slot`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;

use super::index::IdSet;
use super::route::{Router, Routing};
use super::slot::{Acc, Members, Slot, operation, passes, read_number};
use super::time_weighted::time_weighted;
use super::{
    AggregateError, EventError, GroupUsage, MeteredUsage, Outcome, UniqueValues, Window, convert,
};
use crate::plan::{Aggregation, Charge, Metric, Recurrence};
use crate::plugin::PluginHost;
use crate::usage::{Event, Timestamp};

/// Aggregates one customer's events over one window.
pub struct Aggregator<'p> {
    window: Window,
    /// Where time-weighted integrals start accruing: `max(window.start, billable_from)`.
    accrue_from: Timestamp,
    billable_from: Timestamp,
    plugins: &'p dyn PluginHost,
    slots: Vec<Slot<'p>>,
    router: Cow<'p, Router>,
    pub(super) seen_ids: IdSet,
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
            (carry_in, &BTreeMap::new()),
            plugins,
        )
    }

    /// [`Aggregator::new`] with the router of `metrics` given (`Some`, built by
    /// [`Router::new`] of the same metrics) instead of built for this aggregator alone, and
    /// the values carried in by carried-over unique counts beside the levels.
    pub(crate) fn routed(
        metrics: &'p [Metric],
        charges: &'p [Charge],
        router: Option<&'p Router>,
        window: Window,
        billable_from: Timestamp,
        (carry_in, carried_values): (&BTreeMap<String, Decimal>, &BTreeMap<String, Vec<String>>),
        plugins: &'p dyn PluginHost,
    ) -> Result<Aggregator<'p>, AggregateError> {
        if window
            .end
            .0
            .checked_sub(window.start.0)
            .is_none_or(|len| len < 0)
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
            let is_sum = matches!(slot.metric.aggregation, Aggregation::Sum { .. });
            let carried_sum = is_sum && slot.metric.recurrence == Recurrence::CarriedOver;
            let is_unique = matches!(slot.metric.aggregation, Aggregation::UniqueCount { .. });
            let problem = if is_unique && slot.metric.recurrence == Recurrence::CarriedOver {
                Some(
                    "a carried-over `unique_count` starts from the list of values active at the end of the previous period, not a number",
                )
            } else if is_sum && !carried_sum {
                Some("applies to a `sum` metric only with `recurrence` `carried_over`")
            } else if !slot.time_weighted && !carried_sum {
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
            if carried_sum && let Some(group) = slot.groups.first_mut() {
                // The ungrouped sum starts from the previous period's value.
                group.acc = Acc::Sum(*level);
            }
        }
        for (code, values) in carried_values {
            let Some(&idx) = index_by_code.get(code.as_str()) else {
                return Err(AggregateError::UnknownMetric(code.clone()));
            };
            let slot = &mut slots[idx];
            let carried_unique = matches!(slot.metric.aggregation, Aggregation::UniqueCount { .. })
                && slot.metric.recurrence == Recurrence::CarriedOver
                && slot.metric.group_by.is_empty();
            let group = slot.groups.first_mut().filter(|_| carried_unique);
            let Some(group) = group else {
                return Err(AggregateError::CarryIn {
                    metric: code.clone(),
                    message: "a list of values applies only to an ungrouped `unique_count` metric with `recurrence` `carried_over`".to_owned(),
                });
            };
            group.acc =
                Acc::Members(
                    Members::carried(values).ok_or_else(|| AggregateError::TooMany {
                        metric: code.clone(),
                        what: "unique values",
                    })?,
                );
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
        let Err(vacant) = self.seen_ids.find(id_hash, &event.id) else {
            return Ok(Outcome::Duplicate);
        };
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
        let validated = self.prepare(
            route_start as usize,
            route_end as usize,
            event,
            in_trial,
            &mut prepared,
        );
        let outcome = match validated {
            Err(error) => Err(error),
            Ok(()) if prepared.is_empty() && in_trial => Ok(Outcome::BeforeBillable),
            Ok(()) if prepared.is_empty() => Ok(Outcome::Filtered),
            Ok(()) => {
                self.apply(event, &prepared, !in_trial);
                // Not full: checked above.
                // (`prepare` and `apply` leave `seen_ids` as `find` saw it.)
                let _ = self.seen_ids.insert_vacant(id_hash, &event.id, vacant);
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
                let values = unique_values(&group.acc);
                let raw_value = match group.acc {
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
                    Acc::Custom(custom) => custom.finish(metric)?,
                    ref acc => plain_value(acc, group.n_events),
                };
                groups.push(group_usage(
                    metric,
                    group.key,
                    raw_value,
                    group.n_events,
                    group.transactions,
                    values,
                    group.dated,
                )?);
            }
            crate::sort::sort_by(&mut groups, |a, b| a.group.cmp(&b.group));
            metrics.insert(metric.code.clone(), groups);
        }
        Ok(MeteredUsage { metrics })
    }

    /// What [`Aggregator::finish`] would give now, the aggregation going on (a server's live
    /// usage). `None` when the plan has a custom (plugin) metric: a plugin's accumulator gives
    /// its value only once, at the end.
    pub fn snapshot(&self) -> Option<Result<MeteredUsage, AggregateError>> {
        let mut metrics = BTreeMap::new();
        for slot in &self.slots {
            if let Some(failure) = &slot.failure {
                return Some(Err(failure.clone()));
            }
            let metric = slot.metric;
            let mut groups = Vec::with_capacity(slot.groups.len());
            for group in &slot.groups {
                let raw_value = match &group.acc {
                    Acc::Levels(levels) => {
                        let Some(value) = time_weighted(
                            metric,
                            slot.carry_in,
                            &mut levels.clone(),
                            self.window,
                            self.accrue_from,
                        ) else {
                            return Some(Err(AggregateError::Overflow {
                                metric: metric.code.clone(),
                            }));
                        };
                        value
                    }
                    Acc::Custom(_) => return None,
                    acc => plain_value(acc, group.n_events),
                };
                match group_usage(
                    metric,
                    group.key.clone(),
                    raw_value,
                    group.n_events,
                    group.transactions.clone(),
                    unique_values(&group.acc),
                    group.dated.clone(),
                ) {
                    Ok(usage) => groups.push(usage),
                    Err(error) => return Some(Err(error)),
                }
            }
            crate::sort::sort_by(&mut groups, |a, b| a.group.cmp(&b.group));
            metrics.insert(metric.code.clone(), groups);
        }
        Some(Ok(MeteredUsage { metrics }))
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
            if let Some(property) = slot.operation_property {
                operation(event, property).map_err(|message| EventError {
                    event_id: event.id.to_string(),
                    metric: Some(slot.metric.code.clone()),
                    property: Some(property.to_owned()),
                    message,
                })?;
            }
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

/// One group's usage from its raw value: converted, then the metric's negative-value rule.
/// Shared by `finish` and `snapshot`, so a snapshot is the finished usage by construction.
fn group_usage(
    metric: &Metric,
    group: crate::plan::GroupKey,
    raw_value: Decimal,
    n_events: u64,
    transactions: Option<Vec<Decimal>>,
    values: Option<UniqueValues>,
    dated: Option<Vec<(Timestamp, Decimal)>>,
) -> Result<GroupUsage, AggregateError> {
    Ok(GroupUsage {
        group,
        raw_value,
        quantity: metric.negative_values.apply(convert(metric, raw_value)?),
        n_events,
        transactions,
        values,
        dated,
    })
}

/// The values of a unique count that follows operations.
fn unique_values(acc: &Acc) -> Option<UniqueValues> {
    match acc {
        Acc::Members(members) => Some(members.values()),
        _ => None,
    }
}

/// The raw value of an accumulator that needs neither the window nor a plugin.
fn plain_value(acc: &Acc, n_events: u64) -> Decimal {
    match acc {
        Acc::Count => Decimal::from(n_events),
        Acc::Sum(sum) => *sum,
        Acc::Max(value) | Acc::Min(value) => value.unwrap_or(Decimal::ZERO),
        Acc::Unique(values) => Decimal::from(values.len()),
        Acc::Members(members) => Decimal::from(members.n_active()),
        Acc::Latest(latest) => latest.map_or(Decimal::ZERO, |(_, value)| value),
        Acc::Levels(_) | Acc::Custom(_) => {
            unreachable!("time-weighted and custom values are computed by the caller")
        }
    }
}
