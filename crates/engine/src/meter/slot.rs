//! One metric's state in an aggregation ([`Slot`]): its groups, each with the accumulator of
//! its aggregation kind ([`Acc`]; a custom metric's is in `custom`); filters and group keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::custom::{self, Custom};
use super::index::StrIndex;
use super::{AggregateError, MISSING_GROUP_VALUE, UniqueValues, zero_divisor};
use crate::plan::{Aggregation, Charge, Filter, GroupKey, Metric, PriceModel};
use crate::plugin::{MetricAccumulator, PluginHost};
use crate::usage::{Event, PropValue, Timestamp};

/// One metric's state.
pub(super) struct Slot<'p> {
    pub(super) metric: &'p Metric,
    /// The numeric property every counted event must carry (sum, max, min, latest, time-weighted).
    pub(super) numeric_property: Option<&'p str>,
    pub(super) time_weighted: bool,
    pub(super) record_transactions: bool,
    /// Whether each counted event's timestamp and value are kept (a charge prices the metric
    /// by the days each unit was held).
    pub(super) record_dated: bool,
    pub(super) carry_in: Decimal,
    /// The property holding an event's `add` / `remove` operation, for a unique count that
    /// follows operations.
    pub(super) operation_property: Option<&'p str>,
    pub(super) groups: Vec<Group>,
    /// Encoded group key → index in `groups` (grouped metrics only).
    pub(super) group_index: StrIndex,
    /// An accumulator made by `new` to check a grouped custom metric's plugin, used by its
    /// first group.
    pub(super) spare: Option<Box<dyn MetricAccumulator>>,
    pub(super) failure: Option<AggregateError>,
}

pub(super) struct Group {
    pub(super) key: GroupKey,
    pub(super) n_events: u64,
    pub(super) acc: Acc,
    pub(super) transactions: Option<Vec<Decimal>>,
    pub(super) dated: Option<Vec<(Timestamp, Decimal)>>,
}

pub(super) enum Acc {
    Count,
    Sum(Decimal),
    Max(Option<Decimal>),
    Min(Option<Decimal>),
    Unique(StrIndex),
    Members(Members),
    Latest(Option<(Timestamp, Decimal)>),
    Levels(Vec<(Timestamp, Decimal)>),
    Custom(Custom),
}

impl<'p> Slot<'p> {
    pub(super) fn new(
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
                    PriceModel::Percentage { min_per_transaction, max_per_transaction, free_events, fixed_fee_within_free_amount, .. }
                        if min_per_transaction.is_some() || max_per_transaction.is_some() || free_events.is_some() || !fixed_fee_within_free_amount.is_default()
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
            record_dated: charges.iter().any(|charge| {
                charge.metric.as_deref() == Some(metric.code.as_str())
                    && charge.usage_proration == crate::plan::UsageProration::DaysHeld
            }),
            carry_in: Decimal::ZERO,
            operation_property: metric.aggregation.operation_property(metric.recurrence),
            groups: Vec::new(),
            group_index: StrIndex::default(),
            spare: None,
            failure: None,
        };
        // Loading the plugin now reports a missing plugin or a bad config before any push.
        let spare = match &metric.aggregation {
            Aggregation::Custom { plugin, config } => {
                Some(custom::accumulator(metric, plugin, config, plugins)?)
            }
            _ => None,
        };
        slot.spare = spare;
        if metric.group_by.is_empty() {
            let acc = slot.fresh_acc(plugins)?;
            slot.groups.push(slot.fresh_group(GroupKey::new(), acc));
        }
        Ok(slot)
    }

    pub(super) fn fresh_acc(&mut self, plugins: &dyn PluginHost) -> Result<Acc, AggregateError> {
        Ok(match &self.metric.aggregation {
            Aggregation::Count => Acc::Count,
            Aggregation::Sum { .. } => Acc::Sum(Decimal::ZERO),
            Aggregation::Max { .. } => Acc::Max(None),
            Aggregation::Min { .. } => Acc::Min(None),
            Aggregation::UniqueCount { .. } if self.operation_property.is_some() => {
                Acc::Members(Members::default())
            }
            Aggregation::UniqueCount { .. } => Acc::Unique(StrIndex::default()),
            Aggregation::Latest { .. } => Acc::Latest(None),
            Aggregation::TimeWeightedSum { .. } | Aggregation::TimeWeightedAverage { .. } => {
                Acc::Levels(Vec::new())
            }
            Aggregation::Custom { plugin, config } => {
                let acc = match self.spare.take() {
                    Some(acc) => acc,
                    None => custom::accumulator(self.metric, plugin, config, plugins)?,
                };
                Acc::Custom(Custom::new(acc))
            }
        })
    }

    pub(super) fn fresh_group(&self, key: GroupKey, acc: Acc) -> Group {
        Group {
            key,
            n_events: 0,
            acc,
            transactions: self.record_transactions.then(Vec::new),
            dated: self.record_dated.then(Vec::new),
        }
    }

    /// The index of the event's group, created if new.
    pub(super) fn group_of(
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
        if let Some(idx) = self.group_index.find(key_buf) {
            return Ok(idx);
        }
        let key_hash = StrIndex::hash(key_buf);
        let key: GroupKey = crate::sort::map_of(
            self.metric
                .group_by
                .iter()
                .map(|property| (property.clone(), group_text(event, property).into_owned())),
        );
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
    pub(super) fn take(
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
            Acc::Members(members) => {
                if let Aggregation::UniqueCount { property, .. } = &metric.aggregation
                    && let Some(text) = event
                        .properties
                        .get(property.as_str())
                        .and_then(PropValue::as_text)
                {
                    let add = self
                        .operation_property
                        .is_none_or(|op| operation(event, op) != Ok(Operation::Remove));
                    members.apply(&text, event.timestamp, add).ok_or_else(|| {
                        AggregateError::TooMany {
                            metric: code.clone(),
                            what: "unique values",
                        }
                    })?;
                }
            }
            Acc::Unique(values) => {
                if let Aggregation::UniqueCount { property, .. } = &metric.aggregation
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
            Acc::Custom(custom) => custom.push(event, metric)?,
        }
        if counted {
            group.n_events = group.n_events.saturating_add(1);
            if let (Some(transactions), Some(value)) = (&mut group.transactions, value) {
                transactions.push(value);
            }
            if let (Some(dated), Some(value)) = (&mut group.dated, value) {
                dated.push((event.timestamp, value));
            }
        }
        Ok(())
    }
}

/// An event's operation on a unique count's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    Add,
    Remove,
}

/// The operation an event names in `property`: `add` when the property is missing (as Lago's
/// `COALESCE(operation_type, 'add')`), else its text, which must be `add` or `remove`.
pub(super) fn operation(event: &Event<'_>, property: &str) -> Result<Operation, String> {
    match event.properties.get(property) {
        None | Some(PropValue::Null) => Ok(Operation::Add),
        Some(value) => match value.as_text().as_deref() {
            Some("add") => Ok(Operation::Add),
            Some("remove") => Ok(Operation::Remove),
            _ => Err("an operation is `add` or `remove`".to_owned()),
        },
    }
}

/// The state of a unique count that follows `add` / `remove` operations: each value's latest
/// operation (by timestamp, ties in push order; a carried-in value is older than any event).
#[derive(Clone, Debug, Default)]
pub(super) struct Members {
    latest: BTreeMap<String, (Option<Timestamp>, bool)>,
    carried_in: Vec<String>,
}

impl Members {
    /// The values active at the start (a usage's `carry_in`); `None` past the value limit.
    pub(super) fn carried(values: &[String]) -> Option<Members> {
        let mut members = Members::default();
        for value in values {
            if members.latest.len() >= StrIndex::MAX_STRINGS {
                return None;
            }
            members.latest.insert(value.clone(), (None, true));
        }
        members.carried_in = members.latest.keys().cloned().collect();
        Some(members)
    }

    /// An event's operation on `value` at `at`; `None` past the value limit.
    fn apply(&mut self, value: &str, at: Timestamp, add: bool) -> Option<()> {
        let n_values = self.latest.len();
        match self.latest.get_mut(value) {
            Some((latest, active)) => {
                if latest.is_none_or(|latest| at >= latest) {
                    *latest = Some(at);
                    *active = add;
                }
            }
            None if n_values >= StrIndex::MAX_STRINGS => return None,
            None => {
                self.latest.insert(value.to_owned(), (Some(at), add));
            }
        }
        Some(())
    }

    pub(super) fn n_active(&self) -> usize {
        self.latest.values().filter(|(_, active)| *active).count()
    }

    pub(super) fn values(&self) -> UniqueValues {
        UniqueValues {
            carried_in: self.carried_in.clone(),
            active: self
                .latest
                .iter()
                .filter(|(_, (_, active))| *active)
                .map(|(value, _)| value.clone())
                .collect(),
        }
    }
}

pub(super) fn passes(filter: &Filter, event: &Event<'_>) -> bool {
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

pub(super) fn read_number(event: &Event<'_>, property: &str) -> Result<Decimal, String> {
    match event.properties.get(property) {
        Some(value) => value.as_decimal(),
        None => Err("missing".to_owned()),
    }
}

pub(super) fn group_text<'e>(event: &'e Event<'_>, property: &str) -> Cow<'e, str> {
    event
        .properties
        .get(property)
        .and_then(PropValue::as_text)
        .unwrap_or(Cow::Borrowed(MISSING_GROUP_VALUE))
}

/// Appends `n` in decimal without allocating.
pub(super) fn push_usize(buf: &mut String, mut n: usize) {
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
