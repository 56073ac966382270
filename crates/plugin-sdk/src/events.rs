//! Usage events as a plugin sees them: views into the columnar `event-batch` the host passed in,
//! read on access.
//!
//! [`Events`] checks a batch once, in one pass over its columns (every offset, name index, kind
//! and scale: `ratecard-plugin-wire`'s `BatchView::parse`, the one reader of the format whose
//! writer the host uses), without allocating per event; after that every accessor of an [`EventRef`] is a
//! few loads from the batch and cannot fail. Nothing is decoded that the plugin does not read: a
//! metric that reads one number property of each event pays for one number per event, not for
//! the event's id, customer, code and every property. A malformed batch is an `invalid-input`
//! error, never a panic.

use std::borrow::Cow;
use std::cell::Cell;

use ratecard_plugin_wire::{BatchError, BatchView, BatchWriter, U32s, WireEvent, WireValue};
use ratecard_plugin_wire::{field, kind, number, same_text, u64_at};

pub use ratecard_plugin_wire::Reads;

use crate::{Decimal, EventError, EventFields, PluginError, Result, parse_decimal};

impl From<Reads> for EventFields {
    fn from(reads: Reads) -> EventFields {
        EventFields {
            ids: reads.ids,
            customers: reads.customers,
            codes: reads.codes,
            properties: reads.properties,
        }
    }
}

impl From<EventFields> for Reads {
    fn from(fields: EventFields) -> Reads {
        Reads {
            ids: fields.ids,
            customers: fields.customers,
            codes: fields.codes,
            properties: fields.properties,
        }
    }
}

/// A property value of a usage event.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    /// A JSON number, exact.
    Num(Decimal),
    Boolean(bool),
    Null,
    /// An array or object (not passed on), or a number out of range.
    Other,
}

impl Value<'_> {
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(text) => Value::Str(Cow::Owned(text.into_owned())),
            Value::Num(n) => Value::Num(n),
            Value::Boolean(b) => Value::Boolean(b),
            Value::Null => Value::Null,
            Value::Other => Value::Other,
        }
    }
}

/// A named property of an [`Event`].
#[derive(Clone, Debug, PartialEq)]
pub struct Property<'a> {
    pub name: Cow<'a, str>,
    pub value: Value<'a>,
}

/// A usage event as data, to build a [`Batch`] in native tests (see [`event`]). Plugins read
/// events through [`Events`] and [`EventRef`].
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub customer: Cow<'a, str>,
    /// Unix milliseconds, UTC.
    pub timestamp_ms: i64,
    pub code: Cow<'a, str>,
    /// Sorted by name, names unique.
    pub properties: Cow<'a, [Property<'a>]>,
}

/// Builds an event for native tests of plugins (customer `""`).
pub fn event(
    id: &str,
    timestamp_ms: i64,
    code: &str,
    properties: &[(&str, Value<'_>)],
) -> Event<'static> {
    let mut properties: Vec<Property<'static>> = properties
        .iter()
        .map(|(name, value)| Property {
            name: Cow::Owned((*name).to_owned()),
            value: value.clone().into_owned(),
        })
        .collect();
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    Event {
        id: Cow::Owned(id.to_owned()),
        customer: Cow::Borrowed(""),
        timestamp_ms,
        code: Cow::Owned(code.to_owned()),
        properties: Cow::Owned(properties),
    }
}

/// A numeric property value, for tests. Panics if `text` is not a decimal.
pub fn num(text: &str) -> Value<'static> {
    match text.parse::<Decimal>() {
        Ok(n) => Value::Num(n),
        Err(e) => panic!("`{text}` is not a decimal: {e}"),
    }
}

/// A string property value.
pub fn string(text: &str) -> Value<'static> {
    Value::Str(Cow::Owned(text.to_owned()))
}

fn malformed(error: BatchError) -> PluginError {
    PluginError::InvalidInput(format!("malformed event batch: {error}"))
}

/// The number columns of a batch: low 64 bits, high 32 bits and scale of each magnitude.
type NumberColumns<'a> = (&'a [u8], U32s<'a>, &'a [u8]);

/// Number `slot` of the number columns.
#[inline]
fn number_at((los, his, scales): NumberColumns<'_>, slot: usize, negative: bool) -> Decimal {
    let scale = scales.get(slot).copied().unwrap_or_default();
    number(u64_at(los, slot), his.at(slot), scale, negative)
}

/// What reading a property's value needs: each property's kind and the index of its value in
/// the number or string columns, and the number columns. A loop that holds it by value keeps
/// these columns in registers.
#[derive(Clone, Copy, Debug)]
struct Values<'a> {
    kinds: &'a [u8],
    slots: &'a [u32],
    numbers: NumberColumns<'a>,
}

impl Values<'_> {
    /// Property `p` (of `event`, called `name`) as a decimal: a number, or text holding one.
    #[inline]
    fn decimal(self, event: EventRef<'_>, name: &str, p: usize) -> Result<Decimal> {
        let slot = self.slots.get(p).copied().unwrap_or_default() as usize;
        match self.kinds.get(p).copied() {
            Some(kind::NUM) => Ok(number_at(self.numbers, slot, false)),
            Some(kind::NEG_NUM) => Ok(number_at(self.numbers, slot, true)),
            _ => event.decimal_in_text(name, p),
        }
    }
}

/// How many recently looked-up property names a batch remembers.
const NAME_CACHE: usize = 4;
/// An empty entry of the recent names: matches no name (its range is never in the text).
const NO_NAME: (u32, u32, u32) = (u32::MAX, u32::MAX, u32::MAX);

/// The events of one batch, as the host passed them: iterate (`for event in events`), index
/// ([`Events::get`]) or count them. Each [`EventRef`] reads its fields from the batch on access.
#[derive(Debug)]
pub struct Events<'a> {
    /// The batch's columns, checked.
    batch: BatchView<'a>,
    /// Recently looked-up property names: (name index, start, end in `names`). A plugin asks
    /// for the same few names for every event; a hit costs one comparison of the name, a miss a
    /// scan of the names.
    recent_names: Cell<[(u32, u32, u32); NAME_CACHE]>,
    next_recent: Cell<usize>,
}

impl<'a> Events<'a> {
    /// Reads the columns of an `event-batch` and checks every offset, index, kind and scale,
    /// filling `value_slots` (kept by the caller so it is reused across batches).
    pub(crate) fn parse(bytes: &'a [u8], value_slots: &'a mut Vec<u32>) -> Result<Events<'a>> {
        BatchView::parse(bytes, value_slots)
            .map(Events::of)
            .map_err(malformed)
    }

    fn of(batch: BatchView<'a>) -> Events<'a> {
        Events {
            batch,
            recent_names: Cell::new([NO_NAME; NAME_CACHE]),
            next_recent: Cell::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.batch.n_events
    }

    pub fn is_empty(&self) -> bool {
        self.batch.n_events == 0
    }

    /// Event `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<EventRef<'_>> {
        (index < self.batch.n_events).then_some(EventRef {
            events: self,
            index,
        })
    }

    pub fn iter(&self) -> EventIter<'_> {
        EventIter {
            events: self,
            range: 0..self.batch.n_events,
        }
    }

    /// Name `i` of the batch's names (customers, codes, property names).
    #[inline]
    fn name(&self, i: u32) -> &'a str {
        let (start, end) = self.batch.name_ends.range(i as usize);
        self.batch.names.get(start..end).unwrap_or_default()
    }

    /// The index of `name` among the batch's names.
    #[inline]
    fn name_index(&self, name: &str) -> Option<u32> {
        let recent = self.recent_names.get();
        for (i, start, end) in recent {
            if self
                .batch
                .names
                .as_bytes()
                .get(start as usize..end as usize)
                .is_some_and(|recent| same_text(recent, name.as_bytes()))
            {
                return Some(i);
            }
        }
        self.find_name(name)
    }

    /// `name_index` past the recently looked-up names: a scan, remembered.
    #[cold]
    fn find_name(&self, name: &str) -> Option<u32> {
        let i = (0..self.batch.name_ends.len() as u32).find(|i| self.name(*i) == name)?;
        let (start, end) = self.batch.name_ends.range(i as usize);
        let mut recent = self.recent_names.get();
        let next = self.next_recent.get();
        recent[next] = (i, start as u32, end as u32);
        self.recent_names.set(recent);
        self.next_recent.set((next + 1) % NAME_CACHE);
        Some(i)
    }

    #[inline]
    fn values(&self) -> Values<'a> {
        Values {
            kinds: self.batch.property_kinds,
            slots: self.batch.value_slots,
            numbers: (
                self.batch.number_los,
                self.batch.number_his,
                self.batch.number_scales,
            ),
        }
    }

    /// Number `slot` of the number columns.
    #[inline]
    fn number(&self, slot: usize, negative: bool) -> Decimal {
        number_at(self.values().numbers, slot, negative)
    }

    /// The text of property `p` of the batch, if it is a string.
    fn str_value(&self, p: usize) -> Option<&'a str> {
        if self.batch.property_kinds.get(p) != Some(&kind::STR) {
            return None;
        }
        let slot = self.batch.value_slots.get(p).copied().unwrap_or_default() as usize;
        let (start, end) = self.batch.string_ends.range(slot);
        self.batch.strings.get(start..end)
    }

    /// The value of property `p` of the batch.
    fn value(&self, p: usize) -> Value<'a> {
        let slot = self.batch.value_slots.get(p).copied().unwrap_or_default() as usize;
        match self
            .batch
            .property_kinds
            .get(p)
            .copied()
            .unwrap_or(kind::OTHER)
        {
            kind::STR => {
                let (start, end) = self.batch.string_ends.range(slot);
                Value::Str(Cow::Borrowed(
                    self.batch.strings.get(start..end).unwrap_or_default(),
                ))
            }
            kind::NUM => Value::Num(self.number(slot, false)),
            kind::NEG_NUM => Value::Num(self.number(slot, true)),
            kind::FALSE => Value::Boolean(false),
            kind::TRUE => Value::Boolean(true),
            kind::NULL => Value::Null,
            _ => Value::Other,
        }
    }
}

impl<'a> Events<'a> {
    /// The timestamps of the events (Unix milliseconds, UTC), in order.
    pub fn timestamps_ms(&self) -> impl ExactSizeIterator<Item = i64> + 'a {
        self.batch
            .timestamps_ms
            .as_chunks()
            .0
            .iter()
            .map(|b| i64::from_le_bytes(*b))
    }

    /// Property `name` of every event, in order, as [`EventRef::decimal`] reads it, with the
    /// name looked up once for the batch rather than once per event: a fast way for a metric
    /// that reads one number from each event and handles each event's error itself
    /// ([`Events::decimal_column`] is faster when a bad event refuses the batch).
    ///
    /// ```
    /// use ratecard_plugin::{Batch, Decimal, event, num};
    ///
    /// let samples = [
    ///     event("1", 0, "bw", &[("mbps", num("1.5"))]),
    ///     event("2", 60_000, "bw", &[("mbps", num("2.25")), ("router", num("7"))]),
    /// ];
    /// let batch = Batch::new(&samples);
    /// let events = batch.events();
    /// let mut total = Decimal::ZERO;
    /// for (t, rate) in events.timestamps_ms().zip(events.decimals("mbps")) {
    ///     total += rate?;
    /// }
    /// assert_eq!(total.to_string(), "3.75");
    /// assert!(events.decimals("gbps").all(|rate| rate.is_err()));
    /// # Ok::<(), ratecard_plugin::PluginError>(())
    /// ```
    pub fn decimals<'e>(&'e self, name: &'e str) -> Decimals<'e> {
        let name_index = self.name_index(name);
        Decimals {
            dense: name_index.and_then(|name| self.dense_numbers(name)),
            events: self,
            name,
            name_index,
            next: 0,
            end: self.batch.n_events,
            first_property: 0,
            property_ends: self.batch.property_ends,
            property_names: self.batch.property_names,
            values: self.values(),
        }
    }
}

impl<'a> Events<'a> {
    /// Property `name` of every event as a decimal, in order, or the error of the first event
    /// without one ([`EventRef::decimal`]'s): the fastest reader for a metric that needs the
    /// number of every event, and refuses a batch with a bad one before adding any of it. The
    /// values are all read before the metric's loop, which then holds plain `Decimal`s; when each
    /// event's one property is this number (what a metric whose [`crate::Metric::reads`] is one
    /// number gets), they are read straight down the number columns.
    ///
    /// ```
    /// use ratecard_plugin::{Batch, Decimal, Reads, event, num};
    ///
    /// let samples = [
    ///     event("1", 0, "bw", &[("mbps", num("1.5"))]),
    ///     event("2", 60_000, "bw", &[("mbps", num("2.25"))]),
    /// ];
    /// let batch = Batch::with_reads(&samples, &Reads::timestamps().property("mbps"));
    /// let events = batch.events();
    /// let mut total = Decimal::ZERO;
    /// for (t, rate) in events.timestamps_ms().zip(events.decimal_column("mbps")?) {
    ///     total += rate;
    /// }
    /// assert_eq!(total.to_string(), "3.75");
    /// assert!(events.decimal_column("gbps").is_err());
    /// # Ok::<(), ratecard_plugin::PluginError>(())
    /// ```
    pub fn decimal_column(&self, name: &str) -> Result<std::vec::IntoIter<Decimal>> {
        let name_index = self.name_index(name);
        let values: Vec<Decimal> = match name_index.and_then(|name| self.dense_numbers(name)) {
            Some(dense) => dense.map(dense_decimal).collect(),
            None => self.decimals(name).collect::<Result<_>>()?,
        };
        Ok(values.into_iter())
    }

    /// The number columns as property `name` of each event, when every event has exactly one
    /// property, `name`, and it is a number: then number `i` is event `i`'s (what a metric that
    /// reads one number gets from the host). Checked in branch-free passes over the columns.
    fn dense_numbers(&self, name: u32) -> Option<DenseNumbers<'a>> {
        let n = self.batch.n_events;
        let mut dense = self.batch.property_kinds.len() == n && self.batch.number_scales.len() == n;
        let mut expected_end = 0u32;
        for end in self.batch.property_ends.iter() {
            expected_end = expected_end.wrapping_add(1);
            dense &= end == expected_end;
        }
        dense &= self
            .batch
            .property_names
            .iter()
            .fold(true, |all, p| all & (p == name));
        dense &= self
            .batch
            .property_kinds
            .iter()
            .fold(true, |all, k| all & matches!(*k, kind::NUM | kind::NEG_NUM));
        dense.then(|| {
            let (los, his) = (
                self.batch.number_los.as_chunks().0,
                self.batch.number_his.0.as_chunks().0,
            );
            los.iter().zip(his).zip(
                self.batch
                    .number_scales
                    .iter()
                    .zip(self.batch.property_kinds),
            )
        })
    }
}

/// Each event's number, lo, hi, scale and kind (see [`Events::dense_numbers`]).
type DenseNumbers<'e> = std::iter::Zip<
    std::iter::Zip<std::slice::Iter<'e, [u8; 8]>, std::slice::Iter<'e, [u8; 4]>>,
    std::iter::Zip<std::slice::Iter<'e, u8>, std::slice::Iter<'e, u8>>,
>;

/// One item of [`DenseNumbers`].
type DenseNumber<'e> = <DenseNumbers<'e> as Iterator>::Item;

/// The decimal of one item of [`DenseNumbers`].
#[inline]
fn dense_decimal(((lo, hi), (scale, kind)): DenseNumber<'_>) -> Decimal {
    let (lo, hi) = (u64::from_le_bytes(*lo), u32::from_le_bytes(*hi));
    number(lo, hi, *scale, *kind == kind::NEG_NUM)
}

/// Property `name` of each event of a batch as a decimal (see [`Events::decimals`]). The
/// columns it reads are copied into the iterator, so a loop over it keeps them in registers.
#[derive(Clone, Debug)]
pub struct Decimals<'e> {
    /// When each event's one property is this number: the numbers, read straight down their
    /// columns with no search.
    dense: Option<DenseNumbers<'e>>,
    events: &'e Events<'e>,
    name: &'e str,
    /// `None` if no event of the batch has a property of that name.
    name_index: Option<u32>,
    next: usize,
    end: usize,
    /// The first property of event `next`.
    first_property: usize,
    property_ends: U32s<'e>,
    property_names: U32s<'e>,
    values: Values<'e>,
}

impl Iterator for Decimals<'_> {
    type Item = Result<Decimal>;

    #[inline]
    fn next(&mut self) -> Option<Result<Decimal>> {
        if let Some(dense) = &mut self.dense {
            return dense.next().map(|number| Ok(dense_decimal(number)));
        }
        let index = self.next;
        if index >= self.end {
            return None;
        }
        self.next += 1;
        let (start, end) = (self.first_property, self.property_ends.at(index) as usize);
        self.first_property = end;
        let found = self
            .name_index
            .and_then(|name| (start..end).find(|p| self.property_names.at(*p) == name));
        let event = EventRef {
            events: self.events,
            index,
        };
        let Some(p) = found else {
            return Some(Err(event.missing(self.name)));
        };
        Some(self.values.decimal(event, self.name, p))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if let Some(dense) = &self.dense {
            return dense.size_hint();
        }
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Decimals<'_> {}

impl<'e> IntoIterator for &'e Events<'_> {
    type Item = EventRef<'e>;
    type IntoIter = EventIter<'e>;

    fn into_iter(self) -> EventIter<'e> {
        self.iter()
    }
}

/// The events of a batch, in order.
#[derive(Clone, Debug)]
pub struct EventIter<'e> {
    events: &'e Events<'e>,
    range: std::ops::Range<usize>,
}

impl<'e> Iterator for EventIter<'e> {
    type Item = EventRef<'e>;

    #[inline]
    fn next(&mut self) -> Option<EventRef<'e>> {
        let index = self.range.next()?;
        Some(EventRef {
            events: self.events,
            index,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl ExactSizeIterator for EventIter<'_> {}

impl<'e> DoubleEndedIterator for EventIter<'e> {
    fn next_back(&mut self) -> Option<EventRef<'e>> {
        let index = self.range.next_back()?;
        Some(EventRef {
            events: self.events,
            index,
        })
    }
}

/// One usage event of a batch; every field is read from the batch when asked for.
#[derive(Clone, Copy)]
pub struct EventRef<'e> {
    events: &'e Events<'e>,
    index: usize,
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("id", &self.id())
            .field("customer", &self.customer())
            .field("timestamp_ms", &self.timestamp_ms())
            .field("code", &self.code())
            .field("properties", &self.properties().collect::<Vec<_>>())
            .finish()
    }
}

impl<'e> EventRef<'e> {
    /// The event's id; `""` if the metric does not read ids ([`Reads`]).
    pub fn id(&self) -> &'e str {
        if self.events.batch.fields & field::IDS == 0 {
            return "";
        }
        let (start, end) = self.events.batch.id_ends.range(self.index);
        self.events.batch.ids.get(start..end).unwrap_or_default()
    }

    /// The event's customer; `""` if the metric does not read customers ([`Reads`]).
    pub fn customer(&self) -> &'e str {
        if self.events.batch.fields & field::CUSTOMERS == 0 {
            return "";
        }
        self.events.name(self.events.batch.customers.at(self.index))
    }

    /// The event's position in its batch, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Unix milliseconds, UTC.
    #[inline]
    pub fn timestamp_ms(&self) -> i64 {
        u64_at(self.events.batch.timestamps_ms, self.index) as i64
    }

    /// The event's code; `""` if the metric does not read codes ([`Reads`]).
    pub fn code(&self) -> &'e str {
        if self.events.batch.fields & field::CODES == 0 {
            return "";
        }
        self.events.name(self.events.batch.codes.at(self.index))
    }

    /// The range of this event's properties in the batch.
    #[inline]
    fn property_range(&self) -> std::ops::Range<usize> {
        let (start, end) = self.events.batch.property_ends.range(self.index);
        start..end
    }

    /// The properties, sorted by name.
    pub fn properties(&self) -> impl Iterator<Item = Property<'e>> + 'e {
        let events = self.events;
        self.property_range().map(move |p| Property {
            name: Cow::Borrowed(events.name(events.batch.property_names.at(p))),
            value: events.value(p),
        })
    }

    /// The index in the batch of property `name` of this event.
    #[inline]
    fn find(&self, name: &str) -> Option<usize> {
        let name_index = self.events.name_index(name)?;
        self.property_range()
            .find(|p| self.events.batch.property_names.at(*p) == name_index)
    }

    /// Property `name`, if the event has it.
    #[inline]
    pub fn property(&self, name: &str) -> Option<Value<'e>> {
        self.find(name).map(|p| self.events.value(p))
    }

    /// A numeric property (a JSON number or a string holding a decimal).
    #[inline]
    pub fn decimal(&self, name: &str) -> Result<Decimal> {
        let p = self.find(name).ok_or_else(|| self.missing(name))?;
        self.events.values().decimal(*self, name, p)
    }

    /// `decimal` of a property that is not a number: a string holding one, or an error.
    #[cold]
    fn decimal_in_text(&self, name: &str, p: usize) -> Result<Decimal> {
        let Some(text) = self.events.str_value(p) else {
            return Err(self.invalid(format!("property `{name}` is not a number")));
        };
        parse_decimal(text)
            .map_err(|_| self.invalid(format!("property `{name}` is not a number: `{text}`")))
    }

    /// A string property.
    pub fn string(&self, name: &str) -> Result<&'e str> {
        let p = self.find(name).ok_or_else(|| self.missing(name))?;
        self.events
            .str_value(p)
            .ok_or_else(|| self.invalid(format!("property `{name}` is not a string")))
    }

    #[cold]
    fn missing(&self, name: &str) -> PluginError {
        self.invalid(format!("no property `{name}`"))
    }

    /// The error for this event: `message` says what is wrong with it, and the host names the
    /// event by its id (`event `evt_42`: no property `mbps``), whether or not the metric reads
    /// ids.
    #[cold]
    pub fn invalid(&self, message: impl Into<String>) -> PluginError {
        PluginError::InvalidEvent(EventError {
            index: u32::try_from(self.index).unwrap_or(u32::MAX),
            message: message.into(),
        })
    }

    /// This event as data (allocates: for tests and diagnostics).
    pub fn to_event(&self) -> Event<'static> {
        Event {
            id: Cow::Owned(self.id().to_owned()),
            customer: Cow::Owned(self.customer().to_owned()),
            timestamp_ms: self.timestamp_ms(),
            code: Cow::Owned(self.code().to_owned()),
            properties: Cow::Owned(
                self.properties()
                    .map(|p| Property {
                        name: Cow::Owned(p.name.into_owned()),
                        value: p.value.into_owned(),
                    })
                    .collect(),
            ),
        }
    }
}

/// An `event-batch` written from [`Event`]s the way the host writes one: for native tests of
/// plugins (`metric.update(&Batch::with_reads(&events, &metric.reads()).events())`).
#[derive(Clone, Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    value_slots: Vec<u32>,
}

impl Batch {
    /// A batch with every part of every event.
    pub fn new(events: &[Event<'_>]) -> Batch {
        Batch::with_reads(events, &Reads::everything())
    }

    /// A batch with only what `reads` asks for, as the host passes it to a metric whose
    /// [`crate::Metric::reads`] is `reads`.
    pub fn with_reads(events: &[Event<'_>], reads: &Reads) -> Batch {
        let mut writer = BatchWriter::new(reads.clone());
        let bytes = match writer.write(events.iter()) {
            Ok(bytes) => bytes.to_vec(),
            Err(error) => panic!("these events do not fit in one batch: {error}"),
        };
        let mut value_slots = Vec::new();
        if let Err(error) = BatchView::parse(&bytes, &mut value_slots) {
            panic!("the SDK wrote a malformed batch: {error}");
        }
        Batch { bytes, value_slots }
    }

    /// The batch's bytes, as they cross into a plugin.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn events(&self) -> Events<'_> {
        match BatchView::columns(&self.bytes, &self.value_slots) {
            Ok(batch) => Events::of(batch),
            Err(error) => panic!("the SDK wrote a malformed batch: {error}"),
        }
    }
}

/// A test event is written the way the host writes the engine's.
impl WireEvent for &Event<'_> {
    fn id(&self) -> &str {
        &self.id
    }

    fn customer(&self) -> &str {
        &self.customer
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn code(&self) -> &str {
        &self.code
    }

    fn properties<'s>(&'s self) -> impl Iterator<Item = (&'s str, impl FnOnce() -> WireValue<'s>)> {
        self.properties.iter().map(|p| {
            let value = move || match &p.value {
                Value::Str(text) => WireValue::Str(text),
                Value::Num(n) => WireValue::Num(*n),
                Value::Boolean(b) => WireValue::Bool(*b),
                Value::Null => WireValue::Null,
                Value::Other => WireValue::Other,
            };
            (p.name.as_ref(), value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_readers_read_what_each_event_reads() {
        let events = [
            event("1", 10, "x", &[("a", num("1.5")), ("b", string("2.25"))]),
            event("2", -20, "y", &[("b", num("-3")), ("c", Value::Null)]),
            event(
                "3",
                30,
                "x",
                &[("a", string("not a number")), ("b", num("0"))],
            ),
            event("4", 40, "x", &[]),
            event(
                "5",
                50,
                "z",
                &[("a", num("-0.0001")), ("c", Value::Boolean(true))],
            ),
        ];
        let batch = Batch::new(&events);
        let view = batch.events();
        let timestamps: Vec<i64> = view.iter().map(|e| e.timestamp_ms()).collect();
        assert_eq!(view.timestamps_ms().collect::<Vec<_>>(), timestamps);
        for name in ["a", "b", "c", "absent"] {
            let one_by_one: Vec<Result<Decimal>> = view.iter().map(|e| e.decimal(name)).collect();
            assert_eq!(view.decimals(name).len(), events.len());
            assert_eq!(
                view.decimals(name).collect::<Vec<_>>(),
                one_by_one,
                "{name}"
            );
        }
    }

    #[test]
    fn the_column_reader_reads_dense_numbers_straight_down_their_columns() {
        let numbers = [
            "1.5",
            "-3",
            "0",
            "-0.0001",
            "79228162514264337593543950335",
            "7",
        ];
        let dense: Vec<Event> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| event(&i.to_string(), i as i64, "x", &[("a", num(n))]))
            .collect();
        let mut sparse = dense.clone();
        sparse[4] = event("4", 4, "x", &[("a", string("12.5"))]);
        let mut two = dense.clone();
        two[2] = event("2", 2, "x", &[("a", num("0")), ("b", num("1"))]);
        let reads = Reads::timestamps().property("a");
        let read = |events: &[Event], reads: &Reads| {
            let batch = Batch::with_reads(events, reads);
            let view = batch.events();
            let expected: Vec<Result<Decimal>> = view.iter().map(|e| e.decimal("a")).collect();
            let dense = view.name_index("a").and_then(|a| view.dense_numbers(a));
            let read: Vec<Result<Decimal>> = view.decimals("a").collect();
            assert_eq!(read, expected);
            (dense.is_some(), read)
        };
        // Every event has `a` and only `a`, a number: read straight down the columns.
        let (is_dense, values) = read(&dense, &reads);
        assert!(is_dense);
        let values: Vec<Decimal> = values.into_iter().map(|n| n.unwrap()).collect();
        let parsed: Vec<Decimal> = numbers.iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(values, parsed);
        assert!(values[3].is_sign_negative() && !values[2].is_sign_negative());
        // A text value, a second property or a missing one: searched event by event.
        assert!(!read(&sparse, &reads).0);
        assert!(!read(&two, &Reads::everything()).0);
        assert!(read(&two, &reads).0, "`b` is not passed");
        let mut missing = dense.clone();
        missing[5] = event("5", 5, "x", &[]);
        assert!(!read(&missing, &reads).0);
        // Ids, customers and codes do not matter.
        assert!(read(&dense, &Reads::everything()).0);
    }

    #[test]
    fn the_whole_column_is_every_event_s_decimal_or_the_first_error() {
        let reads = Reads::timestamps().property("a");
        let good = [
            event("1", 0, "x", &[("a", num("1.5"))]),
            event("2", 1, "x", &[("a", string("-2.25"))]),
            event("3", 2, "x", &[("a", num("0")), ("b", num("1"))]),
        ];
        for reads in [&reads, &Reads::everything()] {
            let batch = Batch::with_reads(&good, reads);
            let view = batch.events();
            let column: Vec<Decimal> = view.decimal_column("a").unwrap().collect();
            let each: Vec<Decimal> = view.decimals("a").map(|n| n.unwrap()).collect();
            assert_eq!(column, each);
        }
        let bad = [
            good[0].clone(),
            event("2", 1, "x", &[("a", string("n/a"))]),
            event("3", 2, "x", &[]),
        ];
        let batch = Batch::with_reads(&bad, &reads);
        let view = batch.events();
        assert_eq!(
            view.decimal_column("a").unwrap_err(),
            view.get(1)
                .unwrap()
                .invalid("property `a` is not a number: `n/a`")
        );
        assert_eq!(
            view.decimal_column("b").unwrap_err(),
            view.get(0).unwrap().invalid("no property `b`")
        );
        assert_eq!(
            Batch::new(&[]).events().decimal_column("a").unwrap().len(),
            0
        );
    }
}
